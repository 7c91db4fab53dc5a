//! The hook call as one use case (`hook::answer`), in process on a fresh SQLite store with a
//! fetch that is never available: a call decided and recorded, the same call sent again
//! answered from the store, and a hookInstance of another caller refused, each with the audit
//! entries it leaves (issue 32: use cases tested without HTTP).

mod support;

use std::path::Path;
use std::sync::Arc;

use serde_json::{json, value::RawValue, Value as Json};
use stride_app::actor::{Actor, Stamp};
use stride_app::catalog::Catalog;
use stride_app::hook::{answer, fingerprint, Answer, Call, Fetch, HookError, Unfetched};
use stride_auth::Kind;
use stride_fhir::clinic::ClinicZone;
use stride_store::{NewAuditEntry, Store};
use time::{Duration, OffsetDateTime};

/// Everything is in the prefetch: a fetch would be a bug.
struct NoFetch;

impl Fetch for NoFetch {
    fn available(&self) -> bool {
        false
    }
    async fn fetch(&mut self, _: &str, _: &str) -> Result<Vec<Box<RawValue>>, Unfetched> {
        Err(Unfetched::Failed)
    }
}

const TENANT: &str = "clinic-a";

fn actor(issuer: &str, tenant: &str) -> Actor {
    let caller = support::caller(issuer, "ehr-client", tenant, Kind::CdsClient);
    let stamp = Stamp {
        trace_id: None,
        route: "/cds-services/{id}".into(),
        method: "POST".into(),
    };
    Actor::new(caller, stamp)
}

/// A runner three days into knee pain: decided as rest.
fn body(instance: &str) -> Vec<u8> {
    let onset = (OffsetDateTime::now_utc() - Duration::days(3)).date();
    let bundle = |entries: Vec<Json>| {
        json!({"resourceType": "Bundle", "type": "searchset",
               "entry": entries.into_iter().map(|r| json!({"resource": r})).collect::<Vec<_>>()})
    };
    let knee = json!({"resourceType": "Condition", "id": "k",
        "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}]},
        "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "M25.561"}]},
        "subject": {"reference": "Patient/p1"}, "onsetDateTime": onset.to_string()});
    serde_json::to_vec(&json!({
        "hook": "patient-view",
        "hookInstance": instance,
        "context": {"userId": "Practitioner/dr-1", "patientId": "p1"},
        "prefetch": {
            "Patient": {"resourceType": "Patient", "id": "p1", "gender": "female", "birthDate": "1990-04-01"},
            "Condition": bundle(vec![knee]),
            "Observation": bundle(Vec::new()),
            "CarePlan": bundle(Vec::new()),
        },
    }))
    .unwrap()
}

struct World {
    _dir: tempfile::TempDir,
    store: Arc<dyn Store>,
    catalog: Catalog,
}

async fn world() -> World {
    let (dir, store) = support::fresh_store().await;
    let guidelines = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../guidelines");
    World {
        _dir: dir,
        store,
        catalog: Catalog::load(&guidelines).unwrap(),
    }
}

/// One call of `body` by `actor` with a fresh token (`jti`), as the route makes it.
async fn call(w: &World, actor: &Actor, body: &[u8], jti: &str) -> Result<Answer, HookError> {
    let svc = w.catalog.service("running-knee-patient-view").unwrap();
    let rs = w.catalog.current(&svc.guideline).unwrap().clone();
    let req = stride_hooks::request::parse(body, svc.hook, true).unwrap();
    let zone = ClinicZone::for_tenant(None);
    let c = Call {
        service: svc,
        rule_set: &rs,
        shadow: None,
        request: &req,
        tenant: &actor.caller.tenant,
        issuer: &actor.caller.issuer,
        zone: &zone,
        now: OffsetDateTime::now_utc(),
        public_url: "https://stride.example",
        fingerprint: fingerprint(svc, &req),
        smart_launch: false,
    };
    let now = OffsetDateTime::now_utc().unix_timestamp();
    let claim = w
        .store
        .claim_jti(&actor.caller.issuer, jti, now + 300, now)
        .await
        .unwrap();
    answer(w.store.as_ref(), actor, &c, &mut NoFetch, claim).await
}

/// The hook calls' and retries' entries of the clinic's chain.
async fn log(store: &dyn Store) -> Vec<NewAuditEntry> {
    support::audit_log(store, TENANT)
        .await
        .into_iter()
        .filter(|e| e.action.starts_with("hook-"))
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
    assert_eq!(decided.patient_ref.as_deref(), Some("Patient/p1"));
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
        .map(|e| e.action)
        .collect();
    assert_eq!(actions, ["hook-call"]);
}
