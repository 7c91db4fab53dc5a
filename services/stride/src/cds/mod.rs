//! CDS Hooks 2.0: the services Stride offers, how a hook request is read, how missing
//! prefetch data is fetched, and how a decision becomes cards.

pub mod cards;
pub mod egress;
pub mod fetch;
pub use stride_hooks::request;
pub mod services;
