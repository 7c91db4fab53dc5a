//! The decision log for auditors (`audit.read`): search and export (NDJSON or a FHIR Bundle of
//! AuditEvents, streamed), one entry, chain verification and replay. Every read is audited.

use actix_web::web::Bytes;
use actix_web::{get, web, HttpRequest, HttpResponse};
use futures_util::StreamExt;
use serde::Deserialize;
use serde_json::json;
use stride_store::{AuditQuery, ChainCheck};
use tokio::sync::mpsc;

use stride_app::replay::{replay, ReplayError};
use stride_app::review::patient_ref;

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
    let caller = staff.caller;
    let bundle = match q.format.as_deref() {
        None | Some("ndjson") => false,
        Some("bundle") | Some("json") => true,
        Some(_) => return Err(ApiError::BadRequest("_format: ndjson or bundle".into())),
    };
    let query = AuditQuery {
        tenant: caller.tenant_scope().map(str::to_owned),
        patient_ref: q.patient.as_deref().map(patient_ref),
        caller_subject: q.caller.clone(),
        rule_set_version: q.rule_set_version.clone(),
        decision_id: q.decision.clone(),
        since_us: micros("since", &q.since)?,
        until_us: micros("until", &q.until)?,
        limit: q.count.map(|c| c.clamp(1, 1_000_000)),
        action: None,
    };
    let mut entry = audit::entry(&req, audit::Action::AuditRead, "success", Some(&caller));
    entry.patient_ref = query.patient_ref.clone();
    entry.details["query"] = json!({"caller": q.caller, "ruleSetVersion": q.rule_set_version, "decision": q.decision,
                                    "since": q.since, "until": q.until, "format": if bundle { "bundle" } else { "ndjson" }});
    state.store.append_audit(&entry).await?;

    Ok(export(state.store.clone(), query, bundle))
}

/// Stream the entries `query` selects as NDJSON or a FHIR Bundle of AuditEvents.
pub fn export(
    store: std::sync::Arc<dyn stride_store::Store>,
    query: AuditQuery,
    bundle: bool,
) -> HttpResponse {
    // Rows flow from the database to the client through a small channel: an export of any
    // size holds a few dozen entries in memory at a time.
    let (tx, rx) = mpsc::channel::<Result<Bytes, String>>(32);
    tokio::spawn(async move {
        let mut rows = store.audit_stream(&query, false);
        let mut first = true;
        if bundle
            && tx
                .send(Ok(Bytes::from_static(
                    br#"{"resourceType":"Bundle","type":"searchset""#,
                )))
                .await
                .is_err()
        {
            return;
        }
        while let Some(row) = rows.next().await {
            let chunk = match row {
                Ok(a) if bundle => match audit::to_event(&a) {
                    Ok(ev) => {
                        let sep = if first { r#","entry":["# } else { "," };
                        format!("{sep}{}", json!({"resource": ev}))
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "audit entry could not be rendered");
                        // Abort the response: a well-formed but cut-short export would lie.
                        let _ = tx.send(Err("export interrupted".into())).await;
                        return;
                    }
                },
                Ok(a) => format!("{}\n", audit::to_json(&a)),
                Err(e) => {
                    tracing::error!(error = %e, "audit export interrupted");
                    let _ = tx.send(Err("export interrupted".into())).await;
                    return;
                }
            };
            first = false;
            if tx.send(Ok(Bytes::from(chunk))).await.is_err() {
                return;
            }
        }
        if bundle {
            let end = if first { "}" } else { "]}" };
            let _ = tx.send(Ok(Bytes::from(end))).await;
        }
    });
    let body = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|c| (c.map_err(actix_web::error::ErrorInternalServerError), rx))
    });
    let content_type = if bundle {
        "application/fhir+json"
    } else {
        "application/x-ndjson"
    };
    HttpResponse::Ok()
        .content_type(content_type)
        .streaming(body)
}

#[get("/audit/verify")]
#[tracing::instrument(name = "audit verify", skip_all)]
pub async fn verify(
    req: HttpRequest,
    staff: Staff<AuditRead>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let caller = staff.caller;
    let query = AuditQuery {
        tenant: caller.tenant_scope().map(str::to_owned),
        ..AuditQuery::default()
    };
    let check = verify_chain(&state, &query).await?;
    let mut entry = audit::entry(&req, audit::Action::AuditVerify, "success", Some(&caller));
    entry.details["result"] = report(&check);
    state.store.append_audit(&entry).await?;
    Ok(HttpResponse::Ok().json(report(&check)))
}

pub async fn verify_chain(state: &AppState, query: &AuditQuery) -> Result<ChainCheck, ApiError> {
    let keys = state.settings.audit_keys.as_ref().map(|k| &k.verify);
    Ok(check_chain(state.store.as_ref(), query, keys, &[]).await?)
}

/// Walk the chains `query` selects: first the retention checkpoints (where chains were cut),
/// then every entry in chain order.
pub async fn check_chain(
    store: &dyn stride_store::Store,
    query: &AuditQuery,
    keys: Option<&stride_store::seal::SealKeys>,
    outside: &[stride_store::seal::Checkpoint],
) -> Result<ChainCheck, stride_store::StoreError> {
    let check = match keys {
        Some(k) => ChainCheck::with_keys(k.clone()),
        None => ChainCheck::default(),
    };
    let mut check = check.retention_runs(store.backend() == stride_store::Backend::Postgres);
    for cp in outside
        .iter()
        .filter(|cp| query.tenant.as_ref().is_none_or(|t| *t == cp.tenant))
    {
        check.outside_checkpoint(cp);
    }
    let checkpoints = AuditQuery {
        action: Some(stride_store::RETENTION_CHECKPOINT.into()),
        ..query.clone()
    };
    let mut rows = store.audit_stream(&checkpoints, true);
    while let Some(row) = rows.next().await {
        check.anchor(&row?);
    }
    let mut rows = store.audit_stream(query, true);
    while let Some(row) = rows.next().await {
        check.push(&row?);
    }
    check.finish();
    Ok(check)
}

pub fn report(check: &ChainCheck) -> serde_json::Value {
    let mut r = json!({"status": if check.broken.is_none() { "intact" } else { "broken" }, "entries": check.entries, "tenants": check.tenants});
    if check.sealed + check.unsealed > 0 {
        r["sealed"] = json!(check.sealed);
        r["unsealed"] = json!(check.unsealed);
    }
    if check.checkpoints > 0 {
        r["checkpoints"] = json!(check.checkpoints);
    }
    if let Some(b) = &check.broken {
        r["firstBrokenLink"] =
            json!({"tenant": b.tenant, "seq": b.seq, "id": b.id, "reason": b.reason});
    }
    r
}

async fn load(
    staff: Staff<AuditRead>,
    state: &AppState,
    id: &str,
) -> Result<(stride_auth::Caller, stride_store::AuditEntry), ApiError> {
    let caller = staff.caller;
    let not_found = || ApiError::UnknownResource("no audit entry with this id".into());
    let id = uuid::Uuid::parse_str(id).map_err(|_| not_found())?;
    let a = state.store.audit_entry(id).await.map_err(|e| match e {
        stride_store::StoreError::NotFound => not_found(),
        other => other.into(),
    })?;
    if !caller.may_see(&a.entry.tenant) {
        return Err(not_found());
    }
    Ok((caller, a))
}

#[get("/audit/{id}")]
pub async fn read(
    req: HttpRequest,
    staff: Staff<AuditRead>,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let (caller, a) = load(staff, &state, &path).await?;
    let mut entry = audit::entry(&req, audit::Action::AuditRead, "success", Some(&caller));
    entry.patient_ref = a.entry.patient_ref.clone();
    entry.details["entry"] = json!(a.entry.id);
    state.store.append_audit(&entry).await?;
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
    let (caller, a) = load(staff, &state, &path).await?;
    let result = replay(&state.catalog, &a, q.version.as_deref()).map_err(|e| match e {
        ReplayError::UnknownVersion(..) | ReplayError::NotADecision => {
            ApiError::BadRequest(e.to_string())
        }
        ReplayError::Unreadable(m) => ApiError::Internal(m),
    })?;
    let mut entry = audit::entry(&req, audit::Action::AuditReplay, "success", Some(&caller));
    entry.patient_ref = a.entry.patient_ref.clone();
    entry.details["entry"] = json!(a.entry.id);
    entry.details["identical"] = json!(result.identical);
    state.store.append_audit(&entry).await?;
    Ok(HttpResponse::Ok().json(result))
}

/// This module's endpoints (the order is the order they are matched in).
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(search)
        .service(verify)
        .service(replay_entry)
        .service(read);
}
