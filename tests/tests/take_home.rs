//! The patient's take-home plan of an approved CarePlan: the staff page, the PDF on A4 and
//! Letter, and the FHIR DocumentReference an EHR files, all from the rule set's patient
//! wording and only once the plan is approved.

use base64::Engine;
use serde_json::{json, Value as Json};
use stride_tests::fhir::*;
use stride_tests::tokens::*;
use stride_tests::{spawn_app, TestApp};

const PV: &str = "/cds-services/running-knee-patient-view";

/// A rest-phase draft for Patient/p1: its id.
async fn drafted(app: &TestApp) -> String {
    let body = patient_view(prefetch(
        &[condition("k", "M25.561", Some(3))],
        &[obs("p", "pain-walking", 0, int(2))],
    ));
    let res: Json = app
        .cds(PV)
        .json(&body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    res["cards"][0]["suggestions"][0]["actions"][0]["resource"]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("a drafted plan: {res}"))
        .to_owned()
}

async fn get(app: &TestApp, path: &str, scope: &str) -> reqwest::Response {
    app.client
        .get(app.url(path))
        .bearer_auth(staff_token(scope))
        .send()
        .await
        .unwrap()
}

async fn approve(app: &TestApp, id: &str) -> Json {
    let res = app
        .client
        .post(app.url(&format!("/fhir/CarePlan/{id}/$review")))
        .bearer_auth(staff_token("careplan.review"))
        .json(&json!({"action": "approve", "version": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    res.json().await.unwrap()
}

/// The text of a PDF, as poppler's `pdftotext` reads it (an independent reader).
fn pdf_text(pdf: &[u8]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("plan.pdf");
    std::fs::write(&file, pdf).unwrap();
    let out = std::process::Command::new("pdftotext")
        .arg(&file)
        .arg("-")
        .output()
        .expect("pdftotext (poppler-utils) is installed: run scripts/test");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn media_box(pdf: &[u8]) -> String {
    let text = String::from_utf8_lossy(pdf);
    let at = text.find("/MediaBox").expect("a page size");
    text[at..].split(']').next().unwrap().to_owned()
}

#[tokio::test]
async fn an_approved_plan_goes_home_as_a_page_a_pdf_and_a_document_reference() {
    let app = spawn_app().await;
    let id = drafted(&app).await;

    // A draft is not for the patient yet: the page says so, the search finds nothing.
    let res = get(
        &app,
        &format!("/ui/careplans/{id}/patient"),
        "careplan.read",
    )
    .await;
    assert_eq!(res.status(), 409);
    assert!(res.text().await.unwrap().contains("approved"));
    let found: Json = get(
        &app,
        &format!("/fhir/DocumentReference?related=CarePlan/{id}"),
        "careplan.read",
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(found["total"], 0, "{found}");

    let approved = approve(&app, &id).await;
    assert!(
        approved["supportingInfo"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["reference"] == format!("DocumentReference/{id}")),
        "the plan in force links its take-home plan: {}",
        approved["supportingInfo"]
    );

    // The page: the rule set's patient wording for rest, the calendar, the stop rules.
    let res = get(
        &app,
        &format!("/ui/careplans/{id}/patient"),
        "careplan.read",
    )
    .await;
    assert_eq!(res.status(), 200);
    let html = res.text().await.unwrap();
    for said in [
        "Your plan: Rest your leg",
        "Do not run at all, not even a short way.",
        "Stop and call the clinic if you have pain at night, pain at rest, or pain while running.",
        "Your next two weeks",
        "Walk with no pain",
    ] {
        assert!(html.contains(said), "{said}: {html}");
    }
    assert_eq!(
        html.matches("<tr class=\"session\">").count(),
        14,
        "walking every day"
    );
    for internal in ["{score}", "PH-1", "seed", "pain_free", "Observation/"] {
        assert!(!html.contains(internal), "{internal} on the patient's page");
    }

    // The PDF, on A4 and on US Letter, says the same (read back by pdftotext).
    for (paper, size) in [("a4", "595 842"), ("letter", "612 792")] {
        let res = get(
            &app,
            &format!("/ui/careplans/{id}/patient.pdf?paper={paper}"),
            "careplan.read",
        )
        .await;
        assert_eq!(res.status(), 200);
        assert_eq!(res.headers()["content-type"], "application/pdf");
        let pdf = res.bytes().await.unwrap();
        assert!(pdf.starts_with(b"%PDF-"), "{paper}");
        assert!(
            media_box(&pdf).ends_with(size),
            "{paper}: {}",
            media_box(&pdf)
        );
        let text = pdf_text(&pdf)
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        for said in [
            "Your plan: Rest your leg",
            "Stop and call the clinic if you have pain at night, pain at rest, or pain while running.",
            "Work up to 30 to 45 minutes of walking in a row with no pain.",
        ] {
            assert!(text.contains(said), "{paper}: {said}: {text}");
        }
    }
    let res = get(
        &app,
        &format!("/ui/careplans/{id}/patient.pdf?paper=a3"),
        "careplan.read",
    )
    .await;
    assert_eq!(res.status(), 400);

    // The DocumentReference an EHR files beside the CarePlan.
    let found: Json = get(
        &app,
        &format!("/fhir/DocumentReference?related=CarePlan/{id}"),
        "careplan.read",
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(found["total"], 1, "{found}");
    let doc = &found["entry"][0]["resource"];
    assert_eq!(doc["resourceType"], "DocumentReference");
    assert_eq!(doc["status"], "current");
    assert_eq!(doc["subject"]["reference"], "Patient/p1");
    assert_eq!(
        doc["context"]["related"][0]["reference"],
        format!("CarePlan/{id}")
    );
    let attachment = &doc["content"][0]["attachment"];
    assert_eq!(attachment["contentType"], "application/pdf");
    let pdf = base64::engine::general_purpose::STANDARD
        .decode(attachment["data"].as_str().unwrap())
        .unwrap();
    assert_eq!(attachment["size"], pdf.len());
    assert!(pdf_text(&pdf).contains("Rest your leg"));
    let read: Json = get(
        &app,
        &format!("/fhir/DocumentReference/{id}"),
        "careplan.read",
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(read["id"], doc["id"]);

    // Staff without careplan.read, and another clinic's staff, get nothing.
    let res = get(
        &app,
        &format!("/ui/careplans/{id}/patient.pdf"),
        "audit.read",
    )
    .await;
    assert_eq!(res.status(), 403);
    app.stop().await;
}

#[tokio::test]
async fn a_document_search_needs_a_careplan_reference() {
    let app = spawn_app().await;
    let id = drafted(&app).await;
    approve(&app, &id).await;
    let res = get(&app, "/fhir/DocumentReference", "careplan.read").await;
    assert_eq!(res.status(), 400);
    let res = get(
        &app,
        "/fhir/DocumentReference?related=Patient/p1",
        "careplan.read",
    )
    .await;
    assert_eq!(res.status(), 400);
    let res = get(&app, "/fhir/DocumentReference/not-a-plan", "careplan.read").await;
    assert_eq!(res.status(), 404);
    app.stop().await;
}
