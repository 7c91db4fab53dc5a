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
            sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Io(_)
            | sqlx::Error::Tls(_) => StoreError::Unavailable(e),
            // The database went away or refused us: as unavailable as a dead socket.
            sqlx::Error::Database(ref d)
                if d.code()
                    .is_some_and(|c| c.starts_with("08") || c == "3D000" || c == "57P01") =>
            {
                StoreError::Unavailable(e)
            }
            // SQLite that cannot write now (busy, locked, read-only, I/O error, disk full,
            // cannot open): retry later, as with a server that went away.
            sqlx::Error::Database(ref d)
                if d.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some()
                    && d.code()
                        .and_then(|c| c.parse::<i32>().ok())
                        .is_some_and(|c| matches!(c & 0xff, 5 | 6 | 8 | 10 | 13 | 14)) =>
            {
                StoreError::Unavailable(e)
            }
            other => StoreError::Database(other),
        }
    }
}

impl StoreError {
    /// Worth retrying later (503) rather than a bug (500).
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
