//! The prefetch fallback: what the EHR did not prefetch is fetched from its FHIR server (a
//! small FHIR server this test runs on loopback), with the hook's access token, paging
//! through Bundles, bounded in time, and never from another server.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use serde_json::{json, Value as Json};
use stride_tests::fhir::*;
use stride_tests::tokens::staff_token;
use stride_tests::{spawn_app, TestApp};

const PV: &str = "/cds-services/running-knee-patient-view";

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Ok,
    Fail,
    Slow,
    ForeignNextPage,
    /// A next link that leaves the base path by dot segments (`/fhir/x/../../secret`).
    DotSegmentsNextPage,
    /// The Condition answer and the first Observation page carry ~40 KiB of narrative each
    /// (valid FHIR; ignored by the intake).
    Big,
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
            Mode::DotSegmentsNextPage => format!("{}/x/../../secret/Observation?page=2", ehr.base),
            _ => format!("{}/Observation?patient=p1&page=2", ehr.base),
        };
        b["link"] = json!([{"relation": "self", "url": target}, {"relation": "next", "url": next}]);
        b
    } else if path.ends_with("/Observation") {
        bundle(&recovered_walker()[6..])
    } else if path.ends_with("/Patient/p1") {
        json!({"resourceType": "Patient", "id": "p1", "gender": "male", "birthDate": "1990-02-03",
            "name": [{"use": "official", "given": ["Tomas"], "family": "Reyes"}]})
    } else {
        return HttpResponse::NotFound().finish();
    };
    let mut body = body;
    if ehr.mode == Mode::Big && !page2 {
        body["entry"][0]["resource"]["text"] = json!({"status": "generated",
            "div": format!("<div xmlns=\"http://www.w3.org/1999/xhtml\">{}</div>", "x".repeat(40 * 1024))});
    }
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

async fn fetch_failures(app: &TestApp, reason: &str) -> f64 {
    let series = format!("stride_prefetch_fetch_failures_total{{reason=\"{reason}\"}}");
    stride_tests::metric(&app.metrics().await, &series).unwrap_or(0.0)
}

/// A failed fetch answers one generic 412, whatever the cause: a closed port, a silent one,
/// an HTTP error and a refused address read alike (no port scanner). The cause is counted.
async fn fetch_failed(app: &TestApp, body: &Json, reason: &str) {
    let before = fetch_failures(app, reason).await;
    let (status, out) = call(app, body).await;
    assert_eq!(status, 412, "req 54: {out}");
    assert_eq!(out["resourceType"], "OperationOutcome");
    assert_eq!(
        out["issue"][0]["details"]["coding"][0]["code"],
        "prefetch_unavailable"
    );
    let text = out["issue"][0]["details"]["text"].as_str().unwrap();
    let key = ["Condition", "Observation"]
        .into_iter()
        .find(|k| text.contains(&format!("`{k}`")))
        .unwrap_or("?");
    assert_eq!(text, generic(key), "{reason}");
    assert!(!out.to_string().contains("ehr-token-123"));
    assert_eq!(
        fetch_failures(app, reason).await,
        before + 1.0,
        "{reason} is counted"
    );
}

fn generic(key: &str) -> String {
    format!("required data could be neither prefetched nor fetched: `{key}` could not be fetched from the fhirServer the request names")
}

use stride_tests::tokens::clinic_b;

async fn call_as_b(app: &TestApp, body: &Json) -> (u16, Json) {
    let res = app.cds_b(PV).json(body).send().await.unwrap();
    (
        res.status().as_u16(),
        res.json().await.unwrap_or(Json::Null),
    )
}

fn naming(server: &str) -> Json {
    let mut body = patient_view(json!({}));
    body["fhirServer"] = json!(server);
    body["fhirAuthorization"] = json!({"access_token": "ehr-token-123", "token_type": "Bearer", "expires_in": 300,
        "scope": "patient/Observation.read", "subject": "stride"});
    body
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
        4,
        "Condition, Observation page 1 and page 2, and the Patient the new draft is for: {seen:?}"
    );
    assert!(seen[3].0.ends_with("/Patient/p1"), "{seen:?}");
    for (target, auth) in &seen {
        assert_eq!(
            auth.as_deref(),
            Some("Bearer ehr-token-123"),
            "req 61: token on every call ({target})"
        );
        assert!(
            target.contains("patient=p1") || target.ends_with("/Patient/p1"),
            "{target}"
        );
    }
    assert!(
        seen[1].0.contains("code="),
        "the search asks only for the rule set's codes"
    );
}

/// Issue 33: the reviewer sees whose plan it is when the EHR prefetched no Patient: it is
/// fetched once for a new draft; a draft already waiting fetches nothing more.
#[tokio::test]
async fn a_new_draft_names_the_patient_fetched_for_it() {
    let app = spawn_app().await;
    let ehr = start_ehr(Mode::Ok).await;
    let (status, body) = call(&app, &request(&ehr, json!({}))).await;
    assert_eq!(status, 200, "{body}");
    let id = body["cards"][0]["suggestions"][0]["actions"][0]["resource"]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("a draft: {body}"))
        .to_owned();
    let html = app
        .get_text_as(
            &format!("/ui/careplans/{id}"),
            &staff_token("careplan.read"),
        )
        .await;
    assert!(html.contains("Tomas Reyes, born 3 Feb 1990"), "{html}");
    let patients = |ehr: &Ehr| {
        ehr.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|(t, _)| t.ends_with("/Patient/p1"))
            .count()
    };
    assert_eq!(patients(&ehr), 1);
    // The same call again links the waiting draft: no second Patient fetch.
    let (status, _) = call(&app, &request(&ehr, json!({}))).await;
    assert_eq!(status, 200);
    assert_eq!(patients(&ehr), 1);
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
        // The first call: two Observation pages and the Patient its new draft is for; the
        // second: Condition and two Observation pages (its draft is the first's).
        2 + 1 + 3,
        "null slots are fetched too (CONTRACT)"
    );
}

#[tokio::test]
async fn a_failing_fhir_server_is_412_with_an_operation_outcome() {
    let app = spawn_app().await;
    let ehr = start_ehr(Mode::Fail).await;
    fetch_failed(&app, &request(&ehr, json!({})), "status").await;
}

#[tokio::test]
async fn a_slow_fhir_server_is_cut_off_and_answered_412() {
    let app = spawn_app().await;
    let ehr = start_ehr(Mode::Slow).await;
    fetch_failed(&app, &request(&ehr, json!({})), "timeout").await;
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
async fn a_closed_port_reads_like_any_other_failure() {
    let app = spawn_app().await;
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    fetch_failed(
        &app,
        &naming(&format!("http://127.0.0.1:{port}/fhir")),
        "unreachable",
    )
    .await;
}

#[tokio::test]
async fn a_next_page_outside_the_base_path_by_dot_segments_is_not_followed() {
    let app = spawn_app().await;
    let ehr = start_ehr(Mode::DotSegmentsNextPage).await;
    fetch_failed(&app, &request(&ehr, json!({})), "foreign_page").await;
    // The token never went to the path outside the base.
    assert!(ehr
        .seen
        .lock()
        .unwrap()
        .iter()
        .all(|(path, _)| !path.contains("secret")));
}

#[tokio::test]
async fn a_next_page_on_another_server_is_not_followed() {
    let app = spawn_app().await;
    let ehr = start_ehr(Mode::ForeignNextPage).await;
    fetch_failed(&app, &request(&ehr, json!({})), "foreign_page").await;
    assert_eq!(
        ehr.seen.lock().unwrap().len(),
        2,
        "nothing was requested outside the fhirServer"
    );
}

#[tokio::test]
async fn an_ehr_cannot_point_stride_at_internal_addresses() {
    let app = stride_tests::spawn_app_trusting(&[clinic_b(json!({}))], &[]).await;
    let ehr = start_ehr(Mode::Ok).await;
    let port = ehr
        .base
        .split(':')
        .nth(2)
        .unwrap()
        .split('/')
        .next()
        .unwrap();
    // Every spelling of loopback, and a name that resolves to it.
    for host in [
        "127.0.0.1",
        "2130706433",
        "0x7f000001",
        "127.1",
        "0177.0.0.1",
        "[::1]",
        "localhost",
    ] {
        let server = format!("http://{host}:{port}/fhir");
        let before = fetch_failures(&app, "address").await;
        let (status, out) = call_as_b(&app, &naming(&server)).await;
        assert_eq!(status, 412, "{server}: {out}");
        assert_eq!(out["issue"][0]["details"]["text"], generic("Condition"));
        assert_eq!(
            fetch_failures(&app, "address").await,
            before + 1.0,
            "{server}"
        );
    }
    assert!(
        ehr.seen.lock().unwrap().is_empty(),
        "no connection was made: {:?}",
        ehr.seen.lock().unwrap()
    );
    // The same server, for the clinic whose entry says its EHR is internal, is fetched.
    let (status, _) = call(&app, &request(&ehr, json!({}))).await;
    assert_eq!(status, 200);
    // Condition, two Observation pages, and the Patient the new draft is for.
    assert_eq!(ehr.seen.lock().unwrap().len(), 4);
}

#[tokio::test]
async fn only_the_fhir_servers_an_issuer_lists_are_fetched() {
    let ehr = start_ehr(Mode::Ok).await;
    let other = start_ehr(Mode::Ok).await;
    let app = stride_tests::spawn_app_trusting(
        &[clinic_b(
            json!({"fhir_internal_networks": true, "fhir_servers": [ehr.base]}),
        )],
        &[],
    )
    .await;
    let (status, body) = call_as_b(&app, &request(&ehr, json!({}))).await;
    assert_eq!(status, 200, "{body}");
    let before = fetch_failures(&app, "not_listed").await;
    let (status, _) = call_as_b(&app, &request(&other, json!({}))).await;
    assert_eq!(status, 412);
    assert_eq!(fetch_failures(&app, "not_listed").await, before + 1.0);
    assert!(other.seen.lock().unwrap().is_empty());
}

#[tokio::test]
async fn one_byte_budget_covers_every_page_and_key_of_a_call() {
    // Each answer (~41 KiB) fits the per-call budget alone; Condition and Observation together
    // do not.
    let app = stride_tests::spawn_app_with(&[("STRIDE_FETCH_MAX_BYTES", "65536")]).await;
    let ehr = start_ehr(Mode::Big).await;
    fetch_failed(&app, &request(&ehr, json!({})), "too_large").await;
    assert_eq!(
        ehr.seen.lock().unwrap().len(),
        2,
        "the Observation page was started"
    );
    // Prefetched Conditions leave the whole budget to the Observations.
    let conditions = bundle(&[condition("knee", "M25.561", Some(20))]);
    let (status, _) = call(&app, &request(&ehr, json!({"Condition": conditions}))).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn fetched_bytes_in_flight_are_capped_for_the_whole_process() {
    // The process holds at most 56 KiB of fetched answers: this call's own Conditions (~41
    // KiB) leave too little for its Observations, and it is shed like any overload.
    let app = stride_tests::spawn_app_with(&[("STRIDE_FETCH_MAX_BYTES_IN_FLIGHT", "57344")]).await;
    let ehr = start_ehr(Mode::Big).await;
    let res = app
        .cds(PV)
        .json(&request(&ehr, json!({})))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 503);
    assert_eq!(res.headers()["retry-after"], "1");
    let m = app.metrics().await;
    assert_eq!(
        stride_tests::metric(&m, "stride_hooks_refused_total{reason=\"fetch_busy\"}"),
        Some(1.0)
    );
    // The bytes were given back with the call: the next one is served within the cap.
    let conditions = bundle(&[condition("knee", "M25.561", Some(20))]);
    let (status, _) = call(&app, &request(&ehr, json!({"Condition": conditions}))).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn a_silent_fhir_server_starves_no_other_clinic() {
    // Two processing slots: 24 calls waiting on one clinic's silent server would hold both
    // if waiting held a slot, and the other clinic's call would wait out the queue timeout.
    let app = stride_tests::spawn_app_trusting(
        &[clinic_b(json!({}))],
        &[
            ("STRIDE_MAX_CONCURRENT_HOOKS", "2"),
            ("STRIDE_MAX_CALLS_PER_TENANT", "8"),
        ],
    )
    .await;
    let app = Arc::new(app);
    let ehr = start_ehr(Mode::Slow).await;
    let silent: Vec<_> = (0..24)
        .map(|_| {
            let (app, body) = (app.clone(), request(&ehr, json!({})));
            tokio::spawn(async move { call(&app, &body).await.0 })
        })
        .collect();
    // Wait until clinic A's share is in flight on the silent server.
    while ehr.seen.lock().unwrap().len() < 8 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (status, body) = call_as_b(&app, &patient_view(prefetch(&[], &[]))).await;
    assert_eq!(status, 200, "the other clinic is answered: {body}");
    assert_eq!(
        fetch_failures(&app, "timeout").await,
        0.0,
        "answered while clinic A's fetches were still waiting"
    );
    let mut answers: Vec<u16> = Vec::new();
    for t in silent {
        answers.push(t.await.unwrap());
    }
    assert_eq!(
        answers.iter().filter(|&&s| s == 412).count(),
        8,
        "clinic A's share waited out its fetch: {answers:?}"
    );
    assert_eq!(
        answers.iter().filter(|&&s| s == 503).count(),
        16,
        "the rest of clinic A's burst was shed at once: {answers:?}"
    );
    assert_eq!(
        stride_tests::metric(
            &app.metrics().await,
            "stride_hooks_refused_total{reason=\"tenant_share\"}"
        ),
        Some(16.0)
    );
    assert_eq!(
        ehr.seen.lock().unwrap().len(),
        8,
        "shed calls fetched nothing"
    );
}

#[tokio::test]
async fn one_clinics_apply_calls_take_only_its_share() {
    // As for hook calls: clinic A's $apply calls on a silent server hold its share only; the
    // rest are shed, and clinic B's hook call is answered meanwhile.
    let app = stride_tests::spawn_app_trusting(
        &[clinic_b(json!({}))],
        &[
            ("STRIDE_MAX_CONCURRENT_HOOKS", "2"),
            ("STRIDE_MAX_CALLS_PER_TENANT", "8"),
        ],
    )
    .await;
    let app = Arc::new(app);
    let ehr = start_ehr(Mode::Slow).await;
    const APPLY: &str = "/fhir/PlanDefinition/medial-knee-pain-running-1.0.2/$apply";
    let body = json!({"resourceType": "Parameters", "parameter": [
        {"name": "subject", "valueString": "Patient/p1"},
        {"name": "fhirServer", "valueUrl": ehr.base},
        {"name": "fhirAccessToken", "valueString": "ehr-token-123"}]});
    let silent: Vec<_> = (0..24)
        .map(|_| {
            let (app, body) = (app.clone(), body.clone());
            tokio::spawn(async move {
                app.cds(APPLY)
                    .header("content-type", "application/fhir+json")
                    .body(body.to_string())
                    .send()
                    .await
                    .unwrap()
                    .status()
                    .as_u16()
            })
        })
        .collect();
    while ehr.seen.lock().unwrap().len() < 8 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (status, body) = call_as_b(&app, &patient_view(prefetch(&[], &[]))).await;
    assert_eq!(status, 200, "the other clinic is answered: {body}");
    let mut answers: Vec<u16> = Vec::new();
    for t in silent {
        answers.push(t.await.unwrap());
    }
    assert_eq!(
        answers.iter().filter(|&&s| s == 503).count(),
        16,
        "the rest of clinic A's burst was shed at once: {answers:?}"
    );
    assert_eq!(
        ehr.seen.lock().unwrap().len(),
        8,
        "shed calls fetched nothing"
    );
}
