//! Writes what the load test sends: a patient-view request with realistic prefetch (a Patient,
//! 3 Conditions, 60 Observations; resourceType first, as FHIR servers write it), N CDS client
//! tokens (unique jti each, signed with the test-only key in tests/fixtures/keys), and the
//! trust file that accepts them.
//! `cargo run --release --example load_fixture -- OUT_DIR N PUBLIC_URL`
//! Tokens are ES384; `STRIDE_LOAD_ALG=RS384` signs them with the RSA test key instead (the other
//! algorithm CDS Hooks allows, and about a tenth of ES384's verification cost).

use std::io::Write;

use serde_json::json;

#[path = "../benches/common/request.rs"]
mod request;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let out = std::path::PathBuf::from(
        args.next()
            .ok_or("usage: load_fixture OUT_DIR N PUBLIC_URL")?,
    );
    let n: usize = args.next().ok_or("N")?.parse()?;
    let public = args
        .next()
        .unwrap_or_else(|| "http://127.0.0.1:8090".into());
    let keys = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/keys");
    std::fs::create_dir_all(&out)?;

    let (alg, name) = match std::env::var("STRIDE_LOAD_ALG").as_deref() {
        Ok("RS384") => (jsonwebtoken::Algorithm::RS384, "ehr-rs384"),
        Ok("ES384") | Err(_) => (jsonwebtoken::Algorithm::ES384, "ehr-es384"),
        Ok(other) => return Err(format!("STRIDE_LOAD_ALG={other}: ES384 or RS384").into()),
    };
    let jwk: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(
        keys.join(format!("{name}.jwk.json")),
    )?)?;
    let trust = json!({"issuers": [{"iss": "https://ehr.load.test", "kind": "cds-client", "tenant": "load", "jwks": {"keys": [jwk]}}]});
    std::fs::write(out.join("trust.json"), trust.to_string())?;

    let pem = std::fs::read_to_string(keys.join(format!("{name}.pem")))?;
    let key = match alg {
        jsonwebtoken::Algorithm::RS384 => jsonwebtoken::EncodingKey::from_rsa_pem(pem.as_bytes())?,
        _ => jsonwebtoken::EncodingKey::from_ec_pem(pem.as_bytes())?,
    };
    let mut header = jsonwebtoken::Header::new(alg);
    header.kid = Some(name.into());
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();
    // Two sets made within one second (a warm-up set and a measured one) must not share ids.
    let batch = uuid::Uuid::new_v4().simple();
    let aud = format!("{public}/cds-services/running-knee-patient-view");
    let mut tokens = std::io::BufWriter::new(std::fs::File::create(out.join("tokens.txt"))?);
    for i in 0..n {
        let claims = json!({"iss": "https://ehr.load.test", "sub": "load", "aud": aud, "iat": now, "exp": now + 3000,
                            "jti": format!("load-{batch}-{i}"), "tenant": "load"});
        writeln!(tokens, "{}", jsonwebtoken::encode(&header, &claims, &key)?)?;
    }
    tokens.flush()?;

    let request = request::patient_view();
    let body = request::as_sent(&request);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&body)?,
        request,
        "the body as sent is the same JSON"
    );
    std::fs::write(out.join("request.json"), &body)?;
    eprintln!(
        "wrote {n} tokens, trust file and a {} byte request to {}",
        body.len(),
        out.display()
    );
    Ok(())
}
