//! The impact of a candidate version on the decisions already made: `stride rules impact` and
//! the staff page `/ui/rules/impact`, replaying stored calls and reading shadow records.

use serde_json::Value as Json;
use stride::cli::ImpactFormat;
use stride_app::impact::{report, Candidate, Change, Scope};
use stride_tests::fhir::*;
use stride_tests::tokens::staff_token;
use stride_tests::TestApp;

const PV: &str = "/cds-services/running-knee-patient-view";
const CANDIDATE: &str = "medial-knee-pain-running=1.1.0";
const GROIN: &str = "walk-run → hold-for-evaluation (+femoral-neck-bone-stress)";

async fn call(app: &TestApp, body: &Json) {
    let res = app.cds(PV).json(body).send().await.unwrap();
    assert_eq!(res.status(), 200);
}

async fn changes(app: &TestApp) -> (stride_app::impact::Summary, Vec<Change>) {
    let catalog = stride_app::catalog::Catalog::load(stride_tests::guidelines_dir()).unwrap();
    let scope = Scope {
        candidate: CANDIDATE.parse::<Candidate>().unwrap(),
        since_us: None,
        tenant: None,
    };
    let mut seen = Vec::new();
    let summary = report(
        app.store.as_ref(),
        &catalog,
        &scope,
        |c| seen.push(c.clone()),
        1,
        |_| {},
    )
    .await
    .unwrap();
    (summary, seen)
}

async fn page(app: &TestApp, query: &str) -> (u16, String) {
    let res = app
        .client
        .get(app.url(&format!("/ui/rules/impact?{query}")))
        .bearer_auth(staff_token("audit.read"))
        .send()
        .await
        .unwrap();
    (res.status().as_u16(), res.text().await.unwrap())
}

#[tokio::test]
async fn the_candidate_replays_every_stored_decision_and_reads_shadow_records() {
    let mut app = stride_tests::spawn_app().await;
    // Two calls decided by 1.0.1: one that 1.1.0 would hold (groin pain), one it would not.
    call(
        &app,
        &walker_day_20(&[obs("groin", "groin-pain", 1, boolean(true))]),
    )
    .await;
    call(&app, &walker_day_20(&[])).await;
    let (summary, seen) = changes(&app).await;
    assert_eq!(
        (summary.decisions, summary.changed, summary.unchanged),
        (2, 1, 1)
    );
    assert_eq!(summary.from_shadow, 0);
    assert_eq!(
        summary.transitions.get(GROIN),
        Some(&1),
        "{:?}",
        summary.transitions
    );
    let c = &seen[0];
    assert_eq!(c.before, ["walk-run"]);
    assert_eq!(c.after, ["hold-for-evaluation", "femoral-neck-bone-stress"]);
    assert_eq!(
        (c.from.as_ref(), c.patient.as_deref()),
        ("replay", Some("Patient/p1"))
    );

    // With 1.1.0 in shadow, a new call's own shadow record is read instead of deciding again.
    app.env
        .push(("STRIDE_SHADOW_VERSIONS".into(), CANDIDATE.into()));
    app.restart().await;
    call(
        &app,
        &walker_day_20(&[obs("hip", "hip-internal-rotation-pain", 1, boolean(true))]),
    )
    .await;
    let first_hash = summary.impact_hash.clone();
    let (summary, seen) = changes(&app).await;
    assert_eq!((summary.decisions, summary.changed), (3, 2));
    // The impact hash is the SHA-256 of the changed-decision lines in NDJSON order: what a
    // signer saw, so a report with other changes has another hash.
    let lines: String = seen
        .iter()
        .map(|c| format!("{}\n", serde_json::to_string(c).unwrap()))
        .collect();
    assert_eq!(
        summary.impact_hash,
        stride_store::audit::sha256_hex(lines.as_bytes())
    );
    assert_ne!(summary.impact_hash, first_hash);
    assert_eq!(summary.from_shadow, 1);
    assert_eq!(summary.transitions.get(GROIN), Some(&2));
    assert_eq!(seen.iter().filter(|c| c.from == "shadow").count(), 1);

    // The command line: every format runs over the same log.
    let settings = stride::config::Settings::from_sources(None, &app.env).unwrap();
    for format in [ImpactFormat::Ndjson, ImpactFormat::Csv, ImpactFormat::Text] {
        let s = stride::rules_cmd::impact(&settings, CANDIDATE, None, None, format)
            .await
            .unwrap();
        assert_eq!(s.changed, 2, "{format:?}");
    }
    // Only the decisions since a day, and a candidate that is not loaded.
    let tomorrow = (today() + time::Duration::days(1)).to_string();
    let later = stride::rules_cmd::impact(
        &settings,
        CANDIDATE,
        Some(&tomorrow),
        None,
        ImpactFormat::Text,
    )
    .await
    .unwrap();
    assert_eq!(later.decisions, 0);
    assert_eq!(
        later.impact_hash, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        "no change: the hash of nothing"
    );
    assert!(stride::rules_cmd::impact(
        &settings,
        "medial-knee-pain-running=9.9.9",
        None,
        None,
        ImpactFormat::Text
    )
    .await
    .is_err());
}

#[tokio::test]
async fn the_staff_page_shows_the_report_and_two_traces_side_by_side() {
    let app = stride_tests::spawn_app().await;
    call(
        &app,
        &walker_day_20(&[obs("groin", "groin-pain", 1, boolean(true))]),
    )
    .await;
    let (_, seen) = changes(&app).await;
    let entry = &seen[0].audit_entry;

    let (status, html) = page(&app, "").await;
    assert_eq!(status, 200);
    assert!(
        html.contains("medial-knee-pain-running=1.1.0"),
        "the candidates offered"
    );

    let q = format!("candidate={CANDIDATE}");
    let (status, html) = page(&app, &q).await;
    assert_eq!(status, 200, "{html}");
    assert!(html.contains("<strong>1 would change</strong>"), "{html}");
    assert!(html.contains("walk-run → hold-for-evaluation (+femoral-neck-bone-stress)"));
    assert!(
        html.contains(&format!("/ui/audit/{entry}")),
        "a link to the audit entry"
    );

    let (status, html) = page(&app, &format!("{q}&entry={entry}")).await;
    assert_eq!(status, 200, "{html}");
    assert!(html.contains("Traces side by side"));
    // The check that changed: groin pain, unknown to 1.0.1, met under 1.1.0.
    assert!(
        html.contains(
            "<tr class=\"changed\"><td>RF-11</td><td>RF-11a</td><td>groin_pain</td><td>—</td><td>not in this version</td><td>1 </td><td>met</td></tr>"
        ),
        "{html}"
    );

    let (status, _) = page(&app, "candidate=medial-knee-pain-running%3D9.9.9").await;
    assert_eq!(
        status, 400,
        "a candidate that is not loaded is said, not guessed"
    );
    // The page is audited like every read of the log.
    assert!(stride_tests::audit_actions(&app)
        .await
        .iter()
        .any(|a| a == "audit-read"));
}

/// The summary line of the impact page: "… <strong>N would change</strong> …".
fn would_change(html: &str) -> String {
    html.split("<strong>")
        .nth(1)
        .and_then(|s| s.split("</strong>").next())
        .unwrap_or_else(|| panic!("a summary: {html}"))
        .to_owned()
}

#[tokio::test]
async fn a_clinic_s_report_is_computed_once_kept_and_computed_again_on_request() {
    let app = stride_tests::spawn_app().await;
    let groin = walker_day_20(&[obs("groin", "groin-pain", 1, boolean(true))]);
    call(&app, &groin).await;
    let q = format!("candidate={CANDIDATE}");
    let (status, first) = page(&app, &q).await;
    assert_eq!(status, 200, "{first}");
    assert_eq!(would_change(&first), "1 would change");
    assert!(
        first.contains("The report kept for your clinic, computed"),
        "{first}"
    );
    let kept = app
        .store
        .latest_impact_report(
            "medial-knee-pain-running",
            "1.1.0",
            &stride_app::catalog::Catalog::load(stride_tests::guidelines_dir())
                .unwrap()
                .get("medial-knee-pain-running", &"1.1.0".parse().unwrap())
                .unwrap()
                .content_hash,
            "1.0.2",
            &stride_store::TenantId::parse(stride_tests::tokens::TENANT).unwrap(),
        )
        .await
        .unwrap()
        .expect("the report is kept with its body");
    assert!(kept.report.unwrap().contains("femoral-neck-bone-stress"));

    // A decision recorded since is not in the kept report: the page shows the report as
    // kept, without deciding every stored decision again.
    let mut again = groin.clone();
    again["hookInstance"] = serde_json::json!(uuid::Uuid::new_v4().to_string());
    call(&app, &again).await;
    let (_, second) = page(&app, &q).await;
    assert_eq!(would_change(&second), "1 would change", "{second}");
    // Computed again on request, it counts.
    let (status, third) = page(&app, &format!("{q}&again=1")).await;
    assert_eq!(status, 200, "{third}");
    assert_eq!(would_change(&third), "2 would change", "{third}");
    let (_, fourth) = page(&app, &q).await;
    assert_eq!(
        would_change(&fourth),
        "2 would change",
        "the newest kept report"
    );
}
