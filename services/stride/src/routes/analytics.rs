//! Card effectiveness and the DSI feedback export for a clinic's CDS committee (scope
//! `analytics.read`): extract the filter, call the use case, write its format.

use actix_web::{get, web, HttpRequest, HttpResponse};
use futures_util::StreamExt;
use serde::Deserialize;
use stride_app::analytics::{self, Filter};

use crate::audit;
use crate::auth::{AnalyticsRead, Staff};
use crate::error::ApiError;
use crate::state::AppState;

#[derive(Deserialize)]
pub struct Params {
    pub from: Option<String>,
    pub to: Option<String>,
    pub guideline: Option<String>,
    pub version: Option<String>,
    pub format: Option<String>,
}

impl Params {
    pub fn filter(&self) -> Result<Filter, ApiError> {
        Filter::parse(
            self.from.as_deref(),
            self.to.as_deref(),
            self.guideline.as_deref(),
            self.version.as_deref(),
        )
        .map_err(ApiError::BadRequest)
    }
}

/// `GET /analytics/cards?from=&to=&guideline=&version=&format=csv|ndjson|fhir`: per rule-set
/// version, card, tenant and month, cards shown, accepted, overridden (by reason) and without
/// feedback; `fhir` is a Bundle of MeasureReports, one per card and month.
#[get("/analytics/cards")]
#[tracing::instrument(name = "analytics cards", skip_all)]
pub async fn cards(
    req: HttpRequest,
    staff: Staff<AnalyticsRead>,
    q: web::Query<Params>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let format = q.format.as_deref().unwrap_or("ndjson");
    if !["csv", "ndjson", "fhir"].contains(&format) {
        return Err(ApiError::BadRequest("format: csv, ndjson or fhir".into()));
    }
    let filter = q.filter()?;
    let actor = audit::actor(&req, &staff.caller);
    let rows = analytics::cards(state.store.as_ref(), &actor, &filter).await?;
    Ok(match format {
        "csv" => HttpResponse::Ok()
            .content_type("text/csv; charset=utf-8")
            .body(analytics::cards_csv(&rows)),
        "fhir" => HttpResponse::Ok()
            .content_type("application/fhir+json")
            .json(analytics::cards_bundle(&rows, &state.catalog)),
        _ => HttpResponse::Ok()
            .content_type("application/x-ndjson")
            .body(analytics::cards_ndjson(&rows)),
    })
}

/// `GET /analytics/feedback?from=&to=&format=csv|ndjson`: every feedback with what the DSI
/// criterion names (intervention, action, feedback, user, date, location).
#[get("/analytics/feedback")]
#[tracing::instrument(name = "analytics feedback", skip_all)]
pub async fn feedback(
    req: HttpRequest,
    staff: Staff<AnalyticsRead>,
    q: web::Query<Params>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let format = q.format.as_deref().unwrap_or("ndjson");
    if !["csv", "ndjson"].contains(&format) {
        return Err(ApiError::BadRequest("format: csv or ndjson".into()));
    }
    let filter = q.filter()?;
    let actor = audit::actor(&req, &staff.caller);
    let csv = format == "csv";
    let lines = analytics::feedback(state.store.clone(), &actor, &filter, csv).await?;
    // Written as read: a failure after the first line ends the body early (logged), as a
    // status can no longer be sent.
    let body = lines.map(|line| {
        line.map(actix_web::web::Bytes::from).map_err(|e| {
            tracing::warn!(error = %e, "the feedback export stopped early");
            ApiError::from(e)
        })
    });
    Ok(HttpResponse::Ok()
        .content_type(if csv {
            "text/csv; charset=utf-8"
        } else {
            "application/x-ndjson"
        })
        .streaming(body))
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(cards).service(feedback);
}
