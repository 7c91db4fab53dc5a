//! Issue 31, "SMART launch bound to one authorization server": a launch begun at one EHR is
//! never completed with an answer that comes back from another (the OAuth mix-up attack, RFC
//! 9207). Each registered EHR has a redirect URI of its own, and the `iss` an authorization
//! server puts in its answer must be the EHR's. A refused answer's code is never sent to any
//! token endpoint.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use actix_web::{web, App, HttpResponse, HttpServer};
use serde_json::json;
use stride_tests::tokens::{TENANT, TENANT_B};
use stride_tests::{spawn_app_trusting, TestApp};

/// Two EHRs on one mock server, `/a` and `/b`: their SMART configurations and token endpoints
/// (which count the codes sent to them and refuse each).
struct Ehrs {
    root: String,
    exchanged: Arc<AtomicUsize>,
}

async fn start_ehrs() -> Ehrs {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let root = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
    let exchanged = Arc::new(AtomicUsize::new(0));
    let (r, count) = (root.clone(), exchanged.clone());
    let server = HttpServer::new(move || {
        let (r, count) = (r.clone(), count.clone());
        App::new()
            .route(
                "/{ehr}/fhir/.well-known/smart-configuration",
                web::get().to(move |ehr: web::Path<String>| {
                    let r = r.clone();
                    async move {
                        let base = format!("{r}/{ehr}");
                        HttpResponse::Ok().json(json!({
                            "issuer": base,
                            "authorization_endpoint": format!("{base}/auth"),
                            "token_endpoint": format!("{base}/token"),
                            "code_challenge_methods_supported": ["S256"],
                            "capabilities": ["launch-ehr", "client-public", "sso-openid-connect"],
                            // EHR a names itself in every authorization response (RFC 9207).
                            "authorization_response_iss_parameter_supported": ehr.as_str() == "a",
                        }))
                    }
                }),
            )
            .route(
                "/{ehr}/token",
                web::post().to(move || {
                    let count = count.clone();
                    async move {
                        count.fetch_add(1, Ordering::SeqCst);
                        HttpResponse::BadRequest().json(json!({"error": "invalid_grant"}))
                    }
                }),
            )
    })
    .workers(1)
    .listen(listener)
    .unwrap()
    .run();
    tokio::spawn(server);
    Ehrs { root, exchanged }
}

/// Start a launch from EHR `ehr`: the sign-in's state and the cookie that binds it.
async fn launch(app: &TestApp, ehrs: &Ehrs, ehr: &str) -> (String, String) {
    let iss = format!("{}/{ehr}/fhir", ehrs.root);
    let res = app
        .client
        .get(app.url("/ui/smart/launch"))
        .query(&[("iss", iss.as_str()), ("launch", "L1")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303, "{:?}", res.text().await);
    let to = url::Url::parse(res.headers()["location"].to_str().unwrap()).unwrap();
    assert!(
        to.as_str()
            .starts_with(&format!("{}/{ehr}/auth", ehrs.root)),
        "{to}"
    );
    let q: HashMap<String, String> = to.query_pairs().into_owned().collect();
    assert_eq!(
        q["redirect_uri"],
        format!(
            "{}/ui/auth/smart-callback/{}",
            stride_tests::tokens::PUBLIC_URL,
            tenant(ehr)
        ),
        "a redirect URI per registered EHR"
    );
    let cookie = res.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    (q["state"].clone(), cookie)
}

fn tenant(ehr: &str) -> &'static str {
    if ehr == "a" {
        TENANT
    } else {
        TENANT_B
    }
}

/// The authorization server's answer arriving at `path` with `query`: status and page text.
async fn answer(app: &TestApp, path: &str, cookie: &str, query: &[(&str, &str)]) -> (u16, String) {
    let res = app
        .client
        .get(app.url(path))
        .header("cookie", cookie)
        .query(query)
        .send()
        .await
        .unwrap();
    (res.status().as_u16(), res.text().await.unwrap())
}

#[tokio::test]
async fn an_answer_from_another_ehr_is_refused_before_its_code_is_sent_anywhere() {
    let ehrs = start_ehrs().await;
    let issuer = |ehr: &str| {
        let base = format!("{}/{ehr}", ehrs.root);
        json!({"iss": base, "kind": "staff", "tenant": tenant(ehr), "jwks_uri": format!("{base}/jwks"),
               "smart": {"fhir_base": format!("{base}/fhir"), "client_id": "stride"}})
    };
    let app = spawn_app_trusting(&[issuer("a"), issuer("b")], &[]).await;
    let a_path = format!("/ui/auth/smart-callback/{TENANT}");
    let b_path = format!("/ui/auth/smart-callback/{TENANT_B}");

    // Begun at EHR a, answered at EHR b's address (b's server sent its own code there).
    let (state, cookie) = launch(&app, &ehrs, "a").await;
    let (status, text) = answer(
        &app,
        &b_path,
        &cookie,
        &[("code", "code-of-b"), ("state", &state)],
    )
    .await;
    assert_eq!(status, 401, "{text}");
    assert!(text.contains("another EHR"), "{text}");

    // At a's address, but the answer names another authorization server (RFC 9207).
    let (state, cookie) = launch(&app, &ehrs, "a").await;
    let b_iss = format!("{}/b", ehrs.root);
    let (status, text) = answer(
        &app,
        &a_path,
        &cookie,
        &[("code", "code-of-b"), ("state", &state), ("iss", &b_iss)],
    )
    .await;
    assert_eq!(status, 401, "{text}");
    assert!(text.contains("authorization server"), "{text}");

    // a says it always names itself: an answer without `iss` is not a's.
    let (state, cookie) = launch(&app, &ehrs, "a").await;
    let (status, text) = answer(&app, &a_path, &cookie, &[("code", "c"), ("state", &state)]).await;
    assert_eq!(status, 401, "{text}");
    assert_eq!(
        ehrs.exchanged.load(Ordering::SeqCst),
        0,
        "no refused code reached a token endpoint"
    );

    // The control: a's answer at a's address, naming a, is taken to a's token endpoint (which
    // refuses this made-up code); b, which does not name itself, may answer without `iss`.
    let (state, cookie) = launch(&app, &ehrs, "a").await;
    let a_iss = format!("{}/a", ehrs.root);
    let (status, text) = answer(
        &app,
        &a_path,
        &cookie,
        &[("code", "code-of-a"), ("state", &state), ("iss", &a_iss)],
    )
    .await;
    assert_eq!(status, 401, "{text}");
    assert!(text.contains("did not confirm"), "{text}");
    assert_eq!(ehrs.exchanged.load(Ordering::SeqCst), 1);
    let (state, cookie) = launch(&app, &ehrs, "b").await;
    let (_, text) = answer(
        &app,
        &b_path,
        &cookie,
        &[("code", "code-of-b"), ("state", &state)],
    )
    .await;
    assert!(text.contains("did not confirm"), "{text}");
    assert_eq!(ehrs.exchanged.load(Ordering::SeqCst), 2);
}
