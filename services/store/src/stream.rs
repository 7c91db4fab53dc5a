//! A stream fed by a task through a bounded channel: rows flow to the consumer as they are
//! read, and memory holds at most the channel's capacity.

use std::future::Future;

use futures_util::stream::{Stream, StreamExt};
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

/// Inside an `async_stream` task: each row of `rows` mapped by `map` and sent on, until the
/// rows end or the consumer has gone (a closed channel: nothing more is read).
pub(crate) async fn forward<R, T>(
    mut rows: impl Stream<Item = Result<R, sqlx::Error>> + Unpin,
    tx: &mpsc::Sender<Result<T, StoreError>>,
    map: impl Fn(&R) -> Result<T, StoreError>,
) {
    while let Some(row) = rows.next().await {
        let item = row.map_err(StoreError::from).and_then(|r| map(&r));
        if tx.send(item).await.is_err() {
            break;
        }
    }
}
