//! Token-id claims on SQLite without a write of their own. A claim is decided at once against
//! the claims of calls in flight (held here, in memory) and the ids already written (one
//! read); its row is then written in the transaction of the call's hook record, so a call that
//! is answered has its claim durable with its decision, and no call waits for a group commit
//! before it is evaluated. A claim that no record carries is written on its own: when asked
//! (`Deferred::write`) or, dropped unwritten (a call refused after its token was accepted), in
//! the background; until its row is committed it stays held, so a replay is refused meanwhile.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::writer::{job, Writer};
use crate::StoreError;

/// Held claims: (issuer, jti) → when the token expires (Unix seconds). Small: one per call in
/// flight, plus any whose write failed, kept until their token expires.
#[derive(Default)]
pub(crate) struct Held(Mutex<HashMap<(String, String), i64>>);

/// Above this many held claims, expired ones are dropped when the next is taken.
const SWEEP_ABOVE: usize = 1024;

impl Held {
    /// Take `key` for one call; `false` if a call in flight holds it already.
    pub(crate) fn take(&self, key: &(String, String), expires_at: i64, now: i64) -> bool {
        let mut held = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if held.len() >= SWEEP_ABOVE {
            held.retain(|_, until| *until >= now);
        }
        if held.contains_key(key) {
            return false;
        }
        held.insert(key.clone(), expires_at);
        true
    }

    /// Let `key` go: its row is committed (a replay now finds it in the database), or the call
    /// never had it.
    pub(crate) fn release(&self, key: &(String, String)) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).remove(key);
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.0.lock().unwrap().len()
    }
}

/// The row a fresh claim still has to write.
pub(crate) struct Deferred {
    key: Option<(String, String)>,
    expires_at: i64,
    held: Arc<Held>,
    writer: Writer,
}

pub(crate) const INSERT_SEEN: &str =
    "INSERT INTO seen_jti (issuer, jti, expires_at) VALUES (?, ?, ?)";

impl Deferred {
    pub(crate) fn new(
        key: (String, String),
        expires_at: i64,
        held: Arc<Held>,
        writer: Writer,
    ) -> Self {
        Deferred {
            key: Some(key),
            expires_at,
            held,
            writer,
        }
    }

    /// The row, for a transaction that writes it with other rows (`INSERT_SEEN`).
    pub(crate) fn row(&self) -> Option<(String, String, i64)> {
        let (issuer, jti) = self.key.clone()?;
        Some((issuer, jti, self.expires_at))
    }

    /// Its row was committed with another write.
    pub(crate) fn written(mut self) {
        if let Some(key) = self.key.take() {
            self.held.release(&key);
        }
    }

    /// Write the row on its own and wait until it is durable. Should that fail, the claim
    /// stays held until its token expires.
    pub(crate) async fn write(mut self) -> Result<(), StoreError> {
        let Some(key) = self.key.take() else {
            return Ok(());
        };
        let (issuer, jti) = key.clone();
        let expires_at = self.expires_at;
        self.writer
            .enqueue(move |c, _| insert(c, &issuer, &jti, expires_at))
            .await?;
        self.held.release(&key);
        Ok(())
    }
}

fn insert(
    c: &rusqlite::Connection,
    issuer: &str,
    jti: &str,
    expires_at: i64,
) -> Result<(), StoreError> {
    // `OR IGNORE`: written twice (a record that committed after all) is still one claim.
    c.prepare_cached("INSERT OR IGNORE INTO seen_jti (issuer, jti, expires_at) VALUES (?, ?, ?)")
        .and_then(|mut q| q.execute(rusqlite::params![issuer, jti, expires_at]))
        .map_err(super::engine::error)?;
    Ok(())
}

impl crate::PendingClaim for Deferred {
    fn write(self: Box<Self>) -> futures_util::future::BoxFuture<'static, Result<(), StoreError>> {
        Box::pin((*self).write())
    }

    fn into_any(self: Box<Self>) -> Box<dyn std::any::Any + Send> {
        self
    }
}

impl Drop for Deferred {
    /// A claim no record carried (the call was refused after its token was accepted) is
    /// written in the background. Queued here, before anything later from this caller, so a
    /// write the caller makes next commits in the same group or after it.
    fn drop(&mut self) {
        let Some(key) = self.key.take() else { return };
        if self.writer.file_present().is_err() {
            return;
        }
        let (issuer, jti) = key.clone();
        let expires_at = self.expires_at;
        let (job, _ran, commit, _dropped) = job(move |c, _| insert(c, &issuer, &jti, expires_at));
        let held = self.held.clone();
        let settle = async move {
            if commit.wait().await.is_ok() {
                held.release(&key);
            }
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        match self.writer.queue.try_send(job) {
            Ok(()) => {
                runtime.spawn(settle);
            }
            Err(tokio::sync::mpsc::error::TrySendError::Full(job)) => {
                let queue = self.writer.queue.clone();
                runtime.spawn(async move {
                    if queue.send(job).await.is_ok() {
                        settle.await;
                    }
                });
            }
            Err(tokio::sync::mpsc::error::TrySendError::Closed(_)) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_held_claim_refuses_a_second_taker_until_released() {
        let held = Held::default();
        let key = ("iss".to_owned(), "j".to_owned());
        assert!(held.take(&key, 100, 0));
        assert!(
            !held.take(&key, 100, 0),
            "a replay while the first call is in flight"
        );
        held.release(&key);
        assert!(held.take(&key, 100, 0));
    }

    #[test]
    fn expired_claims_are_swept_once_many_are_held() {
        let held = Held::default();
        for i in 0..SWEEP_ABOVE {
            assert!(held.take(&("iss".into(), format!("old-{i}")), 10, 0));
        }
        assert!(held.take(&("iss".into(), "kept".into()), 1_000, 0));
        assert_eq!(held.len(), SWEEP_ABOVE + 1, "nothing expired yet");
        // Later: the old tokens have expired, the sweep drops them and keeps the live one.
        assert!(held.take(&("iss".into(), "new".into()), 1_000, 500));
        assert_eq!(held.len(), 2);
        assert!(!held.take(&("iss".into(), "kept".into()), 1_000, 500));
    }
}
