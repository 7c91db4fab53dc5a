//! Failing fast while the database is down. Without this, every call during an outage waited
//! out the pool's acquire timeout (3 s then; 300 ms now, within the CDS Hooks 500 ms budget) before its
//! 503, so EHRs timed out first and retried into the same wait. Once an operation finds the
//! database unavailable, every operation answers `StoreError::Down` at once, and one task
//! probes the database in the background until it answers again.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::stream::{self, BoxStream, StreamExt};

use crate::{
    Activation, AuditEntry, AuditQuery, Backend, CardOutcome, CardOutcomeQuery, CarePlanQuery,
    CarePlanRecord, FeedbackRecord, FeedbackRow, HookAnswer, HookRecord, ImpactReport, JtiClaim,
    NewAuditEntry, NewCarePlan, NewFeedback, PendingLogin, Review, SignOff, StaffSession, Store,
    StoreError,
};

/// How often the background probe tries a database that is down: recovery is seen within
/// this, and a dead database costs one connection attempt per interval.
pub const PROBE_INTERVAL: Duration = Duration::from_millis(250);

/// How long an operation may wait before the guard checks, beside it, whether the database
/// still answers. A call in flight when PostgreSQL stopped waited out the whole acquire time
/// (1 s, twice the CDS Hooks budget) while the pool retried a refused port; checked at this
/// age, a refused server is marked down and every operation still waiting is released with
/// `Down` at once. Ordinary operations take 1-10 ms (docs/benchmarks.md); one slower than this
/// costs at most one connection opened per probe interval (`suspect`).
pub const SUSPECT_AFTER: Duration = Duration::from_millis(100);

/// Whether the database is known to be down, for the whole process.
#[derive(Debug)]
pub struct Health {
    down: AtomicBool,
    /// Operations answered `Down` without touching the database.
    fast_failures: AtomicU64,
    /// Operations the database was too busy for (`StoreError::Overloaded`): load, not down.
    overloads: AtomicU64,
    /// A check that the database still accepts connections is under way (`suspect`).
    checking: AtomicBool,
    /// Woken when the database is marked down: operations still waiting give up (`watched`).
    went_down: tokio::sync::Notify,
    /// When an operation last had an answer from the database, in milliseconds after `since`
    /// (0: never). Readiness reads it (`answered_within`).
    answered_ms: AtomicU64,
    since: std::time::Instant,
}

impl Default for Health {
    fn default() -> Health {
        Health {
            down: AtomicBool::new(false),
            fast_failures: AtomicU64::new(0),
            overloads: AtomicU64::new(0),
            checking: AtomicBool::new(false),
            went_down: tokio::sync::Notify::new(),
            answered_ms: AtomicU64::new(0),
            since: std::time::Instant::now(),
        }
    }
}

impl Health {
    pub fn is_down(&self) -> bool {
        self.down.load(Ordering::Acquire)
    }

    pub fn fast_failures(&self) -> u64 {
        self.fast_failures.load(Ordering::Relaxed)
    }

    pub fn overloads(&self) -> u64 {
        self.overloads.load(Ordering::Relaxed)
    }

    /// Whether some operation had an answer from the database within `window`. A pool whose
    /// every connection is in use, and one that lost its idle connections to acquires that ran
    /// out of time while checking them (sqlx drops a connection whose check it abandons, so a
    /// saturated pool can hold none for a moment), are told apart from a process that cannot
    /// get a connection at all by this: the first two answered a moment ago.
    pub fn answered_within(&self, window: Duration) -> bool {
        let at = self.answered_ms.load(Ordering::Relaxed);
        at != 0 && self.since.elapsed().as_millis() as u64 + 1 <= at + window.as_millis() as u64
    }

    fn answered(&self) {
        let now = self.since.elapsed().as_millis() as u64 + 1;
        self.answered_ms.fetch_max(now, Ordering::Relaxed);
    }
}

/// A store that fails fast while its database is known to be down.
pub struct Guarded {
    inner: Arc<dyn Store>,
    health: Arc<Health>,
}

impl Guarded {
    pub fn new(inner: Arc<dyn Store>) -> Guarded {
        Guarded {
            inner,
            health: Arc::new(Health::default()),
        }
    }

    pub fn health(&self) -> Arc<Health> {
        self.health.clone()
    }

    /// Run one read, and stop waiting for it once the database is marked down: a call in
    /// flight when the server went away is answered with the calls after it, not after the
    /// pool's acquire time. Only reads: a write dropped half way could still commit (its job
    /// handed to a group writer, its COMMIT sent) while its caller is told it failed, or lose a
    /// token's claim it had taken; writes are bounded by the acquire and statement times.
    async fn watched<T>(
        &self,
        call: impl std::future::Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        let down = self.health.went_down.notified();
        tokio::pin!(down);
        // Registered before the check below, so a mark between the two is not missed.
        down.as_mut().enable();
        self.refuse()?;
        tokio::select! {
            // A result that is ready wins over a mark made at the same moment.
            biased;
            r = self.checked(call) => r,
            _ = &mut down => {
                self.health.fast_failures.fetch_add(1, Ordering::Relaxed);
                Err(StoreError::Down)
            }
        }
    }

    /// Run one operation; one still waiting at `SUSPECT_AFTER` has the database checked
    /// beside it (`suspect`), so that a server that died is marked down while it waits.
    async fn checked<T>(
        &self,
        call: impl std::future::Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        let slow = async {
            tokio::time::sleep(SUSPECT_AFTER).await;
            self.suspect();
            std::future::pending::<()>().await
        };
        tokio::select! {
            biased;
            r = call => r,
            _ = slow => unreachable!("pending never completes"),
        }
    }

    fn refuse(&self) -> Result<(), StoreError> {
        if self.health.is_down() {
            self.health.fast_failures.fetch_add(1, Ordering::Relaxed);
            return Err(StoreError::Down);
        }
        Ok(())
    }

    fn saw<T>(&self, r: Result<T, StoreError>) -> Result<T, StoreError> {
        match &r {
            // Not found, a duplicate key, a conflict, an error the server sent (a statement
            // timeout, say) or a row it sent that cannot be read are the database's answers
            // too; a protocol or decoding error may not have reached it.
            Ok(_)
            | Err(
                StoreError::NotFound
                | StoreError::Duplicate(_)
                | StoreError::Conflict(_)
                | StoreError::Database(sqlx::Error::Database(_))
                | StoreError::Corrupt(_)
                | StoreError::UnreadableEntry(_),
            ) => self.health.answered(),
            Err(e) if e.is_unavailable() && !matches!(e, StoreError::Down) => self.went_down(),
            // A long wait for a connection is load, or a database that no longer answers (sqlx
            // retries a refused connection until the acquire time is out, and the pool counts
            // connections it is still opening): `suspect` tells them apart.
            Err(e) if e.is_overloaded() => {
                self.health.overloads.fetch_add(1, Ordering::Relaxed);
                self.suspect();
            }
            _ => {}
        }
        r
    }

    /// A wait for a connection ran out, or an operation is still waiting at `SUSPECT_AFTER`:
    /// load, unless the server has died. The pool cannot
    /// say which: it counts the connections it held and those it is still opening, so an
    /// empty pool was no sign either (on PostgreSQL, a saturated pool opening connections
    /// slower than the acquire time was marked down; just after the server died, a pool still
    /// counting its old connections answered "busy" two seconds into the outage: each in
    /// about one run in four of the database-loss tests). One check at a time opens a
    /// connection outside the pool; refused or silent, the database is down (a server that
    /// answers with an error, such as no connection slot free, is up). A call that ran out of
    /// acquire time is answered `overloaded` either way.
    fn suspect(&self) {
        if self.health.is_down() || self.health.checking.swap(true, Ordering::AcqRel) {
            return;
        }
        let (inner, health) = (self.inner.clone(), self.health.clone());
        tokio::spawn(async move {
            // Down only when nothing answers: a server that says it has no slot free, or
            // answers with any other error, is alive (marking it down would refuse every call
            // for a probe interval: the false outage the guard exists to avoid).
            let answered = tokio::time::timeout(Duration::from_secs(2), inner.reachable()).await;
            if matches!(answered, Err(_)) || matches!(&answered, Ok(Err(e)) if e.is_unavailable()) {
                mark_down(inner, health.clone());
            }
            // Not again at once: under saturation, one check per probe interval at most.
            tokio::time::sleep(PROBE_INTERVAL).await;
            health.checking.store(false, Ordering::Release);
        });
    }

    /// Mark the database down and start the one probe that marks it up again.
    fn went_down(&self) {
        mark_down(self.inner.clone(), self.health.clone());
    }
}

/// Mark the database down and start the one probe that marks it up again.
fn mark_down(inner: Arc<dyn Store>, health: Arc<Health>) {
    if health.down.swap(true, Ordering::AcqRel) {
        return;
    }
    health.went_down.notify_waiters();
    tracing::warn!("the database is unavailable: failing fast until it answers again");
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(PROBE_INTERVAL).await;
            let answered = tokio::time::timeout(Duration::from_secs(2), inner.ping()).await;
            if matches!(answered, Ok(Ok(()))) {
                health.down.store(false, Ordering::Release);
                tracing::info!("the database answers again");
                return;
            }
        }
    });
}

/// Every operation that writes: refused at once while the database is down, and its outcome
/// watched for the database going away; never dropped half way (`watched`).
macro_rules! guarded {
    ($self:ident, $call:expr) => {{
        $self.refuse()?;
        let r = $self.checked($call).await;
        $self.saw(r)
    }};
}

/// Every operation that only reads: as `guarded!`, and released with `Down` as soon as the
/// database is marked down while it waits.
macro_rules! read {
    ($self:ident, $call:expr) => {{
        let r = $self.watched($call).await;
        $self.saw(r)
    }};
}

#[async_trait::async_trait]
impl Store for Guarded {
    fn backend(&self) -> Backend {
        self.inner.backend()
    }
    async fn migrate(&self) -> Result<(), StoreError> {
        self.inner.migrate().await
    }
    async fn check_schema(&self) -> Result<(), StoreError> {
        self.inner.check_schema().await
    }
    async fn maintain(&self) -> Vec<String> {
        if self.health.is_down() {
            return Vec::new();
        }
        self.inner.maintain().await
    }
    async fn ping(&self) -> Result<(), StoreError> {
        read!(self, self.inner.ping())
    }
    async fn close(&self) {
        self.inner.close().await
    }
    async fn describe(&self) -> Result<serde_json::Value, StoreError> {
        read!(self, self.inner.describe())
    }
    async fn drop_audit_before(&self, cutoff: time::Date) -> Result<Vec<String>, StoreError> {
        guarded!(self, self.inner.drop_audit_before(cutoff))
    }
    fn pool_state(&self) -> (u32, usize) {
        self.inner.pool_state()
    }
    async fn reachable(&self) -> Result<(), StoreError> {
        self.inner.reachable().await
    }
    async fn insert_careplan(&self, plan: &NewCarePlan) -> Result<(), StoreError> {
        guarded!(self, self.inner.insert_careplan(plan))
    }
    async fn careplan(&self, id: uuid::Uuid) -> Result<CarePlanRecord, StoreError> {
        read!(self, self.inner.careplan(id))
    }
    async fn record_hook(&self, record: HookRecord) -> Result<(), StoreError> {
        guarded!(self, self.inner.record_hook(record))
    }
    async fn insert_feedback(
        &self,
        entries: &[NewFeedback],
        audit: &NewAuditEntry,
    ) -> Result<(), StoreError> {
        guarded!(self, self.inner.insert_feedback(entries, audit))
    }
    async fn append_audit(&self, entry: &NewAuditEntry) -> Result<(), StoreError> {
        guarded!(self, self.inner.append_audit(entry))
    }
    async fn audit_entry(&self, id: uuid::Uuid) -> Result<AuditEntry, StoreError> {
        read!(self, self.inner.audit_entry(id))
    }
    async fn chain_heads(&self) -> Result<Vec<AuditEntry>, StoreError> {
        read!(self, self.inner.chain_heads())
    }
    fn audit_stream<'a>(
        &'a self,
        query: &'a AuditQuery,
        chain_order: bool,
    ) -> BoxStream<'a, Result<AuditEntry, StoreError>> {
        if let Err(e) = self.refuse() {
            return stream::once(async { Err(e) }).boxed();
        }
        self.inner
            .audit_stream(query, chain_order)
            .map(move |r| self.saw(r))
            .boxed()
    }
    async fn record_impact_report(&self, r: &ImpactReport) -> Result<(), StoreError> {
        guarded!(self, self.inner.record_impact_report(r))
    }
    async fn latest_impact_report(
        &self,
        guideline_id: &str,
        version: &str,
        content_hash: &str,
        in_force_version: &str,
        tenant: &crate::TenantId,
    ) -> Result<Option<ImpactReport>, StoreError> {
        read!(
            self,
            self.inner.latest_impact_report(
                guideline_id,
                version,
                content_hash,
                in_force_version,
                tenant
            )
        )
    }
    async fn impact_report(
        &self,
        impact_hash: &str,
        guideline_id: &str,
        version: &str,
        tenant: &crate::TenantId,
    ) -> Result<Vec<ImpactReport>, StoreError> {
        read!(
            self,
            self.inner
                .impact_report(impact_hash, guideline_id, version, tenant)
        )
    }
    async fn record_sign_off(&self, s: &SignOff, audit: &NewAuditEntry) -> Result<(), StoreError> {
        guarded!(self, self.inner.record_sign_off(s, audit))
    }
    async fn sign_offs(&self, guideline_id: &str) -> Result<Vec<SignOff>, StoreError> {
        read!(self, self.inner.sign_offs(guideline_id))
    }
    async fn record_activation(
        &self,
        a: &Activation,
        audit: &NewAuditEntry,
    ) -> Result<(), StoreError> {
        guarded!(self, self.inner.record_activation(a, audit))
    }
    async fn activations(&self) -> Result<Vec<Activation>, StoreError> {
        read!(self, self.inner.activations())
    }
    async fn card_outcomes(&self, q: &CardOutcomeQuery) -> Result<Vec<CardOutcome>, StoreError> {
        read!(self, self.inner.card_outcomes(q))
    }

    async fn card_outcomes_recounted(
        &self,
        q: &CardOutcomeQuery,
    ) -> Result<Vec<CardOutcome>, StoreError> {
        read!(self, self.inner.card_outcomes_recounted(q))
    }
    fn feedback_stream<'a>(
        &'a self,
        q: &'a CardOutcomeQuery,
    ) -> BoxStream<'a, Result<FeedbackRow, StoreError>> {
        self.inner
            .feedback_stream(q)
            .map(move |r| self.saw(r))
            .boxed()
    }
    async fn overridden(
        &self,
        tenant: &crate::TenantId,
        patient_ref: &crate::PatientRef,
    ) -> Result<Vec<crate::Overridden>, StoreError> {
        read!(self, self.inner.overridden(tenant, patient_ref))
    }
    async fn feedback_for_card(&self, card_uuid: &str) -> Result<Vec<FeedbackRecord>, StoreError> {
        read!(self, self.inner.feedback_for_card(card_uuid))
    }
    async fn hook_answers(&self, hook_instance: &str) -> Result<Vec<HookAnswer>, StoreError> {
        read!(self, self.inner.hook_answers(hook_instance))
    }
    async fn pending_draft(
        &self,
        tenant: &crate::TenantId,
        patient_ref: &crate::PatientRef,
        decision_key: &str,
    ) -> Result<Option<CarePlanRecord>, StoreError> {
        read!(
            self,
            self.inner.pending_draft(tenant, patient_ref, decision_key)
        )
    }
    async fn patient_plans(
        &self,
        tenant: &crate::TenantId,
        patient_ref: &crate::PatientRef,
        rule_set_id: &str,
    ) -> Result<crate::PatientPlans, StoreError> {
        read!(
            self,
            self.inner.patient_plans(tenant, patient_ref, rule_set_id)
        )
    }
    async fn search_careplans(
        &self,
        query: &CarePlanQuery,
    ) -> Result<Vec<CarePlanRecord>, StoreError> {
        read!(self, self.inner.search_careplans(query))
    }
    async fn review_careplan(
        &self,
        review: &Review,
        audit: &NewAuditEntry,
    ) -> Result<CarePlanRecord, StoreError> {
        guarded!(self, self.inner.review_careplan(review, audit))
    }
    async fn drafting_entry(&self, careplan_id: uuid::Uuid) -> Result<AuditEntry, StoreError> {
        read!(self, self.inner.drafting_entry(careplan_id))
    }
    async fn claim_jti(
        &self,
        issuer: &str,
        jti: &str,
        expires_at: i64,
        now: i64,
    ) -> Result<JtiClaim, StoreError> {
        guarded!(self, self.inner.claim_jti(issuer, jti, expires_at, now))
    }
    async fn record_hook_claimed(
        &self,
        record: HookRecord,
        claim: &mut JtiClaim,
    ) -> Result<(), StoreError> {
        guarded!(self, self.inner.record_hook_claimed(record, claim))
    }
    async fn remember_jti(
        &self,
        issuer: &str,
        jti: &str,
        expires_at: i64,
        now: i64,
    ) -> Result<bool, StoreError> {
        guarded!(self, self.inner.remember_jti(issuer, jti, expires_at, now))
    }
    async fn begin_login(&self, login: &PendingLogin, now: i64) -> Result<(), StoreError> {
        guarded!(self, self.inner.begin_login(login, now))
    }
    async fn take_login(
        &self,
        state_hash: &str,
        now: i64,
    ) -> Result<Option<PendingLogin>, StoreError> {
        guarded!(self, self.inner.take_login(state_hash, now))
    }
    async fn create_session(&self, session: &StaffSession, now: i64) -> Result<(), StoreError> {
        guarded!(self, self.inner.create_session(session, now))
    }
    async fn session(&self, id_hash: &str, now: i64) -> Result<Option<StaffSession>, StoreError> {
        read!(self, self.inner.session(id_hash, now))
    }
    async fn end_session(&self, id_hash: &str) -> Result<(), StoreError> {
        guarded!(self, self.inner.end_session(id_hash))
    }
}
