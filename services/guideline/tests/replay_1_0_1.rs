//! Every 1.0.0 vignette replayed under 1.0.1: the decisions that change are exactly the ones
//! COVERAGE.md lists (section "1.0.0 vignettes under 1.0.1"), each with its reason there.

use std::collections::BTreeMap;
use std::path::PathBuf;

use stride_guideline::{vignettes, Decision, RuleSet};

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../guidelines/medial-knee-pain-running")
}

fn load(v: &str) -> RuleSet {
    RuleSet::from_yaml(&std::fs::read_to_string(dir().join(format!("{v}.yaml"))).unwrap()).unwrap()
}

/// What a clinician sees of a decision: phase, findings, what could not be ruled out.
fn seen(d: &Decision) -> String {
    let ids = |fs: &[stride_guideline::decision::Finding]| {
        fs.iter()
            .map(|f| f.id.as_str())
            .collect::<Vec<_>>()
            .join(",")
    };
    let mut unassessed: Vec<&str> = d
        .unassessed_red_flags
        .iter()
        .map(|u| u.id.as_str())
        .collect();
    unassessed.sort();
    format!(
        "phase {} | red flags [{}] | warnings [{}] | pitfalls [{}] | not ruled out [{}]",
        d.phase.as_deref().unwrap_or("none"),
        ids(&d.red_flags),
        ids(&d.warnings),
        ids(&d.pitfalls),
        unassessed.join(",")
    )
}

#[test]
fn the_1_0_0_vignettes_that_change_under_1_0_1_are_the_ones_coverage_lists() {
    let (old, new) = (load("1.0.0"), load("1.0.1"));
    let file =
        vignettes::parse(&std::fs::read_to_string(dir().join("1.0.0.vignettes.yaml")).unwrap())
            .unwrap();
    let mut changed = BTreeMap::new();
    for v in &file.vignettes {
        let facts = v.facts(&old).unwrap();
        let before = seen(&stride_guideline::evaluate(&old, &facts, v.as_of));
        let after = seen(&stride_guideline::evaluate(&new, &facts, v.as_of));
        if before != after {
            changed.insert(v.name.clone(), format!("{before}\n      → {after}"));
        }
    }
    let coverage = std::fs::read_to_string(dir().join("COVERAGE.md")).unwrap();
    let section = coverage
        .split("## 8. 1.0.0 vignettes under 1.0.1")
        .nth(1)
        .expect("COVERAGE.md has section 8")
        .split("\n## ")
        .next()
        .unwrap();
    // Table rows: | V-number | name | before → after | reason |
    let listed: Vec<String> = section
        .lines()
        .filter(|l| l.starts_with("| V"))
        .filter_map(|l| l.split('|').nth(2).map(|n| n.trim().to_owned()))
        .collect();
    let missing: Vec<String> = changed
        .iter()
        .filter(|(n, _)| !listed.contains(n))
        .map(|(n, d)| format!("{n}\n      {d}"))
        .collect();
    let unchanged: Vec<&String> = listed
        .iter()
        .filter(|n| !changed.contains_key(*n))
        .collect();
    assert!(
        missing.is_empty() && unchanged.is_empty(),
        "changed but not listed in COVERAGE.md:\n  {}\nlisted but unchanged:\n  {unchanged:?}",
        missing.join("\n  ")
    );
}
