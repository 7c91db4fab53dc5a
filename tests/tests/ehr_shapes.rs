//! The EHR data-shapes corpus (tests/fixtures/ehr-shapes): patients written as real systems
//! write them (dual-coded problem lists, OIDs, amended and value-less Observations, offset and
//! UTC timestamps, Synthea-style resources), each sent through the real hook with its expected
//! decision. Runs on whichever backend the suite runs on (scripts/test runs both).
//!
//! Dates in the fixtures are relative to the clinic's today, so the corpus holds on any day:
//! `@D-k` is a date k days ago; `@T-k HH:MM +hh:mm` a local time k days ago written with that
//! offset; `@Z-k HH:MM Zone` a local time in an IANA zone k days ago, written in UTC (`Z`).

use serde_json::{json, Value as Json};
use stride_tests::tokens::{claims, trust_file, Signer, PUBLIC_URL};
use stride_tests::{repo_root, spawn_app_trusting};
use time::{Duration, OffsetDateTime, PrimitiveDateTime, Time, UtcOffset};

const PV: &str = "/cds-services/running-knee-patient-view";
const RED_FLAGS: &[&str] = &[
    "focal-bony-tenderness",
    "rest-or-night-pain",
    "persistent-bony-tenderness",
    "no-improvement-after-rest",
    "pain-on-return",
];

fn hm(s: &str) -> Time {
    let (h, m) = s.split_once(':').unwrap();
    Time::from_hms(h.parse().unwrap(), m.parse().unwrap(), 0).unwrap()
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap()
}

/// One template string → the date or timestamp it stands for today.
fn resolve(s: &str, now: OffsetDateTime) -> Option<String> {
    let rest = s.strip_prefix('@')?;
    let (kind, rest) = rest.split_at(1);
    let mut parts = rest.split(' ');
    let days: i64 = parts.next()?.parse().ok()?;
    let days = Duration::days(days);
    Some(match kind {
        "D" => (now.date() + days).to_string(),
        "T" => {
            let (time, offset) = (parts.next()?, parts.next()?);
            let offset = UtcOffset::parse(
                offset,
                time::macros::format_description!("[offset_hour sign:mandatory]:[offset_minute]"),
            )
            .ok()?;
            let local = now.to_offset(offset).date() + days;
            rfc3339(PrimitiveDateTime::new(local, hm(time)).assume_offset(offset))
        }
        "Z" => {
            let (time, zone) = (parts.next()?, parts.next()?);
            let tz = jiff::tz::TimeZone::get(zone).ok()?;
            let today = tz
                .to_datetime(jiff::Timestamp::from_second(now.unix_timestamp()).ok()?)
                .date();
            let day = today
                .checked_add(jiff::Span::new().days(days.whole_days()))
                .ok()?;
            let t = hm(time);
            let at = tz
                .to_timestamp(day.at(t.hour() as i8, t.minute() as i8, 0, 0))
                .ok()?;
            let utc = OffsetDateTime::from_unix_timestamp(at.as_second()).ok()?;
            rfc3339(utc).replace("+00:00", "Z")
        }
        _ => return None,
    })
}

fn fill(v: &mut Json, now: OffsetDateTime) {
    match v {
        Json::String(s) => {
            if let Some(r) = resolve(s, now) {
                *s = r;
            } else {
                assert!(!s.starts_with('@'), "bad template `{s}`");
            }
        }
        Json::Array(a) => a.iter_mut().for_each(|x| fill(x, now)),
        Json::Object(o) => o.values_mut().for_each(|x| fill(x, now)),
        _ => {}
    }
}

fn codes(cards: &[Json], keep: impl Fn(&str) -> bool) -> Vec<String> {
    let mut out: Vec<String> = cards
        .iter()
        .filter(|c| keep(c["summary"].as_str().unwrap()))
        .map(|c| c["source"]["topic"]["code"].as_str().unwrap().to_owned())
        .collect();
    out.sort();
    out
}

fn strings(v: &Json) -> Vec<String> {
    let mut out: Vec<String> = v
        .as_array()
        .map(|a| a.iter().map(|x| x.as_str().unwrap().to_owned()).collect())
        .unwrap_or_default();
    out.sort();
    out
}

#[tokio::test]
async fn every_patient_of_the_ehr_shapes_corpus_gets_its_expected_decision() {
    let zoned = "https://ehr-sydney.test";
    let issuers = [
        json!({"iss": zoned, "kind": "cds-client", "tenant": "clinic-sydney",
        "timezone": "Australia/Sydney", "jwks": trust_file(&[])["issuers"][0]["jwks"].clone()}),
    ];
    let app = spawn_app_trusting(&issuers, &[]).await;
    let dir = repo_root().join("tests/fixtures/ehr-shapes");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    assert!(files.len() >= 20, "the corpus holds at least 20 patients");
    let mut failures = Vec::new();
    for path in &files {
        let name = path.file_stem().unwrap().to_string_lossy().to_string();
        let doc: Json = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let mut request = doc["request"].clone();
        fill(&mut request, OffsetDateTime::now_utc());
        let iss = if doc["timezone"].is_string() {
            zoned
        } else {
            stride_tests::tokens::EHR
        };
        let s = Signer::es384("ehr-es384");
        let mut c = claims(iss, &format!("{PUBLIC_URL}{PV}"));
        if iss == zoned {
            c["tenant"] = json!("clinic-sydney");
        }
        let token = s.sign(&s.header(), &c);
        let res = app
            .client
            .post(app.url(PV))
            .bearer_auth(token)
            .json(&request)
            .send()
            .await
            .unwrap();
        let status = res.status();
        let body: Json = res.json().await.unwrap();
        if status != 200 {
            failures.push(format!("{name}: status {status}: {body}"));
            continue;
        }
        let cards = body["cards"].as_array().unwrap().clone();
        let unfired =
            |s: &str| s.starts_with("Not ruled out") || s.starts_with("Recorded as preliminary");
        let fired = codes(&cards, |s| !unfired(s));
        let e = &doc["expect"];
        let mut bad = Vec::new();
        let phase_card = cards.first().filter(|c| {
            !RED_FLAGS.contains(&c["source"]["topic"]["code"].as_str().unwrap())
                && !unfired(c["summary"].as_str().unwrap())
        });
        if e["applies"] == false
            && !fired.is_empty()
            && cards.iter().any(|c| {
                c["suggestions"][0]["actions"][0]["resource"]["resourceType"] == "CarePlan"
            })
        {
            bad.push(format!("applies: expected no phase card, got {fired:?}"));
        }
        if let Some(p) = e["phase"].as_str() {
            let got = phase_card.map(|c| c["source"]["topic"]["code"].clone());
            if got != Some(json!(p)) {
                bad.push(format!("phase: expected {p}, got {got:?}"));
            }
        }
        let flags: Vec<String> = fired
            .iter()
            .filter(|c| RED_FLAGS.contains(&c.as_str()))
            .cloned()
            .collect();
        if e.get("red_flags").is_some() && flags != strings(&e["red_flags"]) {
            bad.push(format!(
                "red flags: expected {:?}, got {flags:?}",
                strings(&e["red_flags"])
            ));
        }
        let open = codes(&cards, |s| s.starts_with("Not ruled out"));
        if e.get("not_ruled_out").is_some() && open != strings(&e["not_ruled_out"]) {
            bad.push(format!(
                "not ruled out: expected {:?}, got {open:?}",
                strings(&e["not_ruled_out"])
            ));
        }
        // A preliminary record is named by its finding, value and day, not by its resource id.
        for c in cards.iter().filter(|c| {
            c["summary"]
                .as_str()
                .is_some_and(|s| s.starts_with("Recorded as preliminary"))
        }) {
            let detail = c["detail"].as_str().unwrap_or_default();
            if detail.contains("Observation/") || !detail.contains(", recorded ") {
                bad.push(format!("preliminary card names resource ids: {detail}"));
            }
        }
        let prelim = codes(&cards, |s| s.starts_with("Recorded as preliminary"));
        for p in strings(&e["preliminary"]) {
            if !prelim.contains(&p) {
                bad.push(format!("preliminary: expected {p} among {prelim:?}"));
            }
        }
        if e.get("pitfalls").is_some() {
            let pitfalls: Vec<String> = fired
                .iter()
                .filter(|c| {
                    !RED_FLAGS.contains(&c.as_str())
                        && Some(c.as_str())
                            != phase_card.and_then(|p| p["source"]["topic"]["code"].as_str())
                })
                .cloned()
                .collect();
            if pitfalls != strings(&e["pitfalls"]) {
                bad.push(format!(
                    "pitfalls: expected {:?}, got {pitfalls:?}",
                    strings(&e["pitfalls"])
                ));
            }
        }
        let detail = phase_card.map_or(String::new(), |c| c["detail"].as_str().unwrap().to_owned());
        if e["stale"] == true && !detail.contains("Stale episode") {
            bad.push("stale: the phase card does not name a stale episode".into());
        }
        if e["not_used"] == true && !detail.contains("Not used") {
            bad.push("not used: the phase card lists no unusable record".into());
        }
        if e["applies"] == false && !cards.is_empty() {
            bad.push(format!("expected no card, got {fired:?} {open:?}"));
        }
        if !bad.is_empty() {
            failures.push(format!(
                "{name} ({}):\n    {}",
                doc["description"],
                bad.join("\n    ")
            ));
        }
    }
    app.stop().await;
    assert!(
        failures.is_empty(),
        "{} of {} patients:\n  {}",
        failures.len(),
        files.len(),
        failures.join("\n  ")
    );
}
