//! The CarePlans Stride drafted, for clinic staff (`careplan.read`): read one, or search a
//! tenant's plans as a FHIR Bundle.

use actix_web::{get, web, HttpRequest, HttpResponse};
use serde::Deserialize;
use serde_json::{json, Value as Json};
use stride_store::{CarePlanQuery, CarePlanRecord};

use crate::audit;
use crate::auth;
use crate::error::ApiError;
use crate::startup::AppState;

pub const READ: &str = "careplan.read";

fn resource(r: &CarePlanRecord) -> Json {
    let mut v = r.resource.clone();
    v["meta"] = json!({"versionId": r.version.to_string()});
    v["status"] = json!(r.status);
    v
}

/// A `patient` search value as stored: `Patient/ID` (a bare id is read as a Patient id).
pub fn patient_ref(p: &str) -> String {
    if p.starts_with("Patient/") {
        p.to_owned()
    } else {
        format!("Patient/{p}")
    }
}

/// Staff see their own tenant's plans only; a plan of another tenant does not exist for them.
fn visible(caller: &stride_auth::Caller, r: &CarePlanRecord) -> bool {
    caller.all_tenants || caller.tenant == r.tenant
}

#[get("/fhir/CarePlan/{id}")]
#[tracing::instrument(name = "careplan read", skip_all)]
pub async fn read(
    req: HttpRequest,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let caller = auth::staff(&req, &state, READ).await?;
    let not_found = || ApiError::UnknownResource("no CarePlan with this id".into());
    let id = uuid::Uuid::parse_str(&path).map_err(|_| not_found())?;
    let record = state.store.careplan(id).await.map_err(|e| match e {
        stride_store::StoreError::NotFound => not_found(),
        other => other.into(),
    })?;
    if !visible(&caller, &record) {
        return Err(not_found());
    }
    let mut entry = audit::entry(&req, "careplan-read", "success", Some(&caller));
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
    q: web::Query<Search>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let caller = auth::staff(&req, &state, READ).await?;
    let patient = q.patient.as_deref().map(patient_ref);
    if let Some(s) = &q.status {
        if !["draft", "active", "revoked", "entered-in-error"].contains(&s.as_str()) {
            return Err(ApiError::BadRequest(
                "status: draft, active, revoked or entered-in-error".into(),
            ));
        }
    }
    let query = CarePlanQuery {
        tenant: (!caller.all_tenants).then(|| caller.tenant.clone()),
        patient_ref: patient,
        status: q.status.clone(),
        limit: q.count.unwrap_or(50).clamp(1, 500),
    };
    let plans = state.store.search_careplans(&query).await?;
    let mut entry = audit::entry(&req, "careplan-search", "success", Some(&caller));
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
