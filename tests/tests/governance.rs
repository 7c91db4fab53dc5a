//! Rule-set versions go live for a clinic only through recorded sign-offs: two distinct staff
//! with guideline.approve, each naming the impact report they saw, for the file as it is; the
//! activation answers the next call without a restart, survives one, and is audited.

use serde_json::{json, Value as Json};
use stride_tests::fhir::*;
use stride_tests::tokens::*;
use stride_tests::{audit_actions, spawn_app, TestApp};

const PV: &str = "/cds-services/running-knee-patient-view";
const G: &str = "medial-knee-pain-running";

async fn version_answering(app: &TestApp) -> String {
    let body = patient_view(prefetch(
        &[condition("k", "M25.561", Some(20))],
        &recovered_walker(),
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
    let label = res["cards"][0]["source"]["label"]
        .as_str()
        .unwrap()
        .to_owned();
    label.rsplit(' ').next().unwrap().to_owned()
}

/// The impact hash a signer reads on the impact page of `version` (for their clinic, over all
/// its stored decisions): the report is kept, and a sign-off names it.
async fn impact(app: &TestApp, version: &str) -> String {
    let html = app
        .get_text_as(
            &format!("/ui/rules/impact?candidate={G}%3D{version}"),
            &staff_token("audit.read"),
        )
        .await;
    html.split("<code class=\"hash\">")
        .nth(1)
        .and_then(|h| h.split('<').next())
        .unwrap_or_else(|| panic!("an impact hash on the page: {html}"))
        .to_owned()
}

async fn post(app: &TestApp, path: &str, token: String, body: Json) -> (u16, Json) {
    let res = app
        .client
        .post(app.url(path))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .unwrap();
    (
        res.status().as_u16(),
        res.json().await.unwrap_or(Json::Null),
    )
}

#[tokio::test]
async fn two_distinct_approvals_of_the_current_report_put_a_version_in_force_for_a_clinic() {
    let mut app = spawn_app().await;
    assert_eq!(version_answering(&app).await, "1.0.2");
    let sign = |who: &str| staff_token_as(who, "guideline.approve");
    let off = format!("/guidelines/{G}/1.1.1/$sign-off");
    let activate = format!("/guidelines/{G}/1.1.1/$activate");
    let hash = impact(&app, "1.1.1").await;

    // The report a signer names must be one that was read (kept), of this version.
    let (status, body) = post(
        &app,
        &off,
        sign("ana"),
        json!({"decision": "approve", "impact": "0".repeat(64)}),
    )
    .await;
    assert_eq!(status, 409, "{body}");
    let (status, body) = post(
        &app,
        &off,
        sign("ana"),
        json!({"decision": "approve", "impact": hash}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["signer"], format!("{STAFF}|ana"));
    // One approval, even given twice, is not two.
    let (status, _) = post(
        &app,
        &off,
        sign("ana"),
        json!({"decision": "approve", "impact": hash}),
    )
    .await;
    assert_eq!(status, 201);
    // Decisions made since the report was read do not make it stale.
    assert_eq!(version_answering(&app).await, "1.0.2");
    let (status, body) = post(&app, &activate, sign("ana"), json!({"tenant": TENANT})).await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(
        version_answering(&app).await,
        "1.0.2",
        "nothing changed yet"
    );

    let (status, _) = post(
        &app,
        &off,
        sign("ben"),
        json!({"decision": "approve", "impact": hash}),
    )
    .await;
    assert_eq!(status, 201);
    // A tenant that cannot be one is refused before anything is looked up.
    for (bad, why) in [
        ("", "cannot be empty"),
        (" clinic-a", "no space at either end"),
        ("clinic-a\n", "no control characters"),
    ] {
        let (status, body) = post(&app, &activate, sign("ben"), json!({"tenant": bad})).await;
        assert_eq!(status, 400, "{bad:?}: {body}");
        let said = body["issue"][0]["details"]["text"]
            .as_str()
            .unwrap_or_default();
        assert!(
            said.starts_with("tenant: ") && said.contains(why),
            "{bad:?}: {body}"
        );
    }
    // Another clinic is not theirs to activate; a scope is needed.
    let (status, _) = post(&app, &activate, sign("ben"), json!({"tenant": TENANT_B})).await;
    assert_eq!(status, 403);
    let (status, _) = post(
        &app,
        &activate,
        staff_token("careplan.review"),
        json!({"tenant": TENANT}),
    )
    .await;
    assert_eq!(status, 403);
    let (status, body) = post(&app, &activate, sign("ben"), json!({"tenant": TENANT})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        version_answering(&app).await,
        "1.1.1",
        "the next call, without a restart"
    );

    // GET /guidelines shows the sign-offs and where each version is in force (staff only).
    let g = app
        .get_json_as("/guidelines", &staff_token("careplan.read"))
        .await;
    let versions = g["guidelines"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["id"] == G)
        .unwrap()["versions"]
        .clone();
    let v = |n: &str| {
        versions
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["version"] == n)
            .unwrap()
            .clone()
    };
    assert_eq!(v("1.1.1")["activeFor"], json!([TENANT]));
    assert_eq!(v("1.0.2")["activeFor"], json!([]));
    let signed = v("1.1.1")["signOffs"].as_array().unwrap().clone();
    assert_eq!(signed.len(), 3);
    assert!(signed
        .iter()
        .all(|s| s["impact"] == hash && s["current"] == true));
    let anonymous = app.get_json("/guidelines").await;
    assert!(!anonymous.to_string().contains("signOffs"), "{anonymous}");

    // A report nobody kept yet is accepted when it is the clinic's report as it is now (what
    // `stride rules impact` prints over a log of this clinic alone).
    let off = format!("/guidelines/{G}/1.1.0/$sign-off");
    let catalog = stride_app::catalog::Catalog::load(stride_tests::guidelines_dir()).unwrap();
    let now = stride_app::governance::impact_hash(
        app.store.as_ref(),
        &catalog,
        G,
        "1.1.0".parse().unwrap(),
        &stride_store::TenantId::parse(TENANT).unwrap(),
    )
    .await
    .unwrap();
    let (status, body) = post(
        &app,
        &off,
        sign("dora"),
        json!({"decision": "approve", "impact": now}),
    )
    .await;
    assert_eq!(status, 201, "{body}");

    // A rejection needs its reason, and stops activation until its signer approves.
    let hash = impact(&app, "1.1.0").await;
    assert_eq!(hash, now, "the page shows the same report");
    let (status, _) = post(
        &app,
        &off,
        sign("ana"),
        json!({"decision": "reject", "impact": hash}),
    )
    .await;
    assert_eq!(status, 400);
    let (status, _) = post(
        &app,
        &off,
        sign("ana"),
        json!({"decision": "reject", "reason": "superseded by 1.1.1", "impact": hash}),
    )
    .await;
    assert_eq!(status, 201);
    for who in ["ben", "cleo"] {
        let (status, _) = post(
            &app,
            &off,
            sign(who),
            json!({"decision": "approve", "impact": hash}),
        )
        .await;
        assert_eq!(status, 201);
    }
    let (status, body) = post(
        &app,
        &format!("/guidelines/{G}/1.1.0/$activate"),
        sign("ben"),
        json!({"tenant": TENANT}),
    )
    .await;
    assert_eq!(status, 409);
    assert!(body.to_string().contains("superseded by 1.1.1"), "{body}");

    // The committee's page: each version, where it is in force, who signed off and why.
    let page = app
        .client
        .get(app.url("/ui/guidelines"))
        .bearer_auth(sign("ana"))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    for said in [
        format!("Approved by ben for {TENANT}"),
        format!("Rejected by ana for {TENANT}"),
        "superseded by 1.1.1".to_owned(),
        format!("<td>{TENANT}</td>"),
        "/ui/rules/impact?candidate=medial-knee-pain-running%3D1.1.0".to_owned(),
    ] {
        assert!(html.contains(&said), "{said}: {html}");
    }
    let refused = app
        .client
        .get(app.url("/ui/guidelines"))
        .bearer_auth(staff_token("careplan.read"))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 403);

    // Every sign-off and the activation are on the record; the activation survives a restart.
    let actions = audit_actions(&app).await;
    assert_eq!(
        actions
            .iter()
            .filter(|a| *a == "guideline-sign-off")
            .count(),
        7
    );
    assert_eq!(
        actions
            .iter()
            .filter(|a| *a == "guideline-activation")
            .count(),
        1
    );
    app.restart().await;
    assert_eq!(version_answering(&app).await, "1.1.1");
}

/// A form on a staff page, posted from Stride's own origin with `who`'s token.
async fn form(
    app: &TestApp,
    path: &str,
    who: &str,
    fields: &[(&str, &str)],
) -> (u16, String, String) {
    let res = app
        .client
        .post(app.url(path))
        .bearer_auth(staff_token_as(who, "audit.read guideline.approve"))
        .header("origin", PUBLIC_URL)
        .form(fields)
        .send()
        .await
        .unwrap();
    let status = res.status().as_u16();
    let location = res
        .headers()
        .get("location")
        .map(|l| l.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (status, location, res.text().await.unwrap_or_default())
}

#[tokio::test]
async fn a_committee_signs_off_on_the_impact_page_and_activates_from_its_versions_page() {
    let app = spawn_app().await;
    assert_eq!(version_answering(&app).await, "1.0.2");
    let off = format!("/ui/guidelines/{G}/1.1.1/sign-off");
    let activate = format!("/ui/guidelines/{G}/1.1.1/activate");

    // The impact page of a signer holds the sign-off form, naming the report just read.
    let page = app
        .get_text_as(
            &format!("/ui/rules/impact?candidate={G}%3D1.1.1"),
            &staff_token_as("ana", "audit.read guideline.approve"),
        )
        .await;
    let hash = page
        .split("<code class=\"hash\">")
        .nth(1)
        .and_then(|h| h.split('<').next())
        .unwrap()
        .to_owned();
    assert!(
        page.contains(&format!("action=\"{off}\""))
            && page.contains(&format!("name=\"impact\" value=\"{hash}\"")),
        "{page}"
    );
    // A reader without the committee's scope gets no form.
    let reader = app
        .get_text_as(
            &format!("/ui/rules/impact?candidate={G}%3D1.1.1"),
            &staff_token("audit.read"),
        )
        .await;
    assert!(!reader.contains("sign-off\""), "{reader}");

    let (status, location, _) = form(
        &app,
        &off,
        "ana",
        &[("decision", "approve"), ("impact", &hash)],
    )
    .await;
    assert_eq!(
        (status, location.as_str()),
        (303, "/ui/guidelines?done=sign-off")
    );
    // One approval is not enough: no button is offered, a post anyway says why, and nothing
    // changes.
    let versions = app
        .get_text_as(
            "/ui/guidelines",
            &staff_token_as("ana", "guideline.approve"),
        )
        .await;
    assert!(
        versions.contains("1 of 2 approvals for")
            && !versions.contains(&format!("action=\"{activate}\"")),
        "{versions}"
    );
    let (status, _, body) = form(&app, &activate, "ana", &[]).await;
    assert_eq!(status, 409, "{body}");
    assert!(body.contains("Your activation was not recorded"), "{body}");
    assert_eq!(version_answering(&app).await, "1.0.2");
    // A rejection needs its reason.
    let (status, _, body) = form(
        &app,
        &off,
        "ben",
        &[("decision", "reject"), ("impact", &hash)],
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("reason: required to reject"), "{body}");

    let (status, _, _) = form(
        &app,
        &off,
        "ben",
        &[("decision", "approve"), ("impact", &hash)],
    )
    .await;
    assert_eq!(status, 303);
    let versions = app
        .get_text_as(
            "/ui/guidelines",
            &staff_token_as("ben", "guideline.approve"),
        )
        .await;
    assert!(
        versions.contains(&format!("action=\"{activate}\""))
            && versions.contains("Approved by ben"),
        "{versions}"
    );
    let (status, location, _) = form(&app, &activate, "ben", &[]).await;
    assert_eq!(
        (status, location.as_str()),
        (303, "/ui/guidelines?done=activate")
    );
    assert_eq!(version_answering(&app).await, "1.1.1", "the next call");
    // From another site, nothing is recorded.
    let res = app
        .client
        .post(app.url(&off))
        .bearer_auth(staff_token_as("cy", "guideline.approve"))
        .header("origin", "https://evil.example")
        .form(&[("decision", "approve"), ("impact", hash.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
}
