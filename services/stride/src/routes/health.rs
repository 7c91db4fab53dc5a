//! Liveness and readiness for orchestrators (Kubernetes probes).

use actix_web::http::header;
use actix_web::{get, web, HttpResponse};
use serde_json::json;

use crate::state::AppState;

/// The process is alive and serving HTTP. Never touches the database.
#[get("/healthz")]
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({ "status": "pass" }))
}

/// Ready for traffic: the database answers and rule sets are loaded.
#[get("/readyz")]
#[tracing::instrument(name = "readiness", skip_all)]
pub async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    let db = match state.store.ping().await {
        Ok(()) => "pass".to_owned(),
        // Every pooled connection busy is load, not an outage: failing readiness would take
        // this replica out of the Service while it is busiest and pile its calls onto the
        // others. A server that has died is told apart by the guard, which marks it down;
        // the next probe then answers `Down` here.
        Err(e) if e.is_overloaded() => "pass".to_owned(),
        Err(e) => {
            tracing::warn!(error = %e, "readiness: database check failed");
            "fail".to_owned()
        }
    };
    let settings = if db == "pass" {
        state.store.describe().await.ok()
    } else {
        None
    };
    let rules = if state.catalog.is_empty() {
        "fail"
    } else {
        "pass"
    };
    let ok = db == "pass" && rules == "pass";
    let body = json!({
        "status": if ok { "pass" } else { "fail" },
        "checks": {
            "database": { "status": db, "backend": state.store.backend().name(), "settings": settings },
            "rule_sets": { "status": rules, "loaded": state.catalog.len() },
        }
    });
    if ok {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable()
            .insert_header((header::RETRY_AFTER, "5"))
            .json(body)
    }
}

/// This module's endpoints (the order is the order they are matched in).
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(healthz).service(readyz);
}
