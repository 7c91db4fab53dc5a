//! The steps of a staff sign-in with OpenID Connect, shared by the sign-in pages (`login`), an
//! EHR's SMART launch (`launch`) and development mode (`dev`): authorization code flow with
//! PKCE, `state` bound to the browser by a short-lived cookie, `nonce` checked in the ID token.
//! The session is a random cookie (HttpOnly, Secure, SameSite=Lax, path `/ui`) whose SHA-256
//! keys a database row, so every replica knows it and signing out ends it everywhere. No
//! handlers here: route modules do not import each other (scripts/check-architecture).

use actix_web::cookie::{time::Duration as CookieDuration, Cookie, SameSite};
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse};
use serde::Deserialize;
use stride_auth::Caller;
use stride_store::audit::sha256_hex;
use stride_store::{PendingLogin, StaffSession};

use super::{esc, page, see_other, UiError, SESSION_COOKIE};
use crate::audit;
use crate::error::ApiError;
use crate::oidc::{random_token, TokenResponse};
use crate::state::AppState;

pub(super) const LOGIN_COOKIE: &str = "stride_login";
pub(super) const LOGIN_MINUTES: i64 = 10;
/// A session lasts as long as the provider's grant says (`expires_in`), within these bounds.
pub(super) const SESSION_DEFAULT_SECS: i64 = 3600;
pub(super) const SESSION_MAX_SECS: i64 = 12 * 3600;

pub(super) fn cookie<'c>(name: &'c str, value: String, path: &'c str, max_age: i64) -> Cookie<'c> {
    Cookie::build(name, value)
        .path(path)
        .http_only(true)
        .secure(true)
        .same_site(SameSite::Lax)
        .max_age(CookieDuration::seconds(max_age))
        .finish()
}

/// Only a path of the staff pages is a place to return to (no open redirect).
pub(super) fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n)
            if n.starts_with("/ui/")
                && !n.contains("//")
                && !n.contains('\\')
                && !n.chars().any(char::is_control)
                && !n.starts_with("/ui/auth")
                && n.len() < 2048 =>
        {
            n.to_owned()
        }
        _ => "/ui/careplans".into(),
    }
}

pub(super) fn message(status: StatusCode, title: &str, text: &str) -> HttpResponse {
    page(
        status,
        None,
        title,
        &format!(
            "<h1>{}</h1><p role=\"alert\">{}</p><p><a href=\"/ui/login\">Sign in again</a></p>",
            esc(title),
            esc(text)
        ),
    )
}

/// Each start stores a pending sign-in: an anonymous client gets a bounded number.
pub(super) fn limit_starts(req: &HttpRequest, state: &AppState) -> Result<(), UiError> {
    if let Some(peer) = req.peer_addr() {
        if !state.sign_ins.allow(peer.ip()) {
            crate::auth::refused_for(req, state, "sign_in_rate", "refused a sign-in start");
            return Err(ApiError::RateLimited.into());
        }
    }
    Ok(())
}

pub(super) fn unavailable(what: &str) -> HttpResponse {
    message(
        StatusCode::BAD_GATEWAY,
        "Sign-in unavailable",
        &format!("{what} cannot be reached. Try again in a minute."),
    )
}

/// Store a pending sign-in (state, nonce, PKCE verifier) and send the browser to the URL
/// `authorize(state, nonce, verifier)` gives, with the state bound to this browser.
pub(super) async fn begin(
    state: &AppState,
    next_path: String,
    smart_iss: Option<String>,
    authorize: impl FnOnce(&str, &str, &str) -> String,
) -> Result<HttpResponse, UiError> {
    let (state_token, nonce, verifier) = (random_token(), random_token(), random_token());
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    stride_app::sessions::begin_login(
        state.store.as_ref(),
        &PendingLogin {
            state_hash: sha256_hex(state_token.as_bytes()),
            verifier: verifier.clone(),
            nonce: nonce.clone(),
            next_path,
            expires_at: now + LOGIN_MINUTES * 60,
            smart_iss,
        },
        now,
    )
    .await?;
    let to = authorize(&state_token, &nonce, &verifier);
    let mut res = see_other(&to);
    res.add_cookie(&cookie(
        LOGIN_COOKIE,
        state_token,
        "/ui/auth",
        LOGIN_MINUTES * 60,
    ))
    .map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok(res)
}

#[derive(Deserialize)]
pub struct Callback {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
    /// RFC 9207: the authorization server that answered.
    pub(super) iss: Option<String>,
}

/// A refused sign-in: recorded (without the reason's details) and shown.
pub(super) fn refuse(
    req: &HttpRequest,
    state: &AppState,
    status: StatusCode,
    reason: &'static str,
    text: &str,
) -> HttpResponse {
    crate::auth::refused_for(req, state, reason, "refused a sign-in");
    message(status, "Sign-in failed", text)
}

/// The authorization server's answer: the code and the sign-in this browser started, or the
/// page saying why not.
pub(super) async fn answer(
    req: &HttpRequest,
    state: &AppState,
    q: &Callback,
) -> Result<Result<(String, PendingLogin), HttpResponse>, UiError> {
    let refused = |reason, text: &str| refuse(req, state, StatusCode::UNAUTHORIZED, reason, text);
    if let Some(err) = &q.error {
        // RFC 6749 4.1.2.1 error codes are ASCII words; show a bounded, escaped copy.
        let code: String = err.chars().take(64).collect();
        return Ok(Err(refused(
            "oidc_error",
            &format!("The sign-in provider did not sign you in ({code})."),
        )));
    }
    let (Some(code), Some(sent_state)) = (&q.code, &q.state) else {
        return Ok(Err(refused(
            "oidc_request",
            "The sign-in answer is incomplete.",
        )));
    };
    // The state must be the one this browser was given (login CSRF).
    let bound = req.cookie(LOGIN_COOKIE);
    if bound.as_ref().map(|c| c.value()) != Some(sent_state.as_str()) {
        return Ok(Err(refused(
            "oidc_state",
            "This sign-in was not started in this browser, or it took too long.",
        )));
    }
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    match stride_app::sessions::take_login(
        state.store.as_ref(),
        &sha256_hex(sent_state.as_bytes()),
        now,
    )
    .await?
    {
        Some(pending) => Ok(Ok((code.clone(), pending))),
        None => Ok(Err(refused(
            "oidc_state",
            "This sign-in has expired or was already used.",
        ))),
    }
}

/// The ID token's caller, checked against the trust file, or the page refusing it.
pub(super) async fn identify(
    req: &HttpRequest,
    state: &AppState,
    tokens: &TokenResponse,
    expected: (&str, &str),
    nonce: &str,
    granted: Vec<String>,
) -> Result<Caller, HttpResponse> {
    let (issuer, client_id) = expected;
    let refused = |reason, text: &str| refuse(req, state, StatusCode::UNAUTHORIZED, reason, text);
    let Some(id_token) = &tokens.id_token else {
        return Err(refused(
            "oidc_token",
            "The sign-in provider sent no ID token.",
        ));
    };
    match state
        .verifier
        .verify_id_token(id_token, client_id, nonce, granted)
        .await
    {
        Ok(c) if c.issuer == issuer => Ok(c),
        Ok(_) => Err(refused("issuer", "The ID token comes from another issuer.")),
        Err(e) => {
            crate::auth::refused(req, state, &e, "refused an ID token");
            Err(message(
                StatusCode::UNAUTHORIZED,
                "Sign-in failed",
                &format!("The ID token was refused: {e}."),
            ))
        }
    }
}

/// Open a session for `caller`, record the sign-in with `details`, and go to `next_path`.
pub(super) async fn open_session(
    req: &HttpRequest,
    state: &AppState,
    caller: &Caller,
    expires_in: Option<i64>,
    next_path: &str,
    details: serde_json::Value,
) -> Result<HttpResponse, UiError> {
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let lifetime = expires_in
        .unwrap_or(SESSION_DEFAULT_SECS)
        .clamp(60, SESSION_MAX_SECS);
    let session_id = random_token();
    let session = StaffSession {
        id_hash: sha256_hex(session_id.as_bytes()),
        issuer: caller.issuer.clone(),
        subject: caller.subject.clone(),
        tenant: caller.tenant.clone(),
        all_tenants: caller.all_tenants,
        scopes: caller.scopes.clone(),
        csrf: random_token(),
        created_at: now,
        expires_at: now + lifetime,
        patient: caller.patient.clone(),
        fhir_user: caller.fhir_user.clone(),
    };
    stride_app::sessions::sign_in(
        state.store.as_ref(),
        &audit::actor(req, caller),
        &session,
        details,
        now,
    )
    .await?;

    let mut res = see_other(next_path);
    let mut clear = cookie(LOGIN_COOKIE, String::new(), "/ui/auth", 0);
    clear.make_removal();
    res.add_cookie(&cookie(SESSION_COOKIE, session_id, "/ui", lifetime))
        .and_then(|_| res.add_cookie(&clear))
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok(res)
}

#[cfg(test)]
mod tests {
    use super::safe_next;

    #[test]
    fn only_staff_page_paths_are_returned_to() {
        assert_eq!(
            safe_next(Some("/ui/audit?patient=1")),
            "/ui/audit?patient=1"
        );
        for bad in [
            "https://evil.example/",
            "//evil.example/ui/",
            "/ui//evil",
            "/ui/\\evil",
            "/fhir/CarePlan",
            "/ui/auth/callback?code=x",
        ] {
            assert_eq!(safe_next(Some(bad)), "/ui/careplans", "{bad}");
        }
        assert_eq!(safe_next(None), "/ui/careplans");
    }
}
