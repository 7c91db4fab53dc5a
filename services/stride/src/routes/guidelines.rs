//! The rule sets Stride decides with, published read-only: every version stays reachable,
//! because cards and CarePlans point at the exact version that made them.

use actix_web::{get, web, HttpResponse};
use stride_guideline::RuleSetVersion;

use crate::error::ApiError;
use crate::startup::AppState;

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

/// The absolute URL at which a rule-set version is published.
pub fn url(public: &str, id: &str, version: &RuleSetVersion) -> String {
    format!("{public}/guidelines/{id}/{version}")
}
