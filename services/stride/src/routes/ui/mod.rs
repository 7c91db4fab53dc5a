//! The staff pages, rendered on the server: the review queue, one CarePlan with its timeline
//! and review forms, and the decision-log browser. No scripts and no external assets; a strict
//! Content-Security-Policy. Staff sign in with OpenID Connect (a session cookie scoped to
//! `/ui`), or a reverse proxy in front of Stride adds a bearer token.

pub mod analytics;
pub mod audit;
pub mod careplan;
pub mod chart;
pub mod dev;
pub mod guidelines;
pub mod impact;
pub mod launch;
pub mod login;
pub mod queue;
pub mod signin;
pub mod take_home;

use actix_web::http::{header, StatusCode};
use actix_web::{get, web, FromRequest, HttpRequest, HttpResponse, ResponseError};
use futures_util::future::LocalBoxFuture;
use stride_auth::{AuthError, Caller, Kind};
use stride_store::TenantId;

use crate::auth::{self, Scope};
use crate::error::ApiError;
use crate::state::AppState;

const CSP: &str = "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";
const STYLE: &str = include_str!("ui.css");
pub const SESSION_COOKIE: &str = "stride_session";

/// HTML-escape text taken from stored data or the request.
pub fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

/// A staff member looking at the pages, and how they came in.
pub struct Viewer {
    pub caller: Caller,
    /// The session's CSRF token; `None` when a reverse proxy sent a bearer token.
    pub csrf: Option<String>,
}

impl Viewer {
    /// Hidden form field carrying the CSRF token (empty for bearer callers).
    pub fn csrf_field(&self) -> String {
        match &self.csrf {
            Some(t) => format!("<input type=\"hidden\" name=\"csrf\" value=\"{}\">", esc(t)),
            None => String::new(),
        }
    }
}

/// A full page with the common header.
pub fn page(status: StatusCode, viewer: Option<&Viewer>, title: &str, body: &str) -> HttpResponse {
    let header_html = match viewer {
        Some(v) => {
            let sign_out = if v.csrf.is_some() {
                format!(
                    "<form method=\"post\" action=\"/ui/logout\" class=\"signout\">{}<button type=\"submit\">Sign out</button></form>",
                    v.csrf_field()
                )
            } else {
                String::new()
            };
            // A session launched for one patient reaches only that patient's plans.
            let nav = if v.caller.patient.is_some() {
                "<a href=\"/ui/careplans?status=any\">This patient's plans</a>".to_owned()
            } else {
                // Each page linked for those who may open it.
                let links = [
                    ("/ui/careplans", "Review queue", "careplan.read"),
                    ("/ui/audit", "Decision log", "audit.read"),
                    ("/ui/rules/impact", "Impact", "audit.read"),
                    ("/ui/analytics", "Card effectiveness", "analytics.read"),
                    ("/ui/guidelines", "Guideline versions", "guideline.approve"),
                ];
                links
                    .iter()
                    .filter(|(_, _, scope)| v.caller.has_scope(scope))
                    .map(|(href, label, _)| format!("<a href=\"{href}\">{label}</a>"))
                    .collect::<Vec<_>>()
                    .join(" ")
            };
            format!(
                "<header><nav aria-label=\"Stride\">{nav}</nav>\
                 <span class=\"who\">Signed in as {}{}</span>{sign_out}</header>",
                esc(&v.caller.subject),
                v.caller
                    .patient
                    .as_deref()
                    .map(|p| format!(" · from the EHR, for {}", esc(p)))
                    .unwrap_or_default()
            )
        }
        None => String::new(),
    };
    HttpResponse::build(status)
        .content_type("text/html; charset=utf-8")
        .insert_header(("content-security-policy", CSP))
        .insert_header(("x-content-type-options", "nosniff"))
        .insert_header(("referrer-policy", "same-origin"))
        .insert_header(("cache-control", "no-store"))
        .body(format!(
            "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
             <title>{} · Stride</title><link rel=\"stylesheet\" href=\"/ui/style.css\"></head><body>\
             <a class=\"skip\" href=\"#content\">Skip to content</a>{header_html}<main id=\"content\">{body}</main></body></html>",
            esc(title)
        ))
}

#[get("/ui/style.css")]
pub async fn style() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/css; charset=utf-8")
        .insert_header(("cache-control", "max-age=3600"))
        .body(STYLE)
}

#[get("/ui")]
pub async fn home() -> HttpResponse {
    see_other("/ui/careplans")
}

pub fn see_other(location: &str) -> HttpResponse {
    HttpResponse::SeeOther()
        .insert_header((header::LOCATION, location))
        .insert_header(("cache-control", "no-store"))
        .finish()
}

/// Errors of the staff pages: a person who is not signed in is sent to sign in; anything else
/// is an HTML page saying what went wrong, with the API's status code.
#[derive(Debug, thiserror::Error)]
pub enum UiError {
    #[error("sign in first")]
    SignIn(String),
    #[error("{0}")]
    Api(#[from] ApiError),
}

impl From<stride_store::StoreError> for UiError {
    fn from(e: stride_store::StoreError) -> Self {
        UiError::Api(e.into())
    }
}

impl From<stride_app::take_home::TakeHomeError> for UiError {
    fn from(e: stride_app::take_home::TakeHomeError) -> Self {
        UiError::Api(e.into())
    }
}

impl From<stride_app::review::ReviewError> for UiError {
    fn from(e: stride_app::review::ReviewError) -> Self {
        UiError::Api(e.into())
    }
}

impl ResponseError for UiError {
    fn status_code(&self) -> StatusCode {
        match self {
            UiError::SignIn(_) => StatusCode::SEE_OTHER,
            UiError::Api(e) => e.status_code(),
        }
    }

    fn error_response(&self) -> HttpResponse {
        match self {
            UiError::SignIn(next) => {
                let q: String = url::form_urlencoded::Serializer::new(String::new())
                    .append_pair("next", next)
                    .finish();
                see_other(&format!("/ui/login?{q}"))
            }
            UiError::Api(e) => {
                let hint = match e {
                    ApiError::Auth(AuthError::Missing) => {
                        "<p>Sign-in is not configured on this server: a reverse proxy in front of Stride must add the staff member's bearer token.</p>"
                    }
                    ApiError::Auth(a) if a.is_forbidden() => {
                        "<p>Your account is not allowed to do this. Ask your administrator for the permission named above.</p>"
                    }
                    ApiError::Unavailable => "<p>Try again in a few seconds.</p>",
                    ApiError::RateLimited => "<p>Too many sign-in attempts from here; try again in a minute.</p>",
                    _ => "",
                };
                let mut res = page(
                    e.status_code(),
                    None,
                    "Stride",
                    &format!(
                        "<h1>{}</h1><p role=\"alert\">{}</p>{hint}<p><a href=\"/ui/careplans\">Back to the review queue</a></p>",
                        e.status_code().canonical_reason().unwrap_or("Error"),
                        esc(&e.to_string())
                    ),
                );
                if let Some(secs) = e.retry_after() {
                    res.headers_mut()
                        .insert(header::RETRY_AFTER, header::HeaderValue::from_static(secs));
                }
                res
            }
        }
    }
}

/// The path and query of this request: where to come back to after signing in.
fn here(req: &HttpRequest) -> String {
    match req.uri().query() {
        Some(q) => format!("{}?{q}", req.path()),
        None => req.path().to_owned(),
    }
}

/// The staff member behind a page request, with `scope`: from a bearer token (reverse proxy) or
/// from the session cookie. Without either, the browser is sent to sign in. A session limited
/// to one patient is refused unless the page keeps to that patient (`one_patient`).
pub async fn viewer(
    req: &HttpRequest,
    state: &AppState,
    scope: &str,
    one_patient: bool,
) -> Result<Viewer, UiError> {
    let bearer = || async {
        let caller = auth::staff(req, state, scope).await?;
        Ok(Viewer { caller, csrf: None })
    };
    if req.headers().contains_key(header::AUTHORIZATION) {
        return bearer().await;
    }
    // A session comes from Stride's own sign-in or from an EHR's SMART launch; the latter needs
    // no sign-in of Stride's own.
    let viewer = match session(req, state).await? {
        Some(v) => v,
        None if state.oidc.is_some() => return Err(UiError::SignIn(here(req))),
        None => return bearer().await,
    };
    if viewer.caller.patient.is_some() && !one_patient {
        let e = AuthError::PatientLimited;
        auth::refused(req, state, &e, "refused a staff page");
        return Err(ApiError::Auth(e).into());
    }
    if !viewer.caller.has_scope(scope) {
        let e = AuthError::MissingScope(scope.to_owned());
        auth::refused(req, state, &e, "refused a staff page");
        return Err(ApiError::Auth(e).into());
    }
    Ok(viewer)
}

/// The staff member behind a page request with scope `S` (see `viewer`), as an extractor.
/// A session an EHR launched for one patient is refused unless `ONE_PATIENT` says the page
/// keeps to that patient: a page shows several patients' data unless it says otherwise.
pub struct Page<S: Scope, const ONE_PATIENT: bool = false> {
    pub viewer: Viewer,
    scope: std::marker::PhantomData<S>,
}

/// A page that shows only what `viewer.caller.patient` allows (the review queue, a CarePlan
/// and its review), so a session limited to one patient may open it.
pub type PatientPage<S> = Page<S, true>;

impl<S: Scope, const ONE_PATIENT: bool> FromRequest for Page<S, ONE_PATIENT> {
    type Error = UiError;
    type Future = LocalBoxFuture<'static, Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut actix_web::dev::Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move {
            let state = crate::state::of(&req)?;
            let viewer = viewer(&req, &state, S::NAME, ONE_PATIENT).await?;
            Ok(Page {
                viewer,
                scope: std::marker::PhantomData,
            })
        })
    }
}

/// The signed-in session the request's cookie names, if it is still valid.
pub async fn session(req: &HttpRequest, state: &AppState) -> Result<Option<Viewer>, UiError> {
    let Some(cookie) = req.cookie(SESSION_COOKIE) else {
        return Ok(None);
    };
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let id_hash = stride_store::audit::sha256_hex(cookie.value().as_bytes());
    let Some(s) = stride_app::sessions::current(state.store.as_ref(), &id_hash, now).await? else {
        return Ok(None);
    };
    let caller = Caller {
        issuer: s.issuer,
        subject: s.subject,
        tenant: s.tenant,
        all_tenants: s.all_tenants,
        // Staff pages show stored decisions; the clinic's zone is a hook caller's matter.
        timezone: None,
        kind: Kind::Staff,
        jti: None,
        expires_at: s.expires_at,
        scopes: s.scopes,
        patient: s.patient,
        fhir_user: s.fhir_user,
    };
    Ok(Some(Viewer {
        caller,
        csrf: Some(s.csrf),
    }))
}

/// A staff form posted to its handler: read within the body limits, and refused unless it
/// came from Stride's own pages (`check_form`).
pub async fn checked_form(
    req: &HttpRequest,
    payload: web::Payload,
    state: &AppState,
    viewer: &Viewer,
) -> Result<std::collections::HashMap<String, String>, UiError> {
    let limits = crate::body::BodyLimits::of(&state.settings);
    let form: std::collections::HashMap<String, String> =
        crate::body::read_form(req, payload, limits).await?;
    check_form(
        req,
        state,
        Some(viewer),
        form.get("csrf").map(String::as_str),
    )?;
    Ok(form)
}

/// A form post must come from Stride's own pages: the browser's `Origin` is Stride's, and a
/// signed-in session's form carries its CSRF token.
pub fn check_form(
    req: &HttpRequest,
    state: &AppState,
    viewer: Option<&Viewer>,
    csrf: Option<&str>,
) -> Result<(), UiError> {
    let public = state.settings.public_url.as_str();
    let origin_end = public
        .find("://")
        .and_then(|i| public[i + 3..].find('/').map(|j| i + 3 + j))
        .unwrap_or(public.len());
    let origin = &public[..origin_end];
    let sent = req
        .headers()
        .get(header::ORIGIN)
        .and_then(|v| v.to_str().ok());
    let same_origin = sent == Some(origin);
    let token_ok = match viewer.and_then(|v| v.csrf.as_deref()) {
        Some(expected) => csrf.is_some_and(|c| {
            aws_lc_rs::constant_time::verify_slices_are_equal(c.as_bytes(), expected.as_bytes())
                .is_ok()
        }),
        None => true,
    };
    if same_origin && token_ok {
        Ok(())
    } else {
        tracing::warn!(same_origin, token_ok, "refused a cross-site form post");
        Err(ApiError::CrossSite.into())
    }
}

/// A moment on the clinic's clock, its zone named: "6 Dec 2026, 05:45 (Europe/Berlin)". The
/// zone is the tenant's (the one its decisions were made in); UTC, said so, without one (or
/// without a tenant: a report over every clinic).
pub fn clinic_time(
    state: &AppState,
    tenant: Option<&TenantId>,
    instant: time::OffsetDateTime,
) -> String {
    let zone = stride_fhir::clinic::ClinicZone::for_tenant(
        tenant.and_then(|t| state.verifier.tenant_timezone(t)),
    );
    let local = zone.local(instant);
    let text = local
        .format(time::macros::format_description!(
            "[day padding:none] [month repr:short] [year], [hour]:[minute]"
        ))
        .unwrap_or_default();
    format!("{text} ({})", zone.label())
}

/// Who a plan is for, as the EHR's Patient said when it was drafted: "Ana Lima, born 1 Apr
/// 2013 (13 years), female". `on` is the day the age is counted to.
pub fn identity(patient: Option<&serde_json::Value>, on: time::Date) -> Option<String> {
    let p = patient?;
    let mut parts = Vec::new();
    if let Some(n) = p["name"].as_str() {
        parts.push(n.to_owned());
    }
    if let Some(b) = p["birthDate"].as_str() {
        let born =
            time::Date::parse(b, time::macros::format_description!("[year]-[month]-[day]")).ok();
        match born {
            Some(d) => {
                let mut age = on.year() - d.year();
                if (on.month() as u8, on.day()) < (d.month() as u8, d.day()) {
                    age -= 1;
                }
                parts.push(format!(
                    "born {} ({age} years)",
                    stride_guideline::display::day(d)
                ));
            }
            // A year or a year and month only: shown as sent.
            None => parts.push(format!("born {b}")),
        }
    }
    if let Some(g) = p["gender"].as_str() {
        parts.push(g.to_owned());
    }
    (!parts.is_empty()).then(|| parts.join(", "))
}

pub fn number(v: Option<f64>) -> String {
    v.map(|x| {
        if x.fract() == 0.0 {
            format!("{x:.0}")
        } else {
            format!("{x:.2}")
        }
    })
    .unwrap_or_else(|| "—".into())
}

/// The staff pages.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(style)
        .service(home)
        .service(login::login)
        .service(login::callback)
        .service(login::logout)
        .service(dev::sign_in_form)
        .service(dev::sign_in)
        .service(launch::launch)
        .service(launch::callback)
        .service(queue::queue)
        .service(careplan::careplan)
        .service(careplan::review)
        .service(take_home::page_html)
        .service(take_home::page_pdf)
        .service(audit::search)
        .service(audit::export)
        .service(audit::entry)
        .service(impact::impact)
        .service(analytics::effectiveness)
        .service(guidelines::guidelines)
        .service(guidelines::sign_off)
        .service(guidelines::activate);
}
