//! Properties rule set 1.0.1 promises on messy records (issue "Safe on real EHR data"): a
//! same-day positive red-flag record never removes a red flag nor advances the phase; a
//! value-less record never changes a decision; naming a code system by its OID never does.

mod support;

use std::sync::OnceLock;

use proptest::prelude::*;
use stride_guideline::facts::RecordKind;
use stride_guideline::terminology::{canonical_code, canonical_system};
use stride_guideline::{evaluate, Code, Decision, Facts, Record, RuleSet, Value};
use support::{local, patient, AS_OF};
use time::Duration;

fn rule_set() -> &'static RuleSet {
    static RS: OnceLock<RuleSet> = OnceLock::new();
    RS.get_or_init(|| {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../guidelines/medial-knee-pain-running/1.0.1.yaml"
        );
        RuleSet::from_yaml(&std::fs::read_to_string(path).unwrap()).unwrap()
    })
}

/// What a clinician sees of a decision (the trace and the list of records left out aside).
fn seen(d: &Decision) -> (Option<String>, Vec<String>, Vec<String>, Vec<String>) {
    let mut unassessed: Vec<String> = d
        .unassessed_red_flags
        .iter()
        .map(|u| u.id.clone())
        .collect();
    unassessed.sort();
    let mut missing: Vec<String> = d.missing.iter().map(|m| m.fact.clone()).collect();
    missing.sort();
    (
        d.phase.clone(),
        d.decision_ids().into_iter().map(str::to_owned).collect(),
        unassessed,
        missing,
    )
}

/// Protocol phases in order; hold and insufficient-data are below the first.
fn rank(phase: Option<&str>) -> i32 {
    match phase {
        Some("rest") => 0,
        Some("walk-run") => 1,
        Some("progressive-loading") => 2,
        Some("full-return") => 3,
        _ => -1,
    }
}

/// A positive record of one red-flag finding: pain at rest or at night, localized bony
/// tenderness, a focal extent under 5 cm.
fn positive(finding: usize, day: i64) -> Record {
    let (code, value) = match finding % 4 {
        0 => ("pain-rest", Value::Boolean(true)),
        1 => ("pain-night", Value::Integer(4)),
        2 => ("bony-tenderness", Value::Boolean(true)),
        _ => (
            "tenderness-extent",
            Value::Quantity {
                value: 3.0,
                unit: Some("cm".into()),
            },
        ),
    };
    final_observation(code, &format!("Observation/positive-{code}"), day, value)
}

/// A final Observation of a local code, `day` days from `AS_OF`.
fn final_observation(code: &str, source: &str, day: i64, value: Value) -> Record {
    Record {
        at: None,
        text: None,
        end: None,
        sites: Vec::new(),
        start: None,
        source: source.into(),
        kind: RecordKind::Observation,
        codes: local(code),
        status: Some("final".into()),
        date: Some(AS_OF + Duration::days(day)),
        value: Some(value),
        components: vec![],
    }
}

/// The same codes, systems named by their HL7 OIDs (as HL7 Terminology lists them).
fn by_oid(facts: &Facts) -> Facts {
    const OIDS: &[(&str, &str)] = &[
        (
            "http://hl7.org/fhir/sid/icd-10-cm",
            "urn:oid:2.16.840.1.113883.6.90",
        ),
        ("http://snomed.info/sct", "urn:oid:2.16.840.1.113883.6.96"),
        ("http://loinc.org", "urn:oid:2.16.840.1.113883.6.1"),
        (
            "http://www.ama-assn.org/go/cpt",
            "urn:oid:2.16.840.1.113883.6.12",
        ),
        (
            "http://www.cms.gov/Medicare/Coding/HCPCSReleaseCodeSets",
            "urn:oid:2.16.840.1.113883.6.285",
        ),
    ];
    let swap = |c: &Code| Code {
        system: OIDS
            .iter()
            .find(|(u, _)| *u == c.system)
            .map_or(c.system.clone(), |(_, o)| (*o).to_owned()),
        code: c.code.clone(),
    };
    let mut out = facts.clone();
    for r in &mut out.records {
        r.codes = r.codes.iter().map(swap).collect();
        if let Some(Value::Coded(cs)) = &mut r.value {
            *cs = cs.iter().map(swap).collect();
        }
    }
    out
}

/// What intake does with every code: the canonical system, the canonical code.
fn canonical(facts: &Facts) -> Facts {
    let fix = |c: &Code| {
        let system = canonical_system(&c.system).to_owned();
        Code {
            code: canonical_code(&system, &c.code).into_owned(),
            system,
        }
    };
    let mut out = facts.clone();
    for r in &mut out.records {
        r.codes = r.codes.iter().map(fix).collect();
        if let Some(Value::Coded(cs)) = &mut r.value {
            *cs = cs.iter().map(fix).collect();
        }
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn a_same_day_positive_record_never_removes_a_red_flag_nor_advances_the_phase(
        facts in patient(), finding in 0usize..4,
    ) {
        let rs = rule_set();
        let before = evaluate(rs, &facts, AS_OF);
        // The positive record goes on the newest day any record of the finding has (beside
        // whatever negative, amended or value-less record is there), and inside every red
        // flag's window: from 14 days after the onset.
        let onset = facts
            .records
            .iter()
            .find(|r| r.kind == RecordKind::Condition && r.status.as_deref() == Some("active"))
            .and_then(|r| r.date);
        prop_assume!(onset.is_some_and(|o| o + Duration::days(14) <= AS_OF));
        let codes: &[&str] = match finding % 4 {
            0 => &["pain-rest"],
            1 => &["pain-night"],
            2 => &["bony-tenderness"],
            _ => &["tenderness-extent", "bony-tenderness"],
        };
        let newest = facts
            .records
            .iter()
            .filter(|r| r.codes.iter().any(|c| codes.contains(&c.code.as_str())))
            .filter_map(|r| r.date)
            .filter(|d| *d <= AS_OF)
            .max();
        let first_day = onset.unwrap() + Duration::days(14);
        let day = newest.map_or(first_day, |n| n.max(first_day));
        let mut more = facts.clone();
        more.records.push(positive(finding, (day - AS_OF).whole_days()));
        let after = evaluate(rs, &more, AS_OF);
        for f in &before.red_flags {
            prop_assert!(after.red_flags.iter().any(|g| g.id == f.id), "{} vanished", f.id);
        }
        let (b, a) = (rank(before.phase.as_deref()), rank(after.phase.as_deref()));
        prop_assert!(a <= b.max(0), "phase advanced: {:?} → {:?}", before.phase, after.phase);
        // A red flag recorded present is never beside a running phase.
        prop_assert!(a <= 0, "{:?} with a positive {:?} of {day}", after.phase, codes[0]);
    }

    #[test]
    fn a_value_less_record_never_changes_a_decision(
        facts in patient(), pick in any::<prop::sample::Index>(), day in -60i64..=0,
    ) {
        let rs = rule_set();
        // A running session is evidence by itself (a run happened); every other record says
        // what it found through its value.
        let codes: Vec<&str> = support::CODES.iter().copied().filter(|c| *c != "running-session").collect();
        let code = codes[pick.index(codes.len())];
        let mut more = facts.clone();
        more.records.push(Record {
            at: None,
            text: None,
            end: None,
            sites: Vec::new(),
            start: None,
            source: format!("Observation/absent-{code}"),
            kind: RecordKind::Observation,
            codes: local(code),
            status: Some("final".into()),
            date: Some(AS_OF + Duration::days(day)),
            value: None,
            components: vec![],
        });
        prop_assert_eq!(seen(&evaluate(rs, &facts, AS_OF)), seen(&evaluate(rs, &more, AS_OF)));
    }

    #[test]
    fn naming_code_systems_by_oid_never_changes_a_decision(facts in patient()) {
        let rs = rule_set();
        let direct = evaluate(rs, &facts, AS_OF);
        let through_oids = evaluate(rs, &canonical(&by_oid(&facts)), AS_OF);
        prop_assert_eq!(seen(&direct), seen(&through_oids));
        prop_assert_eq!(direct.trace, through_oids.trace);
    }
}

/// The OID property above is only as good as its generator: every system an OID names must
/// turn up in the patients it draws (once, only local and ICD-10-CM codes did).
#[test]
fn the_generated_patients_use_every_system_an_oid_can_name() {
    use proptest::strategy::ValueTree;
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let strategy = patient();
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..300 {
        let facts = strategy.new_tree(&mut runner).unwrap().current();
        for r in &facts.records {
            seen.extend(r.codes.iter().map(|c| c.system.clone()));
            if let Some(Value::Coded(cs)) = &r.value {
                seen.extend(cs.iter().map(|c| c.system.clone()));
            }
        }
    }
    for system in [
        "http://hl7.org/fhir/sid/icd-10-cm",
        "http://snomed.info/sct",
        "http://loinc.org",
        "http://www.ama-assn.org/go/cpt",
        "http://www.cms.gov/Medicare/Coding/HCPCSReleaseCodeSets",
    ] {
        assert!(seen.contains(system), "{system} never generated: {seen:?}");
    }
}

/// Two records of the focal-tenderness extent on one day, each a bound, a measured value or a
/// record the engine cannot read: when either alone fires a red flag, the two together fire it
/// (a red flag is never hidden by a record beside it that contradicts it or cannot be read; the
/// property above found it hidden beside a measured value, a review beside a second bound, and
/// this grid beside an unreadable bound). Every pair of a small grid, both orders.
#[test]
fn a_red_flag_one_same_day_extent_fires_is_fired_beside_any_other() {
    let rs = rule_set();
    let mut readings: Vec<Value> = Vec::new();
    for comparator in ["<", "<=", ">", ">="] {
        for v in [0.0, 0.5, 3.0, 4.9, 5.0, 10.0] {
            readings.push(Value::Bound {
                comparator: comparator.into(),
                unit: Some("cm".into()),
                value: v,
            });
        }
    }
    for v in [0.5, 3.0, 5.0, 10.0] {
        readings.push(Value::Quantity {
            value: v,
            unit: Some("cm".into()),
        });
    }
    // Records the engine cannot read: outside the believable range, a unit it does not
    // convert, a type it does not read, a range that fits no believable value.
    readings.push(Value::Quantity {
        value: 300.0,
        unit: Some("cm".into()),
    });
    readings.push(Value::Quantity {
        value: 3.0,
        unit: Some("furlong".into()),
    });
    readings.push(Value::Other("string".into()));
    readings.push(Value::Range {
        high: Some((400.0, Some("cm".into()))),
        low: Some((300.0, Some("cm".into()))),
    });
    readings.push(Value::Range {
        high: Some((4.0, Some("cm".into()))),
        low: Some((2.0, Some("cm".into()))),
    });
    let record = |i: usize, value: &Value| {
        final_observation(
            "tenderness-extent",
            &format!("Observation/extent-{i}"),
            0,
            value.clone(),
        )
    };
    let episode = Record {
        at: None,
        text: None,
        end: None,
        sites: Vec::new(),
        start: None,
        source: "Condition/episode".into(),
        kind: RecordKind::Condition,
        codes: vec![Code {
            code: "M25.561".into(),
            system: "http://hl7.org/fhir/sid/icd-10-cm".into(),
        }],
        status: Some("active".into()),
        date: Some(AS_OF - Duration::days(30)),
        value: None,
        components: vec![],
    };
    let flags = |values: &[&Value]| -> Vec<String> {
        let mut records = vec![episode.clone()];
        records.extend(values.iter().enumerate().map(|(i, v)| record(i, v)));
        let facts = Facts {
            phase_state: None,
            records,
        };
        evaluate(rs, &facts, AS_OF)
            .red_flags
            .iter()
            .map(|f| f.id.clone())
            .collect()
    };
    let mut fired_alone = 0;
    for a in &readings {
        for b in &readings {
            for alone in flags(&[a]) {
                fired_alone += 1;
                let both = flags(&[a, b]);
                assert!(
                    both.contains(&alone),
                    "{alone} fired on {a:?} alone, not beside {b:?}: {both:?}"
                );
            }
        }
    }
    // The grid holds readings that fire (else the check above checks nothing).
    assert!(fired_alone > 0);
}
