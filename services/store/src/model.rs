use time::OffsetDateTime;
use uuid::Uuid;

/// A CarePlan Stride drafted, as it is stored for review.
#[derive(Debug, Clone, PartialEq)]
pub struct NewCarePlan {
    pub id: Uuid,
    pub tenant: String,
    pub patient_ref: String,
    pub status: String,
    pub rule_set_id: String,
    pub rule_set_version: String,
    pub phase: String,
    pub red_flag: bool,
    pub resource: serde_json::Value,
    pub created_at: OffsetDateTime,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CarePlanRecord {
    pub id: Uuid,
    pub tenant: String,
    pub patient_ref: String,
    pub status: String,
    pub version: i32,
    pub rule_set_id: String,
    pub rule_set_version: String,
    pub phase: String,
    pub red_flag: bool,
    pub resource: serde_json::Value,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
}

/// A card as sent, tied to its decision and (for patient-view) its CarePlan.
#[derive(Debug, Clone, PartialEq)]
pub struct NewCard {
    pub uuid: Uuid,
    pub service_id: String,
    pub hook_instance: String,
    pub decision_id: String,
    pub careplan_id: Option<Uuid>,
    pub created_at: OffsetDateTime,
}

/// What one hook call leaves behind, written in one transaction.
#[derive(Debug, Clone, PartialEq)]
pub struct HookRecord {
    pub careplan: Option<NewCarePlan>,
    pub cards: Vec<NewCard>,
    pub audit: crate::NewAuditEntry,
}

#[derive(Debug, Clone, PartialEq)]
pub struct NewFeedback {
    pub id: Uuid,
    pub service_id: String,
    pub card_uuid: String,
    pub outcome: String,
    pub details: serde_json::Value,
    pub outcome_timestamp: OffsetDateTime,
    pub received_at: OffsetDateTime,
}

#[derive(Debug, Clone, PartialEq)]
pub struct FeedbackRecord {
    pub card_uuid: String,
    pub known_card: bool,
    pub outcome: String,
    pub details: serde_json::Value,
    pub outcome_timestamp: OffsetDateTime,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct CarePlanQuery {
    pub tenant: Option<String>,
    pub patient_ref: Option<String>,
    pub status: Option<String>,
    pub limit: i64,
}

/// A reviewer's decision on a CarePlan, applied only if the plan is still at `expected_version`.
#[derive(Debug, Clone, PartialEq)]
pub struct Review {
    pub careplan_id: Uuid,
    pub expected_version: i32,
    /// approve, revise or reject.
    pub action: String,
    /// The status the plan takes: active (approve, revise) or revoked (reject).
    pub status: String,
    pub reviewer: String,
    pub reason: Option<String>,
    /// The plan as it stands after the review (with its new status and version).
    pub resource: serde_json::Value,
    pub at: OffsetDateTime,
}
