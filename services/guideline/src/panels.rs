//! Findings recorded as the components of a panel (an EHR's flowsheet group, an exam form, a
//! device's report) are read as records of their own, with the panel's date, status, body
//! site and source. Without this, a panel coded with the EHR's own flowsheet code hid every
//! finding inside it: a focal tenderness of 2 cm in a lower-leg exam panel raised no red flag
//! (independent adversarial case 86). A component the rule set already reads as a component of
//! its record (the pain score of a running session) stays read that way only, never twice.

use std::borrow::Cow;

use crate::facts::{Code, Facts, Record};
use crate::model::RecordKind;
use crate::ruleset::RuleSet;

/// The records with every panel finding added as a record of its own (`panel_components_read`);
/// the records themselves, unchanged and uncopied, when there is none.
pub(crate) fn with_panel_findings<'f>(rs: &RuleSet, facts: &'f Facts) -> Cow<'f, Facts> {
    if !rs.doc.data_quality.panel_components_read {
        return Cow::Borrowed(facts);
    }
    let mut found = Vec::new();
    for r in &facts.records {
        if r.kind != RecordKind::Observation {
            continue;
        }
        for c in &r.components {
            if read_alone(rs, &c.codes) && !read_as_component(rs, &r.codes, &c.codes) {
                found.push(Record {
                    codes: c.codes.clone(),
                    components: Vec::new(),
                    date: r.date,
                    end: r.end,
                    kind: r.kind,
                    sites: r.sites.clone(),
                    source: r.source.clone(),
                    start: r.start,
                    status: r.status.clone(),
                    value: c.value.clone(),
                });
            }
        }
    }
    if found.is_empty() {
        return Cow::Borrowed(facts);
    }
    let mut facts = facts.clone();
    facts.records.extend(found);
    Cow::Owned(facts)
}

/// Whether some fact reads an Observation carrying one of `codes` by its own value.
fn read_alone(rs: &RuleSet, codes: &[Code]) -> bool {
    codes.iter().any(|c| rs.reads_alone(c))
}

/// Whether some fact reads a record carrying `record` through a component in `component`.
fn read_as_component(rs: &RuleSet, record: &[Code], component: &[Code]) -> bool {
    record
        .iter()
        .any(|r| component.iter().any(|c| rs.reads_component(r, c)))
}
