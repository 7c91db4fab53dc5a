//! One error type for the HTTP boundary, mapped to status and body in one place.
//! Bodies are FHIR OperationOutcomes with a stable Stride error code.

use actix_web::http::{header, StatusCode};
use actix_web::{HttpResponse, ResponseError};
use stride_fhir::{operation_outcome, IssueCode, Severity};

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("the request body is not valid JSON: {0}")]
    MalformedJson(String),
    #[error("the request body is over the limit of {0} bytes")]
    PayloadTooLarge(usize),
    #[error("the request body must be application/json")]
    UnsupportedMediaType,
    #[error("a compressed request body is not accepted; send it uncompressed")]
    UnsupportedEncoding,
    #[error("the request body did not arrive in time")]
    BodyTimeout,
    #[error("{0}")]
    BadRequest(String),
    #[error("no such endpoint")]
    NotFound,
    #[error("{0}")]
    UnknownResource(String),
    #[error("required data could be neither prefetched nor fetched: {0}")]
    PreconditionFailed(String),
    /// Well-formed, but nothing to do for it (e.g. $apply for a patient the guideline does not
    /// apply to).
    #[error("{0}")]
    Unprocessable(String),
    #[error("method not allowed on this endpoint")]
    MethodNotAllowed,
    #[error("{0}")]
    Auth(#[from] stride_auth::AuthError),
    #[error("{0}")]
    Conflict(String),
    #[error("this form must be sent from Stride's own pages")]
    CrossSite,
    #[error("the service is temporarily unavailable; retry later")]
    Unavailable,
    #[error("Stride is at capacity; retry in a moment")]
    Overloaded,
    #[error("too many requests from this client; retry in a minute")]
    RateLimited,
    #[error("internal error (reference {0})")]
    Internal(String),
}

impl ApiError {
    /// The one table of the HTTP boundary: each error's stable, documented code (snake_case,
    /// carried in every body), its HTTP status and its OperationOutcome issue type. Every
    /// variant is listed: a new error cannot go out under another's labels.
    fn table(&self) -> (&'static str, StatusCode, IssueCode) {
        use StatusCode as S;
        match self {
            ApiError::MalformedJson(_) => ("malformed_json", S::BAD_REQUEST, IssueCode::Structure),
            ApiError::PayloadTooLarge(_) => (
                "payload_too_large",
                S::PAYLOAD_TOO_LARGE,
                IssueCode::TooLong,
            ),
            ApiError::UnsupportedMediaType => (
                "unsupported_media_type",
                S::UNSUPPORTED_MEDIA_TYPE,
                IssueCode::NotSupported,
            ),
            ApiError::UnsupportedEncoding => (
                "unsupported_encoding",
                S::UNSUPPORTED_MEDIA_TYPE,
                IssueCode::NotSupported,
            ),
            ApiError::BodyTimeout => ("request_timeout", S::REQUEST_TIMEOUT, IssueCode::Timeout),
            ApiError::BadRequest(_) => ("bad_request", S::BAD_REQUEST, IssueCode::Invalid),
            ApiError::NotFound | ApiError::UnknownResource(_) => {
                ("not_found", S::NOT_FOUND, IssueCode::NotFound)
            }
            ApiError::PreconditionFailed(_) => (
                "prefetch_unavailable",
                S::PRECONDITION_FAILED,
                IssueCode::Incomplete,
            ),
            ApiError::Unprocessable(_) => (
                "not_applicable",
                S::UNPROCESSABLE_ENTITY,
                IssueCode::Processing,
            ),
            ApiError::MethodNotAllowed => (
                "method_not_allowed",
                S::METHOD_NOT_ALLOWED,
                IssueCode::NotSupported,
            ),
            ApiError::Auth(e) if e.is_forbidden() => (e.code(), S::FORBIDDEN, IssueCode::Forbidden),
            ApiError::Auth(e) => (e.code(), S::UNAUTHORIZED, IssueCode::Login),
            ApiError::Conflict(_) => ("conflict", S::CONFLICT, IssueCode::Conflict),
            ApiError::CrossSite => ("cross_site", S::FORBIDDEN, IssueCode::Forbidden),
            ApiError::Unavailable => ("unavailable", S::SERVICE_UNAVAILABLE, IssueCode::Transient),
            ApiError::Overloaded => ("overloaded", S::SERVICE_UNAVAILABLE, IssueCode::Transient),
            ApiError::RateLimited => ("rate_limited", S::TOO_MANY_REQUESTS, IssueCode::Throttled),
            ApiError::Internal(_) => ("internal", S::INTERNAL_SERVER_ERROR, IssueCode::Exception),
        }
    }

    /// Stable, documented error code (snake_case) carried in every error body.
    pub fn code(&self) -> &'static str {
        self.table().0
    }

    /// Seconds a client should wait before retrying (`Retry-After`), for the errors that pass.
    pub fn retry_after(&self) -> Option<&'static str> {
        match self {
            ApiError::Unavailable => Some("5"),
            ApiError::Overloaded => Some("1"),
            ApiError::RateLimited => Some("60"),
            _ => None,
        }
    }

    /// Log the cause of an internal error under a reference the caller can quote.
    pub fn internal(cause: &dyn std::error::Error) -> ApiError {
        let reference = uuid::Uuid::new_v4().to_string();
        // The chain of causes (database messages name tables and constraints, not values).
        let mut chain = cause.to_string();
        let mut source = cause.source();
        while let Some(s) = source {
            chain.push_str(": ");
            chain.push_str(&s.to_string());
            source = s.source();
        }
        tracing::error!(error.reference = %reference, error = %chain, "internal error");
        ApiError::Internal(reference)
    }
}

impl From<stride_store::StoreError> for ApiError {
    fn from(e: stride_store::StoreError) -> Self {
        if matches!(e, stride_store::StoreError::Down) {
            // Known and said once by the store; not again for every call.
            ApiError::Unavailable
        } else if e.is_unavailable() {
            tracing::warn!(error = %e, cause = ?std::error::Error::source(&e).map(ToString::to_string), "database unavailable");
            ApiError::Unavailable
        } else if e.is_overloaded() {
            tracing::warn!(error = %e, "database busy: answering 503 overloaded");
            ApiError::Overloaded
        } else if matches!(e, stride_store::StoreError::NotFound) {
            ApiError::NotFound
        } else {
            ApiError::internal(&e)
        }
    }
}

impl From<stride_app::decision_log::LogError> for ApiError {
    fn from(e: stride_app::decision_log::LogError) -> Self {
        use stride_app::decision_log::LogError as L;
        use stride_app::replay::ReplayError as R;
        match e {
            L::NotFound => ApiError::UnknownResource(e.to_string()),
            L::Replay(R::UnknownVersion(..) | R::NotADecision) => {
                ApiError::BadRequest(e.to_string())
            }
            L::Replay(R::Unreadable(m)) => ApiError::Internal(m),
            L::Store(e) => e.into(),
        }
    }
}

impl From<stride_app::impact_jobs::TracesError> for ApiError {
    fn from(e: stride_app::impact_jobs::TracesError) -> Self {
        use stride_app::impact_jobs::TracesError as T;
        match e {
            T::Log(e) => e.into(),
            T::Undecidable => ApiError::BadRequest(e.to_string()),
        }
    }
}

impl From<stride_app::review::ReviewError> for ApiError {
    fn from(e: stride_app::review::ReviewError) -> Self {
        use stride_app::review::ReviewError;
        match e {
            ReviewError::NotFound => ApiError::UnknownResource(e.to_string()),
            ReviewError::Invalid(m) => ApiError::BadRequest(m),
            ReviewError::Conflict(m) => ApiError::Conflict(m),
            ReviewError::Store(e) => e.into(),
        }
    }
}

impl From<stride_app::governance::GovernanceError> for ApiError {
    fn from(e: stride_app::governance::GovernanceError) -> Self {
        use stride_app::governance::GovernanceError as G;
        match e {
            G::UnknownVersion => ApiError::UnknownResource(e.to_string()),
            G::Invalid(m) => ApiError::BadRequest(m),
            G::Conflict(m) => ApiError::Conflict(m),
            G::Forbidden => ApiError::Auth(stride_auth::AuthError::WrongTenant),
            G::ReportFailed => ApiError::Unavailable,
            G::Store(e) => e.into(),
        }
    }
}

impl From<stride_app::take_home::TakeHomeError> for ApiError {
    fn from(e: stride_app::take_home::TakeHomeError) -> Self {
        use stride_app::take_home::TakeHomeError;
        match e {
            TakeHomeError::Review(e) => e.into(),
            TakeHomeError::NotApproved(_) | TakeHomeError::Revised => {
                ApiError::Conflict(e.to_string())
            }
            TakeHomeError::NoWording(_) => ApiError::Unprocessable(e.to_string()),
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.table().1
    }

    fn error_response(&self) -> HttpResponse {
        let severity = if matches!(self, ApiError::Internal(_)) {
            Severity::Fatal
        } else {
            Severity::Error
        };
        let body = operation_outcome(severity, self.table().2, self.code(), &self.to_string());
        let mut res = HttpResponse::build(self.status_code());
        res.content_type("application/fhir+json");
        if let Some(secs) = self.retry_after() {
            res.insert_header((header::RETRY_AFTER, secs));
        }
        // RFC 6750 §3: say which kind of token problem this is.
        if let ApiError::Auth(e) = self {
            {
                let error = match e {
                    stride_auth::AuthError::Missing => None,
                    e if e.is_forbidden() => Some("insufficient_scope"),
                    _ => Some("invalid_token"),
                };
                let value = match error {
                    Some(err) => format!(
                        "Bearer realm=\"stride\", error=\"{err}\", error_description=\"{e}\""
                    ),
                    None => "Bearer realm=\"stride\"".to_owned(),
                };
                res.insert_header((header::WWW_AUTHENTICATE, value));
            }
        }
        res.json(body)
    }
}
