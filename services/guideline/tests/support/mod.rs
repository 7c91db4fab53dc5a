//! Generated patients for the property tests: records of every kind the guideline reads,
//! with every status, dates around the as-of day, and values of every shape (some unreadable).

use proptest::prelude::*;
use stride_guideline::facts::RecordKind;
use stride_guideline::{Code, Component, Facts, Record, RuleSet, Value};
use time::{macros::date, Date, Duration};

pub const AS_OF: Date = date!(2026 - 06 - 01);
pub const LOCAL: &str = "http://stride-cds.org/fhir/CodeSystem/running-knee";

/// Rule set `version` of the running-knee guideline, as shipped.
#[allow(dead_code)] // not every test file that shares this module loads one
pub fn rule_set(version: &str) -> RuleSet {
    let path = format!(
        "{}/../../guidelines/medial-knee-pain-running/{version}.yaml",
        env!("CARGO_MANIFEST_DIR")
    );
    RuleSet::from_yaml(&std::fs::read_to_string(path).unwrap()).unwrap()
}

pub fn local(code: &str) -> Vec<Code> {
    vec![Code {
        system: LOCAL.into(),
        code: code.into(),
    }]
}

pub fn value() -> impl Strategy<Value = Option<Value>> {
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
        // Yes / no as SNOMED CT answers (an OID can name their system too).
        any::<bool>().prop_map(|b| Some(Value::Coded(vec![Code {
            system: "http://snomed.info/sct".into(),
            code: if b { "373066001" } else { "373067005" }.into(),
        }]))),
        // A bound (`< 5 cm`), a range with either end missing or in its own unit, and a value
        // of a type the engine does not read: what EHRs send beside plain quantities.
        (
            prop::sample::select(vec!["<", "<=", ">", ">=", "ad"]),
            0.0f64..50.0,
            prop::option::of(prop::sample::select(vec!["cm", "mm", "d", "%"])),
        )
            .prop_map(|(c, v, u)| Some(Value::Bound {
                comparator: c.to_owned(),
                value: v,
                unit: u.map(str::to_owned),
            })),
        (end(), end()).prop_map(|(low, high)| Some(Value::Range { low, high })),
        prop::sample::select(vec!["string", "CodeableConcept", "Period"])
            .prop_map(|t| Some(Value::Other(t.to_owned()))),
    ]
}

/// One end of a range: absent, or a quantity with or without its unit.
fn end() -> impl Strategy<Value = Option<(f64, Option<String>)>> {
    prop::option::of((
        0.0f64..80.0,
        prop::option::of(prop::sample::select(vec!["cm", "mm", "m", "d"]).prop_map(str::to_owned)),
    ))
}

pub const CODES: &[&str] = &[
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

pub fn observation() -> impl Strategy<Value = Record> {
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
            at: None,
            text: None,
            end: None,
            sites: Vec::new(),
            start: None,
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

pub fn patient() -> impl Strategy<Value = Facts> {
    (
        prop::option::weighted(
            0.9,
            (prop::option::weighted(0.9, -120i64..3), any::<bool>()),
        ),
        prop::collection::vec(observation(), 0..60),
        any::<bool>(),
        // The systems the codes come in, so that every system an OID can name is exercised:
        // the episode in ICD-10-CM or SNOMED CT, LIPUS as a local, CPT or HCPCS code, pain
        // scores in LOINC.
        prop::sample::select(vec![
            ("http://hl7.org/fhir/sid/icd-10-cm", "M25.561"),
            ("http://snomed.info/sct", "1003722009"),
        ]),
        prop::sample::select(vec![
            (
                "http://stride-cds.org/fhir/CodeSystem/running-knee",
                "lipus",
            ),
            ("http://www.ama-assn.org/go/cpt", "20979"),
            (
                "http://www.cms.gov/Medicare/Coding/HCPCSReleaseCodeSets",
                "E0760",
            ),
        ]),
        prop::collection::vec((-30i64..=0, 0i64..=10), 0..4),
    )
        .prop_map(
            |(episode, mut records, lipus, trigger, lipus_code, scores)| {
                for (n, (day, score)) in scores.into_iter().enumerate() {
                    records.push(Record {
                        at: None,
                        text: None,
                        end: None,
                        sites: Vec::new(),
                        start: None,
                        source: format!("Observation/loinc-{n}"),
                        kind: RecordKind::Observation,
                        codes: vec![Code {
                            system: "http://loinc.org".into(),
                            code: "72514-3".into(),
                        }],
                        status: Some("final".into()),
                        date: Some(AS_OF + Duration::days(day)),
                        value: Some(Value::Integer(score)),
                        components: vec![],
                    });
                }
                if let Some((onset, active)) = episode {
                    records.push(Record {
                        at: None,
                        text: None,
                        end: None,
                        sites: Vec::new(),
                        start: None,
                        source: "Condition/episode".into(),
                        kind: RecordKind::Condition,
                        codes: vec![Code {
                            system: trigger.0.into(),
                            code: trigger.1.into(),
                        }],
                        status: Some(if active { "active" } else { "resolved" }.into()),
                        date: onset.map(|d| AS_OF + Duration::days(d)),
                        value: None,
                        components: vec![],
                    });
                }
                if lipus {
                    records.push(Record {
                        at: None,
                        text: None,
                        end: None,
                        sites: Vec::new(),
                        start: None,
                        source: "ServiceRequest/lipus".into(),
                        kind: RecordKind::Order,
                        codes: vec![Code {
                            system: lipus_code.0.into(),
                            code: lipus_code.1.into(),
                        }],
                        status: Some("draft".into()),
                        date: None,
                        value: None,
                        components: vec![],
                    });
                }
                Facts {
                    phase_state: None,
                    records,
                }
            },
        )
}
