//! Stride's guideline engine: versioned rule sets as data, and the pure function that
//! evaluates them. No I/O, no FHIR types, no HTTP: the service and the FHIR crate build on it.

pub mod bound;
pub mod course;
pub mod decision;
pub mod display;
pub mod evaluate;
pub mod facts;
pub mod model;
mod panels;
mod resolve;
pub mod ruleset;
pub mod terminology;
pub mod units;
pub mod version;
pub mod vignettes;

pub use decision::{Decision, Verdict};
pub use evaluate::{evaluate, evaluate_without, reads_any};
pub use facts::{Code, Component, Facts, Record, Value};
pub use resolve::series;
pub use ruleset::{LoadError, RuleSet};
pub use version::RuleSetVersion;
