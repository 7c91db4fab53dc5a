//! One CarePlan for review: what Stride drafted and why (findings with rule ids and
//! citations, the decision trace, a timeline), and the approve / revise / reject forms.

use std::collections::HashMap;

use actix_web::http::StatusCode;
use actix_web::{get, post, web, HttpRequest, HttpResponse};
use serde_json::Value as Json;
use stride_guideline::{decision::Verdict, series, Decision, Facts, RuleSet};
use stride_store::CarePlanRecord;
use time::Date;

use super::chart::Timeline;
use super::{check_form, esc, number, page, see_other, PatientPage, UiError, Viewer};
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
    let history = state
        .store
        .search_careplans(&stride_store::CarePlanQuery {
            tenant: Some(plan.tenant.clone()),
            patient_ref: Some(plan.patient_ref.clone()),
            limit: 200,
            ..Default::default()
        })
        .await
        .unwrap_or_default();
    let mut phases: Vec<(Date, String)> = history
        .iter()
        .filter(|p| p.created_at <= plan.created_at)
        .map(|p| (p.created_at.date(), phase_label(p)))
        .collect();
    phases.sort_by_key(|p| p.0);
    // Several plans on one day: the last one drafted that day holds.
    phases.dedup_by(|later, earlier| {
        if later.0 == earlier.0 {
            earlier.1 = later.1.clone();
            true
        } else {
            false
        }
    });
    let mut timeline = Timeline {
        start: onset,
        end: Some(d.as_of),
        phases,
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
    let caller = &viewer.caller;
    let plan = load_visible(state.store.as_ref(), caller, id).await?;
    let id = plan.id;
    let mut entry = audit::entry(req, audit::Action::CareplanRead, "success", Some(caller));
    entry.patient_ref = Some(plan.patient_ref.clone());
    entry.careplan_id = Some(id);
    entry.details["view"] = serde_json::json!("review page");
    state.store.append_audit(&entry).await?;

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
    html.push_str(&format!(
        "<dl><dt>Patient</dt><dd>{}</dd><dt>Phase</dt><dd>{}</dd><dt>Status</dt><dd><span class=\"status {}\">{}</span> (version {})</dd>\
         <dt>Drafted</dt><dd>{}</dd><dt>Rule set</dt><dd><a href=\"/guidelines/{}/{}\">{} {}</a></dd></dl>",
        esc(&plan.patient_ref),
        esc(&phase),
        esc(plan.status.as_str()),
        esc(plan.status.as_str()),
        plan.version,
        plan.created_at.date(),
        esc(&plan.rule_set_id),
        esc(&plan.rule_set_version),
        esc(&plan.rule_set_id),
        esc(&plan.rule_set_version),
    ));
    let entry = state.store.drafting_entry(id).await.ok();
    match entry.as_ref().and_then(|e| drafted(state, e)) {
        Some(d) => {
            findings(&mut html, &d.decision);
            let t = timeline(state, &plan, &d).await;
            if let Some(svg) = t.svg() {
                html.push_str("<h2>Timeline</h2><figure class=\"chart\">");
                html.push_str(&svg);
                html.push_str("<figcaption>Weeks since the onset of pain. Bands: the phase of each plan drafted for this patient.</figcaption></figure><details><summary>Timeline as a table</summary>");
                html.push_str(&t.table());
                html.push_str("</details>");
            }
            trace(&mut html, &d.decision);
        }
        None => html.push_str("<p>The decision behind this plan could not be re-evaluated (its rule-set version is not loaded).</p>"),
    }
    activities_and_goals(&mut html, r);
    review_section(&mut html, viewer, &plan);
    Ok(page(
        status,
        Some(viewer),
        r["title"].as_str().unwrap_or("CarePlan"),
        &html,
    ))
}

fn findings(html: &mut String, d: &Decision) {
    let findings: Vec<_> = d
        .red_flags
        .iter()
        .chain(&d.warnings)
        .chain(&d.pitfalls)
        .chain(&d.phase_notes)
        .collect();
    if findings.is_empty() {
        return;
    }
    html.push_str("<h2>Red flags, warnings and pitfalls</h2><ul class=\"findings\">");
    for f in findings {
        html.push_str(&format!(
            "<li class=\"{:?}\"><strong>{}</strong> <span class=\"rule\">{} · {}</span><br>{} <span class=\"cite\">sources {:?}</span></li>",
            f.severity,
            esc(&f.summary),
            esc(&f.id),
            esc(&f.rule),
            esc(&f.detail),
            f.cite
        ));
    }
    html.push_str("</ul>");
}

fn trace(html: &mut String, d: &Decision) {
    html.push_str(
        "<h2>Why: the decision trace</h2><div class=\"scroll\"><table><caption>Each criterion with the value Stride saw</caption>\
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
    html.push_str("</tbody></table></div>");
}

fn activities_and_goals(html: &mut String, r: &Json) {
    html.push_str("<h2>Recommendations</h2><ul>");
    for rec in recommendations(r) {
        html.push_str(&format!("<li>{}</li>", esc(&rec.text)));
    }
    html.push_str("</ul><h2>Goals</h2><ul>");
    for g in r["contained"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|g| g["resourceType"] == "Goal")
    {
        let t = &g["target"][0];
        let range = match (
            &t["detailRange"]["low"]["value"],
            &t["detailRange"]["high"]["value"],
        ) {
            (Json::Number(lo), Json::Number(hi)) => format!(
                "{lo}–{hi} {}",
                t["detailRange"]["low"]["unit"].as_str().unwrap_or("")
            ),
            _ => format!(
                "{} {}",
                t["detailQuantity"]["value"],
                t["detailQuantity"]["unit"].as_str().unwrap_or("")
            ),
        };
        html.push_str(&format!(
            "<li>{} <span class=\"target\">{}</span></li>",
            esc(g["description"]["text"].as_str().unwrap_or("")),
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
    let limits = crate::body::BodyLimits::of(&state.settings);
    let form: HashMap<String, String> = crate::body::read_form(&req, payload, limits).await?;
    check_form(
        &req,
        &state,
        Some(&viewer),
        form.get("csrf").map(String::as_str),
    )?;
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
    let entry = audit::entry(
        &req,
        audit::Action::CareplanReview,
        "success",
        Some(&viewer.caller),
    );
    match stride_app::review::apply(
        state.store.as_ref(),
        &state.catalog,
        &viewer.caller,
        &path,
        &body,
        entry,
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
