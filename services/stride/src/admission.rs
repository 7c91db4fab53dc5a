//! Admission of hook calls under load: a fixed number are processed at once, a bounded number
//! wait for a slot, and the rest are refused at once. An unbounded wait would hold every
//! caller's body in memory and answer all of them late; a full queue answers 503 in
//! microseconds, so the EHR can retry elsewhere within its own budget.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

pub struct Admission {
    slots: Arc<Semaphore>,
    waiting: AtomicUsize,
    max_waiting: usize,
    timeout: Duration,
}

/// Why a call was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// As many calls were already waiting as the queue holds.
    QueueFull,
    /// No slot came free within the queue timeout.
    TimedOut,
}

impl Refused {
    pub fn as_str(self) -> &'static str {
        match self {
            Refused::QueueFull => "queue_full",
            Refused::TimedOut => "queue_timeout",
        }
    }
}

impl Admission {
    pub fn new(slots: usize, max_waiting: usize, timeout: Duration) -> Self {
        Admission {
            slots: Arc::new(Semaphore::new(slots)),
            waiting: AtomicUsize::new(0),
            max_waiting,
            timeout,
        }
    }

    /// A processing slot, held until the permit drops.
    pub async fn enter(&self) -> Result<OwnedSemaphorePermit, Refused> {
        if let Ok(permit) = self.slots.clone().try_acquire_owned() {
            return Ok(permit);
        }
        let queued = Queued::join(&self.waiting, self.max_waiting).ok_or(Refused::QueueFull)?;
        let permit = tokio::time::timeout(self.timeout, self.slots.clone().acquire_owned()).await;
        drop(queued);
        match permit {
            Ok(Ok(permit)) => Ok(permit),
            _ => Err(Refused::TimedOut),
        }
    }
}

/// A place in the queue, given back however the wait ends (slot, timeout or a dropped call).
struct Queued<'a>(&'a AtomicUsize);

impl<'a> Queued<'a> {
    fn join(waiting: &'a AtomicUsize, max: usize) -> Option<Self> {
        waiting
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()
            .map(|_| Queued(waiting))
    }
}

impl Drop for Queued<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_full_queue_refuses_at_once_and_a_freed_place_is_reused() {
        let gate = Arc::new(Admission::new(1, 1, Duration::from_secs(60)));
        let held = gate.enter().await.unwrap();
        let waiter = {
            let gate = gate.clone();
            tokio::spawn(async move { gate.enter().await.map(drop) })
        };
        while gate.waiting.load(Ordering::Acquire) == 0 {
            tokio::task::yield_now().await;
        }
        // The one place is taken: refused without waiting out the 60 s timeout.
        assert_eq!(gate.enter().await.unwrap_err(), Refused::QueueFull);
        drop(held);
        assert_eq!(waiter.await.unwrap(), Ok(()));
        assert_eq!(gate.waiting.load(Ordering::Acquire), 0);
        assert!(gate.enter().await.is_ok());
    }

    #[tokio::test]
    async fn a_wait_longer_than_the_timeout_is_refused_and_leaves_the_queue() {
        let gate = Admission::new(1, 4, Duration::from_millis(20));
        let _held = gate.enter().await.unwrap();
        assert_eq!(gate.enter().await.unwrap_err(), Refused::TimedOut);
        assert_eq!(gate.waiting.load(Ordering::Acquire), 0);
    }

    #[tokio::test]
    async fn without_a_queue_a_busy_gate_refuses() {
        let gate = Admission::new(1, 0, Duration::from_secs(60));
        let held = gate.enter().await.unwrap();
        assert_eq!(gate.enter().await.unwrap_err(), Refused::QueueFull);
        drop(held);
        assert!(gate.enter().await.is_ok());
    }
}
