use std::str::FromStr;

use futures_util::stream::BoxStream;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::Row;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::audit::Action;
use crate::model::Review;
use crate::stream::{async_stream, paged, After};
use crate::{
    Activation, AuditEntry, AuditQuery, Backend, CardOutcome, CardOutcomeQuery, CarePlanQuery,
    CarePlanRecord, CarePlanStatus, FeedbackRecord, FeedbackRow, HookAnswer, HookRecord,
    ImpactReport, JtiClaim, NewAuditEntry, NewCarePlan, NewFeedback, PendingLogin, PoolOptions,
    SignOff, StaffSession, Store, StoreError,
};

mod chain;
mod claims;
mod engine;
mod inplace;
pub(crate) mod packed;
mod writer;

use chain::{append, Prepared};
use engine::{at, error};
use rusqlite::{params, Connection, OptionalExtension};
use writer::{group_writer, Work, Writer};

pub(crate) use claims::Deferred;
pub(crate) use engine::error as read_error;

/// The migrations this build carries, compiled in.
static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations/sqlite");

pub struct SqliteStore {
    pool: SqlitePool,
    /// The hook call's reads, run on the calling thread (see `inplace`).
    inplace: inplace::InPlace,
    writer: Writer,
    /// Token ids claimed by calls in flight, not yet written (see `claims`).
    held: std::sync::Arc<claims::Held>,
    jti_purge: crate::JtiPurge,
}

impl SqliteStore {
    pub async fn connect(url: &str, options: &PoolOptions) -> Result<Self, StoreError> {
        let opts = SqliteConnectOptions::from_str(url)
            .map_err(StoreError::Database)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // WAL + NORMAL is durable against process crashes; FULL also against power loss,
            // which is what an acknowledged clinical decision needs.
            .synchronous(SqliteSynchronous::Full)
            // Each write's savepoint keeps a statement journal; past 64 KiB in one group SQLite
            // spills it to a temporary file (open, write, unlink on every group). It only ever
            // undoes a write inside its open transaction, so memory is the place for it.
            .pragma("temp_store", "memory")
            .foreign_keys(true)
            .busy_timeout(std::time::Duration::from_secs(5));
        // An in-memory database lives in this process's connections only (sqlx shares one
        // among its own through SQLite's shared cache, under a name of its making): the
        // in-place reads could not open it, and a decision's record would not outlive the
        // process, which no acknowledged clinical decision may do.
        let file = opts.get_filename().to_path_buf();
        let named = file.to_string_lossy();
        if url.contains(":memory:")
            || url.contains("mode=memory")
            || named == ":memory:"
            || named.starts_with("file:")
        {
            return Err(StoreError::Unsupported(
                "an in-memory SQLite database: name a file (sqlite://PATH)",
            ));
        }
        let pool = SqlitePoolOptions::new()
            // A connection to a local file does not go stale; the liveness ping sqlx makes by
            // default would be one more trip to the connection's thread on every read.
            .test_before_acquire(false)
            .max_connections(options.max_connections)
            .acquire_timeout(options.acquire_timeout)
            .connect_with(opts)
            .await?;
        // The writer's connection, opened here: a file that cannot be opened is refused at
        // start rather than answering every write 503. One SQLite may only read is opened
        // read-only, without a word, and kept: the command line reads such a copy (an audit
        // verified), and a server's writes to it are answered 503 until it can be written.
        let own = (
            engine::open(&file, options.acquire_timeout)?,
            engine::identity(&file)?,
        );
        let (writer, queue) = tokio::sync::mpsc::channel(1024);
        let (sealer, wait, at_path) = (
            options.sealer.clone(),
            options.acquire_timeout,
            file.clone(),
        );
        std::thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || group_writer(at_path, Some(own), queue, sealer, wait))
            .map_err(|e| StoreError::Unavailable(sqlx::Error::Io(e)))?;
        Ok(SqliteStore {
            pool,
            inplace: inplace::InPlace::new(file.clone()),
            writer: Writer {
                queue: writer,
                path: file,
                closed: Default::default(),
            },
            held: Default::default(),
            jti_purge: Default::default(),
        })
    }
}

#[async_trait::async_trait]
impl Store for SqliteStore {
    fn backend(&self) -> Backend {
        Backend::Sqlite
    }

    #[tracing::instrument(skip_all)]
    async fn migrate(&self) -> Result<(), StoreError> {
        MIGRATOR.run(&self.pool).await?;
        Ok(())
    }

    #[tracing::instrument(skip_all)]
    async fn check_schema(&self) -> Result<(), StoreError> {
        let applied: Option<i64> = sqlx::query_scalar(crate::APPLIED_MIGRATION)
            .fetch_one(&self.pool)
            .await
            .unwrap_or(None);
        crate::schema_current(&MIGRATOR, applied)
    }

    async fn maintain(&self) -> Vec<String> {
        Vec::new()
    }

    #[tracing::instrument(skip_all)]
    async fn ping(&self) -> Result<(), StoreError> {
        self.writer.file_present()?;
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn close(&self) {
        self.writer
            .closed
            .store(true, std::sync::atomic::Ordering::Release);
        self.inplace.close();
        self.pool.close().await;
    }

    async fn describe(&self) -> Result<serde_json::Value, StoreError> {
        let journal: String = sqlx::query_scalar("PRAGMA journal_mode")
            .fetch_one(&self.pool)
            .await?;
        let synchronous: i64 = sqlx::query_scalar("PRAGMA synchronous")
            .fetch_one(&self.pool)
            .await?;
        let temp_store: i64 = sqlx::query_scalar("PRAGMA temp_store")
            .fetch_one(&self.pool)
            .await?;
        let level = match synchronous {
            0 => "off",
            1 => "normal",
            2 => "full",
            _ => "extra",
        };
        let temp_store = match temp_store {
            1 => "file",
            2 => "memory",
            _ => "default",
        };
        Ok(
            serde_json::json!({"journal_mode": journal, "synchronous": level, "temp_store": temp_store}),
        )
    }

    async fn drop_audit_before(&self, _cutoff: time::Date) -> Result<Vec<String>, StoreError> {
        Err(StoreError::Unsupported(
            "retention drops monthly partitions: PostgreSQL only (SQLite keeps every entry)",
        ))
    }

    fn pool_state(&self) -> (u32, usize) {
        (self.pool.size(), self.pool.num_idle())
    }

    #[tracing::instrument(skip_all)]
    async fn insert_careplan(&self, p: &NewCarePlan) -> Result<(), StoreError> {
        let p = p.clone();
        self.write(move |c, _| insert_careplan(c, &p)).await
    }

    #[tracing::instrument(skip_all, fields(cards = record.cards.len()))]
    async fn record_hook(&self, record: HookRecord) -> Result<(), StoreError> {
        self.record(record, None).await
    }

    // The same span as a record alone: one name for "the call's write" on every backend.
    #[tracing::instrument(name = "record_hook", skip_all, fields(cards = record.cards.len()))]
    async fn record_hook_claimed(
        &self,
        record: HookRecord,
        claim: &mut JtiClaim,
    ) -> Result<(), StoreError> {
        // Without a row still to write, the claim is durable already.
        let Some(pending) = claim.take_pending() else {
            return self.record(record, None).await;
        };
        let deferred = pending
            .into_any()
            .downcast::<Deferred>()
            .map_err(|_| StoreError::CommitFailed("a token claim of another backend".into()))?;
        match self.record(record, deferred.row()).await {
            Ok(()) => {
                deferred.written();
                Ok(())
            }
            // Not written with the record: still the caller's, for another try.
            Err(e) => {
                claim.restore(deferred);
                Err(e)
            }
        }
    }

    #[tracing::instrument(skip_all, fields(entries = entries.len()))]
    async fn insert_feedback(
        &self,
        entries: &[NewFeedback],
        audit: &NewAuditEntry,
    ) -> Result<(), StoreError> {
        let (entries, audit) = (entries.to_vec(), Prepared::new(audit.clone()));
        self.write(move |c, heads| {
            let mut q = c
                .prepare_cached(
                    "INSERT INTO feedback (id, tenant, service_id, card_uuid, known_card, outcome, details, outcome_timestamp, received_at, patient_ref, decision_id)
                     VALUES (?1, ?2, ?3, ?4, EXISTS (SELECT 1 FROM cards WHERE uuid = ?4 AND tenant = ?2), ?5, ?6, ?7, ?8,
                             (SELECT patient_ref FROM cards WHERE uuid = ?4 AND tenant = ?2),
                             (SELECT decision_id FROM cards WHERE uuid = ?4 AND tenant = ?2))",
                )
                .map_err(error)?;
            for f in &entries {
                q.execute(params![
                    f.id.to_string(),
                    f.tenant.as_str(),
                    f.service_id,
                    f.card_uuid,
                    f.outcome,
                    f.details.to_string(),
                    at(f.outcome_timestamp)?,
                    at(f.received_at)?,
                ])
                .map_err(error)?;
            }
            append(c, heads, &audit)
        })
        .await
    }

    #[tracing::instrument(skip_all)]
    async fn record_impact_report(&self, r: &ImpactReport) -> Result<(), StoreError> {
        let r = r.clone();
        self.write(move |c, _| {
            let computed = at(r.computed_at)?;
            c.prepare_cached(
                "INSERT INTO impact_reports (impact_hash, guideline_id, version, content_hash, in_force_version,
                                             tenant, decisions, changed, computed_at, report)
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                 ON CONFLICT (impact_hash, guideline_id, version, content_hash, in_force_version, tenant)
                 DO UPDATE SET report = COALESCE(impact_reports.report, excluded.report)",
            )
            .and_then(|mut q| {
                q.execute(params![
                    r.impact_hash,
                    r.guideline_id,
                    r.version,
                    r.content_hash,
                    r.in_force_version,
                    r.tenant.as_str(),
                    r.decisions,
                    r.changed,
                    computed,
                    r.report,
                ])
            })
            .map_err(error)?;
            Ok(())
        })
        .await
    }

    async fn latest_impact_report(
        &self,
        guideline_id: &str,
        version: &str,
        content_hash: &str,
        in_force_version: &str,
        tenant: &crate::TenantId,
    ) -> Result<Option<ImpactReport>, StoreError> {
        let row = sqlx::query(
            "SELECT * FROM impact_reports WHERE guideline_id = ? AND version = ? AND content_hash = ?
               AND in_force_version = ? AND tenant = ? AND report IS NOT NULL
             ORDER BY computed_at DESC LIMIT 1",
        )
        .bind(guideline_id)
        .bind(version)
        .bind(content_hash)
        .bind(in_force_version)
        .bind(tenant.as_str())
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(crate::rows::impact_report).transpose()
    }

    async fn impact_report(
        &self,
        impact_hash: &str,
        guideline_id: &str,
        version: &str,
        tenant: &crate::TenantId,
    ) -> Result<Vec<ImpactReport>, StoreError> {
        let rows = sqlx::query(
            "SELECT * FROM impact_reports WHERE impact_hash = ? AND guideline_id = ? AND version = ? AND tenant = ?",
        )
        .bind(impact_hash)
        .bind(guideline_id)
        .bind(version)
        .bind(tenant.as_str())
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(crate::rows::impact_report).collect()
    }

    async fn record_sign_off(&self, s: &SignOff, audit: &NewAuditEntry) -> Result<(), StoreError> {
        let (s, audit) = (s.clone(), Prepared::new(audit.clone()));
        self.write(move |c, heads| {
            let created = at(s.created_at)?;
            c.prepare_cached(
                "INSERT INTO guideline_sign_offs (id, guideline_id, version, content_hash, tenant, signer,
                                                  decision, reason, impact_hash, in_force_version, created_at)
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            )
            .and_then(|mut q| {
                q.execute(params![
                    s.id.to_string(),
                    s.guideline_id,
                    s.version,
                    s.content_hash,
                    s.tenant.as_str(),
                    s.signer,
                    s.decision,
                    s.reason,
                    s.impact_hash,
                    s.in_force_version,
                    created,
                ])
            })
            .map_err(error)?;
            append(c, heads, &audit)
        })
        .await
    }

    async fn sign_offs(&self, guideline_id: &str) -> Result<Vec<SignOff>, StoreError> {
        let rows =
            sqlx::query("SELECT * FROM guideline_sign_offs WHERE guideline_id = ? ORDER BY id")
                .bind(guideline_id)
                .fetch_all(&self.pool)
                .await?;
        rows.iter().map(crate::rows::sign_off).collect()
    }

    async fn record_activation(
        &self,
        a: &Activation,
        audit: &NewAuditEntry,
    ) -> Result<(), StoreError> {
        let (a, audit) = (a.clone(), Prepared::new(audit.clone()));
        self.write(move |c, heads| {
            let created = at(a.created_at)?;
            c.prepare_cached(
                "INSERT INTO guideline_activations (id, guideline_id, version, content_hash, tenant,
                                                    activated_by, created_at)
                 VALUES (?, ?, ?, ?, ?, ?, ?)",
            )
            .and_then(|mut q| {
                q.execute(params![
                    a.id.to_string(),
                    a.guideline_id,
                    a.version,
                    a.content_hash,
                    a.tenant.as_str(),
                    a.activated_by,
                    created,
                ])
            })
            .map_err(error)?;
            append(c, heads, &audit)
        })
        .await
    }

    async fn activations(&self) -> Result<Vec<Activation>, StoreError> {
        let rows = sqlx::query("SELECT * FROM guideline_activations ORDER BY id")
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(crate::rows::activation).collect()
    }

    async fn card_outcomes(&self, q: &CardOutcomeQuery) -> Result<Vec<CardOutcome>, StoreError> {
        let Some((from, to)) = q.whole_days() else {
            return self.card_outcomes_recounted(q).await;
        };
        // A clinic's year is a few thousand rows here (a day per card and version), where
        // counting it from the cards read 500 000 of them (docs/benchmarks.md).
        let day = |d: Option<time::Date>| d.map(|d| d.to_string());
        let bind = |sql| {
            sqlx::query(sql)
                .bind(q.tenant.as_ref().map(crate::TenantId::as_str))
                .bind(day(from))
                .bind(day(to))
                .bind(&q.rule_set_id)
                .bind(&q.rule_set_version)
        };
        let counts = bind(
            "SELECT rule_set_id, rule_set_version, decision_id, tenant, substr(day, 1, 7) AS period,
                    SUM(shown) AS shown, SUM(accepted) AS accepted, SUM(overridden) AS overridden,
                    SUM(shown - with_feedback) AS without_feedback
               FROM card_days c WHERE (?1 IS NULL OR c.tenant = ?1) AND (?2 IS NULL OR c.day >= ?2)
                AND (?3 IS NULL OR c.day < ?3) AND (?4 IS NULL OR c.rule_set_id = ?4)
                AND (?5 IS NULL OR c.rule_set_version = ?5)
              GROUP BY 1, 2, 3, 4, 5 ORDER BY 1, 2, 3, 4, 5",
        )
        .fetch_all(&self.pool)
        .await?;
        let reasons = bind(
            "SELECT rule_set_id, rule_set_version, decision_id, tenant, substr(day, 1, 7) AS period,
                    reason, SUM(cards) AS n
               FROM card_day_reasons c WHERE (?1 IS NULL OR c.tenant = ?1) AND (?2 IS NULL OR c.day >= ?2)
                AND (?3 IS NULL OR c.day < ?3) AND (?4 IS NULL OR c.rule_set_id = ?4)
                AND (?5 IS NULL OR c.rule_set_version = ?5)
              GROUP BY 1, 2, 3, 4, 5, 6 ORDER BY 1, 2, 3, 4, 5, 7 DESC, 6",
        )
        .fetch_all(&self.pool)
        .await?;
        crate::rows::card_outcomes(&counts, &reasons)
    }

    async fn card_outcomes_recounted(
        &self,
        q: &CardOutcomeQuery,
    ) -> Result<Vec<CardOutcome>, StoreError> {
        // One row per card with whether any feedback accepted or overrode it, then counted
        // per version, card, tenant and month; the override reasons in a second pass.
        let counts_sql = format!(
            "WITH fb AS (SELECT card_uuid, tenant,
                                MAX(outcome = 'accepted') AS accepted, MAX(outcome = 'overridden') AS overridden
                           FROM feedback WHERE known_card GROUP BY card_uuid, tenant)
             SELECT c.rule_set_id, c.rule_set_version, c.decision_id, c.tenant,
                    substr(c.created_at, 1, 7) AS period, COUNT(*) AS shown,
                    SUM(COALESCE(fb.accepted, 0)) AS accepted, SUM(COALESCE(fb.overridden, 0)) AS overridden,
                    SUM(fb.card_uuid IS NULL) AS without_feedback
               FROM cards c LEFT JOIN fb ON fb.card_uuid = c.uuid AND fb.tenant = c.tenant
              WHERE {CARD_FILTER}
              GROUP BY 1, 2, 3, 4, 5 ORDER BY 1, 2, 3, 4, 5"
        );
        let counts = bind_card_filter(sqlx::query(&counts_sql), q)
            .fetch_all(&self.pool)
            .await?;
        let reasons_sql = format!(
            "SELECT c.rule_set_id, c.rule_set_version, c.decision_id, c.tenant,
                    substr(c.created_at, 1, 7) AS period,
                    COALESCE(json_extract(f.details, '$.overrideReason.reason.code'), 'unspecified') AS reason,
                    COUNT(DISTINCT c.uuid) AS n
               FROM cards c JOIN feedback f ON f.card_uuid = c.uuid AND f.tenant = c.tenant
                                          AND f.known_card AND f.outcome = 'overridden'
              WHERE {CARD_FILTER}
              GROUP BY 1, 2, 3, 4, 5, 6 ORDER BY 1, 2, 3, 4, 5, 7 DESC, 6"
        );
        let reasons = bind_card_filter(sqlx::query(&reasons_sql), q)
            .fetch_all(&self.pool)
            .await?;
        crate::rows::card_outcomes(&counts, &reasons)
    }

    fn feedback_stream<'a>(
        &'a self,
        q: &'a CardOutcomeQuery,
    ) -> BoxStream<'a, Result<FeedbackRow, StoreError>> {
        // In pages, as the decision log (`stream::paged`): the export goes out at the client's
        // pace, and one statement held open that long is cancelled by the statement timeout.
        let select = format!(
            "SELECT f.id AS feedback_id, f.card_uuid, c.decision_id, c.rule_set_id, c.rule_set_version, f.tenant,
                    f.service_id, f.outcome, f.details, f.outcome_timestamp,
                    c.user_ref AS user, c.encounter AS encounter
               FROM feedback f JOIN cards c ON c.uuid = f.card_uuid AND c.tenant = f.tenant
              WHERE {CARD_FILTER}"
        );
        let first = format!("{select} ORDER BY f.outcome_timestamp, f.id LIMIT ?6");
        let next = format!(
            "{select} AND (f.outcome_timestamp, f.id) > (?7, ?8) ORDER BY f.outcome_timestamp, f.id LIMIT ?6"
        );
        let pool = self.pool.clone();
        let q = q.clone();
        Box::pin(async_stream(move |tx| async move {
            let page = |after: Option<(String, String)>, n: i64| {
                let sql = if after.is_some() { &next } else { &first }.clone();
                let (pool, q) = (pool.clone(), q.clone());
                async move {
                    let mut query = bind_card_filter(sqlx::query(&sql), &q).bind(n);
                    if let Some((t, id)) = after {
                        query = query.bind(t).bind(id);
                    }
                    let rows = query.fetch_all(&pool).await?;
                    rows.iter()
                        .map(|r| {
                            Ok((
                                (
                                    r.try_get::<String, _>("outcome_timestamp")?,
                                    r.try_get::<String, _>("feedback_id")?,
                                ),
                                crate::rows::feedback(r),
                            ))
                        })
                        .collect::<Result<Vec<_>, StoreError>>()
                }
            };
            paged(&tx, i64::MAX, page).await;
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn overridden(
        &self,
        tenant: &crate::TenantId,
        patient_ref: &crate::PatientRef,
    ) -> Result<Vec<crate::Overridden>, StoreError> {
        let rows = sqlx::query(
            "SELECT decision_id, details, outcome_timestamp FROM feedback
              WHERE tenant = ? AND patient_ref = ? AND outcome = 'overridden'
                AND decision_id IS NOT NULL
              ORDER BY outcome_timestamp",
        )
        .bind(tenant.as_str())
        .bind(patient_ref)
        .fetch_all(&self.pool)
        .await?;
        let mut out = Vec::new();
        for r in &rows {
            out.extend(crate::rows::overridden(r)?);
        }
        Ok(out)
    }

    async fn feedback_for_card(&self, card_uuid: &str) -> Result<Vec<FeedbackRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT card_uuid, known_card, outcome, details, outcome_timestamp FROM feedback
             WHERE card_uuid = ? ORDER BY outcome_timestamp, id",
        )
        .bind(card_uuid)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(crate::rows::feedback_record).collect()
    }

    #[tracing::instrument(skip_all)]
    async fn hook_answers(&self, hook_instance: &str) -> Result<Vec<HookAnswer>, StoreError> {
        self.inplace.read(|c| {
            let mut q = c
                .prepare_cached(
                    "SELECT hook_instance, tenant, caller_issuer, fingerprint, response, created_at
                     FROM hook_answers WHERE hook_instance = ? LIMIT 64",
                )
                .map_err(read_error)?;
            let mut rows = q.query([hook_instance]).map_err(read_error)?;
            let mut answers = Vec::new();
            while let Some(r) = rows.next().map_err(read_error)? {
                answers.push(crate::rows::hook_answer(r)?);
            }
            Ok(answers)
        })
    }

    #[tracing::instrument(skip_all)]
    async fn claim_jti(
        &self,
        issuer: &str,
        jti: &str,
        expires_at: i64,
        now: i64,
    ) -> Result<JtiClaim, StoreError> {
        let key = (issuer.to_owned(), jti.to_owned());
        if !self.held.take(&key, expires_at, now) {
            return Ok(JtiClaim::committed(false));
        }
        // Held: no other call can take it now. Was it used by a call already written?
        let seen = self.inplace.read(|c| {
            c.prepare_cached("SELECT EXISTS (SELECT 1 FROM seen_jti WHERE issuer = ? AND jti = ?)")
                .and_then(|mut q| q.query_row([&key.0, &key.1], |r| r.get::<_, bool>(0)))
                .map_err(read_error)
        });
        match seen {
            Ok(false) => {}
            Ok(true) => {
                self.held.release(&key);
                return Ok(JtiClaim::committed(false));
            }
            Err(e) => {
                self.held.release(&key);
                return Err(e);
            }
        }
        self.purge_expired_jti(now);
        Ok(JtiClaim::pending(Box::new(claims::Deferred::new(
            key,
            expires_at,
            self.held.clone(),
            self.writer.clone(),
        ))))
    }

    #[tracing::instrument(skip_all)]
    async fn begin_login(&self, login: &PendingLogin, now: i64) -> Result<(), StoreError> {
        let l = login.clone();
        self.write(move |c, _| {
            c.prepare_cached("DELETE FROM staff_logins WHERE expires_at < ?")
                .and_then(|mut q| q.execute([now]))
                .and_then(|_| c.prepare_cached("INSERT INTO staff_logins (state_hash, verifier, nonce, next_path, expires_at, smart_iss) VALUES (?, ?, ?, ?, ?, ?)"))
                .and_then(|mut q| {
                    q.execute(params![
                        l.state_hash,
                        l.verifier,
                        l.nonce,
                        l.next_path,
                        l.expires_at,
                        l.smart_iss,
                    ])
                })
                .map_err(error)?;
            Ok(())
        })
        .await
    }

    async fn take_login(
        &self,
        state_hash: &str,
        now: i64,
    ) -> Result<Option<PendingLogin>, StoreError> {
        let h = state_hash.to_owned();
        self.write(move |c, _| {
            let mut q = c
                .prepare_cached("DELETE FROM staff_logins WHERE state_hash = ? RETURNING *")
                .map_err(error)?;
            let mut rows = q.query([&h]).map_err(error)?;
            let login = match rows.next().map_err(error)? {
                Some(r) => Some(crate::rows::pending_login(r)?),
                None => None,
            };
            Ok(login.filter(|l| l.expires_at >= now))
        })
        .await
    }

    async fn create_session(&self, s: &StaffSession, now: i64) -> Result<(), StoreError> {
        let s = s.clone();
        self.write(move |c, _| {
            c.prepare_cached("DELETE FROM staff_sessions WHERE expires_at < ?")
                .and_then(|mut q| q.execute([now]))
                .and_then(|_| {
                    c.prepare_cached(
                        "INSERT INTO staff_sessions (id_hash, issuer, subject, tenant, all_tenants, scopes, csrf, created_at, expires_at, patient, fhir_user)
                         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    )
                })
                .and_then(|mut q| {
                    q.execute(params![
                        s.id_hash,
                        s.issuer,
                        s.subject,
                        s.tenant.as_str(),
                        s.all_tenants,
                        s.scopes.join(" "),
                        s.csrf,
                        s.created_at,
                        s.expires_at,
                        s.patient,
                        s.fhir_user,
                    ])
                })
                .map_err(error)?;
            Ok(())
        })
        .await
    }

    async fn session(&self, id_hash: &str, now: i64) -> Result<Option<StaffSession>, StoreError> {
        let row = sqlx::query("SELECT * FROM staff_sessions WHERE id_hash = ? AND expires_at >= ?")
            .bind(id_hash)
            .bind(now)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(crate::rows::staff_session).transpose()
    }

    async fn end_session(&self, id_hash: &str) -> Result<(), StoreError> {
        let h = id_hash.to_owned();
        self.write(move |c, _| {
            c.prepare_cached("DELETE FROM staff_sessions WHERE id_hash = ?")
                .and_then(|mut q| q.execute([&h]))
                .map_err(error)?;
            Ok(())
        })
        .await
    }

    async fn search_careplans(&self, q: &CarePlanQuery) -> Result<Vec<CarePlanRecord>, StoreError> {
        let (from, to) = q.created_bounds();
        let rows = sqlx::query(
            "SELECT * FROM careplans WHERE (?1 IS NULL OR tenant = ?1) AND (?2 IS NULL OR patient_ref = ?2)
               AND (?3 IS NULL OR status = ?3) AND (?5 IS NULL OR created_at >= ?5) AND (?6 IS NULL OR created_at < ?6)
               ORDER BY red_flag DESC, created_at DESC, id LIMIT ?4",
        )
        .bind(q.tenant.as_ref().map(crate::TenantId::as_str))
        .bind(&q.patient_ref)
        .bind(q.status.map(CarePlanStatus::as_str))
        .bind(q.limit)
        .bind(from)
        .bind(to)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(crate::rows::careplan).collect()
    }

    #[tracing::instrument(skip_all)]
    async fn review_careplan(
        &self,
        review: &Review,
        audit: &NewAuditEntry,
    ) -> Result<CarePlanRecord, StoreError> {
        let (r, audit) = (review.clone(), Prepared::new(audit.clone()));
        let id = r.careplan_id;
        self.write(move |c, heads| {
            let (resource, reviewed) = (r.resource.to_string(), at(r.at)?);
            let updated = c
                .prepare_cached(
                    "UPDATE careplans SET status = ?, version = version + 1, resource = ?, updated_at = ?
                     WHERE id = ? AND version = ?",
                )
                .and_then(|mut q| {
                    q.execute(params![
                        r.action.status().as_str(),
                        resource,
                        reviewed,
                        r.careplan_id.to_string(),
                        r.expected_version,
                    ])
                })
                .map_err(error)?;
            if updated == 0 {
                let now: Option<i32> = c
                    .prepare_cached("SELECT version FROM careplans WHERE id = ?")
                    .and_then(|mut q| {
                        q.query_row([r.careplan_id.to_string()], |row| row.get(0))
                            .optional()
                    })
                    .map_err(error)?;
                return Err(now.map_or(StoreError::NotFound, StoreError::Conflict));
            }
            c.prepare_cached(
                "INSERT INTO careplan_versions (careplan_id, version, action, reviewer, reason, resource, reviewed_at)
                 VALUES (?, ?, ?, ?, ?, ?, ?)",
            )
            .and_then(|mut q| {
                q.execute(params![
                    r.careplan_id.to_string(),
                    r.expected_version + 1,
                    r.action.as_str(),
                    r.reviewer,
                    r.reason,
                    resource,
                    reviewed,
                ])
            })
            .map_err(error)?;
            append(c, heads, &audit)
        })
        .await?;
        self.careplan_row(id).await
    }

    #[tracing::instrument(skip_all)]
    async fn drafting_entry(&self, careplan_id: Uuid) -> Result<AuditEntry, StoreError> {
        let row =
            sqlx::query("SELECT * FROM audit_entries WHERE careplan_id = ? AND action = ? LIMIT 1")
                .bind(careplan_id.to_string())
                .bind(crate::audit::Action::HookCall.as_str())
                .fetch_one(&self.pool)
                .await?;
        crate::rows::audit_entry(&row)
    }

    #[tracing::instrument(skip_all)]
    async fn append_audit(&self, entry: &NewAuditEntry) -> Result<(), StoreError> {
        let entry = Prepared::new(entry.clone());
        self.write(move |c, heads| append(c, heads, &entry)).await
    }

    #[tracing::instrument(skip_all)]
    async fn chain_heads(&self) -> Result<Vec<AuditEntry>, StoreError> {
        let rows = sqlx::query(
            "SELECT * FROM audit_entries a
             WHERE seq = (SELECT max(seq) FROM audit_entries b WHERE b.tenant = a.tenant)
             ORDER BY tenant",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(crate::rows::audit_entry).collect()
    }

    #[tracing::instrument(skip_all)]
    async fn audit_entry(&self, id: Uuid) -> Result<AuditEntry, StoreError> {
        let row = sqlx::query("SELECT * FROM audit_entries WHERE id = ?")
            .bind(id.to_string())
            .fetch_one(&self.pool)
            .await?;
        crate::rows::audit_entry(&row)
    }

    fn audit_stream<'a>(
        &'a self,
        q: &'a AuditQuery,
        chain_order: bool,
    ) -> BoxStream<'a, Result<AuditEntry, StoreError>> {
        // Each page starts after the last row of the one before, in the same order, with a
        // condition an index can seek on (the first page has none: "IS NULL OR" would make
        // every page scan from the start).
        let (order, after) = if chain_order {
            ("tenant, seq, id", "(tenant, seq, id) > (?10, ?11, ?12)")
        } else {
            (
                "recorded_at DESC, tenant, seq DESC, id DESC",
                "recorded_at <= ?12 AND (recorded_at < ?12 OR (recorded_at = ?12 AND (tenant > ?10 OR (tenant = ?10 AND (seq < ?11 OR (seq = ?11 AND id < ?13))))))",
            )
        };
        let filter = "SELECT * FROM audit_entries WHERE (?1 IS NULL OR tenant = ?1) AND (?2 IS NULL OR patient_ref = ?2)
               AND (?3 IS NULL OR caller_subject = ?3) AND (?4 IS NULL OR rule_set_version = ?4)
               AND (?5 IS NULL OR recorded_at >= ?5) AND (?6 IS NULL OR recorded_at < ?6)
               AND (?8 IS NULL OR EXISTS (SELECT 1 FROM json_each(decision_ids) WHERE value = ?8))
               AND (?9 IS NULL OR action = ?9)";
        let first = format!("{filter} ORDER BY {order} LIMIT ?7");
        let next = format!("{filter} AND {after} ORDER BY {order} LIMIT ?7");
        let pool = self.pool.clone();
        let q = q.clone();
        Box::pin(async_stream(move |tx| async move {
            let page = |after: Option<After>, n: i64| {
                let sql = if after.is_some() { &next } else { &first }.clone();
                let (pool, q) = (pool.clone(), q.clone());
                async move {
                    let mut query = sqlx::query(&sql)
                        .bind(q.tenant.as_ref().map(crate::TenantId::as_str))
                        .bind(&q.patient_ref)
                        .bind(&q.caller_subject)
                        .bind(&q.rule_set_version)
                        .bind(q.since_us)
                        .bind(q.until_us)
                        .bind(n)
                        .bind(&q.decision_id)
                        .bind(q.action.as_ref().map(Action::as_str));
                    // Numbered as the two orders' conditions name them.
                    if let Some(a) = after {
                        query = query.bind(a.tenant.as_str().to_owned()).bind(a.seq);
                        if !chain_order {
                            query = query.bind(a.recorded_us);
                        }
                        query = query.bind(a.id.to_string());
                    }
                    let rows = query.fetch_all(&pool).await?;
                    crate::rows::keyed_audit_entries(&rows)
                }
            };
            // No limit, or a negative one (SQLite's "no limit"), reads everything.
            let limit = q.limit.filter(|l| *l >= 0).unwrap_or(i64::MAX);
            paged(&tx, limit, page).await;
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn careplan(&self, id: Uuid) -> Result<CarePlanRecord, StoreError> {
        self.careplan_row(id).await
    }

    #[tracing::instrument(skip_all)]
    async fn patient_plans(
        &self,
        tenant: &crate::TenantId,
        patient_ref: &crate::PatientRef,
        rule_set_id: &str,
    ) -> Result<crate::PatientPlans, StoreError> {
        self.inplace.read(|c| {
            let mut q = c
                .prepare_cached(
                    "SELECT * FROM (SELECT id, status, phase, updated_at, decision_key, NULL AS resource
                        FROM careplans WHERE tenant = ?1 AND patient_ref = ?2
                        AND rule_set_id = ?3 AND status = 'active' ORDER BY updated_at DESC LIMIT 1)
                     UNION ALL
                     SELECT id, status, phase, updated_at, decision_key, resource
                        FROM careplans WHERE tenant = ?1 AND patient_ref = ?2
                        AND rule_set_id = ?3 AND status = 'draft' AND decision_key IS NOT NULL",
                )
                .map_err(read_error)?;
            let mut rows = q
                .query([tenant.as_str(), patient_ref.as_str(), rule_set_id])
                .map_err(read_error)?;
            let mut plans = crate::PatientPlans::default();
            while let Some(r) = rows.next().map_err(read_error)? {
                crate::rows::patient_plan(&mut plans, r)?;
            }
            Ok(plans)
        })
    }

    #[tracing::instrument(skip_all)]
    async fn pending_draft(
        &self,
        tenant: &crate::TenantId,
        patient_ref: &crate::PatientRef,
        decision_key: &str,
    ) -> Result<Option<CarePlanRecord>, StoreError> {
        let row = sqlx::query(
            "SELECT * FROM careplans WHERE tenant = ? AND patient_ref = ? AND status = 'draft'
             AND decision_key = ?",
        )
        .bind(tenant.as_str())
        .bind(patient_ref)
        .bind(decision_key)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(crate::rows::careplan).transpose()
    }
}

const INSERT_CAREPLAN: &str =
    "INSERT INTO careplans (id, tenant, patient_ref, status, version, rule_set_id, rule_set_version,
                            phase, red_flag, resource, created_at, updated_at, decision_key, patient)
     VALUES (?, ?, ?, ?, 1, ?, ?, ?, ?, ?, ?, ?, ?, ?)";
const INSERT_CARD: &str =
    "INSERT INTO cards (uuid, tenant, service_id, hook_instance, decision_id, careplan_id, created_at,
                        rule_set_id, rule_set_version, user_ref, encounter, patient_ref)
     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)";

/// The cards a `CardOutcomeQuery` selects (alias `c`), its parameters bound by
/// `bind_card_filter` in this order.
const CARD_FILTER: &str = "(?1 IS NULL OR c.tenant = ?1) AND (?2 IS NULL OR c.created_at >= ?2)
    AND (?3 IS NULL OR c.created_at < ?3) AND (?4 IS NULL OR c.rule_set_id = ?4)
    AND (?5 IS NULL OR c.rule_set_version = ?5)";

fn bind_card_filter<'q>(q: SqliteQuery<'q>, f: &'q CardOutcomeQuery) -> SqliteQuery<'q> {
    // Times are stored as RFC 3339 text in UTC (`…T09:00:00.5Z`, fractions trimmed), which
    // sorts as text except at the zone letter: a bound without it (`…T00:00:00`) is below
    // every time of that second and above every earlier one.
    let bound = |t: Option<OffsetDateTime>| {
        t.and_then(|t| {
            t.to_offset(time::UtcOffset::UTC)
                .format(time::macros::format_description!(
                    "[year]-[month]-[day]T[hour]:[minute]:[second]"
                ))
                .ok()
        })
    };
    q.bind(f.tenant.as_ref().map(crate::TenantId::as_str))
        .bind(bound(f.from))
        .bind(bound(f.to))
        .bind(&f.rule_set_id)
        .bind(&f.rule_set_version)
}
const INSERT_ANSWER: &str =
    "INSERT INTO hook_answers (hook_instance, tenant, caller_issuer, fingerprint, response, created_at)
     VALUES (?, ?, ?, ?, ?, ?)";

type SqliteQuery<'q> = sqlx::query::Query<'q, sqlx::Sqlite, sqlx::sqlite::SqliteArguments<'q>>;

fn insert_careplan(c: &Connection, p: &NewCarePlan) -> Result<(), StoreError> {
    let created = at(p.created_at)?;
    c.prepare_cached(INSERT_CAREPLAN)
        .and_then(|mut q| {
            q.execute(params![
                p.id.to_string(),
                p.tenant.as_str(),
                p.patient_ref.as_str(),
                p.status.as_str(),
                p.rule_set_id,
                p.rule_set_version,
                p.phase,
                p.red_flag,
                p.resource.to_string(),
                created,
                created,
                p.decision_key,
                p.patient.as_ref().map(|v| v.to_string()),
            ])
        })
        .map_err(error)?;
    Ok(())
}

impl SqliteStore {
    /// A hook call's rows, and its token's claim when that is still to be written, in one
    /// savepoint of the writer's transaction.
    async fn record(
        &self,
        record: HookRecord,
        claim: Option<(String, String, i64)>,
    ) -> Result<(), StoreError> {
        // Written out here, in the caller's task: the writer is one thread for every caller,
        // so whatever it does per write is everyone's wait.
        let audit = Prepared::new(record.audit);
        let (careplan, cards, answer) = (record.careplan, record.cards, record.answer);
        self.write(move |c, heads| {
            if let Some(p) = &careplan {
                insert_careplan(c, p)?;
            }
            if !cards.is_empty() {
                let mut q = c.prepare_cached(INSERT_CARD).map_err(error)?;
                for card in &cards {
                    q.execute(params![
                        card.uuid.to_string(),
                        card.tenant.as_str(),
                        card.service_id,
                        card.hook_instance,
                        card.decision_id,
                        card.careplan_id.map(|u| u.to_string()),
                        at(card.created_at)?,
                        card.rule_set_id,
                        card.rule_set_version,
                        card.user_ref,
                        card.encounter,
                        card.patient_ref.as_ref().map(|r| r.as_str()),
                    ])
                    .map_err(error)?;
                }
            }
            append(c, heads, &audit)?;
            if let Some(a) = &answer {
                // A plain insert: a hookInstance answered already fails the whole record.
                let created = at(a.created_at)?;
                c.prepare_cached(INSERT_ANSWER)
                    .and_then(|mut q| {
                        q.execute(params![
                            a.hook_instance,
                            a.tenant.as_str(),
                            a.caller_issuer,
                            a.fingerprint,
                            packed::pack(&a.response),
                            created,
                        ])
                    })
                    .map_err(error)?;
            }
            if let Some((issuer, jti, expires_at)) = &claim {
                // A plain insert: were the id in the table already, the call would be a
                // replay, and the whole record fails rather than serve it.
                c.prepare_cached(claims::INSERT_SEEN)
                    .and_then(|mut q| q.execute(params![issuer, jti, expires_at]))
                    .map_err(error)?;
            }
            Ok(())
        })
        .await
    }

    /// Run a write through the group writer and wait for its durable outcome (see
    /// `Writer::enqueue`).
    async fn write<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: Work<T>,
    {
        self.writer.enqueue(work).await
    }

    /// Forget expired token ids (see `JtiPurge`), in a write of their own that nobody waits for.
    fn purge_expired_jti(&self, now: i64) {
        if !self.jti_purge.due(now) {
            return;
        }
        let writer = self.writer.clone();
        tokio::spawn(async move {
            let purged = writer
                .enqueue(move |c, _| {
                    let kept_since = at(crate::answers_kept_since(now))?;
                    c.prepare_cached("DELETE FROM seen_jti WHERE expires_at < ?")
                        .and_then(|mut q| q.execute([now]))
                        .and_then(|_| {
                            c.prepare_cached("DELETE FROM hook_answers WHERE created_at < ?")
                        })
                        .and_then(|mut q| q.execute([kept_since]))
                        .map_err(error)?;
                    Ok(())
                })
                .await;
            if let Err(e) = purged {
                tracing::warn!(error = %e, "expired token ids not forgotten (tried again later)");
            }
        });
    }

    async fn careplan_row(&self, id: Uuid) -> Result<CarePlanRecord, StoreError> {
        let row = sqlx::query("SELECT * FROM careplans WHERE id = ?")
            .bind(id.to_string())
            .fetch_one(&self.pool)
            .await?;
        crate::rows::careplan(&row)
    }
}

/// What the SQLite modules' tests start from: a migrated store in a temporary folder
/// (`s.db`), and a CarePlan.
#[cfg(test)]
mod fixtures {
    use super::SqliteStore;
    use crate::{CarePlanStatus, NewCarePlan, PatientRef, PoolOptions, Store, TenantId};

    pub(super) async fn migrated(dir: &tempfile::TempDir) -> SqliteStore {
        let url = format!("sqlite://{}", dir.path().join("s.db").display());
        let store = SqliteStore::connect(&url, &PoolOptions::default())
            .await
            .unwrap();
        store.migrate().await.unwrap();
        store
    }

    /// Patient p1's plan of `guideline` at clinic-a; a draft has a red flag, a keyed one the
    /// patient's identity.
    pub(super) fn plan(status: CarePlanStatus, key: Option<&str>, guideline: &str) -> NewCarePlan {
        NewCarePlan {
            id: uuid::Uuid::new_v4(),
            tenant: TenantId::parse("clinic-a").unwrap(),
            patient_ref: PatientRef::parse("Patient/p1").unwrap(),
            status,
            rule_set_id: guideline.into(),
            rule_set_version: "1.0.1".into(),
            phase: "walk-run".into(),
            red_flag: status == CarePlanStatus::Draft,
            resource: serde_json::json!({"resourceType": "CarePlan", "note": "é ✓"}),
            // Fractions of a second and an offset other than UTC: what one driver writes of
            // them the other must read the same.
            created_at: time::macros::datetime!(2026-12-07 09:15:30.123456789 +02:00),
            decision_key: key.map(Into::into),
            patient: key.map(|_| serde_json::json!({"name": "A"})),
        }
    }
}
