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

/// How long readiness waits for the database: under Kubernetes' default probe timeout (1 s), so
/// a busy pool is reported before the probe gives up (whatever acquire time an operator set).
const READY_WAIT: std::time::Duration = std::time::Duration::from_millis(500);

/// How recent an answer from the database keeps a busy replica with an empty pool ready: two
/// of the chart's readiness periods (5 s, `charts/stride/templates/deployment.yaml`), so a
/// probe that lands between two answers of a saturated pool does not take it out, while a
/// replica that gets no connection at all leaves its Service within about 20 s (this, then
/// the chart's two failed probes).
const ANSWERED_LATELY: std::time::Duration = std::time::Duration::from_secs(10);

/// Ready for traffic: the database answers and rule sets are loaded.
#[get("/readyz")]
#[tracing::instrument(name = "readiness", skip_all)]
pub async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    // Busy is not down: every pooled connection in use is load, and failing readiness would
    // take this replica out of its Service while it is busiest and pile its calls onto the
    // others. A server that has died is told apart by the guard, which marks it down; the
    // next probe then answers `Down` here. A replica that holds no connection and has had no
    // answer from the database for a while is not busy but unusable (its role's every slot
    // taken by other sessions). A pool that is merely empty for a moment is not that: sqlx
    // drops an idle connection whose check an acquire abandoned at its deadline, so a
    // saturated pool can hold none between two answers (a CI run found readiness failing so).
    // Kubernetes waits 1 s for a probe: the ping waits less, then the pool's state decides.
    let open = state.store.pool_state().0 > 0 || state.db_health.answered_within(ANSWERED_LATELY);
    let pinged = tokio::time::timeout(READY_WAIT, state.store.ping()).await;
    let answered = matches!(pinged, Ok(Ok(())));
    let db = match pinged {
        Ok(Ok(())) => "pass".to_owned(),
        Ok(Err(e)) if e.is_overloaded() && open => "pass".to_owned(),
        Err(_) if open => "pass".to_owned(),
        Err(_) => {
            tracing::warn!("readiness: no database connection within the probe's wait");
            "fail".to_owned()
        }
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "readiness: database check failed");
            "fail".to_owned()
        }
    };
    // The settings only when the database answered at once (a busy pool would make the probe
    // wait again for them).
    let settings = if answered {
        tokio::time::timeout(READY_WAIT, state.store.describe())
            .await
            .ok()
            .and_then(Result::ok)
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
