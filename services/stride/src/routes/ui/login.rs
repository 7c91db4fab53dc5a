//! The staff sign-in pages: start a sign-in with the OpenID provider, take its answer, sign
//! out. The steps themselves are in `signin`, shared with the SMART launch and development mode.

use actix_web::http::StatusCode;
use actix_web::{get, post, web, HttpRequest, HttpResponse};
use serde::Deserialize;
use serde_json::json;
use stride_store::audit::sha256_hex;

use super::signin::{
    answer, begin, cookie, identify, limit_starts, message, open_session, refuse, safe_next,
    unavailable, Callback,
};
use super::{page, UiError, SESSION_COOKIE};
use crate::audit;
use crate::error::ApiError;
use crate::oidc::SCOPES;
use crate::state::AppState;

#[derive(Deserialize)]
pub struct LoginQuery {
    next: Option<String>,
}

#[get("/ui/login")]
#[tracing::instrument(name = "ui sign-in start", skip_all)]
pub async fn login(
    req: HttpRequest,
    q: web::Query<LoginQuery>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, UiError> {
    // A return path with a control character (CR/LF) is no path: refused before any session
    // or state is made (it could not be a Location header afterwards).
    if q.next
        .as_deref()
        .is_some_and(|n| n.chars().any(char::is_control))
    {
        return Ok(message(
            StatusCode::BAD_REQUEST,
            "This sign-in link is not valid",
            "The page to return to after signing in is not a page of Stride.",
        ));
    }
    let Some(oidc) = &state.oidc else {
        return Err(ApiError::Auth(stride_auth::AuthError::Missing).into());
    };
    limit_starts(&req, &state)?;
    let metadata = match oidc.metadata().await {
        Ok(m) => m,
        Err(e) => {
            tracing::warn!(error = %e, "OpenID provider unavailable");
            return Ok(unavailable("The sign-in provider"));
        }
    };
    begin(&state, safe_next(q.next.as_deref()), None, |s, n, v| {
        oidc.authorize_url(metadata, s, n, v)
    })
    .await
}

#[get("/ui/auth/callback")]
#[tracing::instrument(name = "ui sign-in callback", skip_all)]
pub async fn callback(
    req: HttpRequest,
    q: web::Query<Callback>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, UiError> {
    let Some(oidc) = &state.oidc else {
        return Err(ApiError::NotFound.into());
    };
    let (code, pending) = match answer(&req, &state, &q).await? {
        Ok(a) => a,
        Err(page) => return Ok(page),
    };
    // A launch's state belongs to its own callback, which knows the EHR to ask.
    if pending.smart_iss.is_some() {
        return Ok(refuse(
            &req,
            &state,
            StatusCode::UNAUTHORIZED,
            "oidc_state",
            "This sign-in was started by an EHR launch.",
        ));
    }
    // RFC 9207: a provider that names itself in its answer must name the configured one.
    if q.iss
        .as_deref()
        .is_some_and(|i| i.trim_end_matches('/') != oidc.settings.issuer.trim_end_matches('/'))
    {
        return Ok(refuse(
            &req,
            &state,
            StatusCode::UNAUTHORIZED,
            "oidc_issuer",
            "This sign-in answer does not come from the configured sign-in provider.",
        ));
    }
    let tokens = match oidc.exchange(&code, &pending.verifier).await {
        Ok(t) => t,
        Err(e) => {
            tracing::warn!(error = %e, "code exchange failed");
            return Ok(refuse(
                &req,
                &state,
                StatusCode::UNAUTHORIZED,
                "oidc_token",
                "The sign-in provider did not confirm the sign-in.",
            ));
        }
    };
    let expected = (
        oidc.settings.issuer.as_str(),
        oidc.settings.client_id.as_str(),
    );
    let caller = match identify(
        &req,
        &state,
        &tokens,
        expected,
        &pending.nonce,
        tokens.granted(SCOPES),
    )
    .await
    {
        Ok(c) => c,
        Err(page) => return Ok(page),
    };
    open_session(
        &req,
        &state,
        &caller,
        tokens.expires_in,
        &pending.next_path,
        json!({}),
    )
    .await
}

#[derive(Deserialize)]
pub struct LogoutForm {
    csrf: Option<String>,
}

#[post("/ui/logout")]
#[tracing::instrument(name = "ui sign-out", skip_all)]
pub async fn logout(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, UiError> {
    let viewer = super::session(&req, &state).await?;
    // Nobody is signed in: nothing to end, and no reason to read what was sent.
    let csrf = match &viewer {
        Some(_) => {
            let limits = crate::body::BodyLimits::of(&state.settings);
            crate::body::read_form::<LogoutForm>(&req, payload, limits)
                .await?
                .csrf
        }
        None => None,
    };
    super::check_form(&req, &state, viewer.as_ref(), csrf.as_deref())?;
    let session = req
        .cookie(SESSION_COOKIE)
        .map(|c| sha256_hex(c.value().as_bytes()));
    let actor = viewer.as_ref().map(|v| audit::actor(&req, &v.caller));
    stride_app::sessions::sign_out(state.store.as_ref(), actor.as_ref(), session.as_deref())
        .await?;
    let mut res = page(
        StatusCode::OK,
        None,
        "Signed out",
        "<h1>Signed out</h1><p role=\"status\">You are signed out of Stride.</p><p><a href=\"/ui/login\">Sign in again</a></p>",
    );
    let mut gone = cookie(SESSION_COOKIE, String::new(), "/ui", 0);
    gone.make_removal();
    res.add_cookie(&gone)
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok(res)
}
