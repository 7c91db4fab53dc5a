//! `evaluate` on a realistic patient: a pain episode, 60 Observations (daily walking pain,
//! running sessions with components, exams, tests), as a hook call would bring them.

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use stride_guideline::facts::RecordKind;
use stride_guideline::{evaluate, Code, Component, Facts, Record, RuleSet, Value};
use time::{macros::date, Date, Duration};

const AS_OF: Date = date!(2026 - 06 - 01);
const LOCAL: &str = "http://stride-cds.org/fhir/CodeSystem/running-knee";

fn obs(n: usize, code: &str, day: i64, value: Option<Value>, components: Vec<Component>) -> Record {
    // A time of day, as a hook's records have (each of a day's records more than an hour from
    // the others, so none is taken for another's copy: D101).
    let at = (AS_OF + Duration::days(day)).midnight().assume_utc()
        + Duration::minutes(5 * 60 + 70 * (n % 14) as i64);
    Record {
        at: Some(at),
        text: None,
        end: None,
        sites: Vec::new(),
        start: None,
        source: format!("Observation/{n}"),
        kind: RecordKind::Observation,
        codes: vec![Code {
            system: LOCAL.into(),
            code: code.into(),
        }],
        status: Some("final".into()),
        date: Some(AS_OF + Duration::days(day)),
        value,
        components,
    }
}

fn comp(code: &str, value: Value) -> Component {
    Component {
        codes: vec![Code {
            system: LOCAL.into(),
            code: code.into(),
        }],
        value: Some(value),
    }
}

pub fn patient() -> Facts {
    let mut r = vec![Record {
        at: None,
        text: None,
        end: None,
        sites: Vec::new(),
        start: None,
        source: "Condition/1".into(),
        kind: RecordKind::Condition,
        codes: vec![Code {
            system: "http://hl7.org/fhir/sid/icd-10-cm".into(),
            code: "M25.561".into(),
        }],
        status: Some("active".into()),
        date: Some(AS_OF - Duration::days(40)),
        value: None,
        components: vec![],
    }];
    let mut n = 0;
    let mut next = || {
        n += 1;
        n
    };
    for d in -35..=-1 {
        r.push(obs(
            next(),
            "pain-walking",
            d,
            Some(Value::Integer(if d < -25 { 2 } else { 0 })),
            vec![],
        ));
    }
    for d in (-13..=-1).step_by(2) {
        let components = vec![
            comp(
                "run-distance",
                Value::Quantity {
                    value: 2.0 + (d as f64 + 13.0) * 0.1,
                    unit: Some("km".into()),
                },
            ),
            comp("pain-running", Value::Integer(0)),
            comp("speed-work", Value::Boolean(false)),
            comp(
                "run-pace-percent",
                Value::Quantity {
                    value: 45.0,
                    unit: Some("%".into()),
                },
            ),
        ];
        r.push(obs(next(), "running-session", d, None, components));
    }
    // Knee radiographs after the tenderness of day -20 (day 20 of the episode): 1.0.2 keeps a
    // red flag that asks for imaging until imaging is recorded, so it looks back and finds it.
    r.push(Record {
        at: None,
        text: None,
        end: None,
        sites: Vec::new(),
        start: None,
        source: "DiagnosticReport/xr".into(),
        kind: RecordKind::Report,
        codes: vec![Code {
            system: "http://loinc.org".into(),
            code: "28565-0".into(),
        }],
        status: Some("final".into()),
        date: Some(AS_OF - Duration::days(18)),
        value: None,
        components: vec![],
    });
    for d in [-30, -20, -10, -3] {
        r.push(obs(
            next(),
            "bony-tenderness",
            d,
            Some(Value::Boolean(d < -15)),
            vec![],
        ));
        r.push(obs(
            next(),
            "pain-rest",
            d,
            Some(Value::Boolean(false)),
            vec![],
        ));
        r.push(obs(
            next(),
            "pain-night",
            d,
            Some(Value::Integer(0)),
            vec![],
        ));
    }
    r.push(obs(
        next(),
        "limb-symmetry-index",
        -5,
        Some(Value::Quantity {
            value: 82.0,
            unit: Some("%".into()),
        }),
        vec![],
    ));
    r.push(obs(
        next(),
        "pain-free-walking-minutes",
        -6,
        Some(Value::Quantity {
            value: 0.75,
            unit: Some("h".into()),
        }),
        vec![],
    ));
    r.push(obs(
        next(),
        "preinjury-weekly-distance",
        -60,
        Some(Value::Quantity {
            value: 30.0,
            unit: Some("km".into()),
        }),
        vec![],
    ));
    r.push(obs(
        next(),
        "tenderness-extent",
        -30,
        Some(Value::Quantity {
            value: 80.0,
            unit: Some("mm".into()),
        }),
        vec![],
    ));
    r.push(obs(
        next(),
        "heel-strike-gait",
        -30,
        Some(Value::Boolean(true)),
        vec![],
    ));
    Facts {
        phase_state: None,
        records: r,
    }
}

fn bench(c: &mut Criterion) {
    let facts = patient();
    assert!(facts.records.len() >= 60, "{} records", facts.records.len());
    // 1.0.0 keeps its benchmark name, so figures compare across commits; 1.0.1 (data-quality
    // rules on, value sets) and 1.1.0 (beyond the source) run beside it on the same patient.
    for (version, name, load) in [
        (
            "1.0.0",
            "evaluate/60-observations",
            "rule-set/load-and-check",
        ),
        (
            "1.0.1",
            "evaluate-1.0.1/60-observations",
            "rule-set-1.0.1/load-and-check",
        ),
        // 1.0.2: the episode model, sticky imaging red flags (earlier days decided again).
        (
            "1.0.2",
            "evaluate-1.0.2/60-observations",
            "rule-set-1.0.2/load-and-check",
        ),
        // The draft evaluated in shadow beside the version in force: its cost per call.
        (
            "1.1.0",
            "evaluate-1.1.0/60-observations",
            "rule-set-1.1.0/load-and-check",
        ),
    ] {
        let path = format!(
            "{}/../../guidelines/medial-knee-pain-running/{version}.yaml",
            env!("CARGO_MANIFEST_DIR")
        );
        let text = std::fs::read_to_string(path).unwrap();
        let rs = RuleSet::from_yaml(&text).unwrap();
        let d = evaluate(&rs, &facts, AS_OF);
        assert_eq!(
            d.phase.as_deref(),
            Some("progressive-loading"),
            "{version}: {d:#?}"
        );
        c.bench_function(name, |b| {
            b.iter(|| evaluate(black_box(&rs), black_box(&facts), AS_OF))
        });
        c.bench_function(load, |b| {
            b.iter(|| RuleSet::from_yaml(black_box(&text)).unwrap())
        });
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
