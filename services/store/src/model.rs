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
