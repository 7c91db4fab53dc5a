//! Reading a request body by hand, after the caller is authenticated: an extractor would read
//! and parse it while the token is still being checked. Every read is bounded in bytes and in
//! time, and a compressed body is refused rather than inflated (gzip inflates ×1 000).

use std::time::Duration;

use actix_web::http::header;
use actix_web::{web, HttpRequest};
use futures_util::StreamExt;
use serde::de::DeserializeOwned;
use serde_json::Value as Json;

use crate::config::Settings;
use crate::error::ApiError;

/// How much of a body is read, and for how long.
#[derive(Debug, Clone, Copy)]
pub struct BodyLimits {
    pub max_bytes: usize,
    /// From the first byte asked for to the last: a sender trickling a byte every few
    /// seconds holds a connection no longer than this.
    pub deadline: Duration,
}

impl BodyLimits {
    pub fn of(settings: &Settings) -> BodyLimits {
        BodyLimits {
            max_bytes: settings.max_body_bytes,
            deadline: settings.body_read_timeout,
        }
    }
}

pub async fn read_json(
    req: &HttpRequest,
    payload: web::Payload,
    limits: BodyLimits,
) -> Result<Json, ApiError> {
    parse_json(&read_body(req, payload, limits).await?)
}

pub fn parse_json(body: &[u8]) -> Result<Json, ApiError> {
    serde_json::from_slice(body).map_err(|e| refused(&e, "the request body"))
}

/// A body that could not be read, said by the parser's category and position only: serde's
/// message quotes the value it stopped at (a patient's name, a reason typed by staff, a token),
/// and this error reaches the response, the log and the span.
pub fn refused(e: &serde_json::Error, what: &str) -> ApiError {
    let (line, column) = (e.line(), e.column());
    if e.is_data() {
        ApiError::BadRequest(format!(
            "{what} does not have the fields this endpoint takes: one is missing or has the wrong type (line {line}, column {column})"
        ))
    } else {
        ApiError::MalformedJson(format!("line {line}, column {column}"))
    }
}

fn mime(req: &HttpRequest) -> String {
    req.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

/// The raw body of a JSON request, within `limits`.
pub async fn read_body(
    req: &HttpRequest,
    payload: web::Payload,
    limits: BodyLimits,
) -> Result<web::Bytes, ApiError> {
    let mime = mime(req);
    if mime != "application/json" && !mime.ends_with("+json") {
        return Err(ApiError::UnsupportedMediaType);
    }
    read_raw(req, payload, limits).await
}

/// An HTML form (`application/x-www-form-urlencoded`) of the staff pages, within `limits`.
pub async fn read_form<T: DeserializeOwned>(
    req: &HttpRequest,
    payload: web::Payload,
    limits: BodyLimits,
) -> Result<T, ApiError> {
    if mime(req) != "application/x-www-form-urlencoded" {
        return Err(ApiError::UnsupportedMediaType);
    }
    let body = read_raw(req, payload, limits).await?;
    serde_urlencoded::from_bytes(&body)
        .map_err(|_| ApiError::BadRequest("the form could not be read".into()))
}

async fn read_raw(
    req: &HttpRequest,
    mut payload: web::Payload,
    limits: BodyLimits,
) -> Result<web::Bytes, ApiError> {
    let encoded = req
        .headers()
        .get(header::CONTENT_ENCODING)
        .is_some_and(|v| !v.as_bytes().eq_ignore_ascii_case(b"identity"));
    if encoded {
        return Err(ApiError::UnsupportedEncoding);
    }
    let limit = limits.max_bytes;
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(ApiError::PayloadTooLarge(limit));
    }
    let read = async {
        let mut body = web::BytesMut::with_capacity(declared.unwrap_or(0).min(limit));
        while let Some(chunk) = payload.next().await {
            let chunk = chunk
                .map_err(|_| ApiError::BadRequest("the request body could not be read".into()))?;
            if body.len() + chunk.len() > limit {
                return Err(ApiError::PayloadTooLarge(limit));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body.freeze())
    };
    tokio::time::timeout(limits.deadline, read)
        .await
        .unwrap_or(Err(ApiError::BodyTimeout))
}
