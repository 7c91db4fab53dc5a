use std::fmt;
use std::str::FromStr;

use time::OffsetDateTime;
use uuid::Uuid;

/// Where a CarePlan Stride drafted stands (FHIR CarePlan.status, the values Stride writes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CarePlanStatus {
    /// Waiting for review.
    Draft,
    /// Approved or revised: the plan in force.
    Active,
    /// Rejected.
    Revoked,
    EnteredInError,
}

impl CarePlanStatus {
    pub const ALL: [CarePlanStatus; 4] = [
        CarePlanStatus::Draft,
        CarePlanStatus::Active,
        CarePlanStatus::Revoked,
        CarePlanStatus::EnteredInError,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            CarePlanStatus::Draft => "draft",
            CarePlanStatus::Active => "active",
            CarePlanStatus::Revoked => "revoked",
            CarePlanStatus::EnteredInError => "entered-in-error",
        }
    }
}

/// A text that names no value of an enum: the values it could have named.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("must be one of {0}")]
pub struct NotOneOf(pub &'static str);

impl FromStr for CarePlanStatus {
    type Err = NotOneOf;
    fn from_str(s: &str) -> Result<Self, NotOneOf> {
        Self::ALL
            .into_iter()
            .find(|v| v.as_str() == s)
            .ok_or(NotOneOf("draft, active, revoked, entered-in-error"))
    }
}

impl fmt::Display for CarePlanStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a reviewer does with a draft.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReviewAction {
    Approve,
    /// Approve with edits (and a reason).
    Revise,
    Reject,
}

impl ReviewAction {
    pub const ALL: [ReviewAction; 3] = [
        ReviewAction::Approve,
        ReviewAction::Revise,
        ReviewAction::Reject,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ReviewAction::Approve => "approve",
            ReviewAction::Revise => "revise",
            ReviewAction::Reject => "reject",
        }
    }

    /// The status the plan takes.
    pub fn status(self) -> CarePlanStatus {
        match self {
            ReviewAction::Approve | ReviewAction::Revise => CarePlanStatus::Active,
            ReviewAction::Reject => CarePlanStatus::Revoked,
        }
    }
}

impl FromStr for ReviewAction {
    type Err = NotOneOf;
    fn from_str(s: &str) -> Result<Self, NotOneOf> {
        Self::ALL
            .into_iter()
            .find(|v| v.as_str() == s)
            .ok_or(NotOneOf("approve, revise, reject"))
    }
}

/// A CarePlan Stride drafted, as it is stored for review.
#[derive(Debug, Clone, PartialEq)]
pub struct NewCarePlan {
    pub id: Uuid,
    pub tenant: crate::TenantId,
    pub patient_ref: crate::PatientRef,
    pub status: CarePlanStatus,
    pub rule_set_id: String,
    pub rule_set_version: String,
    pub phase: String,
    pub red_flag: bool,
    pub resource: serde_json::Value,
    pub created_at: OffsetDateTime,
    /// Rule set, version, decision ids and activities: a pending draft is unique per patient
    /// and key (`Store::pending_draft`).
    pub decision_key: Option<String>,
    /// Who the plan is for, as the EHR's Patient said (name, birthDate, gender), if it sent one.
    pub patient: Option<serde_json::Value>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CarePlanRecord {
    pub id: Uuid,
    pub tenant: crate::TenantId,
    pub patient_ref: crate::PatientRef,
    pub status: CarePlanStatus,
    pub version: i32,
    pub rule_set_id: String,
    pub rule_set_version: String,
    pub phase: String,
    pub red_flag: bool,
    pub resource: serde_json::Value,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
    /// Who the plan is for, as the EHR's Patient said when it was drafted (see `NewCarePlan`).
    pub patient: Option<serde_json::Value>,
}

/// What a decision reads of a patient's CarePlans of one guideline, in one query: the plan
/// clinic staff approved last and the drafts waiting for their review. One read rather than
/// two (the approved phase before the decision, the pending draft after it): each query is a
/// round trip on PostgreSQL. Only what a decision uses is read: with each plan's resource and
/// patient parsed as well, a hook call cost 6–12 % more CPU, for a draft it then only links
/// (docs/benchmarks.md, "A decision reads only what it uses of the patient's plans").
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PatientPlans {
    /// The most recently approved (`active`) plan.
    pub approved: Option<ApprovedPlan>,
    /// The pending drafts that have a decision key (at most one per key: a unique index holds
    /// it). A draft made before keys existed is never reused.
    pub drafts: Vec<PendingDraft>,
}

/// The plan clinic staff approved: its phase, and when it took effect.
#[derive(Debug, Clone, PartialEq)]
pub struct ApprovedPlan {
    pub id: Uuid,
    pub phase: String,
    pub updated_at: OffsetDateTime,
}

/// A draft waiting for review, with the key of the decision it drafts.
#[derive(Debug, Clone, PartialEq)]
pub struct PendingDraft {
    pub decision_key: String,
    pub id: Uuid,
    /// The CarePlan as stored, JSON text: a hook call only links a pending draft, so it is
    /// parsed only by a caller that returns it (`$apply`).
    pub resource: String,
}

impl PatientPlans {
    /// The pending draft of the decision with this key, taken out.
    pub fn take_draft(&mut self, decision_key: &str) -> Option<PendingDraft> {
        let at = self
            .drafts
            .iter()
            .position(|d| d.decision_key == decision_key)?;
        Some(self.drafts.swap_remove(at))
    }
}

/// A card as sent, tied to its decision and (for patient-view) its CarePlan.
#[derive(Debug, Clone, PartialEq)]
pub struct NewCard {
    pub uuid: Uuid,
    /// Whose card it is: feedback from another tenant is feedback on an unknown card.
    pub tenant: crate::TenantId,
    pub service_id: String,
    pub hook_instance: String,
    pub decision_id: String,
    pub careplan_id: Option<Uuid>,
    pub created_at: OffsetDateTime,
    /// The rule set and version that decided it (card effectiveness is asked per version).
    pub rule_set_id: Option<String>,
    pub rule_set_version: Option<String>,
    /// Who it was shown to and where (the hook's `userId` and `encounterId`): the feedback
    /// export's user and location.
    pub user_ref: Option<String>,
    pub encounter: Option<String>,
    /// Whom it is about (`Patient/…`): a clinician's override of it is found for the patient.
    pub patient_ref: Option<crate::PatientRef>,
}

/// A red-flag card clinic staff overrode with a reason: the clinician's recorded decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Overridden {
    pub decision_id: String,
    /// When the clinician decided (the feedback's `outcomeTimestamp`).
    pub at: OffsetDateTime,
}

/// Which cards' outcomes to count: a tenant (or every tenant), a period of the cards'
/// sending, a guideline and version.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CardOutcomeQuery {
    pub tenant: Option<crate::TenantId>,
    /// Sent at or after.
    pub from: Option<OffsetDateTime>,
    /// Sent before.
    pub to: Option<OffsetDateTime>,
    pub rule_set_id: Option<String>,
    pub rule_set_version: Option<String>,
}

/// The outcomes of one card (decision id) of one rule-set version and tenant in one month.
#[derive(Debug, Clone, PartialEq)]
pub struct CardOutcome {
    pub rule_set_id: String,
    pub rule_set_version: String,
    pub decision_id: String,
    pub tenant: crate::TenantId,
    /// `YYYY-MM` (UTC).
    pub period: String,
    pub shown: i64,
    /// Cards with feedback "accepted" (a card may be reported both ways: counted in both).
    pub accepted: i64,
    pub overridden: i64,
    pub without_feedback: i64,
    /// Overridden cards by the override reason's code (`unspecified` when none was given).
    pub reasons: Vec<(String, i64)>,
}

impl CardOutcomeQuery {
    /// The days the query covers, when it covers whole UTC days (or is open): what the daily
    /// roll-up can answer. `None` when a bound falls inside a day.
    pub(crate) fn whole_days(&self) -> Option<(Option<time::Date>, Option<time::Date>)> {
        let day = |t: Option<OffsetDateTime>| match t {
            None => Some(None),
            Some(t) => {
                let t = t.to_offset(time::UtcOffset::UTC);
                (t.time() == time::Time::MIDNIGHT).then_some(Some(t.date()))
            }
        };
        Some((day(self.from)?, day(self.to)?))
    }
}

/// One feedback as the decision-support criterion's export names it (45 CFR
/// 170.315(b)(11)(ii)(C)): the intervention, the action taken, the feedback, the user, the
/// date and the location.
#[derive(Debug, Clone, PartialEq)]
pub struct FeedbackRow {
    pub card_uuid: String,
    /// The card's decision id, rule set and version; none for an unknown card.
    pub decision_id: Option<String>,
    pub rule_set_id: Option<String>,
    pub rule_set_version: Option<String>,
    pub tenant: crate::TenantId,
    pub service_id: String,
    pub outcome: String,
    /// The feedback entry as the EHR sent it (override reason, comment, accepted suggestions).
    pub details: serde_json::Value,
    pub outcome_timestamp: OffsetDateTime,
    /// The user the card was shown to and the encounter, from the hook call's audit entry.
    pub user: Option<String>,
    pub encounter: Option<String>,
}

/// What one hook call leaves behind, written in one transaction.
#[derive(Debug, Clone, PartialEq)]
pub struct HookRecord {
    pub careplan: Option<NewCarePlan>,
    pub cards: Vec<NewCard>,
    pub audit: crate::NewAuditEntry,
    /// The answer the call is given, for a retry of its hookInstance.
    pub answer: Option<HookAnswer>,
}

/// The answer a hook call was given, kept so that a retry of its hookInstance by the same
/// caller is given it again instead of a second decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookAnswer {
    pub hook_instance: String,
    pub tenant: crate::TenantId,
    pub caller_issuer: String,
    /// What makes a retry the same call (service, context and prefetch, without the token).
    pub fingerprint: String,
    /// The response body as sent.
    pub response: String,
    pub created_at: OffsetDateTime,
}

#[derive(Debug, Clone, PartialEq)]
pub struct NewFeedback {
    pub id: Uuid,
    /// The tenant of the EHR that sent it; a card of another tenant is an unknown card.
    pub tenant: crate::TenantId,
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
    pub tenant: Option<crate::TenantId>,
    pub patient_ref: Option<crate::PatientRef>,
    pub status: Option<CarePlanStatus>,
    /// Created on or after this day (UTC).
    pub created_from: Option<time::Date>,
    /// Created on or before this day (UTC).
    pub created_to: Option<time::Date>,
    pub limit: i64,
}

impl CarePlanQuery {
    /// The half-open creation interval `[from 00:00, to+1 00:00)` in UTC, as bound to queries.
    pub fn created_bounds(&self) -> (Option<OffsetDateTime>, Option<OffsetDateTime>) {
        let midnight = |d: time::Date| d.midnight().assume_utc();
        (
            self.created_from.map(midnight),
            self.created_to.map(|d| midnight(d.next_day().unwrap_or(d))),
        )
    }
}

/// A reviewer's decision on a CarePlan, applied only if the plan is still at `expected_version`.
#[derive(Debug, Clone, PartialEq)]
pub struct Review {
    pub careplan_id: Uuid,
    pub expected_version: i32,
    pub action: ReviewAction,
    pub reviewer: String,
    pub reason: Option<String>,
    /// The plan as it stands after the review (with its new status and version).
    pub resource: serde_json::Value,
    pub at: OffsetDateTime,
}

/// An OpenID Connect sign-in in progress: what the callback needs to finish it.
#[derive(Debug, Clone, PartialEq)]
pub struct PendingLogin {
    /// SHA-256 (hex) of the `state` sent to the provider.
    pub state_hash: String,
    /// The PKCE code verifier.
    pub verifier: String,
    pub nonce: String,
    /// Where to go once signed in (a `/ui/` path).
    pub next_path: String,
    /// Unix seconds.
    pub expires_at: i64,
    /// The FHIR base of the EHR that launched this sign-in (SMART App Launch); `None` for the
    /// staff pages' own sign-in.
    pub smart_iss: Option<String>,
}

/// A signed-in staff member's session, keyed by the SHA-256 of its cookie value.
#[derive(Debug, Clone, PartialEq)]
pub struct StaffSession {
    pub id_hash: String,
    pub issuer: String,
    pub subject: String,
    pub tenant: crate::TenantId,
    pub all_tenants: bool,
    pub scopes: Vec<String>,
    /// The token forms must echo (cross-site request forgery).
    pub csrf: String,
    /// Unix seconds.
    pub created_at: i64,
    pub expires_at: i64,
    /// A session an EHR launched for one patient (`Patient/ID`) sees that patient only.
    pub patient: Option<String>,
    /// The staff member as a FHIR resource (SMART `fhirUser`).
    pub fhir_user: Option<String>,
}

/// A staff member's decision on a rule-set version for a clinic: approve or reject, having
/// seen the impact report whose hash it names, for the file content it names.
#[derive(Debug, Clone, PartialEq)]
pub struct SignOff {
    pub id: Uuid,
    pub guideline_id: String,
    pub version: String,
    /// SHA-256 of the rule-set file signed off: a changed file needs new sign-offs.
    pub content_hash: String,
    pub tenant: crate::TenantId,
    /// `issuer|subject` of the signer.
    pub signer: String,
    /// `approve` or `reject`.
    pub decision: String,
    pub reason: Option<String>,
    pub impact_hash: String,
    /// The version in force for the clinic the report compared with.
    pub in_force_version: String,
    pub created_at: OffsetDateTime,
}

/// A rule-set version put in force for a clinic.
#[derive(Debug, Clone, PartialEq)]
pub struct Activation {
    pub id: Uuid,
    pub guideline_id: String,
    pub version: String,
    pub content_hash: String,
    pub tenant: crate::TenantId,
    /// `issuer|subject` of who activated it.
    pub activated_by: String,
    pub created_at: OffsetDateTime,
}

/// An impact report as computed for signers: what it compared, for which clinic, and its hash.
#[derive(Debug, Clone, PartialEq)]
pub struct ImpactReport {
    pub impact_hash: String,
    pub guideline_id: String,
    pub version: String,
    pub content_hash: String,
    pub in_force_version: String,
    pub tenant: crate::TenantId,
    pub decisions: i64,
    pub changed: i64,
    pub computed_at: OffsetDateTime,
    /// The report as its page shows it (JSON: the summary and the first changed decisions),
    /// when it was computed to be read; `None` where only its hash and counts were kept.
    pub report: Option<String>,
}
