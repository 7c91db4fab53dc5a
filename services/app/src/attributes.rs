//! Source attributes: what the US certification criterion for decision support interventions
//! (45 CFR 170.315(b)(11)(iv)(A)(1)–(13), ONC HTI-1 final rule, 89 FR 1192) lists for an
//! evidence-based intervention — its bibliographic citation, developer, funding source,
//! release and revision dates, and which demographics, social determinants and health status
//! assessments it uses as input. The first four are declared in the guideline's data; the
//! inputs are read off the rule set itself, so they cannot claim less than the version reads.
//! Discovery, the rule-set endpoint, the PlanDefinition and the page a card links to all show
//! what `of` returns.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use stride_guideline::model::{Aggregation, RecordKind};
use stride_guideline::RuleSet;

/// The extension key discovery and the rule-set endpoint carry them under.
pub const EXTENSION: &str = "org.stride-cds.dsi-source-attributes";

/// What a guideline declares (`source_attributes` in its `guideline.yaml`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Declared {
    /// Who publishes it (a short name: PlanDefinition.publisher).
    pub publisher: String,
    /// (iv)(A)(1): the clinical guideline or research the intervention rests on.
    pub citation: String,
    /// (iv)(A)(2): who translated it into this intervention.
    pub developer: String,
    /// (iv)(A)(3): who funded the technical implementation.
    pub funding: String,
    /// (iv)(A)(4): release and revision dates by version; a version not listed was released on
    /// the first day of its `effective` period and not revised.
    #[serde(default)]
    pub versions: BTreeMap<String, Dates>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Dates {
    pub release: String,
    #[serde(default)]
    pub revision: Option<String>,
}

/// The attributes of one rule-set version, as published.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SourceAttributes {
    pub publisher: String,
    pub citation: String,
    /// The works the rule set cites, as listed in it.
    pub references: Vec<String>,
    pub developer: String,
    pub funding: String,
    pub release_date: String,
    pub revision_date: String,
    /// Every patient input, in words: demographics first, then the assessments and records.
    pub inputs: Vec<String>,
    /// (iv)(A)(5)–(11): the demographic elements used, by the criterion's names.
    pub demographics: Vec<String>,
    /// (iv)(A)(12): social determinants of health used (none is said as an empty list).
    pub social_determinants: Vec<String>,
    /// (iv)(A)(13): whether health status assessments are used.
    pub health_status_assessments: bool,
}

/// The source attributes of `rs`, from its guideline's declaration.
pub fn of(rs: &RuleSet, declared: &Declared) -> SourceAttributes {
    let version = rs.doc.version.to_string();
    let dates = declared.versions.get(&version);
    let release = dates
        .map(|d| d.release.clone())
        .unwrap_or_else(|| rs.doc.effective.start.to_string());
    let revision = dates
        .and_then(|d| d.revision.clone())
        .unwrap_or_else(|| release.clone());
    let mut demographics = Vec::new();
    let mut assessments = Vec::new();
    let mut conditions = Vec::new();
    let mut orders = Vec::new();
    for b in rs.doc.facts.values() {
        for s in &b.sources {
            match s.record {
                RecordKind::Patient if b.aggregation == Aggregation::Age => {
                    demographics.push("date of birth".to_owned())
                }
                RecordKind::Patient if s.answers.is_some() => demographics.push("sex".to_owned()),
                RecordKind::Patient => demographics.push("date of birth".to_owned()),
                RecordKind::Observation => assessments.push(b.text.clone()),
                RecordKind::Condition => conditions.push(b.text.clone()),
                RecordKind::Order | RecordKind::Report => orders.push(b.text.clone()),
                // No fact reads a clinician's decision: it is not an input attribute.
                RecordKind::Decision => {}
            }
        }
    }
    for list in [
        &mut demographics,
        &mut assessments,
        &mut conditions,
        &mut orders,
    ] {
        list.sort();
        list.dedup();
    }
    let mut inputs: Vec<String> = demographics
        .iter()
        .map(|d| format!("{d} (Patient)"))
        .collect();
    if !conditions.is_empty() {
        inputs.push(format!("conditions: {}", conditions.join("; ")));
    }
    if !assessments.is_empty() {
        inputs.push(format!(
            "health status assessments (observations): {}",
            assessments.join("; ")
        ));
    }
    if !orders.is_empty() {
        inputs.push(format!("orders and results: {}", orders.join("; ")));
    }
    SourceAttributes {
        publisher: declared.publisher.clone(),
        citation: declared.citation.clone(),
        references: rs
            .doc
            .sources
            .iter()
            .map(|s| format!("[{}] {}. {}, {}.", s.n, s.title, s.publisher, s.year))
            .collect(),
        developer: declared.developer.clone(),
        funding: declared.funding.clone(),
        release_date: release,
        revision_date: revision,
        inputs,
        health_status_assessments: !assessments.is_empty(),
        demographics,
        social_determinants: Vec::new(),
    }
}

impl SourceAttributes {
    /// As the PlanDefinition carries them; `page` is where they are shown.
    pub fn attribution<'a>(&'a self, page: &'a str) -> stride_fhir::publish::Attribution<'a> {
        stride_fhir::publish::Attribution {
            publisher: &self.publisher,
            citation: &self.citation,
            developer: &self.developer,
            funding: &self.funding,
            date: &self.revision_date,
            inputs: &self.inputs,
            page,
        }
    }
}

/// The page that shows a version's source attributes (every card links to it).
pub fn page_url(public: &str, id: &str, version: &stride_guideline::RuleSetVersion) -> String {
    format!("{}/about", crate::guideline_url(public, id, version))
}
