//! Clinic and compliance staff in a real browser: Debian's Chromium, headless, driven through
//! chromedriver, signing in through a real OpenID provider (npm `oidc-provider`, started here
//! on loopback) with the authorization code flow and PKCE. A plan is approved, one revised,
//! one rejected, one lost to another reviewer; the audit browser shows the entries, their
//! chain status, a replay and an export. Every page is saved as a screenshot under
//! `artifacts/browser/`.
//!
//! `scripts/test` installs chromium, chromium-driver and the provider and sets
//! `STRIDE_BROWSER_TESTS=required`; run alone without those tools, the test says it is skipped.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use futures_util::StreamExt;
use serde_json::{json, Value as Json};
use stride_tests::fhir::*;
use stride_tests::oidc::{start_provider, start_provider_with, CLIENT_ID, CLIENT_SECRET};
use stride_tests::tokens::*;
use stride_tests::{repo_root, spawn_app_trusting, TestApp};
use tokio::process::{Child, Command};

const PV: &str = "/cds-services/running-knee-patient-view";

fn chromium() -> PathBuf {
    std::env::var_os("STRIDE_CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"))
}

/// Whether this machine can run the browser test; when `scripts/test` requires it, it must.
fn tools_ready() -> bool {
    let missing: Vec<&str> = [
        (chromium().is_file(), "chromium"),
        (stride_tests::oidc::on_path("chromedriver"), "chromedriver"),
        (
            stride_tests::oidc::provider_ready(),
            "node and tests/oidc/node_modules (npm ci --prefix tests/oidc)",
        ),
    ]
    .into_iter()
    .filter(|(ok, _)| !ok)
    .map(|(_, name)| name)
    .collect();
    if missing.is_empty() {
        return true;
    }
    if std::env::var("STRIDE_BROWSER_TESTS").as_deref() == Ok("required") {
        panic!("browser tests are required but these are missing: {missing:?}");
    }
    eprintln!("SKIPPED: browser test needs {missing:?} (scripts/test installs them)");
    false
}

/// chromedriver and a headless Chromium session with a fresh profile.
struct Browser {
    _driver: Child,
    _profile: tempfile::TempDir,
    client: Client,
    shots: PathBuf,
    n: usize,
}

async fn start_browser() -> Browser {
    // Both rustls back ends are in the build graph; pick one for the WebDriver client.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let port = stride_tests::oidc::free_port();
    let driver = Command::new("chromedriver")
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("chromedriver starts");
    let profile = tempfile::tempdir().unwrap();
    let caps: serde_json::Map<String, Json> = serde_json::from_value(json!({
        "goog:chromeOptions": {
            "binary": chromium().display().to_string(),
            "args": [
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--disable-dev-shm-usage", "--window-size=1024,1366",
                format!("--user-data-dir={}", profile.path().display()),
            ]
        }
    }))
    .unwrap();
    let url = format!("http://127.0.0.1:{port}");
    let mut last = None;
    for _ in 0..50 {
        match ClientBuilder::rustls()
            .expect("rustls client")
            .capabilities(caps.clone())
            .connect(&url)
            .await
        {
            Ok(client) => {
                let shots = repo_root().join("artifacts/browser");
                std::fs::create_dir_all(&shots).unwrap();
                return Browser {
                    _driver: driver,
                    _profile: profile,
                    client,
                    shots,
                    n: 0,
                };
            }
            Err(e) => {
                last = Some(e);
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
    panic!("chromedriver did not start a session: {last:?}");
}

impl Browser {
    async fn shot(&mut self, name: &str) {
        self.n += 1;
        let png = self.client.screenshot().await.unwrap();
        assert!(png.starts_with(b"\x89PNG"), "a PNG screenshot");
        let path: PathBuf = self.shots.join(format!("{:02}-{name}.png", self.n));
        std::fs::write(&path, png).unwrap();
    }

    async fn text(&self) -> String {
        self.client
            .find(Locator::Css("body"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    async fn path(&self) -> String {
        let u = self.client.current_url().await.unwrap();
        match u.query() {
            Some(q) => format!("{}?{q}", u.path()),
            None => u.path().to_owned(),
        }
    }

    /// Accessibility basics of the page shown: every form control has a label, there is one
    /// h1, the language is set, and nothing needs horizontal scrolling at this width.
    async fn check_accessible(&self) {
        let v = self
            .client
            .execute(
                r#"const unlabeled = [...document.querySelectorAll('input:not([type=hidden]), select, textarea')]
                       .filter(e => e.labels.length === 0).map(e => e.name || e.id);
                   return {unlabeled,
                           h1: document.querySelectorAll('h1').length,
                           lang: document.documentElement.lang,
                           overflow: document.documentElement.scrollWidth > document.documentElement.clientWidth + 1};"#,
                vec![],
            )
            .await
            .unwrap();
        assert_eq!(v["unlabeled"], json!([]), "form controls without a label");
        assert_eq!(v["h1"], 1);
        assert_eq!(v["lang"], "en");
        assert_eq!(v["overflow"], false, "the page scrolls sideways");
        self.axe().await;
    }

    /// axe-core (npm, pinned in tests/oidc) judges the page as it is rendered: no serious or
    /// critical violation of WCAG 2.1 A/AA (contrast included) may remain.
    async fn axe(&self) {
        let source = std::fs::read_to_string(
            stride_tests::repo_root().join("tests/oidc/node_modules/axe-core/axe.min.js"),
        )
        .expect("axe-core is installed (scripts/test runs npm ci in tests/oidc)");
        self.client.execute(&source, vec![]).await.unwrap();
        let found = self
            .client
            .execute_async(
                r#"const done = arguments[arguments.length - 1];
                   axe.run(document, {runOnly: {type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa']},
                                      resultTypes: ['violations']})
                     .then(r => done(r.violations
                        .filter(v => v.impact === 'serious' || v.impact === 'critical')
                        .map(v => v.id + ' (' + v.impact + '): ' +
                             v.nodes.slice(0, 3).map(n => n.target.join(' ') + ' ' + (n.failureSummary || '')).join(' | '))))
                     .catch(e => done(['axe failed: ' + e]));"#,
                vec![],
            )
            .await
            .unwrap();
        let path = self.path().await;
        assert_eq!(found, json!([]), "axe on {path}");
    }

    async fn fill(&self, css: &str, value: &str) {
        let el = self.client.find(Locator::Css(css)).await.unwrap();
        el.clear().await.unwrap();
        el.send_keys(value).await.unwrap();
    }

    async fn click(&self, css: &str) {
        let el = self
            .client
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("{css}: {e}"));
        self.click_element(el).await;
    }

    /// Press Tab from where the focus is until the element `css` names has it; every element
    /// the focus stops on on the way must show it (an outline or a box shadow when focused).
    async fn tab_to(&self, css: &str) -> fantoccini::elements::Element {
        let target = self.client.find(Locator::Css(css)).await.unwrap();
        let tab = char::from(fantoccini::key::Key::Tab).to_string();
        for _ in 0..200 {
            self.client
                .active_element()
                .await
                .unwrap()
                .send_keys(&tab)
                .await
                .unwrap();
            let shown = self
                .client
                .execute(
                    "const e = document.activeElement; const s = getComputedStyle(e);
                     return [e.tagName + (e.id ? '#' + e.id : ''),
                             (s.outlineStyle !== 'none' && parseFloat(s.outlineWidth) > 0) || s.boxShadow !== 'none'];",
                    vec![],
                )
                .await
                .unwrap();
            assert_eq!(
                shown[1],
                json!(true),
                "the focus is visible on {}",
                shown[0]
            );
            let focused = self.client.active_element().await.unwrap();
            if focused.element_id() == target.element_id() {
                return focused;
            }
        }
        panic!("{css} is not reachable by Tab");
    }

    /// Press Enter on `el` and wait for the page it submits.
    async fn enter(&self, el: fantoccini::elements::Element) {
        let old = self.client.find(Locator::Css("html")).await.unwrap();
        el.send_keys(&char::from(fantoccini::key::Key::Enter).to_string())
            .await
            .unwrap();
        self.next_page(old).await;
    }

    /// Click and wait for the next page.
    async fn click_element(&self, el: fantoccini::elements::Element) {
        let old = self.client.find(Locator::Css("html")).await.unwrap();
        el.click().await.unwrap();
        self.next_page(old).await;
    }

    /// Wait for the next page: the old document's root (`old`) goes stale, a new one loads.
    async fn next_page(&self, old: fantoccini::elements::Element) {
        for _ in 0..200 {
            if old.tag_name().await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        self.client
            .wait()
            .at_most(Duration::from_secs(10))
            .for_element(Locator::Css("body"))
            .await
            .unwrap();
    }
}

/// Draft a plan for `patient` through a patient-view call; returns its id.
async fn draft(
    app: &TestApp,
    public: &str,
    patient: &str,
    conditions: &[Json],
    obs: &[Json],
) -> String {
    draft_card(app, public, patient, conditions, obs).await.0
}

/// As `draft`, with the phase card that offers the plan.
async fn draft_card(
    app: &TestApp,
    public: &str,
    patient: &str,
    conditions: &[Json],
    obs: &[Json],
) -> (String, Json) {
    let mut body = patient_view(as_patient(&prefetch(conditions, obs), patient));
    body["context"]["patientId"] = json!(patient);
    body["prefetch"]["Patient"]["id"] = json!(patient);
    let res = app
        .client
        .post(app.url(PV))
        .bearer_auth(cds_token_at(public, PV))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let out: Json = res.json().await.unwrap();
    let card = out["cards"][0].clone();
    let id = card["suggestions"][0]["actions"][0]["resource"]["id"]
        .as_str()
        .expect("a drafted CarePlan")
        .to_owned();
    (id, card)
}

async fn status_of(app: &TestApp, id: &str) -> (String, i32) {
    let p = app
        .store
        .careplan(uuid::Uuid::parse_str(id).unwrap())
        .await
        .unwrap();
    (p.status.to_string(), p.version)
}

fn assert_file(dir: &Path, count: usize) {
    let pngs = std::fs::read_dir(dir)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "png")
        })
        .count();
    assert!(pngs >= count, "{pngs} screenshots in {}", dir.display());
}

#[tokio::test]
async fn staff_sign_in_and_review_plans_end_to_end_in_chromium() {
    if !tools_ready() {
        return;
    }
    let port = stride_tests::oidc::free_port();
    let public = format!("http://localhost:{port}");
    let provider = start_provider(&format!("{public}/ui/auth/callback")).await;
    let listen = format!("127.0.0.1:{port}");
    let app = spawn_app_trusting(
        &[json!({"iss": provider.issuer, "kind": "staff", "tenant": TENANT, "jwks_uri": provider.jwks_uri})],
        &[
            ("STRIDE_LISTEN", &listen),
            ("STRIDE_PUBLIC_URL", &public),
            ("STRIDE_OIDC_ISSUER", &provider.issuer),
            ("STRIDE_OIDC_CLIENT_ID", CLIENT_ID),
            ("STRIDE_OIDC_CLIENT_SECRET", CLIENT_SECRET),
        ],
    )
    .await;

    // Four drafts: one with a red flag, a walker ready for walk-run with a history, two early.
    let knee = |onset| condition("k", "M25.561", Some(onset));
    let early = draft(
        &app,
        &public,
        "p-early",
        &[knee(3)],
        &[obs("pain", "72514-3", 1, int(6))],
    )
    .await;
    let mut course = recovered_walker();
    course.push(obs("pain-0", "pain-walking", 20, int(7)));
    course.push(obs("pain-1", "pain-walking", 16, int(3)));
    course.push(obs("walkdays", "pain-free-walking-days", 1, qty(12.0, "d")));
    let walker = draft(&app, &public, "p-walker", &[knee(21)], &course).await;
    let red = draft(
        &app,
        &public,
        "p-red",
        &[knee(5)],
        &[obs("n", "pain-night", 1, boolean(true))],
    )
    .await;
    let contested = draft(&app, &public, "p-contested", &[knee(4)], &[]).await;

    let mut b = start_browser().await;
    let shots = b.shots.clone();
    for old in std::fs::read_dir(&shots).unwrap().flatten() {
        let _ = std::fs::remove_file(old.path());
    }

    // Not signed in: the queue sends the browser to the provider.
    b.client
        .goto(&app_url(&public, "/ui/careplans"))
        .await
        .unwrap();
    let at = b.client.current_url().await.unwrap();
    assert!(
        at.as_str().starts_with(&provider.issuer),
        "sent to the provider, got {at}"
    );
    b.shot("provider-sign-in").await;
    b.fill("input[name=login]", "reviewer-ana").await;
    b.fill("input[name=password]", "any password").await;
    b.click("button[type=submit]").await;
    // oidc-provider asks for consent to the scopes on first sign-in.
    if b.client
        .current_url()
        .await
        .unwrap()
        .as_str()
        .starts_with(&provider.issuer)
    {
        b.shot("provider-consent").await;
        b.click("button[type=submit]").await;
    }
    assert_eq!(
        b.path().await,
        "/ui/careplans",
        "back in Stride, in the queue"
    );

    // The session cookie: HttpOnly, Secure, SameSite=Lax, only for the staff pages.
    let cookie = b
        .client
        .get_named_cookie("stride_session")
        .await
        .expect("a session cookie");
    assert_eq!(cookie.http_only(), Some(true));
    assert_eq!(cookie.secure(), Some(true));
    assert_eq!(format!("{:?}", cookie.same_site()), "Some(Lax)");
    assert_eq!(cookie.path(), Some("/ui"));
    let session = cookie.value().to_owned();

    // The queue: four drafts, the red flag on top, the signed-in reviewer named.
    let text = b.text().await;
    assert!(text.contains("Signed in as reviewer-ana"), "{text}");
    let rows = b
        .client
        .find_all(Locator::Css("table.queue tbody tr"))
        .await
        .unwrap();
    assert_eq!(rows.len(), 4);
    let first = rows[0].text().await.unwrap();
    assert!(
        first.contains("Red flag") && first.contains("p-red"),
        "{first}"
    );
    b.check_accessible().await;
    b.shot("review-queue").await;

    // The red-flag plan: why first, the red flag with the finding it rests on and its day;
    // rule ids only in the folded trace. Approve it.
    b.click_element(rows[0].find(Locator::Css("a")).await.unwrap())
        .await;
    assert_eq!(b.path().await, format!("/ui/careplans/{red}"));
    let text = b.text().await;
    let night = stride_guideline::display::day(today() - time::Duration::days(1));
    assert!(text.contains("Why this phase"), "{text}");
    assert!(
        text.contains(&format!("Based on: Pain at night: yes, recorded {night}")),
        "{text}"
    );
    assert!(
        !text.contains("RF-02") && !text.contains("pain_night"),
        "no rule or fact ids outside the folded trace: {text}"
    );
    // Unfolding is a click on the summary, by keyboard as well as by mouse (no page load).
    b.client
        .find(Locator::Css("details.trace summary"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    assert!(
        b.text().await.contains("RF-02"),
        "the folded trace keeps the rule ids"
    );
    b.check_accessible().await;
    b.shot("careplan-red-flag").await;
    b.click("#approve button").await;
    assert_eq!(
        b.path().await,
        format!("/ui/careplans/{red}?done=approve"),
        "{}",
        b.text().await
    );
    assert!(b.text().await.contains("Approved: the plan is now active."));
    assert_eq!(status_of(&app, &red).await, ("active".into(), 2));
    b.shot("careplan-approved").await;

    // The approved plan goes home with the patient: the page in plain words, checked like
    // every staff page, and the PDF, rendered to PNG beside the screenshots and read back.
    b.click(".take-home-link a").await;
    assert_eq!(b.path().await, format!("/ui/careplans/{red}/patient"));
    let text = b.text().await;
    assert!(
        text.contains("Do not run until your leg is checked"),
        "{text}"
    );
    assert!(
        text.contains("Stop and call the clinic if you have pain at night"),
        "{text}"
    );
    b.check_accessible().await;
    b.shot("patient-plan").await;
    let pdf = app
        .client
        .get(app.url(&format!("/ui/careplans/{red}/patient.pdf?paper=letter")))
        .bearer_auth(stride_tests::tokens::staff_token_at(
            &public,
            "careplan.read",
        ))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let pdf_file = shots.join("patient-plan.pdf");
    std::fs::write(&pdf_file, &pdf).unwrap();
    let rendered = std::process::Command::new("pdftoppm")
        .args(["-png", "-r", "72", "-singlefile"])
        .arg(&pdf_file)
        .arg(shots.join("99-patient-plan-pdf"))
        .status()
        .expect("pdftoppm (poppler-utils) is installed: run scripts/test");
    assert!(rendered.success());
    let png = std::fs::metadata(shots.join("99-patient-plan-pdf.png")).unwrap();
    assert!(
        png.len() > 5_000,
        "a rendered page, not a blank: {} bytes",
        png.len()
    );
    let read = std::process::Command::new("pdftotext")
        .arg(&pdf_file)
        .arg("-")
        .output()
        .unwrap();
    let read = String::from_utf8_lossy(&read.stdout)
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    assert!(
        read.contains("Your plan: Do not run until your leg is checked"),
        "{read}"
    );

    // The walker: the timeline is drawn; revise the first activity with a reason.
    b.client
        .goto(&app_url(&public, &format!("/ui/careplans/{walker}")))
        .await
        .unwrap();
    let svg = b
        .client
        .find(Locator::Css("svg.timeline"))
        .await
        .expect("a timeline chart");
    // Why this phase, criterion by criterion, as a clinician reads it: the finding, its value
    // with its unit and day, what the protocol needs, and whether it is met.
    let text = b.text().await;
    let day = |n: i64| stride_guideline::display::day(today() - time::Duration::days(n));
    for said in [
        format!("Consecutive pain-free walking days, as recorded: 12 days, recorded {} — needs 10–14 days: met", day(1)),
        format!("Days since the pain began: 21 days (onset {}) — needs at least 35 days: not met", day(21)),
    ] {
        assert!(text.contains(&said), "{said}: {text}");
    }
    for internal in ["{score}", "days_since_onset", "EX1-", "-0 ", "seed"] {
        assert!(
            !text.contains(internal),
            "{internal} on the plan page: {text}"
        );
    }
    let circles = svg.find_all(Locator::Css("circle")).await.unwrap();
    assert!(
        circles.len() >= 3,
        "pain scores are plotted: {}",
        circles.len()
    );
    b.check_accessible().await;
    b.shot("careplan-timeline").await;
    // Tablet width (portrait): the same page still fits.
    b.client.set_window_size(768, 1024).await.unwrap();
    b.check_accessible().await;
    b.shot("careplan-tablet").await;
    b.client.set_window_size(1024, 1366).await.unwrap();
    b.fill(
        "#activity-0",
        "Walk 30 minutes daily; stop if pain returns (revised).",
    )
    .await;
    b.fill("#revise-reason", "Patient walks to work; adjusted dose")
        .await;
    b.click("#revise button").await;
    assert_eq!(
        b.path().await,
        format!("/ui/careplans/{walker}?done=revise")
    );
    let text = b.text().await;
    assert!(text.contains("Walk 30 minutes daily; stop if pain returns (revised)."));
    assert!(text.contains("revise by reviewer-ana: Patient walks to work; adjusted dose"));
    assert_eq!(status_of(&app, &walker).await, ("active".into(), 2));
    b.shot("careplan-revised").await;

    // Reject: the reason is required, so an empty form is not sent.
    b.client
        .goto(&app_url(&public, &format!("/ui/careplans/{early}")))
        .await
        .unwrap();
    b.client
        .find(Locator::Css("#reject button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(b.path().await, format!("/ui/careplans/{early}"));
    b.check_accessible().await;
    assert_eq!(status_of(&app, &early).await, ("draft".into(), 1));
    // By keyboard alone: Tab from the top of the page to the reason, type it, Tab to the
    // button, Enter. Every stop on the way shows where the focus is.
    b.client.refresh().await.unwrap();
    let reason = b.tab_to("#reject-reason").await;
    reason
        .send_keys("Duplicate of the plan from the last visit")
        .await
        .unwrap();
    let button = b.tab_to("#reject button").await;
    b.enter(button).await;
    assert_eq!(b.path().await, format!("/ui/careplans/{early}?done=reject"));
    assert_eq!(status_of(&app, &early).await, ("revoked".into(), 2));
    b.shot("careplan-rejected").await;

    // Another reviewer decides while this page is open: the approval is not saved.
    b.client
        .goto(&app_url(&public, &format!("/ui/careplans/{contested}")))
        .await
        .unwrap();
    let other = app
        .client
        .post(app.url(&format!("/fhir/CarePlan/{contested}/$review")))
        .bearer_auth(staff_token_at(&public, "careplan.review"))
        .json(&json!({"action": "reject", "version": 1, "reason": "seen by the other reviewer"}))
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), 200);
    b.click("#approve button").await;
    let text = b.text().await;
    assert!(text.contains("Your approve was not saved"), "{text}");
    assert!(
        text.contains("already decided (status revoked, version 2)"),
        "{text}"
    );
    assert_eq!(status_of(&app, &contested).await, ("revoked".into(), 2));
    b.shot("careplan-conflict").await;

    // The decision log: the reviews appear with the reviewer; one entry with its chain status.
    b.client.goto(&app_url(&public, "/ui/audit")).await.unwrap();
    b.client
        .find(Locator::Css("#action"))
        .await
        .unwrap()
        .select_by_value("careplan-review")
        .await
        .unwrap();
    b.click("form.filters button").await;
    assert!(b.path().await.contains("action=careplan-review"));
    let rows = b
        .client
        .find_all(Locator::Css("table.audit tbody tr"))
        .await
        .unwrap();
    assert_eq!(
        rows.len(),
        4,
        "approve, revise, reject and the other reviewer's"
    );
    let mine = {
        let mut n = 0;
        for r in &rows {
            if r.text().await.unwrap().contains("reviewer-ana") {
                n += 1;
            }
        }
        n
    };
    assert_eq!(mine, 3);
    b.check_accessible().await;
    b.shot("audit-search").await;
    b.click_element(rows[0].find(Locator::Css("a")).await.unwrap())
        .await;
    assert!(b
        .text()
        .await
        .contains("Sealed: this entry's content matches its hash."));
    b.click("a[href$='chain=full']").await;
    let text = b.text().await;
    assert!(text.contains("Chain intact"), "{text}");
    b.shot("audit-entry").await;

    // A decision's entry replays to the same decision.
    b.client
        .goto(&app_url(&public, "/ui/audit?action=hook-call"))
        .await
        .unwrap();
    b.click("table.audit tbody tr a").await;
    let text = b.text().await;
    assert!(text.contains("the same decision"), "{text}");
    b.shot("audit-replay").await;

    // The impact of the 1.1.0 draft: a walker with groin pain would be held. Pick the
    // candidate, see the counts, then the two traces side by side.
    let mut groin = recovered_walker();
    groin.push(obs("groin", "groin-pain", 1, boolean(true)));
    draft(&app, &public, "p-groin", &[knee(20)], &groin).await;
    b.client
        .goto(&app_url(&public, "/ui/rules/impact"))
        .await
        .unwrap();
    b.client
        .find(Locator::Css(
            "select#candidate option[value='medial-knee-pain-running=1.1.0']",
        ))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    b.click("form.filters button").await;
    let text = b.text().await;
    assert!(
        text.contains("walk-run → hold-for-evaluation (+femoral-neck-bone-stress)"),
        "{text}"
    );
    b.check_accessible().await;
    b.shot("rules-impact").await;
    b.click("a[href*='entry=']").await;
    let text = b.text().await;
    assert!(text.contains("Traces side by side"), "{text}");
    b.check_accessible().await;
    b.shot("rules-impact-traces").await;

    // A plan of each later phase, read as a reviewer reads it: why, in words; axe on each.
    let mut loading = recovered_walker();
    loading.extend([
        stride_tests::fhir::session("r1", 5, 2.0, 0, false),
        stride_tests::fhir::session("r2", 3, 2.0, 0, false),
        stride_tests::fhir::session("r3", 1, 2.2, 0, false),
    ]);
    let mut returned = recovered_walker();
    returned.push(obs(
        "base",
        "preinjury-weekly-distance",
        90,
        qty(10.0, "km"),
    ));
    for (id, km) in [("a", 13), ("b", 11), ("c", 9), ("d", 5), ("e", 3), ("f", 1)] {
        returned.push(stride_tests::fhir::session(id, km, 4.0, 0, false));
    }
    // And a plan Stride could not place: knee pain with no onset recorded says what is
    // missing, in words, and holds running.
    let none: Vec<Json> = Vec::new();
    for (patient, onset, records, phase) in [
        (
            "p-loading",
            Some(40),
            &loading,
            "Phase 3: progressive loading",
        ),
        ("p-returned", Some(75), &returned, "Protocol complete"),
        ("p-unplaced", None, &none, "Phase cannot be placed"),
    ] {
        let knee_pain = match onset {
            Some(days) => knee(days),
            None => condition("k", "M25.561", None),
        };
        let plan = draft(&app, &public, patient, &[knee_pain], records).await;
        b.client
            .goto(&app_url(&public, &format!("/ui/careplans/{plan}")))
            .await
            .unwrap();
        let text = b.text().await;
        assert!(
            text.contains("Why this phase") && text.contains(phase),
            "{phase}: {text}"
        );
        b.check_accessible().await;
        b.shot(&format!("careplan-{patient}")).await;
    }

    // Card effectiveness: the morning's cards, each card's override rate drawn, read by the
    // committee with the same session (scope analytics.read).
    b.client
        .goto(&app_url(&public, "/ui/analytics"))
        .await
        .unwrap();
    let text = b.text().await;
    assert!(
        text.contains("Card effectiveness") && text.contains("Shown"),
        "{text}"
    );
    assert!(
        !b.client
            .find_all(Locator::Css("svg.bar"))
            .await
            .unwrap()
            .is_empty(),
        "the override rates are drawn"
    );
    b.check_accessible().await;
    b.shot("card-effectiveness").await;

    // The committee's page of guideline versions (scope guideline.approve).
    b.client
        .goto(&app_url(&public, "/ui/guidelines"))
        .await
        .unwrap();
    let text = b.text().await;
    assert!(
        text.contains("Guideline versions") && text.contains("1.1.1"),
        "{text}"
    );
    b.check_accessible().await;
    b.shot("guideline-versions").await;

    // A member of the committee signs off on the draft from its impact page, on the report
    // just read; the versions page says so and lists the approval.
    b.client
        .goto(&app_url(
            &public,
            "/ui/rules/impact?candidate=medial-knee-pain-running%3D1.1.1",
        ))
        .await
        .unwrap();
    b.check_accessible().await;
    b.client
        .find(Locator::Css("#so-approve"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    b.click("form.sign-off button").await;
    assert_eq!(b.path().await, "/ui/guidelines?done=sign-off");
    let text = b.text().await;
    assert!(
        text.contains("Your sign-off was recorded.") && text.contains("Approved by"),
        "{text}"
    );
    b.check_accessible().await;
    b.shot("guideline-signed-off").await;

    // Export what the filters select, with the browser's session.
    b.client
        .goto(&app_url(&public, "/ui/audit?action=careplan-review"))
        .await
        .unwrap();
    let href = b
        .client
        .find(Locator::Css(".exports a"))
        .await
        .unwrap()
        .attr("href")
        .await
        .unwrap()
        .unwrap();
    let href = href.strip_prefix(&public).unwrap_or(&href).to_owned();
    let export = app
        .client
        .get(app.url(&href))
        .header("cookie", format!("stride_session={session}"))
        .send()
        .await
        .unwrap();
    assert_eq!(export.status(), 200);
    assert!(export.headers()["content-disposition"]
        .to_str()
        .unwrap()
        .starts_with("attachment"));
    let lines: Vec<Json> = export
        .text()
        .await
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 4);
    assert!(lines.iter().all(|l| l["action"] == "careplan-review"));

    // A cross-site form post is refused even with the session cookie.
    let forged = app
        .client
        .post(app.url(&format!("/ui/careplans/{contested}/review")))
        .header("cookie", format!("stride_session={session}"))
        .header("origin", "https://evil.example")
        .form(&[("action", "approve"), ("version", "2")])
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 403);

    // Sign out: the session is gone for every request, not only this browser.
    b.click("form.signout button").await;
    assert!(b.text().await.contains("You are signed out"));
    b.shot("signed-out").await;
    let after = app
        .client
        .get(app.url("/ui/careplans"))
        .header("cookie", format!("stride_session={session}"))
        .send()
        .await
        .unwrap();
    assert_eq!(after.status(), 303);
    assert!(after.headers()["location"]
        .to_str()
        .unwrap()
        .starts_with("/ui/login"));

    // Sign-in and sign-out are audited with the person's identity.
    let q = stride_store::AuditQuery {
        caller_subject: Some("reviewer-ana".into()),
        ..Default::default()
    };
    let actions: Vec<String> = app
        .store
        .audit_stream(&q, true)
        .map(|r| r.unwrap().entry.action.as_str().to_owned())
        .collect()
        .await;
    for a in [
        "staff-sign-in",
        "careplan-search",
        "careplan-read",
        "careplan-review",
        "audit-read",
        "staff-sign-out",
    ] {
        assert!(actions.iter().any(|x| x == a), "{a} in {actions:?}");
    }
    b.client.close().await.unwrap();
    assert_file(&shots, 14);
}

/// A patient-view call for `patient`; returns the CarePlan drafted and the card's review link.
async fn draft_linked(app: &TestApp, public: &str, patient: &str) -> (String, Json) {
    let knee = [condition("k", "M25.561", Some(4))];
    let (id, card) = draft_card(app, public, patient, &knee, &[]).await;
    let link = card["links"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["label"] == "Review the draft CarePlan")
        .expect("a review link")
        .clone();
    (id, link)
}

/// The EHR opens a launch for `patient` with the card's `appContext` (what it does when a
/// clinician follows a smart link); returns the launch id.
async fn ehr_launch(issuer: &str, patient: &str, app_context: &Json, ttl: i64) -> String {
    let res = reqwest::Client::new()
        .post(format!("{issuer}/ehr/launch"))
        .json(&json!({"patient": patient, "appContext": app_context, "ttlSeconds": ttl}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    res.json::<Json>().await.unwrap()["launch"]
        .as_str()
        .unwrap()
        .to_owned()
}

impl Browser {
    /// Sign in at the EHR's authorization server as `login` if it asks, and consent if it asks.
    async fn through_ehr(&mut self, issuer: &str, login: &str) {
        for _ in 0..3 {
            let at = self.client.current_url().await.unwrap();
            if !at.as_str().starts_with(issuer) {
                return;
            }
            if self
                .client
                .find(Locator::Css("input[name=login]"))
                .await
                .is_ok()
            {
                self.fill("input[name=login]", login).await;
                self.fill("input[name=password]", "any password").await;
            }
            self.click("button[type=submit]").await;
        }
    }

    /// Forget every sign-in: Stride's session and the EHR's (WebDriver deletes the cookies the
    /// page shown can see, so a page of each is visited in turn).
    async fn forget(&self, public: &str, issuer: &str) {
        for page in [
            format!("{public}/ui/style.css"),
            format!("{issuer}/fhir/.well-known/smart-configuration"),
        ] {
            self.client.goto(&page).await.unwrap();
            self.client.delete_all_cookies().await.unwrap();
        }
    }
}

#[tokio::test]
async fn the_ehr_launches_the_review_as_a_smart_app_in_chromium() {
    if !tools_ready() {
        return;
    }
    let port = stride_tests::oidc::free_port();
    let public = format!("http://localhost:{port}");
    let smart_callback = format!("{public}/ui/auth/smart-callback/{TENANT}");
    let provider = start_provider_with(
        &format!("{public}/ui/auth/callback"),
        &[
            ("SMART_REDIRECT_URI", smart_callback.as_str()),
            ("SMART_STANDALONE_PATIENT", "p-standalone"),
        ],
    )
    .await;
    let fhir_base = format!("{}/fhir", provider.issuer);
    let listen = format!("127.0.0.1:{port}");
    // The EHR's authorization server is a staff issuer holding Stride's SMART registration;
    // Stride's own staff sign-in is not configured, so every session here is a launch.
    let app = spawn_app_trusting(
        &[
            json!({"iss": provider.issuer, "kind": "staff", "tenant": TENANT,
                 "jwks_uri": provider.jwks_uri,
                 "smart": {"fhir_base": fhir_base, "client_id": "stride-smart"}}),
        ],
        &[("STRIDE_LISTEN", &listen), ("STRIDE_PUBLIC_URL", &public)],
    )
    .await;

    // The card links the review as a SMART launch naming the plan in appContext.
    let (plan, link) = draft_linked(&app, &public, "p-smart").await;
    assert_eq!(link["type"], "smart", "{link}");
    assert_eq!(link["url"], format!("{public}/ui/smart/launch"));
    let context: Json = serde_json::from_str(link["appContext"].as_str().expect("a string"))
        .expect("appContext is JSON");
    assert_eq!(context, json!({"careplan": plan}));
    let (other_plan, _) = draft_linked(&app, &public, "p-other").await;
    let (standalone_plan, _) = draft_linked(&app, &public, "p-standalone").await;

    let mut b = start_browser().await;
    b.shots = b.shots.join("smart");
    std::fs::create_dir_all(&b.shots).unwrap();
    for old in std::fs::read_dir(&b.shots).unwrap().flatten() {
        let _ = std::fs::remove_file(old.path());
    }
    let launch_url = |launch: &str| {
        let q: String = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("iss", &fhir_base)
            .append_pair("launch", launch)
            .finish();
        format!("{}?{q}", link["url"].as_str().unwrap())
    };

    // EHR launch: the clinician signs in at the EHR and lands on that plan, signed in to
    // Stride, for that patient only.
    let launch = ehr_launch(&provider.issuer, "p-smart", &link["appContext"], 300).await;
    // Where Stride sends the browser: the EHR's authorization endpoint, with PKCE S256, the
    // FHIR base as audience, and the launch.
    let res = app.client.get(launch_url(&launch)).send().await.unwrap();
    assert_eq!(res.status(), 303);
    let to = url::Url::parse(res.headers()["location"].to_str().unwrap()).unwrap();
    assert_eq!(
        to.as_str().split('?').next(),
        Some(format!("{}/auth", provider.issuer).as_str())
    );
    let q: std::collections::HashMap<String, String> = to.query_pairs().into_owned().collect();
    assert_eq!(q["code_challenge_method"], "S256");
    assert_eq!(q["aud"], fhir_base);
    assert_eq!(q["launch"], launch);
    assert_eq!(q["client_id"], "stride-smart");
    b.client.goto(&launch_url(&launch)).await.unwrap();
    let at = b.client.current_url().await.unwrap();
    assert!(
        at.as_str().starts_with(&provider.issuer),
        "sent to the EHR, got {at}"
    );
    b.shot("ehr-sign-in").await;
    b.through_ehr(&provider.issuer, "dr-lee").await;
    assert_eq!(
        b.path().await,
        format!("/ui/careplans/{plan}"),
        "{}",
        b.text().await
    );
    let text = b.text().await;
    assert!(text.contains("Signed in as dr-lee"), "{text}");
    assert!(text.contains("from the EHR, for Patient/p-smart"), "{text}");
    assert!(
        !text.contains("Decision log"),
        "no links to pages across patients"
    );
    b.check_accessible().await;
    b.shot("launched-careplan").await;
    b.click("#approve button").await;
    assert_eq!(b.path().await, format!("/ui/careplans/{plan}?done=approve"));
    assert_eq!(status_of(&app, &plan).await, ("active".into(), 2));

    // The session is this patient's: another patient's plan does not exist for it, the queue
    // lists this patient only, and pages across patients are refused.
    b.client
        .goto(&app_url(&public, &format!("/ui/careplans/{other_plan}")))
        .await
        .unwrap();
    assert!(
        b.text().await.contains("no CarePlan with this id"),
        "{}",
        b.text().await
    );
    b.client
        .goto(&app_url(&public, "/ui/careplans?status=any"))
        .await
        .unwrap();
    let text = b.text().await;
    assert!(
        text.contains("Patient/p-smart") && !text.contains("p-other"),
        "{text}"
    );
    for page in ["/ui/audit", "/ui/rules/impact"] {
        b.client.goto(&app_url(&public, page)).await.unwrap();
        let text = b.text().await;
        assert!(
            text.contains("launched by the EHR for one patient"),
            "{page}: {text}"
        );
    }
    b.shot("patient-limited").await;

    // Refusals. An EHR the trust file does not list:
    b.client
        .goto(&app_url(
            &public,
            "/ui/smart/launch?iss=https%3A%2F%2Fehr.unknown.example%2Ffhir&launch=x",
        ))
        .await
        .unwrap();
    assert_eq!(b.path().await.split('?').next(), Some("/ui/smart/launch"));
    assert!(b
        .text()
        .await
        .contains("This EHR is not registered with Stride"));
    b.shot("refused-unknown-ehr").await;
    // A launch for another patient than the plan the card named:
    let wrong = ehr_launch(&provider.issuer, "p-other", &link["appContext"], 300).await;
    b.client.goto(&launch_url(&wrong)).await.unwrap();
    b.through_ehr(&provider.issuer, "dr-lee").await;
    assert!(
        b.text().await.contains("is not the launched patient's"),
        "{}",
        b.text().await
    );
    b.shot("refused-wrong-patient").await;
    // A launch that expired before the clinician got there: the EHR refuses it.
    let expired = ehr_launch(&provider.issuer, "p-smart", &link["appContext"], -1).await;
    b.client.goto(&launch_url(&expired)).await.unwrap();
    b.through_ehr(&provider.issuer, "dr-lee").await;
    let text = b.text().await;
    assert!(
        text.contains("did not sign you in (access_denied)"),
        "{text}"
    );
    b.shot("refused-expired-launch").await;
    // A patient signed in at the EHR is not a reviewer.
    b.forget(&public, &provider.issuer).await;
    let by_patient = ehr_launch(&provider.issuer, "p-smart", &link["appContext"], 300).await;
    b.client.goto(&launch_url(&by_patient)).await.unwrap();
    b.through_ehr(&provider.issuer, "patient-sam").await;
    let text = b.text().await;
    assert!(
        text.contains("did not identify you as a practitioner"),
        "{text}"
    );
    assert!(
        b.client.get_named_cookie("stride_session").await.is_err(),
        "no session"
    );

    // Standalone launch: the EHR chooses the patient; the queue shows that patient's plans.
    b.forget(&public, &provider.issuer).await;
    let standalone = format!(
        "{public}/ui/smart/launch?{}",
        url::form_urlencoded::Serializer::new(String::new())
            .append_pair("iss", &fhir_base)
            .finish()
    );
    b.client.goto(&standalone).await.unwrap();
    b.through_ehr(&provider.issuer, "dr-lee").await;
    assert_eq!(b.path().await, "/ui/careplans?status=any");
    let text = b.text().await;
    assert!(text.contains("for Patient/p-standalone"), "{text}");
    let rows = b
        .client
        .find_all(Locator::Css("table.queue tbody tr"))
        .await
        .unwrap();
    assert_eq!(rows.len(), 1, "{text}");
    assert!(b
        .client
        .find(Locator::Css(&format!(
            "a[href=\"/ui/careplans/{standalone_plan}\"]"
        )))
        .await
        .is_ok());
    b.shot("standalone-launch").await;

    // The launches are on the record: who, as which FHIR user, for which patient and plan;
    // and each refusal with its reason.
    let q = stride_store::AuditQuery {
        caller_subject: Some("dr-lee".into()),
        ..Default::default()
    };
    let entries: Vec<stride_store::NewAuditEntry> = app
        .store
        .audit_stream(&q, true)
        .map(|r| r.unwrap().entry)
        .collect()
        .await;
    let sign_ins: Vec<&stride_store::NewAuditEntry> = entries
        .iter()
        .filter(|e| e.action == "staff-sign-in")
        .collect();
    assert_eq!(sign_ins.len(), 2, "the EHR launch and the standalone one");
    let first = sign_ins
        .iter()
        .find(|e| e.details["launch"] == "smart-ehr")
        .unwrap();
    assert_eq!(first.details["careplan"], json!(plan));
    assert_eq!(
        first
            .patient_ref
            .as_ref()
            .map(stride_store::PatientRef::as_str),
        Some("Patient/p-smart")
    );
    assert_eq!(
        first.details["fhirUser"],
        format!("{fhir_base}/Practitioner/dr-lee")
    );
    assert!(entries.iter().any(|e| e.action == "careplan-review"));
    b.client.close().await.unwrap();
}

fn app_url(public: &str, path: &str) -> String {
    format!("{public}{path}")
}
