//! Every rule set under guidelines/ loads cleanly and passes its own vignettes.

use std::path::PathBuf;

use stride_guideline::vignettes;
use stride_guideline::RuleSet;

fn guidelines_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../guidelines")
}

/// (rule-set path, vignette path) for each version that ships vignettes.
fn rule_sets() -> Vec<(PathBuf, PathBuf)> {
    let mut out = Vec::new();
    for dir in std::fs::read_dir(guidelines_dir()).unwrap() {
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
        assert!(
            file.vignettes.len() >= 30,
            "{}: at least 30 vignettes",
            v_path.display()
        );
        let mut failed = Vec::new();
        for v in &file.vignettes {
            let out = v.run(&rs).unwrap_or_else(|e| panic!("{}: {e}", v.name));
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
