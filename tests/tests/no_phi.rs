//! Issue 31, "No PHI where it does not belong": a body that cannot be read is refused without
//! its contents. serde's messages quote the value they stopped at (a patient's name, a reason
//! typed by staff, a token); no such message may reach a response, a log line or a span. Every
//! endpoint that parses a body is sent bodies that put a marker where the parser stops, and the
//! answer and everything logged meanwhile (at debug, with span fields) are searched for it.

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};

use stride_tests::tokens::{staff_token, staff_token_as};
use stride_tests::{spawn_app, TestApp};

const MARK: &str = "Zyxwvut-Secretname";
const PV: &str = "/cds-services/running-knee-patient-view";

/// Everything the process logs, from the moment the test installs the subscriber.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn captured() -> &'static Captured {
    static LOG: OnceLock<Captured> = OnceLock::new();
    LOG.get_or_init(|| {
        let log = Captured::default();
        let writer = log.clone();
        // The service's own log format (JSON, span fields, a line per closed span), at debug.
        tracing_subscriber::fmt()
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_events(tracing_subscriber::fmt::format::FmtSpan::CLOSE)
            .with_max_level(tracing::Level::DEBUG)
            .with_writer(move || writer.clone())
            .init();
        log
    })
}

/// Send `body` with `token` to `path`: the status, and the answer's text.
async fn send(app: &TestApp, path: &str, token: &str, ctype: &str, body: &str) -> (u16, String) {
    let res = app
        .client
        .post(app.url(path))
        .bearer_auth(token)
        .header("content-type", ctype)
        .body(body.to_owned())
        .send()
        .await
        .unwrap();
    (res.status().as_u16(), res.text().await.unwrap())
}

#[tokio::test]
async fn no_endpoint_quotes_a_body_it_cannot_read() {
    let log = captured();
    let app = spawn_app().await;
    let cds = |path: &str| stride_tests::tokens::cds_token(path);
    let apply = "/fhir/PlanDefinition/medial-knee-pain-running-1.0.2/$apply";
    let feedback = format!("{PV}/feedback");
    let sign_off = "/guidelines/medial-knee-pain-running/1.1.1/$sign-off";
    let activate = "/guidelines/medial-knee-pain-running/1.1.1/$activate";
    let review = format!("/fhir/CarePlan/{}/$review", uuid::Uuid::new_v4());
    // Where the parser stops: a bare word (syntax), a string where another type belongs
    // (data), and a value cut off at the end of the body.
    let syntax = format!(r#"{{"hook": "patient-view", "context": {{"patientId": {MARK}}}}}"#);
    let typed = |field: &str| format!(r#"{{"{field}": "{MARK}"}}"#);
    let cut = format!(r#"{{"hook": "patient-view", "hookInstance": "{MARK}"#);
    let cases: Vec<(String, String, &str, String)> = vec![
        (PV.into(), cds(PV), "application/json", syntax.clone()),
        (PV.into(), cds(PV), "application/json", cut.clone()),
        (
            PV.into(),
            cds(PV),
            "application/json",
            format!(r#"["{MARK}"]"#),
        ),
        (
            feedback.clone(),
            cds(&feedback),
            "application/json",
            syntax.clone(),
        ),
        (
            feedback.clone(),
            cds(&feedback),
            "application/json",
            typed("feedback"),
        ),
        (
            apply.into(),
            cds(apply),
            "application/fhir+json",
            syntax.clone(),
        ),
        (
            apply.into(),
            cds(apply),
            "application/fhir+json",
            typed("parameter"),
        ),
        (
            apply.into(),
            cds(apply),
            "application/fhir+json",
            cut.clone(),
        ),
        (
            review.clone(),
            staff_token("careplan.review"),
            "application/json",
            syntax.clone(),
        ),
        (
            review.clone(),
            staff_token("careplan.review"),
            "application/json",
            typed("version"),
        ),
        (
            review.clone(),
            staff_token("careplan.review"),
            "application/json",
            cut.clone(),
        ),
        (
            sign_off.into(),
            staff_token_as("a", "guideline.approve"),
            "application/json",
            typed("decision"),
        ),
        (
            sign_off.into(),
            staff_token_as("a", "guideline.approve"),
            "application/json",
            syntax.clone(),
        ),
        (
            review.clone(),
            staff_token("careplan.review"),
            "application/json",
            typed("action"),
        ),
        (
            activate.into(),
            staff_token_as("a", "guideline.approve"),
            "application/json",
            format!(r#"{{"tenant": "t", "{MARK}": 1}}"#),
        ),
    ];
    for (path, token, ctype, body) in &cases {
        let (status, text) = send(&app, path, token, ctype, body).await;
        assert!(
            (400..500).contains(&status),
            "{path} refuses what it cannot read: {status} {text}"
        );
        assert!(
            !text.contains(MARK),
            "{path} quoted the body in its answer: {text}"
        );
    }
    // The control: the marker does reach the log when the service logs it on purpose, so a
    // clean log below is not a log that captured nothing.
    tracing::info!(control = MARK, "capture check");
    let text = String::from_utf8_lossy(&log.0.lock().unwrap()).to_string();
    let lines: Vec<&str> = text.lines().filter(|l| l.contains(MARK)).collect();
    assert_eq!(
        lines.len(),
        1,
        "only the control line may carry the marker: {lines:#?}"
    );
    assert!(
        text.contains("careplan review"),
        "the spans were captured too"
    );
}
