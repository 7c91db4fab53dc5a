//! Health, readiness, request ids and error bodies, against the real server.

use stride_tests::{spawn_app, Backend};

#[tokio::test]
async fn healthz_answers_and_tags_the_request() {
    let app = spawn_app().await;
    let res = app.client.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let id = res
        .headers()
        .get("x-request-id")
        .expect("request id header")
        .to_str()
        .unwrap()
        .to_owned();
    assert!(uuid::Uuid::parse_str(&id).is_ok(), "{id}");
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["status"], "pass");

    let other = app.client.get(app.url("/healthz")).send().await.unwrap();
    assert_ne!(
        other.headers()["x-request-id"].to_str().unwrap(),
        id,
        "each request gets its own id"
    );
}

#[tokio::test]
async fn readyz_reports_database_and_rule_sets() {
    let app = stride_tests::spawn_app_with(&[("STRIDE_DB_STATEMENT_TIMEOUT_MS", "1500")]).await;
    let res = app.client.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["status"], "pass");
    assert_eq!(body["checks"]["database"]["status"], "pass");
    let expected = match app.db.backend {
        Backend::Sqlite => "sqlite",
        Backend::Postgres => "postgres",
    };
    assert_eq!(body["checks"]["database"]["backend"], expected);
    // What the database itself says about durability and timeouts.
    let settings = &body["checks"]["database"]["settings"];
    match app.db.backend {
        Backend::Sqlite => {
            assert_eq!(settings["journal_mode"], "wal");
            assert_eq!(settings["synchronous"], "full");
            assert_eq!(
                settings["temp_store"], "memory",
                "statement journals off disk"
            );
        }
        Backend::Postgres => assert_eq!(settings["statement_timeout"], "1500ms", "{settings}"),
    }
    assert!(body["checks"]["rule_sets"]["loaded"].as_u64().unwrap() >= 1);
}

#[tokio::test]
async fn readyz_fails_when_the_database_is_gone_and_healthz_does_not() {
    let app = spawn_app().await;
    assert_eq!(
        app.client
            .get(app.url("/readyz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );

    app.db.destroy().await;

    let res = app.client.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(res.status(), 503);
    assert!(res.headers().contains_key("retry-after"));
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["status"], "fail");
    assert_eq!(body["checks"]["database"]["status"], "fail");
    assert_eq!(body["checks"]["rule_sets"]["status"], "pass");
    // Liveness is about the process, not its dependencies: restarting would not help.
    assert_eq!(
        app.client
            .get(app.url("/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}

#[tokio::test]
async fn unknown_routes_get_an_operation_outcome() {
    let app = spawn_app().await;
    let res = app
        .client
        .get(app.url("/no/such/thing?patient=123"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
    assert_eq!(res.headers()["content-type"], "application/fhir+json");
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["resourceType"], "OperationOutcome");
    assert_eq!(body["issue"][0]["code"], "not-found");
    assert!(
        !body.to_string().contains("123"),
        "the error echoes nothing from the request"
    );
}
