//! Test vignettes shipped beside each rule set: inputs → the expected decision.
//! `stride rules test` and the crate's own tests run them.

use std::collections::{BTreeMap, BTreeSet};

use serde::Deserialize;
use time::{Date, Duration};

use crate::decision::Decision;
use crate::evaluate::evaluate;
use crate::facts::{Code, Component, Facts, Record, RecordKind, Value};
use crate::model::Side;
use crate::ruleset::RuleSet;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VignetteFile {
    pub vignettes: Vec<Vignette>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Vignette {
    pub name: String,
    #[serde(default)]
    pub covers: Vec<String>,
    pub as_of: Date,
    #[serde(default)]
    pub records: Vec<VRecord>,
    /// An approved CarePlan: the phase staff approved and its day (relative to `as_of`).
    #[serde(default)]
    pub approved: Option<VApproved>,
    pub expect: Expect,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VApproved {
    pub phase: String,
    pub day: i64,
}

/// A record, dated in days relative to `as_of`; `repeat` makes one per day over a range.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VRecord {
    #[serde(default)]
    pub id: Option<String>,
    pub kind: RecordKind,
    pub code: String,
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub day: Option<i64>,
    /// Inclusive day range `[from, to]` with an optional step: one record per day.
    #[serde(default)]
    pub days: Option<DayRange>,
    #[serde(default)]
    pub value: Option<VValue>,
    #[serde(default)]
    pub components: Vec<VComponent>,
    /// A body site (`alias#code`), e.g. the side of a Condition.
    #[serde(default)]
    pub site: Option<String>,
    /// The first day of a record over a period (`day` is its last).
    #[serde(default)]
    pub from: Option<i64>,
    /// A Condition's abatement day.
    #[serde(default)]
    pub end: Option<i64>,
    /// What an order says it orders in words (`code.text`), e.g. an EHR's own orderable.
    #[serde(default)]
    pub text: Option<String>,
    /// The time of day it was recorded (`HH:MM`, UTC), for records of one event: a run
    /// logged by two devices minutes apart. Without it a record has a day only.
    #[serde(default)]
    pub time: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DayRange {
    pub from: i64,
    pub to: i64,
    #[serde(default = "one")]
    pub step: i64,
}

fn one() -> i64 {
    1
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VComponent {
    pub code: String,
    pub value: VValue,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum VValue {
    Boolean(bool),
    Integer(i64),
    /// A quantity with a comparator: `{bound: "<", quantity: 5, unit: cm}` (before `Quantity`,
    /// which would otherwise take it without its comparator).
    Bound {
        bound: String,
        quantity: f64,
        unit: Option<String>,
    },
    Quantity {
        quantity: f64,
        unit: Option<String>,
    },
    /// A range (`valueRange`) with both ends: `{low: 2, high: 4, unit: cm}`.
    Range {
        low: f64,
        high: f64,
        unit: Option<String>,
    },
    Coded {
        coded: String,
    },
    /// Free text (its words are not kept).
    Text {
        text: String,
    },
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    pub applies: Option<bool>,
    pub phase: Option<String>,
    /// Exact sets: a finding that fires unexpectedly fails the vignette.
    pub red_flags: Option<Vec<String>>,
    pub warnings: Option<Vec<String>>,
    pub pitfalls: Option<Vec<String>>,
    /// Exact set of the pitfalls the phase card names (`phase_notes`).
    pub phase_notes: Option<Vec<String>>,
    /// Subsets: these must be present.
    #[serde(default)]
    pub unassessed: Vec<String>,
    /// Pitfalls listed as not checked (subset: these must be present).
    #[serde(default)]
    pub unassessed_pitfalls: Vec<String>,
    /// Red flags that must be decided (fired or ruled out), not left unassessed.
    #[serde(default)]
    pub not_unassessed: Vec<String>,
    #[serde(default)]
    pub missing: Vec<String>,
    #[serde(default)]
    pub ignored: Vec<String>,
    #[serde(default)]
    pub activities: Vec<String>,
    #[serde(default)]
    pub not_activities: Vec<String>,
    pub regression: Option<bool>,
    /// Red flags that only a preliminary record would fire (at least these).
    #[serde(default)]
    pub preliminary: Vec<String>,
    /// Red flags whose finding names a conflict of records (at least these).
    #[serde(default)]
    pub conflicts: Vec<String>,
    /// Whether the episode is named stale.
    pub stale: Option<bool>,
    /// Exact: the findings and undecided rules carried from another open episode, each with
    /// that episode's side (`Finding::side`); every other one names no side.
    pub episode_sides: Option<BTreeMap<String, Side>>,
}

#[derive(Debug)]
pub struct Outcome {
    pub name: String,
    pub failures: Vec<String>,
    pub decision: Decision,
}

pub fn parse(text: &str) -> Result<VignetteFile, String> {
    serde_yaml::from_str(text).map_err(|e| e.to_string())
}

impl Vignette {
    pub fn facts(&self, rs: &RuleSet) -> Result<Facts, String> {
        let code = |pattern: &str| -> Result<Code, String> {
            let (alias, code) = pattern
                .split_once('#')
                .ok_or_else(|| format!("code `{pattern}` is not alias#code"))?;
            // `decision#…`: a decision id of the rule set (a clinician's recorded decision).
            let system = match alias {
                "decision" => Some(&rs.doc.decision_system),
                _ => rs.doc.systems.get(alias),
            }
            .ok_or_else(|| format!("unknown alias `{alias}`"))?;
            Ok(Code {
                system: system.clone(),
                code: code.to_owned(),
            })
        };
        let value = |v: &VValue| -> Result<Value, String> {
            Ok(match v {
                VValue::Boolean(b) => Value::Boolean(*b),
                VValue::Integer(i) => Value::Integer(*i),
                VValue::Quantity { quantity, unit } => Value::Quantity {
                    value: *quantity,
                    unit: unit.clone(),
                },
                VValue::Coded { coded } => Value::Coded(vec![code(coded)?]),
                VValue::Bound {
                    bound,
                    quantity,
                    unit,
                } => Value::Bound {
                    comparator: bound.clone(),
                    unit: unit.clone(),
                    value: *quantity,
                },
                VValue::Range { low, high, unit } => Value::Range {
                    low: Some((*low, unit.clone())),
                    high: Some((*high, unit.clone())),
                },
                VValue::Text { .. } => Value::Other("string".into()),
            })
        };
        let mut records = Vec::new();
        for (i, r) in self.records.iter().enumerate() {
            let days: Vec<Option<i64>> = match (&r.days, r.day) {
                (Some(range), None) => (range.from..=range.to)
                    .step_by(range.step.max(1) as usize)
                    .map(Some)
                    .collect(),
                (None, day) => vec![day],
                (Some(_), Some(_)) => return Err(format!("record {i}: both day and days")),
            };
            // `status: none` is a record without one (an encounter diagnosis).
            let status = match r.status.as_deref() {
                Some("none") => None,
                Some(s) => Some(s.to_owned()),
                None => match r.kind {
                    RecordKind::Observation | RecordKind::Report => Some("final"),
                    RecordKind::Condition => Some("active"),
                    RecordKind::Order => Some("draft"),
                    RecordKind::Patient | RecordKind::Decision => None,
                }
                .map(str::to_owned),
            };
            let sites = r
                .site
                .as_deref()
                .map(code)
                .transpose()?
                .into_iter()
                .collect::<Vec<_>>();
            let components = r
                .components
                .iter()
                .map(|c| {
                    Ok(Component {
                        codes: vec![code(&c.code)?],
                        value: Some(value(&c.value)?),
                    })
                })
                .collect::<Result<Vec<_>, String>>()?;
            let time = r
                .time
                .as_deref()
                .map(|t| {
                    time::Time::parse(t, time::macros::format_description!("[hour]:[minute]"))
                        .map_err(|e| format!("time {t:?}: {e}"))
                })
                .transpose()?;
            for (j, day) in days.iter().enumerate() {
                let base =
                    r.id.clone()
                        .unwrap_or_else(|| format!("{}/v{i}", kind_name(r.kind)));
                let source = if days.len() > 1 {
                    format!("{base}-{j}")
                } else {
                    base
                };
                let date = day.map(|d| self.as_of + Duration::days(d));
                records.push(Record {
                    at: date.zip(time).map(|(d, t)| d.with_time(t).assume_utc()),
                    text: r.text.as_ref().map(|t| t.to_lowercase()),
                    end: r.end.map(|d| self.as_of + Duration::days(d)),
                    sites: sites.clone(),
                    start: r.from.map(|d| self.as_of + Duration::days(d)),
                    source,
                    kind: r.kind,
                    // `code: ""`: a record given in words only (`text`), as EHRs send a
                    // diagnosis typed as text.
                    codes: if r.code.is_empty() {
                        Vec::new()
                    } else {
                        vec![code(&r.code)?]
                    },
                    status: status.clone(),
                    date,
                    value: r.value.as_ref().map(value).transpose()?,
                    components: components.clone(),
                });
            }
        }
        let phase_state = self.approved.as_ref().map(|a| crate::facts::PhaseState {
            phase: a.phase.clone(),
            since: self.as_of + Duration::days(a.day),
            source: "CarePlan/approved".into(),
        });
        Ok(Facts {
            phase_state,
            records,
        })
    }

    pub fn run(&self, rs: &RuleSet) -> Result<Outcome, String> {
        let facts = self.facts(rs)?;
        let decision = evaluate(rs, &facts, self.as_of);
        let failures = self.expect.check(&decision);
        Ok(Outcome {
            name: self.name.clone(),
            failures,
            decision,
        })
    }
}

fn kind_name(k: RecordKind) -> &'static str {
    match k {
        RecordKind::Observation => "Observation",
        RecordKind::Condition => "Condition",
        RecordKind::Order => "ServiceRequest",
        RecordKind::Patient => "Patient",
        RecordKind::Report => "DiagnosticReport",
        RecordKind::Decision => "Feedback",
    }
}

impl Expect {
    fn check(&self, d: &Decision) -> Vec<String> {
        let mut f = Vec::new();
        if let Some(a) = self.applies {
            if a != d.applies {
                f.push(format!("applies: expected {a}, got {}", d.applies));
            }
            // CONTRACT: no phase card when the guideline does not apply.
            if !a && d.phase.is_some() {
                f.push(format!(
                    "phase: expected none (guideline does not apply), got {:?}",
                    d.phase
                ));
            }
        }
        if let Some(p) = &self.phase {
            if d.phase.as_deref() != Some(p.as_str()) {
                f.push(format!("phase: expected {p}, got {:?}", d.phase));
            }
        }
        let ids = |fs: &[crate::decision::Finding]| {
            fs.iter().map(|x| x.id.clone()).collect::<BTreeSet<_>>()
        };
        for (name, want, got) in [
            ("red_flags", &self.red_flags, ids(&d.red_flags)),
            ("warnings", &self.warnings, ids(&d.warnings)),
            ("pitfalls", &self.pitfalls, ids(&d.pitfalls)),
            ("phase_notes", &self.phase_notes, ids(&d.phase_notes)),
        ] {
            if let Some(want) = want {
                let want: BTreeSet<String> = want.iter().cloned().collect();
                if want != got {
                    f.push(format!("{name}: expected {want:?}, got {got:?}"));
                }
            }
        }
        let subset = |name: &str, want: &[String], got: BTreeSet<String>, f: &mut Vec<String>| {
            for w in want {
                if !got.contains(w) {
                    f.push(format!("{name}: expected {w} among {got:?}"));
                }
            }
        };
        subset(
            "unassessed_pitfalls",
            &self.unassessed_pitfalls,
            d.unassessed_pitfalls.iter().map(|u| u.id.clone()).collect(),
            &mut f,
        );
        subset(
            "unassessed",
            &self.unassessed,
            d.unassessed_red_flags
                .iter()
                .map(|u| u.id.clone())
                .collect(),
            &mut f,
        );
        if let Some(want) = &self.episode_sides {
            let got: BTreeMap<String, Side> = d
                .red_flags
                .iter()
                .chain(&d.warnings)
                .chain(&d.pitfalls)
                .filter_map(|x| Some((x.id.clone(), x.side?)))
                .chain(
                    d.unassessed_red_flags
                        .iter()
                        .chain(&d.unassessed_pitfalls)
                        .filter_map(|u| Some((u.id.clone(), u.side?))),
                )
                .collect();
            if *want != got {
                f.push(format!("episode_sides: expected {want:?}, got {got:?}"));
            }
        }
        for n in &self.not_unassessed {
            if d.unassessed_red_flags.iter().any(|u| &u.id == n) {
                f.push(format!("unassessed: {n} should have been decided"));
            }
        }
        subset(
            "missing",
            &self.missing,
            d.missing.iter().map(|m| m.fact.clone()).collect(),
            &mut f,
        );
        subset(
            "ignored",
            &self.ignored,
            d.ignored.iter().map(|i| i.source.clone()).collect(),
            &mut f,
        );
        let acts: BTreeSet<String> = d
            .activities
            .iter()
            .chain(&d.rehab)
            .map(|a| a.id.clone())
            .collect();
        subset("activities", &self.activities, acts.clone(), &mut f);
        for n in &self.not_activities {
            if acts.contains(n) {
                f.push(format!("activities: {n} should not be prescribed"));
            }
        }
        subset(
            "preliminary",
            &self.preliminary,
            d.preliminary_red_flags
                .iter()
                .map(|p| p.id.clone())
                .collect(),
            &mut f,
        );
        subset(
            "conflicts",
            &self.conflicts,
            d.red_flags
                .iter()
                .filter(|r| !r.conflicts.is_empty())
                .map(|r| r.id.clone())
                .collect(),
            &mut f,
        );
        if let Some(st) = self.stale {
            if st != d.stale_episode.is_some() {
                f.push(format!("stale: expected {st}, got {:?}", d.stale_episode));
            }
        }
        if let Some(r) = self.regression {
            if r != d.regression.is_some() {
                f.push(format!(
                    "regression: expected {r}, got {:?}",
                    d.regression.as_ref().map(|x| x.resolved)
                ));
            }
        }
        f
    }
}
