//! Shadow evaluation: a candidate version (`STRIDE_SHADOW_VERSIONS`, or a trust-file issuer's
//! `shadow`) decides every hook call beside the version in force. The EHR sees only the
//! version in force; the audit entry records the candidate's decision and whether it differs.
//! (A candidate that is not loaded stops the start: `versions.rs`.)

use serde_json::{json, Value as Json};
use stride_tests::fhir::*;
use stride_tests::tokens::{clinic_b, TENANT_B};
use stride_tests::TestApp;

const PV: &str = "/cds-services/running-knee-patient-view";
const SHADOW: &str = "medial-knee-pain-running=1.1.0";

/// The answer's card topics, and the shadow record of the call's audit entry.
async fn call(app: &TestApp, body: &Json, clinic_b: bool) -> (Vec<String>, Option<Json>) {
    let req = if clinic_b { app.cds_b(PV) } else { app.cds(PV) };
    let res = req.json(body).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let answer: Json = res.json().await.unwrap();
    let topics = answer["cards"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["source"]["topic"]["code"].as_str().unwrap().to_owned())
        .collect();
    let instance = body["hookInstance"].as_str().unwrap();
    let entry = stride_tests::audit_entries(app)
        .await
        .into_iter()
        .find(|e| {
            e.entry.action == "hook-call" && e.entry.hook_instance.as_deref() == Some(instance)
        })
        .expect("the call's audit entry");
    let shadow = entry.entry.details.get("shadow").cloned();
    (topics, shadow)
}

fn ids(shadow: &Json) -> Vec<&str> {
    shadow["decisionIds"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_str().unwrap())
        .collect()
}

#[tokio::test]
async fn the_candidate_decides_beside_the_version_in_force_and_is_never_shown() {
    let app = stride_tests::spawn_app_with(&[("STRIDE_SHADOW_VERSIONS", SHADOW)]).await;

    // Groin pain with activity: 1.1.0 holds for a femoral-neck stress injury; 1.0.1 does not
    // know the finding. The EHR is answered by 1.0.1 alone.
    let (topics, shadow) = call(
        &app,
        &walker_day_20(&[obs("groin", "groin-pain", 1, boolean(true))]),
        false,
    )
    .await;
    assert_eq!(topics, ["walk-run"], "only the version in force is shown");
    let shadow = shadow.expect("a shadow record");
    assert_eq!(shadow["version"], "1.1.0");
    assert_eq!(shadow["differs"], true);
    assert_eq!(
        ids(&shadow),
        ["hold-for-evaluation", "femoral-neck-bone-stress"]
    );

    // Where both versions agree, the record says so.
    let (topics, shadow) = call(&app, &walker_day_20(&[]), false).await;
    assert_eq!(topics, ["walk-run"]);
    let shadow = shadow.expect("a shadow record");
    assert_eq!(shadow["differs"], false);
    assert_eq!(ids(&shadow), ["walk-run"]);

    let m = app.metrics().await;
    assert_eq!(
        stride_tests::metric(&m, "stride_shadow_evaluations_total{outcome=\"differs\"}"),
        Some(1.0)
    );
    assert_eq!(
        stride_tests::metric(&m, "stride_shadow_evaluations_total{outcome=\"same\"}"),
        Some(1.0)
    );
}

#[tokio::test]
async fn the_candidate_gets_the_data_it_reads_the_prefetch_and_the_birth_date() {
    let shadowing = stride_tests::spawn_app_with(&[("STRIDE_SHADOW_VERSIONS", SHADOW)]).await;
    let plain = stride_tests::spawn_app().await;
    // Discovery asks for what the candidate reads too.
    assert!(observations(&shadowing)
        .await
        .contains("running-knee|groin-pain"));
    assert!(!observations(&plain)
        .await
        .contains("running-knee|groin-pain"));

    // A 12-year-old (the Patient prefetch's birth date): SCFE suspected under 1.1.0.
    let mut body = walker_day_20(&[]);
    let twelve = (today() - time::Duration::days(12 * 365 + 30)).to_string();
    body["prefetch"]["Patient"]["birthDate"] = json!(twelve);
    let (topics, shadow) = call(&shadowing, &body, false).await;
    assert_eq!(topics, ["walk-run"]);
    assert!(ids(&shadow.unwrap()).contains(&"scfe-suspected"));
    let facts_of_first = |entries: &[stride_store::AuditEntry]| {
        entries
            .iter()
            .find(|e| e.entry.action == "hook-call")
            .unwrap()
            .entry
            .facts
            .as_ref()
            .unwrap()
            .text()
            .to_owned()
    };
    // The candidate reads an age: the birth date is kept with the facts, for replay.
    let kept = facts_of_first(&stride_tests::audit_entries(&shadowing).await);
    assert!(kept.contains("Patient/p1\""), "{kept}");
    // Without a rule set that reads an age, no birth date is kept with the facts.
    let (_, none) = call(&plain, &walker_day_20(&[]), false).await;
    assert!(none.is_none(), "no shadow without a candidate");
    let facts = facts_of_first(&stride_tests::audit_entries(&plain).await);
    assert!(!facts.contains("Patient/p1\""), "{facts}");
}

#[tokio::test]
async fn a_clinic_can_shadow_on_its_own_and_get_guidelines_says_who_does() {
    let app = stride_tests::spawn_app_trusting(
        &[
            clinic_b(json!({"shadow": {"medial-knee-pain-running": "1.1.0"}})),
            stride_tests::tokens::auditors(),
        ],
        &[],
    )
    .await;
    let groin = [obs("groin", "groin-pain", 1, boolean(true))];
    let (_, a) = call(&app, &walker_day_20(&groin), false).await;
    let (_, b) = call(&app, &walker_day_20(&groin), true).await;
    assert!(a.is_none(), "clinic A shadows nothing");
    assert_eq!(b.expect("clinic B's shadow")["differs"], true);
    // Who shadows what is for staff (here, an issuer that sees every clinic).
    let listed = app
        .get_json_as(
            "/guidelines",
            &stride_tests::tokens::auditors_token("audit.read"),
        )
        .await;
    let g = &listed["guidelines"][0];
    assert_eq!(g["tenants"][TENANT_B]["shadow"], "1.1.0");
    assert!(g["tenants"][stride_tests::tokens::TENANT]
        .get("shadow")
        .is_none());
}

/// The Observation prefetch template discovery gives the running-knee patient-view.
async fn observations(app: &TestApp) -> String {
    let d = app.get_json("/cds-services").await;
    d["services"][0]["prefetch"]["Observation"]
        .as_str()
        .unwrap()
        .to_owned()
}
