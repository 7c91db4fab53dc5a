//! Decision → the draft FHIR R4 CarePlan (and the imaging ServiceRequest a red flag suggests).
//! Built as JSON, then read back through the fhir-sdk model so that what leaves Stride is a
//! resource the R4 model accepts.
//!
//! The plan has the HL7 CPG-on-FHIR shape (what `PlanDefinition/$apply` returns in R4): it
//! `instantiatesCanonical` the rule-set version, and its one activity references a contained
//! RequestGroup (CPG Strategy) whose actions are the recommendations, each a contained
//! proposal (`intent=proposal`) with its reason (the phase, the episode, a rationale) and the
//! evidence it rests on (the guideline's sources on its action; the records behind the
//! decision on the plan).

use fhir_sdk::r4b::resources::{CarePlan, ServiceRequest};
use serde::de::DeserializeOwned;
use serde_json::{json, Value as Json};
use stride_guideline::decision::{
    Decision, PlannedActivity, HOLD_FOR_EVALUATION, INSUFFICIENT_DATA,
};
use stride_guideline::model::{Criterion, Frequency};
use stride_guideline::RuleSet;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

pub const UCUM: &str = "http://unitsofmeasure.org";
const SNOMED: &str = "http://snomed.info/sct";
/// SNOMED CT 363679005 |Imaging (procedure)|: an imaging order's category, and the code of
/// one whose modality the guideline leaves open.
const IMAGING: &str = "363679005";
const CPG_CAREPLAN: &str = "http://hl7.org/fhir/uv/cpg/StructureDefinition/cpg-careplan";
const CPG_STRATEGY: &str = "http://hl7.org/fhir/uv/cpg/StructureDefinition/cpg-strategy";
const CPG_SERVICE_REQUEST: &str =
    "http://hl7.org/fhir/uv/cpg/StructureDefinition/cpg-servicerequest";
const CPG_RATIONALE: &str = "http://hl7.org/fhir/uv/cpg/StructureDefinition/cpg-rationale";
/// The contained RequestGroup's id.
const RECOMMENDATIONS: &str = "recommendations";

#[derive(Debug, thiserror::Error)]
#[error("rendered {0} is not a valid FHIR R4 resource: {1}")]
pub struct RenderError(&'static str, String);

/// Everything about the call that the CarePlan names.
pub struct PlanContext<'a> {
    pub id: &'a str,
    pub patient: &'a str,
    pub encounter: Option<&'a str>,
    pub author: Option<&'a str>,
    pub now: OffsetDateTime,
}

/// The draft CarePlan of decision `d`; `imaging` (from [`imaging_requests`]) become its
/// imaging proposals, of which at most one is meant to be ordered.
pub fn careplan(
    rs: &RuleSet,
    d: &Decision,
    ctx: &PlanContext<'_>,
    imaging: &[ImagingSuggestion],
) -> Result<Json, RenderError> {
    let doc = &rs.doc;
    let phase_id = d.phase.as_deref().unwrap_or(INSUFFICIENT_DATA);
    let phase = doc.phases.iter().find(|p| p.id == phase_id);
    let (title, summary) = match (phase, phase_id) {
        (Some(p), _) => (p.title.clone(), p.card.summary.clone()),
        (None, HOLD_FOR_EVALUATION) => {
            let hold = doc
                .hold
                .as_ref()
                .map(|h| h.summary.clone())
                .unwrap_or_else(|| "Hold for evaluation".into());
            ("Progression on hold for evaluation".to_owned(), hold)
        }
        _ => (
            "Phase cannot be placed: data missing".to_owned(),
            doc.insufficient_data.summary.clone(),
        ),
    };

    let goals = goals(rs, phase.and_then(|p| p.exit.as_ref()), ctx.patient);
    let mut supporting: Vec<String> = d
        .trace
        .iter()
        .flat_map(|t| t.sources.iter().cloned())
        .collect();
    supporting.sort();
    supporting.dedup();
    let created = ctx.now.format(&Rfc3339).unwrap_or_default();
    let refs = |rs: &[String]| {
        rs.iter()
            .map(|r| json!({"reference": r}))
            .collect::<Vec<_>>()
    };
    let proposal = Proposal {
        rs,
        patient: ctx.patient,
        encounter: ctx.encounter,
        created: &created,
        reason: json!([{"coding": [{"system": doc.decision_system, "code": phase_id, "display": title}]}]),
        episode: refs(&d.episode),
        evidence: refs(&supporting),
    };
    let mut contained = goals.clone();
    let mut actions = Vec::new();
    for (n, a) in d.activities.iter().chain(&d.rehab).enumerate() {
        let id = format!("activity-{}", n + 1);
        contained.push(proposal.activity(a, &id, &title));
        let mut action = json!({
            "title": a.text,
            "description": describe(a),
            "resource": {"reference": format!("#{id}")},
        });
        let cited = citations(rs, &a.cite);
        if !cited.is_empty() {
            action["documentation"] = Json::Array(cited);
        }
        actions.push(action);
    }
    if !imaging.is_empty() {
        let mut options = Vec::new();
        for (n, sug) in imaging.iter().enumerate() {
            let id = format!("imaging-{}", n + 1);
            let mut sr = sug.resource.clone();
            sr["id"] = json!(id);
            sr["meta"] = json!({"profile": [CPG_SERVICE_REQUEST]});
            if let Some(e) = ctx.encounter {
                sr["encounter"] = json!({"reference": format!("Encounter/{e}")});
            }
            options.push(json!({"title": sug.label, "resource": {"reference": format!("#{id}")}}));
            contained.push(sr);
        }
        actions.push(json!({
            "title": "Imaging for the red flags",
            "description": "Order at most one of these: the red flags call for imaging before any progression.",
            "selectionBehavior": "at-most-one",
            "action": options,
        }));
    }
    let has_group = !actions.is_empty();
    if has_group {
        let mut group = json!({
            "resourceType": "RequestGroup",
            "id": RECOMMENDATIONS,
            "meta": {"profile": [CPG_STRATEGY]},
            "instantiatesCanonical": [rs.canonical()],
            "status": "draft",
            "intent": "proposal",
            "subject": {"reference": format!("Patient/{}", ctx.patient)},
            "authoredOn": created,
            "reasonCode": proposal.reason,
            "action": actions,
        });
        if !proposal.episode.is_empty() {
            group["reasonReference"] = Json::Array(proposal.episode.clone());
        }
        if let Some(e) = ctx.encounter {
            group["encounter"] = json!({"reference": format!("Encounter/{e}")});
        }
        contained.push(group);
    }

    let mut plan = json!({
        "resourceType": "CarePlan",
        "id": ctx.id,
        "meta": {"profile": [CPG_CAREPLAN]},
        "status": "draft",
        "intent": "proposal",
        "instantiatesCanonical": [rs.canonical()],
        "category": [{"coding": [{"system": doc.decision_system, "code": phase_id, "display": title}]}],
        "title": format!("{} — {}", doc.title, title),
        "description": summary,
        "subject": {"reference": format!("Patient/{}", ctx.patient)},
        "period": {"start": d.as_of.to_string()},
        "created": created,
        "note": [{"text": rationale(rs, d, &title)}],
    });
    let obj = plan.as_object_mut().expect("a JSON object");
    if let Some(e) = ctx.encounter {
        obj.insert(
            "encounter".into(),
            json!({"reference": format!("Encounter/{e}")}),
        );
    }
    if let Some(a) = ctx.author {
        obj.insert("author".into(), json!({"reference": a}));
    }
    if !proposal.episode.is_empty() {
        obj.insert("addresses".into(), Json::Array(proposal.episode.clone()));
    }
    if !proposal.evidence.is_empty() {
        obj.insert(
            "supportingInfo".into(),
            Json::Array(proposal.evidence.clone()),
        );
    }
    if !goals.is_empty() {
        obj.insert(
            "goal".into(),
            goals
                .iter()
                .map(|g| json!({"reference": format!("#{}", g["id"].as_str().unwrap_or(""))}))
                .collect(),
        );
    }
    if !contained.is_empty() {
        obj.insert("contained".into(), Json::Array(contained));
    }
    if has_group {
        obj.insert(
            "activity".into(),
            json!([{"reference": {"reference": format!("#{RECOMMENDATIONS}")}}]),
        );
    }
    check::<CarePlan>("CarePlan", &plan)?;
    Ok(plan)
}

/// An imaging order to suggest: the suggestion's label and the ServiceRequest it creates.
#[derive(Debug, Clone, PartialEq)]
pub struct ImagingSuggestion {
    pub label: String,
    pub resource: Json,
}

/// The imaging orders the red flags that fired suggest: each coded order they name (the rule
/// set's `imaging_orders`), once, for every flag that asks for it; and, for flags that name
/// none (the source names no modality), one order that says what it is for and leaves the
/// modality to the clinician. `ids` gives each ServiceRequest its id.
pub fn imaging_requests(
    rs: &RuleSet,
    d: &Decision,
    patient: &str,
    // `dyn`, not generic: a generic function is compiled again in each crate that calls it, and
    // its ServiceRequest check links every FHIR resource's deserialiser (a resource's
    // `contained` holds any resource). Generic, it put a second copy of them, 22 MB of code,
    // in the web crate, and most of that crate's release build time (docs/benchmarks.md).
    ids: &mut dyn FnMut() -> String,
) -> Result<Vec<ImagingSuggestion>, RenderError> {
    let asking: Vec<_> = d.red_flags.iter().filter(|f| f.suggest_imaging).collect();
    // Each coded order, with the flags that ask for it, in the order first asked.
    let mut coded: Vec<(&stride_guideline::model::ImagingOrder, Vec<String>)> = Vec::new();
    let mut uncoded = Vec::new();
    for f in &asking {
        let orders = rs.imaging_orders(&f.id);
        if orders.is_empty() {
            uncoded.push(f.summary.clone());
        }
        for o in orders {
            match coded.iter_mut().find(|(c, _)| c.id == o.id) {
                Some((_, reasons)) => reasons.push(f.summary.clone()),
                None => coded.push((o, vec![f.summary.clone()])),
            }
        }
    }
    let episode: Vec<Json> = d.episode.iter().map(|r| json!({"reference": r})).collect();
    let request = |id: String, code: Json, reasons: &[String]| {
        json!({
            "resourceType": "ServiceRequest",
            "id": id,
            "status": "draft",
            "intent": "proposal",
            "category": [{"coding": [{"system": SNOMED, "code": IMAGING, "display": "Imaging"}]}],
            "code": code,
            "subject": {"reference": format!("Patient/{patient}")},
            "reasonCode": reasons.iter().map(|r| json!({"text": r})).collect::<Vec<_>>(),
            "reasonReference": episode,
            "instantiatesCanonical": [rs.canonical()],
        })
    };
    let mut out = Vec::new();
    for (o, reasons) in &coded {
        let Some(code) = rs.code(&o.code) else {
            return Err(RenderError(
                "ServiceRequest",
                format!("imaging order `{}` has no code", o.id),
            ));
        };
        let mut sr = request(
            ids(),
            json!({"coding": [{"system": code.system, "code": code.code, "display": o.display}], "text": o.title}),
            reasons,
        );
        if let Some(site) = &o.body_site {
            if let Some(c) = rs.code(&site.code) {
                sr["bodySite"] = json!([{"coding": [{"system": c.system, "code": c.code, "display": site.display}]}]);
            }
        }
        if let Some(note) = &o.note {
            sr["note"] = json!([{"text": note}]);
        }
        check::<ServiceRequest>("ServiceRequest", &sr)?;
        out.push(ImagingSuggestion {
            label: format!("Order {}", o.title),
            resource: sr,
        });
    }
    if !uncoded.is_empty() {
        // Coded as far as the guideline goes: imaging, the root of SNOMED CT's imaging
        // procedures (COVERAGE section 12); the modality is the clinician's.
        let sr = request(
            ids(),
            json!({"coding": [{"system": SNOMED, "code": IMAGING, "display": "Imaging"}],
                   "text": "Imaging of the painful region (modality per clinician: the guideline names none)"}),
            &uncoded,
        );
        check::<ServiceRequest>("ServiceRequest", &sr)?;
        out.push(ImagingSuggestion {
            label: "Order imaging (modality per clinician)".into(),
            resource: sr,
        });
    }
    Ok(out)
}

/// Whether a (revised) CarePlan is one the R4 model accepts.
pub fn validate(plan: &Json) -> Result<(), RenderError> {
    if plan.get("resourceType").and_then(Json::as_str) != Some("CarePlan") {
        return Err(RenderError("CarePlan", "not a CarePlan".into()));
    }
    check::<CarePlan>("CarePlan", plan)
}

/// Whether `v` reads as the fhir-sdk model `T`. Read as its own type rather than as a
/// `Resource`: the tagged enum first copies the whole tree into a buffer, on every hook call.
/// The type is ours to name (the JSON's `resourceType` is not looked at here).
pub(crate) fn check<T: DeserializeOwned>(kind: &'static str, v: &Json) -> Result<(), RenderError> {
    T::deserialize(v)
        .map(|_| ())
        .map_err(|e| RenderError(kind, e.to_string()))
}

/// `v` itself, once it reads as `T` (see `check`).
pub(crate) fn checked<T: DeserializeOwned>(
    kind: &'static str,
    v: Json,
) -> Result<Json, RenderError> {
    check::<T>(kind, &v)?;
    Ok(v)
}

/// One contained Goal per exit criterion of the phase that compares a fact with a parameter.
fn goals(rs: &RuleSet, exit: Option<&Criterion>, patient: &str) -> Vec<Json> {
    let mut out = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    let mut stack: Vec<&Criterion> = exit.into_iter().collect();
    while let Some(c) = stack.pop() {
        match c {
            Criterion::All { all: cs } | Criterion::Any { any: cs } => {
                stack.extend(cs.iter().rev())
            }
            Criterion::Not { .. } | Criterion::PhaseIn { .. } => {}
            Criterion::Compare(cmp) => {
                let (Some(pname), None) = (&cmp.param, &cmp.percent_of) else {
                    continue;
                };
                let Some(p) = rs.doc.parameters.get(pname) else {
                    continue;
                };
                // Two ways to meet one target (a streak reported or counted day by day) are
                // one goal.
                if !seen.insert(pname.as_str()) {
                    continue;
                }
                let Some(code) = rs.fact_code(&cmp.fact) else {
                    continue;
                };
                let quantity =
                    |v: f64| json!({"value": v, "unit": p.unit, "system": UCUM, "code": p.unit});
                let mut target =
                    json!({"measure": {"coding": [{"system": code.system, "code": code.code}]}});
                match p.range {
                    Some([lo, hi]) => {
                        target["detailRange"] = json!({"low": quantity(lo), "high": quantity(hi)})
                    }
                    None => target["detailQuantity"] = quantity(p.threshold().unwrap_or_default()),
                }
                let id = format!("goal-{}", out.len() + 1);
                out.push(json!({
                    "resourceType": "Goal",
                    "id": id,
                    "lifecycleStatus": "proposed",
                    "description": {"text": p.text},
                    "subject": {"reference": format!("Patient/{patient}")},
                    "target": [target],
                }));
            }
        }
    }
    out
}

/// What every proposal of one plan shares: who it is for, when, why, and on what evidence.
struct Proposal<'a> {
    rs: &'a RuleSet,
    patient: &'a str,
    encounter: Option<&'a str>,
    created: &'a str,
    /// The phase decision the plan carries out.
    reason: Json,
    /// The episode (Conditions) the plan addresses.
    episode: Vec<Json>,
    /// The records the decision rests on: once, on the CarePlan (`supportingInfo`), not on
    /// every proposal. Repeated on each, they made the plan and the stored answer several
    /// times larger and a patient-view call measurably slower (docs/benchmarks.md, "The
    /// CarePlan in the CPG shape").
    evidence: Vec<Json>,
}

impl Proposal<'_> {
    /// One prescribed activity as a proposed ServiceRequest (CPG's profile for an exercise or
    /// activity prescription): its dose as the patient's instruction, its schedule as a
    /// Timing, "do not" as `doNotPerform`.
    fn activity(&self, a: &PlannedActivity, id: &str, phase_title: &str) -> Json {
        let doc = &self.rs.doc;
        let mut sr = json!({
            "resourceType": "ServiceRequest",
            "id": id,
            "meta": {"profile": [CPG_SERVICE_REQUEST]},
            "extension": [{"url": CPG_RATIONALE, "valueMarkdown": format!(
                "{phase_title}: rule {} of {} {}.", a.rule, doc.id, doc.version)}],
            "instantiatesCanonical": [self.rs.canonical()],
            "status": "draft",
            "intent": "proposal",
            "code": {"coding": [{"system": doc.local_system, "code": a.id}], "text": a.text},
            "subject": {"reference": format!("Patient/{}", self.patient)},
            "authoredOn": self.created,
            "reasonCode": self.reason,
            "patientInstruction": describe(a),
        });
        if a.frequency == Some(Frequency::None) {
            sr["doNotPerform"] = json!(true);
        }
        let timing = match a.frequency {
            Some(Frequency::Daily) => {
                Some(json!({"repeat": {"frequency": 1, "period": 1, "periodUnit": "d"}}))
            }
            // Alternate days: once every 2 days, never on consecutive days.
            Some(Frequency::AlternateDays) => {
                Some(json!({"repeat": {"frequency": 1, "period": 2, "periodUnit": "d"}}))
            }
            _ => None,
        };
        if let Some(t) = timing {
            sr["occurrenceTiming"] = t;
        }
        if let Some(e) = self.encounter {
            sr["encounter"] = json!({"reference": format!("Encounter/{e}")});
        }
        if !self.episode.is_empty() {
            sr["reasonReference"] = Json::Array(self.episode.clone());
        }
        sr
    }
}

/// The guideline's sources numbered `cite`, as RelatedArtifact citations.
fn citations(rs: &RuleSet, cite: &[u32]) -> Vec<Json> {
    cite.iter()
        .filter_map(|n| rs.doc.sources.iter().find(|s| s.n == *n))
        .map(|s| {
            json!({"type": "citation", "label": format!("[{}]", s.n),
                   "display": format!("{} ({}, {})", s.title, s.publisher, s.year)})
        })
        .collect()
}

/// One recommendation of a plan as staff read and revise it: the contained request (or, in
/// a plan drafted before the CPG shape, the activity) and its text.
#[derive(Debug, Clone, PartialEq)]
pub struct Recommendation {
    /// The contained resource's id (`activity-1`, `imaging-1`), or the activity's index.
    pub id: String,
    pub text: String,
    /// The rule set's source numbers the action cites (its `documentation` labels).
    pub cite: Vec<u32>,
}

/// The recommendations of `plan`, in order: the RequestGroup's actions (options included),
/// each with the instruction of the request it proposes; a plan of the older shape gives
/// its activities' descriptions.
pub fn recommendations(plan: &Json) -> Vec<Recommendation> {
    let contained = plan["contained"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    let by_id = |id: &str| contained.iter().find(|r| r["id"] == id);
    let Some(group) = group(plan) else {
        return plan["activity"]
            .as_array()
            .into_iter()
            .flatten()
            .enumerate()
            .map(|(i, a)| Recommendation {
                id: i.to_string(),
                text: a["detail"]["description"].as_str().unwrap_or("").to_owned(),
                cite: Vec::new(),
            })
            .collect();
    };
    let mut out = Vec::new();
    let mut stack: Vec<&Json> = group["action"]
        .as_array()
        .into_iter()
        .flatten()
        .rev()
        .collect();
    while let Some(action) = stack.pop() {
        stack.extend(action["action"].as_array().into_iter().flatten().rev());
        let Some(id) = action["resource"]["reference"]
            .as_str()
            .and_then(|r| r.strip_prefix('#'))
        else {
            continue;
        };
        let Some(request) = by_id(id) else { continue };
        let text = request["patientInstruction"]
            .as_str()
            .or_else(|| request["code"]["text"].as_str())
            .unwrap_or("");
        let cite = action["documentation"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|d| d["label"].as_str()?.trim_matches(['[', ']']).parse().ok())
            .collect();
        out.push(Recommendation {
            id: id.to_owned(),
            text: text.to_owned(),
            cite,
        });
    }
    out
}

/// The contained RequestGroup the plan's activity references, if the plan has the CPG shape.
fn group(plan: &Json) -> Option<&Json> {
    let id = plan["activity"][0]["reference"]["reference"]
        .as_str()?
        .strip_prefix('#')?;
    plan["contained"]
        .as_array()?
        .iter()
        .find(|r| r["id"] == id && r["resourceType"] == "RequestGroup")
}

/// `plan` with recommendations revised: each `(id, text)` gives a recommendation its new
/// instruction, and an empty text removes it (its action and its contained request; an
/// option group left empty goes too). Ids the plan does not hold are refused.
pub fn revise(plan: &Json, edits: &[(String, String)]) -> Result<Json, String> {
    let known: Vec<String> = recommendations(plan).into_iter().map(|r| r.id).collect();
    if let Some((unknown, _)) = edits.iter().find(|(id, _)| !known.contains(id)) {
        return Err(format!("no recommendation `{unknown}` in this plan"));
    }
    let mut plan = plan.clone();
    let removed: Vec<&str> = edits
        .iter()
        .filter(|(_, t)| t.trim().is_empty())
        .map(|(id, _)| id.as_str())
        .collect();
    if group(&plan).is_none() {
        // The older shape: activities by index.
        let activities = plan["activity"].as_array().cloned().unwrap_or_default();
        let kept: Vec<Json> = activities
            .into_iter()
            .enumerate()
            .filter_map(
                |(i, mut a)| match edits.iter().find(|(id, _)| *id == i.to_string()) {
                    Some((_, t)) if t.trim().is_empty() => None,
                    Some((_, t)) => {
                        a["detail"]["description"] = json!(t.trim());
                        Some(a)
                    }
                    None => Some(a),
                },
            )
            .collect();
        plan["activity"] = Json::Array(kept);
        return Ok(plan);
    }
    if let Some(contained) = plan["contained"].as_array_mut() {
        contained.retain(|r| !removed.contains(&r["id"].as_str().unwrap_or("")));
        for r in contained.iter_mut() {
            let Some((_, text)) = edits.iter().find(|(id, _)| r["id"] == id.as_str()) else {
                continue;
            };
            if r.get("patientInstruction").is_some() {
                r["patientInstruction"] = json!(text.trim());
            } else {
                r["code"]["text"] = json!(text.trim());
            }
        }
        for r in contained
            .iter_mut()
            .filter(|r| r["resourceType"] == "RequestGroup")
        {
            prune(&mut r["action"], &removed, edits);
        }
    }
    Ok(plan)
}

/// Drop the actions proposing a removed request, and groups left with none; keep each kept
/// action's description in step with its request's new text.
fn prune(actions: &mut Json, removed: &[&str], edits: &[(String, String)]) {
    let Some(list) = actions.as_array_mut() else {
        return;
    };
    for a in list.iter_mut() {
        if a.get("action").is_some() {
            prune(&mut a["action"], removed, edits);
        }
        let target = a["resource"]["reference"]
            .as_str()
            .and_then(|r| r.strip_prefix('#'));
        if let Some((_, text)) = edits.iter().find(|(id, _)| Some(id.as_str()) == target) {
            if a.get("description").is_some() && !text.trim().is_empty() {
                a["description"] = json!(text.trim());
            }
        }
    }
    list.retain(|a| {
        let target = a["resource"]["reference"]
            .as_str()
            .and_then(|r| r.strip_prefix('#'));
        let gone = target.is_some_and(|t| removed.contains(&t));
        let empty_group =
            a.get("action").is_some() && a["action"].as_array().is_some_and(|v| v.is_empty());
        !gone && !empty_group
    });
}

fn describe(a: &PlannedActivity) -> String {
    // The rule set writes each activity's parameters into its sentence ("Run 30–60 seconds at
    // 30–50 % of pre-injury pace"); the structured dose stays in the ServiceRequest's timing
    // and the trace, its sources in the action's `documentation`.
    a.text.clone()
}

/// Why this plan, in a clinician's words (the plan's first note, read in the EHR and on the
/// review page): the phase, what fired and the findings it rests on, what to record. Rule and
/// fact ids stay in the decision trace.
pub fn rationale(rs: &RuleSet, d: &Decision, phase_title: &str) -> String {
    use stride_guideline::display::day;
    let mut lines = vec![format!(
        "Drafted from {}, version {}, on {}: {phase_title}.",
        rs.doc.title,
        d.rule_set.version,
        day(d.as_of),
    )];
    for f in d
        .red_flags
        .iter()
        .chain(&d.warnings)
        .chain(&d.pitfalls)
        .chain(&d.phase_notes)
    {
        let basis: Vec<String> = f.basis.iter().map(|b| b.describe()).collect();
        if basis.is_empty() {
            lines.push(f.summary.clone());
        } else {
            lines.push(format!("{}. Based on: {}.", f.summary, basis.join("; ")));
        }
    }
    for u in &d.unassessed_red_flags {
        let name = u.name(rs);
        let needs: Vec<&str> = u.needs.iter().map(|n| n.text.as_str()).collect();
        lines.push(format!(
            "Not ruled out: {name}. Record: {}.",
            needs.join("; ")
        ));
    }
    for m in &d.missing {
        lines.push(format!("Record: {} ({}).", m.text, m.reason));
    }
    if let Some(r) = &d.regression {
        lines.push(r.summary.clone());
    }
    lines.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A plan of the CPG shape: two activities and a group of two imaging options.
    fn plan() -> Json {
        json!({
            "resourceType": "CarePlan",
            "activity": [{"reference": {"reference": "#recommendations"}}],
            "contained": [
                {"resourceType": "Goal", "id": "goal-1"},
                {"resourceType": "ServiceRequest", "id": "activity-1", "patientInstruction": "walk"},
                {"resourceType": "ServiceRequest", "id": "activity-2", "patientInstruction": "run"},
                {"resourceType": "ServiceRequest", "id": "imaging-1", "code": {"text": "knee X-ray"}},
                {"resourceType": "ServiceRequest", "id": "imaging-2", "code": {"text": "knee MRI"}},
                {"resourceType": "RequestGroup", "id": "recommendations", "action": [
                    {"description": "walk", "resource": {"reference": "#activity-1"}},
                    {"description": "run", "resource": {"reference": "#activity-2"}},
                    {"selectionBehavior": "at-most-one", "action": [
                        {"resource": {"reference": "#imaging-1"}},
                        {"resource": {"reference": "#imaging-2"}}]}]}
            ]
        })
    }

    fn texts(p: &Json) -> Vec<(String, String)> {
        recommendations(p)
            .into_iter()
            .map(|r| (r.id, r.text))
            .collect()
    }

    fn edit(id: &str, text: &str) -> (String, String) {
        (id.to_owned(), text.to_owned())
    }

    #[test]
    fn recommendations_are_the_requests_the_group_proposes_in_order() {
        let ids: Vec<String> = texts(&plan()).into_iter().map(|(id, _)| id).collect();
        assert_eq!(ids, ["activity-1", "activity-2", "imaging-1", "imaging-2"]);
        assert_eq!(
            texts(&plan())[2].1,
            "knee X-ray",
            "an order reads as its code's text"
        );
    }

    #[test]
    fn a_revision_edits_removes_and_prunes_emptied_option_groups() {
        let out = revise(
            &plan(),
            &[
                edit("activity-1", " walk 20 min "),
                edit("activity-2", ""),
                edit("imaging-1", ""),
            ],
        )
        .unwrap();
        assert_eq!(
            texts(&out),
            [
                edit("activity-1", "walk 20 min"),
                edit("imaging-2", "knee MRI")
            ]
        );
        let group = group(&out).unwrap();
        assert_eq!(group["action"][0]["description"], "walk 20 min");
        let ids: Vec<&str> = out["contained"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["id"].as_str().unwrap())
            .collect();
        assert!(
            !ids.contains(&"activity-2") && !ids.contains(&"imaging-1"),
            "{ids:?}"
        );
        // The last option removed: the group goes too.
        let out = revise(&out, &[edit("imaging-2", " ")]).unwrap();
        assert_eq!(group_of(&out)["action"].as_array().unwrap().len(), 1);
        assert!(revise(&plan(), &[edit("nope", "x")])
            .unwrap_err()
            .contains("nope"));
    }

    fn group_of(p: &Json) -> &Json {
        group(p).unwrap()
    }

    #[test]
    fn plans_of_the_older_inline_shape_are_read_and_revised_by_index() {
        let old = json!({"activity": [
            {"detail": {"description": "walk", "status": "not-started"}},
            {"detail": {"description": "run", "status": "not-started"}}]});
        assert_eq!(texts(&old), [edit("0", "walk"), edit("1", "run")]);
        let out = revise(&old, &[edit("0", "walk more"), edit("1", "")]).unwrap();
        assert_eq!(
            out["activity"],
            json!([{"detail": {"description": "walk more", "status": "not-started"}}])
        );
    }
}
