//! The storage interface: the same suite runs against SQLite and PostgreSQL.

use std::sync::Arc;

use serde_json::json;
use stride_store::{AuditFacts, CarePlanStatus, NewCarePlan, PoolOptions, Store, StoreError};
use stride_tests::Backend;
use stride_tests::TestDb;
use time::OffsetDateTime;

async fn store() -> (TestDb, Arc<dyn Store>) {
    let db = TestDb::fresh().await;
    let store = stride_store::connect(&db.url, &PoolOptions::default())
        .await
        .expect("connect");
    store.migrate().await.expect("migrate");
    (db, store)
}

fn plan(red_flag: bool) -> NewCarePlan {
    NewCarePlan {
        id: uuid::Uuid::new_v4(),
        tenant: stride_store::TenantId::parse("clinic-a").unwrap(),
        patient_ref: stride_store::PatientRef::parse("Patient/p1").unwrap(),
        status: CarePlanStatus::Draft,
        rule_set_id: "medial-knee-pain-running".into(),
        rule_set_version: "1.0.0".into(),
        phase: "rest".into(),
        red_flag,
        resource: json!({"resourceType": "CarePlan", "status": "draft", "intent": "proposal"}),
        // Whole seconds: both backends keep at least that precision.
        created_at: OffsetDateTime::from_unix_timestamp(1_790_000_000).unwrap(),
        decision_key: None,
        patient: None,
    }
}

/// The plans a decision reads, in one query: the approved plan is the newest active one of
/// the guideline, the drafts are the patient's pending ones of that guideline with a key.
#[tokio::test]
async fn the_patients_plans_are_the_newest_approved_one_and_the_keyed_drafts_of_the_guideline() {
    let (_db, store) = store().await;
    let at = |s: i64| OffsetDateTime::from_unix_timestamp(1_790_000_000 + s).unwrap();
    let active = |s: i64| NewCarePlan {
        status: CarePlanStatus::Active,
        created_at: at(s),
        ..plan(false)
    };
    let (older, newer) = (active(0), active(60));
    for p in [&older, &newer] {
        store.insert_careplan(p).await.unwrap();
    }
    // Newer still, but a draft, or another guideline's: not the approved plan.
    store
        .insert_careplan(&NewCarePlan {
            created_at: at(120),
            ..plan(false)
        })
        .await
        .unwrap();
    let other = NewCarePlan {
        rule_set_id: "another-guideline".into(),
        ..active(180)
    };
    store.insert_careplan(&other).await.unwrap();
    // Drafts with a key: two of this guideline, one of another guideline's, one of another
    // patient's; the keyless draft above is never reused.
    let keyed = |key: &str, rule_set: &str, patient: &str| NewCarePlan {
        decision_key: Some(key.into()),
        rule_set_id: rule_set.into(),
        patient_ref: stride_store::PatientRef::parse(patient).unwrap(),
        ..plan(true)
    };
    let rest = keyed(
        "medial-knee-pain-running|1.0.2|rest",
        "medial-knee-pain-running",
        "Patient/p1",
    );
    let flag = keyed(
        "medial-knee-pain-running|1.0.2|flag",
        "medial-knee-pain-running",
        "Patient/p1",
    );
    for p in [
        &rest,
        &flag,
        &keyed(
            "another-guideline|1|rest",
            "another-guideline",
            "Patient/p1",
        ),
        &keyed(
            "medial-knee-pain-running|1.0.2|rest",
            "medial-knee-pain-running",
            "Patient/p2",
        ),
    ] {
        store.insert_careplan(p).await.unwrap();
    }
    let read = |tenant: &str| {
        let store = store.clone();
        let tenant = stride_store::TenantId::parse(tenant).unwrap();
        async move {
            store
                .patient_plans(
                    &tenant,
                    &stride_store::PatientRef::parse("Patient/p1").unwrap(),
                    "medial-knee-pain-running",
                )
                .await
                .unwrap()
        }
    };
    let mut plans = read("clinic-a").await;
    let approved = plans.approved.as_ref().map(|p| (p.id, p.phase.as_str()));
    assert_eq!(approved, Some((newer.id, newer.phase.as_str())));
    let mut drafts: Vec<_> = plans
        .drafts
        .iter()
        .map(|d| (d.decision_key.clone(), d.id))
        .collect();
    drafts.sort();
    let mut want = vec![
        ("medial-knee-pain-running|1.0.2|flag".to_owned(), flag.id),
        ("medial-knee-pain-running|1.0.2|rest".to_owned(), rest.id),
    ];
    want.sort();
    assert_eq!(drafts, want);
    // A draft is found by its key, once, with what was stored.
    let taken = plans
        .take_draft("medial-knee-pain-running|1.0.2|rest")
        .expect("the draft of that key");
    let resource: serde_json::Value = serde_json::from_str(&taken.resource).unwrap();
    assert_eq!((taken.id, resource), (rest.id, rest.resource.clone()));
    assert!(plans
        .take_draft("medial-knee-pain-running|1.0.2|rest")
        .is_none());
    assert!(plans.take_draft("another-guideline|1|rest").is_none());
    // Another tenant's patient of the same id has none.
    let theirs = read("clinic-b").await;
    assert!(theirs.approved.is_none() && theirs.drafts.is_empty());
}

#[tokio::test]
async fn a_pending_draft_is_found_by_patient_and_decision_key() {
    let (_db, store) = store().await;
    let key = "medial-knee-pain-running|1.0.1|rest|stop-running";
    let first = NewCarePlan {
        decision_key: Some(key.into()),
        ..plan(false)
    };
    store.insert_careplan(&first).await.unwrap();
    let found = store
        .pending_draft(
            &stride_store::TenantId::parse("clinic-a").unwrap(),
            &stride_store::PatientRef::parse("Patient/p1").unwrap(),
            key,
        )
        .await
        .unwrap()
        .expect("the pending draft is found by its key");
    assert_eq!(found.id, first.id);
    // Another key, patient or tenant finds nothing.
    for (t, p, k) in [
        ("clinic-a", "Patient/p1", "other"),
        ("clinic-a", "Patient/p2", key),
        ("clinic-b", "Patient/p1", key),
    ] {
        assert!(store
            .pending_draft(
                &stride_store::TenantId::parse(t).unwrap(),
                &stride_store::PatientRef::parse(p).unwrap(),
                k
            )
            .await
            .unwrap()
            .is_none());
    }
    // A draft without a key (made before keys existed) is never matched.
    store.insert_careplan(&plan(false)).await.unwrap();
    assert_eq!(
        store
            .pending_draft(
                &stride_store::TenantId::parse("clinic-a").unwrap(),
                &stride_store::PatientRef::parse("Patient/p1").unwrap(),
                key
            )
            .await
            .unwrap()
            .map(|p| p.id),
        Some(first.id)
    );
}

/// Issue 31: concurrent writers of a second pending draft for the same patient and decision
/// are refused as duplicates, and a refused writer that then looks for the draft finds the
/// one that was stored: the refusal is never answered before the winner is readable.
#[tokio::test]
async fn a_writer_refused_as_a_duplicate_finds_the_draft_that_was_stored() {
    let (_db, store) = store().await;
    let key = "medial-knee-pain-running|1.0.2|rest|stop-running";
    let writes = (0..16).map(|_| {
        let store = store.clone();
        async move {
            let p = NewCarePlan {
                decision_key: Some(key.into()),
                ..plan(false)
            };
            match store.insert_careplan(&p).await {
                Ok(()) => Some(p.id),
                Err(StoreError::Duplicate(_)) => {
                    let found = store
                        .pending_draft(
                            &stride_store::TenantId::parse("clinic-a").unwrap(),
                            &stride_store::PatientRef::parse("Patient/p1").unwrap(),
                            key,
                        )
                        .await
                        .unwrap();
                    assert!(found.is_some(), "refused, yet no draft is readable");
                    None
                }
                Err(e) => panic!("{e:?}"),
            }
        }
    });
    let stored: Vec<_> = futures_util::future::join_all(writes)
        .await
        .into_iter()
        .flatten()
        .collect();
    assert_eq!(stored.len(), 1, "one draft stored: {stored:?}");
    let found = store
        .pending_draft(
            &stride_store::TenantId::parse("clinic-a").unwrap(),
            &stride_store::PatientRef::parse("Patient/p1").unwrap(),
            key,
        )
        .await
        .unwrap()
        .map(|p| p.id);
    assert_eq!(found, stored.first().copied());
}

#[tokio::test]
async fn migrations_are_idempotent() {
    let (_db, store) = store().await;
    store.migrate().await.expect("second run is a no-op");
    store.ping().await.expect("ping");
}

#[tokio::test]
async fn a_careplan_round_trips() {
    let (_db, store) = store().await;
    let p = plan(true);
    store.insert_careplan(&p).await.unwrap();
    let got = store.careplan(p.id).await.unwrap();
    assert_eq!(got.id, p.id);
    assert_eq!(got.tenant, p.tenant);
    assert_eq!(got.patient_ref, p.patient_ref);
    assert_eq!(got.status, CarePlanStatus::Draft);
    assert_eq!(got.version, 1);
    assert!(got.red_flag);
    assert_eq!(got.resource, p.resource);
    assert_eq!(got.created_at, p.created_at);
    assert_eq!(got.updated_at, p.created_at);
}

#[tokio::test]
async fn a_missing_careplan_is_not_found() {
    let (_db, store) = store().await;
    assert!(matches!(
        store.careplan(uuid::Uuid::new_v4()).await,
        Err(StoreError::NotFound)
    ));
}

#[tokio::test]
async fn a_duplicate_id_is_refused_and_the_first_row_survives() {
    let (_db, store) = store().await;
    let p = plan(false);
    store.insert_careplan(&p).await.unwrap();
    let mut again = plan(true);
    again.id = p.id;
    assert!(store.insert_careplan(&again).await.is_err());
    assert!(
        !store.careplan(p.id).await.unwrap().red_flag,
        "nothing already stored is lost"
    );
}

#[tokio::test]
async fn every_status_reads_back_as_written() {
    let (_db, store) = store().await;
    for status in CarePlanStatus::ALL {
        let p = NewCarePlan {
            status,
            ..plan(false)
        };
        store.insert_careplan(&p).await.unwrap();
        assert_eq!(store.careplan(p.id).await.unwrap().status, status);
    }
}

#[tokio::test]
async fn who_the_plan_is_for_reads_back_as_written_and_may_be_unknown() {
    let (_db, store) = store().await;
    let who = json!({"name": "Ana Lima", "birthDate": "2013-04-01", "gender": "female"});
    let named = NewCarePlan {
        patient: Some(who.clone()),
        ..plan(false)
    };
    let unnamed = plan(false);
    for p in [&named, &unnamed] {
        store.insert_careplan(p).await.unwrap();
    }
    assert_eq!(store.careplan(named.id).await.unwrap().patient, Some(who));
    assert_eq!(store.careplan(unnamed.id).await.unwrap().patient, None);
}

#[tokio::test]
async fn an_unknown_status_is_refused_by_the_schema() {
    // The type cannot name one; a writer with the database's credentials can try.
    let (db, store) = store().await;
    let p = plan(false);
    store.insert_careplan(&p).await.unwrap();
    let sql = "UPDATE careplans SET status = 'approved-ish'";
    let refused = match db.backend {
        Backend::Sqlite => {
            let mut c = <sqlx::SqliteConnection as sqlx::Connection>::connect(&db.url)
                .await
                .unwrap();
            sqlx::query(sql).execute(&mut c).await.is_err()
        }
        Backend::Postgres => {
            let mut c = <sqlx::PgConnection as sqlx::Connection>::connect(&db.url)
                .await
                .unwrap();
            sqlx::query(sql).execute(&mut c).await.is_err()
        }
    };
    assert!(refused, "the schema took a status outside the vocabulary");
    assert_eq!(
        store.careplan(p.id).await.unwrap().status,
        CarePlanStatus::Draft
    );
}

#[tokio::test]
async fn a_vanished_database_is_unavailable_not_a_bug() {
    let (db, store) = store().await;
    db.destroy().await;
    let e = store.ping().await.unwrap_err();
    assert!(e.is_unavailable(), "{e:?}");
}

/// Readiness keeps a busy replica whose pool is empty for a moment ready only if the database
/// answered lately: an answer of any kind counts (not found is one), a call that never reached
/// the database does not.
#[tokio::test]
async fn the_guard_remembers_only_answers_from_the_database() {
    let window = std::time::Duration::from_secs(3600);
    let (_db, store) = store().await;
    let guarded = stride_store::Guarded::new(store.clone());
    assert!(
        !guarded.health().answered_within(window),
        "nothing asked yet"
    );
    let missing = guarded.careplan(uuid::Uuid::new_v4()).await.unwrap_err();
    assert!(matches!(missing, StoreError::NotFound), "{missing:?}");
    assert!(guarded.health().answered_within(window));
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    assert!(!guarded
        .health()
        .answered_within(std::time::Duration::from_millis(1)));

    let (db, store) = self::store().await;
    let guarded = stride_store::Guarded::new(store);
    db.destroy().await;
    let e = guarded.ping().await.unwrap_err();
    assert!(e.is_unavailable(), "{e:?}");
    let refused = guarded.ping().await.unwrap_err();
    assert!(matches!(refused, StoreError::Down), "{refused:?}");
    assert!(!guarded.health().answered_within(window), "no answer came");
}

/// A PostgreSQL server that answers "no connection slot free" (SQLSTATE 53300) is alive and
/// busy: load, which never marks the database down, as a pool waited out is. (On SQLite there
/// is no server with slots; its busy file is checked in the store's own tests.)
#[tokio::test]
async fn a_server_with_no_slot_free_is_busy_not_down() {
    let (db, _store) = store().await;
    let Backend::Postgres = db.backend else {
        return;
    };
    let role = format!("full_{}", uuid::Uuid::new_v4().simple());
    let mut admin = <sqlx::PgConnection as sqlx::Connection>::connect(&db.url)
        .await
        .unwrap();
    sqlx::query(&format!("CREATE ROLE {role} LOGIN CONNECTION LIMIT 0"))
        .execute(&mut admin)
        .await
        .unwrap();
    let mut url = url::Url::parse(&db.url).unwrap();
    url.set_username(&role).unwrap();
    let refused = <sqlx::PgConnection as sqlx::Connection>::connect(url.as_str())
        .await
        .unwrap_err();
    let e = StoreError::from(refused);
    assert!(e.is_overloaded() && !e.is_unavailable(), "{e:?}");
    sqlx::query(&format!("DROP ROLE {role}"))
        .execute(&mut admin)
        .await
        .unwrap();
}

fn audit_entry(n: i64) -> stride_store::NewAuditEntry {
    stride_store::NewAuditEntry {
        id: uuid::Uuid::new_v4(),
        recorded_us: 1_790_000_000_000_000 + n,
        action: stride_store::audit::Action::HookCall,
        outcome: "success".into(),
        facts: Some(AuditFacts::from_json(&json!({"records": [n]}))),
        details: json!({}),
        ..stride_store::NewAuditEntry::of(stride_store::TenantId::parse("clinic-a").unwrap())
    }
}

#[tokio::test]
async fn writes_abandoned_by_their_caller_leave_the_pool_and_the_chain_sound() {
    use futures_util::StreamExt;
    let (_db, store) = store().await;
    // Callers that give up at every possible moment (a client disconnecting mid-request).
    for i in 0..60u64 {
        let _ = tokio::time::timeout(
            std::time::Duration::from_micros(i * 50),
            store.append_audit(&audit_entry(i as i64)),
        )
        .await;
    }
    for i in 0..20 {
        store
            .append_audit(&audit_entry(1000 + i))
            .await
            .expect("the pool is still usable");
        assert!(store
            .remember_jti("iss", &format!("j{i}"), i64::MAX, 0)
            .await
            .unwrap());
    }
    let q = stride_store::AuditQuery::default();
    let mut check = stride_store::ChainCheck::default();
    let mut rows = store.audit_stream(&q, true);
    while let Some(r) = rows.next().await {
        check.push(&r.unwrap());
    }
    assert!(check.broken.is_none(), "{:?}", check.broken);
    assert!(check.entries >= 20);
}

#[tokio::test]
async fn unusual_numbers_and_characters_in_facts_do_not_break_the_chain() {
    use futures_util::StreamExt;
    let (_db, store) = store().await;
    let mut e = audit_entry(1);
    // Values a database's JSON type would rewrite (exponent form, negative zero) or refuse (NUL).
    e.facts = Some(AuditFacts::from_json(
        &json!({"records": [1e16, -0.0, 1.5e-7, 12345678901234567890u64, "nul\u{0}here", "ü"]}),
    ));
    store.append_audit(&e).await.unwrap();
    let q = stride_store::AuditQuery::default();
    let mut check = stride_store::ChainCheck::default();
    let mut rows = store.audit_stream(&q, true);
    while let Some(r) = rows.next().await {
        check.push(&r.unwrap());
    }
    assert_eq!(check.entries, 1);
    assert!(check.broken.is_none(), "{:?}", check.broken);
}

#[tokio::test]
async fn concurrent_writes_share_commits_and_a_failing_one_fails_alone() {
    use futures_util::StreamExt;
    let (_db, store) = store().await;
    let first = plan(false);
    store.insert_careplan(&first).await.unwrap();
    // Many writers at once, one of them bound to fail (a duplicate id) and one a replayed jti:
    // on SQLite they land in shared group commits; each still gets its own answer.
    let mut tasks = Vec::new();
    for i in 0..80i64 {
        let s = store.clone();
        tasks.push(tokio::spawn(async move {
            s.append_audit(&audit_entry(i)).await.map(|_| true)
        }));
    }
    let dup = {
        let s = store.clone();
        let mut again = plan(true);
        again.id = first.id;
        tokio::spawn(async move { s.insert_careplan(&again).await.map(|_| true) })
    };
    let jtis: Vec<_> = (0..2)
        .map(|_| {
            let s = store.clone();
            tokio::spawn(async move { s.remember_jti("iss", "same", i64::MAX, 0).await })
        })
        .collect();
    for t in tasks {
        assert!(t.await.unwrap().expect("every audit append is stored"));
    }
    assert!(dup.await.unwrap().is_err(), "the duplicate is refused");
    let mut fresh = 0;
    for j in jtis {
        fresh += j.await.unwrap().unwrap() as i32;
    }
    assert_eq!(fresh, 1, "exactly one of two identical jtis is new");
    // The refused duplicate took nothing with it: the first plan is intact, the chain whole.
    assert!(!store.careplan(first.id).await.unwrap().red_flag);
    let mut check = stride_store::ChainCheck::default();
    let q = stride_store::AuditQuery::default();
    let mut rows = store.audit_stream(&q, true);
    while let Some(r) = rows.next().await {
        check.push(&r.unwrap());
    }
    assert_eq!(check.entries, 80);
    assert!(check.broken.is_none(), "{:?}", check.broken);
}

fn hook_record(n: i64, careplan: NewCarePlan, card: uuid::Uuid) -> stride_store::HookRecord {
    let mut audit = audit_entry(n);
    audit.careplan_id = Some(careplan.id);
    stride_store::HookRecord {
        cards: vec![stride_store::NewCard {
            uuid: card,
            tenant: stride_store::TenantId::parse("clinic-a").unwrap(),
            service_id: "stride-medial-knee".into(),
            hook_instance: format!("instance-{n}"),
            decision_id: "phase".into(),
            careplan_id: Some(careplan.id),
            created_at: careplan.created_at,
            rule_set_id: Some("medial-knee-pain-running".into()),
            rule_set_version: Some("1.0.2".into()),
            user_ref: Some("Practitioner/1".into()),
            encounter: None,
            patient_ref: stride_store::PatientRef::parse("Patient/p1"),
        }],
        careplan: Some(careplan),
        audit,
        answer: Some(stride_store::HookAnswer {
            hook_instance: format!("instance-{n}"),
            tenant: stride_store::TenantId::parse("clinic-a").unwrap(),
            caller_issuer: "https://ehr.test".into(),
            fingerprint: format!("fingerprint-{n}"),
            response: format!("{{\"cards\": [{n}]}}"),
            created_at: time::OffsetDateTime::now_utc(),
        }),
    }
}

#[tokio::test]
async fn a_hook_instance_is_recorded_once_and_its_answer_kept() {
    let (_db, store) = store().await;
    let first = plan(false);
    store
        .record_hook(hook_record(7, first, uuid::Uuid::new_v4()))
        .await
        .unwrap();
    let kept = store.hook_answers("instance-7").await.unwrap().remove(0);
    assert_eq!(kept.response, "{\"cards\": [7]}");
    assert_eq!(
        (kept.tenant.as_str(), kept.caller_issuer.as_str()),
        ("clinic-a", "https://ehr.test")
    );
    assert!(store.hook_answers("instance-8").await.unwrap().is_empty());
    // The same hookInstance again (a retry racing past the lookup): nothing of it is stored.
    let again = plan(false);
    let again_id = again.id;
    assert!(store
        .record_hook(hook_record(7, again, uuid::Uuid::new_v4()))
        .await
        .is_err());
    assert!(matches!(
        store.careplan(again_id).await,
        Err(stride_store::StoreError::NotFound)
    ));
}

#[tokio::test]
async fn a_hook_record_that_fails_midway_leaves_nothing_and_the_others_chain_on() {
    use futures_util::StreamExt;
    let (_db, store) = store().await;
    let first = plan(false);
    let first_card = uuid::Uuid::new_v4();
    store
        .record_hook(hook_record(0, first.clone(), first_card))
        .await
        .unwrap();
    // Concurrent records (shared group commits on SQLite, where each is one batch of
    // statements): some fail at their CarePlan (an id already stored), some only at their card,
    // after their CarePlan row was written; those must take that row back with them.
    let mut tasks = Vec::new();
    for i in 1..=40i64 {
        let s = store.clone();
        let (plan, card, fails) = match i % 10 {
            3 => (
                NewCarePlan {
                    id: first.id,
                    ..plan(true)
                },
                uuid::Uuid::new_v4(),
                true,
            ),
            7 => (plan(true), first_card, true),
            _ => (plan(false), uuid::Uuid::new_v4(), false),
        };
        let id = plan.id;
        tasks.push(tokio::spawn(async move {
            let r = s.record_hook(hook_record(i, plan, card)).await;
            (id, fails, r)
        }));
    }
    let mut stored = 1;
    for t in tasks {
        let (id, fails, r) = t.await.unwrap();
        if fails {
            assert!(r.is_err(), "a record with a duplicate row is refused");
            if id != first.id {
                assert!(
                    matches!(store.careplan(id).await, Err(StoreError::NotFound)),
                    "the CarePlan of a record refused at its card is not kept"
                );
            }
        } else {
            r.expect("every sound record is stored");
            assert!(store.careplan(id).await.is_ok());
            stored += 1;
        }
    }
    assert!(!store.careplan(first.id).await.unwrap().red_flag);
    let mut check = stride_store::ChainCheck::default();
    let q = stride_store::AuditQuery::default();
    let mut rows = store.audit_stream(&q, true);
    while let Some(r) = rows.next().await {
        check.push(&r.unwrap());
    }
    assert_eq!(check.entries, stored);
    assert!(check.broken.is_none(), "{:?}", check.broken);
}

#[tokio::test]
async fn a_jti_claim_is_decided_at_once_and_durable_when_it_says_so() {
    let (db, store) = store().await;
    let first = store.claim_jti("iss", "j-1", i64::MAX, 0).await.unwrap();
    assert!(first.fresh);
    // Claimed but perhaps not yet committed: a replay is refused already.
    let replay = store.claim_jti("iss", "j-1", i64::MAX, 0).await.unwrap();
    assert!(
        !replay.fresh,
        "a replay is refused before the first claim is committed"
    );
    first.durable().await.expect("the claim commits");
    replay.durable().await.unwrap();
    // Committed means another connection to the database sees it.
    let other = stride_store::connect(&db.url, &PoolOptions::default())
        .await
        .unwrap();
    assert!(!other.remember_jti("iss", "j-1", i64::MAX, 0).await.unwrap());
    assert!(other.remember_jti("iss", "j-2", i64::MAX, 0).await.unwrap());
}

#[tokio::test]
async fn a_claim_is_durable_with_the_call_record_or_on_its_own_when_dropped() {
    let (db, store) = store().await;
    let other = stride_store::connect(&db.url, &PoolOptions::default())
        .await
        .unwrap();
    // Carried by the hook record: durable once the record is, seen from another connection.
    let mut claim = store
        .claim_jti("iss", "with-record", i64::MAX, 0)
        .await
        .unwrap();
    assert!(claim.fresh);
    let p = plan(false);
    store
        .record_hook_claimed(hook_record(1, p, uuid::Uuid::new_v4()), &mut claim)
        .await
        .unwrap();
    assert!(!other
        .remember_jti("iss", "with-record", i64::MAX, 0)
        .await
        .unwrap());
    let replay = store
        .claim_jti("iss", "with-record", i64::MAX, 0)
        .await
        .unwrap();
    assert!(!replay.fresh, "written: a replay finds it in the database");

    // A call refused after its token was accepted drops its claim: still refused as a replay
    // at once, and written before the next write of the same caller commits.
    let dropped = store
        .claim_jti("iss", "dropped", i64::MAX, 0)
        .await
        .unwrap();
    assert!(dropped.fresh);
    drop(dropped);
    assert!(
        !store
            .claim_jti("iss", "dropped", i64::MAX, 0)
            .await
            .unwrap()
            .fresh
    );
    store.append_audit(&audit_entry(2)).await.unwrap();
    assert!(!other
        .remember_jti("iss", "dropped", i64::MAX, 0)
        .await
        .unwrap());

    // SQLite: a record whose claim turns out a replay after all (another process wrote the
    // id meanwhile) fails whole rather than serve the call. (PostgreSQL commits a claim when
    // it is made: there the other use is the one refused.)
    if store.backend() == stride_store::Backend::Sqlite {
        let mut claim = store.claim_jti("iss", "raced", i64::MAX, 0).await.unwrap();
        assert!(other
            .remember_jti("iss", "raced", i64::MAX, 0)
            .await
            .unwrap());
        let p = plan(false);
        let id = p.id;
        let written = store
            .record_hook_claimed(hook_record(3, p, uuid::Uuid::new_v4()), &mut claim)
            .await;
        assert!(written.is_err());
        assert!(
            store.careplan(id).await.is_err(),
            "nothing of the call stored"
        );
    }
}

#[tokio::test]
async fn expired_token_ids_are_forgotten() {
    let (_db, store) = store().await;
    let now = 1_800_000_000;
    assert!(store
        .remember_jti("iss", "old", now + 10, now)
        .await
        .unwrap());
    assert!(!store
        .remember_jti("iss", "old", now + 10, now)
        .await
        .unwrap());
    // A minute on, the next claim purges ids whose tokens have expired, in the background.
    let later = now + 3600;
    assert!(store
        .remember_jti("iss", "new", later + 10, later)
        .await
        .unwrap());
    let mut forgotten = false;
    for _ in 0..200 {
        let again = store
            .claim_jti("iss", "old", later + 10, later)
            .await
            .unwrap();
        if again.fresh {
            forgotten = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    assert!(forgotten, "the expired id was purged");
    assert!(
        !store
            .remember_jti("iss", "new", later + 10, later)
            .await
            .unwrap(),
        "a live id is kept"
    );
}

/// A read of the log is as slow as its reader (an impact report decides every entry again;
/// an export goes out at the client's pace), and the database's statement timeout (5 s by
/// default) must not cut it short: the log is read in pages, each a short statement. With a
/// 300 ms timeout and a reader taking 2 ms an entry, 1 200 entries of 20 KB (three pages, more
/// than the socket holds, so one statement streaming them would still be running when the
/// timeout struck) come through whole and in order, in both orders, and a limit is kept.
#[tokio::test]
async fn a_slow_reader_gets_the_whole_log_in_order_whatever_the_statement_timeout() {
    use futures_util::StreamExt;
    let db = TestDb::fresh().await;
    let options = PoolOptions {
        statement_timeout: std::time::Duration::from_millis(300),
        ..PoolOptions::default()
    };
    let store = stride_store::connect(&db.url, &options)
        .await
        .expect("connect");
    store.migrate().await.expect("migrate");
    const N: usize = 1200;
    for i in 0..N {
        let e = stride_store::NewAuditEntry {
            id: uuid::Uuid::new_v4(),
            // Two tenants, and many entries sharing a time: the page boundaries fall inside both.
            recorded_us: 1_790_000_000_000_000 + (i / 7) as i64,
            action: stride_store::audit::Action::HookCall,
            outcome: "success".into(),
            details: json!({"n": i, "padding": "x".repeat(20_000)}),
            ..stride_store::NewAuditEntry::of(
                stride_store::TenantId::parse(if i % 3 == 0 { "clinic-b" } else { "clinic-a" })
                    .unwrap(),
            )
        };
        store.append_audit(&e).await.expect("append");
    }
    for chain_order in [true, false] {
        let q = stride_store::AuditQuery::default();
        let mut rows = store.audit_stream(&q, chain_order);
        let mut read = Vec::new();
        while let Some(row) = rows.next().await {
            let a = row.unwrap_or_else(|e| panic!("entry {} cut short: {e}", read.len()));
            tokio::time::sleep(std::time::Duration::from_millis(2)).await;
            read.push((a.entry.recorded_us, a.entry.tenant.clone(), a.seq));
        }
        assert_eq!(read.len(), N, "chain order {chain_order}");
        let mut expected = read.clone();
        if chain_order {
            expected.sort_by(|a, b| (&a.1, a.2).cmp(&(&b.1, b.2)));
        } else {
            expected.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)).then(b.2.cmp(&a.2)));
        }
        assert_eq!(read, expected, "chain order {chain_order}");
        expected.dedup();
        assert_eq!(expected.len(), N, "no entry twice");
    }
    // A limit gives the first entries of the order: the newest 700.
    let ids = |q: stride_store::AuditQuery| {
        let store = store.clone();
        async move {
            store
                .audit_stream(&q, false)
                .map(|r| r.expect("entry").entry.id)
                .collect::<Vec<_>>()
                .await
        }
    };
    let all = ids(stride_store::AuditQuery::default()).await;
    let newest = ids(stride_store::AuditQuery {
        limit: Some(700),
        ..stride_store::AuditQuery::default()
    })
    .await;
    assert_eq!(newest, all[..700]);
}

/// Two stores on one SQLite file are two processes writing one chain (the server and the
/// command line, say): whatever the other appended in between, each writer's next entry
/// follows it, and the chain stays whole, one entry per sequence number. A writer that kept
/// the heads its last group left across another's commit would place two entries at one
/// sequence number (tried on 2026-12-07 with heads carried between groups: it fails here).
/// Every group reads its tenants' heads again.
#[tokio::test]
async fn two_writers_on_one_sqlite_file_keep_one_whole_chain() {
    use futures_util::StreamExt;
    let (db, a) = store().await;
    let Backend::Sqlite = db.backend else {
        return;
    };
    let b = stride_store::connect(&db.url, &PoolOptions::default())
        .await
        .expect("connect a second store");
    // a, a, b, a (b committed since its last), b, b, a, …: 60 entries in all.
    let order = "aabaabbabbaaabab".repeat(4);
    for (i, who) in order.chars().take(60).enumerate() {
        let store = if who == 'a' { &a } else { &b };
        store.append_audit(&audit_entry(i as i64)).await.unwrap();
    }
    let mut check = stride_store::ChainCheck::default();
    let q = stride_store::AuditQuery::default();
    let mut rows = a.audit_stream(&q, true);
    let mut seqs = Vec::new();
    while let Some(r) = rows.next().await {
        let r = r.unwrap();
        seqs.push(r.seq);
        check.push(&r);
    }
    assert_eq!(check.entries, 60);
    assert!(check.broken.is_none(), "{:?}", check.broken);
    assert_eq!(seqs, (1..=60).collect::<Vec<i64>>());
}

/// PostgreSQL: the large values written on every hook call (an entry's facts, an answer, a
/// CarePlan) are compressed with lz4 where the server has it (pglz, its default, was the
/// server's largest single cost per call), and read back whole.
#[tokio::test]
async fn large_values_are_compressed_with_lz4_where_the_server_has_it() {
    let (db, store) = store().await;
    if db.backend != Backend::Postgres {
        return;
    }
    let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&db.url)
        .await
        .unwrap();
    // The server can iff it accepts lz4 as its default (PostgreSQL 14 and later, built with it).
    let can = sqlx::query("SET default_toast_compression = 'lz4'")
        .execute(&mut conn)
        .await
        .is_ok();
    let methods: Vec<(String, String)> = sqlx::query_as(
        "SELECT attrelid::regclass::text || '.' || attname, attcompression::text
           FROM pg_attribute
          WHERE (attrelid, attname) IN (('audit_entries'::regclass, 'facts'),
                ('hook_answers'::regclass, 'response'), ('careplans'::regclass, 'resource'))
          ORDER BY 1",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    let want = if can { "l" } else { "" };
    assert_eq!(
        methods,
        [
            ("audit_entries.facts".to_owned(), want.to_owned()),
            ("careplans.resource".to_owned(), want.to_owned()),
            ("hook_answers.response".to_owned(), want.to_owned()),
        ]
    );
    // A value well over the 2 KB TOAST threshold, stored compressed and read back whole.
    let mut p = plan(false);
    p.resource["note"] = json!([{"text": "walk-run ".repeat(2_000)}]);
    store.insert_careplan(&p).await.unwrap();
    assert_eq!(store.careplan(p.id).await.unwrap().resource, p.resource);
    if can {
        let (method,): (Option<String>,) =
            sqlx::query_as("SELECT pg_column_compression(resource) FROM careplans WHERE id = $1")
                .bind(p.id)
                .fetch_one(&mut conn)
                .await
                .unwrap();
        assert_eq!(method.as_deref(), Some("lz4"));
    }
}
