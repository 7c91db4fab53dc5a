//! Hook records written in groups: one transaction, one statement for the plans, cards and
//! answers and one for the audit entries of every record waiting, however many there are, and
//! one chain-head read per tenant. Per record,
//! the audit chain's advisory lock was held across four round trips, so appends queued behind
//! it and throughput stopped at 600–750 calls/s with the CPU partly idle. Each record is still
//! acknowledged only after the commit that holds it.

use sqlx::postgres::PgPool;
use tokio::sync::{mpsc, oneshot};

use crate::{HookRecord, StoreError};

/// Records in one transaction at most: the default number of hook calls processed at once
/// (each waits here holding its processing slot), so a group is only split when that number is
/// raised. Limits of 8 and 64 made no difference to peak RSS beyond the host's noise.
const GROUP_MAX: usize = 16;

pub(crate) struct Job {
    pub record: HookRecord,
    pub done: oneshot::Sender<Result<(), StoreError>>,
}

impl Job {
    fn answer(self, result: Result<(), StoreError>) {
        let _ = self.done.send(result);
    }
}

type Sealer = Option<std::sync::Arc<crate::seal::Sealer>>;

pub(crate) fn spawn(pool: PgPool, sealer: Sealer) -> mpsc::Sender<Job> {
    let (tx, rx) = mpsc::channel(1024);
    tokio::spawn(writer(pool, rx, sealer));
    tx
}

async fn writer(pool: PgPool, mut queue: mpsc::Receiver<Job>, sealer: Sealer) {
    loop {
        // Waits for one record, then takes every other one already queued (up to GROUP_MAX).
        let mut jobs = Vec::with_capacity(GROUP_MAX);
        if queue.recv_many(&mut jobs, GROUP_MAX).await == 0 {
            break;
        }
        // A caller that has gone (its client hung up) was never answered: nothing to store.
        jobs.retain(|j| !j.done.is_closed());
        if jobs.is_empty() {
            continue;
        }
        let records: Vec<&HookRecord> = jobs.iter().map(|j| &j.record).collect();
        match write(&pool, &records, sealer.as_deref()).await {
            Ok(()) => jobs.into_iter().for_each(|j| j.answer(Ok(()))),
            Err(e) if jobs.len() == 1 => {
                if let Some(j) = jobs.pop() {
                    j.answer(Err(e));
                }
            }
            // Busy, not down: each caller is told so (503 `overloaded`), and none of them
            // marks the database down.
            Err(StoreError::Overloaded(why)) => {
                for j in jobs {
                    j.answer(Err(StoreError::Overloaded(why)));
                }
            }
            Err(e) if e.is_unavailable() => {
                tracing::warn!(error = %e, writes = jobs.len(), "a group of hook records was not stored");
                let said = e.to_string();
                for j in jobs {
                    j.answer(Err(StoreError::CommitFailed(said.clone())));
                }
            }
            // One record the database refuses (a duplicate id, say) must not take the others
            // with it: each is tried again alone and answered for itself.
            Err(_) => {
                for j in jobs {
                    let r = write(&pool, &[&j.record], sealer.as_deref()).await;
                    j.answer(r);
                }
            }
        }
    }
}

async fn write(
    pool: &PgPool,
    records: &[&HookRecord],
    sealer: Option<&crate::seal::Sealer>,
) -> Result<(), StoreError> {
    let mut tx = pool.begin().await?;
    let plans: Vec<_> = records.iter().filter_map(|r| r.careplan.as_ref()).collect();
    let cards: Vec<_> = records.iter().flat_map(|r| &r.cards).collect();
    let answers: Vec<_> = records.iter().filter_map(|r| r.answer.as_ref()).collect();
    super::insert_records(&mut tx, &plans, &cards, &answers).await?;
    let audits: Vec<_> = records.iter().map(|r| &r.audit).collect();
    super::append_all(&mut tx, &audits, sealer).await?;
    tx.commit().await?;
    Ok(())
}
