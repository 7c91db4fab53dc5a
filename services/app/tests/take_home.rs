//! The take-home plan reads at about a sixth-grade level: the Flesch–Kincaid grade of the
//! patient text of every phase, in every rule set that has patient wording, is 7 or below.
//! The same measure puts the clinical card texts well above it, so it tells the two apart.

use std::path::Path;

use stride_app::catalog::Catalog;
use stride_app::take_home::compose;
use stride_guideline::decision::{HOLD_FOR_EVALUATION, INSUFFICIENT_DATA};

/// Syllables of a word, by the usual rule: groups of vowels, less a silent final `e`, at least
/// one.
fn syllables(word: &str) -> usize {
    let w: Vec<char> = word
        .chars()
        .filter(char::is_ascii_alphabetic)
        .map(|c| c.to_ascii_lowercase())
        .collect();
    if w.is_empty() {
        return 0;
    }
    let vowel = |c: char| "aeiouy".contains(c);
    let mut count = 0;
    let mut previous = false;
    for &c in &w {
        let v = vowel(c);
        if v && !previous {
            count += 1;
        }
        previous = v;
    }
    let n = w.len();
    if n > 2 && w[n - 1] == 'e' && w[n - 2] != 'l' && !vowel(w[n - 2]) {
        count -= 1;
    }
    count.max(1)
}

/// Flesch–Kincaid grade level: 0.39 × words per sentence + 11.8 × syllables per word − 15.59.
fn grade(text: &str) -> f64 {
    let words: Vec<&str> = text
        .split_whitespace()
        .filter(|w| w.chars().any(|c| c.is_ascii_alphanumeric()))
        .collect();
    let sentences = text
        .split(['.', '!', '?'])
        .filter(|s| s.chars().any(char::is_alphanumeric))
        .count()
        .max(1);
    let syl: usize = words
        .iter()
        .map(|w| {
            // A number is read out as words: count it as its digits' syllables, roughly one each.
            if w.chars().any(|c| c.is_ascii_digit()) {
                1
            } else {
                syllables(w)
            }
        })
        .sum();
    let words = words.len().max(1) as f64;
    0.39 * (words / sentences as f64) + 11.8 * (syl as f64 / words) - 15.59
}

fn catalog() -> Catalog {
    Catalog::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../../guidelines"))
        .expect("the guidelines load")
}

#[test]
fn the_measure_tells_plain_words_from_clinical_prose() {
    assert_eq!(syllables("walk"), 1);
    assert_eq!(syllables("running"), 2);
    assert_eq!(syllables("rest"), 1);
    assert_eq!(syllables("every"), 3);
    assert!(grade("Do not run. Rest your leg. Walk each day.") < 2.0);
    // The clinical card of the first phase, as clinicians read it, is far above grade 7.
    let c = catalog();
    let rs = c.iter().find(|rs| rs.doc.patient.is_some()).unwrap();
    let clinical = &rs.doc.phases[0].card.detail;
    assert!(grade(clinical) > 10.0, "{}: {clinical}", grade(clinical));
}

#[test]
fn every_phase_of_every_rule_set_with_patient_wording_reads_at_grade_7_or_below() {
    let c = catalog();
    let day = time::macros::date!(2026 - 12 - 06);
    let mut measured = 0;
    for rs in c.iter().filter(|rs| rs.doc.patient.is_some()) {
        let phases = rs
            .doc
            .phases
            .iter()
            .map(|p| p.id.as_str())
            .chain([HOLD_FOR_EVALUATION, INSUFFICIENT_DATA]);
        for phase in phases {
            let home = compose(rs, phase, day).unwrap_or_else(|| {
                panic!(
                    "{} {}: {phase} has no patient wording",
                    rs.doc.id, rs.doc.version
                )
            });
            let text = home.plain_text();
            let g = grade(&text);
            assert!(
                g <= 7.0,
                "{} {} {phase}: grade {g:.1}: {text}",
                rs.doc.id,
                rs.doc.version
            );
            // Nothing a clinician's working words would put there.
            for internal in ["{", "[", "seed", "RF-", "PH-", "_"] {
                assert!(!text.contains(internal), "{phase}: {internal} in {text}");
            }
            let pdf = stride_app::pdf::render(&home, stride_app::pdf::Paper::Letter);
            assert!(pdf.starts_with(b"%PDF-"));
            measured += 1;
        }
    }
    // 1.0.2 and 1.1.1: four phases, hold and insufficient data each.
    assert!(measured >= 12, "{measured} phases measured");
}

#[test]
fn the_calendar_follows_the_phase_schedule() {
    let c = catalog();
    let rs = c
        .iter()
        .find(|rs| rs.doc.patient.is_some())
        .expect("a rule set with patient wording");
    let day = time::macros::date!(2026 - 12 - 06);
    let walk_run = compose(rs, "walk-run", day).unwrap();
    assert_eq!(walk_run.calendar.len(), 14);
    for (i, d) in walk_run.calendar.iter().enumerate() {
        assert_eq!(d.session, i % 2 == 0, "alternate days only: {d:?}");
        assert_eq!(d.day, day + time::Duration::days(i as i64));
    }
    assert!(
        walk_run
            .calendar
            .windows(2)
            .all(|w| !(w[0].session && w[1].session)),
        "never two session days in a row"
    );
    let rest = compose(rs, "rest", day).unwrap();
    assert!(rest.calendar.iter().all(|d| d.session), "walking every day");
    let hold = compose(rs, HOLD_FOR_EVALUATION, day).unwrap();
    assert!(hold.calendar.is_empty(), "no sessions before evaluation");
    assert!(hold.stop.contains("pain at night"));
}
