//! Rule set 1.1.1's clinical corrections that a vignette's ids alone do not show: which card a
//! finding carries, by what fired it.

use stride_guideline::vignettes::parse;
use stride_guideline::{evaluate, RuleSet};

fn load(version: &str) -> (RuleSet, String) {
    let dir = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../guidelines/medial-knee-pain-running"
    );
    let rs = RuleSet::from_yaml(&std::fs::read_to_string(format!("{dir}/{version}.yaml")).unwrap())
        .unwrap();
    let vignettes = std::fs::read_to_string(format!("{dir}/{version}.vignettes.yaml")).unwrap();
    (rs, vignettes)
}

/// The finding `id` of the vignette whose name starts with `name`.
fn finding(
    rs: &RuleSet,
    vignettes: &str,
    name: &str,
    id: &str,
) -> stride_guideline::decision::Finding {
    let file = parse(vignettes).unwrap();
    let v = file
        .vignettes
        .iter()
        .find(|v| v.name.starts_with(name))
        .unwrap_or_else(|| panic!("no vignette `{name}`"));
    let d = evaluate(rs, &v.facts(rs).unwrap(), v.as_of);
    d.red_flags
        .into_iter()
        .find(|f| f.id == id)
        .unwrap_or_else(|| panic!("`{name}`: no {id}"))
}

#[test]
fn a_dvt_on_record_is_treated_and_signs_of_one_are_scored() {
    let (rs, v) = load("1.1.1");
    let coded = finding(&rs, &v, "a DVT on record", "dvt-signs");
    assert!(coded.summary.contains("treat"), "{}", coded.summary);
    assert!(
        !coded.detail.contains("assess the score"),
        "{}",
        coded.detail
    );
    assert_eq!(coded.severity, stride_guideline::model::Severity::Critical);
    assert_eq!(coded.cite, [12, 23]);
    let signs = finding(&rs, &v, "calf swelling without a DVT", "dvt-signs");
    assert!(signs.summary.contains("Wells"), "{}", signs.summary);
    assert_eq!(signs.severity, stride_guideline::model::Severity::Warning);
}

#[test]
fn a_suspected_femoral_neck_injury_means_no_weight_bearing_until_excluded() {
    let (rs, v) = load("1.1.1");
    let f = finding(
        &rs,
        &v,
        "a positive hop test without",
        "femoral-neck-bone-stress",
    );
    assert!(f.summary.contains("no weight bearing"), "{}", f.summary);
    assert!(f.detail.contains("tension-side"), "{}", f.detail);
    // 1.1.0 said only "stop running and impact".
    let (old, ov) = load("1.1.0");
    let g = finding(
        &old,
        &ov,
        "groin pain with activity recorded",
        "femoral-neck-bone-stress",
    );
    assert!(!g.summary.contains("no weight bearing"), "{}", g.summary);
}
