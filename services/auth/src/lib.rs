//! Who is calling. CDS clients (EHRs) sign a JWT per call (CDS Hooks 2.0 security section);
//! staff present OAuth 2.0 bearer access tokens (RFC 6750) — both checked per RFC 8725 against
//! the issuers of the trust file. Keys come inline, from the issuer's `jwks_uri`, or from a `jku`
//! the trust file lists for that issuer — never from any other URL.

mod jwks;
mod trust;

use std::collections::HashMap;
use std::time::Duration;

use jsonwebtoken::{decode, decode_header, DecodingKey, Validation};
use serde::Deserialize;
use time::OffsetDateTime;

pub use jsonwebtoken::Algorithm;
pub use jwks::KeySource;
pub use stride_ids::TenantId;
pub use trust::{IssuerConfig, Kind, SmartRegistration, TrustError, TrustFile};

/// A verified caller. The JWT id and expiry travel along for the replay check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub issuer: String,
    pub subject: String,
    /// The tenant, from the trust file only (a token cannot choose it); else the issuer.
    pub tenant: TenantId,
    /// Staff allowed to see every tenant (trust-file flag).
    pub all_tenants: bool,
    /// The clinic's IANA time zone, from the trust file.
    pub timezone: Option<String>,
    pub kind: Kind,
    pub jti: Option<String>,
    pub expires_at: i64,
    pub scopes: Vec<String>,
    /// Set for a staff member an EHR launched for one patient (SMART App Launch): only that
    /// patient's data is theirs to see, as `Patient/ID`.
    pub patient: Option<String>,
    /// The FHIR resource that is the user (SMART `fhirUser`), when the token names one.
    pub fhir_user: Option<String>,
}

impl Caller {
    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes.iter().any(|s| s == scope)
    }

    /// The one tenant whose data this caller may see, or `None` for an all-tenants issuer.
    pub fn tenant_scope(&self) -> Option<&TenantId> {
        (!self.all_tenants).then_some(&self.tenant)
    }

    /// Whether data filed under `tenant` is visible to this caller.
    pub fn may_see(&self, tenant: &TenantId) -> bool {
        self.tenant_scope().is_none_or(|t| t == tenant)
    }

    /// Whether a record of `patient_ref` (`Patient/ID`) filed under `tenant` is visible.
    pub fn may_see_patient(&self, tenant: &TenantId, patient_ref: &str) -> bool {
        self.may_see(tenant) && self.patient.as_deref().is_none_or(|p| p == patient_ref)
    }
}

/// Why a token was refused. `reason()` is a stable label for metrics and logs; the message
/// says what was wrong without echoing the token, keys or internals.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AuthError {
    #[error("an Authorization: Bearer token is required")]
    Missing,
    #[error("the token is not a well-formed JWT")]
    Malformed,
    #[error("the token's signing algorithm is not accepted")]
    AlgorithmNotAllowed,
    #[error("the token's issuer is not trusted")]
    UntrustedIssuer,
    #[error("this issuer may not call this endpoint")]
    WrongKind,
    #[error("the jku header names a key set that is not listed for this issuer")]
    UnlistedJku,
    #[error("no key of the issuer matches the token's kid")]
    UnknownKey,
    #[error("the issuer's keys cannot be fetched")]
    KeysUnavailable,
    #[error("the token's signature does not verify")]
    BadSignature,
    #[error("the token's audience is not this service")]
    WrongAudience,
    #[error("the token has expired")]
    Expired,
    #[error("the token was issued in the future")]
    IssuedInFuture,
    #[error("the token is not valid yet (nbf)")]
    NotYetValid,
    #[error("the token names a critical header extension this service does not understand")]
    UnknownCritical,
    #[error("the token or one of its claims is longer than accepted")]
    TooLarge,
    #[error("the token lacks the `{0}` claim")]
    MissingClaim(&'static str),
    #[error("the token has already been used")]
    Replayed,
    #[error("the token's lifetime (exp - iat) is longer than accepted")]
    LifetimeTooLong,
    #[error("the token's tenant does not match its issuer")]
    WrongTenant,
    #[error("the token lacks the `{0}` scope")]
    MissingScope(String),
    #[error("the ID token does not answer this sign-in (nonce)")]
    WrongNonce,
    #[error("this sign-in was launched by the EHR for one patient: it opens that patient's CarePlans only")]
    PatientLimited,
}

impl AuthError {
    /// The stable error code carried in the OperationOutcome (CONTRACT.md), one per cause.
    pub fn code(&self) -> &'static str {
        match self {
            AuthError::Missing => "auth_missing",
            AuthError::Malformed => "auth_malformed",
            AuthError::AlgorithmNotAllowed => "auth_algorithm",
            AuthError::UntrustedIssuer => "auth_issuer",
            AuthError::WrongKind => "auth_kind",
            AuthError::UnlistedJku => "auth_jku",
            AuthError::UnknownKey => "auth_kid",
            AuthError::KeysUnavailable => "auth_keys_unavailable",
            AuthError::BadSignature => "auth_signature",
            AuthError::WrongAudience => "auth_audience",
            AuthError::Expired => "auth_expired",
            AuthError::IssuedInFuture => "auth_iat",
            AuthError::NotYetValid => "auth_nbf",
            AuthError::UnknownCritical => "auth_crit",
            AuthError::TooLarge => "auth_size",
            AuthError::MissingClaim(_) => "auth_claim",
            AuthError::Replayed => "auth_replay",
            AuthError::LifetimeTooLong => "auth_lifetime",
            AuthError::WrongTenant => "auth_tenant",
            AuthError::MissingScope(_) => "auth_scope",
            AuthError::WrongNonce => "auth_nonce",
            AuthError::PatientLimited => "auth_patient",
        }
    }

    /// The code without its `auth_` prefix: the label of refusal metrics and audit rows.
    pub fn reason(&self) -> &'static str {
        &self.code()["auth_".len()..]
    }

    /// 403 when the caller is known but not allowed; 401 when it is not known at all.
    pub fn is_forbidden(&self) -> bool {
        matches!(
            self,
            AuthError::WrongKind
                | AuthError::WrongTenant
                | AuthError::MissingScope(_)
                | AuthError::PatientLimited
        )
    }
}

/// The staff (OpenID Connect) algorithms: RSA, RSA-PSS and ECDSA. No HMAC, never `none`.
pub const STAFF_ALGORITHMS: &[Algorithm] = &[
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
];

#[derive(Debug, Clone)]
pub struct VerifierOptions {
    /// What CDS clients may sign with (CDS Hooks' rules, `STRIDE_JWT_ALGORITHMS`).
    pub algorithms: Vec<Algorithm>,
    /// What staff issuers may sign with: the public-key algorithms OpenID Connect providers
    /// use (RS256 is every provider's default), never `none` or an HMAC. An issuer's own
    /// `algorithms` in the trust file narrows it.
    pub staff_algorithms: Vec<Algorithm>,
    pub clock_skew: Duration,
    pub jwks_ttl: Duration,
    /// At most one fetch per issuer key source in this interval when an unknown kid shows up.
    pub refresh_interval: Duration,
    /// Allow `http://` key URLs on loopback (tests, local development).
    pub allow_loopback_http: bool,
    /// Longest accepted `exp - iat` (CDS Hooks clients sign one short-lived token per call).
    pub max_lifetime: Duration,
}

impl Default for VerifierOptions {
    fn default() -> Self {
        VerifierOptions {
            // CDS Hooks 2.0 recommends ES384 and RS384; ES256/RS256 are opt-in.
            algorithms: vec![Algorithm::ES384, Algorithm::RS384],
            staff_algorithms: STAFF_ALGORITHMS.to_vec(),
            clock_skew: Duration::from_secs(60),
            jwks_ttl: Duration::from_secs(300),
            refresh_interval: Duration::from_secs(30),
            allow_loopback_http: false,
            max_lifetime: Duration::from_secs(3600),
        }
    }
}

/// Longest token accepted: a CDS client's JWT is a few hundred bytes, an identity provider's
/// access token a few KiB; anything far beyond is not a token but a payload.
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;
/// Longest `jti` stored for the replay check (RFC 7519 sets no limit; a UUID is 36 bytes).
pub const MAX_JTI_BYTES: usize = 256;

pub struct Verifier {
    issuers: HashMap<String, (IssuerConfig, KeySource)>,
    options: VerifierOptions,
}

#[derive(Deserialize)]
struct Unverified {
    iss: Option<String>,
}

#[derive(Deserialize)]
struct Claims {
    iss: String,
    sub: Option<String>,
    exp: Option<i64>,
    iat: Option<i64>,
    jti: Option<String>,
    tenant: Option<String>,
    scope: Option<String>,
    nonce: Option<String>,
    #[serde(rename = "fhirUser")]
    fhir_user: Option<String>,
}

impl Verifier {
    pub fn new(trust: TrustFile, options: VerifierOptions) -> Result<Verifier, TrustError> {
        let http = jwks::client();
        let mut issuers = HashMap::new();
        for cfg in trust.issuers {
            let source = KeySource::new(&cfg, http.clone(), &options)?;
            issuers.insert(cfg.iss.clone(), (cfg, source));
        }
        Ok(Verifier { issuers, options })
    }

    /// Every trust-file entry.
    pub fn issuers(&self) -> impl Iterator<Item = &IssuerConfig> {
        self.issuers.values().map(|(cfg, _)| cfg)
    }

    /// The clinic's IANA time zone: the first issuer of `tenant` that names one.
    pub fn tenant_timezone(&self, tenant: &TenantId) -> Option<&str> {
        self.issuers()
            .filter(|i| i.serves(tenant))
            .find_map(|i| i.timezone.as_deref())
    }

    /// The trust-file entry of `iss`, if it lists it.
    pub fn issuer(&self, iss: &str) -> Option<&IssuerConfig> {
        self.issuers.get(iss).map(|(cfg, _)| cfg)
    }

    /// The staff issuer where Stride is registered as a SMART app with the EHR whose FHIR base
    /// is `fhir_base` (a launch's `iss`).
    pub fn smart_issuer(&self, fhir_base: &str) -> Option<&IssuerConfig> {
        let base = fhir_base.trim_end_matches('/');
        self.issuers()
            .find(|i| i.smart.as_ref().is_some_and(|s| s.iss() == base))
    }

    /// Whether an EHR of `tenant` launches Stride as a SMART app (its cards then link the
    /// review as a `smart` link).
    pub fn smart_tenant(&self, tenant: &TenantId) -> bool {
        self.issuers()
            .any(|i| i.smart.is_some() && i.serves(tenant))
    }

    /// What the trust file lets `iss` do, if it lists it.
    pub fn issuer_kind(&self, iss: &str) -> Option<Kind> {
        self.issuers.get(iss).map(|(cfg, _)| cfg.kind)
    }

    /// No trust file: every token is refused.
    pub fn empty() -> Verifier {
        Verifier {
            issuers: HashMap::new(),
            options: VerifierOptions::default(),
        }
    }

    /// Verify a bearer token for `kind` with the exact `audience`. The jti replay check is the
    /// caller's (it needs shared storage).
    #[tracing::instrument(name = "auth", skip_all, fields(kind = ?kind))]
    pub async fn verify(
        &self,
        token: &str,
        kind: Kind,
        audience: &str,
    ) -> Result<Caller, AuthError> {
        let (cfg, c) = self.checked_claims(token, kind, audience).await?;
        if kind == Kind::CdsClient && c.jti.as_deref().is_none_or(str::is_empty) {
            return Err(AuthError::MissingClaim("jti"));
        }
        if let Some(expected) = &cfg.tenant {
            if c.tenant.as_deref() != Some(expected.as_str()) {
                return Err(AuthError::WrongTenant);
            }
        }
        Ok(caller(cfg, c, kind))
    }

    /// Verify an OpenID Connect ID token from a `staff` issuer (OIDC Core 3.1.3.7): signature,
    /// `iss`, `aud` holding `client_id`, `exp`/`iat`, and the `nonce` of this sign-in. The
    /// caller's tenant comes from the trust file; scopes are the granted ones, given by the
    /// token response.
    #[tracing::instrument(name = "auth id token", skip_all)]
    pub async fn verify_id_token(
        &self,
        token: &str,
        client_id: &str,
        nonce: &str,
        scopes: Vec<String>,
    ) -> Result<Caller, AuthError> {
        let (cfg, c) = self.checked_claims(token, Kind::Staff, client_id).await?;
        if c.nonce.as_deref() != Some(nonce) {
            return Err(AuthError::WrongNonce);
        }
        let mut caller = caller(cfg, c, Kind::Staff);
        caller.scopes = scopes;
        Ok(caller)
    }

    /// Signature, issuer, kind, audience, time and lifetime: what every token must pass.
    async fn checked_claims(
        &self,
        token: &str,
        kind: Kind,
        audience: &str,
    ) -> Result<(&IssuerConfig, Claims), AuthError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(AuthError::TooLarge);
        }
        let header = decode_header(token).map_err(|_| AuthError::Malformed)?;
        // Algorithms belong to the kind of token: a CDS client's keep CDS Hooks' rules, a
        // staff issuer's are what OpenID Connect providers sign with.
        let allowed = match kind {
            Kind::CdsClient => &self.options.algorithms,
            Kind::Staff => &self.options.staff_algorithms,
        };
        if !allowed.contains(&header.alg) {
            return Err(AuthError::AlgorithmNotAllowed);
        }
        // RFC 7515 §4.1.11: a recipient must refuse a token whose `crit` names an extension it
        // does not understand. Stride understands none, and an empty list is itself invalid.
        if header.crit.is_some() {
            return Err(AuthError::UnknownCritical);
        }
        // Which issuer's keys to use is read from the unverified payload; the signature
        // check below then proves it.
        let claimed: Unverified = jsonwebtoken::dangerous::insecure_decode_claims(token)
            .map_err(|_| AuthError::Malformed)?;
        let iss = claimed.iss.ok_or(AuthError::MissingClaim("iss"))?;
        let (cfg, keys) = self.issuers.get(&iss).ok_or(AuthError::UntrustedIssuer)?;
        if cfg.kind != kind {
            return Err(AuthError::WrongKind);
        }
        if cfg
            .algorithms
            .as_ref()
            .is_some_and(|a| !a.contains(&header.alg))
        {
            return Err(AuthError::AlgorithmNotAllowed);
        }
        let jwk = keys
            .key(header.jku.as_deref(), header.kid.as_deref())
            .await?;
        let key = DecodingKey::from_jwk(&jwk).map_err(|_| AuthError::UnknownKey)?;

        let mut validation = Validation::new(header.alg);
        validation.algorithms = vec![header.alg];
        validation.leeway = self.options.clock_skew.as_secs();
        validation.validate_nbf = true;
        validation.set_issuer(&[&iss]);
        validation.set_audience(&[audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        let data = decode::<Claims>(token, &key, &validation).map_err(|e| {
            use jsonwebtoken::errors::ErrorKind as K;
            match e.kind() {
                K::ExpiredSignature => AuthError::Expired,
                K::ImmatureSignature => AuthError::NotYetValid,
                K::InvalidAudience => AuthError::WrongAudience,
                K::InvalidIssuer => AuthError::UntrustedIssuer,
                K::MissingRequiredClaim(c) if c == "exp" => AuthError::MissingClaim("exp"),
                K::MissingRequiredClaim(c) if c == "aud" => AuthError::WrongAudience,
                K::InvalidAlgorithm
                | K::InvalidKeyFormat
                | K::InvalidEcdsaKey
                | K::InvalidRsaKey(_) => AuthError::AlgorithmNotAllowed,
                K::InvalidSignature => AuthError::BadSignature,
                _ => AuthError::Malformed,
            }
        })?;
        let c = data.claims;
        let now = OffsetDateTime::now_utc().unix_timestamp();
        let skew = self.options.clock_skew.as_secs() as i64;
        let iat = c.iat.ok_or(AuthError::MissingClaim("iat"))?;
        if iat > now + skew {
            return Err(AuthError::IssuedInFuture);
        }
        let exp = c.exp.ok_or(AuthError::MissingClaim("exp"))?;
        if exp.saturating_sub(iat) > self.options.max_lifetime.as_secs() as i64 {
            return Err(AuthError::LifetimeTooLong);
        }
        if c.jti.as_ref().is_some_and(|j| j.len() > MAX_JTI_BYTES) {
            return Err(AuthError::TooLarge);
        }
        Ok((cfg, c))
    }
}

fn caller(cfg: &IssuerConfig, c: Claims, kind: Kind) -> Caller {
    let subject = c.sub.unwrap_or_else(|| c.iss.clone());
    Caller {
        issuer: c.iss,
        subject,
        tenant: cfg.tenant(),
        all_tenants: cfg.all_tenants && kind == Kind::Staff,
        timezone: cfg.timezone.clone(),
        kind,
        jti: c.jti,
        expires_at: c.exp.unwrap_or_default(),
        scopes: c
            .scope
            .map(|s| s.split_whitespace().map(str::to_owned).collect())
            .unwrap_or_default(),
        patient: None,
        fhir_user: c.fhir_user,
    }
}

/// `Authorization: Bearer <token>` → the token.
pub fn bearer(header: Option<&str>) -> Result<&str, AuthError> {
    let h = header.ok_or(AuthError::Missing)?;
    let (scheme, token) = h.split_once(' ').ok_or(AuthError::Malformed)?;
    if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
        return Err(AuthError::Malformed);
    }
    Ok(token.trim())
}
