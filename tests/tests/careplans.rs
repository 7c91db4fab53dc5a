//! Clinic staff read the CarePlans Stride drafted: scope careplan.read, tenant-bound.

use serde_json::{json, Value as Json};
use stride_tests::fhir::*;
use stride_tests::tokens::*;
use stride_tests::{spawn_app, spawn_app_trusting, TestApp};

const PV: &str = "/cds-services/running-knee-patient-view";

/// A patient-view call's answer.
async fn answer(app: &TestApp, body: &Json) -> Json {
    app.cds(PV)
        .json(body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

async fn draft(app: &TestApp) -> (String, Json) {
    draft_of(app, &[]).await
}

/// The draft a patient-view with these Observations leaves for review, and its link.
async fn draft_of(app: &TestApp, observations: &[Json]) -> (String, Json) {
    let body = patient_view(prefetch(
        &[condition("k", "M25.561", Some(3))],
        observations,
    ));
    let res: Json = answer(app, &body).await;
    let card = &res["cards"][0];
    let plan = card["suggestions"][0]["actions"][0]["resource"].clone();
    let link = card["links"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["label"].as_str().unwrap().contains("CarePlan"))
        .unwrap();
    (link["url"].as_str().unwrap().to_owned(), plan)
}

async fn get(app: &TestApp, path: &str, token: Option<String>) -> (u16, Json) {
    let mut req = app.client.get(app.url(path));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let res = req.send().await.unwrap();
    (
        res.status().as_u16(),
        res.json().await.unwrap_or(Json::Null),
    )
}

#[tokio::test]
async fn the_card_links_to_the_stored_draft_which_staff_can_read() {
    let app = spawn_app().await;
    let (url, plan) = draft(&app).await;
    let id = plan["id"].as_str().unwrap();
    assert_eq!(
        url,
        format!("{PUBLIC_URL}/ui/careplans/{id}"),
        "an absolute link to the review page"
    );
    let (status, got) = get(
        &app,
        &format!("/fhir/CarePlan/{id}"),
        Some(staff_token("careplan.read")),
    )
    .await;
    assert_eq!(status, 200, "{got}");
    assert_eq!(got["id"], plan["id"]);
    assert_eq!(got["status"], "draft");
    assert_eq!(got["meta"]["versionId"], "1");
    assert_eq!(got["activity"], plan["activity"]);
}

#[tokio::test]
async fn careplans_need_a_staff_token_with_the_read_scope() {
    let app = spawn_app().await;
    let (_, plan) = draft(&app).await;
    let path = format!("/fhir/CarePlan/{}", plan["id"].as_str().unwrap());
    assert_eq!(get(&app, &path, None).await.0, 401);
    let (status, body) = get(&app, &path, Some(staff_token("audit.read"))).await;
    assert_eq!(status, 403);
    assert_eq!(
        body["issue"][0]["details"]["coding"][0]["code"],
        "auth_scope"
    );
    // An EHR's hook token is not a staff token.
    let (status, body) = get(&app, &path, Some(cds_token(PV))).await;
    assert!(status == 401 || status == 403, "{status}");
    assert!(body["issue"][0]["details"]["coding"][0]["code"]
        .as_str()
        .unwrap()
        .starts_with("auth_"));
    assert_eq!(
        get(
            &app,
            "/fhir/CarePlan/not-a-uuid",
            Some(staff_token("careplan.read"))
        )
        .await
        .0,
        404
    );
}

#[tokio::test]
async fn search_returns_a_bundle_of_the_patients_plans() {
    let app = spawn_app().await;
    let (_, a) = draft(&app).await;
    // A second decision (the same one would reuse the first draft).
    let (_, b) = draft_of(&app, &[obs("n", "pain-night", 0, boolean(true))]).await;
    let (status, bundle) = get(
        &app,
        "/fhir/CarePlan?patient=p1&status=draft",
        Some(staff_token("careplan.read")),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(bundle["resourceType"], "Bundle");
    assert_eq!(bundle["type"], "searchset");
    assert_eq!(bundle["total"], 2);
    let ids: Vec<&str> = bundle["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["resource"]["id"].as_str().unwrap())
        .collect();
    assert!(ids.contains(&a["id"].as_str().unwrap()) && ids.contains(&b["id"].as_str().unwrap()));
    let (_, none) = get(
        &app,
        "/fhir/CarePlan?patient=someone-else",
        Some(staff_token("careplan.read")),
    )
    .await;
    assert_eq!(none["total"], 0);
    assert!(none.get("entry").is_none(), "no empty arrays");
    assert_eq!(
        get(
            &app,
            "/fhir/CarePlan?status=approved",
            Some(staff_token("careplan.read"))
        )
        .await
        .0,
        400
    );
}

#[tokio::test]
async fn staff_of_another_tenant_do_not_see_the_plan() {
    let other = json!({"iss": "https://login.clinic-b.test", "kind": "staff", "tenant": "clinic-b", "jwks": {"keys": [jwk("ehr-es384")]}});
    let app = spawn_app_trusting(&[other], &[]).await;
    let (_, plan) = draft(&app).await;
    let s = Signer::es384("ehr-es384");
    let mut c = claims("https://login.clinic-b.test", PUBLIC_URL);
    c["tenant"] = json!("clinic-b");
    c["scope"] = json!("careplan.read");
    let token = s.sign(&s.header(), &c);
    let (status, _) = get(
        &app,
        &format!("/fhir/CarePlan/{}", plan["id"].as_str().unwrap()),
        Some(token.clone()),
    )
    .await;
    assert_eq!(status, 404, "another tenant's plan does not exist for them");
    let (_, bundle) = get(&app, "/fhir/CarePlan?patient=p1", Some(token)).await;
    assert_eq!(bundle["total"], 0);
}

#[tokio::test]
async fn a_token_cannot_choose_its_tenant_and_all_tenants_is_explicit() {
    let untenanted_ehr = json!({"iss": "https://ehr-untenanted.test", "kind": "cds-client", "jwks": {"keys": [jwk("ehr-es384")]}});
    let staff_plain = json!({"iss": "https://login-plain.test", "kind": "staff", "jwks": {"keys": [jwk("ehr-es384")]}});
    let staff_all = json!({"iss": "https://login-all.test", "kind": "staff", "all_tenants": true, "jwks": {"keys": [jwk("ehr-es384")]}});
    let app = spawn_app_trusting(&[untenanted_ehr, staff_plain, staff_all], &[]).await;
    let s = Signer::es384("ehr-es384");
    // An EHR whose issuer names no tenant claims clinic-a: its plan is filed under the issuer.
    let mut c = claims("https://ehr-untenanted.test", &format!("{PUBLIC_URL}{PV}"));
    c["tenant"] = json!(TENANT);
    let body = patient_view(prefetch(&[condition("k", "M25.561", Some(3))], &[]));
    let res = app
        .client
        .post(app.url(PV))
        .bearer_auth(s.sign(&s.header(), &c))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let q = |t: &str| stride_store::CarePlanQuery {
        tenant: Some(stride_store::TenantId::parse(t).unwrap()),
        limit: 10,
        ..Default::default()
    };
    assert!(
        app.store
            .search_careplans(&q(TENANT))
            .await
            .unwrap()
            .is_empty(),
        "not in clinic-a's queue"
    );
    assert_eq!(
        app.store
            .search_careplans(&q("https://ehr-untenanted.test"))
            .await
            .unwrap()
            .len(),
        1
    );

    let staff = |iss: &str| {
        let mut c = claims(iss, PUBLIC_URL);
        c["scope"] = json!("careplan.read");
        c["tenant"] = json!("https://ehr-untenanted.test");
        s.sign(&s.header(), &c)
    };
    let (_, plain) = get(
        &app,
        "/fhir/CarePlan?patient=p1",
        Some(staff("https://login-plain.test")),
    )
    .await;
    assert_eq!(
        plain["total"], 0,
        "a staff issuer without a tenant sees only its own (empty) tenant, whatever it claims"
    );
    let (_, all) = get(
        &app,
        "/fhir/CarePlan?patient=p1",
        Some(staff("https://login-all.test")),
    )
    .await;
    assert_eq!(all["total"], 1, "all_tenants is explicit in the trust file");
}

async fn review(app: &TestApp, id: &str, body: Json, scope: &str) -> (u16, Json) {
    let res = app
        .client
        .post(app.url(&format!("/fhir/CarePlan/{id}/$review")))
        .bearer_auth(staff_token(scope))
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
async fn approve_revise_and_reject_with_optimistic_concurrency_and_an_audit_trail() {
    let app = spawn_app().await;
    let (_, a) = draft(&app).await;
    let a = a["id"].as_str().unwrap().to_owned();
    // Needs careplan.review, not just read.
    assert_eq!(
        review(
            &app,
            &a,
            json!({"action": "approve", "version": 1}),
            "careplan.read"
        )
        .await
        .0,
        403
    );
    let (status, plan) = review(
        &app,
        &a,
        json!({"action": "approve", "version": 1}),
        "careplan.review",
    )
    .await;
    assert_eq!(status, 200, "{plan}");
    assert_eq!(plan["status"], "active");
    assert_eq!(plan["meta"]["versionId"], "2");
    // A second reviewer working from version 1 does not silently overwrite the decision.
    let (status, out) = review(
        &app,
        &a,
        json!({"action": "reject", "version": 1, "reason": "no"}),
        "careplan.review",
    )
    .await;
    assert_eq!(status, 409);
    assert!(
        out["issue"][0]["details"]["text"]
            .as_str()
            .unwrap()
            .contains("already decided"),
        "{out}"
    );

    let (_, b) = draft(&app).await;
    let b_id = b["id"].as_str().unwrap().to_owned();
    assert_eq!(
        review(
            &app,
            &b_id,
            json!({"action": "revise", "version": 1}),
            "careplan.review"
        )
        .await
        .0,
        400,
        "revise needs a reason"
    );
    for unknown in ["archive", "APPROVE", ""] {
        let (status, body) = review(
            &app,
            &b_id,
            json!({"action": unknown, "version": 1, "reason": "x"}),
            "careplan.review",
        )
        .await;
        assert_eq!(status, 400, "{unknown}: {body}");
    }
    // Revise: keep the first recommendation with a new text, drop the second.
    let recs = stride_fhir::careplan::recommendations(&b);
    assert!(recs.len() >= 2, "{recs:?}");
    let (status, revised) = review(&app, &b_id, json!({"action": "revise", "version": 1, "reason": "walking only for now",
        "recommendations": [{"id": recs[0].id, "text": "Walk 20 minutes a day"}, {"id": recs[1].id, "text": ""}]}), "careplan.review").await;
    assert_eq!(status, 200, "{revised}");
    let after = stride_fhir::careplan::recommendations(&revised);
    assert_eq!(after.len(), recs.len() - 1);
    assert_eq!(after[0].text, "Walk 20 minutes a day");
    assert!(
        after.iter().all(|r| r.id != recs[1].id),
        "the dropped one is gone"
    );
    let contained = revised["contained"].as_array().unwrap();
    assert!(
        contained.iter().all(|r| r["id"] != recs[1].id.as_str()),
        "and its request too"
    );

    assert!(revised["note"]
        .as_array()
        .unwrap()
        .iter()
        .any(|n| n["text"].as_str().unwrap().contains("walking only for now")));
    let bad = json!({"action": "revise", "version": 2, "reason": "x", "activity": [{"detail": {"status": "not-a-status"}}]});
    let (_, c) = draft(&app).await;
    let c_id = c["id"].as_str().unwrap().to_owned();
    assert_eq!(
        review(&app, &c_id, bad, "careplan.review").await.0,
        400,
        "an invalid revision is refused"
    );
    let (status, oo) = review(
        &app,
        &c_id,
        json!({"action": "revise", "version": 1, "reason": "x",
        "recommendations": [{"id": "nope", "text": "x"}]}),
        "careplan.review",
    )
    .await;
    assert_eq!(status, 400, "a recommendation the plan does not hold: {oo}");
    assert!(oo.to_string().contains("nope"), "{oo}");
    let (status, rejected) = review(
        &app,
        &c_id,
        json!({"action": "reject", "version": 1, "reason": "red flag missed"}),
        "careplan.review",
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(rejected["status"], "revoked");

    // Each action is in the audit log with the reviewer's identity.
    use futures_util::StreamExt;
    let q = stride_store::AuditQuery::default();
    let mut rows = app.store.audit_stream(&q, true);
    let mut reviews = Vec::new();
    while let Some(r) = rows.next().await {
        let r = r.unwrap();
        if r.entry.action == "careplan-review" {
            reviews.push(r);
        }
    }
    assert_eq!(reviews.len(), 3);
    assert!(reviews
        .iter()
        .all(|r| r.entry.caller_subject.as_deref() == Some("reviewer-1")));
    assert!(reviews
        .iter()
        .any(|r| r.entry.details["review"]["action"] == "revise"));
}

#[tokio::test]
async fn the_review_page_shows_the_plan_and_the_decision_trace() {
    let app = spawn_app().await;
    let body = patient_view(prefetch(
        &[condition("k", "M25.561", Some(10))],
        &[
            obs("t", "tenderness-extent", 1, qty(40.0, "mm")),
            obs("x", "pain-night", 1, boolean(false)),
        ],
    ));
    let res: Json = answer(&app, &body).await;
    let plan = res["cards"][0]["suggestions"][0]["actions"][0]["resource"].clone();
    let path = format!("/ui/careplans/{}", plan["id"].as_str().unwrap());
    assert_eq!(
        app.client
            .get(app.url(&path))
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    let res = app
        .client
        .get(app.url(&path))
        .bearer_auth(staff_token("careplan.read"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let csp = res.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        csp.contains("default-src 'none'") && csp.contains("style-src 'self'"),
        "{csp}"
    );
    let html = res.text().await.unwrap();
    assert!(html.starts_with("<!doctype html>") && html.contains("lang=\"en\""));
    // The red flag in words, with the finding it rests on; its rule id only in the folded
    // trace that follows.
    let (read, folded) = html
        .split_once("<details class=\"trace\">")
        .expect("the trace, folded");
    assert!(
        read.contains("Red flag") && read.contains("Extent of focal tenderness: 4 cm, recorded"),
        "{read}"
    );
    assert!(
        !read.contains("RF-01") && !read.contains("tenderness_extent"),
        "{read}"
    );
    assert!(
        folded.contains("RF-01"),
        "the folded trace keeps the rule id"
    );
    assert!(
        html.contains("<caption>") && html.contains("scope=\"col\""),
        "an accessible table"
    );
    assert!(
        html.contains("<td>tenderness_extent</td><td>4 cm</td>"),
        "the value seen, converted from 40 mm"
    );
    // The timeline: the phase by day from the onset (rest, then the hold from the day the
    // tenderness was recorded), the red flag marked where it fired, all in the table too.
    assert_eq!(html.matches("class=\"red-flag\"").count(), 1, "{html}");
    assert!(
        html.contains("<td>Phase from this day</td><td>Hold for evaluation</td>")
            && html.contains("<td>Red flag</td><td>focal tenderness under 5 cm"),
        "{html}"
    );
    assert!(!html.contains(">wk "), "the axis is dated");
    assert!(!html.contains("<script"), "no scripts");
    let css = app
        .client
        .get(app.url("/ui/style.css"))
        .send()
        .await
        .unwrap();
    assert_eq!(css.headers()["content-type"], "text/css; charset=utf-8");
}

/// Pain-free runs on alternate days from day `from` days ago.
fn runs(from: i64) -> Vec<Json> {
    (0..=from / 2)
        .map(|k| session(&format!("run-{k}"), from - 2 * k, 3.0, 0, false))
        .collect()
}

async fn phase_of(app: &TestApp, body: &Json) -> String {
    let res: Json = answer(app, body).await;
    res["cards"][0]["source"]["topic"]["code"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// The same running patient twelve days on: red flags ruled out long ago, but no exam in the
/// last 7 days nor a symmetry test in the last 14, so the phase-1 exit cannot be re-checked.
fn later_without_fresh_exams() -> Json {
    let mut records = runs(12);
    records.push(obs("tender-old", "bony-tenderness", 12, boolean(false)));
    records.push(obs("rest-old", "pain-rest", 12, boolean(false)));
    records.push(obs("night-old", "pain-night", 12, boolean(false)));
    records.push(obs("now", "pain-walking", 0, int(0)));
    patient_view(prefetch(&[condition("k", "M25.561", Some(50))], &records))
}

#[tokio::test]
async fn an_approved_phase_holds_when_the_phase_one_exams_are_no_longer_recent() {
    let app = spawn_app().await;
    // Without an approved plan the history cannot place a running patient: insufficient data.
    assert_eq!(
        phase_of(&app, &later_without_fresh_exams()).await,
        "insufficient-data"
    );

    // Day 38 with fresh exams and pain-free runs since day 16: progressive loading, approved.
    let mut obs = recovered_walker();
    obs.extend(runs(22));
    let body = patient_view(prefetch(&[condition("k", "M25.561", Some(38))], &obs));
    let res: Json = answer(&app, &body).await;
    assert_eq!(
        res["cards"][0]["source"]["topic"]["code"], "progressive-loading",
        "{res}"
    );
    let id = res["cards"][0]["suggestions"][0]["actions"][0]["resource"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (status, _) = review(
        &app,
        &id,
        json!({"action": "approve", "version": 1}),
        "careplan.review",
    )
    .await;
    assert_eq!(status, 200);

    // Now the approved phase is where placement starts.
    assert_eq!(
        phase_of(&app, &later_without_fresh_exams()).await,
        "progressive-loading"
    );
    app.stop().await;
}

#[tokio::test]
async fn an_active_careplan_in_the_prefetch_is_the_phase_state_too() {
    let app = spawn_app().await;
    let mut body = later_without_fresh_exams();
    body["prefetch"]["CarePlan"] = json!({"resourceType": "Bundle", "type": "searchset", "entry": [{"resource": {
        "resourceType": "CarePlan", "id": "ehr-plan", "status": "active", "intent": "plan",
        "instantiatesCanonical": ["http://stride-cds.org/fhir/PlanDefinition/medial-knee-pain-running|1.0.1"],
        "category": [{"coding": [{"system": "http://stride-cds.org/fhir/CodeSystem/running-knee-decision", "code": "progressive-loading"}]}],
        "subject": {"reference": "Patient/p1"}, "period": {"start": day(9)}}}]});
    assert_eq!(phase_of(&app, &body).await, "progressive-loading");
    // A draft (not approved) or another guideline's plan is no phase state.
    body["prefetch"]["CarePlan"]["entry"][0]["resource"]["status"] = json!("draft");
    assert_eq!(phase_of(&app, &body).await, "insufficient-data");
    app.stop().await;
}

#[tokio::test]
async fn the_same_decision_reuses_the_pending_draft_and_each_call_is_audited() {
    let app = spawn_app().await;
    let call = || patient_view(prefetch(&[condition("k", "M25.561", Some(3))], &[]));
    // The draft the phase card links to (the first call also offers it for creation).
    let plan_of = |res: &Json| {
        res["cards"][0]["links"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["label"] == "Review the draft CarePlan")
            .and_then(|l| l["url"].as_str()?.rsplit('/').next())
            .unwrap()
            .to_owned()
    };
    let mut ids = Vec::new();
    for _ in 0..3 {
        let res: Json = answer(&app, &call()).await;
        ids.push(plan_of(&res));
    }
    assert!(
        ids.iter().all(|i| *i == ids[0]),
        "one draft for one decision: {ids:?}"
    );
    let drafts = app
        .store
        .search_careplans(&stride_store::CarePlanQuery {
            tenant: Some(stride_store::TenantId::parse(TENANT).unwrap()),
            patient_ref: stride_store::PatientRef::parse("Patient/p1"),
            status: Some(stride_store::CarePlanStatus::Draft),
            created_from: None,
            created_to: None,
            limit: 10,
        })
        .await
        .unwrap();
    assert_eq!(drafts.len(), 1, "the review queue holds it once");
    // Every call has its own audit entry, each pointing at the draft.
    let everything = stride_store::AuditQuery::default();
    let mut log = app.store.audit_stream(&everything, true);
    let mut calls = Vec::new();
    while let Some(e) = futures_util::StreamExt::next(&mut log).await {
        let e = e.unwrap();
        if e.entry.action == "hook-call" {
            calls.push(e);
        }
    }
    assert_eq!(calls.len(), 3);
    assert!(calls
        .iter()
        .all(|e| e.entry.careplan_id.map(|i| i.to_string()) == Some(ids[0].clone())));

    // Another decision (a red flag now) is another draft.
    let night = patient_view(prefetch(
        &[condition("k", "M25.561", Some(3))],
        &[obs("n", "pain-night", 0, boolean(true))],
    ));
    let res: Json = answer(&app, &night).await;
    assert_ne!(plan_of(&res), ids[0]);

    // Once the draft is decided, the same decision drafts anew.
    let (status, _) = review(
        &app,
        &ids[0],
        json!({"action": "approve", "version": 1}),
        "careplan.review",
    )
    .await;
    assert_eq!(status, 200);
    let res: Json = answer(&app, &call()).await;
    assert_ne!(plan_of(&res), ids[0]);
    app.stop().await;
}

/// The queue and the plan page name the patient from the Patient the EHR prefetched (a
/// teenager's plan does not look like anyone's), and say so when the EHR sent none.
#[tokio::test]
async fn the_queue_and_the_plan_name_the_patient_the_ehr_sent() {
    let app = spawn_app().await;
    let mut body = patient_view(prefetch(&[condition("k", "M25.561", Some(3))], &[]));
    body["prefetch"]["Patient"] = json!({"resourceType": "Patient", "id": "p1", "gender": "female",
        "birthDate": "2013-04-01", "name": [{"use": "official", "given": ["Ana"], "family": "Lima"}]});
    let named: Json = answer(&app, &body).await;
    let mut body = patient_view(prefetch(&[condition("k", "M25.561", Some(3))], &[]));
    body["context"]["patientId"] = json!("p2");
    body["prefetch"]["Patient"] = Json::Null;
    for r in ["Condition"] {
        for e in body["prefetch"][r]["entry"].as_array_mut().unwrap() {
            e["resource"]["subject"]["reference"] = json!("Patient/p2");
        }
    }
    let unnamed: Json = answer(&app, &body).await;
    let page = |res: &Json| {
        let id = res["cards"][0]["suggestions"][0]["actions"][0]["resource"]["id"]
            .as_str()
            .unwrap_or_else(|| panic!("a draft: {res}"))
            .to_owned();
        let app = &app;
        async move {
            app.get_text_as(
                &format!("/ui/careplans/{id}"),
                &staff_token("careplan.read"),
            )
            .await
        }
    };
    let today = time::OffsetDateTime::now_utc().date();
    let age = today.year() - 2013 - i32::from((today.month() as u8, today.day()) < (4, 1));
    let said = format!("Ana Lima, born 1 Apr 2013 ({age} years), female");
    let html = page(&named).await;
    assert!(html.contains(&said), "{said}: {html}");
    let html = page(&unnamed).await;
    assert!(html.contains("the EHR sent no Patient"), "{html}");
    let queue = app
        .get_text_as("/ui/careplans", &staff_token("careplan.read"))
        .await;
    assert!(
        queue.contains(&said),
        "the queue shows the same identity: {queue}"
    );
}
