//! The hot path of a patient-view call, in two steps:
//! - reading the request: the hook request body read, and fhir-sdk parses its 3 Conditions and
//!   60 Observations (straight from the body's text) into facts;
//! - the whole handler in process: a real Stride on SQLite (WAL, synchronous=FULL, the durable
//!   CarePlan + cards + audit write included) on a loopback port, called with a fresh ES384
//!   token per request (minted outside the measurement).
//!
//! `cargo bench -p stride --bench hook`

use std::time::Duration;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use serde_json::json;

#[path = "common/request.rs"]
mod request;

fn intake(c: &mut Criterion) {
    let request = request::patient_view();
    // As EHRs send it (resourceType first), and with serde_json's sorted keys: the type is
    // then found by reading each resource whole.
    let bodies = [
        ("", request::as_sent(&request).into_bytes()),
        (", keys sorted", serde_json::to_vec(&request).unwrap()),
    ];
    for (variant, body) in &bodies {
        c.bench_function(
            &format!(
                "request body to facts: hook request read, 3 Conditions + 60 Observations{variant}"
            ),
            |b| {
                b.iter(|| {
                    let req =
                        stride::cds::request::parse(body, stride_hooks::Hook::PatientView, true)
                            .unwrap();
                    let mut intake = stride_fhir::intake::Intake::default();
                    intake.add(req.prefetch["Condition"]);
                    intake.add(req.prefetch["Observation"]);
                    assert!(intake.problems.is_empty());
                    std::hint::black_box(intake.records.len())
                })
            },
        );
    }
}

fn handler(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let keys = root.join("tests/fixtures/keys");
    let jwk: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(keys.join("ehr-es384.jwk.json")).unwrap())
            .unwrap();
    let trust = dir.path().join("trust.json");
    std::fs::write(
        &trust,
        json!({"issuers": [{"iss": "https://ehr.bench.test", "kind": "cds-client", "tenant": "bench", "jwks": {"keys": [jwk]}}]})
            .to_string(),
    )
    .unwrap();
    let env: Vec<(String, String)> = [
        ("STRIDE_LISTEN", "127.0.0.1:0".to_owned()),
        ("STRIDE_PUBLIC_URL", "http://127.0.0.1:1".to_owned()),
        (
            "STRIDE_DATABASE_URL",
            format!("sqlite://{}", dir.path().join("bench.db").display()),
        ),
        (
            "STRIDE_GUIDELINES_DIR",
            root.join("guidelines").display().to_string(),
        ),
        ("STRIDE_TRUST_FILE", trust.display().to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    let settings = stride::config::Settings::from_sources(None, &env).unwrap();
    let app = rt
        .block_on(stride::startup::Application::build(settings))
        .unwrap();
    let url = format!(
        "http://127.0.0.1:{}/cds-services/running-knee-patient-view",
        app.port()
    );
    rt.spawn(app.run_until_stopped());

    let key = jsonwebtoken::EncodingKey::from_ec_pem(
        std::fs::read_to_string(keys.join("ehr-es384.pem"))
            .unwrap()
            .as_bytes(),
    )
    .unwrap();
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES384);
    header.kid = Some("ehr-es384".into());
    // Each call its own hookInstance: a repeated one is a retry, answered from the store.
    let sent = request::as_sent(&request::patient_view());
    let (head, tail) = sent
        .split_once(r#""hookInstance":"load""#)
        .expect("the request names its hookInstance");
    let mut n = 0u64;
    let mut mint = || {
        n += 1;
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let claims = json!({"iss": "https://ehr.bench.test", "sub": "bench",
            "aud": "http://127.0.0.1:1/cds-services/running-knee-patient-view",
            "iat": now, "exp": now + 300, "jti": format!("bench-{now}-{n}"), "tenant": "bench"});
        let body = format!(r#"{head}"hookInstance":"bench-{now}-{n}"{tail}"#);
        (jsonwebtoken::encode(&header, &claims, &key).unwrap(), body)
    };
    let client = reqwest::Client::new();

    let mut group = c.benchmark_group("patient-view");
    group.measurement_time(Duration::from_secs(10));
    group.bench_function("whole handler in process, SQLite durable write", |b| {
        b.to_async(&rt).iter_batched(
            &mut mint,
            |(token, body)| {
                let req = client
                    .post(&url)
                    .bearer_auth(token)
                    .header("content-type", "application/json")
                    .body(body);
                async move {
                    let res = req.send().await.unwrap();
                    assert_eq!(res.status(), 200);
                    res.bytes().await.unwrap().len()
                }
            },
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

criterion_group!(benches, intake, handler);
criterion_main!(benches);
