//! Prometheus metrics at `GET /metrics`. Labels are route templates, statuses, decision ids and
//! refusal reasons: never a path, a patient or a token.

use actix_web::{get, web, HttpResponse};
use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder,
};

use crate::state::AppState;

/// Latency buckets in seconds: a hook call is budgeted in milliseconds.
const BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

pub struct Metrics {
    registry: Registry,
    pub http_requests: IntCounterVec,
    pub http_latency: HistogramVec,
    pub decisions: IntCounterVec,
    pub auth_refusals: IntCounterVec,
    pub prefetch_fetch: HistogramVec,
    pub store_write: HistogramVec,
    pub db_pool: IntGaugeVec,
    pub audit_refusals_dropped: prometheus::IntCounter,
    pub hooks_shed: prometheus::IntCounter,
    pub hooks_refused: IntCounterVec,
    pub db_up: prometheus::IntGauge,
    /// Brought up to the store's own count at each scrape.
    pub db_fast_failures: prometheus::IntCounter,
    pub db_overloads: prometheus::IntCounter,
    pub prefetch_failures: IntCounterVec,
    pub shadow_evaluations: IntCounterVec,
}

impl Metrics {
    pub fn new() -> Metrics {
        let registry = Registry::new_custom(Some("stride".into()), None).expect("a valid prefix");
        let counter = |name: &str, help: &str, labels: &[&str]| {
            let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
            registry
                .register(Box::new(c.clone()))
                .expect("registered once");
            c
        };
        let histogram = |name: &str, help: &str, labels: &[&str]| {
            let h = HistogramVec::new(
                HistogramOpts::new(name, help).buckets(BUCKETS.to_vec()),
                labels,
            )
            .expect("valid metric");
            registry
                .register(Box::new(h.clone()))
                .expect("registered once");
            h
        };
        let http_requests = counter(
            "http_requests_total",
            "HTTP requests by route template, method and status",
            &["route", "method", "status"],
        );
        let http_latency = histogram(
            "http_request_duration_seconds",
            "HTTP request latency by route template, method and status",
            &["route", "method", "status"],
        );
        let decisions = counter(
            "decisions_total",
            "Decision ids produced by hook calls",
            &["decision"],
        );
        let auth_refusals = counter(
            "auth_refusals_total",
            "Refused tokens by reason",
            &["reason"],
        );
        let prefetch_fetch = histogram(
            "prefetch_fetch_duration_seconds",
            "Fallback fetches from the EHR's FHIR server",
            &["outcome"],
        );
        let store_write = histogram(
            "store_write_duration_seconds",
            "Database writes (CarePlan + cards + audit entry, audit appends)",
            &["operation"],
        );
        let db_pool = IntGaugeVec::new(
            Opts::new("db_pool_connections", "Database pool connections by state"),
            &["state"],
        )
        .expect("valid metric");
        registry
            .register(Box::new(db_pool.clone()))
            .expect("registered once");
        let audit_refusals_dropped = prometheus::IntCounter::new(
            "audit_refusals_dropped_total",
            "Refused requests not written to the audit log because its refusal queue was full",
        )
        .expect("valid metric");
        registry
            .register(Box::new(audit_refusals_dropped.clone()))
            .expect("registered once");
        let hooks_shed = prometheus::IntCounter::new(
            "hooks_shed_total",
            "Hook calls answered 503 because every processing slot stayed busy for the queue timeout",
        )
        .expect("valid metric");
        registry
            .register(Box::new(hooks_shed.clone()))
            .expect("registered once");
        let hooks_refused = counter(
            "hooks_refused_total",
            "Hook calls answered 503 before evaluation, by reason (queue_full, queue_timeout, tenant_share, fetch_busy)",
            &["reason"],
        );
        let prefetch_failures = counter(
            "prefetch_fetch_failures_total",
            "Fallback fetches that failed or were not attempted, by reason (the caller sees one generic 412)",
            &["reason"],
        );
        let shadow_evaluations = counter(
            "shadow_evaluations_total",
            "Hook calls also decided by a candidate version in shadow, by whether its decision differed (same, differs)",
            &["outcome"],
        );
        let gauge = |name: &str, help: &str| {
            let g = prometheus::IntGauge::new(name, help).expect("valid metric");
            registry
                .register(Box::new(g.clone()))
                .expect("registered once");
            g
        };
        let db_up = gauge(
            "db_up",
            "1 while the database answers; 0 while it is known to be down and calls fail fast",
        );
        let db_fast_failures = prometheus::IntCounter::new(
            "db_fast_failures_total",
            "Database operations refused at once because the database was known to be down",
        )
        .expect("valid metric");
        registry
            .register(Box::new(db_fast_failures.clone()))
            .expect("registered once");
        let db_overloads = prometheus::IntCounter::new(
            "db_overloaded_total",
            "Database operations that found every connection busy (or the SQLite file locked): load, answered 503 overloaded, never an outage",
        )
        .expect("valid metric");
        registry
            .register(Box::new(db_overloads.clone()))
            .expect("registered once");
        Metrics {
            db_up,
            db_fast_failures,
            db_overloads,
            hooks_shed,
            hooks_refused,
            prefetch_failures,
            shadow_evaluations,
            registry,
            http_requests,
            http_latency,
            decisions,
            auth_refusals,
            prefetch_fetch,
            store_write,
            db_pool,
            audit_refusals_dropped,
        }
    }

    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut buf)
            .expect("text encoding cannot fail");
        String::from_utf8(buf).unwrap_or_default()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

#[get("/metrics")]
pub async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    let (size, idle) = state.store.pool_state();
    state
        .metrics
        .db_pool
        .with_label_values(&["open"])
        .set(i64::from(size));
    state
        .metrics
        .db_pool
        .with_label_values(&["idle"])
        .set(idle as i64);
    state
        .metrics
        .db_up
        .set(i64::from(!state.db_health.is_down()));
    let counted = state.metrics.db_fast_failures.get();
    state
        .metrics
        .db_fast_failures
        .inc_by(state.db_health.fast_failures().saturating_sub(counted));
    let counted = state.metrics.db_overloads.get();
    state
        .metrics
        .db_overloads
        .inc_by(state.db_health.overloads().saturating_sub(counted));
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(state.metrics.render())
}

/// This module's endpoints (the order is the order they are matched in).
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(metrics);
}
