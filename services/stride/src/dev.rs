//! Development mode: a local signing key that Stride trusts, so the service can be tried by
//! hand with curl. Off unless asked for (`stride dev`), loud when on, and refused unless
//! both STRIDE_PUBLIC_URL and the listen address are loopback: the key is trusted by
//! everyone who can reach the port.

use std::path::{Path, PathBuf};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{EcdsaKeyPair, KeyPair, ECDSA_P384_SHA384_FIXED_SIGNING};
use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value as Json};

use crate::config::Settings;

pub const DEV_EHR: &str = "http://localhost/stride-dev/ehr";
pub const DEV_STAFF: &str = "http://localhost/stride-dev/staff";
pub const DEV_TENANT: &str = "dev";
const KID: &str = "stride-dev-es384";
/// A development staff token may do what the pages offer: read, review, audit, analytics.
pub const DEV_STAFF_SCOPES: &str =
    "careplan.read careplan.review audit.read analytics.read guideline.approve";

#[derive(Debug, thiserror::Error)]
pub enum DevError {
    #[error("development mode refuses to run: STRIDE_PUBLIC_URL ({0}) is not loopback")]
    NotLoopback(String),
    #[error(
        "development mode refuses to run: STRIDE_LISTEN ({0}) is not a loopback address; \
         listen on 127.0.0.1 or [::1], or run `stride serve` with a real trust file"
    )]
    NotLoopbackListen(std::net::SocketAddr),
    #[error("no development key in {0}: start `stride dev` first")]
    NoKey(PathBuf),
    #[error("development key: {0}")]
    Key(String),
    #[error("no CDS service to mint a token for: {0}")]
    NoService(String),
}

/// The first patient-view service the rule-set folder declares: what a token is for when no
/// `--service` is named.
fn default_service(settings: &Settings) -> Result<String, DevError> {
    let dir = settings
        .guidelines()
        .map_err(|e| DevError::NoService(e.to_string()))?;
    let catalog =
        stride_app::catalog::Catalog::load(dir).map_err(|e| DevError::NoService(e.to_string()))?;
    let found = catalog
        .services()
        .find(|s| s.hook == stride_hooks::Hook::PatientView)
        .map(|s| s.id.clone());
    found.ok_or_else(|| DevError::NoService("no guideline declares a patient-view service".into()))
}

pub fn dir() -> PathBuf {
    std::env::var_os("STRIDE_DEV_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(".stride-dev"))
}

fn key_path(dir: &Path) -> PathBuf {
    dir.join("es384.pk8")
}

/// The development key pair, created on first use (PKCS#8, readable by this user only).
pub fn ensure_key(dir: &Path) -> Result<Vec<u8>, DevError> {
    let path = key_path(dir);
    if let Ok(bytes) = std::fs::read(&path) {
        return Ok(bytes);
    }
    std::fs::create_dir_all(dir).map_err(|e| DevError::Key(e.to_string()))?;
    let pkcs8 =
        EcdsaKeyPair::generate_pkcs8(&ECDSA_P384_SHA384_FIXED_SIGNING, &SystemRandom::new())
            .map_err(|_| DevError::Key("cannot generate a P-384 key".into()))?;
    std::fs::write(&path, pkcs8.as_ref()).map_err(|e| DevError::Key(e.to_string()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600));
    }
    Ok(pkcs8.as_ref().to_vec())
}

fn jwk(pkcs8: &[u8]) -> Result<Json, DevError> {
    let kp = EcdsaKeyPair::from_pkcs8(&ECDSA_P384_SHA384_FIXED_SIGNING, pkcs8)
        .map_err(|_| DevError::Key("unreadable key".into()))?;
    // Uncompressed point: 0x04 || X (48 bytes) || Y (48 bytes).
    let point = kp.public_key().as_ref();
    if point.len() != 97 || point[0] != 4 {
        return Err(DevError::Key("unexpected public key encoding".into()));
    }
    let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
    Ok(
        json!({"kty": "EC", "crv": "P-384", "kid": KID, "alg": "ES384", "use": "sig", "x": b64(&point[1..49]), "y": b64(&point[49..])}),
    )
}

/// The trust file plus the development issuers (a CDS client and a staff issuer).
pub fn trust(settings: &Settings) -> Result<Json, DevError> {
    if !settings.public_url.is_loopback() {
        return Err(DevError::NotLoopback(
            settings.public_url.as_str().to_owned(),
        ));
    }
    if !settings.listen.ip().is_loopback() {
        return Err(DevError::NotLoopbackListen(settings.listen));
    }
    let key = jwk(&ensure_key(&dir())?)?;
    let mut issuers: Vec<Json> = match &settings.trust_file {
        Some(p) => std::fs::read_to_string(p)
            .ok()
            .and_then(|t| serde_json::from_str::<Json>(&t).ok())
            .and_then(|v| v["issuers"].as_array().cloned())
            .unwrap_or_default(),
        None => Vec::new(),
    };
    // A FHIR server tried by hand is usually on this machine.
    issuers.push(json!({"iss": DEV_EHR, "kind": "cds-client", "tenant": DEV_TENANT, "fhir_internal_networks": true, "jwks": {"keys": [key.clone()]}}));
    // The staff issuer belongs to the development EHR's clinic, so the pages show what the
    // development hook calls drafted.
    issuers.push(
        json!({"iss": DEV_STAFF, "kind": "staff", "tenant": DEV_TENANT, "jwks": {"keys": [key]}}),
    );
    Ok(json!({ "issuers": issuers }))
}

/// What a newcomer does next, printed when development mode starts.
pub fn how_to(settings: &Settings) -> String {
    let public = settings.public_url.as_str().trim_end_matches('/');
    format!(
        "Development mode is on.\n\
         - Call a hook: mint a token per call with `stride token` (see the README).\n\
         - Open the review queue: go to {public}/ui/dev/sign-in and paste the output of \
         `stride token --kind staff`; the queue is {public}/ui/careplans."
    )
}

/// A token signed with the development key: for a CDS service (`aud` = its URL) or for staff
/// (`aud` = the public URL, with scopes).
pub fn token(
    settings: &Settings,
    kind: &str,
    service: Option<&str>,
    scope: Option<&str>,
    ttl_secs: i64,
) -> Result<String, DevError> {
    if !settings.public_url.is_loopback() {
        return Err(DevError::NotLoopback(
            settings.public_url.as_str().to_owned(),
        ));
    }
    let dir = dir();
    let pkcs8 = std::fs::read(key_path(&dir)).map_err(|_| DevError::NoKey(dir.clone()))?;
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let public = settings.public_url.as_str();
    let mut claims =
        json!({"iat": now, "exp": now + ttl_secs, "jti": uuid::Uuid::new_v4().to_string()});
    match kind {
        "cds-client" => {
            let service = match service {
                Some(s) => s.to_owned(),
                None => default_service(settings)?,
            };
            claims["iss"] = json!(DEV_EHR);
            claims["sub"] = json!("stride-dev-ehr");
            claims["tenant"] = json!(DEV_TENANT);
            claims["aud"] = json!(format!("{public}/cds-services/{service}"));
        }
        "staff" => {
            claims["iss"] = json!(DEV_STAFF);
            claims["sub"] = json!("stride-dev-staff");
            claims["tenant"] = json!(DEV_TENANT);
            claims["aud"] = json!(public);
            claims["scope"] = json!(scope.unwrap_or(DEV_STAFF_SCOPES));
        }
        other => {
            return Err(DevError::Key(format!(
                "unknown kind {other}: use cds-client or staff"
            )))
        }
    }
    let mut header = Header::new(Algorithm::ES384);
    header.kid = Some(KID.into());
    jsonwebtoken::encode(&header, &claims, &EncodingKey::from_ec_der(&pkcs8))
        .map_err(|e| DevError::Key(e.to_string()))
}
