//! Admission of hook calls under load: a fixed number are processed at once, a bounded number
//! wait for a slot, and the rest are refused at once. An unbounded wait would hold every
//! caller's body in memory and answer all of them late; a full queue answers 503 in
//! microseconds, so the EHR can retry elsewhere within its own budget.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use stride_store::TenantId;

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
    /// The caller's tenant already has its share of calls in flight.
    TenantShare,
}

impl Refused {
    pub fn as_str(self) -> &'static str {
        match self {
            Refused::QueueFull => "queue_full",
            Refused::TimedOut => "queue_timeout",
            Refused::TenantShare => "tenant_share",
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

    /// A processing slot for a hook call, given back while the call waits on the network.
    pub async fn admit(&self) -> Result<Slot<'_>, Refused> {
        Ok(Slot {
            gate: self,
            permit: Some(self.enter().await?),
        })
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

/// A hook call's slot. Waiting on an EHR's FHIR server is no processing: a silent server
/// named by one clinic's calls must not hold the slots every other clinic's calls need.
pub struct Slot<'a> {
    gate: &'a Admission,
    permit: Option<OwnedSemaphorePermit>,
}

impl Slot<'_> {
    /// Run `work` without the slot, then queue for one again like a new call.
    pub async fn outside<T>(&mut self, work: impl Future<Output = T>) -> Result<T, Refused> {
        self.permit = None;
        let out = work.await;
        self.permit = Some(self.gate.enter().await?);
        Ok(out)
    }
}

/// Calls in flight per tenant (from the moment they are authenticated to their answer): one
/// clinic's burst — or its silent FHIR server — takes at most this share of the service.
pub struct TenantShare {
    max: usize,
    in_flight: Mutex<HashMap<TenantId, usize>>,
}

impl TenantShare {
    pub fn new(max: usize) -> Self {
        TenantShare {
            max,
            in_flight: Mutex::new(HashMap::new()),
        }
    }

    /// A place among the tenant's calls, or `TenantShare` at once when they are all taken.
    pub fn enter(&self, tenant: &TenantId) -> Result<Share<'_>, Refused> {
        let mut map = self.in_flight.lock().unwrap_or_else(|p| p.into_inner());
        let n = map.entry(tenant.to_owned()).or_insert(0);
        if *n >= self.max {
            return Err(Refused::TenantShare);
        }
        *n += 1;
        Ok(Share {
            of: self,
            tenant: tenant.to_owned(),
        })
    }
}

pub struct Share<'a> {
    of: &'a TenantShare,
    tenant: TenantId,
}

impl Drop for Share<'_> {
    fn drop(&mut self) {
        let mut map = self.of.in_flight.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = map.get_mut(&self.tenant) {
            *n -= 1;
            if *n == 0 {
                map.remove(&self.tenant);
            }
        }
    }
}

/// At most `limit` starts per client per minute (a fixed window per client), for what an
/// anonymous caller can make Stride store: sign-in starts each write a pending sign-in.
pub struct PerClient {
    limit: u32,
    window: Duration,
    seen: Mutex<HashMap<std::net::IpAddr, (std::time::Instant, u32)>>,
}

/// Clients remembered at once; past it, windows that ended are forgotten first.
const CLIENTS: usize = 10_000;

impl PerClient {
    pub fn per_minute(limit: u32) -> Self {
        PerClient {
            limit,
            window: Duration::from_secs(60),
            seen: Mutex::new(HashMap::new()),
        }
    }

    /// Whether `client` may start one more now.
    pub fn allow(&self, client: std::net::IpAddr) -> bool {
        let now = std::time::Instant::now();
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        if seen.len() >= CLIENTS {
            seen.retain(|_, (start, _)| now.duration_since(*start) < self.window);
            if seen.len() >= CLIENTS {
                // Every remembered client is active: an address flood; refuse newcomers.
                return seen.contains_key(&client) && self.count(&mut seen, client, now);
            }
        }
        self.count(&mut seen, client, now)
    }

    fn count(
        &self,
        seen: &mut HashMap<std::net::IpAddr, (std::time::Instant, u32)>,
        client: std::net::IpAddr,
        now: std::time::Instant,
    ) -> bool {
        let (start, n) = seen.entry(client).or_insert((now, 0));
        if now.duration_since(*start) >= self.window {
            *start = now;
            *n = 0;
        }
        if *n >= self.limit {
            return false;
        }
        *n += 1;
        true
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
    async fn a_slot_is_free_while_its_call_waits_outside() {
        let gate = Admission::new(1, 0, Duration::from_secs(60));
        let mut slot = gate.admit().await.unwrap();
        let other = slot
            .outside(async { gate.enter().await.map(drop) })
            .await
            .unwrap();
        assert_eq!(other, Ok(()), "another call was processed meanwhile");
        assert_eq!(
            gate.enter().await.unwrap_err(),
            Refused::QueueFull,
            "held again"
        );
        drop(slot);
        assert!(gate.enter().await.is_ok());
    }

    #[test]
    fn a_tenant_gets_its_share_and_no_more() {
        let (a, b) = (TenantId::parse("a").unwrap(), TenantId::parse("b").unwrap());
        let share = TenantShare::new(2);
        let a1 = share.enter(&a).unwrap();
        let _a2 = share.enter(&a).unwrap();
        assert_eq!(share.enter(&a).err(), Some(Refused::TenantShare));
        let _b = share.enter(&b).expect("another tenant is not affected");
        drop(a1);
        assert!(share.enter(&a).is_ok());
        drop(_a2);
        drop(_b);
        assert!(
            share.in_flight.lock().unwrap().is_empty(),
            "no tenant is kept"
        );
    }

    #[test]
    fn each_client_gets_its_starts_per_window() {
        let limit = PerClient::per_minute(2);
        let (a, b) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        assert!(limit.allow(a) && limit.allow(a));
        assert!(!limit.allow(a), "the third in a minute is refused");
        assert!(limit.allow(b), "another client is not");
        let window_over = std::time::Instant::now() - Duration::from_secs(61);
        limit.seen.lock().unwrap().get_mut(&a).unwrap().0 = window_over;
        assert!(limit.allow(a), "a new window");
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
