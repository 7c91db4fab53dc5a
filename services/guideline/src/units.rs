//! UCUM unit conversion for the units the guideline's facts use, and UCUM terms made of one
//! of them (a power of ten times it, or it annotated). A unit outside these makes the value
//! unknown: Stride never guesses a unit.

/// (UCUM code, dimension, factor to the dimension's base unit)
const UNITS: &[(&str, &str, f64)] = &[
    ("mm", "length", 0.001),
    ("cm", "length", 0.01),
    ("m", "length", 1.0),
    ("km", "length", 1000.0),
    // International inch, foot and mile: exact by definition (UCUM customary units).
    ("[in_i]", "length", 0.0254),
    ("[ft_i]", "length", 0.3048),
    ("[mi_i]", "length", 1609.344),
    ("s", "time", 1.0),
    ("min", "time", 60.0),
    ("h", "time", 3600.0),
    ("d", "time", 86_400.0),
    ("wk", "time", 604_800.0),
    // UCUM's year: the mean Julian year, 365.25 days.
    ("a", "time", 31_557_600.0),
    ("%", "percent", 1.0),
    // Degrees Celsius only: Fahrenheit is not a multiple of it (a body temperature in
    // [degF] is unknown, never guessed).
    ("Cel", "temperature", 1.0),
    ("{score}", "score", 1.0),
    ("1", "score", 1.0),
];

fn lookup(unit: &str) -> Option<(&'static str, f64)> {
    exact(unit).or_else(|| term(unit))
}

fn exact(unit: &str) -> Option<(&'static str, f64)> {
    UNITS
        .iter()
        .find(|(u, _, _)| *u == unit)
        .map(|(_, d, f)| (*d, *f))
}

/// A UCUM term made of one unit of the table (UCUM's grammar, unitsofmeasure.org, sections
/// 2–3): multiplied by powers of ten (`10*3.m` is 1000 m, a kilometre; `10^3` is the same
/// factor), or carrying an annotation (`km{run}`: "annotations do not contribute to the
/// semantics of the unit"). Anything else is not read: a quotient (`km/{run}`, a distance per
/// run, not a distance), two units multiplied, an exponent on a unit.
fn term(unit: &str) -> Option<(&'static str, f64)> {
    let (base, factor) = parse_term(unit)?;
    let (dimension, f) = exact(base)?;
    Some((dimension, f * factor))
}

/// The one unit of the table a UCUM term is made of (`term`), if it is one.
pub fn base_of(unit: &str) -> Option<&str> {
    parse_term(unit).map(|(base, _)| base)
}

/// A term's unit of the table and its power-of-ten factor.
fn parse_term(unit: &str) -> Option<(&str, f64)> {
    if unit.contains('/') {
        return None;
    }
    let mut factor = 1.0_f64;
    let mut found: Option<&str> = None;
    for part in unit.split('.') {
        if let Some(exp) = part
            .strip_prefix("10*")
            .or_else(|| part.strip_prefix("10^"))
        {
            let e: i32 = exp.parse().ok().filter(|e: &i32| e.abs() <= 24)?;
            factor *= 10f64.powi(e);
            continue;
        }
        let bare = match part.find('{') {
            Some(i) if i > 0 && part.ends_with('}') => &part[..i],
            _ => part,
        };
        exact(bare)?;
        if found.replace(bare).is_some() {
            return None;
        }
    }
    Some((found?, factor))
}

/// Whether `unit` is a UCUM code Stride understands.
pub fn is_known(unit: &str) -> bool {
    lookup(unit).is_some()
}

/// Convert `value` from one UCUM unit to another of the same dimension.
pub fn convert(value: f64, from: &str, to: &str) -> Option<f64> {
    let (df, ff) = lookup(from)?;
    let (dt, ft) = lookup(to)?;
    (df == dt).then(|| value * ff / ft)
}

/// A fraction where a percentage is read (`fraction_as_percent`): UCUM's unity, 0.84 [1], is
/// 84 % (a dynamometer exporting a limb symmetry ratio). `1` stays a score's unit everywhere
/// else; a value that was a percentage already (84 [1]) becomes 8400 % and fails the fact's
/// plausible range, so it is unknown, never read as 84.
///
/// Rounded to a billionth: in binary 0.57 × 100 is 56.99999999999999, which a threshold of
/// 57 % would read as under it, though the device said 57 %.
pub fn fraction_as_percent(value: f64, from: &str, to: &str) -> Option<f64> {
    ((from, to) == ("1", "%")).then_some((value * 100.0 * 1e9).round() / 1e9)
}

/// A score may arrive without a unit; every other quantity needs one.
pub fn unitless_ok(canonical: &str) -> bool {
    matches!(lookup(canonical), Some(("score", _)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fraction_reads_as_a_percentage_and_only_there() {
        assert_eq!(fraction_as_percent(0.84, "1", "%"), Some(84.0));
        assert_eq!(fraction_as_percent(0.57, "1", "%"), Some(57.0));
        assert_eq!(fraction_as_percent(0.29, "1", "%"), Some(29.0));
        assert_eq!(fraction_as_percent(84.0, "%", "1"), None);
        assert_eq!(fraction_as_percent(0.84, "1", "{score}"), None);
        // Without the rule set's switch, unity and percent do not convert.
        assert_eq!(convert(0.84, "1", "%"), None);
    }

    #[test]
    fn converts_within_a_dimension() {
        assert_eq!(convert(49.0, "mm", "cm"), Some(4.9));
        assert_eq!(convert(1.5, "h", "min"), Some(90.0));
        assert_eq!(convert(2500.0, "m", "km"), Some(2.5));
        assert_eq!(convert(2.0, "wk", "d"), Some(14.0));
    }

    #[test]
    fn reads_a_term_of_one_unit_and_nothing_more() {
        assert_eq!(convert(5.0, "10*3.m", "km"), Some(5.0));
        assert_eq!(convert(5.0, "m.10^3", "km"), Some(5.0));
        assert_eq!(convert(2.0, "km{run}", "m"), Some(2000.0));
        assert_eq!(convert(30.0, "min{walked}", "h"), Some(0.5));
        assert!(is_known("10*3.m"));
        assert_eq!(base_of("10*3.m"), Some("m"));
        assert_eq!(base_of("km{run}"), Some("km"));
        assert_eq!(base_of("km/{run}"), None);
        // A distance per run is not a distance; two units are an area; an exponent is not read.
        assert_eq!(convert(5.0, "km/{run}", "km"), None);
        assert_eq!(convert(1.0, "m.m", "m"), None);
        assert_eq!(convert(1.0, "m2", "m"), None);
        assert_eq!(convert(1.0, "10*3", "m"), None);
        assert_eq!(convert(1.0, "{run}", "m"), None);
        assert_eq!(convert(1.0, "10*x.m", "m"), None);
    }

    #[test]
    fn refuses_across_dimensions_and_unknown_units() {
        assert_eq!(convert(1.0, "cm", "min"), None);
        assert_eq!(
            convert(1.0, "cm", "[in_i]").map(|v| (v * 1e6).round()),
            Some(393_701.0)
        );
        assert_eq!(convert(1.0, "[mi_i]", "km"), Some(1.609344));
        assert_eq!(convert(1.0, "[in]", "cm"), None);
        assert_eq!(convert(1.0, "cm", "furlong"), None);
    }
}
