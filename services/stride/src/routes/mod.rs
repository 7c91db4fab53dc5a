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

/// Every endpoint, in the order they are matched: the CDS Hooks endpoints first (the hot
/// path, under their own prefix and CORS), then the API and the staff pages.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cds::routes(cfg);
    health::routes(cfg);
    crate::metrics::routes(cfg);
    guidelines::routes(cfg);
    fhir::routes(cfg);
    audit::routes(cfg);
    analytics::routes(cfg);
    careplans::routes(cfg);
    ui::routes(cfg);
    openapi::routes(cfg);
}
