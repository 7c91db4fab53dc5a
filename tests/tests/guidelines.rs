//! Guidelines as a platform: the synthetic two-phase test guideline of
//! `tests/fixtures/guidelines` (not clinical; its own code systems, services and versions) is
//! loaded beside the running-knee guideline in every test app. Discovery, hook calls, the
//! drafted CarePlan, publication, replay and per-tenant pinning work for it with no line of
//! Rust about it.

use serde_json::{json, Value as Json};
use stride_tests::fhir::{bundle, condition, day, patient_view, prefetch};
use stride_tests::tokens::{clinic_b, staff_token, TENANT, TENANT_B};
use stride_tests::TestApp;

const SYNTH: &str = "http://stride-cds.org/fhir/CodeSystem/synthetic";
const SYNTH_PV: &str = "/cds-services/synthetic-patient-view";
const SYNTH_SIGN: &str = "/cds-services/synthetic-order-sign";
const KNEE_PV: &str = "/cds-services/running-knee-patient-view";
const GUIDELINE: &str = "synthetic-two-phase";

fn widget_episode(onset_days_ago: i64) -> Json {
    let mut c = condition("w", "unused", Some(onset_days_ago));
    c["code"] = json!({"coding": [{"system": SYNTH, "code": "widget-episode"}]});
    c
}

fn gauge(value: i64) -> Json {
    json!({"resourceType": "Observation", "id": "g", "status": "final",
           "code": {"coding": [{"system": SYNTH, "code": "gauge"}]},
           "subject": {"reference": "Patient/p1"}, "effectiveDateTime": day(0), "valueInteger": value})
}

async fn call(app: &TestApp, path: &str, body: &Json, clinic_b: bool) -> Json {
    let req = if clinic_b {
        app.cds_b(path)
    } else {
        app.cds(path)
    };
    let res = req.json(body).send().await.unwrap();
    assert_eq!(res.status(), 200, "{path}");
    let answer: Json = res.json().await.unwrap();
    stride_tests::assert_schema("cds-hooks-response", &answer);
    answer
}

/// A widget episode of `onset` days with a low gauge: phase two under 1.0.0 (3 days to settle),
/// still phase one under 1.1.0 (6 days).
fn day_four() -> Json {
    patient_view(prefetch(&[widget_episode(4)], &[gauge(1)]))
}

/// The phase card's (topic system, code) and the rule-set version in its source URL.
fn phase_of(answer: &Json) -> (String, String, String) {
    let card = &answer["cards"][0];
    let topic = &card["source"]["topic"];
    let url = card["source"]["url"].as_str().unwrap();
    (
        topic["system"].as_str().unwrap().to_owned(),
        topic["code"].as_str().unwrap().to_owned(),
        url.rsplit('/').next().unwrap().to_owned(),
    )
}

async fn staff_get(app: &TestApp, path: &str) -> (u16, Json) {
    let res = app
        .client
        .get(app.url(path))
        .bearer_auth(staff_token("careplan.read audit.read"))
        .send()
        .await
        .unwrap();
    (
        res.status().as_u16(),
        res.json().await.unwrap_or(Json::Null),
    )
}

#[tokio::test]
async fn the_second_guideline_answers_drafts_publishes_and_replays_like_the_first() {
    let app = stride_tests::spawn_app().await;

    // A hook call to its service is decided by its own newest active version (1.1.0).
    let answer = call(&app, SYNTH_PV, &day_four(), false).await;
    assert_eq!(
        phase_of(&answer),
        (
            "http://stride-cds.org/fhir/CodeSystem/synthetic-decision".into(),
            "synthetic-first".into(),
            "1.1.0".into()
        )
    );
    let card = &answer["cards"][0];
    assert!(
        card["summary"]
            .as_str()
            .unwrap()
            .contains("Synthetic phase one"),
        "{card}"
    );
    // … and a patient without a widget episode gets no phase card from it.
    let none = call(
        &app,
        SYNTH_PV,
        &patient_view(prefetch(&[condition("k", "M25.561", Some(3))], &[])),
        false,
    )
    .await;
    assert!(none["cards"].as_array().unwrap().is_empty(), "{none}");
    // The running-knee service beside it still decides its own patients.
    let knee = call(
        &app,
        KNEE_PV,
        &patient_view(prefetch(&[condition("k", "M25.561", Some(3))], &[])),
        false,
    )
    .await;
    assert_eq!(phase_of(&knee).1, "rest");

    // The draft CarePlan is stored for review, instantiating the synthetic PlanDefinition.
    let plan = &card["suggestions"][0]["actions"][0]["resource"];
    let (status, stored) = staff_get(
        &app,
        &format!("/fhir/CarePlan/{}", plan["id"].as_str().unwrap()),
    )
    .await;
    assert_eq!(status, 200, "{stored}");
    assert_eq!(stored["status"], "draft");
    let canonical = stored["instantiatesCanonical"][0].as_str().unwrap();
    assert!(
        canonical.contains("PlanDefinition/synthetic-two-phase") && canonical.ends_with("1.1.0"),
        "{canonical}"
    );

    // Its review page draws the timeline the declaration names, in the declaration's words.
    let page = app
        .client
        .get(app.url(&format!("/ui/careplans/{}", plan["id"].as_str().unwrap())))
        .bearer_auth(staff_token("careplan.read"))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(
        html.contains("svg class=\"timeline\""),
        "a timeline is drawn"
    );
    assert!(html.contains("Gauge (0–10)"), "the declared row name");
    assert!(
        !html.contains("walking"),
        "no running-knee wording on its page"
    );

    // Published: its PlanDefinition per version, and its code systems under the declared titles.
    for version in ["1.0.0", "1.1.0"] {
        let res = app
            .client
            .get(app.url(&format!("/fhir/PlanDefinition/{GUIDELINE}-{version}")))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200, "{version}");
    }
    let cs = app.get_json("/fhir/CodeSystem/synthetic-decision").await;
    assert_eq!(cs["title"], "Synthetic decisions (test fixture)");
    let codes: Vec<&str> = cs["concept"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["code"].as_str().unwrap())
        .collect();
    assert!(codes.contains(&"synthetic-second") && codes.contains(&"synthetic-alarm"));

    // Its order service flags what its pitfall names.
    let order = json!({"resourceType": "ServiceRequest", "id": "gadget-1", "status": "draft",
        "intent": "order", "code": {"coding": [{"system": SYNTH, "code": "gadget"}]},
        "subject": {"reference": "Patient/p1"}});
    let sign = json!({"hook": "order-sign", "hookInstance": uuid::Uuid::new_v4().to_string(),
        "context": {"userId": "Practitioner/dr-1", "patientId": "p1", "draftOrders": bundle(&[order])},
        "prefetch": {"Condition": bundle(&[widget_episode(10)]), "Observation": bundle(&[gauge(1)])}});
    let signed = call(&app, SYNTH_SIGN, &sign, false).await;
    // (The alarm, never recorded, is "not ruled out" on every hook, as a card of its own.)
    let topics: Vec<(&str, &str)> = signed["cards"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["source"]["topic"]["code"].as_str().unwrap(),
                c["indicator"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        topics,
        [
            ("synthetic-gadget", "warning"),
            ("synthetic-alarm", "warning")
        ]
    );
    assert!(signed["cards"][1]["summary"]
        .as_str()
        .unwrap()
        .starts_with("Not ruled out"));

    // Replay of the synthetic call reproduces it under the version that decided it.
    let calls: Vec<_> = stride_tests::audit_entries(&app)
        .await
        .into_iter()
        .filter(|e| {
            e.entry.action == "hook-call" && e.entry.rule_set_id.as_deref() == Some(GUIDELINE)
        })
        .collect();
    assert_eq!(calls.len(), 3, "two patient-views and one order-sign");
    let first = &calls[0];
    assert_eq!(first.entry.rule_set_version.as_deref(), Some("1.1.0"));
    let (status, r) = staff_get(&app, &format!("/audit/{}/replay", first.entry.id)).await;
    assert_eq!(status, 200, "{r}");
    assert_eq!(r["identical"], true, "{r}");
    assert_eq!(r["replayed"], json!(["synthetic-first"]));
    // Seen under its other version, the same call would have been phase two.
    let (_, other) = staff_get(
        &app,
        &format!("/audit/{}/replay?version=1.0.0", first.entry.id),
    )
    .await;
    assert_eq!(other["replayed"], json!(["synthetic-second"]), "{other}");
}

#[tokio::test]
async fn each_clinic_is_pinned_per_guideline() {
    // Clinic B keeps the synthetic guideline at 1.0.0; the running-knee guideline follows the
    // setting for everyone (1.0.0), so each guideline is pinned on its own.
    let app = stride_tests::spawn_app_trusting(
        &[
            clinic_b(json!({"guidelines": {GUIDELINE: "1.0.0"}})),
            stride_tests::tokens::auditors(),
        ],
        &[(
            "STRIDE_GUIDELINE_VERSIONS",
            "medial-knee-pain-running=1.0.0",
        )],
    )
    .await;
    let a = call(&app, SYNTH_PV, &day_four(), false).await;
    let b = call(&app, SYNTH_PV, &day_four(), true).await;
    assert_eq!(
        (phase_of(&a).1, phase_of(&a).2),
        ("synthetic-first".into(), "1.1.0".into())
    );
    assert_eq!(
        (phase_of(&b).1, phase_of(&b).2),
        ("synthetic-second".into(), "1.0.0".into())
    );
    for clinic_b in [false, true] {
        // A hook instance of its own per clinic (another caller's instance is a 409).
        let knee = patient_view(prefetch(&[condition("k", "M25.561", Some(3))], &[]));
        let answer = call(&app, KNEE_PV, &knee, clinic_b).await;
        assert_eq!(phase_of(&answer).2, "1.0.0", "clinic b: {clinic_b}");
    }

    // GET /guidelines lists both, each with who uses which version and why (to staff who
    // see every clinic).
    let listed = app
        .get_json_as(
            "/guidelines",
            &stride_tests::tokens::auditors_token("audit.read"),
        )
        .await;
    let by_id = |id: &str| {
        listed["guidelines"]
            .as_array()
            .unwrap()
            .iter()
            .find(|g| g["id"] == id)
            .unwrap_or_else(|| panic!("{id}: {listed}"))
            .clone()
    };
    let synth = by_id(GUIDELINE);
    assert_eq!(synth["tenants"][TENANT]["version"], "1.1.0");
    assert_eq!(synth["tenants"][TENANT_B]["version"], "1.0.0");
    assert_eq!(synth["tenants"][TENANT_B]["chosenBy"], "trust file");
    let knee = by_id("medial-knee-pain-running");
    assert_eq!(
        knee["tenants"][TENANT_B]["chosenBy"],
        "STRIDE_GUIDELINE_VERSIONS"
    );

    // Each tenant's chain records the version in force of each guideline.
    let entries = stride_tests::audit_entries(&app).await;
    for tenant in [TENANT, TENANT_B] {
        let mut versions: Vec<(String, String)> = entries
            .iter()
            .filter(|e| e.entry.action == "guideline-version" && e.entry.tenant == tenant)
            .map(|e| {
                (
                    e.entry.details["guideline"].as_str().unwrap().to_owned(),
                    e.entry.details["version"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        versions.sort();
        let synth = if tenant == TENANT { "1.1.0" } else { "1.0.0" };
        assert_eq!(
            versions,
            [
                ("medial-knee-pain-running".to_owned(), "1.0.0".to_owned()),
                (GUIDELINE.to_owned(), synth.to_owned())
            ],
            "{tenant}"
        );
    }
}
