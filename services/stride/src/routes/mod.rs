pub mod analytics;
pub mod audit;
pub mod careplans;
pub mod cds;
pub mod fhir;
pub mod guidelines;
pub mod health;
pub mod openapi;
pub mod ui;

use actix_web::web;

/// Every endpoint, in the order they are matched: the API, the staff pages, then the CDS
/// Hooks endpoints (whose CORS scope matches any path, so it comes last).
pub fn routes(cfg: &mut web::ServiceConfig) {
    health::routes(cfg);
    crate::metrics::routes(cfg);
    guidelines::routes(cfg);
    fhir::routes(cfg);
    audit::routes(cfg);
    analytics::routes(cfg);
    careplans::routes(cfg);
    ui::routes(cfg);
    openapi::routes(cfg);
    cds::routes(cfg);
}
