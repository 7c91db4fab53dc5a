//! The patient's take-home plan of an approved CarePlan, for staff to print or hand over: the
//! page and the PDF show what `stride_app::take_home` composes from the rule set's patient
//! wording.

use actix_web::http::StatusCode;
use actix_web::{get, web, HttpRequest, HttpResponse};
use serde::Deserialize;
use stride_app::pdf::{self, Paper};
use stride_app::take_home::{self, TakeHome};
use stride_guideline::display;

use super::{esc, page, PatientPage, UiError};
use crate::audit;
use crate::auth::CareplanRead;
use crate::error::ApiError;
use crate::state::AppState;

/// Loads the take-home plan and records who read it, and in which form.
async fn load(
    req: &HttpRequest,
    state: &AppState,
    caller: &stride_auth::Caller,
    id: &str,
    form: &str,
) -> Result<(uuid::Uuid, TakeHome), UiError> {
    let (plan, home) = take_home::approved(
        state.store.as_ref(),
        &state.catalog,
        &audit::actor(req, caller),
        id,
        form,
        |t| state.verifier.tenant_timezone(t).map(str::to_owned),
    )
    .await?;
    Ok((plan.id, home))
}

#[get("/ui/careplans/{id}/patient")]
#[tracing::instrument(name = "ui take-home plan", skip_all)]
pub async fn page_html(
    req: HttpRequest,
    signed_in: PatientPage<CareplanRead>,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, UiError> {
    let viewer = signed_in.viewer;
    let (id, home) = load(&req, &state, &viewer.caller, &path, "take-home page").await?;
    let list = |items: &[String]| {
        let li: String = items
            .iter()
            .map(|i| format!("<li>{}</li>", esc(i)))
            .collect();
        format!("<ul>{li}</ul>")
    };
    let mut html = format!(
        "<article class=\"take-home\"><h1>Your plan: {}</h1><p>From {}</p><p class=\"lead\">{}</p>",
        esc(&home.title),
        esc(&display::day(home.from)),
        esc(&home.summary)
    );
    if !home.to_do.is_empty() {
        html.push_str(&format!("<h2>What to do</h2>{}", list(&home.to_do)));
    }
    if !home.avoid.is_empty() {
        html.push_str(&format!("<h2>What not to do</h2>{}", list(&home.avoid)));
    }
    if !home.calendar.is_empty() {
        html.push_str(
            "<h2>Your next two weeks</h2><table class=\"calendar\"><caption>What to do each day</caption>\
             <thead><tr><th scope=\"col\">Day</th><th scope=\"col\">Plan</th></tr></thead><tbody>",
        );
        for d in &home.calendar {
            let class = if d.session { "session" } else { "rest" };
            html.push_str(&format!(
                "<tr class=\"{class}\"><th scope=\"row\">{}</th><td>{}</td></tr>",
                esc(&pdf::weekday(d.day)),
                esc(&d.label)
            ));
        }
        html.push_str("</tbody></table>");
    }
    html.push_str(&format!(
        "<h2>Stop and call</h2><p class=\"stop\"><strong>{}</strong></p><h2>When to come back</h2><p>{}</p>",
        esc(&home.stop),
        esc(&home.come_back)
    ));
    html.push_str(&format!(
        "<p class=\"print\">Print: <a href=\"/ui/careplans/{id}/patient.pdf?paper=a4\">PDF, A4</a> · \
         <a href=\"/ui/careplans/{id}/patient.pdf?paper=letter\">PDF, US Letter</a></p>"
    ));
    if !home.sources.is_empty() {
        let li: String = home
            .sources
            .iter()
            .map(|s| format!("<li>{}</li>", esc(s)))
            .collect();
        html.push_str(&format!(
            "<h2>Where this advice comes from</h2><ol class=\"sources\">{li}</ol>"
        ));
    }
    html.push_str(&format!(
        "<p class=\"small\">{} — version {}. <a href=\"/ui/careplans/{id}\">Back to the clinical plan</a></p></article>",
        esc(&home.guideline),
        esc(&home.version)
    ));
    Ok(page(
        StatusCode::OK,
        Some(&viewer),
        &format!("Your plan: {}", home.title),
        &html,
    ))
}

#[derive(Deserialize)]
pub struct PdfQuery {
    paper: Option<String>,
}

#[get("/ui/careplans/{id}/patient.pdf")]
#[tracing::instrument(name = "ui take-home pdf", skip_all)]
pub async fn page_pdf(
    req: HttpRequest,
    signed_in: PatientPage<CareplanRead>,
    path: web::Path<String>,
    q: web::Query<PdfQuery>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, UiError> {
    let paper = match q.paper.as_deref() {
        None => Paper::A4,
        Some(p) => {
            Paper::parse(p).ok_or_else(|| ApiError::BadRequest("paper: a4 or letter".into()))?
        }
    };
    let viewer = signed_in.viewer;
    let (_, home) = load(&req, &state, &viewer.caller, &path, "take-home pdf").await?;
    Ok(HttpResponse::Ok()
        .content_type("application/pdf")
        .insert_header((
            "Content-Disposition",
            "inline; filename=\"take-home-plan.pdf\"",
        ))
        .body(pdf::render(&home, paper)))
}
