//! Test support: spawn the real Stride on a random port with a fresh database.
//!
//! The backend comes from `STRIDE_TEST_BACKEND` (`sqlite`, the default, or `postgres`). For
//! PostgreSQL, `STRIDE_TEST_POSTGRES_URL` names a server where the tests may create databases
//! (`scripts/test` starts a throwaway cluster and sets both).

pub mod fhir;
pub mod oidc;
pub mod tokens;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use actix_web::dev::ServerHandle;
use stride::config::Settings;
use stride::startup::Application;
use stride_store::Store;

pub use stride_store::Backend;

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

pub fn backend() -> Backend {
    match std::env::var("STRIDE_TEST_BACKEND").as_deref() {
        Ok("postgres") => Backend::Postgres,
        Ok("sqlite") | Err(_) => Backend::Sqlite,
        Ok(other) => panic!("STRIDE_TEST_BACKEND={other}: use sqlite or postgres"),
    }
}

/// A database of its own for one test, dropped (PostgreSQL) or deleted (SQLite) after.
pub struct TestDb {
    pub url: String,
    pub backend: Backend,
    /// SQLite: the file; PostgreSQL: (admin URL, database name).
    pub sqlite_path: Option<PathBuf>,
    pub pg: Option<(String, String)>,
    _dir: Option<tempfile::TempDir>,
}

impl TestDb {
    pub async fn fresh() -> TestDb {
        match backend() {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().expect("temp dir");
                let path = dir.path().join("stride.db");
                TestDb {
                    url: format!("sqlite://{}", path.display()),
                    backend: Backend::Sqlite,
                    sqlite_path: Some(path),
                    pg: None,
                    _dir: Some(dir),
                }
            }
            Backend::Postgres => {
                let admin = std::env::var("STRIDE_TEST_POSTGRES_URL")
                    .expect("STRIDE_TEST_BACKEND=postgres needs STRIDE_TEST_POSTGRES_URL");
                let name = format!("stride_test_{}", uuid::Uuid::new_v4().simple());
                let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&admin)
                    .await
                    .expect("admin connection");
                sqlx::query(&format!("CREATE DATABASE {name}"))
                    .execute(&mut conn)
                    .await
                    .expect("create database");
                let base = admin.rsplit_once('/').map(|(b, _)| b).unwrap_or(&admin);
                TestDb {
                    url: format!("{base}/{name}"),
                    backend: Backend::Postgres,
                    sqlite_path: None,
                    pg: Some((admin, name)),
                    _dir: None,
                }
            }
        }
    }

    /// Make the database disappear under a running service.
    pub async fn destroy(&self) {
        if let Some(p) = &self.sqlite_path {
            for suffix in ["", "-wal", "-shm"] {
                let _ = std::fs::remove_file(format!("{}{suffix}", p.display()));
            }
        }
        if let Some((admin, name)) = &self.pg {
            let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(admin)
                .await
                .expect("admin connection");
            sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                .execute(&mut conn)
                .await
                .expect("drop database");
        }
    }
}

pub struct TestApp {
    /// Keeps the trust file alive.
    pub dir: tempfile::TempDir,
    /// The environment the app started with, to start it again on the same database.
    pub env: Vec<(String, String)>,
    pub address: String,
    pub port: u16,
    pub db: TestDb,
    pub store: Arc<dyn Store>,
    pub client: reqwest::Client,
    handle: ServerHandle,
}

/// A second server of a `TestApp` (`TestApp::replica`).
pub struct Replica {
    pub address: String,
    handle: ServerHandle,
}

impl Drop for Replica {
    fn drop(&mut self) {
        let handle = self.handle.clone();
        tokio::spawn(async move { handle.stop(false).await });
    }
}

/// The guidelines every test app loads: the repository's, and beside them the synthetic
/// two-phase guideline of `tests/fixtures/guidelines` (not clinical), so every end-to-end test
/// runs with two guidelines and nothing can quietly assume one. Links, made once per process.
pub fn guidelines_dir() -> &'static Path {
    static DIR: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    DIR.get_or_init(|| {
        let dir =
            std::env::temp_dir().join(format!("stride-test-guidelines-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        for parent in [
            repo_root().join("guidelines"),
            repo_root().join("tests/fixtures/guidelines"),
        ] {
            for entry in std::fs::read_dir(&parent).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    std::os::unix::fs::symlink(&path, dir.join(path.file_name().unwrap())).unwrap();
                }
            }
        }
        dir
    })
}

/// How many guidelines a test app loads (each tenant's chain starts with one
/// `guideline-version` entry per guideline).
pub fn guideline_count() -> usize {
    std::fs::read_dir(guidelines_dir()).unwrap().count()
}

/// The environment a test app starts from; tests add or override variables.
pub fn base_env(db: &TestDb) -> Vec<(String, String)> {
    vec![
        ("STRIDE_LISTEN".into(), "127.0.0.1:0".into()),
        ("STRIDE_DATABASE_URL".into(), db.url.clone()),
        // Refusals reach the audit log within the tests' patience.
        ("STRIDE_REFUSAL_AUDIT_INTERVAL_MS".into(), "100".into()),
        (
            "STRIDE_GUIDELINES_DIR".into(),
            guidelines_dir().display().to_string(),
        ),
    ]
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(&[]).await
}

pub async fn spawn_app_with(extra: &[(&str, &str)]) -> TestApp {
    spawn_app_trusting(&[], extra).await
}

/// Start Stride trusting the default test issuers plus `issuers`.
pub async fn spawn_app_trusting(issuers: &[serde_json::Value], extra: &[(&str, &str)]) -> TestApp {
    if std::env::var_os("TEST_LOG").is_some() {
        stride::telemetry::init(stride::config::LogFormat::Pretty);
    }
    let db = TestDb::fresh().await;
    let dir = tempfile::tempdir().unwrap();
    let trust = dir.path().join("trust.json");
    std::fs::write(&trust, tokens::trust_file(issuers).to_string()).unwrap();
    let mut env = base_env(&db);
    env.push(("STRIDE_TRUST_FILE".into(), trust.display().to_string()));
    env.push(("STRIDE_PUBLIC_URL".into(), tokens::PUBLIC_URL.into()));
    env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    let (port, handle, store) = start(&env).await;
    TestApp {
        dir,
        env,
        address: format!("http://127.0.0.1:{port}"),
        port,
        db,
        store,
        client: reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap(),
        handle,
    }
}

async fn start(env: &[(String, String)]) -> (u16, ServerHandle, Arc<dyn Store>) {
    try_start(env).await.expect("application starts")
}

async fn try_start(
    env: &[(String, String)],
) -> Result<(u16, ServerHandle, Arc<dyn Store>), String> {
    let settings = Settings::from_sources(None, env).expect("test settings");
    let app = Application::build(settings)
        .await
        .map_err(|e| e.to_string())?;
    let port = app.port();
    let handle = app.handle();
    let store = app.store();
    tokio::spawn(app.run_until_stopped());
    Ok((port, handle, store))
}

impl TestApp {
    /// Stop this server and start a new one on the same database and trust file: a restart.
    pub async fn restart(&mut self) {
        self.handle.stop(true).await;
        let started = start(&self.env).await;
        self.started(started);
    }

    /// `restart`, tried up to `tries` times: for an app started with an acquire time shorter
    /// than opening a connection can take on a loaded machine (the saturation tests' 25 ms),
    /// whose start then fails now and then for want of its first connection.
    pub async fn restart_retrying(&mut self, tries: usize) {
        self.handle.stop(true).await;
        let mut last = None;
        for _ in 0..tries {
            match try_start(&self.env).await {
                Ok(started) => return self.started(started),
                Err(e) => last = Some(e),
            }
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
        panic!("application did not start in {tries} tries: {last:?}");
    }

    fn started(&mut self, (port, handle, store): (u16, ServerHandle, Arc<dyn Store>)) {
        self.address = format!("http://127.0.0.1:{port}");
        self.port = port;
        self.handle = handle;
        self.store = store;
    }

    /// Another replica: a second server on this app's database and trust file, as a
    /// Deployment with several pods runs. It stops when dropped.
    pub async fn replica(&self) -> Replica {
        let (port, handle, _) = start(&self.env).await;
        Replica {
            address: format!("http://127.0.0.1:{port}"),
            handle,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    /// A POST to a CDS endpoint with a fresh, valid EHR token for it.
    pub fn cds(&self, path: &str) -> reqwest::RequestBuilder {
        self.client
            .post(self.url(path))
            .bearer_auth(tokens::cds_token(path))
    }

    /// A hook or feedback call from the second clinic (`tokens::clinic_b` must be trusted).
    pub fn cds_b(&self, path: &str) -> reqwest::RequestBuilder {
        self.client
            .post(self.url(path))
            .bearer_auth(tokens::cds_token_b(path))
    }

    /// An unauthenticated GET of `path` (discovery, publication, /guidelines), as JSON.
    pub async fn get_json(&self, path: &str) -> serde_json::Value {
        self.client
            .get(self.url(path))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// A GET of `path` with a bearer `token`, as JSON.
    pub async fn get_json_as(&self, path: &str, token: &str) -> serde_json::Value {
        self.client
            .get(self.url(path))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// A GET of `path` with a bearer `token`, as text (a page).
    pub async fn get_text_as(&self, path: &str, token: &str) -> String {
        self.client
            .get(self.url(path))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// The `/metrics` text as it is now.
    pub async fn metrics(&self) -> String {
        self.client
            .get(self.url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    pub async fn stop(&self) {
        self.handle.stop(true).await;
    }
}

/// Validate `value` against one of the JSON Schemas in `schemas/`; panics with every error.
pub fn assert_schema(schema: &str, value: &serde_json::Value) {
    let text = std::fs::read_to_string(
        repo_root()
            .join("schemas")
            .join(format!("{schema}.schema.json")),
    )
    .expect("schema");
    let schema_json: serde_json::Value = serde_json::from_str(&text).unwrap();
    let validator = jsonschema::validator_for(&schema_json).expect("a valid JSON Schema");
    let errors: Vec<String> = validator
        .iter_errors(value)
        .map(|e| format!("{}: {e}", e.instance_path()))
        .collect();
    assert!(errors.is_empty(), "does not match {schema}: {errors:#?}");
}

/// The value of one Prometheus series (name with its labels, exactly as printed) in `text`.
/// Every audit entry, in chain order.
pub async fn audit_entries(app: &TestApp) -> Vec<stride_store::AuditEntry> {
    use futures_util::StreamExt;
    let q = stride_store::AuditQuery::default();
    app.store
        .audit_stream(&q, true)
        .map(|e| e.expect("a readable audit entry"))
        .collect()
        .await
}

/// How many CarePlans are stored, for anyone (a test's few; at most 50 are counted).
pub async fn stored_plans(app: &TestApp) -> usize {
    app.store
        .search_careplans(&stride_store::CarePlanQuery {
            limit: 50,
            ..Default::default()
        })
        .await
        .unwrap()
        .len()
}

/// The action of every audit entry, in chain order.
pub async fn audit_actions(app: &TestApp) -> Vec<String> {
    audit_entries(app)
        .await
        .into_iter()
        .map(|e| e.entry.action.as_str().to_owned())
        .collect()
}

pub fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}
