//! Moving every timestamp to another UTC offset while keeping the clinic's local dates and
//! times never changes a decision: the dates Stride judges are the clinic's, whatever offset
//! its EHR writes them with.

use std::sync::OnceLock;

use proptest::prelude::*;
use serde_json::json;
use stride_fhir::clinic::ClinicZone;
use stride_fhir::intake::Intake;
use stride_guideline::{evaluate, Decision, RuleSet};
use time::{macros::date, Date, Duration, OffsetDateTime, PrimitiveDateTime, Time, UtcOffset};

const LOCAL: &str = "http://stride-cds.org/fhir/CodeSystem/running-knee";
const TODAY: Date = date!(2026 - 12 - 01);

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

/// One record at a local day and minute of the clinic: (code, value, day, minute of day).
type Local = (&'static str, i64, i64, u16);

fn records() -> impl Strategy<Value = Vec<Local>> {
    prop::collection::vec(
        (
            prop::sample::select(vec![
                "pain-walking",
                "pain-rest",
                "pain-night",
                "pain-running",
                "bony-tenderness",
                "running-session",
            ]),
            0i64..=10,
            -40i64..=0,
            0u16..1440,
        ),
        0..40,
    )
}

fn stamp(day: i64, minute: u16, offset: UtcOffset) -> String {
    let local = PrimitiveDateTime::new(
        TODAY + Duration::days(day),
        Time::from_hms(
            u8::try_from(minute / 60).unwrap(),
            u8::try_from(minute % 60).unwrap(),
            0,
        )
        .unwrap(),
    );
    local
        .assume_offset(offset)
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap()
}

/// The patient as an EHR at `offset` writes it, decided at the clinic's 09:30 today.
fn decide(onset: (i64, u16), recs: &[Local], offset: UtcOffset) -> Decision {
    let mut intake = Intake::default();
    let mut entries = vec![json!({"resource": {"resourceType": "Condition", "id": "c",
        "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}]},
        "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "M25.561"}]},
        "subject": {"reference": "Patient/p"}, "onsetDateTime": stamp(onset.0, onset.1, offset)}})];
    for (i, (code, v, day, minute)) in recs.iter().enumerate() {
        let mut o = json!({"resourceType": "Observation", "id": format!("o{i}"), "status": "final",
            "code": {"coding": [{"system": LOCAL, "code": code}]},
            "effectiveDateTime": stamp(*day, *minute, offset)});
        if *code == "bony-tenderness" {
            o["valueBoolean"] = json!(v % 2 == 0);
        } else if *code == "running-session" {
            o["component"] = json!([{"code": {"coding": [{"system": LOCAL, "code": "pain-running"}]}, "valueInteger": v}]);
        } else {
            o["valueInteger"] = json!(v);
        }
        entries.push(json!({"resource": o}));
    }
    let bundle = json!({"resourceType": "Bundle", "type": "searchset", "entry": entries});
    intake.add(&serde_json::value::to_raw_value(&bundle).unwrap());
    let now: OffsetDateTime = PrimitiveDateTime::new(TODAY, Time::from_hms(9, 30, 0).unwrap())
        .assume_offset(offset)
        .to_offset(UtcOffset::UTC);
    let as_of = intake.localise(&ClinicZone::FromRecords, now);
    assert_eq!(as_of, TODAY, "today is the clinic's today");
    evaluate(
        rule_set(),
        &stride_guideline::Facts {
            phase_state: None,
            records: intake.records,
        },
        as_of,
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn the_offset_timestamps_are_written_with_never_changes_a_decision(
        onset in (-40i64..=0, 0u16..1440),
        recs in records(),
        a in -12i32..=14,
        b in -12i32..=14,
    ) {
        let at = |h: i32| UtcOffset::from_hms(i8::try_from(h).unwrap(), 0, 0).unwrap();
        let (da, db) = (decide(onset, &recs, at(a)), decide(onset, &recs, at(b)));
        prop_assert_eq!(da, db);
    }
}
