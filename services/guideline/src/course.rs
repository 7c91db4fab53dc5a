//! The patient's course as the rule set reads it: the phase it gives on each day, from the
//! records dated up to that day. A plan page draws it as the timeline's phase bands, so a
//! reviewer sees when the patient would have entered each phase, not only the days Stride
//! happened to be called (a single drafted plan was a sliver of a band on an empty axis).

use time::{Date, Duration};

use crate::decision::{HOLD_FOR_EVALUATION, INSUFFICIENT_DATA};
use crate::evaluate::decide;
use crate::panels::with_panel_findings;
use crate::resolve::{prepare, resolve_with};
use crate::{Facts, RuleSet};

/// Days a course covers at most (the protocol's length and some): a problem-list entry years
/// old does not make a page evaluate every day since.
pub const MAX_DAYS: i64 = 180;

/// Runs of days with one phase, oldest first: (first day, phase id; `None` where the
/// guideline does not apply). From `from` (or `MAX_DAYS` before `to`, whichever is later) to
/// `to`; the last run's phase is the decision on `to`.
pub fn phases(rs: &RuleSet, facts: &Facts, from: Date, to: Date) -> Vec<(Date, Option<String>)> {
    let facts = with_panel_findings(rs, facts);
    // Matching records to facts does not depend on the day: once for the whole course.
    let prepared = prepare(rs, &facts);
    let from = from.max(to - Duration::days(MAX_DAYS));
    let mut runs: Vec<(Date, Option<String>)> = Vec::new();
    let mut day = from;
    while day <= to {
        let table = resolve_with(rs, &facts, &prepared, day, None, None);
        let d = decide(rs, &facts, &prepared, table, day);
        let phase = d.applies.then_some(d.phase).flatten();
        if runs.last().is_none_or(|(_, p)| *p != phase) {
            runs.push((day, phase));
        }
        day += Duration::days(1);
    }
    runs
}

/// A phase's name for a reader: the rule set's title, or the engine's own states in words.
pub fn title(rs: &RuleSet, id: &str) -> String {
    match rs.doc.phases.iter().find(|p| p.id == id) {
        Some(p) => p.title.clone(),
        None if id == HOLD_FOR_EVALUATION => "Hold for evaluation".into(),
        None if id == INSUFFICIENT_DATA => "Insufficient data".into(),
        None => id.to_owned(),
    }
}
