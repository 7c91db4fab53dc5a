//! PlanDefinition/$apply (FHIR R4 operation, with HL7 CPG's `data` parameter): the CarePlan
//! a patient-view hook call would draft for a patient, from the patient data the caller sends
//! in the request or that Stride fetches from the caller's FHIR server (Stride's `fhirServer`
//! and `fhirAccessToken` parameters, as a hook's fallback fetch), decided by the version the
//! PlanDefinition names. Nothing is stored but the call's audit entry, unless `store` asks for
//! the plan to be kept as a draft for clinic review.

use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::Value as Json;
use stride_fhir::careplan::imaging_requests;
use stride_fhir::clinic::ClinicZone;
use stride_fhir::intake::{resource_type, Intake};
use stride_guideline::facts::RecordKind;
use stride_guideline::model::Status;
use stride_guideline::RuleSet;
use stride_hooks::request::is_fhir_id;
use stride_store::{HookRecord, Store, StoreError};
use time::OffsetDateTime;

use crate::decision::{self, Subject};
use crate::discovery;
use crate::hook::{Fetch, HookError, Unfetched};

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
    /// Where the patient's data comes from.
    pub source: Source,
    /// Keep the plan as a draft for clinic review, as a patient-view call does.
    pub store: bool,
}

/// The patient's data: sent, or to be fetched.
#[derive(Debug)]
pub enum Source {
    /// A Bundle of Conditions, Observations (and a Patient, CarePlans).
    Data(Box<RawValue>),
    /// Searched on the caller's FHIR server, the searches a patient-view call's prefetch names.
    Fetch {
        server: String,
        token: Option<String>,
    },
}

/// The outcome: the plan, and whether it is stored (a new draft, or the identical pending
/// draft a previous call stored).
#[derive(Debug)]
pub struct Applied {
    pub careplan: Json,
    pub stored: Option<Stored>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stored {
    New,
    /// An identical draft was waiting for review: it is the answer, and nothing is added.
    Pending,
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
    value_uri: Option<String>,
    value_url: Option<String>,
    value_boolean: Option<bool>,
    value_reference: Option<Reference>,
    #[serde(borrow)]
    resource: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct Reference {
    reference: Option<String>,
}

impl Apply {
    /// Read the operation's Parameters. `subject` (one `Patient/{id}`, as a string or a
    /// reference) is required, and either `data` (a Bundle) or `fhirServer` (an absolute
    /// http(s) URL, with an optional `fhirAccessToken`); `encounter` and `store` (boolean) are
    /// optional; the other R4 parameters (practitioner, organization, user*, setting*) change
    /// nothing Stride drafts and are accepted as sent.
    pub fn parse(body: &str) -> Result<Apply, ApplyError> {
        let invalid = |m: &str| ApplyError::Invalid(m.to_owned());
        // Never serde's message: it quotes the offending value, which may be the patient's
        // name or id, and the message reaches the log and the response.
        let p: Parameters = serde_json::from_str(body).map_err(|e| {
            let what = match e.classify() {
                serde_json::error::Category::Data => "a field is missing or has the wrong type",
                _ => "the JSON cannot be read",
            };
            ApplyError::Invalid(format!(
                "the body is not a Parameters resource: {what} (line {}, column {})",
                e.line(),
                e.column()
            ))
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
            .filter(|id| is_fhir_id(id))
            .ok_or_else(|| invalid("subject: must be Patient/{id} with a FHIR id"))?
            .to_owned();
        let encounter = match named("encounter").next() {
            None => None,
            Some(e) => Some(
                text(e)
                    .and_then(|s| s.strip_prefix("Encounter/").map(str::to_owned))
                    .filter(|id| is_fhir_id(id))
                    .ok_or_else(|| invalid("encounter: must be Encounter/{id} with a FHIR id"))?,
            ),
        };
        let data = named("data").next();
        let server = named("fhirServer").next();
        let source = match (data, server) {
            (Some(_), Some(_)) => return Err(invalid(
                "data and fhirServer: send the patient's data or say where to fetch it, not both",
            )),
            (None, None) => {
                return Err(invalid(
                    "data: required, a Bundle of the patient's Conditions and Observations \
                     (or fhirServer, to fetch them)",
                ))
            }
            (Some(d), None) => {
                let bundle = d
                    .resource
                    .ok_or_else(|| invalid("data: must be a Bundle"))?;
                if resource_type(bundle).as_deref() != Some("Bundle") {
                    return Err(invalid("data: must be a Bundle"));
                }
                Source::Data(bundle.to_owned())
            }
            (None, Some(s)) => {
                let url = s
                    .value_url
                    .clone()
                    .or_else(|| s.value_uri.clone())
                    .or_else(|| s.value_string.clone())
                    .filter(|u| u.starts_with("https://") || u.starts_with("http://"))
                    .ok_or_else(|| invalid("fhirServer: an absolute http(s) URL (valueUrl)"))?;
                // The hook's rule: a base URL, no query, fragment or credentials (plain HTTP
                // on loopback only; the egress policy still decides where a fetch may go).
                stride_hooks::request::server_url(&url, true).map_err(|e| invalid(&e))?;
                let token = named("fhirAccessToken")
                    .next()
                    .map(|t| {
                        t.value_string
                            .clone()
                            .filter(|v| !v.trim().is_empty())
                            .ok_or_else(|| invalid("fhirAccessToken: a valueString"))
                    })
                    .transpose()?;
                Source::Fetch { server: url, token }
            }
        };
        let store = match named("store").next() {
            None => false,
            Some(p) => p
                .value_boolean
                .ok_or_else(|| invalid("store: a valueBoolean"))?,
        };
        Ok(Apply {
            patient,
            encounter,
            source,
            store,
        })
    }
}

/// Decide `input` with `rs` for the actor's clinic (its approved plans count, as on a hook
/// call), draft the CarePlan and record the actor's plan-apply entry with what the decision
/// rests on, with the plan when `input.store` asks for it. Fail closed, as a hook call:
/// nothing is answered that was not recorded.
pub async fn apply(
    store: &dyn Store,
    rs: &RuleSet,
    actor: &crate::actor::Actor,
    zone: &ClinicZone,
    now: OffsetDateTime,
    input: &Apply,
    fetch: &mut impl Fetch,
) -> Result<Applied, ApplyError> {
    let tenant = &actor.caller.tenant;
    let mut audit = actor.entry(stride_store::audit::Action::PlanApply, "success");
    if rs.doc.status == Status::Draft {
        return Err(ApplyError::Draft(rs.doc.version.to_string()));
    }
    // Resources about anyone else are never used.
    let mut intake = Intake::for_patient(&input.patient);
    intake.read_patients = rs.reads(RecordKind::Patient);
    intake.read_gender = rs.reads_patient_codes();
    match &input.source {
        Source::Data(bundle) => intake.add(bundle),
        Source::Fetch { .. } => {
            for (key, template) in discovery::prefetch(&[rs]) {
                let query = discovery::fill(&template, &input.patient);
                let pages = fetch.fetch(key, &query).await.map_err(|e| match e {
                    Unfetched::Busy => HookError::Overloaded,
                    Unfetched::Failed => HookError::Unfetched(format!(
                        "`{key}` could not be fetched from the fhirServer the Parameters name"
                    )),
                })?;
                pages.iter().for_each(|p| intake.add(p));
            }
        }
    }
    let subject = Subject {
        tenant,
        patient: &input.patient,
        zone,
        now,
    };
    // Decided as a patient-view call decides: the approved phase and the clinician's
    // decisions count; an episode is required below.
    let mut decided = decision::decide(store, &subject, rs, None, intake, true).await?;
    let decision = &decided.decision;
    if !decision.applies {
        return Err(ApplyError::NotApplicable(
            "no active episode among the patient's Conditions".into(),
        ));
    }
    decision::record(&mut audit, rs, &subject, &decided)?;
    let internal = |e| ApplyError::Hook(HookError::Internal(Box::new(e)));
    // One pending draft per patient and decision, a unique key in both backends: a call that
    // loses the race to store it (another `$apply`, a hook call) finds the winner's draft on
    // its second pass and answers with it.
    // The imaging the plan requests depends on the decision alone: one set for both passes.
    let imaging = imaging_requests(rs, decision, &input.patient, &mut || {
        uuid::Uuid::new_v4().to_string()
    })
    .map_err(internal)?;
    let encounter = input.encounter.as_deref();
    let mut raced = false;
    loop {
        let draft = decision::draft(
            store,
            &subject,
            rs,
            decision,
            encounter,
            &imaging,
            // Among the plans read with the decision first; read again on a second pass, which
            // looks for the draft that won the race.
            match (input.store, raced) {
                (false, _) => decision::Reuse::Never,
                (true, false) => decision::Reuse::of(decided.plans.as_mut()),
                (true, true) => decision::Reuse::Read,
            },
        )
        .await?;
        let mut audit = audit.clone();
        audit.details["careplan"] = serde_json::json!(draft.id);
        let (id, pending) = (draft.id, draft.pending);
        let row = match (pending, input.store) {
            (false, true) => draft.row(rs, decision, &subject, decided.identity.clone()),
            _ => None,
        };
        // Read before anything is recorded: a stored draft that cannot be read records nothing.
        let careplan = draft.into_resource()?;
        let stored = match (pending, input.store) {
            (true, _) => {
                audit.careplan_id = Some(id);
                audit.details["stored"] = serde_json::json!("pending draft");
                store
                    .append_audit(&audit)
                    .await
                    .map(|_| Some(Stored::Pending))
            }
            (false, true) => {
                audit.careplan_id = Some(id);
                audit.details["stored"] = serde_json::json!("new draft");
                store
                    .record_hook(HookRecord {
                        careplan: row,
                        cards: Vec::new(),
                        audit,
                        answer: None,
                    })
                    .await
                    .map(|_| Some(Stored::New))
            }
            (false, false) => store.append_audit(&audit).await.map(|_| None),
        };
        match stored {
            Err(StoreError::Duplicate(_)) if !raced => raced = true,
            // Lost a second race in a row (the winner's draft gone again, say, approved
            // between the two passes): nothing of this call is stored; sent again, it is
            // answered in full. Not an outage.
            Err(StoreError::Duplicate(_)) => return Err(ApplyError::Hook(HookError::InFlight)),
            stored => {
                let stored = stored.map_err(HookError::store("the $apply record"))?;
                return Ok(Applied { careplan, stored });
            }
        }
    }
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
