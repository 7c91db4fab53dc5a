//! A hook call, without HTTP: gather the patient's data (the prefetch, else the EHR's FHIR
//! server through [`Fetch`]), decide with the version in force and any candidate in shadow,
//! render the cards and the draft CarePlan, and record all of it in one write before the
//! answer leaves. The web crate authenticates, admits and parses first, and maps
//! [`HookError`] to its status.

use std::future::Future;
use std::sync::Arc;

use serde_json::value::RawValue;
use serde_json::{json, Value as Json};
use stride_fhir::careplan::{careplan, imaging_requests, PlanContext};
use stride_fhir::clinic::ClinicZone;
use stride_fhir::intake::{resource_type, Intake};
use stride_guideline::facts::{Code, PhaseState, Record, RecordKind};
use stride_guideline::{evaluate, Decision, Facts, RuleSet};
use stride_hooks::request::HookRequest;
use stride_store::audit::Action;
use stride_store::StoreError;
use stride_store::{
    AuditFacts, CarePlanStatus, HookAnswer, HookRecord, JtiClaim, NewAuditEntry, NewCard,
    NewCarePlan, Store,
};
use time::{Date, OffsetDateTime, UtcOffset};
use uuid::Uuid;

use crate::actor::Actor;
use crate::cards::{cards, CardInputs, ReviewLink};
use crate::catalog::Service;
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
    fn internal(e: impl std::error::Error + Send + Sync + 'static) -> HookError {
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
    pub tenant: &'a str,
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
    fn patient_ref(&self) -> String {
        format!("Patient/{}", self.request.context.patient_id)
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
    tenant: &str,
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
        .all(|a| a.tenant == tenant && a.caller_issuer == issuer)
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
fn retry_entry(mut base: NewAuditEntry, svc: &Service, req: &HookRequest<'_>) -> NewAuditEntry {
    base.hook = Some(svc.hook.name().to_owned());
    base.hook_instance = Some(req.hook_instance.clone());
    base.service_id = Some(svc.id.clone());
    base.patient_ref = Some(format!("Patient/{}", req.context.patient_id));
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

/// The draft of the same decision already waiting for review, if any: it is the answer, and
/// no second draft is stored.
pub(crate) async fn pending_draft(
    store: &dyn Store,
    tenant: &str,
    patient_ref: &str,
    key: &str,
) -> Result<Option<stride_store::CarePlanRecord>, HookError> {
    store
        .pending_draft(tenant, patient_ref, key)
        .await
        .map_err(HookError::store("pending drafts"))
}

/// The stored row of a new draft CarePlan `resource` for `decision`, awaiting review.
pub(crate) fn draft_row(
    rs: &RuleSet,
    decision: &Decision,
    id: Uuid,
    tenant: &str,
    patient_ref: &str,
    resource: Json,
    now: OffsetDateTime,
) -> NewCarePlan {
    NewCarePlan {
        id,
        tenant: tenant.to_owned(),
        patient_ref: patient_ref.to_owned(),
        status: CarePlanStatus::Draft,
        rule_set_id: rs.doc.id.clone(),
        rule_set_version: rs.doc.version.to_string(),
        phase: decision.phase.clone().unwrap_or_default(),
        red_flag: !decision.red_flags.is_empty(),
        resource,
        created_at: now,
        decision_key: Some(decision_key(decision)),
        patient: None,
    }
}

/// What makes two drafts the same decision: the rule set and version, the decision ids and
/// the activities prescribed.
pub(crate) fn decision_key(d: &Decision) -> String {
    let activities: Vec<&str> = d
        .activities
        .iter()
        .chain(&d.rehab)
        .map(|a| a.id.as_str())
        .collect();
    format!(
        "{}|{}|{}|{}",
        d.rule_set.id,
        d.rule_set.version,
        d.decision_ids().join(","),
        activities.join(",")
    )
}

/// The patient's phase as clinic staff approved it: the newest active CarePlan of this
/// guideline, from Stride's store (approved on the review page) or from the prefetch. Its
/// phase and the day it took effect (the clinic's date) are the phase state.
/// The red flags clinic staff overrode with a reason on this patient's cards, as records of
/// the clinician's decision on the day they decided: a red flag that stays until evaluated is
/// evaluated by it, as by imaging or a review of the plan. Read only when a decision holds
/// such a red flag (`with_clinician_decisions`), for rule sets that have them.
pub(crate) async fn clinician_decisions(
    store: &dyn Store,
    rule_sets: &[&RuleSet],
    tenant: &str,
    patient_ref: &str,
    zone: &ClinicZone,
    offset: time::UtcOffset,
) -> Result<Vec<Record>, HookError> {
    let Some(rs) = rule_sets
        .iter()
        .find(|rs| rs.doc.data_quality.imaging_red_flags_stick)
    else {
        return Ok(Vec::new());
    };
    let overridden = store
        .overridden(tenant, patient_ref)
        .await
        .map_err(HookError::store("overridden red flags"))?;
    Ok(overridden
        .into_iter()
        .map(|o| Record {
            text: None,
            codes: vec![Code {
                system: rs.doc.decision_system.clone(),
                code: o.decision_id.clone(),
            }],
            components: Vec::new(),
            date: Some(zone.date_of(o.at, offset)),
            end: None,
            kind: RecordKind::Decision,
            sites: Vec::new(),
            source: format!("Feedback/override-of-{}", o.decision_id),
            start: None,
            status: None,
            value: None,
        })
        .collect())
}

pub(crate) async fn approved_phase(
    store: &dyn Store,
    rs: &RuleSet,
    tenant: &str,
    patient_ref: &str,
    zone: &ClinicZone,
    intake: &Intake,
) -> Result<Option<PhaseState>, HookError> {
    let mut best: Option<(OffsetDateTime, PhaseState)> = None;
    let mut consider = |at: OffsetDateTime, ps: PhaseState| {
        if best.as_ref().is_none_or(|(t, _)| at > *t) {
            best = Some((at, ps));
        }
    };
    let stored = store
        .latest_approved(tenant, patient_ref, &rs.doc.id)
        .await
        // Without the approved phase the decision could differ: no answer (fail closed, as
        // for the write).
        .map_err(HookError::store("approved CarePlans"))?;
    if let Some(p) = stored {
        consider(
            p.updated_at,
            PhaseState {
                phase: p.phase,
                since: intake.clinic_date(zone, p.updated_at),
                source: format!("CarePlan/{}", p.id),
            },
        );
    }
    // `url` or `url|version`: any version of this guideline.
    let ours = |canonical: &String| {
        canonical
            .strip_prefix(rs.doc.url.as_str())
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('|'))
    };
    for p in &intake.plans {
        let phase = p
            .categories
            .iter()
            .find(|c| c.system == rs.doc.decision_system)
            .map(|c| c.code.clone());
        let (Some(phase), Some(day)) = (phase, p.since_day) else {
            continue;
        };
        if p.status == "active" && p.instantiates.iter().any(ours) {
            let at = p.since.unwrap_or_else(|| day.midnight().assume_utc());
            let since = p.since.map_or(day, |t| intake.clinic_date(zone, t));
            consider(
                at,
                PhaseState {
                    phase,
                    since,
                    source: p.source.clone(),
                },
            );
        }
    }
    Ok(best.map(|(_, ps)| ps))
}

/// What a call's resources say: the facts, the day they are read on, the records that could
/// not be read, the clinic's offset as the records give it, and who the patient is.
struct Read {
    facts: Facts,
    as_of: time::Date,
    unread: Vec<(String, String)>,
    offset: time::UtcOffset,
    identity: Option<Json>,
}

/// The facts of the call and the day they are read on.
async fn facts(
    store: &dyn Store,
    call: &Call<'_>,
    fetch: &mut impl Fetch,
) -> Result<Read, HookError> {
    let req = call.request;
    // Resources about anyone else are never used.
    let mut intake = Intake::for_patient(&req.context.patient_id);
    gather(call, CONDITION, &mut intake, fetch).await?;
    if let Some(orders) = req.context.draft_orders {
        intake.add(orders);
    }
    let mut as_of = intake.localise(call.zone, call.now);
    // Observations matter only when an episode activates the guideline: a patient without
    // one is answered from the Conditions alone.
    let conditions = Facts {
        phase_state: None,
        records: std::mem::take(&mut intake.records),
    };
    let episode = evaluate(call.rule_set, &conditions, as_of);
    intake.records = conditions.records;
    let mut phase_state = None;
    if episode.applies {
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
        as_of = intake.localise(call.zone, call.now);
        phase_state = approved_phase(
            store,
            call.rule_set,
            call.tenant,
            &call.patient_ref(),
            call.zone,
            &intake,
        )
        .await?;
    }
    let unread = intake
        .problems
        .iter()
        .map(|p| (p.source.clone(), p.message.clone()))
        .collect();
    let offset = intake.fallback_offset();
    let facts = Facts {
        phase_state,
        records: intake.records,
    };
    Ok(Read {
        facts,
        as_of,
        unread,
        offset,
        identity: intake.identity,
    })
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

/// A clinician's recorded decision (an override with a reason) can only evaluate a red flag
/// that stays until evaluated: when `decided` shows one (in any of `rule_sets`' decisions), the
/// patient's overrides are read, added to `facts`, and `true` says to decide again. Every other
/// call pays nothing for it (a query per call cost the load check's PostgreSQL run dearly).
pub(crate) async fn with_clinician_decisions(
    store: &dyn Store,
    rule_sets: &[&RuleSet],
    decided: &[&Decision],
    tenant: &str,
    patient_ref: &str,
    zone: &ClinicZone,
    offset: time::UtcOffset,
    facts: &mut Facts,
) -> Result<bool, HookError> {
    let waiting = decided
        .iter()
        .any(|d| d.red_flags.iter().any(|f| f.since.is_some()));
    if !waiting {
        return Ok(false);
    }
    let decisions =
        clinician_decisions(store, rule_sets, tenant, patient_ref, zone, offset).await?;
    if decisions.is_empty() {
        return Ok(false);
    }
    facts.records.extend(decisions);
    Ok(true)
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
    let now = call.now;
    let patient_ref = call.patient_ref();
    let Read {
        mut facts,
        as_of,
        unread,
        offset,
        mut identity,
    } = facts(store, call, fetch).await?;
    let (decision, shadow_decision) =
        evaluated(store, call, &mut facts, as_of, offset, &patient_ref).await?;
    let decision_ids: Vec<String> = decision
        .decision_ids()
        .iter()
        .map(|d| d.to_string())
        .collect();
    let shadowed = call.shadow.zip(shadow_decision).map(|(candidate, d)| {
        let ids: Vec<String> = d.decision_ids().iter().map(|s| s.to_string()).collect();
        let differs = ids != decision_ids;
        let record = json!({
            "version": candidate.doc.version.to_string(),
            "contentHash": candidate.content_hash,
            "decisionIds": ids,
            "differs": differs,
        });
        (record, differs)
    });

    let patient_view = call.service.hook == Hook::PatientView;
    let drafting = patient_view && decision.applies;
    // One draft per patient and decision: the patient's pending draft of the same decision is
    // reused (the review queue never holds two alike); every call keeps its own audit entry.
    let key = drafting.then(|| decision_key(&decision));
    let pending = match &key {
        Some(k) => pending_draft(store, call.tenant, &patient_ref, k).await?,
        None => None,
    };
    let plan_id = pending
        .as_ref()
        .map_or_else(stride_store::new_row_id, |p| p.id);
    let ctx = PlanContext {
        id: &plan_id.to_string(),
        patient: &req.context.patient_id,
        encounter: req.context.encounter_id.as_deref(),
        author: None,
        now,
    };
    let imaging = imaging_requests(rs, &decision, &req.context.patient_id, || {
        Uuid::new_v4().to_string()
    })
    .map_err(HookError::internal)?;
    let plan = match (&pending, drafting) {
        (Some(p), _) => Some(p.resource.clone()),
        (None, true) => Some(careplan(rs, &decision, &ctx, &imaging).map_err(HookError::internal)?),
        (None, false) => None,
    };
    let drafted = req
        .context
        .draft_orders
        .map(stride_fhir::orders::draft_orders)
        .unwrap_or_default();
    let public = call.public_url;
    let made = cards(&CardInputs {
        rs,
        decision: &decision,
        guideline_url: crate::guideline_url(public, &rs.doc.id, &rs.doc.version),
        // A draft waiting for review already exists: creating it again does nothing new, so
        // the card only links to it.
        careplan: plan.as_ref().filter(|_| pending.is_none()),
        review: plan.as_ref().map(|_| {
            if call.smart_launch {
                ReviewLink::Smart {
                    launch_url: format!("{public}/ui/smart/launch"),
                    careplan: plan_id.to_string(),
                }
            } else {
                ReviewLink::Page(format!("{public}/ui/careplans/{plan_id}"))
            }
        }),
        imaging: &imaging,
        drafted: &drafted,
        unread: &unread,
        phase_card: patient_view,
    });

    // A reused draft is stored already: the call's cards and audit entry point at it.
    let reused = pending.is_some();
    let new_plan = plan.filter(|_| !reused);
    // Who it is for: the Patient read with the other keys (a rule set that reads one), else
    // the prefetched one, else fetched now for the new draft.
    if new_plan.is_some() && identity.is_none() {
        identity = draft_identity(call, fetch).await;
    }
    let careplan_row = new_plan.map(|resource| {
        let mut row = draft_row(
            rs,
            &decision,
            plan_id,
            call.tenant,
            &patient_ref,
            resource,
            now,
        );
        row.patient = identity;
        row
    });
    let shadow_differs = shadowed.as_ref().map(|(_, differs)| *differs);
    let (response, record) = recorded(
        call,
        audit,
        Decided {
            facts: &facts,
            as_of,
            decision_ids: &decision_ids,
            shadow: shadowed.map(|(record, _)| record),
            unread: &unread,
        },
        &made,
        careplan_row,
        (reused, plan_id),
    )?;
    Ok(Drafted {
        response,
        record,
        decision_ids,
        shadow_differs,
    })
}

/// The decision (and the candidate's in shadow, on the same facts and day), decided again with
/// the clinician's recorded decisions when one of them bears on it.
async fn evaluated(
    store: &dyn Store,
    call: &Call<'_>,
    facts: &mut Facts,
    as_of: Date,
    offset: UtcOffset,
    patient_ref: &str,
) -> Result<(Decision, Option<Decision>), HookError> {
    let rs = call.rule_set;
    let mut decision = tracing::info_span!("evaluate", rule_set = %rs.doc.id, version = %rs.doc.version, records = facts.records.len())
        .in_scope(|| evaluate(rs, facts, as_of));
    // Shadow: the candidate decides the same facts on the same day; only the record shows it.
    let mut shadow_decision = call.shadow.map(|candidate| {
        tracing::info_span!("evaluate shadow", version = %candidate.doc.version)
            .in_scope(|| evaluate(candidate, facts, as_of))
    });
    let decided: Vec<&Decision> = std::iter::once(&decision).chain(&shadow_decision).collect();
    if with_clinician_decisions(
        store,
        &call.read(),
        &decided,
        call.tenant,
        patient_ref,
        call.zone,
        offset,
        facts,
    )
    .await?
    {
        decision = evaluate(rs, facts, as_of);
        shadow_decision = call
            .shadow
            .map(|candidate| evaluate(candidate, facts, as_of));
    }
    Ok((decision, shadow_decision))
}

/// What a call decided, as its record keeps it.
struct Decided<'a> {
    facts: &'a Facts,
    as_of: Date,
    decision_ids: &'a [String],
    /// The candidate in shadow: its version, content, decision ids and whether they differ.
    shadow: Option<Json>,
    unread: &'a [(String, String)],
}

/// The answer and the record of a decided call: its audit entry (the decision, what it rests
/// on, its cards and plan, the shadow's decision, the records not read), the cards as sent and
/// the answer kept for a retry. The answer is made before the record, so that it is stored
/// with it.
fn recorded(
    call: &Call<'_>,
    mut audit: NewAuditEntry,
    decided: Decided<'_>,
    made: &[crate::cards::Card],
    careplan_row: Option<stride_store::NewCarePlan>,
    // Whether the plan is the patient's pending draft reused, and its id.
    (reused, plan_id): (bool, Uuid),
) -> Result<(String, HookRecord), HookError> {
    let (rs, req, now) = (call.rule_set, call.request, call.now);
    audit.hook = Some(call.service.hook.name().to_owned());
    audit.hook_instance = Some(req.hook_instance.clone());
    audit.service_id = Some(call.service.id.clone());
    record_decision(
        &mut audit,
        rs,
        call.patient_ref(),
        decided.facts,
        decided.as_of,
        decided.decision_ids.to_vec(),
    )?;
    audit.card_uuids = made.iter().map(|c| c.uuid.to_string()).collect();
    let planned = (careplan_row.is_some() || reused).then_some(plan_id);
    audit.careplan_id = planned;
    if reused {
        audit.details["careplan_reused"] = json!(true);
    }
    audit.details["user"] = json!(req.context.user_id);
    // Where the card was shown (the DSI feedback export names a location).
    if let Some(e) = &req.context.encounter_id {
        audit.details["encounter"] = json!(e);
    }
    if let Some(record) = decided.shadow {
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
            tenant: call.tenant.to_owned(),
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
                tenant: call.tenant.to_owned(),
                service_id: call.service.id.clone(),
                hook_instance: req.hook_instance.clone(),
                decision_id: c.decision_id.clone(),
                careplan_id: planned,
                created_at: now,
                rule_set_id: Some(rs.doc.id.clone()),
                rule_set_version: Some(rs.doc.version.to_string()),
                user_ref: Some(req.context.user_id.to_owned()),
                encounter: req.context.encounter_id.clone(),
                patient_ref: Some(call.patient_ref()),
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
    let retry = retry_entry(
        actor.entry(Action::HookRetry, "success"),
        call.service,
        call.request,
    );
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

/// What the audit entry of any decision records (a hook call, `$apply`): whom it was about,
/// the facts and the day, the exact version and the decision ids — what a replay needs.
pub(crate) fn record_decision(
    audit: &mut NewAuditEntry,
    rs: &RuleSet,
    patient_ref: String,
    facts: &Facts,
    as_of: time::Date,
    decision_ids: Vec<String>,
) -> Result<(), HookError> {
    audit.patient_ref = Some(patient_ref);
    audit.as_of = Some(as_of.to_string());
    audit.facts = Some(AuditFacts::from_canonical(facts).map_err(HookError::internal)?);
    audit.rule_set_id = Some(rs.doc.id.clone());
    audit.rule_set_version = Some(rs.doc.version.to_string());
    audit.rule_set_hash = Some(rs.content_hash.clone());
    audit.decision_ids = decision_ids;
    Ok(())
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
