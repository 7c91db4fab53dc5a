//! The single SQLite writer: every write queued, run in a savepoint of one group transaction,
//! and answered only once the group's commit is durable.
//!
//! The writer owns its connection and runs each statement itself, on its own thread. Through
//! sqlx every statement was a trip to that connection's thread and back (a group's `BEGIN`,
//! chain head, each write and `COMMIT`): the path every hook call's write waits on, one group
//! at a time. Measured before the change (2026-12-07, four connections under wrk): the HTTP
//! workers busy 40 % of the time, waiting on this path, while its connection thread ran
//! 0.31 ms of CPU per call.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rusqlite::Connection;

use super::chain::ChainHeads;
use super::engine::{error, identity, open, FileId};
use crate::StoreError;

/// The way into the single group-commit writer (see `group_writer`): its queue, and the
/// database file it writes to.
#[derive(Clone)]
pub(crate) struct Writer {
    pub(super) queue: tokio::sync::mpsc::Sender<Job>,
    pub(super) path: PathBuf,
    /// The store was closed: no write is taken any more (as sqlx refused a closed pool).
    pub(super) closed: Arc<AtomicBool>,
}

/// What a queued write hands back once it has run: whether to keep its changes, and how to
/// tell its caller the outcome of the group commit.
pub(super) type Deliver = Box<dyn FnOnce(Option<&StoreError>) + Send>;
pub(super) type Run = Box<dyn FnOnce(&Connection, &mut ChainHeads) -> Ran + Send>;

/// A write's statements, run by the writer on its connection inside the group's transaction.
pub(super) trait Work<T>:
    FnOnce(&Connection, &mut ChainHeads) -> Result<T, StoreError> + Send + 'static
{
}

impl<T, F> Work<T> for F where
    F: FnOnce(&Connection, &mut ChainHeads) -> Result<T, StoreError> + Send + 'static
{
}

pub(super) struct Job {
    pub(super) run: Run,
    /// Where the writer says why it dropped the write unrun: load (the file's write lock held
    /// by another process for the whole wait, answered `overloaded`), the file gone, or a
    /// database it could not open or begin on. Told per write: a flag shared by every write
    /// told a write dropped later for another reason (a panic, a broken group) that it was
    /// load too. A write dropped without a word (a broken group) is a failure to store.
    pub(super) dropped: tokio::sync::oneshot::Sender<StoreError>,
}

impl Job {
    /// Drop the write unrun, telling its caller why.
    fn refuse(self, why: &StoreError) {
        let _ = self.dropped.send(match why {
            StoreError::Overloaded(m) => StoreError::Overloaded(m),
            StoreError::FileGone(f) => StoreError::FileGone(f.clone()),
            other => StoreError::CommitFailed(format!("the write could not be started: {other}")),
        });
    }
}

/// One control statement, prepared once (`BEGIN IMMEDIATE`, a savepoint, `COMMIT`).
fn control(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([])?;
    Ok(())
}

/// Each write's savepoint: a write that fails is rolled back alone.
const SAVEPOINT: &str = "SAVEPOINT stride_write";
const RELEASE: &str = "RELEASE stride_write";
const ROLLBACK: &str = "ROLLBACK TO stride_write; RELEASE stride_write";

/// A write that ran: keep its changes or not, whether its connection is suspect (a read-only
/// or I/O error: SQLite may have opened it read-only while the file was unwritable), and how
/// to answer its caller.
pub(super) struct Ran {
    pub(super) keep: bool,
    pub(super) reconnect: bool,
    pub(super) deliver: Deliver,
}

/// Writes that arrive while one commit is in flight join the next: one fsync for the group.
pub(super) const GROUP_MAX: usize = 64;

/// The single SQLite writer, on the thread that calls it, until every `Writer` is gone. It
/// takes every write waiting in the queue, runs each inside its own savepoint of one `BEGIN
/// IMMEDIATE` transaction (a write that fails is rolled back alone), commits once, and only
/// then answers each caller. Nobody is told "stored" before the group's commit is durable; if
/// that commit fails, every write of the group is reported failed. `wait` bounds how long a
/// group waits for the file's write lock (another process writing): past it, its writes are
/// answered `overloaded`.
pub(super) fn group_writer(
    path: PathBuf,
    mut held: Option<(Connection, FileId)>,
    mut queue: tokio::sync::mpsc::Receiver<Job>,
    sealer: Option<std::sync::Arc<crate::seal::Sealer>>,
    wait: Duration,
) {
    // Waits for one write, then takes every other one already queued (up to GROUP_MAX).
    while let Some(first) = queue.blocking_recv() {
        let mut jobs = Vec::with_capacity(GROUP_MAX);
        jobs.push(first);
        while jobs.len() < GROUP_MAX {
            match queue.try_recv() {
                Ok(job) => jobs.push(job),
                Err(_) => break,
            }
        }
        // The file now at the path: a file put in place of the one the connection has open (a
        // backup restored) is written, never the unlinked one, which nobody would read again.
        let file = match identity(&path) {
            Ok(f) => f,
            Err(e) => {
                tracing::warn!(error = %e, writes = jobs.len(), "cannot write");
                jobs.into_iter().for_each(|j| j.refuse(&e));
                continue;
            }
        };
        // BEGIN and COMMIT by hand: a connection whose COMMIT failed is closed, never used
        // again believing it is still inside a transaction.
        let conn = match held.take().filter(|(_, f)| *f == file) {
            Some((c, _)) => Ok(c),
            None => open(&path, wait),
        };
        let conn = match conn {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, writes = jobs.len(), "cannot open the database to write");
                jobs.into_iter().for_each(|j| j.refuse(&e));
                continue;
            }
        };
        if let Err(e) = control(&conn, "BEGIN IMMEDIATE") {
            let e = error(e);
            tracing::warn!(error = %e, writes = jobs.len(), "cannot begin a write");
            if e.is_overloaded() {
                // The file's write lock was held elsewhere for the whole wait: load. The writes
                // queued meanwhile are answered so too, not each after a wait of its own.
                let busy = StoreError::Overloaded(
                    "the database file stayed locked for the write's whole wait",
                );
                jobs.into_iter().for_each(|j| j.refuse(&busy));
                while let Ok(j) = queue.try_recv() {
                    j.refuse(&busy);
                }
                held = Some((conn, file));
            } else {
                jobs.into_iter().for_each(|j| j.refuse(&e));
            }
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
            if let Err(e) = control(&conn, SAVEPOINT) {
                broken = Some(e);
                break;
            }
            let run = job.run;
            let outcome =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run(&conn, &mut heads)));
            let ran = outcome.unwrap_or_else(|_| {
                tracing::error!("a write panicked; it is rolled back alone");
                Ran {
                    keep: false,
                    reconnect: true,
                    deliver: Box::new(|_: Option<&StoreError>| {}),
                }
            });
            reconnect |= ran.reconnect;
            delivers.push(ran.deliver);
            let ended = if ran.keep {
                control(&conn, RELEASE)
            } else {
                conn.execute_batch(ROLLBACK)
            };
            heads.settle(ran.keep && ended.is_ok());
            if let Err(e) = ended {
                // A failed write that cannot be undone alone: the group is abandoned whole,
                // and the writes not yet run are dropped (their callers are told nothing was
                // stored).
                broken = Some(e);
                break;
            }
        }
        let committed = match broken {
            Some(e) => {
                tracing::error!(error = %e, writes = delivers.len(), "savepoint failed: the group is rolled back");
                Err(e)
            }
            None => control(&conn, "COMMIT"),
        };
        match committed {
            Ok(()) => {
                delivers.into_iter().for_each(|d| d(None));
                if !reconnect {
                    held = Some((conn, file));
                }
            }
            Err(e) => {
                tracing::error!(error = %e, writes = delivers.len(), "group commit failed");
                let _ = conn.execute_batch("ROLLBACK");
                let failed = StoreError::CommitFailed(e.to_string());
                delivers.into_iter().for_each(|d| d(Some(&failed)));
            }
        }
    }
}

impl Writer {
    /// Run a write through the group writer and wait for its durable outcome. A caller that
    /// goes away (a client disconnecting) cannot cut it short: the write runs and commits with
    /// its group regardless. The write lock is taken up front (`BEGIN IMMEDIATE`) so that
    /// writers never deadlock upgrading from read to write.
    pub(super) async fn enqueue<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: Work<T>,
    {
        if self.closed.load(Ordering::Acquire) {
            return Err(StoreError::Unavailable(sqlx::Error::PoolClosed));
        }
        // A file gone is refused by the writer, which looks at the file before every group.
        let (job, ran, commit, mut dropped) = job(work);
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

    /// Whether the database file is at its path (readiness, a claim left to write): a
    /// deleted file keeps working through open handles while every write goes nowhere.
    pub(super) fn file_present(&self) -> Result<(), StoreError> {
        identity(&self.path).map(|_| ())
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
        match work(conn, heads) {
            // The value is handed over with the commit's outcome, not as soon as the write
            // ran: its caller waits for the commit anyway, and a value sent at once woke it
            // once for nothing (each wake a switch between threads; 2026-12-07, perf stat:
            // 26 context switches per hook call, the kernel's scheduling a third of its CPU).
            Ok(v) => Ran {
                keep: true,
                reconnect: false,
                // The commit's outcome first: its caller waits on the value, then on the
                // commit, so it wakes once with both in hand.
                deliver: Box::new(move |failed: Option<&StoreError>| {
                    let _ = commit_tx.send(match failed {
                        None => Ok(()),
                        Some(e) => Err(StoreError::CommitFailed(e.to_string())),
                    });
                    let _ = value_tx.send(Ok(v));
                }),
            },
            // A refused write is answered only once its group has ended: refused for a key
            // another write of the group took (a second pending draft, a token used twice),
            // its caller looks for that row next, and finds it only once the group is
            // committed. Answered at once, it read too early, found nothing and tried again
            // into the same key (a 503 under twelve concurrent `$apply`s).
            Err(e) => {
                let reconnect = e.is_unavailable();
                Ran {
                    keep: false,
                    reconnect,
                    // Refused in a group whose commit then failed: the row it was refused for
                    // is gone too, so it is told what the others are (retry later).
                    deliver: Box::new(move |failed: Option<&StoreError>| {
                        let _ = value_tx.send(Err(match failed {
                            Some(f) => StoreError::CommitFailed(f.to_string()),
                            None => e,
                        }));
                    }),
                }
            }
        }
    });
    let (dropped, dropped_rx) = tokio::sync::oneshot::channel();
    (
        Job { run, dropped },
        value_rx,
        Commit(commit_rx),
        dropped_rx,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nothing(_: &Connection, _: &mut ChainHeads) -> Result<(), StoreError> {
        Ok(())
    }

    fn panics(_: &Connection, _: &mut ChainHeads) -> Result<(), StoreError> {
        panic!("a write that panics")
    }

    /// A write is answered `Overloaded` when the writer dropped it because the file's write
    /// lock was held elsewhere for its whole wait, and only then: a write dropped later for
    /// another reason (here one that panics) is a failure to store, whatever writes before it
    /// waited for.
    #[tokio::test]
    async fn a_write_is_overloaded_only_when_the_file_stayed_locked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.db");
        let other = Connection::open(&path).unwrap();
        other.execute_batch("PRAGMA journal_mode = WAL").unwrap();
        let (queue, jobs) = tokio::sync::mpsc::channel(16);
        let file = path.clone();
        std::thread::spawn(move || {
            group_writer(file, None, jobs, None, Duration::from_millis(100))
        });
        let writer = Writer {
            queue,
            path,
            closed: Default::default(),
        };
        // Another process's write lock, held: the writes wait it out, and are load, those
        // queued behind the first as well.
        other.execute_batch("BEGIN IMMEDIATE").unwrap();
        let waited = futures_util::future::join_all((0..3).map(|_| writer.enqueue(nothing))).await;
        for w in waited {
            let w = w.unwrap_err();
            assert!(matches!(w, StoreError::Overloaded(_)), "{w:?}");
        }
        other.execute_batch("ROLLBACK").unwrap();
        writer.enqueue(nothing).await.unwrap();
        let lost = writer.enqueue(panics).await.unwrap_err();
        assert!(matches!(lost, StoreError::CommitFailed(_)), "{lost:?}");
        writer.enqueue(nothing).await.unwrap();
    }
}
