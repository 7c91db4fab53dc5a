//! Every kind of FHIR resource Stride emits is valid FHIR R4 according to an independent
//! implementation (PyPI fhir.resources 6.4.0, installed by scripts/test), and its coded
//! elements use codes from their required value sets (which that validator does not check).

use std::process::Command;

use serde_json::{json, Value as Json};
use stride_tests::fhir::*;
use stride_tests::spawn_app;

const PV: &str = "/cds-services/running-knee-patient-view";

fn python() -> String {
    std::env::var("STRIDE_FHIR_PYTHON").unwrap_or_else(|_| "python3".into())
}

fn validate(resources: &[Json]) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("emitted.json");
    std::fs::write(&file, serde_json::to_vec_pretty(resources).unwrap()).unwrap();
    let script = stride_tests::repo_root().join("scripts/validate_fhir.py");
    let out = Command::new(python())
        .arg(&script)
        .arg(&file)
        .output()
        .expect("python runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains("No module named 'fhir"),
        "the independent FHIR validator is not installed: run scripts/test, or set STRIDE_FHIR_PYTHON to a \
         python with `fhir.resources==6.4.0` and `pydantic<2`"
    );
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(
        stdout.contains(&format!("{0}/{0} resources valid", resources.len())),
        "{stdout}"
    );
}

fn check_bindings(plan: &Json) {
    assert!([
        "draft",
        "active",
        "on-hold",
        "revoked",
        "completed",
        "entered-in-error",
        "unknown"
    ]
    .contains(&plan["status"].as_str().unwrap()));
    assert!(["proposal", "plan", "order", "option"].contains(&plan["intent"].as_str().unwrap()));
    for a in plan["activity"].as_array().into_iter().flatten() {
        let s = a["detail"]["status"].as_str().unwrap();
        assert!([
            "not-started",
            "scheduled",
            "in-progress",
            "on-hold",
            "completed",
            "cancelled",
            "stopped",
            "unknown",
            "entered-in-error"
        ]
        .contains(&s));
        if let Some(u) = a["detail"]["scheduledTiming"]["repeat"]["periodUnit"].as_str() {
            assert!(["s", "min", "h", "d", "wk", "mo", "a"].contains(&u));
        }
    }
    for g in plan["contained"].as_array().into_iter().flatten() {
        assert!([
            "proposed",
            "planned",
            "accepted",
            "active",
            "on-hold",
            "completed",
            "cancelled",
            "entered-in-error",
            "rejected"
        ]
        .contains(&g["lifecycleStatus"].as_str().unwrap()));
    }
}

#[tokio::test]
async fn careplans_service_requests_and_operation_outcomes_are_valid_r4() {
    let app = spawn_app().await;
    let mut emitted = Vec::new();
    let scenarios: Vec<(Vec<Json>, Vec<Json>)> = vec![
        (vec![condition("k", "M25.561", Some(3))], vec![]),
        (
            vec![condition("k", "M25.561", Some(20))],
            recovered_walker(),
        ),
        (
            vec![condition("k", "M25.561", Some(10))],
            vec![
                obs("t", "tenderness-extent", 1, qty(3.0, "cm")),
                obs("h", "heel-strike-gait", 1, boolean(true)),
            ],
        ),
        (vec![condition("k", "M25.561", None)], vec![]),
    ];
    for (c, o) in scenarios {
        let res = app
            .cds(PV)
            .json(&patient_view(prefetch(&c, &o)))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        let body: Json = res.json().await.unwrap();
        for card in body["cards"].as_array().unwrap() {
            for s in card["suggestions"].as_array().into_iter().flatten() {
                for a in s["actions"].as_array().unwrap() {
                    if let Some(r) = a.get("resource") {
                        if r["resourceType"] == "CarePlan" {
                            check_bindings(r);
                        }
                        emitted.push(r.clone());
                    }
                }
            }
        }
    }
    assert!(emitted.iter().any(|r| r["resourceType"] == "CarePlan"));
    assert!(emitted
        .iter()
        .any(|r| r["resourceType"] == "ServiceRequest"));

    // OperationOutcomes: 400, 404, 412.
    for (path, body) in [
        (PV, json!({"hook": "patient-view"})),
        ("/cds-services/nope", json!({})),
        (PV, patient_view(json!({}))),
    ] {
        let res = app.cds(path).json(&body).send().await.unwrap();
        assert!(res.status().is_client_error());
        emitted.push(res.json().await.unwrap());
    }
    // The CarePlan search Bundle, as staff see it.
    let res = app
        .client
        .get(app.url("/fhir/CarePlan?patient=p1"))
        .bearer_auth(stride_tests::tokens::staff_token("careplan.read"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let bundle: Json = res.json().await.unwrap();
    assert!(bundle["total"].as_u64().unwrap() >= 3);
    emitted.push(bundle);
    // The decision log as a Bundle of AuditEvents.
    let res = app
        .client
        .get(app.url("/audit?_format=bundle"))
        .bearer_auth(stride_tests::tokens::staff_token("audit.read"))
        .send()
        .await
        .unwrap();
    let audit: Json = res.json().await.unwrap();
    assert!(audit["entry"].as_array().unwrap().len() >= 4);
    emitted.push(audit);
    // The published knowledge artifacts.
    for path in [
        "/fhir/metadata",
        "/fhir/PlanDefinition/medial-knee-pain-running-1.0.0",
        "/fhir/CodeSystem/running-knee",
        "/fhir/CodeSystem/running-knee-decision",
    ] {
        let res = app.client.get(app.url(path)).send().await.unwrap();
        assert_eq!(res.status(), 200, "{path}");
        emitted.push(res.json().await.unwrap());
    }
    validate(&emitted);
}

#[test]
fn the_validator_is_not_a_rubber_stamp() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.json");
    std::fs::write(
        &file,
        r#"{"resourceType": "CarePlan", "status": "draft", "subject": {"reference": "Patient/1"}}"#,
    )
    .unwrap();
    let script = stride_tests::repo_root().join("scripts/validate_fhir.py");
    let out = Command::new(python())
        .arg(&script)
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        !out.status.success(),
        "a CarePlan without intent must be refused"
    );
}
