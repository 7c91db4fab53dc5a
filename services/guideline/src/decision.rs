//! What `evaluate` returns: the phase, what fired, what to do, and why.

use serde::{Deserialize, Serialize};
use time::Date;

use crate::model::{Frequency, Severity, Side, ValueKind};
use crate::version::RuleSetVersion;

/// Decision ids that the engine itself produces (the rest come from the rule set).
pub const HOLD_FOR_EVALUATION: &str = "hold-for-evaluation";
pub const INSUFFICIENT_DATA: &str = "insufficient-data";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Decision {
    pub rule_set: RuleSetRef,
    pub as_of: Date,
    /// False when no active pain episode activates the guideline: no phase card then.
    pub applies: bool,
    /// The Condition(s) that activate the guideline (`CarePlan.addresses`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub episode: Vec<String>,
    /// The phase id, `hold-for-evaluation` or `insufficient-data`; `None` when not applicable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    /// Set when pain during running stopped progression (rest until resolved, then resume lower).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub regression: Option<RegressionState>,
    pub red_flags: Vec<Finding>,
    pub warnings: Vec<Finding>,
    pub pitfalls: Vec<Finding>,
    /// Red flags that could be neither confirmed nor ruled out: shown, never silently dropped.
    pub unassessed_red_flags: Vec<Unassessed>,
    /// Pitfalls that could be neither confirmed nor ruled out: listed, never silently dropped.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unassessed_pitfalls: Vec<Unassessed>,
    /// Red flags that only a preliminary record would fire: shown ("confirm"), not counted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub preliminary_red_flags: Vec<Preliminary>,
    /// Pitfalls the phase card names (`phase_notes` of the rule set): no decision id of
    /// their own.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub phase_notes: Vec<Finding>,
    /// Set when the episode looks like a problem-list entry left active: why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stale_episode: Option<String>,
    /// The open episodes, by side, when there is more than one: the phase is the newest's.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub episodes: Vec<String>,
    /// Facts whose absence kept the phase from being placed further (or at all).
    pub missing: Vec<MissingFact>,
    pub activities: Vec<PlannedActivity>,
    pub rehab: Vec<PlannedActivity>,
    /// Records left out, and why (future-dated, entered in error, unknown unit, contradictory).
    pub ignored: Vec<Ignored>,
    pub trace: Vec<TraceEntry>,
}

impl Decision {
    /// Every decision id this decision produces: the phase first, then findings.
    pub fn decision_ids(&self) -> Vec<&str> {
        self.phase
            .as_deref()
            .into_iter()
            .chain(self.red_flags.iter().map(|f| f.id.as_str()))
            .chain(self.warnings.iter().map(|f| f.id.as_str()))
            .chain(self.pitfalls.iter().map(|f| f.id.as_str()))
            .collect()
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct RuleSetRef {
    pub id: String,
    pub url: String,
    pub version: RuleSetVersion,
    /// SHA-256 of the rule-set file, hex.
    pub content_hash: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RegressionState {
    pub rule: String,
    pub resolved: bool,
    pub summary: String,
    pub detail: String,
    pub cite: Vec<u32>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Finding {
    pub id: String,
    pub rule: String,
    pub severity: Severity,
    pub suggest_imaging: bool,
    pub summary: String,
    pub detail: String,
    pub cite: Vec<u32>,
    /// The records the verdict rests on.
    pub evidence: Vec<String>,
    /// Conflicting records the finding was decided on (a red flag counts the positive one).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conflicts: Vec<String>,
    /// A red flag that fired on this day and was not evaluated since (no imaging, no review):
    /// a later negative record alone does not clear it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<Date>,
    /// The verdict's inputs as a clinician reads them (fact, value, day): what "Based on"
    /// names, where `evidence` names resource ids for the audit.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub basis: Vec<Basis>,
    /// The side of the open episode it was found in, when that is not the episode the patient
    /// is placed by (`evaluate::decide` carries another episode's findings; its summary then
    /// names the side, so a clinician does not read it as the newer injury's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub side: Option<Side>,
}

/// One fact a finding rests on: its clinical name, its value and the newest day recorded.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Basis {
    pub fact: String,
    /// The fact's clinical name (the rule set's `text`).
    pub text: String,
    pub kind: ValueKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
    /// The newest day among the records it rests on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub date: Option<Date>,
    pub sources: Vec<String>,
}

impl Basis {
    /// "Pain at night: yes, recorded 3 Dec 2026"; "Current pain …: 6/10, recorded 3 Dec 2026";
    /// a date fact (an onset) reads as its day.
    pub fn describe(&self) -> String {
        use crate::display;
        let value = match (self.kind, self.value) {
            (ValueKind::Boolean, Some(v)) => Some(display::yes_no(v).to_owned()),
            (ValueKind::Number, Some(v)) => Some(display::quantity(v, self.unit.as_deref())),
            _ => None,
        };
        let day = self.date.map(display::day);
        match (value, day, self.kind) {
            (_, Some(d), ValueKind::Date) => format!("{}: since {d}", self.text),
            (Some(v), Some(d), _) => format!("{}: {v}, recorded {d}", self.text),
            (Some(v), None, _) => format!("{}: {v}", self.text),
            (None, Some(d), _) => format!("{}, recorded {d}", self.text),
            (None, None, _) => self.text.clone(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Preliminary {
    pub id: String,
    pub rule: String,
    /// The preliminary records that would fire it.
    pub sources: Vec<String>,
    /// Those records as a clinician reads them (fact, value, day).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub basis: Vec<Basis>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Unassessed {
    pub id: String,
    pub rule: String,
    pub missing: Vec<String>,
    /// What to record, in clinical words (`missing` with each fact's text and reason).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub needs: Vec<MissingFact>,
    /// As `Finding::side`: another open episode's rule it could not decide.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub side: Option<Side>,
}

impl Unassessed {
    /// The rule's clinical name as a clinician reads it: "Focal tenderness …", and "(episode
    /// of the left side)" after it when it is another open episode's.
    pub fn name(&self, rs: &crate::RuleSet) -> String {
        let name = rs
            .flag_or_pitfall(&self.id)
            .map_or(self.id.as_str(), |r| r.finding_name());
        match self.side {
            Some(side) => format!(
                "{name} (episode of the {})",
                crate::display::side(Some(side)).to_lowercase()
            ),
            None => name.to_owned(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct MissingFact {
    pub fact: String,
    pub text: String,
    /// Why it is unknown: absent, stale, contradictory, bad unit.
    pub reason: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PlannedActivity {
    pub id: String,
    pub rule: String,
    pub text: String,
    pub cite: Vec<u32>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dosing: Vec<Dose>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frequency: Option<Frequency>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub surfaces: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub avoid: Vec<String>,
}

/// One dosing quantity, resolved from a parameter: `low`–`high` `unit`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Dose {
    pub name: String,
    pub parameter: String,
    pub low: f64,
    pub high: f64,
    pub unit: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Ignored {
    pub source: String,
    pub reason: String,
    /// The record's day, where it has one: how a card names it (ids stay in the trace).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub date: Option<Date>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    Met,
    NotMet,
    Unknown,
}

impl Verdict {
    pub fn and(self, other: Verdict) -> Verdict {
        use Verdict::*;
        match (self, other) {
            (NotMet, _) | (_, NotMet) => NotMet,
            (Met, Met) => Met,
            _ => Unknown,
        }
    }

    pub fn or(self, other: Verdict) -> Verdict {
        use Verdict::*;
        match (self, other) {
            (Met, _) | (_, Met) => Met,
            (NotMet, NotMet) => NotMet,
            _ => Unknown,
        }
    }
}

impl std::ops::Not for Verdict {
    type Output = Verdict;

    fn not(self) -> Verdict {
        match self {
            Verdict::Met => Verdict::NotMet,
            Verdict::NotMet => Verdict::Met,
            Verdict::Unknown => Verdict::Unknown,
        }
    }
}

/// The records a fact rests on (`Observation/12` …), shared: every check that reads a fact
/// names its records, and a copy per check was a fifth of `evaluate`'s allocations
/// (docs/benchmarks.md, "Allocation"). Serialised as a plain list.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Sources(std::sync::Arc<[String]>);

impl std::ops::Deref for Sources {
    type Target = [String];

    fn deref(&self) -> &[String] {
        &self.0
    }
}

impl From<Vec<String>> for Sources {
    fn from(v: Vec<String>) -> Self {
        Sources(v.into())
    }
}

impl Serialize for Sources {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter())
    }
}

impl<'de> Deserialize<'de> for Sources {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Vec::<String>::deserialize(d).map(Sources::from)
    }
}

/// One comparison as evaluated: the line a clinician reads to see why.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TraceEntry {
    /// The rule that asked (RF-01, EX1-2, PF-03 …).
    pub rule: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub check: Option<String>,
    pub fact: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
    pub sources: Sources,
    pub op: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameter: Option<String>,
    pub verdict: Verdict,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// The side of the open episode it was read for, when that episode placed the patient
    /// and is not the newest (`Finding::side`): the review page names it beside the newest's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub side: Option<Side>,
}
