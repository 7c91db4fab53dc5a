//! Stride's use cases, without HTTP: what a hook call does (gather, decide, render, record),
//! card feedback, replay and impact, and the guidelines and versions that answer. The web
//! crate extracts and admits a request, calls one of these and maps its error; the command
//! line calls the same functions.

pub mod actor;
pub mod analytics;
pub mod apply;
pub mod attributes;
pub mod cards;
pub mod careplans;
pub mod catalog;
pub mod decision;
pub mod decision_log;
pub mod discovery;
pub mod feedback;
pub mod governance;
pub mod hook;
pub mod impact;
pub mod impact_jobs;
pub mod pdf;
pub mod pins;
pub mod replay;
pub mod review;
pub mod sessions;
pub mod take_home;

/// Microseconds since the epoch: the audit log's clock.
pub fn now_us() -> i64 {
    (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1000) as i64
}

/// Where a guideline version is published (its PlanDefinition's `url|version` resolves here).
pub fn guideline_url(public: &str, id: &str, version: &stride_guideline::RuleSetVersion) -> String {
    format!("{public}/guidelines/{id}/{version}")
}
