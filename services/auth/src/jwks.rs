//! An issuer's keys: inline, or fetched over HTTPS and cached for a bounded time. An unknown
//! kid triggers at most one refresh per interval, so forged kids cannot cause a fetch storm.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::{AlgorithmParameters, Jwk, JwkSet};
use tokio::sync::Mutex;
use url::Url;

use crate::trust::{IssuerConfig, TrustError};
use crate::{AuthError, VerifierOptions};

pub(crate) fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(2))
        .timeout(Duration::from_secs(3))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("a TLS client can be built")
}

/// Cached keys are used past their TTL only while the key server is unreachable, and not
/// beyond this.
const MAX_STALE: Duration = Duration::from_secs(24 * 3600);
const MAX_JWKS_BYTES: usize = 256 * 1024;

struct Cached {
    set: Option<JwkSet>,
    fetched: Option<Instant>,
    last_attempt: Option<Instant>,
}

pub struct KeySource {
    inline: Option<JwkSet>,
    jwks_uri: Option<Url>,
    jku: Vec<Url>,
    http: reqwest::Client,
    ttl: Duration,
    refresh_interval: Duration,
    cache: Mutex<HashMap<String, Cached>>,
}

fn url_allowed(u: &Url, loopback_http: bool) -> bool {
    match u.scheme() {
        "https" => true,
        "http" if loopback_http => {
            matches!(u.host_str(), Some("127.0.0.1" | "localhost" | "[::1]"))
        }
        _ => false,
    }
}

impl KeySource {
    pub(crate) fn new(
        cfg: &IssuerConfig,
        http: reqwest::Client,
        opts: &VerifierOptions,
    ) -> Result<KeySource, TrustError> {
        for u in cfg.jwks_uri.iter().chain(&cfg.jku) {
            if !url_allowed(u, opts.allow_loopback_http) {
                return Err(TrustError::Invalid(format!(
                    "issuer {}: key URL {u} must use https",
                    cfg.iss
                )));
            }
        }
        Ok(KeySource {
            inline: cfg.jwks.clone(),
            jwks_uri: cfg.jwks_uri.clone(),
            jku: cfg.jku.clone(),
            http,
            ttl: opts.jwks_ttl,
            refresh_interval: opts.refresh_interval,
            cache: Mutex::new(HashMap::new()),
        })
    }

    /// The key for a token. `jku` is a hint, not a command (CDS Hooks clients such as the
    /// Sandbox send it on every token): a kid the issuer's pinned keys already hold — inline,
    /// or a `jwks_uri` set cached within its TTL — is verified with that key and nothing is
    /// fetched. Only an unknown kid makes a listed `jku` fetched; an unlisted one is refused
    /// without a network call.
    pub async fn key(&self, jku: Option<&str>, kid: Option<&str>) -> Result<Jwk, AuthError> {
        if let Some(k) = self.pinned(kid).await {
            return Ok(k);
        }
        if let Some(jku) = jku {
            // The URL is compared, never fetched, before it is found in the list.
            let listed = self
                .jku
                .iter()
                .find(|u| u.as_str() == jku)
                .ok_or(AuthError::UnlistedJku)?;
            return self.remote(listed, kid).await;
        }
        match &self.jwks_uri {
            Some(u) => self.remote(u, kid).await,
            None => Err(AuthError::UnknownKey),
        }
    }

    /// The key with this kid among keys held without a network call.
    async fn pinned(&self, kid: Option<&str>) -> Option<Jwk> {
        if let Some(k) = self.inline.as_ref().and_then(|set| pick(set, kid)) {
            return Some(k);
        }
        let uri = self.jwks_uri.as_ref()?;
        let cache = self.cache.lock().await;
        let entry = cache.get(uri.as_str())?;
        if entry.fetched.is_none_or(|t| t.elapsed() >= self.ttl) {
            return None;
        }
        entry.set.as_ref().and_then(|set| pick(set, kid))
    }

    async fn remote(&self, url: &Url, kid: Option<&str>) -> Result<Jwk, AuthError> {
        let key = url.to_string();
        // Decide under the lock, fetch without it: other tokens of this issuer are not held
        // up by a slow key server.
        let stale_set = {
            let mut cache = self.cache.lock().await;
            let entry = cache.entry(key.clone()).or_insert(Cached {
                set: None,
                fetched: None,
                last_attempt: None,
            });
            let fresh = entry.fetched.is_some_and(|t| t.elapsed() < self.ttl);
            if fresh {
                if let Some(k) = entry.set.as_ref().and_then(|s| pick(s, kid)) {
                    return Ok(k);
                }
            }
            // Stale, missing, or an unknown kid: refresh, but not more than once per interval.
            let may_fetch = entry
                .last_attempt
                .is_none_or(|t| t.elapsed() >= self.refresh_interval);
            // Keys this old are not trusted even when the key server is down (rotated keys end).
            let usable = entry
                .set
                .clone()
                .filter(|_| entry.fetched.is_some_and(|t| t.elapsed() < MAX_STALE));
            if !may_fetch {
                return usable
                    .as_ref()
                    .and_then(|s| pick(s, kid))
                    .ok_or(AuthError::UnknownKey);
            }
            entry.last_attempt = Some(Instant::now());
            usable
        };
        match self.fetch(url).await {
            Ok(set) => {
                let found = pick(&set, kid);
                let mut cache = self.cache.lock().await;
                if let Some(entry) = cache.get_mut(&key) {
                    entry.set = Some(set);
                    entry.fetched = Some(Instant::now());
                }
                found.ok_or(AuthError::UnknownKey)
            }
            Err(e) => {
                tracing::warn!(error = %e, "JWKS fetch failed");
                match stale_set {
                    Some(set) => pick(&set, kid).ok_or(AuthError::UnknownKey),
                    None => Err(AuthError::KeysUnavailable),
                }
            }
        }
    }

    async fn fetch(&self, url: &Url) -> Result<JwkSet, String> {
        let res = self
            .http
            .get(url.clone())
            .send()
            .await
            .map_err(|e| e.to_string())?;
        if !res.status().is_success() {
            return Err(format!("HTTP {}", res.status()));
        }
        let mut res = res;
        let mut bytes = Vec::new();
        while let Some(chunk) = res.chunk().await.map_err(|e| e.to_string())? {
            if bytes.len() + chunk.len() > MAX_JWKS_BYTES {
                return Err("key set over 256 KiB".into());
            }
            bytes.extend_from_slice(&chunk);
        }
        serde_json::from_slice(&bytes).map_err(|e| e.to_string())
    }
}

/// The key with this kid; without a kid, the only asymmetric key there is.
fn pick(set: &JwkSet, kid: Option<&str>) -> Option<Jwk> {
    let usable = |k: &&Jwk| !matches!(k.algorithm, AlgorithmParameters::OctetKey(_));
    match kid {
        Some(kid) => set
            .keys
            .iter()
            .filter(usable)
            .find(|k| k.common.key_id.as_deref() == Some(kid))
            .cloned(),
        None => {
            let mut keys = set.keys.iter().filter(usable);
            match (keys.next(), keys.next()) {
                (Some(k), None) => Some(k.clone()),
                _ => None,
            }
        }
    }
}
