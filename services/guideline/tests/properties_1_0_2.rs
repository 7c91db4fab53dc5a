//! Properties the rule sets on 1.0.2's decision model (1.0.2 and the draft 1.1.1) promise on
//! records that cannot be read or belong to the other knee: a second record of a finding on
//! its own day in a form that cannot be read never removes a red flag nor lets the patient
//! progress, and neither does a record of the other knee. And on records of one event logged
//! twice (D101): a copy by a second device minutes later changes nothing, and a copy that
//! disagrees never makes the decision less cautious.

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

/// Every rule set: records of one event are one event in each (D101).
fn every_rule_set() -> &'static [RuleSet] {
    static RS: OnceLock<Vec<RuleSet>> = OnceLock::new();
    RS.get_or_init(|| {
        ["1.0.0", "1.0.1", "1.0.2", "1.1.0", "1.1.1"]
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

/// The parts of a decision a clinician acts on, by id.
fn outcome(d: &Decision) -> (bool, Option<String>, Vec<String>, Vec<String>, Vec<String>) {
    let ids = |fs: &[stride_guideline::decision::Finding]| {
        let mut v: Vec<String> = fs.iter().map(|f| f.id.clone()).collect();
        v.sort();
        v
    };
    (
        d.applies,
        d.phase.clone(),
        ids(&d.red_flags),
        ids(&d.warnings),
        ids(&d.pitfalls),
    )
}

/// Every dated record given a time, as a hook's records have: the `n`-th record of a day at
/// 05:00 and 70 minutes more for each before it, so no two are less than an hour apart.
fn timed(facts: &Facts) -> Facts {
    let mut slots: std::collections::HashMap<time::Date, i64> = Default::default();
    let mut out = facts.clone();
    for r in &mut out.records {
        if let Some(day) = r.date {
            let slot = slots.entry(day).or_default();
            r.at = Some(
                day.midnight().assume_utc()
                    + time::Duration::minutes(5 * 60 + 70 * (*slot).min(15)),
            );
            *slot += 1;
        }
    }
    out
}

/// A value of the same kind that says otherwise: the opposite yes/no, another number.
fn otherwise(v: &Value) -> Option<Value> {
    Some(match v {
        Value::Boolean(b) => Value::Boolean(!b),
        Value::Integer(n) => Value::Integer((n + 3) % 11),
        Value::Quantity { value, unit } => Value::Quantity {
            value: value * 2.0 + 1.0,
            unit: unit.clone(),
        },
        _ => return None,
    })
}

/// Every rule set decides `with` as it decides `facts`.
fn decides_alike(facts: &Facts, with: &Facts) -> Result<(), TestCaseError> {
    for rs in every_rule_set() {
        let (before, after) = (evaluate(rs, facts, AS_OF), evaluate(rs, with, AS_OF));
        prop_assert_eq!(outcome(&before), outcome(&after), "{}", rs.doc.version);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1024, ..ProptestConfig::default() })]

    /// Records an hour or more apart are never one event: giving every record a time of its
    /// own changes no decision.
    #[test]
    fn times_an_hour_apart_change_nothing(facts in patient()) {
        let with = timed(&facts);
        decides_alike(&facts, &with)?;
    }

    /// Every record logged again by a second device, under its own id, less than an hour
    /// later: one event each, the decision unchanged (a session counted twice would double a
    /// pain-free streak; two of one day would be the consecutive-day pitfall).
    #[test]
    fn a_second_device_logging_every_record_again_changes_nothing(
        facts in patient(),
        minutes in 0i64..60,
    ) {
        let facts = timed(&facts);
        let mut with = facts.clone();
        for r in &facts.records {
            if r.kind == RecordKind::Observation && r.at.is_some() {
                let mut copy = r.clone();
                copy.source = format!("{}-phone", r.source);
                copy.at = r.at.map(|t| t + time::Duration::minutes(minutes));
                with.records.push(copy);
            }
        }
        decides_alike(&facts, &with)?;
    }

    /// A second device's copy of one record that says otherwise (pain 3 where the watch says
    /// 0): which is right cannot be told, so it never removes a red flag nor lets the patient
    /// progress.
    #[test]
    fn a_second_device_copy_that_disagrees_never_removes_a_red_flag_nor_advances_the_phase(
        facts in patient(),
        pick in any::<prop::sample::Index>(),
        minutes in 0i64..60,
        first in any::<bool>(),
    ) {
        let facts = timed(&facts);
        let picks = valued(&facts);
        prop_assume!(!picks.is_empty());
        let original = &facts.records[picks[pick.index(picks.len())]];
        let Some(value) = otherwise(original.value.as_ref().unwrap()) else {
            return Ok(());
        };
        let mut copy = original.clone();
        copy.source = "Observation/phone-copy".into();
        copy.value = Some(value);
        copy.at = original.at.map(|t| t + time::Duration::minutes(minutes));
        let mut with = facts.clone();
        if first { with.records.insert(0, copy) } else { with.records.push(copy) }
        for rs in every_rule_set() {
            let (before, after) = (evaluate(rs, &facts, AS_OF), evaluate(rs, &with, AS_OF));
            if let Err(e) = no_less_cautious(&before, &after) {
                prop_assert!(false, "{} {}: {e}", rs.doc.version, original.source);
            }
        }
    }

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
