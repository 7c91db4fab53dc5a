//! CDS Hooks 2.0 at the edge: how a hook request is read and how missing prefetch data is
//! fetched from the EHR's FHIR server (the use case itself is `stride_app::hook`).

pub mod egress;
pub mod ehr;
pub mod fetch;
pub use stride_hooks::request;
