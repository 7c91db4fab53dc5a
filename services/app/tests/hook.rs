//! The hook call as one use case (`hook::answer`), in process on a fresh SQLite store with a
//! fetch that is never available: a call decided and recorded, the same call sent again
//! answered from the store, and a hookInstance of another caller refused, each with the audit
//! entries it leaves (issue 32: use cases tested without HTTP).

mod support;

use serde_json::Value as Json;
use stride_app::hook::{Answer, HookError};
use stride_store::audit::Action;
use stride_store::{NewAuditEntry, Store};
use support::{actor, body, call, world};
use time::OffsetDateTime;

const TENANT: &str = "clinic-a";

/// The hook calls' and retries' entries of the clinic's chain.
async fn log(store: &dyn Store) -> Vec<NewAuditEntry> {
    support::audit_log(store, TENANT)
        .await
        .into_iter()
        .filter(|e| matches!(e.action, Action::HookCall | Action::HookRetry))
        .collect()
}

#[tokio::test]
async fn a_call_is_decided_recorded_and_its_retry_answered_from_the_store() {
    let w = world().await;
    let ehr = actor("https://ehr.example/a", TENANT);
    let sent = body("6f1c5e2a-0b1d-4c55-9d43-1b2a7e0f9c11");
    let Answer::Decided {
        response,
        decision_ids,
        ..
    } = call(&w, &ehr, &sent, "jti-1").await.unwrap()
    else {
        panic!("the first call is decided");
    };
    let cards: Json = serde_json::from_str(&response).unwrap();
    assert!(!cards["cards"].as_array().unwrap().is_empty(), "{cards}");
    assert!(!decision_ids.is_empty());

    // Sent again with a new token: the stored answer, byte for byte, and no second decision.
    let Answer::Retried(again) = call(&w, &ehr, &sent, "jti-2").await.unwrap() else {
        panic!("the same call again is a retry");
    };
    assert_eq!(again, response);
    // The retry's token was burnt before it was answered: it cannot be used again.
    let now = OffsetDateTime::now_utc().unix_timestamp();
    let reused = w
        .store
        .claim_jti("https://ehr.example/a", "jti-2", now + 300, now)
        .await
        .unwrap();
    assert!(!reused.fresh, "the retry's token was not recorded as used");

    let entries = log(w.store.as_ref()).await;
    let actions: Vec<&str> = entries.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(actions, ["hook-call", "hook-retry"], "{actions:?}");
    let (decided, retried) = (&entries[0], &entries[1]);
    assert_eq!(
        decided.caller_issuer.as_deref(),
        Some("https://ehr.example/a")
    );
    assert_eq!(
        decided
            .patient_ref
            .as_ref()
            .map(stride_store::PatientRef::as_str),
        Some("Patient/p1")
    );
    assert_eq!(decided.decision_ids, decision_ids);
    assert!(
        decided.facts.is_some(),
        "a decision keeps what replay needs"
    );
    assert_eq!(
        retried.hook_instance.as_deref(),
        Some("6f1c5e2a-0b1d-4c55-9d43-1b2a7e0f9c11")
    );
    assert_eq!(
        retried.service_id.as_deref(),
        Some("running-knee-patient-view")
    );
    assert!(retried.facts.is_none(), "a retry decides nothing");
    assert_eq!(retried.details["route"], "/cds-services/{id}");
}

#[tokio::test]
async fn a_hook_instance_of_another_caller_is_refused_and_leaves_nothing() {
    let w = world().await;
    let sent = body("0b8e1d7c-52aa-4e8f-8f3e-3c9d6a1e2b47");
    let first = call(&w, &actor("https://ehr.example/a", TENANT), &sent, "a-1").await;
    assert!(matches!(first, Ok(Answer::Decided { .. })));
    // The same hookInstance from another EHR of the clinic: neither its answer nor a decision.
    let other = actor("https://ehr.example/b", TENANT);
    let refused = call(&w, &other, &sent, "b-1").await;
    assert!(
        matches!(refused, Err(HookError::InstanceOfAnother)),
        "{:?}",
        refused.err()
    );
    let actions: Vec<String> = log(w.store.as_ref())
        .await
        .into_iter()
        .map(|e| e.action.as_str().to_owned())
        .collect();
    assert_eq!(actions, ["hook-call"]);
}

/// A candidate in shadow that reads a Condition the version in force does not (1.0.2 reads a
/// diagnosis given in words only; 1.0.0 does not) decides on the Observations the EHR
/// prefetched: its recorded decision holds the night pain they show, so that its impact
/// counts it, while the version in force's record keeps only what it read. Before, the
/// in-force version's reading of the Conditions left them unread, and the candidate's
/// decision was made without them.
#[tokio::test]
async fn a_candidate_in_shadow_reads_the_prefetched_observations_the_version_in_force_does_not_need(
) {
    use serde_json::json;
    use stride_app::hook::decide;
    use stride_fhir::clinic::ClinicZone;
    let w = world().await;
    let a = actor("https://ehr.example", TENANT);
    let svc = w.catalog.service("running-knee-patient-view").unwrap();
    let version = |v: &str| {
        w.catalog
            .get(&svc.guideline, &v.parse().unwrap())
            .unwrap()
            .clone()
    };
    let (in_force, candidate) = (version("1.0.0"), version("1.0.2"));
    let now = OffsetDateTime::now_utc();
    let day = |d: i64| (now - time::Duration::days(d)).date().to_string();
    let bundle = |r: Json| json!({"resourceType": "Bundle", "type": "searchset", "entry": [{"resource": r}]});
    let body = serde_json::to_vec(&json!({
        "hook": "patient-view",
        "hookInstance": uuid::Uuid::new_v4().to_string(),
        "context": {"userId": "Practitioner/dr-1", "patientId": "p1"},
        "prefetch": {
            "Patient": null,
            "Condition": bundle(json!({"resourceType": "Condition", "id": "c1",
                "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}]},
                "code": {"text": "Medial knee pain, right, while running"},
                "subject": {"reference": "Patient/p1"}, "onsetDateTime": day(5)})),
            "Observation": bundle(json!({"resourceType": "Observation", "id": "o1", "status": "final",
                "code": {"coding": [{"system": "http://stride-cds.org/fhir/CodeSystem/running-knee", "code": "pain-night"}]},
                "subject": {"reference": "Patient/p1"}, "effectiveDateTime": day(1), "valueBoolean": true})),
            "CarePlan": null,
        },
    }))
    .unwrap();
    let req = stride_hooks::request::parse(&body, svc.hook, true).unwrap();
    let zone = ClinicZone::for_tenant(None);
    let c = support::hook_call(
        svc,
        (&in_force, Some(&candidate)),
        &req,
        &a.caller,
        &zone,
        now,
    );
    let drafted = decide(
        w.store.as_ref(),
        &c,
        &mut support::NoFetch,
        a.entry(Action::HookCall, "success"),
    )
    .await
    .unwrap();
    assert!(
        drafted.decision_ids.is_empty(),
        "1.0.0 reads no words: {:?}",
        drafted.decision_ids
    );
    // The version in force's record is what it read: not the candidate's Observations.
    let facts = drafted
        .record
        .audit
        .facts
        .as_ref()
        .unwrap()
        .text()
        .to_owned();
    assert!(!facts.contains("pain-night"), "{facts}");
    let shadow = &drafted.record.audit.details["shadow"];
    assert_eq!(shadow["version"], "1.0.2", "{shadow}");
    assert!(
        shadow["decisionIds"]
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d == "rest-or-night-pain"),
        "the candidate saw the night pain: {shadow}"
    );
}
