//! The decision log: every kind of event lands, the hash chain catches tampering, the service
//! role cannot edit (PostgreSQL), a failed audit write means 503 and no card, replay
//! reproduces decisions, exports stream.

use futures_util::StreamExt;
use serde_json::{json, Value as Json};
use stride_store::{AuditEntry, AuditFacts, AuditQuery, Backend};
use stride_tests::fhir::*;
use stride_tests::tokens::*;
use stride_tests::{spawn_app, TestApp};

const PV: &str = "/cds-services/running-knee-patient-view";

async fn entries(app: &TestApp) -> Vec<AuditEntry> {
    let q = AuditQuery::default();
    let mut s = app.store.audit_stream(&q, true);
    let mut out = Vec::new();
    while let Some(e) = s.next().await {
        out.push(e.unwrap());
    }
    out
}

async fn hook(app: &TestApp, onset: i64) -> Json {
    let body = patient_view(prefetch(
        &[condition("k", "M25.561", Some(onset))],
        &recovered_walker(),
    ));
    let res = app.cds(PV).json(&body).send().await.unwrap();
    assert_eq!(res.status(), 200);
    res.json().await.unwrap()
}

async fn get(app: &TestApp, path: &str) -> reqwest::Response {
    app.client
        .get(app.url(path))
        .bearer_auth(staff_token("audit.read careplan.read"))
        .send()
        .await
        .unwrap()
}

/// `GET /audit/verify`: answered 200, its report.
async fn verified(app: &TestApp) -> Json {
    let res = get(app, "/audit/verify").await;
    assert_eq!(res.status(), 200);
    res.json().await.unwrap()
}

async fn owner_exec(app: &TestApp, sql: &str) {
    match app.db.backend {
        Backend::Sqlite => {
            let url = app.db.url.clone();
            let mut c = <sqlx::SqliteConnection as sqlx::Connection>::connect(&url)
                .await
                .unwrap();
            sqlx::raw_sql(sql).execute(&mut c).await.unwrap();
        }
        Backend::Postgres => {
            let mut c = <sqlx::PgConnection as sqlx::Connection>::connect(&app.db.url)
                .await
                .unwrap();
            sqlx::raw_sql(sql).execute(&mut c).await.unwrap();
        }
    }
}

#[tokio::test]
async fn every_kind_of_event_lands_in_the_log() {
    let app = spawn_app().await;
    let cards = hook(&app, 20).await;
    let card = cards["cards"][0]["uuid"].as_str().unwrap().to_owned();
    let fb = json!({"feedback": [{"card": card, "outcome": "accepted", "outcomeTimestamp": "2026-01-01T00:00:00Z"}]});
    assert_eq!(
        app.cds(&format!("{PV}/feedback"))
            .json(&fb)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let plan_id = cards["cards"][0]["suggestions"][0]["actions"][0]["resource"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        get(&app, &format!("/fhir/CarePlan/{plan_id}"))
            .await
            .status(),
        200
    );
    assert_eq!(get(&app, "/fhir/CarePlan?patient=p1").await.status(), 200);
    assert_eq!(get(&app, "/audit?patient=p1").await.status(), 200);
    assert_eq!(
        app.client
            .post(app.url(PV))
            .json(&json!({}))
            .send()
            .await
            .unwrap()
            .status(),
        401
    );

    // Refusals are written off the request path: give the writer a moment.
    let mut log = entries(&app).await;
    for _ in 0..50 {
        if log.iter().any(|e| e.entry.action == "refused") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        log = entries(&app).await;
    }
    let actions: Vec<&str> = log.iter().map(|e| e.entry.action.as_str()).collect();
    for a in [
        "hook-call",
        "feedback",
        "careplan-read",
        "careplan-search",
        "audit-read",
        "refused",
    ] {
        assert!(actions.contains(&a), "{a} missing from {actions:?}");
    }
    let call = log.iter().find(|e| e.entry.action == "hook-call").unwrap();
    let e = &call.entry;
    assert_eq!(e.caller_issuer.as_deref(), Some(EHR));
    assert_eq!(e.caller_subject.as_deref(), Some("ehr-client"));
    assert_eq!(e.tenant, TENANT);
    assert_eq!(e.hook.as_deref(), Some("patient-view"));
    assert_eq!(
        e.patient_ref.as_ref().map(stride_store::PatientRef::as_str),
        Some("Patient/p1")
    );
    assert_eq!(
        e.rule_set_version.as_deref(),
        Some("1.0.2"),
        "the newest active version"
    );
    assert_eq!(e.rule_set_hash.as_ref().unwrap().len(), 64);
    assert_eq!(e.decision_ids, ["walk-run"]);
    assert_eq!(e.card_uuids, std::slice::from_ref(&card));
    assert_eq!(e.careplan_id.unwrap().to_string(), plan_id);
    assert!(
        e.facts.as_ref().unwrap().json()["records"]
            .as_array()
            .unwrap()
            .len()
            >= 16,
        "the facts themselves"
    );
    assert_eq!(call.input_digest.as_ref().unwrap().len(), 64);
    assert!(e.trace_id.is_some());
    let read = log
        .iter()
        .find(|e| e.entry.action == "careplan-read")
        .unwrap();
    assert_eq!(
        read.entry.caller_subject.as_deref(),
        Some("reviewer-1"),
        "the reader is recorded"
    );
    let refused = log.iter().find(|e| e.entry.action == "refused").unwrap();
    assert_eq!(refused.entry.details["reason"], "missing");
}

#[tokio::test]
async fn tampering_and_deletion_are_caught_by_verify() {
    let app = spawn_app().await;
    for onset in [3, 20, 40] {
        hook(&app, onset).await;
    }
    let res = verified(&app).await;
    assert_eq!(res["status"], "intact", "{res}");
    assert_eq!(
        res["entries"],
        stride_tests::guideline_count() + 3,
        "the version in force of each guideline at start, then three calls"
    );

    // The database owner edits a decision after the fact.
    let unlock = match app.db.backend {
        Backend::Sqlite => "DROP TRIGGER audit_no_update; DROP TRIGGER audit_no_delete;",
        Backend::Postgres => "",
    };
    let ids = match app.db.backend {
        Backend::Sqlite => r#"'["full-return"]'"#,
        Backend::Postgres => r#"'["full-return"]'::jsonb"#,
    };
    owner_exec(&app, &format!("{unlock} UPDATE audit_entries SET decision_ids = {ids} WHERE tenant = '{TENANT}' AND seq = 2;")).await;
    let res = verified(&app).await;
    assert_eq!(res["status"], "broken");
    assert_eq!(res["firstBrokenLink"]["seq"], 2);
    assert!(
        res["firstBrokenLink"]["reason"]
            .as_str()
            .unwrap()
            .contains("edited"),
        "{res}"
    );
    // The decision-log page of that entry says so too, without reading the whole chain.
    let q = stride_store::AuditQuery {
        tenant: Some(stride_store::TenantId::parse(TENANT).unwrap()),
        ..Default::default()
    };
    let edited = {
        let all: Vec<_> = app.store.audit_stream(&q, true).collect().await;
        all.into_iter()
            .map(Result::unwrap)
            .find(|a| a.seq == 2)
            .unwrap()
    };
    let html = app
        .get_text_as(
            &format!("/ui/audit/{}", edited.entry.id),
            &staff_token("audit.read"),
        )
        .await;
    assert!(
        html.contains("Not sealed: the entry does not match its hash (edited)"),
        "{html}"
    );
}

#[tokio::test]
async fn a_deleted_entry_breaks_the_chain() {
    let app = spawn_app().await;
    for onset in [3, 20, 40] {
        hook(&app, onset).await;
    }
    let unlock = if app.db.backend == Backend::Sqlite {
        "DROP TRIGGER audit_no_delete;"
    } else {
        ""
    };
    owner_exec(
        &app,
        &format!("{unlock} DELETE FROM audit_entries WHERE tenant = '{TENANT}' AND seq = 2;"),
    )
    .await;
    let res = verified(&app).await;
    assert_eq!(res["status"], "broken");
    assert!(
        res["firstBrokenLink"]["reason"]
            .as_str()
            .unwrap()
            .contains("missing"),
        "{res}"
    );
}

/// SQLite keeps a hook call's facts compressed (`sqlite::packed`); rows written as text before
/// still read. A chain of both verifies, replays read the facts back whole, and compressed
/// bytes edited in place break the chain at that entry.
#[tokio::test]
async fn facts_kept_compressed_read_back_whole_beside_text_and_edits_are_caught() {
    let app = spawn_app().await;
    if app.db.backend != Backend::Sqlite {
        return; // PostgreSQL compresses large values itself (lz4 TOAST).
    }
    hook(&app, 20).await;
    hook(&app, 21).await;
    let before = entries(&app).await;
    let facts: Vec<_> = before
        .iter()
        .filter_map(|e| e.entry.facts.clone())
        .collect();
    assert_eq!(facts.len(), 2);
    let kinds = |sql: &'static str| {
        let url = app.db.url.clone();
        async move {
            let mut c = <sqlx::SqliteConnection as sqlx::Connection>::connect(&url)
                .await
                .unwrap();
            sqlx::query_scalar::<_, String>(sql)
                .fetch_all(&mut c)
                .await
                .unwrap()
        }
    };
    let typeof_facts =
        "SELECT typeof(facts) FROM audit_entries WHERE facts IS NOT NULL ORDER BY seq";
    assert_eq!(kinds(typeof_facts).await, ["blob", "blob"]);
    // The first entry's facts as a row written before compression: the same text.
    let text = facts[0].text().replace('\'', "''");
    owner_exec(
        &app,
        &format!(
            "DROP TRIGGER audit_no_update; UPDATE audit_entries SET facts = '{text}' \
             WHERE facts IS NOT NULL AND seq = (SELECT MIN(seq) FROM audit_entries WHERE facts IS NOT NULL);"
        ),
    )
    .await;
    assert_eq!(kinds(typeof_facts).await, ["text", "blob"]);
    assert_eq!(verified(&app).await["status"], "intact");
    let after = entries(&app).await;
    let read: Vec<_> = after.iter().filter_map(|e| e.entry.facts.clone()).collect();
    assert_eq!(read, facts);
    // One byte of the second entry's compressed facts changed.
    owner_exec(
        &app,
        "UPDATE audit_entries SET facts = CAST(substr(facts, 1, length(facts) - 1) || X'00' AS BLOB) \
         WHERE seq = (SELECT MAX(seq) FROM audit_entries WHERE facts IS NOT NULL);",
    )
    .await;
    let res = verified(&app).await;
    assert_eq!(res["status"], "broken", "{res}");
}

#[tokio::test]
async fn facts_changed_under_their_digest_are_caught() {
    let app = spawn_app().await;
    hook(&app, 20).await;
    let (unlock, value) = match app.db.backend {
        Backend::Sqlite => ("DROP TRIGGER audit_no_update;", r#"'{"records":[]}'"#),
        Backend::Postgres => ("", r#"'{"records":[]}'::jsonb"#),
    };
    owner_exec(
        &app,
        &format!("{unlock} UPDATE audit_entries SET facts = {value} WHERE action = 'hook-call';"),
    )
    .await;
    let res = verified(&app).await;
    assert!(
        res["firstBrokenLink"]["reason"]
            .as_str()
            .unwrap()
            .contains("digest"),
        "{res}"
    );
}

/// An entry's action edited in the database is the broken link verify names (its hash covers
/// the name); one whose facts were edited into text that is not JSON is too, where before the
/// check stopped with a 500. An action this version does not write (a later version's, during
/// a rollout or a rollback) is read back as written, and its chain verifies.
#[tokio::test]
async fn an_edited_action_or_unreadable_facts_is_the_broken_link() {
    let app = spawn_app().await;
    hook(&app, 20).await;
    hook(&app, 21).await;
    // A later version's entry, written through the store as that version would.
    app.store
        .append_audit(&stride_store::NewAuditEntry {
            id: uuid::Uuid::new_v4(),
            recorded_us: stride::audit::now_us(),
            action: stride_store::audit::Action::Other("guideline-retired".into()),
            outcome: "success".into(),
            ..stride_store::NewAuditEntry::of(stride_store::TenantId::parse(TENANT).unwrap())
        })
        .await
        .unwrap();
    let res = verified(&app).await;
    assert_eq!(res["status"], "intact", "{res}");
    // The two calls' entries (the clinic's chain begins with the versions put in force).
    let calls: Vec<i64> = entries(&app)
        .await
        .iter()
        .filter(|e| e.entry.tenant == TENANT && e.entry.action == "hook-call")
        .map(|e| e.seq)
        .collect();
    let [first, second] = calls[..] else {
        panic!("two calls: {calls:?}")
    };
    let unlock = match app.db.backend {
        Backend::Sqlite => "DROP TRIGGER audit_no_update;",
        Backend::Postgres => "",
    };
    owner_exec(
        &app,
        &format!("{unlock} UPDATE audit_entries SET action = 'hook-retry' WHERE tenant = '{TENANT}' AND seq = {first};"),
    )
    .await;
    let res = verified(&app).await;
    assert_eq!(res["status"], "broken", "{res}");
    assert_eq!(res["firstBrokenLink"]["seq"], first, "{res}");
    if app.db.backend == Backend::Sqlite {
        // Facts are JSONB on PostgreSQL, which refuses text that is not JSON.
        owner_exec(
            &app,
            &format!("UPDATE audit_entries SET action = 'hook-call' WHERE tenant = '{TENANT}' AND seq = {first}; UPDATE audit_entries SET facts = 'not json' WHERE tenant = '{TENANT}' AND seq = {second};"),
        )
        .await;
        let res = verified(&app).await;
        assert_eq!(res["firstBrokenLink"]["seq"], second, "{res}");
        let reason = res["firstBrokenLink"]["reason"].as_str().unwrap();
        assert!(reason.contains("facts"), "{res}");
        assert!(
            !res.to_string().contains("not json"),
            "the edit is not quoted: {res}"
        );
    }
}

#[tokio::test]
async fn the_database_refuses_edits_by_the_service() {
    let app = spawn_app().await;
    hook(&app, 3).await;
    match app.db.backend {
        Backend::Sqlite => {
            // The append-only triggers refuse an UPDATE or DELETE from any connection.
            let mut c = <sqlx::SqliteConnection as sqlx::Connection>::connect(&app.db.url)
                .await
                .unwrap();
            assert!(sqlx::query("UPDATE audit_entries SET outcome = 'x'")
                .execute(&mut c)
                .await
                .is_err());
            assert!(sqlx::query("DELETE FROM audit_entries")
                .execute(&mut c)
                .await
                .is_err());
        }
        Backend::Postgres => {
            // A login role in stride_service, as a deployment runs the service.
            let role = format!("svc_{}", uuid::Uuid::new_v4().simple());
            owner_exec(
                &app,
                &format!("CREATE ROLE {role} LOGIN IN ROLE stride_service;"),
            )
            .await;
            let (base, db) = app.db.url.rsplit_once('/').unwrap();
            let base = base.replace("postgres@", &format!("{role}@"));
            let mut c = <sqlx::PgConnection as sqlx::Connection>::connect(&format!("{base}/{db}"))
                .await
                .unwrap();
            assert_eq!(
                sqlx::query_scalar::<_, i64>("SELECT count(*) FROM audit_entries")
                    .fetch_one(&mut c)
                    .await
                    .unwrap(),
                stride_tests::guideline_count() as i64 + 1,
                "the version in force of each guideline at start, and the call"
            );
            for sql in [
                "UPDATE audit_entries SET outcome = 'x'",
                "DELETE FROM audit_entries",
                "TRUNCATE audit_entries",
            ] {
                let e = sqlx::query(sql)
                    .execute(&mut c)
                    .await
                    .unwrap_err()
                    .to_string();
                assert!(e.contains("permission denied"), "{sql}: {e}");
            }
        }
    }
    let res = verified(&app).await;
    assert_eq!(res["status"], "intact");
}

#[tokio::test]
async fn a_failed_audit_write_answers_503_and_leaves_nothing_behind() {
    let app = spawn_app().await;
    let sabotage = match app.db.backend {
        Backend::Sqlite => "CREATE TRIGGER sabotage BEFORE INSERT ON audit_entries BEGIN SELECT RAISE(ABORT, 'disk full'); END;",
        Backend::Postgres => "CREATE FUNCTION sabotage() RETURNS trigger AS $$ BEGIN RAISE EXCEPTION 'disk full'; END $$ LANGUAGE plpgsql;
                              CREATE TRIGGER sabotage BEFORE INSERT ON audit_entries FOR EACH ROW EXECUTE FUNCTION sabotage();",
    };
    owner_exec(&app, sabotage).await;
    let body = patient_view(prefetch(&[condition("k", "M25.561", Some(3))], &[]));
    let res = app.cds(PV).json(&body).send().await.unwrap();
    assert_eq!(res.status(), 503);
    let out: Json = res.json().await.unwrap();
    assert_eq!(out["resourceType"], "OperationOutcome");
    assert!(out.get("cards").is_none());
    assert_eq!(
        stride_tests::stored_plans(&app).await,
        0,
        "the CarePlan was rolled back with the audit entry"
    );
}

#[tokio::test]
async fn replay_reproduces_the_decision_and_shows_another_versions_view() {
    let app = spawn_app().await;
    hook(&app, 40).await;
    let call = entries(&app)
        .await
        .into_iter()
        .find(|e| e.entry.action == "hook-call")
        .unwrap();
    let res = get(&app, &format!("/audit/{}/replay", call.entry.id)).await;
    assert_eq!(res.status(), 200);
    let r: Json = res.json().await.unwrap();
    assert_eq!(r["identical"], true, "{r}");
    assert_eq!(r["sameRuleSetContent"], true);
    assert_eq!(r["replayed"], json!(call.entry.decision_ids));
    let res = get(
        &app,
        &format!("/audit/{}/replay?version=9.9.9", call.entry.id),
    )
    .await;
    assert_eq!(res.status(), 400, "an unknown version is said, not guessed");
    // Another version's view of the same stored facts: decided by that version, said so.
    let res = get(
        &app,
        &format!("/audit/{}/replay?version=1.0.0", call.entry.id),
    )
    .await;
    assert_eq!(res.status(), 200);
    let other: Json = res.json().await.unwrap();
    assert_eq!(other["recordedVersion"], "1.0.2", "{other}");
    assert_eq!(other["replayedVersion"], "1.0.0", "{other}");
    assert_eq!(other["sameRuleSetContent"], false, "{other}");
    assert_eq!(other["recorded"], json!(call.entry.decision_ids));
    let replayed = other["replayed"].as_array().unwrap();
    assert!(!replayed.is_empty(), "{other}");
    assert_eq!(
        other["identical"],
        json!(other["replayed"] == other["recorded"]),
        "{other}"
    );
}

#[tokio::test]
async fn exports_stream_ndjson_and_fhir_bundles_filtered_by_patient_and_decision() {
    let app = spawn_app().await;
    hook(&app, 3).await;
    hook(&app, 20).await;
    // A patient that is no FHIR reference is a bad filter, not an empty log, on every search
    // that takes one (and the value is not quoted back).
    for path in [
        "/audit?patient=p%201",
        "/fhir/CarePlan?patient=Group/g",
        "/ui/audit?patient=p%27--",
    ] {
        let res = get(&app, path).await;
        assert_eq!(res.status(), 400, "{path}");
        let body = res.text().await.unwrap();
        assert!(
            body.contains("patient: a Patient reference"),
            "{path}: {body}"
        );
        assert!(
            !body.contains("Group/g") && !body.contains("p'--"),
            "{path}: {body}"
        );
    }
    let ndjson = get(&app, "/audit?patient=Patient/p1").await;
    assert_eq!(ndjson.headers()["content-type"], "application/x-ndjson");
    let text = ndjson.text().await.unwrap();
    let lines: Vec<Json> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let calls = lines.iter().filter(|l| l["action"] == "hook-call").count();
    assert_eq!(calls, 2, "the two hook calls of this patient");
    assert!(
        lines.iter().any(|l| l["action"] == "audit-read"),
        "this very read is logged first, and about this patient"
    );
    assert!(lines.iter().all(|l| l["patient"] == "Patient/p1"));
    let walk: Vec<Json> = get(&app, "/audit?decision=walk-run")
        .await
        .text()
        .await
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(walk.len(), 1);
    assert_eq!(walk[0]["decisionIds"], json!(["walk-run"]));
    let bundle: Json = get(&app, "/audit?_format=bundle&decision=rest")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(bundle["resourceType"], "Bundle");
    assert_eq!(bundle["entry"][0]["resource"]["resourceType"], "AuditEvent");
    let none: Json = get(&app, "/audit?_format=bundle&decision=full-return")
        .await
        .json()
        .await
        .unwrap();
    assert!(none.get("entry").is_none());
    // Auditors need the audit.read scope.
    let res = app
        .client
        .get(app.url("/audit"))
        .bearer_auth(staff_token("careplan.read"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
}

#[tokio::test]
async fn without_migrating_the_service_refuses_a_schema_that_is_not_current() {
    let db = stride_tests::TestDb::fresh().await;
    let mut env = stride_tests::base_env(&db);
    env.push(("STRIDE_MIGRATE_ON_START".into(), "false".into()));
    let settings = stride::config::Settings::from_sources(None, &env).unwrap();
    let err = stride::startup::Application::build(settings)
        .await
        .err()
        .expect("refused");
    assert!(err.to_string().contains("run `stride migrate`"), "{err}");
}

#[tokio::test]
async fn the_service_runs_as_the_stride_service_role_when_the_owner_migrates() {
    let owner = spawn_app().await; // migrates as the owner
    if owner.db.backend != Backend::Postgres {
        return; // the role is PostgreSQL's; SQLite has no roles
    }
    let mut env = service_role(&owner).await;
    env.push(("STRIDE_MIGRATE_ON_START".into(), "false".into()));
    let settings = stride::config::Settings::from_sources(None, &env).unwrap();
    let app = stride::startup::Application::build(settings)
        .await
        .expect("starts as the service role");
    let port = app.port();
    tokio::spawn(app.run_until_stopped());
    let url = format!("http://127.0.0.1:{port}{PV}");
    let body = patient_view(prefetch(&[condition("k", "M25.561", Some(3))], &[]));
    let res = owner
        .client
        .post(&url)
        .bearer_auth(cds_token(PV))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "{}", res.text().await.unwrap());
    let res: Json = owner
        .client
        .get(format!("http://127.0.0.1:{port}/audit/verify"))
        .bearer_auth(staff_token("audit.read"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(res["status"], "intact");
}

/// The owner's database, and the same database as a fresh login role in stride_service.
async fn service_role(owner: &TestApp) -> Vec<(String, String)> {
    let role = format!("svc_{}", uuid::Uuid::new_v4().simple());
    owner_exec(
        owner,
        &format!("CREATE ROLE {role} LOGIN IN ROLE stride_service;"),
    )
    .await;
    let (base, name) = owner.db.url.rsplit_once('/').unwrap();
    let service_url = format!("{}/{name}", base.replace("postgres@", &format!("{role}@")));
    let mut env: Vec<(String, String)> = owner
        .env
        .iter()
        .filter(|(k, _)| k != "STRIDE_DATABASE_URL")
        .cloned()
        .collect();
    env.push(("STRIDE_DATABASE_URL".into(), service_url));
    env
}

#[tokio::test]
async fn an_auditor_verifies_with_the_service_roles_credentials_and_no_rule_sets() {
    let owner = spawn_app().await;
    hook(&owner, 3).await;
    let mut env = if owner.db.backend == Backend::Postgres {
        service_role(&owner).await
    } else {
        owner.env.clone()
    };
    env.retain(|(k, _)| k != "STRIDE_GUIDELINES_DIR");
    env.push(("STRIDE_GUIDELINES_DIR".into(), "/no/such/folder".into()));
    let settings = stride::config::Settings::from_sources(None, &env).unwrap();
    let verify = stride::cli::AuditCommand::Verify {
        anchor: None,
        keys: None,
    };
    let code = stride::audit_cmd::run(verify, settings).await;
    assert_eq!(code, std::process::ExitCode::SUCCESS);
}

#[tokio::test]
async fn a_service_role_finds_its_partitions_and_is_told_how_to_migrate() {
    let owner = spawn_app().await;
    if owner.db.backend != Backend::Postgres {
        return; // roles and partitions are PostgreSQL's
    }
    let env = service_role(&owner).await;
    // Left at the default STRIDE_MIGRATE_ON_START=true, the start names the fix.
    let settings = stride::config::Settings::from_sources(None, &env).unwrap();
    let err = stride::startup::Application::build(settings)
        .await
        .err()
        .expect("a service role may not migrate");
    let text = err.to_string();
    assert!(
        text.contains("STRIDE_MIGRATE_ON_START=false") && text.contains("stride migrate"),
        "{text}"
    );
    // The owner made the partitions: the service role's upkeep finds them, wants nothing.
    let url = &env
        .iter()
        .find(|(k, _)| k == "STRIDE_DATABASE_URL")
        .unwrap()
        .1;
    let service = stride_store::connect(url, &Default::default())
        .await
        .unwrap();
    assert_eq!(service.maintain().await, Vec::<String>::new());
    // Without next month's partition, its upkeep says which one the next writes need.
    let next = time::OffsetDateTime::now_utc()
        .date()
        .replace_day(1)
        .unwrap()
        + time::Duration::days(32);
    let name = format!("audit_entries_y{}m{:02}", next.year(), next.month() as u8);
    owner_exec(&owner, &format!("DROP TABLE {name};")).await;
    assert_eq!(service.maintain().await, vec![name.clone()]);
    // Two owners' replicas restoring it at once: both succeed, neither races the other.
    let a = stride_store::connect(&owner.db.url, &Default::default())
        .await
        .unwrap();
    let b = stride_store::connect(&owner.db.url, &Default::default())
        .await
        .unwrap();
    let (ra, rb) = tokio::join!(a.maintain(), b.maintain());
    assert!(ra.is_empty() && rb.is_empty(), "{ra:?} {rb:?}");
    assert!(service.maintain().await.is_empty());
}

#[tokio::test]
async fn retention_drops_old_months_and_the_chain_still_verifies() {
    let app = spawn_app().await;
    let cutoff = time::macros::date!(2025 - 06 - 01);
    if app.db.backend != Backend::Postgres {
        let e = app.store.drop_audit_before(cutoff).await.unwrap_err();
        assert!(
            e.to_string().contains("PostgreSQL only"),
            "SQLite keeps every entry: {e}"
        );
        return;
    }
    owner_exec(&app, "CREATE TABLE audit_entries_y2025m01 PARTITION OF audit_entries FOR VALUES FROM ('2025-01-01') TO ('2025-02-01');").await;
    let jan_2025_us = 1_736_000_000_000_000i64; // 2025-01-04
                                                // A chain of its own, begun in January 2025 (the clinic's chain began at this start).
    const OLD: &str = "clinic-archive";
    let entry = |recorded_us: i64| stride_store::NewAuditEntry {
        id: uuid::Uuid::new_v4(),
        recorded_us,
        action: stride_store::audit::Action::HookCall,
        outcome: "success".into(),
        facts: Some(AuditFacts::from_json(&json!({"records": []}))),
        details: json!({}),
        ..stride_store::NewAuditEntry::of(stride_store::TenantId::parse(OLD).unwrap())
    };
    for i in 0..3 {
        let e = stride_store::NewAuditEntry {
            recorded_us: jan_2025_us + i,
            ..entry(0)
        };
        app.store.append_audit(&e).await.unwrap();
    }
    for _ in 0..2 {
        let now = stride::audit::now_us();
        app.store.append_audit(&entry(now)).await.unwrap();
    }
    // Its chain, as an all-tenants auditor (the CLI) checks it.
    let verify = || async {
        let q = AuditQuery {
            tenant: Some(stride_store::TenantId::parse(OLD).unwrap()),
            ..Default::default()
        };
        let check = stride_app::decision_log::check_chain(app.store.as_ref(), &q, None, &[])
            .await
            .unwrap();
        stride_app::decision_log::report(&check)
    };
    let before = verify().await;
    assert_eq!(before["status"], "intact", "{before}");
    assert_eq!(before["entries"], 5);

    let dropped = app.store.drop_audit_before(cutoff).await.unwrap();
    assert_eq!(dropped, ["audit_entries_y2025m01"]);
    let log = entries(&app).await;
    assert!(
        log.iter().all(|e| e.entry.recorded_us > jan_2025_us + 10),
        "the old month is gone"
    );
    let checkpoint = log
        .iter()
        .find(|e| e.entry.action == "retention-checkpoint")
        .expect("a checkpoint in the chain");
    assert_eq!(checkpoint.entry.details["lastSeq"], 3);

    let after = verify().await;
    assert_eq!(after["status"], "intact", "{after}");
    // The cut chain still catches an edit.
    owner_exec(
        &app,
        &format!(
            "UPDATE audit_entries SET outcome = 'refused' WHERE tenant = '{OLD}' AND seq = 5;"
        ),
    )
    .await;
    let edited = verify().await;
    assert_eq!(edited["status"], "broken", "{edited}");
}

/// A key file with a fresh signing key, in the app's own folder.
fn key_file(dir: &std::path::Path, kid: &str) -> String {
    let path = dir.join(format!("audit-keys-{kid}.json"));
    std::fs::write(
        &path,
        stride_store::seal::AuditKeys::generate(kid, None).unwrap(),
    )
    .unwrap();
    path.display().to_string()
}

async fn cli(app: &TestApp, command: stride::cli::AuditCommand) -> std::process::ExitCode {
    let settings = stride::config::Settings::from_sources(None, &app.env).unwrap();
    stride::audit_cmd::run(command, settings).await
}

fn verify_with(anchor: &std::path::Path) -> stride::cli::AuditCommand {
    stride::cli::AuditCommand::Verify {
        anchor: Some(anchor.to_path_buf()),
        keys: None,
    }
}

/// Rewrite entry `seq` of the tenant's chain with `edit` and recompute its hash and every
/// hash after it, as a database writer without the key would; seals are dropped.
async fn rechain(app: &TestApp, from_seq: i64, edit: impl Fn(&mut stride_store::NewAuditEntry)) {
    let q = AuditQuery {
        tenant: Some(stride_store::TenantId::parse(TENANT).unwrap()),
        ..Default::default()
    };
    let all: Vec<AuditEntry> = app
        .store
        .audit_stream(&q, true)
        .map(Result::unwrap)
        .collect()
        .await;
    let unlock = if app.db.backend == Backend::Sqlite {
        "DROP TRIGGER IF EXISTS audit_no_update; DROP TRIGGER IF EXISTS audit_no_delete;"
    } else {
        ""
    };
    let mut sql = unlock.to_owned();
    let mut prev = all
        .iter()
        .find(|a| a.seq == from_seq - 1)
        .map_or(stride_store::audit::GENESIS.to_owned(), |a| a.hash.clone());
    for a in all.iter().filter(|a| a.seq >= from_seq) {
        let mut e = a.entry.clone();
        if a.seq == from_seq {
            edit(&mut e);
        }
        let hash = stride_store::audit::entry_hash(&e, a.seq, a.input_digest.as_deref(), &prev);
        let ids = serde_json::to_string(&e.decision_ids).unwrap();
        let ids = match app.db.backend {
            Backend::Sqlite => format!("'{ids}'"),
            Backend::Postgres => format!("'{ids}'::jsonb"),
        };
        sql.push_str(&format!(
            "UPDATE audit_entries SET decision_ids = {ids}, prev_hash = '{prev}', hash = '{hash}', seal = NULL, seal_kid = NULL WHERE tenant = '{TENANT}' AND seq = {};",
            a.seq
        ));
        prev = hash;
    }
    owner_exec(app, &sql).await;
}

#[tokio::test]
async fn sealed_entries_and_outside_checkpoints_catch_a_database_writer() {
    let dir = tempfile::tempdir().unwrap();
    let keys = key_file(dir.path(), "k1");
    let app = stride_tests::spawn_app_with(&[("STRIDE_AUDIT_KEY_FILE", &keys)]).await;
    for onset in [3, 20, 40] {
        hook(&app, onset).await;
    }
    let res = verified(&app).await;
    assert_eq!(res["status"], "intact", "{res}");
    let start = stride_tests::guideline_count() as i64;
    assert_eq!(
        res["sealed"],
        start + 3,
        "the versions in force and three calls: {res}"
    );

    let anchor = dir.path().join("anchor.ndjson");
    let anchored = stride::cli::AuditCommand::Anchor {
        out: Some(anchor.clone()),
    };
    assert_eq!(cli(&app, anchored).await, std::process::ExitCode::SUCCESS);
    let lines = std::fs::read_to_string(&anchor).unwrap();
    let cp: Json = serde_json::from_str(lines.lines().last().unwrap()).unwrap();
    // The version in force, three hook calls and the verify just made (itself audited).
    assert_eq!(
        (cp["tenant"].as_str(), cp["seq"].as_i64()),
        (Some(TENANT), Some(start + 4))
    );
    assert_eq!(
        cli(&app, verify_with(&anchor)).await,
        std::process::ExitCode::SUCCESS
    );

    // A re-chained log: entry 2's decision rewritten and every hash after it recomputed.
    // The hashes agree again; the seals do not.
    rechain(&app, 2, |e| e.decision_ids = vec!["full-return".into()]).await;
    let res = verified(&app).await;
    assert_eq!(res["status"], "broken", "{res}");
    assert_eq!(res["firstBrokenLink"]["seq"], 2);
    assert!(
        res["firstBrokenLink"]["reason"]
            .as_str()
            .unwrap()
            .contains("not sealed, after sealed entries"),
        "{res}"
    );
    // Even with every seal stripped (the chain looks unsealed from the start), the checkpoint
    // kept outside the database names the hash entry 5 had.
    rechain(&app, 1, |e| e.details["note"] = json!("rewritten")).await;
    assert_eq!(
        cli(&app, verify_with(&anchor)).await,
        std::process::ExitCode::FAILURE
    );
}

#[tokio::test]
async fn a_deleted_tail_shows_against_the_checkpoints_outside_the_database() {
    let dir = tempfile::tempdir().unwrap();
    let keys = key_file(dir.path(), "k1");
    let app = stride_tests::spawn_app_with(&[("STRIDE_AUDIT_KEY_FILE", &keys)]).await;
    for onset in [3, 20, 40] {
        hook(&app, onset).await;
    }
    // The versions in force, then the three calls: the last is the tail.
    let tail = stride_tests::guideline_count() + 3;
    let anchor = dir.path().join("anchor.ndjson");
    let anchored = stride::cli::AuditCommand::Anchor {
        out: Some(anchor.clone()),
    };
    assert_eq!(cli(&app, anchored).await, std::process::ExitCode::SUCCESS);
    let unlock = if app.db.backend == Backend::Sqlite {
        "DROP TRIGGER audit_no_delete;"
    } else {
        ""
    };
    owner_exec(
        &app,
        &format!("{unlock} DELETE FROM audit_entries WHERE tenant = '{TENANT}' AND seq = {tail};"),
    )
    .await;
    // What is left is a consistent, sealed chain of three …
    let res = verified(&app).await;
    assert_eq!(res["status"], "intact", "{res}");
    // … that the checkpoint outside the database says is missing its tail.
    assert_eq!(
        cli(&app, verify_with(&anchor)).await,
        std::process::ExitCode::FAILURE
    );
    // A checkpoint file someone edited does not verify either.
    let forged = std::fs::read_to_string(&anchor)
        .unwrap()
        .replace(&format!("\"seq\":{tail}"), &format!("\"seq\":{}", tail - 1));
    std::fs::write(&anchor, forged).unwrap();
    assert_eq!(
        cli(&app, verify_with(&anchor)).await,
        std::process::ExitCode::FAILURE
    );
}

#[tokio::test]
async fn a_rotated_key_keeps_old_seals_verifiable_and_an_auditor_needs_only_public_keys() {
    let dir = tempfile::tempdir().unwrap();
    let old = key_file(dir.path(), "k1");
    let mut app = stride_tests::spawn_app_with(&[("STRIDE_AUDIT_KEY_FILE", &old)]).await;
    hook(&app, 3).await;
    // Rotation: a new signing key, the old public key kept.
    let previous = stride_store::seal::AuditKeys::load(std::path::Path::new(&old)).unwrap();
    let rotated = stride_store::seal::AuditKeys::generate("k2", Some(&previous)).unwrap();
    std::fs::write(&old, rotated).unwrap();
    app.restart().await;
    hook(&app, 20).await;
    let q = AuditQuery::default();
    let kids: Vec<String> = app
        .store
        .audit_stream(&q, true)
        .map(|a| a.unwrap().seal.unwrap().kid)
        .collect()
        .await;
    // The versions in force and the first call under k1; the versions are unchanged at the
    // restart (no new entry), the second call under k2.
    let mut want = vec!["k1"; stride_tests::guideline_count() + 1];
    want.push("k2");
    assert_eq!(kids, want);
    let public = dir.path().join("public.json");
    let keys = stride_store::seal::AuditKeys::load(std::path::Path::new(&old)).unwrap();
    std::fs::write(&public, keys.public_only()).unwrap();
    let verify = stride::cli::AuditCommand::Verify {
        anchor: None,
        keys: Some(public),
    };
    assert_eq!(cli(&app, verify).await, std::process::ExitCode::SUCCESS);
}

/// Issue 31, "the auditor who trusts nothing": with keys and an anchor file in use, someone
/// who can write the database strips every seal, deletes the oldest entries of the clinic's
/// chain (its first decision among them) and appends an unsealed retention checkpoint naming
/// the last entry deleted, so that the rest looks like a chain retention cut. Verify calls it
/// broken: that checkpoint is not sealed by the service (and on SQLite, where retention never
/// runs, none may exist), and the anchor file holds a checkpoint of a deleted entry.
#[tokio::test]
async fn deleting_the_oldest_entries_behind_a_forged_retention_checkpoint_is_caught() {
    let dir = tempfile::tempdir().unwrap();
    let keys = key_file(dir.path(), "k1");
    let app = stride_tests::spawn_app_with(&[("STRIDE_AUDIT_KEY_FILE", &keys)]).await;
    let anchor = dir.path().join("anchor.ndjson");
    let anchored = || stride::cli::AuditCommand::Anchor {
        out: Some(anchor.clone()),
    };
    // The first decision, cemented in the anchor file; then two more and a second anchor.
    hook(&app, 3).await;
    let first = stride_tests::guideline_count() as i64 + 1;
    assert_eq!(cli(&app, anchored()).await, std::process::ExitCode::SUCCESS);
    for onset in [20, 40] {
        hook(&app, onset).await;
    }
    assert_eq!(cli(&app, anchored()).await, std::process::ExitCode::SUCCESS);
    assert_eq!(std::fs::read_to_string(&anchor).unwrap().lines().count(), 2);
    assert_eq!(
        cli(&app, verify_with(&anchor)).await,
        std::process::ExitCode::SUCCESS
    );

    // The attack: no seals, entries 1..=first gone, a checkpoint vouching for the cut.
    let chain: Vec<AuditEntry> = entries(&app)
        .await
        .into_iter()
        .filter(|e| e.entry.tenant == TENANT)
        .collect();
    let last_hash = chain.iter().find(|e| e.seq == first).unwrap().hash.clone();
    assert_eq!(
        chain.iter().find(|e| e.seq == first).unwrap().entry.action,
        "hook-call"
    );
    let unlock = if app.db.backend == Backend::Sqlite {
        "DROP TRIGGER IF EXISTS audit_no_update; DROP TRIGGER IF EXISTS audit_no_delete;"
    } else {
        ""
    };
    owner_exec(
        &app,
        &format!(
            "{unlock} UPDATE audit_entries SET seal = NULL, seal_kid = NULL WHERE tenant = '{TENANT}';
             DELETE FROM audit_entries WHERE tenant = '{TENANT}' AND seq <= {first};"
        ),
    )
    .await;
    // Appended as the database writer can: through a store without the service's key.
    let forger = stride_store::connect(&app.db.url, &stride_store::PoolOptions::default())
        .await
        .unwrap();
    forger
        .append_audit(&stride_store::NewAuditEntry {
            id: uuid::Uuid::new_v4(),
            recorded_us: stride::audit::now_us(),
            action: stride_store::audit::Action::RetentionCheckpoint,
            outcome: "success".into(),
            details: json!({"before": "2026-01-01", "lastSeq": first, "lastHash": last_hash}),
            ..stride_store::NewAuditEntry::of(stride_store::TenantId::parse(TENANT).unwrap())
        })
        .await
        .unwrap();

    let res = verified(&app).await;
    assert_eq!(res["status"], "broken", "{res}");
    assert!(
        res["firstBrokenLink"]["reason"]
            .as_str()
            .unwrap()
            .contains("retention checkpoint"),
        "{res}"
    );
    assert_eq!(
        cli(&app, verify_with(&anchor)).await,
        std::process::ExitCode::FAILURE
    );
    // Without the keys the forged checkpoint cannot be told from a real one on PostgreSQL;
    // on SQLite it is a break whatever the keys.
    if app.db.backend == Backend::Sqlite {
        let q = AuditQuery::default();
        let check = stride_app::decision_log::check_chain(app.store.as_ref(), &q, None, &[])
            .await
            .unwrap();
        assert!(check.broken.is_some(), "a retention checkpoint on SQLite");
    }
}

/// Issue 31: a retired key seals nothing written after its rotation. The key file records
/// when each key was rotated out; a seal by it on a later entry (beyond the rollout's grace)
/// is a break, while what it sealed before the rotation still verifies.
#[tokio::test]
async fn a_retired_key_cannot_reseal_an_entry_written_after_its_rotation() {
    use stride_store::seal::AuditKeys;
    let dir = tempfile::tempdir().unwrap();
    let k1 = AuditKeys::parse(&AuditKeys::generate("k1", None).unwrap()).unwrap();
    // Rotated to k2 two days ago.
    let mut rotated: Json =
        serde_json::from_str(&AuditKeys::generate("k2", Some(&k1)).unwrap()).unwrap();
    let two_days_ago = time::OffsetDateTime::now_utc() - time::Duration::days(2);
    rotated["retired"]["k1"] = json!(two_days_ago
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap());
    let keys = dir.path().join("audit-keys.json");
    std::fs::write(&keys, rotated.to_string()).unwrap();
    let app =
        stride_tests::spawn_app_with(&[("STRIDE_AUDIT_KEY_FILE", keys.to_str().unwrap())]).await;
    let verify = || stride::cli::AuditCommand::Verify {
        anchor: None,
        keys: None,
    };
    // Something k1 sealed before its rotation (three days ago) still verifies beside k2's.
    let k1_store = stride_store::connect(
        &app.db.url,
        &stride_store::PoolOptions {
            sealer: k1.sealer.clone(),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let three_days_ago = stride::audit::now_us() - 3 * 86_400 * 1_000_000;
    k1_store
        .append_audit(&stride_store::NewAuditEntry {
            id: uuid::Uuid::new_v4(),
            recorded_us: three_days_ago,
            action: stride_store::audit::Action::AuditVerify,
            outcome: "success".into(),
            details: json!({}),
            ..stride_store::NewAuditEntry::of(stride_store::TenantId::parse(TENANT).unwrap())
        })
        .await
        .unwrap();
    hook(&app, 3).await;
    assert_eq!(cli(&app, verify()).await, std::process::ExitCode::SUCCESS);

    // The holder of k1's private key re-seals the decision just written under k2.
    let last = entries(&app)
        .await
        .into_iter()
        .filter(|e| e.entry.tenant == TENANT)
        .last()
        .unwrap();
    assert_eq!(last.seal.as_ref().unwrap().kid, "k2");
    let forged = k1.sealer.as_ref().unwrap().seal(last.hash.as_bytes());
    let unlock = if app.db.backend == Backend::Sqlite {
        "DROP TRIGGER IF EXISTS audit_no_update;"
    } else {
        ""
    };
    owner_exec(
        &app,
        &format!(
            "{unlock} UPDATE audit_entries SET seal_kid = 'k1', seal = '{}' WHERE tenant = '{TENANT}' AND seq = {};",
            forged.sig, last.seq
        ),
    )
    .await;
    assert_eq!(cli(&app, verify()).await, std::process::ExitCode::FAILURE);
    let res = verified(&app).await;
    assert!(
        res["firstBrokenLink"]["reason"]
            .as_str()
            .unwrap_or("")
            .contains("retired"),
        "{res}"
    );
}
