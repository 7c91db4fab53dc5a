//! Guideline versions side by side: one clinic stays on 1.0.0 while another moves to 1.0.1
//! (`STRIDE_GUIDELINE_VERSIONS` for everyone, a trust-file issuer's `guidelines` over it),
//! `GET /guidelines` says who uses which, discovery names its version, and every change of the
//! version in force is an audit entry.

use serde_json::{json, Value as Json};
use stride_tests::fhir::*;
use stride_tests::tokens::{clinic_b, TENANT, TENANT_B};
use stride_tests::TestApp;

const PV: &str = "/cds-services/running-knee-patient-view";
const GUIDELINE: &str = "medial-knee-pain-running";

/// The rule-set version that decided a call, from its card's source URL.
fn decided_by(answer: &Json) -> String {
    let url = answer["cards"][0]["source"]["url"]
        .as_str()
        .expect("a card");
    url.rsplit('/').next().unwrap().to_owned()
}

async fn version_for(app: &TestApp, clinic_b: bool) -> String {
    let body = patient_view(prefetch(&[condition("k", "M25.561", Some(3))], &[]));
    let req = if clinic_b { app.cds_b(PV) } else { app.cds(PV) };
    let res = req.json(&body).send().await.unwrap();
    assert_eq!(res.status(), 200);
    decided_by(&res.json().await.unwrap())
}

async fn get_json(app: &TestApp, path: &str, token: Option<String>) -> Json {
    let mut req = app.client.get(app.url(path));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    req.send().await.unwrap().json().await.unwrap()
}

/// The running-knee guideline's `guideline-version` entries of `tenant` (the synthetic test
/// guideline has its own).
async fn version_entries(app: &TestApp, tenant: &str) -> Vec<Json> {
    stride_tests::audit_entries(app)
        .await
        .into_iter()
        .filter(|e| {
            e.entry.action == "guideline-version"
                && e.entry.tenant == tenant
                && e.entry.details["guideline"] == GUIDELINE
        })
        .map(|e| e.entry.details)
        .collect()
}

#[tokio::test]
async fn each_clinic_is_answered_by_the_version_it_is_pinned_to() {
    // Clinic B stays on 1.0.0 (its trust-file entry); clinic A follows the newest active.
    let app = stride_tests::spawn_app_trusting(
        &[
            clinic_b(json!({"guidelines": {GUIDELINE: "1.0.0"}})),
            stride_tests::tokens::auditors(),
        ],
        &[],
    )
    .await;
    assert_eq!(version_for(&app, false).await, "1.0.2");
    assert_eq!(version_for(&app, true).await, "1.0.0");

    // Anonymous readers see the versions and the default, never the clinics.
    let anonymous = get_json(&app, "/guidelines", None).await;
    assert!(
        anonymous["guidelines"][0].get("tenants").is_none(),
        "{anonymous}"
    );
    assert_eq!(anonymous["guidelines"][0]["default"]["version"], "1.0.2");
    // Staff of clinic A see clinic A's pin only.
    let own = get_json(
        &app,
        "/guidelines",
        Some(stride_tests::tokens::staff_token("careplan.read")),
    )
    .await;
    let own_tenants = own["guidelines"][0]["tenants"].as_object().unwrap();
    assert!(
        own_tenants.contains_key(TENANT) && !own_tenants.contains_key(TENANT_B),
        "{own}"
    );
    // An issuer that sees every tenant sees both.
    let listed = get_json(
        &app,
        "/guidelines",
        Some(stride_tests::tokens::auditors_token("audit.read")),
    )
    .await;
    let g = &listed["guidelines"][0];
    assert_eq!(g["id"], GUIDELINE);
    let versions: Vec<(&str, &str)> = g["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            (
                v["version"].as_str().unwrap(),
                v["status"].as_str().unwrap(),
            )
        })
        .collect();
    assert!(
        versions.contains(&("1.0.0", "active"))
            && versions.contains(&("1.0.1", "active"))
            && versions.contains(&("1.0.2", "active"))
    );
    assert_eq!(g["default"]["version"], "1.0.2");
    assert_eq!(g["default"]["chosenBy"], "newest active");
    assert_eq!(g["tenants"][TENANT]["version"], "1.0.2");
    assert_eq!(g["tenants"][TENANT_B]["version"], "1.0.0");
    assert_eq!(g["tenants"][TENANT_B]["chosenBy"], "trust file");

    // Discovery: each service carries its own guideline's default version.
    let discovery = get_json(&app, "/cds-services", None).await;
    let versions: Vec<(&str, &str)> = discovery["services"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["id"].as_str().unwrap(), s["version"].as_str().unwrap()))
        .collect();
    assert_eq!(
        versions,
        [
            ("running-knee-patient-view", "1.0.2"),
            ("running-knee-order-select", "1.0.2"),
            ("running-knee-order-sign", "1.0.2"),
            ("synthetic-patient-view", "1.1.0"),
            ("synthetic-order-sign", "1.1.0"),
        ]
    );
}

#[tokio::test]
async fn the_setting_pins_every_tenant_and_a_trust_file_entry_overrides_it() {
    let app = stride_tests::spawn_app_trusting(
        &[clinic_b(json!({"guidelines": {GUIDELINE: "1.0.1"}}))],
        &[(
            "STRIDE_GUIDELINE_VERSIONS",
            "medial-knee-pain-running=1.0.0",
        )],
    )
    .await;
    assert_eq!(version_for(&app, false).await, "1.0.0");
    assert_eq!(version_for(&app, true).await, "1.0.1");
}

#[tokio::test]
async fn every_change_of_the_version_in_force_is_audited_once() {
    let mut app = stride_tests::spawn_app_trusting(&[clinic_b(json!({}))], &[]).await;
    let first = version_entries(&app, TENANT_B).await;
    assert_eq!(first.len(), 1, "{first:?}");
    assert_eq!(first[0]["version"], "1.0.2");
    assert_eq!(first[0]["chosenBy"], "newest active");
    assert!(first[0].get("previous").is_none());
    // Unchanged at a restart: nothing new.
    app.restart().await;
    assert_eq!(version_entries(&app, TENANT_B).await.len(), 1);
    // Everyone moved back to 1.0.0: one entry per tenant, naming what was in force.
    app.env.push((
        "STRIDE_GUIDELINE_VERSIONS".into(),
        "medial-knee-pain-running=1.0.0".into(),
    ));
    app.restart().await;
    for tenant in [TENANT, TENANT_B] {
        let entries = version_entries(&app, tenant).await;
        assert_eq!(entries.len(), 2, "{tenant}: {entries:?}");
        assert_eq!(entries[1]["version"], "1.0.0");
        assert_eq!(entries[1]["previous"], "1.0.2");
        assert_eq!(entries[1]["chosenBy"], "STRIDE_GUIDELINE_VERSIONS");
    }
    let token = stride_tests::tokens::staff_token("audit.read");
    let res = get_json(&app, "/audit/verify", Some(token)).await;
    assert_eq!(res["status"], "intact");
}

#[tokio::test]
async fn a_pin_to_a_version_that_is_not_loaded_stops_the_start() {
    let db = stride_tests::TestDb::fresh().await;
    for (name, value, trust) in [
        (
            "STRIDE_GUIDELINE_VERSIONS",
            "medial-knee-pain-running=9.9.9",
            json!({}),
        ),
        (
            "STRIDE_GUIDELINE_VERSIONS",
            "no-such-guideline=1.0.0",
            json!({}),
        ),
        ("", "", json!({"guidelines": {GUIDELINE: "0.9.0"}})),
        // A candidate in shadow must be loaded too (it may be a draft).
        (
            "STRIDE_SHADOW_VERSIONS",
            "medial-knee-pain-running=9.9.9",
            json!({}),
        ),
        ("", "", json!({"shadow": {GUIDELINE: "0.9.0"}})),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("trust.json");
        let trust_file = stride_tests::tokens::trust_file(&[clinic_b(trust)]);
        std::fs::write(&path, trust_file.to_string()).unwrap();
        let mut env = stride_tests::base_env(&db);
        env.push(("STRIDE_TRUST_FILE".into(), path.display().to_string()));
        if !name.is_empty() {
            env.push((name.into(), value.into()));
        }
        let settings = stride::config::Settings::from_sources(None, &env).unwrap();
        let err = stride::startup::Application::build(settings)
            .await
            .err()
            .expect("refused");
        assert!(
            err.to_string().contains("is not a loaded rule-set version"),
            "{err}"
        );
    }
}
