//! Audit entries and their hash chain. The hash covers every field but the facts themselves,
//! which it covers through their SHA-256 digest, so verify can prove both were not changed.

use serde_json::{json, Value as Json};
use sha2::{Digest, Sha256};
use uuid::Uuid;

/// The hash before the first entry of a tenant.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// What one audited event says. Written once, never changed.
#[derive(Debug, Clone, PartialEq)]
pub struct NewAuditEntry {
    pub id: Uuid,
    pub tenant: crate::TenantId,
    /// Unix microseconds.
    pub recorded_us: i64,
    /// What was done (stored and hashed as its name: hook-call, feedback, careplan-read …).
    pub action: Action,
    /// success, refused, failed.
    pub outcome: String,
    pub caller_issuer: Option<String>,
    pub caller_subject: Option<String>,
    pub hook: Option<String>,
    pub hook_instance: Option<String>,
    pub service_id: Option<String>,
    /// Stored for auditors; never written to logs.
    pub patient_ref: Option<crate::PatientRef>,
    /// The day the decision was made "as of" (replay needs it).
    pub as_of: Option<String>,
    /// The engine's input, as evaluated.
    pub facts: Option<AuditFacts>,
    pub rule_set_id: Option<String>,
    pub rule_set_version: Option<String>,
    pub rule_set_hash: Option<String>,
    pub decision_ids: Vec<String>,
    pub card_uuids: Vec<String>,
    pub careplan_id: Option<Uuid>,
    pub trace_id: Option<String>,
    pub details: Json,
}

impl NewAuditEntry {
    /// An entry filed under `tenant`, every other field empty: what an entry is built from.
    /// (No `Default`: an entry filed under no tenant would be a chain nobody reads.)
    pub fn of(tenant: crate::TenantId) -> NewAuditEntry {
        NewAuditEntry {
            id: Uuid::nil(),
            tenant,
            recorded_us: 0,
            action: Action::default(),
            outcome: String::new(),
            caller_issuer: None,
            caller_subject: None,
            hook: None,
            hook_instance: None,
            service_id: None,
            patient_ref: None,
            as_of: None,
            facts: None,
            rule_set_id: None,
            rule_set_version: None,
            rule_set_hash: None,
            decision_ids: Vec::new(),
            card_uuids: Vec::new(),
            careplan_id: None,
            trace_id: None,
            details: Json::Null,
        }
    }
}

/// A stored entry: the event, its place in the chain, and its hashes.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditEntry {
    pub entry: NewAuditEntry,
    pub seq: i64,
    pub input_digest: Option<String>,
    pub prev_hash: String,
    pub hash: String,
    /// The hash signed with the service's key (none for entries written without one).
    pub seal: Option<crate::seal::Seal>,
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let d = Sha256::digest(bytes);
    let mut out = String::with_capacity(64);
    for b in d {
        out.push(HEX[usize::from(b >> 4)] as char);
        out.push(HEX[usize::from(b & 15)] as char);
    }
    out
}

/// The facts of an entry as their canonical JSON text: object keys sorted at every level, no
/// whitespace. This text is what is stored and what the digest covers.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct AuditFacts(String);

impl AuditFacts {
    /// Any JSON value, put into canonical form.
    pub fn from_json(value: &Json) -> Self {
        AuditFacts(canonical(value))
    }

    /// A value whose own serialisation is already canonical (its fields declared in sorted
    /// order, maps sorted): written out once, with no JSON tree in between. This is the hook
    /// path's way; debug builds (the tests) check the promise on every call.
    pub fn from_canonical<T: serde::Serialize>(value: &T) -> serde_json::Result<Self> {
        let text = serde_json::to_string(value)?;
        debug_assert_eq!(
            text,
            canonical(&serde_json::from_str(&text)?),
            "serialisation is not canonical: a field out of sorted order?"
        );
        Ok(AuditFacts(text))
    }

    /// Text as stored, read back: put into canonical form again, so that what is checked
    /// against the digest is never taken on trust from the database.
    pub fn from_stored(text: &str) -> serde_json::Result<Self> {
        Ok(Self::from_json(&serde_json::from_str(text)?))
    }

    pub fn text(&self) -> &str {
        &self.0
    }

    pub fn json(&self) -> Json {
        serde_json::from_str(&self.0).expect("canonical facts are JSON")
    }

    /// SHA-256 of the canonical text: the entry's input digest.
    pub fn digest(&self) -> String {
        sha256_hex(self.0.as_bytes())
    }
}

fn canonical(v: &Json) -> String {
    // serde_json's Map is a BTreeMap here (no preserve_order), so keys come out sorted.
    v.to_string()
}

/// The hash of an entry at `seq` after `prev_hash`.
pub fn entry_hash(
    e: &NewAuditEntry,
    seq: i64,
    input_digest: Option<&str>,
    prev_hash: &str,
) -> String {
    let fields = json!([
        e.id.to_string(),
        e.tenant,
        seq,
        e.recorded_us,
        e.action,
        e.outcome,
        e.caller_issuer,
        e.caller_subject,
        e.hook,
        e.hook_instance,
        e.service_id,
        e.patient_ref,
        e.as_of,
        input_digest,
        e.rule_set_id,
        e.rule_set_version,
        e.rule_set_hash,
        e.decision_ids,
        e.card_uuids,
        e.careplan_id.map(|u| u.to_string()),
        e.trace_id,
        e.details,
        prev_hash,
    ]);
    sha256_hex(canonical(&fields).as_bytes())
}

/// The first broken link of a tenant's chain, if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Broken {
    pub tenant: crate::TenantId,
    pub seq: i64,
    pub id: String,
    pub reason: String,
}

/// Walks entries ordered by (tenant, seq) and checks each link.
#[derive(Debug, Default)]
pub struct ChainCheck {
    tenant: Option<crate::TenantId>,
    expected_seq: i64,
    prev_hash: String,
    pub entries: u64,
    pub tenants: u64,
    pub broken: Option<Broken>,
    /// Where retention cut each tenant's chain: (tenant, last removed seq) → its hash, from
    /// the retention checkpoints, which are themselves entries of the chain.
    anchors: std::collections::HashMap<(crate::TenantId, i64), String>,
    /// With keys, every entry after a tenant's first sealed one must carry a valid seal.
    keys: Option<crate::seal::SealKeys>,
    sealed_tenant: bool,
    pub sealed: u64,
    pub unsealed: u64,
    /// Signed checkpoints kept outside the database: (tenant, seq) → hash the chain must hold.
    outside: std::collections::HashMap<(crate::TenantId, i64), String>,
    /// The newest checkpointed seq per tenant: a chain that ends before it lost its tail.
    outside_heads: std::collections::BTreeMap<crate::TenantId, i64>,
    /// The last seq seen per tenant.
    seen_heads: std::collections::HashMap<crate::TenantId, i64>,
    /// Outside checkpoints whose entry was seen (and compared).
    outside_seen: std::collections::HashSet<(crate::TenantId, i64)>,
    pub checkpoints: u64,
    /// Whether retention can have cut these chains (it runs on PostgreSQL only): elsewhere a
    /// retention checkpoint is a forgery that would hide deleted entries.
    retention_runs: bool,
}

/// What an audit entry records. Stored as its name; every name this version writes is here,
/// so a search, a filter or a check names an action that exists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    HookCall,
    /// A retry of a hookInstance answered before: the stored answer was given again.
    HookRetry,
    Feedback,
    CareplanRead,
    CareplanSearch,
    CareplanReview,
    AuditRead,
    AuditVerify,
    AuditReplay,
    StaffSignIn,
    StaffSignOut,
    /// Refused requests, aggregated per reason, client and route per interval.
    Refused,
    /// Appended by retention before it removes a tenant's oldest entries.
    RetentionCheckpoint,
    /// The version of a guideline in force for a tenant changed.
    GuidelineVersion,
    /// PlanDefinition/$apply: a CarePlan drafted for a caller, not stored.
    PlanApply,
    /// Card effectiveness or the feedback export read (who read which clinic's figures).
    AnalyticsRead,
    /// A staff member approved or rejected a rule-set version for a clinic.
    GuidelineSignOff,
    /// A signed-off rule-set version was put in force for a clinic.
    GuidelineActivation,
    /// A name this version does not write, read back as it is stored: an entry a later
    /// version wrote (while a rollout or a rollback runs two versions on one log), or one
    /// edited in the database. Kept as written, so that the entry's hash, which covers the
    /// name, decides whether it was altered. Never written by this version; empty in a
    /// default entry (tests), as the text was before this type.
    Other(String),
}

impl Default for Action {
    fn default() -> Action {
        Action::Other(String::new())
    }
}

impl Action {
    pub const ALL: [Action; 18] = [
        Action::HookCall,
        Action::HookRetry,
        Action::Feedback,
        Action::CareplanRead,
        Action::CareplanSearch,
        Action::CareplanReview,
        Action::AuditRead,
        Action::AuditVerify,
        Action::AuditReplay,
        Action::StaffSignIn,
        Action::StaffSignOut,
        Action::Refused,
        Action::RetentionCheckpoint,
        Action::GuidelineVersion,
        Action::PlanApply,
        Action::AnalyticsRead,
        Action::GuidelineSignOff,
        Action::GuidelineActivation,
    ];

    pub const fn as_str(&self) -> &str {
        match self {
            Action::HookCall => "hook-call",
            Action::HookRetry => "hook-retry",
            Action::Feedback => "feedback",
            Action::CareplanRead => "careplan-read",
            Action::CareplanSearch => "careplan-search",
            Action::CareplanReview => "careplan-review",
            Action::AuditRead => "audit-read",
            Action::AuditVerify => "audit-verify",
            Action::AuditReplay => "audit-replay",
            Action::StaffSignIn => "staff-sign-in",
            Action::StaffSignOut => "staff-sign-out",
            Action::Refused => "refused",
            Action::RetentionCheckpoint => "retention-checkpoint",
            Action::GuidelineVersion => "guideline-version",
            Action::PlanApply => "plan-apply",
            Action::AnalyticsRead => "analytics-read",
            Action::GuidelineSignOff => "guideline-sign-off",
            Action::GuidelineActivation => "guideline-activation",
            Action::Other(name) => name.as_str(),
        }
    }
}

impl Action {
    /// The action of this name, if this version writes it (a filter, a search).
    pub fn from_name(name: &str) -> Option<Action> {
        Action::ALL.into_iter().find(|a| a.as_str() == name)
    }

    /// A stored name read back: any name, an unknown one kept as `Other`.
    pub fn read(name: String) -> Action {
        Action::from_name(&name).unwrap_or(Action::Other(name))
    }
}

impl std::fmt::Display for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// As its name: the exports and the entry's hash carry the name, as before the type.
impl serde::Serialize for Action {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl PartialEq<&str> for Action {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl ChainCheck {
    /// Check seals with these public keys (see `seal`).
    pub fn with_keys(keys: crate::seal::SealKeys) -> ChainCheck {
        ChainCheck {
            keys: Some(keys),
            ..ChainCheck::default()
        }
    }

    /// Whether retention runs on this backend (PostgreSQL): only there may a chain begin at a
    /// retention checkpoint.
    pub fn retention_runs(mut self, runs: bool) -> ChainCheck {
        self.retention_runs = runs;
        self
    }

    /// Hold the chains to signed checkpoints kept outside the database (`stride audit
    /// anchor`). A checkpoint whose signature does not verify is itself a broken link.
    pub fn outside_checkpoint(&mut self, cp: &crate::seal::Checkpoint) {
        let verified = match &self.keys {
            Some(k) => cp.verify(k),
            None => Err("checkpoints need the keys that signed them"),
        };
        if let Err(reason) = verified {
            self.broken.get_or_insert(Broken {
                tenant: cp.tenant.clone(),
                seq: cp.seq,
                id: String::new(),
                reason: format!("checkpoint of {}: {reason}", cp.time),
            });
            return;
        }
        self.checkpoints += 1;
        self.outside
            .insert((cp.tenant.clone(), cp.seq), cp.hash.clone());
        let head = self.outside_heads.entry(cp.tenant.clone()).or_insert(0);
        *head = (*head).max(cp.seq);
    }

    /// After the last entry: every checkpointed entry must have been seen, or removed by a
    /// retention that a trusted checkpoint in the chain vouches for (every checkpoint of the
    /// file, not only the newest: a deleted oldest entry shows against the one that held it).
    pub fn finish(&mut self) {
        if self.broken.is_some() {
            return;
        }
        let mut unseen: Vec<&(crate::TenantId, i64)> = self
            .outside
            .keys()
            .filter(|k| !self.outside_seen.contains(*k))
            .collect();
        unseen.sort();
        for (tenant, seq) in unseen {
            let head = self.seen_heads.get(tenant).copied().unwrap_or(0);
            if *seq > head {
                continue; // a lost tail: said below, with its range
            }
            let cut = self
                .anchors
                .keys()
                .filter(|(t, last)| t == tenant && last >= seq)
                .map(|(_, last)| *last)
                .min();
            let vouched = cut.is_some_and(|last| {
                last > *seq
                    || self.anchors.get(&(tenant.clone(), last))
                        == self.outside.get(&(tenant.clone(), *seq))
            });
            if !vouched {
                self.broken = Some(Broken {
                    tenant: tenant.clone(),
                    seq: *seq,
                    id: String::new(),
                    reason: format!(
                        "entry {seq} is missing: a checkpoint outside the database holds it, and no sealed retention checkpoint vouches for its removal"
                    ),
                });
                return;
            }
        }
        for (tenant, &seq) in &self.outside_heads {
            let last = self.seen_heads.get(tenant).copied().unwrap_or(0);
            if last < seq {
                self.broken = Some(Broken {
                    tenant: tenant.clone(),
                    seq: last + 1,
                    id: String::new(),
                    reason: format!(
                        "entries {}–{seq} are missing: a checkpoint outside the database holds entry {seq} (deleted tail)",
                        last + 1
                    ),
                });
                return;
            }
        }
    }

    /// Learn where retention cut the chains (call with every checkpoint entry before `push`).
    /// A checkpoint vouches for removed entries only where retention runs, and, with keys,
    /// only sealed by the service: anyone who can write the database could append one.
    pub fn anchor(&mut self, checkpoint: &AuditEntry) {
        let refuse = |reason: &str| Broken {
            tenant: checkpoint.entry.tenant.clone(),
            seq: checkpoint.seq,
            id: checkpoint.entry.id.to_string(),
            reason: reason.to_owned(),
        };
        if !self.retention_runs {
            self.broken.get_or_insert(refuse(
                "a retention checkpoint in a database where retention never runs (SQLite): forged",
            ));
            return;
        }
        if let Some(keys) = &self.keys {
            let trusted = sealed(checkpoint).is_ok()
                && checkpoint.seal.as_ref().is_some_and(|s| {
                    keys.verify_at(s, checkpoint.hash.as_bytes(), checkpoint.entry.recorded_us)
                        .is_ok()
                });
            if !trusted {
                self.broken.get_or_insert(refuse(
                    "a retention checkpoint not sealed by the service's key: it vouches for nothing",
                ));
                return;
            }
        }
        let d = &checkpoint.entry.details;
        if let (Some(seq), Some(hash)) = (d["lastSeq"].as_i64(), d["lastHash"].as_str()) {
            self.anchors
                .insert((checkpoint.entry.tenant.clone(), seq), hash.to_owned());
        }
    }

    /// Feed the next entry; stops recording after the first break.
    pub fn push(&mut self, a: &AuditEntry) {
        if self.broken.is_some() {
            return;
        }
        if self.tenant.as_ref() != Some(&a.entry.tenant) {
            self.tenant = Some(a.entry.tenant.clone());
            self.sealed_tenant = false;
            self.expected_seq = 1;
            self.prev_hash = GENESIS.to_owned();
            self.tenants += 1;
            // A chain that starts after 1 is only sound where a checkpoint vouches for the cut.
            if let Some(hash) = self.anchors.get(&(a.entry.tenant.clone(), a.seq - 1)) {
                self.expected_seq = a.seq;
                self.prev_hash = hash.clone();
            }
        }
        self.entries += 1;
        let fail = |reason: String| Broken {
            tenant: a.entry.tenant.clone(),
            seq: a.seq,
            id: a.entry.id.to_string(),
            reason,
        };
        if a.seq != self.expected_seq {
            self.broken = Some(fail(format!(
                "entry {} is missing (next is {})",
                self.expected_seq, a.seq
            )));
            return;
        }
        if a.prev_hash != self.prev_hash {
            self.broken = Some(fail("prev_hash does not match the previous entry".into()));
            return;
        }
        if let Err(reason) = sealed(a) {
            self.broken = Some(fail(reason.into()));
            return;
        }
        if let Some(keys) = &self.keys {
            match &a.seal {
                Some(seal) => {
                    if let Err(reason) =
                        keys.verify_at(seal, a.hash.as_bytes(), a.entry.recorded_us)
                    {
                        self.broken = Some(fail(reason.into()));
                        return;
                    }
                    self.sealed_tenant = true;
                    self.sealed += 1;
                }
                // Entries from before sealing was configured have none; once a chain is
                // sealed, an entry without a seal was written by someone without the key.
                None if self.sealed_tenant => {
                    self.broken = Some(fail(
                        "not sealed, after sealed entries (written without the service's key)"
                            .into(),
                    ));
                    return;
                }
                None => self.unsealed += 1,
            }
        }
        if let Some(hash) = self.outside.get(&(a.entry.tenant.clone(), a.seq)) {
            self.outside_seen.insert((a.entry.tenant.clone(), a.seq));
            if *hash != a.hash {
                self.broken = Some(fail(
                    "differs from the checkpoint kept outside the database (re-chained)".into(),
                ));
                return;
            }
        }
        self.seen_heads.insert(a.entry.tenant.clone(), a.seq);
        self.expected_seq += 1;
        self.prev_hash = a.hash.clone();
    }
}

/// One entry on its own: its facts match their digest and its fields match its hash (its link
/// to the previous entry is what `ChainCheck` adds).
pub fn sealed(a: &AuditEntry) -> Result<(), &'static str> {
    if a.entry.facts.as_ref().map(AuditFacts::digest) != a.input_digest {
        return Err("the stored facts do not match their digest");
    }
    if entry_hash(&a.entry, a.seq, a.input_digest.as_deref(), &a.prev_hash) != a.hash {
        return Err("the entry does not match its hash (edited)");
    }
    Ok(())
}

/// Filters for auditors.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AuditQuery {
    pub tenant: Option<crate::TenantId>,
    pub patient_ref: Option<crate::PatientRef>,
    pub caller_subject: Option<String>,
    pub rule_set_version: Option<String>,
    pub decision_id: Option<String>,
    pub since_us: Option<i64>,
    pub until_us: Option<i64>,
    pub limit: Option<i64>,
    pub action: Option<Action>,
}
