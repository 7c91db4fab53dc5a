//! A stream fed by a task through a bounded channel: rows flow to the consumer as they are
//! read, and memory holds at most the channel's capacity.

use std::future::Future;

use futures_util::stream::Stream;
use tokio::sync::mpsc;

use crate::StoreError;

pub(crate) fn async_stream<T, F, Fut>(produce: F) -> impl Stream<Item = T>
where
    T: Send + 'static,
    F: FnOnce(mpsc::Sender<T>) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = mpsc::channel(64);
    tokio::spawn(produce(tx));
    futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    })
}

/// Rows per page of a paged read.
pub(crate) const PAGE: i64 = 500;

/// Where a page of the decision log ended, in the order it is read.
#[derive(Clone, Debug)]
pub(crate) struct After {
    pub recorded_us: i64,
    pub tenant: crate::TenantId,
    pub seq: i64,
    /// The last tie-breaker: a chain forked by a bug (two entries with one `seq`) is read
    /// whole, so that verification sees the fork.
    pub id: uuid::Uuid,
}

/// Inside an `async_stream` task: read up to `limit` rows a page at a time, each page one short
/// statement that starts after the key of the last row of the one before (`K`, the read's sort
/// key), and send them on until the rows end or the consumer has gone. One statement held open for a whole read was cancelled by
/// PostgreSQL's statement timeout (5 s by default) whenever its reader was slower than that:
/// an impact report of 100 000 decisions (about 20 s) failed on every try (docs/benchmarks.md).
pub(crate) async fn paged<K: Clone, T, Fut>(
    tx: &mpsc::Sender<Result<T, StoreError>>,
    limit: i64,
    page: impl Fn(Option<K>, i64) -> Fut,
) where
    Fut: Future<Output = Result<Vec<(K, Result<T, StoreError>)>, StoreError>>,
{
    let (mut after, mut left) = (None, limit);
    while left > 0 {
        let n = PAGE.min(left);
        let rows = match page(after.clone(), n).await {
            Ok(rows) => rows,
            Err(e) => {
                let _ = tx.send(Err(e)).await;
                return;
            }
        };
        let got = rows.len() as i64;
        for (key, row) in rows {
            after = Some(key);
            if tx.send(row).await.is_err() {
                return;
            }
        }
        if got < n {
            return;
        }
        left -= got;
    }
}
