//! What the engine reads: clinical records in a neutral shape. The FHIR crate builds them
//! from Observations, Conditions and draft orders; vignettes write them directly.

use serde::{Deserialize, Serialize};
use time::Date;

pub use crate::model::RecordKind;

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Facts {
    pub records: Vec<Record>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Record {
    /// Where it came from, e.g. `Observation/123`; quoted in the trace.
    pub source: String,
    pub kind: RecordKind,
    pub codes: Vec<Code>,
    /// Observation.status, Condition.clinicalStatus or an order's status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// The clinically relevant day: effective day, onset day, authored day.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub date: Option<Date>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<Value>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub components: Vec<Component>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Code {
    pub system: String,
    pub code: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Component {
    pub codes: Vec<Code>,
    pub value: Option<Value>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "lowercase")]
pub enum Value {
    Quantity { value: f64, unit: Option<String> },
    Integer(i64),
    Boolean(bool),
    Coded(Vec<Code>),
}

/// SNOMED CT yes / no, the coded way to say a boolean finding.
pub const SNOMED: &str = "http://snomed.info/sct";
pub const SNOMED_YES: &str = "373066001";
pub const SNOMED_NO: &str = "373067005";
