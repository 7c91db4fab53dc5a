//! Losing the database under load: PostgreSQL stopped mid-traffic, and a SQLite database that
//! can no longer be written. Hook calls answer 503 with an OperationOutcome (never a 500, never
//! a card without its stored decision), the process stays up, and it recovers by itself once
//! the database is back, without a restart.

use std::path::PathBuf;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value as Json;
use stride_tests::fhir::*;
use stride_tests::{spawn_app_with, TestApp};

const PV: &str = "/cds-services/running-knee-patient-view";

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// A PostgreSQL cluster of this test's own, so that it can be stopped and started again.
struct Cluster {
    dir: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
}

impl Cluster {
    fn pg(&self, tool: &str) -> Command {
        let path = self.bin.join(tool);
        if is_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(path);
            c
        } else {
            Command::new(path)
        }
    }

    fn create(bin: PathBuf) -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        if is_root() {
            assert!(Command::new("chown")
                .args(["postgres:"])
                .arg(dir.path())
                .status()
                .unwrap()
                .success());
        }
        let c = Cluster {
            dir,
            bin,
            port: stride_tests::oidc::free_port(),
        };
        let ok = c
            .pg("initdb")
            .arg("-D")
            .arg(c.dir.path().join("data"))
            .args(["-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-sync"])
            .output()
            .unwrap();
        assert!(
            ok.status.success(),
            "{}",
            String::from_utf8_lossy(&ok.stderr)
        );
        c.start();
        c
    }

    fn start(&self) {
        let opts = format!(
            "-c listen_addresses=127.0.0.1 -p {} -k {} -c fsync=off",
            self.port,
            self.dir.path().display()
        );
        let ok = self
            .pg("pg_ctl")
            .arg("-D")
            .arg(self.dir.path().join("data"))
            .arg("-l")
            .arg(self.dir.path().join("log"))
            .args(["-w", "-o", &opts, "start"])
            .output()
            .unwrap();
        assert!(
            ok.status.success(),
            "{}",
            String::from_utf8_lossy(&ok.stderr)
        );
    }

    /// As if the server died: no clean shutdown of client sessions.
    fn kill(&self) {
        let ok = self
            .pg("pg_ctl")
            .arg("-D")
            .arg(self.dir.path().join("data"))
            .args(["-m", "immediate", "-w", "stop"])
            .output()
            .unwrap();
        assert!(
            ok.status.success(),
            "{}",
            String::from_utf8_lossy(&ok.stderr)
        );
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = self
            .pg("pg_ctl")
            .arg("-D")
            .arg(self.dir.path().join("data"))
            .args(["-m", "immediate", "stop"])
            .output();
    }
}

async fn call(app: &TestApp, n: usize) -> (u16, Json) {
    let mut body = patient_view(prefetch(&[condition("k", "M25.561", Some(3))], &[]));
    body["hookInstance"] = Json::String(format!("loss-{n}-{}", uuid::Uuid::new_v4()));
    match app.cds(PV).json(&body).send().await {
        Ok(res) => {
            let status = res.status().as_u16();
            (status, res.json().await.unwrap_or(Json::Null))
        }
        Err(_) => (0, Json::Null),
    }
}

/// One answer under load: its status, its body, and how long the client waited for it.
type Seen = (u16, Json, Duration);

/// Calls from four clients until `stop`: every answer seen.
fn load(app: &Arc<TestApp>, stop: &Arc<Mutex<bool>>) -> Vec<tokio::task::JoinHandle<Vec<Seen>>> {
    (0..4)
        .map(|c| {
            let (app, stop) = (app.clone(), stop.clone());
            tokio::spawn(async move {
                let mut seen = Vec::new();
                let mut n = 0;
                while !*stop.lock().unwrap() {
                    let sent = Instant::now();
                    let (status, body) = call(&app, c * 100_000 + n).await;
                    seen.push((status, body, sent.elapsed()));
                    n += 1;
                }
                seen
            })
        })
        .collect()
}

async fn status(app: &TestApp, path: &str) -> u16 {
    app.client
        .get(app.url(path))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// Every answer during the outage is a 200 with cards or a 503 OperationOutcome.
fn check_answers(all: &[Seen]) -> usize {
    let mut unavailable = 0;
    for (status, body, _) in all {
        match status {
            200 => assert!(body["cards"].is_array()),
            503 => {
                assert_eq!(body["resourceType"], "OperationOutcome", "{body}");
                assert!(body.get("cards").is_none());
                unavailable += 1;
            }
            other => panic!("status {other} during the outage: {body}"),
        }
    }
    unavailable
}

/// Calls until one succeeds again (the service recovers on its own), within `limit`.
async fn recovers(app: &TestApp, limit: Duration) {
    let deadline = Instant::now() + limit;
    loop {
        let (s, body) = call(app, 999_999).await;
        if s == 200 {
            assert!(body["cards"].is_array());
            break;
        }
        assert!(Instant::now() < deadline, "no recovery: still {s} {body}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(status(app, "/readyz").await, 200);
    assert_eq!(
        stride_tests::metric(&app.metrics().await, "stride_db_up"),
        Some(1.0)
    );
}

#[tokio::test]
async fn postgres_stopped_under_load_gives_503_then_recovers_without_a_restart() {
    let Some(bin) = std::env::var_os("STRIDE_TEST_PGBIN").map(PathBuf::from) else {
        if std::env::var("STRIDE_DB_LOSS_TESTS").as_deref() == Ok("required") {
            panic!("STRIDE_TEST_PGBIN is required (STRIDE_DB_LOSS_TESTS=required)");
        }
        eprintln!("SKIPPED: set STRIDE_TEST_PGBIN to PostgreSQL's bin folder (scripts/test does)");
        return;
    };
    let cluster = Cluster::create(bin);
    let url = cluster.url();
    let app = Arc::new(
        spawn_app_with(&[
            ("STRIDE_DATABASE_URL", &url),
            ("STRIDE_DB_STATEMENT_TIMEOUT_MS", "2000"),
            // The default, said here because the bound below rests on it: a write in flight
            // when the server stops waits for a connection at most this long.
            ("STRIDE_DB_ACQUIRE_TIMEOUT_MS", "300"),
        ])
        .await,
    );
    assert_eq!(call(&app, 0).await.0, 200);

    let stop = Arc::new(Mutex::new(false));
    let clients = load(&app, &stop);
    tokio::time::sleep(Duration::from_millis(500)).await;
    cluster.kill();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        status(&app, "/readyz").await,
        503,
        "not ready without its database"
    );
    assert_eq!(status(&app, "/healthz").await, 200, "but alive");
    // Known to be down: a call is answered 503 without waiting for a connection.
    let fast = |m: &str| stride_tests::metric(m, "stride_db_fast_failures_total").unwrap_or(0.0);
    let before = fast(&app.metrics().await);
    let (s, body) = call(&app, 424_242).await;
    assert_eq!(s, 503, "{body}");
    let m = app.metrics().await;
    assert!(fast(&m) > before, "refused without touching the pool");
    assert_eq!(stride_tests::metric(&m, "stride_db_up"), Some(0.0));
    cluster.start();
    recovers(&app, Duration::from_secs(30)).await;
    *stop.lock().unwrap() = true;
    let mut all = Vec::new();
    for c in clients {
        all.extend(c.await.unwrap());
    }
    assert!(check_answers(&all) > 0, "the outage was seen as 503s");
    // Issue 31: no call waits for the server to come back. Reads still waiting when it is
    // marked down are released at once; a write waits for a connection at most the acquire
    // time (dropped half way it could commit while its caller is told it failed). With a 5 s
    // acquire time a write in flight at the stop waited through the outage, 2.4 s here, and
    // was answered 200 after the restart; with 1 s, 1.1 s. The bound is the CDS Hooks budget
    // with room for a slow host (measured: docs/benchmarks.md).
    let longest = |s: u16| {
        all.iter()
            .filter(|(status, ..)| *status == s)
            .map(|(.., took)| *took)
            .max()
            .unwrap_or_default()
    };
    eprintln!(
        "longest wait: 503 {:?}, 200 {:?} ({} calls)",
        longest(503),
        longest(200),
        all.len()
    );
    for s in [200, 503] {
        assert!(
            longest(s) < Duration::from_millis(1000),
            "a call waited {:?} for its {s}",
            longest(s)
        );
    }
}

#[tokio::test]
async fn a_sqlite_database_that_cannot_be_written_gives_503_then_recovers() {
    if !is_root() || Command::new("chattr").arg("--version").output().is_err() {
        // The test command requires it (it runs as root in CI): a silent skip there would
        // pass without checking anything.
        if std::env::var("STRIDE_DB_LOSS_TESTS").as_deref() == Ok("required") {
            panic!("needs root and chattr (STRIDE_DB_LOSS_TESTS=required)");
        }
        eprintln!("SKIPPED: needs root and chattr to make a file unwritable even for root");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("stride.db");
    let url = format!("sqlite://{}", db.display());
    let app = Arc::new(spawn_app_with(&[("STRIDE_DATABASE_URL", &url)]).await);
    assert_eq!(call(&app, 0).await.0, 200);
    // Immutable: not even root may write (the WAL is where SQLite writes first).
    // Not the -shm file: SQLite maps it into memory, and a write fault there is a SIGBUS.
    let files: Vec<PathBuf> = ["", "-wal"]
        .iter()
        .map(|s| PathBuf::from(format!("{}{s}", db.display())))
        .filter(|p| p.exists())
        .collect();
    struct Immutable(Vec<PathBuf>);
    impl Immutable {
        fn set(&self, flag: &str) {
            for f in &self.0 {
                let ok = Command::new("chattr").arg(flag).arg(f).status().unwrap();
                assert!(ok.success(), "chattr {flag} {}", f.display());
            }
        }
    }
    impl Drop for Immutable {
        // Whatever happens, the files become removable again.
        fn drop(&mut self) {
            for f in &self.0 {
                let _ = Command::new("chattr").arg("-i").arg(f).status();
            }
        }
    }
    let guard = Immutable(files);
    let chattr = |flag: &str| guard.set(flag);
    chattr("+i");
    let stop = Arc::new(Mutex::new(false));
    let clients = load(&app, &stop);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(status(&app, "/healthz").await, 200);
    let m = app.metrics().await;
    assert!(
        stride_tests::metric(&m, "stride_db_fast_failures_total").unwrap_or(0.0) > 0.0,
        "calls after the first failure fail fast"
    );
    chattr("-i");
    recovers(&app, Duration::from_secs(30)).await;
    *stop.lock().unwrap() = true;
    let mut all = Vec::new();
    for c in clients {
        all.extend(c.await.unwrap());
    }
    assert!(
        check_answers(&all) > 0,
        "the unwritable file was seen as 503s"
    );
}

/// Issue 31, "false outages": saturation is load, not an outage. Two pooled connections and a
/// 25 ms acquire time (10 ms was shorter than opening a PostgreSQL connection on a loaded
/// machine: the app could not start), under bursts of concurrent calls: the calls that wait
/// too long for a connection are answered 503 `overloaded` with `Retry-After`, never
/// `unavailable`, and the database is never marked down (`stride_db_up` 1). On the old code the
/// first such wait marked the database down and the calls after it failed fast as
/// `unavailable`; until stop 40, readiness asked during a burst waited out the same acquire
/// time and answered 503 (CI caught it once, in round 9 of 30). PostgreSQL only: on SQLite a
/// hook call holds no pooled connection since stop 45 (its reads run in place, its write on the
/// writer's own connection), so bursts find no pool busy, and SQLite's load is a file another
/// connection holds (the next test).
#[tokio::test]
async fn saturation_is_answered_overloaded_and_never_marks_the_database_down() {
    let app = spawn_app_with(&SATURABLE).await;
    if app.db.backend != stride_tests::Backend::Postgres {
        return;
    }
    saturate(Arc::new(app)).await;
}

/// SQLite's load: its write lock held by another connection (another process writing the same
/// file, an operator's tool). A hook call's write waits the acquire time for it and is answered
/// 503 `overloaded` with `Retry-After`, never `unavailable`; readiness stays 200, the database
/// is never marked down, and the next call once the lock is let go is answered.
#[tokio::test]
async fn a_sqlite_file_locked_by_another_writer_is_load_not_an_outage() {
    let app = spawn_app_with(&[("STRIDE_DB_ACQUIRE_TIMEOUT_MS", "200")]).await;
    let Some(path) = app.db.sqlite_path.clone() else {
        return;
    };
    assert_eq!(call(&app, 0).await.0, 200);
    let opts = sqlx::sqlite::SqliteConnectOptions::new().filename(&path);
    let mut other = <sqlx::SqliteConnection as sqlx::Connection>::connect_with(&opts)
        .await
        .unwrap();
    sqlx::raw_sql("BEGIN IMMEDIATE")
        .execute(&mut other)
        .await
        .unwrap();
    let started = Instant::now();
    let mut body = patient_view(prefetch(&[condition("k", "M25.561", Some(3))], &[]));
    body["hookInstance"] = Json::String(uuid::Uuid::new_v4().to_string());
    let res = app.cds(PV).json(&body).send().await.unwrap();
    let (code_seen, retry) = (
        res.status().as_u16(),
        res.headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap().to_owned()),
    );
    let answer: Json = res.json().await.unwrap();
    assert_eq!(code_seen, 503, "{answer}");
    let code = &answer["issue"][0]["details"]["coding"][0]["code"];
    assert_eq!(code, "overloaded", "load answered as an outage: {answer}");
    assert_eq!(retry.as_deref(), Some("1"));
    assert!(
        started.elapsed() >= Duration::from_millis(200),
        "answered before the write waited for the lock"
    );
    assert_eq!(status(&app, "/readyz").await, 200);
    let m = app.metrics().await;
    assert!(stride_tests::metric(&m, "stride_db_overloaded_total").unwrap_or(0.0) > 0.0);
    assert_eq!(stride_tests::metric(&m, "stride_db_up"), Some(1.0));
    sqlx::raw_sql("ROLLBACK").execute(&mut other).await.unwrap();
    assert_eq!(call(&app, 1).await.0, 200);
}

/// The same, with the service's database role limited to the pool's two connections, as a
/// DBA limits a role: the guard's check on a long wait opens a connection outside the pool,
/// and the server answers "too many connections" (SQLSTATE 53300). That answer is a live
/// server at its limit; the old guard took any failed check for a dead one and refused every
/// call until its probe got through. (PostgreSQL only: SQLite has no roles.)
#[tokio::test]
async fn a_role_at_its_connection_limit_is_load_not_an_outage() {
    let mut app = spawn_app_with(&SATURABLE).await;
    if app.db.backend != stride_tests::Backend::Postgres {
        return;
    }
    let role = format!("svc_{}", uuid::Uuid::new_v4().simple());
    let mut owner = <sqlx::PgConnection as sqlx::Connection>::connect(&app.db.url)
        .await
        .unwrap();
    sqlx::query(&format!(
        "CREATE ROLE {role} LOGIN CONNECTION LIMIT 2 IN ROLE stride_service"
    ))
    .execute(&mut owner)
    .await
    .unwrap();
    let mut url = url::Url::parse(&app.db.url).unwrap();
    url.set_username(&role).unwrap();
    app.env
        .retain(|(k, _)| k != "STRIDE_DATABASE_URL" && k != "STRIDE_MIGRATE_ON_START");
    app.env
        .push(("STRIDE_DATABASE_URL".into(), url.to_string()));
    app.env
        .push(("STRIDE_MIGRATE_ON_START".into(), "false".into()));
    app.restart_retrying(5).await;
    saturate(Arc::new(app)).await;
}

/// Readiness while the pool's one connection is held, with the default-like long acquire
/// time, asked as Kubernetes asks (a 1 s probe timeout): answered ready within the second (the
/// pool is busy, not down), where before the ping waited for a connection and the probe timed
/// out, which takes a replica out of its Service while it is busiest. A query is held by a lock
/// taken from outside (PostgreSQL only: SQLite's readers are not blocked by a writer in WAL).
#[tokio::test]
async fn readiness_answers_within_a_probes_second_while_the_pool_is_busy() {
    let app = Arc::new(
        spawn_app_with(&[
            ("STRIDE_DB_MAX_CONNECTIONS", "1"),
            ("STRIDE_DB_ACQUIRE_TIMEOUT_MS", "3000"),
        ])
        .await,
    );
    if app.db.backend != stride_tests::Backend::Postgres {
        return;
    }
    let mut owner = <sqlx::PgConnection as sqlx::Connection>::connect(&app.db.url)
        .await
        .unwrap();
    sqlx::raw_sql("BEGIN; LOCK TABLE hook_answers IN ACCESS EXCLUSIVE MODE;")
        .execute(&mut owner)
        .await
        .unwrap();
    // A hook call looks up its hookInstance first: it waits on the lock, holding the pool's
    // one connection.
    let held = {
        let app = app.clone();
        tokio::spawn(async move { call(&app, 1).await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let probe = reqwest::Client::builder()
        .timeout(Duration::from_secs(1))
        .build()
        .unwrap();
    let status = probe
        .get(app.url("/readyz"))
        .send()
        .await
        .map(|r| r.status().as_u16());
    sqlx::raw_sql("ROLLBACK").execute(&mut owner).await.unwrap();
    assert_eq!(
        status.as_ref().ok(),
        Some(&200),
        "readiness while the pool is busy: {status:?}"
    );
    assert_eq!(held.await.unwrap().0, 200, "the held call goes on");
    assert_eq!(
        stride_tests::metric(&app.metrics().await, "stride_db_up"),
        Some(1.0)
    );
}

const SATURABLE: [(&str, &str); 2] = [
    ("STRIDE_DB_MAX_CONNECTIONS", "2"),
    ("STRIDE_DB_ACQUIRE_TIMEOUT_MS", "25"),
];

/// Bursts of 48 concurrent hook calls until the pool has been found busy and calls answered
/// (three bursts at least):
/// every answer 200 or 503 `overloaded`, readiness 200 during and after every burst.
async fn saturate(app: Arc<TestApp>) {
    let (mut answered, mut overloaded) = (0, 0);
    for round in 0..30 {
        let burst = (0..48).map(|_| {
            let app = app.clone();
            tokio::spawn(async move {
                let mut body = patient_view(prefetch(&[condition("k", "M25.561", Some(3))], &[]));
                body["hookInstance"] = Json::String(uuid::Uuid::new_v4().to_string());
                let res = app.cds(PV).json(&body).send().await.unwrap();
                let status = res.status().as_u16();
                let retry = res
                    .headers()
                    .get("retry-after")
                    .map(|v| v.to_str().unwrap().to_owned());
                (
                    status,
                    retry,
                    res.json::<Json>().await.unwrap_or(Json::Null),
                )
            })
        });
        // Readiness asked while the burst holds the pool: busy is not down.
        let probe = {
            let app = app.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(5)).await;
                status(&app, "/readyz").await
            })
        };
        for h in futures_util::future::join_all(burst).await {
            let (status, retry, body) = h.unwrap();
            match status {
                200 => answered += 1,
                503 => {
                    let code = &body["issue"][0]["details"]["coding"][0]["code"];
                    assert_eq!(code, "overloaded", "load answered as an outage: {body}");
                    assert_eq!(retry.as_deref(), Some("1"), "{body}");
                    overloaded += 1;
                }
                other => panic!("status {other} under load: {body}"),
            }
        }
        assert_eq!(
            probe.await.unwrap(),
            200,
            "readiness failed while the pool was busy (round {round})"
        );
        let ready = app.client.get(app.url("/readyz")).send().await.unwrap();
        let (code, body) = (ready.status().as_u16(), ready.text().await.unwrap());
        let up = stride_tests::metric(&app.metrics().await, "stride_db_up");
        assert_eq!(
            code, 200,
            "not ready after a burst (round {round}; stride_db_up {up:?}): {body}"
        );
        let m = app.metrics().await;
        // Three rounds at least: the guard's check on the first long wait runs beside the
        // burst, and a wrong verdict shows in the calls after it.
        if stride_tests::metric(&m, "stride_db_overloaded_total").unwrap_or(0.0) > 0.0
            && answered > 0
            && round >= 2
        {
            break;
        }
    }
    let m = app.metrics().await;
    assert!(
        stride_tests::metric(&m, "stride_db_overloaded_total").unwrap_or(0.0) > 0.0,
        "the bursts never found the pool busy ({answered} answered, {overloaded} shed)"
    );
    assert_eq!(stride_tests::metric(&m, "stride_db_up"), Some(1.0));
    assert!(answered > 0);
}
