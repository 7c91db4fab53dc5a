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
        // Sign-offs and the clinics a version answers for name clinics and staff: for staff,
        // within the clinics they may see.
        let sign_offs = match &caller {
            Some(c) => stride_app::governance::sign_offs(state.store.as_ref(), c, id).await?,
            None => Vec::new(),
        };
        let visible = |t: &stride_store::TenantId| caller.as_ref().is_some_and(|c| c.may_see(t));
        let in_force: Vec<(stride_store::TenantId, String)> = state
            .pins
            .tenants(&state.catalog, id)
            .into_iter()
            .map(|(t, rs, _)| (t, rs.doc.version.to_string()))
            .collect();
        let versions: Vec<serde_json::Value> = state
            .catalog
            .iter()
            .filter(|rs| rs.doc.id == id)
            .map(|rs| {
                let v = rs.doc.version.to_string();
                let mut entry = serde_json::json!({
                    "version": v,
                    "status": rs.doc.status,
                    "effective": rs.doc.effective,
                    "url": stride_app::guideline_url(public, id, &rs.doc.version),
                    "contentHash": rs.content_hash,
                });
                if caller.is_some() {
                    let signed: Vec<serde_json::Value> = sign_offs
                        .iter()
                        .filter(|s| s.version == v && visible(&s.tenant))
                        .map(|s| serde_json::json!({
                            "tenant": s.tenant, "signer": s.signer, "decision": s.decision,
                            "reason": s.reason, "impact": s.impact_hash, "contentHash": s.content_hash,
                            "current": s.content_hash == rs.content_hash,
                            "at": s.created_at.format(&time::format_description::well_known::Rfc3339).unwrap_or_default(),
                        }))
                        .collect();
                    let active: Vec<&str> = in_force
                        .iter()
                        .filter(|(t, iv)| *iv == v && visible(t))
                        .map(|(t, _)| t.as_str())
                        .collect();
                    entry["signOffs"] = serde_json::json!(signed);
                    entry["activeFor"] = serde_json::json!(active);
                }
                entry
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
                (t.as_str().to_owned(), entry)
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
    let rs = loaded(&state, &id, &version)?;
    let mut body = serde_json::to_value(&rs.doc).map_err(|e| ApiError::internal(&e))?;
    if let Some(d) = state.catalog.declaration(&id) {
        body["extension"] = serde_json::json!({
            stride_app::attributes::EXTENSION: stride_app::attributes::of(rs, &d.source_attributes)
        });
    }
    Ok(HttpResponse::Ok()
        .insert_header(("etag", format!("\"{}\"", rs.content_hash)))
        .json(body))
}

/// A version's source attributes for the people who read cards: who made this guidance, from
/// what, funded by whom, released when, and which patient data it reads. Every card links
/// here; open like the rule set itself.
#[get("/guidelines/{id}/{version}/about")]
pub async fn about(
    path: web::Path<(String, String)>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    use crate::routes::ui::esc;
    let (id, version) = path.into_inner();
    let rs = loaded(&state, &id, &version)?;
    let d = state
        .catalog
        .declaration(&id)
        .ok_or_else(|| ApiError::UnknownResource("no such rule-set version".into()))?;
    let a = stride_app::attributes::of(rs, &d.source_attributes);
    let bullets = |items: &[String]| -> String {
        if items.is_empty() {
            return "<p>None.</p>".into();
        }
        let li: String = items
            .iter()
            .map(|i| format!("<li>{}</li>", esc(i)))
            .collect();
        format!("<ul>{li}</ul>")
    };
    let html = format!(
        "<h1>About this guidance</h1><p>{} — version {} ({}).</p>\
         <dl><dt>Based on</dt><dd>{}</dd><dt>Developed by</dt><dd>{}</dd><dt>Funding</dt><dd>{}</dd>\
         <dt>Released</dt><dd>{}</dd><dt>Last revised</dt><dd>{}</dd></dl>\
         <h2>Patient data it reads</h2>{}\
         <h2>Demographics it uses</h2>{}<h2>Social determinants of health it uses</h2>{}\
         <h2>References the rule set cites</h2>{}\
         <p class=\"small\">These are the source attributes the US certification criterion for decision \
         support interventions lists (45 CFR 170.315(b)(11)(iv)(A)). Machine-readable: \
         <a href=\"/guidelines/{}/{}\">the rule set</a> (its <code>extension</code>) and discovery.</p>",
        esc(&rs.doc.title),
        esc(&rs.doc.version.to_string()),
        esc(&format!("{:?}", rs.doc.status).to_lowercase()),
        esc(&a.citation),
        esc(&a.developer),
        esc(&a.funding),
        esc(&a.release_date),
        esc(&a.revision_date),
        bullets(&a.inputs),
        bullets(&a.demographics),
        bullets(&a.social_determinants),
        bullets(&a.references),
        esc(&id),
        esc(&rs.doc.version.to_string()),
    );
    Ok(crate::routes::ui::page(
        actix_web::http::StatusCode::OK,
        None,
        "About this guidance",
        &html,
    ))
}

/// This module's endpoints (the order is the order they are matched in).
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(list)
        .service(about)
        .service(sign_off)
        .service(activate)
        .service(rule_set);
}

/// The loaded rule set `id` `version` names; 404 for a version that is not one or not loaded.
fn loaded<'a>(
    state: &'a AppState,
    id: &str,
    version: &str,
) -> Result<&'a std::sync::Arc<stride_guideline::RuleSet>, ApiError> {
    version
        .parse::<RuleSetVersion>()
        .ok()
        .and_then(|v| state.catalog.get(id, &v))
        .ok_or_else(|| ApiError::UnknownResource("no such rule-set version".into()))
}

/// `POST /guidelines/{id}/{version}/$sign-off` (`guideline.approve`): approve or reject the
/// version for the signer's clinic, naming the impact report's hash they saw.
#[actix_web::post("/guidelines/{id}/{version}/$sign-off")]
#[tracing::instrument(name = "guideline sign-off", skip_all)]
pub async fn sign_off(
    req: HttpRequest,
    staff: crate::auth::Staff<crate::auth::GuidelineApprove>,
    path: web::Path<(String, String)>,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let (id, version) = path.into_inner();
    let version = loaded(&state, &id, &version)?.doc.version;
    let body: stride_app::governance::SignOffRequest = json_body(&req, payload, &state).await?;
    let s = stride_app::governance::sign_off(
        &state.impact_jobs,
        &crate::audit::actor(&req, &staff.caller),
        &id,
        version,
        &body,
        stride_app::governance::SIGN_OFF_WAIT,
    )
    .await?;
    Ok(HttpResponse::Created().json(serde_json::json!({
        "guideline": s.guideline_id, "version": s.version, "tenant": s.tenant, "signer": s.signer,
        "decision": s.decision, "reason": s.reason, "impact": s.impact_hash, "contentHash": s.content_hash,
    })))
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActivateRequest {
    /// Parsed below rather than by serde, so that a refusal says what is wrong with it.
    tenant: String,
}

/// `POST /guidelines/{id}/{version}/$activate` with `{"tenant": "…"}` (`guideline.approve`):
/// put the version in force for that clinic, once two distinct staff approved it.
#[actix_web::post("/guidelines/{id}/{version}/$activate")]
#[tracing::instrument(name = "guideline activation", skip_all)]
pub async fn activate(
    req: HttpRequest,
    staff: crate::auth::Staff<crate::auth::GuidelineApprove>,
    path: web::Path<(String, String)>,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let (id, version) = path.into_inner();
    let version = loaded(&state, &id, &version)?.doc.version;
    let body: ActivateRequest = json_body(&req, payload, &state).await?;
    let tenant = stride_store::TenantId::parse(&body.tenant)
        .map_err(|e| ApiError::BadRequest(format!("tenant: {e}")))?;
    let a = stride_app::governance::activate(
        state.store.as_ref(),
        &state.catalog,
        &state.pins,
        &crate::audit::actor(&req, &staff.caller),
        &id,
        version,
        &tenant,
    )
    .await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({
        "guideline": a.guideline_id, "version": a.version, "tenant": a.tenant,
        "activatedBy": a.activated_by, "contentHash": a.content_hash,
    })))
}

/// A JSON body, read within the limits; a body that is not what the endpoint takes is a 400
/// naming the field, never serde's echo of the value.
async fn json_body<T: serde::de::DeserializeOwned>(
    req: &HttpRequest,
    payload: web::Payload,
    state: &AppState,
) -> Result<T, ApiError> {
    let raw =
        crate::body::read_body(req, payload, crate::body::BodyLimits::of(&state.settings)).await?;
    serde_json::from_slice(&raw).map_err(|e| crate::body::refused(&e, "the request body"))
}
