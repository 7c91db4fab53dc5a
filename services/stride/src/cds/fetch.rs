//! Fetching what the prefetch did not bring from the EHR's FHIR server, with the access token
//! the hook carried. Bounded in time, pages and bytes (per call, across its pages and keys,
//! and process-wide), only from the servers the issuer may name (see `egress`), and never
//! from any other server.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use serde_json::value::RawValue;
use serde_json::Value as Json;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use url::Url;

use crate::cds::egress::{self, FhirPolicy, Refusal};

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
    #[error("the FHIR server is not one this issuer may name ({0:?})")]
    Refused(Refusal),
    #[error("fetched answers in flight are at the process-wide limit")]
    Busy,
}

impl FetchError {
    /// The label of the failure in metrics and logs. The caller is told none of this: one
    /// generic 412, so its answers cannot tell a closed port from a silent one.
    pub fn reason(&self) -> &'static str {
        match self {
            FetchError::Timeout => "timeout",
            FetchError::Status(_) => "status",
            FetchError::TooLarge(_) => "too_large",
            FetchError::NotFhir => "not_fhir",
            FetchError::Unreachable => "unreachable",
            FetchError::ForeignPage => "foreign_page",
            FetchError::TooManyPages(_) => "too_many_pages",
            FetchError::Refused(Refusal::NotListed) => "not_listed",
            FetchError::Refused(Refusal::Address) => "address",
            FetchError::Busy => "busy",
        }
    }
}

/// What one hook call may hold of fetched answers: a byte budget for all its pages and keys,
/// and the process-wide permits for the bytes it holds (given back when it is dropped).
pub struct CallBudget {
    remaining: usize,
    held: Option<OwnedSemaphorePermit>,
}

impl CallBudget {
    fn take(&mut self, bytes: usize, in_flight: &Arc<Semaphore>) -> Result<(), FetchError> {
        if bytes > self.remaining {
            return Err(FetchError::TooLarge(bytes));
        }
        let n = u32::try_from(bytes).map_err(|_| FetchError::TooLarge(bytes))?;
        let permit = in_flight
            .clone()
            .try_acquire_many_owned(n)
            .map_err(|_| FetchError::Busy)?;
        match &mut self.held {
            Some(held) => held.merge(permit),
            None => self.held = Some(permit),
        }
        self.remaining -= bytes;
        Ok(())
    }
}

#[derive(Clone)]
pub struct Fetcher {
    /// Connects to public addresses only.
    public: reqwest::Client,
    /// Also to internal ones, for issuers whose FHIR server is on an internal network.
    internal: reqwest::Client,
    /// Whole fetch of one prefetch key, all pages included.
    pub budget: Duration,
    /// Bytes one hook call may fetch, all pages and keys together.
    pub max_bytes: usize,
    pub max_pages: usize,
    /// Bytes of fetched answers all calls together may hold.
    in_flight: Arc<Semaphore>,
}

fn client(internal: bool) -> reqwest::Client {
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(2))
        // A redirect could lead the token to another host.
        .redirect(reqwest::redirect::Policy::none())
        // A proxy would make the connection, to an address no one checked.
        .no_proxy()
        .dns_resolver(egress::resolver(internal))
        .user_agent(concat!("stride/", env!("CARGO_PKG_VERSION")))
        .build()
        .expect("a TLS client can be built")
}

impl Fetcher {
    /// `max_bytes`: per call; `max_in_flight`: process-wide (both in bytes).
    pub fn new(max_bytes: usize, max_in_flight: usize) -> Fetcher {
        Fetcher {
            public: client(false),
            internal: client(true),
            budget: Duration::from_secs(3),
            max_bytes,
            max_pages: 10,
            in_flight: Arc::new(Semaphore::new(max_in_flight.min(Semaphore::MAX_PERMITS))),
        }
    }

    /// A new hook call's budget.
    pub fn call_budget(&self) -> CallBudget {
        CallBudget {
            remaining: self.max_bytes,
            held: None,
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
        policy: &FhirPolicy<'_>,
        budget: &mut CallBudget,
    ) -> Result<Vec<Box<RawValue>>, FetchError> {
        policy.admits(base).map_err(FetchError::Refused)?;
        let client = if policy.internal {
            &self.internal
        } else {
            &self.public
        };
        tokio::time::timeout(
            self.budget,
            self.fetch_pages(client, base, template, token, budget),
        )
        .await
        .unwrap_or(Err(FetchError::Timeout))
    }

    async fn fetch_pages(
        &self,
        client: &reqwest::Client,
        base: &Url,
        template: &str,
        token: Option<&str>,
        budget: &mut CallBudget,
    ) -> Result<Vec<Box<RawValue>>, FetchError> {
        let root = base.as_str().trim_end_matches('/');
        let mut next = Some(format!("{root}/{template}"));
        let mut pages = Vec::new();
        while let Some(url) = next.take() {
            // Deciding on the first pages only would be deciding on part of the record.
            if pages.len() >= self.max_pages {
                return Err(FetchError::TooManyPages(self.max_pages));
            }
            // Compared as parsed URLs: a `next` link with dot segments (`/fhir/x/../../secret`)
            // or credentials must not carry the EHR's token outside the listed base.
            let url = within(base, &url).ok_or(FetchError::ForeignPage)?;
            let page = self.get(client, url.as_str(), token, budget).await?;
            next = next_link(&page);
            pages.push(page);
        }
        Ok(pages)
    }

    async fn get(
        &self,
        client: &reqwest::Client,
        url: &str,
        token: Option<&str>,
        budget: &mut CallBudget,
    ) -> Result<Box<RawValue>, FetchError> {
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert(
            reqwest::header::ACCEPT,
            reqwest::header::HeaderValue::from_static("application/fhir+json"),
        );
        // The EHR sees the same trace as its hook call (W3C traceparent).
        crate::telemetry::inject(&mut headers);
        let mut req = client.get(url).headers(headers);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let res = req.send().await.map_err(|e| {
            if egress::is_refused(&e) {
                FetchError::Refused(Refusal::Address)
            } else if e.is_timeout() {
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
            .is_some_and(|n| n as usize > budget.remaining)
        {
            return Err(FetchError::TooLarge(self.max_bytes));
        }
        // Every chunk is paid for before it is kept: the call's budget first, then the
        // process-wide one, so no number of hostile calls holds more than the latter.
        // Sized once from the declared length (checked against the budget above): a growing
        // buffer doubles, and peak memory with it (scripts/fetch-memory).
        let declared = res.content_length().unwrap_or(0) as usize;
        let mut body = Vec::with_capacity(declared.min(budget.remaining));
        let mut stream = res.bytes_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|_| FetchError::Unreachable)?;
            budget.take(chunk.len(), &self.in_flight)?;
            body.extend_from_slice(&chunk);
        }
        // Kept as text, and not copied: the FHIR reader deserialises each resource from it.
        let text = String::from_utf8(body).map_err(|_| FetchError::NotFhir)?;
        let page = RawValue::from_string(text).map_err(|_| FetchError::NotFhir)?;
        if stride_fhir::intake::resource_type(&page).is_none() {
            return Err(FetchError::NotFhir);
        }
        Ok(page)
    }
}

/// `url` as a normalised URL when it lies under `base` (same origin, path at or below the
/// base's, no credentials); `None` otherwise.
fn within(base: &Url, url: &str) -> Option<Url> {
    let u = Url::parse(url).ok()?;
    let root = base.path().trim_end_matches('/');
    let path_ok = u.path() == root || u.path().starts_with(&format!("{root}/"));
    (u.origin() == base.origin()
        && path_ok
        && u.username().is_empty()
        && u.password().is_none()
        && u.fragment().is_none())
    .then_some(u)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_next_link_is_followed_only_below_the_fhir_base_once_normalised() {
        let base = Url::parse("https://ehr.example.org/fhir/r4").unwrap();
        let ok = "https://ehr.example.org/fhir/r4/Observation?page=2";
        assert_eq!(within(&base, ok).unwrap().as_str(), ok);
        for bad in [
            "https://ehr.example.org/fhir/r4/../../secret",
            "https://ehr.example.org/fhir/r4/%2e%2e/%2e%2e/secret",
            "https://ehr.example.org/fhir/r4x/Observation",
            "https://evil.example.org/fhir/r4/Observation",
            "http://ehr.example.org/fhir/r4/Observation",
            "https://user:pw@ehr.example.org/fhir/r4/Observation",
            "https://ehr.example.org:8443/fhir/r4/Observation",
        ] {
            assert!(within(&base, bad).is_none(), "{bad}");
        }
    }
}
