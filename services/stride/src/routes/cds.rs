//! CDS Hooks endpoints: discovery, hook calls and card feedback. Each extracts, admits and
//! parses, then calls its use case in `stride_app` and maps the error.

use actix_web::http::header;
use actix_web::{get, post, web, HttpRequest, HttpResponse};
use stride_app::catalog::Service;
use stride_app::feedback::FeedbackError;
use stride_app::hook::{self, Call, HookError};
use stride_fhir::clinic::ClinicZone;
use stride_guideline::RuleSet;
use time::OffsetDateTime;

use crate::audit;
use crate::auth::CdsCaller;
use crate::body::{read_body, read_json, BodyLimits};
use crate::cds::ehr::{shed, EhrFetch};
use crate::cds::request::{self, ParseError};
use crate::error::ApiError;
use crate::state::AppState;

/// The version of `guideline` that answers for `issuer` (`None`: not yet known, as for
/// discovery).
fn rule_set<'s>(
    state: &'s AppState,
    guideline: &str,
    issuer: Option<&str>,
) -> Result<&'s std::sync::Arc<RuleSet>, ApiError> {
    state
        .pins
        .in_force(&state.catalog, guideline, issuer)
        .map(|(rs, _)| rs)
        .ok_or(ApiError::Unavailable)
}

#[get("")]
pub async fn discovery(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let mut entries = Vec::new();
    for s in state.catalog.services() {
        let rs = rule_set(&state, &s.guideline, None)?;
        let d = state
            .catalog
            .declaration(&s.guideline)
            .ok_or(ApiError::Unavailable)?;
        let mut sets = vec![rs.as_ref()];
        sets.extend(
            state
                .pins
                .shadows(&state.catalog, &s.guideline)
                .into_iter()
                .map(|c| c.as_ref()),
        );
        entries.push((s, sets, d));
    }
    Ok(HttpResponse::Ok().json(stride_app::discovery::discovery(entries.into_iter())))
}

fn service<'s>(state: &'s AppState, id: &str) -> Result<&'s Service, ApiError> {
    state
        .catalog
        .service(id)
        .ok_or_else(|| ApiError::UnknownResource("no CDS service with this id".into()))
}

fn hook_error(state: &AppState, e: HookError) -> ApiError {
    match e {
        HookError::Unavailable(_) => ApiError::Unavailable,
        HookError::Overloaded | HookError::Busy(_) => ApiError::Overloaded,
        HookError::InFlight => ApiError::Conflict(e.to_string()),
        HookError::Unfetched(m) => ApiError::PreconditionFailed(m),
        HookError::InstanceOfAnother => {
            state
                .metrics
                .hooks_refused
                .with_label_values(&["hook_instance_reused"])
                .inc();
            ApiError::Conflict(e.to_string())
        }
        HookError::Internal(cause) => ApiError::internal(cause.as_ref()),
    }
}

/// A call answered 503 before evaluation, counted by why.
#[post("/{id}")]
#[tracing::instrument(name = "cds hook", skip_all, fields(service = %path.as_str(), hook = tracing::field::Empty, decision = tracing::field::Empty, outcome = tracing::field::Empty))]
pub async fn call(
    http: HttpRequest,
    cds_caller: CdsCaller,
    path: web::Path<String>,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let svc = service(&state, &path)?;
    tracing::Span::current().record("hook", svc.hook.name());
    let rs = rule_set(&state, &svc.guideline, Some(cds_caller.issuer()))?.clone();
    // A candidate version evaluated beside it, recorded and never shown.
    let shadow = state
        .pins
        .shadow(&state.catalog, &svc.guideline, Some(cds_caller.issuer()))
        .cloned();
    let _share = state
        .tenant_share
        .enter(cds_caller.tenant())
        .map_err(|refused| shed(&state, refused))?;
    // Read the raw body first (a slow sender must not hold a processing slot), then wait for
    // a slot: under overload, a bounded number of calls wait here as bytes and the rest are
    // shed, rather than all parsed and evaluated at once.
    let raw = read_body(&http, payload, BodyLimits::of(&state.settings)).await?;
    let slot = state
        .admission
        .admit()
        .await
        .map_err(|refused| shed(&state, refused))?;
    let req = request::parse(&raw, svc.hook, state.settings.public_url.is_loopback()).map_err(
        |e| match e {
            ParseError::Malformed(m) => ApiError::MalformedJson(m),
            ParseError::Invalid(m) => ApiError::BadRequest(m),
        },
    )?;
    let fingerprint = hook::fingerprint(svc, &req);
    // The token's claim becomes durable with the call's record, in one write (or on its own,
    // for a retry answered from the store).
    let (caller, claim) = cds_caller.into_parts();
    let mut fetch = EhrFetch::new(
        &state,
        req.fhir_server.as_ref(),
        req.access_token.as_deref(),
        &caller.issuer,
        slot,
    );
    // "Today" and every record's day are the clinic's local dates (its trust-file zone, else
    // the offsets its EHR writes).
    let zone = ClinicZone::for_tenant(caller.timezone.as_deref());
    let call = Call {
        service: svc,
        rule_set: &rs,
        shadow: shadow.as_ref(),
        request: &req,
        tenant: &caller.tenant,
        issuer: &caller.issuer,
        zone: &zone,
        now: OffsetDateTime::now_utc(),
        public_url: state.settings.public_url.as_str(),
        fingerprint,
        smart_launch: state.verifier.smart_tenant(&caller.tenant),
    };
    let actor = audit::actor(&http, &caller);
    let answered = hook::answer(state.store.as_ref(), &actor, &call, &mut fetch, claim)
        .await
        .map_err(|e| hook_error(&state, e))?;
    let (response, decision_ids, shadow_differs, write) = match answered {
        hook::Answer::Decided {
            response,
            decision_ids,
            shadow_differs,
            write,
        } => (response, decision_ids, shadow_differs, write),
        hook::Answer::Retried(stored) => {
            tracing::Span::current().record("outcome", "retry answered");
            return Ok(HttpResponse::Ok()
                .content_type("application/json")
                .body(stored));
        }
        // Another replica recorded the same call first: its answer, not a second decision.
        hook::Answer::Stored(stored) => {
            tracing::Span::current().record("outcome", "answered by another replica");
            return Ok(HttpResponse::Ok()
                .content_type("application/json")
                .body(stored));
        }
    };
    state
        .metrics
        .store_write
        .with_label_values(&["hook_record"])
        .observe(write.as_secs_f64());
    tracing::Span::current().record("decision", tracing::field::display(decision_ids.join(",")));
    if let Some(differs) = shadow_differs {
        state
            .metrics
            .shadow_evaluations
            .with_label_values(&[if differs { "differs" } else { "same" }])
            .inc();
    }
    for id in &decision_ids {
        state.metrics.decisions.with_label_values(&[id]).inc();
    }
    tracing::Span::current().record("outcome", "answered");
    Ok(HttpResponse::Ok()
        .content_type("application/json")
        .body(response))
}

#[post("/{id}/feedback")]
#[tracing::instrument(name = "cds feedback", skip_all, fields(service = %path.as_str()))]
pub async fn feedback(
    http: HttpRequest,
    cds_caller: CdsCaller,
    path: web::Path<String>,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let svc = service(&state, &path)?;
    let body = read_json(&http, payload, BodyLimits::of(&state.settings)).await?;
    let entries =
        stride_app::feedback::read(svc, cds_caller.tenant(), &body, OffsetDateTime::now_utc())
            .map_err(feedback_error)?;
    let caller = cds_caller.settled().await?;
    let actor = audit::actor(&http, &caller);
    stride_app::feedback::take(state.store.as_ref(), svc, &entries, &actor)
        .await
        .map_err(feedback_error)?;
    Ok(HttpResponse::Ok().finish())
}

fn feedback_error(e: FeedbackError) -> ApiError {
    match e {
        FeedbackError::Invalid(m) => ApiError::BadRequest(m),
        FeedbackError::Unavailable => ApiError::Unavailable,
    }
}

/// The CDS Hooks endpoints. Browser-based CDS clients call from other origins; tokens travel
/// in the Authorization header, never in cookies, so any origin may ask.
pub fn routes(cfg: &mut web::ServiceConfig) {
    let cors = actix_cors::Cors::default()
        .allow_any_origin()
        .allowed_methods(["GET", "POST", "OPTIONS"])
        .allowed_headers([header::AUTHORIZATION, header::CONTENT_TYPE, header::ACCEPT])
        .max_age(86_400);
    // A static prefix, matched first (`super::routes`): a hook call's path meets one pattern
    // with a parameter, its own (feedback two), rather than every such pattern of the API and
    // the staff pages before it (each a regex match, twice: once to route, once for the span's
    // route).
    cfg.service(
        web::scope("/cds-services")
            .wrap(cors)
            .service(discovery)
            .service(call)
            .service(feedback),
    );
}
