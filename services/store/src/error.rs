/// What can go wrong below the service. Messages never carry row contents (PHI).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database URL must start with sqlite:// or postgres://")]
    UnsupportedUrl,
    #[error("not found")]
    NotFound,
    #[error("{0}")]
    Unsupported(&'static str),
    #[error("the record changed since it was read (now at version {0})")]
    Conflict(i32),
    #[error("the database is unavailable")]
    Unavailable(#[source] sqlx::Error),
    /// The database answers but not in time for this call: every pooled connection was busy
    /// for the whole acquire time, SQLite's file was busy or locked, or PostgreSQL had no
    /// connection slot free (SQLSTATE 53300). Load, not an outage:
    /// retried later (503 `overloaded`), and it never marks the database down (`guard`).
    #[error("the database is busy ({0})")]
    Overloaded(&'static str),
    /// A row with this key exists already: another call (another replica, say) wrote it
    /// first. Not a failure of the database.
    #[error("a row with this key exists already")]
    Duplicate(#[source] sqlx::Error),
    /// Known to be down (see `guard`): refused without trying.
    #[error("the database is down (failing fast until it answers again)")]
    Down,
    #[error("the SQLite database file is gone: {0}")]
    FileGone(String),
    #[error("migration failed: {0}")]
    Migration(#[from] sqlx::migrate::MigrateError),
    #[error("this database role may not change the schema (permission denied): run `stride migrate` as the schema owner, and start this role with STRIDE_MIGRATE_ON_START=false")]
    MigrationForbidden,
    #[error("the database schema is not current (applied: {applied}, needed: {needed}); run `stride migrate` as the owner")]
    SchemaBehind { applied: i64, needed: i64 },
    #[error("stored data is unreadable: {0}")]
    Corrupt(String),
    /// An audit entry whose action or facts cannot be read (edited in the database): which
    /// one, so that a chain check names it as a broken link.
    #[error("audit entry {} of {} is unreadable: {}", .0.seq, .0.tenant.as_str(), .0.reason)]
    UnreadableEntry(crate::Broken),
    /// The shared commit of a group of writes failed; none of them is stored.
    #[error("the write could not be made durable: {0}")]
    CommitFailed(String),
    #[error("database error")]
    Database(#[source] sqlx::Error),
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        match e {
            sqlx::Error::RowNotFound => StoreError::NotFound,
            // Waiting out the acquire time means every connection was in use: load. (Or a
            // database that no longer answers: `guard` tells the two apart by opening a
            // connection outside the pool.)
            sqlx::Error::PoolTimedOut => {
                StoreError::Overloaded("no pooled connection free within the acquire time")
            }
            // PostgreSQL's `too_many_connections`: the server answered, with every slot taken
            // (other replicas, a migration, an operator's session). Load, as a busy pool is.
            sqlx::Error::Database(ref d) if d.code().as_deref() == Some("53300") => {
                StoreError::Overloaded("the database server has no connection slot free")
            }
            sqlx::Error::Database(ref d) if d.kind() == sqlx::error::ErrorKind::UniqueViolation => {
                StoreError::Duplicate(e)
            }
            sqlx::Error::Database(ref d)
                if sqlx_sqlite(d.as_ref()) == Some(SqliteTrouble::Busy) =>
            {
                StoreError::Overloaded("the database file is busy")
            }
            sqlx::Error::PoolClosed | sqlx::Error::Io(_) | sqlx::Error::Tls(_) => {
                StoreError::Unavailable(e)
            }
            // The database went away or refused us: as unavailable as a dead socket.
            sqlx::Error::Database(ref d)
                if d.code()
                    .is_some_and(|c| c.starts_with("08") || c == "3D000" || c == "57P01") =>
            {
                StoreError::Unavailable(e)
            }
            // Retry later, as with a server that went away.
            sqlx::Error::Database(ref d)
                if sqlx_sqlite(d.as_ref()) == Some(SqliteTrouble::CannotWrite) =>
            {
                StoreError::Unavailable(e)
            }
            other => StoreError::Database(other),
        }
    }
}

/// What a SQLite result code says of the database, one table for both of the store's SQLite
/// drivers (sqlx's, and rusqlite's in `sqlite::engine`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SqliteTrouble {
    /// Busy (5) or locked (6): another connection holds the file; the database answers.
    Busy,
    /// Read-only (8), an I/O error (10), the disk full (13), the file not opened (14): it
    /// cannot write at all.
    CannotWrite,
}

/// `code`, a SQLite result code (extended or primary), in the store's terms.
pub(crate) fn sqlite_trouble(code: i32) -> Option<SqliteTrouble> {
    match code & 0xff {
        5 | 6 => Some(SqliteTrouble::Busy),
        8 | 10 | 13 | 14 => Some(SqliteTrouble::CannotWrite),
        _ => None,
    }
}

/// The same, for an error sqlx's SQLite driver returned.
fn sqlx_sqlite(d: &dyn sqlx::error::DatabaseError) -> Option<SqliteTrouble> {
    d.try_downcast_ref::<sqlx::sqlite::SqliteError>()?;
    sqlite_trouble(d.code()?.parse().ok()?)
}

impl StoreError {
    /// Busy, not down: worth retrying in a moment (503 `overloaded`).
    pub fn is_overloaded(&self) -> bool {
        matches!(self, StoreError::Overloaded(_))
    }

    /// The database is unreachable or cannot write: worth retrying later (503), and a reason
    /// to fail fast until it answers again (`guard`). Overload is not this.
    pub fn is_unavailable(&self) -> bool {
        matches!(
            self,
            StoreError::Unavailable(_)
                | StoreError::Down
                | StoreError::FileGone(_)
                | StoreError::CommitFailed(_)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_wait_for_a_connection_is_load_not_an_outage() {
        let e = StoreError::from(sqlx::Error::PoolTimedOut);
        assert!(e.is_overloaded() && !e.is_unavailable(), "{e:?}");
        let e = StoreError::from(sqlx::Error::PoolClosed);
        assert!(e.is_unavailable() && !e.is_overloaded(), "{e:?}");
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert!(StoreError::from(sqlx::Error::Io(refused)).is_unavailable());
    }

    /// Real SQLite errors, as the store meets them: a second row under a key, and a file that
    /// another connection holds for writing.
    #[tokio::test]
    async fn sqlite_duplicates_and_a_busy_file_are_told_apart_from_an_outage() {
        use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
        use sqlx::{ConnectOptions, Connection};
        let dir = tempfile::tempdir().unwrap();
        let opts = SqliteConnectOptions::new()
            .filename(dir.path().join("t.db"))
            .create_if_missing(true)
            .busy_timeout(std::time::Duration::ZERO);
        let mut a: SqliteConnection = opts.connect().await.unwrap();
        sqlx::query("CREATE TABLE t (k TEXT PRIMARY KEY)")
            .execute(&mut a)
            .await
            .unwrap();
        sqlx::query("INSERT INTO t VALUES ('x')")
            .execute(&mut a)
            .await
            .unwrap();
        let dup = sqlx::query("INSERT INTO t VALUES ('x')")
            .execute(&mut a)
            .await
            .unwrap_err();
        let dup = StoreError::from(dup);
        assert!(matches!(dup, StoreError::Duplicate(_)), "{dup:?}");
        assert!(!dup.is_unavailable());

        let mut b: SqliteConnection = opts.connect().await.unwrap();
        sqlx::query("BEGIN IMMEDIATE")
            .execute(&mut a)
            .await
            .unwrap();
        let busy = sqlx::query("INSERT INTO t VALUES ('y')")
            .execute(&mut b)
            .await
            .unwrap_err();
        let busy = StoreError::from(busy);
        assert!(busy.is_overloaded() && !busy.is_unavailable(), "{busy:?}");
        sqlx::query("ROLLBACK").execute(&mut a).await.unwrap();
        a.close().await.unwrap();
        b.close().await.unwrap();
    }
}
