//! Properties of `evaluate` over generated patients: it never panics, it is deterministic
//! (also under any order of the input records), and missing data never silences a red flag.

use std::sync::OnceLock;

use proptest::prelude::*;
use stride_guideline::facts::RecordKind;
use stride_guideline::{
    evaluate, evaluate_without, Code, Component, Facts, Record, RuleSet, Value,
};
use time::{macros::date, Date, Duration};

const AS_OF: Date = date!(2026 - 06 - 01);
const LOCAL: &str = "http://stride-cds.org/fhir/CodeSystem/running-knee";

fn rule_set() -> &'static RuleSet {
    static RS: OnceLock<RuleSet> = OnceLock::new();
    RS.get_or_init(|| {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../guidelines/medial-knee-pain-running/1.0.0.yaml"
        );
        RuleSet::from_yaml(&std::fs::read_to_string(path).unwrap()).unwrap()
    })
}

fn local(code: &str) -> Vec<Code> {
    vec![Code {
        system: LOCAL.into(),
        code: code.into(),
    }]
}

fn value() -> impl Strategy<Value = Option<Value>> {
    prop_oneof![
        Just(None),
        (0i64..=10).prop_map(|i| Some(Value::Integer(i))),
        any::<bool>().prop_map(|b| Some(Value::Boolean(b))),
        (
            0.0f64..200.0,
            prop::sample::select(vec![
                "cm", "mm", "min", "h", "d", "wk", "%", "km", "m", "{score}", "furlong"
            ])
        )
            .prop_map(|(v, u)| Some(Value::Quantity {
                value: v,
                unit: Some(u.to_owned())
            })),
        (-5.0f64..5.0).prop_map(|v| Some(Value::Quantity {
            value: v,
            unit: None
        })),
    ]
}

const CODES: &[&str] = &[
    "pain-walking",
    "pain-running",
    "pain-rest",
    "pain-night",
    "tenderness-extent",
    "bony-tenderness",
    "pain-free-walking-days",
    "pain-free-walking-minutes",
    "limb-symmetry-index",
    "valgus-twist-mechanism",
    "heel-strike-gait",
    "preinjury-weekly-distance",
    "running-session",
];

fn observation() -> impl Strategy<Value = Record> {
    (
        prop::sample::select(CODES),
        prop::sample::select(vec![
            "final",
            "amended",
            "entered-in-error",
            "preliminary",
            "corrected",
        ]),
        prop::option::weighted(0.95, -120i64..5),
        value(),
        prop::collection::vec(
            (
                prop::sample::select(vec![
                    "run-distance",
                    "pain-running",
                    "speed-work",
                    "run-pace-percent",
                ]),
                value(),
            ),
            0..4,
        ),
        0u32..1_000_000,
    )
        .prop_map(|(code, status, day, value, comps, n)| Record {
            source: format!("Observation/{code}-{n}"),
            kind: RecordKind::Observation,
            codes: local(code),
            status: Some(status.into()),
            date: day.map(|d| AS_OF + Duration::days(d)),
            value,
            components: comps
                .into_iter()
                .map(|(c, v)| Component {
                    codes: local(c),
                    value: v,
                })
                .collect(),
        })
}

fn patient() -> impl Strategy<Value = Facts> {
    (
        prop::option::weighted(
            0.9,
            (prop::option::weighted(0.9, -120i64..3), any::<bool>()),
        ),
        prop::collection::vec(observation(), 0..60),
        any::<bool>(),
    )
        .prop_map(|(episode, mut records, lipus)| {
            if let Some((onset, active)) = episode {
                records.push(Record {
                    source: "Condition/episode".into(),
                    kind: RecordKind::Condition,
                    codes: vec![Code {
                        system: "http://hl7.org/fhir/sid/icd-10-cm".into(),
                        code: "M25.561".into(),
                    }],
                    status: Some(if active { "active" } else { "resolved" }.into()),
                    date: onset.map(|d| AS_OF + Duration::days(d)),
                    value: None,
                    components: vec![],
                });
            }
            if lipus {
                records.push(Record {
                    source: "ServiceRequest/lipus".into(),
                    kind: RecordKind::Order,
                    codes: local("lipus"),
                    status: Some("draft".into()),
                    date: None,
                    value: None,
                    components: vec![],
                });
            }
            Facts { records }
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn deterministic_and_independent_of_record_order(facts in patient(), seed in any::<u64>()) {
        let rs = rule_set();
        let a = evaluate(rs, &facts, AS_OF);
        prop_assert_eq!(&a, &evaluate(rs, &facts, AS_OF));
        let mut shuffled = facts.clone();
        // A cheap deterministic shuffle: rotate then reverse by the seed.
        let n = shuffled.records.len().max(1);
        shuffled.records.rotate_left((seed as usize) % n);
        if seed % 2 == 0 { shuffled.records.reverse(); }
        let b = evaluate(rs, &shuffled, AS_OF);
        prop_assert_eq!(&a.phase, &b.phase);
        prop_assert_eq!(a.decision_ids(), b.decision_ids());
    }

    #[test]
    fn a_phase_is_placed_exactly_when_the_guideline_applies(facts in patient()) {
        let d = evaluate(rule_set(), &facts, AS_OF);
        prop_assert_eq!(d.applies, d.phase.is_some());
        if d.applies {
            let ids = rule_set().decision_ids();
            prop_assert!(ids.contains(&d.phase.as_deref().unwrap()));
        }
        if !d.red_flags.is_empty() {
            prop_assert_eq!(d.phase.as_deref(), Some("hold-for-evaluation"));
        }
    }

    #[test]
    fn missing_data_never_silences_a_red_flag(facts in patient(), pick in any::<prop::sample::Index>()) {
        let rs = rule_set();
        let d = evaluate(rs, &facts, AS_OF);
        let names: Vec<&str> = rs.doc.facts.keys().map(String::as_str)
            .chain([rs.doc.applicability.elapsed_fact.as_str()]).collect();
        let withheld = names[pick.index(names.len())];
        let without = evaluate_without(rs, &facts, AS_OF, &[withheld]);
        for flag in &d.red_flags {
            let still_fired = without.red_flags.iter().any(|f| f.id == flag.id);
            let shown_unassessed = without.unassessed_red_flags.iter().any(|u| u.id == flag.id);
            prop_assert!(still_fired || shown_unassessed,
                "{} vanished when {} became unknown", flag.id, withheld);
        }
    }
}
