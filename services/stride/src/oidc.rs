//! OpenID Connect for the staff pages: the provider's metadata, the authorization request
//! (code flow with PKCE S256, state and nonce) and the code exchange. The ID token itself is
//! verified by `stride_auth` against the trust file's keys for the issuer.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::Deserialize;
use tokio::sync::OnceCell;

use crate::config::OidcSettings;

/// The scopes Stride asks for; the provider grants a subset per person.
pub const SCOPES: &[&str] = &[
    "careplan.read",
    "careplan.review",
    "audit.read",
    "analytics.read",
    "guideline.approve",
];

#[derive(Debug, thiserror::Error)]
pub enum OidcError {
    #[error("the sign-in provider's metadata cannot be read: {0}")]
    Discovery(String),
    #[error("the sign-in provider refused the code exchange: {0}")]
    Token(String),
}

#[derive(Debug, Clone, Deserialize)]
pub struct Metadata {
    pub issuer: String,
    pub authorization_endpoint: String,
    pub token_endpoint: String,
}

/// What the token endpoint answers (RFC 6749 5.1, OIDC Core 3.1.3.3, and the launch context
/// of SMART App Launch 2.0: `patient`, and the `appContext` of the CDS Hooks card that
/// launched the app).
#[derive(Deserialize)]
pub struct TokenResponse {
    pub id_token: Option<String>,
    /// Granted scopes; when absent they are the ones requested (RFC 6749 5.1).
    pub scope: Option<String>,
    pub expires_in: Option<i64>,
    pub patient: Option<String>,
    #[serde(rename = "appContext")]
    pub app_context: Option<serde_json::Value>,
}

impl TokenResponse {
    /// The granted scopes among `wanted`.
    pub fn granted(&self, wanted: &[&str]) -> Vec<String> {
        match &self.scope {
            Some(s) => s
                .split_whitespace()
                .filter(|g| wanted.contains(g))
                .map(str::to_owned)
                .collect(),
            None => wanted.iter().map(|s| s.to_string()).collect(),
        }
    }
}

pub struct Oidc {
    pub settings: OidcSettings,
    pub redirect_uri: String,
    http: reqwest::Client,
    metadata: OnceCell<Metadata>,
    allow_http: bool,
}

/// 32 random bytes, URL-safe base64: state, nonce, PKCE verifier, session ids, CSRF tokens.
pub fn random_token() -> String {
    use aws_lc_rs::rand::SecureRandom;
    let mut bytes = [0u8; 32];
    aws_lc_rs::rand::SystemRandom::new()
        .fill(&mut bytes)
        .expect("the system random generator works");
    URL_SAFE_NO_PAD.encode(bytes)
}

/// The PKCE S256 challenge of a verifier (RFC 7636 4.2).
pub fn challenge(verifier: &str) -> String {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, verifier.as_bytes());
    URL_SAFE_NO_PAD.encode(d.as_ref())
}

impl Oidc {
    pub fn new(settings: OidcSettings, public_url: &str, allow_http: bool) -> Oidc {
        Oidc {
            settings,
            redirect_uri: format!("{public_url}/ui/auth/callback"),
            http: http_client(),
            metadata: OnceCell::new(),
            allow_http,
        }
    }

    fn acceptable(&self, url: &str) -> bool {
        url.starts_with("https://") || (self.allow_http && url.starts_with("http://"))
    }

    /// The provider's metadata, read once it is first needed (a provider that is down at start
    /// does not stop Stride; the next sign-in tries again).
    pub async fn metadata(&self) -> Result<&Metadata, OidcError> {
        self.metadata
            .get_or_try_init(|| async {
                let url = format!("{}/.well-known/openid-configuration", self.settings.issuer);
                let m: Metadata = discovery_document(&self.http, &url).await?;
                // OIDC Discovery 4.3: the issuer in the document is exactly the configured one.
                if m.issuer.trim_end_matches('/') != self.settings.issuer {
                    return Err(OidcError::Discovery(
                        "the metadata names another issuer".into(),
                    ));
                }
                if !self.acceptable(&m.authorization_endpoint)
                    || !self.acceptable(&m.token_endpoint)
                {
                    return Err(OidcError::Discovery("endpoints must be https".into()));
                }
                Ok(m)
            })
            .await
    }

    /// Where to send the browser to sign in.
    pub fn authorize_url(&self, m: &Metadata, state: &str, nonce: &str, verifier: &str) -> String {
        let mut scope = vec!["openid"];
        scope.extend_from_slice(SCOPES);
        let mut url = url::Url::parse(&m.authorization_endpoint)
            .unwrap_or_else(|_| url::Url::parse("https://invalid.invalid/").expect("a URL"));
        url.query_pairs_mut()
            .append_pair("response_type", "code")
            .append_pair("client_id", &self.settings.client_id)
            .append_pair("redirect_uri", &self.redirect_uri)
            .append_pair("scope", &scope.join(" "))
            .append_pair("state", state)
            .append_pair("nonce", nonce)
            .append_pair("code_challenge", &challenge(verifier))
            .append_pair("code_challenge_method", "S256");
        url.into()
    }

    /// Trade the authorization code for tokens, proving possession of the PKCE verifier.
    pub async fn exchange(&self, code: &str, verifier: &str) -> Result<TokenResponse, OidcError> {
        let m = self.metadata().await?;
        let client = Client {
            id: &self.settings.client_id,
            secret: self.settings.client_secret.as_deref(),
            redirect_uri: &self.redirect_uri,
        };
        exchange(&self.http, &m.token_endpoint, &client, code, verifier).await
    }
}

/// A client registration at an authorization server: who Stride is there.
pub struct Client<'a> {
    pub id: &'a str,
    /// A confidential client's secret (HTTP Basic); `None`: a public client.
    pub secret: Option<&'a str>,
    pub redirect_uri: &'a str,
}

/// A discovery document (OpenID provider metadata, a SMART configuration) as `T`.
pub async fn discovery_document<T: serde::de::DeserializeOwned>(
    http: &reqwest::Client,
    url: &str,
) -> Result<T, OidcError> {
    let res = http
        .get(url)
        .header("accept", "application/json")
        .send()
        .await
        .map_err(|e| OidcError::Discovery(e.without_url().to_string()))?;
    if !res.status().is_success() {
        return Err(OidcError::Discovery(format!("HTTP {}", res.status())));
    }
    let bytes = res
        .bytes()
        .await
        .map_err(|e| OidcError::Discovery(e.to_string()))?;
    serde_json::from_slice(&bytes).map_err(|e| OidcError::Discovery(e.to_string()))
}

/// The HTTP client for authorization servers: short timeout, no redirects followed.
pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(5))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("an HTTP client")
}

/// The authorization-code grant (RFC 6749 4.1.3) with the PKCE verifier (RFC 7636 4.5).
pub async fn exchange(
    http: &reqwest::Client,
    token_endpoint: &str,
    client: &Client<'_>,
    code: &str,
    verifier: &str,
) -> Result<TokenResponse, OidcError> {
    let mut form = vec![
        ("grant_type", "authorization_code"),
        ("code", code),
        ("redirect_uri", client.redirect_uri),
        ("code_verifier", verifier),
    ];
    let mut req = http.post(token_endpoint);
    match client.secret {
        Some(secret) => req = req.basic_auth(client.id, Some(secret)),
        None => form.push(("client_id", client.id)),
    }
    let res = req
        .form(&form)
        .send()
        .await
        .map_err(|e| OidcError::Token(e.without_url().to_string()))?;
    let status = res.status();
    let bytes = res
        .bytes()
        .await
        .map_err(|e| OidcError::Token(e.to_string()))?;
    if !status.is_success() {
        // RFC 6749 5.2: the error code is safe to show; the description may not be.
        let code = serde_json::from_slice::<serde_json::Value>(&bytes)
            .ok()
            .and_then(|v| v["error"].as_str().map(str::to_owned))
            .unwrap_or_else(|| format!("HTTP {status}"));
        return Err(OidcError::Token(code));
    }
    serde_json::from_slice(&bytes).map_err(|e| OidcError::Token(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pkce_challenge_matches_rfc_7636_appendix_b() {
        assert_eq!(
            challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
    }

    #[test]
    fn random_tokens_differ_and_carry_256_bits() {
        let (a, b) = (random_token(), random_token());
        assert_ne!(a, b);
        assert_eq!(URL_SAFE_NO_PAD.decode(a).unwrap().len(), 32);
    }
}
