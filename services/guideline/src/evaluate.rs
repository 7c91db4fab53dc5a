//! `evaluate`: (rule set, facts, as-of day) → Decision. Pure and deterministic.

use time::Date;

use crate::decision::{
    Basis, Decision, Dose, Finding, MissingFact, PlannedActivity, Preliminary, RegressionState,
    TraceEntry, Unassessed, Verdict, HOLD_FOR_EVALUATION, INSUFFICIENT_DATA,
};
use crate::facts::Facts;
use crate::model::{Activity, CardText, Comparison, Criterion, Rule, Side};
use crate::panels::with_panel_findings;
use crate::resolve::{
    prepare, resolve_by_side, resolve_on, resolve_with, FactTable, Look, Prepared, NOT_RECORDED,
};
use crate::ruleset::RuleSet;
use crate::units;

/// Whether any of `facts`' records is one the rule set reads (by its codes, or by its words
/// where a fact reads words). A patient whose Conditions hold none is outside the guideline
/// whatever the rest of the record says; one whose Conditions hold any may be inside it once
/// the rest is read, even where the Conditions alone do not open an episode (a problem marked
/// ended reopens on pain recorded after it: `ended_episode_reopens`). A hook call reads a
/// patient's Observations only then.
pub fn reads_any(rs: &RuleSet, facts: &Facts) -> bool {
    !prepare(rs, facts).relevant.is_empty()
}

pub fn evaluate(rs: &RuleSet, facts: &Facts, as_of: Date) -> Decision {
    let facts = with_panel_findings(rs, facts);
    let prepared = prepare(rs, &facts);
    let table = resolve_with(rs, &facts, &prepared, as_of, None, None);
    decide(rs, &facts, &prepared, table, as_of)
}

/// What the decision would be if the named facts were unknown. Explains which data a verdict
/// rests on, and lets tests prove that missing data never silences a red flag.
pub fn evaluate_without(rs: &RuleSet, facts: &Facts, as_of: Date, unknown: &[&str]) -> Decision {
    let facts = with_panel_findings(rs, facts);
    let prepared = prepare(rs, &facts);
    let mut table = resolve_with(rs, &facts, &prepared, as_of, None, None);
    for name in unknown {
        if let Some(v) = table.values.get_mut(*name) {
            v.value = None;
            v.reason = Some("withheld".into());
            // Nothing of it is known: no possible reading either.
            v.alternatives.clear();
            v.alternative_bounds.clear();
            v.bound = None;
        }
    }
    decide(rs, &facts, &prepared, table, as_of)
}

pub(crate) fn decide(
    rs: &RuleSet,
    facts: &Facts,
    prepared: &Prepared,
    table: FactTable,
    as_of: Date,
) -> Decision {
    // Running stops while any episode is in rest: an open episode of the other knee is placed
    // on its own too, and the patient goes no further than the most cautious of them (a
    // review found a left-knee episode one day newer place a runner in walk-run while the
    // right knee's pain was 3, its 0 the left knee's).
    let mut looks: Vec<Look> = oldest_look(rs, &table).into_iter().collect();
    if !table.one_episode && rs.doc.data_quality.findings_by_side {
        looks.extend(
            table
                .other_episodes
                .iter()
                .filter(|l| Some(l.side) != table.placing_side),
        );
    }
    let applies = table.applies;
    let placing_side = table.placing_side;
    let mut decision = decide_one(rs, facts, prepared, table, as_of);
    if !applies {
        return decision;
    }
    for look in looks {
        let theirs = decide_one(
            rs,
            facts,
            prepared,
            resolve_by_side(rs, facts, prepared, as_of, look),
            as_of,
        );
        // Its red flags, the ones that fired on an earlier day and stick among them, are the
        // patient's (the property test found a right knee's persistent tenderness lost once a
        // left-knee episode placed the patient).
        let more: Vec<Finding> = theirs
            .red_flags
            .iter()
            .filter(|f| !decision.red_flags.iter().any(|g| g.id == f.id))
            .map(|f| of_episode(f.clone(), look.side))
            .collect();
        decision
            .unassessed_red_flags
            .retain(|u| !more.iter().any(|f| f.id == u.id));
        let held = !more.is_empty() && decision.phase.as_deref() != Some(HOLD_FOR_EVALUATION);
        decision.red_flags.extend(more);
        let placed_by_theirs = theirs.applies && (held || caution(&theirs) < caution(&decision));
        // Its pitfalls and warnings too: the source's pitfalls are about the runner's training,
        // whichever knee was running (an independent case found a distance jump of the older
        // knee's runs unshown while the newer knee's rest placed the patient).
        carry(
            &mut decision.pitfalls,
            theirs.pitfalls,
            look,
            &rs.doc.pitfalls,
        );
        decision
            .unassessed_pitfalls
            .retain(|u| !decision.pitfalls.iter().any(|f| f.id == u.id));
        // And those it could not check, which are listed, never dropped.
        list_unknown(
            &decision.pitfalls,
            &mut decision.unassessed_pitfalls,
            theirs.unassessed_pitfalls,
            look,
        );
        carry(
            &mut decision.warnings,
            theirs.warnings,
            look,
            &rs.doc.warnings,
        );
        if placed_by_theirs {
            // What holds that episode back is shown too: a red flag it cannot rule out (not
            // for an episode without an onset, whose clock-bound red flags are all unknown:
            // what it asks for is its onset, in `missing`).
            let unassessed = if look.from.is_some() {
                theirs.unassessed_red_flags
            } else {
                Vec::new()
            };
            list_unknown(
                &decision.red_flags,
                &mut decision.unassessed_red_flags,
                unassessed,
                look,
            );
            decision.phase = theirs.phase;
            decision.regression = theirs.regression;
            decision.missing = theirs.missing;
            decision.activities = theirs.activities;
            decision.rehab = theirs.rehab;
            decision.phase_notes = theirs.phase_notes;
            // Both episodes' criteria stay in the trace, each named by its side, so the
            // review page does not show the newer knee's beside the phase the older one set.
            for t in decision.trace.iter_mut().filter(|t| t.side.is_none()) {
                t.side = placing_side;
            }
            decision.trace.extend(theirs.trace.into_iter().map(|mut t| {
                t.side = Some(look.side);
                t
            }));
        }
    }
    decision
}

/// Findings of another episode added to the patient's, each once, in the rule set's order (as
/// the cards are).
fn carry(ours: &mut Vec<Finding>, theirs: Vec<Finding>, look: Look, rules: &[Rule]) {
    let before = ours.len();
    for f in theirs {
        if !ours.iter().any(|g| g.id == f.id) {
            ours.push(of_episode(f, look.side));
        }
    }
    if ours.len() > before {
        ours.sort_by_key(|f| rules.iter().position(|r| r.id == f.id));
    }
}

/// Another episode's rules it could not decide, added to the patient's unless the patient's
/// already fire or list them.
fn list_unknown(
    found: &[Finding],
    unknown: &mut Vec<Unassessed>,
    theirs: Vec<Unassessed>,
    look: Look,
) {
    for mut u in theirs {
        let known = found.iter().any(|f| f.id == u.id) || unknown.iter().any(|v| v.id == u.id);
        if !known {
            u.side = Some(look.side);
            unknown.push(u);
        }
    }
}

/// Another open episode's finding, named by its side: a clinician reading "Distance jump"
/// beside a newer injury's rest would otherwise take it for the newer injury's.
fn of_episode(mut f: Finding, side: Side) -> Finding {
    f.summary = format!("{}: {}", crate::display::side(Some(side)), f.summary);
    f.side = Some(side);
    f
}

/// The oldest open episode, when it is the other knee's and read on its own by its side
/// (`decide`); `decide_one` then does not read it again from its start with this knee's side.
fn oldest_look(rs: &RuleSet, table: &FactTable) -> Option<Look> {
    let (start, onset, side) = (table.episode_start?, table.onset?, table.oldest_side?);
    (rs.doc.data_quality.findings_by_side
        && !table.one_episode
        && start < onset
        && Some(side) != table.placing_side)
        .then_some(Look {
            side,
            from: Some(start),
        })
}

/// How far a decision lets the patient run: every phase without running is 0.
fn caution(d: &Decision) -> u8 {
    match d.phase.as_deref() {
        Some("walk-run") => 1,
        Some("progressive-loading") => 2,
        Some("full-return") => 3,
        _ => 0,
    }
}

fn decide_one(
    rs: &RuleSet,
    facts: &Facts,
    prepared: &Prepared,
    table: FactTable,
    as_of: Date,
) -> Decision {
    let mut ev = Evaluator {
        rs,
        table: &table,
        trace: Vec::new(),
        quiet: false,
        phase: None,
    };
    let doc = &rs.doc;

    let mut decision = Decision {
        rule_set: rs.reference(),
        as_of,
        applies: table.applies,
        episode: table
            .values
            .get(rs.doc.applicability.episode_fact.as_str())
            .map(|v| v.sources.to_vec())
            .unwrap_or_default(),
        phase: None,
        regression: None,
        red_flags: Vec::new(),
        warnings: Vec::new(),
        pitfalls: Vec::new(),
        unassessed_red_flags: Vec::new(),
        unassessed_pitfalls: Vec::new(),
        preliminary_red_flags: Vec::new(),
        phase_notes: Vec::new(),
        stale_episode: None,
        episodes: table.episodes.clone(),
        missing: Vec::new(),
        activities: Vec::new(),
        rehab: Vec::new(),
        ignored: table.ignored.clone(),
        trace: Vec::new(),
    };
    if !table.applies {
        // Orders are checked even without an episode: LIPUS is never recommended. Pitfalls
        // about the patient's own running (consecutive days, distance jumps …) belong to the
        // return-to-running protocol and say nothing about a runner without an episode.
        let order_pitfalls: Vec<Rule> = doc
            .pitfalls
            .iter()
            .filter(|r| reads_only_orders(rs, &r.when))
            .cloned()
            .collect();
        decision.pitfalls = ev.findings(&order_pitfalls, None, false);
        decision.trace = ev.trace;
        dated(&mut decision, facts);
        return decision;
    }

    let mut flags_unknown = Vec::new();
    decision.red_flags = ev.findings(&doc.red_flags, Some(&mut flags_unknown), true);
    if doc.data_quality.preliminary_red_flags_shown {
        decision.preliminary_red_flags = ev.preliminary(&doc.red_flags, &decision.red_flags);
    }
    // Red flags read another way too, added where the main reading did not fire them: a newer
    // episode does not silence the older one (its red flags on its own clock: persistent
    // tenderness after 2 weeks of *its* rest), and an older injury of the same knee is read
    // by that knee's side, so the other knee's "no" never clears it (a review found "no
    // improvement" cleared so). Every open episode of the other knee is decided on its own
    // in `decide`.
    let mut others = Vec::new();
    // (Not when the oldest episode is the other knee's: `decide` reads it by its side.)
    let oldest_looked = oldest_look(rs, &table).is_some();
    if let (Some(start), Some(onset)) = (table.episode_start, table.onset) {
        if doc.data_quality.episodes_by_side && start < onset && !oldest_looked {
            others.push(resolve_with(rs, facts, prepared, as_of, None, Some(start)));
        }
    }
    for look in table
        .other_episodes
        .iter()
        .filter(|l| Some(l.side) == table.placing_side)
    {
        others.push(resolve_by_side(rs, facts, prepared, as_of, *look));
    }
    for other in &others {
        let mut ev_other = Evaluator {
            rs,
            table: other,
            trace: Vec::new(),
            quiet: false,
            phase: None,
        };
        let more: Vec<Finding> = ev_other
            .findings(&doc.red_flags, None, true)
            .into_iter()
            .filter(|f| !decision.red_flags.iter().any(|g| g.id == f.id))
            .collect();
        flags_unknown.retain(|u| !more.iter().any(|f| f.id == u.id));
        decision.red_flags.extend(more);
    }
    if doc.data_quality.imaging_red_flags_stick {
        // A look at one episode reads the earlier days by its side too.
        let side = table.placing_side.filter(|_| table.one_episode);
        let sticky = sticky_red_flags(
            rs,
            facts,
            prepared,
            &table,
            as_of,
            &decision.red_flags,
            side,
        );
        flags_unknown.retain(|u| !sticky.iter().any(|f| f.id == u.id));
        decision.red_flags.extend(sticky);
    }
    decision.unassessed_red_flags = flags_unknown;
    decision.warnings = ev.findings(&doc.warnings, None, false);
    decision.stale_episode = stale(rs, &table, as_of);

    let mut missing_facts: Vec<String> = Vec::new();
    if table.onset.is_none() {
        missing_facts.push(doc.applicability.episode_fact.clone());
    }
    let phase = ev.phase_today(&mut decision, &mut missing_facts);
    ev.phase = Some(phase);

    let mut pitfalls_unknown = Vec::new();
    decision.pitfalls = ev.findings(&doc.pitfalls, Some(&mut pitfalls_unknown), false);
    let back = judged_back(rs, facts, prepared, &table, as_of, &decision.pitfalls);
    if !back.is_empty() {
        pitfalls_unknown.retain(|u| !back.iter().any(|f| f.id == u.id));
        decision.pitfalls.extend(back);
        // In the rule set's order, as the cards are.
        let rank = |id: &str| doc.pitfalls.iter().position(|r| r.id == id);
        decision.pitfalls.sort_by_key(|f| rank(&f.id));
    }
    decision.unassessed_pitfalls = pitfalls_unknown;
    decision.phase_notes = ev.findings(&doc.phase_notes, None, false);
    if let Some(p) = doc.phases.iter().find(|p| p.id == phase) {
        decision.activities = ev.activities(&p.activities);
    }
    if phase != HOLD_FOR_EVALUATION && phase != INSUFFICIENT_DATA {
        decision.rehab = ev.activities(&doc.rehab);
    }
    missing_facts.sort();
    missing_facts.dedup();
    decision.missing = missing_facts
        .into_iter()
        .map(|fact| missing_fact(rs, &table, fact))
        .collect();
    for u in decision
        .unassessed_red_flags
        .iter_mut()
        .chain(&mut decision.unassessed_pitfalls)
    {
        u.needs = u
            .missing
            .iter()
            .map(|f| missing_fact(rs, &table, f.clone()))
            .collect();
    }
    decision.phase = Some(phase.to_owned());
    decision.trace = ev.trace;
    dated(&mut decision, facts);
    decision
}

/// The pitfalls with `judged_when` that did not fire today, decided again as of each day in
/// their window on which a record of their act says more than "no" (a speed session), newest
/// first: the first such day on which one holds gives its finding (COVERAGE D92). Speed work
/// begun when the week before it held less than half the pre-injury distance is premature
/// even once the runs after it have made up the week. The phase on those days is not known,
/// so a criterion on the phase is unknown there; only the facts decide.
fn judged_back(
    rs: &RuleSet,
    facts: &Facts,
    prepared: &Prepared,
    table: &FactTable,
    as_of: Date,
    fired: &[Finding],
) -> Vec<Finding> {
    let mut out = Vec::new();
    let probe = Evaluator {
        rs,
        table,
        trace: Vec::new(),
        quiet: true,
        phase: None,
    };
    for r in &rs.doc.pitfalls {
        let Some(j) = r.judged_when.as_ref() else {
            continue;
        };
        if fired.iter().any(|f| f.id == r.id) {
            continue;
        }
        let (Some(act), Some(binding)) = (
            rs.doc.facts.keys().position(|k| *k == j.fact),
            rs.doc.facts.get(&j.fact),
        ) else {
            continue;
        };
        let from = as_of - time::Duration::days(j.days);
        let mut days = std::collections::BTreeSet::new();
        for (_, record, source) in prepared.counted().filter(|(f, ..)| *f == act) {
            let rec = &facts.records[record];
            if let Some(d) = rec.date.filter(|d| *d >= from && *d < as_of) {
                if !days.contains(&d) && crate::resolve::says_more_than_no(rs, binding, source, rec)
                {
                    days.insert(d);
                }
            }
        }
        if days.is_empty() {
            continue;
        }
        let needed = probe.fact_numbers(&r.when);
        for day in days.into_iter().rev() {
            let then = resolve_with(rs, facts, prepared, day, Some(&needed), None);
            let mut ev = Evaluator {
                rs,
                table: &then,
                trace: Vec::new(),
                quiet: false,
                phase: None,
            };
            if let Some(f) = ev.findings(std::slice::from_ref(r), None, false).pop() {
                out.push(f);
                break;
            }
        }
    }
    out
}

/// Each basis gets the newest day of the records it rests on. Findings are few, records may
/// be many: the day of a source is looked up only for the sources findings name.
fn dated(decision: &mut Decision, facts: &Facts) {
    let findings = decision
        .red_flags
        .iter_mut()
        .chain(&mut decision.warnings)
        .chain(&mut decision.pitfalls)
        .chain(&mut decision.phase_notes)
        .map(|f| &mut f.basis)
        .chain(
            decision
                .preliminary_red_flags
                .iter_mut()
                .map(|p| &mut p.basis),
        );
    for basis in findings {
        for b in basis.iter_mut() {
            b.date = facts
                .records
                .iter()
                .filter(|r| b.sources.contains(&r.source))
                .filter_map(|r| r.date)
                .max();
        }
    }
    if decision.ignored.is_empty() {
        return;
    }
    // Many records may be left out (everything before the episode): one pass over the records.
    let mut days: std::collections::HashMap<&str, Date> = std::collections::HashMap::new();
    for r in &facts.records {
        if let Some(d) = r.date {
            let day = days.entry(r.source.as_str()).or_insert(d);
            *day = (*day).max(d);
        }
    }
    for i in &mut decision.ignored {
        i.date = days.get(i.source.as_str()).copied();
    }
}

/// Red flags that ask for imaging and fired earlier in the episode, but not today: each stays
/// until imaging of the region is recorded on or after the newest record it rested on
/// (`Rule::cleared_by`), or clinic staff approved a plan since. A later negative record alone
/// leaves it standing, not evaluated. Each earlier day one of the rule's records said more
/// than "no" is decided again as of that day, newest first.
fn sticky_red_flags(
    rs: &RuleSet,
    facts: &Facts,
    prepared: &Prepared,
    table: &FactTable,
    as_of: Date,
    fired: &[Finding],
    side: Option<crate::model::Side>,
) -> Vec<Finding> {
    // From the start of the oldest open episode: a newer episode does not wipe out the red
    // flags of the one before it.
    let Some(onset) = table.episode_start else {
        return Vec::new();
    };
    let pending: Vec<&Rule> = rs
        .doc
        .red_flags
        .iter()
        .filter(|r| r.cleared_by.is_some() && !fired.iter().any(|f| f.id == r.id))
        .collect();
    if pending.is_empty() {
        return Vec::new();
    }
    let probe = Evaluator {
        rs,
        table,
        trace: Vec::new(),
        quiet: true,
        phase: None,
    };
    // Each rule is decided again only on the days a record of its facts said more than "no"
    // (a positive, a bound, an unreadable value): on no other day can it have begun to fire.
    // Deciding every day with a record cost six times the rest of `evaluate`
    // (docs/benchmarks.md, "Rule set 1.0.2").
    let per_rule: Vec<std::collections::BTreeSet<usize>> = pending
        .iter()
        .map(|r| probe.fact_numbers(&r.when))
        .collect();
    let bindings: Vec<&crate::model::FactBinding> = rs.doc.facts.values().collect();
    let mut candidates: Vec<std::collections::BTreeSet<Date>> =
        vec![std::collections::BTreeSet::new(); pending.len()];
    for (fact, record, source) in prepared.counted() {
        let rec = &facts.records[record];
        let Some(d) = rec.date.filter(|d| *d >= onset && *d < as_of) else {
            continue;
        };
        for (k, mine) in per_rule.iter().enumerate() {
            if mine.contains(&fact)
                && !candidates[k].contains(&d)
                && crate::resolve::says_more_than_no(rs, bindings[fact], source, rec)
            {
                candidates[k].insert(d);
            }
        }
    }
    let days: std::collections::BTreeSet<Date> = candidates.iter().flatten().copied().collect();
    // Each pending rule with its facts and the days it may have begun to fire.
    let mut pending: Vec<(
        &Rule,
        std::collections::BTreeSet<usize>,
        std::collections::BTreeSet<Date>,
    )> = pending
        .into_iter()
        .zip(per_rule)
        .zip(candidates)
        .map(|((r, f), d)| (r, f, d))
        .collect();
    let mut out = Vec::new();
    for day in days.into_iter().rev() {
        if pending.is_empty() {
            break;
        }
        // Only the facts of the rules that may have begun to fire that day.
        let mut needed: std::collections::BTreeSet<usize> = std::collections::BTreeSet::new();
        for (_, read, on) in &pending {
            if on.contains(&day) {
                needed.extend(read.iter().copied());
            }
        }
        if needed.is_empty() {
            continue;
        }
        let then = resolve_on(rs, facts, prepared, day, Some(&needed), side);
        let mut ev = Evaluator {
            rs,
            table: &then,
            trace: Vec::new(),
            quiet: false,
            phase: None,
        };
        pending.retain(|(r, _, on)| {
            if !on.contains(&day) {
                return true;
            }
            let start = ev.trace.len();
            let positive = rs.doc.data_quality.red_flag_conflicts_positive;
            if ev.verdict(&r.rule, &r.when) != Verdict::Met
                && !(positive && ev.possibly(&r.when, false))
            {
                return true;
            }
            // Evaluated when imaging or a review is dated on or after the newest record the
            // red flag rested on (not the day it was decided on: an old finding is still
            // "the latest" on the days after it).
            let evidence = ev.evidence(start);
            let since = facts
                .records
                .iter()
                .filter(|rec| rec.kind != crate::facts::RecordKind::Condition)
                .filter(|rec| evidence.contains(&rec.source))
                .filter_map(|rec| rec.date)
                .max()
                .unwrap_or(day);
            if !crate::resolve::cleared(rs, facts, r, since, as_of) {
                let mut f = finding(r, &r.card, evidence);
                f.basis = ev.basis(start);
                f.since = Some(since);
                out.push(f);
            }
            false
        });
    }
    out
}

/// The regression the decision names: the rule's card, resolved or not.
fn regression_state(r: &crate::model::Regression, resolved: bool) -> RegressionState {
    RegressionState {
        rule: r.rule.clone(),
        resolved,
        summary: r.card.summary.clone(),
        detail: r.card.detail.clone(),
        cite: r.card.cite.clone(),
    }
}

fn missing_fact(rs: &RuleSet, table: &FactTable, fact: String) -> MissingFact {
    let reason = table
        .values
        .get(fact.as_str())
        .and_then(|v| v.reason.clone())
        .unwrap_or_else(|| NOT_RECORDED.into());
    let text = rs
        .doc
        .facts
        .get(&fact)
        .map(|b| b.text.clone())
        .unwrap_or_else(|| fact.clone());
    MissingFact { fact, text, reason }
}

/// Why the episode looks stale, when it does: older than the rule set's limit, and nothing
/// recorded recently.
fn stale(rs: &RuleSet, table: &FactTable, as_of: Date) -> Option<String> {
    let st = rs.doc.applicability.stale.as_ref()?;
    let days = |p: &str| rs.doc.parameters.get(p).and_then(|p| p.threshold());
    let (after, recent) = (days(&st.after_days)?, days(&st.recent_days)?);
    let elapsed = (as_of - table.onset?).whole_days() as f64;
    let quiet = table
        .newest_observation
        .is_none_or(|d| (as_of - d).whole_days() as f64 > recent);
    (elapsed > after && quiet).then(|| st.note.clone())
}

struct Evaluator<'a> {
    rs: &'a RuleSet,
    table: &'a FactTable<'a>,
    trace: Vec<TraceEntry>,
    /// Decide without writing the trace (what-if readings, peeks): a trace entry is a handful
    /// of allocations, and these verdicts are thrown away.
    quiet: bool,
    /// Known once placement is done; `phase_in` criteria before that are unknown.
    phase: Option<&'a str>,
}

impl<'a> Evaluator<'a> {
    /// The phase today. A red flag that fired holds progression whatever else is unknown
    /// (even the onset); pain regresses to the first phase; staff's approved phase is where
    /// placement starts; a red flag neither confirmed nor ruled out keeps the patient where
    /// they are. What placement lacked is added to `missing_facts`.
    fn phase_today(&mut self, decision: &mut Decision, missing_facts: &mut Vec<String>) -> &'a str {
        let rs: &'a RuleSet = self.rs;
        let (doc, table) = (&rs.doc, self.table);
        if !decision.red_flags.is_empty() {
            HOLD_FOR_EVALUATION
        } else if table.onset.is_none() {
            INSUFFICIENT_DATA
        } else {
            let regression = &doc.regression;
            let mut painful = self.verdict(&regression.rule, &regression.when);
            // One run's pain recorded 0 and 3 by two devices: it may have hurt (D101).
            if painful != Verdict::Met
                && self.one_event(&regression.when)
                && self.possibly(&regression.when, false)
            {
                painful = Verdict::Met;
            }
            let resolved = if painful == Verdict::Met {
                self.verdict(&regression.rule, &regression.resolved)
            } else {
                Verdict::NotMet
            };
            if painful == Verdict::Met {
                decision.regression = Some(regression_state(regression, resolved == Verdict::Met));
            }
            if painful == Verdict::Met && resolved != Verdict::Met {
                &doc.phases[0].id
            } else {
                // Staff approved the patient into a phase: placement goes on from there.
                let start = table.approved.as_ref().map_or(0, |(i, ps)| {
                    self.trace.push(TraceEntry {
                        rule: "approved-plan".into(),
                        check: None,
                        fact: "approved_phase".into(),
                        value: None,
                        unit: None,
                        sources: vec![ps.source.clone()].into(),
                        op: "=".into(),
                        threshold: None,
                        parameter: None,
                        verdict: Verdict::Met,
                        note: Some(format!("approved into {} on {}", ps.phase, ps.since)),
                        side: None,
                    });
                    *i
                });
                let mut placed = self.place(missing_facts, start);
                // Pain now stops progression and regresses, whatever phase a plan holds.
                if let Some(current) = &regression.current {
                    let first = &doc.phases[0].id;
                    if placed != first.as_str()
                        && doc.phases.iter().any(|p| p.id == placed)
                        && (self.verdict(&regression.rule, current) == Verdict::Met
                            // Two pain scores today that disagree: one of them is pain.
                            || self.possibly(current, false))
                    {
                        decision.regression = Some(regression_state(regression, false));
                        placed = first;
                    }
                }
                // Before progression, the red flags are ruled out: one that can be neither
                // confirmed nor ruled out keeps the patient where they are (the approved phase,
                // else the first), and what it needs is asked for.
                let beyond_start = doc.phases.iter().skip(start + 1).any(|p| p.id == placed);
                if doc.data_quality.red_flags_ruled_out_before_progression
                    && beyond_start
                    && !decision.unassessed_red_flags.is_empty()
                {
                    for u in &decision.unassessed_red_flags {
                        missing_facts.extend(u.missing.iter().cloned());
                    }
                    &doc.phases[start].id
                } else {
                    placed
                }
            }
        }
    }

    /// The phase the criteria support today: leave each phase whose exit is met.
    fn place(&mut self, missing: &mut Vec<String>, start: usize) -> &'a str {
        let phases = &self.rs.doc.phases;
        for (i, phase) in phases.iter().enumerate().skip(start) {
            let Some(exit) = &phase.exit else {
                return &phase.id;
            };
            match self.verdict(&phase.rule, exit) {
                Verdict::Met => continue,
                Verdict::NotMet => {
                    self.collect_unknown(exit, missing);
                    return &phase.id;
                }
                Verdict::Unknown => {
                    self.collect_unknown(exit, missing);
                    let beyond = phase
                        .beyond_evidence
                        .as_ref()
                        .map_or(Verdict::NotMet, |c| self.verdict(&phase.rule, c));
                    // The patient acts as if past this phase but its exit cannot be checked:
                    // placing them in either phase would be a guess.
                    return if beyond == Verdict::Met {
                        INSUFFICIENT_DATA
                    } else {
                        &phases[i].id
                    };
                }
            }
        }
        phases.last().map_or(INSUFFICIENT_DATA, |p| &p.id)
    }

    /// Each rule's finding when it fires; rules that can be neither confirmed nor ruled out
    /// go to `unknown`. `red_flags`: safety first, a conflict is read on the side that fires.
    fn findings(
        &mut self,
        rules: &[Rule],
        mut unknown: Option<&mut Vec<Unassessed>>,
        red_flags: bool,
    ) -> Vec<Finding> {
        let conflicts_positive = self.rs.doc.data_quality.red_flag_conflicts_positive && red_flags;
        let mut out = Vec::new();
        for r in rules {
            let start = self.trace.len();
            let verdict = self.verdict(&r.rule, &r.when);
            // Records of one event that disagree: any rule of caution fires on any of their
            // readings, in every rule set (a review found a red flag of 1.0.0, a pitfall and a
            // count that every reading fired left unassessed).
            let positive = conflicts_positive || self.one_event(&r.when);
            // Safety first: a red-flag finding recorded both ways on one day fires on the
            // positive record, and the card says so.
            if positive && verdict != Verdict::Met && self.possibly(&r.when, false) {
                let mut f = self.variant(r, self.found(r, start));
                // A fact read more than one way is named among the conflicts, not by the one
                // value the verdict read (a fall in pain listed as the basis of "no
                // improvement" that fired on the injured knee's own records).
                f.basis.retain(|b| {
                    self.table.values.get(b.fact.as_str()).is_none_or(|v| {
                        v.alternatives.is_empty() && v.alternative_bounds.is_empty()
                    })
                });
                let (notes, sources) = self.conflicts(&r.when);
                f.conflicts = notes;
                f.evidence.extend(sources);
                f.evidence.sort();
                f.evidence.dedup();
                out.push(f);
                continue;
            }
            match verdict {
                Verdict::Met => out.push(self.variant(r, self.found(r, start))),
                // Holds when it fires; its inputs are not demanded.
                Verdict::Unknown if !r.rule_out => {}
                Verdict::Unknown => {
                    if let Some(list) = unknown.as_deref_mut() {
                        let mut missing = Vec::new();
                        self.collect_unknown(&r.when, &mut missing);
                        missing.sort();
                        missing.dedup();
                        list.push(Unassessed {
                            id: r.id.clone(),
                            rule: r.rule.clone(),
                            missing,
                            needs: Vec::new(),
                            side: None,
                        });
                    }
                }
                Verdict::NotMet => {}
            }
        }
        out
    }

    /// The card of the first variant whose criterion is met (a DVT on record rather than signs
    /// of one), else the rule's own.
    fn variant(&self, r: &Rule, mut f: Finding) -> Finding {
        if let Some(v) = r
            .variants
            .iter()
            .find(|v| self.peek(&v.when) == Verdict::Met)
        {
            f.summary = v.card.summary.clone();
            f.detail = v.card.detail.clone();
            f.cite = v.card.cite.clone();
            if let Some(s) = v.severity {
                f.severity = s;
            }
        }
        f
    }

    /// Red flags that did not fire but would on a preliminary record: to be confirmed.
    fn preliminary(&self, rules: &[Rule], fired: &[Finding]) -> Vec<Preliminary> {
        rules
            .iter()
            .filter(|r| !fired.iter().any(|f| f.id == r.id))
            .filter(|r| self.possibly(&r.when, true))
            .map(|r| {
                let mut sources = Vec::new();
                let mut basis: Vec<Basis> = Vec::new();
                self.facts_of(&r.when, &mut |fact| {
                    let (Some(v), Some(b)) =
                        (self.table.values.get(fact), self.rs.doc.facts.get(fact))
                    else {
                        return;
                    };
                    for (value, source) in &v.preliminary {
                        sources.push(source.clone());
                        basis.push(Basis {
                            fact: fact.to_owned(),
                            text: b.text.clone(),
                            kind: b.kind,
                            value: Some(*value),
                            unit: v
                                .unit
                                .clone()
                                .or_else(|| b.output_unit().map(str::to_owned)),
                            date: None,
                            sources: vec![source.clone()],
                        });
                    }
                });
                sources.sort();
                sources.dedup();
                basis.dedup_by(|a, b| a.fact == b.fact && a.sources == b.sources);
                Preliminary {
                    id: r.id.clone(),
                    rule: r.rule.clone(),
                    sources,
                    basis,
                }
            })
            .collect()
    }

    /// Every fact a criterion compares (and the facts its thresholds are percentages of).
    /// The facts `c` reads, numbered in `doc.facts` order (what a look-back resolves again).
    fn fact_numbers(&self, c: &Criterion) -> std::collections::BTreeSet<usize> {
        let mut out = std::collections::BTreeSet::new();
        self.facts_of(c, &mut |f| {
            if let Some(i) = self.rs.doc.facts.keys().position(|k| k == f) {
                out.insert(i);
            }
        });
        out
    }

    /// Whether a fact of `c` is read from records of one event that disagree (D101).
    fn one_event(&self, c: &Criterion) -> bool {
        let mut found = false;
        self.facts_of(c, &mut |fact| {
            found |= self.table.values.get(fact).is_some_and(|v| v.one_event);
        });
        found
    }

    fn facts_of(&self, c: &Criterion, f: &mut dyn FnMut(&str)) {
        match c {
            Criterion::All { all: cs } | Criterion::Any { any: cs } => {
                cs.iter().for_each(|c| self.facts_of(c, f))
            }
            Criterion::Not { not } => self.facts_of(not, f),
            Criterion::PhaseIn { .. } => {}
            Criterion::Compare(cmp) => {
                f(&cmp.fact);
                if let Some(p) = &cmp.percent_of {
                    f(p);
                }
            }
        }
    }

    /// The conflicts a criterion's facts carry, in clinical words, and the records in them.
    fn conflicts(&self, c: &Criterion) -> (Vec<String>, Vec<String>) {
        let (mut notes, mut sources) = (Vec::new(), Vec::new());
        self.facts_of(c, &mut |fact| {
            let Some(v) = self.table.values.get(fact) else {
                return;
            };
            // Readings that disagree, or a record that could not be read beside (or after)
            // what could.
            let readings = v.alternatives.len() + v.alternative_bounds.len();
            if readings > 1 || (v.value.is_none() && readings > 0) {
                let text = self
                    .rs
                    .doc
                    .facts
                    .get(fact)
                    .map_or(fact, |b| b.text.as_str());
                // The records are named in the trace (`sources`); a card's text names none.
                notes.push(format!(
                    "{text}: {}",
                    v.reason.as_deref().unwrap_or("contradictory records")
                ));
                sources.extend(v.sources.iter().cloned());
            }
        });
        notes.sort();
        notes.dedup();
        (notes, sources)
    }

    /// Whether some reading of the records makes `c` hold: every fact of `c` that could have
    /// more than one value (a same-day conflict; with `preliminary`, also the values of
    /// preliminary records) is given each of them in turn, one value per fact across the whole
    /// criterion, and `c` is decided on each reading. No trace is written.
    fn possibly(&self, c: &Criterion, preliminary: bool) -> bool {
        /// One possible reading of a fact: a number, or a bound (`< 3 cm`).
        #[derive(Clone, Copy)]
        enum Reading {
            Value(f64),
            Bound(crate::bound::Interval),
        }
        let mut open: Vec<(String, Vec<Reading>)> = Vec::new();
        self.facts_of(c, &mut |fact| {
            let Some(v) = self.table.values.get(fact) else {
                return;
            };
            let mut candidates: Vec<Reading> =
                if v.alternatives.is_empty() && v.alternative_bounds.is_empty() {
                    v.value.into_iter().map(Reading::Value).collect()
                } else {
                    v.alternatives
                        .iter()
                        .map(|x| Reading::Value(*x))
                        .chain(v.alternative_bounds.iter().map(|iv| Reading::Bound(*iv)))
                        .collect()
                };
            if preliminary {
                candidates.extend(v.preliminary.iter().map(|(x, _)| Reading::Value(*x)));
            }
            let differs = candidates.len() > 1 || (v.value.is_none() && !candidates.is_empty());
            if differs && !open.iter().any(|(f, _)| f == fact) {
                open.push((fact.to_owned(), candidates));
            }
        });
        if open.is_empty() {
            return false;
        }
        // Readings multiply; a criterion names a handful of facts, each with a few values.
        const MAX_READINGS: usize = 4096;
        let readings = open
            .iter()
            .try_fold(1usize, |n, (_, c)| n.checked_mul(c.len()))
            .unwrap_or(usize::MAX);
        if readings > MAX_READINGS {
            return false;
        }
        let mut table = self.table.clone();
        for k in 0..readings {
            let mut rest = k;
            for (fact, candidates) in &open {
                let reading = candidates[rest % candidates.len()];
                rest /= candidates.len();
                if let Some(fv) = table.values.get_mut(fact.as_str()) {
                    match reading {
                        Reading::Value(v) => fv.value = Some(v),
                        Reading::Bound(iv) => {
                            fv.value = None;
                            fv.bound = Some(iv);
                        }
                    }
                }
            }
            let mut quiet = Evaluator {
                rs: self.rs,
                table: &table,
                trace: Vec::new(),
                quiet: true,
                phase: self.phase,
            };
            if quiet.verdict("", c) == Verdict::Met {
                return true;
            }
        }
        false
    }

    /// Rule `r`'s finding, resting on what was traced since `start`.
    fn found(&self, r: &Rule, start: usize) -> Finding {
        let mut f = finding(r, &r.card, self.evidence(start));
        f.basis = self.basis(start);
        f
    }

    /// The facts a finding rests on, once each, as a clinician reads them (days are filled
    /// in from the records by `dated`).
    fn basis(&self, from: usize) -> Vec<Basis> {
        let mut out: Vec<Basis> = Vec::new();
        for t in self.trace[from..]
            .iter()
            .filter(|t| t.verdict == Verdict::Met)
        {
            let Some(b) = self.rs.doc.facts.get(&t.fact) else {
                continue;
            };
            if let Some(seen) = out.iter_mut().find(|x| x.fact == t.fact) {
                for s in t.sources.iter() {
                    if !seen.sources.contains(s) {
                        seen.sources.push(s.clone());
                    }
                }
                continue;
            }
            out.push(Basis {
                fact: t.fact.clone(),
                text: b.text.clone(),
                kind: b.kind,
                value: t.value,
                unit: t
                    .unit
                    .clone()
                    .or_else(|| b.output_unit().map(str::to_owned)),
                date: None,
                sources: t.sources.to_vec(),
            });
        }
        out
    }

    fn evidence(&self, from: usize) -> Vec<String> {
        let mut ev: Vec<String> = self.trace[from..]
            .iter()
            .filter(|t| t.verdict == Verdict::Met)
            .flat_map(|t| t.sources.iter().cloned())
            .collect();
        ev.sort();
        ev.dedup();
        ev
    }

    fn activities(&mut self, list: &[Activity]) -> Vec<PlannedActivity> {
        let mut out = Vec::new();
        for a in list {
            if let Some(cond) = &a.only_if {
                if self.verdict(&a.rule, cond) != Verdict::Met {
                    continue;
                }
            }
            out.push(self.planned(a));
        }
        out
    }

    fn planned(&self, a: &Activity) -> PlannedActivity {
        let params = &self.rs.doc.parameters;
        let mut dosing = Vec::new();
        let mut frequency = None;
        let (mut surfaces, mut avoid) = (Vec::new(), Vec::new());
        if let Some(d) = &a.dosing {
            let named = [
                ("run-interval", &d.run_interval),
                ("walk-interval", &d.walk_interval),
                ("pace", &d.pace),
                ("duration", &d.duration),
                ("distance-increase", &d.distance_increase),
                ("speed-work-after", &d.speed_work_after),
            ];
            for (name, param) in named {
                let Some(pname) = param else { continue };
                let p = &params[pname];
                let (low, high) = match (p.range, p.value) {
                    (Some([lo, hi]), _) => (lo, hi),
                    (None, Some(v)) => (v, v),
                    _ => continue,
                };
                dosing.push(Dose {
                    name: name.into(),
                    parameter: pname.clone(),
                    low,
                    high,
                    unit: p.unit.clone(),
                });
            }
            frequency = d.frequency;
            surfaces = d.surfaces.clone();
            avoid = d.avoid.clone();
        }
        PlannedActivity {
            id: a.id.clone(),
            rule: a.rule.clone(),
            text: a.text.clone(),
            cite: a.cite.clone(),
            dosing,
            frequency,
            surfaces,
            avoid,
        }
    }

    /// Facts that are unknown under `c` (the ones whose absence mattered). An `any` that is
    /// already met by another branch needs nothing more.
    fn collect_unknown(&self, c: &Criterion, out: &mut Vec<String>) {
        match c {
            Criterion::Any { any: cs } if cs.iter().any(|c| self.peek(c) == Verdict::Met) => {}
            Criterion::All { all: cs } | Criterion::Any { any: cs } => {
                cs.iter().for_each(|c| self.collect_unknown(c, out))
            }
            Criterion::Not { not } => self.collect_unknown(not, out),
            Criterion::PhaseIn { .. } => {}
            Criterion::Compare(cmp) => {
                for f in std::iter::once(&cmp.fact).chain(&cmp.percent_of) {
                    if self
                        .table
                        .values
                        .get(f.as_str())
                        .is_none_or(|v| v.value.is_none())
                    {
                        out.push(f.clone());
                    }
                }
            }
        }
    }

    /// The verdict of `c` without writing the trace.
    fn peek(&self, c: &Criterion) -> Verdict {
        let mut quiet = Evaluator {
            rs: self.rs,
            table: self.table,
            trace: Vec::new(),
            quiet: true,
            phase: self.phase,
        };
        quiet.verdict("", c)
    }

    fn verdict(&mut self, rule: &str, c: &Criterion) -> Verdict {
        match c {
            Criterion::All { all } => all
                .iter()
                .fold(Verdict::Met, |acc, c| acc.and(self.verdict(rule, c))),
            Criterion::Any { any } => any
                .iter()
                .fold(Verdict::NotMet, |acc, c| acc.or(self.verdict(rule, c))),
            Criterion::Not { not } => !self.verdict(rule, not),
            Criterion::PhaseIn { phase_in } => match self.phase {
                Some(p) if phase_in.iter().any(|q| q == p) => Verdict::Met,
                Some(_) => Verdict::NotMet,
                None => Verdict::Unknown,
            },
            Criterion::Compare(cmp) => self.compare(rule, cmp),
        }
    }

    fn compare(&mut self, rule: &str, cmp: &Comparison) -> Verdict {
        let fact = self.table.values.get(cmp.fact.as_str());
        let (threshold, note) = self.threshold(cmp);
        let value = fact.and_then(|f| f.value);
        let verdict = match (value, threshold, fact.and_then(|f| f.bound)) {
            (Some(v), Some(t), _) => {
                if cmp.op.holds(v, t) {
                    Verdict::Met
                } else {
                    Verdict::NotMet
                }
            }
            // Known only as a bound: decided when every value it allows decides alike.
            (None, Some(t), Some(iv)) => match iv.decides(cmp.op, t) {
                Some(true) => Verdict::Met,
                Some(false) => Verdict::NotMet,
                None => Verdict::Unknown,
            },
            _ => Verdict::Unknown,
        };
        if self.quiet {
            return verdict;
        }
        let note = note.or_else(|| fact.and_then(|f| f.reason.clone()));
        self.trace.push(TraceEntry {
            rule: rule.to_owned(),
            check: cmp.id.clone(),
            fact: cmp.fact.clone(),
            value,
            unit: fact.and_then(|f| f.unit.clone()),
            sources: fact.map(|f| f.sources.clone()).unwrap_or_default(),
            op: cmp.op.symbol().to_owned(),
            threshold,
            parameter: cmp.param.clone(),
            verdict,
            note,
            side: None,
        });
        verdict
    }

    /// The number to compare with, in the fact's unit.
    fn threshold(&self, cmp: &Comparison) -> (Option<f64>, Option<String>) {
        if let Some(v) = &cmp.value {
            return (
                v.as_f64()
                    .or_else(|| v.as_bool().map(|b| if b { 1.0 } else { 0.0 })),
                None,
            );
        }
        let Some(p) = cmp.param.as_ref().map(|p| &self.rs.doc.parameters[p]) else {
            return (None, None);
        };
        let Some(t) = p.threshold() else {
            return (None, None);
        };
        if let Some(other) = &cmp.percent_of {
            return match self.table.values.get(other.as_str()).and_then(|f| f.value) {
                Some(base) => (Some(t / 100.0 * base), None),
                None => (None, Some(format!("{other} unknown"))),
            };
        }
        let fact_unit = if cmp.fact == self.rs.doc.applicability.elapsed_fact {
            Some("d")
        } else {
            self.rs
                .doc
                .facts
                .get(&cmp.fact)
                .and_then(|b| b.output_unit())
        };
        match fact_unit {
            Some(fu) if fu != p.unit => (units::convert(t, &p.unit, fu), None),
            _ => (Some(t), None),
        }
    }
}

/// Whether every fact `c` compares is read from orders only (no phase, no observation).
fn reads_only_orders(rs: &RuleSet, c: &Criterion) -> bool {
    match c {
        Criterion::All { all: cs } | Criterion::Any { any: cs } => {
            cs.iter().all(|c| reads_only_orders(rs, c))
        }
        Criterion::Not { not } => reads_only_orders(rs, not),
        Criterion::PhaseIn { .. } => false,
        Criterion::Compare(cmp) => std::iter::once(&cmp.fact).chain(&cmp.percent_of).all(|f| {
            rs.doc.facts.get(f).is_some_and(|b| {
                b.sources
                    .iter()
                    .all(|s| s.record == crate::model::RecordKind::Order)
            })
        }),
    }
}

fn finding(r: &Rule, card: &CardText, evidence: Vec<String>) -> Finding {
    Finding {
        id: r.id.clone(),
        rule: r.rule.clone(),
        severity: r.severity,
        suggest_imaging: r.suggest_imaging,
        summary: card.summary.clone(),
        detail: card.detail.clone(),
        cite: card.cite.clone(),
        evidence,
        conflicts: Vec::new(),
        since: None,
        basis: Vec::new(),
        side: None,
    }
}
