//! A recommendation is the rule set's sentence, with no machine suffix: so every dose an
//! activity carries must be written into that sentence, in every rule set, or the clinician
//! reading the plan would never see it.

use stride_guideline::RuleSet;

#[test]
fn every_dose_is_written_into_its_activitys_sentence() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../guidelines");
    let mut checked = 0;
    for guideline in std::fs::read_dir(&dir).unwrap().flatten() {
        for file in std::fs::read_dir(guideline.path()).unwrap().flatten() {
            let name = file.file_name().to_string_lossy().into_owned();
            if !name.ends_with(".yaml") || name.contains("vignettes") || name == "guideline.yaml" {
                continue;
            }
            let rs = RuleSet::from_yaml(&std::fs::read_to_string(file.path()).unwrap()).unwrap();
            let activities = rs
                .doc
                .phases
                .iter()
                .flat_map(|p| &p.activities)
                .chain(&rs.doc.rehab);
            for a in activities {
                let Some(d) = &a.dosing else { continue };
                let params = [
                    &d.run_interval,
                    &d.walk_interval,
                    &d.pace,
                    &d.duration,
                    &d.distance_increase,
                    &d.speed_work_after,
                ];
                for p in params.into_iter().flatten() {
                    let param = &rs.doc.parameters[p];
                    let numbers: Vec<f64> = match (param.range, param.value) {
                        (Some([lo, hi]), _) => vec![lo, hi],
                        (None, Some(v)) => vec![v],
                        _ => continue,
                    };
                    for n in numbers {
                        let n = stride_guideline::display::number(n);
                        assert!(
                            a.text.contains(&n),
                            "{name} {}: parameter {p} ({n}) is not in \"{}\"",
                            a.id,
                            a.text
                        );
                        checked += 1;
                    }
                }
            }
        }
    }
    assert!(checked > 10, "{checked} doses checked");
}
