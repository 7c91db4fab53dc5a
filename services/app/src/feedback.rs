//! Card feedback (CDS Hooks 2.0 §feedback): each entry checked as the specification states it,
//! stored with one audit entry naming the cards and their outcomes.

use serde_json::{json, Value as Json};
use stride_store::TenantId;
use stride_store::{NewFeedback, Store};
use time::OffsetDateTime;

use crate::catalog::Service;

/// Feedback could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum FeedbackError {
    /// The body breaks the specification: what and where.
    #[error("{0}")]
    Invalid(String),
    /// Nothing was stored (the database is unavailable): the EHR may send it again.
    #[error("feedback not stored")]
    Unavailable,
}

/// Store `entries` (from `read`) with the feedback entry of `actor`, the EHR that sent them,
/// in one write.
pub async fn take(
    store: &dyn Store,
    service: &Service,
    entries: &[NewFeedback],
    actor: &crate::actor::Actor,
) -> Result<(), FeedbackError> {
    let mut audit = actor.entry(stride_store::audit::Action::Feedback, "success");
    audit.service_id = Some(service.id.clone());
    audit.card_uuids = entries.iter().map(|f| f.card_uuid.clone()).collect();
    audit.details["outcomes"] = entries
        .iter()
        .map(|f| json!({"card": f.card_uuid, "outcome": f.outcome}))
        .collect();
    store.insert_feedback(entries, &audit).await.map_err(|e| {
        tracing::error!(error = %e, "feedback and its audit entry not written: answering 503");
        FeedbackError::Unavailable
    })
}

/// The feedback entries of `body` for `service`, as the caller's tenant's; `Invalid` names the
/// first entry and field that break the specification.
pub fn read(
    svc: &Service,
    tenant: &TenantId,
    body: &Json,
    now: OffsetDateTime,
) -> Result<Vec<NewFeedback>, FeedbackError> {
    entries(svc, tenant, body, now).map_err(FeedbackError::Invalid)
}

fn entries(
    svc: &Service,
    tenant: &TenantId,
    body: &Json,
    now: OffsetDateTime,
) -> Result<Vec<NewFeedback>, String> {
    let list = body
        .get("feedback")
        .and_then(Json::as_array)
        .ok_or("feedback: required, an array")?;
    if list.is_empty() {
        return Err("feedback: must hold at least one entry".into());
    }
    list.iter()
        .enumerate()
        .map(|(i, f)| {
            let at = |field: &str| format!("feedback[{i}].{field}");
            let card = f
                .get("card")
                .and_then(Json::as_str)
                .filter(|s| !s.is_empty())
                .ok_or_else(|| at("card") + ": required string")?;
            let outcome = f
                .get("outcome")
                .and_then(Json::as_str)
                .ok_or_else(|| at("outcome") + ": required")?;
            match outcome {
                "accepted" => {
                    if f.get("overrideReason").is_some() {
                        return Err(at("overrideReason") + ": only for overridden cards");
                    }
                }
                "overridden" => {
                    if f.get("acceptedSuggestions").is_some() {
                        return Err(at("acceptedSuggestions") + ": only for accepted cards");
                    }
                }
                _ => return Err(at("outcome") + ": must be accepted or overridden"),
            }
            if let Some(s) = f.get("acceptedSuggestions") {
                let ok = s.as_array().is_some_and(|a| {
                    a.iter()
                        .all(|x| x.get("id").and_then(Json::as_str).is_some())
                });
                if !ok {
                    return Err(at("acceptedSuggestions") + ": must be an array of {id}");
                }
            }
            if let Some(r) = f.get("overrideReason") {
                if !r.is_object() {
                    return Err(at("overrideReason") + ": must be an object");
                }
                if let Some(reason) = r.get("reason") {
                    if reason.get("code").and_then(Json::as_str).is_none()
                        || reason.get("system").and_then(Json::as_str).is_none()
                    {
                        return Err(
                            at("overrideReason.reason") + ": a Coding needs system and code"
                        );
                    }
                }
            }
            let ts = f
                .get("outcomeTimestamp")
                .and_then(Json::as_str)
                .ok_or_else(|| at("outcomeTimestamp") + ": required")?;
            let ts = OffsetDateTime::parse(ts, &time::format_description::well_known::Rfc3339)
                .map_err(|_| {
                    at("outcomeTimestamp") + ": must be an ISO 8601 date-time with offset"
                })?;
            if ts > now + time::Duration::minutes(5) {
                return Err(at("outcomeTimestamp") + ": is in the future");
            }
            Ok(NewFeedback {
                id: stride_store::new_row_id(),
                tenant: tenant.to_owned(),
                service_id: svc.id.clone(),
                card_uuid: card.to_owned(),
                outcome: outcome.to_owned(),
                details: f.clone(),
                outcome_timestamp: ts,
                received_at: now,
            })
        })
        .collect()
}
