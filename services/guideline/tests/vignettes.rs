//! Every rule set under guidelines/ (and the synthetic test guideline of tests/fixtures)
//! loads cleanly and passes its own vignettes.

use std::collections::BTreeSet;
use std::path::PathBuf;

use stride_guideline::model::{Criterion, RuleSetDoc};
use stride_guideline::vignettes;
use stride_guideline::RuleSet;

fn guidelines_dirs() -> [PathBuf; 2] {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    [
        root.join("guidelines"),
        root.join("tests/fixtures/guidelines"),
    ]
}

/// (rule-set path, vignette path) for each version that ships vignettes.
fn rule_sets() -> Vec<(PathBuf, PathBuf)> {
    let mut out = Vec::new();
    for dir in guidelines_dirs()
        .iter()
        .flat_map(|d| std::fs::read_dir(d).unwrap())
    {
        let dir = dir.unwrap().path();
        if !dir.is_dir() {
            continue;
        }
        for f in std::fs::read_dir(&dir).unwrap() {
            let p = f.unwrap().path();
            let name = p.file_name().unwrap().to_string_lossy().to_string();
            if let Some(v) = name.strip_suffix(".yaml") {
                if v.parse::<stride_guideline::RuleSetVersion>().is_ok() {
                    out.push((p.clone(), dir.join(format!("{v}.vignettes.yaml"))));
                }
            }
        }
    }
    assert!(!out.is_empty(), "no rule sets found");
    out
}

#[test]
fn every_rule_set_loads_and_passes_its_vignettes() {
    for (rs_path, v_path) in rule_sets() {
        let rs = RuleSet::from_yaml(&std::fs::read_to_string(&rs_path).unwrap())
            .unwrap_or_else(|e| panic!("{}: {e}", rs_path.display()));
        let file = vignettes::parse(&std::fs::read_to_string(&v_path).unwrap())
            .unwrap_or_else(|e| panic!("{}: {e}", v_path.display()));
        // A clinical guideline needs a real set; the synthetic fixture only its both sides.
        let clinical = !v_path.to_string_lossy().contains("tests/fixtures");
        assert!(
            !clinical || file.vignettes.len() >= 30,
            "{}: at least 30 vignettes",
            v_path.display()
        );
        let mut failed = Vec::new();
        for v in &file.vignettes {
            let mut out = v.run(&rs).unwrap_or_else(|e| panic!("{}: {e}", v.name));
            out.failures.extend(criteria_disagree(&rs, &out.decision));
            if !out.failures.is_empty() {
                failed.push(format!(
                    "{}:\n    {}",
                    out.name,
                    out.failures.join("\n    ")
                ));
            }
        }
        assert!(
            failed.is_empty(),
            "{} vignette(s) failed:\n  {}",
            failed.len(),
            failed.join("\n  ")
        );
    }
}

/// A phase criterion shown twice with two verdicts and nothing to tell them apart: the review
/// page lists each criterion once per side, so two open episodes' criteria must each name
/// their side (a right knee's "met" beside a left knee's "not met" would read as one).
fn criteria_disagree(rs: &RuleSet, d: &stride_guideline::Decision) -> Vec<String> {
    let mut seen = std::collections::BTreeMap::new();
    let mut out = Vec::new();
    for t in &d.trace {
        if !rs.doc.phases.iter().any(|p| p.rule == t.rule) {
            continue;
        }
        let Some(check) = &t.check else { continue };
        let shown = stride_guideline::display::criterion(rs, t, None);
        if t.side.is_some() && !shown.starts_with(stride_guideline::display::side(t.side)) {
            out.push(format!("trace: {shown:?} does not name its side"));
        }
        let key = (t.rule.clone(), check.clone(), t.side);
        match seen.get(&key) {
            Some(v) if *v != t.verdict => out.push(format!(
                "trace: {} {check} ({:?}) is both {v:?} and {:?}",
                t.rule, t.side, t.verdict
            )),
            Some(_) => {}
            None => {
                seen.insert(key, t.verdict);
            }
        }
    }
    out
}

/// `A-01` is the applicability block (INTERPRETATION.md A-01), which has no id in the format.
const APPLICABILITY: &str = "A-01";

fn criterion_ids(c: &Criterion, out: &mut BTreeSet<String>) {
    match c {
        Criterion::All { all: cs } | Criterion::Any { any: cs } => {
            cs.iter().for_each(|c| criterion_ids(c, out))
        }
        Criterion::Not { not } => criterion_ids(not, out),
        Criterion::PhaseIn { .. } => {}
        Criterion::Compare(cmp) => out.extend(cmp.id.clone()),
    }
}

/// Every rule id and check id a rule set defines.
fn known_ids(d: &RuleSetDoc) -> BTreeSet<String> {
    let mut ids: BTreeSet<String> = [APPLICABILITY.to_owned()].into();
    for r in d
        .red_flags
        .iter()
        .chain(&d.warnings)
        .chain(&d.pitfalls)
        .chain(&d.phase_notes)
    {
        ids.insert(r.rule.clone());
        criterion_ids(&r.when, &mut ids);
        for v in &r.variants {
            criterion_ids(&v.when, &mut ids);
        }
    }
    for p in &d.phases {
        ids.insert(p.rule.clone());
        for c in p.exit.iter().chain(&p.beyond_evidence) {
            criterion_ids(c, &mut ids);
        }
    }
    for a in d.phases.iter().flat_map(|p| &p.activities).chain(&d.rehab) {
        ids.insert(a.rule.clone());
        if let Some(c) = &a.only_if {
            criterion_ids(c, &mut ids);
        }
    }
    ids.insert(d.regression.rule.clone());
    criterion_ids(&d.regression.when, &mut ids);
    criterion_ids(&d.regression.resolved, &mut ids);
    if let Some(c) = &d.regression.current {
        criterion_ids(c, &mut ids);
    }
    ids
}

#[test]
fn vignettes_name_real_rules_and_cover_every_decision_rule() {
    for (rs_path, v_path) in rule_sets() {
        let rs = RuleSet::from_yaml(&std::fs::read_to_string(&rs_path).unwrap()).unwrap();
        let file = vignettes::parse(&std::fs::read_to_string(&v_path).unwrap()).unwrap();
        let d = &rs.doc;
        let known = known_ids(d);
        let mut covered = BTreeSet::new();
        let mut problems = Vec::new();
        for v in &file.vignettes {
            if v.covers.is_empty() {
                problems.push(format!("`{}` covers no rule", v.name));
            }
            for id in &v.covers {
                if !known.contains(id) {
                    problems.push(format!("`{}` covers unknown rule id `{id}`", v.name));
                }
                covered.insert(id.clone());
            }
        }
        // Every decision a clinician can see must be exercised at least once.
        let must: Vec<&String> = d
            .red_flags
            .iter()
            .chain(&d.warnings)
            .chain(&d.pitfalls)
            .chain(&d.phase_notes)
            .map(|r| &r.rule)
            .chain(d.phases.iter().map(|p| &p.rule))
            .chain([&d.regression.rule])
            .collect();
        for id in must {
            if !covered.contains(id) {
                problems.push(format!("no vignette covers `{id}`"));
            }
        }
        assert!(
            problems.is_empty(),
            "{}:\n  {}",
            v_path.display(),
            problems.join("\n  ")
        );
    }
}
