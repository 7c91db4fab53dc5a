//! The impact report as staff read it (`impact_jobs`), in process on a fresh SQLite store with
//! hook calls decided and recorded by the hook use case: a report is computed once per scope
//! and shown again until asked again, a clinic's staff read their own clinic only, each view
//! is recorded, and a sign-off never computes a report while its caller waits (issue 34: the
//! report signers read, computed once as a background job; issue 32: use cases tested without
//! HTTP).

mod support;

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use stride_app::actor::{Actor, Stamp};
use stride_app::governance::{impact_hash, sign_off, GovernanceError, SignOffRequest};
use stride_app::hook::Answer;
use stride_app::impact::Candidate;
use stride_app::impact_jobs::{read, Ask, Jobs, View};
use stride_app::pins::Pins;
use stride_auth::Kind;
use support::{audit_log, body_of, call_under, world, World};

const TENANT: &str = "clinic-a";
const EHR: &str = "https://ehr.example/a";
const G: &str = "medial-knee-pain-running";

/// The jobs of a service whose clinics run the catalog's current versions.
fn jobs(w: &World) -> Jobs {
    let verifier = stride_auth::Verifier::new(
        stride_auth::TrustFile {
            issuers: Vec::new(),
        },
        stride_auth::VerifierOptions::default(),
    )
    .unwrap();
    let pins = Pins::new(
        &w.catalog,
        &Default::default(),
        &Default::default(),
        &verifier,
    )
    .unwrap();
    Jobs::new(w.store.clone(), w.catalog.clone(), Arc::new(pins))
}

fn staff(subject: &str, tenant: &str, all_tenants: bool, scopes: &[&str]) -> Actor {
    let mut caller = support::caller("https://staff.example", subject, tenant, Kind::Staff);
    caller.all_tenants = all_tenants;
    caller.scopes = scopes.iter().map(|s| s.to_string()).collect();
    Actor::new(
        caller,
        Stamp {
            trace_id: None,
            route: "/ui/rules/impact".into(),
            method: "GET".into(),
        },
    )
}

/// The candidate whose report is read, in shadow beside the version in force (1.0.2) when
/// the calls were made: for a girl of 12 with knee pain it holds for a hip X-ray (a slipped
/// capital femoral epiphysis is possible at her age) where 1.0.2, which reads no age, rests;
/// so every recorded call is a change, and the report's hash moves with each one.
const CANDIDATE: &str = "1.1.1";

fn candidate() -> Candidate {
    Candidate {
        guideline: G.into(),
        version: CANDIDATE.parse().unwrap(),
    }
}

/// A decided call of a new visit.
async fn decide(w: &World, n: u32) {
    let instance = format!("6f1c5e2a-0b1d-4c55-9d43-1b2a7e0f{n:04}");
    let born = (time::OffsetDateTime::now_utc() - time::Duration::days(12 * 365)).date();
    let sent = body_of(&instance, &born.to_string());
    let ehr = support::actor(EHR, TENANT);
    let answered = call_under(w, &ehr, &sent, &format!("jti-{n}"), Some(CANDIDATE)).await;
    let Ok(Answer::Decided { shadow_differs, .. }) = answered else {
        panic!("decided");
    };
    assert_eq!(shadow_differs, Some(true));
}

fn ready(v: View) -> stride_app::impact_jobs::Kept {
    match v {
        View::Ready(k) => k,
        other => panic!("a report of a few decisions is ready within the wait: {other:?}"),
    }
}

const WAIT: Duration = Duration::from_secs(10);

#[tokio::test]
async fn a_report_over_part_of_the_log_is_computed_once_and_shown_until_asked_again() {
    let w = world().await;
    let jobs = jobs(&w);
    decide(&w, 1).await;
    decide(&w, 2).await;
    let mut recorded = 2;
    let auditor = staff("aud", "operators", true, &["audit.read"]);
    for (tenant, since_us) in [
        (None, None),
        (
            Some(stride_store::TenantId::parse(TENANT).unwrap()),
            Some(0),
        ),
    ] {
        let mut ask = Ask {
            candidate: candidate(),
            tenant,
            since_us,
            again: false,
        };
        assert!(!ask.signable());
        let first = ready(read(&jobs, &auditor, &ask, json!({}), WAIT).await.unwrap());
        assert_eq!(first.summary.decisions, recorded, "{ask:?}");

        // A decision recorded after it was computed is not in the report shown again ...
        recorded += 1;
        decide(&w, recorded as u32).await;
        let shown = ready(read(&jobs, &auditor, &ask, json!({}), WAIT).await.unwrap());
        assert_eq!(shown.summary.decisions, first.summary.decisions);
        assert_eq!(shown.computed_at, first.computed_at);
        // ... until it is computed again.
        ask.again = true;
        let again = ready(read(&jobs, &auditor, &ask, json!({}), WAIT).await.unwrap());
        assert_eq!(again.summary.decisions, first.summary.decisions + 1);
    }
    // Each view is an audit read of the auditor's, with what was asked.
    let views: Vec<_> = audit_log(w.store.as_ref(), "operators")
        .await
        .into_iter()
        .filter(|e| e.action == "audit-read" && e.details["view"] == "rules impact")
        .collect();
    assert_eq!(views.len(), 6);
}

#[tokio::test]
async fn a_clinics_staff_read_their_own_clinics_report_only_and_are_recorded() {
    let w = world().await;
    let jobs = jobs(&w);
    decide(&w, 1).await;
    let member = staff("ana", TENANT, false, &["audit.read"]);
    for tenant in [
        None,
        Some(stride_store::TenantId::parse("clinic-b").unwrap()),
    ] {
        let ask = Ask {
            candidate: candidate(),
            tenant,
            since_us: None,
            again: false,
        };
        let refused = read(&jobs, &member, &ask, json!({}), WAIT).await;
        assert!(
            matches!(refused, Err(GovernanceError::Forbidden)),
            "{ask:?}"
        );
    }
    let own = Ask {
        candidate: candidate(),
        tenant: Some(stride_store::TenantId::parse(TENANT).unwrap()),
        since_us: None,
        again: false,
    };
    assert!(own.signable());
    let kept = ready(
        read(&jobs, &member, &own, json!({"candidate": "x"}), WAIT)
            .await
            .unwrap(),
    );
    assert_eq!(kept.summary.decisions, 1);
    // The clinic's whole log is kept in the store: another replica's jobs show it at once.
    let other_replica = self::jobs(&w);
    let shown = ready(other_replica.view(&own, Duration::ZERO).await.unwrap());
    assert_eq!(shown.summary.impact_hash, kept.summary.impact_hash);
    let reads: Vec<_> = audit_log(w.store.as_ref(), TENANT)
        .await
        .into_iter()
        .filter(|e| e.action == "audit-read")
        .collect();
    assert_eq!(reads.len(), 1, "refusals read nothing and record no read");
    assert_eq!(reads[0].caller_subject.as_deref(), Some("ana"));
    assert_eq!(reads[0].details["query"], json!({"candidate": "x"}));
}

#[tokio::test]
async fn a_sign_off_waits_no_longer_than_its_bound_and_never_recomputes_a_kept_report() {
    let w = world().await;
    let jobs = jobs(&w);
    decide(&w, 1).await;
    let c = candidate();
    let signer = staff("ana", TENANT, false, &["guideline.approve"]);
    let clinic = stride_store::TenantId::parse(TENANT).unwrap();
    let now = impact_hash(w.store.as_ref(), &w.catalog, G, c.version, &clinic)
        .await
        .unwrap();
    let approve = |impact: &str| SignOffRequest {
        decision: "approve".into(),
        reason: None,
        impact: impact.into(),
    };

    // No report kept: its job starts, and a sign-off that may not wait is told to come back.
    let early = sign_off(&jobs, &signer, G, c.version, &approve(&now), Duration::ZERO).await;
    match early {
        Err(GovernanceError::Conflict(m)) => assert!(m.contains("being computed"), "{m}"),
        other => panic!("a report still being computed is a conflict: {other:?}"),
    }
    // Given the time, the report is computed, kept and signed off on.
    let s = sign_off(&jobs, &signer, G, c.version, &approve(&now), WAIT)
        .await
        .unwrap();
    assert_eq!(s.impact_hash, now);

    // A decision recorded since: the clinic's report now has another hash, but the kept one
    // stands until someone computes it again, so naming the new hash is refused ...
    decide(&w, 2).await;
    let later = impact_hash(w.store.as_ref(), &w.catalog, G, c.version, &clinic)
        .await
        .unwrap();
    assert_ne!(later, now);
    let ben = staff("ben", TENANT, false, &["guideline.approve"]);
    let refused = sign_off(&jobs, &ben, G, c.version, &approve(&later), WAIT).await;
    assert!(
        matches!(&refused, Err(GovernanceError::Conflict(m)) if m.contains("has this hash")),
        "{refused:?}"
    );
    // ... and accepted once the report is computed again and kept.
    let ask = Ask {
        candidate: c.clone(),
        tenant: Some(stride_store::TenantId::parse(TENANT).unwrap()),
        since_us: None,
        again: true,
    };
    let kept = ready(jobs.view(&ask, WAIT).await.unwrap());
    assert_eq!(kept.summary.impact_hash, later);
    let s = sign_off(&jobs, &ben, G, c.version, &approve(&later), WAIT)
        .await
        .unwrap();
    assert_eq!(s.impact_hash, later);
    let signed: Vec<_> = audit_log(w.store.as_ref(), TENANT)
        .await
        .into_iter()
        .filter(|e| e.action == "guideline-sign-off")
        .collect();
    assert_eq!(signed.len(), 2, "one entry per sign-off recorded");
    assert_eq!(signed[1].caller_subject.as_deref(), Some("ben"));
}

#[tokio::test]
async fn computed_again_is_the_log_as_it_is_now_even_after_a_job_nobody_saw_end() {
    let w = world().await;
    let jobs = jobs(&w);
    decide(&w, 1).await;
    let auditor = staff("aud", "operators", true, &["audit.read"]);
    let mut ask = Ask {
        candidate: candidate(),
        tenant: Some(stride_store::TenantId::parse(TENANT).unwrap()),
        since_us: Some(0),
        again: false,
    };
    // The first view does not wait: its job runs on, and nobody looks at its end.
    let first = read(&jobs, &auditor, &ask, json!({}), Duration::ZERO).await;
    assert!(matches!(first, Ok(View::Running { .. })), "{first:?}");
    tokio::time::sleep(Duration::from_secs(2)).await;
    decide(&w, 2).await;

    // "Compute it again" computes it again, not the job that ended unseen ...
    ask.again = true;
    let started = read(&jobs, &auditor, &ask, json!({}), Duration::ZERO).await;
    assert!(matches!(started, Ok(View::Running { .. })), "{started:?}");
    // ... and "Show it when done" shows that job, never the report kept before it.
    ask.again = false;
    loop {
        match read(&jobs, &auditor, &ask, json!({}), Duration::ZERO)
            .await
            .unwrap()
        {
            View::Running { .. } => tokio::time::sleep(Duration::from_millis(20)).await,
            View::Ready(k) => {
                assert_eq!(k.summary.decisions, 2, "the log as it is now");
                break;
            }
            View::Failed(e) => panic!("{e}"),
        }
    }
}
