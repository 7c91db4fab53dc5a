//! A hook call, without HTTP: gather the patient's data (the prefetch, else the EHR's FHIR
//! server through [`Fetch`]), decide with the version in force and any candidate in shadow,
//! render the cards and the draft CarePlan, and record all of it in one write before the
//! answer leaves. The web crate authenticates, admits and parses first, and maps
//! [`HookError`] to its status.

use std::future::Future;
use std::sync::Arc;
use stride_store::TenantId;

use serde_json::value::RawValue;
use serde_json::{json, Value as Json};
use stride_fhir::careplan::imaging_requests;
use stride_fhir::clinic::ClinicZone;
use stride_fhir::intake::{resource_type, Intake};
use stride_guideline::facts::RecordKind;
use stride_guideline::{evaluate, reads_any, Facts, RuleSet};
use stride_hooks::request::HookRequest;
use stride_store::audit::Action;
use stride_store::StoreError;
use stride_store::{HookAnswer, HookRecord, JtiClaim, NewAuditEntry, NewCard, Store};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::actor::Actor;
use crate::cards::{cards, CardInputs, ReviewLink};
use crate::catalog::Service;
use crate::decision::{self, Decided, Subject};
use crate::discovery::{self, Hook, CAREPLAN, CONDITION, OBSERVATION, PATIENT};

/// Why a hook call got no cards.
#[derive(Debug, thiserror::Error)]
pub enum HookError {
    /// A read or the write the answer depends on failed: no answer (fail closed).
    #[error("the database is unavailable ({0})")]
    Unavailable(&'static str),
    /// The database answers, but too slowly for this call (every connection busy, the file
    /// locked): load, not an outage. No answer now; retry in a moment.
    #[error("the database is busy ({0})")]
    Busy(&'static str),
    /// Another call took a key this call's record needs, at the same moment: the same call
    /// sent again under this token, or another call that drafted this patient's plan first
    /// (one pending draft per patient and decision). Sent again, it is answered in full.
    #[error(
        "another call for this patient was being recorded at the same moment; send this one again"
    )]
    InFlight,
    /// The fallback fetch found no capacity free.
    #[error("no fetch capacity")]
    Overloaded,
    /// Required data could be neither prefetched nor fetched: which, and why.
    #[error("{0}")]
    Unfetched(String),
    /// The hookInstance was answered for another caller.
    #[error("this hookInstance belongs to another caller's call; each call needs its own")]
    InstanceOfAnother,
    /// A bug: a resource that should always render did not.
    #[error("{0}")]
    Internal(Box<dyn std::error::Error + Send + Sync>),
}

impl HookError {
    pub(crate) fn internal(e: impl std::error::Error + Send + Sync + 'static) -> HookError {
        HookError::Internal(Box::new(e))
    }

    /// A store failure that leaves the call without an answer (fail closed): busy is load,
    /// said as a warning; anything else is an outage, said as an error.
    pub(crate) fn store(what: &'static str) -> impl FnOnce(StoreError) -> HookError {
        move |e| {
            if e.is_overloaded() {
                tracing::warn!(error = %e, "{what}: the database is busy; answering 503");
                HookError::Busy(what)
            } else {
                tracing::error!(error = %e, "{what}: not read or written; answering 503");
                HookError::Unavailable(what)
            }
        }
    }
}

/// Why a fallback fetch brought nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unfetched {
    /// No capacity for the fetch: the call is shed.
    Busy,
    /// The server failed, timed out, was refused or sent no FHIR (the cause is the
    /// implementation's to log: the caller gets one generic answer).
    Failed,
}

/// How a hook call reaches the EHR's FHIR server for what the prefetch did not bring. The web
/// crate implements it with its HTTP client, its egress policy and trace propagation.
pub trait Fetch {
    /// Whether the request names a FHIR server to fetch from.
    fn available(&self) -> bool;
    /// The pages of the search `query` (tokens filled), for prefetch key `key`.
    fn fetch(
        &mut self,
        key: &str,
        query: &str,
    ) -> impl Future<Output = Result<Vec<Box<RawValue>>, Unfetched>>;
}

/// One generic answer for every failed fetch: the cause (a closed port, a silent one, an HTTP
/// error, a refused address) is in the logs and metrics, never in what the caller reads.
const FETCH_FAILED: &str = "could not be fetched from the fhirServer the request names";

/// One hook call, authenticated, admitted and parsed.
pub struct Call<'a> {
    pub service: &'a Service,
    /// The version in force for the caller.
    pub rule_set: &'a Arc<RuleSet>,
    /// A candidate decided beside it, recorded and never shown.
    pub shadow: Option<&'a Arc<RuleSet>>,
    pub request: &'a HookRequest<'a>,
    pub tenant: &'a TenantId,
    /// The issuer of the caller's token (a retry must come from it).
    pub issuer: &'a str,
    /// The clinic's zone: "today" and every record's day are its local dates.
    pub zone: &'a ClinicZone,
    pub now: OffsetDateTime,
    /// Stride's public URL (the guideline and review links on the cards).
    pub public_url: &'a str,
    /// From [`fingerprint`]: what makes a retry the same call.
    pub fingerprint: String,
    /// The caller's clinic launches Stride from its EHR as a SMART app: the review link on the
    /// cards is a `smart` link.
    pub smart_launch: bool,
}

impl Call<'_> {
    fn subject(&self) -> Subject<'_> {
        Subject {
            tenant: self.tenant,
            patient: &self.request.context.patient_id,
            zone: self.zone,
            now: self.now,
        }
    }

    /// The version in force and any candidate in shadow: a fetch asks for what both read.
    fn read(&self) -> Vec<&RuleSet> {
        std::iter::once(self.rule_set.as_ref())
            .chain(self.shadow.map(Arc::as_ref))
            .collect()
    }
}

/// A call decided and rendered, to be recorded before it is answered.
pub struct Drafted {
    /// The answer's body (`{"cards": [...]}`), stored with the record for a retry.
    pub response: String,
    pub record: HookRecord,
    pub decision_ids: Vec<String>,
    /// Whether the candidate in shadow decided otherwise (`None`: no candidate).
    pub shadow_differs: Option<bool>,
}

/// What makes a retry the same call: the service and every part of the request but the
/// access token (a retry carries a fresh one). From the members the request parse kept: a
/// second parse of the body cost a measurable share of a call (docs/benchmarks.md).
pub fn fingerprint(svc: &Service, req: &HookRequest<'_>) -> String {
    let mut text = svc.id.clone();
    for (k, v) in req
        .members
        .iter()
        .filter(|(k, _)| *k != "fhirAuthorization")
    {
        text.push('\n');
        text.push_str(k);
        text.push('=');
        text.push_str(v.get());
    }
    stride_store::audit::sha256_hex(text.as_bytes())
}

/// Exactly once per hookInstance: a call cut off after its record was committed (a replica
/// killed, the database lost before the 200) is retried by the EHR with a new token. The
/// same caller sending the same call again is given the stored answer (`Some`) — no second
/// decision, no second draft; anyone else naming that hookInstance is refused. The same caller
/// may send other calls under it (test harnesses reuse the specification's example uuid):
/// each is a call of its own.
async fn answered_before(
    store: &dyn Store,
    tenant: &TenantId,
    issuer: &str,
    hook_instance: &str,
    fingerprint: &str,
) -> Result<Option<String>, HookError> {
    let stored = store
        .hook_answers(hook_instance)
        .await
        .map_err(HookError::store("stored answers"))?;
    if !stored
        .iter()
        .all(|a| a.tenant == *tenant && a.caller_issuer == issuer)
    {
        tracing::warn!("a hookInstance answered for another caller was sent again");
        return Err(HookError::InstanceOfAnother);
    }
    Ok(stored
        .into_iter()
        .find(|a| a.fingerprint == fingerprint)
        .map(|a| a.response))
}

/// The audit entry of a retry answered from the store: `base` (a hook-retry entry by the
/// caller) with what names the call.
fn retry_entry(mut base: NewAuditEntry, call: &Call<'_>) -> NewAuditEntry {
    base.hook = Some(call.service.hook.name().to_owned());
    base.hook_instance = Some(call.request.hook_instance.clone());
    base.service_id = Some(call.service.id.clone());
    base.patient_ref = Some(call.subject().reference());
    base
}

/// What a prefetch key holds, in the terms of CDS Hooks 2.0.
enum Slot<'a> {
    Data(&'a RawValue),
    /// `null`: the EHR has no such data.
    Empty,
    /// Absent, or an OperationOutcome: the EHR did not (or could not) prefetch it.
    NotProvided,
}

fn slot<'a>(req: &HookRequest<'a>, key: &str) -> Slot<'a> {
    match req.prefetch.get(key).copied() {
        None => Slot::NotProvided,
        Some(v) if v.get() == "null" => Slot::Empty,
        Some(v) if resource_type(v).as_deref() == Some("OperationOutcome") => Slot::NotProvided,
        Some(v) => Slot::Data(v),
    }
}

/// Read one prefetch key into the intake, fetching it when the prefetch did not bring it.
async fn gather(
    call: &Call<'_>,
    key: &str,
    intake: &mut Intake,
    fetch: &mut impl Fetch,
) -> Result<(), HookError> {
    let req = call.request;
    match (slot(req, key), fetch.available()) {
        (Slot::Data(v), _) => {
            intake.add(v);
            Ok(())
        }
        (Slot::Empty, false) => Ok(()),
        (Slot::Empty | Slot::NotProvided, true) => {
            let template = discovery::prefetch(&call.read())
                .into_iter()
                .find(|(k, _)| *k == key)
                .map(|(_, t)| t)
                .unwrap_or_default();
            let query = discovery::fill(&template, &req.context.patient_id);
            match fetch.fetch(key, &query).await {
                Ok(pages) => {
                    pages.iter().for_each(|p| intake.add(p));
                    Ok(())
                }
                Err(Unfetched::Busy) => Err(HookError::Overloaded),
                Err(Unfetched::Failed) => {
                    Err(HookError::Unfetched(format!("`{key}` {FETCH_FAILED}")))
                }
            }
        }
        (Slot::NotProvided, false) => Err(HookError::Unfetched(format!(
            "`{key}` was not prefetched and the request names no fhirServer to fetch it from"
        ))),
    }
}

/// The call's records, decided: the Conditions first, and the rest (Observations, the
/// Patient, an approved plan) only when the guideline may apply: a Condition is one the
/// version in force reads, whatever its status, or the Conditions with the orders being
/// written open an episode. Not only the latter: a knee pain marked inactive, with night pain
/// recorded after it, opens one again from the Observations (a hook call that read the
/// Conditions alone gave no card where `$apply`, reading everything, showed the red flag:
/// adversarial record 153). Not the orders' codes nor a candidate's in shadow: an order-only
/// call needs no Observations, and a candidate never decides what a call fetches.
async fn decided(
    store: &dyn Store,
    call: &Call<'_>,
    fetch: &mut impl Fetch,
) -> Result<Decided, HookError> {
    let req = call.request;
    // Resources about anyone else are never used.
    let mut intake = Intake::for_patient(&req.context.patient_id);
    gather(call, CONDITION, &mut intake, fetch).await?;
    let mut facts = Facts {
        phase_state: None,
        records: std::mem::take(&mut intake.records),
    };
    let read = reads_any(call.rule_set, &facts);
    let shadow_reads = call.shadow.is_some_and(|c| reads_any(c, &facts));
    intake.records = std::mem::take(&mut facts.records);
    if let Some(orders) = req.context.draft_orders {
        intake.add(orders);
    }
    let may_apply = read || {
        let as_of = intake.localise(call.zone, call.now);
        facts.records = std::mem::take(&mut intake.records);
        let applies = evaluate(call.rule_set, &facts, as_of).applies;
        intake.records = facts.records;
        applies
    };
    if may_apply {
        gather(call, OBSERVATION, &mut intake, fetch).await?;
        // A rule set that reads an age gets the Patient's birth date: prefetched, else fetched
        // like the other keys, so an age rule is not silent for want of it. Without a FHIR
        // server to fetch from, the age is unknown and the rule says it is not ruled out.
        if call.read().iter().any(|r| r.reads(RecordKind::Patient)) {
            intake.read_patients = true;
            intake.read_gender = call.read().iter().any(|r| r.reads_patient_codes());
            match gather(call, PATIENT, &mut intake, fetch).await {
                Err(HookError::Unfetched(_)) if !fetch.available() => {}
                other => other?,
            }
        }
        // An approved plan sent in the prefetch (optional: no fetch when it is absent).
        if let Some(plans) = req
            .prefetch
            .get(CAREPLAN)
            .filter(|v| resource_type(v).is_some())
        {
            intake.add(plans);
        }
    }
    // A candidate in shadow that reads a Condition the version in force does not (a diagnosis
    // in words, say) decides on its own copy of the records with the Observations and the
    // Patient the EHR prefetched, so that its impact counts what it would see. Never fetched
    // or refused for it, and never added to the version in force's records: a candidate
    // changes neither what a call costs, nor whether it is answered, nor what its record says.
    if let (false, true, Some(candidate)) = (may_apply, shadow_reads, call.shadow) {
        let mut seen = intake.clone();
        if let Slot::Data(v) = slot(req, OBSERVATION) {
            seen.add(v);
        }
        if candidate.reads(RecordKind::Patient) {
            seen.read_patients = true;
            seen.read_gender = candidate.reads_patient_codes();
            if let Slot::Data(v) = slot(req, PATIENT) {
                seen.add(v);
            }
        }
        let subject = call.subject();
        let mut decided =
            decision::decide(store, &subject, call.rule_set, None, intake, false).await?;
        let theirs = decision::decide(store, &subject, candidate, None, seen, false).await?;
        decided.shadow = Some(theirs.decision);
        return Ok(decided);
    }
    let shadow = call.shadow.map(Arc::as_ref);
    decision::decide(
        store,
        &call.subject(),
        call.rule_set,
        shadow,
        intake,
        may_apply,
    )
    .await
}

/// Who a new draft is for: the Patient the EHR prefetched, else fetched once for the draft
/// (a reviewer must see whose plan it is). A failed or shed fetch leaves it unknown, and the
/// plan page says the EHR sent no Patient: it never costs the call its answer.
async fn draft_identity(call: &Call<'_>, fetch: &mut impl Fetch) -> Option<Json> {
    let req = call.request;
    match slot(req, PATIENT) {
        Slot::Data(raw) => return stride_fhir::identity::identity(raw, &req.context.patient_id),
        _ if !fetch.available() => return None,
        _ => {}
    }
    let query = discovery::fill("Patient/{{context.patientId}}", &req.context.patient_id);
    let pages = fetch.fetch(PATIENT, &query).await.ok()?;
    let mut intake = Intake::for_patient(&req.context.patient_id);
    pages.iter().for_each(|p| intake.add(p));
    intake.identity
}

/// Gather, decide and render one call; `base` is its hook-call audit entry by the caller.
/// Nothing is stored: [`record`] does that.
pub async fn decide(
    store: &dyn Store,
    call: &Call<'_>,
    fetch: &mut impl Fetch,
    audit: NewAuditEntry,
) -> Result<Drafted, HookError> {
    let rs = call.rule_set;
    let req = call.request;
    let subject = call.subject();
    let mut decided = decided(store, call, fetch).await?;
    let decision = &decided.decision;
    let decision_ids = decision::ids(decision);
    let shadowed = call
        .shadow
        .zip(decided.shadow.as_ref())
        .map(|(candidate, d)| {
            let ids = decision::ids(d);
            let differs = ids != decision_ids;
            let record = json!({
                "version": candidate.doc.version.to_string(),
                "contentHash": candidate.content_hash,
                "decisionIds": ids,
                "differs": differs,
            });
            (record, differs)
        });

    let does = Does::of(call.service.hook);
    let imaging = imaging_requests(rs, decision, &req.context.patient_id, &mut || {
        Uuid::new_v4().to_string()
    })
    .map_err(HookError::internal)?;
    // One draft per patient and decision: the patient's pending draft of the same decision is
    // reused (the review queue never holds two alike); every call keeps its own audit entry.
    let draft = if does.draft && decision.applies {
        let encounter = req.context.encounter_id.as_deref();
        let reuse = decision::Reuse::of(decided.plans.as_mut());
        Some(decision::draft(store, &subject, rs, decision, encounter, &imaging, reuse).await?)
    } else {
        None
    };
    let drafted = req
        .context
        .draft_orders
        .map(stride_fhir::orders::draft_orders)
        .unwrap_or_default();
    let public = call.public_url;
    let made = cards(&CardInputs {
        rs,
        decision,
        guideline_url: crate::guideline_url(public, &rs.doc.id, &rs.doc.version),
        // A draft waiting for review already exists: creating it again does nothing new, so
        // the card only links to it.
        careplan: draft.as_ref().and_then(decision::Draft::made),
        review: draft.as_ref().map(|d| {
            if call.smart_launch {
                ReviewLink::Smart {
                    launch_url: format!("{public}/ui/smart/launch"),
                    careplan: d.id.to_string(),
                }
            } else {
                ReviewLink::Page(format!("{public}/ui/careplans/{}", d.id))
            }
        }),
        imaging: &imaging,
        drafted: &drafted,
        unread: &decided.unread,
        phase_card: does.phase_card,
    });

    // A reused draft is stored already: the call's cards and audit entry point at it.
    let mut careplan_row = None;
    if let Some(d) = draft.as_ref().filter(|d| !d.pending) {
        // Who it is for: the Patient read with the other keys (a rule set that reads one),
        // else the prefetched one, else fetched now for the new draft.
        let identity = match decided.identity.take() {
            Some(known) => Some(known),
            None => draft_identity(call, fetch).await,
        };
        careplan_row = d.row(rs, &decided.decision, &subject, identity);
    }
    let shadow_differs = shadowed.as_ref().map(|(_, differs)| *differs);
    let plan = draft.as_ref().map(|d| (d.pending, d.id));
    let (response, record) = recorded(
        call,
        audit,
        &decided,
        shadowed.map(|(record, _)| record),
        &made,
        careplan_row,
        plan,
    )?;
    Ok(Drafted {
        response,
        record,
        decision_ids,
        shadow_differs,
    })
}

/// What each hook does beyond deciding, in one place.
struct Does {
    /// Draft a CarePlan for review when the guideline applies (patient-view: the visit
    /// begins; the order hooks only check the orders being written).
    draft: bool,
    /// Show the phase card (patient-view).
    phase_card: bool,
}

impl Does {
    fn of(hook: Hook) -> Does {
        match hook {
            Hook::PatientView => Does {
                draft: true,
                phase_card: true,
            },
            Hook::OrderSelect | Hook::OrderSign => Does {
                draft: false,
                phase_card: false,
            },
        }
    }
}

/// The answer and the record of a decided call: its audit entry (the decision, what it rests
/// on, its cards and plan, the shadow's decision, the records not read), the cards as sent and
/// the answer kept for a retry. The answer is made before the record, so that it is stored
/// with it.
fn recorded(
    call: &Call<'_>,
    mut audit: NewAuditEntry,
    decided: &Decided,
    // The candidate in shadow: its version, content, decision ids and whether they differ.
    shadow: Option<Json>,
    made: &[crate::cards::Card],
    careplan_row: Option<stride_store::NewCarePlan>,
    // The plan drafted: whether it is the patient's pending draft reused, and its id.
    plan: Option<(bool, Uuid)>,
) -> Result<(String, HookRecord), HookError> {
    let (rs, req, now) = (call.rule_set, call.request, call.now);
    audit.hook = Some(call.service.hook.name().to_owned());
    audit.hook_instance = Some(req.hook_instance.clone());
    audit.service_id = Some(call.service.id.clone());
    decision::record(&mut audit, rs, &call.subject(), decided)?;
    audit.card_uuids = made.iter().map(|c| c.uuid.to_string()).collect();
    let planned = plan.map(|(_, id)| id);
    audit.careplan_id = planned;
    if plan.is_some_and(|(reused, _)| reused) {
        audit.details["careplan_reused"] = json!(true);
    }
    audit.details["user"] = json!(req.context.user_id);
    // Where the card was shown (the DSI feedback export names a location).
    if let Some(e) = &req.context.encounter_id {
        audit.details["encounter"] = json!(e);
    }
    if let Some(record) = shadow {
        audit.details["shadow"] = record;
    }
    if !decided.unread.is_empty() {
        let named: Vec<String> = decided
            .unread
            .iter()
            .map(|(s, m)| format!("{s} — {m}"))
            .collect();
        audit.details["unread"] = json!(named);
    }
    // The answer is made before the record, so that it is stored with it for a retry.
    #[derive(serde::Serialize)]
    struct Answer<'a> {
        cards: Vec<&'a Json>,
    }
    let response = serde_json::to_string(&Answer {
        cards: made.iter().map(|c| &c.json).collect(),
    })
    .map_err(HookError::internal)?;
    let record = HookRecord {
        answer: Some(HookAnswer {
            hook_instance: req.hook_instance.clone(),
            tenant: call.tenant.clone(),
            caller_issuer: call.issuer.to_owned(),
            fingerprint: call.fingerprint.clone(),
            response: response.clone(),
            created_at: now,
        }),
        audit,
        careplan: careplan_row,
        cards: made
            .iter()
            .map(|c| NewCard {
                uuid: c.uuid,
                tenant: call.tenant.clone(),
                service_id: call.service.id.clone(),
                hook_instance: req.hook_instance.clone(),
                decision_id: c.decision_id.clone(),
                careplan_id: planned,
                created_at: now,
                rule_set_id: Some(rs.doc.id.clone()),
                rule_set_version: Some(rs.doc.version.to_string()),
                user_ref: Some(req.context.user_id.to_owned()),
                encounter: req.context.encounter_id.clone(),
                patient_ref: Some(call.subject().reference()),
            })
            .collect(),
    };
    Ok((response, record))
}

/// What a hook call is answered with.
pub enum Answer {
    /// The caller sent this call before and it was recorded: the stored answer, no second
    /// decision (the retry is recorded as one).
    Retried(String),
    /// Decided now and recorded: the body, its decision ids, whether the candidate in shadow
    /// decided otherwise, and how long the record's write took.
    Decided {
        response: String,
        decision_ids: Vec<String>,
        shadow_differs: Option<bool>,
        write: std::time::Duration,
    },
    /// Another replica recorded the same call first: its stored answer.
    Stored(String),
}

/// A hook call, as one use case: a retry of a call already recorded is answered from the
/// store; any other call is decided (`decide`) and recorded with the token's claim
/// (`record`). One pending draft per patient and decision is a unique key in both backends: a
/// call that loses the race for the patient's draft to another call is decided once more, and
/// then links that draft. The same call recorded first by another replica is answered from its
/// record. Every answer leaves its audit entry, written from `actor`: the call's with its
/// decision, or a retry's; a refusal leaves none.
pub async fn answer(
    store: &dyn Store,
    actor: &Actor,
    call: &Call<'_>,
    fetch: &mut impl Fetch,
    mut claim: JtiClaim,
) -> Result<Answer, HookError> {
    let retry = retry_entry(actor.entry(Action::HookRetry, "success"), call);
    let earlier = answered_before(
        store,
        call.tenant,
        call.issuer,
        &call.request.hook_instance,
        &call.fingerprint,
    )
    .await?;
    if let Some(response) = earlier {
        // A replayed token is burnt before its retry is answered, as any call's is.
        claim
            .durable()
            .await
            .map_err(HookError::store("the token's claim"))?;
        store
            .append_audit(&retry)
            .await
            .map_err(HookError::store("the retry's audit entry"))?;
        return Ok(Answer::Retried(response));
    }
    let base = actor.entry(Action::HookCall, "success");
    let mut raced = false;
    loop {
        let Drafted {
            response,
            record: rec,
            decision_ids,
            shadow_differs,
        } = decide(store, call, fetch, base.clone()).await?;
        let started = std::time::Instant::now();
        let written = record(store, rec, &mut claim).await;
        let write = started.elapsed();
        match written {
            Ok(None) => {
                return Ok(Answer::Decided {
                    response,
                    decision_ids,
                    shadow_differs,
                    write,
                })
            }
            Ok(Some(stored)) => {
                store
                    .append_audit(&retry)
                    .await
                    .map_err(HookError::store("the retry's audit entry"))?;
                return Ok(Answer::Stored(stored));
            }
            Err(HookError::InFlight) if !raced => raced = true,
            Err(e) => return Err(e),
        }
    }
}

/// No record, no answer: a card the clinic cannot trace must not be shown. The CarePlan,
/// cards, answer and audit entry are written with the token's claim in one write; whatever
/// made it fail, the caller may retry, and gets no card now (fail closed).
///
/// The same call sent to several replicas at once is recorded once: the others lose on the
/// unique keys (the token's id, the hookInstance and fingerprint) after the winner committed.
/// Losing that race is not an outage: they answer what the winner stored (`Some`).
pub async fn record(
    store: &dyn Store,
    record: HookRecord,
    claim: &mut JtiClaim,
) -> Result<Option<String>, HookError> {
    let key = record.answer.as_ref().map(|a| {
        (
            a.tenant.clone(),
            a.caller_issuer.clone(),
            a.hook_instance.clone(),
            a.fingerprint.clone(),
        )
    });
    match store.record_hook_claimed(record, claim).await {
        Ok(()) => Ok(None),
        Err(StoreError::Duplicate(_)) => {
            let Some((tenant, issuer, instance, fingerprint)) = key else {
                return Err(HookError::InFlight);
            };
            match answered_before(store, &tenant, &issuer, &instance, &fingerprint).await? {
                Some(stored) => {
                    tracing::info!(
                        "the same call was recorded by another replica first: its answer is given"
                    );
                    Ok(Some(stored))
                }
                // Another call's draft for this patient (or this token, used for another
                // call): nothing of this one is stored; sent again, it links that draft.
                None => Err(HookError::InFlight),
            }
        }
        Err(e) => Err(HookError::store("the call's record")(e)),
    }
}
