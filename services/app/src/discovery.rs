//! The CDS services of discovery: each loaded guideline's declared services, each answered by
//! the guideline's version in force.

use serde_json::{json, Value as Json};
use stride_guideline::facts::RecordKind;
use stride_guideline::RuleSet;

use crate::catalog::{Declaration, Service};

pub use stride_hooks::Hook;

/// Prefetch keys, named by resource type as most CDS clients do.
pub const PATIENT: &str = "Patient";
pub const CONDITION: &str = "Condition";
pub const OBSERVATION: &str = "Observation";
pub const CAREPLAN: &str = "CarePlan";

/// Replace the one token Stride's templates use; the patient id is a checked FHIR id.
pub fn fill(template: &str, patient_id: &str) -> String {
    template.replace("{{context.patientId}}", patient_id)
}

/// The prefetch templates: the Patient, the Conditions and Observations the rule sets read
/// (by code, so the EHR sends only what matters; the version in force and any candidate in
/// shadow), and the active CarePlan if any.
pub fn prefetch(sets: &[&RuleSet]) -> Vec<(&'static str, String)> {
    let tokens = |kind| {
        let mut codes: Vec<&stride_guideline::Code> =
            sets.iter().flat_map(|rs| rs.codes_read(kind)).collect();
        codes.sort();
        codes.dedup();
        codes
            .iter()
            .map(|c| format!("{}|{}", c.system, c.code))
            .collect::<Vec<_>>()
            .join(",")
    };
    vec![
        (PATIENT, "Patient/{{context.patientId}}".to_owned()),
        (
            CONDITION,
            format!(
                "Condition?patient={{{{context.patientId}}}}&code={}",
                tokens(RecordKind::Condition)
            ),
        ),
        (
            OBSERVATION,
            format!(
                "Observation?patient={{{{context.patientId}}}}&code={}&_count=1000",
                tokens(RecordKind::Observation)
            ),
        ),
        (
            CAREPLAN,
            "CarePlan?patient={{context.patientId}}&status=active".to_owned(),
        ),
    ]
}

/// Discovery: every service with the rule set that answers it by default (first) and the
/// candidates in shadow, and its guideline's declaration.
pub fn discovery<'a>(
    services: impl Iterator<Item = (&'a Service, Vec<&'a RuleSet>, &'a Declaration)>,
) -> Json {
    let services: Vec<Json> = services
        .map(|(s, sets, d)| {
            let rs = sets[0];
            let prefetch: serde_json::Map<String, Json> = prefetch(&sets)
                .into_iter()
                .map(|(k, v)| (k.to_owned(), Json::String(v)))
                .collect();
            json!({
                "hook": s.hook.name(),
                "id": s.id,
                "title": s.title,
                "description": s.description,
                // The CDS Hooks 3.0 ballot's service `version`: the guideline version that
                // answers by default (a tenant may be pinned to another, see GET /guidelines).
                "version": rs.doc.version.to_string(),
                "prefetch": prefetch,
                // The DSI source attributes of the version that answers by default.
                "extension": {crate::attributes::EXTENSION: crate::attributes::of(rs, &d.source_attributes)},
                "usageRequirements": format!(
                    "Requires a signed JWT from a trusted CDS client. Decides with rule set {} {}. {} \
                     Its own code system: {}.",
                    rs.doc.id, rs.doc.version, d.usage, rs.doc.local_system
                ),
            })
        })
        .collect();
    json!({ "services": services })
}
