//! Authentication at the HTTP edge: the bearer token of a request, verified for the kind of
//! caller an endpoint admits, with the replay check that needs the shared database.

use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::{FromRequest, HttpRequest};
use futures_util::future::LocalBoxFuture;
use stride_auth::{bearer, AuthError, Caller, Kind};
use stride_store::JtiClaim;
use stride_store::TenantId;
use time::OffsetDateTime;

use crate::error::ApiError;
use crate::state::AppState;

/// The verified CDS client of a hook or feedback call. Handlers take the body as a raw
/// `Payload` and read it only after this has resolved: an unauthenticated caller never gets
/// its body read or parsed.
///
/// The token's jti is claimed (a replay is already refused) but the claim may not be durable
/// yet: nothing is stored or answered for the call before it is, either by `settled` or by
/// handing the claim to the store with the call's record (`into_parts`), so that no call is
/// served on a token whose use could be forgotten.
pub struct CdsCaller {
    caller: Caller,
    claim: JtiClaim,
}

impl CdsCaller {
    /// Who called, once the token's claim is durable (503 if it could not be made so).
    pub async fn settled(self) -> Result<Caller, ApiError> {
        self.claim.durable().await.map_err(|e| {
            tracing::error!(error = %e, "the token's jti could not be stored: answering 503");
            ApiError::Unavailable
        })?;
        Ok(self.caller)
    }

    /// Who called (a read that settles nothing: nothing may be stored for the call on it).
    pub fn caller(&self) -> &Caller {
        &self.caller
    }

    /// The tenant the call is filed under (a read that settles nothing).
    pub fn tenant(&self) -> &TenantId {
        &self.caller.tenant
    }

    /// The issuer of the token (a read that settles nothing).
    pub fn issuer(&self) -> &str {
        &self.caller.issuer
    }

    /// The clinic's IANA time zone from the trust file (a read that settles nothing).
    pub fn timezone(&self) -> Option<&str> {
        self.caller.timezone.as_deref()
    }

    /// Who called, and the claim still to be made durable with what the call stores.
    pub fn into_parts(self) -> (Caller, JtiClaim) {
        (self.caller, self.claim)
    }
}

impl FromRequest for CdsCaller {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move {
            let state = crate::state::of(&req)?;
            let id = req.match_info().get("id").unwrap_or_default();
            let service = format!("{}/cds-services/{id}", state.settings.public_url.as_str());
            // `aud` is the endpoint called; for feedback the service URL itself is accepted too.
            let audiences = if req.path().ends_with("/feedback") {
                vec![format!("{service}/feedback"), service]
            } else {
                vec![service]
            };
            cds_client(&req, &state, &audiences)
                .await
                .map(|(caller, claim)| CdsCaller { caller, claim })
        })
    }
}

/// A CDS client (EHR) calling `audiences[0]` (any of `audiences` is accepted as `aud`).
pub async fn cds_client(
    req: &HttpRequest,
    state: &AppState,
    audiences: &[String],
) -> Result<(Caller, JtiClaim), ApiError> {
    let result = verify(req, state, audiences).await;
    if let Err(ApiError::Auth(e)) = &result {
        refused(req, state, e, "refused a CDS client call");
    }
    result
}

async fn verify(
    req: &HttpRequest,
    state: &AppState,
    audiences: &[String],
) -> Result<(Caller, JtiClaim), ApiError> {
    let token = bearer(
        req.headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok()),
    )?;
    let mut last = AuthError::WrongAudience;
    for aud in audiences {
        match state.verifier.verify(token, Kind::CdsClient, aud).await {
            Ok(caller) => {
                let jti = caller
                    .jti
                    .as_deref()
                    .ok_or(AuthError::MissingClaim("jti"))?;
                let keep_until = caller
                    .expires_at
                    .saturating_add(state.settings.clock_skew_secs);
                let now =
                    OffsetDateTime::now_utc().unix_timestamp() - state.settings.clock_skew_secs;
                let claim = state
                    .store
                    .claim_jti(&caller.issuer, jti, keep_until, now)
                    .await?;
                if !claim.fresh {
                    return Err(AuthError::Replayed.into());
                }
                return Ok((caller, claim));
            }
            Err(AuthError::WrongAudience) => last = AuthError::WrongAudience,
            Err(e) => return Err(e.into()),
        }
    }
    Err(last.into())
}

/// The scopes of the staff endpoints, one type each so that a handler names its scope in its
/// signature (`Staff<CareplanRead>`) and cannot forget to check it.
pub trait Scope {
    const NAME: &'static str;
}

macro_rules! scopes {
    ($($(#[$doc:meta])* $ty:ident = $name:literal;)*) => {
        $($(#[$doc])* pub struct $ty; impl Scope for $ty { const NAME: &'static str = $name; })*
    };
}

scopes! {
    /// Read drafted CarePlans and the review pages.
    CareplanRead = "careplan.read";
    /// Approve, revise or reject a draft.
    CareplanReview = "careplan.review";
    /// Read, verify, export and replay the audit log.
    AuditRead = "audit.read";
    /// Card effectiveness and the feedback export (a clinic's CDS committee).
    AnalyticsRead = "analytics.read";
    /// Sign off rule-set versions and activate them for a clinic.
    GuidelineApprove = "guideline.approve";
}

/// A staff member with scope `S`, from the request's bearer token (refused, counted and
/// audited otherwise).
pub struct Staff<S: Scope> {
    pub caller: Caller,
    scope: std::marker::PhantomData<S>,
}

impl<S: Scope> FromRequest for Staff<S> {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move {
            let state = crate::state::of(&req)?;
            let caller = staff(&req, &state, S::NAME).await?;
            Ok(Staff {
                caller,
                scope: std::marker::PhantomData,
            })
        })
    }
}

/// A staff member (clinic reviewer, auditor) with `scope`; `aud` is the service's public URL.
pub async fn staff(req: &HttpRequest, state: &AppState, scope: &str) -> Result<Caller, ApiError> {
    staff_with(req, state, Some(scope)).await
}

/// A staff member with any scope (a read that only needs to know whose clinic it is).
pub async fn staff_any(req: &HttpRequest, state: &AppState) -> Result<Caller, ApiError> {
    staff_with(req, state, None).await
}

/// The staff token of the request, verified, with `scope` when one is asked for; a refusal
/// is logged, counted and audited.
async fn staff_with(
    req: &HttpRequest,
    state: &AppState,
    scope: Option<&str>,
) -> Result<Caller, ApiError> {
    let result = async {
        let token = bearer(
            req.headers()
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok()),
        )?;
        let caller = state
            .verifier
            .verify(token, Kind::Staff, state.settings.public_url.as_str())
            .await?;
        if let Some(scope) = scope.filter(|s| !caller.has_scope(s)) {
            return Err(AuthError::MissingScope(scope.to_owned()));
        }
        Ok(caller)
    }
    .await;
    if let Err(e) = &result {
        refused(req, state, e, "refused a staff request");
    }
    result.map_err(ApiError::from)
}

/// Every refusal is logged (reason only), counted and audited.
pub fn refused(req: &HttpRequest, state: &AppState, e: &AuthError, what: &'static str) {
    refused_for(req, state, e.reason(), what);
}

/// The same for a refusal that is not a token's (e.g. a sign-in whose state does not match).
pub fn refused_for(req: &HttpRequest, state: &AppState, reason: &'static str, what: &'static str) {
    tracing::warn!(reason, "{what}");
    state
        .metrics
        .auth_refusals
        .with_label_values(&[reason])
        .inc();
    crate::audit::refused(req, state, reason);
}
