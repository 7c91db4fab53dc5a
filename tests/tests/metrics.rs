//! `GET /metrics`: Prometheus text with requests, latency, decisions, refusals, fetches,
//! writes and the pool, labelled by route template, never by path or patient.

use serde_json::json;
use stride_tests::fhir::*;
use stride_tests::spawn_app;

const PV: &str = "/cds-services/running-knee-patient-view";

use stride_tests::metric as value;

#[tokio::test]
async fn requests_decisions_refusals_and_writes_are_counted_without_phi() {
    let app = spawn_app().await;
    let call = || patient_view(prefetch(&[condition("k", "M25.561", Some(3))], &[]));
    let body = call();
    assert_eq!(app.cds(PV).json(&body).send().await.unwrap().status(), 200);
    // A call of its own (its own hookInstance): the same one again would be a retry.
    assert_eq!(
        app.cds(PV).json(&call()).send().await.unwrap().status(),
        200
    );
    assert_eq!(
        app.client
            .post(app.url(PV))
            .json(&body)
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    let res = app
        .client
        .post(app.url(PV))
        .bearer_auth("garbage")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    let _ = app
        .client
        .get(app.url("/fhir/CarePlan?patient=Patient/p1-secret"))
        .send()
        .await
        .unwrap();

    let res = app.client.get(app.url("/metrics")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert!(res.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain"));
    let text = res.text().await.unwrap();
    let series = |s: &str| value(&text, s).unwrap_or_else(|| panic!("{s} missing:\n{text}"));
    assert_eq!(
        series(
            r#"stride_http_requests_total{method="POST",route="/cds-services/{id}",status="200"}"#
        ),
        2.0
    );
    assert_eq!(
        series(
            r#"stride_http_requests_total{method="POST",route="/cds-services/{id}",status="401"}"#
        ),
        2.0
    );
    assert_eq!(series(r#"stride_decisions_total{decision="rest"}"#), 2.0);
    assert_eq!(
        series(r#"stride_auth_refusals_total{reason="missing"}"#),
        2.0,
        "the hook and the CarePlan search"
    );
    assert_eq!(
        series(r#"stride_auth_refusals_total{reason="malformed"}"#),
        1.0
    );
    assert_eq!(
        series(
            r#"stride_http_request_duration_seconds_count{method="POST",route="/cds-services/{id}",status="200"}"#
        ),
        2.0
    );
    assert_eq!(
        series(r#"stride_store_write_duration_seconds_count{operation="hook_record"}"#),
        2.0
    );
    assert!(series(r#"stride_db_pool_connections{state="open"}"#) >= 1.0);
    assert!(
        !text.contains("p1-secret") && !text.contains("Patient/"),
        "no patient in metrics"
    );
}

#[tokio::test]
async fn fallback_fetches_are_timed() {
    let app = spawn_app().await;
    let mut body = patient_view(json!({}));
    body["fhirServer"] = json!("http://127.0.0.1:9/fhir");
    assert_eq!(app.cds(PV).json(&body).send().await.unwrap().status(), 412);
    let text = app.metrics().await;
    assert_eq!(
        value(
            &text,
            r#"stride_prefetch_fetch_duration_seconds_count{outcome="failed"}"#
        ),
        Some(1.0),
        "{text}"
    );
}
