//! The `stride` binary as an operator runs it: configuration errors, migrate, rules,
//! and graceful shutdown on SIGTERM.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn stride(dir: &tempfile::TempDir) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_stride"));
    c.current_dir(repo())
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env(
            "STRIDE_DATABASE_URL",
            format!("sqlite://{}", dir.path().join("stride.db").display()),
        )
        .env("STRIDE_LISTEN", "127.0.0.1:0");
    c
}

/// The database a test that must hold on both backends runs on: SQLite in `dir`, or, when the
/// suite runs on PostgreSQL (STRIDE_TEST_BACKEND=postgres), a fresh database on its cluster.
fn test_database(dir: &tempfile::TempDir) -> String {
    if std::env::var("STRIDE_TEST_BACKEND").as_deref() != Ok("postgres") {
        return format!("sqlite://{}", dir.path().join("stride.db").display());
    }
    let admin = std::env::var("STRIDE_TEST_POSTGRES_URL")
        .expect("STRIDE_TEST_BACKEND=postgres needs STRIDE_TEST_POSTGRES_URL");
    let name = format!("stride_cli_{}", uuid::Uuid::new_v4().simple());
    let created = Command::new("psql")
        .arg(&admin)
        .args(["-qc", &format!("CREATE DATABASE {name}")])
        .status()
        .expect("psql runs");
    assert!(created.success(), "create the test database");
    let base = admin.rsplit_once('/').map(|(b, _)| b).unwrap_or(&admin);
    format!("{base}/{name}")
}

fn run(c: &mut Command) -> Output {
    c.output().expect("stride runs")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn bad_settings_stop_the_start_and_name_the_setting() {
    let dir = tempfile::tempdir().unwrap();
    for (name, value) in [
        ("STRIDE_LISTEN", "localhost"),
        ("STRIDE_PUBLIC_URL", "ftp://x"),
        ("STRIDE_DATABASE_URL", "mysql://root@db/stride"),
        ("STRIDE_GUIDELINES_DIR", "/no/such/folder"),
        ("STRIDE_TRUST_FILE", "/no/such/trust.json"),
        ("STRIDE_SHUTDOWN_TIMEOUT_SECS", "-1"),
    ] {
        let out = run(stride(&dir).arg("serve").env(name, value));
        assert_eq!(out.status.code(), Some(2), "{name}: {}", stderr(&out));
        assert!(stderr(&out).contains(name), "{name}: {}", stderr(&out));
    }
}

#[test]
fn an_invalid_rule_set_stops_the_start_and_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("guidelines/medial-knee-pain-running");
    std::fs::create_dir_all(&rules).unwrap();
    let text =
        std::fs::read_to_string(repo().join("guidelines/medial-knee-pain-running/1.0.0.yaml"))
            .unwrap();
    std::fs::write(
        rules.join("1.0.0.yaml"),
        text.replace("param: focal_tenderness_cm", "param: no_such_param"),
    )
    .unwrap();
    let out = run(stride(&dir)
        .arg("serve")
        .env("STRIDE_GUIDELINES_DIR", dir.path().join("guidelines")));
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("1.0.0.yaml") && err.contains("unknown parameter `no_such_param`"),
        "{err}"
    );
}

#[test]
fn an_unreachable_postgres_fails_clearly_without_the_password() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(stride(&dir).arg("migrate").env(
        "STRIDE_DATABASE_URL",
        "postgres://stride:s3cret@127.0.0.1:1/stride",
    ));
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("postgres://stride:***@127.0.0.1:1/stride"),
        "{err}"
    );
    assert!(
        !err.contains("s3cret") && !String::from_utf8_lossy(&out.stdout).contains("s3cret"),
        "{err}"
    );
}

#[test]
fn migrate_creates_the_sqlite_file_and_is_repeatable() {
    let dir = tempfile::tempdir().unwrap();
    for _ in 0..2 {
        let out = run(stride(&dir).arg("migrate"));
        assert!(out.status.success(), "{}", stderr(&out));
    }
    assert!(dir.path().join("stride.db").is_file());
}

#[test]
fn rules_validate_and_test_pass_on_the_shipped_rule_sets() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(stride(&dir).args(["rules", "validate"]));
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(String::from_utf8_lossy(&out.stdout)
        .contains("ok      guidelines/medial-knee-pain-running/1.0.0.yaml"));
    let out = run(stride(&dir).args(["rules", "test"]));
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        stderr(&out)
    );
}

#[test]
fn rules_validate_reports_a_broken_file() {
    let dir = tempfile::tempdir().unwrap();
    let sub = dir.path().join("medial-knee-pain-running");
    std::fs::create_dir_all(&sub).unwrap();
    let bad = sub.join("1.0.0.yaml");
    std::fs::write(&bad, "id: medial-knee-pain-running\nversion: 1.0\n").unwrap();
    let out = run(stride(&dir).args(["rules", "validate"]).arg(&bad));
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("INVALID"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

/// Start `stride serve` and read the port from its JSON start-up log line.
/// A trust file with the test EHR key, and `n` tokens (distinct jti) for calls to `path`.
fn trust_and_tokens(dir: &tempfile::TempDir, path: &str, n: usize) -> (PathBuf, Vec<String>) {
    let keys = repo().join("tests/fixtures/keys");
    let jwk: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(keys.join("ehr-es384.jwk.json")).unwrap())
            .unwrap();
    let trust = dir.path().join("trust.json");
    let file = serde_json::json!({"issuers": [{"iss": "https://ehr.test", "kind": "cds-client", "jwks": {"keys": [jwk]}}]});
    std::fs::write(&trust, file.to_string()).unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES384);
    header.kid = Some("ehr-es384".into());
    let pem = std::fs::read_to_string(keys.join("ehr-es384.pem")).unwrap();
    let key = jsonwebtoken::EncodingKey::from_ec_pem(pem.as_bytes()).unwrap();
    let tokens = (0..n)
        .map(|i| {
            let claims = serde_json::json!({"iss": "https://ehr.test", "aud": format!("http://localhost{path}"),
                "iat": now, "exp": now + 300, "jti": format!("cli-{now}-{}-{i}", std::process::id())});
            jsonwebtoken::encode(&header, &claims, &key).unwrap()
        })
        .collect();
    (trust, tokens)
}

/// `stride serve` trusting the test EHR, with `n` tokens for calls to `path`.
fn serve_trusted(dir: &tempfile::TempDir, path: &str, n: usize) -> (Child, u16, Logs, Vec<String>) {
    let url = format!("sqlite://{}", dir.path().join("stride.db").display());
    serve_trusted_on(dir, &url, path, n)
}

fn serve_trusted_on(
    dir: &tempfile::TempDir,
    database: &str,
    path: &str,
    n: usize,
) -> (Child, u16, Logs, Vec<String>) {
    let (trust, tokens) = trust_and_tokens(dir, path, n);
    let mut command = stride(dir);
    command.env("STRIDE_DATABASE_URL", database);
    command
        .env("STRIDE_TRUST_FILE", &trust)
        .env("STRIDE_PUBLIC_URL", "http://localhost");
    let (child, port, logs) = serve_with(command, "serve");
    (child, port, logs, tokens)
}

fn serve(dir: &tempfile::TempDir) -> (Child, u16, Logs) {
    serve_with(stride(dir), "serve")
}

type Logs = std::sync::Arc<std::sync::Mutex<Vec<String>>>;

/// Start `stride <subcommand>` (serve or dev) and wait for it to listen. Every log line
/// (also those before the start) is kept in the returned list.
// The child is handed to the caller, which kills and waits for it.
#[allow(clippy::zombie_processes)]
fn serve_with(mut command: Command, subcommand: &str) -> (Child, u16, Logs) {
    let mut child = command
        .arg(subcommand)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let logs: Logs = Default::default();
    let sink = logs.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            sink.lock().unwrap().push(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        let port = logs.lock().unwrap().iter().find_map(|line| {
            let v: serde_json::Value = serde_json::from_str(line).expect("logs are JSON lines");
            (v["message"] == "stride listening").then(|| v["port"].as_u64().unwrap() as u16)
        });
        if let Some(port) = port {
            return (child, port, logs);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    panic!("stride did not start");
}

fn sigterm(child: &Child) {
    let ok = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
}

#[test]
fn sigterm_closes_the_listener_and_exits_cleanly_without_waiting_for_idle_connections() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, port, logs) = serve(&dir);

    // An idle keep-alive connection must not hold the shutdown until the timeout (30 s).
    let mut idle = TcpStream::connect(("127.0.0.1", port)).unwrap();
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: stride\r\n\r\n")
        .unwrap();
    let mut buf = [0u8; 512];
    let n = idle.read(&mut buf).unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));

    let started = Instant::now();
    sigterm(&child);
    let status = child.wait().unwrap();
    assert!(status.success(), "clean exit after SIGTERM: {status:?}");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "idle connections do not delay shutdown"
    );
    assert!(
        TcpStream::connect(("127.0.0.1", port)).is_err(),
        "listener closed"
    );
    let lines: Vec<String> = logs.lock().unwrap().clone();
    assert!(
        lines
            .iter()
            .any(|l| l.contains("SIGTERM received; starting graceful shutdown")),
        "{lines:?}"
    );
    assert!(
        lines.iter().any(|l| l.contains("stride stopped")),
        "{lines:?}"
    );
}

#[test]
fn sigterm_lets_an_in_flight_hook_call_finish_then_exits_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let path = "/cds-services/running-knee-patient-view";
    let (mut child, port, logs, tokens) = serve_trusted(&dir, path, 1);
    let token = &tokens[0];
    let body = serde_json::json!({
        "hook": "patient-view", "hookInstance": "0d0a2f6e-8d7b-4a53-9e41-0f3c2b1a9d10",
        "context": {"userId": "Practitioner/1", "patientId": "p1"},
        "prefetch": {"Condition": {"resourceType": "Bundle", "type": "searchset"}, "Observation": null}
    })
    .to_string();
    let (head, tail) = body.split_at(body.len() / 2);

    // The request is under way (headers and half the body sent) when SIGTERM arrives.
    let mut conn = TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        conn,
        "POST {path} HTTP/1.1\r\nHost: stride\r\nContent-Type: application/json\r\nAuthorization: Bearer {token}\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{head}",
        body.len()
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    sigterm(&child);
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        child.try_wait().unwrap().is_none(),
        "still running while a request is in flight"
    );
    assert!(
        TcpStream::connect(("127.0.0.1", port)).is_err(),
        "no new connections after SIGTERM"
    );

    conn.write_all(tail.as_bytes()).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut response = String::new();
    conn.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.contains("\"cards\":[]"), "{response}");

    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}");
    let lines: Vec<String> = logs.lock().unwrap().clone();
    assert!(
        lines.iter().any(|l| l.contains("stride stopped")),
        "{lines:?}"
    );
}

#[test]
fn logs_are_json_and_carry_no_request_path_or_query() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, port, logs) = serve(&dir);
    let mut conn = TcpStream::connect(("127.0.0.1", port)).unwrap();
    conn.write_all(b"GET /fhir/CarePlan?patient=Patient/secret-123 HTTP/1.1\r\nHost: s\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut response = String::new();
    conn.read_to_string(&mut response).unwrap();
    sigterm(&child);
    child.wait().unwrap();
    let lines: Vec<String> = logs.lock().unwrap().clone();
    // The request is logged (route template and status), its query is not.
    assert!(
        lines
            .iter()
            .any(|l| l.contains("\"http.status_code\":401") && l.contains("/fhir/CarePlan")),
        "{lines:?}"
    );
    for l in &lines {
        serde_json::from_str::<serde_json::Value>(l).expect("every line is JSON");
        assert!(!l.contains("secret-123"), "PHI in a log line: {l}");
    }
}

#[test]
fn dev_mode_refuses_a_public_url_that_is_not_loopback() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(stride(&dir)
        .arg("dev")
        .env("STRIDE_PUBLIC_URL", "https://cds.example.org")
        .env("STRIDE_DEV_DIR", dir.path()));
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("not loopback"), "{}", stderr(&out));
    assert!(
        !dir.path().join("es384.pk8").exists(),
        "no key is made when refusing"
    );
    let out = run(stride(&dir)
        .arg("token")
        .env("STRIDE_PUBLIC_URL", "https://cds.example.org")
        .env("STRIDE_DEV_DIR", dir.path()));
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn dev_mode_refuses_to_listen_beyond_loopback() {
    let dir = tempfile::tempdir().unwrap();
    for listen in ["0.0.0.0:0", "[::]:0"] {
        let out = run(stride(&dir)
            .arg("dev")
            .env("STRIDE_LISTEN", listen)
            .env("STRIDE_PUBLIC_URL", "http://127.0.0.1:8080")
            .env("STRIDE_DEV_DIR", dir.path()));
        assert_eq!(out.status.code(), Some(2), "{listen}");
        assert!(
            stderr(&out).contains("STRIDE_LISTEN"),
            "{listen}: {}",
            stderr(&out)
        );
        assert!(!dir.path().join("es384.pk8").exists(), "{listen}: no key");
    }
}

#[test]
fn dev_mode_trusts_its_own_key_so_a_token_from_stride_token_works_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut command = stride(&dir);
    command
        .env("STRIDE_PUBLIC_URL", "http://localhost")
        .env("STRIDE_DEV_DIR", dir.path());
    let (mut child, port, logs) = serve_with(command, "dev");
    let token = run(stride(&dir)
        .arg("token")
        .env("STRIDE_PUBLIC_URL", "http://localhost")
        .env("STRIDE_DEV_DIR", dir.path()));
    assert!(token.status.success(), "{}", stderr(&token));
    let token = String::from_utf8(token.stdout).unwrap().trim().to_owned();
    let body = r#"{"hook":"patient-view","hookInstance":"x","context":{"userId":"Practitioner/1","patientId":"p1"},"prefetch":{"Condition":null}}"#;
    let call = |token: &str| {
        let mut conn = TcpStream::connect(("127.0.0.1", port)).unwrap();
        write!(
            conn,
            "POST /cds-services/running-knee-patient-view HTTP/1.1\r\nHost: s\r\nContent-Type: application/json\r\n\
             Authorization: Bearer {token}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        let mut response = String::new();
        conn.read_to_string(&mut response).unwrap();
        response
    };
    assert!(call(&token).starts_with("HTTP/1.1 200"));
    assert!(
        call(&token).starts_with("HTTP/1.1 401"),
        "the same token twice is a replay"
    );
    sigterm(&child);
    child.wait().unwrap();
    let lines: Vec<String> = logs.lock().unwrap().clone();
    assert!(
        lines.iter().any(|l| l.contains("DEVELOPMENT MODE")),
        "a loud warning: {lines:?}"
    );
}

/// The README's development path, followed as a newcomer would: a hook call drafts a plan, and
/// the staff token `stride token --kind staff` prints opens the queue that shows it, by bearer
/// token and through the sign-in page `stride dev` names.
#[test]
fn dev_mode_staff_pages_show_what_the_development_hook_drafted() {
    let dir = tempfile::tempdir().unwrap();
    let mut command = stride(&dir);
    command
        .env("STRIDE_PUBLIC_URL", "http://localhost")
        .env("STRIDE_DEV_DIR", dir.path());
    let (mut child, port, _logs) = serve_with(command, "dev");
    let (said, heard) = std::sync::mpsc::channel();
    let err = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(err).lines().map_while(Result::ok) {
            let _ = said.send(line);
        }
    });
    let mut printed = String::new();
    while let Ok(line) = heard.recv_timeout(Duration::from_secs(5)) {
        printed.push_str(&line);
        printed.push('\n');
        if line.contains("/ui/dev/sign-in") {
            break;
        }
    }
    assert!(
        printed.contains("http://localhost/ui/dev/sign-in")
            && printed.contains("stride token --kind staff"),
        "dev mode says how to open the queue: {printed}"
    );
    let mint = |args: &[&str]| {
        let out = run(stride(&dir)
            .arg("token")
            .args(args)
            .env("STRIDE_PUBLIC_URL", "http://localhost")
            .env("STRIDE_DEV_DIR", dir.path()));
        assert!(out.status.success(), "{}", stderr(&out));
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    };
    let exchange = |request: String| {
        let mut conn = TcpStream::connect(("127.0.0.1", port)).unwrap();
        conn.write_all(request.as_bytes()).unwrap();
        let mut response = String::new();
        conn.read_to_string(&mut response).unwrap();
        response
    };
    // The README's hook call: an M25.561 Condition from 2026-11-20 drafts a plan for p1.
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let start = readme
        .find("localhost:8080/cds-services/running-knee-patient-view -d '")
        .unwrap();
    let body = readme[start..]
        .split_once("-d '")
        .unwrap()
        .1
        .split_once("'\n")
        .unwrap()
        .0;
    let token = mint(&["--service", "running-knee-patient-view"]);
    let answer = exchange(format!(
        "POST /cds-services/running-knee-patient-view HTTP/1.1\r\nHost: s\r\nContent-Type: application/json\r\n\
         Authorization: Bearer {token}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    ));
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");

    let staff = mint(&["--kind", "staff"]);
    let queue = exchange(format!(
        "GET /ui/careplans HTTP/1.1\r\nHost: s\r\nAuthorization: Bearer {staff}\r\nConnection: close\r\n\r\n"
    ));
    assert!(queue.starts_with("HTTP/1.1 200"), "{queue}");
    assert!(
        queue.contains("p1") && !queue.contains("No CarePlans match"),
        "the staff token sees the development clinic's draft: {queue}"
    );

    // The browser's way: the sign-in page takes the pasted token and opens a session.
    let form =
        exchange("GET /ui/dev/sign-in HTTP/1.1\r\nHost: s\r\nConnection: close\r\n\r\n".into());
    assert!(
        form.starts_with("HTTP/1.1 200") && form.contains("name=\"token\""),
        "{form}"
    );
    let staff = mint(&["--kind", "staff"]);
    let posted = format!("token={staff}");
    let signed_in = exchange(format!(
        "POST /ui/dev/sign-in HTTP/1.1\r\nHost: s\r\nOrigin: http://localhost\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{posted}",
        posted.len()
    ));
    assert!(signed_in.starts_with("HTTP/1.1 303"), "{signed_in}");
    let cookie = signed_in
        .lines()
        .find_map(|l| l.strip_prefix("set-cookie: stride_session="))
        .and_then(|v| v.split(';').next())
        .expect("a session cookie")
        .to_owned();
    let queue = exchange(format!(
        "GET /ui/careplans HTTP/1.1\r\nHost: s\r\nCookie: stride_session={cookie}\r\nConnection: close\r\n\r\n"
    ));
    assert!(
        queue.starts_with("HTTP/1.1 200") && queue.contains("p1"),
        "{queue}"
    );
    // A token that is not a staff token of a trusted issuer opens nothing.
    let bad = "token=not-a-token";
    let refused = exchange(format!(
        "POST /ui/dev/sign-in HTTP/1.1\r\nHost: s\r\nOrigin: http://localhost\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{bad}",
        bad.len()
    ));
    assert!(
        refused.starts_with("HTTP/1.1 401")
            && !refused
                .to_lowercase()
                .contains("set-cookie: stride_session"),
        "{refused}"
    );
    sigterm(&child);
    child.wait().unwrap();
}

/// A committee's path from the command line: read the impact for the clinic (the report is
/// kept), approve, activate. Operators name themselves (`--as`), so command-line sign-offs
/// count as one person: the second approval comes with a verified staff token.
#[test]
fn rules_approve_and_activate_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = "/cds-services/running-knee-patient-view";
    let (mut child, port, _, tokens) = serve_trusted(&dir, path, 1);
    assert!(hook_call(port, path, &tokens[0], 1).is_some());
    sigterm(&child);
    child.wait().unwrap();
    // The clinic's staff issuer joins the trust file (its tenant: the EHR's).
    let tenant = "https://ehr.test";
    let keys = repo().join("tests/fixtures/keys");
    let trust_path = dir.path().join("trust.json");
    let mut trust: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&trust_path).unwrap()).unwrap();
    let staff_jwk: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(keys.join("staff-es384.jwk.json")).unwrap())
            .unwrap();
    trust["issuers"].as_array_mut().unwrap().push(serde_json::json!({
        "iss": "https://staff.test", "kind": "staff", "tenant": tenant, "jwks": {"keys": [staff_jwk]}}));
    std::fs::write(&trust_path, trust.to_string()).unwrap();
    let cli = || {
        let mut c = stride(&dir);
        c.env("STRIDE_TRUST_FILE", &trust_path)
            .env("STRIDE_PUBLIC_URL", "http://localhost");
        c
    };
    let candidate = "medial-knee-pain-running=1.1.1";
    let out = run(cli().args([
        "rules",
        "impact",
        "--candidate",
        candidate,
        "--tenant",
        tenant,
    ]));
    assert!(out.status.success(), "{}", stderr(&out));
    let stdout = String::from_utf8(out.stdout).unwrap();
    let summary: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    let hash = summary["summary"]["impactHash"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(hash.len(), 64, "{summary}");
    let approve = |who: &str, impact: &str| {
        run(cli().args([
            "rules",
            "approve",
            "--candidate",
            candidate,
            "--tenant",
            tenant,
            "--as",
            who,
            "--impact",
            impact,
        ]))
    };
    let activate = || {
        run(cli().args([
            "rules",
            "activate",
            "--candidate",
            candidate,
            "--tenant",
            tenant,
            "--as",
            "ana",
        ]))
    };
    let wrong = approve("ana", &"0".repeat(64));
    assert_eq!(wrong.status.code(), Some(2), "an impact report nobody read");
    let out = approve("ana", &hash);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("approve: medial-knee-pain-running 1.1.1")
    );
    assert!(approve("ben", &hash).status.success());
    let out = activate();
    assert_eq!(
        out.status.code(),
        Some(2),
        "two names on one command line are one person"
    );
    assert!(stderr(&out).contains("count as one"), "{}", stderr(&out));

    // The second approval, by a member of staff with a verified token, on the served API.
    let (mut child, port, _, _) = serve_trusted_with(&dir, &trust_path);
    let pem = std::fs::read_to_string(keys.join("staff-es384.pem")).unwrap();
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES384);
    header.kid = Some("staff-es384".into());
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let claims = serde_json::json!({"iss": "https://staff.test", "sub": "cleo", "aud": "http://localhost", "tenant": tenant,
        "iat": now, "exp": now + 300, "scope": "guideline.approve"});
    let token = jsonwebtoken::encode(
        &header,
        &claims,
        &jsonwebtoken::EncodingKey::from_ec_pem(pem.as_bytes()).unwrap(),
    )
    .unwrap();
    let body = serde_json::json!({"decision": "approve", "impact": hash}).to_string();
    let mut conn = TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        conn,
        "POST /guidelines/medial-knee-pain-running/1.1.1/$sign-off HTTP/1.1\r\nHost: s\r\nContent-Type: application/json\r\n\
         Authorization: Bearer {token}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut response = String::new();
    conn.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 201"), "{response}");
    sigterm(&child);
    child.wait().unwrap();
    let out = activate();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("activated"));

    // At the next start the version in force for that clinic is 1.1.1, on the record.
    let (mut child, _, _, _) = serve_trusted_with(&dir, &trust_path);
    sigterm(&child);
    child.wait().unwrap();
    let out = run(cli().args(["audit", "verify"]));
    assert!(out.status.success(), "{}", stderr(&out));
    let export = dir.path().join("log.ndjson");
    assert!(run(cli().args(["audit", "export", "--out"]).arg(&export))
        .status
        .success());
    let log = std::fs::read_to_string(&export).unwrap();
    assert_eq!(log.matches("\"guideline-sign-off\"").count(), 3, "{log}");
    assert_eq!(log.matches("\"guideline-activation\"").count(), 1);
    assert!(
        log.lines().any(|l| l.contains("\"guideline-version\"")
            && l.contains("\"1.1.1\"")
            && l.contains("sign-off")),
        "the version in force changed by sign-off, on the record at the next start"
    );
}

/// Serve `dir`'s database with the trust file at `trust`.
fn serve_trusted_with(
    dir: &tempfile::TempDir,
    trust: &std::path::Path,
) -> (Child, u16, Logs, Vec<String>) {
    let mut command = stride(dir);
    command
        .env("STRIDE_TRUST_FILE", trust)
        .env("STRIDE_PUBLIC_URL", "http://localhost");
    let (child, port, logs) = serve_with(command, "serve");
    (child, port, logs, Vec::new())
}

#[test]
fn audit_verify_export_and_replay_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = "/cds-services/running-knee-patient-view";
    let (mut child, port, _, tokens) = serve_trusted(&dir, path, 1);
    assert!(
        hook_call(port, path, &tokens[0], 1).is_some(),
        "the hook call is answered"
    );
    sigterm(&child);
    child.wait().unwrap();

    let out = run(stride(&dir).args(["audit", "verify"]));
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("\"status\":\"intact\""));

    let file = dir.path().join("export.ndjson");
    let out = run(stride(&dir).args(["audit", "export", "--out"]).arg(&file));
    assert!(out.status.success(), "{}", stderr(&out));
    // The version in force when the service started, then the call.
    assert!(
        stderr(&out).contains("exported 2 entries"),
        "progress on stderr: {}",
        stderr(&out)
    );
    let exported = std::fs::read_to_string(&file).unwrap();
    let lines: Vec<serde_json::Value> = exported
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines[0]["action"], "guideline-version");
    let line = &lines[1];
    assert_eq!(line["action"], "hook-call");

    let id = line["id"].as_str().unwrap();
    let out = run(stride(&dir).args(["audit", "replay", id]));
    assert!(out.status.success(), "{}", stderr(&out));
    let replay: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(replay["identical"], true);

    // Tamper with the file behind Stride's back: verify fails with exit 1.
    let db = dir.path().join("stride.db");
    let script = format!(
        "import sqlite3; c = sqlite3.connect('{}'); c.execute('DROP TRIGGER audit_no_update'); \
         c.execute(\"UPDATE audit_entries SET outcome = 'refused'\"); c.commit()",
        db.display()
    );
    assert!(Command::new("python3")
        .args(["-c", &script])
        .status()
        .unwrap()
        .success());
    let out = run(stride(&dir).args(["audit", "verify"]));
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("\"status\":\"broken\""));
}

/// One hook call over a fresh connection; `Some(careplan id)` when it was answered 200.
fn hook_call(port: u16, path: &str, token: &str, n: usize) -> Option<String> {
    let body = format!(
        r#"{{"hook":"patient-view","hookInstance":"crash-{n}","context":{{"userId":"Practitioner/1","patientId":"p{n}"}},
        "prefetch":{{"Observation":null,"Condition":{{"resourceType":"Bundle","type":"searchset","entry":[{{"resource":
        {{"resourceType":"Condition","id":"c1","subject":{{"reference":"Patient/p{n}"}},
         "clinicalStatus":{{"coding":[{{"system":"http://terminology.hl7.org/CodeSystem/condition-clinical","code":"active"}}]}},
         "code":{{"coding":[{{"system":"http://hl7.org/fhir/sid/icd-10-cm","code":"M25.561"}}]}},"onsetDateTime":"2026-01-01"}}}}]}}}}}}"#
    );
    let mut conn = TcpStream::connect(("127.0.0.1", port)).ok()?;
    conn.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(
        conn,
        "POST {path} HTTP/1.1\r\nHost: s\r\nContent-Type: application/json\r\nAuthorization: Bearer {token}\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .ok()?;
    let mut response = String::new();
    conn.read_to_string(&mut response).ok()?;
    if !response.starts_with("HTTP/1.1 200") {
        return None;
    }
    let json = &response[response.find("\r\n\r\n")? + 4..];
    let v: serde_json::Value = serde_json::from_str(json).ok()?;
    v["cards"][0]["suggestions"][0]["actions"][0]["resource"]["id"]
        .as_str()
        .map(str::to_owned)
}

#[test]
fn sigkill_under_load_loses_no_acknowledged_decision() {
    let dir = tempfile::tempdir().unwrap();
    let path = "/cds-services/running-knee-patient-view";
    let database = test_database(&dir);
    let (mut child, port, _, tokens) = serve_trusted_on(&dir, &database, path, 400);

    // Four clients call as fast as they can; the server is killed while they do.
    let acknowledged = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let clients: Vec<_> = tokens
        .chunks(100)
        .enumerate()
        .map(|(c, chunk)| {
            let chunk = chunk.to_vec();
            let ack = acknowledged.clone();
            std::thread::spawn(move || {
                for (i, token) in chunk.iter().enumerate() {
                    if let Some(id) = hook_call(port, path, token, c * 100 + i) {
                        ack.lock().unwrap().push(id);
                    }
                }
            })
        })
        .collect();
    // Kill as soon as some calls have been answered, while the rest are in flight.
    let deadline = Instant::now() + Duration::from_secs(30);
    while acknowledged.lock().unwrap().len() < 30 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    Command::new("kill")
        .args(["-KILL", &child.id().to_string()])
        .status()
        .unwrap();
    child.wait().unwrap();
    for c in clients {
        c.join().unwrap();
    }
    let acknowledged = acknowledged.lock().unwrap().clone();
    assert!(
        acknowledged.len() >= 30,
        "calls were answered before the kill"
    );
    assert!(
        acknowledged.len() < 400,
        "the kill came while calls were still being made"
    );

    // After the crash: the chain is intact and every answered call has its audit entry.
    let out = run(stride(&dir)
        .env("STRIDE_DATABASE_URL", &database)
        .args(["audit", "verify"]));
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        stderr(&out)
    );
    let file = dir.path().join("after-crash.ndjson");
    assert!(run(stride(&dir)
        .env("STRIDE_DATABASE_URL", &database)
        .args(["audit", "export", "--out"])
        .arg(&file))
    .status
    .success());
    let recorded: std::collections::HashSet<String> = std::fs::read_to_string(&file)
        .unwrap()
        .lines()
        .filter_map(|l| {
            serde_json::from_str::<serde_json::Value>(l).ok()?["carePlanId"]
                .as_str()
                .map(str::to_owned)
        })
        .collect();
    for id in &acknowledged {
        assert!(
            recorded.contains(id),
            "CarePlan {id} was acknowledged but its decision is not in the log"
        );
    }
}

/// An OTLP/HTTP receiver on loopback that counts the trace exports it is sent.
fn otlp_receiver() -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
    let exports = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let seen = exports.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let seen = seen.clone();
            std::thread::spawn(move || {
                let mut reader = BufReader::new(conn.try_clone().unwrap());
                loop {
                    let mut line = String::new();
                    let mut length = 0usize;
                    let mut traces = false;
                    if reader.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    traces |= line.starts_with("POST /v1/traces");
                    loop {
                        let mut h = String::new();
                        if reader.read_line(&mut h).unwrap_or(0) == 0 {
                            return;
                        }
                        if h == "\r\n" {
                            break;
                        }
                        if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
                            length = v.trim().parse().unwrap_or(0);
                        }
                    }
                    let mut body = vec![0u8; length];
                    if reader.read_exact(&mut body).is_err() {
                        return;
                    }
                    if traces && length > 0 {
                        seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    }
                    let _ = conn.write_all(
                        b"HTTP/1.1 200 OK\r\nContent-Type: application/x-protobuf\r\nContent-Length: 0\r\n\r\n",
                    );
                }
            });
        }
    });
    (url, exports)
}

#[test]
fn spans_still_buffered_at_sigterm_reach_the_collector() {
    let dir = tempfile::tempdir().unwrap();
    let (collector, exports) = otlp_receiver();
    let path = "/cds-services/running-knee-patient-view";
    let (trust, tokens) = trust_and_tokens(&dir, path, 1);
    let mut command = stride(&dir);
    command
        .env("STRIDE_TRUST_FILE", &trust)
        .env("STRIDE_PUBLIC_URL", "http://localhost")
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", &collector)
        // Far beyond the test: only the flush at shutdown can send the call's spans.
        .env("OTEL_BSP_SCHEDULE_DELAY", "600000");
    let (mut child, port, logs) = serve_with(command, "serve");
    let body = serde_json::json!({
        "hook": "patient-view", "hookInstance": "5f0c3c52-6f7e-4a0e-9d7e-2b8f6b0b7a11",
        "context": {"userId": "Practitioner/1", "patientId": "p1"},
        "prefetch": {"Condition": {"resourceType": "Bundle", "type": "searchset"}, "Observation": null}
    })
    .to_string();
    let mut conn = TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        conn,
        "POST {path} HTTP/1.1\r\nHost: stride\r\nContent-Type: application/json\r\nAuthorization: Bearer {}\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        tokens[0],
        body.len()
    )
    .unwrap();
    let mut response = String::new();
    conn.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert_eq!(
        exports.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "OTEL_BSP_SCHEDULE_DELAY is honoured: nothing is sent before the delay"
    );
    sigterm(&child);
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}");
    assert!(
        exports.load(std::sync::atomic::Ordering::SeqCst) >= 1,
        "the buffered spans were flushed at shutdown: {:?}",
        logs.lock().unwrap()
    );
}
