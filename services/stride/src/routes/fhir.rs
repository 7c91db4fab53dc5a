//! Read-only FHIR endpoints: the CapabilityStatement and the guideline as PlanDefinition and
//! CodeSystems, for every loaded version.

use actix_web::{get, post, web, HttpRequest, HttpResponse};
use stride_app::apply::{Apply, ApplyError, Source, Stored};
use stride_fhir::clinic::ClinicZone;
use stride_fhir::publish;
use stride_guideline::RuleSet;
use time::format_description::well_known::Rfc3339;

use crate::audit;
use crate::body::{read_body, BodyLimits};
use crate::cds::ehr::{shed, EhrFetch};
use crate::error::ApiError;
use crate::state::AppState;

fn fhir_json(v: serde_json::Value) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/fhir+json")
        .json(v)
}

#[get("/fhir/metadata")]
pub async fn metadata(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let date = state.started.format(&Rfc3339).unwrap_or_default();
    let cs = publish::capability_statement(
        state.settings.public_url.as_str(),
        env!("CARGO_PKG_VERSION"),
        &date,
    )
    .map_err(|e| ApiError::internal(&e))?;
    Ok(fhir_json(cs))
}

/// The rule-set version a PlanDefinition id names.
fn plan<'s>(state: &'s AppState, id: &str) -> Result<&'s RuleSet, ApiError> {
    state
        .catalog
        .iter()
        .find(|rs| publish::plan_definition_id(rs) == id)
        .map(|rs| rs.as_ref())
        .ok_or_else(|| ApiError::UnknownResource("no PlanDefinition with this id".into()))
}

#[get("/fhir/PlanDefinition/{id}")]
pub async fn plan_definition(
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let rs = plan(&state, &path)?;
    let declared = state
        .catalog
        .declaration(&rs.doc.id)
        .ok_or_else(|| ApiError::UnknownResource("no PlanDefinition with this id".into()))?;
    let attributes = stride_app::attributes::of(rs, &declared.source_attributes);
    let page = stride_app::attributes::page_url(
        state.settings.public_url.as_str().trim_end_matches('/'),
        &rs.doc.id,
        &rs.doc.version,
    );
    Ok(fhir_json(
        publish::plan_definition(rs, &attributes.attribution(&page))
            .map_err(|e| ApiError::internal(&e))?,
    ))
}

/// `$apply`: the CarePlan a patient-view call would draft with this version, for the patient
/// data in the Parameters, without storing it. The caller is a CDS client (an EHR) with a
/// token for this URL; the call is audited like a hook call, facts included, so that it can be
/// replayed.
#[post("/fhir/PlanDefinition/{id}/$apply")]
#[tracing::instrument(name = "plan apply", skip_all, fields(plan = %path.as_str()))]
pub async fn apply(
    http: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let aud = format!(
        "{}/fhir/PlanDefinition/{}/$apply",
        state.settings.public_url.as_str(),
        path.as_str()
    );
    let (caller, claim) = crate::auth::cds_client(&http, &state, &[aud]).await?;
    let rs = plan(&state, &path)?;
    let raw = read_body(&http, payload, BodyLimits::of(&state.settings)).await?;
    let text = std::str::from_utf8(&raw)
        .map_err(|_| ApiError::MalformedJson("the body is not UTF-8".into()))?;
    let input = Apply::parse(text).map_err(apply_error)?;
    claim.durable().await.map_err(|e| {
        tracing::error!(error = %e, "the token's jti could not be stored: answering 503");
        ApiError::Unavailable
    })?;
    // The FHIR server to fetch from is read as a hook's `fhirServer` is: an absolute URL, and
    // then only where the caller's issuer may fetch from (the egress policy).
    let (server, token) = match &input.source {
        Source::Fetch { server, token } => {
            let url = url::Url::parse(server)
                .map_err(|_| ApiError::BadRequest("fhirServer: not a URL".into()))?;
            // As for hooks: the token travels to it, so plain http only in local development.
            if url.scheme() != "https" && !state.settings.public_url.is_loopback() {
                return Err(ApiError::BadRequest("fhirServer: must be https".into()));
            }
            (Some(url), token.as_deref())
        }
        Source::Data(_) => (None, None),
    };
    // The same admission as a hook call: the clinic's share of calls in flight, then a
    // processing slot (and the fetch budget that comes with it), so one clinic's $apply calls
    // cannot crowd out another clinic's hooks.
    let _share = state
        .tenant_share
        .enter(&caller.tenant)
        .map_err(|refused| shed(&state, refused))?;
    let slot = state
        .admission
        .admit()
        .await
        .map_err(|refused| shed(&state, refused))?;
    let mut fetch = EhrFetch::new(&state, server.as_ref(), token, &caller.issuer, slot);
    let zone = ClinicZone::for_tenant(caller.timezone.as_deref());
    let actor = audit::actor(&http, &caller);
    let applied = stride_app::apply::apply(
        state.store.as_ref(),
        rs,
        &actor,
        &zone,
        time::OffsetDateTime::now_utc(),
        &input,
        &mut fetch,
    )
    .await
    .map_err(apply_error)?;
    let id = applied.careplan["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let mut res = fhir_json(applied.careplan);
    // A stored plan is a resource of this server: where to read it (201 when it is new).
    if let Some(stored) = applied.stored {
        if stored == Stored::New {
            *res.status_mut() = actix_web::http::StatusCode::CREATED;
        }
        let location = format!("{}/fhir/CarePlan/{id}", state.settings.public_url.as_str());
        if let Ok(v) = actix_web::http::header::HeaderValue::from_str(&location) {
            res.headers_mut()
                .insert(actix_web::http::header::CONTENT_LOCATION, v.clone());
            res.headers_mut()
                .insert(actix_web::http::header::LOCATION, v);
        }
    }
    Ok(res)
}

fn apply_error(e: ApplyError) -> ApiError {
    match e {
        ApplyError::Invalid(m) => ApiError::BadRequest(m),
        ApplyError::Draft(_) => ApiError::Conflict(e.to_string()),
        ApplyError::NotApplicable(_) => ApiError::Unprocessable(e.to_string()),
        ApplyError::Hook(stride_app::hook::HookError::Internal(cause)) => {
            ApiError::internal(cause.as_ref())
        }
        ApplyError::Hook(stride_app::hook::HookError::Unfetched(m)) => {
            ApiError::PreconditionFailed(m)
        }
        ApplyError::Hook(
            stride_app::hook::HookError::Overloaded | stride_app::hook::HookError::Busy(_),
        ) => ApiError::Overloaded,
        ApplyError::Hook(stride_app::hook::HookError::InFlight) => {
            ApiError::Conflict(e.to_string())
        }
        ApplyError::Hook(_) => ApiError::Unavailable,
    }
}

#[get("/fhir/CodeSystem/{id}")]
pub async fn code_system(
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    // The newest version that publishes a code system with this id.
    let found = state.catalog.iter().rev().find_map(|rs| {
        let published = &state.catalog.declaration(&rs.doc.id)?.published;
        let titles = publish::CodeSystemTitles {
            findings: &published.findings,
            decisions: &published.decisions,
        };
        publish::code_system(rs, &path, &titles)
    });
    let cs = found.ok_or_else(|| ApiError::UnknownResource("no CodeSystem with this id".into()))?;
    Ok(fhir_json(cs.map_err(|e| ApiError::internal(&e))?))
}

/// This module's endpoints (the order is the order they are matched in).
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(metadata)
        .service(plan_definition)
        .service(apply)
        .service(code_system);
}
