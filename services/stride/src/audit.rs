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
        id: uuid::Uuid::new_v4(),
        tenant: caller
            .map(tenant_of)
            .unwrap_or_else(|| UNAUTHENTICATED.to_owned()),
        recorded_us: now_us(),
        action: action.to_owned(),
        outcome: outcome.to_owned(),
        caller_issuer: caller.map(|c| c.issuer.clone()),
        caller_subject: caller.map(|c| c.subject.clone()),
        trace_id: req.extensions().get::<RequestId>().map(|r| r.to_string()),
        details: json!({"route": req.match_pattern().unwrap_or_default(), "method": req.method().as_str()}),
        ..NewAuditEntry::default()
    }
}

/// Record a refused request. Best effort: a refusal is answered even when the log is down.
pub async fn refused(req: &HttpRequest, state: &AppState, reason: &str) {
    let mut e = entry(req, "refused", "refused", None);
    e.details["reason"] = json!(reason);
    if let Err(err) = state.store.append_audit(&e).await {
        tracing::warn!(error = %err, "could not record a refused request");
    }
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
        v["facts"] = f.clone();
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
