//! A stream fed by a task through a bounded channel: rows flow to the consumer as they are
//! read, and memory holds at most the channel's capacity.

use std::future::Future;

use futures_util::stream::Stream;
use tokio::sync::mpsc;

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
