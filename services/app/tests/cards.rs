//! Which drafted orders answer a red flag's call for imaging (`cards::answers_imaging`), read
//! with the rule set in force: a study of the region, whatever its code says of the region.

use stride_app::cards::answers_imaging;
use stride_fhir::orders::DraftOrder;
use stride_guideline::facts::Code;
use stride_guideline::RuleSet;

fn rule_set() -> RuleSet {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../guidelines/medial-knee-pain-running/1.0.2.yaml"
    );
    RuleSet::from_yaml(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn order(label: &str, sites: Vec<Code>) -> DraftOrder {
    DraftOrder {
        reference: "ServiceRequest/mri".into(),
        label: Some(label.into()),
        imaging: true,
        codes: vec![Code {
            system: "http://www.ama-assn.org/go/cpt".into(),
            code: "73721".into(),
        }],
        sites,
    }
}

#[test]
fn a_lower_limb_joint_study_answers_a_red_flag_only_when_it_is_of_the_region() {
    let rs = rule_set();
    let snomed = |code: &str| Code {
        system: "http://snomed.info/sct".into(),
        code: code.into(),
    };
    // CPT 73721 is "any joint of lower extremity": the words or the body site say which.
    assert!(answers_imaging(&rs, &order("MRI right knee", vec![])));
    assert!(answers_imaging(
        &rs,
        &order("MRI any joint of lower extremity", vec![])
    ));
    assert!(answers_imaging(&rs, &order("MRI", vec![snomed("6757004")])));
    assert!(!answers_imaging(&rs, &order("MRI right ankle", vec![])));
    assert!(!answers_imaging(
        &rs,
        &order("MRI right hip – femoral neck", vec![])
    ));
    // A site coded in a system the region is not written in says nothing.
    let local = Code {
        system: "https://ehr.example.org/sites".into(),
        code: "RKNEE".into(),
    };
    assert!(answers_imaging(&rs, &order("MRI", vec![local])));
    assert!(!answers_imaging(
        &rs,
        &order("MRI", vec![snomed("6685009")])
    ));
    // A laterality qualifier alone names no other region.
    assert!(answers_imaging(
        &rs,
        &order("MRI knee", vec![snomed("24028007")])
    ));
}
