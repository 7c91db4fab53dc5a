//! One CarePlan for review: what Stride drafted and why (findings with rule ids and
//! citations, the decision trace, a timeline), and the approve / revise / reject forms.

use std::collections::HashMap;

use actix_web::http::StatusCode;
use actix_web::{get, post, web, HttpRequest, HttpResponse};
use serde_json::Value as Json;
use stride_guideline::{course, decision::Verdict, series, Decision, Facts, RuleSet};
use stride_store::CarePlanRecord;
use time::Date;

use super::chart::Timeline;
use super::{checked_form, esc, number, page, see_other, PatientPage, UiError, Viewer};
use crate::audit;
use crate::auth::{CareplanRead, CareplanReview, Scope};
use crate::error::ApiError;
use crate::state::AppState;
use stride_app::catalog::Draw;
use stride_app::review::{load_visible, RecommendationEdit, ReviewError, ReviewRequest};
use stride_fhir::careplan::recommendations;
use stride_store::ReviewAction;

/// The decision behind a plan: its stored facts, re-evaluated with the stored rule-set version.
struct Drafted<'a> {
    rs: &'a RuleSet,
    facts: Facts,
    as_of: Date,
    decision: Decision,
}

fn drafted<'a>(state: &'a AppState, entry: &stride_store::AuditEntry) -> Option<Drafted<'a>> {
    let inputs = stride_app::replay::Inputs::of(entry).ok()?;
    let (rs, decision) = inputs.decide(&state.catalog, None).ok()?;
    Some(Drafted {
        rs,
        facts: inputs.facts,
        as_of: inputs.as_of,
        decision,
    })
}

fn phase_label(plan: &CarePlanRecord) -> String {
    plan.resource["category"][0]["coding"][0]["display"]
        .as_str()
        .unwrap_or(&plan.phase)
        .to_owned()
}

/// The patient's course: the series behind the decision and the phase of every plan drafted
/// for this patient up to this one.
async fn timeline(state: &AppState, plan: &CarePlanRecord, d: &Drafted<'_>) -> Timeline {
    let episode = &d.rs.doc.applicability.episode_fact;
    let onset = series(d.rs, &d.facts, episode, d.as_of)
        .last()
        .and_then(|(_, julian)| Date::from_julian_day(*julian as i32).ok());
    let history = stride_app::careplans::course_of(state.store.as_ref(), plan)
        .await
        .unwrap_or_default();
    let mut plans: Vec<(Date, String)> = history
        .iter()
        .filter(|p| p.created_at <= plan.created_at)
        .map(|p| (p.created_at.date(), phase_label(p)))
        .collect();
    plans.sort_by_key(|p| p.0);
    // Several plans on one day: the last one drafted that day holds.
    plans.dedup_by(|later, earlier| {
        if later.0 == earlier.0 {
            earlier.1 = later.1.clone();
            true
        } else {
            false
        }
    });
    // The bands: the phase the guideline gives on each day, from the records dated up to it
    // (from the onset; four weeks back when it is unknown).
    let from = onset.unwrap_or(d.as_of - time::Duration::weeks(4));
    let phases = course::phases(d.rs, &d.facts, from, d.as_of)
        .into_iter()
        .map(|(day, phase)| {
            let name = phase.map_or_else(
                || "Guideline does not apply".to_owned(),
                |p| course::title(d.rs, &p),
            );
            (day, name)
        })
        .collect();
    let red_flags = d
        .decision
        .red_flags
        .iter()
        .map(|f| {
            let day = f
                .since
                .or_else(|| f.basis.iter().filter_map(|b| b.date).max())
                .unwrap_or(d.as_of);
            let finding = d.rs.doc.red_flags.iter().find(|r| r.id == f.id);
            let name = finding.and_then(|r| r.finding.clone());
            (day, name.unwrap_or_else(|| f.summary.clone()))
        })
        .collect();
    let mut timeline = Timeline {
        start: onset,
        end: Some(d.as_of),
        phases,
        plans,
        red_flags,
        ..Timeline::default()
    };
    // The guideline's declaration says which facts are drawn, and how; a version without one
    // of them draws less.
    let declared = state.catalog.declaration(&d.rs.doc.id);
    for s in declared.map(|g| g.timeline.as_slice()).unwrap_or_default() {
        let points = series(d.rs, &d.facts, &s.fact, d.as_of);
        let labels = &mut timeline.labels;
        let row = match s.draw {
            Draw::Score => {
                labels.score = s.label.clone();
                &mut timeline.pain
            }
            Draw::Days => {
                labels.days = s.label.clone();
                &mut timeline.walking_days
            }
            Draw::WeeklySum => {
                labels.weekly = s.label.clone();
                labels.weekly_unit =
                    d.rs.doc
                        .facts
                        .get(&s.fact)
                        .and_then(|b| b.output_unit())
                        .unwrap_or_default()
                        .to_owned();
                &mut timeline.distance
            }
        };
        row.extend(points);
    }
    timeline
}

fn verdict(v: Verdict) -> &'static str {
    match v {
        Verdict::Met => "met",
        Verdict::NotMet => "not met",
        Verdict::Unknown => "unknown",
    }
}

#[get("/ui/careplans/{id}")]
#[tracing::instrument(name = "ui careplan", skip_all)]
pub async fn careplan(
    req: HttpRequest,
    signed_in: PatientPage<CareplanRead>,
    path: web::Path<String>,
    q: web::Query<HashMap<String, String>>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, UiError> {
    let viewer = signed_in.viewer;
    let notice = q.get("done").and_then(|a| match a.as_str() {
        "approve" => Some("Approved: the plan is now active."),
        "revise" => Some("Revised: the edited plan is now active."),
        "reject" => Some("Rejected: the plan is revoked."),
        _ => None,
    });
    let notice = notice.map(|n| Notice::Done(n.to_owned()));
    render(&req, &state, &viewer, &path, notice, StatusCode::OK).await
}

enum Notice {
    Done(String),
    Problem(String),
}

async fn render(
    req: &HttpRequest,
    state: &AppState,
    viewer: &Viewer,
    id: &str,
    notice: Option<Notice>,
    status: StatusCode,
) -> Result<HttpResponse, UiError> {
    let actor = audit::actor(req, &viewer.caller);
    let plan =
        stride_app::careplans::read(state.store.as_ref(), &actor, id, Some("review page")).await?;
    let id = plan.id;

    let r = &plan.resource;
    let phase = phase_label(&plan);
    let mut html = format!(
        "<h1>{}</h1>",
        esc(r["title"].as_str().unwrap_or("CarePlan"))
    );
    match &notice {
        Some(Notice::Done(text)) => html.push_str(&format!(
            "<p class=\"notice ok\" role=\"status\">{}</p>",
            esc(text)
        )),
        Some(Notice::Problem(text)) => html.push_str(&format!(
            "<p class=\"notice problem\" role=\"alert\">{}</p>",
            esc(text)
        )),
        None => {}
    }
    let today =
        stride_fhir::clinic::ClinicZone::for_tenant(state.verifier.tenant_timezone(&plan.tenant))
            .date_of(time::OffsetDateTime::now_utc(), time::UtcOffset::UTC);
    let who = match super::identity(plan.patient.as_ref(), today) {
        Some(w) => format!("<strong>{}</strong> <span class=\"ref\">({})</span>", esc(&w), esc(plan.patient_ref.as_str())),
        None => format!(
            "{} <span class=\"unknown\">— the EHR sent no Patient with this call: name, birth date and sex unknown</span>",
            esc(plan.patient_ref.as_str())
        ),
    };
    html.push_str(&format!(
        "<dl><dt>Patient</dt><dd>{who}</dd><dt>Phase</dt><dd>{}</dd><dt>Status</dt><dd><span class=\"status {}\">{}</span> (version {})</dd>\
         <dt>Drafted</dt><dd>{}</dd><dt>Rule set</dt><dd><a href=\"/guidelines/{}/{}\">{} {}</a></dd></dl>",
        esc(&phase),
        esc(plan.status.as_str()),
        esc(plan.status.as_str()),
        plan.version,
        esc(&super::clinic_time(state, Some(&plan.tenant), plan.created_at)),
        esc(&plan.rule_set_id),
        esc(&plan.rule_set_version),
        esc(&plan.rule_set_id),
        esc(&plan.rule_set_version),
    ));
    if plan.status == stride_store::CarePlanStatus::Active
        && stride_app::take_home::has_wording(&state.catalog, &plan)
    {
        html.push_str(&format!(
            "<p class=\"take-home-link\"><a href=\"/ui/careplans/{id}/patient\">The patient's take-home plan</a> \
             (<a href=\"/ui/careplans/{id}/patient.pdf?paper=a4\">PDF, A4</a> · \
             <a href=\"/ui/careplans/{id}/patient.pdf?paper=letter\">PDF, US Letter</a>)</p>"
        ));
    }
    let mut cited = Citations::default();
    let entry = stride_app::careplans::drafting_entry(state.store.as_ref(), &plan)
        .await
        .ok();
    match entry.as_ref().and_then(|e| drafted(state, e)) {
        Some(d) => {
            why(&mut html, &d);
            findings(&mut html, &d, &mut cited);
            let t = timeline(state, &plan, &d).await;
            if let Some(svg) = t.svg() {
                html.push_str("<h2>Timeline</h2><figure class=\"chart\">");
                html.push_str(&svg);
                html.push_str("<figcaption>From the onset of pain. Bands: the phase the guideline gives on each day, from the records dated up to that day; a dark tick on the band: a plan drafted for this patient; a red triangle: a red flag, where it fired.</figcaption></figure><details><summary>Timeline as a table</summary>");
                html.push_str(&t.table());
                html.push_str("</details>");
            }
            activities_and_goals(&mut html, r, &mut cited);
            cited.list(&mut html, d.rs);
            trace(&mut html, &d.decision);
        }
        None => {
            html.push_str("<p>The decision behind this plan could not be re-evaluated (its rule-set version is not loaded).</p>");
            activities_and_goals(&mut html, r, &mut cited);
        }
    }
    review_section(&mut html, viewer, &plan);
    Ok(page(
        status,
        Some(viewer),
        r["title"].as_str().unwrap_or("CarePlan"),
        &html,
    ))
}

/// Source numbers as this page cites them: [1] is the first source the page names, and the
/// list at the end resolves every number shown.
#[derive(Default)]
struct Citations(Vec<u32>);

impl Citations {
    /// " [1, 2]" for the rule set's sources `cite`, numbered for this page.
    fn cite(&mut self, cite: &[u32]) -> String {
        let mut shown: Vec<usize> = Vec::new();
        for n in cite {
            let i = match self.0.iter().position(|m| m == n) {
                Some(i) => i + 1,
                None => {
                    self.0.push(*n);
                    self.0.len()
                }
            };
            if !shown.contains(&i) {
                shown.push(i);
            }
        }
        if shown.is_empty() {
            return String::new();
        }
        let labels: Vec<String> = shown.iter().map(usize::to_string).collect();
        format!(" <span class=\"cite\">[{}]</span>", labels.join(", "))
    }

    fn list(&self, html: &mut String, rs: &RuleSet) {
        if self.0.is_empty() {
            return;
        }
        html.push_str("<h2>Sources</h2><ol class=\"sources\">");
        for n in &self.0 {
            if let Some(s) = rs.doc.sources.iter().find(|s| s.n == *n) {
                html.push_str(&format!(
                    "<li>{} — <em>{}</em>, {}</li>",
                    esc(&s.title),
                    esc(&s.publisher),
                    s.year
                ));
            }
        }
        html.push_str("</ol>");
    }
}

/// "Why this phase", first and in sentences: each criterion that decided the placement with
/// its value, the day it was recorded and what the protocol needs; what to record; red flags
/// with the findings they rest on. Ids stay in the folded trace.
fn why(html: &mut String, d: &Drafted<'_>) {
    use stride_guideline::decision::{HOLD_FOR_EVALUATION, INSUFFICIENT_DATA};
    use stride_guideline::display;
    let dec = &d.decision;
    let rs = d.rs;
    let recorded = |sources: &[String]| {
        d.facts
            .records
            .iter()
            .filter(|r| sources.contains(&r.source))
            .filter_map(|r| r.date)
            .max()
    };
    html.push_str(
        "<section class=\"why\" aria-labelledby=\"why-h\"><h2 id=\"why-h\">Why this phase</h2>",
    );
    let onset = series(rs, &d.facts, &rs.doc.applicability.episode_fact, d.as_of)
        .last()
        .and_then(|(_, julian)| Date::from_julian_day(*julian as i32).ok());
    if let Some(onset) = onset {
        html.push_str(&format!(
            "<p class=\"episode\">Episode: pain since {}, day {} on {}.</p>",
            display::day(onset),
            (d.as_of - onset).whole_days(),
            display::day(d.as_of)
        ));
    }
    match dec.phase.as_deref() {
        Some(HOLD_FOR_EVALUATION) => html.push_str(
            "<p>Progression is <strong>on hold</strong>: a red flag needs evaluation first.</p>",
        ),
        Some(INSUFFICIENT_DATA) => html.push_str(
            "<p>No phase can be placed with the records Stride has: <strong>insufficient data</strong>.</p>",
        ),
        Some(id) => {
            let title = rs.doc.phases.iter().find(|p| p.id == id).map_or(id, |p| p.title.as_str());
            html.push_str(&format!("<p>Placed in <strong>{}</strong>.</p>", esc(title)));
        }
        None => html.push_str("<p>The guideline does not apply to this patient.</p>"),
    }
    if !dec.red_flags.is_empty() {
        html.push_str("<h3>Red flags</h3><ul>");
        for f in &dec.red_flags {
            let basis: Vec<String> = f.basis.iter().map(|b| esc(&b.describe())).collect();
            html.push_str(&format!(
                "<li><strong>{}</strong>{}</li>",
                esc(&f.summary),
                if basis.is_empty() {
                    String::new()
                } else {
                    format!("<br>Based on: {}", basis.join("; "))
                }
            ));
        }
        html.push_str("</ul>");
    }
    if let Some(r) = &dec.regression {
        html.push_str(&format!(
            "<p><strong>{}</strong> {}</p>",
            esc(&r.summary),
            esc(&r.detail)
        ));
    }
    // Each phase's exit criteria as evaluated, once each, in the order of the protocol.
    for phase in &rs.doc.phases {
        // Once each per episode: with two knees' episodes, each criterion names its side.
        let mut seen: Vec<(&str, Option<stride_guideline::model::Side>)> = Vec::new();
        let items: Vec<String> = dec
            .trace
            .iter()
            .filter(|t| t.rule == phase.rule)
            .filter(|t| match t.check.as_deref() {
                Some(c) if !seen.contains(&(c, t.side)) => {
                    seen.push((c, t.side));
                    true
                }
                _ => false,
            })
            .map(|t| {
                format!(
                    "<li class=\"{}\">{}</li>",
                    verdict(t.verdict).replace(' ', "-"),
                    esc(&display::criterion(rs, t, recorded(&t.sources)))
                )
            })
            .collect();
        if !items.is_empty() {
            html.push_str(&format!(
                "<h3>To leave {}</h3><ul class=\"criteria\">{}</ul>",
                esc(&phase.title),
                items.concat()
            ));
        }
    }
    if !dec.missing.is_empty() {
        html.push_str("<h3>Record to place the phase</h3><ul>");
        for m in &dec.missing {
            html.push_str(&format!(
                "<li>Record {} ({})</li>",
                esc(&lower_first(&m.text)),
                esc(&m.reason)
            ));
        }
        html.push_str("</ul>");
    }
    for u in &dec.unassessed_red_flags {
        let name = u.name(rs);
        let needs: Vec<String> = u.needs.iter().map(|n| esc(&lower_first(&n.text))).collect();
        html.push_str(&format!(
            "<p>Not ruled out: <strong>{}</strong>. Record {}.</p>",
            esc(&name),
            needs.join(", ")
        ));
    }
    if !dec.episodes.is_empty() {
        html.push_str("<h3>Open episodes</h3><ul>");
        for e in &dec.episodes {
            html.push_str(&format!("<li>{}</li>", esc(e)));
        }
        html.push_str("</ul>");
    }
    html.push_str("</section>");
}

/// "Pain at night" → "pain at night", for "Record pain at night".
fn lower_first(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) if !s.chars().nth(1).is_some_and(char::is_uppercase) => {
            f.to_lowercase().chain(c).collect()
        }
        _ => s.to_owned(),
    }
}

fn findings(html: &mut String, d: &Drafted<'_>, cited: &mut Citations) {
    let dec = &d.decision;
    let findings: Vec<_> = dec
        .red_flags
        .iter()
        .chain(&dec.warnings)
        .chain(&dec.pitfalls)
        .chain(&dec.phase_notes)
        .collect();
    if findings.is_empty() {
        return;
    }
    html.push_str("<h2>Red flags, warnings and pitfalls</h2><ul class=\"findings\">");
    for f in findings {
        let basis: Vec<String> = f.basis.iter().map(|b| esc(&b.describe())).collect();
        let based = if basis.is_empty() {
            String::new()
        } else {
            format!(
                "<br><span class=\"basis\">Based on: {}</span>",
                basis.join("; ")
            )
        };
        // The rule set's card text cites its own numbers inline; the page cites its own list.
        let detail = strip_citations(&f.detail);
        html.push_str(&format!(
            "<li class=\"{:?}\"><strong>{}</strong><br>{}{}{based}</li>",
            f.severity,
            esc(&f.summary),
            esc(&detail),
            cited.cite(&f.cite),
        ));
    }
    html.push_str("</ul>");
}

/// The text without its inline citation brackets ("… healing [1, 2]." → "… healing."): the
/// page numbers its sources itself.
fn strip_citations(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(open) = rest.find('[') {
        let after = &rest[open + 1..];
        match after.find(']') {
            Some(close)
                if close > 0
                    && after[..close]
                        .chars()
                        .all(|c| c.is_ascii_digit() || c == ',' || c == ' ') =>
            {
                out.push_str(rest[..open].trim_end());
                rest = &after[close + 1..];
            }
            _ => {
                out.push_str(&rest[..=open]);
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

fn trace(html: &mut String, d: &Decision) {
    html.push_str(
        "<details class=\"trace\"><summary>The full decision trace (rule ids, for audit)</summary><div class=\"scroll\"><table><caption>Each criterion with the value Stride saw</caption>\
         <thead><tr><th scope=\"col\">Rule</th><th scope=\"col\">Criterion</th><th scope=\"col\">Fact</th>\
         <th scope=\"col\">Value seen</th><th scope=\"col\">Threshold</th><th scope=\"col\">Verdict</th></tr></thead><tbody>",
    );
    for t in &d.trace {
        html.push_str(&format!(
            "<tr class=\"{}\"><td>{}</td><td>{}</td><td>{}</td><td>{} {}</td><td>{} {}</td><td>{}</td></tr>",
            verdict(t.verdict).replace(' ', "-"),
            esc(&t.rule),
            esc(t.check.as_deref().unwrap_or("")),
            esc(&t.fact),
            number(t.value),
            esc(t.unit.as_deref().unwrap_or("")),
            esc(&t.op),
            number(t.threshold),
            verdict(t.verdict),
        ));
    }
    html.push_str("</tbody></table></div></details>");
}

fn activities_and_goals(html: &mut String, r: &Json, cited: &mut Citations) {
    use stride_guideline::display::{number, quantity};
    html.push_str("<h2>Recommendations</h2><ul>");
    for rec in recommendations(r) {
        html.push_str(&format!(
            "<li>{}{}</li>",
            esc(&rec.text),
            cited.cite(&rec.cite)
        ));
    }
    html.push_str("</ul><h2>Goals</h2><ul>");
    let mut said: Vec<&str> = Vec::new();
    for g in r["contained"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|g| g["resourceType"] == "Goal")
    {
        let text = g["description"]["text"].as_str().unwrap_or("");
        // Plans drafted before goals were one per target may hold one twice.
        if said.contains(&text) {
            continue;
        }
        said.push(text);
        let t = &g["target"][0];
        let range = match (
            t["detailRange"]["low"]["value"].as_f64(),
            t["detailRange"]["high"]["value"].as_f64(),
        ) {
            (Some(lo), Some(hi)) => format!(
                "{}–{}",
                number(lo),
                quantity(hi, t["detailRange"]["high"]["code"].as_str())
            ),
            _ => t["detailQuantity"]["value"]
                .as_f64()
                .map(|v| quantity(v, t["detailQuantity"]["code"].as_str()))
                .unwrap_or_default(),
        };
        html.push_str(&format!(
            "<li>{} <span class=\"target\">Target: {}</span></li>",
            esc(text),
            esc(&range)
        ));
    }
    html.push_str("</ul>");
    let notes: Vec<&str> = r["note"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|n| n["text"].as_str())
        .collect();
    if !notes.is_empty() {
        html.push_str("<h2>Review notes</h2><ul>");
        for n in notes {
            html.push_str(&format!("<li>{}</li>", esc(n)));
        }
        html.push_str("</ul>");
    }
}

fn review_section(html: &mut String, viewer: &Viewer, plan: &CarePlanRecord) {
    if plan.status != stride_store::CarePlanStatus::Draft {
        html.push_str(&format!(
            "<p class=\"decided\">This plan has been reviewed: it is <strong>{}</strong> (version {}).</p>",
            esc(plan.status.as_str()),
            plan.version
        ));
        return;
    }
    if !viewer.caller.has_scope(CareplanReview::NAME) {
        html.push_str(
            "<p>You may read this plan; reviewing it needs the careplan.review permission.</p>",
        );
        return;
    }
    let action = format!("/ui/careplans/{}/review", plan.id);
    let common = format!(
        "{}<input type=\"hidden\" name=\"version\" value=\"{}\">",
        viewer.csrf_field(),
        plan.version
    );
    html.push_str(&format!(
        "<section class=\"review\" aria-labelledby=\"review-h\"><h2 id=\"review-h\">Review</h2>\
         <form method=\"post\" action=\"{action}\" id=\"approve\">{common}<input type=\"hidden\" name=\"action\" value=\"approve\">\
         <button type=\"submit\">Approve as drafted</button></form>\
         <form method=\"post\" action=\"{action}\" id=\"reject\">{common}<input type=\"hidden\" name=\"action\" value=\"reject\">\
         <label for=\"reject-reason\">Reason for rejecting (required)</label><textarea id=\"reject-reason\" name=\"reason\" required rows=\"2\"></textarea>\
         <button type=\"submit\">Reject</button></form>\
         <form method=\"post\" action=\"{action}\" id=\"revise\">{common}<input type=\"hidden\" name=\"action\" value=\"revise\">\
         <fieldset><legend>Recommendations (clear a box to remove that recommendation)</legend>"
    ));
    for (i, rec) in recommendations(&plan.resource).iter().enumerate() {
        html.push_str(&format!(
            "<label for=\"activity-{i}\">Recommendation {}</label><textarea id=\"activity-{i}\" name=\"activity-{i}\" rows=\"3\">{}</textarea>",
            i + 1,
            esc(&rec.text)
        ));
    }
    html.push_str(
        "</fieldset><label for=\"revise-reason\">Reason for the revision (required)</label>\
         <textarea id=\"revise-reason\" name=\"reason\" required rows=\"2\"></textarea>\
         <button type=\"submit\">Save revision</button></form></section>",
    );
}

/// What the reviewer changed in the form: a new text for each recommendation whose box they
/// edited, an empty one for each box they cleared (the boxes follow `recommendations`).
fn edits(current: &Json, form: &HashMap<String, String>) -> Vec<RecommendationEdit> {
    recommendations(current)
        .into_iter()
        .enumerate()
        .filter_map(|(i, rec)| {
            let sent = form.get(&format!("activity-{i}"))?.trim();
            (sent != rec.text.trim()).then(|| RecommendationEdit {
                id: rec.id,
                text: sent.to_owned(),
            })
        })
        .collect()
}

#[post("/ui/careplans/{id}/review")]
#[tracing::instrument(name = "ui careplan review", skip_all)]
pub async fn review(
    req: HttpRequest,
    signed_in: PatientPage<CareplanReview>,
    path: web::Path<String>,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, UiError> {
    let viewer = signed_in.viewer;
    let form = checked_form(&req, payload, &state, &viewer).await?;
    let action = form.get("action").cloned().unwrap_or_default();
    let chosen: ReviewAction = action
        .parse()
        .map_err(|e| ApiError::BadRequest(format!("action {e}")))?;
    let version = form
        .get("version")
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| ApiError::BadRequest("version: the version you saw is required".into()))?;
    let recommendations = if chosen == ReviewAction::Revise {
        let current = load_visible(state.store.as_ref(), &viewer.caller, &path).await?;
        Some(edits(&current.resource, &form))
    } else {
        None
    };
    let body = ReviewRequest {
        action: chosen,
        version,
        reason: form.get("reason").cloned(),
        recommendations,
        activity: None,
    };
    match stride_app::review::apply(
        state.store.as_ref(),
        &state.catalog,
        &audit::actor(&req, &viewer.caller),
        &path,
        &body,
    )
    .await
    {
        Ok(updated) => Ok(see_other(&format!(
            "/ui/careplans/{}?done={action}",
            updated.id
        ))),
        Err(ReviewError::Conflict(msg)) => {
            let text = format!(
                "Your {action} was not saved: {msg}. The plan as it is now is shown below."
            );
            render(
                &req,
                &state,
                &viewer,
                &path,
                Some(Notice::Problem(text)),
                StatusCode::CONFLICT,
            )
            .await
        }
        Err(ReviewError::Invalid(msg)) => {
            let text = format!("Your {action} was not saved: {msg}.");
            render(
                &req,
                &state,
                &viewer,
                &path,
                Some(Notice::Problem(text)),
                StatusCode::BAD_REQUEST,
            )
            .await
        }
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_form_sends_only_the_boxes_the_reviewer_changed() {
        let current = json!({"activity": [
            {"detail": {"description": "walk", "status": "not-started"}},
            {"detail": {"description": "run", "status": "not-started"}},
            {"detail": {"description": "bike", "status": "not-started"}}
        ]});
        let form: HashMap<String, String> = [
            ("activity-0".to_owned(), " walk 20 min ".to_owned()),
            ("activity-1".to_owned(), "  ".to_owned()),
            ("activity-2".to_owned(), "bike ".to_owned()),
        ]
        .into();
        let sent: Vec<(String, String)> = edits(&current, &form)
            .into_iter()
            .map(|e| (e.id, e.text))
            .collect();
        assert_eq!(
            sent,
            [
                ("0".to_owned(), "walk 20 min".to_owned()),
                ("1".to_owned(), String::new())
            ]
        );
    }
}
