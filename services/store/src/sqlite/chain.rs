//! The audit chain as the SQLite writer extends it: each tenant's head (sequence and hash),
//! kept across the writes of one group, and the insert of a placed entry.

use rusqlite::{params, Connection, OptionalExtension};

use super::engine::error;
use crate::audit::{entry_hash, GENESIS};
use crate::{NewAuditEntry, StoreError};

/// The last entry of a tenant's chain: its sequence number and hash.
pub(super) fn chain_head(
    tx: &Connection,
    tenant: &crate::TenantId,
) -> Result<Option<(i64, String)>, StoreError> {
    tx.prepare_cached(
        "SELECT seq, hash FROM audit_entries WHERE tenant = ? ORDER BY seq DESC LIMIT 1",
    )
    .and_then(|mut q| {
        q.query_row([tenant.as_str()], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()
    })
    .map_err(error)
}

/// An audit entry written out for storage, all but its place in the chain. Prepared by the
/// caller, so the single writer only places and inserts it.
pub(super) struct Prepared {
    pub(super) entry: NewAuditEntry,
    pub(super) facts_digest: Option<String>,
    pub(super) details: String,
    pub(super) decision_ids: String,
    pub(super) card_uuids: String,
}

impl Prepared {
    pub(super) fn new(entry: NewAuditEntry) -> Self {
        Self {
            facts_digest: entry.facts.as_ref().map(|f| f.digest()),
            details: entry.details.to_string(),
            decision_ids: serde_json::json!(entry.decision_ids).to_string(),
            card_uuids: serde_json::json!(entry.card_uuids).to_string(),
            entry,
        }
    }
}

/// Where an entry goes: after `prev` at `seq`, sealed by `hash`.
#[derive(Clone)]
pub(super) struct Place {
    pub(super) seq: i64,
    pub(super) prev: String,
    pub(super) hash: String,
    pub(super) seal: Option<crate::seal::Seal>,
}

/// The chain heads known inside one group commit. The group holds SQLite's write lock from
/// `BEGIN IMMEDIATE` to `COMMIT`, so nobody else can append meanwhile: a head read or written
/// earlier in the group is still the head, unless the write that made it was rolled back,
/// which is why a write's new head counts only once its savepoint is released.
#[derive(Default)]
pub(super) struct ChainHeads {
    pub(super) known: std::collections::HashMap<crate::TenantId, (i64, String)>,
    pub(super) pending: Vec<(crate::TenantId, (i64, String))>,
    /// Signs each entry's hash as it is placed (the writer's one key, see `seal`).
    pub(super) sealer: Option<std::sync::Arc<crate::seal::Sealer>>,
}

impl ChainHeads {
    pub(super) fn place(&mut self, tx: &Connection, p: &Prepared) -> Result<Place, StoreError> {
        let e = &p.entry;
        let head = if let Some((_, h)) = self.pending.iter().rev().find(|(t, _)| *t == e.tenant) {
            Some(h.clone())
        } else if let Some(h) = self.known.get(&e.tenant) {
            Some(h.clone())
        } else {
            chain_head(tx, &e.tenant)?
        };
        let (seq, prev) = head
            .map(|(s, h)| (s + 1, h))
            .unwrap_or((1, GENESIS.to_owned()));
        let hash = entry_hash(e, seq, p.facts_digest.as_deref(), &prev);
        let seal = self.sealer.as_ref().map(|s| s.seal(hash.as_bytes()));
        Ok(Place {
            seq,
            prev,
            hash,
            seal,
        })
    }

    pub(super) fn appended(&mut self, tenant: &crate::TenantId, place: Place) {
        self.pending.push((tenant.clone(), (place.seq, place.hash)));
    }

    /// The write's savepoint was released (`kept`) or rolled back.
    pub(super) fn settle(&mut self, kept: bool) {
        let pending = std::mem::take(&mut self.pending);
        if kept {
            self.known.extend(pending);
        }
    }
}

pub(super) const INSERT_AUDIT: &str = "INSERT INTO audit_entries (id, tenant, seq, recorded_at, action, outcome, caller_issuer, caller_subject, hook,
            hook_instance, service_id, patient_ref, as_of, input_digest, facts, rule_set_id, rule_set_version,
            rule_set_hash, decision_ids, card_uuids, careplan_id, trace_id, details, prev_hash, hash,
            seal_kid, seal)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)";

/// Insert `p` at `at` (its place in the chain).
pub(super) fn insert_audit(tx: &Connection, p: &Prepared, at: &Place) -> Result<(), StoreError> {
    let e = &p.entry;
    tx.prepare_cached(INSERT_AUDIT)
        .and_then(|mut q| {
            q.execute(params![
                e.id.to_string(),
                e.tenant.as_str(),
                at.seq,
                e.recorded_us,
                e.action.as_str(),
                e.outcome,
                e.caller_issuer,
                e.caller_subject,
                e.hook,
                e.hook_instance,
                e.service_id,
                e.patient_ref.as_ref().map(|r| r.as_str()),
                e.as_of,
                p.facts_digest,
                e.facts.as_ref().map(|f| super::packed::pack(f.text())),
                e.rule_set_id,
                e.rule_set_version,
                e.rule_set_hash,
                p.decision_ids,
                p.card_uuids,
                e.careplan_id.map(|u| u.to_string()),
                e.trace_id,
                p.details,
                at.prev,
                at.hash,
                at.seal.as_ref().map(|s| s.kid.as_str()),
                at.seal.as_ref().map(|s| s.sig.as_str()),
            ])
        })
        .map_err(error)?;
    Ok(())
}

/// Append `p` to its tenant's chain inside `tx` (which holds the write lock).
pub(super) fn append(
    tx: &Connection,
    heads: &mut ChainHeads,
    p: &Prepared,
) -> Result<(), StoreError> {
    let place = heads.place(tx, p)?;
    insert_audit(tx, p, &place)?;
    heads.appended(&p.entry.tenant, place);
    Ok(())
}
