//! The rule-set file format, as Rust types. The YAML is checked against
//! `schemas/guideline.schema.json` before it is deserialised into these.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use time::Date;

use crate::facts::Code;
use crate::version::RuleSetVersion;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleSetDoc {
    pub id: String,
    pub url: String,
    pub version: RuleSetVersion,
    pub status: Status,
    pub effective: Period,
    pub title: String,
    pub description: String,
    /// Code system of the decision ids (`source.topic` on cards, `CarePlan.category`).
    pub decision_system: String,
    /// Code system of the guideline's local fact codes.
    pub local_system: String,
    pub sources: Vec<Source>,
    /// Short names for code systems, used as `alias#code` in bindings.
    pub systems: BTreeMap<String, String>,
    pub parameters: BTreeMap<String, Parameter>,
    pub facts: BTreeMap<String, FactBinding>,
    pub applicability: Applicability,
    pub red_flags: Vec<Rule>,
    /// Coded imaging orders the red flags suggest (`Rule::imaging`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub imaging_orders: Vec<ImagingOrder>,
    #[serde(default)]
    pub warnings: Vec<Rule>,
    pub phases: Vec<Phase>,
    pub regression: Regression,
    pub pitfalls: Vec<Rule>,
    /// Pitfalls the phase card names rather than a card of their own: their ids are not
    /// decision ids (the CONTRACT vocabulary is fixed), so they are told where the phase is.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub phase_notes: Vec<Rule>,
    pub rehab: Vec<Activity>,
    pub insufficient_data: CardText,
    #[serde(default)]
    pub hold: Option<CardText>,
    /// The take-home plan's wording. Rule sets before 1.0.2 have none: their plans have no
    /// patient page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patient: Option<PatientWords>,
    /// Named sets of codes (explicit codes and ICD-10-CM stems with their 7th characters) that
    /// fact sources read by name: one place per clinical concept, checked against the code
    /// systems' own releases by the test suite.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub value_sets: BTreeMap<String, ValueSet>,
    /// Coded answers read as yes / no for boolean findings. Without it, SNOMED CT yes / no only
    /// (rule set 1.0.0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answers: Option<Answers>,
    /// The UCUM units this rule set reads. Without it, the metric units of rule set 1.0.0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub units: Option<Vec<String>>,
    /// How the engine treats messy records (value-less, corrected, conflicting, preliminary).
    /// Every switch is off in rule set 1.0.0, so its decisions replay unchanged.
    #[serde(default)]
    pub data_quality: DataQuality,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ValueSet {
    pub text: String,
    /// `alias#code` pairs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub codes: Vec<String>,
    /// ICD-10-CM categories that need a 7th character: `alias#stem` with the characters
    /// that complete it (A, D, S; fractures also G, K, P).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stems: Vec<Stem>,
    /// Phrases that name the concept in an order's own words ("return to running"), for an
    /// order that carries no code any fact reads: EHRs order programmes and activities by
    /// orderables of their own, or by text alone. Matched whole-word in the order's text.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub words: Vec<String>,
    /// Phrases that make such a text something else ("referral to sports medicine for a
    /// return to running" is a referral, not a running order).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub except_words: Vec<String>,
    /// Phrases inside which a word does not count, where the same word elsewhere in the text
    /// still does: "walk-run intervals" are the protocol's walk and run intervals, not speed
    /// work, but "walk-run intervals, then fartlek" orders speed work.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_within: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Stem {
    pub stem: String,
    pub extensions: Vec<String>,
}

impl ValueSet {
    /// Every `alias#code` the set holds: its codes, then each stem with each extension.
    pub fn expand(&self) -> Vec<String> {
        let mut out = self.codes.clone();
        for s in &self.stems {
            // A stem shorter than six characters after the dot takes placeholder X's first
            // (ICD-10-CM's rule for a 7th character on a short code).
            let (head, code) = s.stem.split_once('#').unwrap_or(("", &s.stem));
            let mut base = code.to_owned();
            while base.len() < 7 {
                base.push('X');
            }
            for e in &s.extensions {
                out.push(format!("{head}#{base}{e}"));
            }
        }
        out
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Answers {
    pub yes: Vec<String>,
    pub no: Vec<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DataQuality {
    /// A record without a value (`dataAbsentReason`, no `value[x]`) is left out and never
    /// supersedes an earlier value.
    pub value_less_ignored: bool,
    /// On one day, an `amended` or `corrected` record supersedes the `final` one it corrects.
    pub corrections_supersede: bool,
    /// Two different values of a red-flag finding on one day: the red flag fires on the
    /// reading that fires it, and the card names the conflict.
    pub red_flag_conflicts_positive: bool,
    /// A preliminary record that would fire a red flag is shown ("confirm"), never counted.
    pub preliminary_red_flags_shown: bool,
    /// No phase past the first while a red flag that applies is neither confirmed nor ruled
    /// out.
    pub red_flags_ruled_out_before_progression: bool,
    /// The episode starts at the earliest onset of the active trigger Conditions (a diagnosis
    /// refined during the episode does not restart it).
    pub episode_onset_earliest: bool,
    /// An approved plan's phase is where placement starts: the exits of the phases before it
    /// were judged by clinic staff, and are not asked for again.
    pub approved_phase_holds: bool,
    /// Episodes by body side (`applicability.sides`): a trigger Condition far older than the
    /// protocol (`applicability.stale`) does not date a newer one; a new episode of another
    /// side, a recurrence, or a new onset after an abatement starts the patient over in the
    /// first phase; an encounter diagnosis without a clinical status counts while recent.
    pub episodes_by_side: bool,
    /// A red flag that asks for imaging, once it fired in the episode, stays until imaging is
    /// recorded (`Rule::cleared_by`) or clinic staff approved a plan since: a later negative
    /// record alone leaves it "not evaluated".
    pub imaging_red_flags_stick: bool,
    /// A red-flag finding recorded in a form not read (free text, an unknown code, a wrong
    /// type) may be present: the red flag fires on that reading, and the card says why.
    pub unreadable_red_flags_possible: bool,
    /// Findings recorded as the components of a panel (a flowsheet group, an exam form) are
    /// read as records of their own, with the panel's date, status and body site.
    pub panel_components_read: bool,
    /// A Condition coded with a yes/no finding's own code (a problem-list entry or encounter
    /// diagnosis "bony tenderness", "pain at rest") is that finding present on its onset day,
    /// while active: every fact read by its latest Observation of a code reads Conditions of
    /// that code too (COVERAGE.md D106).
    pub findings_as_conditions: bool,
    /// A finding recorded for the other side than the episode the patient is placed by
    /// (`bodySite`) counts there only when it says more than "no": an exam of the uninjured
    /// knee does not clear the injured one; a finding present in either limb still counts.
    pub findings_by_side: bool,
    /// A value in UCUM's unity (`1`) where a percentage is read is a fraction: 0.84 is 84 %.
    pub fraction_as_percent: bool,
    /// A unit written as a UCUM term of one unit the rule set reads is that unit: a power of
    /// ten times it (`10*3.m`, a kilometre) or it annotated (`km{run}`) (COVERAGE D93).
    pub ucum_terms_read: bool,
    /// A trigger Condition marked ended (inactive, remission, resolved) is an episode again
    /// from the first day after it ended on which pain or a red-flag finding is recorded.
    pub ended_episode_reopens: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Draft,
    Active,
    Retired,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Period {
    pub start: Date,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end: Option<Date>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Source {
    /// The citation number used in the seed text (1-based).
    pub n: u32,
    pub kind: String,
    pub title: String,
    pub publisher: String,
    pub year: u16,
}

/// A threshold from the guideline. Where the seed gives a range, the range is kept and
/// `gate` says which end the engine enforces (the rest is the clinical target).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Parameter {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub range: Option<[f64; 2]>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gate: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tolerance: Option<f64>,
    pub unit: String,
    pub text: String,
    #[serde(default)]
    pub cite: Vec<u32>,
    /// `seed` when the source states it; `proposal` when the source is silent.
    pub basis: Basis,
}

impl FactBinding {
    /// The unit of the aggregated value, which for counts and runs is not the records' unit.
    pub fn output_unit(&self) -> Option<&str> {
        match self.aggregation {
            Aggregation::ConsecutiveDays => Some("d"),
            Aggregation::Count | Aggregation::ConsecutiveRecords => Some("1"),
            Aggregation::Exists | Aggregation::AdjacentDays => None,
            Aggregation::Trend | Aggregation::StepUp => Some("%"),
            _ => self.unit.as_deref(),
        }
    }

    /// Whether records must carry a readable value (a count of sessions needs none).
    pub fn needs_value(&self) -> bool {
        match self.aggregation {
            Aggregation::AdjacentDays => false,
            Aggregation::Count | Aggregation::Exists => self.matching.is_some(),
            _ => true,
        }
    }
}

impl Parameter {
    /// The number a criterion compares against: the gate of a range, else the value.
    pub fn threshold(&self) -> Option<f64> {
        self.gate
            .or(self.value)
            .or_else(|| self.range.map(|r| r[0]))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Basis {
    Seed,
    Proposal,
    /// From public material beyond the source guideline (cited; pending clinical governance).
    BeyondSource,
}

/// Where a fact comes from and how the matching records are reduced to one value.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FactBinding {
    pub text: String,
    pub sources: Vec<FactSource>,
    pub aggregation: Aggregation,
    /// Canonical UCUM unit for quantities; values are converted to it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
    pub kind: ValueKind,
    #[serde(default)]
    pub window: Window,
    /// Which value counts for `count`, `consecutive-days`, `consecutive-records`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub matching: Option<Matching>,
    /// For `trend`: the length of each of the two compared periods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub period_days: Option<u32>,
    /// For `step-up`: only runs of these last days are judged; the window reaches further
    /// back for what they are compared with, so a run after a week without running is
    /// compared with the last week that had runs (D90).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub judged_days: Option<u32>,
    /// For `trend`: the change is given per this many days, compounded (7: a weekly rate
    /// from two 14-day periods). Without it, the change between the two periods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_days: Option<u32>,
    /// For `max`: only the first N records of the window, oldest first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_n: Option<u32>,
    /// Baselines (pre-injury values) are read from before the episode too.
    #[serde(default)]
    pub baseline: bool,
    /// The range of believable values in `unit`; a value outside it is unknown, never used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plausible: Option<[f64; 2]>,
    /// A newer record of another fact that ends this one: a pain-free streak recorded as a
    /// count ends on a painful day recorded since (the value becomes 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_by: Option<EndedBy>,
    /// For `adjacent-days`: two records on one day count too (less than 24 hours apart).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub same_day: bool,
}

/// A body region as `FactSource::site_in` reads it, resolved when the rule set loads.
#[derive(Debug, Clone, Default)]
pub struct Region {
    pub codes: Vec<crate::facts::Code>,
    pub words: Vec<String>,
    pub others: Vec<String>,
}

impl Region {
    /// Why `r` is of another region, if it is: a body site none of the region's structures
    /// (or laterality), or words that name another region and not this one. A record that
    /// names no site and no region is taken as of the region, as before.
    pub fn excludes(&self, r: &crate::facts::Record) -> Option<&'static str> {
        self.excludes_parts(&r.sites, r.text.as_deref())
    }

    /// Whether a record's body sites name one of the region's structures.
    pub fn named_by(&self, r: &crate::facts::Record) -> bool {
        r.sites.iter().any(|c| self.codes.contains(c))
    }

    /// As `excludes`, for body sites and lowercased words given apart (a draft order).
    pub fn excludes_parts(
        &self,
        sites: &[crate::facts::Code],
        text: Option<&str>,
    ) -> Option<&'static str> {
        // Only sites in a system the region is written in say anything (a local site code
        // is not known to be elsewhere).
        let said: Vec<&crate::facts::Code> = sites
            .iter()
            .filter(|c| self.codes.iter().any(|k| k.system == c.system))
            .collect();
        if !said.is_empty() && !said.iter().any(|c| self.codes.contains(c)) {
            return Some("its body site is another region");
        }
        let text = text?;
        let says = |w: &String| crate::ruleset::says(text, w);
        (self.others.iter().any(says) && !self.words.iter().any(says))
            .then_some("its words name another region")
    }
}

/// Records of `fact` whose value meets `op value`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndedBy {
    pub fact: String,
    pub op: Op,
    pub value: f64,
    /// A breaking record dated within the days a count covers ends it too: a count of N
    /// pain-free days dated D says D-N+1..D were pain-free, and a painful day d among them
    /// leaves at most D-d (1.0.2, 1.1.1; earlier rule sets end a count only by a newer record).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub within_count: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FactSource {
    pub record: RecordKind,
    /// `alias#code` pairs; any one matches.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub codes: Vec<String>,
    /// Names of `value_sets` whose codes also match.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub value_sets: Vec<String>,
    /// A boolean finding recorded absent reads as this number (no tenderness: extent 0); one
    /// recorded present says nothing about the number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub absent_means: Option<f64>,
    /// Read this component (by `alias#code`) of the matched record instead of its value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub component: Option<String>,
    /// Read the record's date rather than its value (e.g. a Condition's onset).
    #[serde(default)]
    pub value_from_date: bool,
    /// A record of this source says the finding is there (yes, 1) on its date: a problem-list
    /// entry or an encounter diagnosis that names a symptom, read while it counts (active).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub present: bool,
    /// With `component`: a record without that component, or with no value in it, is one
    /// not known to match (a running session whose pain was not recorded is not a pain-free
    /// session), unless a record of the same day says (a pain score logged beside the
    /// session). It ends a `consecutive-records` run (1.0.2, 1.1.1; COVERAGE.md D81).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub unrecorded_ends: bool,
    /// A value set naming a body region (its codes the region's body structures and the
    /// laterality qualifiers, its words the region's names, its `except_words` other
    /// regions'): a record whose body site is none of those structures, or whose words name
    /// another region and not this one, is not read by this source. Imaging coded for "any
    /// joint of the lower extremity" of the ankle does not answer a knee red flag (D84).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub site_in: Option<String>,
    /// With `site_in`: only a record whose body site is one of the region's structures is
    /// read, not one that names none. A general finding says which one it is by its site:
    /// SNOMED CT's "Tenderness" over a bone is localized bony tenderness, tenderness anywhere
    /// else is not (D94).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub site_named: bool,
    #[serde(skip)]
    pub resolved_region: Option<Region>,
    /// A coded value read as yes or no by this source's own lists (e.g. a Patient's
    /// administrative gender): a code in `no` is no, one in `yes` is yes, and with `yes`
    /// empty any other code (or none) is yes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answers: Option<Answers>,
    #[serde(skip)]
    pub resolved_answers: Option<(Vec<Code>, Vec<Code>)>,
    /// `codes` and `component` as codes, filled in once when the rule set loads: records are
    /// matched against these for every fact on every call.
    #[serde(skip)]
    pub resolved: Vec<Code>,
    #[serde(skip)]
    pub resolved_component: Option<Code>,
}

impl FactSource {
    /// Whether a record (or component) carrying `codes` is what this source reads.
    pub fn matches(&self, codes: &[Code]) -> bool {
        self.resolved.iter().any(|want| codes.contains(want))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum RecordKind {
    Observation,
    Condition,
    Order,
    /// The Patient resource: its birth date, for an age.
    Patient,
    /// A result: a DiagnosticReport or an ImagingStudy (imaging done).
    Report,
    /// A clinician's recorded decision on a red flag: an override with a reason on its card.
    /// Its code is the decision id, in the rule set's decision system; its day, the override's.
    /// Read by no fact: it evaluates a red flag that stays until evaluated (`cleared_by`).
    Decision,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Aggregation {
    /// The value of the most recent record.
    Latest,
    Max,
    Min,
    Sum,
    /// How many records match `matching`.
    Count,
    /// Whether any record matches `matching`.
    Exists,
    /// Length of the run of consecutive calendar days, ending at the most recent record day,
    /// on which every record matches `matching`.
    ConsecutiveDays,
    /// Length of the run of most recent records that match `matching`.
    ConsecutiveRecords,
    /// Whether two records fall on adjacent calendar days.
    AdjacentDays,
    /// Percent change of the sum over the last `period_days` against the period before it.
    Trend,
    /// How much the value fell: the earliest value in the window minus the latest.
    Decrease,
    /// How far the latest day's highest value lies below the lowest value of the baseline: the
    /// first `period_days` days of the episode (unknown without a value there). Unlike
    /// `decrease`, more pain recorded on any day never makes it larger: the baseline is a
    /// stretch of the calendar, not the first record, so a high score added before the first
    /// one cannot become the baseline of a fall that was not measured.
    DecreaseFromBaseline,
    /// The largest percent rise of a record's value over the largest value of the records in
    /// the `period_days` before its day: each run against the runs before it. 0 when nothing
    /// came before (a first run is no jump).
    StepUp,
    /// Whole years from the latest record's day to the as-of day: an age from a birth date.
    Age,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ValueKind {
    Number,
    Boolean,
    Date,
}

/// Which records count, in days relative to the episode onset and to the as-of day.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Window {
    /// Only records on or after onset + this many days.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_days_after_onset: Option<i64>,
    /// Only records at most this many days old.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_age_days: Option<i64>,
    /// Only records on or before onset + this many days (e.g. the minimum rest).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_days_after_onset: Option<i64>,
    /// When the approved plan is in this phase, the window opens on its approval day instead
    /// of the onset bounds: staff said when the phase began (rule sets with
    /// `approved_phase_holds`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_entry_of: Option<String>,
    /// When the approved plan is in this phase or a later one, records from its approval day
    /// on are out: the patient had left the phases before it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before_entry_of: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Matching {
    pub op: Op,
    pub value: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Applicability {
    /// The fact that says an episode is active; its value is the onset date.
    pub episode_fact: String,
    /// Days since onset are exposed to criteria under this fact name.
    pub elapsed_fact: String,
    /// When an episode counts as stale (named on the card).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stale: Option<Staleness>,
    /// The value sets that name a side (a Condition's code or a record's body site):
    /// `right`, `left`, `bilateral` (`episodes_by_side`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub sides: BTreeMap<Side, Vec<String>>,
    /// A parameter in days: a trigger Condition of a side whose onset is more than this
    /// after that side's episode began is a new injury (the episode starts over in rest),
    /// not the diagnosis refined; the older course keeps its red flags (D85).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new_injury_after: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Side {
    Right,
    Left,
    Bilateral,
}

/// An episode older than `after_days` with no record of the last `recent_days`: a problem-list
/// entry left active, not a current episode. Both name parameters (in days).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Staleness {
    pub after_days: String,
    pub recent_days: String,
    pub note: String,
}

/// An imaging order a red flag suggests, coded so that an EHR can place it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImagingOrder {
    pub id: String,
    /// The order in words: the suggestion's label and the ServiceRequest's `code.text`.
    pub title: String,
    /// `alias#code` of the procedure (e.g. a LOINC imaging code) and its display.
    pub code: String,
    pub display: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_site: Option<CodedText>,
    /// What the order asks of the imaging department.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    pub cite: Vec<u32>,
}

/// An `alias#code` with its display.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CodedText {
    pub code: String,
    pub display: String,
}

/// A red flag, warning or pitfall: when `when` is met, the finding fires.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// Decision id (CONTRACT vocabulary): `source.topic` of the card.
    pub id: String,
    /// Stable rule id for traces and COVERAGE.md (e.g. RF-01).
    pub rule: String,
    pub severity: Severity,
    pub when: Criterion,
    #[serde(default)]
    pub suggest_imaging: bool,
    /// With `suggest_imaging`: the coded orders to offer (ids of `imaging_orders`), in the
    /// order offered. Without: one uncoded imaging order (the modality left to the clinician).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub imaging: Vec<String>,
    /// A red flag that can be neither confirmed nor ruled out keeps the patient where they are
    /// and is asked for (`red_flags_ruled_out_before_progression`). `false`: it holds when it
    /// fires, but its inputs are not demanded (findings EHRs do not yet record routinely).
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    pub rule_out: bool,
    /// What the rule looks for, in a few clinical words: named on the cards about it that are
    /// not its own (not ruled out, preliminary, could not be checked).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finding: Option<String>,
    /// A fact whose records (imaging done) clear the red flag when dated on or after the last
    /// day it fired (`imaging_red_flags_stick`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cleared_by: Option<String>,
    /// A pitfall about an act (a speed session) is also decided as it stood on the day of the
    /// act, not only by what came after it (COVERAGE D92).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub judged_when: Option<JudgedWhen>,
    pub card: CardText,
    /// Cards by what fired: the first variant whose `when` is met gives the finding its card
    /// (and severity), e.g. a DVT on record against signs of one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub variants: Vec<Variant>,
}

/// The days a rule is decided again (`Rule::judged_when`): each of the last `days` on which a
/// record of `fact` says more than "no" (a speed session recorded), as of that day. The rule
/// is found when it holds on any of them.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JudgedWhen {
    pub fact: String,
    pub days: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Variant {
    pub when: Criterion,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub severity: Option<Severity>,
    pub card: CardText,
}

impl Rule {
    /// The finding's clinical name; without one, the card's summary.
    pub fn finding_name(&self) -> &str {
        self.finding.as_deref().unwrap_or(&self.card.summary)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Info,
    Warning,
    Critical,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CardText {
    pub summary: String,
    pub detail: String,
    #[serde(default)]
    pub cite: Vec<u32>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Phase {
    pub id: String,
    pub rule: String,
    pub title: String,
    /// All must be met to leave this phase for the next one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit: Option<Criterion>,
    /// Evidence that the patient already acts as if past this phase (e.g. running).
    /// When it is met but the exit is unknown, the phase cannot be placed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub beyond_evidence: Option<Criterion>,
    pub activities: Vec<Activity>,
    pub card: CardText,
    /// The same phase in the patient's words (the take-home plan).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patient: Option<PatientText>,
}

/// What a patient reads about a phase: plain words, about a sixth-grade reading level, written
/// beside the clinical card so that both change together under one rule-set version.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PatientText {
    pub title: String,
    pub summary: String,
    #[serde(rename = "do")]
    pub to_do: Vec<String>,
    pub avoid: Vec<String>,
    /// The calendar's words for a session day and a rest day; which days are which follows
    /// the phase's activities (alternate days, daily).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub days: Option<PatientDays>,
    pub come_back: String,
    #[serde(default)]
    pub cite: Vec<u32>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PatientDays {
    pub session: String,
    pub rest: String,
}

/// The patient's wording beyond the phases: when to stop and call, and the two states the
/// engine decides itself.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PatientWords {
    pub stop: String,
    pub hold: PatientText,
    pub insufficient_data: PatientText,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Regression {
    pub rule: String,
    /// Pain during running: progression stops.
    pub when: Criterion,
    /// Symptoms completely resolved: resume one phase lower.
    pub resolved: Criterion,
    /// Pain now, whatever its context: a patient who would be placed past the first phase
    /// (an approved plan's phase included) goes back to it until `resolved` (never progress
    /// while experiencing any pain; regress instead).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current: Option<Criterion>,
    pub card: CardText,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Activity {
    pub id: String,
    pub rule: String,
    pub text: String,
    #[serde(default)]
    pub cite: Vec<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dosing: Option<Dosing>,
    /// Only prescribed when this holds (e.g. gait retraining with a heel strike).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub only_if: Option<Criterion>,
}

/// How an activity is dosed. Numbers name parameters so that a new version changes them
/// in one place.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Dosing {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_interval: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub walk_interval: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pace: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub distance_increase: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub speed_work_after: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frequency: Option<Frequency>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub surfaces: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub avoid: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Frequency {
    Daily,
    AlternateDays,
    None,
}

/// Structured criteria. Three-valued: a comparison over a missing fact is unknown.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(untagged, deny_unknown_fields)]
pub enum Criterion {
    All { all: Vec<Criterion> },
    Any { any: Vec<Criterion> },
    Not { not: Box<Criterion> },
    PhaseIn { phase_in: Vec<String> },
    Compare(Comparison),
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Comparison {
    /// Stable id of this check, e.g. EX1-1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub fact: String,
    pub op: Op,
    /// A parameter name ...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub param: Option<String>,
    /// ... or a literal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<serde_json::Value>,
    /// The threshold is `param` percent of this other fact.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub percent_of: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Op {
    Lt,
    Le,
    Gt,
    Ge,
    Eq,
    Ne,
}

impl Op {
    pub fn holds(self, a: f64, b: f64) -> bool {
        match self {
            Op::Lt => a < b,
            Op::Le => a <= b,
            Op::Gt => a > b,
            Op::Ge => a >= b,
            Op::Eq => (a - b).abs() < 1e-9,
            Op::Ne => (a - b).abs() >= 1e-9,
        }
    }

    pub fn symbol(self) -> &'static str {
        match self {
            Op::Lt => "<",
            Op::Le => "≤",
            Op::Gt => ">",
            Op::Ge => "≥",
            Op::Eq => "=",
            Op::Ne => "≠",
        }
    }
}

fn yes() -> bool {
    true
}

fn is_true(b: &bool) -> bool {
    *b
}
