//! The staff pages over plain HTTP: bearer tokens from a reverse proxy, filters, form-post
//! protection, and the sign-in edges a browser test does not reach (forged state, a provider
//! that is not a trusted staff issuer).

use serde_json::json;
use stride_tests::fhir::*;
use stride_tests::oidc::{free_port, provider_ready, start_provider, CLIENT_ID, CLIENT_SECRET};
use stride_tests::tokens::*;
use stride_tests::{metric, spawn_app, spawn_app_trusting, TestApp};

const PV: &str = "/cds-services/running-knee-patient-view";

async fn draft(app: &TestApp) -> String {
    let body = patient_view(prefetch(&[condition("k", "M25.561", Some(3))], &[]));
    let out: serde_json::Value = app
        .cds(PV)
        .json(&body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    out["cards"][0]["suggestions"][0]["actions"][0]["resource"]["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn page(app: &TestApp, path: &str, scope: Option<&str>) -> (u16, String) {
    let mut req = app.client.get(app.url(path));
    if let Some(s) = scope {
        req = req.bearer_auth(staff_token(s));
    }
    let res = req.send().await.unwrap();
    let status = res.status().as_u16();
    if status == 200 {
        let csp = res.headers()["content-security-policy"].to_str().unwrap();
        assert!(csp.contains("default-src 'none'") && !csp.contains("unsafe"));
    }
    (status, res.text().await.unwrap())
}

#[tokio::test]
async fn a_reverse_proxys_bearer_token_opens_the_queue_and_the_log() {
    let app = spawn_app().await;
    let id = draft(&app).await;

    let (status, html) = page(&app, "/ui/careplans", None).await;
    assert_eq!(status, 401);
    assert!(html.contains("reverse proxy"), "{html}");

    let (status, html) = page(&app, "/ui/careplans", Some("careplan.read")).await;
    assert_eq!(status, 200);
    assert!(
        html.contains(&format!("/ui/careplans/{id}")),
        "the draft is listed"
    );
    let (_, html) = page(&app, "/ui/careplans?status=active", Some("careplan.read")).await;
    assert!(!html.contains(&id), "a draft is not an active plan");
    let (_, html) = page(
        &app,
        "/ui/careplans?status=any&from=2999-01-01",
        Some("careplan.read"),
    )
    .await;
    assert!(html.contains("No CarePlans match"));
    let today = today().to_string();
    let (_, html) = page(
        &app,
        &format!("/ui/careplans?status=any&from={today}&to={today}"),
        Some("careplan.read"),
    )
    .await;
    assert!(html.contains(&id), "drafted today");
    let (status, html) = page(&app, "/ui/careplans?from=yesterday", Some("careplan.read")).await;
    assert_eq!(status, 400);
    assert!(html.contains("from: a day such as"), "{html}");

    let (status, _) = page(&app, "/ui/audit", Some("careplan.read")).await;
    assert_eq!(status, 403, "the log needs audit.read");
    let (status, html) = page(&app, "/ui/audit?action=hook-call", Some("audit.read")).await;
    assert_eq!(status, 200);
    assert!(
        html.contains("hook-call") && html.contains("1 most recent matching entry"),
        "{html}"
    );
    let (status, _) = page(&app, "/ui/audit?from=nope", Some("audit.read")).await;
    assert_eq!(status, 400);
    // An action the log never holds is a mistyped filter, said as one, not an empty page.
    let (status, html) = page(&app, "/ui/audit?action=hook-cal", Some("audit.read")).await;
    assert_eq!(status, 400);
    assert!(html.contains("action: one of the actions"), "{html}");
}

#[tokio::test]
async fn a_form_post_without_stride_s_origin_changes_nothing() {
    let app = spawn_app().await;
    let id = draft(&app).await;
    let post = |origin: Option<&'static str>| {
        let mut req = app
            .client
            .post(app.url(&format!("/ui/careplans/{id}/review")))
            .bearer_auth(staff_token("careplan.read careplan.review"))
            .form(&[("action", "approve"), ("version", "1")]);
        if let Some(o) = origin {
            req = req.header("origin", o);
        }
        req.send()
    };
    for origin in [None, Some("https://evil.example"), Some("null")] {
        assert_eq!(post(origin).await.unwrap().status(), 403, "{origin:?}");
    }
    let plan = app
        .store
        .careplan(uuid::Uuid::parse_str(&id).unwrap())
        .await
        .unwrap();
    assert_eq!((plan.status.as_str(), plan.version), ("draft", 1));

    // From Stride's own origin the approval goes through and the page says so.
    let res = post(Some(PUBLIC_URL)).await.unwrap();
    assert_eq!(res.status(), 303);
    assert_eq!(
        res.headers()["location"],
        format!("/ui/careplans/{id}?done=approve").as_str()
    );
    let plan = app
        .store
        .careplan(uuid::Uuid::parse_str(&id).unwrap())
        .await
        .unwrap();
    assert_eq!((plan.status.as_str(), plan.version), ("active", 2));
    // A second approval from a stale page is a conflict, shown on the page, not a silent overwrite.
    let res = post(Some(PUBLIC_URL)).await.unwrap();
    assert_eq!(res.status(), 409);
    assert!(res.text().await.unwrap().contains("was not saved"));
}

#[tokio::test]
async fn the_sign_in_provider_must_be_a_trusted_staff_issuer() {
    let db = stride_tests::TestDb::fresh().await;
    let dir = tempfile::tempdir().unwrap();
    let trust = dir.path().join("trust.json");
    std::fs::write(&trust, trust_file(&[]).to_string()).unwrap();
    let mut env = stride_tests::base_env(&db);
    env.push(("STRIDE_TRUST_FILE".into(), trust.display().to_string()));
    for (iss, why) in [
        (EHR, "a cds-client issuer"),
        ("https://unknown.example", "not listed"),
    ] {
        let mut e = env.clone();
        e.push(("STRIDE_OIDC_ISSUER".into(), iss.into()));
        e.push(("STRIDE_OIDC_CLIENT_ID".into(), "stride".into()));
        let settings = stride::config::Settings::from_sources(None, &e).unwrap();
        let err = stride::startup::Application::build(settings)
            .await
            .err()
            .unwrap_or_else(|| panic!("{why}: must not start"))
            .to_string();
        assert!(
            err.contains("STRIDE_OIDC_ISSUER") && err.contains("staff"),
            "{err}"
        );
    }
}

#[tokio::test]
async fn sign_in_starts_with_pkce_and_refuses_a_state_this_browser_was_not_given() {
    if !provider_ready() {
        if std::env::var("STRIDE_BROWSER_TESTS").as_deref() == Ok("required") {
            panic!("the OpenID provider is required (npm ci --prefix tests/oidc)");
        }
        eprintln!("SKIPPED: needs node and tests/oidc/node_modules");
        return;
    }
    let port = free_port();
    let public = format!("http://localhost:{port}");
    let provider = start_provider(&format!("{public}/ui/auth/callback")).await;
    let listen = format!("127.0.0.1:{port}");
    let app = spawn_app_trusting(
        &[json!({"iss": provider.issuer, "kind": "staff", "tenant": TENANT, "jwks_uri": provider.jwks_uri})],
        &[
            ("STRIDE_LISTEN", &listen),
            ("STRIDE_PUBLIC_URL", &public),
            ("STRIDE_OIDC_ISSUER", &provider.issuer),
            ("STRIDE_OIDC_CLIENT_ID", CLIENT_ID),
            ("STRIDE_OIDC_CLIENT_SECRET", CLIENT_SECRET),
            ("STRIDE_SIGN_IN_PER_MINUTE", "3"),
        ],
    )
    .await;

    // No session: sent to sign in, remembering where to come back to.
    let res = app
        .client
        .get(app.url("/ui/audit?action=refused"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303);
    assert_eq!(
        res.headers()["location"],
        "/ui/login?next=%2Fui%2Faudit%3Faction%3Drefused"
    );

    // A return path with CR/LF in it: 400, and nothing set (no login state, no session).
    for bad in [
        "/ui/x%0d%0aSet-Cookie:%20stride_session=forged",
        "/ui/careplans%0a",
    ] {
        let res = app
            .client
            .get(app.url(&format!("/ui/login?next={bad}")))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 400, "{bad}");
        assert!(res.headers().get("set-cookie").is_none(), "{bad}");
    }

    // The authorization request: code flow, S256 challenge, state and nonce; state bound by cookie.
    let res = app
        .client
        .get(app.url("/ui/login?next=/ui/audit"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303);
    let to = url::Url::parse(res.headers()["location"].to_str().unwrap()).unwrap();
    assert!(to.as_str().starts_with(&provider.issuer));
    let q: std::collections::HashMap<_, _> = to.query_pairs().into_owned().collect();
    assert_eq!(q["response_type"], "code");
    assert_eq!(q["client_id"], CLIENT_ID);
    assert_eq!(q["redirect_uri"], format!("{public}/ui/auth/callback"));
    assert_eq!(q["code_challenge_method"], "S256");
    assert_eq!(q["code_challenge"].len(), 43);
    assert!(q["scope"].split(' ').any(|s| s == "openid"));
    let state = q["state"].clone();
    assert_ne!(state, q["nonce"]);
    let cookie = res.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(
        cookie.starts_with(&format!("stride_login={state}")),
        "{cookie}"
    );
    for attr in ["HttpOnly", "Secure", "SameSite=Lax", "Path=/ui/auth"] {
        assert!(cookie.contains(attr), "{attr} in {cookie}");
    }

    let callback = |cookie_state: &str, query_state: &str| {
        app.client
            .get(app.url(&format!("/ui/auth/callback?code=abc&state={query_state}")))
            .header("cookie", format!("stride_login={cookie_state}"))
            .send()
    };
    // A state from another browser (login CSRF), and a made-up one: refused, no session.
    let res = callback("someone-elses", &state).await.unwrap();
    assert_eq!(res.status(), 401);
    assert!(res.headers().get("set-cookie").is_none());
    let res = callback("made-up", "made-up").await.unwrap();
    assert_eq!(res.status(), 401);
    // The real state with a forged code: the provider refuses the exchange; the state is spent.
    let res = callback(&state, &state).await.unwrap();
    assert_eq!(res.status(), 401);
    assert!(res.headers().get("set-cookie").is_none());
    let res = callback(&state, &state).await.unwrap();
    assert!(res
        .text()
        .await
        .unwrap()
        .contains("expired or was already used"));
    // The provider's own refusal is shown, not trusted.
    let res = app
        .client
        .get(app.url("/ui/auth/callback?error=access_denied&state=x"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);

    let m = app.metrics().await;
    assert_eq!(
        metric(&m, "stride_auth_refusals_total{reason=\"oidc_state\"}"),
        Some(3.0)
    );
    assert_eq!(
        metric(&m, "stride_auth_refusals_total{reason=\"oidc_token\"}"),
        Some(1.0)
    );
    assert_eq!(
        metric(&m, "stride_auth_refusals_total{reason=\"oidc_error\"}"),
        Some(1.0)
    );

    // Each start stores a pending sign-in: a client gets 3 a minute here, then 429.
    for expected in [303, 303, 429] {
        let res = app.client.get(app.url("/ui/login")).send().await.unwrap();
        assert_eq!(res.status(), expected);
        if expected == 429 {
            assert_eq!(res.headers()["retry-after"], "60");
        }
    }
    assert_eq!(
        metric(
            &app.metrics().await,
            "stride_auth_refusals_total{reason=\"sign_in_rate\"}"
        ),
        Some(1.0)
    );
}
