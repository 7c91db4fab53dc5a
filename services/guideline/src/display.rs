//! Values as clinicians and patients write them. Rule sets keep UCUM codes (`{score}`, `d`,
//! `[mi_i]`) because that is what records carry and what the engine compares; text a person
//! reads says "6/10", "12 days", "3 mi". Cards, the staff pages and the patient's plan all
//! print values through here, so a unit reads the same wherever it is shown.

use time::Date;

use crate::decision::{TraceEntry, Verdict};
use crate::model::{Side, ValueKind};
use crate::RuleSet;

/// A number as people write it: no `-0`, no trailing zeros, at most two decimals.
pub fn number(x: f64) -> String {
    let rounded = (x * 100.0).round() / 100.0;
    // -0.0 (a fall of nothing) prints as 0.
    let rounded = if rounded == 0.0 { 0.0 } else { rounded };
    let text = format!("{rounded:.2}");
    text.trim_end_matches('0').trim_end_matches('.').to_owned()
}

/// A value with its unit in words: `6/10`, `12 days`, `1 day`, `5 cm`, `38 °C`, `3 mi`.
/// A dimensionless count (`1`) is the number alone.
pub fn quantity(x: f64, unit: Option<&str>) -> String {
    let n = number(x);
    let one = n == "1";
    let plural = |s: &str, p: &str| format!("{n} {}", if one { s } else { p });
    match unit.unwrap_or("1") {
        "1" => n,
        "{score}" => format!("{n}/10"),
        "%" => format!("{n}%"),
        "d" => plural("day", "days"),
        "wk" => plural("week", "weeks"),
        "a" => plural("year", "years"),
        "h" => plural("hour", "hours"),
        "min" => format!("{n} min"),
        "s" => format!("{n} s"),
        "Cel" => format!("{n} °C"),
        "[mi_i]" => format!("{n} mi"),
        "[in_i]" => format!("{n} in"),
        "[fur_us]" => plural("furlong", "furlongs"),
        // A UCUM annotation is a word in braces: say the word.
        other if other.starts_with('{') && other.ends_with('}') => {
            format!("{n} {}", &other[1..other.len() - 1])
        }
        other => format!("{n} {other}"),
    }
}

/// Yes or no, for a finding recorded present (1) or absent (0).
pub fn yes_no(x: f64) -> &'static str {
    if x != 0.0 {
        "yes"
    } else {
        "no"
    }
}

/// A day as a clinician reads it: `3 Dec 2026`.
pub fn day(d: Date) -> String {
    d.format(time::macros::format_description!(
        "[day padding:none] [month repr:short] [year]"
    ))
    .unwrap_or_else(|_| d.to_string())
}

/// An open episode's side as a heading: "Right side", "Both sides", "Side not recorded".
pub fn side(side: Option<Side>) -> &'static str {
    match side {
        Some(Side::Right) => "Right side",
        Some(Side::Left) => "Left side",
        Some(Side::Bilateral) => "Both sides",
        None => "Side not recorded",
    }
}

/// What a criterion asks for, in words: "10–14 days", "at least 30 min", "no".
fn needs(rs: &RuleSet, t: &TraceEntry, boolean: bool, unit: Option<&str>) -> Option<String> {
    let threshold = t.threshold?;
    if boolean {
        return Some(yes_no(threshold).to_owned());
    }
    let param = t
        .parameter
        .as_deref()
        .and_then(|p| rs.doc.parameters.get(p));
    if let (Some([lo, hi]), "≥" | ">") = (param.and_then(|p| p.range), t.op.as_str()) {
        if (threshold - lo).abs() < 1e-9 {
            return Some(format!("{}–{}", number(lo), quantity(hi, unit)));
        }
    }
    let words = match t.op.as_str() {
        "≥" => "at least ",
        ">" => "more than ",
        "≤" => "at most ",
        "<" => "less than ",
        "≠" => "not ",
        _ => "",
    };
    Some(format!("{words}{}", quantity(threshold, unit)))
}

/// One criterion of a decision as a clinician reads it, with no fact or rule ids: "Consecutive
/// pain-free walking days: 12, recorded 3 Dec 2026 — needs 10–14 days: met". `recorded` is the
/// newest day of the records it rests on.
pub fn criterion(rs: &RuleSet, t: &TraceEntry, recorded: Option<Date>) -> String {
    let binding = rs.doc.facts.get(&t.fact);
    // The days since onset are the engine's own fact, dated by the onset.
    let elapsed = t.fact == rs.doc.applicability.elapsed_fact;
    let name = match binding {
        Some(b) => b.text.as_str(),
        None if elapsed => "Days since the pain began",
        None => t.fact.as_str(),
    };
    let boolean = binding.is_some_and(|b| b.kind == ValueKind::Boolean);
    let unit = t
        .unit
        .as_deref()
        .or_else(|| binding.and_then(|b| b.output_unit()))
        .or(elapsed.then_some("d"));
    let value = match t.value {
        Some(v) if boolean => yes_no(v).to_owned(),
        Some(v) => quantity(v, unit),
        None => "not recorded".to_owned(),
    };
    let mut text = match t.side {
        Some(s) => format!("{}: {name}: {value}", side(Some(s))),
        None => format!("{name}: {value}"),
    };
    match (recorded, t.value) {
        (Some(d), Some(_)) if elapsed => text.push_str(&format!(" (onset {})", day(d))),
        (Some(d), Some(_)) => text.push_str(&format!(", recorded {}", day(d))),
        _ => {}
    }
    if let Some(n) = needs(rs, t, boolean, unit) {
        text.push_str(&format!(" — needs {n}"));
    }
    let verdict = match t.verdict {
        Verdict::Met => "met",
        Verdict::NotMet => "not met",
        Verdict::Unknown => "unknown",
    };
    format!("{text}: {verdict}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn units_read_as_words() {
        assert_eq!(quantity(6.0, Some("{score}")), "6/10");
        assert_eq!(quantity(-0.0, Some("km")), "0 km");
        assert_eq!(quantity(1.0, Some("d")), "1 day");
        assert_eq!(quantity(12.0, Some("d")), "12 days");
        assert_eq!(quantity(3.0, Some("1")), "3");
        assert_eq!(quantity(2.5, Some("[mi_i]")), "2.5 mi");
        assert_eq!(quantity(38.25, Some("Cel")), "38.25 °C");
        assert_eq!(quantity(4.0, Some("{sessions}")), "4 sessions");
        assert_eq!(quantity(10.0, None), "10");
        assert_eq!(day(time::macros::date!(2026 - 12 - 03)), "3 Dec 2026");
    }

    proptest! {
        /// Whatever the value and unit, the text a person reads has no negative zero, no unit
        /// code in braces or brackets, and no trailing decimal zeros.
        #[test]
        fn no_unit_code_or_negative_zero_is_ever_printed(
            x in -1000.0f64..1000.0,
            unit in prop::sample::select(vec!["1", "{score}", "%", "d", "wk", "a", "h", "min", "s",
                "Cel", "[mi_i]", "[in_i]", "[fur_us]", "km", "m", "cm", "mm", "{sessions}"]),
        ) {
            let text = quantity(x, Some(unit));
            prop_assert!(!text.starts_with("-0 ") && text != "-0" && !text.starts_with("-0/"), "{text}");
            prop_assert!(!text.contains('{') && !text.contains('[') && !text.contains("Cel"), "{text}");
            let n = text.split([' ', '/', '%']).next().unwrap();
            prop_assert!(!(n.contains('.') && n.ends_with('0')), "{text}");
            prop_assert!((n.parse::<f64>().unwrap() - x).abs() <= 0.005 + 1e-9, "{text} for {x}");
        }
    }
}
