//! What follows a hook call, as use cases in process on a fresh SQLite store: the EHR's
//! feedback on a card (`feedback`), the committee's count of it (`analytics`) and a clinician's
//! review of the drafted plan (`review`), each with its refusals and the audit entry it leaves
//! (issue 32: use cases tested without HTTP).

mod support;

use serde_json::{json, Value as Json};
use stride_app::actor::{Actor, Stamp};
use stride_app::analytics::{self, Filter};
use stride_app::careplans::{search, Search};
use stride_app::feedback;
use stride_app::hook::Answer;
use stride_app::review::{self, ReviewError, ReviewRequest};
use stride_auth::Kind;
use stride_store::ReviewAction;
use support::{audit_log, body, call, world, World};
use time::OffsetDateTime;

const TENANT: &str = "clinic-a";
const EHR: &str = "https://ehr.example/a";

fn staff(subject: &str, tenant: &str, route: &str) -> Actor {
    let caller = support::caller("https://staff.example", subject, tenant, Kind::Staff);
    Actor::new(
        caller,
        Stamp {
            trace_id: None,
            route: route.into(),
            method: "GET".into(),
        },
    )
}

/// One decided patient-view call of the clinic: its cards as the EHR got them.
async fn cards_shown(w: &World) -> Vec<Json> {
    let sent = body("3a8f1c2e-7b4d-4e6a-9c1f-2d5e8b7a6c01");
    let Ok(Answer::Decided { response, .. }) =
        call(w, &support::actor(EHR, TENANT), &sent, "jti-1").await
    else {
        panic!("decided");
    };
    let cards: Json = serde_json::from_str(&response).unwrap();
    cards["cards"].as_array().unwrap().clone()
}

#[tokio::test]
async fn feedback_is_recorded_counted_for_its_clinic_only_and_each_read_is_recorded() {
    let w = world().await;
    let cards = cards_shown(&w).await;
    let card = &cards[0];
    let uuid = card["uuid"].as_str().unwrap();
    let svc = w.catalog.service("running-knee-patient-view").unwrap();
    let now = OffsetDateTime::now_utc();

    // A feedback entry that breaks the specification is refused, naming what is wrong (it is
    // read before anything is stored: nothing is, below, but the one taken).
    let bad = json!({"feedback": [{"card": uuid, "outcome": "ignored"}]});
    match feedback::read(
        svc,
        &stride_store::TenantId::parse(TENANT).unwrap(),
        &bad,
        now,
    ) {
        Err(feedback::FeedbackError::Invalid(m)) => assert!(m.contains("outcome"), "{m}"),
        other => panic!("refused: {other:?}"),
    }
    let sent = json!({"feedback": [{"card": uuid, "outcome": "overridden",
        "overrideReason": {"reason": {"system": "http://stride-cds.org/fhir/CodeSystem/override-reason", "code": "already-addressed"}},
        "outcomeTimestamp": now.format(&time::format_description::well_known::Rfc3339).unwrap()}]});
    let entries = feedback::read(
        svc,
        &stride_store::TenantId::parse(TENANT).unwrap(),
        &sent,
        now,
    )
    .unwrap();
    feedback::take(
        w.store.as_ref(),
        svc,
        &entries,
        &support::actor(EHR, TENANT),
    )
    .await
    .unwrap();
    let log = audit_log(w.store.as_ref(), TENANT).await;
    let taken: Vec<_> = log.iter().filter(|e| e.action == "feedback").collect();
    assert_eq!(taken.len(), 1, "the refused entry left nothing");
    assert_eq!(taken[0].card_uuids, [uuid.to_owned()]);
    assert_eq!(taken[0].caller_issuer.as_deref(), Some(EHR));

    // The clinic's committee sees the override, by its reason.
    let reader = staff("carla", TENANT, "/analytics/cards");
    let rows = analytics::cards(w.store.as_ref(), &reader, &Filter::default())
        .await
        .unwrap();
    let decision = card["source"]["topic"]["code"].as_str().unwrap();
    let row = rows
        .iter()
        .find(|r| r.decision_id == decision)
        .unwrap_or_else(|| panic!("a row of {decision}: {rows:?}"));
    assert_eq!((row.shown, row.overridden, row.accepted), (1, 1, 0));
    assert_eq!(row.reasons, [("already-addressed".to_owned(), 1)]);
    assert_eq!(
        rows.iter().map(|r| r.shown).sum::<i64>(),
        cards.len() as i64
    );
    // Another clinic's committee sees none of it.
    let elsewhere = staff("dan", "clinic-b", "/analytics/cards");
    let theirs = analytics::cards(w.store.as_ref(), &elsewhere, &Filter::default())
        .await
        .unwrap();
    assert!(theirs.is_empty(), "{theirs:?}");
    // Each read is an analytics-read entry of its reader, with the filter asked.
    let filter = Filter::parse(Some("2026-01-01"), None, None, None).unwrap();
    analytics::cards(w.store.as_ref(), &reader, &filter)
        .await
        .unwrap();
    let reads: Vec<_> = audit_log(w.store.as_ref(), TENANT)
        .await
        .into_iter()
        .filter(|e| e.action == "analytics-read")
        .collect();
    assert_eq!(reads.len(), 2);
    assert_eq!(reads[1].caller_subject.as_deref(), Some("carla"));
    assert_eq!(reads[1].details["filter"]["from"], "2026-01-01");
    // The other clinic's read is in its own clinic's log.
    let theirs = audit_log(w.store.as_ref(), "clinic-b").await;
    assert_eq!(theirs.len(), 1);
    assert_eq!(
        (
            theirs[0].action.as_str(),
            theirs[0].caller_subject.as_deref()
        ),
        ("analytics-read", Some("dan"))
    );

    // A filter a reader typed wrong is refused with what to fix.
    for (from, to, said) in [
        (Some("2026-13-01"), None, "from: a day such as"),
        (Some("2026-12-02"), Some("2026-12-01"), "from: after to"),
    ] {
        let refused = Filter::parse(from, to, None, None).unwrap_err();
        assert!(refused.contains(said), "{refused}");
    }
}

#[tokio::test]
async fn a_review_is_applied_once_and_a_stale_one_is_refused_with_where_the_plan_stands() {
    let w = world().await;
    cards_shown(&w).await;
    let reviewer = staff("rita", TENANT, "/fhir/CarePlan/{id}/$review");
    let plans = search(
        w.store.as_ref(),
        &reviewer,
        Search {
            patient: None,
            status: None,
            created_from: None,
            created_to: None,
            limit: 10,
            view: None,
        },
    )
    .await
    .unwrap();
    assert_eq!(plans.len(), 1, "the call drafted one plan");
    let plan = &plans[0];
    let approve = ReviewRequest {
        action: ReviewAction::Approve,
        version: plan.version,
        reason: None,
        recommendations: None,
        activity: None,
    };
    let id = plan.id.to_string();
    let approved = review::apply(w.store.as_ref(), &w.catalog, &reviewer, &id, &approve)
        .await
        .unwrap();
    assert_eq!(approved.version, plan.version + 1);
    // The same review again names a version the plan has left.
    let stale = review::apply(w.store.as_ref(), &w.catalog, &reviewer, &id, &approve).await;
    assert!(matches!(stale, Err(ReviewError::Conflict(_))), "{stale:?}");
    // Another clinic's reviewer finds no such plan.
    let elsewhere = staff("dan", "clinic-b", "/fhir/CarePlan/{id}/$review");
    let hidden = review::apply(w.store.as_ref(), &w.catalog, &elsewhere, &id, &approve).await;
    assert!(matches!(hidden, Err(ReviewError::NotFound)), "{hidden:?}");

    let reviews: Vec<_> = audit_log(w.store.as_ref(), TENANT)
        .await
        .into_iter()
        .filter(|e| e.action == "careplan-review")
        .collect();
    assert_eq!(reviews.len(), 1, "only the applied review is recorded");
    let elsewhere_log = audit_log(w.store.as_ref(), "clinic-b").await;
    assert!(elsewhere_log.is_empty(), "{elsewhere_log:?}");
    assert_eq!(reviews[0].caller_subject.as_deref(), Some("rita"));
    assert_eq!(reviews[0].careplan_id, Some(plan.id));
}
