//! Decision → the draft FHIR R4 CarePlan (and the imaging ServiceRequest a red flag suggests).
//! Built as JSON, then read back through the fhir-sdk model so that what leaves Stride is a
//! resource the R4 model accepts.

use fhir_sdk::r4b::resources::{CarePlan, ServiceRequest};
use serde::de::DeserializeOwned;
use serde_json::{json, Value as Json};
use stride_guideline::decision::{
    Decision, Dose, PlannedActivity, HOLD_FOR_EVALUATION, INSUFFICIENT_DATA,
};
use stride_guideline::model::{Criterion, Frequency};
use stride_guideline::RuleSet;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

pub const UCUM: &str = "http://unitsofmeasure.org";

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

pub fn careplan(rs: &RuleSet, d: &Decision, ctx: &PlanContext<'_>) -> Result<Json, RenderError> {
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
    let activities: Vec<Json> = d
        .activities
        .iter()
        .chain(&d.rehab)
        .map(|a| activity(a, &doc.local_system))
        .collect();
    let mut supporting: Vec<String> = d
        .trace
        .iter()
        .flat_map(|t| t.sources.iter().cloned())
        .collect();
    supporting.sort();
    supporting.dedup();

    let mut plan = json!({
        "resourceType": "CarePlan",
        "id": ctx.id,
        "status": "draft",
        "intent": "proposal",
        "instantiatesCanonical": [rs.canonical()],
        "category": [{"coding": [{"system": doc.decision_system, "code": phase_id, "display": title}]}],
        "title": format!("{} — {}", doc.title, title),
        "description": summary,
        "subject": {"reference": format!("Patient/{}", ctx.patient)},
        "period": {"start": d.as_of.to_string()},
        "created": ctx.now.format(&Rfc3339).unwrap_or_default(),
        "note": [{"text": rationale(d)}],
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
    if !d.episode.is_empty() {
        obj.insert(
            "addresses".into(),
            d.episode.iter().map(|r| json!({"reference": r})).collect(),
        );
    }
    if !supporting.is_empty() {
        obj.insert(
            "supportingInfo".into(),
            supporting.iter().map(|r| json!({"reference": r})).collect(),
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
        obj.insert("contained".into(), Json::Array(goals));
    }
    if !activities.is_empty() {
        obj.insert("activity".into(), Json::Array(activities));
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
    mut ids: impl FnMut() -> String,
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
            "category": [{"coding": [{"system": "http://snomed.info/sct", "code": "363679005", "display": "Imaging"}]}],
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
        let sr = request(
            ids(),
            json!({"text": "Imaging of the painful region (modality per clinician: the guideline names none)"}),
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

fn activity(a: &PlannedActivity, local_system: &str) -> Json {
    let mut detail = json!({
        "status": "not-started",
        "code": {"coding": [{"system": local_system, "code": a.id}], "text": a.text},
        "description": describe(a),
        "doNotPerform": a.frequency == Some(Frequency::None),
    });
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
        detail["scheduledTiming"] = t;
    }
    json!({"detail": detail})
}

fn describe(a: &PlannedActivity) -> String {
    let mut parts = vec![a.text.clone()];
    let dose = |d: &Dose| {
        if (d.low - d.high).abs() < f64::EPSILON {
            format!("{}: {} {}", d.name, d.low, d.unit)
        } else {
            format!("{}: {}–{} {}", d.name, d.low, d.high, d.unit)
        }
    };
    parts.extend(a.dosing.iter().map(dose));
    if !a.surfaces.is_empty() {
        parts.push(format!("surfaces: {}", a.surfaces.join(", ")));
    }
    if !a.avoid.is_empty() {
        parts.push(format!("avoid: {}", a.avoid.join(", ")));
    }
    if !a.cite.is_empty() {
        parts.push(format!("sources {:?}", a.cite));
    }
    parts.join("; ")
}

/// Why this plan: the phase, what fired, what is missing, in a clinician's words.
pub fn rationale(d: &Decision) -> String {
    let mut lines = vec![format!(
        "Decided by {} {} on {} (phase: {}).",
        d.rule_set.id,
        d.rule_set.version,
        d.as_of,
        d.phase.as_deref().unwrap_or("not applicable")
    )];
    for f in d
        .red_flags
        .iter()
        .chain(&d.warnings)
        .chain(&d.pitfalls)
        .chain(&d.phase_notes)
    {
        lines.push(format!("{} ({}): {}", f.id, f.rule, f.summary));
    }
    for u in &d.unassessed_red_flags {
        lines.push(format!(
            "Could not rule out {} ({}): missing {}",
            u.id,
            u.rule,
            u.missing.join(", ")
        ));
    }
    for m in &d.missing {
        lines.push(format!("Missing: {} ({})", m.text, m.reason));
    }
    if let Some(r) = &d.regression {
        lines.push(format!("{}: {}", r.rule, r.summary));
    }
    lines.join("\n")
}
