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
    let version: RuleSetVersion = version
        .parse()
        .map_err(|_| ApiError::UnknownResource("no such rule-set version".into()))?;
    let rs = state
        .catalog
        .get(&id, &version)
        .ok_or_else(|| ApiError::UnknownResource("no such rule-set version".into()))?;
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
    cfg.service(list).service(about).service(rule_set);
}
