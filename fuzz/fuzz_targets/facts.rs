//! Any JSON text as prefetch data: FHIR parsing and fact extraction report bad resources instead of
//! panicking, and the engine decides on whatever records come out, without panicking either.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use stride_guideline::{evaluate, Facts, RuleSet};

fn rule_set() -> &'static RuleSet {
    static RS: OnceLock<RuleSet> = OnceLock::new();
    RS.get_or_init(|| {
        RuleSet::from_yaml(include_str!(
            "../../guidelines/medial-knee-pain-running/1.0.1.yaml"
        ))
        .expect("the shipped rule set loads")
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(value) = serde_json::from_slice::<&serde_json::value::RawValue>(data) else {
        return;
    };
    let mut intake = stride_fhir::intake::Intake::default();
    intake.add(value);
    for p in &intake.problems {
        assert!(!p.message.is_empty());
    }
    let facts = Facts {
        phase_state: None,
        records: intake.records,
    };
    let as_of = time::macros::date!(2026 - 06 - 01);
    let decision = evaluate(rule_set(), &facts, as_of);
    // Same input, same decision: nothing depends on hashing order or time.
    assert_eq!(decision, evaluate(rule_set(), &facts, as_of));
});
