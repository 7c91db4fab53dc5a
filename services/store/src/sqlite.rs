use std::path::PathBuf;
use std::str::FromStr;

use futures_util::future::BoxFuture;
use futures_util::stream::{BoxStream, StreamExt};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::SqliteConnection;
use sqlx::{FromRow, Row};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::audit::{entry_hash, AuditFacts, GENESIS};
use crate::model::Review;
use crate::stream::async_stream;
use crate::{
    AuditEntry, AuditQuery, Backend, CarePlanQuery, CarePlanRecord, FeedbackRecord, HookAnswer,
    HookRecord, JtiClaim, NewAuditEntry, NewCarePlan, NewFeedback, PendingLogin, PoolOptions,
    StaffSession, Store, StoreError,
};

mod claims;

pub(crate) use claims::Deferred;

pub struct SqliteStore {
    pool: SqlitePool,
    writer: Writer,
    /// Token ids claimed by calls in flight, not yet written (see `claims`).
    held: std::sync::Arc<claims::Held>,
    jti_purge: crate::JtiPurge,
}

/// The way into the single group-commit writer (see `group_writer`): its queue, and the
/// database file it writes to.
#[derive(Clone)]
pub(crate) struct Writer {
    queue: tokio::sync::mpsc::Sender<Job>,
    path: Option<PathBuf>,
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
        let path = Some(opts.get_filename().to_path_buf()).filter(|p| p.as_os_str() != ":memory:");
        let pool = SqlitePoolOptions::new()
            // A connection to a local file does not go stale; the liveness ping sqlx makes by
            // default would be one more trip to the connection's thread on every read.
            .test_before_acquire(false)
            .max_connections(options.max_connections)
            .acquire_timeout(options.acquire_timeout)
            .connect_with(opts)
            .await?;
        let (writer, queue) = tokio::sync::mpsc::channel(1024);
        tokio::spawn(group_writer(pool.clone(), queue, options.sealer.clone()));
        Ok(SqliteStore {
            pool,
            writer: Writer {
                queue: writer,
                path,
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
        sqlx::migrate!("../../migrations/sqlite")
            .run(&self.pool)
            .await?;
        Ok(())
    }

    #[tracing::instrument(skip_all)]
    async fn check_schema(&self) -> Result<(), StoreError> {
        let needed = sqlx::migrate!("../../migrations/sqlite")
            .migrations
            .iter()
            .map(|m| m.version)
            .max()
            .unwrap_or(0);
        let applied: Option<i64> =
            sqlx::query_scalar("SELECT max(version) FROM _sqlx_migrations WHERE success")
                .fetch_one(&self.pool)
                .await
                .unwrap_or(None);
        let applied = applied.unwrap_or(0);
        if applied < needed {
            return Err(StoreError::SchemaBehind { applied, needed });
        }
        Ok(())
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
        let (p, resource) = (p.clone(), p.resource.to_string());
        self.write(move |c, _| {
            Box::pin(async move {
                bind_careplan(sqlx::query(INSERT_CAREPLAN), &p, &resource)
                    .execute(c)
                    .await?;
                Ok(())
            })
        })
        .await
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
        mut claim: JtiClaim,
    ) -> Result<(), StoreError> {
        let Some(deferred) = claim.take_deferred() else {
            claim.durable().await?;
            return self.record(record, None).await;
        };
        self.record(record, deferred.row()).await?;
        deferred.written();
        Ok(())
    }

    #[tracing::instrument(skip_all, fields(entries = entries.len()))]
    async fn insert_feedback(
        &self,
        entries: &[NewFeedback],
        audit: &NewAuditEntry,
    ) -> Result<(), StoreError> {
        let (entries, audit) = (entries.to_vec(), Prepared::new(audit.clone()));
        self.write(move |c, heads| {
            Box::pin(async move {
                for f in &entries {
                    sqlx::query(
                        "INSERT INTO feedback (id, tenant, service_id, card_uuid, known_card, outcome, details, outcome_timestamp, received_at)
                         VALUES (?, ?, ?, ?, EXISTS (SELECT 1 FROM cards WHERE uuid = ? AND tenant = ?), ?, ?, ?, ?)",
                    )
                    .bind(f.id.to_string())
                    .bind(&f.tenant)
                    .bind(&f.service_id)
                    .bind(&f.card_uuid)
                    .bind(&f.card_uuid)
                    .bind(&f.tenant)
                    .bind(&f.outcome)
                    .bind(f.details.to_string())
                    .bind(f.outcome_timestamp)
                    .bind(f.received_at)
                    .execute(&mut *c)
                    .await?;
                }
                append(c, heads, &audit).await
            })
        })
        .await
    }

    #[tracing::instrument(skip_all)]
    async fn feedback_for_card(&self, card_uuid: &str) -> Result<Vec<FeedbackRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT card_uuid, known_card, outcome, details, outcome_timestamp FROM feedback
             WHERE card_uuid = ? ORDER BY outcome_timestamp, id",
        )
        .bind(card_uuid)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let details: String = r.try_get("details")?;
                Ok(FeedbackRecord {
                    card_uuid: r.try_get("card_uuid")?,
                    known_card: r.try_get("known_card")?,
                    outcome: r.try_get("outcome")?,
                    details: serde_json::from_str(&details)
                        .map_err(|e| StoreError::Corrupt(e.to_string()))?,
                    outcome_timestamp: r.try_get("outcome_timestamp")?,
                })
            })
            .collect()
    }

    #[tracing::instrument(skip_all)]
    async fn hook_answers(&self, hook_instance: &str) -> Result<Vec<HookAnswer>, StoreError> {
        let rows = sqlx::query(
            "SELECT hook_instance, tenant, caller_issuer, fingerprint, response, created_at
             FROM hook_answers WHERE hook_instance = ? LIMIT 64",
        )
        .bind(hook_instance)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .iter()
            .map(HookAnswer::from_row)
            .collect::<Result<_, _>>()?)
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
        let seen = sqlx::query_scalar::<_, bool>(
            "SELECT EXISTS (SELECT 1 FROM seen_jti WHERE issuer = ? AND jti = ?)",
        )
        .bind(&key.0)
        .bind(&key.1)
        .fetch_one(&self.pool)
        .await;
        match seen {
            Ok(false) => {}
            Ok(true) => {
                self.held.release(&key);
                return Ok(JtiClaim::committed(false));
            }
            Err(e) => {
                self.held.release(&key);
                return Err(e.into());
            }
        }
        self.purge_expired_jti(now);
        Ok(JtiClaim::deferred(claims::Deferred::new(
            key,
            expires_at,
            self.held.clone(),
            self.writer.clone(),
        )))
    }

    #[tracing::instrument(skip_all)]
    async fn begin_login(&self, login: &PendingLogin, now: i64) -> Result<(), StoreError> {
        let l = login.clone();
        self.write(move |c, _| {
            Box::pin(async move {
                sqlx::query("DELETE FROM staff_logins WHERE expires_at < ?").bind(now).execute(&mut *c).await?;
                sqlx::query("INSERT INTO staff_logins (state_hash, verifier, nonce, next_path, expires_at) VALUES (?, ?, ?, ?, ?)")
                    .bind(&l.state_hash)
                    .bind(&l.verifier)
                    .bind(&l.nonce)
                    .bind(&l.next_path)
                    .bind(l.expires_at)
                    .execute(&mut *c)
                    .await?;
                Ok(())
            })
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
            Box::pin(async move {
                let row = sqlx::query("DELETE FROM staff_logins WHERE state_hash = ? RETURNING *")
                    .bind(&h)
                    .fetch_optional(&mut *c)
                    .await?;
                row.map(|r| PendingLogin::from_row(&r).map_err(StoreError::from))
                    .transpose()
                    .map(|l| l.filter(|l| l.expires_at >= now))
            })
        })
        .await
    }

    async fn create_session(&self, s: &StaffSession, now: i64) -> Result<(), StoreError> {
        let s = s.clone();
        self.write(move |c, _| {
            Box::pin(async move {
                sqlx::query("DELETE FROM staff_sessions WHERE expires_at < ?").bind(now).execute(&mut *c).await?;
                sqlx::query("INSERT INTO staff_sessions (id_hash, issuer, subject, tenant, all_tenants, scopes, csrf, created_at, expires_at)
                             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)")
                    .bind(&s.id_hash)
                    .bind(&s.issuer)
                    .bind(&s.subject)
                    .bind(&s.tenant)
                    .bind(s.all_tenants)
                    .bind(s.scopes.join(" "))
                    .bind(&s.csrf)
                    .bind(s.created_at)
                    .bind(s.expires_at)
                    .execute(&mut *c)
                    .await?;
                Ok(())
            })
        })
        .await
    }

    async fn session(&self, id_hash: &str, now: i64) -> Result<Option<StaffSession>, StoreError> {
        let row = sqlx::query("SELECT * FROM staff_sessions WHERE id_hash = ? AND expires_at >= ?")
            .bind(id_hash)
            .bind(now)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| StaffSession::from_row(&r).map_err(StoreError::from))
            .transpose()
    }

    async fn end_session(&self, id_hash: &str) -> Result<(), StoreError> {
        let h = id_hash.to_owned();
        self.write(move |c, _| {
            Box::pin(async move {
                sqlx::query("DELETE FROM staff_sessions WHERE id_hash = ?")
                    .bind(&h)
                    .execute(&mut *c)
                    .await?;
                Ok(())
            })
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
        .bind(&q.tenant)
        .bind(&q.patient_ref)
        .bind(&q.status)
        .bind(q.limit)
        .bind(from)
        .bind(to)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(row_to_careplan).collect()
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
            Box::pin(async move {
                let updated = sqlx::query(
                    "UPDATE careplans SET status = ?, version = version + 1, resource = ?, updated_at = ?
                     WHERE id = ? AND version = ?",
                )
                .bind(&r.status)
                .bind(r.resource.to_string())
                .bind(r.at)
                .bind(r.careplan_id.to_string())
                .bind(r.expected_version)
                .execute(&mut *c)
                .await?
                .rows_affected();
                if updated == 0 {
                    let now: Option<i32> = sqlx::query_scalar("SELECT version FROM careplans WHERE id = ?")
                        .bind(r.careplan_id.to_string())
                        .fetch_optional(&mut *c)
                        .await?;
                    return Err(now.map_or(StoreError::NotFound, StoreError::Conflict));
                }
                sqlx::query(
                    "INSERT INTO careplan_versions (careplan_id, version, action, reviewer, reason, resource, reviewed_at)
                     VALUES (?, ?, ?, ?, ?, ?, ?)",
                )
                .bind(r.careplan_id.to_string())
                .bind(r.expected_version + 1)
                .bind(&r.action)
                .bind(&r.reviewer)
                .bind(&r.reason)
                .bind(r.resource.to_string())
                .bind(r.at)
                .execute(&mut *c)
                .await?;
                append(c, heads, &audit).await
            })
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
        row_to_audit(&row)
    }

    #[tracing::instrument(skip_all)]
    async fn append_audit(&self, entry: &NewAuditEntry) -> Result<(), StoreError> {
        let entry = Prepared::new(entry.clone());
        self.write(move |c, heads| Box::pin(async move { append(c, heads, &entry).await }))
            .await
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
        rows.iter().map(row_to_audit).collect()
    }

    #[tracing::instrument(skip_all)]
    async fn audit_entry(&self, id: Uuid) -> Result<AuditEntry, StoreError> {
        let row = sqlx::query("SELECT * FROM audit_entries WHERE id = ?")
            .bind(id.to_string())
            .fetch_one(&self.pool)
            .await?;
        row_to_audit(&row)
    }

    fn audit_stream<'a>(
        &'a self,
        q: &'a AuditQuery,
        chain_order: bool,
    ) -> BoxStream<'a, Result<AuditEntry, StoreError>> {
        let order = if chain_order {
            "tenant, seq"
        } else {
            "recorded_at DESC, tenant, seq DESC"
        };
        let sql = format!(
            "SELECT * FROM audit_entries WHERE (?1 IS NULL OR tenant = ?1) AND (?2 IS NULL OR patient_ref = ?2)
               AND (?3 IS NULL OR caller_subject = ?3) AND (?4 IS NULL OR rule_set_version = ?4)
               AND (?5 IS NULL OR recorded_at >= ?5) AND (?6 IS NULL OR recorded_at < ?6)
               AND (?8 IS NULL OR EXISTS (SELECT 1 FROM json_each(decision_ids) WHERE value = ?8))
               AND (?9 IS NULL OR action = ?9)
             ORDER BY {order} LIMIT ?7"
        );
        let pool = self.pool.clone();
        let q = q.clone();
        Box::pin(async_stream(move |tx| async move {
            let mut rows = sqlx::query(&sql)
                .bind(&q.tenant)
                .bind(&q.patient_ref)
                .bind(&q.caller_subject)
                .bind(&q.rule_set_version)
                .bind(q.since_us)
                .bind(q.until_us)
                .bind(q.limit.unwrap_or(i64::MAX))
                .bind(&q.decision_id)
                .bind(&q.action)
                .fetch(&pool);
            while let Some(row) = rows.next().await {
                let item = row.map_err(StoreError::from).and_then(|r| row_to_audit(&r));
                if tx.send(item).await.is_err() {
                    break;
                }
            }
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn careplan(&self, id: Uuid) -> Result<CarePlanRecord, StoreError> {
        self.careplan_row(id).await
    }

    #[tracing::instrument(skip_all)]
    async fn latest_approved(
        &self,
        tenant: &str,
        patient_ref: &str,
        rule_set_id: &str,
    ) -> Result<Option<CarePlanRecord>, StoreError> {
        let row = sqlx::query(
            "SELECT * FROM careplans WHERE tenant = ? AND patient_ref = ?
             AND rule_set_id = ? AND status = 'active' ORDER BY updated_at DESC LIMIT 1",
        )
        .bind(tenant)
        .bind(patient_ref)
        .bind(rule_set_id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(row_to_careplan).transpose()
    }

    #[tracing::instrument(skip_all)]
    async fn pending_draft(
        &self,
        tenant: &str,
        patient_ref: &str,
        decision_key: &str,
    ) -> Result<Option<CarePlanRecord>, StoreError> {
        let row = sqlx::query(
            "SELECT * FROM careplans WHERE tenant = ? AND patient_ref = ? AND status = 'draft'
             AND decision_key = ?",
        )
        .bind(tenant)
        .bind(patient_ref)
        .bind(decision_key)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(row_to_careplan).transpose()
    }
}

const INSERT_CAREPLAN: &str =
    "INSERT INTO careplans (id, tenant, patient_ref, status, version, rule_set_id, rule_set_version,
                            phase, red_flag, resource, created_at, updated_at, decision_key)
     VALUES (?, ?, ?, ?, 1, ?, ?, ?, ?, ?, ?, ?, ?)";
const INSERT_CARDS: &str =
    "INSERT INTO cards (uuid, tenant, service_id, hook_instance, decision_id, careplan_id, created_at) VALUES ";
const CARD_ROW: &str = "(?, ?, ?, ?, ?, ?, ?)";
const INSERT_ANSWER: &str =
    "INSERT INTO hook_answers (hook_instance, tenant, caller_issuer, fingerprint, response, created_at)
     VALUES (?, ?, ?, ?, ?, ?)";

type SqliteQuery<'q> = sqlx::query::Query<'q, sqlx::Sqlite, sqlx::sqlite::SqliteArguments<'q>>;

fn bind_careplan<'q>(q: SqliteQuery<'q>, p: &'q NewCarePlan, resource: &'q str) -> SqliteQuery<'q> {
    q.bind(p.id.to_string())
        .bind(&p.tenant)
        .bind(&p.patient_ref)
        .bind(&p.status)
        .bind(&p.rule_set_id)
        .bind(&p.rule_set_version)
        .bind(&p.phase)
        .bind(p.red_flag)
        .bind(resource)
        .bind(p.created_at)
        .bind(p.created_at)
        .bind(&p.decision_key)
}

/// A write: the statements `work` runs on a connection in a `BEGIN IMMEDIATE` transaction.
/// What a queued write hands back once it has run: whether to keep its changes, and how to
/// tell its caller the outcome of the group commit.
type Deliver = Box<dyn FnOnce(Option<&StoreError>) + Send>;
type Run = Box<
    dyn for<'c> FnOnce(&'c mut SqliteConnection, &'c mut ChainHeads) -> BoxFuture<'c, Ran> + Send,
>;

/// A write's statements, run by the writer on its connection inside the group's transaction.
trait Work<T>:
    for<'c> FnOnce(
        &'c mut SqliteConnection,
        &'c mut ChainHeads,
    ) -> BoxFuture<'c, Result<T, StoreError>>
    + Send
    + 'static
{
}

impl<T, F> Work<T> for F where
    F: for<'c> FnOnce(
            &'c mut SqliteConnection,
            &'c mut ChainHeads,
        ) -> BoxFuture<'c, Result<T, StoreError>>
        + Send
        + 'static
{
}

struct Job {
    run: Run,
    /// The write opens and releases its own savepoint `stride_write` in the same round trip
    /// as its statements (one batch). If it fails, the writer rolls the savepoint back.
    /// Otherwise the writer wraps it in one, at the cost of two more round trips.
    batch: bool,
}

/// The savepoint a batch write opens first and releases last.
const SAVEPOINT: &str = "SAVEPOINT stride_write";
const RELEASE: &str = "RELEASE stride_write";

/// A write that ran: keep its changes or not, whether its connection is suspect (a read-only
/// or I/O error: SQLite may have opened it read-only while the file was unwritable), and how
/// to answer its caller.
struct Ran {
    keep: bool,
    reconnect: bool,
    deliver: Deliver,
}

/// Control statements on the writer's connection, all in one round trip; boxed so the writer
/// task's future stays `Send`.
fn exec<'c>(
    conn: &'c mut SqliteConnection,
    sql: &'static str,
) -> BoxFuture<'c, Result<(), sqlx::Error>> {
    Box::pin(async move {
        sqlx::query(sql).execute(&mut *conn).await?;
        Ok(())
    })
}

/// How long the writer keeps its connection with no write waiting.
const WRITER_IDLE: std::time::Duration = std::time::Duration::from_millis(100);

/// Writes that arrive while one commit is in flight join the next: one fsync for the group.
const GROUP_MAX: usize = 64;

/// The single SQLite writer. It takes every write waiting in the queue, runs each inside its
/// own savepoint of one `BEGIN IMMEDIATE` transaction (a write that fails is rolled back alone),
/// commits once, and only then answers each caller. Nobody is told "stored" before the group's
/// commit is durable; if that commit fails, every write of the group is reported failed.
async fn group_writer(
    pool: SqlitePool,
    mut queue: tokio::sync::mpsc::Receiver<Job>,
    sealer: Option<std::sync::Arc<crate::seal::Sealer>>,
) {
    use futures_util::FutureExt;
    let mut held: Option<sqlx::pool::PoolConnection<sqlx::Sqlite>> = None;
    loop {
        // Waits for one write, then takes every other one already queued (up to GROUP_MAX).
        let mut jobs = Vec::with_capacity(GROUP_MAX);
        let received = match held {
            None => queue.recv_many(&mut jobs, GROUP_MAX).await,
            Some(_) => {
                match tokio::time::timeout(WRITER_IDLE, queue.recv_many(&mut jobs, GROUP_MAX)).await
                {
                    Ok(n) => n,
                    Err(_) => {
                        held = None;
                        continue;
                    }
                }
            }
        };
        if received == 0 {
            break;
        }
        // BEGIN and COMMIT by hand rather than sqlx's Transaction: a connection whose COMMIT
        // failed must never go back to the pool believing it is still inside a transaction.
        // The connection stays with the writer while writes keep coming (no pool round trip
        // and liveness ping per group); it goes back to the pool after `WRITER_IDLE` without.
        let conn = match held.take() {
            Some(c) => Ok(c),
            None => pool.acquire().await,
        };
        let mut conn = match conn {
            Ok(c) => c,
            Err(e) => {
                // Dropping the jobs drops their answer channels: each caller is told the
                // write could not be made durable (503), and nothing was written.
                tracing::warn!(error = %e, writes = jobs.len(), "cannot begin a write");
                continue;
            }
        };
        if let Err(e) = exec(&mut conn, "BEGIN IMMEDIATE").await {
            tracing::warn!(error = %e, writes = jobs.len(), "cannot begin a write");
            conn.close_on_drop();
            continue;
        }
        let mut delivers = Vec::with_capacity(jobs.len());
        let mut reconnect = false;
        let mut broken = None;
        let mut heads = ChainHeads {
            sealer: sealer.clone(),
            ..ChainHeads::default()
        };
        for job in jobs {
            if !job.batch {
                if let Err(e) = exec(&mut conn, SAVEPOINT).await {
                    broken = Some(e);
                    break;
                }
            }
            let outcome = std::panic::AssertUnwindSafe((job.run)(&mut conn, &mut heads))
                .catch_unwind()
                .await;
            let ran = match outcome {
                Ok(r) => r,
                Err(_) => {
                    tracing::error!("a write panicked; it is rolled back alone");
                    Ran {
                        keep: false,
                        reconnect: true,
                        deliver: Box::new(|_: Option<&StoreError>| {}),
                    }
                }
            };
            reconnect |= ran.reconnect;
            delivers.push(ran.deliver);
            let end = match (ran.keep, job.batch) {
                (true, true) => None,
                (true, false) => Some(RELEASE),
                (false, _) => Some("ROLLBACK TO stride_write; RELEASE stride_write"),
            };
            let ended = match end {
                Some(sql) => exec(&mut conn, sql).await,
                None => Ok(()),
            };
            heads.settle(ran.keep && ended.is_ok());
            if let Err(e) = ended {
                // A failed write that cannot be undone alone (or a batch that failed before
                // its savepoint): the group is abandoned whole, and the writes not yet run are
                // dropped (their callers are told nothing was stored).
                broken = Some(e);
                break;
            }
        }
        let mut usable = !reconnect;
        if reconnect {
            conn.close_on_drop();
        }
        let committed = match broken {
            Some(e) => {
                tracing::error!(error = %e, writes = delivers.len(), "savepoint failed: the group is rolled back");
                Err(e)
            }
            None => exec(&mut conn, "COMMIT").await,
        };
        match committed {
            Ok(()) => delivers.into_iter().for_each(|d| d(None)),
            Err(e) => {
                tracing::error!(error = %e, writes = delivers.len(), "group commit failed");
                let _ = exec(&mut conn, "ROLLBACK").await;
                conn.close_on_drop();
                usable = false;
                let failed = StoreError::CommitFailed(e.to_string());
                delivers.into_iter().for_each(|d| d(Some(&failed)));
            }
        }
        if usable {
            held = Some(conn);
        }
    }
}

impl Writer {
    /// Run a write through the group writer and wait for its durable outcome. A caller that
    /// goes away (a client disconnecting) cannot cut it short: the write runs and commits with
    /// its group regardless. The write lock is taken up front (`BEGIN IMMEDIATE`) so that
    /// writers never deadlock upgrading from read to write.
    async fn enqueue<T, F>(&self, work: F, batch: bool) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: Work<T>,
    {
        self.file_present()?;
        let (job, ran, commit) = job(work, batch);
        self.queue
            .send(job)
            .await
            .map_err(|_| StoreError::CommitFailed("the writer has stopped".into()))?;
        let value = ran.await.map_err(|_| {
            StoreError::CommitFailed("the write could not be started (database unavailable)".into())
        })??;
        commit.wait().await?;
        Ok(value)
    }

    /// A deleted file keeps working through open handles while every write goes nowhere:
    /// refuse before writing rather than acknowledge a decision that is already lost.
    fn file_present(&self) -> Result<(), StoreError> {
        match &self.path {
            Some(p) if !p.exists() => Err(StoreError::FileGone(p.display().to_string())),
            _ => Ok(()),
        }
    }
}

/// The outcome of the group commit a queued write joined.
struct Commit(tokio::sync::oneshot::Receiver<Result<(), StoreError>>);

impl Commit {
    async fn wait(self) -> Result<(), StoreError> {
        self.0.await.unwrap_or_else(|_| {
            Err(StoreError::CommitFailed(
                "the writer stopped before the write was committed".into(),
            ))
        })
    }
}

/// A write as a job for the writer, with where its value arrives once it has run and where
/// the outcome of its group's commit does.
#[allow(clippy::type_complexity)]
fn job<T, F>(
    work: F,
    batch: bool,
) -> (
    Job,
    tokio::sync::oneshot::Receiver<Result<T, StoreError>>,
    Commit,
)
where
    T: Send + 'static,
    F: Work<T>,
{
    let (early_tx, early_rx) = tokio::sync::oneshot::channel::<Result<T, StoreError>>();
    let (commit_tx, commit_rx) = tokio::sync::oneshot::channel();
    let run: Run = Box::new(move |conn, heads| {
        Box::pin(async move {
            match work(conn, heads).await {
                Ok(v) => {
                    let _ = early_tx.send(Ok(v));
                    Ran {
                        keep: true,
                        reconnect: false,
                        deliver: Box::new(move |failed: Option<&StoreError>| {
                            let _ = commit_tx.send(match failed {
                                None => Ok(()),
                                Some(e) => Err(StoreError::CommitFailed(e.to_string())),
                            });
                        }),
                    }
                }
                Err(e) => {
                    let reconnect = e.is_unavailable();
                    let _ = early_tx.send(Err(e));
                    Ran {
                        keep: false,
                        reconnect,
                        deliver: Box::new(|_: Option<&StoreError>| {}),
                    }
                }
            }
        })
    });
    (Job { run, batch }, early_rx, Commit(commit_rx))
}

impl SqliteStore {
    /// A hook call's rows, and its token's claim when that is still to be written, in one
    /// savepoint of the writer's transaction.
    async fn record(
        &self,
        record: HookRecord,
        claim: Option<(String, String, i64)>,
    ) -> Result<(), StoreError> {
        // Written out here, in the caller's task: the writer is one task for every caller,
        // so whatever it does per write is everyone's wait.
        let audit = Prepared::new(record.audit);
        let resource = record.careplan.as_ref().map(|p| p.resource.to_string());
        let (careplan, cards, answer) = (record.careplan, record.cards, record.answer);
        self.write_batch(move |c, heads| {
            Box::pin(async move {
                // One round trip to SQLite's worker thread for all rows and the savepoint: under
                // load each trip waits for a core, and the writer's trips are everyone's wait.
                let mut sql = format!("{SAVEPOINT};");
                if careplan.is_some() {
                    sql.push_str(INSERT_CAREPLAN);
                    sql.push(';');
                }
                if !cards.is_empty() {
                    sql.push_str(INSERT_CARDS);
                    sql.push_str(&vec![CARD_ROW; cards.len()].join(","));
                    sql.push(';');
                }
                sql.push_str(INSERT_AUDIT);
                sql.push(';');
                if answer.is_some() {
                    // A plain insert: a hookInstance answered already fails the whole record.
                    sql.push_str(INSERT_ANSWER);
                    sql.push(';');
                }
                if claim.is_some() {
                    // A plain insert: were the id in the table already, the call would be a
                    // replay, and the whole record fails rather than serve it.
                    sql.push_str(claims::INSERT_SEEN);
                    sql.push(';');
                }
                sql.push_str(RELEASE);
                let place = heads.place(&mut *c, &audit).await?;
                let mut q = sqlx::query(&sql);
                if let (Some(p), Some(resource)) = (&careplan, &resource) {
                    q = bind_careplan(q, p, resource);
                }
                for card in &cards {
                    q = q
                        .bind(card.uuid.to_string())
                        .bind(&card.tenant)
                        .bind(&card.service_id)
                        .bind(&card.hook_instance)
                        .bind(&card.decision_id)
                        .bind(card.careplan_id.map(|u| u.to_string()))
                        .bind(card.created_at);
                }
                let mut q = bind_audit(q, &audit, &place);
                if let Some(a) = &answer {
                    q = q
                        .bind(&a.hook_instance)
                        .bind(&a.tenant)
                        .bind(&a.caller_issuer)
                        .bind(&a.fingerprint)
                        .bind(&a.response)
                        .bind(a.created_at);
                }
                if let Some((issuer, jti, expires_at)) = &claim {
                    q = q.bind(issuer).bind(jti).bind(*expires_at);
                }
                q.execute(&mut *c).await?;
                heads.appended(&audit.entry.tenant, place);
                Ok(())
            })
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
        self.writer.enqueue(work, false).await
    }

    /// A write whose statements are one batch between `SAVEPOINT` and `RELEASE` (see `Job`).
    async fn write_batch<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: Work<T>,
    {
        self.writer.enqueue(work, true).await
    }

    /// Forget expired token ids (see `JtiPurge`), in a write of their own that nobody waits for.
    fn purge_expired_jti(&self, now: i64) {
        if !self.jti_purge.due(now) {
            return;
        }
        let writer = self.writer.clone();
        tokio::spawn(async move {
            let purged = writer
                .enqueue(
                    move |c, _| {
                        Box::pin(async move {
                            sqlx::query("DELETE FROM seen_jti WHERE expires_at < ?")
                                .bind(now)
                                .execute(&mut *c)
                                .await?;
                            sqlx::query("DELETE FROM hook_answers WHERE created_at < ?")
                                .bind(crate::answers_kept_since(now))
                                .execute(&mut *c)
                                .await?;
                            Ok(())
                        })
                    },
                    false,
                )
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
        row_to_careplan(&row)
    }
}

fn row_to_careplan(row: &sqlx::sqlite::SqliteRow) -> Result<CarePlanRecord, StoreError> {
    let id: String = row.try_get("id")?;
    let resource: String = row.try_get("resource")?;
    Ok(CarePlanRecord {
        id: Uuid::parse_str(&id).map_err(|e| StoreError::Corrupt(e.to_string()))?,
        tenant: row.try_get("tenant")?,
        patient_ref: row.try_get("patient_ref")?,
        status: row.try_get("status")?,
        version: row.try_get("version")?,
        rule_set_id: row.try_get("rule_set_id")?,
        rule_set_version: row.try_get("rule_set_version")?,
        phase: row.try_get("phase")?,
        red_flag: row.try_get("red_flag")?,
        resource: serde_json::from_str(&resource)
            .map_err(|e| StoreError::Corrupt(e.to_string()))?,
        created_at: row.try_get::<OffsetDateTime, _>("created_at")?,
        updated_at: row.try_get::<OffsetDateTime, _>("updated_at")?,
    })
}

/// Append `e` to its tenant's chain inside `tx` (which holds the write lock).
/// The last entry of a tenant's chain: its sequence number and hash.
async fn chain_head(
    tx: &mut sqlx::SqliteConnection,
    tenant: &str,
) -> Result<Option<(i64, String)>, StoreError> {
    Ok(sqlx::query_as(
        "SELECT seq, hash FROM audit_entries WHERE tenant = ? ORDER BY seq DESC LIMIT 1",
    )
    .bind(tenant)
    .fetch_optional(&mut *tx)
    .await?)
}

/// An audit entry written out for storage, all but its place in the chain. Prepared by the
/// caller, so the single writer only places and inserts it.
struct Prepared {
    entry: NewAuditEntry,
    facts_digest: Option<String>,
    details: String,
    decision_ids: String,
    card_uuids: String,
}

impl Prepared {
    fn new(entry: NewAuditEntry) -> Self {
        Self {
            facts_digest: entry.facts.as_ref().map(|f| f.digest()),
            details: entry.details.to_string(),
            decision_ids: serde_json::json!(entry.decision_ids).to_string(),
            card_uuids: serde_json::json!(entry.card_uuids).to_string(),
            entry,
        }
    }
}

/// Where an entry goes: after `prev` at `seq`, sealed by `hash`.
#[derive(Clone)]
struct Place {
    seq: i64,
    prev: String,
    hash: String,
    seal: Option<crate::seal::Seal>,
}

/// The chain heads known inside one group commit. The group holds SQLite's write lock from
/// `BEGIN IMMEDIATE` to `COMMIT`, so nobody else can append meanwhile: a head read or written
/// earlier in the group is still the head, unless the write that made it was rolled back,
/// which is why a write's new head counts only once its savepoint is released.
#[derive(Default)]
struct ChainHeads {
    known: std::collections::HashMap<String, (i64, String)>,
    pending: Vec<(String, (i64, String))>,
    /// Signs each entry's hash as it is placed (the writer's one key, see `seal`).
    sealer: Option<std::sync::Arc<crate::seal::Sealer>>,
}

impl ChainHeads {
    async fn place(
        &mut self,
        tx: &mut sqlx::SqliteConnection,
        p: &Prepared,
    ) -> Result<Place, StoreError> {
        let e = &p.entry;
        let head = if let Some((_, h)) = self.pending.iter().rev().find(|(t, _)| *t == e.tenant) {
            Some(h.clone())
        } else if let Some(h) = self.known.get(&e.tenant) {
            Some(h.clone())
        } else {
            chain_head(tx, &e.tenant).await?
        };
        let (seq, prev) = head
            .map(|(s, h)| (s + 1, h))
            .unwrap_or((1, GENESIS.to_owned()));
        let hash = entry_hash(e, seq, p.facts_digest.as_deref(), &prev);
        let seal = self.sealer.as_ref().map(|s| s.seal(hash.as_bytes()));
        Ok(Place {
            seq,
            prev,
            hash,
            seal,
        })
    }

    fn appended(&mut self, tenant: &str, place: Place) {
        self.pending
            .push((tenant.to_owned(), (place.seq, place.hash)));
    }

    /// The write's savepoint was released (`kept`) or rolled back.
    fn settle(&mut self, kept: bool) {
        let pending = std::mem::take(&mut self.pending);
        if kept {
            self.known.extend(pending);
        }
    }
}

const INSERT_AUDIT: &str = "INSERT INTO audit_entries (id, tenant, seq, recorded_at, action, outcome, caller_issuer, caller_subject, hook,
            hook_instance, service_id, patient_ref, as_of, input_digest, facts, rule_set_id, rule_set_version,
            rule_set_hash, decision_ids, card_uuids, careplan_id, trace_id, details, prev_hash, hash,
            seal_kid, seal)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)";

fn bind_audit<'q>(q: SqliteQuery<'q>, p: &'q Prepared, at: &'q Place) -> SqliteQuery<'q> {
    let e = &p.entry;
    q.bind(e.id.to_string())
        .bind(&e.tenant)
        .bind(at.seq)
        .bind(e.recorded_us)
        .bind(&e.action)
        .bind(&e.outcome)
        .bind(&e.caller_issuer)
        .bind(&e.caller_subject)
        .bind(&e.hook)
        .bind(&e.hook_instance)
        .bind(&e.service_id)
        .bind(&e.patient_ref)
        .bind(&e.as_of)
        .bind(p.facts_digest.as_deref())
        .bind(p.entry.facts.as_ref().map(|f| f.text()))
        .bind(&e.rule_set_id)
        .bind(&e.rule_set_version)
        .bind(&e.rule_set_hash)
        .bind(p.decision_ids.as_str())
        .bind(p.card_uuids.as_str())
        .bind(e.careplan_id.map(|u| u.to_string()))
        .bind(&e.trace_id)
        .bind(p.details.as_str())
        .bind(&at.prev)
        .bind(&at.hash)
        .bind(at.seal.as_ref().map(|s| s.kid.as_str()))
        .bind(at.seal.as_ref().map(|s| s.sig.as_str()))
}

async fn append(
    tx: &mut sqlx::SqliteConnection,
    heads: &mut ChainHeads,
    p: &Prepared,
) -> Result<(), StoreError> {
    let place = heads.place(&mut *tx, p).await?;
    bind_audit(sqlx::query(INSERT_AUDIT), p, &place)
        .execute(&mut *tx)
        .await?;
    heads.appended(&p.entry.tenant, place);
    Ok(())
}

fn row_to_audit(row: &sqlx::sqlite::SqliteRow) -> Result<AuditEntry, StoreError> {
    let corrupt = |e: String| StoreError::Corrupt(e);
    let parse = |s: Option<String>| -> Result<Option<serde_json::Value>, StoreError> {
        s.map(|s| serde_json::from_str(&s).map_err(|e| corrupt(e.to_string())))
            .transpose()
    };
    let list = |s: String| -> Result<Vec<String>, StoreError> {
        serde_json::from_str(&s).map_err(|e| corrupt(e.to_string()))
    };
    let uuid = |s: String| Uuid::parse_str(&s).map_err(|e| corrupt(e.to_string()));
    Ok(AuditEntry {
        entry: NewAuditEntry {
            id: uuid(row.try_get("id")?)?,
            tenant: row.try_get("tenant")?,
            recorded_us: row.try_get("recorded_at")?,
            action: row.try_get("action")?,
            outcome: row.try_get("outcome")?,
            caller_issuer: row.try_get("caller_issuer")?,
            caller_subject: row.try_get("caller_subject")?,
            hook: row.try_get("hook")?,
            hook_instance: row.try_get("hook_instance")?,
            service_id: row.try_get("service_id")?,
            patient_ref: row.try_get("patient_ref")?,
            as_of: row.try_get("as_of")?,
            facts: row
                .try_get::<Option<String>, _>("facts")?
                .map(|t| {
                    AuditFacts::from_stored(&t).map_err(|e| StoreError::Corrupt(e.to_string()))
                })
                .transpose()?,
            rule_set_id: row.try_get("rule_set_id")?,
            rule_set_version: row.try_get("rule_set_version")?,
            rule_set_hash: row.try_get("rule_set_hash")?,
            decision_ids: list(row.try_get("decision_ids")?)?,
            card_uuids: list(row.try_get("card_uuids")?)?,
            careplan_id: row
                .try_get::<Option<String>, _>("careplan_id")?
                .map(uuid)
                .transpose()?,
            trace_id: row.try_get("trace_id")?,
            details: parse(row.try_get("details")?)?.unwrap_or(serde_json::Value::Null),
        },
        seq: row.try_get("seq")?,
        input_digest: row.try_get("input_digest")?,
        prev_hash: row.try_get("prev_hash")?,
        hash: row.try_get("hash")?,
        seal: match (
            row.try_get::<Option<String>, _>("seal_kid")?,
            row.try_get::<Option<String>, _>("seal")?,
        ) {
            (Some(kid), Some(sig)) => Some(crate::seal::Seal { kid, sig }),
            _ => None,
        },
    })
}
