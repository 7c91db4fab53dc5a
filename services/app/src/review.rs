//! Clinic staff and the CarePlans Stride drafted: which plans a staff member may see, and a
//! review (approve, revise, reject) applied with its audit entry — the same for the API and
//! the staff pages.

use serde::{Deserialize, Deserializer};
use serde_json::{json, Value as Json};
use stride_auth::Caller;
use stride_store::{CarePlanRecord, CarePlanStatus, ReviewAction, Store, StoreError};
use uuid::Uuid;

/// Why a CarePlan could not be shown or reviewed.
#[derive(Debug, thiserror::Error)]
pub enum ReviewError {
    /// No such plan, or one of a tenant the caller may not see (the same answer for both).
    #[error("no CarePlan with this id")]
    NotFound,
    /// The review is incomplete or leaves no valid FHIR: what to fix.
    #[error("{0}")]
    Invalid(String),
    /// Someone decided the plan first: where it stands now.
    #[error("{0}")]
    Conflict(String),
    #[error(transparent)]
    Store(StoreError),
}

/// Whether a reviewer revised the plan (its review note says so): the rule set's wording no
/// longer describes it.
pub fn was_revised(resource: &Json) -> bool {
    resource["note"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|n| n["text"].as_str())
        .any(|t| t.starts_with(&format!("{} by ", ReviewAction::Revise.as_str())))
}

/// The plan as a FHIR resource, with its stored version and status.
pub fn resource(r: &CarePlanRecord) -> Json {
    let mut v = r.resource.clone();
    // The stored version joins what `meta` says already (the CPG profile the plan claims).
    v["meta"]["versionId"] = json!(r.version.to_string());
    v["status"] = json!(r.status.as_str());
    v
}

/// The CarePlan `id` names, if it exists and `caller` may see it.
pub async fn load_visible(
    store: &dyn Store,
    caller: &Caller,
    id: &str,
) -> Result<CarePlanRecord, ReviewError> {
    let id = Uuid::parse_str(id).map_err(|_| ReviewError::NotFound)?;
    let record = store.careplan(id).await.map_err(|e| match e {
        StoreError::NotFound => ReviewError::NotFound,
        other => ReviewError::Store(other),
    })?;
    // A plan of another tenant, or of another patient than the one an EHR launched for, does
    // not exist for this caller.
    if !caller.may_see_patient(&record.tenant, record.patient_ref.as_str()) {
        return Err(ReviewError::NotFound);
    }
    Ok(record)
}

/// What a reviewer decides about a drafted CarePlan.
#[derive(Debug, Deserialize)]
pub struct ReviewRequest {
    #[serde(deserialize_with = "action")]
    pub action: ReviewAction,
    /// The version the reviewer saw (optimistic concurrency).
    pub version: i32,
    pub reason: Option<String>,
    /// For `revise`: new texts for recommendations of the plan, by id (an empty text removes
    /// that recommendation); the others stay as drafted.
    pub recommendations: Option<Vec<RecommendationEdit>>,
    /// For `revise`: the plan's whole `activity` list as the reviewer rewrote it.
    pub activity: Option<Json>,
}

/// One recommendation's new text (`id` as `stride_fhir::careplan::recommendations` names it).
#[derive(Debug, Deserialize)]
pub struct RecommendationEdit {
    pub id: String,
    pub text: String,
}

fn action<'de, D: Deserializer<'de>>(d: D) -> Result<ReviewAction, D::Error> {
    let s = String::deserialize(d)?;
    s.parse()
        .map_err(|e| serde::de::Error::custom(format!("action {e}")))
}

/// One review by `actor`: checked, applied with its careplan-review entry, or refused with a
/// conflict when the plan moved on. A plan someone else decided meanwhile is never
/// overwritten.
pub async fn apply(
    store: &dyn Store,
    catalog: &crate::catalog::Catalog,
    actor: &crate::actor::Actor,
    id: &str,
    body: &ReviewRequest,
) -> Result<CarePlanRecord, ReviewError> {
    let caller = &actor.caller;
    let mut audit = actor.entry(stride_store::audit::Action::CareplanReview, "success");
    let current = load_visible(store, caller, id).await?;
    let id = current.id;
    let reason = body
        .reason
        .as_deref()
        .map(str::trim)
        .filter(|r| !r.is_empty())
        .map(str::to_owned);
    if body.action != ReviewAction::Approve && reason.is_none() {
        return Err(ReviewError::Invalid(format!(
            "reason: required to {}",
            body.action.as_str()
        )));
    }
    if current.status != CarePlanStatus::Draft {
        return Err(ReviewError::Conflict(format!(
            "this CarePlan was already decided (status {}, version {}); reload it",
            current.status, current.version
        )));
    }
    let mut resource = current.resource.clone();
    resource["status"] = json!(body.action.status().as_str());
    if body.action == ReviewAction::Revise {
        match (&body.recommendations, &body.activity) {
            (Some(edits), None) => {
                let edits: Vec<(String, String)> = edits
                    .iter()
                    .map(|e| (e.id.clone(), e.text.clone()))
                    .collect();
                resource = stride_fhir::careplan::revise(&resource, &edits)
                    .map_err(|e| ReviewError::Invalid(format!("recommendations: {e}")))?;
            }
            (None, Some(activity)) => resource["activity"] = activity.clone(),
            (Some(_), Some(_)) => {
                return Err(ReviewError::Invalid(
                    "recommendations or activity: one way to revise at a time".into(),
                ))
            }
            (None, None) => {
                return Err(ReviewError::Invalid(
                    "recommendations: required to revise (or activity)".into(),
                ))
            }
        }
    }
    // The plan approved as drafted links the take-home plan written from it, so the EHR can
    // file both (a revised plan is no longer what the rule set's patient wording describes).
    if body.action == ReviewAction::Approve && crate::take_home::has_wording(catalog, &current) {
        let link = json!({"reference": format!("DocumentReference/{id}"), "display": "The patient's take-home plan"});
        match resource
            .get_mut("supportingInfo")
            .and_then(Json::as_array_mut)
        {
            Some(info) => info.push(link),
            None => resource["supportingInfo"] = json!([link]),
        }
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
        ReviewError::Invalid(format!("the revised CarePlan is not valid FHIR R4: {e}"))
    })?;

    audit.patient_ref = Some(current.patient_ref.clone());
    audit.careplan_id = Some(id);
    audit.details["review"] = json!({"action": body.action.as_str(), "fromVersion": body.version});
    if let Some(r) = &reason {
        audit.details["review"]["reason"] = json!(r);
    }
    let decided = stride_store::Review {
        careplan_id: id,
        expected_version: body.version,
        action: body.action,
        reviewer: format!("{}|{}", caller.issuer, caller.subject),
        reason,
        resource,
        at: time::OffsetDateTime::now_utc(),
    };
    store.review_careplan(&decided, &audit).await.map_err(|e| match e {
        StoreError::Conflict(now) => ReviewError::Conflict(format!(
            "this CarePlan changed since version {} (now version {now}): someone else reviewed it; reload it",
            body.version
        )),
        StoreError::NotFound => ReviewError::NotFound,
        other => ReviewError::Store(other),
    })
}
