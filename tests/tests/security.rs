//! Every way a CDS client token can be wrong is refused with 401 or 403 and a body that says
//! why without leaking keys or internals (CDS Hooks 2.0 security, RFC 8725).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use actix_web::{web, App, HttpResponse, HttpServer};
use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value as Json};
use stride_tests::fhir::*;
use stride_tests::tokens::*;
use stride_tests::{spawn_app, spawn_app_trusting, TestApp};

const PV: &str = "/cds-services/running-knee-patient-view";

fn aud() -> String {
    format!("{PUBLIC_URL}{PV}")
}

fn body() -> Json {
    patient_view(prefetch(&[condition("k", "M25.561", Some(3))], &[]))
}

async fn call(app: &TestApp, token: Option<&str>) -> (u16, Json, Option<String>) {
    let mut req = app.client.post(app.url(PV)).json(&body());
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let res = req.send().await.unwrap();
    let status = res.status().as_u16();
    let www = res
        .headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_owned());
    (status, res.json().await.unwrap_or(Json::Null), www)
}

async fn refusals(app: &TestApp, reason: &str) -> f64 {
    let series = format!("stride_auth_refusals_total{{reason=\"{reason}\"}}");
    stride_tests::metric(&app.metrics().await, &series).unwrap_or(0.0)
}

/// Assert a refusal: status, the error code in the OperationOutcome, no leak, and that it
/// was counted in the metrics under its reason.
async fn refused(app: &TestApp, token: Option<&str>, status: u16, code: &str) {
    let reason = code.strip_prefix("auth_").unwrap();
    let before = refusals(app, reason).await;
    let (got, body, www) = call(app, token).await;
    assert_eq!(
        refusals(app, reason).await,
        before + 1.0,
        "{code} is counted"
    );
    assert_eq!(got, status, "{code}: {body}");
    assert_eq!(body["resourceType"], "OperationOutcome", "{code}");
    assert_eq!(
        body["issue"][0]["details"]["coding"][0]["code"], code,
        "{body}"
    );
    let text = body.to_string();
    assert!(
        !text.contains("BEGIN") && !text.contains("\"x\"") && !text.contains("\"n\""),
        "no key material: {text}"
    );
    if let Some(t) = token {
        assert!(t.len() < 10 || !text.contains(t), "the token is not echoed");
    }
    assert!(
        www.is_some_and(|w| w.starts_with("Bearer")),
        "{code}: RFC 6750 WWW-Authenticate"
    );
}

fn es() -> Signer {
    Signer::es384("ehr-es384")
}

fn b64(v: &Json) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
}

#[tokio::test]
async fn valid_es384_and_rs384_tokens_are_accepted() {
    let app = spawn_app().await;
    for s in [Signer::es384("ehr-es384"), Signer::rs384("ehr-rs384")] {
        let t = s.sign(&s.header(), &claims(EHR, &aud()));
        let (status, body, _) = call(&app, Some(&t)).await;
        assert_eq!(status, 200, "{:?}: {body}", s.alg);
    }
}

#[tokio::test]
async fn missing_and_malformed_tokens_are_refused() {
    let app = spawn_app().await;
    refused(&app, None, 401, "auth_missing").await;
    refused(&app, Some("not-a-jwt"), 401, "auth_malformed").await;
    let res = app
        .client
        .post(app.url(PV))
        .header("authorization", "Basic dXNlcjpwdw==")
        .json(&body())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
}

#[tokio::test]
async fn alg_none_is_refused() {
    let app = spawn_app().await;
    let token = format!(
        "{}.{}.",
        b64(&json!({"alg": "none", "typ": "JWT"})),
        b64(&claims(EHR, &aud()))
    );
    let (status, _, _) = call(&app, Some(&token)).await;
    assert_eq!(status, 401, "req 201");
}

#[tokio::test]
async fn hs256_signed_with_the_public_key_is_refused() {
    let app = spawn_app().await;
    // The classic key-confusion attack: HMAC keyed with the issuer's public key.
    let public = key_file("ehr-rs384.pub.pem");
    let mut h = Header::new(Algorithm::HS256);
    h.kid = Some("ehr-rs384".into());
    let t = jsonwebtoken::encode(
        &h,
        &claims(EHR, &aud()),
        &EncodingKey::from_secret(public.as_bytes()),
    )
    .unwrap();
    refused(&app, Some(&t), 401, "auth_algorithm").await;
}

#[tokio::test]
async fn es256_is_refused_unless_opted_in() {
    let app = spawn_app().await;
    let mut h = es().header();
    h.alg = Algorithm::ES256;
    let t = format!(
        "{}.{}.c2ln",
        b64(&serde_json::to_value(&h).unwrap()),
        b64(&claims(EHR, &aud()))
    );
    refused(&app, Some(&t), 401, "auth_algorithm").await;
}

#[tokio::test]
async fn a_wrong_signature_and_an_unknown_kid_are_refused() {
    let app = spawn_app().await;
    // Signed with a key nobody trusts, under the kid of a trusted one.
    let other = Signer::es384("other-es384");
    let mut h = other.header();
    h.kid = Some("ehr-es384".into());
    refused(
        &app,
        Some(&other.sign(&h, &claims(EHR, &aud()))),
        401,
        "auth_signature",
    )
    .await;
    // A kid the issuer does not have.
    refused(
        &app,
        Some(&other.sign(&other.header(), &claims(EHR, &aud()))),
        401,
        "auth_kid",
    )
    .await;
}

#[tokio::test]
async fn wrong_issuer_audience_and_times_are_refused() {
    let app = spawn_app().await;
    let s = es();
    let sign = |c: Json| s.sign(&s.header(), &c);
    refused(
        &app,
        Some(&sign(claims("https://evil.test", &aud()))),
        401,
        "auth_issuer",
    )
    .await;
    refused(
        &app,
        Some(&sign(claims(
            EHR,
            &format!("{PUBLIC_URL}/cds-services/running-knee-order-sign"),
        ))),
        401,
        "auth_audience",
    )
    .await;
    refused(
        &app,
        Some(&sign(claims(
            EHR,
            "https://other-service.test/cds-services/running-knee-patient-view",
        ))),
        401,
        "auth_audience",
    )
    .await;
    let mut c = claims(EHR, &aud());
    c["exp"] = json!(now() - 600);
    c["iat"] = json!(now() - 900);
    refused(&app, Some(&sign(c)), 401, "auth_expired").await;
    let mut c = claims(EHR, &aud());
    c["iat"] = json!(now() + 600);
    c["exp"] = json!(now() + 900);
    refused(&app, Some(&sign(c)), 401, "auth_iat").await;
    let mut c = claims(EHR, &aud());
    c.as_object_mut().unwrap().remove("jti");
    refused(&app, Some(&sign(c)), 401, "auth_claim").await;
    // "Never expires" is not accepted: a hook token lives minutes, and its jti must be kept
    // until it expires.
    let mut c = claims(EHR, &aud());
    c["exp"] = json!(i64::MAX);
    refused(&app, Some(&sign(c)), 401, "auth_lifetime").await;
}

#[tokio::test]
async fn a_token_not_valid_yet_is_refused_within_the_clock_skew_it_is_not() {
    let app = spawn_app().await;
    let s = es();
    let mut c = claims(EHR, &aud());
    c["nbf"] = json!(now() + 50 * 60);
    refused(&app, Some(&s.sign(&s.header(), &c)), 401, "auth_nbf").await;
    // Clocks drift: a few seconds ahead is within the accepted skew.
    let mut c = claims(EHR, &aud());
    c["nbf"] = json!(now() + 5);
    assert_eq!(call(&app, Some(&s.sign(&s.header(), &c))).await.0, 200);
}

#[tokio::test]
async fn an_unknown_critical_header_is_refused() {
    let app = spawn_app().await;
    let s = es();
    for crit in [
        vec!["exp".to_string()],
        vec!["x-unknown".to_string()],
        vec![],
    ] {
        let mut h = s.header();
        h.crit = Some(crit.clone());
        h.extras.insert("x-unknown", json!(true));
        refused(
            &app,
            Some(&s.sign(&h, &claims(EHR, &aud()))),
            401,
            "auth_crit",
        )
        .await;
    }
}

#[tokio::test]
async fn an_oversized_jti_or_token_is_refused() {
    let app = spawn_app().await;
    let s = es();
    let mut c = claims(EHR, &aud());
    c["jti"] = json!("j".repeat(257));
    refused(&app, Some(&s.sign(&s.header(), &c)), 401, "auth_size").await;
    let mut c = claims(EHR, &aud());
    c["jti"] = json!("j".repeat(60 * 1024));
    refused(&app, Some(&s.sign(&s.header(), &c)), 401, "auth_size").await;
    let mut c = claims(EHR, &aud());
    c["padding"] = json!("p".repeat(20 * 1024));
    refused(&app, Some(&s.sign(&s.header(), &c)), 401, "auth_size").await;
    // 256 bytes is a jti like any other.
    let mut c = claims(EHR, &aud());
    c["jti"] = json!("j".repeat(256));
    assert_eq!(call(&app, Some(&s.sign(&s.header(), &c))).await.0, 200);
}

#[tokio::test]
async fn a_wrong_tenant_is_forbidden_and_a_staff_issuer_may_not_call_hooks() {
    let app = spawn_app().await;
    let s = es();
    let mut c = claims(EHR, &aud());
    c["tenant"] = json!("clinic-b");
    refused(&app, Some(&s.sign(&s.header(), &c)), 403, "auth_tenant").await;
    refused(
        &app,
        Some(&s.sign(&s.header(), &claims(STAFF, &aud()))),
        403,
        "auth_kind",
    )
    .await;
}

#[tokio::test]
async fn a_replayed_jti_is_refused_also_after_a_restart() {
    let mut app = spawn_app().await;
    let s = es();
    let token = s.sign(&s.header(), &claims(EHR, &aud()));
    assert_eq!(call(&app, Some(&token)).await.0, 200);
    refused(&app, Some(&token), 401, "auth_replay").await;
    app.restart().await;
    refused(&app, Some(&token), 401, "auth_replay").await;
    // A new jti from the same client is fine.
    assert_eq!(
        call(&app, Some(&s.sign(&s.header(), &claims(EHR, &aud()))))
            .await
            .0,
        200
    );
}

/// A key server on loopback that counts its requests.
async fn key_server() -> (String, Arc<AtomicUsize>) {
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
    let server = HttpServer::new(move || {
        let counter = counter.clone();
        App::new().default_service(web::to(move || {
            counter.fetch_add(1, Ordering::SeqCst);
            async { HttpResponse::Ok().json(json!({"keys": [jwk("ehr-es384")]})) }
        }))
    })
    .workers(1)
    .listen(listener)
    .unwrap()
    .run();
    tokio::spawn(server);
    (base, hits)
}

#[tokio::test]
async fn jku_must_be_listed_and_an_unlisted_one_is_never_fetched() {
    let (listed, listed_hits) = key_server().await;
    let (unlisted, unlisted_hits) = key_server().await;
    let listed = format!("{listed}/jwks.json");
    let app = spawn_app_trusting(
        &[json!({"iss": EHR_JKU, "kind": "cds-client", "jku": [listed]})],
        &[],
    )
    .await;
    let s = es();
    let mut h = s.header();
    h.jku = Some(format!("{unlisted}/jwks.json"));
    refused(
        &app,
        Some(&s.sign(&h, &claims(EHR_JKU, &aud()))),
        401,
        "auth_jku",
    )
    .await;
    assert_eq!(
        unlisted_hits.load(Ordering::SeqCst),
        0,
        "no request to an unlisted jku"
    );

    h.jku = Some(listed.clone());
    assert_eq!(
        call(&app, Some(&s.sign(&h, &claims(EHR_JKU, &aud()))))
            .await
            .0,
        200
    );
    assert_eq!(
        call(&app, Some(&s.sign(&h, &claims(EHR_JKU, &aud()))))
            .await
            .0,
        200
    );
    assert_eq!(listed_hits.load(Ordering::SeqCst), 1, "keys are cached");
}

#[tokio::test]
async fn jku_is_a_hint_pinned_keys_answer_without_a_fetch() {
    let (listed, hits) = key_server().await;
    let listed = format!("{listed}/jwks.json");
    // The Sandbox and Epic send a jku on every token; the issuer's keys are pinned inline.
    let app = spawn_app_trusting(
        &[
            json!({"iss": EHR_JKU, "kind": "cds-client", "jku": [listed],
                 "jwks": {"keys": [jwk("ehr-rs384")]}}),
        ],
        &[],
    )
    .await;
    let pinned = Signer::rs384("ehr-rs384");
    for jku in [
        "https://sandbox.example/.well-known/jwks.json",
        listed.as_str(),
    ] {
        let mut h = pinned.header();
        h.jku = Some(jku.into());
        let (status, body, _) = call(&app, Some(&pinned.sign(&h, &claims(EHR_JKU, &aud())))).await;
        assert_eq!(status, 200, "{jku}: {body}");
    }
    assert_eq!(
        hits.load(Ordering::SeqCst),
        0,
        "a pinned kid fetches nothing"
    );

    // A kid the pinned keys do not hold: a listed jku is fetched …
    let other = es();
    let mut h = other.header();
    h.jku = Some(listed.clone());
    assert_eq!(
        call(&app, Some(&other.sign(&h, &claims(EHR_JKU, &aud()))))
            .await
            .0,
        200
    );
    assert_eq!(hits.load(Ordering::SeqCst), 1);
    // … an unlisted one is refused without a network call.
    let (unlisted, unlisted_hits) = key_server().await;
    let stranger = Signer::es384("other-es384");
    let mut h = stranger.header();
    h.jku = Some(format!("{unlisted}/jwks.json"));
    refused(
        &app,
        Some(&stranger.sign(&h, &claims(EHR_JKU, &aud()))),
        401,
        "auth_jku",
    )
    .await;
    assert_eq!(unlisted_hits.load(Ordering::SeqCst), 0);
}

/// An app whose EHR_JKU issuer has a `jwks_uri` on a counting key server, after one call
/// that fetched and cached its set.
async fn with_cached_jwks_uri() -> (TestApp, Arc<AtomicUsize>) {
    let (base, hits) = key_server().await;
    let app = spawn_app_trusting(
        &[json!({"iss": EHR_JKU, "kind": "cds-client", "jwks_uri": format!("{base}/jwks.json")})],
        &[],
    )
    .await;
    let s = es();
    assert_eq!(
        call(&app, Some(&s.sign(&s.header(), &claims(EHR_JKU, &aud()))))
            .await
            .0,
        200
    );
    (app, hits)
}

#[tokio::test]
async fn a_kid_of_a_cached_jwks_uri_set_is_not_fetched_again_for_a_jku() {
    let (app, hits) = with_cached_jwks_uri().await;
    let s = es();
    let mut h = s.header();
    h.jku = Some("https://unlisted.example/jwks.json".into());
    assert_eq!(
        call(&app, Some(&s.sign(&h, &claims(EHR_JKU, &aud()))))
            .await
            .0,
        200,
        "the cached set holds the kid"
    );
    assert_eq!(hits.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn forged_kids_cannot_cause_a_fetch_storm() {
    let (app, hits) = with_cached_jwks_uri().await;
    let other = Signer::es384("other-es384");
    for i in 0..20 {
        let mut h = other.header();
        h.kid = Some(format!("forged-{i}"));
        refused(
            &app,
            Some(&other.sign(&h, &claims(EHR_JKU, &aud()))),
            401,
            "auth_kid",
        )
        .await;
    }
    assert!(
        hits.load(Ordering::SeqCst) <= 2,
        "at most one refresh per interval: {}",
        hits.load(Ordering::SeqCst)
    );
}

#[tokio::test]
async fn discovery_and_health_stay_open() {
    let app = spawn_app().await;
    assert_eq!(
        app.client
            .get(app.url("/cds-services"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        app.client
            .get(app.url("/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    // Feedback is a CDS client call like the hooks.
    let res = app
        .client
        .post(app.url(&format!("{PV}/feedback")))
        .json(&json!({"feedback": []}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
}

#[tokio::test]
async fn an_unauthenticated_caller_never_gets_its_body_read() {
    let app = spawn_app().await;
    let post = |ct: &'static str, body: Vec<u8>| {
        app.client
            .post(app.url(PV))
            .header("content-type", ct)
            .body(body)
            .send()
    };
    for (ct, body) in [
        ("text/plain", b"hello".to_vec()),
        ("application/json", b"{not json".to_vec()),
        ("application/json", vec![b' '; 9 * 1024 * 1024]),
    ] {
        let res = post(ct, body).await.unwrap();
        assert_eq!(res.status(), 401, "authentication comes first ({ct})");
    }
}

#[tokio::test]
async fn a_flood_of_bad_tokens_does_not_starve_real_calls() {
    const FLOOD: usize = 1200;
    let app = Arc::new(spawn_app().await);
    let done = Arc::new(AtomicUsize::new(0));
    let flood = {
        let (app, done) = (app.clone(), done.clone());
        tokio::spawn(async move {
            let calls = (0..FLOOD).map(|_| {
                app.client
                    .post(app.url(PV))
                    .bearer_auth("forged")
                    .json(&json!({}))
                    .send()
            });
            for chunk in calls.collect::<Vec<_>>().chunks_mut(50) {
                for res in futures_util::future::join_all(chunk.iter_mut()).await {
                    assert_eq!(res.unwrap().status(), 401);
                    done.fetch_add(1, Ordering::SeqCst);
                }
            }
        })
    };
    // A real hook call during the flood, not after it: it is not queued behind the refusals
    // or their log.
    while done.load(Ordering::SeqCst) < 100 {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    let s = es();
    let (status, _, _) = call(&app, Some(&s.sign(&s.header(), &claims(EHR, &aud())))).await;
    assert_eq!(status, 200);
    let refused_meanwhile = done.load(Ordering::SeqCst);
    assert!(
        refused_meanwhile < FLOOD,
        "the real call was answered while the flood went on ({refused_meanwhile} of {FLOOD} refused)"
    );
    flood.await.unwrap();
    // The evidence is kept, aggregated: one entry per reason, client and route per interval
    // with its count, not 600 rows. What the log could not take is counted.
    let dropped = stride_tests::metric(&app.metrics().await, "stride_audit_refusals_dropped_total")
        .unwrap_or(0.0);
    let mut counted = 0.0;
    let mut rows = 0;
    for _ in 0..100 {
        let refused: Vec<_> = stride_tests::audit_entries(&app)
            .await
            .into_iter()
            .filter(|e| e.entry.action == "refused")
            .collect();
        rows = refused.len();
        counted = refused
            .iter()
            .map(|e| e.entry.details["count"].as_f64().unwrap())
            .sum();
        if counted + dropped >= FLOOD as f64 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(
        counted + dropped,
        FLOOD as f64,
        "every refusal is in the log or counted"
    );
    assert!(rows <= 20, "aggregated: {rows} rows for {FLOOD} refusals");
}

/// Send the head of a request and `sent` of its body, then nothing more; return the status
/// line Stride answers with (the guard only keeps a broken build from hanging the suite).
async fn trickle(app: &TestApp, head: &str, declared: usize, sent: &[u8]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut conn = tokio::net::TcpStream::connect(("127.0.0.1", app.port))
        .await
        .unwrap();
    let req = format!("{head}Host: localhost\r\nContent-Length: {declared}\r\n\r\n");
    conn.write_all(req.as_bytes()).await.unwrap();
    conn.write_all(sent).await.unwrap();
    let mut answer = vec![0u8; 512];
    let n = tokio::time::timeout(std::time::Duration::from_secs(60), conn.read(&mut answer))
        .await
        .expect("Stride answers without waiting for the rest of the body")
        .unwrap();
    String::from_utf8_lossy(&answer[..n])
        .lines()
        .next()
        .unwrap_or("")
        .to_owned()
}

fn gzip_bomb() -> Vec<u8> {
    use std::io::Write;
    let mut z = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    z.write_all(&vec![b' '; 8 * 1024 * 1024]).unwrap();
    z.finish().unwrap()
}

#[tokio::test]
async fn no_route_reads_or_inflates_a_body_before_its_caller_is_known() {
    let app = spawn_app().await;
    let bomb = gzip_bomb();
    for (path, ct) in [
        (
            "/fhir/CarePlan/01a23000-0000-7000-8000-000000000000/$review",
            "application/json",
        ),
        (PV, "application/json"),
        (&format!("{PV}/feedback"), "application/json"),
    ] {
        let res = app
            .client
            .post(app.url(path))
            .header("content-type", ct)
            .header("content-encoding", "gzip")
            .body(bomb.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 401, "{path}: authentication comes first");
        // A body that never ends is not waited for either.
        let status = trickle(
            &app,
            &format!("POST {path} HTTP/1.1\r\nContent-Type: {ct}\r\n"),
            1_000_000,
            b"{",
        )
        .await;
        assert!(status.contains(" 401 "), "{path}: {status}");
    }
    // The staff pages' forms: not signed in, nothing is read.
    for path in [
        "/ui/careplans/01a23000-0000-7000-8000-000000000000/review",
        "/ui/logout",
    ] {
        let status = trickle(
            &app,
            &format!(
                "POST {path} HTTP/1.1\r\nContent-Type: application/x-www-form-urlencoded\r\nOrigin: {PUBLIC_URL}\r\n"
            ),
            1_000_000,
            b"csrf=",
        )
        .await;
        assert!(
            !status.is_empty() && !status.contains(" 408 "),
            "{path}: answered at once: {status}"
        );
    }
}

#[tokio::test]
async fn a_known_caller_may_not_send_compressed_or_trickled_bodies() {
    let app = stride_tests::spawn_app_with(&[("STRIDE_BODY_READ_TIMEOUT_MS", "300")]).await;
    let res = app
        .cds(PV)
        .header("content-type", "application/json")
        .header("content-encoding", "gzip")
        .body(gzip_bomb())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 415);
    let body: Json = res.json().await.unwrap();
    assert_eq!(
        body["issue"][0]["details"]["coding"][0]["code"],
        "unsupported_encoding"
    );
    let hook = format!(
        "POST {PV} HTTP/1.1\r\nContent-Type: application/json\r\nAuthorization: Bearer {}\r\n",
        cds_token(PV)
    );
    let status = trickle(&app, &hook, 10_000, b"{\"hook\": ").await;
    assert!(status.contains(" 408 "), "hook call: {status}");
    let review = format!(
        "POST /fhir/CarePlan/01a23000-0000-7000-8000-000000000000/$review HTTP/1.1\r\nContent-Type: application/json\r\nAuthorization: Bearer {}\r\n",
        staff_token("careplan.review")
    );
    let status = trickle(&app, &review, 10_000, b"{").await;
    assert!(status.contains(" 408 "), "review: {status}");
}

#[tokio::test]
async fn the_first_refusal_of_a_kind_is_on_record_at_once_the_rest_in_one_entry() {
    // An interval far beyond the test: only the first-at-once rule can write within it.
    let app = stride_tests::spawn_app_with(&[("STRIDE_REFUSAL_AUDIT_INTERVAL_MS", "600000")]).await;
    let refused_rows = || async {
        stride_tests::audit_entries(&app)
            .await
            .into_iter()
            .filter(|e| e.entry.action == "refused")
            .collect::<Vec<_>>()
    };
    for _ in 0..5 {
        assert_eq!(call(&app, Some("forged")).await.0, 401);
    }
    let mut rows = refused_rows().await;
    for _ in 0..100 {
        if !rows.is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        rows = refused_rows().await;
    }
    assert_eq!(rows.len(), 1, "one row for now, not five");
    let d = &rows[0].entry.details;
    assert_eq!(
        (d["reason"].as_str(), d["count"].as_u64()),
        (Some("malformed"), Some(1))
    );
    assert_eq!(d["route"], "/cds-services/{id}");
    assert!(
        d["client"].as_str().is_some_and(|c| c == "127.0.0.1"),
        "{d}"
    );
}

#[tokio::test]
async fn every_answer_forbids_framing_and_https_adds_hsts() {
    let app = spawn_app().await;
    for path in ["/healthz", "/cds-services", "/ui/careplans", "/nowhere"] {
        let res = app.client.get(app.url(path)).send().await.unwrap();
        let h = res.headers();
        assert_eq!(h["x-frame-options"], "DENY", "{path}");
        assert_eq!(h["x-content-type-options"], "nosniff", "{path}");
        // The test app's public URL is plain http on loopback: no HSTS there.
        assert!(h.get("strict-transport-security").is_none(), "{path}");
    }
    let app =
        stride_tests::spawn_app_with(&[("STRIDE_PUBLIC_URL", "https://cds.example.org")]).await;
    let res = app.client.get(app.url("/healthz")).send().await.unwrap();
    assert!(
        res.headers()["strict-transport-security"]
            .to_str()
            .unwrap()
            .starts_with("max-age="),
        "{:?}",
        res.headers()
    );
}

/// A staff issuer that signs RS256 with no `kid`, as OpenID Connect providers and the SMART
/// launcher do.
const RS256_STAFF: &str = "https://login.rsa.example.org";

fn rs256_staff_token(alg: Algorithm, scope: &str) -> String {
    let key = EncodingKey::from_rsa_pem(key_file("ehr-rs384.pem").as_bytes()).unwrap();
    let mut c = claims(RS256_STAFF, PUBLIC_URL);
    c["sub"] = json!("reviewer-rsa");
    c["scope"] = json!(scope);
    // No kid: the issuer's one key answers.
    jsonwebtoken::encode(&Header::new(alg), &c, &key).unwrap()
}

#[tokio::test]
async fn staff_tokens_signed_rs256_are_accepted_and_cds_tokens_keep_cds_hooks_rules() {
    let rsa_staff = json!({"iss": RS256_STAFF, "kind": "staff", "tenant": TENANT,
        "jwks": {"keys": [jwk("ehr-rs384")]}});
    let app = spawn_app_trusting(&[rsa_staff], &[]).await;
    let search = |token: String| {
        app.client
            .get(app.url("/fhir/CarePlan?patient=p1"))
            .bearer_auth(token)
            .send()
    };
    // RS256 without STRIDE_JWT_ALGORITHMS widened: a staff issuer's token.
    assert_eq!(
        search(rs256_staff_token(Algorithm::RS256, "careplan.read"))
            .await
            .unwrap()
            .status(),
        200
    );
    // Never an HMAC, whoever claims it.
    let hs = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims(RS256_STAFF, PUBLIC_URL),
        &EncodingKey::from_secret(b"guessable"),
    )
    .unwrap();
    assert_eq!(search(hs).await.unwrap().status(), 401);
    // A CDS client signing RS256 is still refused: CDS Hooks' algorithms for CDS tokens.
    let s = Signer::rs384("ehr-rs384");
    let mut h = s.header();
    h.alg = Algorithm::RS256;
    let (status, _, _) = call(&app, Some(&s.sign(&h, &claims(EHR, &aud())))).await;
    assert_eq!(status, 401);
    // An issuer narrowed to RS384 in the trust file refuses its RS256 tokens.
    let narrowed = json!({"iss": RS256_STAFF, "kind": "staff", "tenant": TENANT,
        "algorithms": ["RS384"], "jwks": {"keys": [jwk("ehr-rs384")]}});
    let app = spawn_app_trusting(&[narrowed], &[]).await;
    let res = app
        .client
        .get(app.url("/fhir/CarePlan?patient=p1"))
        .bearer_auth(rs256_staff_token(Algorithm::RS256, "careplan.read"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    let res = app
        .client
        .get(app.url("/fhir/CarePlan?patient=p1"))
        .bearer_auth(rs256_staff_token(Algorithm::RS384, "careplan.read"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
}

#[tokio::test]
async fn a_token_signed_by_one_clinic_and_claiming_another_is_refused() {
    let app = spawn_app_trusting(&[clinic_b(json!({}))], &[]).await;
    // Clinic A's key, clinic B's issuer and tenant.
    let a = Signer::es384("ehr-es384");
    let mut c = claims(EHR_B, &aud());
    c["tenant"] = json!(TENANT_B);
    let (status, _, _) = call(&app, Some(&a.sign(&a.header(), &c))).await;
    assert_eq!(status, 401);
    // The staff issuer's key does not make an EHR's token either.
    let staff = Signer::es384("staff-es384");
    let (status, _, _) = call(
        &app,
        Some(&staff.sign(&staff.header(), &claims(EHR, &aud()))),
    )
    .await;
    assert_eq!(status, 401);
    // Each with its own key is answered.
    let b = Signer::es384("clinic-b-es384");
    let (status, _, _) = call(&app, Some(&b.sign(&b.header(), &c))).await;
    assert_eq!(status, 200);
}
