//! The adversarial patient records of `tests/fixtures/adversarial/` (issue 30), written by a
//! reviewer from the guideline text and the input vocabulary alone, without reading the
//! engine. Each is read as a hook call reads it (Intake for the called patient, the clinic's
//! zone, an approved CarePlan from the prefetch, the rule set in force) and judged against its
//! own expectations. Where the rule set deliberately reads the source otherwise, the case is
//! listed in `DISAGREE` with the reason; a case not answered yet is listed in `OPEN` with what
//! is missing. A listed case that starts to pass fails the test, so both lists only shrink.

use std::collections::BTreeSet;
use std::path::Path;

use serde_json::{json, Value as Json};
use stride_app::cards::{cards, CardInputs};
use stride_app::decision::{decide, Subject};
use stride_fhir::intake::Intake;
use stride_guideline::{Decision, RuleSet};
use stride_store::Store;

mod support;

/// Cases whose expectation the rule set in force does not share, each with why.
const DISAGREE: &[(&str, &str)] = &[
    (
        "454-",
        "The new left-knee episode (day 4) has no tenderness exam of the left knee, so focal \
         tenderness of under 5 cm is not ruled out for it and its card asks for the exam, as \
         for any new injury (the source's first imaging red flag); the case reads the other \
         knee's exams as enough.",
    ),
    (
        "457-",
        "As 454: the new left knee (day 5) has no tenderness exam, so focal tenderness is not \
         ruled out for it and is shown as such.",
    ),
    (
        "435-",
        "The watch's and the phone's copies of each run are one session (D101), but the rule \
         sets leave walk-run after 3 consecutive pain-free sessions at any level (D10), not 3 at \
         the top level (60 s at 50 %) as INTERPRETATION proposes: six pain-free sessions since \
         11-14 give progressive loading on day 42.",
    ),
    (
        "446-",
        "As 435: the three records of the 12-05 run are one session (D101); the walk-run exit \
         counts pain-free sessions at any level (D10), and the runs at 30 and 40 % since 11-15 \
         are enough.",
    ),
    (
        "499-",
        "A red flag that calls for imaging (pain at rest, here an active problem-list entry \
         of day 2) stays until imaging of the region or a staff review is recorded; a later \
         'no' alone does not clear it (sticky imaging red flags, issue 30). The case reads the \
         newer 'no' as enough.",
    ),
    (
        "485-",
        "As 42: the last exam (12-04) is from day 12 of an episode begun 11-22 (local day), so \
         persistent localized bony tenderness after 2 weeks of rest is not ruled out and the \
         patient stays in rest until an exam from day 14 on says no (1.0.1's rule, kept).",
    ),
    (
        "42-",
        "Persistent localized bony tenderness after 2 weeks of rest (RF-03) is judged on an exam \
         from day 14 of the episode; the last exam is from day 13, so RF-03 is not ruled out and \
         the patient stays in rest until it is (1.0.1's rule, kept).",
    ),
    (
        "68-",
        "A drafted MRI of the region answers the red flag's call for imaging, but the red flag \
         itself is never hidden: its card stays, names the drafted order and offers no second \
         one (issue 30: a red flag is repeated on the orders it is about, imaging among them).",
    ),
    (
        "139-",
        "Each draft order's schedule is read on its own (PF-03b: the shortest gap between two \
         of its sessions, from its period or its days of the week); two orders on complementary \
         days (Mon/Wed/Fri and Tue/Thu/Sat) are not merged into one schedule. Left for later.",
    ),
    (
        "164-",
        "Pain on return (RF-05) is read on the first sessions of the return after the episode's \
         rest. A run that hurts after a regression during progressive loading is read as pain in \
         a session: rest with regression and the progressing-with-pain card, not the red flag \
         that asks for imaging. Left for later: a return after any rest for symptoms.",
    ),
    (
        "69-",
        "As 68: the drafted radiographs are named on the red flag's card.",
    ),
    (
        "70-",
        "As 68: the drafted radiographs are named on the red flag's card.",
    ),
    (
        "225-",
        "As 68: the red flag's card stays beside a drafted knee MRI. (The MRI here is coded in \
         SNOMED CT only; procedure codes of that system are not yet among the imaging read: \
         issue 30, left for later.)",
    ),
    (
        "286-",
        "As 68: the red flag's card stays beside a drafted knee radiograph (coded here in LOINC \
         only, 24806-2, a code not among the imaging codes verified for the rule set).",
    ),
    (
        "268-",
        "A whole number where a percentage is read is that percentage (1.0.2's reading of \
         integers for scores, days and percentages): 85 for a limb symmetry index has no other \
         reading, as a fraction would not be whole. FACTS' rule on units is about quantities \
         whose unit is missing or unknown, which is kept (a bare 45 for a length stays unknown).",
    ),
    (
        "266-",
        "A red flag neither confirmed nor ruled out (tenderness present, its extent in a unit \
         typed in words, which FACTS says is never guessed) keeps the patient from any phase past \
         the first and is shown as its own 'Not ruled out' card asking for the extent; on day 9 \
         that first phase is rest, where running has stopped already. hold-for-evaluation is \
         for a red flag that fired, or one not ruled out where the patient would otherwise \
         progress.",
    ),
    (
        "300-",
        "Pain the morning after a pain-free first run is not pain while running: pain on return \
         (RF-05) reads the first sessions' running pain. The patient is held for evaluation on \
         'no improvement after rest' all the same, and the walking pain recorded this morning \
         ends the pain-free walking.",
    ),
    (
        "302-",
        "A run during rest is no return (it is the running-during-rest pitfall, shown): pain on \
         return (RF-05) reads the first sessions after the minimum rest. The patient stays in \
         rest.",
    ),
    (
        "308-",
        "A pre-injury distance per month (km/mo) is not among the units read (FACTS: km, m), so \
         it is unknown and full return is not granted: the cautious side of a control.",
    ),
    (
        "331-",
        "As 42: persistent localized bony tenderness after 2 weeks of rest (RF-03) is judged on \
         an exam from day 14 of the episode; the last exam is from day 12, so RF-03 is not ruled \
         out (its own card asks for the exam) and the patient stays in rest until it is.",
    ),
    (
        "396-",
        "As 266: the only extent recorded ('< 0 cm') says nothing, so focal tenderness is \
         neither confirmed nor ruled out: no red flag fires (none is invented), and the patient \
         is kept in rest with the red flag's own 'Not ruled out' card asking for the extent. The \
         case's control reads any card of that topic as the red flag; that card is the warning \
         the source's caution asks for, not the red flag.",
    ),
    (
        "397-",
        "As 396: today's only pain score ('> 10' on a 0-10 scale) says nothing, so current pain \
         is unknown and 'no improvement after rest' is neither confirmed nor ruled out on day \
         28: no red flag fires, and its 'Not ruled out' card asks for a pain score.",
    ),
    (
        "178-",
        "Two runs on one day are less than 24 hours apart: the source's reason for alternate \
         days is that 'bone and muscle cells require 24 hours to regain 98% mechanosensitivity \
         between loading sessions' [1, 2], so the consecutive-day pitfall is shown (case 91, by \
         another reviewer, expects it). The distance jump this case asks for is shown too.",
    ),
];

/// Cases not answered as they expect yet, each with what is missing: issue 30 stays open for
/// them. A listed case that starts to pass fails the test, so the list only shrinks.
const OPEN: &[(&str, &str)] = &[
    (
        "496-",
        "Pain while running recorded as a diagnosis (a Condition coded pain-running) the day \
         after a session logged without its pain: a run's pain is read from its session's \
         component, and a diagnosis is not tied to a session; the session without its pain \
         leaves the phase at insufficient data, not the red flag.",
    ),
    (
        "309-",
        "A pre-injury distance per run (km/{run}) is not a distance per week and is not read \
         (D93); premature speed work, recorded but not comparable, is listed on the phase card \
         as a pitfall that could not be checked, not shown as a card of its own.",
    ),
    (
        "204-",
        "A 'no' whose note says the opposite in words: notes are not read.",
    ),
    (
        "447-",
        "The copies are one run each (D101), but the first fortnight of walk-run (three runs \
         from its fifth day) is the baseline of the weekly trend of the next fortnight (six \
         runs): a rise of about 48 % a week, so distance-jump is shown. The same without the \
         phone's copies. Left for later: a trend whose earlier period had only begun to run.",
    ),
];

fn order(phase: &str) -> u8 {
    match phase {
        "insufficient-data" => 0,
        "hold-for-evaluation" => 1,
        "rest" => 2,
        "walk-run" => 3,
        "progressive-loading" => 4,
        "full-return" => 5,
        _ => 9,
    }
}

fn rule_set() -> RuleSet {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../guidelines/medial-knee-pain-running/1.0.2.yaml");
    RuleSet::from_yaml(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn bundle(resources: &[Json]) -> Box<serde_json::value::RawValue> {
    let b = json!({"resourceType": "Bundle", "type": "collection",
        "entry": resources.iter().map(|r| json!({"resource": r})).collect::<Vec<_>>()});
    serde_json::value::to_raw_value(&b).unwrap()
}

struct Judged {
    decision: Decision,
    topics: BTreeSet<String>,
    /// What a clinician reads on each card: its decision id, summary and detail.
    texts: Vec<(String, Json, Json)>,
}

/// `case` decided on every resource at once by the path a hook call and `$apply` share
/// (`stride_app::decision::decide`: the approved phase from a plan in the prefetch, the
/// clinic's zone and day), on a store that holds nothing of the patient, and its cards made.
/// What a hook call gathers first is checked against this in `tests/apply.rs`.
async fn judge(store: &dyn Store, rs: &RuleSet, case: &Json) -> Judged {
    let (zone, now) = support::decided_when(case);
    let patient = case["patient"].as_str().unwrap();
    let mut intake = Intake::for_patient(patient);
    intake.read_patients = true;
    intake.read_gender = rs.reads_patient_codes();
    let resources: Vec<Json> = case["resources"].as_array().unwrap().clone();
    intake.add(&bundle(&resources));
    let orders: Vec<Json> = case["draftOrders"].as_array().cloned().unwrap_or_default();
    let hook = case["hook"].as_str().unwrap();
    if !orders.is_empty() {
        intake.add(&bundle(&orders));
    }
    let clinic = stride_store::TenantId::parse("clinic-a").unwrap();
    let subject = Subject {
        tenant: &clinic,
        patient,
        zone: &zone,
        now,
    };
    let decision = decide(store, &subject, rs, None, intake, true)
        .await
        .unwrap()
        .decision;
    let drafted = stride_fhir::orders::draft_orders(&bundle(&orders));
    let made = cards(&CardInputs {
        rs,
        decision: &decision,
        guideline_url: "https://stride.example/guidelines".into(),
        careplan: None,
        review: None,
        imaging: &[],
        drafted: &drafted,
        unread: &[],
        phase_card: hook == "patient-view",
    });
    let texts = made
        .iter()
        .map(|c| {
            (
                c.decision_id.clone(),
                c.json["summary"].clone(),
                c.json["detail"].clone(),
            )
        })
        .collect();
    let mut topics: BTreeSet<String> = made.iter().map(|c| c.decision_id.clone()).collect();
    // On patient-view the phase notes are named on the phase card.
    if hook == "patient-view" {
        topics.extend(decision.phase_notes.iter().map(|f| f.id.clone()));
    }
    Judged {
        decision,
        topics,
        texts,
    }
}

/// What is wrong with the answer to `case`, if anything.
fn failures(case: &Json, j: &Judged) -> Vec<String> {
    let e = &case["expect"];
    let d = &j.decision;
    let mut out = Vec::new();
    if let Some(a) = e["applies"].as_bool() {
        if a != d.applies {
            out.push(format!("applies: expected {a}, got {}", d.applies));
        }
        if !a {
            return out;
        }
    }
    let phase = d.phase.clone().unwrap_or_default();
    if let Some(most) = e["phase_at_most"].as_str() {
        if order(&phase) > order(most) {
            out.push(format!("phase: expected at most {most}, got {phase}"));
        }
    }
    for not in e["phase_not"].as_array().into_iter().flatten() {
        if not.as_str() == Some(phase.as_str()) {
            out.push(format!("phase: must not be {phase}"));
        }
    }
    let red: BTreeSet<&str> = d.red_flags.iter().map(|f| f.id.as_str()).collect();
    for id in e["red_flags_include"].as_array().into_iter().flatten() {
        let id = id.as_str().unwrap();
        if !red.contains(id) && !j.topics.contains(id) {
            out.push(format!(
                "red flag or card {id} missing (cards: {:?})",
                j.topics
            ));
        }
    }
    for id in e["cards_include"].as_array().into_iter().flatten() {
        let id = id.as_str().unwrap();
        if !j.topics.contains(id) {
            out.push(format!("card {id} missing (cards: {:?})", j.topics));
        }
    }
    for id in e["cards_exclude"].as_array().into_iter().flatten() {
        let id = id.as_str().unwrap();
        if j.topics.contains(id) {
            out.push(format!("card {id} must not be shown"));
        }
    }
    out
}

#[tokio::test]
async fn the_adversarial_records_are_answered_as_the_source_asks() {
    let (_dir, store) = support::fresh_store().await;
    let rs = rule_set();
    let files = support::adversarial_records();
    assert!(files.len() >= 40, "the set is there: {}", files.len());
    let mut wrong = Vec::new();
    let mut still_disagree = BTreeSet::new();
    let mut still_open = BTreeSet::new();
    for (name, case) in &files {
        let judged = judge(store.as_ref(), &rs, case).await;
        // ADV_DEBUG=<case number>- prints that case's whole decision (trace included).
        if std::env::var("ADV_DEBUG").is_ok_and(|d| name.starts_with(&d)) {
            eprintln!(
                "{}",
                serde_json::to_string_pretty(&judged.decision).unwrap()
            );
        }
        let fails = failures(case, &judged);
        let listed = DISAGREE.iter().position(|(n, _)| name.starts_with(n));
        let open = OPEN.iter().position(|(n, _)| name.starts_with(n));
        match (fails.is_empty(), listed, open) {
            (true, None, None) => {}
            (false, Some(k), _) => {
                still_disagree.insert(k);
            }
            (false, None, Some(k)) => {
                still_open.insert(k);
            }
            (true, Some(_), _) => wrong.push(format!(
                "{name}: listed in DISAGREE but now answered as it expects: remove it"
            )),
            (true, None, Some(_)) => wrong.push(format!(
                "{name}: listed in OPEN but now answered as it expects: remove it"
            )),
            (false, None, None) => wrong.push(format!(
                "{name} ({}): {}\n  {}\n  phase {:?}, red flags {:?}, cards {:?}",
                case["class"].as_str().unwrap_or(""),
                case["name"].as_str().unwrap_or(""),
                fails.join("; "),
                judged.decision.phase,
                judged
                    .decision
                    .red_flags
                    .iter()
                    .map(|f| f.id.as_str())
                    .collect::<Vec<_>>(),
                judged.topics
            )),
        }
    }
    eprintln!(
        "adversarial records: {} cases, {} answered as expected, {} listed disagreements, {} open",
        files.len(),
        files.len() - wrong.len() - still_disagree.len() - still_open.len(),
        still_disagree.len(),
        still_open.len()
    );
    assert!(
        wrong.is_empty(),
        "{} cases:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
}

/// Every resource id in `case` (but the patient's, which the hook names) given another label,
/// and every reference to it rewritten: the same record, as another EHR would number it.
fn relabelled(case: &Json) -> Json {
    fn rewrite(v: &mut Json, map: &std::collections::BTreeMap<String, String>) {
        match v {
            Json::Object(o) => {
                for (k, x) in o.iter_mut() {
                    if k == "reference" {
                        if let Some(new) = x.as_str().and_then(|r| map.get(r)) {
                            *x = Json::String(new.clone());
                        }
                    } else {
                        rewrite(x, map);
                    }
                }
            }
            Json::Array(a) => a.iter_mut().for_each(|x| rewrite(x, map)),
            _ => {}
        }
    }
    let mut out = case.clone();
    let mut map = std::collections::BTreeMap::new();
    for key in ["resources", "draftOrders"] {
        for (n, r) in out[key].as_array_mut().into_iter().flatten().enumerate() {
            let (Some(t), Some(id)) = (r["resourceType"].as_str(), r["id"].as_str()) else {
                continue;
            };
            if t == "Patient" {
                continue;
            }
            let new = format!("zz{n}-{}", id.chars().rev().collect::<String>());
            map.insert(format!("{t}/{id}"), format!("{t}/{new}"));
            r["id"] = Json::String(new);
        }
    }
    for key in ["resources", "draftOrders"] {
        if let Some(x) = out.get_mut(key) {
            rewrite(x, &map);
        }
    }
    out
}

/// Issue 33: what a card says is about the patient, never about how the EHR numbered its
/// records. Every adversarial record, relabelled, gives the same decision and the same card
/// texts, word for word (ids belong in the folded trace, not in the text a clinician reads).
#[tokio::test]
async fn card_texts_do_not_depend_on_resource_ids() {
    let (_dir, store) = support::fresh_store().await;
    let rs = rule_set();
    let mut checked = 0;
    let mut differ = Vec::new();
    for (name, case) in support::adversarial_records() {
        let a = judge(store.as_ref(), &rs, &case).await;
        let b = judge(store.as_ref(), &rs, &relabelled(&case)).await;
        checked += 1;
        if a.decision.decision_ids() != b.decision.decision_ids() || a.texts != b.texts {
            differ.push(format!("{}:\n  {:?}\n  {:?}", name, a.texts, b.texts));
        }
    }
    assert!(checked >= 40, "{checked}");
    assert!(differ.is_empty(), "{}", differ.join("\n"));
}

/// A finding of the older knee's episode shown beside the newer knee's rest says whose it is:
/// its card's summary names the side (independent cases 458, 462 and 465 are about the older
/// knee's distance jump and valgus mechanism; the cards showed them with no word of which
/// knee). One the newer episode finds too (a run on consecutive days, 459) is the patient's
/// now and names none. Over every record, a card about another episode's finding names that
/// side, and no other card names one.
#[tokio::test]
async fn another_episodes_findings_name_its_side() {
    let (_dir, store) = support::fresh_store().await;
    let rs = rule_set();
    let want = [
        ("458-", "distance-jump", "Left side: "),
        ("462-", "mcl-mechanism", "Left side: "),
        ("465-", "distance-jump", "Left side: "),
    ];
    let mut seen = 0;
    let mut wrong = Vec::new();
    for (name, case) in support::adversarial_records() {
        let j = judge(store.as_ref(), &rs, &case).await;
        let d = &j.decision;
        for (id, summary, _) in &j.texts {
            let summary = summary.as_str().unwrap_or_default();
            let side = d
                .red_flags
                .iter()
                .chain(&d.warnings)
                .chain(&d.pitfalls)
                .find(|f| &f.id == id)
                .and_then(|f| f.side);
            let named = ["Right side: ", "Left side: ", "Both sides: "]
                .into_iter()
                .find(|w| summary.starts_with(w));
            let expected = side.map(|s| stride_guideline::display::side(Some(s)));
            if named.map(|w| w.trim_end_matches(": ")) != expected {
                wrong.push(format!("{name} {id}: {summary:?} (side {side:?})"));
            }
            if let Some((_, _, words)) =
                want.iter().find(|(n, i, _)| name.starts_with(n) && i == id)
            {
                seen += 1;
                if !summary.starts_with(words) {
                    wrong.push(format!("{name} {id}: {summary:?} should begin {words:?}"));
                }
            }
        }
    }
    assert_eq!(seen, want.len(), "every named card was shown");
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}
