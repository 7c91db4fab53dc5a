//! The rule sets Stride decides with, published read-only: every version stays reachable,
//! because cards and CarePlans point at the exact version that made them.

use actix_web::{get, web, HttpRequest, HttpResponse};
use stride_guideline::RuleSetVersion;

use crate::error::ApiError;
use crate::state::AppState;

/// Every guideline, its versions with their status and effective period, and the default
/// version. Which version answers each clinic names the clinics: only for staff, and only
/// their own clinic unless their issuer sees every tenant. A token that does not verify is
/// refused (as on every staff endpoint); no token is an anonymous reader.
#[get("/guidelines")]
pub async fn list(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let caller = match req.headers().get(actix_web::http::header::AUTHORIZATION) {
        None => None,
        Some(_) => Some(crate::auth::staff_any(&req, &state).await?),
    };
    let public = state.settings.public_url.as_str();
    let mut out: Vec<serde_json::Value> = Vec::new();
    let mut ids: Vec<&str> = state.catalog.iter().map(|rs| rs.doc.id.as_str()).collect();
    ids.dedup();
    for id in ids {
        let versions: Vec<serde_json::Value> = state
            .catalog
            .iter()
            .filter(|rs| rs.doc.id == id)
            .map(|rs| {
                serde_json::json!({
                    "version": rs.doc.version.to_string(),
                    "status": rs.doc.status,
                    "effective": rs.doc.effective,
                    "url": stride_app::guideline_url(public, id, &rs.doc.version),
                })
            })
            .collect();
        let default = state.pins.in_force(&state.catalog, id, None);
        let tenants: serde_json::Map<String, serde_json::Value> = state
            .pins
            .tenants_with_shadow(&state.catalog, id)
            .into_iter()
            .filter(|(t, ..)| caller.as_ref().is_some_and(|c| c.may_see(t)))
            .map(|(t, rs, source, shadow)| {
                let mut entry = serde_json::json!({"version": rs.doc.version.to_string(), "chosenBy": source.as_str()});
                if let Some(candidate) = shadow {
                    entry["shadow"] = serde_json::json!(candidate.doc.version.to_string());
                }
                (t, entry)
            })
            .collect();
        let mut g = serde_json::json!({"id": id, "versions": versions});
        if !tenants.is_empty() {
            g["tenants"] = serde_json::Value::Object(tenants);
        }
        if let Some((rs, source)) = default {
            g["title"] = serde_json::json!(rs.doc.title);
            g["default"] = serde_json::json!({"version": rs.doc.version.to_string(), "chosenBy": source.as_str()});
        }
        out.push(g);
    }
    Ok(HttpResponse::Ok().json(serde_json::json!({ "guidelines": out })))
}

#[get("/guidelines/{id}/{version}")]
pub async fn rule_set(
    path: web::Path<(String, String)>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let (id, version) = path.into_inner();
    let version: RuleSetVersion = version
        .parse()
        .map_err(|_| ApiError::UnknownResource("no such rule-set version".into()))?;
    let rs = state
        .catalog
        .get(&id, &version)
        .ok_or_else(|| ApiError::UnknownResource("no such rule-set version".into()))?;
    Ok(HttpResponse::Ok()
        .insert_header(("etag", format!("\"{}\"", rs.content_hash)))
        .json(&rs.doc))
}

/// This module's endpoints (the order is the order they are matched in).
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(list).service(rule_set);
}
