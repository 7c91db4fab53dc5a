//! Replay: re-evaluate the facts an audit entry stored, with the rule-set version it names
//! (or another), and show whether the decision is the same.

use std::sync::Arc;

use serde::Serialize;
use stride_guideline::{evaluate, Decision, Facts, RuleSet, RuleSetVersion};
use stride_store::AuditEntry;
use time::Date;

use crate::catalog::Catalog;

/// What an audit entry stored of a decision: enough to decide it again.
pub struct Inputs {
    pub rule_set_id: String,
    pub recorded_version: String,
    pub facts: Facts,
    pub as_of: Date,
}

impl Inputs {
    pub fn of(a: &AuditEntry) -> Result<Inputs, ReplayError> {
        let e = &a.entry;
        let (Some(facts), Some(id), Some(recorded_version), Some(as_of)) =
            (&e.facts, &e.rule_set_id, &e.rule_set_version, &e.as_of)
        else {
            return Err(ReplayError::NotADecision);
        };
        let facts: Facts = serde_json::from_str(facts.text())
            .map_err(|e| ReplayError::Unreadable(e.to_string()))?;
        let as_of = Date::parse(as_of, &time::format_description::well_known::Iso8601::DATE)
            .map_err(|e| ReplayError::Unreadable(e.to_string()))?;
        Ok(Inputs {
            rule_set_id: id.clone(),
            recorded_version: recorded_version.clone(),
            facts,
            as_of,
        })
    }

    /// The decision under `version` of the same guideline (`None`: the one that decided).
    pub fn decide<'c>(
        &self,
        catalog: &'c Catalog,
        version: Option<&str>,
    ) -> Result<(&'c Arc<RuleSet>, Decision), ReplayError> {
        let text = version.unwrap_or(&self.recorded_version);
        let unknown = || ReplayError::UnknownVersion(self.rule_set_id.clone(), text.to_owned());
        let v: RuleSetVersion = text.parse().map_err(|_| unknown())?;
        let rs = catalog.get(&self.rule_set_id, &v).ok_or_else(unknown)?;
        Ok((rs, evaluate(rs, &self.facts, self.as_of)))
    }
}

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
    let inputs = Inputs::of(a)?;
    let (rs, decision) = inputs.decide(catalog, with_version)?;
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
        replayed_version: rs.doc.version.to_string(),
        rule_set_id: inputs.rule_set_id,
        recorded_version: inputs.recorded_version,
        same_rule_set_content: e.rule_set_hash.as_deref() == Some(rs.content_hash.as_str()),
        identical: replayed == e.decision_ids,
        only_recorded: only(&e.decision_ids, &replayed),
        only_replayed: only(&replayed, &e.decision_ids),
        recorded: e.decision_ids.clone(),
        replayed,
    })
}
