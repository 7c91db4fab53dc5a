//! Replay: re-evaluate the facts an audit entry stored, with the rule-set version it names
//! (or another), and show whether the decision is the same.

use serde::Serialize;
use stride_guideline::{evaluate, Facts, RuleSetVersion};
use stride_store::AuditEntry;

use crate::catalog::Catalog;

#[derive(Debug, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Replay {
    pub entry: String,
    pub rule_set_id: String,
    pub recorded_version: String,
    pub replayed_version: String,
    /// The rule-set file is byte for byte the one that decided.
    pub same_rule_set_content: bool,
    pub identical: bool,
    pub recorded: Vec<String>,
    pub replayed: Vec<String>,
    pub only_recorded: Vec<String>,
    pub only_replayed: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("this entry is not a decision (no stored facts or rule set)")]
    NotADecision,
    #[error("rule set {0} {1} is not loaded")]
    UnknownVersion(String, String),
    #[error("the stored entry cannot be read: {0}")]
    Unreadable(String),
}

pub fn replay(
    catalog: &Catalog,
    a: &AuditEntry,
    with_version: Option<&str>,
) -> Result<Replay, ReplayError> {
    let e = &a.entry;
    let (Some(facts), Some(id), Some(recorded_version), Some(as_of)) =
        (&e.facts, &e.rule_set_id, &e.rule_set_version, &e.as_of)
    else {
        return Err(ReplayError::NotADecision);
    };
    let version_text = with_version.unwrap_or(recorded_version);
    let version: RuleSetVersion = version_text
        .parse()
        .map_err(|_| ReplayError::UnknownVersion(id.clone(), version_text.to_owned()))?;
    let rs = catalog
        .get(id, &version)
        .ok_or_else(|| ReplayError::UnknownVersion(id.clone(), version_text.to_owned()))?;
    let facts: Facts =
        serde_json::from_str(facts.text()).map_err(|e| ReplayError::Unreadable(e.to_string()))?;
    let as_of = time::Date::parse(as_of, &time::format_description::well_known::Iso8601::DATE)
        .map_err(|e| ReplayError::Unreadable(e.to_string()))?;
    let decision = evaluate(rs, &facts, as_of);
    let replayed: Vec<String> = decision
        .decision_ids()
        .iter()
        .map(|s| s.to_string())
        .collect();
    let only = |a: &[String], b: &[String]| {
        a.iter()
            .filter(|x| !b.contains(x))
            .cloned()
            .collect::<Vec<_>>()
    };
    Ok(Replay {
        entry: e.id.to_string(),
        rule_set_id: id.clone(),
        recorded_version: recorded_version.clone(),
        replayed_version: version.to_string(),
        same_rule_set_content: e.rule_set_hash.as_deref() == Some(rs.content_hash.as_str()),
        identical: replayed == e.decision_ids,
        only_recorded: only(&e.decision_ids, &replayed),
        only_replayed: only(&replayed, &e.decision_ids),
        recorded: e.decision_ids.clone(),
        replayed,
    })
}
