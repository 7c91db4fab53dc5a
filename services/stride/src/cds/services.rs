//! The CDS services of discovery: one per hook, all backed by the current running-knee rule set.

use serde_json::{json, Value as Json};
use stride_guideline::facts::RecordKind;
use stride_guideline::RuleSet;

/// The guideline every service evaluates (the newest active version of it).
pub const GUIDELINE: &str = "medial-knee-pain-running";

pub use stride_hooks::Hook;

pub struct ServiceDef {
    pub id: &'static str,
    pub hook: Hook,
    pub title: &'static str,
    pub description: &'static str,
}

pub const SERVICES: &[ServiceDef] = &[
    ServiceDef {
        id: "running-knee-patient-view",
        hook: Hook::PatientView,
        title: "Return to running after sudden medial knee/thigh pain",
        description: "Places a runner with sudden medial thigh/knee pain in the return-to-running protocol \
                      (rest, walk-run, progressive loading), shows red flags that need imaging and pitfalls, \
                      and drafts a CarePlan for clinic review.",
    },
    ServiceDef {
        id: "running-knee-order-select",
        hook: Hook::OrderSelect,
        title: "Running-knee guideline: check selected orders",
        description: "Checks orders being selected against the running-knee guideline: low-intensity pulsed \
                      ultrasound is not recommended; imaging is what a red flag asks for.",
    },
    ServiceDef {
        id: "running-knee-order-sign",
        hook: Hook::OrderSign,
        title: "Running-knee guideline: check orders before signing",
        description: "Checks orders about to be signed against the running-knee guideline: low-intensity pulsed \
                      ultrasound is not recommended; imaging is what a red flag asks for.",
    },
];

pub fn find(id: &str) -> Option<&'static ServiceDef> {
    SERVICES.iter().find(|s| s.id == id)
}

/// Prefetch keys, named by resource type as most CDS clients do.
pub const PATIENT: &str = "Patient";
pub const CONDITION: &str = "Condition";
pub const OBSERVATION: &str = "Observation";
pub const CAREPLAN: &str = "CarePlan";

/// The prefetch templates: the Patient, the Conditions and Observations the rule set reads
/// (by code, so the EHR sends only what matters), and the active CarePlan if any.
pub fn prefetch(rs: &RuleSet) -> Vec<(&'static str, String)> {
    let tokens = |kind| {
        rs.codes_read(kind)
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

pub fn discovery(rs: &RuleSet) -> Json {
    let prefetch: serde_json::Map<String, Json> = prefetch(rs)
        .into_iter()
        .map(|(k, v)| (k.to_owned(), Json::String(v)))
        .collect();
    let services: Vec<Json> = SERVICES
        .iter()
        .map(|s| {
            json!({
                "hook": s.hook.name(),
                "id": s.id,
                "title": s.title,
                "description": s.description,
                // The CDS Hooks 3.0 ballot's service `version`: the guideline version that
                // answers by default (a tenant may be pinned to another, see GET /guidelines).
                "version": rs.doc.version.to_string(),
                "prefetch": prefetch,
                "usageRequirements": format!(
                    "Requires a signed JWT from a trusted CDS client. Decides with rule set {} {}: an active \
                     Condition with onset date (knee, thigh or lower-leg pain, MCL sprain, tibial stress fracture, \
                     anterior muscle strain) activates it; Observations use LOINC 72514-3 and the codes of {}.",
                    rs.doc.id, rs.doc.version, rs.doc.local_system
                ),
            })
        })
        .collect();
    json!({ "services": services })
}
