//! Reading the CarePlans Stride drafted: one plan, or a search of them, each read audited with
//! who read what. The API (`/fhir/CarePlan`) and the staff pages (the review queue) read
//! through here, so a plan outside the caller's tenant, or outside the patient an EHR launched
//! them for, is never shown by one and shown by the other.

use serde_json::json;
use stride_store::audit::Action;
use stride_store::{CarePlanQuery, CarePlanRecord, CarePlanStatus, PatientRef, Store};

use crate::actor::Actor;
use crate::review::{load_visible, ReviewError};

/// One plan the actor may see, its read recorded (`careplan-read`, with the plan and patient).
/// `view` names the page it was read for, when not the API.
pub async fn read(
    store: &dyn Store,
    actor: &Actor,
    id: &str,
    view: Option<&str>,
) -> Result<CarePlanRecord, ReviewError> {
    let record = load_visible(store, &actor.caller, id).await?;
    record_read(store, actor, &record, view).await?;
    Ok(record)
}

/// The `careplan-read` entry of a plan the actor was shown (with the plan, its patient and the
/// page it was shown on).
pub(crate) async fn record_read(
    store: &dyn Store,
    actor: &Actor,
    plan: &CarePlanRecord,
    view: Option<&str>,
) -> Result<(), ReviewError> {
    let mut entry = actor.entry(Action::CareplanRead, "success");
    entry.patient_ref = Some(plan.patient_ref.clone());
    entry.careplan_id = Some(plan.id);
    if let Some(view) = view {
        entry.details["view"] = json!(view);
    }
    store.append_audit(&entry).await.map_err(ReviewError::Store)
}

/// What a search asks for; the tenant and any launch's patient come from the actor.
#[derive(Debug, Default)]
pub struct Search {
    /// One patient, or none for every patient the actor may see.
    pub patient: Option<PatientRef>,
    pub status: Option<CarePlanStatus>,
    pub created_from: Option<time::Date>,
    pub created_to: Option<time::Date>,
    pub limit: i64,
    /// The page it was searched for, when not the API.
    pub view: Option<&'static str>,
}

/// The plans the actor may see that match, newest first, red flags first; the search recorded
/// (`careplan-search`, with the patient asked for and the number of results). A staff member
/// launched for one patient sees that patient's plans only, whatever patient they ask for.
pub async fn search(
    store: &dyn Store,
    actor: &Actor,
    search: Search,
) -> Result<Vec<CarePlanRecord>, ReviewError> {
    let caller = &actor.caller;
    let patient = match (&caller.patient, search.patient) {
        (Some(launched), Some(asked)) if asked != launched.as_str() => return Ok(Vec::new()),
        (Some(launched), _) => Some(PatientRef::stored(launched.clone())),
        (None, asked) => asked,
    };
    let query = CarePlanQuery {
        tenant: caller.tenant_scope().cloned(),
        patient_ref: patient,
        status: search.status,
        created_from: search.created_from,
        created_to: search.created_to,
        limit: search.limit,
    };
    let plans = store
        .search_careplans(&query)
        .await
        .map_err(ReviewError::Store)?;
    let mut entry = actor.entry(Action::CareplanSearch, "success");
    entry.patient_ref = query.patient_ref.clone();
    entry.details["results"] = json!(plans.len());
    if let Some(view) = search.view {
        entry.details["view"] = json!(view);
    }
    store
        .append_audit(&entry)
        .await
        .map_err(ReviewError::Store)?;
    Ok(plans)
}

/// The hook call that drafted `plan` (its decision's facts and trace, for "why this phase" and
/// the timeline), read for a caller who may see the plan (`read` or `search` gave it).
pub async fn drafting_entry(
    store: &dyn Store,
    plan: &CarePlanRecord,
) -> Result<stride_store::AuditEntry, stride_store::StoreError> {
    store.drafting_entry(plan.id).await
}

/// The plans drafted for `plan`'s patient in its clinic (the newest 200), for the course of
/// care the plan's page draws; read for a caller who may see the plan (its read is recorded).
pub async fn course_of(
    store: &dyn Store,
    plan: &CarePlanRecord,
) -> Result<Vec<CarePlanRecord>, stride_store::StoreError> {
    store
        .search_careplans(&CarePlanQuery {
            tenant: Some(plan.tenant.clone()),
            patient_ref: Some(plan.patient_ref.clone()),
            limit: 200,
            ..Default::default()
        })
        .await
}
