//! Coded imaging orders: how a rule set names them per red flag, and what the load refuses.
//! Read from the real 1.1.0 file, edited as text for the refusals.

use stride_guideline::{LoadError, RuleSet};

fn v110() -> String {
    std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../guidelines/medial-knee-pain-running/1.1.0.yaml"
    ))
    .unwrap()
}

fn semantic(text: &str) -> Vec<String> {
    match RuleSet::from_yaml(text) {
        Err(LoadError::Semantic(p)) => p,
        other => panic!("expected semantic errors, got {:?}", other.map(|_| ())),
    }
}

#[test]
fn a_red_flag_offers_its_coded_orders_in_the_order_named() {
    let rs = RuleSet::from_yaml(&v110()).unwrap();
    let ids: Vec<&str> = rs
        .imaging_orders("femoral-neck-bone-stress")
        .iter()
        .map(|o| o.id.as_str())
        .collect();
    assert_eq!(ids, ["xr-hip", "mr-hip"]);
    assert_eq!(rs.code("loinc#24762-7").unwrap().system, "http://loinc.org");
    assert!(rs.imaging_orders("dvt-signs").is_empty());
    assert!(rs.imaging_orders("no-such-flag").is_empty());
}

#[test]
fn an_unknown_order_an_unasked_order_and_an_unknown_alias_are_refused() {
    let text = v110().replacen("imaging: [xr-hip, mr-hip]", "imaging: [xr-hip, ct-hip]", 1);
    let p = semantic(&text);
    assert!(
        p.iter()
            .any(|m| m.contains("unknown imaging order `ct-hip`")),
        "{p:?}"
    );
    assert!(
        p.iter()
            .any(|m| m.contains("imaging_orders.mr-hip: no red flag suggests it")),
        "{p:?}"
    );

    let text = v110().replacen("code: loinc#30687-8", "code: lnc#30687-8", 1);
    let p = semantic(&text);
    assert!(
        p.iter()
            .any(|m| m.contains("imaging_orders.mr-hip: unknown code system alias `lnc`")),
        "{p:?}"
    );

    let text = v110().replacen(
        "frog-leg lateral views, for a slipped capital femoral epiphysis.\n    cite: [10]",
        "frog-leg lateral views, for a slipped capital femoral epiphysis.\n    cite: [99]",
        1,
    );
    let p = semantic(&text);
    assert!(
        p.iter()
            .any(|m| m == "imaging_orders.xr-hips-scfe: cites source 99, which is not listed"),
        "{p:?}"
    );
}
