//! The guideline published as FHIR (PlanDefinition per version, CodeSystems), the
//! CapabilityStatement, and the OpenAPI document that lists every endpoint.

use serde_json::{json, Value as Json};
use stride_tests::spawn_app;
use stride_tests::tokens::PUBLIC_URL;

/// The stable decision vocabulary of CONTRACT.md, with the ids its extensions name.
const CONTRACT_IDS: &[&str] = &[
    "rest",
    "walk-run",
    "progressive-loading",
    "full-return",
    "hold-for-evaluation",
    "focal-bony-tenderness",
    "rest-or-night-pain",
    "persistent-bony-tenderness",
    "no-improvement-after-rest",
    "pain-on-return",
    "mcl-mechanism",
    "progressing-with-pain",
    "consecutive-day-running",
    "premature-speed-work",
    "distance-jump",
    "lipus-not-recommended",
    "insufficient-data",
    // Added by rule set 1.1.0 (CONTRACT.md, extensions named by the open issues).
    "femoral-neck-bone-stress",
    "high-risk-bone-stress",
    "scfe-suspected",
    "dvt-signs",
    "intra-articular-knee",
    "bone-health-screen",
    // Named by issue 30 (CONTRACT.md): the card of a running order during rest on order hooks.
    "running-during-rest",
    // Added by the draft 1.1.1 (README, decision vocabulary): fever, weight loss or night pain
    // in a child.
    "systemic-red-flags",
];

/// The local codes of FACTS.md.
const FACTS_LOCAL: &[&str] = &[
    "medial-knee-pain",
    "pain-running",
    "pain-walking",
    "pain-rest",
    "pain-night",
    "tenderness-extent",
    "bony-tenderness",
    "pain-free-walking-days",
    "pain-free-walking-minutes",
    "limb-symmetry-index",
    "valgus-twist-mechanism",
    "heel-strike-gait",
    "preinjury-weekly-distance",
    "running-session",
    "run-distance",
    "speed-work",
    "lipus",
];

async fn get(app: &stride_tests::TestApp, path: &str) -> (u16, Json) {
    let res = app.client.get(app.url(path)).send().await.unwrap();
    (
        res.status().as_u16(),
        res.json().await.unwrap_or(Json::Null),
    )
}

fn codes(cs: &Json) -> Vec<String> {
    cs["concept"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["code"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn the_decision_code_system_is_exactly_the_contract_vocabulary() {
    let app = spawn_app().await;
    let (status, cs) = get(&app, "/fhir/CodeSystem/running-knee-decision").await;
    assert_eq!(status, 200);
    assert_eq!(
        cs["url"],
        "http://stride-cds.org/fhir/CodeSystem/running-knee-decision"
    );
    let mut got = codes(&cs);
    got.sort();
    let mut want: Vec<String> = CONTRACT_IDS.iter().map(|s| s.to_string()).collect();
    want.sort();
    assert_eq!(got, want);
}

#[tokio::test]
async fn the_local_code_system_holds_every_local_code_of_facts_md() {
    let app = spawn_app().await;
    let (status, cs) = get(&app, "/fhir/CodeSystem/running-knee").await;
    assert_eq!(status, 200);
    let got = codes(&cs);
    for c in FACTS_LOCAL {
        assert!(got.iter().any(|g| g == c), "{c} missing from {got:?}");
    }
    assert!(cs["concept"]
        .as_array()
        .unwrap()
        .iter()
        .all(|c| c["display"].as_str().is_some_and(|d| !d.is_empty())));
    assert_eq!(get(&app, "/fhir/CodeSystem/nope").await.0, 404);
}

#[tokio::test]
async fn each_rule_set_version_is_a_plan_definition() {
    let app = spawn_app().await;
    let (status, pd) = get(&app, "/fhir/PlanDefinition/medial-knee-pain-running-1.0.0").await;
    assert_eq!(status, 200);
    assert_eq!(pd["version"], "1.0.0");
    assert_eq!(
        pd["url"],
        "http://stride-cds.org/fhir/PlanDefinition/medial-knee-pain-running"
    );
    // The source it derives from, the page of its source attributes, the five references.
    let related = pd["relatedArtifact"].as_array().unwrap();
    assert_eq!(
        related.iter().filter(|r| r["type"] == "citation").count(),
        5,
        "the source's five references"
    );
    assert!(related
        .iter()
        .any(|r| r["type"] == "derived-from"
            && r["citation"].as_str().unwrap().contains("Dr.Oracle")));
    assert!(related.iter().any(|r| r["type"] == "documentation"
        && r["url"] == format!("{PUBLIC_URL}/guidelines/medial-knee-pain-running/1.0.0/about")));
    assert_eq!(pd["publisher"], "The Stride project");
    assert_eq!(
        pd["date"], "2026-02-02",
        "the version's release (not revised)"
    );
    assert_eq!(pd["useContext"][0]["code"]["code"], "focus");
    let attributes = &pd["extension"][0];
    assert_eq!(
        attributes["url"],
        "http://stride-cds.org/fhir/StructureDefinition/dsi-source-attributes"
    );
    let parts: Vec<&str> = attributes["extension"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["url"].as_str().unwrap())
        .collect();
    assert!(parts.contains(&"developer") && parts.contains(&"funding") && parts.contains(&"input"));
    let action_codes: Vec<&str> = pd["action"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|a| a["code"][0]["coding"][0]["code"].as_str())
        .collect();
    for id in [
        "rest",
        "walk-run",
        "focal-bony-tenderness",
        "lipus-not-recommended",
        "mcl-mechanism",
    ] {
        assert!(action_codes.contains(&id), "{id}");
    }
    assert_eq!(
        get(&app, "/fhir/PlanDefinition/medial-knee-pain-running-0.9.0")
            .await
            .0,
        404
    );
}

#[tokio::test]
async fn the_capability_statement_lists_what_is_served() {
    let app = spawn_app().await;
    let (status, cs) = get(&app, "/fhir/metadata").await;
    assert_eq!(status, 200);
    assert_eq!(cs["resourceType"], "CapabilityStatement");
    assert_eq!(cs["fhirVersion"], "4.0.1");
    let listed = cs["rest"][0]["resource"].as_array().unwrap();
    // An empty list would make the loop below check nothing.
    let mut kinds: Vec<&str> = listed.iter().map(|r| r["type"].as_str().unwrap()).collect();
    kinds.sort();
    assert_eq!(
        kinds,
        [
            "CarePlan",
            "CodeSystem",
            "DocumentReference",
            "PlanDefinition"
        ]
    );
    for r in listed {
        let kind = r["type"].as_str().unwrap();
        let (path, status) = match kind {
            "PlanDefinition" => ("/fhir/PlanDefinition/medial-knee-pain-running-1.0.0", 200),
            "CodeSystem" => ("/fhir/CodeSystem/running-knee", 200),
            // Served to staff only: without a token it is a 401, not a 404.
            "CarePlan" => ("/fhir/CarePlan", 401),
            "DocumentReference" => ("/fhir/DocumentReference?related=CarePlan/x", 401),
            other => panic!("listed but not tested: {other}"),
        };
        assert_eq!(
            get(&app, path).await.0,
            status,
            "{kind} is listed, so it is served"
        );
    }
}

#[tokio::test]
async fn every_path_in_openapi_is_served() {
    let app = spawn_app().await;
    let (status, doc) = get(&app, "/openapi.json").await;
    assert_eq!(status, 200);
    assert_eq!(doc["openapi"], "3.0.3");
    let sample = |p: &str| {
        p.replace("{id}/{version}", "medial-knee-pain-running/1.0.0")
            .replace(
                "PlanDefinition/{id}",
                "PlanDefinition/medial-knee-pain-running-1.0.0",
            )
            .replace("CodeSystem/{id}", "CodeSystem/running-knee")
            .replace(
                "CarePlan/{id}",
                "CarePlan/00000000-0000-4000-8000-000000000000",
            )
            .replace("{id}", "running-knee-patient-view")
    };
    let paths = doc["paths"].as_object().unwrap();
    // The loop below checks what is listed; a shrinking list must show too.
    assert!(paths.len() >= 10, "{} paths listed", paths.len());
    for must in [
        "/cds-services",
        "/cds-services/{id}",
        "/guidelines",
        "/fhir/metadata",
    ] {
        assert!(
            paths.contains_key(must),
            "{must} is not in the OpenAPI document"
        );
    }
    for (path, ops) in paths {
        let url = app.url(&sample(path));
        for method in ops.as_object().unwrap().keys() {
            let res = match method.as_str() {
                "get" => app.client.get(&url).send().await.unwrap(),
                "post" => app
                    .client
                    .post(&url)
                    .json(&serde_json::json!({}))
                    .send()
                    .await
                    .unwrap(),
                other => panic!("{other}"),
            };
            let declared = ops[method]["responses"].as_object().unwrap();
            assert!(
                declared.contains_key(res.status().as_str()),
                "{method} {path} answered {} which is not declared",
                res.status()
            );
            assert_ne!(
                res.status(),
                404,
                "{method} {path} is listed but not served"
            );
        }
    }
}

/// The DSI source attributes (45 CFR 170.315(b)(11)(iv)(A)): on each service in discovery, on
/// the rule-set endpoint and on the page every card links to; the inputs are what the version
/// reads (1.0.x no demographics, 1.1.x date of birth and sex).
#[tokio::test]
async fn source_attributes_are_published_where_each_reader_looks() {
    let app = spawn_app().await;
    const KEY: &str = "org.stride-cds.dsi-source-attributes";
    let (_, discovery) = get(&app, "/cds-services").await;
    for s in discovery["services"].as_array().unwrap() {
        let a = &s["extension"][KEY];
        for field in [
            "citation",
            "developer",
            "funding",
            "releaseDate",
            "revisionDate",
        ] {
            assert!(
                a[field].as_str().is_some_and(|v| !v.is_empty()),
                "{}: {field}: {a}",
                s["id"]
            );
        }
        assert!(
            a["inputs"].as_array().is_some_and(|i| !i.is_empty()),
            "{}: inputs: {a}",
            s["id"]
        );
    }
    let version = |v: &str| {
        let app = &app;
        let path = format!("/guidelines/medial-knee-pain-running/{v}");
        async move { get(app, &path).await.1["extension"][KEY].clone() }
    };
    let plain = version("1.0.2").await;
    assert_eq!(plain["demographics"], json!([]), "{plain}");
    assert_eq!(plain["healthStatusAssessments"], true);
    assert_eq!(plain["releaseDate"], "2026-12-06");
    let with_age = version("1.1.1").await;
    assert_eq!(
        with_age["demographics"],
        json!(["date of birth", "sex"]),
        "{with_age}"
    );
    assert!(with_age["inputs"]
        .as_array()
        .unwrap()
        .iter()
        .any(|i| i == "date of birth (Patient)"));
    // A version revised after its release says both (the synthetic fixture declares them).
    let (_, synthetic) = get(&app, "/guidelines/synthetic-two-phase/1.0.0").await;
    assert_eq!(synthetic["extension"][KEY]["releaseDate"], "2026-01-01");
    assert_eq!(synthetic["extension"][KEY]["revisionDate"], "2026-02-01");

    // The page, in words, open like the rule set.
    let res = app
        .client
        .get(app.url("/guidelines/medial-knee-pain-running/1.1.1/about"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let html = res.text().await.unwrap();
    for said in [
        "About this guidance",
        "Developed by",
        "Funding",
        "date of birth",
        "sex",
        "Dr.Oracle",
    ] {
        assert!(html.contains(said), "{said}: {html}");
    }
    assert_eq!(
        app.client
            .get(app.url("/guidelines/medial-knee-pain-running/9.9.9/about"))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
}
