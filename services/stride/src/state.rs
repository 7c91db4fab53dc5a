//! What every handler can reach: built once by `startup`, shared by every worker.

use std::sync::Arc;

use stride_app::catalog::Catalog;
use stride_store::Store;

use crate::cds::fetch::Fetcher;
use crate::config::Settings;

/// What every handler can reach.
pub struct AppState {
    pub store: Arc<dyn Store>,
    pub catalog: Arc<Catalog>,
    pub settings: Settings,
    pub fetcher: Fetcher,
    pub verifier: Arc<stride_auth::Verifier>,
    pub started: time::OffsetDateTime,
    pub metrics: Arc<crate::metrics::Metrics>,
    /// Processing slots and the queue for them (see `Settings::max_concurrent_hooks`).
    pub admission: crate::admission::Admission,
    /// Whether the database is known to be down (operations then fail fast).
    pub db_health: Arc<stride_store::Health>,
    /// Sign-in starts per client.
    pub sign_ins: crate::admission::PerClient,
    /// Which guideline version answers for whom.
    pub pins: Arc<stride_app::pins::Pins>,
    /// Each tenant's share of the calls in flight.
    pub tenant_share: crate::admission::TenantShare,
    /// Staff sign-in with OpenID Connect, when configured.
    pub oidc: Option<Arc<crate::oidc::Oidc>>,
    /// The client for EHR authorization servers (SMART App Launch).
    pub smart_http: reqwest::Client,
    /// Refused requests on their way to the audit log (see `audit::refused`).
    pub refusals: tokio::sync::mpsc::Sender<crate::audit::Refusal>,
    /// Impact reports being computed for the impact page (their results are kept in the store).
    pub impact_jobs: Arc<stride_app::impact_jobs::Jobs>,
}

/// The application state, for an extractor (handlers take it as `web::Data<AppState>`).
pub fn of(
    req: &actix_web::HttpRequest,
) -> Result<actix_web::web::Data<AppState>, crate::error::ApiError> {
    req.app_data::<actix_web::web::Data<AppState>>()
        .cloned()
        .ok_or_else(|| crate::error::ApiError::Internal("no application state".into()))
}
