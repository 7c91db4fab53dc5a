//! The one crate that knows FHIR resource shapes (fhir-sdk's R4B models, which read and write
//! R4 JSON). Everything else in Stride sees plain Rust types or JSON built here.

pub mod audit_event;
pub mod careplan;
pub mod clinic;
pub mod document;
pub mod identity;
pub mod intake;
pub mod measure;
pub mod orders;
pub mod outcome;
pub mod publish;

pub use outcome::{operation_outcome, IssueCode, Severity};
