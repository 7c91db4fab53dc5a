//! The end-to-end suites that can share one process, one module per file: each spawns the
//! real server on a random port with a fresh database, so they need nothing of each other.
//! (Why one binary: `tests/Cargo.toml`.)

mod analytics;
mod apply;
mod audit;
mod bad_input;
mod careplans;
mod cds;
mod ehr_shapes;
mod fetch;
mod fhir_valid;
mod governance;
mod guidelines;
mod health;
mod impact;
mod metrics;
mod publish;
mod security;
mod shadow;
mod smart_mixup;
mod store;
mod take_home;
mod ui;
mod versions;
