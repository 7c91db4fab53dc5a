//! The timeline on a CarePlan page: inline SVG drawn on the server (no script), with the same
//! numbers as a table for screen readers. Rows share one time axis, dated: the phase the
//! guideline gives on each day (bands, with the plans drafted marked on them), pain scores with
//! the red flags marked where they fired, pain-free walking days, and the running distance of
//! each week.

use std::fmt::Write;

use time::Date;

use super::esc;

/// The words of each row: the guideline's (its declaration's `timeline`), never the chart's.
#[derive(Debug, Default, Clone)]
pub struct Labels {
    /// The 0–10 score line.
    pub score: String,
    /// The count-of-days line.
    pub days: String,
    /// The bars summed per week, and the unit of their values.
    pub weekly: String,
    pub weekly_unit: String,
}

/// What the chart shows; every series is (day, value) in the fact's unit.
#[derive(Debug, Default)]
pub struct Timeline {
    pub labels: Labels,
    /// Day 0 of the axis (the episode's onset when known).
    pub start: Option<Date>,
    pub end: Option<Date>,
    pub pain: Vec<(Date, f64)>,
    pub walking_days: Vec<(Date, f64)>,
    /// Distance of each run, km.
    pub distance: Vec<(Date, f64)>,
    /// From each day on, the phase the guideline gives (its name).
    pub phases: Vec<(Date, String)>,
    /// The day each plan for this patient was drafted, and its phase.
    pub plans: Vec<(Date, String)>,
    /// The day each red flag of the decision fired (or its newest record), and its finding.
    pub red_flags: Vec<(Date, String)>,
}

const WIDTH: f64 = 720.0;
const LEFT: f64 = 130.0;
const RIGHT: f64 = 24.0;
const ROW_GAP: f64 = 28.0;
const PALETTE: &[&str] = &[
    "#cfe3f7", "#d8f0d8", "#fff2c4", "#f6dcdc", "#e6dcf6", "#dcefee",
];

impl Timeline {
    fn bounds(&self) -> Option<(Date, Date)> {
        let days = self
            .pain
            .iter()
            .chain(&self.walking_days)
            .chain(&self.distance)
            .map(|p| p.0)
            .chain(self.phases.iter().map(|p| p.0))
            .chain(self.plans.iter().map(|p| p.0))
            .chain(self.red_flags.iter().map(|p| p.0))
            .chain(self.start)
            .chain(self.end);
        let (mut lo, mut hi) = (None::<Date>, None::<Date>);
        for d in days {
            lo = Some(lo.map_or(d, |l| l.min(d)));
            hi = Some(hi.map_or(d, |h| h.max(d)));
        }
        let lo = self.start.or(lo)?;
        let hi = hi?.max(lo + time::Duration::days(7));
        Some((lo, hi))
    }

    /// Running distance summed per week of the axis: (week number, km).
    pub fn weekly_distance(&self) -> Vec<(i64, f64)> {
        let Some((lo, _)) = self.bounds() else {
            return Vec::new();
        };
        let mut weeks: std::collections::BTreeMap<i64, f64> = Default::default();
        for (d, km) in &self.distance {
            *weeks
                .entry((*d - lo).whole_days().div_euclid(7))
                .or_default() += km;
        }
        weeks.into_iter().collect()
    }

    pub fn is_empty(&self) -> bool {
        self.pain.is_empty()
            && self.walking_days.is_empty()
            && self.distance.is_empty()
            && self.phases.is_empty()
            && self.plans.is_empty()
    }

    /// The chart, or `None` when there is nothing to draw.
    pub fn svg(&self) -> Option<String> {
        if self.is_empty() {
            return None;
        }
        let (lo, hi) = self.bounds()?;
        let span = ((hi - lo).whole_days().max(1)) as f64;
        let plot = WIDTH - LEFT - RIGHT;
        let x = |d: Date| LEFT + (d - lo).whole_days() as f64 / span * plot;
        let mut s = String::new();
        let mut y = 8.0;
        // Rows: (label, height).
        let phase_h = 26.0;
        let pain_h = 110.0;
        let walk_h = 70.0;
        let dist_h = 70.0;
        let height = 8.0 + phase_h + pain_h + walk_h + dist_h + 3.0 * ROW_GAP + 30.0;
        let _ = write!(
            s,
            "<svg class=\"timeline\" role=\"img\" aria-labelledby=\"tl-title tl-desc\" viewBox=\"0 0 {WIDTH} {height}\" xmlns=\"http://www.w3.org/2000/svg\">\
             <title id=\"tl-title\">Timeline from {lo} to {hi}</title>\
             <desc id=\"tl-desc\">Phase bands and the guideline's series by week; the table below has the same data.</desc>"
        );

        // Phase bands.
        let mut labels: Vec<&str> = Vec::new();
        let _ = write!(
            s,
            "<text x=\"4\" y=\"{}\" class=\"lbl\">Phase</text>",
            y + 17.0
        );
        for (i, (from, phase)) in self.phases.iter().enumerate() {
            let to = self.phases.get(i + 1).map(|p| p.0).unwrap_or(hi);
            let idx = labels.iter().position(|l| *l == phase).unwrap_or_else(|| {
                labels.push(phase);
                labels.len() - 1
            });
            let (x0, x1) = (x(*from), x(to).max(x(*from) + 2.0));
            let _ = write!(
                s,
                "<rect x=\"{x0:.1}\" y=\"{y}\" width=\"{:.1}\" height=\"{phase_h}\" fill=\"{}\" stroke=\"#555\" stroke-width=\"0.5\"><title>{} from {from}</title></rect>",
                x1 - x0,
                PALETTE[idx % PALETTE.len()],
                esc(phase)
            );
            if x1 - x0 > 60.0 {
                // The band says when it began: a reviewer reads the dates, not the axis.
                let text = format!("{phase} · from {}", short(*from));
                let _ = write!(
                    s,
                    "<text x=\"{:.1}\" y=\"{}\" class=\"band\">{}</text>",
                    x0 + 4.0,
                    y + 17.0,
                    esc(&truncate(&text, ((x1 - x0) / 6.5) as usize))
                );
            }
        }
        // Each plan drafted: a tick on the band.
        for (day, phase) in &self.plans {
            let _ = write!(
                s,
                "<path d=\"M{0:.1},{1:.1} l-4,-7 h8 z\" class=\"plan\" fill=\"#333\"><title>Plan drafted {2}: {3}</title></path>",
                x(*day),
                y + 7.0,
                short(*day),
                esc(phase)
            );
        }
        y += phase_h + ROW_GAP;

        // Pain 0–10, points joined in time order.
        self.axis(&mut s, y, pain_h, &self.labels.score, 10.0);
        let py = |v: f64| y + pain_h - v.clamp(0.0, 10.0) / 10.0 * pain_h;
        if !self.pain.is_empty() {
            let pts: Vec<String> = self
                .pain
                .iter()
                .map(|(d, v)| format!("{:.1},{:.1}", x(*d), py(*v)))
                .collect();
            let _ = write!(
                s,
                "<polyline points=\"{}\" fill=\"none\" stroke=\"#a00000\" stroke-width=\"1.5\"/>",
                pts.join(" ")
            );
            for (d, v) in &self.pain {
                let _ = write!(
                    s,
                    "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"3\" fill=\"#a00000\"><title>{d}: {} {v}</title></circle>",
                    x(*d),
                    py(*v),
                    esc(&self.labels.score)
                );
            }
        }
        // Red flags, where they fired: a red triangle above the pain row.
        for (day, finding) in &self.red_flags {
            let _ = write!(
                s,
                "<path d=\"M{0:.1},{1:.1} l-6,10 h12 z\" fill=\"#b00020\" class=\"red-flag\"><title>Red flag {2}: {3}</title></path>",
                x(*day),
                y - 12.0,
                short(*day),
                esc(finding)
            );
        }
        y += pain_h + ROW_GAP;

        // Pain-free walking days.
        let walk_max = self
            .walking_days
            .iter()
            .map(|p| p.1)
            .fold(7.0_f64, f64::max);
        self.axis(&mut s, y, walk_h, &self.labels.days, walk_max);
        let wy = |v: f64| y + walk_h - v.max(0.0) / walk_max * walk_h;
        if !self.walking_days.is_empty() {
            let pts: Vec<String> = self
                .walking_days
                .iter()
                .map(|(d, v)| format!("{:.1},{:.1}", x(*d), wy(*v)))
                .collect();
            let _ = write!(
                s,
                "<polyline points=\"{}\" fill=\"none\" stroke=\"#0b4f9c\" stroke-width=\"1.5\"/>",
                pts.join(" ")
            );
            for (d, v) in &self.walking_days {
                let _ = write!(
                    s,
                    "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"5\" height=\"5\" fill=\"#0b4f9c\"><title>{d}: {} {v}</title></rect>",
                    x(*d) - 2.5,
                    wy(*v) - 2.5,
                    esc(&self.labels.days)
                );
            }
        }
        y += walk_h + ROW_GAP;

        // Running distance per week, as bars.
        let weekly = self.weekly_distance();
        let dist_max = weekly.iter().map(|w| w.1).fold(5.0_f64, f64::max);
        self.axis(&mut s, y, dist_h, &self.labels.weekly, dist_max);
        let week_w = 7.0 / span * plot;
        for (week, km) in &weekly {
            let x0 = LEFT + (*week as f64 * 7.0) / span * plot;
            let h = km / dist_max * dist_h;
            let _ = write!(
                s,
                "<rect x=\"{x0:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{h:.1}\" fill=\"#2f6b2f\"><title>week {week}: {km:.1} {}</title></rect>",
                y + dist_h - h,
                (week_w - 2.0).max(1.0),
                esc(&self.labels.weekly_unit)
            );
        }
        y += dist_h + 4.0;

        // Weekly ticks along the bottom, dated.
        let weeks = (span / 7.0).ceil() as i64;
        let step = ((weeks as f64) / 10.0).ceil().max(1.0) as i64;
        for w in (0..=weeks).step_by(step as usize) {
            let xw = LEFT + (w as f64 * 7.0) / span * plot;
            if xw > WIDTH - RIGHT + 0.5 {
                break;
            }
            let _ = write!(
                s,
                "<line x1=\"{xw:.1}\" y1=\"8\" x2=\"{xw:.1}\" y2=\"{y}\" class=\"grid\"/><text x=\"{xw:.1}\" y=\"{}\" class=\"tick\" text-anchor=\"middle\">{}</text>",
                y + 14.0,
                short(lo + time::Duration::weeks(w))
            );
        }
        s.push_str("</svg>");
        Some(s)
    }

    fn axis(&self, s: &mut String, y: f64, h: f64, label: &str, max: f64) {
        let _ = write!(
            s,
            "<text x=\"4\" y=\"{:.1}\" class=\"lbl\">{}</text><text x=\"{:.1}\" y=\"{:.1}\" class=\"tick\">{}</text><text x=\"{:.1}\" y=\"{:.1}\" class=\"tick\">0</text>\
             <line x1=\"{LEFT}\" y1=\"{:.1}\" x2=\"{:.1}\" y2=\"{:.1}\" class=\"axis\"/>",
            y + h / 2.0,
            esc(label),
            LEFT - 22.0,
            y + 9.0,
            super::number(Some(max)),
            LEFT - 12.0,
            y + h,
            y + h,
            WIDTH - RIGHT,
            y + h
        );
    }

    /// The same data as rows of a table (date, series, value).
    pub fn table(&self) -> String {
        let mut rows: Vec<(Date, String, String)> = Vec::new();
        let l = &self.labels;
        rows.extend(
            self.phases
                .iter()
                .map(|(d, p)| (*d, "Phase from this day".to_owned(), esc(p))),
        );
        rows.extend(
            self.plans
                .iter()
                .map(|(d, p)| (*d, "Plan drafted".to_owned(), esc(p))),
        );
        rows.extend(
            self.red_flags
                .iter()
                .map(|(d, f)| (*d, "Red flag".to_owned(), esc(f))),
        );
        rows.extend(
            self.pain
                .iter()
                .map(|(d, v)| (*d, esc(&l.score), super::number(Some(*v)))),
        );
        rows.extend(
            self.walking_days
                .iter()
                .map(|(d, v)| (*d, esc(&l.days), super::number(Some(*v)))),
        );
        rows.extend(self.distance.iter().map(|(d, v)| {
            let label = format!("{} ({})", l.weekly, l.weekly_unit);
            (*d, esc(&label), super::number(Some(*v)))
        }));
        rows.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.cmp(&b.1)));
        let mut t = String::from(
            "<table><caption>Timeline data</caption><thead><tr><th scope=\"col\">Day</th><th scope=\"col\">Series</th><th scope=\"col\">Value</th></tr></thead><tbody>",
        );
        for (d, series, v) in rows {
            let _ = write!(
                t,
                "<tr><td>{}</td><td>{series}</td><td>{v}</td></tr>",
                stride_guideline::display::day(d)
            );
        }
        t.push_str("</tbody></table>");
        t
    }
}

/// "3 Nov": a day on the axis, where the year is the caption's.
fn short(d: Date) -> String {
    d.format(time::macros::format_description!(
        "[day padding:none] [month repr:short]"
    ))
    .unwrap_or_else(|_| d.to_string())
}

fn truncate(s: &str, chars: usize) -> String {
    if s.chars().count() <= chars {
        s.to_owned()
    } else {
        let mut t: String = s.chars().take(chars.saturating_sub(1)).collect();
        t.push('…');
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::date;

    fn sample() -> Timeline {
        Timeline {
            labels: Labels {
                score: "Pain (0–10)".into(),
                days: "Pain-free walking days".into(),
                weekly: "Running / week".into(),
                weekly_unit: "km".into(),
            },
            start: Some(date!(2026 - 10 - 01)),
            end: Some(date!(2026 - 11 - 12)),
            pain: vec![(date!(2026 - 10 - 01), 7.0), (date!(2026 - 10 - 20), 2.0)],
            walking_days: vec![(date!(2026 - 10 - 25), 10.0)],
            distance: vec![
                (date!(2026 - 11 - 02), 2.0),
                (date!(2026 - 11 - 04), 3.0),
                (date!(2026 - 11 - 10), 4.0),
            ],
            phases: vec![
                (date!(2026 - 10 - 01), "Rest <and> walk".into()),
                (date!(2026 - 11 - 01), "Walk-run".into()),
            ],
            plans: vec![(date!(2026 - 11 - 12), "Walk-run".into())],
            red_flags: vec![(date!(2026 - 10 - 20), "pain at night".into())],
        }
    }

    #[test]
    fn distance_is_summed_per_week_of_the_axis() {
        // Day 32 and 34 fall in week 4, day 40 in week 5.
        assert_eq!(sample().weekly_distance(), vec![(4, 5.0), (5, 4.0)]);
    }

    #[test]
    fn draws_every_series_and_escapes_labels() {
        let svg = sample().svg().unwrap();
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
        assert_eq!(svg.matches("<circle").count(), 2, "one dot per pain score");
        assert!(svg.contains("week 4: 5.0 km") && svg.contains("week 5: 4.0 km"));
        assert!(svg.contains("Rest &lt;and&gt; walk"));
        assert!(!svg.contains("<and>"));
        // Pain 7 sits higher (smaller y) than pain 2.
        let ys: Vec<f64> = svg
            .match_indices("<circle cx=\"")
            .map(|(i, _)| {
                let rest = &svg[i..];
                let cy = &rest[rest.find("cy=\"").unwrap() + 4..];
                cy[..cy.find('"').unwrap()].parse().unwrap()
            })
            .collect();
        assert!(ys[0] < ys[1], "{ys:?}");
        let table = sample().table();
        assert_eq!(table.matches("<tr><td>").count(), 10);
        assert!(
            table.contains("<tr><td>20 Oct 2026</td><td>Red flag</td><td>pain at night</td></tr>")
        );
    }

    #[test]
    fn bands_ticks_and_marks_are_dated() {
        let svg = sample().svg().unwrap();
        // The band names its first day; the axis is in days, not week numbers.
        assert!(svg.contains("Walk-run · from 1 Nov"), "{svg}");
        assert!(svg.contains(">8 Oct<") && !svg.contains(">wk "), "{svg}");
        assert_eq!(svg.matches("class=\"red-flag\"").count(), 1);
        assert!(svg.contains("<title>Red flag 20 Oct: pain at night</title>"));
        assert!(svg.contains("<title>Plan drafted 12 Nov: Walk-run</title>"));
    }

    #[test]
    fn nothing_to_draw_is_no_chart() {
        assert!(Timeline::default().svg().is_none());
    }
}
