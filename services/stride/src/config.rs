//! Typed configuration, loaded once at start: defaults, then an optional TOML file
//! (`--config` or `STRIDE_CONFIG`), then `STRIDE_*` environment variables (environment wins).
//! Every value is parsed here; a bad one stops the start with a message naming the setting.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::providers::{Format, Serialized, Toml};
use figment::Figment;
use serde::Deserialize;

#[derive(Debug, Clone)]
pub struct Settings {
    pub listen: SocketAddr,
    pub public_url: PublicUrl,
    pub database: DatabaseUrl,
    pub guidelines_dir: PathBuf,
    /// `STRIDE_GUIDELINE_VERSIONS`: the version in force per guideline for every tenant
    /// (a trust-file issuer's `guidelines` overrides it); unset: the newest active.
    pub guideline_versions: std::collections::BTreeMap<String, stride_guideline::RuleSetVersion>,
    /// `STRIDE_SHADOW_VERSIONS`: a candidate version per guideline, evaluated beside the one in
    /// force on every hook call and recorded, never shown (a trust-file issuer's `shadow`
    /// overrides it).
    pub shadow_versions: std::collections::BTreeMap<String, stride_guideline::RuleSetVersion>,
    pub trust_file: Option<PathBuf>,
    /// The audit key file (`STRIDE_AUDIT_KEY_FILE`): its signing key seals every entry
    /// written; its public keys verify seals and checkpoints.
    pub audit_keys: Option<std::sync::Arc<stride_store::seal::AuditKeys>>,
    pub max_body_bytes: usize,
    /// Longest a request body may take to arrive (slow senders hold no connection longer).
    pub body_read_timeout: Duration,
    /// Refused requests are audited as one entry per reason, client and route per interval.
    pub refusal_audit_interval: Duration,
    /// Sign-in starts (`GET /ui/login`) one client may make per minute.
    pub sign_in_per_minute: u32,
    pub shutdown_timeout: Duration,
    pub db_max_connections: u32,
    pub db_statement_timeout: Duration,
    /// Longest a call waits for a database connection. Once the database is known to be down
    /// calls fail at once; this bounds the calls that find it out.
    pub db_acquire_timeout: Duration,
    pub log_format: LogFormat,
    /// JWT algorithms accepted from callers: ES384 and RS384, plus ES256/RS256 when opted in.
    pub jwt_algorithms: Vec<stride_auth::Algorithm>,
    /// Tolerated clock difference for `exp` and `iat`.
    pub clock_skew_secs: i64,
    /// `serve` applies migrations at start (the default); off when the service runs as a role
    /// that may not change the schema (PostgreSQL `stride_service`) and `stride migrate` runs
    /// separately as the owner.
    pub migrate_on_start: bool,
    /// Hook calls processed at once (body read, parsed, evaluated, written); beyond it calls
    /// wait, so memory stays bounded under overload.
    pub max_concurrent_hooks: usize,
    /// How long a hook call waits for a processing slot before it is answered 503.
    pub hook_queue_timeout: Duration,
    /// Hook calls that may wait for a slot; one more is answered 503 at once.
    pub hook_queue_max: usize,
    /// Hook calls one tenant may have in flight (authenticated, not yet answered), fetches
    /// from its FHIR server included; one more is answered 503 at once.
    pub max_calls_per_tenant: usize,
    /// Bytes one hook call may fetch from the EHR's FHIR server, all pages and keys together.
    pub fetch_max_bytes: usize,
    /// Bytes of fetched answers all hook calls together may hold; beyond it a call is 503.
    pub fetch_max_bytes_in_flight: usize,
    /// HTTP worker threads, one per core. Two per core once let the kernel run whichever was
    /// ready while a burst queued behind one connection's worker (2026-11-28); since a hook
    /// call switches threads a third less often (2026-12-07), one per core answers more calls
    /// with less memory and sheds none at 800 calls a second where two per core shed 1 %
    /// (measured side by side in docs/benchmarks.md).
    pub workers: usize,
    /// Development mode: the trust file with the development issuers added (`stride dev`).
    pub dev_trust: Option<serde_json::Value>,
    /// OpenID Connect sign-in for the staff pages; without it they take a bearer token from a
    /// reverse proxy.
    pub oidc: Option<OidcSettings>,
}

/// The staff pages' OpenID provider and Stride's client registration with it.
#[derive(Clone, PartialEq, Eq)]
pub struct OidcSettings {
    /// The issuer identifier; it must be a `staff` issuer of the trust file.
    pub issuer: String,
    pub client_id: String,
    /// A confidential client authenticates with it (client_secret_basic); without it Stride is
    /// a public client and relies on PKCE alone.
    pub client_secret: Option<String>,
}

impl std::fmt::Debug for OidcSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OidcSettings")
            .field("issuer", &self.issuer)
            .field("client_id", &self.client_id)
            .field("client_secret", &self.client_secret.as_ref().map(|_| "***"))
            .finish()
    }
}

/// The base URL callers use, without a trailing slash. JWT `aud` is checked against it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicUrl(String);

impl PublicUrl {
    pub fn parse(s: &str) -> Result<Self, String> {
        let s = s.trim_end_matches('/');
        let rest = s
            .strip_prefix("https://")
            .or_else(|| s.strip_prefix("http://"))
            .ok_or("must start with http:// or https://")?;
        if rest.is_empty() || rest.starts_with('/') || rest.contains(['?', '#', ' ']) {
            return Err("must be an absolute URL with a host and no query or fragment".into());
        }
        Ok(PublicUrl(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Loopback deployments (development, tests) may fetch keys over plain HTTP on loopback.
    pub fn is_loopback(&self) -> bool {
        let rest = self.0.split_once("://").map(|(_, r)| r).unwrap_or("");
        let host = rest.split(['/', ':']).next().unwrap_or("");
        matches!(host, "127.0.0.1" | "localhost") || rest.starts_with("[::1]")
    }
}

/// Where the data lives. Only the two backends Stride tests are accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatabaseUrl {
    Sqlite(String),
    Postgres(String),
}

impl DatabaseUrl {
    pub fn parse(s: &str) -> Result<Self, String> {
        if let Some(path) = s
            .strip_prefix("sqlite://")
            .or_else(|| s.strip_prefix("sqlite:"))
        {
            if path.is_empty() {
                return Err("sqlite:// needs a file path, e.g. sqlite://stride.db".into());
            }
            Ok(DatabaseUrl::Sqlite(s.to_owned()))
        } else if s.starts_with("postgres://") || s.starts_with("postgresql://") {
            Ok(DatabaseUrl::Postgres(s.to_owned()))
        } else {
            Err("must be sqlite://PATH or postgres://…".into())
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            DatabaseUrl::Sqlite(s) | DatabaseUrl::Postgres(s) => s,
        }
    }

    /// Safe to log: the password of a postgres URL is masked.
    pub fn redacted(&self) -> String {
        match self {
            DatabaseUrl::Sqlite(s) => s.clone(),
            DatabaseUrl::Postgres(s) => match (s.find("://"), s.rfind('@')) {
                (Some(scheme), Some(at)) if at > scheme => {
                    let userinfo = &s[scheme + 3..at];
                    let user = userinfo.split(':').next().unwrap_or("");
                    format!("{}{}:***{}", &s[..scheme + 3], user, &s[at..])
                }
                _ => s.clone(),
            },
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Json,
    Pretty,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("invalid setting {name}={value:?}: {reason}")]
    Invalid {
        name: &'static str,
        value: String,
        reason: String,
    },
    #[error("cannot read configuration: {0}")]
    Source(String),
}

fn invalid(name: &'static str, value: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        name,
        value: value.to_owned(),
        reason: reason.into(),
    }
}

/// Raw values as the sources give them; everything is a string until parsed.
#[derive(Debug, Default, Deserialize)]
struct Raw {
    listen: Option<String>,
    public_url: Option<String>,
    database_url: Option<String>,
    guidelines_dir: Option<String>,
    guideline_versions: Option<String>,
    shadow_versions: Option<String>,
    trust_file: Option<String>,
    audit_key_file: Option<String>,
    max_body_bytes: Option<String>,
    body_read_timeout_ms: Option<String>,
    refusal_audit_interval_ms: Option<String>,
    sign_in_per_minute: Option<String>,
    shutdown_timeout_secs: Option<String>,
    db_max_connections: Option<String>,
    db_statement_timeout_ms: Option<String>,
    db_acquire_timeout_ms: Option<String>,
    log_format: Option<String>,
    jwt_algorithms: Option<String>,
    clock_skew_secs: Option<String>,
    migrate_on_start: Option<String>,
    max_concurrent_hooks: Option<String>,
    hook_queue_timeout_ms: Option<String>,
    hook_queue_max: Option<String>,
    max_calls_per_tenant: Option<String>,
    fetch_max_bytes: Option<String>,
    fetch_max_bytes_in_flight: Option<String>,
    workers: Option<String>,
    oidc_issuer: Option<String>,
    oidc_client_id: Option<String>,
    oidc_client_secret: Option<String>,
}

impl Settings {
    /// The folder of rule sets, for the commands that read them.
    pub fn guidelines(&self) -> Result<&Path, ConfigError> {
        if self.guidelines_dir.is_dir() {
            Ok(&self.guidelines_dir)
        } else {
            Err(invalid(
                "STRIDE_GUIDELINES_DIR",
                &self.guidelines_dir.display().to_string(),
                "not a directory (run from the repository root, or set it to the folder of rule sets)",
            ))
        }
    }

    /// Load from the process environment (and the config file it names, if any).
    pub fn load(config_file: Option<&Path>) -> Result<Settings, ConfigError> {
        let env: Vec<(String, String)> = std::env::vars().collect();
        Self::from_sources(config_file, &env)
    }

    /// Load from explicit variables, so tests need not touch the process environment.
    pub fn from_sources(
        config_file: Option<&Path>,
        env: &[(String, String)],
    ) -> Result<Settings, ConfigError> {
        let file = config_file.map(Path::to_path_buf).or_else(|| {
            env.iter()
                .find(|(k, _)| k == "STRIDE_CONFIG")
                .map(|(_, v)| PathBuf::from(v))
        });
        let mut fig = Figment::new();
        if let Some(f) = &file {
            if !f.is_file() {
                return Err(ConfigError::Invalid {
                    name: "STRIDE_CONFIG",
                    value: f.display().to_string(),
                    reason: "no such file".into(),
                });
            }
            fig = fig.merge(Toml::file(f));
        }
        // Same names as figment's Env::prefixed("STRIDE_"), read from `env` so tests need not
        // mutate the process environment.
        let vars: std::collections::BTreeMap<String, String> = env
            .iter()
            .filter_map(|(k, v)| {
                k.strip_prefix("STRIDE_")
                    .map(|k| (k.to_ascii_lowercase(), v.clone()))
            })
            .filter(|(k, _)| k != "config")
            .collect();
        fig = fig.merge(Serialized::defaults(vars));
        let raw: Raw = fig
            .extract()
            .map_err(|e| ConfigError::Source(e.to_string()))?;
        Self::parse(raw)
    }

    fn parse(raw: Raw) -> Result<Settings, ConfigError> {
        let listen = listen(raw.listen)?;
        let public_url = match raw.public_url {
            Some(u) => PublicUrl::parse(&u).map_err(|r| invalid("STRIDE_PUBLIC_URL", &u, r))?,
            None => PublicUrl(format!("http://{listen}")),
        };
        let db = raw
            .database_url
            .unwrap_or_else(|| "sqlite://stride.db".into());
        let database =
            DatabaseUrl::parse(&db).map_err(|r| invalid("STRIDE_DATABASE_URL", &mask(&db), r))?;
        // Checked by the commands that read rule sets (`Settings::guidelines`): an auditor's
        // `stride audit verify` in a pod has none and needs none.
        let guidelines_dir =
            PathBuf::from(raw.guidelines_dir.unwrap_or_else(|| "guidelines".into()));
        let audit_keys = match raw.audit_key_file.filter(|p| !p.is_empty()) {
            Some(p) => Some(std::sync::Arc::new(
                stride_store::seal::AuditKeys::load(Path::new(&p))
                    .map_err(|r| invalid("STRIDE_AUDIT_KEY_FILE", &p, r))?,
            )),
            None => None,
        };
        let guideline_versions = match &raw.guideline_versions {
            Some(v) => stride_app::pins::parse_setting(v)
                .map_err(|r| invalid("STRIDE_GUIDELINE_VERSIONS", v, r))?,
            None => Default::default(),
        };
        let shadow_versions = match &raw.shadow_versions {
            Some(v) => stride_app::pins::parse_setting(v)
                .map_err(|r| invalid("STRIDE_SHADOW_VERSIONS", v, r))?,
            None => Default::default(),
        };
        let trust_file = trust_file(raw.trust_file)?;
        let max_body_bytes = number(
            "STRIDE_MAX_BODY_BYTES",
            raw.max_body_bytes,
            8 * 1024 * 1024,
            1024,
            256 * 1024 * 1024,
        )?;
        let shutdown = number(
            "STRIDE_SHUTDOWN_TIMEOUT_SECS",
            raw.shutdown_timeout_secs,
            30,
            0,
            3600,
        )?;
        let db_max = number(
            "STRIDE_DB_MAX_CONNECTIONS",
            raw.db_max_connections,
            10,
            1,
            1000,
        )?;
        let statement_ms = number(
            "STRIDE_DB_STATEMENT_TIMEOUT_MS",
            raw.db_statement_timeout_ms,
            5000,
            1,
            600_000,
        )?;
        let log_format = log_format(raw.log_format.as_deref())?;
        let jwt_algorithms = jwt_algorithms(raw.jwt_algorithms)?;
        let clock_skew_secs =
            number("STRIDE_CLOCK_SKEW_SECS", raw.clock_skew_secs, 60, 0, 300)? as i64;
        let migrate_on_start = migrate_on_start(raw.migrate_on_start.as_deref())?;
        let oidc = oidc(raw.oidc_issuer, raw.oidc_client_id, raw.oidc_client_secret)?;
        let max_concurrent_hooks = number(
            "STRIDE_MAX_CONCURRENT_HOOKS",
            raw.max_concurrent_hooks,
            16,
            1,
            100_000,
        )? as usize;
        let hook_queue_ms = number(
            "STRIDE_HOOK_QUEUE_TIMEOUT_MS",
            raw.hook_queue_timeout_ms,
            1000,
            0,
            60_000,
        )?;
        let hook_queue_max = number(
            "STRIDE_HOOK_QUEUE_MAX",
            raw.hook_queue_max,
            4 * max_concurrent_hooks as u64,
            0,
            1_000_000,
        )? as usize;
        // Half of what the service admits at once (processing and queued): one clinic cannot
        // take it all, and a single-tenant service still has room for its bursts.
        let max_calls_per_tenant = number(
            "STRIDE_MAX_CALLS_PER_TENANT",
            raw.max_calls_per_tenant,
            ((max_concurrent_hooks + hook_queue_max) as u64 / 2).max(1),
            1,
            1_000_000,
        )? as usize;
        // 8 MiB holds thousands of Observations, more than a focused search returns; 32 MiB
        // in flight keeps four hostile calls far below the chart's 256 MiB limit
        // (docs/benchmarks.md, "Fetch memory").
        let fetch_max_bytes = number(
            "STRIDE_FETCH_MAX_BYTES",
            raw.fetch_max_bytes,
            8 * 1024 * 1024,
            1024,
            1 << 31,
        )? as usize;
        let fetch_max_bytes_in_flight = number(
            "STRIDE_FETCH_MAX_BYTES_IN_FLIGHT",
            raw.fetch_max_bytes_in_flight,
            32 * 1024 * 1024,
            1024,
            1 << 40,
        )? as usize;
        // 300 ms: under the CDS Hooks 500 ms budget with the rest of a call. A write in flight when the database
        // stops waits this long for a connection (reads are released at once; a write is
        // never dropped half way: `guard`); with 1 s it waited 1.1 s (docs/benchmarks.md,
        // "Calls in flight when the database stops"). A pool under ordinary load hands out a
        // connection in microseconds; a call that waits longer is shed as `overloaded`.
        let acquire_ms = number(
            "STRIDE_DB_ACQUIRE_TIMEOUT_MS",
            raw.db_acquire_timeout_ms,
            300,
            10,
            60_000,
        )?;
        // A hook body of a few MB arrives in milliseconds; 10 s leaves room for a slow link
        // and none for a trickle.
        let body_read_ms = number(
            "STRIDE_BODY_READ_TIMEOUT_MS",
            raw.body_read_timeout_ms,
            10_000,
            100,
            600_000,
        )?;
        // 10 s: an attack shows in the log within seconds, as a handful of rows, not millions.
        let refusal_ms = number(
            "STRIDE_REFUSAL_AUDIT_INTERVAL_MS",
            raw.refusal_audit_interval_ms,
            10_000,
            10,
            3_600_000,
        )?;
        // A person signs in a few times a day; behind a proxy the client is the proxy, so the
        // default leaves room for a clinic's staff starting together.
        let sign_ins = number(
            "STRIDE_SIGN_IN_PER_MINUTE",
            raw.sign_in_per_minute,
            60,
            1,
            100_000,
        )?;
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as u64;
        let workers = number("STRIDE_WORKERS", raw.workers, cores, 1, 1024)? as usize;
        Ok(Settings {
            workers,
            max_concurrent_hooks,
            hook_queue_max,
            max_calls_per_tenant,
            fetch_max_bytes,
            fetch_max_bytes_in_flight,
            hook_queue_timeout: Duration::from_millis(hook_queue_ms),
            oidc,
            migrate_on_start,
            dev_trust: None,
            jwt_algorithms,
            clock_skew_secs,
            listen,
            public_url,
            database,
            guidelines_dir,
            guideline_versions,
            shadow_versions,
            trust_file,
            audit_keys,
            max_body_bytes: max_body_bytes as usize,
            body_read_timeout: Duration::from_millis(body_read_ms),
            refusal_audit_interval: Duration::from_millis(refusal_ms),
            sign_in_per_minute: sign_ins as u32,
            shutdown_timeout: Duration::from_secs(shutdown),
            db_max_connections: db_max as u32,
            db_statement_timeout: Duration::from_millis(statement_ms),
            db_acquire_timeout: Duration::from_millis(acquire_ms),
            log_format,
        })
    }
}

/// A whole number setting from `min` to `max`, `default` when unset.
fn number(
    name: &'static str,
    v: Option<String>,
    default: u64,
    min: u64,
    max: u64,
) -> Result<u64, ConfigError> {
    match v {
        None => Ok(default),
        Some(s) => match s.trim().parse::<u64>() {
            Ok(n) if (min..=max).contains(&n) => Ok(n),
            _ => Err(invalid(
                name,
                &s,
                format!("must be a whole number from {min} to {max}"),
            )),
        },
    }
}

/// `STRIDE_LISTEN`: where the server listens.
fn listen(raw: Option<String>) -> Result<SocketAddr, ConfigError> {
    let listen_s = raw.unwrap_or_else(|| "127.0.0.1:8080".into());
    listen_s.parse().map_err(|_| {
        invalid(
            "STRIDE_LISTEN",
            &listen_s,
            "not an address:port such as 127.0.0.1:8080",
        )
    })
}

/// `STRIDE_TRUST_FILE`: the issuers trusted, when set (it must exist).
fn trust_file(raw: Option<String>) -> Result<Option<PathBuf>, ConfigError> {
    let trust_file = raw.map(PathBuf::from);
    if let Some(t) = &trust_file {
        if !t.is_file() {
            return Err(invalid(
                "STRIDE_TRUST_FILE",
                &t.display().to_string(),
                "no such file",
            ));
        }
    }
    Ok(trust_file)
}

/// `STRIDE_LOG_FORMAT`: json (the default) or pretty.
fn log_format(raw: Option<&str>) -> Result<LogFormat, ConfigError> {
    Ok(match raw {
        None | Some("json") => LogFormat::Json,
        Some("pretty") => LogFormat::Pretty,
        Some(other) => {
            return Err(invalid(
                "STRIDE_LOG_FORMAT",
                other,
                "must be json or pretty",
            ))
        }
    })
}

/// `STRIDE_JWT_ALGORITHMS`: what CDS clients may sign with (CDS Hooks' ES384 and RS384 by
/// default; never none or an HMAC).
fn jwt_algorithms(raw: Option<String>) -> Result<Vec<stride_auth::Algorithm>, ConfigError> {
    let algs = raw.unwrap_or_else(|| "ES384,RS384".into());
    algs.split(',')
        .map(|a| match a.trim() {
            "ES384" => Ok(stride_auth::Algorithm::ES384),
            "RS384" => Ok(stride_auth::Algorithm::RS384),
            "ES256" => Ok(stride_auth::Algorithm::ES256),
            "RS256" => Ok(stride_auth::Algorithm::RS256),
            _ => Err(invalid(
                "STRIDE_JWT_ALGORITHMS",
                &algs,
                "only ES384, RS384, ES256 and RS256 (never none or HMAC)",
            )),
        })
        .collect()
}

/// `STRIDE_MIGRATE_ON_START`: true (the default) or false.
fn migrate_on_start(raw: Option<&str>) -> Result<bool, ConfigError> {
    Ok(match raw.map(str::trim) {
        None | Some("true") | Some("1") | Some("yes") => true,
        Some("false") | Some("0") | Some("no") => false,
        Some(other) => {
            return Err(invalid(
                "STRIDE_MIGRATE_ON_START",
                other,
                "must be true or false",
            ))
        }
    })
}

/// Staff sign-in with OpenID Connect: `STRIDE_OIDC_ISSUER` and `STRIDE_OIDC_CLIENT_ID` both
/// or neither (then no sign-in pages), the issuer https:// except on loopback.
fn oidc(
    issuer: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
) -> Result<Option<OidcSettings>, ConfigError> {
    Ok(match (issuer, client_id) {
        (None, None) => None,
        (Some(issuer), Some(client_id)) => {
            let issuer = issuer.trim_end_matches('/').to_owned();
            let url =
                PublicUrl::parse(&issuer).map_err(|r| invalid("STRIDE_OIDC_ISSUER", &issuer, r))?;
            if issuer.starts_with("http://") && !url.is_loopback() {
                return Err(invalid(
                    "STRIDE_OIDC_ISSUER",
                    &issuer,
                    "must be https:// (plain http only on loopback)",
                ));
            }
            if client_id.trim().is_empty() {
                return Err(invalid("STRIDE_OIDC_CLIENT_ID", "", "must not be empty"));
            }
            Some(OidcSettings {
                issuer,
                client_id,
                client_secret: client_secret.filter(|s| !s.is_empty()),
            })
        }
        (Some(i), None) => {
            return Err(invalid(
                "STRIDE_OIDC_CLIENT_ID",
                "",
                format!("required when STRIDE_OIDC_ISSUER is set ({i})"),
            ))
        }
        (None, Some(c)) => {
            return Err(invalid(
                "STRIDE_OIDC_ISSUER",
                "",
                format!("required when STRIDE_OIDC_CLIENT_ID is set ({c})"),
            ))
        }
    })
}

fn mask(url: &str) -> String {
    DatabaseUrl::Postgres(url.to_owned()).redacted()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        let dir = env!("CARGO_MANIFEST_DIR").to_owned() + "/../../guidelines";
        let mut v = vec![("STRIDE_GUIDELINES_DIR".to_owned(), dir)];
        v.extend(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        v
    }

    #[test]
    fn defaults_follow_the_contract() {
        let s = Settings::from_sources(None, &env(&[])).unwrap();
        assert_eq!(s.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(s.public_url.as_str(), "http://127.0.0.1:8080");
        assert_eq!(s.database, DatabaseUrl::Sqlite("sqlite://stride.db".into()));
        assert!(s.trust_file.is_none());
        assert_eq!(s.max_calls_per_tenant, (16 + 64) / 2);
        assert_eq!(s.fetch_max_bytes, 8 * 1024 * 1024);
        assert_eq!(s.fetch_max_bytes_in_flight, 32 * 1024 * 1024);
        let cores = std::thread::available_parallelism().unwrap().get();
        assert_eq!(s.workers, cores);
        assert_eq!(s.hook_queue_max, 4 * s.max_concurrent_hooks);
    }

    #[test]
    fn workers_are_a_bounded_whole_number() {
        let s = Settings::from_sources(None, &env(&[("STRIDE_WORKERS", "3")])).unwrap();
        assert_eq!(s.workers, 3);
        for bad in ["0", "-1", "four", "5000"] {
            let e = Settings::from_sources(None, &env(&[("STRIDE_WORKERS", bad)]))
                .unwrap_err()
                .to_string();
            assert!(e.contains("STRIDE_WORKERS"), "{e}");
        }
    }

    #[test]
    fn environment_wins_over_the_file() {
        let dir = tempfile_dir();
        let f = dir.join("stride.toml");
        std::fs::write(
            &f,
            "listen = \"127.0.0.1:9000\"\npublic_url = \"https://file.example\"\n",
        )
        .unwrap();
        let s = Settings::from_sources(
            Some(&f),
            &env(&[("STRIDE_PUBLIC_URL", "https://cds.example.org/")]),
        )
        .unwrap();
        assert_eq!(s.listen.port(), 9000);
        assert_eq!(s.public_url.as_str(), "https://cds.example.org");
    }

    #[test]
    fn a_bad_value_names_its_setting() {
        for (k, v) in [
            ("STRIDE_LISTEN", "localhost"),
            ("STRIDE_DATABASE_URL", "mysql://x"),
            ("STRIDE_PUBLIC_URL", "cds.example.org"),
            ("STRIDE_MAX_BODY_BYTES", "lots"),
            ("STRIDE_TRUST_FILE", "/no/such/trust.json"),
        ] {
            let e = Settings::from_sources(None, &env(&[(k, v)]))
                .unwrap_err()
                .to_string();
            assert!(e.contains(k), "{e}");
        }
    }

    #[test]
    fn oidc_sign_in_needs_issuer_and_client_and_hides_the_secret() {
        let ok = Settings::from_sources(
            None,
            &env(&[
                ("STRIDE_OIDC_ISSUER", "https://login.example.org/"),
                ("STRIDE_OIDC_CLIENT_ID", "stride"),
                ("STRIDE_OIDC_CLIENT_SECRET", "s3cret"),
            ]),
        )
        .unwrap();
        let o = ok.oidc.unwrap();
        assert_eq!(o.issuer, "https://login.example.org");
        assert!(!format!("{o:?}").contains("s3cret"));
        for (vars, named) in [
            (
                vec![("STRIDE_OIDC_ISSUER", "https://login.example.org")],
                "STRIDE_OIDC_CLIENT_ID",
            ),
            (
                vec![("STRIDE_OIDC_CLIENT_ID", "stride")],
                "STRIDE_OIDC_ISSUER",
            ),
            (
                vec![
                    ("STRIDE_OIDC_ISSUER", "http://login.example.org"),
                    ("STRIDE_OIDC_CLIENT_ID", "x"),
                ],
                "STRIDE_OIDC_ISSUER",
            ),
        ] {
            let e = Settings::from_sources(None, &env(&vars))
                .unwrap_err()
                .to_string();
            assert!(e.contains(named), "{e}");
        }
        // Plain http only for a provider on loopback.
        let local = Settings::from_sources(
            None,
            &env(&[
                ("STRIDE_OIDC_ISSUER", "http://127.0.0.1:9000"),
                ("STRIDE_OIDC_CLIENT_ID", "x"),
            ]),
        )
        .unwrap();
        assert!(local.oidc.is_some());
    }

    #[test]
    fn postgres_passwords_are_masked() {
        let d = DatabaseUrl::parse("postgres://stride:s3cret@db:5432/stride").unwrap();
        assert_eq!(d.redacted(), "postgres://stride:***@db:5432/stride");
        let e = Settings::from_sources(
            None,
            &env(&[("STRIDE_DATABASE_URL", "mysql://u:s3cret@h/db")]),
        )
        .unwrap_err()
        .to_string();
        assert!(!e.contains("s3cret"), "{e}");
    }

    fn tempfile_dir() -> PathBuf {
        let d = std::env::temp_dir().join(format!("stride-config-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        d
    }
}
