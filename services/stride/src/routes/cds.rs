//! CDS Hooks endpoints: discovery, hook calls and card feedback.

use actix_web::{get, post, web, HttpRequest, HttpResponse};
use serde_json::value::RawValue;
use serde_json::{json, Value as Json};
use stride_fhir::careplan::{careplan, imaging_request, PlanContext};
use stride_fhir::clinic::ClinicZone;
use stride_fhir::intake::{resource_type, Intake};
use stride_guideline::facts::{PhaseState, RecordKind};
use stride_guideline::{evaluate, Facts, RuleSet};
use stride_store::{AuditFacts, HookAnswer, HookRecord, NewCard, NewCarePlan, NewFeedback};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::admission::{self, Refused};
use crate::audit;
use crate::auth::CdsCaller;
use crate::body::{read_body, read_json, BodyLimits};
use crate::catalog::Service;
use crate::cds::cards::{cards, CardInputs};
use crate::cds::egress::FhirPolicy;
use crate::cds::fetch::{fill, CallBudget, FetchError};
use crate::cds::request::{self, HookRequest, ParseError};
use crate::cds::services::{self, CONDITION, OBSERVATION, PATIENT};
use crate::error::ApiError;
use crate::routes::guidelines;
use crate::startup::AppState;

/// The version of `guideline` that answers for `issuer` (`None`: not yet known, as for
/// discovery).
fn rule_set<'s>(
    state: &'s AppState,
    guideline: &str,
    issuer: Option<&str>,
) -> Result<&'s std::sync::Arc<RuleSet>, ApiError> {
    state
        .pins
        .in_force(&state.catalog, guideline, issuer)
        .map(|(rs, _)| rs)
        .ok_or(ApiError::Unavailable)
}

#[get("/cds-services")]
pub async fn discovery(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let mut entries = Vec::new();
    for s in state.catalog.services() {
        let rs = rule_set(&state, &s.guideline, None)?;
        let d = state
            .catalog
            .declaration(&s.guideline)
            .ok_or(ApiError::Unavailable)?;
        let mut sets = vec![rs.as_ref()];
        sets.extend(
            state
                .pins
                .shadows(&state.catalog, &s.guideline)
                .into_iter()
                .map(|c| c.as_ref()),
        );
        entries.push((s, sets, d));
    }
    Ok(HttpResponse::Ok().json(services::discovery(entries.into_iter())))
}

fn service<'s>(state: &'s AppState, id: &str) -> Result<&'s Service, ApiError> {
    state
        .catalog
        .service(id)
        .ok_or_else(|| ApiError::UnknownResource("no CDS service with this id".into()))
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

/// What makes two drafts the same decision: the rule set and version, the decision ids and
/// the activities prescribed.
fn decision_key(d: &stride_guideline::Decision) -> String {
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

/// The prefetch key an EHR may fill with the patient's CarePlans (not a template of ours:
/// nothing is fetched when it is absent).
const CAREPLAN: &str = "CarePlan";

/// The patient's phase as clinic staff approved it: the newest active CarePlan of this
/// guideline, from Stride's store (approved on the review page) or from the prefetch. Its
/// phase and the day it took effect (the clinic's date) are the phase state.
async fn approved_phase(
    state: &AppState,
    rs: &RuleSet,
    tenant: &str,
    patient_ref: &str,
    intake: &Intake,
    zone: &ClinicZone,
) -> Result<Option<PhaseState>, ApiError> {
    let mut best: Option<(OffsetDateTime, PhaseState)> = None;
    let mut consider = |at: OffsetDateTime, ps: PhaseState| {
        if best.as_ref().is_none_or(|(t, _)| at > *t) {
            best = Some((at, ps));
        }
    };
    let stored = state
        .store
        .latest_approved(tenant, patient_ref, &rs.doc.id)
        .await
        .map_err(|e| {
            // Without the approved phase the decision could differ: no answer (fail closed,
            // as for the write).
            tracing::error!(error = %e, "approved CarePlans could not be read: answering 503");
            ApiError::Unavailable
        })?;
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

/// What a hook call brings to a fallback fetch: where it may fetch from, its byte budget,
/// and its processing slot, given back while it waits on the EHR's server.
struct Fetching<'a> {
    policy: FhirPolicy<'a>,
    budget: CallBudget,
    slot: admission::Slot<'a>,
}

/// One generic answer for every failed fetch: the cause (a closed port, a silent one, an HTTP
/// error, a refused address) is in the logs and metrics, never in what the caller reads.
const FETCH_FAILED: &str = "could not be fetched from the fhirServer the request names";

/// Read one prefetch key into the intake, fetching it from the EHR's FHIR server when the
/// prefetch did not bring it. `Err` when required data can be neither prefetched nor fetched.
async fn gather(
    state: &AppState,
    // The version in force and any candidate in shadow: a fetch asks for what both read.
    read: &[&RuleSet],
    req: &HookRequest<'_>,
    key: &str,
    intake: &mut Intake,
    fetching: &mut Fetching<'_>,
) -> Result<(), ApiError> {
    let fetchable = req.fhir_server.as_ref();
    match (slot(req, key), fetchable) {
        (Slot::Data(v), _) => {
            intake.add(v);
            Ok(())
        }
        (Slot::Empty, None) => Ok(()),
        (Slot::Empty | Slot::NotProvided, Some(server)) => {
            let template = services::prefetch(read)
                .into_iter()
                .find(|(k, _)| *k == key)
                .map(|(_, t)| t)
                .unwrap_or_default();
            let query = fill(&template, &req.context.patient_id);
            let started = std::time::Instant::now();
            let Fetching {
                policy,
                budget,
                slot,
            } = fetching;
            let fetched = slot
                .outside(state.fetcher.fetch(
                    server,
                    &query,
                    req.access_token.as_deref(),
                    policy,
                    budget,
                ))
                .await
                .map_err(|refused| shed(state, refused))?;
            let outcome = if fetched.is_ok() { "ok" } else { "failed" };
            state
                .metrics
                .prefetch_fetch
                .with_label_values(&[outcome])
                .observe(started.elapsed().as_secs_f64());
            match fetched {
                Ok(pages) => {
                    pages.iter().for_each(|p| intake.add(p));
                    Ok(())
                }
                Err(e) => {
                    state
                        .metrics
                        .prefetch_failures
                        .with_label_values(&[e.reason()])
                        .inc();
                    tracing::warn!(key, reason = e.reason(), error = %e, "prefetch fallback fetch failed");
                    if e == FetchError::Busy {
                        state
                            .metrics
                            .hooks_refused
                            .with_label_values(&["fetch_busy"])
                            .inc();
                        return Err(ApiError::Overloaded);
                    }
                    Err(ApiError::PreconditionFailed(format!(
                        "`{key}` {FETCH_FAILED}"
                    )))
                }
            }
        }
        (Slot::NotProvided, None) => Err(ApiError::PreconditionFailed(format!(
            "`{key}` was not prefetched and the request names no fhirServer to fetch it from"
        ))),
    }
}

/// What makes a retry the same call: the service and every part of the request but the
/// access token (a retry carries a fresh one). From the members the request parse kept: a
/// second parse of the body cost a measurable share of a call (docs/benchmarks.md).
fn fingerprint(svc: &Service, req: &HookRequest<'_>) -> String {
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

enum Earlier {
    /// The hookInstance is new.
    None(CdsCaller),
    /// A retry by the caller that was answered: the answer it was given.
    Retry(stride_auth::Caller, String),
}

/// Exactly once per hookInstance: a call cut off after its record was committed (a replica
/// killed, the database lost before the 200) is retried by the EHR with a new token. The
/// same caller sending the same call again is given the stored answer — no second decision,
/// no second draft; anyone else naming that hookInstance is refused. The same caller may
/// send other calls under it (test harnesses reuse the specification's example uuid): each
/// is a call of its own.
async fn answered_before(
    state: &AppState,
    cds_caller: CdsCaller,
    hook_instance: &str,
    fingerprint: &str,
) -> Result<Earlier, ApiError> {
    let stored = state.store.hook_answers(hook_instance).await.map_err(|e| {
        tracing::error!(error = %e, "stored answers could not be read: answering 503");
        ApiError::Unavailable
    })?;
    let ours =
        |a: &HookAnswer| a.tenant == cds_caller.tenant() && a.caller_issuer == cds_caller.issuer();
    if !stored.iter().all(ours) {
        state
            .metrics
            .hooks_refused
            .with_label_values(&["hook_instance_reused"])
            .inc();
        tracing::warn!("a hookInstance answered for another caller was sent again");
        return Err(ApiError::Conflict(
            "this hookInstance belongs to another caller's call; each call needs its own".into(),
        ));
    }
    let Some(answer) = stored.into_iter().find(|a| a.fingerprint == fingerprint) else {
        return Ok(Earlier::None(cds_caller));
    };
    let caller = cds_caller.settled().await?;
    Ok(Earlier::Retry(caller, answer.response))
}

/// A call answered 503 before evaluation, counted by why.
fn shed(state: &AppState, refused: Refused) -> ApiError {
    if matches!(refused, Refused::QueueFull | Refused::TimedOut) {
        state.metrics.hooks_shed.inc();
    }
    state
        .metrics
        .hooks_refused
        .with_label_values(&[refused.as_str()])
        .inc();
    tracing::warn!(reason = refused.as_str(), "shedding a hook call");
    ApiError::Overloaded
}

#[post("/cds-services/{id}")]
#[tracing::instrument(name = "cds hook", skip_all, fields(service = %path.as_str(), hook = tracing::field::Empty, decision = tracing::field::Empty, outcome = tracing::field::Empty))]
pub async fn call(
    http: HttpRequest,
    cds_caller: CdsCaller,
    path: web::Path<String>,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let svc = service(&state, &path)?;
    tracing::Span::current().record("hook", svc.hook.name());
    let rs = rule_set(&state, &svc.guideline, Some(cds_caller.issuer()))?.clone();
    // A candidate version evaluated beside it, recorded and never shown.
    let shadow = state
        .pins
        .shadow(&state.catalog, &svc.guideline, Some(cds_caller.issuer()))
        .cloned();
    let read: Vec<&RuleSet> = std::iter::once(rs.as_ref())
        .chain(shadow.as_deref())
        .collect();
    let _share = state
        .tenant_share
        .enter(cds_caller.tenant())
        .map_err(|refused| shed(&state, refused))?;
    // Read the raw body first (a slow sender must not hold a processing slot), then wait for
    // a slot: under overload, a bounded number of calls wait here as bytes and the rest are
    // shed, rather than all parsed and evaluated at once.
    let raw = read_body(&http, payload, BodyLimits::of(&state.settings)).await?;
    let slot = state
        .admission
        .admit()
        .await
        .map_err(|refused| shed(&state, refused))?;
    let mut fetching = Fetching {
        policy: state
            .verifier
            .issuer(cds_caller.issuer())
            .map(FhirPolicy::from_issuer)
            .unwrap_or_default(),
        budget: state.fetcher.call_budget(),
        slot,
    };
    let req = request::parse(&raw, svc.hook, state.settings.public_url.is_loopback()).map_err(
        |e| match e {
            ParseError::Malformed(m) => ApiError::MalformedJson(m),
            ParseError::Invalid(m) => ApiError::BadRequest(m),
        },
    )?;
    let fingerprint = fingerprint(svc, &req);
    let cds_caller = match answered_before(&state, cds_caller, &req.hook_instance, &fingerprint)
        .await?
    {
        Earlier::Retry(caller, response) => {
            let mut audit = audit::entry(&http, audit::Action::HookRetry, "success", Some(&caller));
            audit.hook = Some(svc.hook.name().to_owned());
            audit.hook_instance = Some(req.hook_instance.clone());
            audit.service_id = Some(svc.id.clone());
            audit.patient_ref = Some(format!("Patient/{}", req.context.patient_id));
            state.store.append_audit(&audit).await.map_err(|e| {
                tracing::error!(error = %e, "retry audit entry not written: answering 503");
                ApiError::Unavailable
            })?;
            tracing::Span::current().record("outcome", "retry answered");
            return Ok(HttpResponse::Ok()
                .content_type("application/json")
                .body(response));
        }
        Earlier::None(c) => c,
    };
    let now = OffsetDateTime::now_utc();
    // "Today" and every record's day are the clinic's local dates (its trust-file zone, else
    // the offsets its EHR writes), re-read once the Observations are in too.
    let zone = ClinicZone::for_tenant(cds_caller.timezone());
    let patient_ref = format!("Patient/{}", req.context.patient_id);

    let mut intake = Intake::default();
    gather(&state, &read, &req, CONDITION, &mut intake, &mut fetching).await?;
    if let Some(orders) = req.context.draft_orders {
        intake.add(orders);
    }
    let mut as_of = intake.localise(&zone, now);
    // Observations matter only when an episode activates the guideline: a patient without
    // one is answered from the Conditions alone.
    let conditions = Facts {
        phase_state: None,
        records: std::mem::take(&mut intake.records),
    };
    let episode = evaluate(&rs, &conditions, as_of);
    intake.records = conditions.records;
    let mut phase_state = None;
    if episode.applies {
        gather(&state, &read, &req, OBSERVATION, &mut intake, &mut fetching).await?;
        // A rule set that reads an age gets the Patient's birth date (prefetched; without it
        // the age is unknown and said so in the trace).
        if read.iter().any(|r| r.reads(RecordKind::Patient)) {
            if let Some(patient) = req
                .prefetch
                .get(PATIENT)
                .filter(|v| resource_type(v).is_some())
            {
                intake.read_patients = true;
                intake.add(patient);
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
        as_of = intake.localise(&zone, now);
        phase_state = approved_phase(
            &state,
            &rs,
            cds_caller.tenant(),
            &patient_ref,
            &intake,
            &zone,
        )
        .await?;
    }
    let unread: Vec<String> = intake
        .problems
        .iter()
        .map(|p| format!("{} — {}", p.source, p.message))
        .collect();
    let facts = Facts {
        phase_state,
        records: intake.records,
    };
    let decision = tracing::info_span!("evaluate", rule_set = %rs.doc.id, version = %rs.doc.version, records = facts.records.len())
        .in_scope(|| evaluate(&rs, &facts, as_of));
    // Shadow: the candidate decides the same facts on the same day; only the record shows it.
    let shadowed = shadow.as_ref().map(|candidate| {
        let d = tracing::info_span!("evaluate shadow", version = %candidate.doc.version)
            .in_scope(|| evaluate(candidate, &facts, as_of));
        let ids: Vec<String> = d.decision_ids().iter().map(|s| s.to_string()).collect();
        let differs = ids != decision.decision_ids();
        state
            .metrics
            .shadow_evaluations
            .with_label_values(&[if differs { "differs" } else { "same" }])
            .inc();
        json!({
            "version": candidate.doc.version.to_string(),
            "contentHash": candidate.content_hash,
            "decisionIds": ids,
            "differs": differs,
        })
    });
    tracing::Span::current().record(
        "decision",
        tracing::field::display(decision.decision_ids().join(",")),
    );

    let patient_view = svc.hook == services::Hook::PatientView;
    let drafting = patient_view && decision.applies;
    // One draft per patient and decision: the patient's pending draft of the same decision is
    // reused (the review queue never holds two alike); every call keeps its own audit entry.
    let key = drafting.then(|| decision_key(&decision));
    let pending = match &key {
        Some(k) => state
            .store
            .pending_draft(cds_caller.tenant(), &patient_ref, k)
            .await
            .map_err(|e| {
                tracing::error!(error = %e, "pending drafts could not be read: answering 503");
                ApiError::Unavailable
            })?,
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
    let plan = match (&pending, drafting) {
        (Some(p), _) => Some(p.resource.clone()),
        (None, true) => Some(careplan(&rs, &decision, &ctx).map_err(|e| ApiError::internal(&e))?),
        (None, false) => None,
    };
    let imaging = if decision.red_flags.iter().any(|f| f.suggest_imaging) {
        Some(
            imaging_request(
                &rs,
                &decision,
                &req.context.patient_id,
                &Uuid::new_v4().to_string(),
            )
            .map_err(|e| ApiError::internal(&e))?,
        )
    } else {
        None
    };
    let public = state.settings.public_url.as_str();
    let made = cards(&CardInputs {
        rs: &rs,
        decision: &decision,
        guideline_url: guidelines::url(public, &rs.doc.id, &rs.doc.version),
        careplan: plan.as_ref(),
        careplan_url: plan
            .as_ref()
            .map(|_| format!("{public}/ui/careplans/{plan_id}")),
        imaging: imaging.as_ref(),
        unread: &unread,
        phase_card: patient_view,
    });

    // The token's claim becomes durable with the call's record (below), in one write.
    let (caller, claim) = cds_caller.into_parts();
    // A reused draft is stored already: the call's cards and audit entry point at it.
    let reused = pending.is_some();
    let careplan_row = plan.filter(|_| !reused).map(|resource| NewCarePlan {
        id: plan_id,
        tenant: caller.tenant.clone(),
        patient_ref: patient_ref.clone(),
        status: "draft".into(),
        rule_set_id: rs.doc.id.clone(),
        rule_set_version: rs.doc.version.to_string(),
        phase: decision.phase.clone().unwrap_or_default(),
        red_flag: !decision.red_flags.is_empty(),
        resource,
        created_at: now,
        decision_key: key.clone(),
    });
    let mut audit = audit::entry(&http, audit::Action::HookCall, "success", Some(&caller));
    audit.hook = Some(svc.hook.name().to_owned());
    audit.hook_instance = Some(req.hook_instance.clone());
    audit.service_id = Some(svc.id.clone());
    audit.patient_ref = Some(patient_ref.clone());
    audit.as_of = Some(as_of.to_string());
    audit.facts = Some(AuditFacts::from_canonical(&facts).map_err(|e| ApiError::internal(&e))?);
    audit.rule_set_id = Some(rs.doc.id.clone());
    audit.rule_set_version = Some(rs.doc.version.to_string());
    audit.rule_set_hash = Some(rs.content_hash.clone());
    audit.decision_ids = decision
        .decision_ids()
        .iter()
        .map(|d| d.to_string())
        .collect();
    audit.card_uuids = made.iter().map(|c| c.uuid.to_string()).collect();
    let planned = (careplan_row.is_some() || reused).then_some(plan_id);
    audit.careplan_id = planned;
    if reused {
        audit.details["careplan_reused"] = json!(true);
    }
    audit.details["user"] = json!(req.context.user_id);
    if let Some(shadow) = shadowed {
        audit.details["shadow"] = shadow;
    }
    if !unread.is_empty() {
        audit.details["unread"] = json!(unread);
    }
    // The answer is made before the record, so that it is stored with it for a retry.
    #[derive(serde::Serialize)]
    struct Answer<'a> {
        cards: Vec<&'a Json>,
    }
    let response = serde_json::to_string(&Answer {
        cards: made.iter().map(|c| &c.json).collect(),
    })
    .map_err(|e| ApiError::internal(&e))?;
    let record = HookRecord {
        answer: Some(HookAnswer {
            hook_instance: req.hook_instance.clone(),
            tenant: caller.tenant.clone(),
            caller_issuer: caller.issuer.clone(),
            fingerprint,
            response: response.clone(),
            created_at: now,
        }),
        audit,
        careplan: careplan_row,
        cards: made
            .iter()
            .map(|c| NewCard {
                uuid: c.uuid,
                tenant: caller.tenant.clone(),
                service_id: svc.id.clone(),
                hook_instance: req.hook_instance.clone(),
                decision_id: c.decision_id.clone(),
                careplan_id: planned,
                created_at: now,
            })
            .collect(),
    };
    // No record, no answer: a card the clinic cannot trace must not be shown. Whatever made
    // the write fail, the caller may retry, and gets no card now (fail closed).
    let started = std::time::Instant::now();
    let written = state.store.record_hook_claimed(record, claim).await;
    state
        .metrics
        .store_write
        .with_label_values(&["hook_record"])
        .observe(started.elapsed().as_secs_f64());
    if let Err(e) = written {
        tracing::error!(error = %e, "hook record (CarePlan, cards, audit entry) not written: answering 503");
        return Err(ApiError::Unavailable);
    }
    for id in decision.decision_ids() {
        state.metrics.decisions.with_label_values(&[id]).inc();
    }
    tracing::Span::current().record("outcome", "answered");
    Ok(HttpResponse::Ok()
        .content_type("application/json")
        .body(response))
}

fn feedback_entries(
    svc: &Service,
    tenant: &str,
    body: &Json,
    now: OffsetDateTime,
) -> Result<Vec<NewFeedback>, String> {
    let list = body
        .get("feedback")
        .and_then(Json::as_array)
        .ok_or("feedback: required, an array")?;
    if list.is_empty() {
        return Err("feedback: must hold at least one entry".into());
    }
    list.iter()
        .enumerate()
        .map(|(i, f)| {
            let at = |field: &str| format!("feedback[{i}].{field}");
            let card = f
                .get("card")
                .and_then(Json::as_str)
                .filter(|s| !s.is_empty())
                .ok_or_else(|| at("card") + ": required string")?;
            let outcome = f
                .get("outcome")
                .and_then(Json::as_str)
                .ok_or_else(|| at("outcome") + ": required")?;
            match outcome {
                "accepted" => {
                    if f.get("overrideReason").is_some() {
                        return Err(at("overrideReason") + ": only for overridden cards");
                    }
                }
                "overridden" => {
                    if f.get("acceptedSuggestions").is_some() {
                        return Err(at("acceptedSuggestions") + ": only for accepted cards");
                    }
                }
                _ => return Err(at("outcome") + ": must be accepted or overridden"),
            }
            if let Some(s) = f.get("acceptedSuggestions") {
                let ok = s.as_array().is_some_and(|a| {
                    a.iter()
                        .all(|x| x.get("id").and_then(Json::as_str).is_some())
                });
                if !ok {
                    return Err(at("acceptedSuggestions") + ": must be an array of {id}");
                }
            }
            if let Some(r) = f.get("overrideReason") {
                if !r.is_object() {
                    return Err(at("overrideReason") + ": must be an object");
                }
                if let Some(reason) = r.get("reason") {
                    if reason.get("code").and_then(Json::as_str).is_none()
                        || reason.get("system").and_then(Json::as_str).is_none()
                    {
                        return Err(
                            at("overrideReason.reason") + ": a Coding needs system and code"
                        );
                    }
                }
            }
            let ts = f
                .get("outcomeTimestamp")
                .and_then(Json::as_str)
                .ok_or_else(|| at("outcomeTimestamp") + ": required")?;
            let ts = OffsetDateTime::parse(ts, &time::format_description::well_known::Rfc3339)
                .map_err(|_| {
                    at("outcomeTimestamp") + ": must be an ISO 8601 date-time with offset"
                })?;
            if ts > now + time::Duration::minutes(5) {
                return Err(at("outcomeTimestamp") + ": is in the future");
            }
            Ok(NewFeedback {
                id: stride_store::new_row_id(),
                tenant: tenant.to_owned(),
                service_id: svc.id.clone(),
                card_uuid: card.to_owned(),
                outcome: outcome.to_owned(),
                details: f.clone(),
                outcome_timestamp: ts,
                received_at: now,
            })
        })
        .collect()
}

#[post("/cds-services/{id}/feedback")]
#[tracing::instrument(name = "cds feedback", skip_all, fields(service = %path.as_str()))]
pub async fn feedback(
    http: HttpRequest,
    cds_caller: CdsCaller,
    path: web::Path<String>,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let svc = service(&state, &path)?;
    let body = read_json(&http, payload, BodyLimits::of(&state.settings)).await?;
    let entries = feedback_entries(svc, cds_caller.tenant(), &body, OffsetDateTime::now_utc())
        .map_err(ApiError::BadRequest)?;
    let caller = cds_caller.settled().await?;
    let mut audit = audit::entry(&http, audit::Action::Feedback, "success", Some(&caller));
    audit.service_id = Some(svc.id.clone());
    audit.card_uuids = entries.iter().map(|f| f.card_uuid.clone()).collect();
    audit.details["outcomes"] = entries
        .iter()
        .map(|f| json!({"card": f.card_uuid, "outcome": f.outcome}))
        .collect();
    if let Err(e) = state.store.insert_feedback(&entries, &audit).await {
        tracing::error!(error = %e, "feedback and its audit entry not written: answering 503");
        return Err(ApiError::Unavailable);
    }
    Ok(HttpResponse::Ok().finish())
}
