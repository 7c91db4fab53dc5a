//! The impact of a candidate version, for compliance staff (`audit.read`): the same report as
//! `stride rules impact`, over the viewer's tenant, each changed decision linked to its audit
//! entry and to its two traces side by side.

use actix_web::http::StatusCode;
use actix_web::{get, web, HttpRequest, HttpResponse};
use serde::Deserialize;
use serde_json::json;
use stride_guideline::decision::{TraceEntry, Verdict};

use super::{esc, number, page, Page, UiError};
use crate::audit;
use crate::auth::AuditRead;
use crate::error::ApiError;
use crate::state::AppState;
use stride_app::impact::Candidate;
use stride_app::impact_jobs::{self, Ask, Traces, View};

#[derive(Deserialize, Default)]
pub struct Form {
    candidate: Option<String>,
    since: Option<String>,
    /// An audit entry whose two traces to show side by side.
    entry: Option<String>,
    /// Compute the kept report again (decisions recorded since it was computed count then).
    again: Option<String>,
}

/// How long a view waits for a report it started before showing its progress, so that every
/// view answers within a second (with 0.8 s, the first view of a large log took 1.0 s): a
/// clinic's log of a couple of thousand decisions is done within it (4 600–5 500 decisions a
/// second on this machine, docs/benchmarks.md); a larger one shows its progress and is ready
/// on a later view.
const WAIT: std::time::Duration = std::time::Duration::from_millis(500);

/// The page's query for `candidate` (and `since`, and an `entry` whose traces to show).
fn query(candidate: &Candidate, since: Option<&str>, entry: Option<&str>) -> String {
    let mut s = url::form_urlencoded::Serializer::new(String::new());
    s.append_pair("candidate", &candidate.to_string());
    if let Some(since) = since {
        s.append_pair("since", since);
    }
    if let Some(entry) = entry {
        s.append_pair("entry", entry);
    }
    s.finish()
}

fn nonempty(v: &Option<String>) -> Option<&str> {
    v.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

#[get("/ui/rules/impact")]
#[tracing::instrument(name = "ui rules impact", skip_all)]
pub async fn impact(
    req: HttpRequest,
    signed_in: Page<AuditRead>,
    f: web::Query<Form>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, UiError> {
    let viewer = signed_in.viewer;
    let candidate = nonempty(&f.candidate)
        .map(|c| {
            c.parse::<Candidate>()
                .map_err(|e| ApiError::BadRequest(format!("candidate: {e}")))
        })
        .transpose()?;
    let since_us = match nonempty(&f.since) {
        Some(d) => Some(
            time::Date::parse(d, &time::format_description::well_known::Iso8601::DATE)
                .map_err(|_| ApiError::BadRequest("since: a day such as 2026-11-27".into()))?
                .midnight()
                .assume_utc()
                .unix_timestamp()
                * 1_000_000,
        ),
        None => None,
    };

    let mut html = String::from(
        "<h1>Impact of a rule-set version</h1><p>Every stored decision of the guideline, decided again by the \
         candidate (or read from its shadow record), compared with what was decided.</p>\
         <form method=\"get\" action=\"/ui/rules/impact\" class=\"filters\"><label for=\"candidate\">Candidate</label>\
         <select id=\"candidate\" name=\"candidate\">",
    );
    for rs in state.catalog.iter() {
        let value = format!("{}={}", rs.doc.id, rs.doc.version);
        let selected = if nonempty(&f.candidate) == Some(value.as_str()) {
            " selected"
        } else {
            ""
        };
        html.push_str(&format!(
            "<option value=\"{}\"{selected}>{} {} ({:?})</option>",
            esc(&value),
            esc(&rs.doc.id),
            rs.doc.version,
            rs.doc.status
        ));
    }
    html.push_str(&format!(
        "</select><label for=\"since\">Since</label><input type=\"date\" id=\"since\" name=\"since\" value=\"{}\">\
         <button type=\"submit\">Show the impact</button></form>",
        esc(nonempty(&f.since).unwrap_or(""))
    ));

    let Some(candidate) = candidate else {
        return Ok(page(StatusCode::OK, Some(&viewer), "Impact", &html));
    };
    if state
        .catalog
        .get(&candidate.guideline, &candidate.version)
        .is_none()
    {
        return Err(
            ApiError::BadRequest(format!("{candidate} is not a loaded rule-set version")).into(),
        );
    }
    let actor = audit::actor(&req, &viewer.caller);
    let ask = Ask {
        candidate: candidate.clone(),
        tenant: viewer.caller.tenant_scope().cloned(),
        since_us,
        again: nonempty(&f.again).is_some(),
    };
    let asked = json!({"candidate": candidate.to_string(), "since": f.since, "entry": f.entry});
    let (summary, listed, computed) = match impact_jobs::read(
        &state.impact_jobs,
        &actor,
        &ask,
        asked,
        WAIT,
    )
    .await
    .map_err(ApiError::from)?
    {
        View::Ready(kept) => (kept.summary, kept.changes, kept.computed_at),
        View::Running { read, since } => {
            html.push_str(&format!(
                    "<h2>Summary</h2><p role=\"status\">The report is being computed: {read} decisions read so far \
                     (started {}). <a href=\"/ui/rules/impact?{}\">Show it when done</a></p>",
                    esc(&super::clinic_time(&state, ask.tenant.as_ref(), since)),
                    esc(&query(&candidate, nonempty(&f.since), None)),
                ));
            return Ok(page(StatusCode::ACCEPTED, Some(&viewer), "Impact", &html));
        }
        View::Failed(e) => {
            return Err(ApiError::Internal(format!("the impact report failed: {e}")).into())
        }
    };

    let whose = if ask.signable() {
        "The report kept for your clinic"
    } else {
        "This report"
    };
    html.push_str(&format!(
        "<p class=\"note\">{whose}, computed {}: decisions recorded since are not in it. \
         <a href=\"/ui/rules/impact?{}&amp;again=1\">Compute it again</a></p>",
        esc(&super::clinic_time(&state, ask.tenant.as_ref(), computed)),
        esc(&query(&candidate, nonempty(&f.since), None)),
    ));
    html.push_str(&format!(
        "<h2>Summary</h2><p role=\"status\">{}: {} decisions read, <strong>{} would change</strong>, {} unchanged \
         ({} from shadow records{}).</p><p>Impact hash (what a sign-off names as the report its signer saw): \
         <code class=\"hash\">{}</code></p>",
        esc(&summary.candidate),
        summary.decisions,
        summary.changed,
        summary.unchanged,
        summary.from_shadow,
        if summary.unreadable > 0 {
            format!(", {} could not be read", summary.unreadable)
        } else {
            String::new()
        },
        esc(&summary.impact_hash),
    ));
    // A member of the committee signs off here, on the report just read: its hash is what
    // the sign-off names. Only a clinic's whole log is a report one may sign off on.
    if let (true, Some(tenant), true) = (
        viewer.caller.has_scope("guideline.approve"),
        ask.tenant.as_ref(),
        ask.signable(),
    ) {
        let (id, version) = (&candidate.guideline, candidate.version.to_string());
        html.push_str(&format!(
            "<form method=\"post\" action=\"/ui/guidelines/{}/{}/sign-off\" class=\"sign-off\">{}\
             <input type=\"hidden\" name=\"impact\" value=\"{}\">\
             <fieldset><legend>Your sign-off on {} {} for {}, having read this report</legend>\
             <input type=\"radio\" id=\"so-approve\" name=\"decision\" value=\"approve\" required>\
             <label for=\"so-approve\">Approve</label>\
             <input type=\"radio\" id=\"so-reject\" name=\"decision\" value=\"reject\">\
             <label for=\"so-reject\">Reject</label></fieldset>\
             <label for=\"so-reason\">Reason (required to reject)</label>\
             <textarea id=\"so-reason\" name=\"reason\" rows=\"2\"></textarea>\
             <button type=\"submit\">Record my sign-off</button></form>",
            esc(id),
            esc(&version),
            viewer.csrf_field(),
            esc(&summary.impact_hash),
            esc(id),
            esc(&version),
            esc(tenant.as_str()),
        ));
    }
    if !summary.transitions.is_empty() {
        html.push_str("<table><caption>Changes by transition</caption><thead><tr><th scope=\"col\">Transition</th><th scope=\"col\">Decisions</th></tr></thead><tbody>");
        for (t, n) in &summary.transitions {
            html.push_str(&format!("<tr><td>{}</td><td>{n}</td></tr>", esc(t)));
        }
        html.push_str("</tbody></table>");
    }
    if !listed.is_empty() {
        let more = if summary.changed as usize > listed.len() {
            format!(
                " (the first {}; `stride rules impact` lists all)",
                listed.len()
            )
        } else {
            String::new()
        };
        html.push_str(&format!(
            "<h2>Changed decisions{}</h2><div class=\"scroll\"><table class=\"audit\"><caption>Each decision that would change</caption><thead><tr>\
             <th scope=\"col\">Patient</th><th scope=\"col\">Decided by</th><th scope=\"col\">Before</th><th scope=\"col\">With the candidate</th>\
             <th scope=\"col\">Audit entry</th><th scope=\"col\">Traces</th></tr></thead><tbody>",
            esc(&more)
        ));
        let q = |entry: &str| query(&candidate, nonempty(&f.since), Some(entry));
        for c in &listed {
            html.push_str(&format!(
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td><a href=\"/ui/audit/{}\">Open<span class=\"visually-hidden\"> entry</span></a></td>\
                 <td><a href=\"/ui/rules/impact?{}#traces\">Side by side</a></td></tr>",
                esc(c.patient.as_deref().unwrap_or("—")),
                esc(&c.version),
                esc(&c.before.join(", ")),
                esc(&c.after.join(", ")),
                esc(&c.audit_entry),
                esc(&q(&c.audit_entry)),
            ));
        }
        html.push_str("</tbody></table></div>");
    }
    if let Some(entry) = nonempty(&f.entry) {
        let traces = impact_jobs::traces(&state.impact_jobs, &actor, entry, &candidate)
            .await
            .map_err(ApiError::from)?;
        side_by_side(&mut html, entry, &candidate, &traces);
    }
    Ok(page(StatusCode::OK, Some(&viewer), "Impact", &html))
}

/// The decision as recorded (decided again with its own version) and the candidate's, check by
/// check.
fn side_by_side(html: &mut String, entry: &str, candidate: &Candidate, traces: &Traces) {
    let e = &traces.entry.entry;
    let (before, after) = (&traces.recorded, &traces.candidate);
    html.push_str(&format!(
        "<h2 id=\"traces\">Traces side by side</h2><p>Entry <a href=\"/ui/audit/{}\">{}</a>: {} {} decided {}; {} decides {}.</p>",
        esc(entry),
        esc(entry),
        esc(e.rule_set_id.as_deref().unwrap_or_default()),
        esc(e.rule_set_version.as_deref().unwrap_or_default()),
        esc(&before.decision_ids().join(", ")),
        esc(&candidate.to_string()),
        esc(&after.decision_ids().join(", ")),
    ));
    html.push_str(
        "<div class=\"scroll\"><table class=\"side-by-side\"><caption>Each check, as recorded and with the candidate</caption><thead><tr>\
         <th scope=\"col\">Rule</th><th scope=\"col\">Check</th><th scope=\"col\">Fact</th>\
         <th scope=\"col\">Recorded: value</th><th scope=\"col\">Recorded: verdict</th>\
         <th scope=\"col\">Candidate: value</th><th scope=\"col\">Candidate: verdict</th></tr></thead><tbody>",
    );
    let key = |t: &TraceEntry| (t.rule.clone(), t.check.clone(), t.fact.clone());
    let mut rows: Vec<(&TraceEntry, Option<&TraceEntry>)> = Vec::new();
    for t in &after.trace {
        rows.push((t, before.trace.iter().find(|b| key(b) == key(t))));
    }
    let cell = |t: Option<&TraceEntry>| match t {
        Some(t) => (
            format!(
                "{} {}",
                number(t.value),
                esc(t.unit.as_deref().unwrap_or(""))
            ),
            verdict(t.verdict).to_owned(),
        ),
        None => ("—".to_owned(), "not in this version".to_owned()),
    };
    for (t, b) in rows {
        let (bv, bverdict) = cell(b);
        let (av, averdict) = cell(Some(t));
        let changed = if bverdict != averdict {
            " class=\"changed\""
        } else {
            ""
        };
        html.push_str(&format!(
            "<tr{changed}><td>{}</td><td>{}</td><td>{}</td><td>{bv}</td><td>{bverdict}</td><td>{av}</td><td>{averdict}</td></tr>",
            esc(&t.rule),
            esc(t.check.as_deref().unwrap_or("")),
            esc(&t.fact),
        ));
    }
    html.push_str("</tbody></table></div>");
}

fn verdict(v: Verdict) -> &'static str {
    match v {
        Verdict::Met => "met",
        Verdict::NotMet => "not met",
        Verdict::Unknown => "unknown",
    }
}
