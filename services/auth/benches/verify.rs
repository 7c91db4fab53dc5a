//! What token verification adds to every hook call: one ES384 or RS384 verification with the
//! issuer's key already in hand (inline or cached), claims checked.

use criterion::{criterion_group, criterion_main, Criterion};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::json;
use stride_auth::{Kind, TrustFile, Verifier, VerifierOptions};

fn keys(name: &str) -> String {
    std::fs::read_to_string(format!(
        "{}/../../tests/fixtures/keys/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

fn bench(c: &mut Criterion) {
    let trust = json!({"issuers": [{"iss": "https://ehr.test", "kind": "cds-client",
        "jwks": {"keys": [serde_json::from_str::<serde_json::Value>(&keys("ehr-es384.jwk.json")).unwrap(),
                          serde_json::from_str::<serde_json::Value>(&keys("ehr-rs384.jwk.json")).unwrap()]}}]});
    let verifier = Verifier::new(
        TrustFile::parse(&trust.to_string()).unwrap(),
        VerifierOptions::default(),
    )
    .unwrap();
    let aud = "https://stride.test/cds-services/running-knee-patient-view";
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let claims = json!({"iss": "https://ehr.test", "aud": aud, "iat": now, "exp": now + 3600, "jti": "bench"});
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    for (alg, name, key) in [
        (
            Algorithm::ES384,
            "ehr-es384",
            EncodingKey::from_ec_pem(keys("ehr-es384.pem").as_bytes()).unwrap(),
        ),
        (
            Algorithm::RS384,
            "ehr-rs384",
            EncodingKey::from_rsa_pem(keys("ehr-rs384.pem").as_bytes()).unwrap(),
        ),
    ] {
        let mut h = Header::new(alg);
        h.kid = Some(name.into());
        let token = jsonwebtoken::encode(&h, &claims, &key).unwrap();
        assert!(rt
            .block_on(verifier.verify(&token, Kind::CdsClient, aud))
            .is_ok());
        c.bench_function(&format!("verify/{alg:?}"), |b| {
            b.to_async(&rt)
                .iter(|| async { verifier.verify(&token, Kind::CdsClient, aud).await.unwrap() })
        });
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
