//! The impact report as staff read it: computed once per candidate (its file content), scope
//! and version in force, as a background job, and kept with its body. The page shows the kept
//! report or the job's progress; a sign-off names a kept report. The page used to decide every
//! stored decision again on each view (about 0.07 ms each: 70 s per view at a million
//! decisions, docs/benchmarks.md), and a sign-off naming a report nobody kept did the same
//! while its caller waited.
//!
//! A clinic's whole log is the report signers read: it is kept in the store, so any replica
//! shows it. A report over part of a log (`since`) or over every clinic is one nobody signs
//! off on: the last few are kept in this process only. A job's progress (decisions read) lives
//! in this process too; a replica that dies mid-job leaves nothing, and the next view starts
//! the job again.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use stride_store::TenantId;

use serde::{Deserialize, Serialize};
use serde_json::Value as Json;
use stride_guideline::decision::Decision;
use stride_store::audit::Action;
use stride_store::{AuditEntry, Store};
use time::OffsetDateTime;

use crate::actor::Actor;
use crate::catalog::Catalog;
use crate::decision_log::LogError;
use crate::governance::{keep_report, GovernanceError};
use crate::impact::{report, Candidate, Change, ImpactError, Scope, Summary};
use crate::pins::Pins;
use crate::replay::Inputs;

/// Changed decisions kept with a report (the summary counts them all; `stride rules impact`
/// lists every one).
pub const LISTED: usize = 200;

/// Reports over part of a log or every clinic kept in this process (the oldest goes first).
const RECENT: usize = 16;

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

/// Which report: a candidate over which decisions.
#[derive(Debug, Clone)]
pub struct Ask {
    pub candidate: Candidate,
    /// The clinic whose decisions are read; `None` for every clinic.
    pub tenant: Option<TenantId>,
    /// Decisions recorded from then on only.
    pub since_us: Option<i64>,
    /// Compute it again, though one is kept (decisions recorded since then count).
    pub again: bool,
}

impl Ask {
    /// A clinic's whole log: the report its staff sign off on.
    pub fn signable(&self) -> bool {
        self.tenant.is_some() && self.since_us.is_none()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    guideline: String,
    version: String,
    content_hash: String,
    /// The version in force for the clinic when the report is a signer's; empty otherwise
    /// (every clinic has its own).
    in_force: String,
    tenant: Option<TenantId>,
    since_us: Option<i64>,
}

impl Key {
    fn signable(&self) -> bool {
        self.tenant.is_some() && self.since_us.is_none()
    }
}

#[derive(Debug)]
struct Running {
    read: AtomicU64,
    since: OffsetDateTime,
    done: AtomicBool,
    failed: Mutex<Option<String>>,
}

/// The jobs running in this process, and the reports it keeps itself.
pub struct Jobs {
    store: Arc<dyn Store>,
    catalog: Arc<Catalog>,
    pins: Arc<Pins>,
    running: Mutex<HashMap<Key, Arc<Running>>>,
    recent: Arc<Mutex<VecDeque<(Key, Kept)>>>,
}

impl std::fmt::Debug for Jobs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Jobs").finish_non_exhaustive()
    }
}

impl Jobs {
    pub fn new(store: Arc<dyn Store>, catalog: Arc<Catalog>, pins: Arc<Pins>) -> Jobs {
        Jobs {
            store,
            catalog,
            pins,
            running: Mutex::default(),
            recent: Arc::default(),
        }
    }

    pub fn store(&self) -> &dyn Store {
        self.store.as_ref()
    }

    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    pub fn pins(&self) -> &Pins {
        &self.pins
    }

    fn key(&self, ask: &Ask) -> Result<Key, GovernanceError> {
        let c = &ask.candidate;
        let rs = self
            .catalog
            .get(&c.guideline, &c.version)
            .ok_or(GovernanceError::UnknownVersion)?;
        let in_force = match (&ask.tenant, ask.since_us) {
            (Some(tenant), None) => self
                .pins
                .version_in_force(&self.catalog, &c.guideline, tenant),
            _ => String::new(),
        };
        Ok(Key {
            guideline: c.guideline.clone(),
            version: c.version.to_string(),
            content_hash: rs.content_hash.clone(),
            in_force,
            tenant: ask.tenant.clone(),
            since_us: ask.since_us,
        })
    }

    /// The report `ask` names: the kept one, or the job computing it (started if none runs,
    /// or when `again`). Waits up to `wait` for the job, so a small clinic's page shows the
    /// report at once.
    pub async fn view(&self, ask: &Ask, wait: Duration) -> Result<View, GovernanceError> {
        let key = self.key(ask)?;
        // A job still running for this report is what to show (its progress), even when an
        // older report is kept: "Show it when done" after "Compute it again" must not show the
        // old one as if it were new.
        let running = {
            let running = self.running.lock().expect("jobs lock");
            running
                .get(&key)
                .filter(|job| !job.done.load(Ordering::Acquire))
                .cloned()
        };
        if running.is_none() && !ask.again {
            if let Some(kept) = self.kept(&key).await? {
                return Ok(View::Ready(kept));
            }
        }
        let job = match running {
            Some(job) => job,
            None => {
                let mut running = self.running.lock().expect("jobs lock");
                match running.get(&key) {
                    // Another view started one meanwhile.
                    Some(job) if !job.done.load(Ordering::Acquire) => job.clone(),
                    // None, or one that ended unseen (its report kept, or its failure stale):
                    // a new one computes the report as the log is now.
                    _ => {
                        let job = Arc::new(Running {
                            read: AtomicU64::new(0),
                            since: OffsetDateTime::now_utc(),
                            done: AtomicBool::new(false),
                            failed: Mutex::new(None),
                        });
                        running.insert(key.clone(), job.clone());
                        self.start(ask.candidate.clone(), key.clone(), job.clone());
                        job
                    }
                }
            }
        };
        let deadline = tokio::time::Instant::now() + wait;
        while !job.done.load(Ordering::Acquire) && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        if job.done.load(Ordering::Acquire) {
            {
                // This job only: a newer one for the same report stays.
                let mut running = self.running.lock().expect("jobs lock");
                if running.get(&key).is_some_and(|j| Arc::ptr_eq(j, &job)) {
                    running.remove(&key);
                }
            }
            if let Some(e) = job.failed.lock().expect("job lock").clone() {
                return Ok(View::Failed(e));
            }
            if let Some(kept) = self.kept(&key).await? {
                return Ok(View::Ready(kept));
            }
            return Ok(View::Failed(
                "the report was computed but could not be read back".into(),
            ));
        }
        Ok(View::Running {
            read: job.read.load(Ordering::Relaxed),
            since: job.since,
        })
    }

    async fn kept(&self, key: &Key) -> Result<Option<Kept>, GovernanceError> {
        let Some(tenant) = key.tenant.as_ref().filter(|_| key.signable()) else {
            let recent = self.recent.lock().expect("recent lock");
            return Ok(recent
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, kept)| kept.clone()));
        };
        let row = self
            .store
            .latest_impact_report(
                &key.guideline,
                &key.version,
                &key.content_hash,
                &key.in_force,
                tenant,
            )
            .await?;
        Ok(row.and_then(|r| {
            let mut kept: Kept = serde_json::from_str(r.report.as_deref()?).ok()?;
            kept.computed_at = r.computed_at;
            Some(kept)
        }))
    }

    /// Compute the report in the background and keep it with its body.
    fn start(&self, candidate: Candidate, key: Key, job: Arc<Running>) {
        let (store, catalog, pins) = (self.store.clone(), self.catalog.clone(), self.pins.clone());
        let recent = self.recent.clone();
        tokio::spawn(async move {
            let scope = Scope {
                candidate: candidate.clone(),
                since_us: key.since_us,
                tenant: key.tenant.clone(),
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
                    let kept = Kept {
                        summary: summary.clone(),
                        changes,
                        computed_at: OffsetDateTime::now_utc(),
                    };
                    match key.tenant.as_ref().filter(|_| key.signable()) {
                        Some(tenant) => keep_report(
                            store.as_ref(),
                            &catalog,
                            &pins,
                            tenant,
                            &candidate,
                            &summary,
                            serde_json::to_string(&kept).ok(),
                        )
                        .await
                        .map_err(|e| e.to_string()),
                        None => {
                            let mut recent = recent.lock().expect("recent lock");
                            recent.retain(|(k, _)| k != &key);
                            if recent.len() == RECENT {
                                recent.pop_front();
                            }
                            recent.push_back((key.clone(), kept));
                            Ok(())
                        }
                    }
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
}

/// Show `actor` the report `ask` names (`audit-read`, with what was `asked`): kept, or being
/// computed for at most `wait`.
pub async fn read(
    jobs: &Jobs,
    actor: &Actor,
    ask: &Ask,
    asked: Json,
    wait: Duration,
) -> Result<View, GovernanceError> {
    // A clinic's staff read their own clinic's decisions, whatever they asked.
    if let Some(t) = &ask.tenant {
        if !actor.caller.may_see(t) {
            return Err(GovernanceError::Forbidden);
        }
    } else if actor.caller.tenant_scope().is_some() {
        return Err(GovernanceError::Forbidden);
    }
    jobs.catalog
        .get(&ask.candidate.guideline, &ask.candidate.version)
        .ok_or(GovernanceError::UnknownVersion)?;
    let mut entry = actor.entry(Action::AuditRead, "success");
    entry.details["view"] = serde_json::json!("rules impact");
    entry.details["query"] = asked;
    jobs.store.append_audit(&entry).await?;
    jobs.view(ask, wait).await
}

/// One stored decision as recorded (decided again with its own version) and as the candidate
/// decides it, for its two traces side by side.
#[derive(Debug)]
pub struct Traces {
    pub entry: AuditEntry,
    pub recorded: Decision,
    pub candidate: Decision,
}

#[derive(Debug, thiserror::Error)]
pub enum TracesError {
    #[error(transparent)]
    Log(#[from] LogError),
    #[error("this entry's facts cannot be decided again")]
    Undecidable,
}

/// The traces of the audit entry `id` (its read recorded, as any read of an entry is).
pub async fn traces(
    jobs: &Jobs,
    actor: &Actor,
    id: &str,
    candidate: &Candidate,
) -> Result<Traces, TracesError> {
    let entry = crate::decision_log::read(jobs.store(), actor, id).await?;
    let inputs = Inputs::of(&entry).map_err(|_| TracesError::Undecidable)?;
    let (_, recorded) = inputs
        .decide(&jobs.catalog, None)
        .map_err(|_| TracesError::Undecidable)?;
    let (_, candidate) = inputs
        .decide(&jobs.catalog, Some(&candidate.version.to_string()))
        .map_err(|_| TracesError::Undecidable)?;
    Ok(Traces {
        entry,
        recorded,
        candidate,
    })
}
