//! What a candidate version would change: every stored hook call of its guideline, decided
//! again by the candidate (or read from the call's shadow record when the candidate was in
//! shadow then), compared with what was decided, and grouped by transition. One use case for
//! `stride rules impact` and the staff page `/ui/rules/impact`. Streamed: memory does not
//! grow with the log.

use std::collections::BTreeMap;
use std::str::FromStr;
use stride_store::TenantId;

use futures_util::StreamExt;
use serde::Serialize;
use sha2::Digest;
use stride_guideline::RuleSetVersion;
use stride_store::{AuditEntry, AuditQuery, Store, StoreError};

use crate::catalog::Catalog;
use crate::replay::Inputs;

/// `guideline-id=version`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub guideline: String,
    pub version: RuleSetVersion,
}

impl FromStr for Candidate {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (g, v) = s
            .split_once('=')
            .ok_or_else(|| format!("`{s}` is not guideline-id=version"))?;
        Ok(Candidate {
            guideline: g.trim().to_owned(),
            version: v.trim().parse().map_err(|e| format!("{e}"))?,
        })
    }
}

impl std::fmt::Display for Candidate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}={}", self.guideline, self.version)
    }
}

/// Which decisions to look at.
#[derive(Debug, Clone)]
pub struct Scope {
    pub candidate: Candidate,
    pub since_us: Option<i64>,
    pub tenant: Option<TenantId>,
}

/// One decision the candidate would change.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Change {
    pub audit_entry: String,
    /// As the decision log holds it.
    #[serde(deserialize_with = "TenantId::deserialize_stored")]
    pub tenant: TenantId,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub patient: Option<String>,
    pub recorded_us: i64,
    /// The version that decided, and the candidate.
    pub version: String,
    pub candidate: String,
    pub before: Vec<String>,
    pub after: Vec<String>,
    pub transition: String,
    /// `shadow` (the call's own shadow record) or `replay` (decided again now).
    pub from: std::borrow::Cow<'static, str>,
}

#[derive(Debug, Default, Clone, Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    pub candidate: String,
    /// Decisions of the guideline read (the candidate's own excepted).
    pub decisions: u64,
    pub changed: u64,
    pub unchanged: u64,
    /// Read from shadow records instead of decided again.
    pub from_shadow: u64,
    /// Entries whose stored facts could not be read (listed on stderr by id).
    pub unreadable: u64,
    /// `before → after` (the phases, then ids added and removed) → how many.
    pub transitions: BTreeMap<String, u64>,
    /// Hex SHA-256 of the changed-decision lines in NDJSON order (each line as `stride rules
    /// impact --format ndjson` prints it, newline included): what a sign-off names as the
    /// report its signer saw.
    pub impact_hash: String,
}

/// The NDJSON line of a change, as the report and its hash have it.
pub fn ndjson_line(c: &Change) -> String {
    format!("{}\n", serde_json::to_string(c).unwrap_or_default())
}

#[derive(Debug, thiserror::Error)]
pub enum ImpactError {
    #[error("{0} is not a loaded rule-set version")]
    UnknownCandidate(Candidate),
    #[error("the decision log cannot be read: {0}")]
    Store(#[from] StoreError),
}

/// The transition a change makes: the phase (or "no phase"), then what else was added or
/// removed, e.g. `walk-run → hold-for-evaluation (+femoral-neck-bone-stress)`.
pub fn transition(before: &[String], after: &[String], is_phase: impl Fn(&str) -> bool) -> String {
    let split = |ids: &[String]| -> (String, Vec<String>) {
        match ids.first() {
            Some(p) if is_phase(p) => (p.clone(), ids[1..].to_vec()),
            _ => ("no phase".into(), ids.to_vec()),
        }
    };
    let ((pb, b), (pa, a)) = (split(before), split(after));
    let mut t = format!("{pb} → {pa}");
    let mut extra: Vec<String> = a
        .iter()
        .filter(|x| !b.contains(x))
        .map(|x| format!("+{x}"))
        .collect();
    extra.extend(b.iter().filter(|x| !a.contains(x)).map(|x| format!("-{x}")));
    if !extra.is_empty() {
        t.push_str(&format!(" ({})", extra.join(" ")));
    }
    t
}

/// What the candidate decides for one stored call: from its shadow record when that was this
/// very candidate (same version and content), else decided again from the stored facts.
fn candidate_ids(
    catalog: &Catalog,
    a: &AuditEntry,
    c: &Candidate,
) -> Option<(Vec<String>, &'static str)> {
    let rs = catalog.get(&c.guideline, &c.version)?;
    let shadow = &a.entry.details["shadow"];
    if shadow["version"] == serde_json::json!(c.version.to_string())
        && shadow["contentHash"] == serde_json::json!(rs.content_hash)
    {
        let ids = shadow["decisionIds"]
            .as_array()?
            .iter()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect();
        return Some((ids, "shadow"));
    }
    let (_, decision) = Inputs::of(a)
        .ok()?
        .decide(catalog, Some(&c.version.to_string()))
        .ok()?;
    let ids = decision
        .decision_ids()
        .iter()
        .map(|s| s.to_string())
        .collect();
    Some((ids, "replay"))
}

/// Read every decision in scope, hand each change to `on_change` as it is found, and report
/// progress (decisions read so far) every `every` decisions.
pub async fn report(
    store: &dyn Store,
    catalog: &Catalog,
    scope: &Scope,
    mut on_change: impl FnMut(&Change),
    every: u64,
    mut progress: impl FnMut(u64),
) -> Result<Summary, ImpactError> {
    let c = &scope.candidate;
    let Some(rs) = catalog.get(&c.guideline, &c.version) else {
        return Err(ImpactError::UnknownCandidate(c.clone()));
    };
    let phases: Vec<&str> = rs
        .doc
        .phases
        .iter()
        .map(|p| p.id.as_str())
        .chain([
            stride_guideline::decision::HOLD_FOR_EVALUATION,
            stride_guideline::decision::INSUFFICIENT_DATA,
        ])
        .collect();
    let is_phase = |id: &str| phases.contains(&id);
    let query = AuditQuery {
        tenant: scope.tenant.clone(),
        since_us: scope.since_us,
        action: Some(stride_store::audit::Action::HookCall),
        ..AuditQuery::default()
    };
    let mut summary = Summary {
        candidate: c.to_string(),
        ..Summary::default()
    };
    let mut hash = sha2::Sha256::new();
    let mut rows = store.audit_stream(&query, true);
    while let Some(row) = rows.next().await {
        let a = row?;
        let e = &a.entry;
        if e.rule_set_id.as_deref() != Some(c.guideline.as_str()) || e.facts.is_none() {
            continue;
        }
        let recorded_version = e.rule_set_version.clone().unwrap_or_default();
        // A call the candidate itself decided has nothing to compare.
        if recorded_version == c.version.to_string() {
            continue;
        }
        summary.decisions += 1;
        if every > 0 && summary.decisions.is_multiple_of(every) {
            progress(summary.decisions);
        }
        let Some((after, from)) = candidate_ids(catalog, &a, c) else {
            summary.unreadable += 1;
            continue;
        };
        if from == "shadow" {
            summary.from_shadow += 1;
        }
        if after == e.decision_ids {
            summary.unchanged += 1;
            continue;
        }
        summary.changed += 1;
        let change = Change {
            audit_entry: e.id.to_string(),
            tenant: e.tenant.clone(),
            patient: e.patient_ref.as_ref().map(|p| p.as_str().to_owned()),
            recorded_us: e.recorded_us,
            version: recorded_version,
            candidate: c.version.to_string(),
            transition: transition(&e.decision_ids, &after, is_phase),
            before: e.decision_ids.clone(),
            after,
            from: from.into(),
        };
        *summary
            .transitions
            .entry(change.transition.clone())
            .or_default() += 1;
        hash.update(ndjson_line(&change).as_bytes());
        on_change(&change);
    }
    summary.impact_hash = hex::encode(hash.finalize());
    progress(summary.decisions);
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(ids: &[&str]) -> Vec<String> {
        ids.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn a_transition_names_the_phases_then_what_was_added_and_removed() {
        let phase = |id: &str| ["rest", "walk-run", "hold-for-evaluation"].contains(&id);
        assert_eq!(
            transition(
                &v(&["walk-run"]),
                &v(&["hold-for-evaluation", "femoral-neck-bone-stress"]),
                phase
            ),
            "walk-run → hold-for-evaluation (+femoral-neck-bone-stress)"
        );
        assert_eq!(
            transition(
                &v(&["rest", "mcl-mechanism"]),
                &v(&["rest", "bone-health-screen"]),
                phase
            ),
            "rest → rest (+bone-health-screen -mcl-mechanism)"
        );
        // An order hook's answer has no phase.
        assert_eq!(
            transition(&v(&[]), &v(&["lipus-not-recommended"]), phase),
            "no phase → no phase (+lipus-not-recommended)"
        );
    }

    #[test]
    fn a_candidate_is_guideline_equals_version() {
        let c: Candidate = "some-guideline=1.1.0".parse().unwrap();
        assert_eq!(c.guideline, "some-guideline");
        assert_eq!(c.to_string(), "some-guideline=1.1.0");
        for bad in ["some-guideline", "a=1.1", "=1.0.0x"] {
            assert!(bad.parse::<Candidate>().is_err(), "{bad}");
        }
    }
}
