//! Development mode's way into the staff pages. A browser cannot put a bearer token on a page
//! request, and development mode has no OpenID provider to sign in with, so a newcomer pastes
//! the token `stride token --kind staff` printed once and gets a session, as a sign-in would
//! give. Outside `stride dev` both routes answer 404: production signs in through its provider.

use actix_web::http::StatusCode;
use actix_web::{get, post, web, HttpRequest, HttpResponse};
use serde::Deserialize;
use serde_json::json;
use stride_auth::Kind;

use super::signin::{message, open_session};
use super::{check_form, page, UiError};
use crate::state::AppState;

fn off() -> HttpResponse {
    message(
        StatusCode::NOT_FOUND,
        "Not found",
        "This page exists only in development mode (stride dev).",
    )
}

#[get("/ui/dev/sign-in")]
#[tracing::instrument(name = "ui dev sign-in form", skip_all)]
pub async fn sign_in_form(state: web::Data<AppState>) -> HttpResponse {
    if state.settings.dev_trust.is_none() {
        return off();
    }
    page(
        StatusCode::OK,
        None,
        "Sign in (development mode)",
        "<h1>Sign in (development mode)</h1>\
         <p>Paste a staff token from <code>stride token --kind staff</code>. It opens the pages \
         of the development clinic, where the development hook calls draft their CarePlans.</p>\
         <form method=\"post\" action=\"/ui/dev/sign-in\">\
         <p><label for=\"token\">Staff token</label><br>\
         <textarea id=\"token\" name=\"token\" rows=\"6\" cols=\"70\" required \
         autocomplete=\"off\" spellcheck=\"false\"></textarea></p>\
         <p><button type=\"submit\">Sign in</button></p></form>",
    )
}

#[derive(Deserialize)]
pub struct DevToken {
    token: String,
}

#[post("/ui/dev/sign-in")]
#[tracing::instrument(name = "ui dev sign-in", skip_all)]
pub async fn sign_in(
    req: HttpRequest,
    posted: web::Form<DevToken>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, UiError> {
    if state.settings.dev_trust.is_none() {
        return Ok(off());
    }
    check_form(&req, &state, None, None)?;
    let caller = match state
        .verifier
        .verify(
            posted.token.trim(),
            Kind::Staff,
            state.settings.public_url.as_str(),
        )
        .await
    {
        Ok(c) => c,
        Err(e) => {
            crate::auth::refused(&req, &state, &e, "refused a development sign-in");
            return Ok(message(
                StatusCode::UNAUTHORIZED,
                "Sign-in failed",
                &format!(
                    "The token was refused: {e}. Mint a new one with stride token --kind staff."
                ),
            ));
        }
    };
    open_session(
        &req,
        &state,
        &caller,
        None,
        "/ui/careplans",
        json!({"via": "development token"}),
    )
    .await
}
