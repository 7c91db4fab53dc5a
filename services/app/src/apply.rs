//! PlanDefinition/$apply (FHIR R4 operation, with HL7 CPG's `data` parameter): the CarePlan
//! a patient-view hook call would draft for a patient, from the patient data the caller sends
//! in the request, decided by the version the PlanDefinition names. Nothing is stored but the
//! call's audit entry.

use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::Value as Json;
use stride_fhir::careplan::{careplan, PlanContext};
use stride_fhir::clinic::ClinicZone;
use stride_fhir::intake::{resource_type, Intake};
use stride_guideline::facts::RecordKind;
use stride_guideline::model::Status;
use stride_guideline::{evaluate, Facts, RuleSet};
use stride_store::{NewAuditEntry, Store};
use time::OffsetDateTime;

use crate::hook::{approved_phase, record_decision, HookError};

/// Why $apply drafted nothing.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// The Parameters break the operation's definition: which and how.
    #[error("{0}")]
    Invalid(String),
    /// A draft version decides in shadow only; it drafts no plans.
    #[error("PlanDefinition version {0} is a draft: it drafts no plans until it is active")]
    Draft(String),
    /// The guideline does not apply to the data sent (no episode): no CarePlan to draft.
    #[error("the guideline does not apply to this patient's data: {0}")]
    NotApplicable(String),
    #[error(transparent)]
    Hook(#[from] HookError),
}

/// The operation's input, read from a FHIR `Parameters` resource.
#[derive(Debug)]
pub struct Apply {
    /// The FHIR id of the one Patient the plan is for.
    pub patient: String,
    pub encounter: Option<String>,
    /// The patient's data: a Bundle of Conditions, Observations (and a Patient, CarePlans).
    pub data: Box<RawValue>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Parameters<'a> {
    resource_type: String,
    #[serde(default, borrow)]
    parameter: Vec<Parameter<'a>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Parameter<'a> {
    name: String,
    value_string: Option<String>,
    value_reference: Option<Reference>,
    #[serde(borrow)]
    resource: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct Reference {
    reference: Option<String>,
}

/// A FHIR id (R4: 1 to 64 of `A-Z a-z 0-9 - .`).
fn fhir_id(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
}

impl Apply {
    /// Read the operation's Parameters. `subject` (one `Patient/{id}`, as a string or a
    /// reference) and `data` (a Bundle) are required; `encounter` is optional; the other R4
    /// parameters (practitioner, organization, user*, setting*) change nothing Stride drafts
    /// and are accepted as sent.
    pub fn parse(body: &str) -> Result<Apply, ApplyError> {
        let invalid = |m: &str| ApplyError::Invalid(m.to_owned());
        let p: Parameters = serde_json::from_str(body).map_err(|e| {
            ApplyError::Invalid(format!("the body is not a Parameters resource: {e}"))
        })?;
        if p.resource_type != "Parameters" {
            return Err(invalid("resourceType: must be Parameters"));
        }
        let named = |n: &'static str| p.parameter.iter().filter(move |x| x.name == n);
        let text = |x: &Parameter| {
            x.value_string
                .clone()
                .or_else(|| x.value_reference.as_ref().and_then(|r| r.reference.clone()))
        };
        let subjects: Vec<&Parameter> = named("subject").collect();
        let subject = match subjects.as_slice() {
            [one] => {
                text(one).ok_or_else(|| invalid("subject: a valueString or valueReference"))?
            }
            [] => return Err(invalid("subject: required (Patient/{id})")),
            _ => return Err(invalid("subject: one patient per call")),
        };
        let patient = subject
            .strip_prefix("Patient/")
            .filter(|id| fhir_id(id))
            .ok_or_else(|| invalid("subject: must be Patient/{id} with a FHIR id"))?
            .to_owned();
        let encounter = match named("encounter").next() {
            None => None,
            Some(e) => Some(
                text(e)
                    .and_then(|s| s.strip_prefix("Encounter/").map(str::to_owned))
                    .filter(|id| fhir_id(id))
                    .ok_or_else(|| invalid("encounter: must be Encounter/{id} with a FHIR id"))?,
            ),
        };
        let data = named("data")
            .next()
            .and_then(|d| d.resource)
            .ok_or_else(|| {
                invalid("data: required, a Bundle of the patient's Conditions and Observations")
            })?;
        if resource_type(data).as_deref() != Some("Bundle") {
            return Err(invalid("data: must be a Bundle"));
        }
        Ok(Apply {
            patient,
            encounter,
            data: data.to_owned(),
        })
    }
}

/// Decide `input` with `rs` for `tenant` (its approved plans count, as on a hook call), draft
/// the CarePlan and record `audit` (a plan-apply entry by the caller) with what the decision
/// rests on. Fail closed, as a hook call: nothing is answered that was not recorded.
pub async fn apply(
    store: &dyn Store,
    rs: &RuleSet,
    tenant: &str,
    zone: &ClinicZone,
    now: OffsetDateTime,
    input: &Apply,
    mut audit: NewAuditEntry,
) -> Result<Json, ApplyError> {
    if rs.doc.status == Status::Draft {
        return Err(ApplyError::Draft(rs.doc.version.to_string()));
    }
    let mut intake = Intake::default();
    intake.read_patients = rs.reads(RecordKind::Patient);
    intake.add(&input.data);
    let as_of = intake.localise(zone, now);
    let patient_ref = format!("Patient/{}", input.patient);
    let phase_state = approved_phase(store, rs, tenant, &patient_ref, zone, &intake).await?;
    let facts = Facts {
        phase_state,
        records: intake.records,
    };
    let decision = evaluate(rs, &facts, as_of);
    if !decision.applies {
        return Err(ApplyError::NotApplicable(
            "no active episode among the Conditions sent".into(),
        ));
    }
    let plan_id = uuid::Uuid::new_v4().to_string();
    let ctx = PlanContext {
        id: &plan_id,
        patient: &input.patient,
        encounter: input.encounter.as_deref(),
        author: None,
        now,
    };
    let careplan = careplan(rs, &decision, &ctx)
        .map_err(|e| ApplyError::Hook(HookError::Internal(Box::new(e))))?;
    let ids = decision
        .decision_ids()
        .iter()
        .map(|d| d.to_string())
        .collect();
    record_decision(&mut audit, rs, patient_ref, &facts, as_of, ids)?;
    audit.details["careplan"] = serde_json::json!(plan_id);
    store.append_audit(&audit).await.map_err(|e| {
        tracing::error!(error = %e, "$apply audit entry not written: answering 503");
        HookError::Unavailable("the call's audit entry")
    })?;
    Ok(careplan)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(v: Json) -> Result<Apply, ApplyError> {
        Apply::parse(&v.to_string())
    }

    fn params(parameter: Json) -> Json {
        json!({"resourceType": "Parameters", "parameter": parameter})
    }

    #[test]
    fn subject_and_data_are_read_as_a_string_or_a_reference() {
        let data = json!({"resourceType": "Bundle", "type": "collection"});
        let a = parse(params(json!([
            {"name": "subject", "valueString": "Patient/p-1"},
            {"name": "encounter", "valueReference": {"reference": "Encounter/e.2"}},
            {"name": "practitioner", "valueString": "Practitioner/x"},
            {"name": "data", "resource": data}
        ])))
        .unwrap();
        assert_eq!(a.patient, "p-1");
        assert_eq!(a.encounter.as_deref(), Some("e.2"));
        let a = parse(params(json!([
            {"name": "subject", "valueReference": {"reference": "Patient/p2"}},
            {"name": "data", "resource": data}
        ])))
        .unwrap();
        assert_eq!(a.patient, "p2");
    }

    #[test]
    fn what_the_operation_cannot_decide_on_is_refused_by_name() {
        let data = json!({"resourceType": "Bundle"});
        for (body, says) in [
            (json!({"resourceType": "Bundle"}), "resourceType"),
            (
                params(json!([{"name": "data", "resource": data}])),
                "subject: required",
            ),
            (
                params(
                    json!([{"name": "subject", "valueString": "Patient/a"}, {"name": "subject", "valueString": "Patient/b"}, {"name": "data", "resource": data}]),
                ),
                "one patient",
            ),
            (
                params(
                    json!([{"name": "subject", "valueString": "Group/g"}, {"name": "data", "resource": data}]),
                ),
                "Patient/{id}",
            ),
            (
                params(
                    json!([{"name": "subject", "valueString": "Patient/a b"}, {"name": "data", "resource": data}]),
                ),
                "FHIR id",
            ),
            (
                params(json!([{"name": "subject", "valueString": "Patient/a"}])),
                "data: required",
            ),
            (
                params(
                    json!([{"name": "subject", "valueString": "Patient/a"}, {"name": "data", "resource": {"resourceType": "Patient"}}]),
                ),
                "data: must be a Bundle",
            ),
            (
                params(
                    json!([{"name": "subject", "valueString": "Patient/a"}, {"name": "encounter", "valueString": "e1"}, {"name": "data", "resource": data}]),
                ),
                "encounter",
            ),
        ] {
            match parse(body.clone()) {
                Err(ApplyError::Invalid(m)) => assert!(m.contains(says), "{body}: {m}"),
                other => panic!("{body}: {:?}", other.map(|a| a.patient)),
            }
        }
    }
}
