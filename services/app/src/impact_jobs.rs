//! The impact report signers read, computed once per candidate (its file content), version in
//! force and clinic, as a background job, and kept with its body: the impact page shows the
//! kept report, and a sign-off names it. The page used to decide every stored decision again on
//! each view (about 0.07 ms each: 70 s per view at a million decisions, docs/benchmarks.md).
//!
//! A job's progress lives in this process only (a count of decisions read); its result is in
//! the store, so any replica shows it once done. A replica that dies mid-job leaves nothing: the
//! next view starts the job again.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use stride_store::Store;
use time::OffsetDateTime;

use crate::catalog::Catalog;
use crate::governance::{keep_report, GovernanceError};
use crate::impact::{report, Candidate, Change, ImpactError, Scope, Summary};
use crate::pins::Pins;

/// Changed decisions kept with a report (the summary counts them all; `stride rules impact`
/// lists every one).
pub const LISTED: usize = 200;

/// Decisions read between two progress updates.
const PROGRESS_EVERY: u64 = 500;

/// A report as kept and shown.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Kept {
    pub summary: Summary,
    /// The first `LISTED` changed decisions, in the report's order.
    pub changes: Vec<Change>,
    /// When it was computed.
    #[serde(skip, default = "OffsetDateTime::now_utc")]
    pub computed_at: OffsetDateTime,
}

/// What the impact page can show of a report now.
#[derive(Debug)]
pub enum View {
    Ready(Kept),
    /// Being computed: decisions read so far, since when.
    Running {
        read: u64,
        since: OffsetDateTime,
    },
    Failed(String),
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    guideline: String,
    version: String,
    content_hash: String,
    in_force: String,
    tenant: String,
}

#[derive(Debug)]
struct Running {
    read: AtomicU64,
    since: OffsetDateTime,
    done: AtomicBool,
    failed: Mutex<Option<String>>,
}

/// The jobs running in this process.
#[derive(Debug, Default)]
pub struct Jobs {
    running: Mutex<HashMap<Key, Arc<Running>>>,
}

impl Jobs {
    /// The report of `candidate` for `tenant` against the version in force for it: the kept
    /// one, or the job computing it (started if none runs, or when `again`). Waits up to
    /// `wait` for a job it starts, so a small clinic's page shows the report at once.
    #[allow(clippy::too_many_arguments)]
    pub async fn view(
        &self,
        store: Arc<dyn Store>,
        catalog: Arc<Catalog>,
        pins: Arc<Pins>,
        tenant: &str,
        candidate: &Candidate,
        again: bool,
        wait: Duration,
    ) -> Result<View, GovernanceError> {
        let rs = catalog
            .get(&candidate.guideline, &candidate.version)
            .ok_or(GovernanceError::UnknownVersion)?;
        let in_force = pins
            .in_force_for_tenant(&catalog, &candidate.guideline, tenant)
            .map(|(rs, _)| rs.doc.version.to_string())
            .unwrap_or_default();
        let key = Key {
            guideline: candidate.guideline.clone(),
            version: candidate.version.to_string(),
            content_hash: rs.content_hash.clone(),
            in_force,
            tenant: tenant.to_owned(),
        };
        if !again {
            if let Some(kept) = kept(store.as_ref(), &key).await? {
                return Ok(View::Ready(kept));
            }
        }
        let job = {
            let mut running = self.running.lock().expect("jobs lock");
            match running.get(&key) {
                Some(job) => job.clone(),
                None => {
                    let job = Arc::new(Running {
                        read: AtomicU64::new(0),
                        since: OffsetDateTime::now_utc(),
                        done: AtomicBool::new(false),
                        failed: Mutex::new(None),
                    });
                    running.insert(key.clone(), job.clone());
                    start(
                        store.clone(),
                        catalog,
                        pins,
                        candidate.clone(),
                        key.clone(),
                        job.clone(),
                    );
                    job
                }
            }
        };
        let deadline = tokio::time::Instant::now() + wait;
        while !job.done.load(Ordering::Acquire) && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        if job.done.load(Ordering::Acquire) {
            self.running.lock().expect("jobs lock").remove(&key);
            if let Some(e) = job.failed.lock().expect("job lock").clone() {
                return Ok(View::Failed(e));
            }
            if let Some(kept) = kept(store.as_ref(), &key).await? {
                return Ok(View::Ready(kept));
            }
        }
        Ok(View::Running {
            read: job.read.load(Ordering::Relaxed),
            since: job.since,
        })
    }
}

async fn kept(store: &dyn Store, key: &Key) -> Result<Option<Kept>, GovernanceError> {
    let row = store
        .latest_impact_report(
            &key.guideline,
            &key.version,
            &key.content_hash,
            &key.in_force,
            &key.tenant,
        )
        .await?;
    Ok(row.and_then(|r| {
        let mut kept: Kept = serde_json::from_str(r.report.as_deref()?).ok()?;
        kept.computed_at = r.computed_at;
        Some(kept)
    }))
}

/// Compute the report in the background and keep it with its body.
fn start(
    store: Arc<dyn Store>,
    catalog: Arc<Catalog>,
    pins: Arc<Pins>,
    candidate: Candidate,
    key: Key,
    job: Arc<Running>,
) {
    tokio::spawn(async move {
        let scope = Scope {
            candidate: candidate.clone(),
            since_us: None,
            tenant: Some(key.tenant.clone()),
        };
        let mut changes: Vec<Change> = Vec::new();
        let result = report(
            store.as_ref(),
            &catalog,
            &scope,
            |c| {
                if changes.len() < LISTED {
                    changes.push(c.clone());
                }
            },
            PROGRESS_EVERY,
            |n| job.read.store(n, Ordering::Relaxed),
        )
        .await;
        let outcome = match result {
            Ok(summary) => {
                let body = Kept {
                    summary: summary.clone(),
                    changes,
                    computed_at: OffsetDateTime::now_utc(),
                };
                let body = serde_json::to_string(&body).ok();
                keep_report(
                    store.as_ref(),
                    &catalog,
                    &pins,
                    &key.tenant,
                    &candidate,
                    &summary,
                    body,
                )
                .await
                .map_err(|e| e.to_string())
            }
            Err(ImpactError::UnknownCandidate(c)) => {
                Err(format!("{c} is not a loaded rule-set version"))
            }
            Err(e) => Err(e.to_string()),
        };
        if let Err(e) = outcome {
            tracing::warn!(error = %e, "an impact report could not be computed");
            *job.failed.lock().expect("job lock") = Some(e);
        }
        job.done.store(true, Ordering::Release);
    });
}
