//! The CarePlan reads as use cases, in process on a fresh SQLite database: what each caller
//! sees, and the audit entry each read leaves (issue 32: use cases tested without HTTP).

mod support;

use serde_json::json;
use stride_app::actor::{Actor, Stamp};
use stride_app::careplans::{read, search, Search};
use stride_app::review::ReviewError;
use stride_auth::Kind;
use stride_store::{CarePlanStatus, NewAuditEntry, NewCarePlan, Store};
use support::{audit_log as entries, fresh_store as store};

fn staff(tenant: &str, patient: Option<&str>) -> Actor {
    let mut caller = support::caller(
        &format!("https://{tenant}.example/oauth"),
        &format!("nurse-of-{tenant}"),
        tenant,
        Kind::Staff,
    );
    caller.scopes = vec!["careplan.read".into()];
    caller.patient = patient.map(str::to_owned);
    let stamp = Stamp {
        trace_id: Some("trace-1".into()),
        route: "/fhir/CarePlan/{id}".into(),
        method: "GET".into(),
    };
    Actor::new(caller, stamp)
}

async fn plan(store: &dyn Store, tenant: &str, patient: &str) -> uuid::Uuid {
    let id = uuid::Uuid::new_v4();
    store
        .insert_careplan(&NewCarePlan {
            id,
            tenant: stride_store::TenantId::parse(tenant).unwrap(),
            patient_ref: stride_store::PatientRef::parse(patient).unwrap(),
            status: CarePlanStatus::Draft,
            rule_set_id: "medial-knee-pain-running".into(),
            rule_set_version: "1.0.2".into(),
            phase: "rest".into(),
            red_flag: false,
            resource: json!({"resourceType": "CarePlan", "status": "draft", "intent": "proposal"}),
            created_at: time::OffsetDateTime::now_utc(),
            decision_key: None,
            patient: None,
        })
        .await
        .unwrap();
    id
}

#[tokio::test]
async fn a_read_is_recorded_with_who_read_which_plan_of_which_patient() {
    let (_dir, store) = store().await;
    let id = plan(store.as_ref(), "clinic-a", "Patient/p1").await;
    let actor = staff("clinic-a", None);
    let record = read(store.as_ref(), &actor, &id.to_string(), Some("review page"))
        .await
        .unwrap();
    assert_eq!(record.id, id);
    let log = entries(store.as_ref(), "clinic-a").await;
    let e = log.last().expect("one entry");
    assert_eq!(e.action, "careplan-read");
    assert_eq!(e.outcome, "success");
    assert_eq!(e.caller_subject.as_deref(), Some("nurse-of-clinic-a"));
    assert_eq!(
        e.patient_ref.as_ref().map(stride_store::PatientRef::as_str),
        Some("Patient/p1")
    );
    assert_eq!(e.careplan_id, Some(id));
    assert_eq!(e.trace_id.as_deref(), Some("trace-1"));
    assert_eq!(e.details["route"], "/fhir/CarePlan/{id}");
    assert_eq!(e.details["view"], "review page");
}

#[tokio::test]
async fn another_clinics_plan_or_another_patients_does_not_exist_and_leaves_no_read() {
    let (_dir, store) = store().await;
    let theirs = plan(store.as_ref(), "clinic-b", "Patient/p1").await;
    let other_patient = plan(store.as_ref(), "clinic-a", "Patient/p2").await;
    let mine = staff("clinic-a", None);
    let launched = staff("clinic-a", Some("Patient/p1"));
    for (actor, id) in [(&mine, theirs), (&launched, other_patient)] {
        let refused = read(store.as_ref(), actor, &id.to_string(), None).await;
        assert!(matches!(refused, Err(ReviewError::NotFound)), "{refused:?}");
    }
    assert!(matches!(
        read(store.as_ref(), &mine, "not-a-uuid", None).await,
        Err(ReviewError::NotFound)
    ));
    // Nothing was read, so nothing was recorded as read.
    for tenant in ["clinic-a", "clinic-b"] {
        let reads = entries(store.as_ref(), tenant).await;
        assert!(
            reads.iter().all(|e| e.action != "careplan-read"),
            "{tenant}: {:?}",
            reads.iter().map(|e| &e.action).collect::<Vec<_>>()
        );
    }
}

#[tokio::test]
async fn a_search_shows_the_callers_clinic_and_a_launch_its_patient_only() {
    let (_dir, store) = store().await;
    let p1 = plan(store.as_ref(), "clinic-a", "Patient/p1").await;
    let p2 = plan(store.as_ref(), "clinic-a", "Patient/p2").await;
    plan(store.as_ref(), "clinic-b", "Patient/p1").await;
    let ids = |plans: Vec<stride_store::CarePlanRecord>| {
        let mut v: Vec<uuid::Uuid> = plans.into_iter().map(|p| p.id).collect();
        v.sort();
        v
    };
    let all = Search {
        limit: 50,
        ..Search::default()
    };
    let mut both = vec![p1, p2];
    both.sort();
    let clinic = staff("clinic-a", None);
    assert_eq!(
        ids(search(store.as_ref(), &clinic, all).await.unwrap()),
        both
    );

    // Launched for p1: p1's plans whatever is asked, and nothing when another patient is.
    let launched = staff("clinic-a", Some("Patient/p1"));
    let every = Search {
        limit: 50,
        view: Some("review queue"),
        ..Search::default()
    };
    assert_eq!(
        ids(search(store.as_ref(), &launched, every).await.unwrap()),
        vec![p1]
    );
    let asked_p2 = Search {
        patient: stride_store::PatientRef::parse("Patient/p2"),
        limit: 50,
        ..Search::default()
    };
    assert!(search(store.as_ref(), &launched, asked_p2)
        .await
        .unwrap()
        .is_empty());

    let log = entries(store.as_ref(), "clinic-a").await;
    let searches: Vec<&NewAuditEntry> = log
        .iter()
        .filter(|e| e.action == "careplan-search")
        .collect();
    assert_eq!(
        searches.len(),
        2,
        "the refused search asked nothing of the store"
    );
    assert_eq!(searches[0].details["results"], 2);
    assert_eq!(searches[0].patient_ref, None);
    assert_eq!(searches[1].details["results"], 1);
    assert_eq!(searches[1].details["view"], "review queue");
    assert_eq!(
        searches[1]
            .patient_ref
            .as_ref()
            .map(stride_store::PatientRef::as_str),
        Some("Patient/p1")
    );
}
