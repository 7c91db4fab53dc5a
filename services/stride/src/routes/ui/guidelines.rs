//! The committee's view of its guidelines (`guideline.approve`): every version with its status,
//! the clinics it is in force for, and the sign-offs on it, each with the impact report it
//! named; a link to read a version's impact before signing off. Sign-offs and activation are
//! recorded through the API or the command line (README, "CDS governance").

use actix_web::http::StatusCode;
use actix_web::{get, web, HttpResponse};

use super::{esc, page, Page, UiError};
use crate::auth::GuidelineApprove;
use crate::state::AppState;

#[get("/ui/guidelines")]
#[tracing::instrument(name = "ui guidelines", skip_all)]
pub async fn guidelines(
    signed_in: Page<GuidelineApprove>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, UiError> {
    let viewer = signed_in.viewer;
    let caller = &viewer.caller;
    let mut ids: Vec<&str> = state.catalog.iter().map(|rs| rs.doc.id.as_str()).collect();
    ids.dedup();
    let mut html = String::from(
        "<h1>Guideline versions</h1><p>A version answers for a clinic once two members of its staff \
         have approved it, each having read its impact on the clinic's decisions, and it has been \
         activated (README, \u{201c}CDS governance\u{201d}).</p>",
    );
    for id in ids {
        let sign_offs = state.store.sign_offs(id).await?;
        let in_force = state.pins.tenants(&state.catalog, id);
        let mut title = id.to_owned();
        let mut rows = String::new();
        for rs in state.catalog.iter().filter(|rs| rs.doc.id == id) {
            title = rs.doc.title.clone();
            let v = rs.doc.version.to_string();
            let clinics: Vec<&str> = in_force
                .iter()
                .filter(|(t, r, _)| r.doc.version == rs.doc.version && caller.may_see(t))
                .map(|(t, _, _)| t.as_str())
                .collect();
            let signed: Vec<String> = sign_offs
                .iter()
                .filter(|s| s.version == v && caller.may_see(&s.tenant))
                .map(|s| {
                    let who = s.signer.rsplit('|').next().unwrap_or(&s.signer);
                    let day = s
                        .created_at
                        .date()
                        .to_string();
                    let stale = if s.content_hash == rs.content_hash {
                        ""
                    } else {
                        " (for an earlier text of this file: no longer counts)"
                    };
                    let reason = s
                        .reason
                        .as_deref()
                        .map(|r| format!(": \u{201c}{}\u{201d}", esc(r)))
                        .unwrap_or_default();
                    format!(
                        "<li>{} by {} for {} on {day}{reason}{stale} <span class=\"ref\">impact {}…</span></li>",
                        if s.decision == "approve" { "Approved" } else { "Rejected" },
                        esc(who),
                        esc(&s.tenant),
                        esc(&s.impact_hash.chars().take(12).collect::<String>())
                    )
                })
                .collect();
            let signed = if signed.is_empty() {
                "none".to_owned()
            } else {
                format!("<ul>{}</ul>", signed.concat())
            };
            let impact = format!("/ui/rules/impact?candidate={}%3D{}", esc(id), esc(&v));
            rows.push_str(&format!(
                "<tr><th scope=\"row\">{}</th><td>{}</td><td>{}</td><td>{signed}</td>\
                 <td><a href=\"{impact}\">Read the impact<span class=\"visually-hidden\"> of {}</span></a></td></tr>",
                esc(&v),
                esc(&format!("{:?}", rs.doc.status).to_lowercase()),
                if clinics.is_empty() {
                    "—".to_owned()
                } else {
                    esc(&clinics.join(", "))
                },
                esc(&v),
            ));
        }
        html.push_str(&format!(
            "<section><h2>{}</h2><table><caption>Versions of {}</caption><thead><tr>\
             <th scope=\"col\">Version</th><th scope=\"col\">Status</th><th scope=\"col\">In force for</th>\
             <th scope=\"col\">Sign-offs</th><th scope=\"col\">Impact</th></tr></thead><tbody>{rows}</tbody></table></section>",
            esc(&title),
            esc(id)
        ));
    }
    Ok(page(
        StatusCode::OK,
        Some(&viewer),
        "Guideline versions",
        &html,
    ))
}
