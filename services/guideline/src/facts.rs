//! What the engine reads: clinical records in a neutral shape. The FHIR crate builds them
//! from Observations, Conditions and draft orders; vignettes write them directly.

use serde::{Deserialize, Serialize};
use time::Date;

pub use crate::model::RecordKind;

// The audit log stores facts as canonical JSON (object keys sorted) and writes them straight
// from these types: every struct and variant below declares its fields in sorted order.

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Facts {
    /// The phase clinic staff approved the patient into, when there is an approved plan.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase_state: Option<PhaseState>,
    pub records: Vec<Record>,
}

/// An approved plan's phase and the day it was approved: the patient's current phase and its
/// entry, as clinic staff decided them (rule sets with `approved_phase_holds`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PhaseState {
    pub phase: String,
    pub since: Date,
    /// The approved CarePlan, e.g. `CarePlan/…`; quoted in the trace.
    pub source: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Record {
    /// The instant the record's day was read from, when it has a time (an effective instant,
    /// a period's end): two records of one fact less than an hour apart are one event, such as
    /// one run logged by a watch and by a phone (COVERAGE.md D101). Vignettes write none.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "time::serde::rfc3339::option"
    )]
    pub at: Option<time::OffsetDateTime>,
    pub codes: Vec<Code>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub components: Vec<Component>,
    /// The clinically relevant day: effective day (the end of a period), onset day, authored
    /// day.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub date: Option<Date>,
    /// When the record stopped holding: a Condition's abatement.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end: Option<Date>,
    pub kind: RecordKind,
    /// Body sites the record names (`bodySite`): the episode it belongs to.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sites: Vec<Code>,
    /// Where it came from, e.g. `Observation/123`; quoted in the trace.
    pub source: String,
    /// The first day of a record over a period (`effectivePeriod.start`, or the earliest day a
    /// partial date can mean): it holds on every day from here to `date`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start: Option<Date>,
    /// Observation.status, Condition.clinicalStatus or an order's status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// What an order orders in words (`code.text`, the codings' displays), or what a diagnosis
    /// given in words only is, lowercased: read only where no code of the record is (a value
    /// set's `words`). Kept for orders and for uncoded diagnoses alone: the places where a
    /// clinician's words are all that says what a record is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<Value>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, Hash)]
pub struct Code {
    pub code: String,
    pub system: String,
}

/// By system, then code (the order FHIR searches and traces list codes in).
impl Ord for Code {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (&self.system, &self.code).cmp(&(&other.system, &other.code))
    }
}

impl PartialOrd for Code {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Component {
    pub codes: Vec<Code>,
    pub value: Option<Value>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "lowercase")]
pub enum Value {
    Quantity {
        unit: Option<String>,
        value: f64,
    },
    Integer(i64),
    Boolean(bool),
    Coded(Vec<Code>),
    /// A quantity with a comparator (`< 5 cm`): a bound on the value, not the value.
    Bound {
        comparator: String,
        unit: Option<String>,
        value: f64,
    },
    /// A value known only to lie in a range (`valueRange`): each end, when given, a quantity in
    /// its own unit (2 cm to 40 mm). Read as a bound on both sides. (`high` is declared
    /// first: the fields serialise in sorted order, the canonical form the audit digest
    /// covers.)
    Range {
        high: Option<(f64, Option<String>)>,
        low: Option<(f64, Option<String>)>,
    },
    /// A value of a type the engine does not read (free text, a range …), by its FHIR type
    /// name only: it says something was recorded, never what (and carries no text).
    Other(String),
}

/// SNOMED CT yes / no, the coded way to say a boolean finding.
pub const SNOMED: &str = "http://snomed.info/sct";
pub const SNOMED_YES: &str = "373066001";
pub const SNOMED_NO: &str = "373067005";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn facts_serialise_with_their_keys_already_sorted() {
        let code = |c: &str| Code {
            code: c.into(),
            system: "http://example.org/cs".into(),
        };
        let facts = Facts {
            phase_state: None,
            records: vec![Record {
                at: None,
                text: None,
                end: None,
                sites: Vec::new(),
                start: None,
                codes: vec![code("a")],
                components: vec![Component {
                    codes: vec![code("b")],
                    value: Some(Value::Quantity {
                        unit: Some("km".into()),
                        value: 2.5,
                    }),
                }],
                date: Some(time::macros::date!(2026 - 11 - 27)),
                kind: RecordKind::Observation,
                source: "Observation/1".into(),
                status: Some("final".into()),
                value: Some(Value::Coded(vec![code("c")])),
            }],
        };
        let direct = serde_json::to_string(&facts).unwrap();
        // A JSON value's map is sorted: the canonical form the audit digest covers.
        let sorted = serde_json::to_value(&facts).unwrap().to_string();
        assert_eq!(direct, sorted);
        assert!(direct.contains(r#""components""#) && direct.contains(r#""unit":"km""#));
    }
}
