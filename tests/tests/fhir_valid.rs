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
    // The CPG-on-FHIR shape: one activity, a contained RequestGroup of proposals.
    let activities = plan["activity"].as_array().cloned().unwrap_or_default();
    if !activities.is_empty() {
        assert_eq!(activities.len(), 1, "one activity: the RequestGroup");
        let group = recommendation_group(plan);
        for r in plan["contained"].as_array().into_iter().flatten() {
            if ["RequestGroup", "ServiceRequest"].contains(&r["resourceType"].as_str().unwrap()) {
                assert_eq!(r["intent"], "proposal", "{r}");
                assert_eq!(r["status"], "draft", "{r}");
            }
            if let Some(u) = r["occurrenceTiming"]["repeat"]["periodUnit"].as_str() {
                assert!(["s", "min", "h", "d", "wk", "mo", "a"].contains(&u));
            }
        }
        // Every action proposes a contained request, or groups options that do.
        let mut actions: Vec<&Json> = group["action"].as_array().unwrap().iter().collect();
        assert!(!actions.is_empty());
        while let Some(a) = actions.pop() {
            match a["action"].as_array() {
                Some(options) => {
                    assert_eq!(a["selectionBehavior"], "at-most-one");
                    actions.extend(options);
                }
                None => {
                    let id = a["resource"]["reference"].as_str().unwrap();
                    let request = contained(plan, id);
                    assert_eq!(request["resourceType"], "ServiceRequest", "{request}");
                    assert!(
                        request["reasonCode"].is_array() || request["reasonReference"].is_array()
                    );
                }
            }
        }
    }
    for g in plan["contained"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|r| r["resourceType"] == "Goal")
    {
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

    // What PlanDefinition/$apply drafts, and its 422.
    for (conditions, status) in [
        (vec![condition("k", "M25.561", Some(3))], 200),
        (vec![condition("c", "J45.909", Some(3))], 422),
    ] {
        let apply = "/fhir/PlanDefinition/medial-knee-pain-running-1.0.1/$apply";
        let res = app
            .cds(apply)
            .header("content-type", "application/fhir+json")
            .body(
                json!({"resourceType": "Parameters", "parameter": [
                    {"name": "subject", "valueString": "Patient/p1"},
                    {"name": "data", "resource": bundle(&conditions)}]})
                .to_string(),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), status);
        emitted.push(res.json().await.unwrap());
    }

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
fn coded_imaging_orders_are_orders_an_ehr_can_place() {
    // 1.1.0 (a draft: decided in shadow only, so read here directly) codes its imaging orders
    // with a LOINC procedure and a SNOMED CT body site; 1.0.1 leaves the modality open.
    let path = stride_tests::repo_root().join("guidelines/medial-knee-pain-running/1.1.0.yaml");
    let rs = stride_guideline::RuleSet::from_yaml(&std::fs::read_to_string(path).unwrap()).unwrap();
    let raw = |v: Json| serde_json::value::RawValue::from_string(v.to_string()).unwrap();
    let mut intake = stride_fhir::intake::Intake::default();
    intake.add(&raw(bundle(&[condition("k", "M25.561", Some(10))])));
    intake.add(&raw(bundle(&[obs("n", "pain-night", 1, boolean(true))])));
    let zone = stride_fhir::clinic::ClinicZone::for_tenant(None);
    let as_of = intake.localise(&zone, time::OffsetDateTime::now_utc());
    let facts = stride_guideline::Facts {
        phase_state: None,
        records: intake.records,
    };
    let d = stride_guideline::evaluate(&rs, &facts, as_of);
    assert!(
        d.decision_ids().contains(&"rest-or-night-pain"),
        "{:?}",
        d.decision_ids()
    );
    let mut n = 0;
    let orders = stride_fhir::careplan::imaging_requests(&rs, &d, "p1", &mut || {
        n += 1;
        format!("sr-{n}")
    })
    .unwrap();
    let made = stride_app::cards::cards(&stride_app::cards::CardInputs {
        rs: &rs,
        decision: &d,
        guideline_url: "https://stride.example/guidelines/x".into(),
        careplan: None,
        review: None,
        imaging: &orders,
        drafted: &[],
        unread: &[],
        // As patient-view shows it (an order hook repeats red flags only beside drafted orders).
        phase_card: true,
    });
    let card = made
        .iter()
        .find(|c| c.decision_id == "rest-or-night-pain")
        .unwrap()
        .json
        .clone();
    assert_eq!(card["selectionBehavior"], "at-most-one");
    let suggested: Vec<&Json> = card["suggestions"].as_array().unwrap().iter().collect();
    let codes: Vec<&str> = suggested
        .iter()
        .map(|s| {
            s["actions"][0]["resource"]["code"]["coding"][0]["code"]
                .as_str()
                .unwrap()
        })
        .collect();
    assert_eq!(codes, ["28565-0", "24704-9", "30691-0"], "{card}");
    let recommended: Vec<bool> = suggested
        .iter()
        .map(|s| s["isRecommended"].as_bool().unwrap())
        .collect();
    assert_eq!(recommended, [true, false, false], "radiographs first");
    let resources: Vec<Json> = suggested
        .iter()
        .map(|s| s["actions"][0]["resource"].clone())
        .collect();
    for r in &resources {
        assert_eq!(r["code"]["coding"][0]["system"], "http://loinc.org");
        assert_eq!(
            r["bodySite"][0]["coding"][0]["system"],
            "http://snomed.info/sct"
        );
        assert_eq!(r["intent"], "proposal");
        assert_eq!(r["reasonCode"][0]["text"], d.red_flags[0].summary, "{r}");
    }
    // The CarePlan drafted with them proposes the same orders as options, at most one to be
    // ordered; it too passes the independent checker.
    let ctx = stride_fhir::careplan::PlanContext {
        id: "plan-1",
        patient: "p1",
        encounter: Some("e1"),
        author: None,
        now: time::OffsetDateTime::now_utc(),
    };
    let plan = stride_fhir::careplan::careplan(&rs, &d, &ctx, &orders).unwrap();
    check_bindings(&plan);
    let options = imaging_options(&plan);
    assert_eq!(options["action"].as_array().unwrap().len(), 3);
    let mut emitted = resources;
    emitted.push(plan);
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
    // Refused for the missing intent, not because the validator is missing or broken.
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains("intent") && said.contains("0/1 resources valid"),
        "the validator's complaint: {said}{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
