//! Read-only FHIR endpoints: the CapabilityStatement and the guideline as PlanDefinition and
//! CodeSystems, for every loaded version.

use actix_web::{get, web, HttpResponse};
use stride_fhir::publish;
use time::format_description::well_known::Rfc3339;

use crate::error::ApiError;
use crate::state::AppState;

fn fhir_json(v: serde_json::Value) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/fhir+json")
        .json(v)
}

#[get("/fhir/metadata")]
pub async fn metadata(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let date = state.started.format(&Rfc3339).unwrap_or_default();
    let cs = publish::capability_statement(
        state.settings.public_url.as_str(),
        env!("CARGO_PKG_VERSION"),
        &date,
    )
    .map_err(|e| ApiError::internal(&e))?;
    Ok(fhir_json(cs))
}

#[get("/fhir/PlanDefinition/{id}")]
pub async fn plan_definition(
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let rs = state
        .catalog
        .iter()
        .find(|rs| publish::plan_definition_id(rs) == *path)
        .ok_or_else(|| ApiError::UnknownResource("no PlanDefinition with this id".into()))?;
    Ok(fhir_json(
        publish::plan_definition(rs).map_err(|e| ApiError::internal(&e))?,
    ))
}

#[get("/fhir/CodeSystem/{id}")]
pub async fn code_system(
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    // The newest version that publishes a code system with this id.
    let found = state.catalog.iter().rev().find_map(|rs| {
        let published = &state.catalog.declaration(&rs.doc.id)?.published;
        let titles = publish::CodeSystemTitles {
            findings: &published.findings,
            decisions: &published.decisions,
        };
        publish::code_system(rs, &path, &titles)
    });
    let cs = found.ok_or_else(|| ApiError::UnknownResource("no CodeSystem with this id".into()))?;
    Ok(fhir_json(cs.map_err(|e| ApiError::internal(&e))?))
}

/// This module's endpoints (the order is the order they are matched in).
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(metadata)
        .service(plan_definition)
        .service(code_system);
}
