//! Card effectiveness as FHIR R4 MeasureReports, one per card and month, so a quality team
//! loads the figures into its own tools: how often a card was shown, accepted, overridden
//! (stratified by override reason) and shown with no feedback.

use serde_json::{json, Value as Json};

/// The measure the reports are of (Stride's own; no published Measure exists for it).
pub const MEASURE: &str = "http://stride-cds.org/fhir/Measure/card-effectiveness";
/// The populations counted.
pub const POPULATION_SYSTEM: &str = "http://stride-cds.org/fhir/CodeSystem/card-outcome";
/// The rule-set version behind the card, as an extension of the report.
pub const RULE_SET_EXTENSION: &str = "http://stride-cds.org/fhir/StructureDefinition/rule-set";

/// One card's figures for one month.
pub struct CardFigures<'a> {
    pub rule_set_url: &'a str,
    pub rule_set_version: &'a str,
    pub decision_system: &'a str,
    pub decision_id: &'a str,
    pub tenant: &'a str,
    /// `YYYY-MM`.
    pub period: &'a str,
    pub shown: i64,
    pub accepted: i64,
    pub overridden: i64,
    pub without_feedback: i64,
    /// Override reasons (codes of `override_system`) and how many cards each.
    pub reasons: &'a [(String, i64)],
    pub override_system: &'a str,
}

/// The first and last day of a `YYYY-MM` month.
fn month(period: &str) -> (String, String) {
    let parsed = period.split_once('-').and_then(|(y, m)| {
        let (y, m) = (y.parse::<i32>().ok()?, m.parse::<u8>().ok()?);
        let first = time::Date::from_calendar_date(y, time::Month::try_from(m).ok()?, 1).ok()?;
        let next = if m == 12 {
            time::Date::from_calendar_date(y + 1, time::Month::January, 1).ok()?
        } else {
            time::Date::from_calendar_date(y, time::Month::try_from(m + 1).ok()?, 1).ok()?
        };
        Some((first.to_string(), next.previous_day()?.to_string()))
    });
    parsed.unwrap_or_else(|| (period.to_owned(), period.to_owned()))
}

pub fn measure_report(f: &CardFigures<'_>) -> Json {
    let (start, end) = month(f.period);
    let population = |code: &str, count: i64| json!({"code": {"coding": [{"system": POPULATION_SYSTEM, "code": code}]}, "count": count});
    let mut group = json!({
        "code": {"coding": [{"system": f.decision_system, "code": f.decision_id}]},
        "population": [
            population("shown", f.shown),
            population("accepted", f.accepted),
            population("overridden", f.overridden),
            population("no-feedback", f.without_feedback),
        ],
    });
    if f.shown > 0 {
        // The override rate, as the page plots it.
        group["measureScore"] =
            json!({"value": (f.overridden as f64 / f.shown as f64 * 1000.0).round() / 1000.0});
    }
    if !f.reasons.is_empty() {
        group["stratifier"] = json!([{
            "code": [{"text": "override reason"}],
            "stratum": f.reasons.iter().map(|(reason, n)| json!({
                "value": {"coding": [{"system": f.override_system, "code": reason}]},
                "population": [population("overridden", *n)],
            })).collect::<Vec<_>>(),
        }]);
    }
    json!({
        "resourceType": "MeasureReport",
        "status": "complete",
        "type": "summary",
        "measure": MEASURE,
        "date": end,
        "period": {"start": start, "end": end},
        "reporter": {"display": f.tenant},
        "extension": [{"url": RULE_SET_EXTENSION,
                       "valueCanonical": format!("{}|{}", f.rule_set_url, f.rule_set_version)}],
        "group": [group],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_month_is_its_first_and_last_day() {
        assert_eq!(month("2026-12"), ("2026-12-01".into(), "2026-12-31".into()));
        assert_eq!(month("2024-02"), ("2024-02-01".into(), "2024-02-29".into()));
    }
}
