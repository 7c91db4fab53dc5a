//! The guideline as FHIR knowledge artifacts: one PlanDefinition per rule-set version, the
//! CodeSystems of its local fact codes and decision ids, and the server's CapabilityStatement.

use std::collections::BTreeMap;

use fhir_sdk::r4b::resources::{CapabilityStatement, CodeSystem, PlanDefinition};
use serde_json::{json, Value as Json};
use stride_guideline::model::Status;
use stride_guideline::RuleSet;

use crate::careplan::{checked, RenderError};

fn status(rs: &RuleSet) -> &'static str {
    match rs.doc.status {
        Status::Draft => "draft",
        Status::Active => "active",
        Status::Retired => "retired",
    }
}

/// `{guideline id}-{version}` (say `my-guideline-1.0.0`): a FHIR id naming one version.
pub fn plan_definition_id(rs: &RuleSet) -> String {
    format!("{}-{}", rs.doc.id, rs.doc.version)
}

/// Who made a rule-set version and from what (its source attributes), for the PlanDefinition.
pub struct Attribution<'a> {
    /// Who publishes the intervention (PlanDefinition.publisher).
    pub publisher: &'a str,
    /// The source the intervention is derived from: its bibliographic citation.
    pub citation: &'a str,
    pub developer: &'a str,
    pub funding: &'a str,
    /// The version's revision date (PlanDefinition.date).
    pub date: &'a str,
    /// The patient inputs, in words.
    pub inputs: &'a [String],
    /// The page that shows them (linked from every card).
    pub page: &'a str,
}

/// Where the source attributes sit as an extension of the PlanDefinition.
pub const ATTRIBUTES_EXTENSION: &str =
    "http://stride-cds.org/fhir/StructureDefinition/dsi-source-attributes";

pub fn plan_definition(rs: &RuleSet, about: &Attribution<'_>) -> Result<Json, RenderError> {
    let d = &rs.doc;
    let mut related: Vec<Json> = vec![
        json!({"type": "derived-from", "label": "source", "display": d.title, "citation": about.citation}),
        json!({"type": "documentation", "label": "source attributes",
               "display": "Source attributes (45 CFR 170.315(b)(11)(iv)(A))", "url": about.page}),
    ];
    related.extend(d.sources.iter().map(|s| {
        json!({"type": "citation", "label": s.n.to_string(),
               "citation": format!("{}. {}, {}. ({})", s.title, s.publisher, s.year, s.kind)})
    }));
    let mut attributes = vec![
        json!({"url": "developer", "valueString": about.developer}),
        json!({"url": "funding", "valueString": about.funding}),
    ];
    attributes.extend(
        about
            .inputs
            .iter()
            .map(|i| json!({"url": "input", "valueString": i})),
    );
    let finding = |r: &stride_guideline::model::Rule, kind: &str| {
        json!({
            "id": r.rule, "title": r.card.summary, "description": r.card.detail,
            "code": [{"coding": [{"system": d.decision_system, "code": r.id}], "text": kind}],
            "priority": if r.severity == stride_guideline::model::Severity::Critical { "stat" } else { "routine" },
        })
    };
    let mut actions: Vec<Json> = d
        .phases
        .iter()
        .map(|p| {
            json!({
                "id": p.rule, "title": p.title, "description": p.card.detail,
                "code": [{"coding": [{"system": d.decision_system, "code": p.id}], "text": "phase"}],
                "action": p.activities.iter().map(|a| json!({"id": a.rule, "title": a.id, "description": a.text})).collect::<Vec<_>>(),
            })
        })
        .collect();
    actions.extend(d.red_flags.iter().map(|r| finding(r, "red flag")));
    actions.extend(d.warnings.iter().map(|r| finding(r, "warning")));
    actions.extend(d.pitfalls.iter().map(|r| finding(r, "pitfall")));
    actions.push(json!({
        "id": "rehab", "title": "Concurrent rehabilitation",
        "action": d.rehab.iter().map(|a| json!({"id": a.rule, "title": a.id, "description": a.text})).collect::<Vec<_>>(),
    }));
    let mut period = json!({"start": d.effective.start.to_string()});
    if let Some(end) = d.effective.end {
        period["end"] = json!(end.to_string());
    }
    checked::<PlanDefinition>(
        "PlanDefinition",
        json!({
            "resourceType": "PlanDefinition",
            "id": plan_definition_id(rs),
            "url": d.url,
            "version": d.version.to_string(),
            "name": d.id.replace('-', "_"),
            "title": d.title,
            "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/plan-definition-type", "code": "clinical-protocol"}]},
            "status": status(rs),
            "effectivePeriod": period,
            "description": d.description,
            "publisher": about.publisher,
            "date": about.date,
            "useContext": [{
                "code": {"system": "http://terminology.hl7.org/CodeSystem/usage-context-type", "code": "focus"},
                "valueCodeableConcept": {"text": d.title},
            }],
            "extension": [{"url": ATTRIBUTES_EXTENSION, "extension": attributes}],
            "relatedArtifact": related,
            "identifier": [{"system": "urn:ietf:rfc:3986", "value": format!("urn:sha256:{}", rs.content_hash)}],
            "action": actions,
        }),
    )
}

/// The ids under which `code_system` publishes the rule set's two code systems.
pub fn code_system_ids(rs: &RuleSet) -> [(String, &str); 2] {
    let last = |url: &str| url.rsplit('/').next().unwrap_or(url).to_owned();
    [
        (last(&rs.doc.local_system), rs.doc.local_system.as_str()),
        (
            last(&rs.doc.decision_system),
            rs.doc.decision_system.as_str(),
        ),
    ]
}

/// The titles a guideline publishes its two code systems under (its declaration's).
pub struct CodeSystemTitles<'a> {
    pub findings: &'a str,
    pub decisions: &'a str,
}

pub fn code_system(
    rs: &RuleSet,
    id: &str,
    titles: &CodeSystemTitles<'_>,
) -> Option<Result<Json, RenderError>> {
    let d = &rs.doc;
    let [(local_id, _), (decision_id, _)] = code_system_ids(rs);
    let (url, title, concepts): (&str, &str, BTreeMap<String, String>) = if id == local_id {
        let mut concepts = BTreeMap::new();
        // Every local code a fact reads, directly, through a value set or as a component.
        for b in d.facts.values() {
            for s in &b.sources {
                for c in s.resolved.iter().chain(&s.resolved_component) {
                    if c.system == d.local_system {
                        concepts
                            .entry(c.code.clone())
                            .or_insert_with(|| b.text.clone());
                    }
                }
            }
        }
        (&d.local_system, titles.findings, concepts)
    } else if id == decision_id {
        let mut concepts = BTreeMap::new();
        for p in &d.phases {
            concepts.insert(p.id.clone(), p.title.clone());
        }
        concepts.insert(
            "hold-for-evaluation".into(),
            "Progression stopped: a red flag needs evaluation first".into(),
        );
        concepts.insert(
            "insufficient-data".into(),
            d.insufficient_data.summary.clone(),
        );
        // Phase notes too: on an order hook each is a card of its own whose topic is its id.
        for r in d
            .red_flags
            .iter()
            .chain(&d.warnings)
            .chain(&d.pitfalls)
            .chain(&d.phase_notes)
        {
            concepts.insert(r.id.clone(), r.card.summary.clone());
        }
        (&d.decision_system, titles.decisions, concepts)
    } else {
        return None;
    };
    Some(checked::<CodeSystem>(
        "CodeSystem",
        json!({
            "resourceType": "CodeSystem",
            "id": id,
            "url": url,
            "version": d.version.to_string(),
            "name": id.replace('-', "_"),
            "title": title,
            "status": status(rs),
            "content": "complete",
            "caseSensitive": true,
            "count": concepts.len(),
            "concept": concepts.iter().map(|(c, display)| json!({"code": c, "display": display})).collect::<Vec<_>>(),
        }),
    ))
}

pub fn capability_statement(
    public_url: &str,
    version: &str,
    date: &str,
) -> Result<Json, RenderError> {
    checked::<CapabilityStatement>(
        "CapabilityStatement",
        json!({
            "resourceType": "CapabilityStatement",
            "status": "active",
            "date": date,
            "kind": "instance",
            "software": {"name": "Stride", "version": version},
            "implementation": {"description": "Stride clinical decision support (CDS Hooks 2.0)", "url": format!("{public_url}/fhir")},
            "fhirVersion": "4.0.1",
            "format": ["json"],
            "rest": [{
                "mode": "server",
                "documentation": "The guidelines Stride decides with, published as FHIR knowledge artifacts.",
                "security": {"description": "OAuth 2.0 bearer access tokens (JWT) from the clinic's issuer; CarePlan and DocumentReference need the scope careplan.read; PlanDefinition/$apply a CDS client's token."},
                "resource": [
                    {"type": "CarePlan", "interaction": [{"code": "read"}, {"code": "search-type"}],
                     "searchParam": [{"name": "patient", "type": "reference"}, {"name": "status", "type": "token"}]},
                    {"type": "PlanDefinition", "interaction": [{"code": "read"}],
                     "operation": [{"name": "apply", "definition": "http://hl7.org/fhir/OperationDefinition/PlanDefinition-apply",
                                    "documentation": "POST [base]/PlanDefinition/[id]/$apply with Parameters subject (Patient/[id]) and either data (a Bundle of the patient's Conditions and Observations) or fhirServer (valueUrl) and fhirAccessToken (valueString), Stride's parameters for fetching them as a hook's prefetch fallback does: the CarePlan a patient-view hook call would draft with this version. Not stored unless store (valueBoolean) is true: then it is a draft for clinic review (201, Location), or the identical draft already waiting (200). A CDS client token whose aud is the operation's URL."}]},
                    {"type": "CodeSystem", "interaction": [{"code": "read"}]},
                    {"type": "DocumentReference", "interaction": [{"code": "read"}, {"code": "search-type"}],
                     "documentation": "The patient's take-home plan (PDF) of an approved CarePlan; its id is the CarePlan's. Scope careplan.read.",
                     "searchParam": [{"name": "related", "type": "reference"}]},
                ],
            }],
        }),
    )
}
