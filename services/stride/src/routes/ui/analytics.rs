//! The card-effectiveness page for a clinic's CDS committee: per card, how often it was shown,
//! accepted and overridden, the override rate by month, the reasons given, each figure linked
//! to the decisions behind it in the decision log; filters by period, guideline, version and
//! card; the same figures as CSV, NDJSON or FHIR MeasureReports.

use std::collections::BTreeMap;

use actix_web::http::StatusCode;
use actix_web::{get, web, HttpRequest, HttpResponse};
use serde::Deserialize;
use stride_app::analytics::{self, override_rate, Filter};
use stride_store::CardOutcome;

use super::{esc, page, Page, UiError};
use crate::audit;
use crate::auth::AnalyticsRead;
use crate::error::ApiError;
use crate::state::AppState;

/// The period the page shows when no dates are given.
const DEFAULT_DAYS: i64 = 90;

#[derive(Deserialize)]
pub struct PageParams {
    from: Option<String>,
    to: Option<String>,
    guideline: Option<String>,
    version: Option<String>,
    card: Option<String>,
}

/// A bar of `fraction` (0–1) drawn as SVG (the pages' policy allows no inline styles).
fn bar(fraction: f64, label: &str) -> String {
    let w = (fraction.clamp(0.0, 1.0) * 120.0).round();
    format!(
        "<svg class=\"bar\" width=\"124\" height=\"14\" role=\"img\" aria-label=\"{}\"><rect x=\"0\" y=\"1\" width=\"122\" height=\"12\" class=\"track\"/><rect x=\"1\" y=\"2\" width=\"{w}\" height=\"10\" class=\"fill\"/></svg>",
        esc(label)
    )
}

fn percent(r: Option<f64>) -> String {
    r.map(|r| format!("{:.0}%", r * 100.0))
        .unwrap_or_else(|| "—".into())
}

/// The decision log's entries behind a figure: that card, version and month.
fn decisions_link(o: &CardOutcome) -> String {
    let (from, to) = month_days(&o.period);
    esc(&format!(
        "/ui/audit?decision={}&version={}&from={from}&to={to}",
        o.decision_id, o.rule_set_version
    ))
}

fn month_days(period: &str) -> (String, String) {
    let first = format!("{period}-01");
    let last = time::Date::parse(&first, &time::format_description::well_known::Iso8601::DATE)
        .ok()
        .and_then(|d| {
            let next = if d.month() == time::Month::December {
                time::Date::from_calendar_date(d.year() + 1, time::Month::January, 1).ok()?
            } else {
                time::Date::from_calendar_date(d.year(), d.month().next(), 1).ok()?
            };
            next.previous_day()
        })
        .map(|d| d.to_string())
        .unwrap_or_else(|| first.clone());
    (first, last)
}

#[get("/ui/analytics")]
#[tracing::instrument(name = "ui analytics", skip_all)]
pub async fn effectiveness(
    req: HttpRequest,
    signed_in: Page<AnalyticsRead>,
    q: web::Query<PageParams>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, UiError> {
    let viewer = signed_in.viewer;
    // Without dates, the last quarter: what a committee reviews at a meeting. (Any period reads
    // the daily roll-up: a clinic's year of 500 000 cards in 0.02 s on both backends,
    // docs/benchmarks.md, "Card effectiveness on a million cards".)
    let empty = |v: &Option<String>| v.as_deref().is_none_or(|s| s.trim().is_empty());
    let defaulted = empty(&q.from) && empty(&q.to);
    let from = if defaulted {
        Some(
            (time::OffsetDateTime::now_utc().date() - time::Duration::days(DEFAULT_DAYS))
                .to_string(),
        )
    } else {
        q.from.clone()
    };
    let filter = Filter::parse(
        from.as_deref(),
        q.to.as_deref(),
        q.guideline.as_deref(),
        q.version.as_deref(),
    )
    .map_err(ApiError::BadRequest)?;
    let actor = audit::actor(&req, &viewer.caller);
    let mut rows = analytics::cards(state.store.as_ref(), &actor, &filter).await?;
    let card = q.card.as_deref().map(str::trim).filter(|c| !c.is_empty());
    if let Some(c) = card {
        rows.retain(|o| o.decision_id == c);
    }
    let value = |v: &Option<String>| esc(v.as_deref().unwrap_or(""));
    let mut html = format!(
        "<h1>Card effectiveness</h1>\
         <form method=\"get\" action=\"/ui/analytics\" class=\"filters\">\
         <label for=\"from\">Shown from</label><input type=\"date\" id=\"from\" name=\"from\" value=\"{}\">\
         <label for=\"to\">to</label><input type=\"date\" id=\"to\" name=\"to\" value=\"{}\">\
         <label for=\"guideline\">Guideline</label><input id=\"guideline\" name=\"guideline\" value=\"{}\">\
         <label for=\"version\">Version</label><input id=\"version\" name=\"version\" value=\"{}\">\
         <label for=\"card\">Card</label><input id=\"card\" name=\"card\" value=\"{}\">\
         <button type=\"submit\">Filter</button></form>",
        value(&from),
        value(&q.to),
        value(&q.guideline),
        value(&q.version),
        value(&q.card),
    );
    if defaulted {
        html.push_str(&format!(
            "<p>The last {DEFAULT_DAYS} days; choose the dates for another period.</p>"
        ));
    }
    let query: String = [
        ("from", &from),
        ("to", &q.to),
        ("guideline", &q.guideline),
        ("version", &q.version),
    ]
    .iter()
    .filter_map(|(k, v)| {
        v.as_deref()
            .filter(|v| !v.is_empty())
            .map(|v| format!("{k}={}", esc(v)))
    })
    .collect::<Vec<_>>()
    .join("&amp;");
    html.push_str(&format!(
        "<p>Download: <a href=\"/analytics/cards?{query}&amp;format=csv\">CSV</a> · \
         <a href=\"/analytics/cards?{query}&amp;format=ndjson\">NDJSON</a> · \
         <a href=\"/analytics/cards?{query}&amp;format=fhir\">FHIR MeasureReports</a> · \
         <a href=\"/analytics/feedback?{query}&amp;format=csv\">every feedback (CSV)</a></p>"
    ));
    if rows.is_empty() {
        html.push_str("<p role=\"status\">No cards were shown in this period.</p>");
        return Ok(page(
            StatusCode::OK,
            Some(&viewer),
            "Card effectiveness",
            &html,
        ));
    }
    // Per card and version: the months, then the reasons.
    let mut by_card: BTreeMap<(String, String, String), Vec<&CardOutcome>> = BTreeMap::new();
    for o in &rows {
        by_card
            .entry((
                o.rule_set_id.clone(),
                o.rule_set_version.clone(),
                o.decision_id.clone(),
            ))
            .or_default()
            .push(o);
    }
    // A card by the name clinicians know it by; its id beside it for the decision log.
    let name = |guideline: &str, version: &str, id: &str| -> String {
        let rs = version
            .parse()
            .ok()
            .and_then(|v| state.catalog.get(guideline, &v));
        rs.and_then(|rs| {
            let doc = &rs.doc;
            doc.phases
                .iter()
                .find(|p| p.id == id)
                .map(|p| p.title.clone())
                .or_else(|| {
                    doc.red_flags
                        .iter()
                        .chain(&doc.warnings)
                        .chain(&doc.pitfalls)
                        .chain(&doc.phase_notes)
                        .find(|r| r.id == id)
                        .map(|r| r.finding_name().to_owned())
                })
        })
        .unwrap_or_else(|| id.to_owned())
    };
    for ((guideline, version, decision), months) in &by_card {
        let shown: i64 = months.iter().map(|o| o.shown).sum();
        let overridden: i64 = months.iter().map(|o| o.overridden).sum();
        let accepted: i64 = months.iter().map(|o| o.accepted).sum();
        let silent: i64 = months.iter().map(|o| o.without_feedback).sum();
        html.push_str(&format!(
            "<section class=\"card-figures\"><h2>{} <span class=\"ref\">({}, {} {})</span></h2>\
             <p>Shown {shown} {}: accepted {accepted}, overridden {overridden}, no feedback {silent}.</p>\
             <table><caption>Override rate by month</caption><thead><tr><th scope=\"col\">Month</th><th scope=\"col\">Clinic</th>\
             <th scope=\"col\">Shown</th><th scope=\"col\">Accepted</th><th scope=\"col\">Overridden</th><th scope=\"col\">No feedback</th>\
             <th scope=\"col\">Override rate</th><th scope=\"col\">Decisions</th></tr></thead><tbody>",
            esc(&name(guideline, version, decision)),
            esc(decision),
            esc(guideline),
            esc(version),
            if shown == 1 { "time" } else { "times" },
        ));
        for o in months {
            let rate = override_rate(o);
            html.push_str(&format!(
                "<tr><th scope=\"row\">{}</th><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{} {}</td>\
                 <td><a href=\"{}\">Open<span class=\"visually-hidden\"> the decisions of {} in {}</span></a></td></tr>",
                esc(&o.period),
                esc(o.tenant.as_str()),
                o.shown,
                o.accepted,
                o.overridden,
                o.without_feedback,
                bar(rate.unwrap_or(0.0), &format!("override rate {}", percent(rate))),
                percent(rate),
                decisions_link(o),
                esc(decision),
                esc(&o.period),
            ));
        }
        html.push_str("</tbody></table>");
        let mut reasons: BTreeMap<&str, i64> = BTreeMap::new();
        for o in months {
            for (r, n) in &o.reasons {
                *reasons.entry(r.as_str()).or_default() += n;
            }
        }
        if !reasons.is_empty() {
            let most = reasons.values().copied().max().unwrap_or(1).max(1) as f64;
            html.push_str("<table><caption>Override reasons</caption><thead><tr><th scope=\"col\">Reason</th><th scope=\"col\">Cards</th></tr></thead><tbody>");
            for (r, n) in &reasons {
                let said = match (*r, stride_app::cards::override_reason(r)) {
                    (_, Some(words)) => words.to_owned(),
                    ("unspecified", None) => "No reason given".to_owned(),
                    (code, None) => code.to_owned(),
                };
                html.push_str(&format!(
                    "<tr><th scope=\"row\">{}</th><td>{} {n}</td></tr>",
                    esc(&said),
                    bar(*n as f64 / most, &format!("{n} cards"))
                ));
            }
            html.push_str("</tbody></table>");
        }
        html.push_str("</section>");
    }
    Ok(page(
        StatusCode::OK,
        Some(&viewer),
        "Card effectiveness",
        &html,
    ))
}
