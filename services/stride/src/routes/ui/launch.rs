//! SMART App Launch of the review pages from inside the EHR. A card's `smart` link brings the
//! clinician here with the EHR's `iss` and `launch`; Stride reads the EHR's SMART configuration,
//! sends the browser to its authorization server (code flow, PKCE S256), and on the way back
//! checks the ID token against the trust file's `staff` issuer that holds the registration, the
//! `fhirUser` (a practitioner), and the launch's `patient` against the CarePlan the card named.
//! The session it opens sees that one patient only. Without `launch`, a standalone launch lets
//! the EHR choose the patient.

use actix_web::http::StatusCode;
use actix_web::{get, web, HttpRequest, HttpResponse};
use serde::Deserialize;
use serde_json::json;
use stride_hooks::request::is_fhir_id;

use super::signin::{self, answer, begin, limit_starts, open_session, refuse, Callback};
use super::UiError;
use crate::oidc::{self, Client};
use crate::smart::{self, STAFF_SCOPES};
use crate::state::AppState;

/// Each registered EHR has a redirect URI of its own, `CALLBACK_PATH/{key}` (its clinic's
/// `IssuerConfig::smart_callback_key`): an answer that
/// comes back at another EHR's address than the one the sign-in began at is an OAuth mix-up
/// (a code from one authorization server sent, with its PKCE verifier, to another's token
/// endpoint), and is refused before anything is exchanged.
pub const CALLBACK_PATH: &str = "/ui/auth/smart-callback";
/// Longest `launch` value accepted (an opaque EHR handle; a few dozen bytes in practice).
const MAX_LAUNCH: usize = 1024;

#[derive(Deserialize)]
pub struct LaunchQuery {
    iss: Option<String>,
    launch: Option<String>,
}

#[get("/ui/smart/launch")]
#[tracing::instrument(name = "ui smart launch", skip_all)]
pub async fn launch(
    req: HttpRequest,
    q: web::Query<LaunchQuery>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, UiError> {
    let refused = |status, reason, text: &str| refuse(&req, &state, status, reason, text);
    let Some(iss) = q.iss.as_deref().filter(|i| !i.is_empty()) else {
        return Ok(refused(
            StatusCode::BAD_REQUEST,
            "smart_iss",
            "The EHR did not say which FHIR server launched Stride (iss).",
        ));
    };
    if q.launch
        .as_deref()
        .is_some_and(|l| l.is_empty() || l.len() > MAX_LAUNCH)
    {
        return Ok(refused(
            StatusCode::BAD_REQUEST,
            "smart_launch",
            "The EHR's launch parameter is not usable.",
        ));
    }
    let Some(issuer) = state.verifier.smart_issuer(iss) else {
        return Ok(refused(
            StatusCode::BAD_REQUEST,
            "smart_iss",
            "This EHR is not registered with Stride: ask the administrator to add its FHIR server to the trust file.",
        ));
    };
    limit_starts(&req, &state)?;
    let ehr = match smart::discover(&state.smart_http, issuer).await {
        Ok(e) => e,
        Err(e) => {
            tracing::warn!(error = %e, "EHR SMART configuration unusable");
            return Ok(signin::unavailable("The EHR's sign-in"));
        }
    };
    let redirect = redirect_uri(&state, &issuer.smart_callback_key());
    begin(
        &state,
        "/ui/careplans?status=any".into(),
        Some(ehr.registration.iss().to_owned()),
        |s, n, v| smart::authorize_url(&ehr, &redirect, q.launch.as_deref(), s, n, v),
    )
    .await
}

fn redirect_uri(state: &AppState, key: &str) -> String {
    format!(
        "{}{CALLBACK_PATH}/{key}",
        state.settings.public_url.as_str()
    )
}

#[get("/ui/auth/smart-callback/{key}")]
#[tracing::instrument(name = "ui smart launch callback", skip_all)]
pub async fn callback(
    req: HttpRequest,
    path: web::Path<String>,
    q: web::Query<Callback>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, UiError> {
    let refused = |status, reason, text: &str| refuse(&req, &state, status, reason, text);
    let (code, pending) = match answer(&req, &state, &q).await? {
        Ok(a) => a,
        Err(page) => return Ok(page),
    };
    let Some(issuer) = pending
        .smart_iss
        .as_deref()
        .and_then(|iss| state.verifier.smart_issuer(iss))
    else {
        return Ok(refused(
            StatusCode::UNAUTHORIZED,
            "smart_iss",
            "This sign-in was not started by a launch from a registered EHR.",
        ));
    };
    // Answered at another EHR's address than the one the sign-in began at: a mix-up.
    if issuer.smart_callback_key() != path.as_str() {
        return Ok(refused(
            StatusCode::UNAUTHORIZED,
            "smart_mixup",
            "This sign-in answer came back from another EHR than the one it was started at, so Stride did not use it.",
        ));
    }
    let ehr = match smart::discover(&state.smart_http, issuer).await {
        Ok(e) => e,
        Err(e) => {
            tracing::warn!(error = %e, "EHR SMART configuration unusable");
            return Ok(signin::unavailable("The EHR's sign-in"));
        }
    };
    // RFC 9207: the answering server names itself; it must be this EHR's, and a server that
    // says it always names itself must have done so.
    let named = q.iss.as_deref().map(|i| i.trim_end_matches('/'));
    let expected = issuer.iss.trim_end_matches('/');
    let wrong = match named {
        Some(i) => i != expected,
        None => ehr.config.authorization_response_iss_parameter_supported,
    };
    if wrong {
        return Ok(refused(
            StatusCode::UNAUTHORIZED,
            "smart_mixup",
            "This sign-in answer does not come from the EHR's authorization server, so Stride did not use it.",
        ));
    }
    let secret = smart::client_secret(ehr.registration);
    let redirect = redirect_uri(&state, &issuer.smart_callback_key());
    let client = Client {
        id: &ehr.registration.client_id,
        secret: secret.as_deref(),
        redirect_uri: &redirect,
    };
    let tokens = match oidc::exchange(
        &state.smart_http,
        &ehr.config.token_endpoint,
        &client,
        &code,
        &pending.verifier,
    )
    .await
    {
        Ok(t) => t,
        Err(e) => {
            tracing::warn!(error = %e, "launch code exchange failed");
            return Ok(refused(
                StatusCode::UNAUTHORIZED,
                "oidc_token",
                "The EHR did not confirm the sign-in.",
            ));
        }
    };
    let expected = (issuer.iss.as_str(), ehr.registration.client_id.as_str());
    let granted = tokens.granted(STAFF_SCOPES);
    let mut caller =
        match signin::identify(&req, &state, &tokens, expected, &pending.nonce, granted).await {
            Ok(c) => c,
            Err(page) => return Ok(page),
        };
    // Plans are reviewed by clinicians: the EHR must say who the user is, as a practitioner.
    if !caller
        .fhir_user
        .as_deref()
        .is_some_and(smart::is_practitioner)
    {
        return Ok(refused(
            StatusCode::FORBIDDEN,
            "smart_user",
            "The EHR did not identify you as a practitioner (fhirUser), so Stride cannot open the review.",
        ));
    }
    // The launch is for one patient; without one there is nothing to open.
    let Some(patient) = tokens.patient.as_deref().filter(|p| is_fhir_id(p)) else {
        return Ok(refused(
            StatusCode::FORBIDDEN,
            "smart_patient",
            "The EHR did not name a patient for this launch.",
        ));
    };
    caller.patient = Some(
        stride_store::PatientRef::of_checked_id(patient)
            .as_str()
            .to_owned(),
    );
    let mut next = pending.next_path.clone();
    let mut details = json!({
        "launch": if tokens.app_context.is_some() { "smart-ehr" } else { "smart" },
        "fhirServer": ehr.registration.iss(),
        "fhirUser": caller.fhir_user,
    });
    if let Some(context) = &tokens.app_context {
        let Some(id) = smart::careplan_of(context) else {
            return Ok(refused(
                StatusCode::BAD_REQUEST,
                "smart_context",
                "The EHR's launch context does not name a CarePlan.",
            ));
        };
        // The card named a plan; the EHR launched for a patient. They must be the same person.
        match stride_app::review::load_visible(state.store.as_ref(), &caller, &id).await {
            Ok(plan) => {
                next = format!("/ui/careplans/{}", plan.id);
                details["careplan"] = json!(plan.id);
            }
            Err(stride_app::review::ReviewError::NotFound) => {
                return Ok(refused(
                    StatusCode::FORBIDDEN,
                    "smart_patient",
                    "The CarePlan this card opened is not the launched patient's, or not your clinic's.",
                ));
            }
            Err(e) => return Err(e.into()),
        }
    }
    open_session(&req, &state, &caller, tokens.expires_in, &next, details).await
}
