//! A value known only as a bound (`< 5 cm`, `> 3`): an interval, decided in the three-valued
//! logic of criteria. A comparison holds when every value in the interval meets it, fails when
//! none does, and is unknown otherwise: a bound that cannot decide a threshold is never "met".

use crate::model::Op;

/// One end of an interval: the number and whether it belongs to the interval.
pub type End = (f64, bool);

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Interval {
    pub lo: Option<End>,
    pub hi: Option<End>,
}

impl Interval {
    /// The interval a FHIR `Quantity.comparator` names; `None` for `ad` ("sufficient to
    /// achieve") or anything else that is no bound.
    pub fn from_comparator(comparator: &str, value: f64) -> Option<Interval> {
        let (lo, hi) = match comparator {
            "<" => (None, Some((value, false))),
            "<=" => (None, Some((value, true))),
            ">" => (Some((value, false)), None),
            ">=" => (Some((value, true)), None),
            _ => return None,
        };
        Some(Interval { lo, hi })
    }

    /// Narrowed to the believable range `[lo, hi]` (a score is never below 0).
    pub fn within(self, lo: f64, hi: f64) -> Interval {
        let lo_end = match self.lo {
            Some((v, inc)) if v > lo || (v == lo && !inc) => Some((v, inc)),
            _ => Some((lo, true)),
        };
        let hi_end = match self.hi {
            Some((v, inc)) if v < hi || (v == hi && !inc) => Some((v, inc)),
            _ => Some((hi, true)),
        };
        Interval {
            lo: lo_end,
            hi: hi_end,
        }
    }

    /// Whether `x` may be in the interval.
    pub fn contains(&self, x: f64) -> bool {
        let above = self.lo.is_none_or(|(v, inc)| x > v || (inc && x == v));
        let below = self.hi.is_none_or(|(v, inc)| x < v || (inc && x == v));
        above && below
    }

    /// The values both intervals allow; `None` when they have none in common.
    pub fn intersect(&self, other: &Interval) -> Option<Interval> {
        let lo = match (self.lo, other.lo) {
            (None, x) | (x, None) => x,
            (Some(a), Some(b)) if a.0 > b.0 => Some(a),
            (Some(a), Some(b)) if b.0 > a.0 => Some(b),
            (Some(a), Some(b)) => Some((a.0, a.1 && b.1)),
        };
        let hi = match (self.hi, other.hi) {
            (None, x) | (x, None) => x,
            (Some(a), Some(b)) if a.0 < b.0 => Some(a),
            (Some(a), Some(b)) if b.0 < a.0 => Some(b),
            (Some(a), Some(b)) => Some((a.0, a.1 && b.1)),
        };
        Some(Interval { lo, hi }).filter(|iv| !iv.is_empty())
    }

    /// Whether no number lies in the interval (`< 0` narrowed to a range that starts at 0).
    pub fn is_empty(&self) -> bool {
        matches!((self.lo, self.hi), (Some((l, li)), Some((h, hi))) if l > h || (l == h && !(li && hi)))
    }

    /// `Some(true)`: every value in the interval meets `op t`; `Some(false)`: none does;
    /// `None`: some do and some do not.
    pub fn decides(&self, op: Op, t: f64) -> Option<bool> {
        // The interval lies wholly below t (every x < t), or wholly at or below t.
        let below = self.hi.is_some_and(|(v, inc)| v < t || (v == t && !inc));
        let at_or_below = self.hi.is_some_and(|(v, _)| v <= t);
        let above = self.lo.is_some_and(|(v, inc)| v > t || (v == t && !inc));
        let at_or_above = self.lo.is_some_and(|(v, _)| v >= t);
        let outside = below || above;
        match op {
            Op::Lt if below => Some(true),
            Op::Lt if at_or_above => Some(false),
            Op::Le if at_or_below => Some(true),
            Op::Le if above => Some(false),
            Op::Gt if above => Some(true),
            Op::Gt if at_or_below => Some(false),
            Op::Ge if at_or_above => Some(true),
            Op::Ge if below => Some(false),
            Op::Eq if outside => Some(false),
            Op::Ne if outside => Some(true),
            _ => None,
        }
    }

    /// As a trace shows it: `< 5`, `≥ 3`, `0–5`.
    pub fn describe(&self) -> String {
        let num = |v: f64| {
            let r = (v * 1000.0).round() / 1000.0;
            if r == 0.0 {
                "0".to_owned()
            } else {
                r.to_string()
            }
        };
        match (self.lo, self.hi) {
            (Some((l, li)), Some((h, hi))) => format!(
                "{} {} and {} {}",
                if li { "≥" } else { ">" },
                num(l),
                if hi { "≤" } else { "<" },
                num(h)
            ),
            (Some((l, inc)), None) => format!("{} {}", if inc { "≥" } else { ">" }, num(l)),
            (None, Some((h, inc))) => format!("{} {}", if inc { "≤" } else { "<" }, num(h)),
            (None, None) => "any value".into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ops() -> impl Strategy<Value = Op> {
        prop_oneof![
            Just(Op::Lt),
            Just(Op::Le),
            Just(Op::Gt),
            Just(Op::Ge),
            Just(Op::Eq),
            Just(Op::Ne)
        ]
    }

    #[test]
    fn the_issues_examples() {
        let under5 = Interval::from_comparator("<", 5.0)
            .unwrap()
            .within(0.0, 60.0);
        assert_eq!(
            under5.decides(Op::Lt, 5.0),
            Some(true),
            "< 5 cm is under 5 cm"
        );
        assert_eq!(under5.decides(Op::Gt, 0.0), None, "< 5 cm may be 0");
        let under30 = Interval::from_comparator("<", 30.0).unwrap();
        assert_eq!(
            under30.decides(Op::Ge, 30.0),
            Some(false),
            "< 30 min is below the gate"
        );
        let over3 = Interval::from_comparator(">", 3.0)
            .unwrap()
            .within(0.0, 10.0);
        assert_eq!(
            over3.decides(Op::Gt, 0.0),
            Some(true),
            "> 3 of a score is pain"
        );
        assert_eq!(over3.decides(Op::Eq, 0.0), Some(false));
        let under2 = Interval::from_comparator("<", 2.0)
            .unwrap()
            .within(0.0, 10.0);
        assert_eq!(
            under2.decides(Op::Eq, 0.0),
            None,
            "< 2 may or may not be pain-free"
        );
        assert!(Interval::from_comparator("ad", 1.0).is_none());
    }

    proptest! {
        /// The verdict over the interval agrees with the verdict of every value sampled from it:
        /// `Some(b)` only when every sample gives `b`.
        #[test]
        fn a_decided_bound_agrees_with_every_value_inside_it(
            lo in proptest::option::of((-20i32..20, any::<bool>())),
            hi in proptest::option::of((-20i32..20, any::<bool>())),
            op in ops(),
            t in -20i32..20,
        ) {
            let iv = Interval {
                lo: lo.map(|(v, i)| (f64::from(v), i)),
                hi: hi.map(|(v, i)| (f64::from(v), i)),
            };
            let samples: Vec<f64> = (-100..=100).map(|k| f64::from(k) / 4.0)
                .filter(|x| iv.contains(*x)).collect();
            prop_assume!(!samples.is_empty());
            let t = f64::from(t);
            if let Some(b) = iv.decides(op, t) {
                prop_assert!(samples.iter().all(|x| op.holds(*x, t) == b));
            }
        }
    }
}
