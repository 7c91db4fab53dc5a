//! Who asks, and from where. Every use case that reads or changes what the store holds takes
//! an `Actor` and writes its own audit entry with it: the web crate only says who the caller is
//! and which request this is. Before, about twenty routes wrote their entries out by hand
//! (`audit::entry(&req, Action::X, "success", …)`, then `append_audit`), so what an auditor
//! sees depended on each route remembering to write it.

use serde_json::json;
use stride_auth::Caller;
use stride_store::audit::Action;
use stride_store::{NewAuditEntry, TenantId};

/// The tenant an entry is filed under when no caller could be authenticated.
pub const UNAUTHENTICATED: &str = "(unauthenticated)";

/// `UNAUTHENTICATED` as the tenant it files entries under.
pub fn unauthenticated() -> TenantId {
    TenantId::stored(UNAUTHENTICATED.to_owned())
}

/// The request an entry belongs to: its trace, and the route and method that served it.
#[derive(Clone, Debug, Default)]
pub struct Stamp {
    pub trace_id: Option<String>,
    pub route: String,
    pub method: String,
}

/// An authenticated caller and the request they made.
#[derive(Clone, Debug)]
pub struct Actor {
    pub caller: Caller,
    pub stamp: Stamp,
}

impl Actor {
    pub fn new(caller: Caller, stamp: Stamp) -> Actor {
        Actor { caller, stamp }
    }

    /// An entry for `action` by this caller (its tenant, issuer and subject, the request's
    /// trace id and route), with `outcome`.
    pub fn entry(&self, action: Action, outcome: &str) -> NewAuditEntry {
        entry(Some(&self.caller), &self.stamp, action, outcome)
    }
}

/// An entry for `action` by `caller`, or by nobody authenticated. The one place an entry's
/// who and where are written.
pub fn entry(
    caller: Option<&Caller>,
    stamp: &Stamp,
    action: Action,
    outcome: &str,
) -> NewAuditEntry {
    NewAuditEntry {
        id: stride_store::new_row_id(),
        recorded_us: crate::now_us(),
        action,
        outcome: outcome.to_owned(),
        caller_issuer: caller.map(|c| c.issuer.clone()),
        caller_subject: caller.map(|c| c.subject.clone()),
        trace_id: stamp.trace_id.clone(),
        details: json!({"route": stamp.route, "method": stamp.method}),
        ..NewAuditEntry::of(caller.map_or_else(unauthenticated, |c| c.tenant.clone()))
    }
}
