//! Hostile and broken input: each gets the right status and a clear OperationOutcome, nothing
//! already stored is lost, and the server stays healthy.

use serde_json::{json, Value as Json};
use stride_tests::fhir::*;
use stride_tests::{spawn_app, TestApp};

const PV: &str = "/cds-services/running-knee-patient-view";

async fn raw(app: &TestApp, body: Vec<u8>, content_type: &str) -> (u16, Json) {
    let res = app
        .cds(PV)
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .unwrap();
    (
        res.status().as_u16(),
        res.json().await.unwrap_or(Json::Null),
    )
}

fn code(body: &Json) -> &str {
    body["issue"][0]["details"]["coding"][0]["code"]
        .as_str()
        .unwrap_or("")
}

#[tokio::test]
async fn broken_bodies_get_clear_errors_and_the_server_stays_healthy() {
    let app = spawn_app().await;
    // Something already stored, which no bad request may disturb.
    let good = patient_view(prefetch(&[condition("k", "M25.561", Some(3))], &[]));
    let first: Json = app
        .cds(PV)
        .json(&good)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let plan_id = uuid::Uuid::parse_str(
        first["cards"][0]["suggestions"][0]["actions"][0]["resource"]["id"]
            .as_str()
            .unwrap(),
    )
    .unwrap();

    let nested = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    let cases: Vec<(&str, Vec<u8>, &str, u16, &str)> = vec![
        (
            "malformed JSON",
            b"{\"hook\":".to_vec(),
            "application/json",
            400,
            "malformed_json",
        ),
        (
            "not UTF-8",
            vec![0x7b, 0xff, 0xfe, 0x7d],
            "application/json",
            400,
            "malformed_json",
        ),
        (
            // Well-formed JSON, but not the object a hook request is.
            "deeply nested",
            nested.into_bytes(),
            "application/json",
            400,
            "bad_request",
        ),
        (
            "wrong type for context",
            br#"{"hook":"patient-view","hookInstance":"x","context":"p1"}"#.to_vec(),
            "application/json",
            400,
            "bad_request",
        ),
        (
            "number as hook",
            br#"{"hook":7,"hookInstance":"x","context":{}}"#.to_vec(),
            "application/json",
            400,
            "bad_request",
        ),
        (
            "10 MB body",
            vec![b' '; 10 * 1024 * 1024],
            "application/json",
            413,
            "payload_too_large",
        ),
        (
            "XML",
            b"<hook/>".to_vec(),
            "application/xml",
            415,
            "unsupported_media_type",
        ),
    ];
    for (what, body, ct, status, want) in cases {
        let (got, out) = raw(&app, body, ct).await;
        assert_eq!(got, status, "{what}: {out}");
        assert_eq!(out["resourceType"], "OperationOutcome", "{what}");
        assert_eq!(code(&out), want, "{what}: {out}");
        assert!(
            !out["issue"][0]["details"]["text"]
                .as_str()
                .unwrap()
                .is_empty(),
            "{what}: says why"
        );
    }
    assert_eq!(
        app.client
            .get(app.url("/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        app.client
            .get(app.url("/readyz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        app.store.careplan(plan_id).await.unwrap().status,
        stride_store::CarePlanStatus::Draft,
        "nothing stored was lost"
    );
}

#[tokio::test]
async fn odd_but_wellformed_clinical_data_is_decided_or_reported_never_a_crash() {
    let app = spawn_app().await;
    let mut many: Vec<Json> = (0..10_000)
        .map(|i| obs(&format!("o{i}"), "pain-walking", i % 60, int(0)))
        .collect();
    // Duplicated ids, a future date, an unknown unit, a wrong value type, entered in error.
    many.push(obs("o1", "pain-walking", 0, int(7)));
    many.push(obs("future", "pain-night", -30, boolean(true)));
    many.push(obs("furlong", "tenderness-extent", 1, qty(2.0, "[fur_us]")));
    many.push(obs(
        "wrongtype",
        "limb-symmetry-index",
        1,
        json!({"valueString": "eighty"}),
    ));
    let mut eie = obs("eie", "pain-rest", 1, boolean(true));
    eie["status"] = json!("entered-in-error");
    many.push(eie);
    let body = patient_view(prefetch(&[condition("k", "M25.561", Some(20))], &many));
    let res = app.cds(PV).json(&body).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let out: Json = res.json().await.unwrap();
    let phase = &out["cards"][0];
    let detail = phase["detail"].as_str().unwrap();
    // Named by kind and day, never by id (issue 33: ids stay in the trace).
    assert!(
        detail.contains("An observation of") && detail.contains("after the as-of day"),
        "the future-dated record is reported: {detail}"
    );
    assert!(
        detail.contains("[fur_us]"),
        "the unknown unit is reported: {detail}"
    );
    assert!(
        !detail.contains("Observation/future") && !detail.contains("Observation/furlong"),
        "no ids in the text a clinician reads: {detail}"
    );
    let night: Vec<&Json> = out["cards"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["source"]["topic"]["code"] == "rest-or-night-pain")
        .collect();
    // Neither the future nor the entered-in-error finding raises the flag; with no usable
    // record it is not ruled out either, and says so in a warning card of its own.
    assert_eq!(night.len(), 1, "{night:?}");
    assert_eq!(night[0]["indicator"], "warning");
    assert!(night[0]["summary"]
        .as_str()
        .unwrap()
        .starts_with("Not ruled out"));
    assert!(night[0]["detail"]
        .as_str()
        .unwrap()
        .contains("Pain at night — not recorded"));
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
