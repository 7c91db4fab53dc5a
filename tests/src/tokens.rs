//! Real signed tokens for the tests, with the test-only keys in tests/fixtures/keys.

use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::{json, Value as Json};

use crate::repo_root;

pub const EHR: &str = "https://ehr.test";
pub const EHR_JKU: &str = "https://ehr-jku.test";
pub const STAFF: &str = "https://login.test";
pub const TENANT: &str = "clinic-a";
/// What tests set STRIDE_PUBLIC_URL to (loopback, so test key servers may use http).
pub const PUBLIC_URL: &str = "http://localhost";

pub fn key_file(name: &str) -> String {
    std::fs::read_to_string(repo_root().join("tests/fixtures/keys").join(name)).expect("test key")
}

pub fn jwk(name: &str) -> Json {
    serde_json::from_str(&key_file(&format!("{name}.jwk.json"))).unwrap()
}

pub struct Signer {
    pub kid: String,
    pub alg: Algorithm,
    key: EncodingKey,
}

impl Signer {
    pub fn es384(name: &str) -> Signer {
        Signer {
            kid: name.into(),
            alg: Algorithm::ES384,
            key: EncodingKey::from_ec_pem(key_file(&format!("{name}.pem")).as_bytes()).unwrap(),
        }
    }

    pub fn rs384(name: &str) -> Signer {
        Signer {
            kid: name.into(),
            alg: Algorithm::RS384,
            key: EncodingKey::from_rsa_pem(key_file(&format!("{name}.pem")).as_bytes()).unwrap(),
        }
    }

    pub fn header(&self) -> Header {
        let mut h = Header::new(self.alg);
        h.kid = Some(self.kid.clone());
        h.typ = Some("JWT".into());
        h
    }

    pub fn sign(&self, header: &Header, claims: &Json) -> String {
        encode(header, claims, &self.key).unwrap()
    }
}

pub fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// The claims a well-behaved EHR sends for a call to `aud`.
pub fn claims(iss: &str, aud: &str) -> Json {
    json!({
        "iss": iss, "sub": "ehr-client", "aud": aud,
        "iat": now(), "exp": now() + 300,
        "jti": uuid::Uuid::new_v4().to_string(), "tenant": TENANT,
    })
}

/// A valid CDS client token for a call to `path` (e.g. /cds-services/x).
pub fn cds_token(path: &str) -> String {
    cds_token_at(PUBLIC_URL, path)
}

/// A valid CDS client token for a service whose public URL is `public`.
pub fn cds_token_at(public: &str, path: &str) -> String {
    let s = Signer::es384("ehr-es384");
    s.sign(&s.header(), &claims(EHR, &format!("{public}{path}")))
}

/// A second clinic: its own issuer and tenant, FHIR servers on public addresses only. Not in
/// the default trust file; `clinic_b(extra)` is its entry, with `extra` fields added.
pub const EHR_B: &str = "https://ehr-b.test";
pub const TENANT_B: &str = "clinic-b";

pub fn clinic_b(extra: Json) -> Json {
    let mut issuer = json!({"iss": EHR_B, "kind": "cds-client", "tenant": TENANT_B,
                            "jwks": {"keys": [jwk("clinic-b-es384")]}});
    if let (Some(i), Some(e)) = (issuer.as_object_mut(), extra.as_object()) {
        i.extend(e.clone());
    }
    issuer
}

/// A valid token of the second clinic for a call to `path`.
pub fn cds_token_b(path: &str) -> String {
    let s = Signer::es384("clinic-b-es384");
    let mut c = claims(EHR_B, &format!("{PUBLIC_URL}{path}"));
    c["tenant"] = json!(TENANT_B);
    s.sign(&s.header(), &c)
}

/// The trust file the test apps start with.
pub fn trust_file(extra: &[Json]) -> Json {
    let mut issuers = vec![
        // The tests' fake FHIR servers listen on loopback.
        json!({"iss": EHR, "kind": "cds-client", "tenant": TENANT, "fhir_internal_networks": true,
               "jwks": {"keys": [jwk("ehr-es384"), jwk("ehr-rs384")]}}),
        // Each issuer its own key: a token signed by one cannot pass as another's.
        json!({"iss": STAFF, "kind": "staff", "tenant": TENANT, "jwks": {"keys": [jwk("staff-es384")]}}),
    ];
    issuers.extend(extra.iter().cloned());
    json!({ "issuers": issuers })
}

/// A staff access token with `scope` (space separated), for this service.
pub fn staff_token(scope: &str) -> String {
    staff_token_at(PUBLIC_URL, scope)
}

/// A staff access token with `scope` for a service whose public URL is `public`.
pub fn staff_token_at(public: &str, scope: &str) -> String {
    staff_token_of(public, "reviewer-1", scope)
}

/// A staff access token of another member of the same clinic (a second signer).
pub fn staff_token_as(subject: &str, scope: &str) -> String {
    staff_token_of(PUBLIC_URL, subject, scope)
}

fn staff_token_of(public: &str, subject: &str, scope: &str) -> String {
    let s = Signer::es384("staff-es384");
    let mut c = claims(STAFF, public);
    c["sub"] = json!(subject);
    c["scope"] = json!(scope);
    s.sign(&s.header(), &c)
}

/// A staff issuer that sees every tenant (an organisation's auditors): its trust-file entry.
pub const AUDITORS: &str = "https://auditors.example.org";

pub fn auditors() -> Json {
    json!({"iss": AUDITORS, "kind": "staff", "all_tenants": true,
           "jwks": {"keys": [jwk("ehr-es384")]}})
}

/// A token of the all-tenants staff issuer (add `auditors()` to the app's trust file).
pub fn auditors_token(scope: &str) -> String {
    let s = Signer::es384("ehr-es384");
    let mut c = claims(AUDITORS, PUBLIC_URL);
    c["sub"] = json!("auditor-1");
    c["scope"] = json!(scope);
    s.sign(&s.header(), &c)
}
