//! The prefetch fallback: what the EHR did not prefetch is fetched from its FHIR server (a
//! small FHIR server this test runs on loopback), with the hook's access token, paging
//! through Bundles, bounded in time, and never from another server.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use serde_json::{json, Value as Json};
use stride_tests::fhir::*;
use stride_tests::{spawn_app, TestApp};

const PV: &str = "/cds-services/running-knee-patient-view";

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Ok,
    Fail,
    Slow,
    ForeignNextPage,
}

/// Each request the fake EHR saw: its path and query, and its Authorization header.
type Seen = Arc<Mutex<Vec<(String, Option<String>)>>>;

#[derive(Clone)]
struct Ehr {
    mode: Mode,
    seen: Seen,
    base: String,
}

async fn fhir(req: HttpRequest, ehr: web::Data<Ehr>) -> HttpResponse {
    let auth = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let target = req.uri().to_string();
    ehr.seen.lock().unwrap().push((target.clone(), auth));
    match ehr.mode {
        Mode::Fail => return HttpResponse::InternalServerError().finish(),
        Mode::Slow => tokio::time::sleep(Duration::from_secs(20)).await,
        _ => {}
    }
    let path = req.path();
    let page2 = req.query_string().contains("page=2");
    let body = if path.ends_with("/Condition") {
        bundle(&[condition("knee", "M25.561", Some(20))])
    } else if path.ends_with("/Observation") && !page2 {
        let mut b = bundle(&recovered_walker()[..6]);
        let next = match ehr.mode {
            Mode::ForeignNextPage => "http://127.0.0.1:9/fhir/Observation?page=2".to_owned(),
            _ => format!("{}/Observation?patient=p1&page=2", ehr.base),
        };
        b["link"] = json!([{"relation": "self", "url": target}, {"relation": "next", "url": next}]);
        b
    } else if path.ends_with("/Observation") {
        bundle(&recovered_walker()[6..])
    } else {
        return HttpResponse::NotFound().finish();
    };
    HttpResponse::Ok()
        .content_type("application/fhir+json")
        .json(body)
}

async fn start_ehr(mode: Mode) -> Ehr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!(
        "http://127.0.0.1:{}/fhir",
        listener.local_addr().unwrap().port()
    );
    let ehr = Ehr {
        mode,
        seen: Arc::new(Mutex::new(Vec::new())),
        base,
    };
    let data = web::Data::new(ehr.clone());
    let server = HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .default_service(web::to(fhir))
    })
    .workers(1)
    .listen(listener)
    .unwrap()
    .run();
    tokio::spawn(server);
    ehr
}

fn request(ehr: &Ehr, prefetch: Json) -> Json {
    let mut body = patient_view(prefetch);
    body["fhirServer"] = json!(ehr.base);
    body["fhirAuthorization"] = json!({"access_token": "ehr-token-123", "token_type": "Bearer", "expires_in": 300,
        "scope": "patient/Observation.read patient/Condition.read", "subject": "stride"});
    body
}

async fn call(app: &TestApp, body: &Json) -> (u16, Json) {
    let res = app.cds(PV).json(body).send().await.unwrap();
    (
        res.status().as_u16(),
        res.json().await.unwrap_or(Json::Null),
    )
}

#[tokio::test]
async fn absent_prefetch_is_fetched_with_the_token_across_pages() {
    let app = spawn_app().await;
    let ehr = start_ehr(Mode::Ok).await;
    let (status, body) = call(&app, &request(&ehr, json!({}))).await;
    assert_eq!(status, 200, "{body}");
    // Both Observation pages were read: the walk-run exit needs records from each.
    assert_eq!(
        body["cards"][0]["source"]["topic"]["code"], "walk-run",
        "{body}"
    );
    let seen = ehr.seen.lock().unwrap().clone();
    assert_eq!(
        seen.len(),
        3,
        "Condition, Observation page 1 and page 2: {seen:?}"
    );
    for (target, auth) in &seen {
        assert_eq!(
            auth.as_deref(),
            Some("Bearer ehr-token-123"),
            "req 61: token on every call ({target})"
        );
        assert!(target.contains("patient=p1"), "{target}");
    }
    assert!(
        seen[1].0.contains("code="),
        "the search asks only for the rule set's codes"
    );
}

#[tokio::test]
async fn an_operation_outcome_or_null_slot_is_fetched_when_a_server_is_given() {
    let app = spawn_app().await;
    let ehr = start_ehr(Mode::Ok).await;
    let oo = json!({"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": "timeout"}]});
    let (status, body) = call(&app, &request(&ehr, json!({"Condition": bundle(&[condition("knee", "M25.561", Some(20))]), "Observation": oo}))).await;
    assert_eq!(status, 200);
    assert_eq!(body["cards"][0]["source"]["topic"]["code"], "walk-run");
    let (status, _) = call(
        &app,
        &request(&ehr, json!({"Condition": null, "Observation": null})),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        ehr.seen.lock().unwrap().len(),
        2 + 3,
        "null slots are fetched too (CONTRACT)"
    );
}

#[tokio::test]
async fn a_failing_fhir_server_is_412_with_an_operation_outcome() {
    let app = spawn_app().await;
    let ehr = start_ehr(Mode::Fail).await;
    let (status, body) = call(&app, &request(&ehr, json!({}))).await;
    assert_eq!(status, 412, "req 54");
    assert_eq!(body["resourceType"], "OperationOutcome");
    assert!(body["issue"][0]["details"]["text"]
        .as_str()
        .unwrap()
        .contains("HTTP 500"));
    assert!(!body.to_string().contains("ehr-token-123"));
}

#[tokio::test]
async fn a_slow_fhir_server_is_cut_off_and_answered_412() {
    let app = spawn_app().await;
    let ehr = start_ehr(Mode::Slow).await;
    let (status, body) = call(&app, &request(&ehr, json!({}))).await;
    assert_eq!(status, 412);
    assert!(
        body["issue"][0]["details"]["text"]
            .as_str()
            .unwrap()
            .contains("in time"),
        "{body}"
    );
    // The worker is free again: the service still answers.
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
async fn a_next_page_on_another_server_is_not_followed() {
    let app = spawn_app().await;
    let ehr = start_ehr(Mode::ForeignNextPage).await;
    let (status, body) = call(&app, &request(&ehr, json!({}))).await;
    assert_eq!(status, 412, "{body}");
    assert!(body["issue"][0]["details"]["text"]
        .as_str()
        .unwrap()
        .contains("paging left"));
    assert_eq!(
        ehr.seen.lock().unwrap().len(),
        2,
        "nothing was requested outside the fhirServer"
    );
}

#[tokio::test]
async fn under_overload_a_hook_call_is_shed_with_503_and_retry_after() {
    // One processing slot, 200 ms of queue: a call stuck on a slow EHR holds the slot.
    let app = stride_tests::spawn_app_with(&[
        ("STRIDE_MAX_CONCURRENT_HOOKS", "1"),
        ("STRIDE_HOOK_QUEUE_TIMEOUT_MS", "200"),
    ])
    .await;
    let app = Arc::new(app);
    let ehr = start_ehr(Mode::Slow).await;
    let slow = {
        let (app, body) = (app.clone(), request(&ehr, json!({})));
        tokio::spawn(async move { call(&app, &body).await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = std::time::Instant::now();
    let res = app
        .cds("/cds-services/running-knee-patient-view")
        .json(&patient_view(prefetch(&[], &[])))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 503);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "shed after the queue timeout"
    );
    assert_eq!(res.headers()["retry-after"], "1");
    let body: Json = res.json().await.unwrap();
    assert_eq!(
        body["issue"][0]["details"]["coding"][0]["code"],
        "overloaded"
    );
    assert_eq!(
        stride_tests::metric(&app.metrics().await, "stride_hooks_shed_total"),
        Some(1.0)
    );
    // The slow call ends (412, its fetch cut off); the slot is free again.
    assert_eq!(slow.await.unwrap().0, 412);
    let res = app
        .cds("/cds-services/running-knee-patient-view")
        .json(&patient_view(prefetch(&[], &[])))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
}

#[tokio::test]
async fn with_the_queue_full_a_hook_call_is_shed_at_once() {
    // One slot, no queue, a queue timeout far beyond the test: only the bound can answer fast.
    let app = stride_tests::spawn_app_with(&[
        ("STRIDE_MAX_CONCURRENT_HOOKS", "1"),
        ("STRIDE_HOOK_QUEUE_MAX", "0"),
        ("STRIDE_HOOK_QUEUE_TIMEOUT_MS", "60000"),
    ])
    .await;
    let app = Arc::new(app);
    let ehr = start_ehr(Mode::Slow).await;
    let slow = {
        let (app, body) = (app.clone(), request(&ehr, json!({})));
        tokio::spawn(async move { call(&app, &body).await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let res = app
        .cds("/cds-services/running-knee-patient-view")
        .json(&patient_view(prefetch(&[], &[])))
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .expect("answered before the client gave up");
    assert_eq!(res.status(), 503);
    assert_eq!(res.headers()["retry-after"], "1");
    assert_eq!(
        stride_tests::metric(&app.metrics().await, "stride_hooks_shed_total"),
        Some(1.0)
    );
    assert_eq!(slow.await.unwrap().0, 412);
}
