//! Stride as a SMART App Launch 2.0 client of an EHR: the EHR's
//! `/.well-known/smart-configuration`, and the authorization request of an EHR launch (`launch`)
//! or a standalone launch (`launch/patient`). The code exchange is the OpenID one
//! (`oidc::exchange`); the ID token is checked against the trust file's `staff` issuer that
//! holds the registration.

use serde::Deserialize;
use stride_auth::{IssuerConfig, SmartRegistration};

use crate::oidc::{challenge, discovery_document, OidcError};
use stride_hooks::request::is_fhir_id;

/// The scopes of a launch: identity (`openid fhirUser`), the launch context, and Stride's own
/// staff permissions, which the EHR's authorization server grants per person.
pub const STAFF_SCOPES: &[&str] = &["careplan.read", "careplan.review"];

/// The parts of the EHR's SMART configuration Stride uses (SMART App Launch 2.0, 2.1).
#[derive(Debug, Clone, Deserialize)]
pub struct SmartConfiguration {
    pub issuer: Option<String>,
    pub authorization_endpoint: String,
    pub token_endpoint: String,
    #[serde(default)]
    pub code_challenge_methods_supported: Vec<String>,
    #[serde(default)]
    pub capabilities: Vec<String>,
    /// RFC 9207: the authorization server names itself (`iss`) in every authorization
    /// response, so a client can tell which server a code came from.
    #[serde(default)]
    pub authorization_response_iss_parameter_supported: bool,
}

/// One EHR where Stride is registered: the trust-file entry and the configuration it serves.
pub struct Ehr<'a> {
    pub issuer: &'a IssuerConfig,
    pub registration: &'a SmartRegistration,
    pub config: SmartConfiguration,
}

/// https, or http on loopback when the EHR's own FHIR base is on loopback (tests, a local EHR).
fn acceptable(url: &str, base: &SmartRegistration) -> bool {
    let loopback_base = base.fhir_base.scheme() == "http";
    url.starts_with("https://") || (loopback_base && url.starts_with("http://"))
}

/// Read the EHR's SMART configuration. It is read on every launch: a launch is a person
/// opening a page, and an EHR that moves its endpoints is followed at once.
pub async fn discover<'a>(
    http: &reqwest::Client,
    issuer: &'a IssuerConfig,
) -> Result<Ehr<'a>, OidcError> {
    let registration = issuer
        .smart
        .as_ref()
        .ok_or_else(|| OidcError::Discovery("no SMART registration".into()))?;
    let url = format!("{}/.well-known/smart-configuration", registration.iss());
    let config: SmartConfiguration = discovery_document(http, &url).await?;
    check(&config, issuer, registration)?;
    Ok(Ehr {
        issuer,
        registration,
        config,
    })
}

fn check(
    config: &SmartConfiguration,
    issuer: &IssuerConfig,
    registration: &SmartRegistration,
) -> Result<(), OidcError> {
    // The ID token is checked against the trust file's issuer; a configuration naming another
    // one describes another authorization server.
    if config
        .issuer
        .as_deref()
        .is_some_and(|i| i.trim_end_matches('/') != issuer.iss.trim_end_matches('/'))
    {
        return Err(OidcError::Discovery(
            "the SMART configuration names another issuer".into(),
        ));
    }
    // SMART App Launch 2.0 requires PKCE with S256, and servers must advertise it.
    if !config
        .code_challenge_methods_supported
        .iter()
        .any(|m| m == "S256")
    {
        return Err(OidcError::Discovery(
            "the EHR does not offer PKCE with S256".into(),
        ));
    }
    if !acceptable(&config.authorization_endpoint, registration)
        || !acceptable(&config.token_endpoint, registration)
    {
        return Err(OidcError::Discovery("endpoints must be https".into()));
    }
    Ok(())
}

/// Where to send the browser: an EHR launch when `launch` is given, else a standalone launch
/// asking the EHR to choose the patient.
pub fn authorize_url(
    ehr: &Ehr<'_>,
    redirect_uri: &str,
    launch: Option<&str>,
    state: &str,
    nonce: &str,
    verifier: &str,
) -> String {
    let mut scope = vec!["openid", "fhirUser"];
    scope.push(if launch.is_some() {
        "launch"
    } else {
        "launch/patient"
    });
    scope.extend_from_slice(STAFF_SCOPES);
    let mut url = url::Url::parse(&ehr.config.authorization_endpoint)
        .unwrap_or_else(|_| url::Url::parse("https://invalid.invalid/").expect("a URL"));
    {
        let mut q = url.query_pairs_mut();
        q.append_pair("response_type", "code")
            .append_pair("client_id", &ehr.registration.client_id)
            .append_pair("redirect_uri", redirect_uri)
            .append_pair("scope", &scope.join(" "))
            .append_pair("state", state)
            .append_pair("nonce", nonce)
            .append_pair("aud", ehr.registration.iss())
            .append_pair("code_challenge", &challenge(verifier))
            .append_pair("code_challenge_method", "S256");
        if let Some(l) = launch {
            q.append_pair("launch", l);
        }
    }
    url.into()
}

/// The client secret of a confidential registration, from the environment variable it names.
pub fn client_secret(registration: &SmartRegistration) -> Option<String> {
    registration
        .client_secret_env
        .as_deref()
        .and_then(|name| std::env::var(name).ok())
        .filter(|s| !s.is_empty())
}

/// Whether `fhir_user` (SMART `fhirUser`: a relative or absolute reference) names a
/// Practitioner or PractitionerRole: the people who review plans. A Patient or RelatedPerson
/// signed in through the EHR does not.
pub fn is_practitioner(fhir_user: &str) -> bool {
    let mut parts = fhir_user.trim_end_matches('/').rsplit('/');
    let id = parts.next().unwrap_or_default();
    let kind = parts.next().unwrap_or_default();
    matches!(kind, "Practitioner" | "PractitionerRole") && is_fhir_id(id)
}

/// The CarePlan a card's `appContext` names: `{"careplan": "<id>"}`, as a JSON string (CDS
/// Hooks 2.0 Link.appContext) or an object (what some EHRs hand back).
pub fn careplan_of(app_context: &serde_json::Value) -> Option<String> {
    let v = match app_context {
        serde_json::Value::String(s) => serde_json::from_str(s).ok()?,
        other => other.clone(),
    };
    v.get("careplan")?.as_str().map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn registration(base: &str) -> (IssuerConfig, SmartRegistration) {
        let t = stride_auth::TrustFile::parse(&format!(
            r#"{{"issuers": [{{"iss": "https://login.ehr.test", "kind": "staff",
                "jwks_uri": "https://login.ehr.test/jwks",
                "smart": {{"fhir_base": "{base}", "client_id": "stride"}}}}]}}"#
        ))
        .unwrap();
        let i = t.issuers.into_iter().next().unwrap();
        let r = i.smart.clone().unwrap();
        (i, r)
    }

    fn config(v: serde_json::Value) -> SmartConfiguration {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn a_configuration_must_offer_s256_https_and_the_trusted_issuer() {
        let (i, r) = registration("https://ehr.test/fhir");
        let good = json!({"issuer": "https://login.ehr.test",
            "authorization_endpoint": "https://login.ehr.test/auth",
            "token_endpoint": "https://login.ehr.test/token",
            "code_challenge_methods_supported": ["S256"]});
        assert!(check(&config(good.clone()), &i, &r).is_ok());
        let mut plain = good.clone();
        plain["code_challenge_methods_supported"] = json!(["plain"]);
        let mut other = good.clone();
        other["issuer"] = json!("https://elsewhere.test");
        let mut http = good.clone();
        http["token_endpoint"] = json!("http://login.ehr.test/token");
        for bad in [plain, other, http] {
            assert!(check(&config(bad.clone()), &i, &r).is_err(), "{bad}");
        }
    }

    #[test]
    fn an_ehr_launch_asks_for_its_launch_and_names_the_fhir_base_as_audience() {
        let (i, r) = registration("https://ehr.test/fhir/");
        let ehr = Ehr {
            issuer: &i,
            registration: &r,
            config: config(
                json!({"authorization_endpoint": "https://login.ehr.test/auth?x=1",
                "token_endpoint": "https://login.ehr.test/token"}),
            ),
        };
        let u = url::Url::parse(&authorize_url(
            &ehr,
            "https://s/cb",
            Some("L1"),
            "st",
            "n",
            "v",
        ))
        .unwrap();
        let q: std::collections::HashMap<_, _> = u.query_pairs().into_owned().collect();
        assert_eq!(q["x"], "1", "the endpoint's own query is kept");
        assert_eq!(q["launch"], "L1");
        assert_eq!(q["aud"], "https://ehr.test/fhir");
        assert_eq!(q["code_challenge_method"], "S256");
        assert_eq!(q["code_challenge"], challenge("v"));
        assert!(q["scope"].split(' ').any(|s| s == "launch"));
        let standalone =
            url::Url::parse(&authorize_url(&ehr, "https://s/cb", None, "st", "n", "v")).unwrap();
        let q: std::collections::HashMap<_, _> = standalone.query_pairs().into_owned().collect();
        assert!(!q.contains_key("launch"));
        assert!(q["scope"].split(' ').any(|s| s == "launch/patient"));
    }

    #[test]
    fn only_practitioners_review_and_app_context_names_a_careplan() {
        assert!(is_practitioner("Practitioner/p-1"));
        assert!(is_practitioner(
            "https://ehr.test/fhir/PractitionerRole/r.2"
        ));
        for bad in [
            "Patient/p-1",
            "https://ehr.test/fhir/RelatedPerson/x",
            "Practitioner/",
            "Practitioner/a b",
        ] {
            assert!(!is_practitioner(bad), "{bad}");
        }
        assert_eq!(
            careplan_of(&json!("{\"careplan\":\"c-1\"}")).as_deref(),
            Some("c-1")
        );
        assert_eq!(
            careplan_of(&json!({"careplan": "c-2"})).as_deref(),
            Some("c-2")
        );
        assert_eq!(careplan_of(&json!("not json")), None);
        assert_eq!(careplan_of(&json!({"plan": "c-2"})), None);
    }
}
