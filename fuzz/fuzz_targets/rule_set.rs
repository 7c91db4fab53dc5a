//! Any text as a rule-set file: the loader answers a rule set or an error, never panics; a rule
//! set it accepts can decide on no data without panicking.
#![no_main]

use libfuzzer_sys::fuzz_target;
use stride_guideline::{evaluate, Facts, RuleSet};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(rs) = RuleSet::from_yaml(text) {
        let _ = evaluate(&rs, &Facts::default(), time::macros::date!(2026 - 06 - 01));
    }
});
