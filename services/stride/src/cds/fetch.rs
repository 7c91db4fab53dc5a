//! Fetching what the prefetch did not bring from the EHR's FHIR server, with the access token
//! the hook carried. Bounded in time, size and pages, and never from any other server.

use std::time::Duration;

use futures_util::StreamExt;
use serde_json::value::RawValue;
use serde_json::Value as Json;
use url::Url;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FetchError {
    #[error("the FHIR server did not answer in time")]
    Timeout,
    #[error("the FHIR server answered HTTP {0}")]
    Status(u16),
    #[error("the FHIR server's answer is over {0} bytes")]
    TooLarge(usize),
    #[error("the FHIR server's answer is not a FHIR resource")]
    NotFhir,
    #[error("the FHIR server cannot be reached")]
    Unreachable,
    #[error("paging left the FHIR server the hook named")]
    ForeignPage,
    #[error("the FHIR server's answer runs over more than {0} pages")]
    TooManyPages(usize),
}

#[derive(Clone)]
pub struct Fetcher {
    client: reqwest::Client,
    /// Whole fetch of one prefetch key, all pages included.
    pub budget: Duration,
    pub max_bytes: usize,
    pub max_pages: usize,
}

impl Fetcher {
    pub fn new() -> Fetcher {
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(2))
            // A redirect could lead the token to another host.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("stride/", env!("CARGO_PKG_VERSION")))
            .build()
            .expect("a TLS client can be built");
        Fetcher {
            client,
            budget: Duration::from_secs(3),
            max_bytes: 8 * 1024 * 1024,
            max_pages: 10,
        }
    }

    /// Resolve `template` (tokens already replaced) against `base` and fetch it, following
    /// Bundle `next` links on the same server. Returns each page.
    #[tracing::instrument(name = "prefetch fetch", skip_all, fields(resource = %template.split(['?', '/']).next().unwrap_or("")))]
    pub async fn fetch(
        &self,
        base: &Url,
        template: &str,
        token: Option<&str>,
    ) -> Result<Vec<Box<RawValue>>, FetchError> {
        tokio::time::timeout(self.budget, self.fetch_pages(base, template, token))
            .await
            .unwrap_or(Err(FetchError::Timeout))
    }

    async fn fetch_pages(
        &self,
        base: &Url,
        template: &str,
        token: Option<&str>,
    ) -> Result<Vec<Box<RawValue>>, FetchError> {
        let root = base.as_str().trim_end_matches('/');
        let mut next = Some(format!("{root}/{template}"));
        let mut pages = Vec::new();
        while let Some(url) = next.take() {
            // Deciding on the first pages only would be deciding on part of the record.
            if pages.len() >= self.max_pages {
                return Err(FetchError::TooManyPages(self.max_pages));
            }
            if !url.starts_with(&format!("{root}/")) && url != root {
                return Err(FetchError::ForeignPage);
            }
            let page = self.get(&url, token).await?;
            next = next_link(&page);
            pages.push(page);
        }
        Ok(pages)
    }

    async fn get(&self, url: &str, token: Option<&str>) -> Result<Box<RawValue>, FetchError> {
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert(
            reqwest::header::ACCEPT,
            reqwest::header::HeaderValue::from_static("application/fhir+json"),
        );
        // The EHR sees the same trace as its hook call (W3C traceparent).
        crate::telemetry::inject(&mut headers);
        let mut req = self.client.get(url).headers(headers);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let res = req.send().await.map_err(|e| {
            if e.is_timeout() {
                FetchError::Timeout
            } else {
                FetchError::Unreachable
            }
        })?;
        if !res.status().is_success() {
            return Err(FetchError::Status(res.status().as_u16()));
        }
        if res
            .content_length()
            .is_some_and(|n| n as usize > self.max_bytes)
        {
            return Err(FetchError::TooLarge(self.max_bytes));
        }
        let mut body = Vec::new();
        let mut stream = res.bytes_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|_| FetchError::Unreachable)?;
            if body.len() + chunk.len() > self.max_bytes {
                return Err(FetchError::TooLarge(self.max_bytes));
            }
            body.extend_from_slice(&chunk);
        }
        // Kept as text: the FHIR reader deserialises each resource from it directly.
        let page: Box<RawValue> = serde_json::from_slice(&body).map_err(|_| FetchError::NotFhir)?;
        if stride_fhir::intake::resource_type(&page).is_none() {
            return Err(FetchError::NotFhir);
        }
        Ok(page)
    }
}

impl Default for Fetcher {
    fn default() -> Self {
        Fetcher::new()
    }
}

fn next_link(page: &RawValue) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Links {
        link: Option<Json>,
    }
    serde_json::from_str::<Links>(page.get())
        .ok()?
        .link?
        .as_array()?
        .iter()
        .find(|l| l.get("relation").and_then(Json::as_str) == Some("next"))?
        .get("url")?
        .as_str()
        .map(str::to_owned)
}

/// Replace the one token Stride's templates use; the patient id is a checked FHIR id.
pub fn fill(template: &str, patient_id: &str) -> String {
    template.replace("{{context.patientId}}", patient_id)
}
