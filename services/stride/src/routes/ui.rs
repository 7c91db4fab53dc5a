//! The CarePlan review page for clinic staff, rendered on the server: what Stride drafted,
//! and why, line by line. Staff authenticate with a bearer token (a reverse proxy in front
//! of Stride adds it); no external assets, a strict Content-Security-Policy.

use actix_web::{get, web, HttpRequest, HttpResponse};
use serde_json::Value as Json;
use stride_guideline::{decision::Verdict, evaluate, Decision, Facts, RuleSetVersion};

use crate::audit;
use crate::auth;
use crate::error::ApiError;
use crate::routes::careplans::{load_visible, READ};
use crate::startup::AppState;

const CSP: &str = "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";
const STYLE: &str = include_str!("ui.css");

/// HTML-escape text taken from stored data.
fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

fn page(title: &str, body: &str) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .insert_header(("content-security-policy", CSP))
        .insert_header(("x-content-type-options", "nosniff"))
        .insert_header(("referrer-policy", "no-referrer"))
        .insert_header(("cache-control", "no-store"))
        .body(format!(
            "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
             <title>{}</title><link rel=\"stylesheet\" href=\"/ui/style.css\"></head><body><main>{body}</main></body></html>",
            esc(title)
        ))
}

#[get("/ui/style.css")]
pub async fn style() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/css; charset=utf-8")
        .insert_header(("cache-control", "max-age=3600"))
        .body(STYLE)
}

/// The decision behind a plan: its stored facts, re-evaluated with the stored rule-set version.
fn decision(state: &AppState, entry: &stride_store::AuditEntry) -> Option<Decision> {
    let e = &entry.entry;
    let version: RuleSetVersion = e.rule_set_version.as_deref()?.parse().ok()?;
    let rs = state.catalog.get(e.rule_set_id.as_deref()?, &version)?;
    let facts: Facts = serde_json::from_value(e.facts.clone()?).ok()?;
    let as_of = time::Date::parse(
        e.as_of.as_deref()?,
        &time::format_description::well_known::Iso8601::DATE,
    )
    .ok()?;
    Some(evaluate(rs, &facts, as_of))
}

fn verdict(v: Verdict) -> &'static str {
    match v {
        Verdict::Met => "met",
        Verdict::NotMet => "not met",
        Verdict::Unknown => "unknown",
    }
}

fn number(v: Option<f64>) -> String {
    v.map(|x| {
        if x.fract() == 0.0 {
            format!("{x:.0}")
        } else {
            format!("{x:.2}")
        }
    })
    .unwrap_or_else(|| "—".into())
}

#[get("/ui/careplans/{id}")]
#[tracing::instrument(name = "ui careplan", skip_all)]
pub async fn careplan(
    req: HttpRequest,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let caller = auth::staff(&req, &state, READ).await?;
    let plan = load_visible(&state, &caller, &path).await?;
    let id = plan.id;
    let mut entry = audit::entry(&req, "careplan-read", "success", Some(&caller));
    entry.patient_ref = Some(plan.patient_ref.clone());
    entry.careplan_id = Some(id);
    entry.details["view"] = serde_json::json!("review page");
    state.store.append_audit(&entry).await?;

    let r = &plan.resource;
    let phase = r["category"][0]["coding"][0]["display"]
        .as_str()
        .unwrap_or(&plan.phase);
    let mut html = format!(
        "<h1>{}</h1><dl><dt>Patient</dt><dd>{}</dd><dt>Phase</dt><dd>{}</dd><dt>Status</dt><dd>{} (version {})</dd>\
         <dt>Rule set</dt><dd><a href=\"/guidelines/{}/{}\">{} {}</a></dd></dl>",
        esc(r["title"].as_str().unwrap_or("CarePlan")),
        esc(&plan.patient_ref),
        esc(phase),
        esc(&plan.status),
        plan.version,
        esc(&plan.rule_set_id),
        esc(&plan.rule_set_version),
        esc(&plan.rule_set_id),
        esc(&plan.rule_set_version),
    );
    let drafted = state.store.drafting_entry(id).await.ok();
    match drafted.as_ref().and_then(|e| decision(&state, e)) {
        Some(d) => {
            let findings: Vec<_> = d.red_flags.iter().chain(&d.warnings).chain(&d.pitfalls).collect();
            if !findings.is_empty() {
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
            html.push_str(
                "<h2>Why: the decision trace</h2><table><caption>Each criterion with the value Stride saw</caption>\
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
            html.push_str("</tbody></table>");
        }
        None => html.push_str("<p>The decision behind this plan could not be re-evaluated (its rule-set version is not loaded).</p>"),
    }
    html.push_str("<h2>Activities</h2><ul>");
    for a in r["activity"].as_array().into_iter().flatten() {
        html.push_str(&format!(
            "<li>{}</li>",
            esc(a["detail"]["description"].as_str().unwrap_or(""))
        ));
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
    Ok(page(r["title"].as_str().unwrap_or("CarePlan"), &html))
}
