//! The CarePlans Stride drafted, for clinic staff (`careplan.read`): read one, or search a
//! tenant's plans as a FHIR Bundle.

use actix_web::{get, web, HttpRequest, HttpResponse};
use serde::Deserialize;
use serde_json::{json, Value as Json};
use stride_store::{CarePlanQuery, CarePlanRecord};

use crate::audit;
use crate::auth;
use crate::body::{read_body, BodyLimits};
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

/// The CarePlan `id` names, if it exists and this caller may see it (else 404 either way).
pub async fn load_visible(
    state: &AppState,
    caller: &stride_auth::Caller,
    id: &str,
) -> Result<CarePlanRecord, ApiError> {
    let not_found = || ApiError::UnknownResource("no CarePlan with this id".into());
    let id = uuid::Uuid::parse_str(id).map_err(|_| not_found())?;
    let record = state.store.careplan(id).await.map_err(|e| match e {
        stride_store::StoreError::NotFound => not_found(),
        other => other.into(),
    })?;
    // A plan of another tenant does not exist for this caller.
    if !caller.may_see(&record.tenant) {
        return Err(not_found());
    }
    Ok(record)
}

#[get("/fhir/CarePlan/{id}")]
#[tracing::instrument(name = "careplan read", skip_all)]
pub async fn read(
    req: HttpRequest,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let caller = auth::staff(&req, &state, READ).await?;
    let record = load_visible(&state, &caller, &path).await?;
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
        tenant: caller.tenant_scope().map(str::to_owned),
        patient_ref: patient,
        status: q.status.clone(),
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

pub const REVIEW: &str = "careplan.review";

/// What a reviewer decides about a drafted CarePlan.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReviewAction {
    /// The draft as it is (→ active).
    Approve,
    /// Edited activities, a new version (→ active); needs a reason.
    Revise,
    /// Not this plan (→ revoked); needs a reason.
    Reject,
}

impl ReviewAction {
    pub fn parse(s: &str) -> Result<ReviewAction, ApiError> {
        match s {
            "approve" => Ok(ReviewAction::Approve),
            "revise" => Ok(ReviewAction::Revise),
            "reject" => Ok(ReviewAction::Reject),
            _ => Err(ApiError::BadRequest(
                "action: approve, revise or reject".into(),
            )),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ReviewAction::Approve => "approve",
            ReviewAction::Revise => "revise",
            ReviewAction::Reject => "reject",
        }
    }

    /// The CarePlan status the review leaves.
    fn status(self) -> &'static str {
        match self {
            ReviewAction::Approve | ReviewAction::Revise => "active",
            ReviewAction::Reject => "revoked",
        }
    }
}

#[derive(Deserialize)]
pub struct ReviewRequest {
    pub action: ReviewAction,
    /// The version the reviewer saw (optimistic concurrency).
    pub version: i32,
    pub reason: Option<String>,
    /// For `revise`: the plan's activities as the reviewer edited them.
    pub activity: Option<Json>,
}

/// Approve (→ active), revise (edited activities, a new version, → active) or reject
/// (→ revoked) a drafted CarePlan. A plan someone else decided meanwhile is not overwritten:
/// 409 with the version it is at now.
#[actix_web::post("/fhir/CarePlan/{id}/$review")]
#[tracing::instrument(name = "careplan review", skip_all)]
pub async fn review(
    req: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let caller = auth::staff(&req, &state, REVIEW).await?;
    let raw = read_body(&req, payload, BodyLimits::of(&state.settings)).await?;
    let body: ReviewRequest = serde_json::from_slice(&raw).map_err(|e| {
        if e.is_data() {
            ApiError::BadRequest(format!("the review request: {e}"))
        } else {
            ApiError::MalformedJson(e.to_string())
        }
    })?;
    let updated = apply_review(&req, &state, &caller, &path, &body).await?;
    Ok(HttpResponse::Ok()
        .content_type("application/fhir+json")
        .json(self::resource(&updated)))
}

/// One review, from the API or the staff pages: checked, applied with its audit entry, or
/// refused with a conflict when the plan moved on.
pub async fn apply_review(
    req: &HttpRequest,
    state: &AppState,
    caller: &stride_auth::Caller,
    id: &str,
    body: &ReviewRequest,
) -> Result<CarePlanRecord, ApiError> {
    let current = load_visible(state, caller, id).await?;
    let id = current.id;
    let reason = body
        .reason
        .as_deref()
        .map(str::trim)
        .filter(|r| !r.is_empty())
        .map(str::to_owned);
    if body.action != ReviewAction::Approve && reason.is_none() {
        return Err(ApiError::BadRequest(format!(
            "reason: required to {}",
            body.action.as_str()
        )));
    }
    let status = body.action.status();
    if current.status != "draft" {
        return Err(ApiError::Conflict(format!(
            "this CarePlan was already decided (status {}, version {}); reload it",
            current.status, current.version
        )));
    }
    let mut resource = current.resource.clone();
    resource["status"] = json!(status);
    if body.action == ReviewAction::Revise {
        let activity = body
            .activity
            .clone()
            .ok_or_else(|| ApiError::BadRequest("activity: required to revise".into()))?;
        resource["activity"] = activity;
    }
    let mut note = format!("{} by {}", body.action.as_str(), caller.subject);
    if let Some(r) = &reason {
        note.push_str(&format!(": {r}"));
    }
    match resource.get_mut("note").and_then(Json::as_array_mut) {
        Some(notes) => notes.push(json!({"text": note})),
        None => resource["note"] = json!([{"text": note}]),
    }
    stride_fhir::careplan::validate(&resource).map_err(|e| {
        ApiError::BadRequest(format!("the revised CarePlan is not valid FHIR R4: {e}"))
    })?;

    let mut entry = audit::entry(req, audit::Action::CareplanReview, "success", Some(caller));
    entry.patient_ref = Some(current.patient_ref.clone());
    entry.careplan_id = Some(id);
    entry.details["review"] = json!({"action": body.action.as_str(), "fromVersion": body.version});
    if let Some(r) = &reason {
        entry.details["review"]["reason"] = json!(r);
    }
    let decided = stride_store::Review {
        careplan_id: id,
        expected_version: body.version,
        action: body.action.as_str().to_owned(),
        status: status.to_owned(),
        reviewer: format!("{}|{}", caller.issuer, caller.subject),
        reason,
        resource,
        at: time::OffsetDateTime::now_utc(),
    };
    let updated = state.store.review_careplan(&decided, &entry).await.map_err(|e| match e {
        stride_store::StoreError::Conflict(now) => ApiError::Conflict(format!(
            "this CarePlan changed since version {} (now version {now}): someone else reviewed it; reload it",
            body.version
        )),
        other => other.into(),
    })?;
    Ok(updated)
}
