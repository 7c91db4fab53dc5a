//! The Stride service: configuration, HTTP surface and command line, on top of the
//! guideline engine, the FHIR crate and the store.

pub mod admission;
pub mod audit;
pub mod audit_cmd;
pub mod auth;
pub mod body;
pub mod cds;
pub mod cli;
pub mod config;
pub mod dev;
pub mod error;
pub mod metrics;
pub mod oidc;
pub mod params;
pub mod routes;
pub mod rules_cmd;
pub mod smart;
pub mod startup;
pub mod state;
pub mod telemetry;
