//! CDS Hooks 2.0 end to end: discovery, patient-view for every decision id of CONTRACT.md,
//! order hooks, feedback, bad requests and fail-closed storage. Requirement ids in comments
//! and assertion messages are the rows of shared/spec/cds-hooks-2.0-service-requirements.csv.

use serde_json::{json, Value as Json};
use stride_tests::fhir::*;
use stride_tests::{spawn_app, TestApp};

const PV: &str = "/cds-services/running-knee-patient-view";

async fn hook(app: &TestApp, path: &str, body: &Json) -> (u16, Json) {
    let res = app.cds(path).json(body).send().await.unwrap();
    let status = res.status().as_u16();
    let text = res.text().await.unwrap();
    let json = serde_json::from_str(&text).unwrap_or(Json::Null);
    if status == 200 && !path.ends_with("/feedback") {
        stride_tests::assert_schema("cds-hooks-request", body);
        stride_tests::assert_schema("cds-hooks-response", &json);
    }
    (status, json)
}

/// Every rule of the specification a card must keep, checked on each card Stride returns.
fn check_card(card: &Json) {
    let s = card.to_string();
    // Req 3: no null and no empty optional field anywhere.
    assert!(
        !s.contains("null") && !s.contains("[]") && !s.contains("{}") && !s.contains("\"\""),
        "req 3: {s}"
    );
    // Req 80: uuid.
    assert!(
        uuid::Uuid::parse_str(card["uuid"].as_str().expect("uuid")).is_ok(),
        "req 80"
    );
    // Req 83: summary under 140 characters.
    let summary = card["summary"].as_str().expect("summary");
    assert!(
        !summary.is_empty() && summary.chars().count() < 140,
        "req 83: {summary}"
    );
    // Req 85: detail is markdown text.
    assert!(card["detail"].is_string(), "req 85");
    citations_survive_markdown(card["detail"].as_str().unwrap());
    // Req 87/88: indicator in the allowed set.
    assert!(
        ["info", "warning", "critical"].contains(&card["indicator"].as_str().unwrap()),
        "req 87/88"
    );
    // Req 90/105/107/115: source with label, absolute url, topic Coding.
    let src = &card["source"];
    assert!(src["label"].is_string(), "req 105");
    assert!(src["url"].as_str().unwrap().starts_with("http"), "req 107");
    assert!(
        src["topic"]["code"].is_string() && src["topic"]["system"].is_string(),
        "req 115/216/217"
    );
    // Req 92/93/95/96: suggestions need selectionBehavior with an allowed value.
    if let Some(sugs) = card.get("suggestions") {
        let sb = card["selectionBehavior"]
            .as_str()
            .expect("req 93: selectionBehavior with suggestions");
        assert!(["at-most-one", "any"].contains(&sb), "req 95");
        for sug in sugs.as_array().unwrap() {
            assert!(sug["label"].is_string(), "req 117");
            assert!(
                uuid::Uuid::parse_str(sug["uuid"].as_str().unwrap()).is_ok(),
                "req 119"
            );
            assert!(sug["isRecommended"].is_boolean(), "req 121");
            for a in sug["actions"].as_array().expect("req 124") {
                assert!(
                    ["create", "update", "delete"].contains(&a["type"].as_str().unwrap()),
                    "req 127"
                );
                assert!(a["description"].is_string(), "req 128");
                match a["type"].as_str().unwrap() {
                    "create" => assert!(a["resource"]["resourceType"].is_string(), "req 130/131"),
                    "delete" => {
                        assert!(a.get("resource").is_none(), "req 133");
                        assert!(a["resourceId"].is_string(), "req 134/135");
                    }
                    _ => {}
                }
            }
        }
    } else {
        assert!(card.get("selectionBehavior").is_none());
    }
    // Req 98/100/136/219: override reasons are Codings with display.
    for r in card["overrideReasons"]
        .as_array()
        .expect("override reasons")
    {
        assert!(
            r["system"].is_string() && r["code"].is_string() && r["display"].is_string(),
            "req 100/136/219"
        );
    }
    // Req 103/138/139/141/142/147: links.
    for l in card["links"].as_array().expect("links") {
        assert!(
            l["label"].is_string() && l["url"].as_str().unwrap().starts_with("http"),
            "req 138/139"
        );
        assert_eq!(l["type"], "absolute", "req 141/142");
        assert!(l.get("appContext").is_none(), "req 147");
    }
}

/// The decisions that fired: every card's topic but the "not ruled out" and "preliminary"
/// warnings about red flags that did not fire.
/// The plan's proposal (a contained ServiceRequest that the RequestGroup's actions name) for
/// the activity coded `code`.
fn proposal<'p>(plan: &'p Json, code: &str) -> &'p Json {
    let group = recommendation_group(plan);
    let request = plan["contained"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["resourceType"] == "ServiceRequest" && r["code"]["coding"][0]["code"] == code)
        .unwrap_or_else(|| panic!("no proposal for {code}"));
    let named = format!("#{}", request["id"].as_str().unwrap());
    assert!(
        group["action"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["resource"]["reference"] == named),
        "the RequestGroup proposes {named}"
    );
    request
}

fn topics(body: &Json) -> Vec<String> {
    cards_where(body, |c| !about_an_unfired_flag(c))
}

/// Red flags that could be neither confirmed nor ruled out, each a warning card of its own.
fn not_ruled_out(body: &Json) -> Vec<String> {
    cards_where(body, |c| {
        c["summary"].as_str().unwrap().starts_with("Not ruled out")
    })
}

fn about_an_unfired_flag(c: &Json) -> bool {
    let summary = c["summary"].as_str().unwrap();
    summary.starts_with("Not ruled out") || summary.starts_with("Recorded as preliminary")
}

fn cards_where(body: &Json, keep: impl Fn(&Json) -> bool) -> Vec<String> {
    body["cards"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| keep(c))
        .map(|c| c["source"]["topic"]["code"].as_str().unwrap().to_owned())
        .collect()
}

const PHASES: &[&str] = &[
    "rest",
    "walk-run",
    "progressive-loading",
    "full-return",
    "hold-for-evaluation",
    "insufficient-data",
];

/// Call patient-view, check every card and that exactly one phase card is there.
async fn patient_view_cards(
    app: &TestApp,
    conditions: &[Json],
    observations: &[Json],
) -> (Json, Vec<String>) {
    let (status, body) = hook(app, PV, &patient_view(prefetch(conditions, observations))).await;
    assert_eq!(status, 200, "req 74: {body}");
    body["cards"]
        .as_array()
        .expect("req 74: cards array")
        .iter()
        .for_each(check_card);
    let t = topics(&body);
    assert_eq!(
        t.iter().filter(|c| PHASES.contains(&c.as_str())).count(),
        1,
        "exactly one phase card: {t:?}"
    );
    (body, t)
}

/// An EHR's Markdown renderer renumbers an ordered list (`1. 3. 5.` shows as 1, 2, 3), so no
/// line may start like an ordered-list item, and every `[n]` the text cites is listed as `[n]`
/// under Sources.
fn citations_survive_markdown(detail: &str) {
    for line in detail.lines() {
        let digits = line
            .trim_start()
            .chars()
            .take_while(char::is_ascii_digit)
            .count();
        assert!(
            digits == 0 || !line.trim_start()[digits..].starts_with(". "),
            "an ordered-list line would be renumbered: {line}"
        );
    }
    let (text, sources) = detail.split_once("**Sources**").unwrap_or((detail, ""));
    // Numbered in the order a reader meets them: the first number cited is [1], each new one
    // the next, and the list under Sources runs [1], [2], … in that order.
    let mut met: Vec<u32> = Vec::new();
    for part in text.split('[').skip(1) {
        let Some((inside, _)) = part.split_once(']') else {
            continue;
        };
        for n in inside.split(',').map(str::trim) {
            if let Ok(k) = n.parse::<u32>() {
                assert!(
                    sources.contains(&format!("- [{n}] ")),
                    "[{n}] is cited but not listed under Sources: {detail}"
                );
                if !met.contains(&k) {
                    met.push(k);
                }
            }
        }
    }
    let expected: Vec<u32> = (1..=met.len() as u32).collect();
    assert_eq!(
        met, expected,
        "citations numbered in the order shown: {detail}"
    );
    let listed: Vec<u32> = sources
        .lines()
        .filter_map(|l| l.strip_prefix("- [")?.split_once(']')?.0.parse().ok())
        .collect();
    let expected: Vec<u32> = (1..=listed.len() as u32).collect();
    assert_eq!(listed, expected, "sources listed [1], [2], … : {detail}");
}

fn knee(onset: i64) -> Vec<Json> {
    vec![condition("knee", "M25.561", Some(onset))]
}

#[tokio::test]
async fn discovery_lists_one_service_per_hook_with_prefetch_templates() {
    let app = spawn_app().await;
    // Req 4/5/13: GET {base}/cds-services answers 200.
    let res = app
        .client
        .get(app.url("/cds-services"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let body: Json = res.json().await.unwrap();
    let services = body["services"]
        .as_array()
        .expect("req 6: a list of services");
    // Every loaded guideline's declared services: the running-knee guideline has one per hook,
    // the synthetic test guideline two.
    let hooks: Vec<(&str, &str)> = services
        .iter()
        .map(|s| (s["id"].as_str().unwrap(), s["hook"].as_str().unwrap()))
        .collect();
    assert_eq!(
        hooks,
        [
            ("running-knee-patient-view", "patient-view"),
            ("running-knee-order-select", "order-select"),
            ("running-knee-order-sign", "order-sign"),
            ("synthetic-patient-view", "patient-view"),
            ("synthetic-order-sign", "order-sign"),
        ]
    );
    for s in services {
        // Req 7/8/9/10.
        for field in ["hook", "title", "description", "id"] {
            assert!(
                s[field].as_str().is_some_and(|v| !v.is_empty()),
                "req 7-10: {field}"
            );
        }
        // Req 29/36/55/56/59: prefetch keys with {{context.patientId}} tokens only.
        let prefetch = s["prefetch"].as_object().unwrap();
        for key in ["Patient", "Condition", "Observation", "CarePlan"] {
            let t = prefetch[key].as_str().unwrap();
            assert!(t.contains("{{context.patientId}}"), "req 59: {t}");
            assert_eq!(t.matches("{{").count(), t.matches("}}").count(), "req 55");
        }
        // Each service's templates ask for its own guideline's codes only.
        let observations = prefetch["Observation"].as_str().unwrap();
        let knee = s["id"].as_str().unwrap().starts_with("running-knee");
        assert_eq!(
            observations.contains("running-knee|pain-walking"),
            knee,
            "{observations}"
        );
        assert_eq!(
            observations.contains("synthetic|gauge"),
            !knee,
            "{observations}"
        );
        // Req 16: the service answers at {base}/cds-services/{id}.
        let (status, _) = hook(
            &app,
            &format!("/cds-services/{}", s["id"].as_str().unwrap()),
            &json!({}),
        )
        .await;
        assert_eq!(
            status, 400,
            "a malformed call to an existing service is a 400, not a 404"
        );
    }
}

#[tokio::test]
async fn peer_requests_without_a_knee_episode_get_no_phase_card() {
    let app = spawn_app().await;
    let dir = stride_tests::repo_root().join("tests/fixtures/peer-requests");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).expect("peer fixtures") {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "json") {
            continue;
        }
        let mut body: Json =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        if body.get("hook").is_none() {
            continue;
        }
        // Their fhirServer is http://example.org: never contacted.
        body.as_object_mut().unwrap().remove("fhirServer");
        stride_tests::assert_schema("cds-hooks-request", &body);
        let (status, out) = hook(&app, PV, &body).await;
        assert_eq!(status, 200, "{}: {out}", path.display());
        assert_eq!(
            out,
            json!({"cards": []}),
            "req 77: no guidance is an empty card list ({})",
            path.display()
        );
        seen += 1;
    }
    assert_eq!(seen, 5);
}

#[tokio::test]
async fn peer_feedback_is_accepted_and_stored() {
    let app = spawn_app().await;
    let path = stride_tests::repo_root().join("tests/fixtures/peer-requests/feedback.json");
    let body: Json = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let res = app
        .cds(&format!("{PV}/feedback"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let stored = app
        .store
        .feedback_for_card("4e0a3a1e-3283-4575-ab82-028d55fe2719")
        .await
        .unwrap();
    assert_eq!(stored.len(), 2);
    assert!(
        !stored[0].known_card,
        "a card Stride never sent is recorded as unknown"
    );
    let outcomes: Vec<&str> = stored.iter().map(|f| f.outcome.as_str()).collect();
    assert!(outcomes.contains(&"accepted") && outcomes.contains(&"overridden"));
}

#[tokio::test]
async fn early_pain_is_rest_with_a_draft_careplan_stored_for_review() {
    let app = spawn_app().await;
    let (body, t) =
        patient_view_cards(&app, &knee(3), &[obs("p", "pain-walking", 0, int(4))]).await;
    assert_eq!(t, ["rest"]);
    // Nothing recorded yet rules out focal tenderness or pain at rest / at night: each says
    // so in a warning of its own, with what to record.
    assert_eq!(
        not_ruled_out(&body),
        ["focal-bony-tenderness", "rest-or-night-pain"]
    );
    let night = body["cards"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["source"]["topic"]["code"] == "rest-or-night-pain")
        .unwrap();
    assert_eq!(night["indicator"], "warning");
    let detail = night["detail"].as_str().unwrap();
    assert!(
        detail.contains("Pain at rest — not recorded")
            && detail.contains("Pain at night — not recorded"),
        "{detail}"
    );
    assert!(
        !detail.contains("pain_rest") && !detail.contains("RF-02"),
        "no fact or rule ids: {detail}"
    );
    let card = &body["cards"][0];
    assert_eq!(card["indicator"], "info");
    let plan = &card["suggestions"][0]["actions"][0]["resource"];
    assert_eq!(plan["resourceType"], "CarePlan");
    assert_eq!(plan["status"], "draft");
    assert_eq!(plan["intent"], "proposal");
    assert_eq!(plan["category"][0]["coding"][0]["code"], "rest");
    assert_eq!(
        plan["instantiatesCanonical"][0],
        "http://stride-cds.org/fhir/PlanDefinition/medial-knee-pain-running|1.0.2"
    );
    assert_eq!(plan["addresses"][0]["reference"], "Condition/knee");
    assert_eq!(plan["subject"]["reference"], "Patient/p1");
    assert!(
        plan["goal"].as_array().unwrap().len() >= 3,
        "goals for the exit criteria"
    );
    assert_eq!(plan["contained"][0]["resourceType"], "Goal");
    let stop = proposal(plan, "stop-running");
    assert_eq!(stop["doNotPerform"], true);
    assert_eq!(stop["intent"], "proposal");
    assert_eq!(stop["reasonReference"][0]["reference"], "Condition/knee");

    let id = uuid::Uuid::parse_str(plan["id"].as_str().unwrap()).unwrap();
    let stored = app
        .store
        .careplan(id)
        .await
        .expect("the draft CarePlan is stored");
    assert_eq!(stored.status, stride_store::CarePlanStatus::Draft);
    assert_eq!(stored.phase, "rest");
    assert_eq!(&stored.resource, plan);
}

#[tokio::test]
async fn running_during_rest_is_named_on_the_phase_card_and_is_no_progress() {
    let app = spawn_app().await;
    // Two runs on days 3 and 5 of the episode, against advice.
    let runs = [
        session("r1", 5, 3.0, 0, false),
        session("r2", 3, 3.0, 0, false),
    ];
    let (body, t) = patient_view_cards(&app, &knee(8), &runs).await;
    // The pitfall has no decision id of its own (CONTRACT): no extra card, the phase card
    // says it and weighs as a warning.
    assert_eq!(t[0], "rest", "{t:?}");
    assert!(!t.iter().any(|c| c == "running-during-rest"), "{t:?}");
    let card = &body["cards"][0];
    assert_eq!(card["indicator"], "warning");
    let detail = card["detail"].as_str().unwrap();
    assert!(detail.contains("Pitfall: running during rest"), "{detail}");
    // "Based on" names the finding, its value and the newest day, not resource ids.
    let newest = time::OffsetDateTime::now_utc().date() - time::Duration::days(3);
    assert!(
        detail.contains(&format!(
            "Based on: Running sessions during rest (the 2 weeks after the onset day, or since \
             staff approved rest), last 14 days: 2, recorded {}",
            stride_guideline::display::day(newest)
        )),
        "{detail}"
    );
    assert!(
        !detail.contains("Observation/")
            && !detail.contains("PF-05")
            && !detail.contains("rest_runs"),
        "{detail}"
    );
    citations_survive_markdown(detail);

    // The same runs three weeks later are walk-run sessions, not a pitfall.
    let later = [
        session("r1", 5, 3.0, 0, false),
        session("r2", 3, 3.0, 0, false),
    ];
    let (body, _) = patient_view_cards(&app, &knee(30), &later).await;
    let detail = body["cards"][0]["detail"].as_str().unwrap();
    assert!(!detail.contains("running during rest"), "{detail}");
}

#[tokio::test]
async fn recovered_walker_moves_to_walk_run_on_alternate_days() {
    let app = spawn_app().await;
    let (body, t) = patient_view_cards(&app, &knee(20), &recovered_walker()).await;
    assert_eq!(t, ["walk-run"]);
    let plan = &body["cards"][0]["suggestions"][0]["actions"][0]["resource"];
    let intervals = proposal(plan, "walk-run-intervals");
    assert_eq!(
        intervals["occurrenceTiming"]["repeat"],
        json!({"frequency": 1, "period": 2, "periodUnit": "d"})
    );
    // The dose written into the sentence, with no machine suffix after it.
    let said = intervals["patientInstruction"].as_str().unwrap();
    assert!(
        said.contains("Run 30–60 seconds at 30–50 % of pre-injury pace"),
        "{said}"
    );
    assert!(
        !said.contains("run-interval") && !said.contains("sources"),
        "{said}"
    );
}

#[tokio::test]
async fn three_pain_free_runs_after_week_six_are_progressive_loading() {
    let app = spawn_app().await;
    let mut o = recovered_walker();
    o.extend([
        session("r1", 5, 2.0, 0, false),
        session("r2", 3, 2.0, 0, false),
        session("r3", 1, 2.2, 0, false),
    ]);
    let (_, t) = patient_view_cards(&app, &knee(40), &o).await;
    assert_eq!(t, ["progressive-loading"]);
}

#[tokio::test]
async fn back_to_pre_injury_distance_after_ten_weeks_is_full_return() {
    let app = spawn_app().await;
    let mut o = recovered_walker();
    o.push(obs(
        "base",
        "preinjury-weekly-distance",
        90,
        qty(10.0, "km"),
    ));
    o.extend([
        session("a", 13, 3.6, 0, false),
        session("b", 11, 3.6, 0, false),
        session("c", 9, 3.8, 0, false),
        session("d", 5, 4.0, 0, false),
        session("e", 3, 4.0, 0, false),
        session("f", 1, 4.0, 0, false),
    ]);
    let (_, t) = patient_view_cards(&app, &knee(75), &o).await;
    assert_eq!(t, ["full-return"]);
}

#[tokio::test]
async fn every_red_flag_holds_progression_with_one_imaging_suggestion() {
    let app = spawn_app().await;
    let cases: Vec<(&str, i64, Vec<Json>)> = vec![
        (
            "focal-bony-tenderness",
            10,
            vec![obs("t", "tenderness-extent", 1, qty(40.0, "mm"))],
        ),
        (
            "rest-or-night-pain",
            10,
            vec![obs("n", "pain-night", 1, boolean(true))],
        ),
        (
            "persistent-bony-tenderness",
            20,
            vec![obs("b", "bony-tenderness", 2, boolean(true))],
        ),
        (
            "no-improvement-after-rest",
            20,
            vec![
                json!({"resourceType": "Observation", "id": "nrs1", "status": "final", "code": {"coding": [{"system": "http://loinc.org", "code": "72514-3"}]}, "effectiveDateTime": day(18), "valueInteger": 5}),
                json!({"resourceType": "Observation", "id": "nrs2", "status": "final", "code": {"coding": [{"system": "http://loinc.org", "code": "72514-3"}]}, "effectiveDateTime": day(1), "valueInteger": 5}),
            ],
        ),
        ("pain-on-return", 30, vec![session("s", 2, 1.0, 3, false)]),
    ];
    for (flag, onset, observations) in cases {
        let (body, t) = patient_view_cards(&app, &knee(onset), &observations).await;
        assert!(t.contains(&flag.to_owned()), "{flag}: {t:?}");
        assert_eq!(t[0], "hold-for-evaluation", "{flag}: {t:?}");
        let cards = body["cards"].as_array().unwrap();
        let flag_card = cards
            .iter()
            .find(|c| c["source"]["topic"]["code"] == flag)
            .unwrap();
        assert_eq!(flag_card["indicator"], "critical", "{flag}");
        let imaging: Vec<&Json> = cards
            .iter()
            .flat_map(|c| c["suggestions"].as_array().into_iter().flatten())
            .filter(|s| s["actions"][0]["resource"]["resourceType"] == "ServiceRequest")
            .collect();
        assert_eq!(imaging.len(), 1, "{flag}: one imaging suggestion");
        assert_eq!(imaging[0]["actions"][0]["resource"]["status"], "draft");
        // The source names no modality: the order is coded as imaging, the modality open.
        assert_eq!(
            imaging[0]["actions"][0]["resource"]["code"]["coding"][0],
            json!({"system": "http://snomed.info/sct", "code": "363679005", "display": "Imaging"}),
            "{flag}"
        );
        // The draft CarePlan proposes the same imaging, as options of which at most one is
        // ordered, for the same reasons.
        let plan = &cards[0]["suggestions"][0]["actions"][0]["resource"];
        let first = imaging_options(plan)["action"][0]["resource"]["reference"]
            .as_str()
            .unwrap();
        let order = contained(plan, first);
        let suggested = &imaging[0]["actions"][0]["resource"];
        assert_eq!(order["code"], suggested["code"], "{flag}");
        assert_eq!(order["reasonCode"], suggested["reasonCode"], "{flag}");
        assert_eq!(order["intent"], "proposal");
    }
}

#[tokio::test]
async fn valgus_mechanism_warns_without_holding() {
    let app = spawn_app().await;
    let (body, t) = patient_view_cards(
        &app,
        &knee(3),
        &[obs("v", "valgus-twist-mechanism", 3, boolean(true))],
    )
    .await;
    assert_eq!(t, ["rest", "mcl-mechanism"]);
    assert_eq!(body["cards"][1]["indicator"], "warning");
}

#[tokio::test]
async fn a_condition_without_onset_is_insufficient_data_and_says_what_is_missing() {
    let app = spawn_app().await;
    let (body, t) = patient_view_cards(&app, &[condition("knee", "M25.562", None)], &[]).await;
    assert_eq!(t, ["insufficient-data"]);
    let detail = body["cards"][0]["detail"].as_str().unwrap();
    assert!(detail.contains("onset not recorded"), "{detail}");
}

#[tokio::test]
async fn running_pitfalls_each_get_a_warning_card() {
    let app = spawn_app().await;
    let cases: Vec<(&str, i64, Vec<Json>)> = vec![
        (
            "consecutive-day-running",
            25,
            vec![
                session("a", 2, 1.0, 0, false),
                session("b", 1, 1.0, 0, false),
            ],
        ),
        (
            "progressing-with-pain",
            25,
            vec![
                session("a", 6, 1.0, 2, false),
                session("b", 4, 1.0, 0, false),
                session("c", 2, 1.0, 3, false),
            ],
        ),
        ("premature-speed-work", 25, {
            let mut o = recovered_walker();
            o.push(session("a", 3, 1.0, 0, false));
            o.push(session("b", 1, 1.0, 0, true));
            o
        }),
        ("distance-jump", 50, {
            let mut o = recovered_walker();
            o.extend([
                session("a", 12, 2.0, 0, false),
                session("b", 9, 2.0, 0, false),
                session("c", 5, 3.0, 0, false),
                session("d", 3, 3.0, 0, false),
                session("e", 1, 3.0, 0, false),
            ]);
            o
        }),
    ];
    for (pitfall, onset, observations) in cases {
        let (body, t) = patient_view_cards(&app, &knee(onset), &observations).await;
        let card = body["cards"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["source"]["topic"]["code"] == pitfall);
        let card = card.unwrap_or_else(|| panic!("{pitfall}: {t:?}"));
        assert_eq!(card["indicator"], "warning", "{pitfall}");
    }
}

/// How many orders the cards suggest (an imaging order a red flag offers).
fn imaging_suggestions(body: &Json) -> usize {
    body["cards"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|c| c["suggestions"].as_array().into_iter().flatten())
        .filter(|s| s["actions"][0]["resource"]["resourceType"] == "ServiceRequest")
        .count()
}

fn order_request(hook: &str, orders: &[Json]) -> Json {
    order_request_with(hook, orders, &[])
}

fn order_request_with(hook: &str, orders: &[Json], observations: &[Json]) -> Json {
    let mut ctx =
        json!({"userId": "Practitioner/dr-1", "patientId": "p1", "draftOrders": bundle(orders)});
    if hook == "order-select" {
        ctx["selections"] = json!(orders
            .iter()
            .map(|o| format!("ServiceRequest/{}", o["id"].as_str().unwrap()))
            .collect::<Vec<_>>());
    }
    json!({"hook": hook, "hookInstance": uuid::Uuid::new_v4().to_string(), "context": ctx,
           "prefetch": {"Condition": bundle(&knee(10)), "Observation": bundle(observations)}})
}

fn lipus_order() -> Json {
    json!({"resourceType": "ServiceRequest", "id": "lipus-1", "status": "draft", "intent": "order",
           "code": {"coding": [{"system": "http://www.ama-assn.org/go/cpt", "code": "20979"}]},
           "subject": {"reference": "Patient/p1"}})
}

#[tokio::test]
async fn a_lipus_draft_order_gets_a_warning_with_a_delete_suggestion_on_both_order_hooks() {
    let app = spawn_app().await;
    for hook_name in ["order-select", "order-sign"] {
        let (status, body) = hook(
            &app,
            &format!("/cds-services/running-knee-{hook_name}"),
            &order_request(hook_name, &[lipus_order()]),
        )
        .await;
        assert_eq!(status, 200, "{body}");
        body["cards"]
            .as_array()
            .unwrap()
            .iter()
            .for_each(check_card);
        assert_eq!(
            topics(&body),
            ["lipus-not-recommended"],
            "order hooks carry no phase card"
        );
        let action = &body["cards"][0]["suggestions"][0]["actions"][0];
        assert_eq!(action["type"], "delete");
        assert_eq!(action["resourceId"], "ServiceRequest/lipus-1");
    }
    // An imaging order without a red flag is fine: no card.
    let imaging = json!({"resourceType": "ServiceRequest", "id": "xr", "status": "draft", "intent": "order",
        "code": {"coding": [{"system": "http://www.ama-assn.org/go/cpt", "code": "73590"}]}, "subject": {"reference": "Patient/p1"}});
    let (_, body) = hook(
        &app,
        "/cds-services/running-knee-order-sign",
        &order_request("order-sign", &[imaging]),
    )
    .await;
    assert!(topics(&body).is_empty(), "{body}");
    // What the order hooks cannot rule out is still shown on them.
    assert_eq!(
        not_ruled_out(&body),
        ["focal-bony-tenderness", "rest-or-night-pain"]
    );
}

#[tokio::test]
async fn an_imaging_order_being_drafted_answers_the_red_flag_instead_of_a_second_order() {
    let app = spawn_app().await;
    let night_pain = [obs("n", "pain-night", 1, boolean(true))];
    let mri = json!({"resourceType": "ServiceRequest", "id": "mri-1", "status": "draft", "intent": "order",
        "category": [{"coding": [{"system": "http://snomed.info/sct", "code": "363679005", "display": "Imaging"}]}],
        "code": {"coding": [{"system": "http://loinc.org", "code": "30691-0", "display": "MR Knee WO contrast"}]},
        "subject": {"reference": "Patient/p1"}});
    let physio = json!({"resourceType": "ServiceRequest", "id": "pt-1", "status": "draft", "intent": "order",
        "code": {"text": "Physiotherapy referral"}, "subject": {"reference": "Patient/p1"}});
    let flag_card = |body: &Json| -> Json {
        body["cards"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["source"]["topic"]["code"] == "rest-or-night-pain")
            .cloned()
            .unwrap_or_else(|| panic!("no red-flag card: {body}"))
    };
    for hook_name in ["order-select", "order-sign"] {
        let service = format!("/cds-services/running-knee-{hook_name}");
        // Another kind of order: the red flag still asks for imaging.
        let (status, body) = hook(
            &app,
            &service,
            &order_request_with(hook_name, std::slice::from_ref(&physio), &night_pain),
        )
        .await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(imaging_suggestions(&body), 1, "{hook_name}: {body}");
        assert!(!flag_card(&body)["detail"]
            .as_str()
            .unwrap()
            .contains("already drafted"));
        // The MRI being drafted answers it: the card says which order, and offers none.
        let (status, body) = hook(
            &app,
            &service,
            &order_request_with(hook_name, &[mri.clone(), physio.clone()], &night_pain),
        )
        .await;
        assert_eq!(status, 200, "{body}");
        body["cards"]
            .as_array()
            .unwrap()
            .iter()
            .for_each(check_card);
        assert_eq!(imaging_suggestions(&body), 0, "{hook_name}: {body}");
        let card = flag_card(&body);
        assert_eq!(card["indicator"], "critical", "the red flag is not hidden");
        let detail = card["detail"].as_str().unwrap();
        assert!(
            detail.contains("Imaging already drafted")
                && detail.contains("the draft order \"MR Knee WO contrast\"")
                && !detail.contains("mri-1"),
            "{detail}"
        );
    }
}

#[tokio::test]
async fn a_draft_order_advised_against_is_named_on_its_card() {
    let app = spawn_app().await;
    let (_, body) = hook(
        &app,
        "/cds-services/running-knee-order-sign",
        &order_request("order-sign", &[lipus_order()]),
    )
    .await;
    let detail = body["cards"][0]["detail"].as_str().unwrap();
    // Named by what it orders, never by its id (the suggestion that removes it carries that).
    assert!(
        detail.contains("About the draft order:** the draft order coded CPT 20979")
            && !detail.contains("lipus-1"),
        "{detail}"
    );
}

#[tokio::test]
async fn feedback_is_tied_to_the_card_it_is_about() {
    let app = spawn_app().await;
    let (_, body) = hook(&app, PV, &patient_view(prefetch(&knee(3), &[]))).await;
    let card = body["cards"][0]["uuid"].as_str().unwrap().to_owned();
    let fb = json!({"feedback": [{"card": card, "outcome": "overridden",
        "overrideReason": {"reason": {"system": "http://stride-cds.org/fhir/CodeSystem/override-reason", "code": "clinical-judgement"}, "userComment": "seen by physio"},
        "outcomeTimestamp": "2026-01-02T10:00:00Z"}]});
    let res = app
        .cds(&format!("{PV}/feedback"))
        .json(&fb)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let stored = app.store.feedback_for_card(&card).await.unwrap();
    assert_eq!(stored.len(), 1);
    assert!(stored[0].known_card);
    assert_eq!(
        stored[0].details["overrideReason"]["userComment"],
        "seen by physio"
    );

    for bad in [
        json!({}),
        json!({"feedback": []}),
        json!({"feedback": [{"card": card, "outcome": "ignored", "outcomeTimestamp": "2026-01-02T10:00:00Z"}]}),
        json!({"feedback": [{"card": card, "outcome": "accepted"}]}),
        json!({"feedback": [{"card": card, "outcome": "accepted", "outcomeTimestamp": "2999-01-01T00:00:00Z"}]}),
    ] {
        let res = app
            .cds(&format!("{PV}/feedback"))
            .json(&bad)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 400, "{bad}");
    }
    assert_eq!(
        app.store.feedback_for_card(&card).await.unwrap().len(),
        1,
        "bad feedback stores nothing"
    );
}

#[tokio::test]
async fn malformed_requests_get_a_clear_operation_outcome() {
    let app = spawn_app().await;
    let send = |body: &'static str, ct: &'static str| {
        app.cds(PV).header("content-type", ct).body(body).send()
    };
    let cases = [
        (
            send("{not json", "application/json").await.unwrap(),
            400,
            "malformed_json",
        ),
        (
            send(
                r#"{"hook":"order-sign","hookInstance":"x","context":{}}"#,
                "application/json",
            )
            .await
            .unwrap(),
            400,
            "bad_request",
        ),
        (
            send("{}", "text/plain").await.unwrap(),
            415,
            "unsupported_media_type",
        ),
    ];
    for (res, status, code) in cases {
        assert_eq!(res.status().as_u16(), status);
        let body: Json = res.json().await.unwrap();
        assert_eq!(body["resourceType"], "OperationOutcome");
        assert_eq!(body["issue"][0]["details"]["coding"][0]["code"], code);
    }
    let huge = "x".repeat(9 * 1024 * 1024);
    let res = app
        .cds(PV)
        .header("content-type", "application/json")
        .body(huge)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 413);
    let res = app
        .cds("/cds-services/no-such-service")
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
    // A request with fhirAuthorization but no fhirServer is malformed (CONTRACT).
    let mut body = patient_view(prefetch(&knee(3), &[]));
    body["fhirAuthorization"] = json!({"access_token": "t", "token_type": "Bearer", "expires_in": 300, "scope": "patient/*.read", "subject": "stride"});
    let (status, out) = hook(&app, PV, &body).await;
    assert_eq!(status, 400);
    assert!(out["issue"][0]["details"]["text"]
        .as_str()
        .unwrap()
        .contains("fhirServer"));
}

#[tokio::test]
async fn missing_prefetch_without_a_fhir_server_is_412() {
    let app = spawn_app().await;
    // Req 54: no prefetch and nowhere to fetch from.
    let mut body = patient_view(json!({}));
    let (status, out) = hook(&app, PV, &body).await;
    assert_eq!(status, 412, "req 54");
    assert_eq!(out["resourceType"], "OperationOutcome");
    // Req 52: an OperationOutcome in a slot means it was not satisfied.
    body["prefetch"] = json!({"Condition": bundle(&knee(3)), "Observation": {"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": "timeout"}]}});
    assert_eq!(hook(&app, PV, &body).await.0, 412, "req 52");
    // `null`: the EHR has no such data; decide with what there is.
    body["prefetch"] = json!({"Condition": bundle(&knee(20)), "Observation": null});
    let (status, out) = hook(&app, PV, &body).await;
    assert_eq!(status, 200);
    assert_eq!(topics(&out)[0], "rest");
    assert!(out["cards"][0]["detail"]
        .as_str()
        .unwrap()
        .contains("Missing or unusable data"));
}

#[tokio::test]
async fn a_failed_write_answers_503_and_shows_no_card() {
    let app = spawn_app().await;
    app.db.destroy().await;
    let res = app
        .cds(PV)
        .json(&patient_view(prefetch(&knee(3), &[])))
        .send()
        .await
        .unwrap();
    let status = res.status();
    let retry = res.headers().contains_key("retry-after");
    let body: Json = res.json().await.unwrap();
    assert_eq!(status, 503, "{body}");
    assert!(retry);
    assert_eq!(body["resourceType"], "OperationOutcome");
    assert!(body.get("cards").is_none());
}

#[tokio::test]
async fn browser_clients_get_cors() {
    let app = spawn_app().await;
    // Req 208.
    let res = app
        .client
        .request(reqwest::Method::OPTIONS, app.url(PV))
        .header("origin", "https://ehr.example.org")
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "authorization,content-type",
        )
        .send()
        .await
        .unwrap();
    assert!(res.status().is_success(), "{}", res.status());
    assert_eq!(
        res.headers()["access-control-allow-origin"],
        "https://ehr.example.org"
    );
    let allowed = res.headers()["access-control-allow-headers"]
        .to_str()
        .unwrap()
        .to_lowercase();
    assert!(allowed.contains("authorization"), "{allowed}");
}

#[tokio::test]
async fn the_guideline_version_a_card_points_at_is_published() {
    let app = spawn_app().await;
    let (body, _) = patient_view_cards(&app, &knee(3), &[]).await;
    let url = body["cards"][0]["source"]["url"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        url.ends_with("/guidelines/medial-knee-pain-running/1.0.2"),
        "the newest active version decides: {url}"
    );
    for version in ["1.0.2", "1.0.1", "1.0.0"] {
        let res = app
            .client
            .get(app.url(&format!("/guidelines/medial-knee-pain-running/{version}")))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200, "{version} stays published for replay");
        let doc: Json = res.json().await.unwrap();
        assert_eq!(doc["version"], version);
    }
    assert_eq!(
        app.client
            .get(app.url("/guidelines/medial-knee-pain-running/9.9.9"))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
}

#[test]
fn the_response_schema_refuses_what_the_spec_forbids() {
    let good =
        json!({"cards": [{"summary": "s", "indicator": "info", "source": {"label": "Stride"}}]});
    stride_tests::assert_schema("cds-hooks-response", &good);
    let bad = [
        json!({}),
        json!({"cards": [{"summary": "s", "indicator": "urgent", "source": {"label": "Stride"}}]}),
        json!({"cards": [{"summary": "x".repeat(140), "indicator": "info", "source": {"label": "Stride"}}]}),
        json!({"cards": [{"summary": "s", "indicator": "info", "source": {"label": "Stride"},
                          "suggestions": [{"label": "l", "actions": [{"type": "create", "description": "d", "resource": {"resourceType": "CarePlan"}}]}]}]}),
        json!({"cards": [{"summary": "s", "indicator": "info", "source": {"label": "Stride"},
                          "overrideReasons": [{"system": "x", "code": "y"}]}]}),
        json!({"cards": [{"summary": "s", "indicator": "info", "source": {"label": "Stride"},
                          "links": [{"label": "l", "url": "https://x", "type": "absolute", "appContext": "a"}]}]}),
    ];
    for b in bad {
        let r = std::panic::catch_unwind(|| stride_tests::assert_schema("cds-hooks-response", &b));
        assert!(r.is_err(), "accepted: {b}");
    }
}

fn running_order(id: &str, code: &str, timing: Option<Json>) -> Json {
    let mut o = json!({"resourceType": "ServiceRequest", "id": id, "status": "draft", "intent": "order",
        "code": {"coding": [{"system": LOCAL, "code": code}]}, "subject": {"reference": "Patient/p1"}});
    if let Some(t) = timing {
        o["occurrenceTiming"] = t;
    }
    o
}

#[tokio::test]
async fn running_prescriptions_that_break_the_pitfalls_are_flagged_on_the_order_hooks() {
    let app = spawn_app().await;
    let daily = running_order(
        "run-daily",
        "running-prescription",
        Some(json!({"repeat": {"frequency": 1, "period": 1, "periodUnit": "d"}})),
    );
    let (status, body) = hook(
        &app,
        "/cds-services/running-knee-order-sign",
        &order_request("order-sign", &[daily]),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    body["cards"]
        .as_array()
        .unwrap()
        .iter()
        .for_each(check_card);
    // Day 10 is rest: any running order is running during rest, a card of its own.
    assert_eq!(
        topics(&body),
        ["consecutive-day-running", "running-during-rest"]
    );

    let alternate = running_order(
        "run-alt",
        "running-prescription",
        Some(json!({"repeat": {"frequency": 1, "period": 2, "periodUnit": "d"}})),
    );
    let (_, body) = hook(
        &app,
        "/cds-services/running-knee-order-sign",
        &order_request("order-sign", &[alternate]),
    )
    .await;
    assert_eq!(
        topics(&body),
        ["running-during-rest"],
        "alternate days keep to the pitfall, but not to rest: {body}"
    );

    let speed = running_order("intervals", "speed-work", None);
    let (_, body) = hook(
        &app,
        "/cds-services/running-knee-order-select",
        &order_request("order-select", &[speed]),
    )
    .await;
    assert_eq!(
        topics(&body),
        ["premature-speed-work"],
        "speed work while still in rest"
    );
}

#[tokio::test]
async fn another_clinics_card_is_an_unknown_card_to_its_feedback() {
    let app =
        stride_tests::spawn_app_trusting(&[stride_tests::tokens::clinic_b(json!({}))], &[]).await;
    let (_, body) = hook(&app, PV, &patient_view(prefetch(&knee(3), &[]))).await;
    let card = body["cards"][0]["uuid"].as_str().unwrap().to_owned();
    let fb = json!({"feedback": [{"card": card, "outcome": "accepted",
        "outcomeTimestamp": "2026-01-02T10:00:00Z"}]});
    let path = format!("{PV}/feedback");
    let res = app.cds_b(&path).json(&fb).send().await.unwrap();
    assert_eq!(res.status(), 200, "the report is evidence either way");
    let res = app.cds(&path).json(&fb).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let stored = app.store.feedback_for_card(&card).await.unwrap();
    let known: Vec<bool> = stored.iter().map(|f| f.known_card).collect();
    assert_eq!(known.iter().filter(|k| **k).count(), 1, "{known:?}");
    assert_eq!(
        known.iter().filter(|k| !**k).count(),
        1,
        "clinic B's: unknown card"
    );
}

#[tokio::test]
async fn a_retried_hook_instance_gets_the_stored_answer_and_no_second_decision() {
    let app =
        stride_tests::spawn_app_trusting(&[stride_tests::tokens::clinic_b(json!({}))], &[]).await;
    let call = patient_view(prefetch(&knee(3), &[]));
    let (status, first) = hook(&app, PV, &call).await;
    assert_eq!(status, 200);
    // The EHR never saw that answer and retries: same hookInstance, a new token.
    let (status, again) = hook(&app, PV, &call).await;
    assert_eq!(status, 200);
    assert_eq!(again, first, "the same cards, the same uuids");
    assert_eq!(stride_tests::stored_plans(&app).await, 1, "no second draft");
    let actions: Vec<String> = stride_tests::audit_actions(&app).await;
    assert_eq!(
        actions.iter().filter(|a| *a == "hook-call").count(),
        1,
        "{actions:?}"
    );
    assert_eq!(
        actions.iter().filter(|a| *a == "hook-retry").count(),
        1,
        "the retry is audited: {actions:?}"
    );
    // Another clinic naming that hookInstance is refused and told why.
    let res = app.cds_b(PV).json(&call).send().await.unwrap();
    assert_eq!(res.status(), 409);
    let body: Json = res.json().await.unwrap();
    assert_eq!(body["issue"][0]["details"]["coding"][0]["code"], "conflict");
    assert_eq!(
        stride_tests::metric(
            &app.metrics().await,
            "stride_hooks_refused_total{reason=\"hook_instance_reused\"}"
        ),
        Some(1.0)
    );
    // The same clinic reusing it for another call (test harnesses send the specification's
    // example uuid with every patient) is a new call, decided on its own data, and its own
    // retry is answered from the store too.
    let mut other = patient_view(prefetch(&knee(10), &[]));
    other["hookInstance"] = call["hookInstance"].clone();
    let (status, decided) = hook(&app, PV, &other).await;
    assert_eq!(status, 200);
    assert_ne!(decided["cards"][0]["uuid"], first["cards"][0]["uuid"]);
    assert_eq!(hook(&app, PV, &other).await.1, decided);
    let actions: Vec<String> = stride_tests::audit_actions(&app).await;
    assert_eq!(actions.iter().filter(|a| *a == "hook-call").count(), 2);
    assert_eq!(actions.iter().filter(|a| *a == "hook-retry").count(), 2);
}

fn drafted(id: &str, system: &str, code: &str) -> Json {
    json!({"resourceType": "ServiceRequest", "id": id, "status": "draft", "intent": "order",
           "code": {"coding": [{"system": system, "code": code}]}, "subject": {"reference": "Patient/p1"}})
}

#[tokio::test]
async fn a_running_order_during_rest_gets_a_card_of_its_own_on_the_order_hooks() {
    let app = spawn_app().await;
    let run = drafted(
        "run-1",
        "http://stride-cds.org/fhir/CodeSystem/running-knee",
        "running-prescription",
    );
    for hook_name in ["order-select", "order-sign"] {
        let (status, body) = hook(
            &app,
            &format!("/cds-services/running-knee-{hook_name}"),
            &order_request(hook_name, std::slice::from_ref(&run)),
        )
        .await;
        assert_eq!(status, 200, "{body}");
        body["cards"]
            .as_array()
            .unwrap()
            .iter()
            .for_each(check_card);
        let card = body["cards"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["source"]["topic"]["code"] == "running-during-rest")
            .unwrap_or_else(|| panic!("{hook_name}: no running-during-rest card: {body}"));
        assert_eq!(card["indicator"], "warning");
        assert!(card["summary"]
            .as_str()
            .unwrap()
            .contains("running during rest"));
    }
    // Day 10 with no running order: no such card.
    let (_, body) = hook(
        &app,
        "/cds-services/running-knee-order-sign",
        &order_request(
            "order-sign",
            &[drafted("xr", "http://www.ama-assn.org/go/cpt", "73562")],
        ),
    )
    .await;
    assert!(
        !topics(&body).contains(&"running-during-rest".to_owned()),
        "{body}"
    );
}

#[tokio::test]
async fn a_cpt_coded_image_of_the_region_answers_a_red_flag_and_an_image_elsewhere_does_not() {
    let app = spawn_app().await;
    let night_pain = [obs("n", "pain-night", 1, boolean(true))];
    let cpt = "http://www.ama-assn.org/go/cpt";
    // MRI of a lower-extremity joint, coded in CPT only (no imaging category): the imaging
    // the red flag asks for.
    let (_, body) = hook(
        &app,
        "/cds-services/running-knee-order-sign",
        &order_request_with("order-sign", &[drafted("mri", cpt, "73721")], &night_pain),
    )
    .await;
    assert!(
        topics(&body).contains(&"rest-or-night-pain".to_owned()),
        "{body}"
    );
    assert_eq!(imaging_suggestions(&body), 0, "{body}");
    // A chest radiograph, even with the imaging category, is not of the region: the red flag
    // still offers its order.
    let mut chest = drafted("cxr", cpt, "71046");
    chest["category"] =
        json!([{"coding": [{"system": "http://snomed.info/sct", "code": "363679005"}]}]);
    let (_, body) = hook(
        &app,
        "/cds-services/running-knee-order-sign",
        &order_request_with("order-sign", &[chest], &night_pain),
    )
    .await;
    assert_eq!(imaging_suggestions(&body), 1, "{body}");
    assert!(
        !body.to_string().contains("Imaging already drafted"),
        "{body}"
    );
}

#[tokio::test]
async fn a_medication_order_is_not_given_the_red_flags_again() {
    let app = spawn_app().await;
    let night_pain = [obs("n", "pain-night", 1, boolean(true))];
    let med = json!({"resourceType": "MedicationRequest", "id": "ibu", "status": "draft", "intent": "order",
        "subject": {"reference": "Patient/p1"}});
    let (status, body) = hook(
        &app,
        "/cds-services/running-knee-order-sign",
        &order_request_with("order-sign", &[med], &night_pain),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(topics(&body).is_empty(), "{body}");
    // The same red flag with a service request being drafted is shown.
    let (_, body) = hook(
        &app,
        "/cds-services/running-knee-order-sign",
        &order_request_with(
            "order-sign",
            &[json!({"resourceType": "ServiceRequest", "id": "pt", "status": "draft", "intent": "order",
                "code": {"text": "Physiotherapy referral"}, "subject": {"reference": "Patient/p1"}})],
            &night_pain,
        ),
    )
    .await;
    assert!(
        topics(&body).contains(&"rest-or-night-pain".to_owned()),
        "{body}"
    );
}

/// "Based on" names each finding a card rests on, with its value and the day it was
/// recorded, in words (no resource ids, no UCUM codes).
#[tokio::test]
async fn based_on_names_the_finding_its_value_and_its_day() {
    let app = spawn_app().await;
    let night = today() - time::Duration::days(2);
    let records = [
        obs("n", "pain-night", 2, boolean(true)),
        obs("t", "tenderness-extent", 1, qty(40.0, "mm")),
    ];
    let (body, t) = patient_view_cards(&app, &knee(10), &records).await;
    assert!(t.contains(&"rest-or-night-pain".to_owned()), "{t:?}");
    let card = |code: &str| {
        body["cards"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["source"]["topic"]["code"] == code)
            .unwrap_or_else(|| panic!("{code}: {body}"))["detail"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let detail = card("rest-or-night-pain");
    assert!(
        detail.contains(&format!(
            "Based on: Pain at night: yes, recorded {}",
            stride_guideline::display::day(night)
        )),
        "{detail}"
    );
    let detail = card("focal-bony-tenderness");
    assert!(
        detail.contains(&format!(
            "Extent of focal tenderness: 4 cm, recorded {}",
            stride_guideline::display::day(today() - time::Duration::days(1))
        )),
        "the value in the rule set's unit, as a person writes it: {detail}"
    );
    for c in body["cards"].as_array().unwrap() {
        let detail = c["detail"].as_str().unwrap();
        assert!(
            !detail.contains("Observation/") && !detail.contains("{score}"),
            "{detail}"
        );
    }
}

/// The phase card offers to create the draft CarePlan only on the call that drafted it; a
/// later call for the same patient and decision links to the waiting draft instead.
#[tokio::test]
async fn a_waiting_draft_is_linked_to_not_offered_again() {
    let app = spawn_app().await;
    let records = [obs("p", "pain-walking", 0, int(4))];
    let (first, _) = patient_view_cards(&app, &knee(3), &records).await;
    let (again, _) = patient_view_cards(&app, &knee(3), &records).await;
    let phase = |body: &Json| body["cards"][0].clone();
    let review = |card: &Json| {
        card["links"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["label"] == "Review the draft CarePlan")
            .map(|l| l["url"].clone())
    };
    let creates = |card: &Json| {
        card["suggestions"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|s| s["actions"][0]["type"] == "create")
            .count()
    };
    assert_eq!(creates(&phase(&first)), 1, "{first}");
    assert_eq!(creates(&phase(&again)), 0, "{again}");
    assert!(review(&phase(&first)).is_some(), "{first}");
    assert_eq!(
        review(&phase(&first)),
        review(&phase(&again)),
        "both link to the one draft"
    );
}

/// Issue 31, "false outages": one call sent to three replicas at once (each copy with a token
/// of its own, as an EHR retrying through a load balancer sends it) is recorded once, and every
/// replica answers it: those that lose the race on the unique keys give the winner's answer,
/// never a 503.
#[tokio::test]
async fn one_call_sent_to_three_replicas_at_once_is_recorded_once_and_answered_by_each() {
    let app = spawn_app().await;
    let replicas = [app.replica().await, app.replica().await];
    let mut addresses = vec![app.address.clone()];
    addresses.extend(replicas.iter().map(|r| r.address.clone()));
    let rounds = 4;
    for _ in 0..rounds {
        let call = patient_view(prefetch(&knee(3), &[]));
        let sends = addresses.iter().map(|a| {
            let (client, call) = (app.client.clone(), call.clone());
            let url = format!("{a}{PV}");
            async move {
                let res = client
                    .post(url)
                    .bearer_auth(stride_tests::tokens::cds_token(PV))
                    .json(&call)
                    .send()
                    .await
                    .unwrap();
                (res.status().as_u16(), res.text().await.unwrap())
            }
        });
        let answers = futures_util::future::join_all(sends).await;
        for (status, body) in &answers {
            assert_eq!(*status, 200, "every replica answers the call: {body}");
            assert_eq!(body, &answers[0].1, "the same answer from every replica");
        }
    }
    assert_eq!(
        stride_tests::stored_plans(&app).await,
        1,
        "one draft for the patient, linked to by later calls"
    );
    let actions = stride_tests::audit_actions(&app).await;
    assert_eq!(
        actions.iter().filter(|a| *a == "hook-call").count(),
        rounds,
        "one decision recorded per call: {actions:?}"
    );
    assert_eq!(
        actions.iter().filter(|a| *a == "hook-retry").count(),
        rounds * 2,
        "each copy answered from the stored call is audited: {actions:?}"
    );
}

/// Issue 30: a red flag that stays until evaluated (night pain on day 10, a "no" since, no
/// imaging) clears when a clinician records the decision: an override with a reason on its
/// card. An override without a reason is a dismissal and clears nothing. The next decision
/// records the clinician's decision among its facts, so a replay decides the same.
#[tokio::test]
async fn an_override_with_a_reason_evaluates_a_red_flag_that_stays_until_evaluated() {
    let app = spawn_app().await;
    let call = || walker_day_20(&[obs("night-pain-10", "pain-night", 10, boolean(true))]);
    let (status, body) = hook(&app, PV, &call()).await;
    assert_eq!(status, 200, "{body}");
    let flag = body["cards"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["source"]["topic"]["code"] == "rest-or-night-pain")
        .expect("the red flag stays, not evaluated")
        .clone();
    assert!(
        topics(&body).contains(&"hold-for-evaluation".to_owned()),
        "{body}"
    );
    let feedback = |card: &Json, reason: bool| {
        let a_minute_ago = (time::OffsetDateTime::now_utc() - time::Duration::minutes(1))
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap();
        let mut f = json!({"card": card["uuid"], "outcome": "overridden",
                           "outcomeTimestamp": a_minute_ago});
        if reason {
            f["overrideReason"] = json!({"reason": {"system": "http://stride-cds.org/fhir/CodeSystem/override-reason",
                "code": "clinical-judgement"}, "userComment": "examined, no bone stress"});
        }
        json!({"feedback": [f]})
    };
    let send = |fb: Json| {
        let req = app.cds(&format!("{PV}/feedback")).json(&fb);
        async move { req.send().await.unwrap().status() }
    };
    // Dismissed without a reason: still held.
    assert_eq!(send(feedback(&flag, false)).await, 200);
    let (_, body) = hook(&app, PV, &call()).await;
    assert!(
        topics(&body).contains(&"rest-or-night-pain".to_owned()),
        "{body}"
    );
    // Overridden with a reason: the clinician decided; the plan goes on (walk-run).
    assert_eq!(send(feedback(&flag, true)).await, 200);
    let (_, body) = hook(&app, PV, &call()).await;
    let t = topics(&body);
    assert!(!t.contains(&"rest-or-night-pain".to_owned()), "{body}");
    assert!(t.contains(&"walk-run".to_owned()), "{t:?}");
    // The decision it rests on is in the audit entry's facts, and a replay reproduces it.
    let entry = stride_tests::audit_entries(&app)
        .await
        .into_iter()
        .rev()
        .find(|e| e.entry.action == "hook-call")
        .unwrap();
    let facts = entry
        .entry
        .facts
        .as_ref()
        .map_or("", |f| f.text())
        .to_owned();
    assert!(
        facts.contains("rest-or-night-pain") && facts.contains("\"decision\""),
        "{facts}"
    );
    let res = app
        .get_json_as(
            &format!("/audit/{}/replay", entry.entry.id),
            &stride_tests::tokens::staff_token("audit.read"),
        )
        .await;
    assert_eq!(res["identical"], true, "{res}");
}
