//! The trust file (CONTRACT.md): which issuers Stride trusts, for what, and where their keys are.

use std::path::Path;

use jsonwebtoken::jwk::JwkSet;
use serde::Deserialize;
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
    #[serde(default)]
    pub tenant: Option<String>,
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
        for i in &t.issuers {
            if !seen.insert(&i.iss) {
                return Err(TrustError::Invalid(format!(
                    "issuer {} is listed twice",
                    i.iss
                )));
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
                let loopback = matches!(
                    u.host(),
                    Some(url::Host::Ipv4(ip)) if ip.is_loopback()
                ) || matches!(u.host(), Some(url::Host::Ipv6(ip)) if ip.is_loopback())
                    || u.host_str() == Some("localhost");
                if !(u.scheme() == "https" || u.scheme() == "http" && loopback)
                    || u.query().is_some()
                    || u.fragment().is_some()
                    || !u.username().is_empty()
                {
                    return Err(TrustError::Invalid(format!(
                        "issuer {}: fhir_servers entry {u} must be an https base URL \
                         without query, fragment or credentials",
                        i.iss
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
}
