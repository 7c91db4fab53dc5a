//! The hook call's SQLite reads, run in place on the calling thread.
//!
//! sqlx runs every SQLite connection on a thread of its own: a query is sent to that thread,
//! which wakes, runs it and wakes the caller with the rows. A hook call reads three times (is
//! the token's id spent, was this hookInstance answered, the patient's plans), so six or more
//! switches between threads for reads of a few tens of microseconds each. Under load
//! (2026-12-07, `perf record` under wrk, 4 connections) those connection threads held 30 % of
//! the server's samples, 12 points of them in the kernel's switching into them
//! (`finish_task_switch`), with 7 more on the HTTP workers waking them.
//!
//! In WAL mode a reader never waits for the writer, so these reads run here, on the HTTP
//! worker that needs them, on a connection of this small pool (one per worker is all that is
//! ever busy at once). Writes stay with the single group writer, and every other read with
//! sqlx: neither is on a hook call's path more than once.
//!
//! The price, accepted: a read does not yield, so nothing else runs on its worker meanwhile,
//! and the guard's timer (`guard::SUSPECT_AFTER`) cannot cut it short. A lock held from
//! outside holds the worker for at most `BUSY`; a disk that stops answering altogether holds
//! every worker that reads, health checks included, until it answers (the liveness probe then
//! restarts the pod), where a read on sqlx's thread was answered 503 after two seconds. SQLite
//! is the embedded default on a local disk; production on shared storage is PostgreSQL.

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

use super::engine::{error, identity, FileId};
use crate::StoreError;

/// How long a read waits for a lock. A WAL reader waits only while another connection
/// recovers the log after a crash, or holds the file exclusively (an operator's tool): not
/// load this call should sit through on a worker that serves other calls. Past it, the read
/// is answered busy (503 `overloaded`).
const BUSY: Duration = Duration::from_millis(250);

pub(super) struct InPlace {
    path: PathBuf,
    /// Idle connections, and the file they were opened on (device and inode): a file replaced
    /// at the same path (a backup restored) is not the one they read.
    idle: Mutex<(Vec<Connection>, Option<FileId>)>,
    /// Idle connections kept: one per HTTP worker is all that reads at once, twice that
    /// covers the command line and a burst of reads from elsewhere.
    kept: usize,
}

impl InPlace {
    pub(super) fn new(path: PathBuf) -> Self {
        let cores = std::thread::available_parallelism().map_or(4, |n| n.get());
        InPlace {
            path,
            idle: Mutex::new((Vec::new(), None)),
            kept: (2 * cores).max(8),
        }
    }

    /// Run `read` on an idle connection (or a new one), and keep the connection for the next
    /// read unless it failed in a way that may have been the connection's. A file gone is
    /// refused as the writer refuses it (`Writer::file_present`): an open connection would
    /// still read the deleted one.
    pub(super) fn read<T>(
        &self,
        read: impl FnOnce(&Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let file = identity(&self.path)?;
        let idle = {
            let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
            if idle.1 != Some(file) {
                *idle = (Vec::new(), Some(file));
            }
            idle.0.pop()
        };
        let conn = match idle {
            Some(c) => c,
            None => self.connect()?,
        };
        let out = read(&conn);
        if !out.as_ref().is_err_and(StoreError::is_unavailable) {
            let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
            if idle.1 == Some(file) && idle.0.len() < self.kept {
                idle.0.push(conn);
            }
        }
        out
    }

    /// Close the idle connections (the store is closing).
    pub(super) fn close(&self) {
        self.idle
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .0
            .clear();
    }

    fn connect(&self) -> Result<Connection, StoreError> {
        // Never created here (a file gone is an outage, not a new empty database); opened for
        // writing only so that SQLite may keep the log's index beside it, and forbidden to
        // write by `query_only`.
        let conn = Connection::open_with_flags(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(error)?;
        conn.busy_timeout(BUSY).map_err(error)?;
        conn.pragma_update(None, "query_only", true)
            .map_err(error)?;
        Ok(conn)
    }
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;
    use crate::sqlite::fixtures::{migrated, plan};
    use crate::sqlite::SqliteStore;
    use crate::{CarePlanStatus, PatientRef, PoolOptions, Store, TenantId};

    /// The same rows (CarePlans the writer stored, answers sqlx stored) read here exactly as
    /// sqlx reads them: each column's type, times with their fractions and offsets, JSON,
    /// flags, and only the rows the query selects.
    #[tokio::test]
    async fn in_place_reads_agree_with_sqlx_on_the_same_rows() {
        let dir = tempfile::tempdir().unwrap();
        let store = migrated(&dir).await;
        let tenant = TenantId::parse("clinic-a").unwrap();
        let patient = PatientRef::parse("Patient/p1").unwrap();
        for p in [
            plan(CarePlanStatus::Active, None, "g"),
            plan(CarePlanStatus::Draft, Some("k1"), "g"),
            plan(CarePlanStatus::Draft, Some("k2"), "g"),
            plan(CarePlanStatus::Draft, None, "g"),
            plan(CarePlanStatus::Draft, Some("k3"), "other"),
        ] {
            store.insert_careplan(&p).await.unwrap();
        }
        sqlx::query(
            "INSERT INTO hook_answers (hook_instance, tenant, caller_issuer, fingerprint, response, created_at)
             VALUES ('h', 'clinic-a', 'https://ehr', 'f1', '{\"cards\":[]}', ?),
                    ('h', 'clinic-a', 'https://ehr', 'f2', '{}', ?)",
        )
        .bind(datetime!(2026-12-07 10:00:00.5 UTC))
        .bind(datetime!(2026-12-07 10:00:01 -05:00))
        .execute(&store.pool)
        .await
        .unwrap();

        let here = store.patient_plans(&tenant, &patient, "g").await.unwrap();
        let rows = sqlx::query("SELECT * FROM careplans WHERE rule_set_id = 'g' AND (status = 'active' OR decision_key IS NOT NULL)")
            .fetch_all(&store.pool)
            .await
            .unwrap();
        let sqlx_read = crate::rows::patient_plans(&rows).unwrap();
        assert!(here.approved.is_some());
        assert_eq!(here.approved, sqlx_read.approved);
        // `==` on a time compares instants; the offsets kept are compared as written out.
        assert_eq!(
            format!("{:?}", here.approved),
            format!("{:?}", sqlx_read.approved)
        );
        let mut drafts = here.drafts.clone();
        drafts.sort_by(|a, b| a.decision_key.cmp(&b.decision_key));
        let mut expected = sqlx_read.drafts.clone();
        expected.sort_by(|a, b| a.decision_key.cmp(&b.decision_key));
        assert_eq!(drafts, expected);
        assert_eq!(
            drafts
                .iter()
                .map(|d| d.decision_key.as_str())
                .collect::<Vec<_>>(),
            ["k1", "k2"]
        );
        // A draft's resource is the text stored, read back whole.
        let stored: serde_json::Value = serde_json::from_str(&drafts[0].resource).unwrap();
        assert_eq!(
            stored,
            plan(CarePlanStatus::Draft, Some("k1"), "g").resource
        );
        let approved = here.approved.as_ref().unwrap();
        assert_eq!(
            approved.updated_at,
            datetime!(2026-12-07 09:15:30.123456789 +02:00)
        );
        assert_eq!(approved.updated_at.offset(), time::macros::offset!(+02:00));

        let mut answers = store.hook_answers("h").await.unwrap();
        answers.sort_by(|a, b| a.fingerprint.cmp(&b.fingerprint));
        let rows = sqlx::query("SELECT * FROM hook_answers ORDER BY fingerprint")
            .fetch_all(&store.pool)
            .await
            .unwrap();
        let sqlx_read: Vec<_> = rows
            .iter()
            .map(crate::rows::hook_answer)
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(answers, sqlx_read);
        assert_eq!(format!("{answers:?}"), format!("{sqlx_read:?}"));
        assert_eq!(answers.len(), 2);
        assert_eq!(answers[1].created_at, datetime!(2026-12-07 15:00:01 UTC));
        assert_eq!(
            answers[1].created_at.offset(),
            time::macros::offset!(-05:00)
        );
        assert!(store.hook_answers("another").await.unwrap().is_empty());

        // A Unix time written into the TEXT column is no time to sqlx either.
        sqlx::query("UPDATE hook_answers SET created_at = 1800000000 WHERE fingerprint = 'f1'")
            .execute(&store.pool)
            .await
            .unwrap();
        let row = sqlx::query("SELECT * FROM hook_answers WHERE fingerprint = 'f1'")
            .fetch_one(&store.pool)
            .await
            .unwrap();
        assert!(crate::rows::hook_answer(&row).is_err());
        let broken = store.hook_answers("h").await.unwrap_err();
        assert!(matches!(broken, StoreError::Corrupt(_)), "{broken:?}");
        sqlx::query("DELETE FROM hook_answers WHERE fingerprint = 'f1'")
            .execute(&store.pool)
            .await
            .unwrap();

        // A time that is none reads as a corrupt row, never as a wrong time.
        sqlx::query("UPDATE hook_answers SET created_at = 'yesterday' WHERE fingerprint = 'f2'")
            .execute(&store.pool)
            .await
            .unwrap();
        let broken = store.hook_answers("h").await.unwrap_err();
        assert!(matches!(broken, StoreError::Corrupt(_)), "{broken:?}");
    }

    /// A spent token's id is seen in place; one never written is not.
    #[tokio::test]
    async fn a_spent_token_id_is_seen_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let store = migrated(&dir).await;
        sqlx::query("INSERT INTO seen_jti (issuer, jti, expires_at) VALUES ('https://ehr', 'spent', 2000000000)")
            .execute(&store.pool)
            .await
            .unwrap();
        let now = 1_900_000_000;
        let spent = store
            .claim_jti("https://ehr", "spent", 2_000_000_000, now)
            .await
            .unwrap();
        assert!(!spent.fresh);
        let other_issuer = store
            .claim_jti("https://other", "spent", 2_000_000_000, now)
            .await
            .unwrap();
        assert!(other_issuer.fresh);
        let new = store
            .claim_jti("https://ehr", "new", 2_000_000_000, now)
            .await
            .unwrap();
        assert!(new.fresh);
    }

    /// Every connection to `:memory:` is a database of its own: the writer's rows would never
    /// be read. Refused at start, not answered empty.
    #[tokio::test]
    async fn an_in_memory_database_is_refused() {
        for url in ["sqlite::memory:", "sqlite://:memory:"] {
            let e = SqliteStore::connect(url, &PoolOptions::default())
                .await
                .err()
                .unwrap_or_else(|| panic!("{url} was accepted"));
            assert!(matches!(e, StoreError::Unsupported(_)), "{url}: {e:?}");
        }
    }

    /// A database in the rollback journal's mode, holding `x`.
    fn database(path: &std::path::Path, x: i64) {
        let c = Connection::open(path).unwrap();
        c.execute_batch(&format!(
            "CREATE TABLE t (x INTEGER); INSERT INTO t VALUES ({x});"
        ))
        .unwrap();
    }

    fn x(reads: &InPlace) -> Result<i64, StoreError> {
        reads.read(|c| {
            c.query_row("SELECT x FROM t", [], |r| r.get(0))
                .map_err(error)
        })
    }

    /// A file deleted is an outage (an open connection would go on reading it), never a new
    /// empty database; a file put in its place (a backup restored) is read, not the old one
    /// that idle connections still hold open.
    #[test]
    fn a_file_gone_is_refused_and_a_file_replaced_is_read_anew() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        database(&path, 1);
        let reads = InPlace::new(path.clone());
        assert_eq!(x(&reads).unwrap(), 1);
        assert_eq!(reads.idle.lock().unwrap().0.len(), 1);

        std::fs::remove_file(&path).unwrap();
        let gone = x(&reads).unwrap_err();
        assert!(matches!(gone, StoreError::FileGone(_)), "{gone:?}");
        assert!(gone.is_unavailable());
        assert!(!path.exists(), "a read created the file");

        let other = dir.path().join("restored.db");
        database(&other, 2);
        std::fs::rename(&other, &path).unwrap();
        assert_eq!(x(&reads).unwrap(), 2);
    }

    /// A file another connection holds exclusively is load (503 `overloaded`), answered
    /// after the short wait, not an outage.
    #[test]
    fn a_file_held_exclusively_is_busy_not_down() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        database(&path, 1);
        let holder = Connection::open(&path).unwrap();
        holder.execute_batch("BEGIN EXCLUSIVE").unwrap();
        let reads = InPlace::new(path);
        let started = std::time::Instant::now();
        let busy = x(&reads).unwrap_err();
        assert!(busy.is_overloaded() && !busy.is_unavailable(), "{busy:?}");
        assert!(started.elapsed() >= BUSY, "answered busy before the wait");
        holder.execute_batch("ROLLBACK").unwrap();
        assert_eq!(x(&reads).unwrap(), 1);
    }

    /// Any other error SQLite returns is the database's answer (the guard counts it as up),
    /// as sqlx carries it; an unreadable value is a corrupt row.
    #[test]
    fn sqlite_errors_are_told_apart_as_sqlxs_are() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        database(&path, 1);
        let reads = InPlace::new(path);
        let answered = reads
            .read(|c| {
                c.execute_batch("SELECT * FROM no_such_table")
                    .map_err(error)
            })
            .unwrap_err();
        assert!(
            matches!(answered, StoreError::Database(sqlx::Error::Database(_))),
            "{answered:?}"
        );
        let unreadable = reads
            .read(|c| {
                c.query_row("SELECT 'text'", [], |r| r.get::<_, i64>(0))
                    .map_err(error)
            })
            .unwrap_err();
        assert!(
            matches!(unreadable, StoreError::Corrupt(_)),
            "{unreadable:?}"
        );
    }
}
