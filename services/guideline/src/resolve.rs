//! Records → named fact values, following the rule set's bindings (codes, units, windows,
//! aggregation). A fact that cannot be known is `None` with the reason, never a default.

use std::collections::{BTreeMap, BTreeSet};

use time::Date;

use crate::decision::{Ignored, Sources};
use crate::facts::{Facts, Record, Value};
use crate::model::{Aggregation, DataQuality, FactBinding, FactSource, RecordKind, ValueKind};
use crate::ruleset::RuleSet;
use crate::units;

/// One resolved fact: its value (numbers, booleans as 1/0, dates as days since the epoch),
/// the records it rests on, and why it is unknown when it is.
#[derive(Debug, Clone, PartialEq)]
pub struct FactValue {
    pub value: Option<f64>,
    pub unit: Option<String>,
    pub sources: Sources,
    pub reason: Option<String>,
    /// The distinct values of a same-day conflict (value unknown): a red flag may fire on the
    /// one that fires it (`red_flag_conflicts_positive`).
    pub alternatives: Vec<f64>,
    /// Values of preliminary records, with their sources: shown, never counted.
    pub preliminary: Vec<(f64, String)>,
}

impl FactValue {
    fn known(value: f64, unit: Option<String>, sources: impl Into<Sources>) -> Self {
        FactValue {
            value: Some(value),
            unit,
            sources: sources.into(),
            reason: None,
            alternatives: Vec::new(),
            preliminary: Vec::new(),
        }
    }

    fn unknown(reason: impl Into<String>, sources: impl Into<Sources>) -> Self {
        FactValue {
            value: None,
            unit: None,
            sources: sources.into(),
            reason: Some(reason.into()),
            alternatives: Vec::new(),
            preliminary: Vec::new(),
        }
    }
}

/// Keyed by the rule set's own fact names (borrowed: a table lives for one evaluation).
#[derive(Clone)]
pub struct FactTable<'r> {
    pub values: BTreeMap<&'r str, FactValue>,
    pub onset: Option<Date>,
    pub applies: bool,
    pub ignored: Vec<Ignored>,
    /// The day of the newest Observation that gave any fact a value: how recent the data are.
    pub newest_observation: Option<Date>,
    /// The approved phase (rule sets with `approved_phase_holds`): index into the phases, and
    /// the approved plan.
    pub approved: Option<(usize, crate::facts::PhaseState)>,
}

/// A record value after status, date and unit checks, ready to aggregate.
#[derive(Debug, Clone)]
struct Point<'a> {
    date: Date,
    value: f64,
    source: &'a str,
    /// `amended` or `corrected`: supersedes a `final` record of the same day.
    correction: bool,
    /// Read through `absent_means` (a finding recorded absent standing for a number): a record
    /// of the number itself on the same day says more, and wins.
    stand_in: bool,
}

/// One fact source reading one record (the fact numbered in `doc.facts` order).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Hit {
    fact: usize,
    /// A preliminary Observation: shown when it would fire a red flag, never counted.
    preliminary: bool,
    /// Index in `Facts::records`.
    record: usize,
    /// Index in the fact's sources.
    source: usize,
    /// Counts and is dated within the as-of day (else it only opens the episode).
    usable: bool,
}

/// What one record says for one fact source.
enum Read {
    Value(f64),
    /// Nothing for this fact here (e.g. a session without the component read).
    Nothing,
    /// The record carries no value at all (`dataAbsentReason`, no `value[x]`).
    NoValue,
    /// A value that cannot be used (unit, type, plausibility), and why.
    Bad(String),
}

/// Why a fact with no usable record is unknown, in the words a card shows.
pub const NOT_RECORDED: &str = "not recorded";

const OBSERVATION_COUNTS: &[&str] = &["final", "amended", "corrected"];
const CONDITION_ACTIVE: &[&str] = &["active", "recurrence", "relapse"];
const ORDER_COUNTS: &[&str] = &["draft", "active", "on-hold"];

fn status_counts(r: &Record) -> bool {
    let listed = |allowed: &[&str]| r.status.as_deref().is_some_and(|s| allowed.contains(&s));
    match r.kind {
        // A Patient has no status: its record is its birth date.
        RecordKind::Patient => true,
        RecordKind::Observation => listed(OBSERVATION_COUNTS),
        RecordKind::Condition => listed(CONDITION_ACTIVE),
        RecordKind::Order => listed(ORDER_COUNTS),
    }
}

pub fn resolve<'r>(rs: &'r RuleSet, facts: &Facts, as_of: Date) -> FactTable<'r> {
    let mut ignored = Vec::new();
    let mut noted: BTreeSet<(String, String)> = BTreeSet::new();
    let mut ignore = |source: &str, reason: String, ignored: &mut Vec<Ignored>| {
        if noted.insert((source.to_owned(), reason.clone())) {
            ignored.push(Ignored {
                source: source.to_owned(),
                reason,
            });
        }
    };

    // Records that count at all: right status, dated, not in the future. Each record is
    // looked up once in the rule set's code index; the hits say which fact sources read it.
    let dq = &rs.doc.data_quality;
    let mut hits: Vec<Hit> = Vec::with_capacity(facts.records.len() + facts.records.len() / 2);
    for (record, r) in facts.records.iter().enumerate() {
        let Some(readers) = rs.readers(&r.codes) else {
            continue;
        };
        let dated_now = r.date.is_some_and(|d| d <= as_of);
        // Preliminary Observations, kept aside: shown when they would fire a red flag.
        let preliminary = dq.preliminary_red_flags_shown
            && r.kind == RecordKind::Observation
            && r.status.as_deref() == Some("preliminary")
            && dated_now;
        let counts = status_counts(r);
        let usable = if !counts {
            let st = r.status.as_deref().unwrap_or("missing");
            ignore(
                &r.source,
                format!("status `{st}` does not count"),
                &mut ignored,
            );
            false
        } else {
            match r.date {
                None if r.kind != RecordKind::Order => {
                    ignore(
                        &r.source,
                        "no date: cannot be placed in time".into(),
                        &mut ignored,
                    );
                    false
                }
                Some(d) if d > as_of => {
                    ignore(
                        &r.source,
                        format!("dated {d}, after the as-of day {as_of}"),
                        &mut ignored,
                    );
                    false
                }
                _ => true,
            }
        };
        // Records that count but are out of time still open the episode (or say why its
        // onset is unknown).
        if counts || preliminary {
            hits.extend(readers.map(|(fact, source)| Hit {
                fact,
                preliminary,
                record,
                source,
                usable,
            }));
        }
    }
    // By fact, then record, then source: the order the records were sent in, so traces and
    // reasons do not depend on the index. A record with two codes of one source is one hit.
    hits.sort_unstable();
    hits.dedup();
    let of_fact = |f: usize| {
        let start = hits.partition_point(|h| h.fact < f);
        let end = hits.partition_point(|h| h.fact <= f);
        let all = &hits[start..end];
        all.split_at(all.partition_point(|h| !h.preliminary))
    };

    // The episode: latest onset among active trigger Conditions.
    let episode = rs.episode_binding();
    let mut applies = false;
    let mut onset: Option<Date> = None;
    let mut onset_sources = Vec::new();
    // Why the onset is unknown; stays None while no episode is found (said below).
    let mut onset_reason: Option<String> = None;
    for h in of_fact(rs.episode_index()).0 {
        let (r, src) = (&facts.records[h.record], &episode.sources[h.source]);
        if r.kind != src.record {
            continue;
        }
        applies = true;
        onset_sources.push(r.source.clone());
        match r.date {
            Some(d) if d <= as_of => {
                // Latest onset (1.0.0), or the earliest: a diagnosis added or refined
                // later in the same episode does not restart it.
                let replaces = if dq.episode_onset_earliest {
                    onset.is_none_or(|o| d < o)
                } else {
                    onset.is_none_or(|o| d > o)
                };
                if replaces {
                    onset = Some(d);
                }
            }
            Some(_) => {
                onset_reason.get_or_insert_with(|| "onset in the future".into());
            }
            None => {
                onset_reason.get_or_insert_with(|| "onset not recorded".into());
            }
        }
    }
    if onset.is_some() {
        onset_reason = None;
    } else if !applies {
        onset_reason = Some("no active episode".to_owned());
    }

    let mut values = BTreeMap::new();
    let episode_value = match onset {
        Some(d) => FactValue::known(day_number(d), Some("d".into()), onset_sources.clone()),
        None => FactValue::unknown(
            onset_reason.clone().unwrap_or_default(),
            onset_sources.clone(),
        ),
    };
    values.insert(rs.doc.applicability.episode_fact.as_str(), episode_value);
    let elapsed = match onset {
        Some(d) => FactValue::known(
            (as_of - d).whole_days() as f64,
            Some("d".into()),
            onset_sources,
        ),
        None => FactValue::unknown(onset_reason.unwrap_or_default(), onset_sources),
    };
    values.insert(rs.doc.applicability.elapsed_fact.as_str(), elapsed);

    // An approved plan counts for a phase of this rule set, approved on or before the as-of
    // day; anything else is reported, never guessed into a phase.
    let approved = match &facts.phase_state {
        Some(ps) if dq.approved_phase_holds => {
            match rs.doc.phases.iter().position(|p| p.id == ps.phase) {
                // A plan approved before this episode began is another episode's.
                Some(_) if onset.is_some_and(|o| ps.since < o) => {
                    ignore(
                        &ps.source,
                        "approved before this episode began".into(),
                        &mut ignored,
                    );
                    None
                }
                Some(i) if ps.since <= as_of => Some((i, ps.clone())),
                Some(_) => {
                    ignore(
                        &ps.source,
                        format!("approved after the as-of day {as_of}"),
                        &mut ignored,
                    );
                    None
                }
                None => {
                    ignore(
                        &ps.source,
                        format!(
                            "approved phase `{}` is not a phase of this rule set",
                            ps.phase
                        ),
                        &mut ignored,
                    );
                    None
                }
            }
        }
        _ => None,
    };
    let anchors = Anchors {
        onset,
        entry: approved.as_ref().map(|(i, ps)| (*i, ps.since)),
        phases: &rs.doc.phases,
    };

    // The newest day an Observation gave a value (a value-less record is no recent data).
    let mut newest_observation: Option<Date> = None;
    for (f, (name, binding)) in rs.doc.facts.iter().enumerate() {
        if f == rs.episode_index() {
            continue;
        }
        let (counted, preliminary) = of_fact(f);
        let mut points = Vec::new();
        let mut bad: Vec<(String, String, Date)> = Vec::new();
        for h in counted.iter().filter(|h| h.usable) {
            let (r, src) = (&facts.records[h.record], &binding.sources[h.source]);
            if r.kind != src.record {
                continue;
            }
            // A draft order is about today.
            let Some(date) = r.date.or((r.kind == RecordKind::Order).then_some(as_of)) else {
                continue;
            };
            if !in_window(binding, date, &anchors, as_of) {
                continue;
            }
            match read_value(rs, binding, src, r) {
                Read::Value(v) => {
                    if r.kind == RecordKind::Observation {
                        newest_observation = newest_observation.max(Some(date));
                    }
                    points.push(Point {
                        date,
                        value: v,
                        source: &r.source,
                        correction: is_correction(r),
                        stand_in: src.absent_means.is_some(),
                    })
                }
                Read::Nothing => {}
                // No evidence is not evidence: it never supersedes an earlier value.
                Read::NoValue if dq.value_less_ignored => ignore(
                    &r.source,
                    format!(
                        "{}: no value recorded, not evidence either way",
                        binding.text
                    ),
                    &mut ignored,
                ),
                Read::NoValue => bad.push((r.source.clone(), "no value".into(), date)),
                Read::Bad(reason) => bad.push((r.source.clone(), reason, date)),
            }
        }
        let mut prelim_values = Vec::new();
        for h in preliminary {
            let (r, src) = (&facts.records[h.record], &binding.sources[h.source]);
            if r.kind != src.record {
                continue;
            }
            let Some(date) = r.date else { continue };
            if !in_window(binding, date, &anchors, as_of) {
                continue;
            }
            if let Read::Value(v) = read_value(rs, binding, src, r) {
                prelim_values.push((v, r.source.clone()));
            }
        }
        // Clinical words on the card ("Extent of focal tenderness: …"); the fact id stays in
        // the trace.
        for (source, reason, _) in &bad {
            ignore(source, format!("{}: {reason}", binding.text), &mut ignored);
        }
        let mut fv = aggregate(binding, dq, &mut points, as_of);
        fv.preliminary = prelim_values;
        // Finite inputs can still sum to infinity; an infinite or NaN value is not a fact.
        if fv.value.is_some_and(|v| !v.is_finite()) {
            fv = FactValue::unknown("not a finite number", fv.sources);
        }
        // A record that cannot be read (unknown unit, wrong type) makes the fact unknown: the
        // other records must not stand in for it, or an older value would hide a newer finding.
        // Only a newer readable record supersedes it (`latest`), and a trend looks at its two
        // periods only.
        let blocking: Vec<&(String, String, Date)> = bad
            .iter()
            .filter(|(_, _, d)| match binding.aggregation {
                Aggregation::Latest => points.last().is_none_or(|p| *d >= p.date),
                Aggregation::Trend | Aggregation::StepUp => {
                    (as_of - *d).whole_days() < 2 * i64::from(binding.period_days.unwrap_or(7))
                }
                _ => true,
            })
            .collect();
        if let Some((_, reason, _)) = blocking.first() {
            fv = FactValue::unknown(
                reason.clone(),
                blocking
                    .iter()
                    .map(|(s, _, _)| s.clone())
                    .collect::<Vec<_>>(),
            );
        }
        if fv.value.is_none()
            && fv
                .reason
                .as_deref()
                .is_some_and(|r| r.starts_with("contradictory"))
        {
            for source in fv.sources.iter() {
                ignore(
                    source,
                    format!(
                        "{}: {}",
                        binding.text,
                        fv.reason.as_deref().unwrap_or_default()
                    ),
                    &mut ignored,
                );
            }
        }
        if fv.value.is_some() {
            fv.unit = binding.output_unit().map(str::to_owned);
        }
        values.insert(name.as_str(), fv);
    }

    FactTable {
        values,
        onset,
        applies,
        ignored,
        newest_observation,
        approved,
    }
}

fn is_correction(r: &Record) -> bool {
    matches!(r.status.as_deref(), Some("amended" | "corrected"))
}

fn day_number(d: Date) -> f64 {
    d.to_julian_day() as f64
}

/// What a window is measured from: the episode's onset and, with an approved plan, the phase
/// staff placed the patient in and the day they did.
struct Anchors<'a> {
    onset: Option<Date>,
    entry: Option<(usize, Date)>,
    phases: &'a [crate::model::Phase],
}

impl Anchors<'_> {
    fn phase(&self, id: &str) -> Option<usize> {
        self.phases.iter().position(|p| p.id == id)
    }
}

fn in_window(b: &FactBinding, date: Date, at: &Anchors<'_>, as_of: Date) -> bool {
    let w = &b.window;
    if let Some(max_age) = w.max_age_days {
        if (as_of - date).whole_days() > max_age {
            return false;
        }
    }
    if b.baseline {
        return true;
    }
    if let (Some(p), Some((phase, since))) = (&w.before_entry_of, at.entry) {
        if at.phase(p).is_some_and(|e| phase >= e) && date >= since {
            return false;
        }
    }
    if let (Some(p), Some((phase, since))) = (&w.from_entry_of, at.entry) {
        if at.phase(p) == Some(phase) {
            return date >= since;
        }
    }
    let onset = at.onset;
    if let (Some(o), Some(max)) = (onset, w.max_days_after_onset) {
        if date > o + time::Duration::days(max) {
            return false;
        }
    }
    match onset {
        // Facts from before the episode describe another episode.
        Some(o) => date >= o + time::Duration::days(w.min_days_after_onset.unwrap_or(0)),
        None => w.min_days_after_onset.is_none(),
    }
}

/// What the record says for this fact, in the binding's kind and unit.
fn read_value(rs: &RuleSet, b: &FactBinding, src: &FactSource, r: &Record) -> Read {
    if !b.needs_value() {
        return Read::Value(1.0);
    }
    if src.value_from_date {
        return r.date.map_or(Read::Nothing, |d| Read::Value(day_number(d)));
    }
    let value = match &src.resolved_component {
        Some(code) => match r.components.iter().find(|c| c.codes.contains(code)) {
            Some(c) => c.value.as_ref(),
            None => return Read::Nothing,
        },
        None => r.value.as_ref(),
    };
    let Some(value) = value else {
        return Read::NoValue;
    };
    // A finding recorded absent stands for a number (no tenderness: extent 0); recorded
    // present, it says nothing about the number.
    if let Some(absent) = src.absent_means {
        return match boolean(rs, value) {
            Ok(false) => Read::Value(absent),
            Ok(true) => Read::Nothing,
            Err(e) => Read::Bad(e),
        };
    }
    let read = match b.kind {
        ValueKind::Number | ValueKind::Date => number(rs, b, value),
        ValueKind::Boolean => boolean(rs, value).map(|v| if v { 1.0 } else { 0.0 }),
    };
    match read {
        Ok(v) => match b.plausible {
            Some([lo, hi]) if !(lo..=hi).contains(&v) => Read::Bad(format!(
                "{} {} is outside the plausible range {lo}–{hi}",
                round(v),
                b.unit.as_deref().unwrap_or_default()
            )),
            _ => Read::Value(v),
        },
        Err(e) => Read::Bad(e),
    }
}

/// A number as a trace shows it (no float noise from unit conversion).
fn round(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

fn number(rs: &RuleSet, b: &FactBinding, value: &Value) -> Result<f64, String> {
    let canonical = b.unit.as_deref().unwrap_or("1");
    let v = match value {
        // An integer is read in the fact's own unit only where that unit is not a guess:
        // scores, counts of days, percentages. A bare 45 for a length or a duration could be
        // mm or cm, min or h: unknown.
        Value::Integer(i) if units::unitless_ok(canonical) || matches!(canonical, "d" | "%") => {
            *i as f64
        }
        Value::Integer(_) => return Err(format!("integer without a unit (needs {canonical})")),
        Value::Quantity { value, unit } => match unit.as_deref() {
            None | Some("") if units::unitless_ok(canonical) => *value,
            None | Some("") => return Err(format!("quantity without a unit (needs {canonical})")),
            Some(u) if !rs.reads_unit(u) => {
                return Err(format!("unit `{u}` cannot be converted to {canonical}"))
            }
            Some(u) => units::convert(*value, u, canonical)
                .ok_or_else(|| format!("unit `{u}` cannot be converted to {canonical}"))?,
        },
        Value::Boolean(_) | Value::Coded(_) => {
            return Err(format!("expected a number in {canonical}"))
        }
    };
    if !v.is_finite() {
        return Err("not a finite number".into());
    }
    Ok(v)
}

fn boolean(rs: &RuleSet, value: &Value) -> Result<bool, String> {
    match value {
        Value::Boolean(b) => Ok(*b),
        // Findings recorded as a 0–10 score: any pain is present.
        Value::Integer(i) => Ok(*i > 0),
        Value::Quantity { value, .. } if value.is_finite() => Ok(*value > 0.0),
        Value::Coded(codes) => {
            let yes = codes.iter().any(|c| rs.yes.contains(c));
            let no = codes.iter().any(|c| rs.no.contains(c));
            match (yes, no) {
                (true, false) => Ok(true),
                (false, true) => Ok(false),
                _ => Err("coded answer is neither yes nor no".into()),
            }
        }
        Value::Quantity { .. } => Err("not a finite number".into()),
    }
}

fn aggregate(
    b: &FactBinding,
    dq: &DataQuality,
    points: &mut Vec<Point<'_>>,
    as_of: Date,
) -> FactValue {
    // Oldest first; ties broken by source so the result never depends on input order.
    points.sort_by(|a, b| a.date.cmp(&b.date).then_with(|| a.source.cmp(b.source)));
    // A measured value outranks a stand-in of the same day (an extent of 5 cm beside
    // "localized tenderness absent" is a measured, non-focal tenderness, not a conflict).
    // (Only facts with a stand-in source pay for it: evaluate runs on every hook call.)
    if points.iter().any(|p| p.stand_in) {
        let measured: BTreeSet<Date> = points
            .iter()
            .filter(|p| !p.stand_in)
            .map(|p| p.date)
            .collect();
        points.retain(|p| !p.stand_in || !measured.contains(&p.date));
    }
    // A correction supersedes the record it corrects: on a day with an amended or corrected
    // record, the day's other records are the ones corrected. Only for facts that hold one
    // value per day; sessions and counts keep every record of the day.
    if dq.corrections_supersede
        && matches!(
            b.aggregation,
            Aggregation::Latest | Aggregation::ConsecutiveDays
        )
        && points.iter().any(|p| p.correction)
    {
        let corrected: BTreeSet<Date> = points
            .iter()
            .filter(|p| p.correction)
            .map(|p| p.date)
            .collect();
        points.retain(|p| p.correction || !corrected.contains(&p.date));
    }
    let limited: &[Point<'_>] = match b.first_n {
        Some(n) => &points[..points.len().min(n as usize)],
        None => points,
    };
    let srcs = |ps: &[Point<'_>]| ps.iter().map(|p| p.source.to_owned()).collect::<Vec<_>>();
    let matches = |p: &Point<'_>| {
        b.matching
            .as_ref()
            .is_none_or(|m| m.op.holds(p.value, m.value))
    };
    let unit = b.unit.clone();

    match b.aggregation {
        Aggregation::Latest => {
            let Some(last) = points.last() else {
                return FactValue::unknown(NOT_RECORDED, vec![]);
            };
            let same_day: Vec<&Point<'_>> = points.iter().filter(|p| p.date == last.date).collect();
            let first = same_day[0].value;
            let sources: Vec<String> = same_day.iter().map(|p| p.source.to_owned()).collect();
            if same_day.iter().any(|p| (p.value - first).abs() > 1e-9) {
                let mut fv =
                    FactValue::unknown(format!("contradictory records on {}", last.date), sources);
                let mut alternatives: Vec<f64> = same_day.iter().map(|p| p.value).collect();
                alternatives.sort_by(f64::total_cmp);
                alternatives.dedup_by(|a, b| (*a - *b).abs() <= 1e-9);
                fv.alternatives = alternatives;
                return fv;
            }
            FactValue::known(first, unit, sources)
        }
        Aggregation::Max => match limited.iter().map(|p| p.value).reduce(f64::max) {
            Some(m) => FactValue::known(m, unit, srcs(limited)),
            None => FactValue::unknown(NOT_RECORDED, vec![]),
        },
        Aggregation::Min => match limited.iter().map(|p| p.value).reduce(f64::min) {
            Some(m) => FactValue::known(m, unit, srcs(limited)),
            None => FactValue::unknown(NOT_RECORDED, vec![]),
        },
        Aggregation::Sum => {
            // No record in the window means nothing was done: a known zero.
            FactValue::known(points.iter().map(|p| p.value).sum(), unit, srcs(points))
        }
        Aggregation::Count => {
            let hits: Vec<Point<'_>> = points.iter().filter(|p| matches(p)).cloned().collect();
            FactValue::known(hits.len() as f64, Some("1".into()), srcs(&hits))
        }
        Aggregation::Exists => {
            let hits: Vec<Point<'_>> = points.iter().filter(|p| matches(p)).cloned().collect();
            FactValue::known(if hits.is_empty() { 0.0 } else { 1.0 }, None, srcs(&hits))
        }
        Aggregation::ConsecutiveDays => {
            let Some(last) = points.last() else {
                return FactValue::unknown(NOT_RECORDED, vec![]);
            };
            // Points are sorted by day: walk the days backwards once, each day's records
            // together (linear in the number of records).
            let mut day = last.date;
            let mut run = 0i64;
            let mut used = Vec::new();
            let mut end = points.len();
            while end > 0 && points[end - 1].date == day {
                let start = points[..end]
                    .iter()
                    .rposition(|p| p.date != day)
                    .map_or(0, |i| i + 1);
                let on_day = &points[start..end];
                if !on_day.iter().all(&matches) {
                    break;
                }
                run += 1;
                used.extend(on_day.iter().map(|p| p.source.to_owned()));
                end = start;
                day = match day.previous_day() {
                    Some(d) => d,
                    None => break,
                };
            }
            if run == 0 {
                used = srcs(&points[points.len() - 1..]);
            }
            FactValue::known(run as f64, Some("d".into()), used)
        }
        Aggregation::ConsecutiveRecords => {
            if points.is_empty() {
                return FactValue::unknown(NOT_RECORDED, vec![]);
            }
            let run: Vec<Point<'_>> = points
                .iter()
                .rev()
                .take_while(|p| matches(p))
                .cloned()
                .collect();
            FactValue::known(run.len() as f64, Some("1".into()), srcs(&run))
        }
        Aggregation::AdjacentDays => {
            let days: BTreeSet<Date> = points.iter().map(|p| p.date).collect();
            let pair = days
                .iter()
                .zip(days.iter().skip(1))
                .find(|(a, b)| (**b - **a).whole_days() == 1);
            match pair {
                Some((a, b)) => {
                    let used = points
                        .iter()
                        .filter(|p| p.date == *a || p.date == *b)
                        .cloned()
                        .collect::<Vec<_>>();
                    FactValue::known(1.0, None, srcs(&used))
                }
                None => FactValue::known(0.0, None, srcs(points)),
            }
        }
        Aggregation::Trend => {
            let period = i64::from(b.period_days.unwrap_or(7));
            let age = |p: &Point<'_>| (as_of - p.date).whole_days();
            let recent: f64 = points
                .iter()
                .filter(|p| age(p) < period)
                .map(|p| p.value)
                .sum();
            let before: f64 = points
                .iter()
                .filter(|p| (period..2 * period).contains(&age(p)))
                .map(|p| p.value)
                .sum();
            if before <= 0.0 {
                return FactValue::unknown("no earlier period to compare with", srcs(points));
            }
            FactValue::known(
                (recent - before) / before * 100.0,
                Some("%".into()),
                srcs(points),
            )
        }
        Aggregation::StepUp => {
            if points.is_empty() {
                return FactValue::unknown(NOT_RECORDED, vec![]);
            }
            // Each run against the longest run of the `period_days` before its day; the largest
            // rise counts (a run that doubled is a jump even if later runs held).
            let period = i64::from(b.period_days.unwrap_or(7));
            let mut rise = 0.0f64;
            let mut used = Vec::new();
            for p in points.iter() {
                let prev = points
                    .iter()
                    .filter(|q| q.date < p.date && (p.date - q.date).whole_days() <= period)
                    .map(|q| q.value)
                    .reduce(f64::max);
                if let Some(prev) = prev.filter(|v| *v > 0.0) {
                    let r = (p.value - prev) / prev * 100.0;
                    if r > rise {
                        rise = r;
                        used = vec![p.source.to_owned()];
                    }
                }
            }
            FactValue::known(rise, Some("%".into()), used)
        }
        Aggregation::Age => {
            let Some(last) = points.last() else {
                return FactValue::unknown(NOT_RECORDED, vec![]);
            };
            let born = last.date;
            let mut years = i64::from(as_of.year() - born.year());
            if (as_of.month() as u8, as_of.day()) < (born.month() as u8, born.day()) {
                years -= 1;
            }
            FactValue::known(years as f64, Some("a".into()), vec![last.source.to_owned()])
        }
        Aggregation::Decrease => {
            let (Some(first), Some(last)) = (points.first(), points.last()) else {
                return FactValue::unknown(NOT_RECORDED, vec![]);
            };
            FactValue::known(
                first.value - last.value,
                unit,
                vec![first.source.to_owned(), last.source.to_owned()],
            )
        }
    }
}

/// Every value `fact` reads from `facts` up to `as_of`, day by day, in the fact's unit: the raw
/// series behind an aggregate (for charts), with the engine's own status, date and unit rules
/// but no window. Records that cannot be read are left out; `resolve` reports them.
pub fn series(rs: &RuleSet, facts: &Facts, fact: &str, as_of: Date) -> Vec<(Date, f64)> {
    let Some(b) = rs.doc.facts.get(fact) else {
        return Vec::new();
    };
    let mut points: Vec<(Date, f64)> = facts
        .records
        .iter()
        .filter(|r| status_counts(r))
        .filter_map(|r| r.date.filter(|d| *d <= as_of).map(|d| (d, r)))
        .flat_map(|(d, r)| {
            b.sources
                .iter()
                .filter(|src| r.kind == src.record && src.matches(&r.codes))
                .filter_map(move |src| match read_value(rs, b, src, r) {
                    Read::Value(v) => Some((d, v)),
                    _ => None,
                })
        })
        .collect();
    points.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.total_cmp(&b.1)));
    points
}
