//! The committee's view of its guidelines (`guideline.approve`): every version with its status,
//! the clinics it is in force for, and the sign-offs on it, each with the impact report it
//! named; a link to read a version's impact, where the signer signs off on the report they
//! read, and a button that puts an approved version in force for the signer's clinic. The
//! forms call the same use cases as the API and the command line (`stride_app::governance`).

use std::collections::HashMap;

use actix_web::http::StatusCode;
use actix_web::{get, post, web, HttpRequest, HttpResponse};
use stride_app::governance::{GovernanceError, SignOffRequest};
use stride_guideline::RuleSetVersion;

use super::{checked_form, esc, page, see_other, Page, UiError, Viewer};
use crate::auth::GuidelineApprove;
use crate::error::ApiError;
use crate::state::AppState;

#[get("/ui/guidelines")]
#[tracing::instrument(name = "ui guidelines", skip_all)]
pub async fn guidelines(
    signed_in: Page<GuidelineApprove>,
    q: web::Query<HashMap<String, String>>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, UiError> {
    let notice = match q.get("done").map(String::as_str) {
        Some("sign-off") => Some((true, "Your sign-off was recorded.".to_owned())),
        Some("activate") => Some((
            true,
            "Activated: the version answers for your clinic from the next call.".to_owned(),
        )),
        _ => None,
    };
    render(&state, &signed_in.viewer, notice, StatusCode::OK).await
}

/// The page, with a notice of what was just done (`true`) or could not be (`false`).
async fn render(
    state: &AppState,
    viewer: &Viewer,
    notice: Option<(bool, String)>,
    status: StatusCode,
) -> Result<HttpResponse, UiError> {
    let caller = &viewer.caller;
    let mut ids: Vec<&str> = state.catalog.iter().map(|rs| rs.doc.id.as_str()).collect();
    ids.dedup();
    let mut html = String::from(
        "<h1>Guideline versions</h1><p>A version answers for a clinic once two members of its staff \
         have approved it, each having read its impact on the clinic's decisions (sign off on the \
         impact page), and it has been activated (README, \u{201c}CDS governance\u{201d}).</p>",
    );
    match &notice {
        Some((true, text)) => html.push_str(&format!(
            "<p class=\"notice ok\" role=\"status\">{}</p>",
            esc(text)
        )),
        Some((false, text)) => html.push_str(&format!(
            "<p class=\"notice problem\" role=\"alert\">{}</p>",
            esc(text)
        )),
        None => {}
    }
    for id in ids {
        let sign_offs = stride_app::governance::sign_offs(state.store.as_ref(), caller, id).await?;
        let in_force = state.pins.tenants(&state.catalog, id);
        let mut title = id.to_owned();
        let mut rows = String::new();
        for rs in state.catalog.iter().filter(|rs| rs.doc.id == id) {
            title = rs.doc.title.clone();
            let v = rs.doc.version.to_string();
            let clinics: Vec<&stride_store::TenantId> = in_force
                .iter()
                .filter(|(t, r, _)| r.doc.version == rs.doc.version && caller.may_see(t))
                .map(|(t, _, _)| t)
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
                        esc(s.tenant.as_str()),
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
            // A signer of one clinic may put the version in force there; the use case says
            // why not when the approvals are missing.
            // Offered once it can work: two distinct approvals of this text for the clinic.
            let approvals = |tenant: &stride_store::TenantId| {
                let mut who: Vec<&str> = sign_offs
                    .iter()
                    .filter(|s| {
                        s.version == v
                            && s.tenant == *tenant
                            && s.decision == "approve"
                            && s.content_hash == rs.content_hash
                    })
                    .map(|s| s.signer.as_str())
                    .collect();
                who.sort_unstable();
                who.dedup();
                who.len()
            };
            let activation = match caller.tenant_scope() {
                Some(tenant) if !clinics.contains(&tenant) && approvals(tenant) < 2 => format!(
                    "<p class=\"note\">{} of 2 approvals for {}</p>",
                    approvals(tenant),
                    esc(tenant.as_str())
                ),
                Some(tenant) if !clinics.contains(&tenant) => format!(
                    "<form method=\"post\" action=\"/ui/guidelines/{}/{}/activate\" class=\"inline\">{}\
                     <button type=\"submit\">Activate {} for {}</button></form>",
                    esc(id),
                    esc(&v),
                    viewer.csrf_field(),
                    esc(&v),
                    esc(tenant.as_str())
                ),
                _ => String::new(),
            };
            rows.push_str(&format!(
                "<tr><th scope=\"row\">{}</th><td>{}</td><td>{}</td><td>{signed}</td>\
                 <td><a href=\"{impact}\">Read the impact and sign off<span class=\"visually-hidden\"> on {}</span></a>{activation}</td></tr>",
                esc(&v),
                esc(&format!("{:?}", rs.doc.status).to_lowercase()),
                if clinics.is_empty() {
                    "—".to_owned()
                } else {
                    esc(&clinics
                        .iter()
                        .map(|t| t.as_str())
                        .collect::<Vec<_>>()
                        .join(", "))
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
    Ok(page(status, Some(viewer), "Guideline versions", &html))
}

/// The version a form names, if loaded.
fn version(state: &AppState, id: &str, version: &str) -> Result<RuleSetVersion, UiError> {
    version
        .parse::<RuleSetVersion>()
        .ok()
        .and_then(|v| state.catalog.get(id, &v).map(|rs| rs.doc.version))
        .ok_or_else(|| ApiError::UnknownResource("no such rule-set version".into()).into())
}

/// What a refused sign-off or activation says on the page, with its status; anything else
/// is an error page.
async fn refused(
    state: &AppState,
    viewer: &Viewer,
    what: &str,
    e: GovernanceError,
) -> Result<HttpResponse, UiError> {
    let (status, why) = match &e {
        GovernanceError::Conflict(m) => (StatusCode::CONFLICT, m.clone()),
        GovernanceError::Invalid(m) => (StatusCode::BAD_REQUEST, m.clone()),
        GovernanceError::Forbidden => (StatusCode::FORBIDDEN, "not your clinic".to_owned()),
        _ => return Err(ApiError::from(e).into()),
    };
    let text = format!("Your {what} was not recorded: {why}.");
    render(state, viewer, Some((false, text)), status).await
}

/// The sign-off form of the impact page: approve or reject the version for the signer's
/// clinic, naming the report they read by its hash.
#[post("/ui/guidelines/{id}/{version}/sign-off")]
#[tracing::instrument(name = "ui guideline sign-off", skip_all)]
pub async fn sign_off(
    req: HttpRequest,
    signed_in: Page<GuidelineApprove>,
    path: web::Path<(String, String)>,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, UiError> {
    let viewer = signed_in.viewer;
    let form = checked_form(&req, payload, &state, &viewer).await?;
    let (id, v) = path.into_inner();
    let v = version(&state, &id, &v)?;
    let body = SignOffRequest {
        decision: form.get("decision").cloned().unwrap_or_default(),
        reason: form
            .get("reason")
            .map(|r| r.trim().to_owned())
            .filter(|r| !r.is_empty()),
        impact: form.get("impact").cloned().unwrap_or_default(),
    };
    match stride_app::governance::sign_off(
        &state.impact_jobs,
        &crate::audit::actor(&req, &viewer.caller),
        &id,
        v,
        &body,
        stride_app::governance::SIGN_OFF_WAIT,
    )
    .await
    {
        Ok(_) => Ok(see_other("/ui/guidelines?done=sign-off")),
        Err(e) => refused(&state, &viewer, "sign-off", e).await,
    }
}

/// Put an approved version in force for the signer's clinic.
#[post("/ui/guidelines/{id}/{version}/activate")]
#[tracing::instrument(name = "ui guideline activation", skip_all)]
pub async fn activate(
    req: HttpRequest,
    signed_in: Page<GuidelineApprove>,
    path: web::Path<(String, String)>,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, UiError> {
    let viewer = signed_in.viewer;
    // The form carries nothing but its CSRF token: the clinic is the signer's own.
    checked_form(&req, payload, &state, &viewer).await?;
    let (id, v) = path.into_inner();
    let v = version(&state, &id, &v)?;
    let Some(tenant) = viewer.caller.tenant_scope().cloned() else {
        return Err(ApiError::BadRequest(
            "activation is for one clinic: sign in as a member of its staff".into(),
        )
        .into());
    };
    match stride_app::governance::activate(
        state.store.as_ref(),
        &state.catalog,
        &state.pins,
        &crate::audit::actor(&req, &viewer.caller),
        &id,
        v,
        &tenant,
    )
    .await
    {
        Ok(_) => Ok(see_other("/ui/guidelines?done=activate")),
        Err(e) => refused(&state, &viewer, "activation", e).await,
    }
}
