//! Records → named fact values, following the rule set's bindings (codes, units, windows,
//! aggregation). A fact that cannot be known is `None` with the reason, never a default.

use std::collections::{BTreeMap, BTreeSet};

use time::Date;

use crate::bound::{End, Interval};
use crate::decision::{Ignored, Sources};
use crate::facts::{Facts, Record, Value};
use crate::model::{
    Aggregation, DataQuality, FactBinding, FactSource, RecordKind, Side, ValueKind,
};
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
    /// The distinct values of a same-day conflict (value unknown), or the fact read with and
    /// without records of the other side (value known): a red flag may fire on the one that
    /// fires it (`red_flag_conflicts_positive`).
    pub alternatives: Vec<f64>,
    /// The bounds among a same-day conflict's records (`< 3 cm` beside `> 10 cm`), each a
    /// possible reading as `alternatives` are.
    pub alternative_bounds: Vec<Interval>,
    /// Values of preliminary records, with their sources: shown, never counted.
    pub preliminary: Vec<(f64, String)>,
    /// With no value: what a bound (`< 5 cm`) says of it, decided in three-valued logic.
    pub bound: Option<Interval>,
    /// Its readings are those of records of one event that disagree (D101): every rule of
    /// caution (a red flag, a pitfall, regression) fires on any of them, in every rule set.
    pub one_event: bool,
}

impl FactValue {
    fn known(value: f64, unit: Option<String>, sources: impl Into<Sources>) -> Self {
        FactValue {
            value: Some(value),
            unit,
            sources: sources.into(),
            reason: None,
            alternatives: Vec::new(),
            alternative_bounds: Vec::new(),
            preliminary: Vec::new(),
            bound: None,
            one_event: false,
        }
    }

    /// `other`'s readings (its value or bound, and its possible readings) added to this
    /// value's possible readings, each once.
    fn admit(&mut self, other: &FactValue) {
        for v in other.value.iter().chain(&other.alternatives) {
            if !self.alternatives.contains(v) {
                self.alternatives.push(*v);
            }
        }
        for iv in other.bound.iter().chain(&other.alternative_bounds) {
            if !self.alternative_bounds.contains(iv) {
                self.alternative_bounds.push(*iv);
            }
        }
    }

    fn unknown(reason: impl Into<String>, sources: impl Into<Sources>) -> Self {
        FactValue {
            value: None,
            unit: None,
            sources: sources.into(),
            reason: Some(reason.into()),
            alternatives: Vec::new(),
            alternative_bounds: Vec::new(),
            preliminary: Vec::new(),
            bound: None,
            one_event: false,
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
    /// The open episodes, in clinical words, when there is more than one (`episodes_by_side`).
    pub episodes: Vec<String>,
    /// The start of the oldest open episode: its red flags stay in the history the card shows.
    pub episode_start: Option<Date>,
    /// Other open episodes of one side, besides the one the patient is placed by and the
    /// oldest: each one's red flags are read by its own side too (`resolve_by_side`).
    pub other_episodes: Vec<Look>,
    /// The side findings are read by: the episode's that places the patient, or the one a
    /// look reads (`findings_by_side`).
    pub placing_side: Option<Side>,
    /// Read for one episode on its own (`resolve_by_side`), not for the patient.
    pub one_episode: bool,
    /// The side of the oldest open episode (`episode_start`), when one side's.
    pub oldest_side: Option<Side>,
}

/// An open episode read on its own: its side, and the day it is read from (none for one
/// diagnosed without an onset).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Look {
    pub side: Side,
    pub from: Option<Date>,
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
    /// Known only as a bound (`value` is then its nearer end).
    bound: Option<Interval>,
    /// The first day a record over a range of days can mean (a birth year's 1 January).
    earliest: Option<Date>,
    /// The record's instant, when it has a time: records of one fact less than
    /// `ONE_EVENT` apart are one event (`events`).
    at: Option<time::OffsetDateTime>,
    /// The body sites it names: records of two sites are never one event.
    sites: &'a [crate::facts::Code],
    /// Half the last digit it was recorded to, in the fact's unit, when it was recorded in
    /// another unit (2.02 [mi_i] read in km: ±0.008); 0 in the fact's own unit.
    rounding: f64,
    /// Half the last digit of a measurement, in whatever unit (3.3 km: ±0.05); 0 for a score
    /// or a count, whose values are categories, not measurements.
    step: f64,
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
    /// Its status counts (dated within the as-of day, it is usable; else it only opens the
    /// episode).
    counts: bool,
}

/// The records matched to the fact sources that read them, once per call: a look back at an
/// earlier day (sticky red flags) reuses it instead of hashing every code and sorting again.
pub(crate) struct Prepared {
    hits: Vec<Hit>,
    /// Records some fact reads, and whether their status counts (for the notes of what was
    /// left out).
    pub(crate) relevant: Vec<(usize, bool)>,
    /// Trigger Conditions marked ended (inactive, in remission, resolved): an episode again
    /// when the record shows pain or a red-flag finding after they ended
    /// (`ended_episode_reopens`).
    ended: Vec<usize>,
}

impl Prepared {
    /// (fact, record, source) for each record whose status counts.
    pub(crate) fn counted(&self) -> impl Iterator<Item = (usize, usize, usize)> + '_ {
        self.hits
            .iter()
            .filter(|h| h.counts && !h.preliminary)
            .map(|h| (h.fact, h.record, h.source))
    }
}

pub(crate) fn prepare(rs: &RuleSet, facts: &Facts) -> Prepared {
    let dq = &rs.doc.data_quality;
    let mut hits: Vec<Hit> = Vec::with_capacity(facts.records.len() + facts.records.len() / 2);
    let mut relevant = Vec::with_capacity(facts.records.len());
    let mut ended = Vec::new();
    for (record, r) in facts.records.iter().enumerate() {
        let Some(readers) = rs.readers(&r.codes) else {
            // An order no fact reads by code may say what it orders in words, and a diagnosis
            // given in words only what it is (read by sources of its kind of record).
            if let Some(text) = &r.text {
                let counts = status_counts(r, dq);
                let mut read = rs
                    .word_readers(text, r.kind, !r.codes.is_empty())
                    .peekable();
                if read.peek().is_some() {
                    relevant.push((record, counts));
                    if counts {
                        hits.extend(read.map(|(fact, source)| Hit {
                            fact,
                            preliminary: false,
                            record,
                            source,
                            counts,
                        }));
                    }
                }
            }
            continue;
        };
        // Preliminary Observations, kept aside: shown when they would fire a red flag.
        let preliminary = dq.preliminary_red_flags_shown
            && r.kind == RecordKind::Observation
            && r.status.as_deref() == Some("preliminary");
        let counts = status_counts(r, dq);
        relevant.push((record, counts));
        if dq.ended_episode_reopens
            && r.kind == RecordKind::Condition
            && matches!(
                r.status.as_deref(),
                Some("inactive" | "remission" | "resolved")
            )
        {
            let episode = rs.episode_index();
            let mut of_episode = rs.readers(&r.codes).into_iter().flatten();
            if of_episode.any(|(fact, _)| fact == episode) {
                ended.push(record);
            }
        }
        // Records that count but are out of time still open the episode (or say why its
        // onset is unknown).
        if counts || preliminary {
            let before = hits.len();
            hits.extend(readers.map(|(fact, source)| Hit {
                fact,
                preliminary,
                record,
                source,
                counts,
            }));
            // An order read by its code may say more in its words: a running prescription
            // whose text is "track intervals at race pace" is speed work too. Its words are
            // read for the facts its codes do not already answer.
            if let (RecordKind::Order, Some(text)) = (r.kind, &r.text) {
                let coded: Vec<usize> = hits[before..].iter().map(|h| h.fact).collect();
                let worded: Vec<(usize, usize)> = rs
                    .word_readers(text, r.kind, false)
                    .filter(|(fact, _)| !coded.contains(fact))
                    .collect();
                hits.extend(worded.into_iter().map(|(fact, source)| Hit {
                    fact,
                    preliminary,
                    record,
                    source,
                    counts,
                }));
            }
        }
    }
    // By fact, then record, then source: the order the records were sent in, so traces and
    // reasons do not depend on the index. A record with two codes of one source is one hit.
    hits.sort_unstable();
    hits.dedup();
    Prepared {
        hits,
        relevant,
        ended,
    }
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
    /// A bound no believable value meets (`> 10` of a 0–10 score): unknown, and, as a value
    /// in a form not read, possibly any believable value.
    Beyond(String),
    /// A bound (`< 5 cm`) on a fact whose latest value is read: the interval it allows.
    Bound(Interval),
    /// The record is there and the component read is not (`unrecorded_ends`): not known to
    /// match, unless another record of its day says.
    Unrecorded,
}

/// The longest period a record over a period is spread over, day by day.
const MAX_PERIOD_DAYS: i64 = 366;

/// Why a fact with no usable record is unknown, in the words a card shows.
pub const NOT_RECORDED: &str = "not recorded";

const OBSERVATION_COUNTS: &[&str] = &["final", "amended", "corrected"];
const CONDITION_ACTIVE: &[&str] = &["active", "recurrence", "relapse"];
const ORDER_COUNTS: &[&str] = &["draft", "active", "on-hold"];
/// A result that stands (a report, an imaging study available, an order carried out).
const REPORT_COUNTS: &[&str] = &[
    "final",
    "amended",
    "corrected",
    "appended",
    "available",
    "completed",
];

fn status_counts(r: &Record, dq: &DataQuality) -> bool {
    let listed = |allowed: &[&str]| r.status.as_deref().is_some_and(|s| allowed.contains(&s));
    match r.kind {
        // A Patient has no status: its record is its birth date.
        RecordKind::Patient => true,
        RecordKind::Observation => listed(OBSERVATION_COUNTS),
        // An encounter diagnosis may come without a clinical status (FHIR allows it outside
        // the problem list): it counts, while recent (`episode_groups`).
        RecordKind::Condition => {
            listed(CONDITION_ACTIVE) || (dq.episodes_by_side && r.status.is_none())
        }
        RecordKind::Order => listed(ORDER_COUNTS),
        RecordKind::Report => listed(REPORT_COUNTS),
        RecordKind::Decision => true,
    }
}

/// Whether imaging (a record of the rule's `cleared_by` fact) or a plan approved by clinic
/// staff is dated from `since` to `as_of`: the red flag was evaluated.
pub(crate) fn cleared(
    rs: &RuleSet,
    facts: &Facts,
    rule: &crate::model::Rule,
    since: Date,
    as_of: Date,
) -> bool {
    let within = |d: Date| d >= since && d <= as_of;
    if facts
        .phase_state
        .as_ref()
        .is_some_and(|ps| within(ps.since))
    {
        return true;
    }
    // A clinician recorded a decision on this red flag since (an override with a reason).
    if facts.records.iter().any(|r| {
        r.kind == RecordKind::Decision
            && r.date.is_some_and(within)
            && r.codes
                .iter()
                .any(|c| c.code == rule.id && c.system == rs.doc.decision_system)
    }) {
        return true;
    }
    let Some(b) = rule.cleared_by.as_ref().and_then(|f| rs.doc.facts.get(f)) else {
        return false;
    };
    let dq = &rs.doc.data_quality;
    facts.records.iter().any(|r| {
        r.date.is_some_and(within)
            && status_counts(r, dq)
            && b.sources.iter().any(|s| {
                s.record == r.kind
                    && s.matches(&r.codes)
                    && s.resolved_region
                        .as_ref()
                        .is_none_or(|g| g.excludes(r).is_none())
            })
    })
}

/// Name, once per record, what does not count at all: a status that does not count, no date,
/// a date after the as-of day.
fn note_left_out(facts: &Facts, prepared: &Prepared, as_of: Date, notes: &mut Notes) {
    if notes.noting {
        for &(record, counts) in &prepared.relevant {
            let r = &facts.records[record];
            if !counts {
                let st = r.status.as_deref().unwrap_or("missing");
                notes.ignore(&r.source, format!("status `{st}` does not count"));
                continue;
            }
            match r.date {
                None if r.kind != RecordKind::Order => {
                    notes.ignore(&r.source, "no date: cannot be placed in time".into())
                }
                Some(d) if d > as_of => {
                    notes.ignore(&r.source, format!("dated {d}, after the as-of day {as_of}"))
                }
                _ => {}
            }
        }
    }
}

/// The patient's episode as the records tell it, before any other fact is read.
struct Episode {
    applies: bool,
    onset: Option<Date>,
    onset_sources: Vec<String>,
    /// Why the onset is unknown; None while no episode is found.
    onset_reason: Option<String>,
    /// The start of the oldest open episode (`episodes_by_side`).
    episode_start: Option<Date>,
    /// The side findings are read by (`findings_by_side`).
    placing_side: Option<Side>,
    /// The open episodes, in clinical words, when there is more than one.
    episodes: Vec<String>,
    /// Other open episodes of one side (`FactTable::other_episodes`).
    other_episodes: Vec<Look>,
    /// The side of the oldest open episode.
    oldest_side: Option<Side>,
}

/// The episode: the trigger Conditions (latest onset, or the earliest; by side where the rule
/// set groups episodes so), a problem marked ended that the record shows came back, and where
/// the look back at an older episode (`episode_from`) reads it from.
fn episode(
    rs: &RuleSet,
    facts: &Facts,
    prepared: &Prepared,
    as_of: Date,
    episode_from: Option<Date>,
    by_side: Option<Side>,
    notes: &mut Notes,
) -> Episode {
    let dq = &rs.doc.data_quality;
    let hits = &prepared.hits;
    // The episode: latest onset among active trigger Conditions (1.0.0), the earliest (1.0.1),
    // or the newest open episode by side (`episodes_by_side`).
    let episode = rs.episode_binding();
    let stale_after = rs
        .doc
        .applicability
        .stale
        .as_ref()
        .and_then(|st| rs.doc.parameters.get(&st.after_days))
        .and_then(|p| p.threshold())
        .map(|d| d as i64);
    let new_injury_after = rs
        .doc
        .applicability
        .new_injury_after
        .as_ref()
        .and_then(|p| rs.doc.parameters.get(p))
        .and_then(|p| p.threshold())
        .map(|d| d as i64);
    let mut applies = false;
    let mut onset: Option<Date> = None;
    let mut onset_sources = Vec::new();
    let mut triggers: Vec<Trigger<'_>> = Vec::new();
    // Why the onset is unknown; stays None while no episode is found (said below).
    let mut onset_reason: Option<String> = None;
    // The sides of open trigger Conditions without a usable onset.
    let mut undated_sides: Vec<Option<Side>> = Vec::new();
    for h in prepared.of_fact(rs.episode_index()).0 {
        let (r, src) = (&facts.records[h.record], &episode.sources[h.source]);
        if r.kind != src.record {
            continue;
        }
        // An encounter diagnosis without a clinical status is an open episode while recent.
        if dq.episodes_by_side && r.status.is_none() {
            let recent = match (r.date, stale_after) {
                (Some(d), Some(limit)) => (as_of - d).whole_days() <= limit,
                (Some(_), None) => true,
                (None, _) => false,
            };
            if !recent {
                notes.ignore(&r.source, "a diagnosis without a clinical status and without a recent onset: not an open episode".into());
                continue;
            }
        }
        applies = true;
        onset_sources.push(r.source.clone());
        match r.date {
            Some(d) if d <= as_of => {
                triggers.push(Trigger {
                    onset: d,
                    end: r.end.filter(|e| *e <= as_of),
                    recurrence: matches!(r.status.as_deref(), Some("recurrence" | "relapse")),
                    side: rs.side_of(r),
                    source: &r.source,
                });
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
                undated_sides.push(rs.side_of(r));
            }
            None => {
                onset_reason.get_or_insert_with(|| "onset not recorded".into());
                undated_sides.push(rs.side_of(r));
            }
        }
    }
    // A problem marked ended while the record goes on showing pain or a red-flag finding after
    // it: the pain came back, an episode from the first such day (the safe reading: rest
    // counts from there, and its red flags are read).
    for &i in &prepared.ended {
        let r = &facts.records[i];
        // An end after the as-of day (a last change stamped in the future) says nothing of
        // when it ended, as for the triggers above.
        let Some(since) = r.end.filter(|e| *e <= as_of).or(r.date) else {
            continue;
        };
        let ended_side = rs.side_of(r);
        // The first day of harm after the end, by the side it is of: pain of the other knee is
        // not this knee's pain come back (the property test found a left-knee score read as
        // the right knee's recurrence, and its baseline), but an episode of the other knee,
        // from that day (a review found the left knee's night pain otherwise not read at all).
        let mut back: BTreeMap<Option<Side>, (Date, &str)> = BTreeMap::new();
        for h in hits
            .iter()
            .filter(|h| h.counts && h.fact != rs.episode_index())
            .filter(|h| facts.records[h.record].kind == RecordKind::Observation)
        {
            let o = &facts.records[h.record];
            // Within the protocol's length of the end: pain months on is another matter.
            let near = |d: Date| stale_after.is_none_or(|limit| (d - since).whole_days() <= limit);
            let Some(day) = o.date.filter(|d| *d > since && *d <= as_of && near(*d)) else {
                continue;
            };
            let Some(b) = rs.doc.facts.values().nth(h.fact) else {
                continue;
            };
            // Read by a source of its own kind only: a diagnosis coded with a finding's code
            // is that finding present, an Observation "no" of the same code is not (the
            // independent cases 467 and 488 found the exam's "no rest pain" read as present).
            if b.sources[h.source].record != o.kind {
                continue;
            }
            // Pain (a 0–10 score above 0), or a red-flag finding present.
            // A score or finding in a form not read may be pain (D52), where the rule set
            // reads such records as possibly positive.
            let harmful = b.unit.as_deref() == Some("{score}")
                || (b.kind == crate::model::ValueKind::Boolean && rs.decides_red_flags(h.fact));
            let harm = harmful
                && match read_value(rs, b, &b.sources[h.source], o) {
                    Read::Value(v) => v > 0.0,
                    Read::Bad(_) => {
                        dq.unreadable_red_flags_possible && unread_form(&b.sources[h.source], o)
                    }
                    Read::Beyond(_) => dq.unreadable_red_flags_possible,
                    _ => false,
                };
            if !harm {
                continue;
            }
            let other = dq.findings_by_side
                && !o.sites.is_empty()
                && ended_side.is_some_and(|s| opposite(rs.side_of(o), s));
            let (side, source) = if other {
                (rs.side_of(o), o.source.as_str())
            } else {
                (ended_side, r.source.as_str())
            };
            let first = back.entry(side).or_insert((day, source));
            if (day, source) < *first {
                *first = (day, source);
            }
        }
        for (side, (day, source)) in back {
            applies = true;
            if !onset_sources.iter().any(|s| s == source) {
                onset_sources.push(source.to_owned());
            }
            triggers.push(Trigger {
                onset: day,
                end: None,
                recurrence: true,
                side,
                source,
            });
            if onset.is_none_or(|o| {
                if dq.episode_onset_earliest {
                    day < o
                } else {
                    day > o
                }
            }) {
                onset = Some(day);
            }
        }
    }
    // Read by one side (`resolve_by_side`): the episode as that knee's Conditions alone tell
    // it, so another knee's newer injury neither dates it nor places its findings.
    if let Some(side) = by_side {
        triggers.retain(|t| t.side == Some(side));
        if triggers.is_empty() {
            onset = None;
            onset_reason.get_or_insert_with(|| "onset not recorded".into());
        }
    }
    let mut episodes = Vec::new();
    let mut episode_start = None;
    let mut other_episodes = Vec::new();
    let mut oldest_side = None;
    let mut placing_side = None;
    if dq.episodes_by_side && !triggers.is_empty() {
        let open = episode_groups(
            &triggers,
            as_of,
            (stale_after, new_injury_after),
            &mut |source, reason| notes.ignore(source, reason),
        );
        onset = Some(episode_from.unwrap_or(open.onset));
        episode_start = Some(open.earliest);
        // Only a side a look can read by (a Condition of that side): an oldest episode dated
        // by a Condition of both knees has none, and is read from its start with the rest
        // (a review found its "no improvement" lost once that pass gave way to a look).
        oldest_side = open
            .earliest_side
            .filter(|s| *s != Side::Bilateral)
            .filter(|s| triggers.iter().any(|t| t.side == Some(*s)));
        // An open episode of one side that neither places the patient nor is the oldest (a
        // right knee's course between two injuries of the left) is read on its own too.
        if by_side.is_none() && episode_from.is_none() && dq.findings_by_side {
            for (side, from) in &open.looks {
                let Some(side) = side.filter(|s| *s != Side::Bilateral) else {
                    continue;
                };
                let placing = Some(side) == open.side && *from >= open.onset;
                let oldest = Some(side) == open.earliest_side && *from == open.earliest;
                if !placing && !oldest {
                    other_episodes.push(Look {
                        side,
                        from: Some(*from),
                    });
                }
            }
        }
        // The look back at an older episode (`episode_from`) is read by that episode's side,
        // as the newest one is by its own: a "no" of the newer injury's knee must not clear a
        // red flag of the older one.
        if dq.findings_by_side {
            let side = if episode_from.is_some() {
                open.earliest_side
            } else {
                open.side
            };
            placing_side = side.filter(|s| *s != Side::Bilateral);
        }
        // Conditions without an onset stay named: they are part of the picture.
        onset_sources.retain(|s| !triggers.iter().any(|t| t.source == s.as_str()));
        onset_sources.extend(open.sources);
        episodes = open.notes;
    }
    // An episode whose onset is not recorded is still of one knee: the other knee's "no" must
    // not clear its red flags (the property test found night pain cleared so). Beside a dated
    // episode of the other knee, its red flags are read by its own side as well.
    if dq.episodes_by_side && dq.findings_by_side && by_side.is_none() {
        let one = match undated_sides.first() {
            Some(Some(side)) if undated_sides.iter().all(|s| *s == Some(*side)) => Some(*side),
            _ => None,
        }
        .filter(|s| *s != Side::Bilateral);
        if triggers.is_empty() {
            placing_side = placing_side.or(one);
        } else if let Some(side) = one.filter(|s| Some(*s) != placing_side) {
            other_episodes.push(Look { side, from: None });
        }
    }
    if let Some(side) = by_side {
        placing_side = Some(side);
    }
    Episode {
        applies,
        onset,
        onset_sources,
        onset_reason,
        episode_start,
        placing_side,
        episodes,
        other_episodes,
        oldest_side,
    }
}

/// The approved phase: an approved plan counts for a phase of this rule set, approved on or
/// before the as-of day and not before the episode began; anything else is reported, never
/// guessed into a phase.
fn approved_phase(
    rs: &RuleSet,
    facts: &Facts,
    onset: Option<Date>,
    as_of: Date,
    notes: &mut Notes,
) -> Option<(usize, crate::facts::PhaseState)> {
    let dq = &rs.doc.data_quality;
    // An approved plan counts for a phase of this rule set, approved on or before the as-of
    // day; anything else is reported, never guessed into a phase.
    let approved = match &facts.phase_state {
        Some(ps) if dq.approved_phase_holds => {
            match rs.doc.phases.iter().position(|p| p.id == ps.phase) {
                // A plan approved before this episode began is another episode's.
                Some(_) if onset.is_some_and(|o| ps.since < o) => {
                    notes.ignore(&ps.source, "approved before this episode began".into());
                    None
                }
                Some(i) if ps.since <= as_of => Some((i, ps.clone())),
                Some(_) => {
                    notes.ignore(&ps.source, format!("approved after the as-of day {as_of}"));
                    None
                }
                None => {
                    notes.ignore(
                        &ps.source,
                        format!(
                            "approved phase `{}` is not a phase of this rule set",
                            ps.phase
                        ),
                    );
                    None
                }
            }
        }
        _ => None,
    };
    approved
}

impl Prepared {
    /// The hits of fact `f`: those that count, then the preliminary ones.
    fn of_fact(&self, f: usize) -> (&[Hit], &[Hit]) {
        let start = self.hits.partition_point(|h| h.fact < f);
        let end = self.hits.partition_point(|h| h.fact <= f);
        let all = &self.hits[start..end];
        all.split_at(all.partition_point(|h| !h.preliminary))
    }
}

/// The newest evidence wins across representations: a streak recorded as a count ends on a
/// day recorded since that breaks it (a painful walking day after "12 pain-free days").
/// With `within_count`, a breaking day among the days the count covers ends it there:
/// "14 pain-free days" dated today, with a painful walking day 3 days ago, is 3 at most.
fn end_counts<'r>(
    rs: &'r RuleSet,
    ends_on: Vec<(&'r str, Date, f64)>,
    readings: &BTreeMap<&'r str, Vec<(Date, f64, &str)>>,
    values: &mut BTreeMap<&'r str, FactValue>,
    notes: &mut Notes,
) {
    for (name, day, count) in ends_on {
        let Some(e) = rs.doc.facts.get(name).and_then(|b| b.ended_by.as_ref()) else {
            continue;
        };
        // The first day the count covers (a count of 0 covers none); checked, as a count
        // without a plausible range may be any number.
        let covered = (count.max(0.0).ceil() as i64)
            .saturating_sub(1)
            .min(100_000);
        let covered_from = day
            .checked_sub(time::Duration::days(covered))
            .unwrap_or(Date::MIN);
        let breaker = readings
            .get(e.fact.as_str())
            .into_iter()
            .flatten()
            .filter(|(d, v, _)| {
                (*d > day || (e.within_count && *d >= covered_from)) && e.op.holds(*v, e.value)
            })
            .max_by_key(|(d, _, _)| *d);
        if let Some((d, _, source)) = breaker {
            let left = if *d > day {
                0.0
            } else {
                (day - *d).whole_days() as f64
            };
            let unit = rs
                .doc
                .facts
                .get(name)
                .and_then(|b| b.output_unit())
                .map(str::to_owned);
            for old in values[name].sources.iter() {
                notes.ignore(
                    old,
                    if *d > day {
                        format!(
                            "superseded by a newer record of {}",
                            crate::display::day(*d)
                        )
                    } else {
                        format!(
                            "contradicted by a record of {}, among the days it counts",
                            crate::display::day(*d)
                        )
                    },
                );
            }
            values.insert(name, FactValue::known(left, unit, vec![source.to_string()]));
        }
    }
}

/// A record that cannot be read (unknown unit, wrong type) makes the fact unknown: the
/// other records must not stand in for it, or an older value would hide a newer finding.
/// Only a newer readable record supersedes it (`latest`), and a trend looks at its two
/// periods only.
/// `bad`: (source, why, day, recorded in a form not read).
fn with_unreadable(
    binding: &FactBinding,
    dq: &DataQuality,
    mut fv: FactValue,
    points: &[Point<'_>],
    bad: &[(String, String, Date, bool)],
    as_of: Date,
    onset: Option<Date>,
) -> FactValue {
    let blocking: Vec<&(String, String, Date, bool)> = bad
        .iter()
        .filter(|(_, _, d, _)| match binding.aggregation {
            Aggregation::Latest => points.last().is_none_or(|p| *d >= p.date),
            Aggregation::Trend | Aggregation::StepUp => {
                (as_of - *d).whole_days() < 2 * i64::from(binding.period_days.unwrap_or(7))
            }
            _ => true,
        })
        .collect();
    if let Some((_, reason, day, _)) = blocking.first() {
        // Readable records of the same day stay possible readings, a measured value or a
        // bound: a red flag recorded present beside an unreadable record of that day still
        // fires on it (the engine's property test found `< 0.5 cm` hidden beside `< 0 cm`).
        let mut alternatives: Vec<f64> = points
            .iter()
            .filter(|p| p.date >= *day && p.bound.is_none())
            .map(|p| p.value)
            .collect();
        alternatives.sort_by(f64::total_cmp);
        alternatives.dedup_by(|a, b| (*a - *b).abs() <= 1e-9);
        let mut alternative_bounds: Vec<Interval> = Vec::new();
        for iv in points
            .iter()
            .filter(|p| p.date >= *day)
            .filter_map(|p| p.bound)
        {
            if !alternative_bounds.contains(&iv) {
                alternative_bounds.push(iv);
            }
        }
        let mut sources: Vec<String> = blocking.iter().map(|(s, _, _, _)| s.clone()).collect();
        // A yes/no finding recorded in a form not read may be a yes.
        if dq.unreadable_red_flags_possible
            && binding.kind == ValueKind::Boolean
            && binding.aggregation == Aggregation::Latest
            && !alternatives.contains(&1.0)
        {
            alternatives.push(1.0);
        }
        // What the readable records make of the fact (a count, a fall from baseline) is
        // one reading of it: the unreadable record may be a copy, or say nothing of it.
        // A red flag that reading fires holds (the metamorphic harness found "no
        // improvement after rest" hidden by an unreadable copy of a pain score).
        let readings_of_readable = binding.aggregation != Aggregation::Latest
            || (alternatives.is_empty() && alternative_bounds.is_empty());
        if readings_of_readable {
            alternatives.clear();
            alternative_bounds.clear();
        } else {
            sources.extend(
                points
                    .iter()
                    .filter(|p| p.date >= *day)
                    .map(|p| p.source.to_owned()),
            );
        }
        let read = std::mem::replace(&mut fv, FactValue::unknown(reason.clone(), sources));
        fv.one_event = read.one_event;
        fv.alternatives = alternatives;
        fv.alternative_bounds = alternative_bounds;
        if readings_of_readable && dq.unreadable_red_flags_possible {
            fv.admit(&read);
            fv.alternatives.sort_by(f64::total_cmp);
            fv.alternatives.dedup_by(|a, b| (*a - *b).abs() <= 1e-9);
        }
        let (readable, read_bound, read_sources) = (read.value, read.bound, read.sources);
        // The largest (smallest) value is still at least (at most) the largest (smallest)
        // readable one: an implausible temperature recorded after a fever of 38.4 °C must
        // not make the fever unknown (the metamorphic harness found it).
        // Not for the first n records: an unreadable one among them moves another in.
        if dq.unreadable_red_flags_possible {
            let lo = readable
                .map(|m| (m, true))
                .or(read_bound.and_then(|b| b.lo));
            let hi = readable
                .map(|m| (m, true))
                .or(read_bound.and_then(|b| b.hi));
            fv.bound = match (binding.aggregation, binding.first_n) {
                (Aggregation::Max, None) if lo.is_some() => Some(Interval { lo, hi: None }),
                (Aggregation::Min, None) if hi.is_some() => Some(Interval { lo: None, hi }),
                _ => None,
            };
            // The records read are evidence too: the card names the 38.4 °C beside the
            // record it could not read.
            if fv.bound.is_some() {
                let mut all: Vec<String> = fv.sources.iter().cloned().collect();
                all.extend(read_sources.iter().cloned());
                all.sort();
                all.dedup();
                fv.sources = all.into();
            }
            // A number recorded in a form not read (a pain score as text) may be any
            // believable value: the fact's readings at both ends of the believable range
            // are its possible values, so a red flag that either reading fires holds, as
            // for a yes/no finding (the reading of independent adversarial case 89).
            // (Not a number outside the believable range: that one is unknown, never used.)
            // Beside a record in a readable form that cannot be used (a unit nothing
            // converts), the one in a form not read still may be any value: the property test
            // found "no improvement after rest" hidden when a walking-pain copy in furlongs
            // joined a coded answer.
            let unread: Vec<&&(String, String, Date, bool)> =
                blocking.iter().filter(|(_, _, _, form)| *form).collect();
            if let (ValueKind::Number, Some([lo, hi]), false) =
                (binding.kind, binding.plausible, unread.is_empty())
            {
                for end in [lo, hi] {
                    let mut read = points.to_vec();
                    read.extend(unread.iter().map(|(source, _, date, _)| Point {
                        date: *date,
                        value: end,
                        source: source.as_str(),
                        correction: false,
                        stand_in: false,
                        bound: None,
                        earliest: None,
                        at: None,
                        sites: &[],
                        rounding: 0.0,
                        step: 0.0,
                    }));
                    // A trial that contradicts a readable record of its day gives that
                    // day's readings, each possible (a review found the high end dropped so).
                    let trial = aggregate(binding, dq, &mut read, as_of, onset);
                    fv.alternatives.extend(trial.value);
                    fv.alternatives.extend(trial.alternatives);
                }
                fv.alternatives.sort_by(f64::total_cmp);
                fv.alternatives.dedup_by(|a, b| (*a - *b).abs() <= 1e-9);
            }
        }
    }
    fv
}

/// What a resolution left out and why (the decision's `ignored`): once per record and reason,
/// and nothing at all for a look back at an earlier day, which reads only what it needs.
struct Notes {
    noting: bool,
    noted: BTreeSet<(String, String)>,
    ignored: Vec<Ignored>,
}

impl Notes {
    fn new(noting: bool) -> Notes {
        Notes {
            noting,
            noted: BTreeSet::new(),
            ignored: Vec::new(),
        }
    }

    fn ignore(&mut self, source: &str, reason: String) {
        if self.noting && self.noted.insert((source.to_owned(), reason.clone())) {
            self.ignored.push(Ignored {
                source: source.to_owned(),
                reason,
                date: None,
            });
        }
    }
}

/// `resolve`, for the facts numbered in `only` when given (and the episode): what a
/// criterion over those facts needs, at a fraction of the cost.
/// `episode_from`: the episode is read from this day (an older open episode's start), not
/// from the onset the episode model picks.
pub(crate) fn resolve_with<'r>(
    rs: &'r RuleSet,
    facts: &Facts,
    prepared: &Prepared,
    as_of: Date,
    only: Option<&BTreeSet<usize>>,
    episode_from: Option<Date>,
) -> FactTable<'r> {
    resolve_inner(rs, facts, prepared, as_of, only, episode_from, None)
}

/// `resolve`, for one open episode read on its own (`FactTable::other_episodes`): that side's
/// Conditions alone date it, and its findings are read by its side.
pub(crate) fn resolve_by_side<'r>(
    rs: &'r RuleSet,
    facts: &Facts,
    prepared: &Prepared,
    as_of: Date,
    look: Look,
) -> FactTable<'r> {
    resolve_inner(rs, facts, prepared, as_of, None, look.from, Some(look.side))
}

/// `resolve_with` for the facts in `only` on an earlier day, the findings read by `side`
/// when given (a look at one episode going back over its days).
pub(crate) fn resolve_on<'r>(
    rs: &'r RuleSet,
    facts: &Facts,
    prepared: &Prepared,
    day: Date,
    only: Option<&BTreeSet<usize>>,
    side: Option<Side>,
) -> FactTable<'r> {
    resolve_inner(rs, facts, prepared, day, only, None, side)
}

fn resolve_inner<'r>(
    rs: &'r RuleSet,
    facts: &Facts,
    prepared: &Prepared,
    as_of: Date,
    only: Option<&BTreeSet<usize>>,
    episode_from: Option<Date>,
    by_side: Option<Side>,
) -> FactTable<'r> {
    // A look back at an earlier day (`only`) reads what it needs: the notes of what was left
    // out, one formatted string per record after that day, were most of its cost.
    let mut notes = Notes::new(only.is_none());

    let dq = &rs.doc.data_quality;
    note_left_out(facts, prepared, as_of, &mut notes);
    // Counts and is dated within the as-of day (a draft order without a date is about today).
    let usable = |h: &Hit| {
        h.counts
            && match facts.records[h.record].date {
                None => facts.records[h.record].kind == RecordKind::Order,
                Some(d) => d <= as_of,
            }
    };
    let Episode {
        applies,
        onset,
        onset_sources,
        onset_reason,
        episode_start,
        placing_side,
        episodes,
        other_episodes,
        oldest_side,
    } = episode(
        rs,
        facts,
        prepared,
        as_of,
        episode_from,
        by_side,
        &mut notes,
    );
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

    let approved = approved_phase(rs, facts, onset, as_of, &mut notes);
    let anchors = Anchors {
        onset,
        entry: approved.as_ref().map(|(i, ps)| (*i, ps.since)),
        phases: &rs.doc.phases,
    };

    // The newest day an Observation gave a value (a value-less record is no recent data).
    let mut newest_observation: Option<Date> = None;
    // Facts that end another (`ended_by`): their readings, kept for the pass after the loop.
    let enders: BTreeSet<&str> = rs
        .doc
        .facts
        .values()
        .filter_map(|b| b.ended_by.as_ref().map(|e| e.fact.as_str()))
        .collect();
    let mut readings: BTreeMap<&str, Vec<(Date, f64, &str)>> = BTreeMap::new();
    // The newest day of a fact that can be ended, and its bound of days.
    let mut ends_on: Vec<(&str, Date, f64)> = Vec::new();
    for (f, (name, binding)) in rs.doc.facts.iter().enumerate() {
        if f == rs.episode_index() || only.is_some_and(|o| !o.contains(&f)) {
            continue;
        }
        let (counted, preliminary) = prepared.of_fact(f);
        let mut points = Vec::new();
        // Records of the other side that count (not a "no"), by source.
        let mut other_side: BTreeSet<&str> = BTreeSet::new();
        // (source, why, day, recorded in a form not read: free text, a wrong type)
        let mut bad: Vec<(String, String, Date, bool)> = Vec::new();
        for h in counted.iter().filter(|h| usable(h)) {
            let (r, src) = (&facts.records[h.record], &binding.sources[h.source]);
            if r.kind != src.record {
                continue;
            }
            if let Some(why) = src.resolved_region.as_ref().and_then(|g| {
                g.excludes(r).or_else(|| {
                    (src.site_named && !g.named_by(r))
                        .then_some("its body site is not one this finding is read at")
                })
            }) {
                notes.ignore(&r.source, format!("{}: {why}", binding.text));
                continue;
            }
            // A finding recorded for the other side says nothing of this episode's knee or
            // thigh when it is a "no" (no tenderness, pain 0): an exam of the uninjured knee
            // must not clear the injured one. Anything else still counts: a red flag or pain
            // in either limb stops running (and may be a new episode there), and so does a
            // count that says the limb is not ready (0 pain-free days).
            if let Some(side) = placing_side {
                // (An Observation names a side by its body site only: without one, no lookup.)
                if r.kind == RecordKind::Observation
                    && !r.sites.is_empty()
                    && binding.needs_value()
                    && opposite(rs.side_of(r), side)
                {
                    if says_no(rs, binding, h.source, r) {
                        notes.ignore(&r.source, format!(
                            "{}: a negative finding recorded for the other side; the open episode is the {} side's",
                            binding.text,
                            side_word(side)
                        ));
                        continue;
                    }
                    // A look at one knee's episode: the other knee is the placing one, with
                    // its own episode decided on its own; its records are that episode's
                    // course, not this one's (independent case 451: a new left knee's
                    // walking pain read as the right knee's "no improvement after rest").
                    if by_side.is_some() && dq.findings_by_side {
                        continue;
                    }
                    other_side.insert(&r.source);
                }
            }
            // A draft order is about today.
            let Some(date) = r.date.or((r.kind == RecordKind::Order).then_some(as_of)) else {
                continue;
            };
            if !in_window(binding, date, &anchors, as_of) {
                continue;
            }
            let written = written(binding, src, r);
            match read_value(rs, binding, src, r) {
                Read::Value(v) => {
                    if r.kind == RecordKind::Observation {
                        newest_observation = newest_observation.max(Some(date));
                    }
                    let point = Point {
                        date,
                        value: v,
                        source: &r.source,
                        correction: is_correction(r),
                        stand_in: src.absent_means.is_some(),
                        bound: None,
                        earliest: r.start,
                        at: r.at,
                        sites: &r.sites,
                        rounding: written.rounding,
                        step: written.step,
                    };
                    // A finding over a period (a symptom diary) holds on every day of it.
                    if let (Some(start), Aggregation::ConsecutiveDays) =
                        (r.start, binding.aggregation)
                    {
                        let mut day = start.max(date - time::Duration::days(MAX_PERIOD_DAYS));
                        while day < date {
                            if in_window(binding, day, &anchors, as_of) {
                                points.push(Point {
                                    date: day,
                                    at: None,
                                    ..point.clone()
                                });
                            }
                            day = match day.next_day() {
                                Some(d) => d,
                                None => break,
                            };
                        }
                    }
                    points.push(point);
                }
                Read::Bound(iv) => {
                    if r.kind == RecordKind::Observation {
                        newest_observation = newest_observation.max(Some(date));
                    }
                    points.push(Point {
                        date,
                        value: f64::NAN,
                        source: &r.source,
                        correction: is_correction(r),
                        stand_in: false,
                        bound: Some(iv),
                        earliest: None,
                        at: r.at,
                        sites: &r.sites,
                        rounding: written.rounding,
                        step: written.step,
                    })
                }
                Read::Nothing => {}
                // A stand-in that matches nothing: a measured value of its day replaces it
                // (`aggregate`), else it ends the run.
                Read::Unrecorded => points.push(Point {
                    date,
                    value: f64::NAN,
                    source: &r.source,
                    correction: false,
                    stand_in: true,
                    bound: None,
                    earliest: None,
                    at: r.at,
                    sites: &r.sites,
                    rounding: 0.0,
                    step: 0.0,
                }),
                // No evidence is not evidence: it never supersedes an earlier value.
                Read::NoValue if dq.value_less_ignored => notes.ignore(
                    &r.source,
                    format!(
                        "{}: no value recorded, not evidence either way",
                        binding.text
                    ),
                ),
                Read::NoValue => bad.push((r.source.clone(), "no value".into(), date, false)),
                Read::Bad(reason) => {
                    bad.push((r.source.clone(), reason, date, unread_form(src, r)))
                }
                Read::Beyond(reason) => bad.push((r.source.clone(), reason, date, true)),
            }
        }
        let mut prelim_values = Vec::new();
        for h in preliminary {
            let (r, src) = (&facts.records[h.record], &binding.sources[h.source]);
            if r.kind != src.record {
                continue;
            }
            let Some(date) = r.date.filter(|d| *d <= as_of) else {
                continue;
            };
            if !in_window(binding, date, &anchors, as_of) {
                continue;
            }
            if let Read::Value(v) = read_value(rs, binding, src, r) {
                prelim_values.push((v, r.source.clone()));
            }
        }
        // In an order of their own, not the records': the first that blocks a value names
        // the day its possible readings start from (`with_unreadable`), and the decision must
        // not depend on the order an EHR sent the records in (the property test found a
        // patient decided two ways).
        bad.sort_by(|a, b| (a.2, &a.0, &a.1, a.3).cmp(&(b.2, &b.0, &b.1, b.3)));
        // Clinical words on the card ("Extent of focal tenderness: …"); the fact id stays in
        // the trace.
        for (source, reason, _, _) in &bad {
            notes.ignore(source, format!("{}: {reason}", binding.text));
        }
        if enders.contains(name.as_str()) {
            readings.insert(
                name.as_str(),
                points
                    .iter()
                    .filter(|p| p.bound.is_none())
                    .map(|p| (p.date, p.value, p.source))
                    .collect(),
            );
        }
        // This side's records alone, before corrections settle the day: the other knee's
        // amended record must not stand in for this knee's (see below).
        let own_points: Option<Vec<Point<'_>>> = (!other_side.is_empty()).then(|| {
            points
                .iter()
                .filter(|p| !other_side.contains(p.source))
                .cloned()
                .collect()
        });
        let mut fv = aggregate(binding, dq, &mut points, as_of, anchors.onset);
        if let (Some(_), Some(count)) = (&binding.ended_by, fv.value) {
            if let Some(last) = points.last() {
                ends_on.push((name.as_str(), last.date, count));
            }
        }
        fv.preliminary = prelim_values;
        // Finite inputs can still sum to infinity; an infinite or NaN value is not a fact.
        if fv.value.is_some_and(|v| !v.is_finite()) {
            fv = FactValue::unknown("not a finite number", fv.sources);
        }
        let mut fv = with_unreadable(binding, dq, fv, &points, &bad, as_of, anchors.onset);
        if fv.value.is_none()
            && fv
                .reason
                .as_deref()
                .is_some_and(|r| r.starts_with("contradictory"))
        {
            for source in fv.sources.iter() {
                notes.ignore(
                    source,
                    format!(
                        "{}: {}",
                        binding.text,
                        fv.reason.as_deref().unwrap_or_default()
                    ),
                );
            }
        }
        // A record of the other side counts (pain in either limb stops running), but it is
        // not this side's course: the fact read without it is a reading too, so a low score
        // of the other knee never reads as this knee's improvement and hides a red flag its
        // own records fire (the metamorphic harness found "no improvement after rest" cleared
        // by a left-knee pain of 1 beside the right knee's 6).
        if let Some(mut own) = own_points {
            let own = aggregate(binding, dq, &mut own, as_of, anchors.onset);
            // Its own readings too when they are several (records of one event that
            // disagree).
            let said = own.value.is_some()
                || own.bound.is_some()
                || !own.alternatives.is_empty()
                || !own.alternative_bounds.is_empty();
            if said
                && (own.value != fv.value
                    || own.bound != fv.bound
                    || own.alternatives != fv.alternatives
                    || own.alternative_bounds != fv.alternative_bounds)
            {
                if fv.alternatives.is_empty() && fv.alternative_bounds.is_empty() {
                    fv.alternatives.extend(fv.value);
                    fv.alternative_bounds.extend(fv.bound);
                }
                fv.one_event |= own.one_event;
                fv.admit(&own);
                fv.alternatives.sort_by(f64::total_cmp);
                if fv.value.is_some() {
                    fv.reason = Some("records of the other side differ from this side's".into());
                }
            }
        }
        if fv.value.is_some() {
            fv.unit = binding.output_unit().map(str::to_owned);
        }
        values.insert(name.as_str(), fv);
    }

    end_counts(rs, ends_on, &readings, &mut values, &mut notes);

    FactTable {
        values,
        onset,
        applies,
        ignored: notes.ignored,
        newest_observation,
        approved,
        episodes,
        episode_start: episode_start.or(onset),
        other_episodes,
        placing_side,
        one_episode: by_side.is_some(),
        oldest_side,
    }
}

/// A trigger Condition with an onset, as the episode model reads it.
struct Trigger<'a> {
    onset: Date,
    /// Its abatement, when on or before the as-of day.
    end: Option<Date>,
    /// `clinicalStatus` recurrence or relapse: the pain came back, a new episode.
    recurrence: bool,
    side: Option<Side>,
    source: &'a str,
}

/// The episode the patient is placed in, and the others that are open.
struct OpenEpisode {
    onset: Date,
    /// The side of the episode the patient is placed by, when one side's episode is the
    /// newest (`findings_by_side`).
    side: Option<Side>,
    earliest: Date,
    /// The side of the oldest open episode, when one side's episode is the oldest and no
    /// stale entry set aside is older still.
    earliest_side: Option<Side>,
    /// Every side's episode: its side and the day its red flags are looked for from.
    looks: Vec<(Option<Side>, Date)>,
    sources: Vec<String>,
    notes: Vec<String>,
}

/// Episodes by side. A trigger far older than the protocol does not date a newer episode (it
/// is a problem-list entry left active); a side's episode starts at its earliest onset, or over
/// at a recurrence or at an onset after an earlier abatement; a Condition with no side belongs
/// to every side's episode. Running stops while any episode is in rest, so the patient is
/// placed by the newest open episode: every record from its onset on.
fn episode_groups(
    triggers: &[Trigger<'_>],
    as_of: Date,
    (stale_after, new_injury_after): (Option<i64>, Option<i64>),
    ignore: &mut dyn FnMut(&str, String),
) -> OpenEpisode {
    let fresh =
        |t: &Trigger<'_>| stale_after.is_none_or(|limit| (as_of - t.onset).whole_days() <= limit);
    let any_fresh = triggers.iter().any(fresh);
    let mut live: Vec<&Trigger<'_>> = Vec::new();
    // A stale entry dates no episode, but its red flags are still read on its own clock (from
    // `earliest`): a new injury must not erase what the old entry's course already showed.
    let mut set_aside: Option<Date> = None;
    for t in triggers {
        if any_fresh && !fresh(t) {
            set_aside = Some(set_aside.map_or(t.onset, |d| d.min(t.onset)));
            ignore(
                t.source,
                format!(
                    "onset {} is far older than the protocol and a newer episode is open: a problem-list entry left active, not used to date this episode",
                    t.onset
                ),
            );
        } else {
            live.push(t);
        }
    }
    let mut sides: BTreeSet<Side> = BTreeSet::new();
    for t in &live {
        match t.side {
            Some(Side::Bilateral) => {
                sides.insert(Side::Right);
                sides.insert(Side::Left);
            }
            Some(s) => {
                sides.insert(s);
            }
            None => {}
        }
    }
    let keys: Vec<Option<Side>> = if sides.is_empty() {
        vec![None]
    } else {
        sides.into_iter().map(Some).collect()
    };
    // (side, start, its triggers, the day its red flags are looked for from)
    let mut groups: Vec<(Option<Side>, Date, Vec<&Trigger<'_>>, Date)> = Vec::new();
    for key in keys {
        let members: Vec<&Trigger<'_>> = live
            .iter()
            .copied()
            .filter(|t| match (key, t.side) {
                (None, _) | (_, None) | (_, Some(Side::Bilateral)) => true,
                (Some(k), Some(s)) => k == s,
            })
            .collect();
        let Some(earliest) = members.iter().map(|t| t.onset).min() else {
            continue;
        };
        let restart = members
            .iter()
            .filter(|t| {
                t.recurrence
                    || members
                        .iter()
                        .any(|o| o.onset < t.onset && o.end.is_some_and(|e| e <= t.onset))
            })
            .map(|t| t.onset)
            .max();
        let restart_at = restart.map_or(earliest, |r| r.max(earliest));
        // A new injury: a trigger begun past the minimum rest of the episode before it (its
        // start counted from the last restart), not that diagnosis refined. The side starts
        // over, and its red flags are still looked for from the older episode's start.
        let mut start = restart_at;
        let mut injured = false;
        if let Some(after) = new_injury_after {
            let mut onsets: Vec<Date> = members
                .iter()
                .map(|t| t.onset)
                .filter(|d| *d > restart_at)
                .collect();
            onsets.sort_unstable();
            for d in onsets {
                if (d - start).whole_days() > after {
                    start = d;
                    injured = true;
                }
            }
        }
        let look_back = if injured { restart_at } else { start };
        let current: Vec<&Trigger<'_>> = members.into_iter().filter(|t| t.onset >= start).collect();
        groups.push((key, start, current, look_back));
    }
    // `live` is never empty (every trigger is fresh when none is), so neither is `groups`.
    let onset = groups.iter().map(|g| g.1).max().unwrap_or(as_of);
    // Two sides' episodes begun on the same day: neither places the patient alone.
    let only = |day: Date| {
        let mut on = groups.iter().filter(|g| g.1 == day).map(|g| g.0);
        match (on.next(), on.next()) {
            (Some(side), None) => side,
            _ => None,
        }
    };
    let side = only(onset);
    let earliest = groups
        .iter()
        .map(|g| g.3)
        .chain(set_aside)
        .min()
        .unwrap_or(onset);
    let earliest_side = if set_aside.is_some_and(|d| d <= earliest) {
        None
    } else {
        only(earliest)
    };
    let mut sources: Vec<String> = groups
        .iter()
        .filter(|g| g.1 == onset)
        .flat_map(|g| g.2.iter().map(|t| t.source.to_owned()))
        .collect();
    sources.sort();
    sources.dedup();
    let notes = if groups.len() > 1 {
        groups
            .iter()
            .map(|(side, start, _, _)| {
                format!(
                    "{}: episode since {}",
                    crate::display::side(*side),
                    crate::display::day(*start)
                )
            })
            .collect()
    } else {
        Vec::new()
    };
    OpenEpisode {
        onset,
        side,
        earliest,
        earliest_side,
        looks: groups.iter().map(|g| (g.0, g.3)).collect(),
        sources,
        notes,
    }
}

/// Whether a record of side `record` is about the other limb than an episode of `episode`.
fn opposite(record: Option<Side>, episode: Side) -> bool {
    matches!(
        (record, episode),
        (Some(Side::Left), Side::Right) | (Some(Side::Right), Side::Left)
    )
}

fn side_word(side: Side) -> &'static str {
    match side {
        Side::Right => "right",
        Side::Left => "left",
        Side::Bilateral => "both sides'",
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

/// Whether `r` says something other than "no" (absent, 0) for a fact numbered `fact` that
/// reads values: a positive, a bound or an unreadable value. Days with such a record are the
/// only days a red flag can have started to fire on.
pub(crate) fn says_more_than_no(rs: &RuleSet, b: &FactBinding, source: usize, r: &Record) -> bool {
    let src = &b.sources[source];
    if !b.needs_value() || src.record != r.kind {
        return false;
    }
    match read_value(rs, b, src, r) {
        Read::Value(v) => v != 0.0,
        Read::Bound(_) | Read::Bad(_) | Read::Beyond(_) => true,
        Read::NoValue | Read::Nothing | Read::Unrecorded => false,
    }
}

/// Whether `r` says "no" for this fact: a yes/no finding recorded absent, a 0–10 score of 0,
/// or the number a finding recorded absent stands for (no tenderness: an extent of 0). Not a
/// count of pain-free days, minutes walked or a symmetry of 0: those say the limb is not ready.
fn says_no(rs: &RuleSet, b: &FactBinding, source: usize, r: &Record) -> bool {
    let src = &b.sources[source];
    if !b.needs_value() || src.record != r.kind {
        return false;
    }
    let no = match b.kind {
        ValueKind::Boolean => Some(0.0),
        _ => b
            .sources
            .iter()
            .find_map(|s| s.absent_means)
            .or((b.unit.as_deref() == Some("{score}")).then_some(0.0)),
    };
    match (read_value(rs, b, src, r), no) {
        (Read::Value(v), Some(no)) => v == no,
        _ => false,
    }
}

/// Whether the value this source reads of `r` is in a form not read at all (free text, a
/// range, a code or a yes where a number is read), rather than a number that cannot be used
/// (an unknown unit, a value outside the believable range).
fn unread_form(src: &FactSource, r: &Record) -> bool {
    let value = match &src.resolved_component {
        Some(code) => r
            .components
            .iter()
            .find(|c| c.codes.contains(code))
            .and_then(|c| c.value.as_ref()),
        None => r.value.as_ref(),
    };
    !matches!(
        value,
        None | Some(
            Value::Quantity { .. } | Value::Integer(_) | Value::Bound { .. } | Value::Range { .. }
        )
    )
}

/// What the record says for this fact, in the binding's kind and unit.
/// The value `src` reads of `r`: its own, or its component's (`None` when the record has
/// no such component; `Some(None)` when the record or component carries no value).
fn recorded<'r>(src: &FactSource, r: &'r Record) -> Option<Option<&'r Value>> {
    match &src.resolved_component {
        Some(code) => r
            .components
            .iter()
            .find(|c| c.codes.contains(code))
            .map(|c| c.value.as_ref()),
        None => Some(r.value.as_ref()),
    }
}

/// How finely a quantity was written, in the fact's unit (`Point::rounding`, `Point::step`).
#[derive(Debug, Clone, Copy, Default)]
struct Written {
    rounding: f64,
    step: f64,
}

/// How far a quantity may be from the same measurement written otherwise, by the rounding of
/// its last recorded digit alone: 2.02 [mi_i] is 3.2509 km ± 0.008 km, so a watch's 3.25 km
/// and a phone's 2.02 mi of one run say the same (independent case 472), and 3.3 km is
/// 3.30 ± 0.05, so a phone's 3.31 km beside it is the same run measured twice (case 487). A
/// score or a count has no step: 2 and 3 are two answers.
fn written(b: &FactBinding, src: &FactSource, r: &Record) -> Written {
    let (value, unit) = match recorded(src, r) {
        Some(Some(
            Value::Quantity {
                value,
                unit: Some(unit),
            }
            | Value::Bound {
                value,
                unit: Some(unit),
                ..
            },
        )) => (value, unit),
        _ => return Written::default(),
    };
    let canonical = b.unit.as_deref().unwrap_or("1");
    if units::unitless_ok(canonical) || matches!(canonical, "1" | "d") {
        return Written::default();
    }
    // The digits it was written with: the fewest decimals that give back the same number
    // are those recorded, but for trailing zeros (2.020 reads as 2.02: a coarser step).
    // Counted without formatting: this runs for every reading of every call.
    let v = value.abs();
    let decimals = (0..12)
        .find(|&k| {
            let p = 10f64.powi(k);
            (v * p).round() / p == v
        })
        .unwrap_or(12);
    // A whole number's trailing zeros may be rounding too (4400 m may be 4 400 ± 50): read
    // so only where no reading is dropped for it (`step`), never to merge (`rounding`).
    let zeros = if decimals == 0 && v != 0.0 {
        (1..12)
            .take_while(|&z| (v / 10f64.powi(z)).fract() == 0.0)
            .count() as i32
    } else {
        0
    };
    // Units with an offset (°F) convert their step from the value, not from 0.
    let convert = |exponent: i32| {
        let half = 0.5 * 10f64.powi(exponent);
        match (
            units::convert(*value, unit, canonical),
            units::convert(*value + half, unit, canonical),
        ) {
            (Some(a), Some(b)) if (b - a).is_finite() => (b - a).abs(),
            _ => 0.0,
        }
    };
    Written {
        rounding: if unit == canonical {
            0.0
        } else {
            convert(-decimals)
        },
        step: convert(zeros - decimals),
    }
}

fn read_value(rs: &RuleSet, b: &FactBinding, src: &FactSource, r: &Record) -> Read {
    if !b.needs_value() || src.present {
        return Read::Value(1.0);
    }
    if src.value_from_date {
        return r.date.map_or(Read::Nothing, |d| Read::Value(day_number(d)));
    }
    let value = match recorded(src, r) {
        Some(value) => value,
        None if src.unrecorded_ends => return Read::Unrecorded,
        None => return Read::Nothing,
    };
    let Some(value) = value else {
        return if src.unrecorded_ends {
            Read::Unrecorded
        } else {
            Read::NoValue
        };
    };
    // Free text, a range, a time …: something was recorded, and it is not a value read here.
    // Never "absent": a red-flag finding so recorded is not ruled out.
    if let Value::Other(kind) = value {
        let what = if kind == "string" {
            "free text"
        } else {
            kind.as_str()
        };
        return Read::Bad(format!(
            "recorded as {what}, not a value this rule set reads: not ruled out"
        ));
    }
    if let (Value::Bound { .. } | Value::Range { .. }, ValueKind::Number, None) =
        (value, b.kind, src.absent_means)
    {
        return bounded(rs, b, value);
    }
    // A finding recorded absent stands for a number (no tenderness: extent 0); recorded
    // present, it says nothing about the number.
    if let Some(absent) = src.absent_means {
        return match boolean(rs, value) {
            Ok(false) => Read::Value(absent),
            Ok(true) => Read::Nothing,
            Err(e) => Read::Bad(e),
        };
    }
    // A coded yes or no given for a number whose absence is a finding of its own ("extent of
    // focal tenderness: No"): no is that number (no tenderness, extent 0); yes says the
    // finding is there but not its number (independent adversarial case 414).
    if let (ValueKind::Number, Value::Coded(_)) = (b.kind, value) {
        if let Some(absent) = b.sources.iter().find_map(|s| s.absent_means) {
            match boolean(rs, value) {
                Ok(false) => return Read::Value(absent),
                Ok(true) => return Read::Bad("recorded present, without its number".into()),
                Err(_) => {}
            }
        }
    }
    let read = match (b.kind, &src.resolved_answers, value) {
        // This source's own coded answers (a Patient's gender read as "not female").
        (ValueKind::Boolean, Some((yes, no)), Value::Coded(codes)) => {
            if codes.iter().any(|c| no.contains(c)) {
                Ok(0.0)
            } else if yes.is_empty() || codes.iter().any(|c| yes.contains(c)) {
                Ok(1.0)
            } else {
                Err("coded answer is neither yes nor no".into())
            }
        }
        (ValueKind::Number | ValueKind::Date, _, _) => number(rs, b, value),
        (ValueKind::Boolean, _, _) => boolean(rs, value).map(|v| if v { 1.0 } else { 0.0 }),
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

/// A bound on a number (`< 5 cm`): the interval for a fact read by its latest value or its
/// maximum, a stand-in value where it decides the fact's `matching`, else unusable.
fn bounded(rs: &RuleSet, b: &FactBinding, value: &Value) -> Read {
    // One end in the fact's unit.
    let end = |v: f64, unit: &Option<String>| {
        number(
            rs,
            b,
            &Value::Quantity {
                unit: unit.clone(),
                value: v,
            },
        )
    };
    let mut iv = match value {
        Value::Bound {
            comparator,
            unit,
            value: v,
        } => {
            let x = match end(*v, unit) {
                Ok(x) => x,
                Err(e) => return Read::Bad(e),
            };
            match Interval::from_comparator(comparator, x) {
                Some(iv) => iv,
                None => return Read::Bad(format!("comparator `{comparator}` is not a bound")),
            }
        }
        // A range is a bound on both sides, each end in its own unit.
        Value::Range { low, high } => {
            let mut ends = [None, None];
            for (i, e) in [low, high].into_iter().enumerate() {
                if let Some((v, unit)) = e {
                    match end(*v, unit) {
                        Ok(x) => ends[i] = Some((x, true)),
                        Err(e) => return Read::Bad(e),
                    }
                }
            }
            if let [Some((lo, _)), Some((hi, _))] = ends {
                if lo > hi {
                    return Read::Bad("a range whose low end is above its high end".into());
                }
            }
            Interval {
                lo: ends[0],
                hi: ends[1],
            }
        }
        _ => return Read::Bad("not a bound".into()),
    };
    let recorded = iv;
    let unit = b.unit.as_deref().unwrap_or_default();
    if let Some([lo, hi]) = b.plausible {
        iv = iv.within(lo, hi);
        // A bound no believable value meets (`< 0 cm`, `> 10` of a 0–10 score) says nothing
        // sure of the patient: unknown, and possibly any believable value, as a value in a
        // form not read is (`> 10` may mean the worst pain); never a vacuous "every value
        // meets the criterion" that fired a flag on a meaningless record.
        if iv.is_empty() {
            return Read::Beyond(format!(
                "recorded as {} {unit}, outside the plausible range {lo}–{hi}",
                recorded.describe()
            ));
        }
    }
    // Where absence is a finding of its own (no tenderness: extent 0), a measured bound says
    // the thing is there: `< 5 cm` is an extent above 0 and under 5.
    if let Some(absent) = b.sources.iter().find_map(|s| s.absent_means) {
        if iv.lo == Some((absent, true)) {
            iv.lo = Some((absent, false));
        }
    }
    // `≤ 0 cm` of an extent: a measured extent says the finding is there, its bound that it
    // is not. Unknown, as two records that disagree are.
    if iv.is_empty() {
        return Read::Bad(format!(
            "recorded as {} {unit}, which says neither that it is there nor how large",
            recorded.describe()
        ));
    }
    let text = format!(
        "recorded as {} {}",
        iv.describe(),
        b.unit.as_deref().unwrap_or_default()
    );
    match (b.aggregation, &b.matching) {
        (Aggregation::Latest | Aggregation::Max, _) => Read::Bound(iv),
        (
            Aggregation::Count
            | Aggregation::Exists
            | Aggregation::ConsecutiveDays
            | Aggregation::ConsecutiveRecords,
            Some(m),
        ) => match iv.decides(m.op, m.value) {
            Some(holds) => Read::Value(stand_in(m.op, m.value, holds)),
            None => Read::Bad(format!("{text}: cannot tell")),
        },
        _ => Read::Bad(format!("{text}, not a value")),
    }
}

/// A number that meets (or fails) `op t` as a decided bound does: what a count or a run of
/// matching records needs to know of it.
fn stand_in(op: crate::model::Op, t: f64, holds: bool) -> f64 {
    use crate::model::Op;
    let v = match (op, holds) {
        (Op::Le | Op::Ge | Op::Eq, true) | (Op::Lt | Op::Gt | Op::Ne, false) => t,
        (Op::Lt, true) | (Op::Ge, false) => t - 1.0,
        (Op::Gt | Op::Ne, true) | (Op::Le | Op::Eq, false) => t + 1.0,
    };
    debug_assert_eq!(op.holds(v, t), holds);
    v
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
                .or_else(|| {
                    rs.doc
                        .data_quality
                        .fraction_as_percent
                        .then(|| units::fraction_as_percent(*value, u, canonical))
                        .flatten()
                })
                .ok_or_else(|| format!("unit `{u}` cannot be converted to {canonical}"))?,
        },
        Value::Boolean(_)
        | Value::Coded(_)
        | Value::Bound { .. }
        | Value::Range { .. }
        | Value::Other(_) => return Err(format!("expected a number in {canonical}")),
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
        // A score given as a bound: `> 3` is pain, `< 2` cannot tell.
        Value::Bound {
            comparator, value, ..
        } => match Interval::from_comparator(comparator, *value)
            .map(|iv| iv.within(0.0, f64::INFINITY))
            .and_then(|iv| iv.decides(crate::model::Op::Gt, 0.0))
        {
            Some(present) => Ok(present),
            None => Err(format!(
                "recorded as {comparator} {value}: cannot tell whether it is present"
            )),
        },
        // A range of a score above 0 is pain; one that reaches 0 cannot tell.
        Value::Range {
            low: Some((lo, _)), ..
        } if *lo > 0.0 => Ok(true),
        Value::Range { .. } => Err("recorded as a range: cannot tell whether it is present".into()),
        Value::Other(_) => Err("not a yes or no".into()),
    }
}

fn aggregate(
    b: &FactBinding,
    dq: &DataQuality,
    points: &mut Vec<Point<'_>>,
    as_of: Date,
    onset: Option<Date>,
) -> FactValue {
    settle(b, dq, points);
    let events = events(points);
    if events.is_empty() {
        return aggregate_settled(b, points, as_of, onset);
    }
    // Copies that agree are one record: the first stays, naming the others as its sources.
    let mut copies: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut drop = vec![false; points.len()];
    let mut disputed: Vec<Vec<Vec<usize>>> = Vec::new();
    for event in &events {
        let mut readings: Vec<&Vec<usize>> = Vec::new();
        for record in event {
            let found = readings.iter().position(|r| {
                same_record(points, r, record) || near_record(points, r, record, |p| p.rounding)
            });
            match found {
                Some(k) => {
                    // Of two records that differ by a unit's rounding, the one recorded to the
                    // finer step is the measurement (a watch's 4.4 km beside a phone's 2.73 mi).
                    let (kept, copy) = if precision(points, record) < precision(points, readings[k])
                    {
                        (record, std::mem::replace(&mut readings[k], record))
                    } else {
                        (readings[k], record)
                    };
                    for &i in kept {
                        drop[i] = false;
                    }
                    for &i in copy {
                        drop[i] = true;
                    }
                    let (kept, copy) = (points[kept[0]].source, points[copy[0]].source);
                    // The copies named by the record set aside are the kept one's now.
                    let mut named = copies.remove(copy).unwrap_or_default();
                    named.push(copy.to_owned());
                    copies.entry(kept.to_owned()).or_default().extend(named);
                }
                None => readings.push(record),
            }
        }
        if readings.len() > 1 {
            disputed.push(readings.into_iter().cloned().collect());
        }
    }
    let mut kept = 0;
    let moved: Vec<usize> = drop
        .iter()
        .map(|d| {
            kept += usize::from(!d);
            kept.wrapping_sub(1)
        })
        .collect();
    let disputed: Vec<Vec<Vec<usize>>> = disputed
        .iter()
        .map(|readings| {
            readings
                .iter()
                .map(|r| r.iter().map(|&i| moved[i]).collect())
                .collect()
        })
        .collect();
    let mut i = 0;
    points.retain(|_| {
        i += 1;
        !drop[i - 1]
    });
    let named = |mut fv: FactValue| {
        let extra: Vec<String> = fv
            .sources
            .iter()
            .filter_map(|s| copies.get(s.as_str()))
            .flatten()
            .cloned()
            .collect();
        if !extra.is_empty() {
            let mut all: Vec<String> = fv.sources.iter().cloned().collect();
            all.extend(extra);
            all.sort();
            all.dedup();
            fv.sources = all.into();
        }
        fv
    };
    if disputed.is_empty() {
        return named(aggregate_settled(b, points, as_of, onset));
    }
    // Records of one event that disagree (a watch's pain 0 and a phone's pain 3 for one run):
    // which is right cannot be told, so the fact is read once with each, and every reading
    // stays possible (a red flag any of them fires is shown; the phase waits on the fact).
    let reason = format!(
        "records less than an hour apart on {} disagree",
        crate::display::day(points[disputed[0][0][0]].date)
    );
    let mut sources: Vec<String> = disputed
        .iter()
        .flatten()
        .flatten()
        .map(|&i| points[i].source.to_owned())
        .collect();
    // Each event's readings from the lowest value up (bounds last), so that the first and the
    // last choice are the lows and the highs.
    let key = |r: &Vec<usize>| {
        let p = r
            .iter()
            .map(|&i| &points[i])
            .max_by(|a, b| a.value.total_cmp(&b.value))
            .expect("a record of an event has a point");
        (p.bound.is_some(), p.value)
    };
    let disputed: Vec<Vec<Vec<usize>>> = disputed
        .into_iter()
        .map(|mut r| {
            r.sort_by(|x, y| {
                let (a, b) = (key(x), key(y));
                a.0.cmp(&b.0).then(a.1.total_cmp(&b.1))
            });
            r
        })
        .collect();
    // Readings multiply: past a handful of disputed events, every event's lowest reading,
    // every event's highest, and (below) every reading kept as a record of its own.
    const MAX_READINGS: usize = 64;
    let all = disputed
        .iter()
        .try_fold(1usize, |n, r| n.checked_mul(r.len()))
        .filter(|n| *n <= MAX_READINGS);
    let picks: Vec<Vec<usize>> = match all {
        Some(n) => (0..n)
            .map(|k| {
                let mut rest = k;
                disputed
                    .iter()
                    .map(|r| {
                        let pick = rest % r.len();
                        rest /= r.len();
                        pick
                    })
                    .collect()
            })
            .collect(),
        None => vec![
            vec![0; disputed.len()],
            disputed.iter().map(|r| r.len() - 1).collect(),
        ],
    };
    let mut results: Vec<FactValue> = Vec::with_capacity(picks.len() + 1);
    for pick in &picks {
        let mut skip = vec![false; points.len()];
        for (r, &chosen) in disputed.iter().zip(pick) {
            for (m, record) in r.iter().enumerate() {
                for &i in record {
                    skip[i] = m != chosen;
                }
            }
        }
        let chosen: Vec<Point<'_>> = points
            .iter()
            .zip(&skip)
            .filter(|(_, s)| !**s)
            .map(|(p, _)| p.clone())
            .collect();
        results.push(aggregate_settled(b, &chosen, as_of, onset));
    }
    // Records less than an hour apart may still be two events (two pain scores of one
    // morning): read as such, they are a reading too, so nothing the records said before they
    // were taken for one event is lost (the metamorphic harness found "no improvement" hidden
    // by same-day contradictions once they were read as one event). Not two measurements of
    // one thing that differ within their last digits (a watch's 3.3 km and a phone's 3.31
    // km of one run): each is still a reading, the two are never two runs.
    let two_events = disputed.iter().any(|readings| {
        readings.iter().enumerate().any(|(k, x)| {
            readings[k + 1..]
                .iter()
                .any(|y| !near_record(points, x, y, |p| p.step))
        })
    });
    if two_events {
        results.push(aggregate_settled(b, points, as_of, onset));
    }
    for r in &results {
        sources.extend(r.sources.iter().cloned());
    }
    sources.sort();
    sources.dedup();
    let same = |a: &FactValue, b: &FactValue| {
        a.value == b.value
            && a.bound == b.bound
            && a.reason == b.reason
            && a.alternatives == b.alternatives
            && a.alternative_bounds == b.alternative_bounds
    };
    if results.iter().all(|r| same(r, &results[0])) {
        let mut fv = results.swap_remove(0);
        fv.sources = sources.into();
        return named(fv);
    }
    let mut fv = FactValue::unknown(reason, sources);
    fv.one_event = true;
    for r in &results {
        fv.admit(r);
    }
    fv.alternatives.sort_by(f64::total_cmp);
    fv.alternatives.dedup_by(|a, b| (*a - *b).abs() <= 1e-9);
    named(fv)
}

/// Records of one fact less than this apart are taken for one event: a run logged by a watch
/// at its start and by a phone a few minutes later, or at its end, is one run (COVERAGE.md
/// D101). An hour is beyond the source, which speaks of 24 hours between
/// sessions: longer than a walk-run session of the protocol's first weeks, far shorter than a
/// second session of the day.
const ONE_EVENT: time::Duration = time::Duration::hours(1);

/// The records of two or more sources taken for one event, each as its points (indices in
/// `points` order): an event starts at the earliest instant of its body site and holds every
/// point of that site less than `ONE_EVENT` after it, across midnight too (a run started at 23:40
/// that a phone saved at its end, 00:15). Points without an instant are never grouped.
fn events(points: &[Point<'_>]) -> Vec<Vec<Vec<usize>>> {
    // Most facts have no two records within the hour (a diary's one record a day): found
    // without allocating, as `points` are in date order and an hour spans two days at most.
    // (Evaluate runs on every hook call; sorting every fact's records cost 30-40 % of it.)
    let near = points.iter().enumerate().any(|(i, p)| {
        p.at.is_some_and(|t| {
            points[i + 1..]
                .iter()
                .take_while(|q| (q.date - p.date).whole_days() <= 1)
                .any(|q| q.at.is_some_and(|u| (u - t).abs() < ONE_EVENT))
        })
    });
    if !near {
        return Vec::new();
    }
    // By body site first (the two knees' diaries written a minute apart are two records, and a
    // record of another site between two copies does not keep them apart), then by time.
    let mut timed: Vec<(&[crate::facts::Code], time::OffsetDateTime, &str, usize)> = points
        .iter()
        .enumerate()
        .filter_map(|(i, p)| p.at.map(|t| (p.sites, t, p.source, i)))
        .collect();
    timed.sort();
    let mut groups = Vec::new();
    let mut k = 0;
    while k < timed.len() {
        // The hour runs from the event's first record: chained from record to record, two
        // runs 70 minutes apart each copied 45 minutes later would be one event.
        let (sites, first) = (timed[k].0, timed[k].1);
        let end = (k + 1..timed.len())
            .find(|&n| timed[n].0 != sites || timed[n].1 - first >= ONE_EVENT)
            .unwrap_or(timed.len());
        // By record: the values one record gives (a panel's two parts read as one fact) are
        // what it says together, and a copy of it gives them all again.
        let mut records: Vec<(&str, Vec<usize>)> = Vec::new();
        for &(_, _, source, i) in &timed[k..end] {
            match records.iter_mut().find(|(s, _)| *s == source) {
                Some((_, r)) => r.push(i),
                None => records.push((source, vec![i])),
            }
        }
        if records.len() > 1 {
            groups.push(
                records
                    .into_iter()
                    .map(|(_, mut r)| {
                        r.sort_unstable();
                        r
                    })
                    .collect(),
            );
        }
        k = end;
    }
    groups
}

/// A record's readings in one order (measured values before stand-ins and bounds, lowest
/// first), so two records are compared reading by reading whatever order they list them in.
fn in_order<'p, 'a>(points: &'p [Point<'a>], r: &[usize]) -> Vec<&'p Point<'a>> {
    let mut v: Vec<&Point<'_>> = r.iter().map(|&i| &points[i]).collect();
    v.sort_by(|x, y| {
        (x.stand_in, x.bound.is_some())
            .cmp(&(y.stand_in, y.bound.is_some()))
            .then(x.value.total_cmp(&y.value))
    });
    v
}

/// Whether two records of one event say the same: the same readings, in any order.
fn same_record(points: &[Point<'_>], a: &[usize], b: &[usize]) -> bool {
    let sorted = |r: &[usize]| in_order(points, r);
    a.len() == b.len()
        && sorted(a)
            .iter()
            .zip(sorted(b))
            .all(|(x, y)| same_reading(x, y))
}

/// How coarsely a record was written in the fact's unit: its readings' rounding together.
fn precision(points: &[Point<'_>], r: &[usize]) -> f64 {
    r.iter().map(|&i| points[i].rounding).sum()
}

/// Whether two records of one event differ by no more than `slack` of each: by the rounding
/// of a unit (`Point::rounding`: a watch's 3.25 km and a phone's 2.02 mi of one run say the
/// same, as copies that agree do; independent case 472 read them as two runs, a distance
/// jump; a value in the fact's own unit counts as exact), or within their last digits
/// (`Point::step`: one run measured twice). The finer value must lie within the coarser
/// one's own rounding (the larger of the two, never their sum: 1 in and 2 in are one step
/// apart and two readings, and the 2.54 cm of the first is a red flag the merge must not lose).
fn near_record(
    points: &[Point<'_>],
    a: &[usize],
    b: &[usize],
    slack: impl Fn(&Point<'_>) -> f64,
) -> bool {
    let sorted = |r: &[usize]| in_order(points, r);
    a.len() == b.len()
        && sorted(a).iter().zip(sorted(b)).all(|(x, y)| {
            let near = |p: f64, q: f64| (p - q).abs() <= slack(x).max(slack(y)) + 1e-9;
            let ends = |p: Option<End>, q: Option<End>| match (p, q) {
                (None, None) => true,
                (Some(p), Some(q)) => p.1 == q.1 && near(p.0, q.0),
                _ => false,
            };
            same_reading(x, y)
                || x.stand_in == y.stand_in
                    && match (x.bound, y.bound) {
                        (None, None) => near(x.value, y.value),
                        // A bound written in another unit: "> 0.67 h" beside "> 40 min".
                        (Some(p), Some(q)) => ends(p.lo, q.lo) && ends(p.hi, q.hi),
                        _ => false,
                    }
        })
}

/// Whether two records say the same: one value (or both no value), one bound, both stand-ins
/// or neither.
fn same_reading(a: &Point<'_>, b: &Point<'_>) -> bool {
    a.stand_in == b.stand_in
        && a.bound == b.bound
        && (a.value.is_nan() && b.value.is_nan() || (a.value - b.value).abs() <= 1e-9)
}

fn aggregate_settled(
    b: &FactBinding,
    points: &[Point<'_>],
    as_of: Date,
    onset: Option<Date>,
) -> FactValue {
    // The records of the first n days with records: which of a day's records came first is
    // not known (they are ordered by source only to be read one way), and sessions fall on
    // alternate days (two of one day are a pitfall, or one session logged twice), so a record
    // of those days never falls out of "the first runs" because another of its day sorts
    // before it (the property test found a painful first run displaced so by a record of the
    // other knee; an independent case, the first run logged by a watch and a phone).
    let limited: &[Point<'_>] = match b.first_n {
        Some(n) => {
            let mut days = 0u32;
            let end = points
                .iter()
                .enumerate()
                .position(|(i, p)| {
                    if i == 0 || points[i - 1].date != p.date {
                        days += 1;
                    }
                    days > n
                })
                .unwrap_or(points.len());
            &points[..end]
        }
        None => points,
    };
    let unit = b.unit.clone();

    match b.aggregation {
        Aggregation::Latest
            if points
                .last()
                .is_some_and(|l| points.iter().any(|p| p.date == l.date && p.bound.is_some())) =>
        {
            latest_of_bounds(points, unit)
        }
        Aggregation::Max if points.iter().any(|p| p.bound.is_some()) => {
            max_of_bounds(limited, unit)
        }
        Aggregation::Latest => {
            let Some(last) = points.last() else {
                return FactValue::unknown(NOT_RECORDED, vec![]);
            };
            let same_day: Vec<&Point<'_>> = points.iter().filter(|p| p.date == last.date).collect();
            let first = same_day[0].value;
            let sources: Vec<String> = same_day.iter().map(|p| p.source.to_owned()).collect();
            if same_day.iter().any(|p| (p.value - first).abs() > 1e-9) {
                let mut fv = FactValue::unknown(
                    format!(
                        "contradictory records on {}",
                        crate::display::day(last.date)
                    ),
                    sources,
                );
                let mut alternatives: Vec<f64> = same_day.iter().map(|p| p.value).collect();
                alternatives.sort_by(f64::total_cmp);
                alternatives.dedup_by(|a, b| (*a - *b).abs() <= 1e-9);
                fv.alternatives = alternatives;
                return fv;
            }
            FactValue::known(first, unit, sources)
        }
        Aggregation::Max => match limited.iter().map(|p| p.value).reduce(f64::max) {
            Some(m) => FactValue::known(m, unit, sources_of(limited)),
            None => FactValue::unknown(NOT_RECORDED, vec![]),
        },
        Aggregation::Min => match limited.iter().map(|p| p.value).reduce(f64::min) {
            Some(m) => FactValue::known(m, unit, sources_of(limited)),
            None => FactValue::unknown(NOT_RECORDED, vec![]),
        },
        Aggregation::Sum => {
            // No record in the window means nothing was done: a known zero.
            FactValue::known(
                points.iter().map(|p| p.value).sum(),
                unit,
                sources_of(points),
            )
        }
        Aggregation::Count => {
            let hits: Vec<Point<'_>> = points.iter().filter(|p| matching(b, p)).cloned().collect();
            FactValue::known(hits.len() as f64, Some("1".into()), sources_of(&hits))
        }
        Aggregation::Exists => {
            let hits: Vec<Point<'_>> = points.iter().filter(|p| matching(b, p)).cloned().collect();
            FactValue::known(
                if hits.is_empty() { 0.0 } else { 1.0 },
                None,
                sources_of(&hits),
            )
        }
        Aggregation::ConsecutiveDays => consecutive_days(b, points),
        Aggregation::ConsecutiveRecords => {
            if points.is_empty() {
                return FactValue::unknown(NOT_RECORDED, vec![]);
            }
            let run: Vec<Point<'_>> = points
                .iter()
                .rev()
                .take_while(|p| matching(b, p))
                .cloned()
                .collect();
            FactValue::known(run.len() as f64, Some("1".into()), sources_of(&run))
        }
        Aggregation::AdjacentDays => adjacent_days(b, points),
        Aggregation::Trend => trend(b, points, as_of),
        Aggregation::StepUp => step_up(b, points, as_of),
        Aggregation::Age => {
            let Some(last) = points.last() else {
                return FactValue::unknown(NOT_RECORDED, vec![]);
            };
            let age = |born: Date| {
                let mut years = i64::from(as_of.year() - born.year());
                if (as_of.month() as u8, as_of.day()) < (born.month() as u8, born.day()) {
                    years -= 1;
                }
                years as f64
            };
            let youngest = age(last.date);
            // A birth year or month alone: every age it allows, decided as a bound (a rule
            // that depends on age is not ruled out when the range straddles its limit).
            match last.earliest.map(age).filter(|oldest| *oldest != youngest) {
                Some(oldest) => {
                    let mut fv = FactValue::unknown(
                        format!("between {youngest} and {oldest} years (birth date not given to the day)"),
                        vec![last.source.to_owned()],
                    );
                    fv.bound = Some(Interval {
                        lo: Some((youngest, true)),
                        hi: Some((oldest, true)),
                    });
                    fv
                }
                None => FactValue::known(youngest, Some("a".into()), vec![last.source.to_owned()]),
            }
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
        Aggregation::DecreaseFromBaseline => {
            let Some(last) = points.last() else {
                return FactValue::unknown(NOT_RECORDED, vec![]);
            };
            let Some(onset) = onset else {
                return FactValue::unknown(
                    "no episode onset to take a baseline from",
                    sources_of(points),
                );
            };
            let days = i64::from(b.period_days.unwrap_or(3));
            // The latest day's highest value against the lowest of the baseline days: a
            // painful score on either side can only shrink the fall.
            let latest = points
                .iter()
                .filter(|p| p.date == last.date)
                .max_by(|a, b| a.value.total_cmp(&b.value))
                .unwrap_or(last);
            let lowest = points
                .iter()
                .filter(|p| (p.date - onset).whole_days() < days)
                .min_by(|a, b| a.value.total_cmp(&b.value));
            match lowest {
                Some(low) => FactValue::known(
                    low.value - latest.value,
                    unit,
                    vec![low.source.to_owned(), latest.source.to_owned()],
                ),
                None => FactValue::unknown(
                    format!("no score in the first {days} days of the episode to compare with"),
                    sources_of(points),
                ),
            }
        }
    }
}
/// The points a fact is aggregated over, oldest first (ties broken by source, so the result
/// never depends on input order), a measured value in place of a stand-in of its day, and a
/// correction in place of the records of its day it corrects.
fn settle(b: &FactBinding, dq: &DataQuality, points: &mut Vec<Point<'_>>) {
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
}

/// The records a value rests on.
fn sources_of(ps: &[Point<'_>]) -> Vec<String> {
    ps.iter().map(|p| p.source.to_owned()).collect()
}

/// Whether a record meets the fact's `matching` test (every record does without one).
fn matching(b: &FactBinding, p: &Point<'_>) -> bool {
    b.matching
        .as_ref()
        .is_none_or(|m| m.op.holds(p.value, m.value))
}

/// The newest day's records where one of them is known only by its bounds: a measured
/// value within them, the bound they agree on, or contradictory records.
fn latest_of_bounds(points: &[Point<'_>], unit: Option<String>) -> FactValue {
    let day = points[points.len() - 1].date;
    let same_day: Vec<&Point<'_>> = points.iter().filter(|p| p.date == day).collect();
    let sources: Vec<String> = same_day.iter().map(|p| p.source.to_owned()).collect();
    let bounds: Vec<Interval> = same_day.iter().filter_map(|p| p.bound).collect();
    let values: Vec<f64> = same_day
        .iter()
        .filter(|p| p.bound.is_none())
        .map(|p| p.value)
        .collect();
    // Records of the day that cannot all hold: each stays a possible reading, a measured value
    // or a bound, as for measured values alone (`aggregate`), so a red flag one of them fires
    // still fires beside the others (`red_flag_conflicts_positive`). The property tests found
    // a flag hidden beside a measured value and the review beside a second bound.
    let contradictory = |mut values: Vec<f64>| {
        let mut fv = FactValue::unknown(
            format!("contradictory records on {}", crate::display::day(day)),
            sources.clone(),
        );
        values.sort_by(f64::total_cmp);
        values.dedup_by(|a, b| (*a - *b).abs() <= 1e-9);
        fv.alternatives = values;
        for iv in &bounds {
            if !fv.alternative_bounds.contains(iv) {
                fv.alternative_bounds.push(*iv);
            }
        }
        fv
    };
    // A measured value inside the day's bounds says more than they do.
    if let Some(v) = values.first() {
        if values.iter().all(|x| (x - v).abs() <= 1e-9) && bounds.iter().all(|iv| iv.contains(*v)) {
            return FactValue::known(*v, unit, sources);
        }
        return contradictory(values);
    }
    // Bounds that overlap all hold: the value lies where they meet (`< 3` and `< 4` is `< 3`).
    // (The same bound twice is that bound.)
    let Some(met) = bounds[1..].iter().try_fold(bounds[0], |acc, iv| {
        if *iv == acc {
            Some(acc)
        } else {
            acc.intersect(iv)
        }
    }) else {
        return contradictory(values);
    };
    let mut fv = FactValue::unknown(
        format!(
            "recorded as {} {}",
            met.describe(),
            unit.as_deref().unwrap_or_default()
        ),
        sources,
    );
    fv.bound = Some(met);
    fv
}

/// The largest of values some of which are known only by their bounds.
fn max_of_bounds(limited: &[Point<'_>], unit: Option<String>) -> FactValue {
    // The largest of values known only by bounds lies between the largest lower end
    // and the largest upper end.
    let ends = |p: &Point<'_>| match p.bound {
        Some(iv) => (iv.lo, iv.hi),
        None => (Some((p.value, true)), Some((p.value, true))),
    };
    let mut lo: Option<(f64, bool)> = None;
    let mut hi: Option<(f64, bool)> = Some((f64::NEG_INFINITY, true));
    for p in limited {
        let (l, h) = ends(p);
        if let Some((v, inc)) = l {
            lo = match lo {
                Some((w, winc)) if w > v => Some((w, winc)),
                // On a tie the strict end wins: one of them is strictly above it.
                Some((w, winc)) if w == v => Some((v, inc && winc)),
                _ => Some((v, inc)),
            };
        }
        hi = match (hi, h) {
            (None, _) | (_, None) => None,
            (Some((w, winc)), Some((v, inc))) => {
                if v > w || (v == w && inc) {
                    Some((v, inc))
                } else {
                    Some((w, winc))
                }
            }
        };
    }
    let iv = Interval { lo, hi };
    if let (Some((l, true)), Some((h, true))) = (iv.lo, iv.hi) {
        if l == h {
            return FactValue::known(l, unit, sources_of(limited));
        }
    }
    let mut fv = FactValue::unknown(
        format!(
            "recorded as {} {}",
            iv.describe(),
            unit.as_deref().unwrap_or_default()
        ),
        sources_of(limited),
    );
    fv.bound = Some(iv);
    fv
}

/// The days in a row, back from the newest, whose every record matches.
fn consecutive_days(b: &FactBinding, points: &[Point<'_>]) -> FactValue {
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
        if !on_day.iter().all(|p: &Point<'_>| matching(b, p)) {
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
        used = sources_of(&points[points.len() - 1..]);
    }
    FactValue::known(run as f64, Some("d".into()), used)
}

/// Whether two records fall on adjacent days (or on one day, where the fact says so).
fn adjacent_days(b: &FactBinding, points: &[Point<'_>]) -> FactValue {
    // Two sessions on one day are less than 24 hours apart too.
    if b.same_day {
        let mut seen: BTreeMap<Date, &str> = BTreeMap::new();
        for p in points.iter() {
            match seen.get(&p.date) {
                Some(other) if *other != p.source => {
                    let used: Vec<String> = points
                        .iter()
                        .filter(|q| q.date == p.date)
                        .map(|q| q.source.to_owned())
                        .collect();
                    return FactValue::known(1.0, None, used);
                }
                _ => {
                    seen.insert(p.date, p.source);
                }
            }
        }
    }
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
            FactValue::known(1.0, None, sources_of(&used))
        }
        None => FactValue::known(0.0, None, sources_of(points)),
    }
}

/// The change between the last period's total and the one before, per `rate_days`.
fn trend(b: &FactBinding, points: &[Point<'_>], as_of: Date) -> FactValue {
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
        return FactValue::unknown("no earlier period to compare with", sources_of(points));
    }
    let ratio = recent / before;
    // A change per `rate_days` (compounded): two weeks of ~10 % a week is ~10 % a week,
    // not the 21 % the two fortnights' totals differ by.
    let change = match b.rate_days {
        Some(days) if days > 0 => ratio.powf(f64::from(days) / period as f64) - 1.0,
        _ => ratio - 1.0,
    };
    FactValue::known(change * 100.0, Some("%".into()), sources_of(points))
}

/// The largest rise of one record over the longest of the period before it.
fn step_up(b: &FactBinding, points: &[Point<'_>], as_of: Date) -> FactValue {
    if points.is_empty() {
        return FactValue::unknown(NOT_RECORDED, vec![]);
    }
    // Each run against the longest run of the `period_days` before its day; the largest
    // rise counts (a run that doubled is a jump even if later runs held).
    let period = i64::from(b.period_days.unwrap_or(7));
    let judged = b.judged_days.map(i64::from);
    let mut rise = 0.0f64;
    let mut used = Vec::new();
    for p in points
        .iter()
        .filter(|p| judged.is_none_or(|j| (as_of - p.date).whole_days() <= j))
    {
        let longest_before = |end: Date| {
            points
                .iter()
                .filter(|q| {
                    q.date < p.date && q.date <= end && (end - q.date).whole_days() < period
                })
                .map(|q| q.value)
                .reduce(f64::max)
        };
        let mut prev = points
            .iter()
            .filter(|q| q.date < p.date && (p.date - q.date).whole_days() <= period)
            .map(|q| q.value)
            .reduce(f64::max);
        // After a break (`judged_days`): the last period that had runs, ending on the
        // last run before this one. A week off is no baseline of 0 km.
        if prev.is_none() && judged.is_some() {
            if let Some(last) = points
                .iter()
                .filter(|q| q.date < p.date)
                .map(|q| q.date)
                .max()
            {
                prev = longest_before(last);
            }
        }
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

/// Every value `fact` reads from `facts` up to `as_of`, day by day, in the fact's unit: the raw
/// series behind an aggregate (for charts), with the engine's own status, date and unit rules
/// but no window. Records that cannot be read are left out; `resolve` reports them.
pub fn series(rs: &RuleSet, facts: &Facts, fact: &str, as_of: Date) -> Vec<(Date, f64)> {
    let Some(b) = rs.doc.facts.get(fact) else {
        return Vec::new();
    };
    let mut points: Vec<(Date, f64, &Record)> = facts
        .records
        .iter()
        .filter(|r| status_counts(r, &rs.doc.data_quality))
        .filter_map(|r| r.date.filter(|d| *d <= as_of).map(|d| (d, r)))
        .flat_map(|(d, r)| {
            b.sources
                .iter()
                .filter(|src| r.kind == src.record && src.matches(&r.codes))
                .filter_map(move |src| match read_value(rs, b, src, r) {
                    Read::Value(v) => Some((d, v, r)),
                    _ => None,
                })
        })
        .collect();
    points.sort_by(|a, b| (a.0, a.2.at).cmp(&(b.0, b.2.at)).then(a.1.total_cmp(&b.1)));
    // A copy by a second device of a value already drawn (one event, D101) is drawn once.
    let mut drawn: Vec<(Date, f64, &Record)> = Vec::with_capacity(points.len());
    for p in points {
        let copy = drawn.iter().any(|q| {
            (q.1 - p.1).abs() <= 1e-9
                && q.2.source != p.2.source
                && q.2.sites == p.2.sites
                && matches!((q.2.at, p.2.at), (Some(a), Some(b)) if (b - a).abs() < ONE_EVENT)
        });
        if !copy {
            drawn.push(p);
        }
    }
    drawn.into_iter().map(|(d, v, _)| (d, v)).collect()
}
