//! Findings recorded as the components of a panel (an EHR's flowsheet group, an exam form, a
//! device's report) are read as records of their own, with the panel's date, status, body
//! site and source. Without this, a panel coded with the EHR's own flowsheet code hid every
//! finding inside it: a focal tenderness of 2 cm in a lower-leg exam panel raised no red flag
//! (independent adversarial case 86). A component the rule set already reads as a component of
//! its record (the pain score of a running session) stays read that way only, never twice.

use std::borrow::Cow;

use crate::facts::{Facts, Record};
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
        if r.kind != RecordKind::Observation || r.components.is_empty() {
            continue;
        }
        // What is read of this record as its components (a running session's pain): one
        // lookup per record, so a session costs nothing more per call.
        let as_components = r.codes.iter().find_map(|c| rs.components_read(c));
        for c in &r.components {
            let read_as_component =
                as_components.is_some_and(|read| c.codes.iter().any(|k| read.contains(k)));
            if !read_as_component && c.codes.iter().any(|k| rs.reads_alone(k)) {
                found.push(Record {
                    at: r.at,
                    text: None,
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
