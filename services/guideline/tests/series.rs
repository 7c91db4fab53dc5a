//! `series`: the raw values behind a fact, for charts, read with the engine's own rules.

use stride_guideline::facts::RecordKind;
use stride_guideline::{series, Code, Component, Facts, Record, RuleSet, Value};
use time::macros::date;

const LOCAL: &str = "http://stride-cds.org/fhir/CodeSystem/running-knee";

fn rule_set() -> RuleSet {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../guidelines/medial-knee-pain-running/1.0.0.yaml"
    );
    RuleSet::from_yaml(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn code(c: &str) -> Vec<Code> {
    vec![Code {
        system: LOCAL.into(),
        code: c.into(),
    }]
}

fn obs(
    code_: &str,
    day: time::Date,
    status: &str,
    value: Option<Value>,
    components: Vec<Component>,
) -> Record {
    Record {
        at: None,
        text: None,
        end: None,
        sites: Vec::new(),
        start: None,
        source: format!("Observation/{code_}-{day}"),
        kind: RecordKind::Observation,
        codes: code(code_),
        status: Some(status.into()),
        date: Some(day),
        value,
        components,
    }
}

fn run(day: time::Date, distance: f64, unit: &str) -> Record {
    obs(
        "running-session",
        day,
        "final",
        None,
        vec![Component {
            codes: code("run-distance"),
            value: Some(Value::Quantity {
                value: distance,
                unit: Some(unit.into()),
            }),
        }],
    )
}

#[test]
fn a_series_is_in_the_fact_s_unit_dated_and_without_discarded_records() {
    let rs = rule_set();
    let as_of = date!(2026 - 11 - 20);
    let facts = Facts {
        phase_state: None,
        records: vec![
            run(date!(2026 - 11 - 10), 3000.0, "m"),
            run(date!(2026 - 11 - 02), 2.5, "km"),
            // After the as-of day, and entered in error: neither is drawn.
            run(date!(2026 - 11 - 25), 9.0, "km"),
            {
                let mut r = run(date!(2026 - 11 - 12), 8.0, "km");
                r.status = Some("entered-in-error".into());
                r
            },
            // A distance in a unit that is not a length is left out (resolve reports it).
            run(date!(2026 - 11 - 14), 4.0, "kg"),
            obs(
                "pain-walking",
                date!(2026 - 11 - 11),
                "final",
                Some(Value::Integer(4)),
                vec![],
            ),
        ],
    };
    assert_eq!(
        series(&rs, &facts, "weekly_distance", as_of),
        vec![(date!(2026 - 11 - 02), 2.5), (date!(2026 - 11 - 10), 3.0)],
        "no 7-day window: the whole course, converted to km, oldest first"
    );
    assert_eq!(
        series(&rs, &facts, "current_pain", as_of),
        vec![(date!(2026 - 11 - 11), 4.0)]
    );
    assert!(series(&rs, &facts, "no_such_fact", as_of).is_empty());
}

/// One run logged by a watch and by a phone 20 minutes later (one event, COVERAGE D101) is
/// drawn once; a second run of the day 70 minutes later is drawn.
#[test]
fn a_second_device_s_copy_is_drawn_once() {
    let rs = rule_set();
    let as_of = date!(2026 - 11 - 20);
    let at = |h: u8, m: u8| {
        Some(
            date!(2026 - 11 - 10)
                .with_hms(h, m, 0)
                .unwrap()
                .assume_utc(),
        )
    };
    let mut watch = run(date!(2026 - 11 - 10), 3.0, "km");
    watch.at = at(7, 0);
    let mut phone = run(date!(2026 - 11 - 10), 3000.0, "m");
    phone.source = "Observation/phone".into();
    phone.at = at(7, 20);
    let mut later = run(date!(2026 - 11 - 10), 3.0, "km");
    later.source = "Observation/later".into();
    later.at = at(8, 10);
    let facts = Facts {
        phase_state: None,
        records: vec![phone, watch, later],
    };
    assert_eq!(
        series(&rs, &facts, "weekly_distance", as_of),
        vec![(date!(2026 - 11 - 10), 3.0), (date!(2026 - 11 - 10), 3.0)],
        "the copy once, the run 70 minutes after the first another run"
    );
}
