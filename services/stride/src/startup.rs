//! Build the whole application from settings. `main` and the tests both go through here,
//! so every integration test drives the real server.

use std::net::TcpListener;
use std::sync::Arc;

use actix_web::dev::{Server, ServerHandle, Service};

/// How often activations are read back from the store: another replica's activation answers
/// here within this time (one small indexed read).
const ACTIVATIONS_REFRESH: std::time::Duration = std::time::Duration::from_secs(10);
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::{web, App, HttpMessage, HttpServer};
use stride_store::{PoolOptions, Store};
use tracing_actix_web::{RequestId, TracingLogger};

use crate::cds::fetch::Fetcher;
use crate::config::Settings;
use crate::error::ApiError;
use crate::routes;
use crate::state::AppState;
use crate::telemetry::StrideRootSpan;
use stride_app::catalog::{Catalog, CatalogError};

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("database {url}: {source}")]
    Database {
        url: String,
        source: stride_store::StoreError,
    },
    #[error("rule sets: {0}")]
    Catalog(#[from] CatalogError),
    #[error("STRIDE_TRUST_FILE: {0}")]
    Trust(#[from] stride_auth::TrustError),
    #[error("STRIDE_OIDC_ISSUER {0} must be listed as a `staff` issuer in the trust file (its keys verify the ID tokens)")]
    OidcIssuer(String),
    #[error("guideline versions: {0}")]
    Pins(String),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
}

pub struct Application {
    port: u16,
    server: Server,
    store: Arc<dyn Store>,
}

fn pool_options(settings: &Settings) -> PoolOptions {
    PoolOptions {
        max_connections: settings.db_max_connections,
        statement_timeout: settings.db_statement_timeout,
        acquire_timeout: settings.db_acquire_timeout,
        sealer: settings.audit_keys.as_ref().and_then(|k| k.sealer.clone()),
    }
}

/// Open the database and apply migrations: what `serve` does first and `migrate` does alone.
pub async fn open_store(settings: &Settings) -> Result<Arc<dyn Store>, StartError> {
    open(settings, true).await
}

/// Open the database without changing it, and check that its schema is the one this build needs.
pub async fn connect_checked(settings: &Settings) -> Result<Arc<dyn Store>, StartError> {
    open(settings, false).await
}

async fn open(settings: &Settings, migrate: bool) -> Result<Arc<dyn Store>, StartError> {
    let url = settings.database.redacted();
    let failed = |source| StartError::Database {
        url: url.clone(),
        source,
    };
    let store = stride_store::connect(settings.database.as_str(), &pool_options(settings))
        .await
        .map_err(failed)?;
    let ready = if migrate {
        store.migrate().await
    } else {
        store.check_schema().await
    };
    ready.map_err(failed)?;
    Ok(store)
}

impl Application {
    pub async fn build(settings: Settings) -> Result<Application, StartError> {
        // Every page and API answer gets HSTS when callers reach Stride over https.
        let hsts = settings.public_url.as_str().starts_with("https://");
        let catalog = Arc::new(Catalog::load(&settings.guidelines_dir)?);
        let verifier = Arc::new(verifier(&settings)?);
        // What an operator registers at each EHR: its own redirect URI (the OAuth mix-up).
        for issuer in verifier.issuers() {
            if let Some(smart) = &issuer.smart {
                tracing::info!(
                    fhir_base = smart.iss(),
                    redirect_uri = %format!(
                        "{}{}/{}",
                        settings.public_url.as_str(),
                        crate::routes::ui::launch::CALLBACK_PATH,
                        issuer.smart_callback_key()
                    ),
                    "SMART app registration: the redirect URI to register at this EHR"
                );
            }
        }
        let pins = stride_app::pins::Pins::new(
            &catalog,
            &settings.guideline_versions,
            &settings.shadow_versions,
            &verifier,
        )
        .map_err(StartError::Pins)?;
        let oidc = match &settings.oidc {
            Some(o) if verifier.issuer_kind(&o.issuer) != Some(stride_auth::Kind::Staff) => {
                return Err(StartError::OidcIssuer(o.issuer.clone()))
            }
            Some(o) => Some(Arc::new(crate::oidc::Oidc::new(
                o.clone(),
                settings.public_url.as_str(),
                settings.public_url.is_loopback(),
            ))),
            None => None,
        };
        let store = if settings.migrate_on_start {
            open_store(&settings).await?
        } else {
            connect_checked(&settings).await?
        };
        // The versions clinics' sign-offs put in force answer first.
        let activations = store
            .activations()
            .await
            .map_err(|source| StartError::Database {
                url: settings.database.redacted(),
                source,
            })?;
        pins.load_activations(&catalog, &activations);
        // A change of the version in force is on the record before the first call it answers.
        let changed = pins
            .record_changes(&catalog, store.as_ref())
            .await
            .map_err(|source| StartError::Database {
                url: settings.database.redacted(),
                source,
            })?;
        if changed > 0 {
            tracing::info!(changed, "guideline versions in force changed (audited)");
        }
        let guarded = Arc::new(stride_store::Guarded::new(store));
        let db_health = guarded.health();
        let store: Arc<dyn Store> = guarded;
        // Another replica's activation takes effect here within seconds, without a restart.
        let pins = Arc::new(pins);
        let (refresh_pins, refresh_catalog, refresh_store) =
            (pins.clone(), catalog.clone(), store.clone());
        tokio::spawn(async move {
            // Loaded at start already: the first read back is one period from now.
            let mut every = tokio::time::interval_at(
                tokio::time::Instant::now() + ACTIVATIONS_REFRESH,
                ACTIVATIONS_REFRESH,
            );
            loop {
                every.tick().await;
                match refresh_store.activations().await {
                    Ok(all) => {
                        refresh_pins.load_activations(&refresh_catalog, &all);
                    }
                    Err(e) => tracing::warn!(error = %e, "activations not read back (tried again)"),
                }
            }
        });
        // Upkeep that cannot wait for the next deployment: this month's audit partitions.
        let upkeep = store.clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(std::time::Duration::from_secs(6 * 3600));
            loop {
                every.tick().await;
                upkeep.maintain().await;
            }
        });
        let listener = TcpListener::bind(settings.listen).map_err(|source| StartError::Bind {
            addr: settings.listen.to_string(),
            source,
        })?;
        let port = listener
            .local_addr()
            .map_err(|source| StartError::Bind {
                addr: settings.listen.to_string(),
                source,
            })?
            .port();
        tracing::info!(
            port,
            backend = store.backend().name(),
            rule_sets = catalog.len(),
            public_url = settings.public_url.as_str(),
            "stride listening"
        );
        let shutdown = settings.shutdown_timeout.as_secs();
        let workers = settings.workers;
        let limit = settings.max_body_bytes;
        let admission = crate::admission::Admission::new(
            settings.max_concurrent_hooks,
            settings.hook_queue_max,
            settings.hook_queue_timeout,
        );
        let fetcher = Fetcher::new(settings.fetch_max_bytes, settings.fetch_max_bytes_in_flight);
        let tenant_share = crate::admission::TenantShare::new(settings.max_calls_per_tenant);
        let metrics = Arc::new(crate::metrics::Metrics::new());
        let refusals = crate::audit::refusal_writer(
            store.clone(),
            settings.refusal_audit_interval,
            metrics.audit_refusals_dropped.clone(),
        );
        let sign_ins = crate::admission::PerClient::per_minute(settings.sign_in_per_minute);
        let impact_jobs = Arc::new(stride_app::impact_jobs::Jobs::new(
            store.clone(),
            catalog.clone(),
            pins.clone(),
        ));
        let state = web::Data::new(AppState {
            store: store.clone(),
            catalog,
            settings,
            fetcher,
            tenant_share,
            pins,
            sign_ins,
            db_health,
            verifier,
            oidc,
            smart_http: crate::oidc::http_client(),
            admission,
            started: time::OffsetDateTime::now_utc(),
            metrics,
            refusals,
            impact_jobs,
        });
        // Every page and API answer: no framing anywhere (X-Frame-Options beside the pages'
        // CSP frame-ancestors, for browsers that only know the header), no MIME sniffing, and
        // HSTS (above).
        let server = HttpServer::new(move || {
            let mut security = actix_web::middleware::DefaultHeaders::new()
                .add(("x-frame-options", "DENY"))
                .add(("x-content-type-options", "nosniff"));
            if hsts {
                security = security.add((
                    "strict-transport-security",
                    "max-age=31536000; includeSubDomains",
                ));
            }
            App::new()
                .wrap(security)
                .app_data(state.clone())
                .app_data(web::PayloadConfig::default().limit(limit))
                .app_data(
                    web::QueryConfig::default()
                        .error_handler(|e, _| ApiError::BadRequest(format!("query: {e}")).into()),
                )
                .app_data(
                    web::PathConfig::default().error_handler(|_, _| ApiError::NotFound.into()),
                )
                .wrap_fn(|req, srv| {
                    let id = req.extensions().get::<RequestId>().map(|r| r.to_string());
                    let fut = srv.call(req);
                    async move {
                        let mut res = fut.await?;
                        if let Some(v) = id.and_then(|id| HeaderValue::from_str(&id).ok()) {
                            res.headers_mut()
                                .insert(HeaderName::from_static("x-request-id"), v);
                        }
                        Ok(res)
                    }
                })
                .wrap_fn(|req, srv| {
                    // Counted by route template, never by path: paths can carry ids.
                    let metrics = req
                        .app_data::<web::Data<AppState>>()
                        .map(|s| s.metrics.clone());
                    // Set by the root span, which runs first.
                    let route = req
                        .extensions()
                        .get::<crate::telemetry::Route>()
                        .map(|r| r.0.clone())
                        .unwrap_or_else(|| "unmatched".into());
                    let method = req.method().as_str().to_owned();
                    let started = std::time::Instant::now();
                    let fut = srv.call(req);
                    async move {
                        let res = fut.await?;
                        if let Some(m) = metrics {
                            let status = res.status().as_u16().to_string();
                            m.http_requests
                                .with_label_values(&[&route, &method, &status])
                                .inc();
                            m.http_latency
                                .with_label_values(&[&route, &method, &status])
                                .observe(started.elapsed().as_secs_f64());
                        }
                        Ok(res)
                    }
                })
                .wrap(TracingLogger::<StrideRootSpan>::new())
                .configure(routes::routes)
                .default_service(web::to(not_found))
        })
        .shutdown_timeout(shutdown)
        .workers(workers)
        .listen(listener)
        .map_err(|source| StartError::Bind {
            addr: "listener".into(),
            source,
        })?
        .run();
        Ok(Application {
            port,
            server,
            store,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn handle(&self) -> ServerHandle {
        self.server.handle()
    }

    pub fn store(&self) -> Arc<dyn Store> {
        self.store.clone()
    }

    /// Serve until SIGTERM/SIGINT (or a handle's stop): in-flight requests finish first.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        self.server.await?;
        self.store.close().await;
        tracing::info!("stride stopped");
        Ok(())
    }
}

/// The token verifier for the trusted issuers. Without a trust file no caller is trusted.
pub fn verifier(settings: &Settings) -> Result<stride_auth::Verifier, StartError> {
    let trust = match (&settings.dev_trust, &settings.trust_file) {
        (Some(dev), _) => stride_auth::TrustFile::parse(&dev.to_string())?,
        (None, Some(path)) => stride_auth::TrustFile::load(path)?,
        (None, None) => {
            tracing::warn!("no STRIDE_TRUST_FILE: every hook call will be refused");
            return Ok(stride_auth::Verifier::empty());
        }
    };
    let options = stride_auth::VerifierOptions {
        algorithms: settings.jwt_algorithms.clone(),
        clock_skew: std::time::Duration::from_secs(settings.clock_skew_secs as u64),
        allow_loopback_http: settings.public_url.is_loopback(),
        ..stride_auth::VerifierOptions::default()
    };
    Ok(stride_auth::Verifier::new(trust, options)?)
}

async fn not_found() -> Result<actix_web::HttpResponse, ApiError> {
    Err(ApiError::NotFound)
}
