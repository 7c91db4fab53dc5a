//! The CarePlans Stride drafted, for clinic staff (`careplan.read`): read one, or search a
//! tenant's plans as a FHIR Bundle.

use actix_web::{get, web, HttpRequest, HttpResponse};
use serde::Deserialize;
use serde_json::{json, Value as Json};
use stride_app::review::{load_visible, patient_ref, resource, ReviewRequest};
use stride_store::{CarePlanQuery, CarePlanStatus};

use crate::audit;
use crate::auth::{CareplanRead, CareplanReview, Staff};
use crate::body::{read_body, BodyLimits};
use crate::error::ApiError;
use crate::state::AppState;

#[get("/fhir/CarePlan/{id}")]
#[tracing::instrument(name = "careplan read", skip_all)]
pub async fn read(
    req: HttpRequest,
    staff: Staff<CareplanRead>,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let caller = staff.caller;
    let record = load_visible(state.store.as_ref(), &caller, &path).await?;
    let mut entry = audit::entry(&req, audit::Action::CareplanRead, "success", Some(&caller));
    entry.patient_ref = Some(record.patient_ref.clone());
    entry.careplan_id = Some(record.id);
    state.store.append_audit(&entry).await?;
    Ok(HttpResponse::Ok()
        .content_type("application/fhir+json")
        .json(resource(&record)))
}

#[derive(Deserialize)]
pub struct Search {
    patient: Option<String>,
    status: Option<String>,
    #[serde(rename = "_count")]
    count: Option<i64>,
}

#[get("/fhir/CarePlan")]
#[tracing::instrument(name = "careplan search", skip_all)]
pub async fn search(
    req: HttpRequest,
    staff: Staff<CareplanRead>,
    q: web::Query<Search>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let caller = staff.caller;
    let patient = q.patient.as_deref().map(patient_ref);
    let status = q
        .status
        .as_deref()
        .map(str::parse::<CarePlanStatus>)
        .transpose()
        .map_err(|e| ApiError::BadRequest(format!("status: {e}")))?;
    let query = CarePlanQuery {
        tenant: caller.tenant_scope().map(str::to_owned),
        patient_ref: patient,
        status,
        limit: q.count.unwrap_or(50).clamp(1, 500),
        ..CarePlanQuery::default()
    };
    let plans = state.store.search_careplans(&query).await?;
    let mut entry = audit::entry(
        &req,
        audit::Action::CareplanSearch,
        "success",
        Some(&caller),
    );
    entry.patient_ref = query.patient_ref.clone();
    entry.details["results"] = json!(plans.len());
    state.store.append_audit(&entry).await?;
    let public = state.settings.public_url.as_str();
    let entries: Vec<Json> = plans
        .iter()
        .map(|p| json!({"fullUrl": format!("{public}/fhir/CarePlan/{}", p.id), "resource": resource(p), "search": {"mode": "match"}}))
        .collect();
    let mut bundle = json!({"resourceType": "Bundle", "type": "searchset", "total": entries.len()});
    if !entries.is_empty() {
        bundle["entry"] = Json::Array(entries);
    }
    Ok(HttpResponse::Ok()
        .content_type("application/fhir+json")
        .json(bundle))
}

/// Approve (→ active), revise (edited activities, a new version, → active) or reject
/// (→ revoked) a drafted CarePlan. A plan someone else decided meanwhile is not overwritten:
/// 409 with the version it is at now.
#[actix_web::post("/fhir/CarePlan/{id}/$review")]
#[tracing::instrument(name = "careplan review", skip_all)]
pub async fn review(
    req: HttpRequest,
    staff: Staff<CareplanReview>,
    path: web::Path<String>,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let caller = staff.caller;
    let raw = read_body(&req, payload, BodyLimits::of(&state.settings)).await?;
    let body: ReviewRequest = serde_json::from_slice(&raw).map_err(|e| {
        if e.is_data() {
            ApiError::BadRequest(format!("the review request: {e}"))
        } else {
            ApiError::MalformedJson(e.to_string())
        }
    })?;
    let entry = audit::entry(
        &req,
        audit::Action::CareplanReview,
        "success",
        Some(&caller),
    );
    let updated =
        stride_app::review::apply(state.store.as_ref(), &caller, &path, &body, entry).await?;
    Ok(HttpResponse::Ok()
        .content_type("application/fhir+json")
        .json(resource(&updated)))
}

/// This module's endpoints (the order is the order they are matched in).
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(search).service(review).service(read);
}
