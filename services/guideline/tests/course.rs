//! The course (`course::phases`) agrees with `evaluate` day by day, over every vignette of
//! every rule set: each run's phase is the decision on its first day and on its last, runs
//! are in order with no two alike side by side, and the last run is the decision on the day
//! the vignette is decided.

use std::path::Path;

use stride_guideline::vignettes::parse;
use stride_guideline::{course, evaluate, RuleSet};
use time::Duration;

#[test]
fn each_run_of_the_course_is_the_decision_of_its_days() {
    let dir =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../guidelines/medial-knee-pain-running");
    let mut checked = 0;
    for version in ["1.0.1", "1.0.2", "1.1.1"] {
        let rs = RuleSet::from_yaml(
            &std::fs::read_to_string(dir.join(format!("{version}.yaml"))).unwrap(),
        )
        .unwrap();
        let text = std::fs::read_to_string(dir.join(format!("{version}.vignettes.yaml"))).unwrap();
        for v in parse(&text).unwrap().vignettes {
            let facts = v.facts(&rs).unwrap();
            let from = v.as_of - Duration::days(30);
            let runs = course::phases(&rs, &facts, from, v.as_of);
            let phase_on = |day| {
                let d = evaluate(&rs, &facts, day);
                d.applies.then_some(d.phase).flatten()
            };
            assert_eq!(runs.first().map(|r| r.0), Some(from), "{}", v.name);
            for (i, (start, phase)) in runs.iter().enumerate() {
                let end = runs.get(i + 1).map_or(v.as_of, |n| n.0 - Duration::days(1));
                assert!(*start <= end, "{}: runs in order", v.name);
                assert_eq!(&phase_on(*start), phase, "{}: first day of a run", v.name);
                assert_eq!(&phase_on(end), phase, "{}: last day of a run", v.name);
                if i > 0 {
                    assert_ne!(
                        &runs[i - 1].1,
                        phase,
                        "{}: two runs alike side by side",
                        v.name
                    );
                }
                checked += 1;
            }
        }
    }
    assert!(checked > 300, "{checked}");
}
