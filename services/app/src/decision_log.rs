//! The decision log for auditors: search it, read one entry (with its seal, its chain and its
//! decision made again), replay an entry under another version, and check the chains. Each
//! read is itself recorded, by the `Actor`, with what was asked. The API (`/audit`), the staff
//! pages (`/ui/audit`) and the command line (`stride audit verify`) read the log through here.

use futures_util::StreamExt;
use serde_json::{json, Value as Json};
use stride_store::audit::Action;
use stride_store::seal::{Checkpoint, SealKeys};
use stride_store::{AuditEntry, AuditQuery, Backend, ChainCheck, Store, StoreError};

use crate::actor::Actor;
use crate::catalog::Catalog;
use crate::replay::{Replay, ReplayError};

/// Why an entry could not be shown or replayed.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// No such entry, or one of a tenant the caller may not see (the same answer for both).
    #[error("no audit entry with this id")]
    NotFound,
    #[error(transparent)]
    Replay(ReplayError),
    #[error(transparent)]
    Store(StoreError),
}

impl From<StoreError> for LogError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound => LogError::NotFound,
            other => LogError::Store(other),
        }
    }
}

/// Record a search of the log (`audit-read`, with the patient and what else was `asked`, and
/// the page it was made on), and return the query to stream: the actor's own tenant whatever
/// the query said, unless the actor sees every tenant.
pub async fn search(
    store: &dyn Store,
    actor: &Actor,
    mut query: AuditQuery,
    view: Option<&str>,
    asked: Json,
) -> Result<AuditQuery, StoreError> {
    query.tenant = actor.caller.tenant_scope().cloned();
    let mut entry = actor.entry(Action::AuditRead, "success");
    entry.patient_ref = query.patient_ref.clone();
    if let Some(view) = view {
        entry.details["view"] = json!(view);
    }
    entry.details["query"] = asked;
    store.append_audit(&entry).await?;
    Ok(query)
}

/// The entries a recorded search selects (`search` gave the query), newest first, as they are
/// read.
pub fn entries<'a>(
    store: &'a dyn Store,
    query: &'a AuditQuery,
) -> futures_util::stream::BoxStream<'a, Result<AuditEntry, StoreError>> {
    store.audit_stream(query, false)
}

/// The entry `id`, when the actor may see its tenant (not recorded: the caller records how).
async fn visible(store: &dyn Store, actor: &Actor, id: &str) -> Result<AuditEntry, LogError> {
    let id = uuid::Uuid::parse_str(id).map_err(|_| LogError::NotFound)?;
    let a = store.audit_entry(id).await?;
    if !actor.caller.may_see(&a.entry.tenant) {
        return Err(LogError::NotFound);
    }
    Ok(a)
}

/// The entry recording that `actor` did `action` with the stored entry `a` (its patient, its id).
fn about(actor: &Actor, action: Action, a: &AuditEntry) -> stride_store::NewAuditEntry {
    let mut entry = actor.entry(action, "success");
    entry.patient_ref = a.entry.patient_ref.clone();
    entry.details["entry"] = json!(a.entry.id);
    entry
}

/// One entry, its read recorded (`audit-read`, naming the entry).
pub async fn read(store: &dyn Store, actor: &Actor, id: &str) -> Result<AuditEntry, LogError> {
    let a = visible(store, actor, id).await?;
    store
        .append_audit(&about(actor, Action::AuditRead, &a))
        .await?;
    Ok(a)
}

/// One entry as the staff page shows it.
pub struct Viewed {
    pub entry: AuditEntry,
    /// Whether its content matches its hash and seal, and why not.
    pub sealed: Result<(), &'static str>,
    /// Its tenant's whole chain, when asked for (it reads every entry of the tenant).
    pub chain: Option<ChainCheck>,
    /// The decision made again by the version that made it (none for entries that are not
    /// decisions, or whose version is not loaded).
    pub replayed: Option<Replay>,
}

/// One entry with its seal checked, its decision made again and, with `full_chain`, its
/// tenant's chain checked; the read recorded with what it showed.
pub async fn view(
    store: &dyn Store,
    catalog: &Catalog,
    actor: &Actor,
    id: &str,
    keys: Option<&SealKeys>,
    full_chain: bool,
) -> Result<Viewed, LogError> {
    let a = visible(store, actor, id).await?;
    let sealed = stride_store::audit::sealed(&a);
    let chain = if full_chain {
        let tenant = AuditQuery {
            tenant: Some(a.entry.tenant.clone()),
            ..AuditQuery::default()
        };
        Some(check_chain(store, &tenant, keys, &[]).await?)
    } else {
        None
    };
    let replayed = crate::replay::replay(catalog, &a, None).ok();
    let mut entry = about(actor, Action::AuditRead, &a);
    entry.details["sealed"] = json!(sealed.is_ok());
    if let Some(c) = &chain {
        entry.details["chain"] = json!(if c.broken.is_none() {
            "intact"
        } else {
            "broken"
        });
    }
    store.append_audit(&entry).await?;
    Ok(Viewed {
        entry: a,
        sealed,
        chain,
        replayed,
    })
}

/// The decision of entry `id` made again, by `version` or the one that made it; recorded
/// (`audit-replay`, naming the entry and whether the decision came out the same).
pub async fn replay(
    store: &dyn Store,
    catalog: &Catalog,
    actor: &Actor,
    id: &str,
    version: Option<&str>,
) -> Result<Replay, LogError> {
    let a = visible(store, actor, id).await?;
    let result = crate::replay::replay(catalog, &a, version).map_err(LogError::Replay)?;
    let mut entry = about(actor, Action::AuditReplay, &a);
    entry.details["identical"] = json!(result.identical);
    store.append_audit(&entry).await?;
    Ok(result)
}

/// The chains the actor may see checked, and the check recorded (`audit-verify`, with its
/// result).
pub async fn verify(
    store: &dyn Store,
    actor: &Actor,
    keys: Option<&SealKeys>,
) -> Result<ChainCheck, StoreError> {
    let query = AuditQuery {
        tenant: actor.caller.tenant_scope().cloned(),
        ..AuditQuery::default()
    };
    let check = check_chain(store, &query, keys, &[]).await?;
    let mut entry = actor.entry(Action::AuditVerify, "success");
    entry.details["result"] = report(&check);
    store.append_audit(&entry).await?;
    Ok(check)
}

/// Walk the chains `query` selects: first the retention checkpoints (where chains were cut),
/// then every entry in chain order. `outside` are checkpoints kept outside the database (an
/// anchor file).
pub async fn check_chain(
    store: &dyn Store,
    query: &AuditQuery,
    keys: Option<&SealKeys>,
    outside: &[Checkpoint],
) -> Result<ChainCheck, StoreError> {
    let check = match keys {
        Some(k) => ChainCheck::with_keys(k.clone()),
        None => ChainCheck::default(),
    };
    let mut check = check.retention_runs(store.backend() == Backend::Postgres);
    for cp in outside
        .iter()
        .filter(|cp| query.tenant.as_ref().is_none_or(|t| *t == cp.tenant))
    {
        check.outside_checkpoint(cp);
    }
    let checkpoints = AuditQuery {
        action: Some(stride_store::audit::Action::RetentionCheckpoint),
        ..query.clone()
    };
    // An entry that cannot be read was edited in the database: a broken link, as an entry
    // whose hash no longer matches is, reported if it is the first (the walk goes on, and
    // the check counts no entry after the first broken link).
    let mut rows = store.audit_stream(&checkpoints, true);
    while let Some(row) = rows.next().await {
        match row {
            Ok(a) => check.anchor(&a),
            Err(StoreError::UnreadableEntry(b)) => {
                check.broken.get_or_insert(b);
            }
            Err(e) => return Err(e),
        }
    }
    let mut rows = store.audit_stream(query, true);
    while let Some(row) = rows.next().await {
        match row {
            Ok(a) => check.push(&a),
            Err(StoreError::UnreadableEntry(b)) => {
                check.broken.get_or_insert(b);
            }
            Err(e) => return Err(e),
        }
    }
    check.finish();
    Ok(check)
}

/// A chain check as the API, the command line and the audit entry report it.
pub fn report(check: &ChainCheck) -> Json {
    let mut r = json!({"status": if check.broken.is_none() { "intact" } else { "broken" }, "entries": check.entries, "tenants": check.tenants});
    if check.sealed + check.unsealed > 0 {
        r["sealed"] = json!(check.sealed);
        r["unsealed"] = json!(check.unsealed);
    }
    if check.checkpoints > 0 {
        r["checkpoints"] = json!(check.checkpoints);
    }
    if let Some(b) = &check.broken {
        r["firstBrokenLink"] =
            json!({"tenant": b.tenant, "seq": b.seq, "id": b.id, "reason": b.reason});
    }
    r
}
