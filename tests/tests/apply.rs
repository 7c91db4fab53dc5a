//! PlanDefinition/$apply: the CarePlan a patient-view call would draft, for the patient data
//! in the Parameters or fetched from the FHIR server they name, decided by the version the
//! PlanDefinition names; audited, and stored only when asked.

use serde_json::{json, Value as Json};
use stride_tests::fhir::*;
use stride_tests::{audit_entries, spawn_app, TestApp};

const PV: &str = "/cds-services/running-knee-patient-view";
const APPLY: &str = "/fhir/PlanDefinition/medial-knee-pain-running-1.0.2/$apply";

fn parameters(conditions: &[Json], observations: &[Json]) -> Json {
    let mut everything = conditions.to_vec();
    everything.extend_from_slice(observations);
    json!({"resourceType": "Parameters", "parameter": [
        {"name": "subject", "valueString": "Patient/p1"},
        {"name": "encounter", "valueString": "Encounter/e1"},
        {"name": "data", "resource": bundle(&everything)},
    ]})
}

async fn send(app: &TestApp, path: &str, body: &Json) -> reqwest::Response {
    app.cds(path)
        .header("content-type", "application/fhir+json")
        .body(body.to_string())
        .send()
        .await
        .unwrap()
}

async fn apply(app: &TestApp, path: &str, body: &Json) -> (u16, Json) {
    let res = send(app, path, body).await;
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Json::Null))
}

/// What makes two drafts the same plan: everything but their ids and creation times (the
/// plan's, and its contained proposals' `authoredOn`).
fn plan_content(plan: &Json) -> Json {
    let mut p = plan.clone();
    for k in ["id", "created", "meta", "identifier"] {
        p.as_object_mut().unwrap().remove(k);
    }
    for r in p["contained"].as_array_mut().into_iter().flatten() {
        r.as_object_mut().unwrap().remove("authoredOn");
    }
    p
}

#[tokio::test]
async fn apply_returns_the_careplan_a_hook_call_drafts_and_stores_nothing() {
    let app = spawn_app().await;
    let conditions = [condition("k", "M25.561", Some(20))];
    let observations = recovered_walker();
    let (status, plan) = apply(&app, APPLY, &parameters(&conditions, &observations)).await;
    assert_eq!(status, 200, "{plan}");
    assert_eq!(plan["resourceType"], "CarePlan");
    assert_eq!(plan["subject"]["reference"], "Patient/p1");
    assert_eq!(plan["encounter"]["reference"], "Encounter/e1");
    let canonical = plan["instantiatesCanonical"][0].as_str().unwrap();
    assert!(canonical.ends_with("|1.0.2"), "{canonical}");
    assert_eq!(
        stride_tests::stored_plans(&app).await,
        0,
        "$apply stores no CarePlan"
    );
    let entry = audit_entries(&app)
        .await
        .into_iter()
        .find(|e| e.entry.action == "plan-apply")
        .expect("a plan-apply audit entry");
    assert_eq!(
        entry
            .entry
            .patient_ref
            .as_ref()
            .map(stride_store::PatientRef::as_str),
        Some("Patient/p1")
    );
    assert_eq!(entry.entry.rule_set_version.as_deref(), Some("1.0.2"));
    assert!(entry.entry.facts.is_some(), "facts kept for replay");
    assert_eq!(entry.entry.decision_ids, ["walk-run"]);

    // The same patient through the hook: the same plan.
    let res = app
        .cds(PV)
        .json(&patient_view(prefetch(&conditions, &observations)))
        .send()
        .await
        .unwrap();
    let body: Json = res.json().await.unwrap();
    let drafted = &body["cards"][0]["suggestions"][0]["actions"][0]["resource"];
    assert_eq!(drafted["resourceType"], "CarePlan", "{body}");
    assert_eq!(plan_content(drafted), plan_content(&plan));
}

#[tokio::test]
async fn apply_decides_with_the_version_the_plandefinition_names() {
    let app = spawn_app().await;
    let conditions = [condition("k", "M25.561", Some(3))];
    let (status, plan) = apply(
        &app,
        "/fhir/PlanDefinition/medial-knee-pain-running-1.0.0/$apply",
        &parameters(&conditions, &[]),
    )
    .await;
    assert_eq!(status, 200, "{plan}");
    let canonical = plan["instantiatesCanonical"][0].as_str().unwrap();
    assert!(canonical.ends_with("|1.0.0"), "{canonical}");
}

#[tokio::test]
async fn apply_refuses_what_it_cannot_decide_on() {
    let app = spawn_app().await;
    let knee = [condition("k", "M25.561", Some(3))];
    // No token: 401, and the body is never read.
    let res = app
        .client
        .post(app.url(APPLY))
        .header("content-type", "application/fhir+json")
        .body(parameters(&knee, &[]).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    // A token for another URL (the hook's) is not one for $apply.
    let res = app
        .client
        .post(app.url(APPLY))
        .bearer_auth(stride_tests::tokens::cds_token(PV))
        .header("content-type", "application/fhir+json")
        .body(parameters(&knee, &[]).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    // An unknown PlanDefinition, and a draft version.
    let (status, _) = apply(
        &app,
        "/fhir/PlanDefinition/nope-1.0.0/$apply",
        &parameters(&knee, &[]),
    )
    .await;
    assert_eq!(status, 404);
    let (status, oo) = apply(
        &app,
        "/fhir/PlanDefinition/medial-knee-pain-running-1.1.0/$apply",
        &parameters(&knee, &[]),
    )
    .await;
    assert_eq!(status, 409, "{oo}");
    // Parameters without a subject, and a patient the guideline does not apply to.
    let (status, oo) = apply(
        &app,
        APPLY,
        &json!({"resourceType": "Parameters", "parameter": [{"name": "data", "resource": bundle(&knee)}]}),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(oo["resourceType"], "OperationOutcome");
    assert!(oo["issue"][0]["details"]["text"]
        .as_str()
        .unwrap()
        .contains("subject"));
    let (status, oo) = apply(
        &app,
        APPLY,
        &parameters(&[condition("c", "J45.909", Some(3))], &[]),
    )
    .await;
    assert_eq!(status, 422, "{oo}");
    assert_eq!(oo["issue"][0]["code"], "processing");
    // Nothing above was drafted or stored.
    assert_eq!(
        stride_tests::stored_plans(&app).await,
        0,
        "nothing drafted or stored"
    );
}

#[tokio::test]
async fn the_capability_statement_names_the_operation() {
    let app = spawn_app().await;
    let cs = app.get_json("/fhir/metadata").await;
    let pd = cs["rest"][0]["resource"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["type"] == "PlanDefinition")
        .unwrap();
    assert_eq!(pd["operation"][0]["name"], "apply");
    assert_eq!(
        pd["operation"][0]["definition"],
        "http://hl7.org/fhir/OperationDefinition/PlanDefinition-apply"
    );
    let api = app.get_json("/openapi.json").await;
    assert!(api["paths"]["/fhir/PlanDefinition/{id}/$apply"]["post"].is_object());
}

/// A FHIR server for the fetch mode: the knee Condition and the walker's Observations, and
/// the Authorization header of each request it saw.
async fn start_fhir_server() -> (
    String,
    std::sync::Arc<std::sync::Mutex<Vec<(String, Option<String>)>>>,
) {
    use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
    type Seen = std::sync::Arc<std::sync::Mutex<Vec<(String, Option<String>)>>>;
    async fn answer(req: HttpRequest, seen: web::Data<Seen>) -> HttpResponse {
        let auth = req
            .headers()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        seen.lock().unwrap().push((req.uri().to_string(), auth));
        let body = if req.path().ends_with("/Condition") {
            bundle(&[condition("k", "M25.561", Some(20))])
        } else if req.path().ends_with("/Observation") {
            bundle(&recovered_walker())
        } else {
            bundle(&[])
        };
        HttpResponse::Ok()
            .content_type("application/fhir+json")
            .json(body)
    }
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!(
        "http://127.0.0.1:{}/fhir",
        listener.local_addr().unwrap().port()
    );
    let seen: Seen = Default::default();
    let data = web::Data::new(seen.clone());
    let server = HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .default_service(web::to(answer))
    })
    .workers(1)
    .listen(listener)
    .unwrap()
    .run();
    tokio::spawn(server);
    (base, seen)
}

fn fetching(server: &str) -> Json {
    json!({"resourceType": "Parameters", "parameter": [
        {"name": "subject", "valueReference": {"reference": "Patient/p1"}},
        {"name": "encounter", "valueString": "Encounter/e1"},
        {"name": "fhirServer", "valueUrl": server},
        {"name": "fhirAccessToken", "valueString": "ehr-token-123"},
    ]})
}

#[tokio::test]
async fn apply_fetches_the_patients_data_from_the_fhir_server_it_names() {
    let app = spawn_app().await;
    let (base, seen) = start_fhir_server().await;
    let (status, fetched) = apply(&app, APPLY, &fetching(&base)).await;
    assert_eq!(status, 200, "{fetched}");
    // The searches a patient-view prefetch names, for this patient, with the token.
    let seen = seen.lock().unwrap().clone();
    assert!(
        seen.iter()
            .any(|(q, _)| q.contains("/Condition?patient=p1")),
        "{seen:?}"
    );
    assert!(
        seen.iter()
            .any(|(q, _)| q.contains("/Observation?patient=p1")),
        "{seen:?}"
    );
    assert!(seen
        .iter()
        .all(|(_, auth)| auth.as_deref() == Some("Bearer ehr-token-123")));
    // The same data sent in the Parameters: the same plan.
    let (_, sent) = apply(
        &app,
        APPLY,
        &parameters(&[condition("k", "M25.561", Some(20))], &recovered_walker()),
    )
    .await;
    assert_eq!(plan_content(&fetched), plan_content(&sent));
    assert_eq!(stride_tests::stored_plans(&app).await, 0);

    // A server that cannot be read: 412, as for a hook call, and nothing drafted.
    let closed = format!("http://127.0.0.1:{}/fhir", stride_tests::oidc::free_port());
    let (status, oo) = apply(&app, APPLY, &fetching(&closed)).await;
    assert_eq!(status, 412, "{oo}");
    assert_eq!(oo["resourceType"], "OperationOutcome");
    // Data and a server to fetch it from: which one is meant is not for Stride to guess.
    let mut both = fetching(&base);
    both["parameter"]
        .as_array_mut()
        .unwrap()
        .push(json!({"name": "data", "resource": bundle(&[])}));
    let (status, oo) = apply(&app, APPLY, &both).await;
    assert_eq!(status, 400, "{oo}");
}

#[tokio::test]
async fn apply_stores_the_plan_for_review_when_asked() {
    let app = spawn_app().await;
    // The Patient in the data says who the stored draft is for (issue 33).
    let mut data = recovered_walker();
    data.push(
        json!({"resourceType": "Patient", "id": "p1", "gender": "female", "birthDate": "1988-07-09",
        "name": [{"use": "official", "given": ["Ines"], "family": "Moreau"}]}),
    );
    let mut body = parameters(&[condition("k", "M25.561", Some(20))], &data);
    body["parameter"]
        .as_array_mut()
        .unwrap()
        .push(json!({"name": "store", "valueBoolean": true}));
    let res = send(&app, APPLY, &body).await;
    assert_eq!(res.status(), 201);
    let location = res.headers()["location"].to_str().unwrap().to_owned();
    let plan: Json = res.json().await.unwrap();
    let id = plan["id"].as_str().unwrap();
    assert!(
        location.ends_with(&format!("/fhir/CarePlan/{id}")),
        "{location}"
    );
    // Clinic staff find it as a draft for review, as if a patient-view call had drafted it.
    let stored = app
        .store
        .careplan(uuid::Uuid::parse_str(id).unwrap())
        .await
        .unwrap();
    assert_eq!(stored.status.as_str(), "draft");
    assert_eq!(stored.patient_ref, "Patient/p1");
    assert_eq!(
        stored.patient,
        Some(json!({"name": "Ines Moreau", "birthDate": "1988-07-09", "gender": "female"}))
    );
    assert_eq!(plan_content(&stored.resource), plan_content(&plan));
    let entry = audit_entries(&app)
        .await
        .into_iter()
        .find(|e| e.entry.action == "plan-apply")
        .unwrap();
    assert_eq!(
        entry.entry.careplan_id.map(|u| u.to_string()).as_deref(),
        Some(id)
    );

    // The same call again: the draft waiting for review is the answer; no second plan.
    let res = send(&app, APPLY, &body).await;
    assert_eq!(res.status(), 200);
    let again: Json = res.json().await.unwrap();
    assert_eq!(again["id"], plan["id"]);
    // Whole, as stored: a pending draft's resource is read back as text and parsed only here.
    assert_eq!(again, plan);
    assert_eq!(stride_tests::stored_plans(&app).await, 1);

    // `store` is a boolean; anything else is refused by name.
    let mut bad = parameters(&[condition("k", "M25.561", Some(20))], &[]);
    bad["parameter"]
        .as_array_mut()
        .unwrap()
        .push(json!({"name": "store", "valueString": "yes"}));
    let (status, oo) = apply(&app, APPLY, &bad).await;
    assert_eq!(status, 400);
    assert!(oo.to_string().contains("store"), "{oo}");
}

#[tokio::test]
async fn apply_fetches_only_where_the_callers_issuer_may() {
    // Clinic B's issuer may not reach internal networks: its $apply cannot make Stride read
    // a loopback server, whatever the Parameters say.
    let app =
        stride_tests::spawn_app_trusting(&[stride_tests::tokens::clinic_b(json!({}))], &[]).await;
    let (base, seen) = start_fhir_server().await;
    let res = app
        .cds_b(APPLY)
        .header("content-type", "application/fhir+json")
        .body(fetching(&base).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 412);
    assert!(
        seen.lock().unwrap().is_empty(),
        "nothing was asked of the server"
    );
}

#[tokio::test]
async fn apply_takes_a_fhir_server_only_as_a_hook_would() {
    let app = spawn_app().await;
    let with_server = |server: &str| {
        json!({"resourceType": "Parameters", "parameter": [
            {"name": "subject", "valueString": "Patient/p1"},
            {"name": "fhirServer", "valueUrl": server}]})
    };
    for bad in [
        "https://ehr.example.org/fhir?_format=json",
        "https://ehr.example.org/fhir#x",
        "https://user:secret@ehr.example.org/fhir",
        "http://ehr.example.org/fhir",
    ] {
        let (status, oo) = apply(&app, APPLY, &with_server(bad)).await;
        assert_eq!(status, 400, "{bad}: {oo}");
        assert!(
            oo["issue"][0]["details"]["text"]
                .as_str()
                .unwrap()
                .contains("fhirServer"),
            "{bad}: {oo}"
        );
    }
    assert_eq!(stride_tests::stored_plans(&app).await, 0);
}

#[tokio::test]
async fn a_malformed_parameters_body_is_refused_without_quoting_it() {
    let app = spawn_app().await;
    // The patient's name where the parser stops: serde's message would quote it.
    let body = r#"{"resourceType": "Parameters", "parameter": [{"name": "subject", "valueString": "Patient/p1"}, {"name": "data", "resource": {"resourceType": "Bundle", "entry": [{"resource": {"resourceType": "Patient", "id": "p1", "name": [{"family": "Zyxwvut-Secretname"}]}}]}}], "extra": Zyxwvut-Secretname}"#;
    let res = app
        .cds(APPLY)
        .header("content-type", "application/fhir+json")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    let text = res.text().await.unwrap();
    assert!(!text.contains("Zyxwvut"), "{text}");
    assert!(text.contains("line 1"), "{text}");
    // A wrong type, where serde names the value it found.
    let res = app
        .cds(APPLY)
        .header("content-type", "application/fhir+json")
        .body(r#"{"resourceType": "Parameters", "parameter": "Zyxwvut-Secretname"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    let text = res.text().await.unwrap();
    assert!(!text.contains("Zyxwvut"), "{text}");
}

/// Issue 31: twelve concurrent identical `$apply` calls with `store=true` store one draft for
/// the patient (a unique key in both backends, not a read-then-write), and every call answers
/// with that draft: the calls that lose the race find it and answer with it.
#[tokio::test]
async fn concurrent_apply_calls_store_one_draft_for_the_patient() {
    let app = spawn_app().await;
    let mut body = parameters(&[condition("k", "M25.561", Some(20))], &recovered_walker());
    body["parameter"]
        .as_array_mut()
        .unwrap()
        .push(json!({"name": "store", "valueBoolean": true}));
    let calls = (0..12).map(|_| apply(&app, APPLY, &body));
    let answers = futures_util::future::join_all(calls).await;
    let mut ids = std::collections::BTreeSet::new();
    for (status, plan) in &answers {
        assert!(*status == 200 || *status == 201, "{status}: {plan}");
        ids.insert(plan["id"].as_str().unwrap().to_owned());
    }
    assert_eq!(
        stride_tests::stored_plans(&app).await,
        1,
        "one draft for the patient"
    );
    assert_eq!(ids.len(), 1, "every call answers with that draft: {ids:?}");
}
