//! The decision log for auditors (`audit.read`): search and export (NDJSON or a FHIR Bundle of
//! AuditEvents, streamed), one entry, chain verification and replay. Every read is audited.

use actix_web::{get, web, HttpRequest, HttpResponse};
use serde::Deserialize;
use serde_json::json;
use stride_store::AuditQuery;

use stride_app::decision_log;

use crate::audit;
use crate::auth::{AuditRead, Staff};
use crate::error::ApiError;
use crate::state::AppState;

#[derive(Deserialize)]
pub struct Search {
    patient: Option<String>,
    caller: Option<String>,
    #[serde(rename = "ruleSetVersion")]
    rule_set_version: Option<String>,
    decision: Option<String>,
    since: Option<String>,
    until: Option<String>,
    #[serde(rename = "_format")]
    format: Option<String>,
    #[serde(rename = "_count")]
    count: Option<i64>,
}

fn micros(field: &str, v: &Option<String>) -> Result<Option<i64>, ApiError> {
    v.as_deref()
        .map(|s| {
            time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
                .map(|t| (t.unix_timestamp_nanos() / 1000) as i64)
                .map_err(|_| {
                    ApiError::BadRequest(format!("{field}: an RFC 3339 date-time with offset"))
                })
        })
        .transpose()
}

#[get("/audit")]
#[tracing::instrument(name = "audit search", skip_all)]
pub async fn search(
    req: HttpRequest,
    staff: Staff<AuditRead>,
    q: web::Query<Search>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let bundle = match q.format.as_deref() {
        None | Some("ndjson") => false,
        Some("bundle") | Some("json") => true,
        Some(_) => return Err(ApiError::BadRequest("_format: ndjson or bundle".into())),
    };
    // The tenant is the actor's (`decision_log::search`).
    let query = AuditQuery {
        tenant: None,
        patient_ref: crate::params::patient(q.patient.as_deref())?,
        caller_subject: q.caller.clone(),
        rule_set_version: q.rule_set_version.clone(),
        decision_id: q.decision.clone(),
        since_us: micros("since", &q.since)?,
        until_us: micros("until", &q.until)?,
        limit: q.count.map(|c| c.clamp(1, 1_000_000)),
        action: None,
    };
    let asked = json!({"caller": q.caller, "ruleSetVersion": q.rule_set_version, "decision": q.decision,
                       "since": q.since, "until": q.until, "format": if bundle { "bundle" } else { "ndjson" }});
    let actor = audit::actor(&req, &staff.caller);
    let query = decision_log::search(state.store.as_ref(), &actor, query, None, asked).await?;
    Ok(audit::export(state.store.clone(), query, bundle))
}

#[get("/audit/verify")]
#[tracing::instrument(name = "audit verify", skip_all)]
pub async fn verify(
    req: HttpRequest,
    staff: Staff<AuditRead>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let actor = audit::actor(&req, &staff.caller);
    let keys = state.settings.audit_keys.as_ref().map(|k| &k.verify);
    let check = decision_log::verify(state.store.as_ref(), &actor, keys).await?;
    Ok(HttpResponse::Ok().json(decision_log::report(&check)))
}

#[get("/audit/{id}")]
pub async fn read(
    req: HttpRequest,
    staff: Staff<AuditRead>,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let actor = audit::actor(&req, &staff.caller);
    let a = decision_log::read(state.store.as_ref(), &actor, &path).await?;
    Ok(HttpResponse::Ok().json(audit::to_json(&a)))
}

#[derive(Deserialize)]
pub struct ReplayQuery {
    version: Option<String>,
}

#[get("/audit/{id}/replay")]
pub async fn replay_entry(
    req: HttpRequest,
    staff: Staff<AuditRead>,
    path: web::Path<String>,
    q: web::Query<ReplayQuery>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let actor = audit::actor(&req, &staff.caller);
    let result = decision_log::replay(
        state.store.as_ref(),
        &state.catalog,
        &actor,
        &path,
        q.version.as_deref(),
    )
    .await?;
    Ok(HttpResponse::Ok().json(result))
}

/// This module's endpoints (the order is the order they are matched in).
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(search)
        .service(verify)
        .service(replay_entry)
        .service(read);
}
