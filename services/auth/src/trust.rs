//! The trust file (CONTRACT.md): which issuers Stride trusts, for what, and where their keys are.

use std::path::Path;

use jsonwebtoken::jwk::JwkSet;
use serde::Deserialize;
use stride_ids::TenantId;
use url::Url;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// An EHR calling hooks (CDS Hooks JWT rules).
    CdsClient,
    /// A person's access token from the clinic's OAuth server.
    Staff,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IssuerConfig {
    pub iss: String,
    pub kind: Kind,
    /// The clinic, as the file names it (parsed: a name that is not one refuses the file).
    #[serde(default)]
    pub tenant: Option<TenantId>,
    #[serde(default)]
    pub jwks: Option<JwkSet>,
    #[serde(default)]
    pub jwks_uri: Option<Url>,
    /// Key-set URLs a token's `jku` header may name for this issuer.
    #[serde(default)]
    pub jku: Vec<Url>,
    /// Staff of this issuer see every tenant (an organisation-wide auditor). Never implied.
    #[serde(default)]
    pub all_tenants: bool,
    /// The clinic's IANA time zone (`Europe/Berlin`): "today" and day boundaries of this
    /// tenant's decisions. Without it, the offsets of the EHR's own timestamps decide.
    #[serde(default)]
    pub timezone: Option<String>,
    /// FHIR server base URLs this issuer's hooks may name as `fhirServer` (the URL or a path
    /// below it). Absent: any server on a public address.
    #[serde(default)]
    pub fhir_servers: Option<Vec<Url>>,
    /// This issuer's FHIR server is on an internal network (loopback, private, link-local):
    /// fetches may connect there. Cloud metadata addresses stay refused.
    #[serde(default)]
    pub fhir_internal_networks: bool,
    /// The guideline versions that answer for this issuer's tenant (`guideline-id` →
    /// `MAJOR.MINOR.PATCH`), overriding STRIDE_GUIDELINE_VERSIONS; checked against the loaded
    /// rule sets at start.
    #[serde(default)]
    pub guidelines: std::collections::BTreeMap<String, String>,
    /// Candidate versions evaluated in shadow for this issuer's tenant (`guideline-id` →
    /// version), overriding STRIDE_SHADOW_VERSIONS; checked at start. Never shown.
    #[serde(default)]
    pub shadow: std::collections::BTreeMap<String, String>,
    /// A `staff` issuer that is an EHR's authorization server: Stride is registered there as a
    /// SMART App Launch client, and the EHR launches the review pages (issue 23).
    #[serde(default)]
    pub smart: Option<SmartRegistration>,
    /// The signing algorithms this issuer's tokens may use, narrowing what their kind
    /// accepts (a staff issuer: what OpenID Connect providers sign with; a CDS client: the
    /// service's `STRIDE_JWT_ALGORITHMS`). Never `none` or an HMAC.
    #[serde(default)]
    pub algorithms: Option<Vec<jsonwebtoken::Algorithm>>,
}

impl IssuerConfig {
    /// The tenant this issuer's callers belong to: the trust file's `tenant`, else the issuer
    /// (which `TrustFile::parse` has checked is one).
    pub fn tenant(&self) -> TenantId {
        self.tenant
            .clone()
            .unwrap_or_else(|| TenantId::stored(self.iss.clone()))
    }

    /// Whether this issuer's callers belong to `tenant`.
    pub fn serves(&self, tenant: &TenantId) -> bool {
        self.tenant_str() == tenant.as_str()
    }

    fn tenant_str(&self) -> &str {
        self.tenant
            .as_ref()
            .map_or(self.iss.as_str(), TenantId::as_str)
    }

    /// The last segment of this EHR's SMART redirect URI (`/ui/auth/smart-callback/{key}`): the
    /// tenant where a path can carry it as it is, else a digest of it (a tenant defaulting to
    /// the issuer URL). One per clinic; logged at start with the URI to register.
    pub fn smart_callback_key(&self) -> String {
        let t = self.tenant_str();
        if !t.is_empty()
            && t.len() <= 64
            && t.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        {
            return t.to_owned();
        }
        // FNV-1a: a stable name for a path, not a secret.
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in t.bytes() {
            h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
        format!("t-{h:016x}")
    }
}

/// Stride's registration as a SMART app with one EHR.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmartRegistration {
    /// The EHR's FHIR base URL: the `iss` of its launches, where its
    /// `/.well-known/smart-configuration` is read, and the `aud` of the authorization request.
    pub fhir_base: Url,
    /// The client id the EHR gave Stride.
    pub client_id: String,
    /// The environment variable holding the client secret of a confidential client; absent, a
    /// public client (PKCE only). The secret itself never sits in the trust file.
    #[serde(default)]
    pub client_secret_env: Option<String>,
}

impl SmartRegistration {
    /// The FHIR base as launches name it: no trailing slash.
    pub fn iss(&self) -> &str {
        self.fhir_base.as_str().trim_end_matches('/')
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrustFile {
    pub issuers: Vec<IssuerConfig>,
}

#[derive(Debug, thiserror::Error)]
pub enum TrustError {
    #[error("cannot read the trust file: {0}")]
    Io(String),
    #[error("the trust file is not valid: {0}")]
    Invalid(String),
}

impl TrustFile {
    pub fn load(path: &Path) -> Result<TrustFile, TrustError> {
        let text = std::fs::read_to_string(path).map_err(|e| TrustError::Io(e.to_string()))?;
        Self::parse(&text)
    }

    pub fn parse(text: &str) -> Result<TrustFile, TrustError> {
        let t: TrustFile =
            serde_json::from_str(text).map_err(|e| TrustError::Invalid(e.to_string()))?;
        let mut seen = std::collections::HashSet::new();
        let mut smart_bases = std::collections::HashSet::new();
        let mut smart_tenants = std::collections::HashSet::new();
        for i in &t.issuers {
            if !seen.insert(&i.iss) {
                return Err(TrustError::Invalid(format!(
                    "issuer {} is listed twice",
                    i.iss
                )));
            }
            if i.tenant.is_none() {
                if let Err(e) = TenantId::parse(&i.iss) {
                    return Err(TrustError::Invalid(format!(
                        "issuer {}: it names no tenant, and the issuer cannot stand for one \
                         ({e}): give a tenant",
                        i.iss
                    )));
                }
            }
            if let Some(tz) = &i.timezone {
                if jiff::tz::TimeZone::get(tz).is_err() {
                    return Err(TrustError::Invalid(format!(
                        "issuer {}: timezone `{tz}` is not an IANA time zone name",
                        i.iss
                    )));
                }
            }
            for u in i.fhir_servers.iter().flatten() {
                if !base_url(u) {
                    return Err(TrustError::Invalid(format!(
                        "issuer {}: fhir_servers entry {u} must be an https base URL \
                         without query, fragment or credentials",
                        i.iss
                    )));
                }
            }
            if let Some(algs) = &i.algorithms {
                use jsonwebtoken::Algorithm as A;
                if algs.is_empty()
                    || algs
                        .iter()
                        .any(|a| matches!(a, A::HS256 | A::HS384 | A::HS512))
                {
                    return Err(TrustError::Invalid(format!(
                        "issuer {}: algorithms must name public-key algorithms (no HMAC)",
                        i.iss
                    )));
                }
            }
            if let Some(smart) = &i.smart {
                // A launched session belongs to one clinic: an issuer that serves every
                // tenant would open any clinic's plan.
                if i.all_tenants {
                    return Err(TrustError::Invalid(format!(
                        "issuer {}: a smart registration belongs to one clinic's issuer, not \
                         one with all_tenants",
                        i.iss
                    )));
                }
                if i.kind != Kind::Staff {
                    return Err(TrustError::Invalid(format!(
                        "issuer {}: only a staff issuer (the EHR's authorization server) has a \
                         smart registration",
                        i.iss
                    )));
                }
                if !base_url(&smart.fhir_base) || smart.client_id.trim().is_empty() {
                    return Err(TrustError::Invalid(format!(
                        "issuer {}: smart needs an https fhir_base without query, fragment or \
                         credentials, and a client_id",
                        i.iss
                    )));
                }
                // The redirect URI names the clinic (`/ui/auth/smart-callback/{key}`), so that
                // an answer is only taken at the address of the EHR the sign-in began at (the
                // OAuth mix-up): one registration per clinic.
                let key = i.smart_callback_key();
                if !smart_tenants.insert(key.clone()) {
                    return Err(TrustError::Invalid(format!(
                        "issuer {}: tenant {} has a smart registration already (one per \
                         clinic: its redirect URI is /ui/auth/smart-callback/{key})",
                        i.iss,
                        i.tenant_str()
                    )));
                }
                if !smart_bases.insert(smart.iss().to_owned()) {
                    return Err(TrustError::Invalid(format!(
                        "issuer {}: the FHIR base {} is registered twice",
                        i.iss,
                        smart.iss()
                    )));
                }
            }
            if i.jwks.is_none() && i.jwks_uri.is_none() && i.jku.is_empty() {
                return Err(TrustError::Invalid(format!(
                    "issuer {} has no keys: give jwks, jwks_uri or jku",
                    i.iss
                )));
            }
            if let Some(set) = &i.jwks {
                if set.keys.iter().any(|k| {
                    matches!(
                        k.algorithm,
                        jsonwebtoken::jwk::AlgorithmParameters::OctetKey(_)
                    )
                }) {
                    return Err(TrustError::Invalid(format!(
                        "issuer {}: symmetric keys are never trusted",
                        i.iss
                    )));
                }
            }
        }
        Ok(t)
    }
}

/// An https base URL (http only on loopback) without query, fragment or credentials.
fn base_url(u: &Url) -> bool {
    let loopback = matches!(u.host(), Some(url::Host::Ipv4(ip)) if ip.is_loopback())
        || matches!(u.host(), Some(url::Host::Ipv6(ip)) if ip.is_loopback())
        || u.host_str() == Some("localhost");
    (u.scheme() == "https" || u.scheme() == "http" && loopback)
        && u.query().is_none()
        && u.fragment().is_none()
        && u.username().is_empty()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_servers(servers: &str) -> Result<TrustFile, TrustError> {
        TrustFile::parse(&format!(
            r#"{{"issuers": [{{"iss": "https://ehr.test", "kind": "cds-client",
                 "jku": ["https://ehr.test/jwks"], "fhir_servers": {servers}}}]}}"#
        ))
    }

    #[test]
    fn a_tenant_is_a_clinic_name_or_an_issuer_that_can_be_one() {
        let file = |iss: &str, tenant: &str| {
            TrustFile::parse(&format!(
                r#"{{"issuers": [{{"iss": "{iss}", "kind": "cds-client", {tenant}
                     "jku": ["https://ehr.test/jwks"]}}]}}"#
            ))
        };
        let named = file("https://ehr.test", r#""tenant": "clinic-a","#).unwrap();
        assert_eq!(named.issuers[0].tenant().as_str(), "clinic-a");
        let unnamed = file("https://ehr.test", "").unwrap();
        assert_eq!(unnamed.issuers[0].tenant().as_str(), "https://ehr.test");
        assert!(unnamed.issuers[0].serves(&TenantId::parse("https://ehr.test").unwrap()));
        assert!(!named.issuers[0].serves(&TenantId::parse("https://ehr.test").unwrap()));
        // A name with its line end pasted in, an empty one, and an issuer too long to stand
        // for the tenant it does not name: each refuses the file, saying why.
        for (iss, tenant, why) in [
            (
                "https://ehr.test",
                r#""tenant": "clinic-a\n","#,
                "control characters",
            ),
            ("https://ehr.test", r#""tenant": "","#, "cannot be empty"),
            (
                &format!("https://ehr.test/{}", "a".repeat(300)),
                "",
                "give a tenant",
            ),
        ] {
            let e = file(iss, tenant).unwrap_err().to_string();
            assert!(e.contains(why), "{e}");
        }
    }

    #[test]
    fn fhir_servers_are_https_base_urls() {
        let t = with_servers(r#"["https://fhir.clinic.example/r4", "http://127.0.0.1:8080/fhir"]"#)
            .unwrap();
        assert_eq!(t.issuers[0].fhir_servers.as_ref().unwrap().len(), 2);
        assert!(!t.issuers[0].fhir_internal_networks, "never implied");
        for bad in [
            r#"["http://fhir.clinic.example/r4"]"#,
            r#"["https://fhir.clinic.example/r4?x=1"]"#,
            r#"["https://user:pw@fhir.clinic.example/r4"]"#,
            r#"["not a url"]"#,
        ] {
            assert!(with_servers(bad).is_err(), "{bad}");
        }
    }

    fn with_smart(kind: &str, smart: &str) -> Result<TrustFile, TrustError> {
        TrustFile::parse(&format!(
            r#"{{"issuers": [{{"iss": "https://login.ehr.test", "kind": "{kind}",
                 "jwks_uri": "https://login.ehr.test/jwks", "smart": {smart}}}]}}"#
        ))
    }

    #[test]
    fn one_smart_registration_per_clinic_whose_name_a_path_can_carry() {
        let two = |t1: &str, t2: &str| {
            TrustFile::parse(&format!(
                r#"{{"issuers": [
                {{"iss": "https://a.test", "kind": "staff", "tenant": "{t1}", "jwks_uri": "https://a.test/jwks",
                  "smart": {{"fhir_base": "https://a.test/fhir", "client_id": "stride"}}}},
                {{"iss": "https://b.test", "kind": "staff", "tenant": "{t2}", "jwks_uri": "https://b.test/jwks",
                  "smart": {{"fhir_base": "https://b.test/fhir", "client_id": "stride"}}}}]}}"#
            ))
        };
        let t = two("clinic-a", "clinic b/2").unwrap();
        assert_eq!(t.issuers[0].smart_callback_key(), "clinic-a");
        // A tenant a path cannot carry as it is gets a stable digest.
        let key = t.issuers[1].smart_callback_key();
        assert!(key.starts_with("t-") && key.len() == 18, "{key}");
        assert_eq!(
            key,
            two("x", "clinic b/2").unwrap().issuers[1].smart_callback_key()
        );
        let same = two("clinic-a", "clinic-a").unwrap_err().to_string();
        assert!(same.contains("smart-callback/clinic-a"), "{same}");
    }

    #[test]
    fn a_smart_registration_on_an_issuer_of_every_tenant_is_refused() {
        let t = TrustFile::parse(
            r#"{"issuers": [{"iss": "https://login.ehr.test", "kind": "staff", "all_tenants": true,
                 "jwks_uri": "https://login.ehr.test/jwks",
                 "smart": {"fhir_base": "https://ehr.test/fhir", "client_id": "stride"}}]}"#,
        );
        assert!(t.is_err(), "{t:?}");
        // HMAC is no issuer's algorithm.
        let t = TrustFile::parse(
            r#"{"issuers": [{"iss": "https://login.ehr.test", "kind": "staff", "algorithms": ["HS256"],
                 "jwks_uri": "https://login.ehr.test/jwks"}]}"#,
        );
        assert!(t.is_err(), "{t:?}");
    }

    #[test]
    fn a_smart_registration_belongs_to_a_staff_issuer_with_an_https_fhir_base() {
        let t = with_smart(
            "staff",
            r#"{"fhir_base": "https://ehr.test/fhir/", "client_id": "stride"}"#,
        )
        .unwrap();
        let smart = t.issuers[0].smart.as_ref().unwrap();
        assert_eq!(smart.iss(), "https://ehr.test/fhir");
        assert!(
            smart.client_secret_env.is_none(),
            "a public client unless told"
        );
        assert!(with_smart(
            "cds-client",
            r#"{"fhir_base": "https://ehr.test/fhir", "client_id": "s"}"#
        )
        .is_err());
        for bad in [
            r#"{"fhir_base": "http://ehr.test/fhir", "client_id": "s"}"#,
            r#"{"fhir_base": "https://ehr.test/fhir?x=1", "client_id": "s"}"#,
            r#"{"fhir_base": "https://ehr.test/fhir", "client_id": " "}"#,
            r#"{"fhir_base": "https://ehr.test/fhir", "client_id": "s", "secret": "x"}"#,
        ] {
            assert!(with_smart("staff", bad).is_err(), "{bad}");
        }
        let twice = TrustFile::parse(
            r#"{"issuers": [
                {"iss": "https://a.test", "kind": "staff", "jwks_uri": "https://a.test/jwks",
                 "smart": {"fhir_base": "https://ehr.test/fhir", "client_id": "s"}},
                {"iss": "https://b.test", "kind": "staff", "jwks_uri": "https://b.test/jwks",
                 "smart": {"fhir_base": "https://ehr.test/fhir/", "client_id": "s"}}]}"#,
        );
        assert!(twice.is_err(), "one FHIR base, one authorization server");
    }
}
