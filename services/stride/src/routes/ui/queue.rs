//! The review queue: CarePlans of the viewer's tenant, red-flag plans first, newest first,
//! filtered by status and by the day they were drafted.

use actix_web::http::StatusCode;
use actix_web::{get, web, HttpRequest, HttpResponse};
use serde::Deserialize;
use time::Date;

use super::{esc, page, PatientPage, UiError};
use crate::audit;
use crate::auth::CareplanRead;
use crate::error::ApiError;
use crate::state::AppState;

const STATUSES: &[(&str, &str)] = &[
    ("draft", "Waiting for review"),
    ("active", "Approved or revised"),
    ("revoked", "Rejected"),
    ("any", "Any status"),
];

#[derive(Deserialize)]
pub struct QueueQuery {
    status: Option<String>,
    from: Option<String>,
    to: Option<String>,
}

fn day(field: &str, v: &Option<String>) -> Result<Option<Date>, ApiError> {
    match v.as_deref().map(str::trim) {
        None | Some("") => Ok(None),
        Some(s) => Date::parse(s, &time::format_description::well_known::Iso8601::DATE)
            .map(Some)
            .map_err(|_| ApiError::BadRequest(format!("{field}: a day such as 2026-11-27"))),
    }
}

#[get("/ui/careplans")]
#[tracing::instrument(name = "ui queue", skip_all)]
pub async fn queue(
    req: HttpRequest,
    signed_in: PatientPage<CareplanRead>,
    q: web::Query<QueueQuery>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, UiError> {
    let viewer = signed_in.viewer;
    let status = q.status.as_deref().unwrap_or("draft");
    if !STATUSES.iter().any(|(s, _)| *s == status) {
        return Err(ApiError::BadRequest("status: draft, active, revoked or any".into()).into());
    }
    let (from, to) = (day("from", &q.from)?, day("to", &q.to)?);
    let search = stride_app::careplans::Search {
        status: status.parse::<stride_store::CarePlanStatus>().ok(),
        created_from: from,
        created_to: to,
        limit: 200,
        view: Some("review queue"),
        ..Default::default()
    };
    let actor = audit::actor(&req, &viewer.caller);
    let plans = stride_app::careplans::search(state.store.as_ref(), &actor, search)
        .await
        .map_err(ApiError::from)?;

    let mut html = String::from("<h1>Review queue</h1><form method=\"get\" action=\"/ui/careplans\" class=\"filters\"><label for=\"status\">Status</label><select id=\"status\" name=\"status\">");
    for (value, label) in STATUSES {
        let sel = if *value == status { " selected" } else { "" };
        html.push_str(&format!("<option value=\"{value}\"{sel}>{label}</option>"));
    }
    let shown = |d: Option<Date>| d.map(|d| d.to_string()).unwrap_or_default();
    html.push_str(&format!(
        "</select><label for=\"from\">Drafted from</label><input type=\"date\" id=\"from\" name=\"from\" value=\"{}\">\
         <label for=\"to\">to</label><input type=\"date\" id=\"to\" name=\"to\" value=\"{}\"><button type=\"submit\">Filter</button></form>",
        shown(from),
        shown(to)
    ));
    if plans.is_empty() {
        html.push_str("<p role=\"status\">No CarePlans match.</p>");
    } else {
        html.push_str(&format!(
            "<p role=\"status\">{} plan{}; red flags first, then newest first.</p><div class=\"scroll\"><table class=\"queue\"><caption>CarePlans</caption><thead><tr>\
             <th scope=\"col\">Priority</th><th scope=\"col\">Drafted</th><th scope=\"col\">Patient</th><th scope=\"col\">Phase</th>\
             <th scope=\"col\">Status</th><th scope=\"col\">Plan</th></tr></thead><tbody>",
            plans.len(),
            if plans.len() == 1 { "" } else { "s" }
        ));
        let today = time::OffsetDateTime::now_utc().date();
        for p in &plans {
            let phase = p.resource["category"][0]["coding"][0]["display"]
                .as_str()
                .unwrap_or(&p.phase);
            let priority = if p.red_flag {
                "<span class=\"flag\">Red flag</span>"
            } else {
                ""
            };
            let drafted = esc(&super::clinic_time(&state, Some(&p.tenant), p.created_at));
            html.push_str(&format!(
                "<tr class=\"{}\"><td>{priority}</td><td>{drafted}</td><td>{}</td><td>{}</td><td>{} (v{})</td>\
                 <td><a href=\"/ui/careplans/{}\">Open<span class=\"visually-hidden\"> plan for {}</span></a></td></tr>",
                if p.red_flag { "red-flag" } else { "" },
                match super::identity(p.patient.as_ref(), today) {
                    Some(w) => format!("{}<br><span class=\"ref\">{}</span>", esc(&w), esc(p.patient_ref.as_str())),
                    None => esc(p.patient_ref.as_str()),
                },
                esc(phase),
                esc(p.status.as_str()),
                p.version,
                p.id,
                esc(p.patient_ref.as_str()),
            ));
        }
        html.push_str("</tbody></table></div>");
    }
    Ok(page(StatusCode::OK, Some(&viewer), "Review queue", &html))
}
