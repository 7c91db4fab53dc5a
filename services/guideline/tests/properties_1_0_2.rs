//! Properties the rule sets on 1.0.2's decision model (1.0.2 and the draft 1.1.1) promise on
//! records that cannot be read or belong to the other knee: a second record of a finding on
//! its own day in a form that cannot be read never removes a red flag nor lets the patient
//! progress, and neither does a record of the other knee.

mod support;

use std::sync::OnceLock;

use proptest::prelude::*;
use stride_guideline::facts::RecordKind;
use stride_guideline::{evaluate, Code, Decision, Facts, RuleSet, Value};
use support::{patient, AS_OF};

fn rule_sets() -> &'static [RuleSet] {
    static RS: OnceLock<Vec<RuleSet>> = OnceLock::new();
    RS.get_or_init(|| {
        ["1.0.2", "1.1.1"]
            .into_iter()
            .map(support::rule_set)
            .collect()
    })
}

/// The caution rank of a phase: every phase without running is equally cautious (0).
fn rank(d: &Decision) -> u8 {
    match d.phase.as_deref() {
        Some("walk-run") => 1,
        Some("progressive-loading") => 2,
        Some("full-return") => 3,
        _ => 0,
    }
}

/// `after` is at least as cautious as `before`: no red flag lost (it fires, or is shown as not
/// ruled out: a record that cannot be read, or that moves the episode, may make it unknown, as
/// missing data may), no phase advanced.
fn no_less_cautious(before: &Decision, after: &Decision) -> Result<(), String> {
    for f in &before.red_flags {
        let fired = after.red_flags.iter().any(|g| g.id == f.id);
        let shown = after.unassessed_red_flags.iter().any(|u| u.id == f.id);
        if !(fired || shown) {
            return Err(format!("red flag {} lost", f.id));
        }
    }
    if before.applies && after.applies && rank(after) > rank(before) {
        return Err(format!(
            "phase advanced {:?} -> {:?}",
            before.phase, after.phase
        ));
    }
    Ok(())
}

/// The Observations with a value that counts (not a preliminary or entered-in-error record).
fn valued(facts: &Facts) -> Vec<usize> {
    (0..facts.records.len())
        .filter(|&i| {
            let r = &facts.records[i];
            r.kind == RecordKind::Observation
                && r.value.is_some()
                && r.date.is_some()
                && matches!(r.status.as_deref(), Some("final" | "amended" | "corrected"))
        })
        .collect()
}

/// A value the engine cannot read, of four kinds, made from the one it stands beside.
fn unreadable(form: usize, beside: &Value) -> Value {
    let unit = match beside {
        Value::Quantity { unit, .. } | Value::Bound { unit, .. } => unit.clone(),
        _ => None,
    };
    match form % 4 {
        0 => Value::Other("string".into()),
        1 => Value::Quantity {
            value: 3.0,
            unit: Some("furlong".into()),
        },
        2 => Value::Bound {
            comparator: ">".into(),
            value: 1e9,
            unit,
        },
        _ => Value::Quantity { value: 1e9, unit },
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1024, ..ProptestConfig::default() })]

    /// A finding recorded a second time on its own day in a form that cannot be read (free
    /// text, a unit nothing converts, a value or bound no believable reading meets) makes the
    /// fact unknown, never what the readable record says less so.
    #[test]
    fn an_unreadable_copy_never_removes_a_red_flag_nor_advances_the_phase(
        facts in patient(),
        pick in any::<prop::sample::Index>(),
        form in 0usize..4,
        first in any::<bool>(),
    ) {
        let picks = valued(&facts);
        prop_assume!(!picks.is_empty());
        let original = &facts.records[picks[pick.index(picks.len())]];
        let mut copy = original.clone();
        copy.source = "Observation/unreadable-copy".into();
        copy.value = Some(unreadable(form, original.value.as_ref().unwrap()));
        // The finding's value only: a session's parts copied would be another session (a
        // pain-free run that rightly moves a painful one out of the first two).
        copy.components.clear();
        let mut with = facts.clone();
        if first { with.records.insert(0, copy) } else { with.records.push(copy) }
        for rs in rule_sets() {
            let (before, after) = (evaluate(rs, &facts, AS_OF), evaluate(rs, &with, AS_OF));
            if let Err(e) = no_less_cautious(&before, &after) {
                prop_assert!(false, "{} {}: {e}", rs.doc.version, original.source);
            }
        }
    }

    /// A record of the other knee (the episode is the right knee's: ICD-10-CM M25.561) says
    /// nothing of the injured knee's course: it may hold the patient back (pain in either
    /// knee stops running) but never removes a red flag nor lets the patient progress.
    #[test]
    fn a_record_of_the_other_knee_never_removes_a_red_flag_nor_advances_the_phase(
        facts in patient(),
        pick in any::<prop::sample::Index>(),
        first in any::<bool>(),
        later in 0i64..=2,
        lower in proptest::option::of(0i64..3),
        baseline in proptest::option::of(0i64..=10),
    ) {
        // Only an episode of one side has an other knee: the right knee's (ICD-10-CM M25.561).
        let mut facts = facts;
        for r in facts.records.iter_mut().filter(|r| r.kind == RecordKind::Condition) {
            r.codes = vec![Code {
                system: "http://hl7.org/fhir/sid/icd-10-cm".into(),
                code: "M25.561".into(),
            }];
        }
        // A score on the episode's first day, often, so that a fall from it (improvement) is
        // something the other knee's records could be mistaken for.
        let onset = facts.records.iter().find(|r| r.kind == RecordKind::Condition).and_then(|r| r.date);
        if let (Some(day), Some(score)) = (onset, baseline) {
            let mut first = facts.records.iter().find(|r| r.codes.iter().any(|c| c.code == "72514-3"))
                .cloned().unwrap_or_else(|| facts.records[0].clone());
            first.codes = vec![Code { system: "http://loinc.org".into(), code: "72514-3".into() }];
            first.kind = RecordKind::Observation;
            first.source = "Observation/baseline".into();
            first.status = Some("final".into());
            first.date = Some(day);
            first.sites = Vec::new();
            first.components = Vec::new();
            first.value = Some(Value::Integer(score));
            facts.records.push(first);
        }
        let picks = valued(&facts);
        prop_assume!(!picks.is_empty());
        let i = picks[pick.index(picks.len())];
        let mut left = facts.records[i].clone();
        // The other knee's record says less (a low score), or the same; on the day of the
        // record it copies or a day or two later.
        if let Some(v) = lower {
            left.value = Some(Value::Integer(v));
        }
        left.date = left.date.map(|d| (d + time::Duration::days(later)).min(AS_OF));
        left.sites = vec![Code {
            system: "http://snomed.info/sct".into(),
            code: "82169009".into(),
        }];
        let mut with = facts.clone();
        // A record of the other knee beside the injured knee's (sent first or last). (Moving
        // a record to the other knee would take it from the injured one: less evidence, which
        // may rightly make the decision less cautious.)
        left.source = "Observation/left-knee".into();
        if first {
            with.records.insert(0, left);
        } else {
            with.records.push(left);
        }
        for rs in rule_sets() {
            let (before, after) = (evaluate(rs, &facts, AS_OF), evaluate(rs, &with, AS_OF));
            if let Err(e) = no_less_cautious(&before, &after) {
                prop_assert!(false, "{} {}: {e}", rs.doc.version, facts.records[i].source);
            }
        }
    }
}
