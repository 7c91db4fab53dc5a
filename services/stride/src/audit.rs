//! Building audit entries for what happens at the edge: hook calls, feedback, staff reads,
//! auditor reads and refused requests. The store chains and keeps them.

use actix_web::{HttpMessage, HttpRequest};
use serde_json::{json, Value as Json};
use stride_auth::Caller;
use stride_store::{AuditEntry, NewAuditEntry};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use tracing_actix_web::RequestId;

use crate::startup::AppState;

/// The chain of callers that could not be authenticated.
pub const UNAUTHENTICATED: &str = "(unauthenticated)";

pub fn now_us() -> i64 {
    (OffsetDateTime::now_utc().unix_timestamp_nanos() / 1000) as i64
}

pub fn tenant_of(caller: &Caller) -> String {
    caller.tenant.clone()
}

/// An entry for `action` by `caller`, with the request's id as its trace id.
pub fn entry(
    req: &HttpRequest,
    action: &str,
    outcome: &str,
    caller: Option<&Caller>,
) -> NewAuditEntry {
    NewAuditEntry {
        id: stride_store::new_row_id(),
        tenant: caller
            .map(tenant_of)
            .unwrap_or_else(|| UNAUTHENTICATED.to_owned()),
        recorded_us: now_us(),
        action: action.to_owned(),
        outcome: outcome.to_owned(),
        caller_issuer: caller.map(|c| c.issuer.clone()),
        caller_subject: caller.map(|c| c.subject.clone()),
        trace_id: trace_id().or_else(|| req.extensions().get::<RequestId>().map(|r| r.to_string())),
        details: json!({"route": req.match_pattern().unwrap_or_default(), "method": req.method().as_str()}),
        ..NewAuditEntry::default()
    }
}

/// The OpenTelemetry trace id of the current request, when traces are being recorded.
fn trace_id() -> Option<String> {
    use opentelemetry::trace::TraceContextExt;
    use tracing_opentelemetry::OpenTelemetrySpanExt;
    let cx = tracing::Span::current().context();
    let sc = cx.span().span_context().clone();
    sc.is_valid().then(|| sc.trace_id().to_string())
}

/// Record a refused request, off the request path: a flood of bad tokens must not queue
/// real hook calls behind its audit writes. Entries go through a bounded queue written at a
/// bounded rate; when it is full the refusal is counted in the metrics instead
/// (`stride_audit_refusals_dropped_total`), never silently lost.
pub fn refused(req: &HttpRequest, state: &AppState, reason: &str) {
    let mut e = entry(req, "refused", "refused", None);
    e.details["reason"] = json!(reason);
    if state.refusals.try_send(e).is_err() {
        state.metrics.audit_refusals_dropped.inc();
    }
}

/// Refused requests written one by one, at most [`REFUSALS_PER_SECOND`].
pub const REFUSALS_PER_SECOND: u64 = 50;

pub fn refusal_writer(
    store: std::sync::Arc<dyn stride_store::Store>,
) -> tokio::sync::mpsc::Sender<NewAuditEntry> {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<NewAuditEntry>(256);
    tokio::spawn(async move {
        while let Some(e) = rx.recv().await {
            if let Err(err) = store.append_audit(&e).await {
                tracing::warn!(error = %err, "could not record a refused request");
            }
            tokio::time::sleep(std::time::Duration::from_millis(1000 / REFUSALS_PER_SECOND)).await;
        }
    });
    tx
}

pub fn recorded(a: &AuditEntry) -> String {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(a.entry.recorded_us) * 1000)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_default()
}

/// The entry as auditors read it (NDJSON export, `GET /audit/{id}`).
pub fn to_json(a: &AuditEntry) -> Json {
    let e = &a.entry;
    let mut v = json!({
        "id": e.id, "tenant": e.tenant, "seq": a.seq, "recorded": recorded(a), "action": e.action, "outcome": e.outcome,
        "decisionIds": e.decision_ids, "cardUuids": e.card_uuids, "details": e.details, "prevHash": a.prev_hash, "hash": a.hash,
    });
    let optional = [
        ("callerIssuer", e.caller_issuer.clone()),
        ("callerSubject", e.caller_subject.clone()),
        ("hook", e.hook.clone()),
        ("hookInstance", e.hook_instance.clone()),
        ("serviceId", e.service_id.clone()),
        ("patient", e.patient_ref.clone()),
        ("asOf", e.as_of.clone()),
        ("inputDigest", a.input_digest.clone()),
        ("ruleSetId", e.rule_set_id.clone()),
        ("ruleSetVersion", e.rule_set_version.clone()),
        ("ruleSetHash", e.rule_set_hash.clone()),
        ("carePlanId", e.careplan_id.map(|u| u.to_string())),
        ("traceId", e.trace_id.clone()),
    ];
    for (k, val) in optional {
        if let Some(val) = val {
            v[k] = json!(val);
        }
    }
    if let Some(f) = &e.facts {
        v["facts"] = f.json();
    }
    v
}

pub fn to_event(a: &AuditEntry) -> Result<Json, stride_fhir::careplan::RenderError> {
    let e = &a.entry;
    let id = e.id.to_string();
    let recorded = recorded(a);
    let careplan = e.careplan_id.map(|u| u.to_string());
    stride_fhir::audit_event::audit_event(&stride_fhir::audit_event::AuditView {
        id: &id,
        recorded: &recorded,
        action: &e.action,
        outcome: &e.outcome,
        caller_issuer: e.caller_issuer.as_deref(),
        caller_subject: e.caller_subject.as_deref(),
        patient_ref: e.patient_ref.as_deref(),
        careplan_id: careplan.as_deref(),
        hook: e.hook.as_deref(),
        hook_instance: e.hook_instance.as_deref(),
        rule_set: e
            .rule_set_id
            .as_ref()
            .map(|i| format!("{i}|{}", e.rule_set_version.as_deref().unwrap_or(""))),
        decision_ids: &e.decision_ids,
        input_digest: a.input_digest.as_deref(),
        hash: &a.hash,
        prev_hash: &a.prev_hash,
        seq: a.seq,
        tenant: &e.tenant,
    })
}
