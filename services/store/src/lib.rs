//! Stride's persistence behind one interface, [`Store`], with two backends: SQLite (the
//! embedded default, one file, WAL) and PostgreSQL (production). Both pass the same tests.

pub mod audit;
mod error;
pub mod guard;
mod model;
mod patient;
mod postgres;
mod rows;
pub mod seal;
mod sqlite;
mod stream;

use std::sync::Arc;
use std::time::Duration;

pub use audit::{AuditEntry, AuditFacts, AuditQuery, Broken, ChainCheck, NewAuditEntry};
pub use error::StoreError;
pub use guard::{Guarded, Health};
pub use patient::PatientRef;
pub use stride_ids::{TenantError, TenantId};

/// A token id claimed for one call. `fresh`: nobody used it before; this is final as soon as
/// the claim is made (a concurrent replay is decided against it). The claim itself may not be
/// written yet: a call must not be answered, nor anything stored for it, before it is durable,
/// either through `durable` or with the call's record (`Store::record_hook_claimed`).
pub struct JtiClaim {
    pub fresh: bool,
    /// The claim's row still to write, on a backend that holds claims in memory until then.
    pending: Option<Box<dyn PendingClaim>>,
}

/// A claim's row not written yet, as a backend defers it (the SQLite backend writes it with the
/// call's record; see `sqlite/claims.rs`).
pub(crate) trait PendingClaim: Send {
    /// Write it on its own and wait until it is durable.
    fn write(self: Box<Self>) -> futures_util::future::BoxFuture<'static, Result<(), StoreError>>;
    /// For the backend that made it, to write it with other rows.
    fn into_any(self: Box<Self>) -> Box<dyn std::any::Any + Send>;
}

impl JtiClaim {
    /// A claim already committed (or a replay: nothing to write).
    pub(crate) fn committed(fresh: bool) -> Self {
        Self {
            fresh,
            pending: None,
        }
    }

    pub(crate) fn pending(row: Box<dyn PendingClaim>) -> Self {
        Self {
            fresh: true,
            pending: Some(row),
        }
    }

    pub(crate) fn take_pending(&mut self) -> Option<Box<dyn PendingClaim>> {
        self.pending.take()
    }

    /// Give back a row that was not written after all (its record failed).
    pub(crate) fn restore(&mut self, row: Box<dyn PendingClaim>) {
        self.pending = Some(row);
    }

    /// Make the claim durable (write it now if it is still to be written) and wait for that.
    pub async fn durable(self) -> Result<(), StoreError> {
        match self.pending {
            None => Ok(()),
            Some(row) => row.write().await,
        }
    }
}

pub use model::{
    Activation, ApprovedPlan, CardOutcome, CardOutcomeQuery, CarePlanQuery, CarePlanRecord,
    CarePlanStatus, FeedbackRecord, FeedbackRow, HookAnswer, HookRecord, ImpactReport, NewCard,
    NewCarePlan, NewFeedback, NotOneOf, Overridden, PatientPlans, PendingDraft, PendingLogin,
    Review, ReviewAction, SignOff, StaffSession,
};

/// Whether the applied migrations (`applied`: the highest successful version in sqlx's
/// `_sqlx_migrations`, which both backends keep) reach the newest of `migrations`: a binary
/// newer than its schema refuses to start.
pub(crate) fn schema_current(
    migrations: &sqlx::migrate::Migrator,
    applied: Option<i64>,
) -> Result<(), StoreError> {
    let needed = migrations.iter().map(|m| m.version).max().unwrap_or(0);
    let applied = applied.unwrap_or(0);
    if applied < needed {
        return Err(StoreError::SchemaBehind { applied, needed });
    }
    Ok(())
}

/// The query whose answer `schema_current` judges (the same on both backends).
pub(crate) const APPLIED_MIGRATION: &str =
    "SELECT max(version) FROM _sqlx_migrations WHERE success";

/// How long a hook call's answer is kept for retries of its hookInstance: an EHR retries
/// within seconds; two days cover a retry queue held over a weekend night.
pub const HOOK_ANSWER_DAYS: i64 = 2;

/// Answers recorded before this (for `now`, a Unix time) are forgotten.
pub(crate) fn answers_kept_since(now: i64) -> time::OffsetDateTime {
    time::OffsetDateTime::from_unix_timestamp(now).unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
        - time::Duration::days(HOOK_ANSWER_DAYS)
}

/// Expired token ids can never be replayed (the token is refused as expired), so they are
/// forgotten, but at most once a minute rather than on every call.
#[derive(Default)]
pub(crate) struct JtiPurge(std::sync::atomic::AtomicI64);

impl JtiPurge {
    const EVERY_SECS: i64 = 60;

    /// Whether this caller should purge now (exactly one caller per minute is told so).
    pub(crate) fn due(&self, now: i64) -> bool {
        use std::sync::atomic::Ordering::Relaxed;
        let last = self.0.load(Relaxed);
        now - last >= Self::EVERY_SECS
            && self.0.compare_exchange(last, now, Relaxed, Relaxed).is_ok()
    }
}

/// The id of a new stored row (audit entry, CarePlan, card, feedback): time-ordered (UUIDv7),
/// so each insert appends to its primary-key index rather than dirtying a random page of it
/// (a random v4 id cost every call a few more 4 KiB pages in each commit).
pub fn new_row_id() -> uuid::Uuid {
    uuid::Uuid::now_v7()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub fn name(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }
}

/// Pool settings, from the service configuration.
#[derive(Debug, Clone)]
pub struct PoolOptions {
    pub max_connections: u32,
    pub acquire_timeout: Duration,
    /// Seals every audit entry written (its hash signed with a key outside the database).
    pub sealer: Option<std::sync::Arc<seal::Sealer>>,
    /// PostgreSQL: no statement runs longer (a stuck query must not hold a hook call).
    pub statement_timeout: Duration,
}

impl Default for PoolOptions {
    fn default() -> Self {
        PoolOptions {
            max_connections: 10,
            acquire_timeout: Duration::from_secs(3),
            sealer: None,
            statement_timeout: Duration::from_secs(5),
        }
    }
}

#[async_trait::async_trait]
pub trait Store: Send + Sync + 'static {
    fn backend(&self) -> Backend;
    /// Apply pending migrations (idempotent).
    async fn migrate(&self) -> Result<(), StoreError>;
    /// Without migrating: fail unless every migration this build knows is applied.
    async fn check_schema(&self) -> Result<(), StoreError>;
    /// Periodic upkeep (PostgreSQL: the coming months' audit partitions). Returns what the
    /// next writes need and is still missing (warned about), empty when all is in place.
    async fn maintain(&self) -> Vec<String>;
    /// Whether the database answers and still is the one we opened.
    async fn ping(&self) -> Result<(), StoreError>;
    async fn close(&self);
    /// The session settings that matter for durability and latency, as the database reports
    /// them (SQLite journal mode and synchronous level; PostgreSQL statement timeout and TLS).
    async fn describe(&self) -> Result<serde_json::Value, StoreError>;
    /// Retention: append a checkpoint to each tenant's chain that names its last entry recorded
    /// before `cutoff`, then drop the monthly audit partitions that end on or before it.
    /// Returns the partitions dropped. PostgreSQL only: SQLite entries are never removed.
    async fn drop_audit_before(&self, cutoff: time::Date) -> Result<Vec<String>, StoreError>;
    /// Open and idle connections of the pool (for metrics).
    fn pool_state(&self) -> (u32, usize);
    /// Whether the database accepts a new connection now, outside the pool: tells a pool
    /// whose connections are all busy (load) from one still counting connections to a server
    /// that has died. Backends without a server to lose answer `Ok`.
    async fn reachable(&self) -> Result<(), StoreError> {
        Ok(())
    }
    async fn insert_careplan(&self, plan: &NewCarePlan) -> Result<(), StoreError>;
    async fn careplan(&self, id: uuid::Uuid) -> Result<CarePlanRecord, StoreError>;
    /// The CarePlan, cards and audit entry of one hook call, all or nothing.
    async fn record_hook(&self, record: HookRecord) -> Result<(), StoreError>;
    /// Store feedback entries and their audit entry (all or nothing); each is marked whether
    /// its card is known.
    async fn insert_feedback(
        &self,
        entries: &[NewFeedback],
        audit: &NewAuditEntry,
    ) -> Result<(), StoreError>;
    /// Append one audit entry to its tenant's chain.
    async fn append_audit(&self, entry: &NewAuditEntry) -> Result<(), StoreError>;
    async fn audit_entry(&self, id: uuid::Uuid) -> Result<AuditEntry, StoreError>;
    /// The newest entry of every tenant's chain: what `stride audit anchor` checkpoints.
    async fn chain_heads(&self) -> Result<Vec<AuditEntry>, StoreError>;
    /// Entries matching `query`, streamed (never all in memory): by (tenant, seq) when
    /// `chain_order`, else newest first.
    fn audit_stream<'a>(
        &'a self,
        query: &'a AuditQuery,
        chain_order: bool,
    ) -> futures_util::stream::BoxStream<'a, Result<AuditEntry, StoreError>>;
    /// The red-flag cards about `patient_ref` that clinic staff overrode with a reason, oldest
    /// first: each is a clinician's recorded decision on that red flag.
    async fn overridden(
        &self,
        tenant: &crate::TenantId,
        patient_ref: &PatientRef,
    ) -> Result<Vec<Overridden>, StoreError>;
    async fn feedback_for_card(&self, card_uuid: &str) -> Result<Vec<FeedbackRecord>, StoreError>;

    /// Card effectiveness: shown, accepted, overridden (by reason) and without feedback, per
    /// rule-set version, card, tenant and month. Read from the daily roll-up (`card_days`,
    /// kept by the database as cards and feedback are recorded) when the query covers whole
    /// UTC days, else counted from the cards.
    async fn card_outcomes(&self, q: &CardOutcomeQuery) -> Result<Vec<CardOutcome>, StoreError>;
    /// The same counts, always counted from the cards and their feedback: what the roll-up
    /// must equal.
    async fn card_outcomes_recounted(
        &self,
        q: &CardOutcomeQuery,
    ) -> Result<Vec<CardOutcome>, StoreError>;

    /// Keep an impact report computed for signers (the same report twice is kept once; a
    /// body given for a report kept without one fills it in).
    async fn record_impact_report(&self, r: &ImpactReport) -> Result<(), StoreError>;

    /// The newest kept report with a body of this version (its file content) against the
    /// version in force, for this clinic: what the impact page shows without computing it.
    async fn latest_impact_report(
        &self,
        guideline_id: &str,
        version: &str,
        content_hash: &str,
        in_force_version: &str,
        tenant: &crate::TenantId,
    ) -> Result<Option<ImpactReport>, StoreError>;

    /// The kept impact reports with this hash for this version and clinic.
    async fn impact_report(
        &self,
        impact_hash: &str,
        guideline_id: &str,
        version: &str,
        tenant: &crate::TenantId,
    ) -> Result<Vec<ImpactReport>, StoreError>;

    /// A sign-off and its audit entry, in one write.
    async fn record_sign_off(&self, s: &SignOff, audit: &NewAuditEntry) -> Result<(), StoreError>;

    /// Every sign-off on a version of `guideline_id`, oldest first.
    async fn sign_offs(&self, guideline_id: &str) -> Result<Vec<SignOff>, StoreError>;

    /// An activation and its audit entry, in one write.
    async fn record_activation(
        &self,
        a: &Activation,
        audit: &NewAuditEntry,
    ) -> Result<(), StoreError>;

    /// Every activation, oldest first (the newest per clinic and guideline is in force).
    async fn activations(&self) -> Result<Vec<Activation>, StoreError>;

    /// Every feedback on the cards `q` selects, oldest first, with whom the card was shown to:
    /// a stream, so an export of a year of a large clinic's feedback is written as it is read
    /// rather than held whole in memory.
    fn feedback_stream<'a>(
        &'a self,
        q: &'a CardOutcomeQuery,
    ) -> futures_util::stream::BoxStream<'a, Result<FeedbackRow, StoreError>>;
    /// The stored answers of the calls sent under a hookInstance (kept for `HOOK_ANSWER_DAYS`;
    /// one per distinct request, a few at most).
    async fn hook_answers(&self, hook_instance: &str) -> Result<Vec<HookAnswer>, StoreError>;
    /// The patient's pending draft with this decision key, if there is one (at most one can
    /// be: a unique index holds it).
    async fn pending_draft(
        &self,
        tenant: &crate::TenantId,
        patient_ref: &PatientRef,
        decision_key: &str,
    ) -> Result<Option<CarePlanRecord>, StoreError>;
    /// The patient's CarePlans of a guideline a decision reads: the most recently approved
    /// (`active`) one and the pending drafts with a decision key.
    async fn patient_plans(
        &self,
        tenant: &crate::TenantId,
        patient_ref: &PatientRef,
        rule_set_id: &str,
    ) -> Result<PatientPlans, StoreError>;
    /// CarePlans of a tenant (all tenants when `None`), newest first, red flags first.
    async fn search_careplans(
        &self,
        query: &CarePlanQuery,
    ) -> Result<Vec<CarePlanRecord>, StoreError>;
    /// Apply a review and its audit entry, all or nothing; `Conflict` when someone else decided
    /// first (the plan is no longer at the expected version).
    async fn review_careplan(
        &self,
        review: &Review,
        audit: &NewAuditEntry,
    ) -> Result<CarePlanRecord, StoreError>;
    /// The audit entry of the hook call that drafted a CarePlan.
    async fn drafting_entry(&self, careplan_id: uuid::Uuid) -> Result<AuditEntry, StoreError>;
    /// Claim a JWT id until it expires: whether it is new is decided at once; making the claim
    /// durable may still be under way (see `JtiClaim::durable`).
    async fn claim_jti(
        &self,
        issuer: &str,
        jti: &str,
        expires_at: i64,
        now: i64,
    ) -> Result<JtiClaim, StoreError>;
    /// Write a hook call's record and make its token's claim durable with it: nothing of the
    /// call is stored unless both are. (SQLite writes a claim still to be written in the
    /// record's transaction; elsewhere the claim is made durable first.)
    ///
    /// On a failure the claim stays with the caller, still to be made durable, so that the call
    /// may be decided again and recorded under it (a lost race for the patient's draft).
    async fn record_hook_claimed(
        &self,
        record: HookRecord,
        claim: &mut JtiClaim,
    ) -> Result<(), StoreError> {
        if let Some(row) = claim.take_pending() {
            row.write().await?;
        }
        self.record_hook(record).await
    }
    /// Remember a JWT id until it expires, durably. `false`: it was seen before (a replay).
    async fn remember_jti(
        &self,
        issuer: &str,
        jti: &str,
        expires_at: i64,
        now: i64,
    ) -> Result<bool, StoreError> {
        let claim = self.claim_jti(issuer, jti, expires_at, now).await?;
        let fresh = claim.fresh;
        claim.durable().await?;
        Ok(fresh)
    }
    /// Keep a sign-in in progress until its callback (expired ones are forgotten).
    async fn begin_login(&self, login: &PendingLogin, now: i64) -> Result<(), StoreError>;
    /// The sign-in `state_hash` names, removed so that it can finish only once.
    async fn take_login(
        &self,
        state_hash: &str,
        now: i64,
    ) -> Result<Option<PendingLogin>, StoreError>;
    async fn create_session(&self, session: &StaffSession, now: i64) -> Result<(), StoreError>;
    /// The unexpired session whose cookie hashes to `id_hash`.
    async fn session(&self, id_hash: &str, now: i64) -> Result<Option<StaffSession>, StoreError>;
    /// Sign out: the session is gone for every replica.
    async fn end_session(&self, id_hash: &str) -> Result<(), StoreError>;
}

/// Open the database a URL names: `sqlite://PATH` or `postgres://…`.
pub async fn connect(url: &str, options: &PoolOptions) -> Result<Arc<dyn Store>, StoreError> {
    if url.starts_with("sqlite:") {
        Ok(Arc::new(sqlite::SqliteStore::connect(url, options).await?))
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Arc::new(postgres::PgStore::connect(url, options).await?))
    } else {
        Err(StoreError::UnsupportedUrl)
    }
}

#[cfg(test)]
mod tests {
    use super::JtiPurge;

    #[test]
    fn expired_ids_are_purged_by_one_caller_a_minute() {
        let purge = JtiPurge::default();
        let now = 1_800_000_000;
        assert!(purge.due(now), "the first call after start purges");
        assert!(!purge.due(now), "not again at once");
        assert!(!purge.due(now + 59));
        assert!(purge.due(now + 60));
    }
}

/// Whether a feedback entry overrode its card with a reason (CDS Hooks `overrideReason`): only
/// then did a clinician record a decision; an override without one is a dismissal.
pub(crate) fn overridden_with_reason(details: &serde_json::Value) -> bool {
    details["outcome"] == "overridden" && details["overrideReason"].is_object()
}
