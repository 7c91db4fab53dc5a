//! The CarePlans Stride drafted, for clinic staff (`careplan.read`): read one, or search a
//! tenant's plans as a FHIR Bundle.

use actix_web::{get, web, HttpRequest, HttpResponse};
use serde::Deserialize;
use serde_json::{json, Value as Json};
use stride_app::review::{resource, ReviewRequest};
use stride_store::CarePlanStatus;

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
    let actor = audit::actor(&req, &staff.caller);
    let record = stride_app::careplans::read(state.store.as_ref(), &actor, &path, None).await?;
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
    let status = q
        .status
        .as_deref()
        .map(str::parse::<CarePlanStatus>)
        .transpose()
        .map_err(|e| ApiError::BadRequest(format!("status: {e}")))?;
    let search = stride_app::careplans::Search {
        patient: crate::params::patient(q.patient.as_deref())?,
        status,
        limit: q.count.unwrap_or(50).clamp(1, 500),
        ..Default::default()
    };
    let actor = audit::actor(&req, &staff.caller);
    let plans = stride_app::careplans::search(state.store.as_ref(), &actor, search).await?;
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
    let body: ReviewRequest =
        serde_json::from_slice(&raw).map_err(|e| crate::body::refused(&e, "the review request"))?;
    let updated = stride_app::review::apply(
        state.store.as_ref(),
        &state.catalog,
        &audit::actor(&req, &caller),
        &path,
        &body,
    )
    .await?;
    Ok(HttpResponse::Ok()
        .content_type("application/fhir+json")
        .json(resource(&updated)))
}

/// This module's endpoints (the order is the order they are matched in).
/// The take-home plan of an approved CarePlan as a DocumentReference (the PDF inline), and
/// what it was recorded as read.
async fn take_home_document(
    req: &HttpRequest,
    state: &AppState,
    caller: &stride_auth::Caller,
    careplan: &str,
) -> Result<Json, ApiError> {
    let (plan, home) = stride_app::take_home::approved(
        state.store.as_ref(),
        &state.catalog,
        &audit::actor(req, caller),
        careplan,
        "take-home document",
        |t| state.verifier.tenant_timezone(t).map(str::to_owned),
    )
    .await?;
    let pdf = stride_app::pdf::render(&home, stride_app::pdf::Paper::A4);
    let id = plan.id.to_string();
    let url = format!(
        "{}/ui/careplans/{id}/patient.pdf",
        state.settings.public_url.as_str().trim_end_matches('/')
    );
    let title = format!("Take-home plan: {}", home.title);
    Ok(stride_fhir::document::take_home_document(
        &stride_fhir::document::TakeHomeDocument {
            id: &id,
            patient: plan.patient_ref.as_str(),
            careplan: &id,
            date: plan.updated_at,
            title: &title,
            pdf: &pdf,
            url: &url,
        },
    ))
}

/// The take-home plan's DocumentReference (its id is the CarePlan's).
#[get("/fhir/DocumentReference/{id}")]
#[tracing::instrument(name = "document read", skip_all)]
pub async fn document_read(
    req: HttpRequest,
    staff: Staff<CareplanRead>,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let doc = take_home_document(&req, &state, &staff.caller, &path).await?;
    Ok(HttpResponse::Ok()
        .content_type("application/fhir+json")
        .json(doc))
}

#[derive(Deserialize)]
pub struct DocumentSearch {
    related: Option<String>,
}

/// `GET /fhir/DocumentReference?related=CarePlan/{id}`: the take-home plan written from that
/// CarePlan, once it is approved; an empty searchset before (or for a plan not visible).
#[get("/fhir/DocumentReference")]
#[tracing::instrument(name = "document search", skip_all)]
pub async fn document_search(
    req: HttpRequest,
    staff: Staff<CareplanRead>,
    q: web::Query<DocumentSearch>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let related = q
        .related
        .as_deref()
        .ok_or_else(|| ApiError::BadRequest("related: required (related=CarePlan/{id})".into()))?;
    // A reference, relative or absolute: the CarePlan id is what follows `CarePlan/`.
    let careplan = related
        .rsplit_once("CarePlan/")
        .map(|(_, id)| id)
        .filter(|id| !id.is_empty() && !id.contains('/'))
        .ok_or_else(|| {
            ApiError::BadRequest("related: a CarePlan reference (CarePlan/{id})".into())
        })?;
    let found = match take_home_document(&req, &state, &staff.caller, careplan).await {
        Ok(doc) => Some(doc),
        Err(ApiError::UnknownResource(_) | ApiError::Conflict(_) | ApiError::Unprocessable(_)) => {
            None
        }
        Err(e) => return Err(e),
    };
    let public = state.settings.public_url.as_str().trim_end_matches('/');
    let entries: Vec<Json> = found
        .into_iter()
        .map(|d| json!({"fullUrl": format!("{public}/fhir/DocumentReference/{}", d["id"].as_str().unwrap_or_default()), "resource": d, "search": {"mode": "match"}}))
        .collect();
    let mut bundle = json!({"resourceType": "Bundle", "type": "searchset", "total": entries.len()});
    if !entries.is_empty() {
        bundle["entry"] = Json::Array(entries);
    }
    Ok(HttpResponse::Ok()
        .content_type("application/fhir+json")
        .json(bundle))
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(search)
        .service(review)
        .service(read)
        .service(document_search)
        .service(document_read);
}
