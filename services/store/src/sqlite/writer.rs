//! The single SQLite writer: every write queued, run in a savepoint of one group transaction,
//! and answered only once the group's commit is durable.

use std::path::PathBuf;

use futures_util::future::BoxFuture;
use sqlx::sqlite::SqlitePool;
use sqlx::SqliteConnection;

use super::chain::ChainHeads;
use crate::StoreError;

/// The way into the single group-commit writer (see `group_writer`): its queue, and the
/// database file it writes to.
#[derive(Clone)]
pub(crate) struct Writer {
    pub(super) queue: tokio::sync::mpsc::Sender<Job>,
    pub(super) path: Option<PathBuf>,
}

/// A write: the statements `work` runs on a connection in a `BEGIN IMMEDIATE` transaction.
/// What a queued write hands back once it has run: whether to keep its changes, and how to
/// tell its caller the outcome of the group commit.
pub(super) type Deliver = Box<dyn FnOnce(Option<&StoreError>) + Send>;
pub(super) type Run = Box<
    dyn for<'c> FnOnce(&'c mut SqliteConnection, &'c mut ChainHeads) -> BoxFuture<'c, Ran> + Send,
>;

/// A write's statements, run by the writer on its connection inside the group's transaction.
pub(super) trait Work<T>:
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

pub(super) struct Job {
    pub(super) run: Run,
    /// The write opens and releases its own savepoint `stride_write` in the same round trip
    /// as its statements (one batch). If it fails, the writer rolls the savepoint back.
    /// Otherwise the writer wraps it in one, at the cost of two more round trips.
    pub(super) batch: bool,
    /// Where the writer says why it dropped the write unrun, when that was load: no pooled
    /// connection came free within the acquire time (answered `overloaded`). Told per write:
    /// a flag shared by every write told a write dropped later for another reason (a panic, a
    /// broken group) that it was load too, since nothing cleared it.
    pub(super) dropped: tokio::sync::oneshot::Sender<StoreError>,
}

/// The savepoint a batch write opens first and releases last.
pub(super) const SAVEPOINT: &str = "SAVEPOINT stride_write";
pub(super) const RELEASE: &str = "RELEASE stride_write";

/// A write that ran: keep its changes or not, whether its connection is suspect (a read-only
/// or I/O error: SQLite may have opened it read-only while the file was unwritable), and how
/// to answer its caller.
pub(super) struct Ran {
    pub(super) keep: bool,
    pub(super) reconnect: bool,
    pub(super) deliver: Deliver,
}

/// Control statements on the writer's connection, all in one round trip; boxed so the writer
/// task's future stays `Send`.
pub(super) fn exec<'c>(
    conn: &'c mut SqliteConnection,
    sql: &'static str,
) -> BoxFuture<'c, Result<(), sqlx::Error>> {
    Box::pin(async move {
        sqlx::query(sql).execute(&mut *conn).await?;
        Ok(())
    })
}

/// How long the writer keeps its connection with no write waiting.
pub(super) const WRITER_IDLE: std::time::Duration = std::time::Duration::from_millis(100);

/// Writes that arrive while one commit is in flight join the next: one fsync for the group.
pub(super) const GROUP_MAX: usize = 64;

/// The single SQLite writer. It takes every write waiting in the queue, runs each inside its
/// own savepoint of one `BEGIN IMMEDIATE` transaction (a write that fails is rolled back alone),
/// commits once, and only then answers each caller. Nobody is told "stored" before the group's
/// commit is durable; if that commit fails, every write of the group is reported failed.
pub(super) async fn group_writer(
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
                // write could not be made durable (503), and nothing was written. A pool whose
                // connections were all in use for the acquire time is load, told as such: the
                // saturation test saw it answered as an outage.
                tracing::warn!(error = %e, writes = jobs.len(), "cannot begin a write");
                if matches!(e, sqlx::Error::PoolTimedOut) {
                    for job in jobs {
                        let _ = job.dropped.send(StoreError::Overloaded(
                            "no pooled connection free for the write within the acquire time",
                        ));
                    }
                }
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
    pub(super) async fn enqueue<T, F>(&self, work: F, batch: bool) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: Work<T>,
    {
        self.file_present()?;
        let (job, ran, commit, mut dropped) = job(work, batch);
        self.queue
            .send(job)
            .await
            .map_err(|_| StoreError::CommitFailed("the writer has stopped".into()))?;
        // A write dropped unrun was told why before it was dropped, if it was load.
        let value = ran.await.map_err(|_| {
            dropped.try_recv().unwrap_or_else(|_| {
                StoreError::CommitFailed(
                    "the write could not be started (database unavailable)".into(),
                )
            })
        })??;
        commit.wait().await?;
        Ok(value)
    }

    /// A deleted file keeps working through open handles while every write goes nowhere:
    /// refuse before writing rather than acknowledge a decision that is already lost.
    pub(super) fn file_present(&self) -> Result<(), StoreError> {
        match &self.path {
            Some(p) if !p.exists() => Err(StoreError::FileGone(p.display().to_string())),
            _ => Ok(()),
        }
    }
}

/// The outcome of the group commit a queued write joined.
pub(super) struct Commit(tokio::sync::oneshot::Receiver<Result<(), StoreError>>);

impl Commit {
    pub(super) async fn wait(self) -> Result<(), StoreError> {
        self.0.await.unwrap_or_else(|_| {
            Err(StoreError::CommitFailed(
                "the writer stopped before the write was committed".into(),
            ))
        })
    }
}

/// A write as a job for the writer, with where its value arrives and where the outcome of its
/// group's commit does: both once the group has ended.
#[allow(clippy::type_complexity)]
pub(super) fn job<T, F>(
    work: F,
    batch: bool,
) -> (
    Job,
    tokio::sync::oneshot::Receiver<Result<T, StoreError>>,
    Commit,
    tokio::sync::oneshot::Receiver<StoreError>,
)
where
    T: Send + 'static,
    F: Work<T>,
{
    let (value_tx, value_rx) = tokio::sync::oneshot::channel::<Result<T, StoreError>>();
    let (commit_tx, commit_rx) = tokio::sync::oneshot::channel();
    let run: Run = Box::new(move |conn, heads| {
        Box::pin(async move {
            match work(conn, heads).await {
                // The value is handed over with the commit's outcome, not as soon as the write
                // ran: its caller waits for the commit anyway, and a value sent at once woke it
                // once for nothing (each wake a switch between threads; 2026-12-07, perf stat:
                // 26 context switches per hook call, the kernel's scheduling a third of its CPU).
                Ok(v) => {
                    Ran {
                        keep: true,
                        reconnect: false,
                        // The commit's outcome first: its caller waits on the value, then on
                        // the commit, so it wakes once with both in hand.
                        deliver: Box::new(move |failed: Option<&StoreError>| {
                            let _ = commit_tx.send(match failed {
                                None => Ok(()),
                                Some(e) => Err(StoreError::CommitFailed(e.to_string())),
                            });
                            let _ = value_tx.send(Ok(v));
                        }),
                    }
                }
                // A refused write is answered only once its group has ended: refused for a
                // key another write of the group took (a second pending draft, a token used
                // twice), its caller looks for that row next, and finds it only once the
                // group is committed. Answered at once, it read too early, found nothing and
                // tried again into the same key (a 503 under twelve concurrent `$apply`s).
                Err(e) => {
                    let reconnect = e.is_unavailable();
                    Ran {
                        keep: false,
                        reconnect,
                        // Refused in a group whose commit then failed: the row it was refused
                        // for is gone too, so it is told what the others are (retry later).
                        deliver: Box::new(move |failed: Option<&StoreError>| {
                            let _ = value_tx.send(Err(match failed {
                                Some(f) => StoreError::CommitFailed(f.to_string()),
                                None => e,
                            }));
                        }),
                    }
                }
            }
        })
    });
    let (dropped, dropped_rx) = tokio::sync::oneshot::channel();
    (
        Job {
            run,
            batch,
            dropped,
        },
        value_rx,
        Commit(commit_rx),
        dropped_rx,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nothing<'c>(
        _: &'c mut SqliteConnection,
        _: &'c mut ChainHeads,
    ) -> BoxFuture<'c, Result<(), StoreError>> {
        Box::pin(async { Ok(()) })
    }

    fn panics<'c>(
        _: &'c mut SqliteConnection,
        _: &'c mut ChainHeads,
    ) -> BoxFuture<'c, Result<(), StoreError>> {
        Box::pin(async { panic!("a write that panics") })
    }

    /// A write is answered `Overloaded` when the writer dropped it for want of a connection,
    /// and only then: a write dropped later for another reason (here one that panics) is a
    /// failure to store, whatever writes before it waited for.
    #[tokio::test]
    async fn a_write_is_overloaded_only_when_it_waited_for_a_connection() {
        let dir = tempfile::tempdir().unwrap();
        let opts = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(dir.path().join("w.db"))
            .create_if_missing(true);
        let pool = sqlx::sqlite::SqlitePoolOptions::new()
            .max_connections(1)
            .acquire_timeout(std::time::Duration::from_millis(100))
            .connect_with(opts)
            .await
            .unwrap();
        let (queue, jobs) = tokio::sync::mpsc::channel(16);
        tokio::spawn(group_writer(pool.clone(), jobs, None));
        let writer = Writer { queue, path: None };
        // Every connection taken: the write waits out the acquire time, and is load.
        let taken = pool.acquire().await.unwrap();
        let waited = writer.enqueue(nothing, false).await.unwrap_err();
        assert!(matches!(waited, StoreError::Overloaded(_)), "{waited:?}");
        drop(taken);
        writer.enqueue(nothing, false).await.unwrap();
        let lost = writer.enqueue(panics, false).await.unwrap_err();
        assert!(matches!(lost, StoreError::CommitFailed(_)), "{lost:?}");
    }
}
