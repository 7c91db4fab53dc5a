//! SQLite through rusqlite, on the thread that asks: the writer's connection and the in-place
//! reads (`writer`, `inplace`). Values are kept exactly as sqlx kept them before (and as its
//! other reads still read them): times as RFC 3339 text, ids and JSON as text, flags as
//! integers; errors are told apart as sqlx's are (`error.rs`).

use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};
use time::OffsetDateTime;

use crate::StoreError;

/// A file's device and inode.
pub(super) type FileId = (u64, u64);

/// Which file is at `path`, or why there is none: a file replaced at the same path (a backup
/// restored) is not the one an open connection reads and writes.
pub(super) fn identity(path: &Path) -> Result<FileId, StoreError> {
    use std::os::unix::fs::MetadataExt;
    match std::fs::metadata(path) {
        Ok(m) => Ok((m.dev(), m.ino())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            Err(StoreError::FileGone(path.display().to_string()))
        }
        Err(e) => Err(StoreError::Unavailable(sqlx::Error::Io(e))),
    }
}

/// The writer's connection: never creating the file (the store's start does, and a file gone
/// is an outage, not a new empty database), with the settings every write needs.
pub(super) fn open(path: &Path, wait: Duration) -> Result<Connection, StoreError> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(error)?;
    conn.busy_timeout(wait).map_err(error)?;
    // About twenty distinct statements write; the default cache of 16 would evict some.
    conn.set_prepared_statement_cache_capacity(32);
    // Readers never wait for the writer only in WAL mode; a file put in place in another mode
    // (a restored copy) is switched on first write, as sqlx switched every connection.
    let mode: String = conn
        .pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))
        .map_err(error)?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(StoreError::Unavailable(sqlx::Error::Protocol(format!(
            "the database stays in journal mode {mode}, not WAL"
        ))));
    }
    // WAL + NORMAL is durable against process crashes; FULL also against power loss, which is
    // what an acknowledged clinical decision needs. Each write's savepoint keeps a statement
    // journal; past 64 KiB in one group SQLite spills it to a temporary file (open, write,
    // unlink on every group): it only ever undoes a write inside its open transaction, so
    // memory is the place for it.
    conn.execute_batch(
        "PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON; PRAGMA temp_store = MEMORY;",
    )
    .map_err(error)?;
    Ok(conn)
}

/// A time as sqlx writes it (`OffsetDateTime::format(&Rfc3339)`, the offset kept).
pub(super) fn at(t: OffsetDateTime) -> Result<String, StoreError> {
    t.format(&time::format_description::well_known::Rfc3339)
        .map_err(|e| StoreError::Database(sqlx::Error::Encode(Box::new(e))))
}

/// A failed statement, in the store's terms, as sqlx's SQLite errors are told apart
/// (`error.rs`): busy or locked is load; read-only, I/O, a full disk or a file that cannot be
/// opened is an outage; a second row under a unique key is a duplicate; any other error SQLite
/// itself returned is an answer from the database (`guard` counts it so); a value that cannot
/// be read is a corrupt row.
pub(crate) fn error(e: rusqlite::Error) -> StoreError {
    use crate::error::{sqlite_trouble, SqliteTrouble};
    match &e {
        rusqlite::Error::SqliteFailure(f, _) => match sqlite_trouble(f.extended_code) {
            Some(SqliteTrouble::Busy) => StoreError::Overloaded("the database file is busy"),
            Some(SqliteTrouble::CannotWrite) => {
                StoreError::Unavailable(sqlx::Error::AnyDriverError(Box::new(e)))
            }
            None if unique(f) => StoreError::Duplicate(sqlx::Error::Database(Box::new(Engine(e)))),
            None => StoreError::Database(sqlx::Error::Database(Box::new(Engine(e)))),
        },
        rusqlite::Error::InvalidColumnType(..)
        | rusqlite::Error::InvalidColumnName(_)
        | rusqlite::Error::IntegralValueOutOfRange(..)
        | rusqlite::Error::FromSqlConversionFailure(..) => StoreError::Corrupt(e.to_string()),
        _ => StoreError::Database(sqlx::Error::AnyDriverError(Box::new(e))),
    }
}

/// A unique or primary key violated (SQLITE_CONSTRAINT_UNIQUE, SQLITE_CONSTRAINT_PRIMARYKEY).
fn unique(f: &rusqlite::ffi::Error) -> bool {
    matches!(
        f.extended_code,
        rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE | rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY
    )
}

/// An error SQLite returned, as sqlx carries a database's own errors.
#[derive(Debug)]
struct Engine(rusqlite::Error);

impl std::fmt::Display for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for Engine {}

impl sqlx::error::DatabaseError for Engine {
    fn message(&self) -> &str {
        match &self.0 {
            rusqlite::Error::SqliteFailure(_, Some(m)) => m,
            _ => "SQLite error",
        }
    }
    fn code(&self) -> Option<std::borrow::Cow<'_, str>> {
        self.0
            .sqlite_error()
            .map(|f| f.extended_code.to_string().into())
    }
    fn as_error(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
        self
    }
    fn as_error_mut(&mut self) -> &mut (dyn std::error::Error + Send + Sync + 'static) {
        self
    }
    fn into_error(self: Box<Self>) -> Box<dyn std::error::Error + Send + Sync + 'static> {
        self
    }
    fn kind(&self) -> sqlx::error::ErrorKind {
        match self.0.sqlite_error() {
            Some(f) if unique(f) => sqlx::error::ErrorKind::UniqueViolation,
            Some(f) if f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_FOREIGNKEY => {
                sqlx::error::ErrorKind::ForeignKeyViolation
            }
            Some(f) if f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_NOTNULL => {
                sqlx::error::ErrorKind::NotNullViolation
            }
            Some(f) if f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_CHECK => {
                sqlx::error::ErrorKind::CheckViolation
            }
            _ => sqlx::error::ErrorKind::Other,
        }
    }
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;
    use crate::sqlite::fixtures::{migrated, plan};
    use crate::{CarePlanStatus, NewCarePlan, PatientRef, Store, TenantId};

    /// Every time is written as sqlx writes it: sqlx's own encoding, read back from SQLite
    /// unchanged (`SELECT ?`), is the oracle.
    #[tokio::test]
    async fn times_are_written_as_sqlx_writes_them() {
        use sqlx::Connection as _;
        let mut c = sqlx::SqliteConnection::connect("sqlite::memory:")
            .await
            .unwrap();
        for t in [
            datetime!(2026-12-07 09:15:30 UTC),
            datetime!(2026-12-07 09:15:30.5 UTC),
            datetime!(2026-12-07 09:15:30.123456789 +02:00),
            datetime!(1999-01-01 00:00:00.000001 -05:30),
            datetime!(2030-06-30 23:59:59.999 +14:00),
            OffsetDateTime::now_utc(),
        ] {
            let sqlx_wrote: String = sqlx::query_scalar("SELECT ?")
                .bind(t)
                .fetch_one(&mut c)
                .await
                .unwrap();
            assert_eq!(at(t).unwrap(), sqlx_wrote, "{t}");
        }
    }

    /// A CarePlan the writer stores is, column by column (value and SQLite type), the row sqlx
    /// stored for the same plan before the writer was its own.
    #[tokio::test]
    async fn the_writer_stores_a_row_as_sqlx_stored_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = migrated(&dir).await;
        let plan = plan(CarePlanStatus::Draft, Some("k"), "g");
        store.insert_careplan(&plan).await.unwrap();
        // As the store wrote it through sqlx until stop 45.
        let other = uuid::Uuid::new_v4();
        sqlx::query(
            "INSERT INTO careplans (id, tenant, patient_ref, status, version, rule_set_id, rule_set_version,
                                    phase, red_flag, resource, created_at, updated_at, decision_key, patient)
             VALUES (?, ?, ?, ?, 1, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(other.to_string())
        .bind(plan.tenant.as_str())
        .bind(&plan.patient_ref)
        .bind(plan.status.as_str())
        .bind(&plan.rule_set_id)
        .bind(&plan.rule_set_version)
        .bind(&plan.phase)
        .bind(plan.red_flag)
        .bind(plan.resource.to_string())
        .bind(plan.created_at)
        .bind(plan.created_at)
        .bind("k2")
        .bind(plan.patient.as_ref().map(|v| v.to_string()))
        .execute(&store.pool)
        .await
        .unwrap();
        let columns = "tenant, patient_ref, status, version, rule_set_id, rule_set_version, \
                       phase, red_flag, resource, created_at, updated_at, patient";
        let row = |id: uuid::Uuid| stored(&store.pool, "careplans", columns, "id", id.to_string());
        let ours = row(plan.id).await;
        assert_eq!(ours, row(other).await);
        assert!(
            ours.contains("'2026-12-07T09:15:30.123456789+02:00':text"),
            "{ours}"
        );
        assert!(ours.contains("|1:integer|"), "{ours}");
    }

    /// `columns` of the row whose `key` is `value`: each value quoted, with its SQLite type.
    async fn stored(
        pool: &sqlx::SqlitePool,
        table: &str,
        columns: &str,
        key: &str,
        value: String,
    ) -> String {
        let quoted = columns
            .split(", ")
            .map(|c| format!("quote({c}) || ':' || typeof({c})"))
            .collect::<Vec<_>>()
            .join(" || '|' || ");
        sqlx::query_scalar(&format!("SELECT {quoted} FROM {table} WHERE {key} = ?"))
            .bind(value)
            .fetch_one(pool)
            .await
            .unwrap()
    }

    /// A hook call's card and stored answer, as the writer stores them, are the rows sqlx
    /// stored for the same card and answer before the writer was its own.
    #[tokio::test]
    async fn a_hook_calls_card_and_answer_are_stored_as_sqlx_stored_them() {
        let dir = tempfile::tempdir().unwrap();
        let store = migrated(&dir).await;
        let tenant = TenantId::parse("clinic-a").unwrap();
        let sent = datetime!(2026-12-07 09:15:30.123456789 +02:00);
        let plan = draft_of("k");
        store.insert_careplan(&plan).await.unwrap();
        let card = crate::NewCard {
            uuid: uuid::Uuid::new_v4(),
            tenant: tenant.clone(),
            service_id: "svc".into(),
            hook_instance: "h".into(),
            decision_id: "d".into(),
            careplan_id: Some(plan.id),
            created_at: sent,
            rule_set_id: Some("g".into()),
            rule_set_version: Some("1.0.1".into()),
            user_ref: Some("Practitioner/1".into()),
            encounter: None,
            patient_ref: PatientRef::parse("Patient/p1"),
        };
        let answer = crate::HookAnswer {
            hook_instance: "h".into(),
            tenant: tenant.clone(),
            caller_issuer: "https://ehr".into(),
            fingerprint: "f1".into(),
            response: r#"{"cards":["é ✓"]}"#.into(),
            created_at: sent,
        };
        let mut audit = crate::NewAuditEntry::of(tenant.clone());
        audit.id = uuid::Uuid::new_v4();
        store
            .record_hook(crate::HookRecord {
                careplan: None,
                cards: vec![card.clone()],
                audit,
                answer: Some(answer.clone()),
            })
            .await
            .unwrap();
        // As the store wrote them through sqlx until stop 45.
        let other = uuid::Uuid::new_v4();
        sqlx::query(
            "INSERT INTO cards (uuid, tenant, service_id, hook_instance, decision_id, careplan_id, created_at,
                                rule_set_id, rule_set_version, user_ref, encounter, patient_ref)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(other.to_string())
        .bind(card.tenant.as_str())
        .bind(&card.service_id)
        .bind(&card.hook_instance)
        .bind(&card.decision_id)
        .bind(card.careplan_id.map(|u| u.to_string()))
        .bind(card.created_at)
        .bind(&card.rule_set_id)
        .bind(&card.rule_set_version)
        .bind(&card.user_ref)
        .bind(&card.encounter)
        .bind(&card.patient_ref)
        .execute(&store.pool)
        .await
        .unwrap();
        sqlx::query(
            "INSERT INTO hook_answers (hook_instance, tenant, caller_issuer, fingerprint, response, created_at)
             VALUES (?, ?, ?, ?, ?, ?)",
        )
        .bind(&answer.hook_instance)
        .bind(answer.tenant.as_str())
        .bind(&answer.caller_issuer)
        .bind("f2")
        .bind(&answer.response)
        .bind(answer.created_at)
        .execute(&store.pool)
        .await
        .unwrap();
        let columns = "tenant, service_id, hook_instance, decision_id, careplan_id, created_at, \
                       rule_set_id, rule_set_version, user_ref, encounter, patient_ref";
        let ours = stored(&store.pool, "cards", columns, "uuid", card.uuid.to_string()).await;
        let theirs = stored(&store.pool, "cards", columns, "uuid", other.to_string()).await;
        assert_eq!(ours, theirs);
        assert!(ours.contains("|NULL:null|"), "{ours}");
        // Every column as sqlx stored it but the answer itself, which the writer keeps packed
        // (`sqlite::packed`) where sqlx kept text: both read back as the answer given.
        let columns = "hook_instance, tenant, caller_issuer, created_at";
        let ours = stored(
            &store.pool,
            "hook_answers",
            columns,
            "fingerprint",
            "f1".into(),
        )
        .await;
        let theirs = stored(
            &store.pool,
            "hook_answers",
            columns,
            "fingerprint",
            "f2".into(),
        )
        .await;
        assert_eq!(ours, theirs);
        let kinds: Vec<String> = sqlx::query_scalar(
            "SELECT typeof(response) FROM hook_answers WHERE hook_instance = 'h' ORDER BY fingerprint",
        )
        .fetch_all(&store.pool)
        .await
        .unwrap();
        assert_eq!(kinds, ["blob", "text"]);
        let read = store.hook_answers("h").await.unwrap();
        assert_eq!(read.len(), 2);
        assert!(
            read.iter().all(|a| a.response == answer.response),
            "{read:?}"
        );
    }

    /// A backup put in place of the database file while the service runs is the database
    /// from then on: the writer writes it, not the unlinked file it had open, which nobody
    /// would read again (the in-place reads already read the new one). And a closed store
    /// takes no write.
    #[tokio::test]
    async fn a_file_restored_in_place_is_written_and_a_closed_store_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = migrated(&dir).await;
        let path = dir.path().join("s.db");
        store.insert_careplan(&draft_of("before")).await.unwrap();
        let copy = dir.path().join("copy.db");
        sqlx::query(&format!("VACUUM INTO '{}'", copy.display()))
            .execute(&store.pool)
            .await
            .unwrap();
        sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
            .execute(&store.pool)
            .await
            .unwrap();
        std::fs::rename(&copy, &path).unwrap();
        store.insert_careplan(&draft_of("after")).await.unwrap();
        let tenant = TenantId::parse("clinic-a").unwrap();
        let patient = PatientRef::parse("Patient/p1").unwrap();
        let plans = store.patient_plans(&tenant, &patient, "g").await.unwrap();
        let mut keys: Vec<_> = plans
            .drafts
            .iter()
            .map(|d| d.decision_key.as_str())
            .collect();
        keys.sort();
        assert_eq!(keys, ["after", "before"]);

        store.close().await;
        let refused = store
            .insert_careplan(&draft_of("closed"))
            .await
            .unwrap_err();
        assert!(refused.is_unavailable(), "{refused:?}");
    }

    /// A second row under a unique or primary key is a duplicate (the draft race and a
    /// replayed token are told by it), as sqlx tells it.
    #[test]
    fn a_key_taken_twice_is_a_duplicate() {
        let c = Connection::open_in_memory().unwrap();
        c.execute_batch(
            "CREATE TABLE t (k TEXT PRIMARY KEY, u TEXT UNIQUE); INSERT INTO t VALUES ('a', 'x');",
        )
        .unwrap();
        for sql in [
            "INSERT INTO t VALUES ('a', 'y')",
            "INSERT INTO t VALUES ('b', 'x')",
        ] {
            let e = error(c.execute(sql, []).unwrap_err());
            assert!(matches!(e, StoreError::Duplicate(_)), "{sql}: {e:?}");
        }
        let e = error(
            c.execute("INSERT INTO t VALUES (NULL, NULL, 1)", [])
                .unwrap_err(),
        );
        assert!(
            matches!(e, StoreError::Database(sqlx::Error::Database(_))),
            "{e:?}"
        );
    }

    fn draft_of(key: &str) -> NewCarePlan {
        plan(CarePlanStatus::Draft, Some(key), "g")
    }
}
