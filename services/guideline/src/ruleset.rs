//! Loading a rule set: JSON Schema check, then deserialisation, then the semantic checks a
//! schema cannot express (unknown facts and parameters, duplicate ids, unreachable phases).

use std::collections::{BTreeSet, HashMap};
use std::sync::OnceLock;

use sha2::{Digest, Sha256};

use crate::decision::{RuleSetRef, HOLD_FOR_EVALUATION, INSUFFICIENT_DATA};
use crate::facts::{Code, Record};
use crate::model::{Activity, Criterion, FactBinding, RuleSetDoc, ValueKind};
use crate::units;

/// The JSON Schema of the rule-set format (`schemas/guideline.schema.json`).
pub const SCHEMA: &str = include_str!("../../../schemas/guideline.schema.json");

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("not valid YAML: {0}")]
    Yaml(String),
    #[error("does not match schemas/guideline.schema.json:\n{}", .0.join("\n"))]
    Schema(Vec<String>),
    #[error("semantic errors:\n{}", .0.join("\n"))]
    Semantic(Vec<String>),
}

/// A map looked up by the codes of every record on every call: keys are the rule set's own
/// codes, so a hasher without SipHash's resistance to chosen keys is safe here (a record's
/// code only looks up, never inserts).
type CodeMap<V> = HashMap<Code, V, foldhash::fast::RandomState>;

/// A loaded, checked rule set. Once you hold one, every reference in it resolves.
#[derive(Debug)]
pub struct RuleSet {
    pub doc: RuleSetDoc,
    pub content_hash: String,
    codes: HashMap<String, Code>,
    /// Every code a fact reads → the (fact, source) pairs that read it, facts numbered in
    /// `doc.facts` order. Matching a record is then one lookup per code it carries: testing
    /// every source of every fact against every record was a third of `evaluate`
    /// (docs/benchmarks.md, "Code index"). A component code maps to no pair: it makes a
    /// record relevant without naming it.
    index: CodeMap<Vec<(usize, usize)>>,
    /// The episode fact's number in `doc.facts` order.
    episode: usize,
    /// Coded answers that read as yes / no (`answers`, else SNOMED CT's).
    pub yes: Vec<Code>,
    pub no: Vec<Code>,
    /// UCUM units read (`units`, else 1.0.0's metric list).
    units: Vec<String>,
    /// The side each code of `applicability.sides` names.
    sides: CodeMap<crate::model::Side>,
    /// Codes an Observation is read by for its own value, and the components read of a record
    /// by its code: how a panel's components are told apart (`panels`).
    alone: std::collections::HashSet<Code, foldhash::fast::RandomState>,
    components: CodeMap<Vec<Code>>,
    /// The facts (numbered in `doc.facts` order) red flags are decided on.
    red_flag_facts: std::collections::HashSet<usize>,
    /// Value sets with `words`, each with the (fact, source) pairs of the order and Condition
    /// sources that read it: how an order or a diagnosis named in text only is read.
    worded: Vec<Worded>,
}

#[derive(Debug)]
struct Worded {
    words: Vec<String>,
    except: Vec<String>,
    /// `ValueSet::not_within`.
    not_within: Vec<String>,
    /// (fact, source, the kind of record the source reads, whether the source reads a
    /// finding as present: `FactSource::present`).
    readers: Vec<(usize, usize, crate::model::RecordKind, bool)>,
}

/// Every fact a criterion reads.
fn facts_of(c: &crate::model::Criterion, f: &mut dyn FnMut(&str)) {
    use crate::model::Criterion;
    match c {
        Criterion::All { all: cs } | Criterion::Any { any: cs } => {
            cs.iter().for_each(|c| facts_of(c, f))
        }
        Criterion::Not { not } => facts_of(not, f),
        Criterion::PhaseIn { .. } => {}
        Criterion::Compare(cmp) => {
            f(&cmp.fact);
            if let Some(p) = &cmp.percent_of {
                f(p);
            }
        }
    }
}

/// Whether `phrase` occurs in `text` as whole words ("run" in "walk-run", not in "rerun").
pub(crate) fn says(text: &str, phrase: &str) -> bool {
    let boundary = |c: Option<char>| c.is_none_or(|c| !c.is_alphanumeric());
    text.match_indices(phrase).any(|(at, p)| {
        boundary(text[..at].chars().next_back()) && boundary(text[at + p.len()..].chars().next())
    })
}

/// `DataQuality::findings_as_conditions`: each yes/no finding read by its latest Observation
/// of a code reads a Condition of that code as the finding present (an encounter diagnosis
/// "localized bony tenderness", a problem-list "valgus twist"), unless it reads one already.
fn findings_as_conditions(doc: &mut RuleSetDoc) {
    use crate::model::{Aggregation, RecordKind, ValueKind};
    for b in doc.facts.values_mut() {
        if b.kind != ValueKind::Boolean || b.aggregation != Aggregation::Latest {
            continue;
        }
        let added: Vec<crate::model::FactSource> = b
            .sources
            .iter()
            .filter(|s| {
                s.record == RecordKind::Observation
                    && !s.codes.is_empty()
                    && s.component.is_none()
                    && s.absent_means.is_none()
                    && !s.present
                    && !s.value_from_date
            })
            .filter(|s| {
                !b.sources.iter().any(|c| {
                    c.record == RecordKind::Condition && c.codes.iter().any(|x| s.codes.contains(x))
                })
            })
            .map(|s| {
                let mut c = s.clone();
                c.record = RecordKind::Condition;
                c.present = true;
                c
            })
            .collect();
        b.sources.extend(added);
    }
}

/// Whether `text` says `phrase` (as `says`) somewhere not inside one of `within`.
pub(crate) fn says_outside(text: &str, phrase: &str, within: &[String]) -> bool {
    let boundary = |c: Option<char>| c.is_none_or(|c| !c.is_alphanumeric());
    let at_word = |at: usize, len: usize| {
        boundary(text[..at].chars().next_back()) && boundary(text[at + len..].chars().next())
    };
    let masked: Vec<(usize, usize)> = within
        .iter()
        .flat_map(|m| {
            text.match_indices(m.as_str())
                .filter(|(at, p)| at_word(*at, p.len()))
                .map(|(at, p)| (at, at + p.len()))
        })
        .collect();
    text.match_indices(phrase).any(|(at, p)| {
        at_word(at, p.len())
            && !masked
                .iter()
                .any(|&(start, end)| start <= at && at + p.len() <= end)
    })
}

/// The units rule set 1.0.0 read: a rule set without `units` keeps them.
const DEFAULT_UNITS: &[&str] = &[
    "mm", "cm", "m", "km", "s", "min", "h", "d", "wk", "%", "{score}", "1",
];

fn schema() -> &'static jsonschema::Validator {
    static V: OnceLock<jsonschema::Validator> = OnceLock::new();
    V.get_or_init(|| {
        let schema: serde_json::Value =
            serde_json::from_str(SCHEMA).expect("the bundled schema is JSON");
        jsonschema::validator_for(&schema).expect("the bundled schema is a valid JSON Schema")
    })
}

impl RuleSet {
    pub fn from_yaml(text: &str) -> Result<RuleSet, LoadError> {
        let value: serde_json::Value =
            serde_yaml::from_str(text).map_err(|e| LoadError::Yaml(e.to_string()))?;
        let errors: Vec<String> = schema()
            .iter_errors(&value)
            .map(|e| format!("  at {}: {}", e.instance_path(), e))
            .collect();
        if !errors.is_empty() {
            return Err(LoadError::Schema(errors));
        }
        let mut doc: RuleSetDoc =
            serde_json::from_value(value).map_err(|e| LoadError::Schema(vec![format!("  {e}")]))?;
        if doc.data_quality.findings_as_conditions {
            findings_as_conditions(&mut doc);
        }
        let content_hash = hex::encode(Sha256::digest(text.as_bytes()));
        let mut problems = Vec::new();
        let codes = resolve_codes(&doc, &mut problems);
        check(&doc, &mut problems);
        if !problems.is_empty() {
            return Err(LoadError::Semantic(problems));
        }
        let expanded: HashMap<String, Vec<String>> = doc
            .value_sets
            .iter()
            .map(|(name, vs)| (name.clone(), vs.expand()))
            .collect();
        for s in doc.facts.values_mut().flat_map(|b| b.sources.iter_mut()) {
            let mut resolved: Vec<Code> = s
                .codes
                .iter()
                .chain(s.value_sets.iter().flat_map(|v| &expanded[v]))
                .filter_map(|p| codes.get(p))
                .cloned()
                .collect();
            resolved.sort();
            resolved.dedup();
            s.resolved = resolved;
            s.resolved_component = s.component.as_ref().and_then(|p| codes.get(p)).cloned();
            s.resolved_region = s.site_in.as_ref().map(|v| {
                let vs = &doc.value_sets[v];
                let lower = |l: &Vec<String>| l.iter().map(|w| w.to_lowercase()).collect();
                crate::model::Region {
                    codes: expanded[v]
                        .iter()
                        .filter_map(|p| codes.get(p))
                        .cloned()
                        .collect(),
                    words: lower(&vs.words),
                    others: lower(&vs.except_words),
                }
            });
            s.resolved_answers = s.answers.as_ref().map(|a| {
                let list = |l: &Vec<String>| -> Vec<Code> {
                    l.iter().filter_map(|p| codes.get(p)).cloned().collect()
                };
                (list(&a.yes), list(&a.no))
            });
        }
        // Records are relevant when a fact reads their code (answer codes name no record).
        let mut index: CodeMap<Vec<(usize, usize)>> = CodeMap::default();
        let mut alone = std::collections::HashSet::with_hasher(Default::default());
        let mut components: CodeMap<Vec<Code>> = CodeMap::default();
        for (f, binding) in doc.facts.values().enumerate() {
            for (i, s) in binding.sources.iter().enumerate() {
                for c in &s.resolved {
                    index.entry(c.clone()).or_default().push((f, i));
                    match &s.resolved_component {
                        Some(k) => {
                            let read = components.entry(c.clone()).or_default();
                            if !read.contains(k) {
                                read.push(k.clone());
                            }
                        }
                        None if s.record == crate::model::RecordKind::Observation => {
                            alone.insert(c.clone());
                        }
                        None => {}
                    }
                }
                if let Some(c) = &s.resolved_component {
                    index.entry(c.clone()).or_default();
                }
            }
        }
        let answer = |list: Option<&Vec<String>>, default: &str| -> Vec<Code> {
            match list {
                Some(l) => l.iter().filter_map(|p| codes.get(p)).cloned().collect(),
                None => vec![Code {
                    system: crate::facts::SNOMED.into(),
                    code: default.into(),
                }],
            }
        };
        let yes = answer(
            doc.answers.as_ref().map(|a| &a.yes),
            crate::facts::SNOMED_YES,
        );
        let no = answer(doc.answers.as_ref().map(|a| &a.no), crate::facts::SNOMED_NO);
        let units = doc
            .units
            .clone()
            .unwrap_or_else(|| DEFAULT_UNITS.iter().map(|u| (*u).to_owned()).collect());
        // `check` made sure the episode fact is one of the facts.
        let episode = doc
            .facts
            .keys()
            .position(|k| *k == doc.applicability.episode_fact)
            .unwrap_or(usize::MAX);
        let mut sides = CodeMap::default();
        for (side, sets) in &doc.applicability.sides {
            for c in sets.iter().flat_map(|v| &expanded[v]) {
                if let Some(code) = codes.get(c) {
                    sides.insert(code.clone(), *side);
                }
            }
        }
        let worded = doc
            .value_sets
            .iter()
            .filter(|(_, vs)| !vs.words.is_empty())
            .map(|(name, vs)| Worded {
                words: vs.words.iter().map(|w| w.to_lowercase()).collect(),
                except: vs.except_words.iter().map(|w| w.to_lowercase()).collect(),
                not_within: vs.not_within.iter().map(|w| w.to_lowercase()).collect(),
                readers: doc
                    .facts
                    .values()
                    .enumerate()
                    .flat_map(|(f, b)| {
                        b.sources.iter().enumerate().filter_map(move |(i, s)| {
                            (matches!(
                                s.record,
                                crate::model::RecordKind::Order
                                    | crate::model::RecordKind::Condition
                            ) && s.value_sets.contains(name))
                            .then_some((f, i, s.record, s.present))
                        })
                    })
                    .collect(),
            })
            .collect();
        let mut red_flag_facts = std::collections::HashSet::new();
        for r in &doc.red_flags {
            facts_of(&r.when, &mut |f| {
                if let Some(i) = doc.facts.keys().position(|k| k == f) {
                    red_flag_facts.insert(i);
                }
            });
        }
        Ok(RuleSet {
            red_flag_facts,
            worded,
            doc,
            content_hash,
            codes,
            episode,
            index,
            yes,
            no,
            units,
            sides,
            alone,
            components,
        })
    }

    pub fn reference(&self) -> RuleSetRef {
        RuleSetRef {
            id: self.doc.id.clone(),
            url: self.doc.url.clone(),
            version: self.doc.version,
            content_hash: self.content_hash.clone(),
        }
    }

    /// `url|version`, as FHIR's `instantiatesCanonical` wants it.
    pub fn canonical(&self) -> String {
        format!("{}|{}", self.doc.url, self.doc.version)
    }

    pub fn episode_binding(&self) -> &FactBinding {
        &self.doc.facts[&self.doc.applicability.episode_fact]
    }

    /// The episode fact's number in `doc.facts` order (the numbering `readers` uses).
    pub(crate) fn episode_index(&self) -> usize {
        self.episode
    }

    /// The side a record names by its code or its body site: both sides, or one named
    /// bilateral, is bilateral.
    pub fn side_of(&self, r: &Record) -> Option<crate::model::Side> {
        use crate::model::Side;
        let mut found: Option<Side> = None;
        for c in r.codes.iter().chain(&r.sites) {
            if let Some(s) = self.sides.get(c) {
                found = Some(match found {
                    None => *s,
                    Some(f) if f == *s => f,
                    Some(_) => Side::Bilateral,
                });
            }
        }
        found
    }

    /// Whether a fact reads a Patient's coded values (its gender) beside its birth date.
    pub fn reads_patient_codes(&self) -> bool {
        self.doc.facts.values().any(|b| {
            b.sources
                .iter()
                .any(|s| s.record == crate::model::RecordKind::Patient && s.answers.is_some())
        })
    }

    /// Whether any fact reads this code (an order of it concerns the guideline).
    pub fn reads_code(&self, c: &Code) -> bool {
        self.index.contains_key(c)
    }

    /// The codes of the imaging that evaluates a red flag (its `cleared_by` fact's sources):
    /// studies of the region the red flags concern. Empty when the rule set names none.
    pub fn imaging_codes(&self) -> Vec<&Code> {
        let mut out: Vec<&Code> = self.imaging_sources().flat_map(|s| &s.resolved).collect();
        out.sort();
        out.dedup();
        out
    }

    /// Whether imaging of these body sites and these (lowercased) words is of another region
    /// than every region the red flags' imaging names (`site_in` of their `cleared_by`
    /// sources): an ankle study coded for any lower-limb joint answers no knee red flag.
    /// False where the rule set names no region.
    pub fn imaging_elsewhere(&self, sites: &[Code], text: Option<&str>) -> bool {
        let mut regions = self
            .imaging_sources()
            .filter_map(|s| s.resolved_region.as_ref())
            .peekable();
        regions.peek().is_some() && regions.all(|g| g.excludes_parts(sites, text).is_some())
    }

    /// The sources of the facts that clear a red flag (`cleared_by`): the imaging it asks for.
    fn imaging_sources(&self) -> impl Iterator<Item = &crate::model::FactSource> + '_ {
        self.doc
            .red_flags
            .iter()
            .filter_map(|r| r.cleared_by.as_ref())
            .filter_map(|f| self.doc.facts.get(f))
            .flat_map(|b| &b.sources)
    }

    /// Whether red flags are decided on this fact (numbered in `doc.facts` order).
    pub(crate) fn decides_red_flags(&self, fact: usize) -> bool {
        self.red_flag_facts.contains(&fact)
    }

    /// The (fact, source) pairs that read an order or a diagnosis by its words (`words` of a
    /// value set), for one none of whose codes a fact reads.
    pub(crate) fn word_readers<'a>(
        &'a self,
        text: &'a str,
        kind: crate::model::RecordKind,
        coded: bool,
    ) -> impl Iterator<Item = (usize, usize)> + 'a {
        // A coded diagnosis keeps its clinician's words only for the symptoms a source reads
        // as present (night pain on the problem list): its code decides what it is, so a code
        // left out of the triggers on purpose is not let back in by its text (D74, D86).
        let diagnosis = kind == crate::model::RecordKind::Condition && coded;
        self.worded
            .iter()
            .filter(move |w| {
                w.words.iter().any(|p| says_outside(text, p, &w.not_within))
                    && !w.except.iter().any(|p| says(text, p))
            })
            .flat_map(move |w| {
                w.readers
                    .iter()
                    .filter(move |r| r.2 == kind && (!diagnosis || r.3))
                    .map(|&(fact, source, _, _)| (fact, source))
            })
    }

    /// The (fact, source) pairs that read a record carrying `codes` (facts numbered in
    /// `doc.facts` order), or `None` when no fact reads any of them. Pairs may repeat when
    /// several of the codes match one source.
    pub(crate) fn readers<'s>(
        &'s self,
        codes: &'s [Code],
    ) -> Option<impl Iterator<Item = (usize, usize)> + 's> {
        let mut hits = codes.iter().filter_map(|c| self.index.get(c)).peekable();
        hits.peek()?;
        Some(hits.flatten().copied())
    }

    /// Whether a fact reads an Observation carrying `code` by its own value: a panel's
    /// component so coded is a finding of its own (`panels`).
    pub(crate) fn reads_alone(&self, code: &Code) -> bool {
        self.alone.contains(code)
    }

    /// The component codes a fact reads of a record coded `record`, if any.
    pub(crate) fn components_read(&self, record: &Code) -> Option<&[Code]> {
        self.components.get(record).map(Vec::as_slice)
    }

    /// The system and code an `alias#code` of this rule set names (any it checked at load).
    pub fn code(&self, pattern: &str) -> Option<&Code> {
        self.codes.get(pattern)
    }

    /// The coded imaging orders `rule` (a red flag's id) suggests, in the order offered; empty
    /// when it suggests none or an uncoded one.
    pub fn imaging_orders(&self, rule: &str) -> Vec<&crate::model::ImagingOrder> {
        let Some(r) = self.doc.red_flags.iter().find(|r| r.id == rule) else {
            return Vec::new();
        };
        r.imaging
            .iter()
            .filter_map(|id| self.doc.imaging_orders.iter().find(|o| &o.id == id))
            .collect()
    }

    /// The code that names a fact (its first source's first code), e.g. for a Goal's measure.
    pub fn fact_code(&self, fact: &str) -> Option<&Code> {
        let src = self.doc.facts.get(fact)?.sources.first()?;
        match src.component.as_ref().or(src.codes.first()) {
            Some(p) => self.codes.get(p),
            None => src.resolved.first(),
        }
    }

    /// Whether this rule set reads values in the UCUM unit `unit` (or, with `ucum_terms_read`,
    /// a UCUM term of one unit it reads).
    pub fn reads_unit(&self, unit: &str) -> bool {
        let listed = |u: &str| self.units.iter().any(|x| x == u);
        listed(unit)
            || (self.doc.data_quality.ucum_terms_read
                && crate::units::base_of(unit).is_some_and(listed))
    }

    /// Every `alias#code` a value set expands to, or `None` for an unknown name.
    pub fn value_set_codes(&self, name: &str) -> Option<Vec<String>> {
        self.doc.value_sets.get(name).map(|v| v.expand())
    }

    /// Whether any fact reads records of `kind` (without listing their codes).
    pub fn reads(&self, kind: crate::model::RecordKind) -> bool {
        self.doc
            .facts
            .values()
            .flat_map(|b| &b.sources)
            .any(|s| s.record == kind)
    }

    /// Every code read from records of one kind, sorted: what a FHIR search must ask for.
    pub fn codes_read(&self, kind: crate::model::RecordKind) -> Vec<&Code> {
        let mut out: Vec<&Code> = self
            .doc
            .facts
            .values()
            .flat_map(|b| b.sources.iter())
            .filter(|s| s.record == kind)
            .flat_map(|s| s.resolved.iter())
            .collect();
        out.sort();
        out.dedup();
        out
    }

    /// Every decision id the rule set can produce, phases first.
    pub fn decision_ids(&self) -> Vec<&str> {
        let d = &self.doc;
        d.phases
            .iter()
            .map(|p| p.id.as_str())
            .chain([HOLD_FOR_EVALUATION, INSUFFICIENT_DATA])
            .chain(
                d.red_flags
                    .iter()
                    .chain(&d.warnings)
                    .chain(&d.pitfalls)
                    .map(|r| r.id.as_str()),
            )
            .collect()
    }

    /// The red flag or pitfall with this decision id (what a card about an undecided rule
    /// names).
    pub fn flag_or_pitfall(&self, id: &str) -> Option<&crate::model::Rule> {
        let d = &self.doc;
        d.red_flags.iter().chain(&d.pitfalls).find(|r| r.id == id)
    }
}

fn resolve_codes(doc: &RuleSetDoc, problems: &mut Vec<String>) -> HashMap<String, Code> {
    let mut out = HashMap::new();
    // Shape problems found beside the code lookups, added once `add` is done with `problems`.
    let mut shape = Vec::new();
    let mut add = |pattern: &str, place: &str| {
        let Some((alias, code)) = pattern.split_once('#') else {
            problems.push(format!("{place}: code `{pattern}` is not `alias#code`"));
            return;
        };
        match doc.systems.get(alias) {
            Some(system) => {
                out.insert(
                    pattern.to_owned(),
                    Code {
                        system: system.clone(),
                        code: code.to_owned(),
                    },
                );
            }
            None => problems.push(format!("{place}: unknown code system alias `{alias}`")),
        }
    };
    for (name, vs) in &doc.value_sets {
        for c in vs.expand() {
            add(&c, &format!("value_sets.{name}"));
        }
        for s in &vs.stems {
            let code = s.stem.split_once('#').map_or("", |(_, c)| c);
            if code.len() < 5 || code.len() > 7 || code.as_bytes().get(3) != Some(&b'.') {
                shape.push(format!(
                    "value_sets.{name}: stem `{}` is not an ICD-10-CM code with a dot after 3 characters and room for a 7th",
                    s.stem
                ));
            }
            if s.extensions.is_empty() || s.extensions.iter().any(|e| e.len() != 1) {
                shape.push(format!(
                    "value_sets.{name}: stem `{}` needs single-character extensions",
                    s.stem
                ));
            }
        }
    }
    if let Some(a) = &doc.answers {
        for c in a.yes.iter().chain(&a.no) {
            add(c, "answers");
        }
    }
    for o in &doc.imaging_orders {
        add(&o.code, &format!("imaging_orders.{}", o.id));
        if let Some(site) = &o.body_site {
            add(&site.code, &format!("imaging_orders.{}.body_site", o.id));
        }
    }
    for (name, b) in &doc.facts {
        for s in &b.sources {
            if s.codes.is_empty() && s.value_sets.is_empty() {
                shape.push(format!("facts.{name}: a source needs codes or value_sets"));
            }
            for v in s.value_sets.iter().chain(&s.site_in) {
                if !doc.value_sets.contains_key(v) {
                    shape.push(format!("facts.{name}: unknown value set `{v}`"));
                }
            }
            for c in &s.codes {
                add(c, &format!("facts.{name}"));
            }
            if let Some(c) = &s.component {
                add(c, &format!("facts.{name}.component"));
            }
            if let Some(a) = &s.answers {
                for c in a.yes.iter().chain(&a.no) {
                    add(c, &format!("facts.{name}.answers"));
                }
            }
        }
    }
    problems.extend(shape);
    out
}

/// Patient wording for every phase or none, each citation a listed source.
fn check_patient_words(doc: &RuleSetDoc, problems: &mut Vec<String>) {
    // Patient wording for some phases and not others would leave a take-home plan without
    // its words: all or none, and every citation a listed source.
    if let Some(words) = &doc.patient {
        for p in doc.phases.iter().filter(|p| p.patient.is_none()) {
            problems.push(format!(
                "phase {}: the rule set has patient wording, this phase has none",
                p.id
            ));
        }
        let texts = doc
            .phases
            .iter()
            .filter_map(|p| p.patient.as_ref().map(|t| (p.id.as_str(), t)))
            .chain([
                ("patient.hold", &words.hold),
                ("patient.insufficient_data", &words.insufficient_data),
            ]);
        for (at, t) in texts {
            for n in t
                .cite
                .iter()
                .filter(|n| !doc.sources.iter().any(|s| s.n == **n))
            {
                problems.push(format!("{at}: patient wording cites unknown source {n}"));
            }
        }
    } else if let Some(p) = doc.phases.iter().find(|p| p.patient.is_some()) {
        problems.push(format!(
            "phase {}: patient wording without the rule set's `patient` (stop rules, hold)",
            p.id
        ));
    }
}

/// Every name a part of the rule set gives of another (a value set, a fact) is defined, and
/// the source options that need another are set with it.
fn check_references(doc: &RuleSetDoc, problems: &mut Vec<String>) {
    let app = &doc.applicability;
    for (side, sets) in &app.sides {
        for v in sets.iter().filter(|v| !doc.value_sets.contains_key(*v)) {
            problems.push(format!(
                "applicability.sides.{side:?}: unknown value set `{v}`"
            ));
        }
    }
    for r in &doc.red_flags {
        if let Some(f) = r
            .cleared_by
            .as_ref()
            .filter(|f| !doc.facts.contains_key(*f))
        {
            problems.push(format!(
                "red flag {}: cleared_by names unknown fact `{f}`",
                r.id
            ));
        }
    }
    for r in doc
        .red_flags
        .iter()
        .chain(&doc.warnings)
        .chain(&doc.pitfalls)
    {
        if let Some(j) = &r.judged_when {
            if !doc.facts.contains_key(&j.fact) {
                problems.push(format!(
                    "{}: judged_when names unknown fact `{}`",
                    r.id, j.fact
                ));
            }
            if !(1..=366).contains(&j.days) {
                problems.push(format!(
                    "{}: judged_when.days must be 1 to 366, not {}",
                    r.id, j.days
                ));
            }
        }
    }
    for (name, b) in &doc.facts {
        if let Some(e) = b
            .ended_by
            .as_ref()
            .filter(|e| !doc.facts.contains_key(&e.fact))
        {
            problems.push(format!(
                "facts.{name}: ended_by names unknown fact `{}`",
                e.fact
            ));
        }
        for (i, src) in b.sources.iter().enumerate() {
            if src.site_named && src.site_in.is_none() {
                problems.push(format!(
                    "facts.{name}.sources[{i}]: site_named needs site_in (the region whose structures it names)"
                ));
            }
        }
        // An unrecorded component stands in as "does not match": only a run reads that.
        for (i, src) in b.sources.iter().enumerate() {
            if src.unrecorded_ends
                && (src.component.is_none()
                    || b.aggregation != crate::model::Aggregation::ConsecutiveRecords)
            {
                problems.push(format!(
                    "facts.{name}.sources[{i}]: unrecorded_ends needs a component and the consecutive-records aggregation"
                ));
            }
        }
    }
}

/// A fact's window names phases of the rule set.
fn check_windows(doc: &RuleSetDoc, problems: &mut Vec<String>) {
    for (name, b) in &doc.facts {
        for p in b
            .window
            .from_entry_of
            .iter()
            .chain(&b.window.before_entry_of)
        {
            if !doc.phases.iter().any(|ph| ph.id == *p) {
                problems.push(format!("facts.{name}.window: `{p}` is not a phase"));
            }
        }
    }
}

/// Units Stride converts, and the applicability's day parameters in days.
fn check_units_and_days(doc: &RuleSetDoc, problems: &mut Vec<String>) {
    let app = &doc.applicability;
    for u in doc.units.iter().flatten() {
        if !units::is_known(u) {
            problems.push(format!("units: `{u}` is not a UCUM unit Stride converts"));
        }
    }
    if let Some(p) = &app.new_injury_after {
        match doc.parameters.get(p) {
            Some(param) if param.unit == "d" => {}
            Some(_) => problems.push(format!(
                "applicability.new_injury_after: `{p}` must be in d"
            )),
            None => problems.push(format!(
                "applicability.new_injury_after: unknown parameter `{p}`"
            )),
        }
    }
    if let Some(st) = &app.stale {
        for p in [&st.after_days, &st.recent_days] {
            match doc.parameters.get(p) {
                Some(param) if param.unit == "d" => {}
                Some(_) => problems.push(format!("applicability.stale: `{p}` must be in d")),
                None => problems.push(format!("applicability.stale: unknown parameter `{p}`")),
            }
        }
    }
}

/// A fact's plausible range and unit: low ≤ high with a unit, a unit Stride converts, a
/// canonical unit for every number.
fn check_fact_values(doc: &RuleSetDoc, problems: &mut Vec<String>) {
    for (name, b) in &doc.facts {
        if let Some([lo, hi]) = b.plausible {
            // Not `lo > hi`: a NaN bound must fail too.
            if lo.partial_cmp(&hi).is_none_or(|o| o.is_gt()) || b.unit.is_none() {
                problems.push(format!(
                    "facts.{name}: plausible needs low ≤ high and a unit to be in"
                ));
            }
        }
        if let Some(u) = &b.unit {
            if !units::is_known(u) {
                problems.push(format!(
                    "facts.{name}: unit `{u}` is not a UCUM unit Stride converts"
                ));
            }
        }
        if b.kind == ValueKind::Number && b.needs_value() && b.unit.is_none() {
            problems.push(format!("facts.{name}: a number needs a canonical unit"));
        }
    }
}

fn check(doc: &RuleSetDoc, problems: &mut Vec<String>) {
    check_patient_words(doc, problems);
    check_references(doc, problems);
    let app = &doc.applicability;
    let mut fact_names: BTreeSet<&str> = doc.facts.keys().map(String::as_str).collect();
    if !doc.facts.contains_key(&app.episode_fact) {
        problems.push(format!(
            "applicability: episode fact `{}` is not defined",
            app.episode_fact
        ));
    }
    if !fact_names.insert(app.elapsed_fact.as_str()) {
        problems.push(format!(
            "applicability: elapsed fact `{}` clashes with a bound fact",
            app.elapsed_fact
        ));
    }

    check_windows(doc, problems);
    check_units_and_days(doc, problems);
    check_fact_values(doc, problems);
    let phase_ids: Vec<&str> = doc.phases.iter().map(|p| p.id.as_str()).collect();
    let mut outcome_ids: BTreeSet<&str> = phase_ids.iter().copied().collect();
    outcome_ids.extend([HOLD_FOR_EVALUATION, INSUFFICIENT_DATA]);
    let sources: BTreeSet<u32> = doc.sources.iter().map(|s| s.n).collect();
    let ctx = Ctx {
        doc,
        facts: &fact_names,
        outcomes: &outcome_ids,
        sources: &sources,
    };

    let mut ids = BTreeSet::new();
    let mut rule_ids = BTreeSet::new();
    for id in phase_ids
        .iter()
        .copied()
        .chain([HOLD_FOR_EVALUATION, INSUFFICIENT_DATA])
    {
        if !ids.insert(id) {
            problems.push(format!("duplicate decision id `{id}`"));
        }
    }
    for (group, rules) in [
        ("red_flags", &doc.red_flags),
        ("warnings", &doc.warnings),
        ("pitfalls", &doc.pitfalls),
        ("phase_notes", &doc.phase_notes),
    ] {
        for r in rules {
            let place = format!("{group}.{}", r.id);
            if !ids.insert(r.id.as_str()) {
                problems.push(format!("duplicate decision id `{}`", r.id));
            }
            if !rule_ids.insert(r.rule.as_str()) {
                problems.push(format!("{place}: duplicate rule id `{}`", r.rule));
            }
            ctx.criterion(&r.when, &place, problems);
            ctx.cites(&r.card.cite, &place, problems);
            for v in &r.variants {
                ctx.criterion(&v.when, &place, problems);
                ctx.cites(&v.card.cite, &place, problems);
            }
            if r.card.summary.chars().count() > 140 {
                problems.push(format!("{place}: card summary is over 140 characters"));
            }
            if !r.imaging.is_empty() && (group != "red_flags" || !r.suggest_imaging) {
                problems.push(format!(
                    "{place}: `imaging` names orders only for a red flag with suggest_imaging"
                ));
            }
            for id in &r.imaging {
                if !doc.imaging_orders.iter().any(|o| &o.id == id) {
                    problems.push(format!("{place}: unknown imaging order `{id}`"));
                }
            }
        }
    }
    let mut order_ids = BTreeSet::new();
    for o in &doc.imaging_orders {
        let place = format!("imaging_orders.{}", o.id);
        if !order_ids.insert(o.id.as_str()) {
            problems.push(format!("{place}: duplicate imaging order id"));
        }
        ctx.cites(&o.cite, &place, problems);
        if !doc.red_flags.iter().any(|r| r.imaging.contains(&o.id)) {
            problems.push(format!("{place}: no red flag suggests it"));
        }
    }

    for (i, p) in doc.phases.iter().enumerate() {
        let place = format!("phases.{}", p.id);
        if !rule_ids.insert(p.rule.as_str()) {
            problems.push(format!("{place}: duplicate rule id `{}`", p.rule));
        }
        let last = i + 1 == doc.phases.len();
        match (&p.exit, last) {
            (None, false) => problems.push(format!(
                "{place}: has no exit criteria, so phase `{}` is unreachable",
                doc.phases[i + 1].id
            )),
            (Some(_), true) => {
                problems.push(format!("{place}: the last phase cannot have an exit"))
            }
            _ => {}
        }
        for c in p.exit.iter().chain(&p.beyond_evidence) {
            ctx.criterion(c, &place, problems);
        }
        ctx.cites(&p.card.cite, &place, problems);
        for a in &p.activities {
            ctx.activity(a, &place, &mut rule_ids, problems);
        }
    }
    for a in &doc.rehab {
        ctx.activity(a, "rehab", &mut rule_ids, problems);
    }
    ctx.criterion(&doc.regression.when, "regression.when", problems);
    ctx.criterion(&doc.regression.resolved, "regression.resolved", problems);
    if let Some(c) = &doc.regression.current {
        ctx.criterion(c, "regression.current", problems);
    }
    ctx.cites(&doc.regression.card.cite, "regression", problems);
    ctx.cites(&doc.insufficient_data.cite, "insufficient_data", problems);
    for (name, p) in &doc.parameters {
        ctx.cites(&p.cite, &format!("parameters.{name}"), problems);
        if p.threshold().is_none() {
            problems.push(format!(
                "parameters.{name}: needs a value, a range or a gate"
            ));
        }
        if let (Some([lo, hi]), Some(g)) = (p.range, p.gate) {
            if g < lo || g > hi {
                problems.push(format!(
                    "parameters.{name}: gate {g} is outside its range {lo}–{hi}"
                ));
            }
        }
    }
}

struct Ctx<'a> {
    doc: &'a RuleSetDoc,
    facts: &'a BTreeSet<&'a str>,
    outcomes: &'a BTreeSet<&'a str>,
    sources: &'a BTreeSet<u32>,
}

impl Ctx<'_> {
    fn criterion(&self, c: &Criterion, place: &str, problems: &mut Vec<String>) {
        match c {
            Criterion::All { all: cs } | Criterion::Any { any: cs } => {
                if cs.is_empty() {
                    problems.push(format!("{place}: an empty all/any decides nothing"));
                }
                cs.iter().for_each(|c| self.criterion(c, place, problems));
            }
            Criterion::Not { not } => self.criterion(not, place, problems),
            Criterion::PhaseIn { phase_in } => {
                for p in phase_in {
                    if !self.outcomes.contains(p.as_str()) {
                        problems.push(format!("{place}: unknown phase `{p}`"));
                    }
                }
            }
            Criterion::Compare(cmp) => {
                for f in std::iter::once(&cmp.fact).chain(&cmp.percent_of) {
                    if !self.facts.contains(f.as_str()) {
                        problems.push(format!("{place}: unknown fact `{f}`"));
                    }
                }
                match (&cmp.param, &cmp.value) {
                    (Some(p), None) => match self.doc.parameters.get(p) {
                        None => problems.push(format!("{place}: unknown parameter `{p}`")),
                        Some(param) => self.param_unit(cmp.fact.as_str(), cmp.percent_of.is_some(), &param.unit, place, problems),
                    },
                    (None, Some(v)) if v.is_number() || v.is_boolean() => {
                        if cmp.percent_of.is_some() {
                            problems.push(format!("{place}: percent_of needs a parameter"));
                        }
                    }
                    _ => problems.push(format!(
                        "{place}: comparison on `{}` needs exactly one of param or a number/boolean value",
                        cmp.fact
                    )),
                }
            }
        }
    }

    /// A parameter compared with a fact must be convertible to the fact's unit.
    fn param_unit(
        &self,
        fact: &str,
        percent: bool,
        unit: &str,
        place: &str,
        problems: &mut Vec<String>,
    ) {
        if percent {
            if unit != "%" {
                problems.push(format!("{place}: percent_of needs a parameter in %"));
            }
            return;
        }
        let fact_unit = if fact == self.doc.applicability.elapsed_fact {
            Some("d")
        } else {
            self.doc.facts.get(fact).and_then(|b| b.output_unit())
        };
        if let Some(fu) = fact_unit {
            if fu != unit && units::convert(1.0, unit, fu).is_none() {
                problems.push(format!(
                    "{place}: parameter unit `{unit}` cannot be compared with `{fact}` in `{fu}`"
                ));
            }
        }
    }

    fn cites(&self, cites: &[u32], place: &str, problems: &mut Vec<String>) {
        for n in cites {
            if !self.sources.contains(n) {
                problems.push(format!("{place}: cites source {n}, which is not listed"));
            }
        }
    }

    fn activity<'b>(
        &self,
        a: &'b Activity,
        place: &str,
        rule_ids: &mut BTreeSet<&'b str>,
        problems: &mut Vec<String>,
    ) {
        let place = format!("{place}.activities.{}", a.id);
        if !rule_ids.insert(a.rule.as_str()) {
            problems.push(format!("{place}: duplicate rule id `{}`", a.rule));
        }
        self.cites(&a.cite, &place, problems);
        if let Some(c) = &a.only_if {
            self.criterion(c, &place, problems);
        }
        if let Some(d) = &a.dosing {
            let named = [
                &d.run_interval,
                &d.walk_interval,
                &d.pace,
                &d.duration,
                &d.distance_increase,
                &d.speed_work_after,
            ];
            for p in named.into_iter().flatten() {
                if !self.doc.parameters.contains_key(p) {
                    problems.push(format!("{place}: dosing names unknown parameter `{p}`"));
                }
            }
        }
    }
}
