//! What the in-process use-case tests share: a fresh, migrated SQLite store, a caller, and the
//! audit log a use case left.

#![allow(dead_code)] // each test binary uses its own part

use std::sync::Arc;

use futures_util::StreamExt;
use stride_auth::{Caller, Kind};
use stride_store::{AuditQuery, NewAuditEntry, PoolOptions, Store};

/// A fresh SQLite store, migrated; the folder holding it lives as long as the first value.
pub async fn fresh_store() -> (tempfile::TempDir, Arc<dyn Store>) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("stride.db").display());
    let store = stride_store::connect(&url, &PoolOptions::default())
        .await
        .unwrap();
    store.migrate().await.unwrap();
    (dir, store)
}

/// An authenticated caller of `tenant` with no scopes, no launch and a token that never ends.
pub fn caller(issuer: &str, subject: &str, tenant: &str, kind: Kind) -> Caller {
    Caller {
        issuer: issuer.into(),
        subject: subject.into(),
        tenant: tenant.into(),
        all_tenants: false,
        timezone: None,
        kind,
        jti: None,
        expires_at: i64::MAX,
        scopes: Vec::new(),
        patient: None,
        fhir_user: None,
    }
}

/// `tenant`'s audit chain, in chain order.
pub async fn audit_log(store: &dyn Store, tenant: &str) -> Vec<NewAuditEntry> {
    let query = AuditQuery {
        tenant: Some(tenant.into()),
        ..AuditQuery::default()
    };
    store
        .audit_stream(&query, true)
        .map(|e| e.unwrap().entry)
        .collect()
        .await
}
