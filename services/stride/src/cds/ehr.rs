//! The fallback fetch from the EHR's FHIR server, as the use cases' `Fetch`: the hook call's
//! and `$apply`'s.

use serde_json::value::RawValue;
use stride_app::hook::{Fetch, Unfetched};
use url::Url;

use crate::admission::{self, Refused};
use crate::cds::egress::FhirPolicy;
use crate::cds::fetch::{CallBudget, FetchError};
use crate::error::ApiError;
use crate::state::AppState;

/// The fallback fetch of one hook call: the EHR's FHIR server with the caller's token, where
/// the caller's issuer may fetch from, the call's byte budget, and its processing slot, given
/// back while it waits on the EHR.
pub struct EhrFetch<'a> {
    state: &'a AppState,
    server: Option<&'a Url>,
    token: Option<&'a str>,
    policy: FhirPolicy<'a>,
    budget: CallBudget,
    slot: admission::Slot<'a>,
}

impl Fetch for EhrFetch<'_> {
    fn available(&self) -> bool {
        self.server.is_some()
    }

    async fn fetch(&mut self, key: &str, query: &str) -> Result<Vec<Box<RawValue>>, Unfetched> {
        let (state, Some(server)) = (self.state, self.server) else {
            return Err(Unfetched::Failed);
        };
        let started = std::time::Instant::now();
        let fetched = self
            .slot
            .outside(
                state
                    .fetcher
                    .fetch(server, query, self.token, &self.policy, &mut self.budget),
            )
            .await
            .map_err(|refused| {
                shed(state, refused);
                Unfetched::Busy
            })?;
        let outcome = if fetched.is_ok() { "ok" } else { "failed" };
        state
            .metrics
            .prefetch_fetch
            .with_label_values(&[outcome])
            .observe(started.elapsed().as_secs_f64());
        fetched.map_err(|e| {
            state
                .metrics
                .prefetch_failures
                .with_label_values(&[e.reason()])
                .inc();
            tracing::warn!(key, reason = e.reason(), error = %e, "prefetch fallback fetch failed");
            if e == FetchError::Busy {
                state
                    .metrics
                    .hooks_refused
                    .with_label_values(&["fetch_busy"])
                    .inc();
                Unfetched::Busy
            } else {
                Unfetched::Failed
            }
        })
    }
}

impl<'a> EhrFetch<'a> {
    /// The fetch for a caller of `issuer`: from `server` with `token`, where that issuer may
    /// fetch from, within one call's byte budget, giving `slot` back while it waits.
    pub fn new(
        state: &'a AppState,
        server: Option<&'a Url>,
        token: Option<&'a str>,
        issuer: &str,
        slot: admission::Slot<'a>,
    ) -> EhrFetch<'a> {
        EhrFetch {
            state,
            server,
            token,
            policy: state
                .verifier
                .issuer(issuer)
                .map(FhirPolicy::from_issuer)
                .unwrap_or_default(),
            budget: state.fetcher.call_budget(),
            slot,
        }
    }
}

/// A call refused a processing slot (or fetch bytes): counted, and answered 503.
pub fn shed(state: &AppState, refused: Refused) -> ApiError {
    if matches!(refused, Refused::QueueFull | Refused::TimedOut) {
        state.metrics.hooks_shed.inc();
    }
    state
        .metrics
        .hooks_refused
        .with_label_values(&[refused.as_str()])
        .inc();
    tracing::warn!(reason = refused.as_str(), "shedding a hook call");
    ApiError::Overloaded
}
