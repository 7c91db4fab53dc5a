//! `evaluate`: (rule set, facts, as-of day) → Decision. Pure and deterministic.

use time::Date;

use crate::decision::{
    Decision, Dose, Finding, MissingFact, PlannedActivity, RegressionState, TraceEntry, Unassessed,
    Verdict, HOLD_FOR_EVALUATION, INSUFFICIENT_DATA,
};
use crate::facts::Facts;
use crate::model::{Activity, CardText, Comparison, Criterion, Rule};
use crate::resolve::{resolve, FactTable};
use crate::ruleset::RuleSet;
use crate::units;

pub fn evaluate(rs: &RuleSet, facts: &Facts, as_of: Date) -> Decision {
    decide(rs, resolve(rs, facts, as_of), as_of)
}

/// What the decision would be if the named facts were unknown. Explains which data a verdict
/// rests on, and lets tests prove that missing data never silences a red flag.
pub fn evaluate_without(rs: &RuleSet, facts: &Facts, as_of: Date, unknown: &[&str]) -> Decision {
    let mut table = resolve(rs, facts, as_of);
    for name in unknown {
        if let Some(v) = table.values.get_mut(*name) {
            v.value = None;
            v.reason = Some("withheld".into());
        }
    }
    decide(rs, table, as_of)
}

fn decide(rs: &RuleSet, table: FactTable, as_of: Date) -> Decision {
    let mut ev = Evaluator {
        rs,
        table: &table,
        trace: Vec::new(),
        phase: None,
    };
    let doc = &rs.doc;

    let mut decision = Decision {
        rule_set: rs.reference(),
        as_of,
        applies: table.applies,
        episode: table
            .values
            .get(&rs.doc.applicability.episode_fact)
            .map(|v| v.sources.clone())
            .unwrap_or_default(),
        phase: None,
        regression: None,
        red_flags: Vec::new(),
        warnings: Vec::new(),
        pitfalls: Vec::new(),
        unassessed_red_flags: Vec::new(),
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
        decision.pitfalls = ev.findings(&order_pitfalls, None);
        decision.trace = ev.trace;
        return decision;
    }

    let mut flags_unknown = Vec::new();
    decision.red_flags = ev.findings(&doc.red_flags, Some(&mut flags_unknown));
    decision.unassessed_red_flags = flags_unknown;
    decision.warnings = ev.findings(&doc.warnings, None);

    let mut missing_facts: Vec<String> = Vec::new();
    if table.onset.is_none() {
        missing_facts.push(doc.applicability.episode_fact.clone());
    }
    // A red flag that fired holds progression whatever else is unknown (even the onset).
    let phase = if !decision.red_flags.is_empty() {
        HOLD_FOR_EVALUATION.to_owned()
    } else if table.onset.is_none() {
        INSUFFICIENT_DATA.to_owned()
    } else {
        let regression = &doc.regression;
        let painful = ev.verdict(&regression.rule, &regression.when);
        let resolved = if painful == Verdict::Met {
            ev.verdict(&regression.rule, &regression.resolved)
        } else {
            Verdict::NotMet
        };
        if painful == Verdict::Met {
            decision.regression = Some(RegressionState {
                rule: regression.rule.clone(),
                resolved: resolved == Verdict::Met,
                summary: regression.card.summary.clone(),
                detail: regression.card.detail.clone(),
                cite: regression.card.cite.clone(),
            });
        }
        if painful == Verdict::Met && resolved != Verdict::Met {
            doc.phases[0].id.clone()
        } else {
            ev.place(&mut missing_facts)
        }
    };
    ev.phase = Some(phase.clone());

    decision.pitfalls = ev.findings(&doc.pitfalls, None);
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
        .map(|fact| {
            let reason = table
                .values
                .get(&fact)
                .and_then(|v| v.reason.clone())
                .unwrap_or_else(|| "no record".into());
            let text = doc
                .facts
                .get(&fact)
                .map(|b| b.text.clone())
                .unwrap_or_else(|| fact.clone());
            MissingFact { fact, text, reason }
        })
        .collect();
    decision.phase = Some(phase);
    decision.trace = ev.trace;
    decision
}

struct Evaluator<'a> {
    rs: &'a RuleSet,
    table: &'a FactTable,
    trace: Vec<TraceEntry>,
    /// Known once placement is done; `phase_in` criteria before that are unknown.
    phase: Option<String>,
}

impl Evaluator<'_> {
    /// The phase the criteria support today: leave each phase whose exit is met.
    fn place(&mut self, missing: &mut Vec<String>) -> String {
        let phases = &self.rs.doc.phases;
        for (i, phase) in phases.iter().enumerate() {
            let Some(exit) = &phase.exit else {
                return phase.id.clone();
            };
            match self.verdict(&phase.rule, exit) {
                Verdict::Met => continue,
                Verdict::NotMet => {
                    self.collect_unknown(exit, missing);
                    return phase.id.clone();
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
                        INSUFFICIENT_DATA.to_owned()
                    } else {
                        phases[i].id.clone()
                    };
                }
            }
        }
        phases
            .last()
            .map(|p| p.id.clone())
            .unwrap_or_else(|| INSUFFICIENT_DATA.to_owned())
    }

    fn findings(
        &mut self,
        rules: &[Rule],
        mut unknown: Option<&mut Vec<Unassessed>>,
    ) -> Vec<Finding> {
        let mut out = Vec::new();
        for r in rules {
            let start = self.trace.len();
            match self.verdict(&r.rule, &r.when) {
                Verdict::Met => out.push(finding(r, &r.card, self.evidence(start))),
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
                        });
                    }
                }
                Verdict::NotMet => {}
            }
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
                    if self.table.values.get(f).is_none_or(|v| v.value.is_none()) {
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
            phase: self.phase.clone(),
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
            Criterion::PhaseIn { phase_in } => match &self.phase {
                Some(p) if phase_in.contains(p) => Verdict::Met,
                Some(_) => Verdict::NotMet,
                None => Verdict::Unknown,
            },
            Criterion::Compare(cmp) => self.compare(rule, cmp),
        }
    }

    fn compare(&mut self, rule: &str, cmp: &Comparison) -> Verdict {
        let fact = self.table.values.get(&cmp.fact);
        let (threshold, note) = self.threshold(cmp);
        let value = fact.and_then(|f| f.value);
        let verdict = match (value, threshold) {
            (Some(v), Some(t)) => {
                if cmp.op.holds(v, t) {
                    Verdict::Met
                } else {
                    Verdict::NotMet
                }
            }
            _ => Verdict::Unknown,
        };
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
            return match self.table.values.get(other).and_then(|f| f.value) {
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
    }
}
