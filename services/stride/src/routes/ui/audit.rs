//! The decision-log browser for compliance staff (`audit.read`): search and filter, one entry
//! with its chain status and replay, export of what the filters select.

use actix_web::http::{header, StatusCode};
use actix_web::{get, web, HttpRequest, HttpResponse};
use futures_util::StreamExt;
use serde::Deserialize;
use serde_json::json;
use stride_store::AuditQuery;
use stride_store::PatientRef;
use time::Date;

use super::{esc, page, Page, UiError};
use crate::audit;
use crate::auth::AuditRead;
use crate::error::ApiError;
use crate::state::AppState;
use stride_app::decision_log;

#[derive(Deserialize, Default)]
pub struct Filters {
    patient: Option<String>,
    caller: Option<String>,
    version: Option<String>,
    decision: Option<String>,
    action: Option<String>,
    from: Option<String>,
    to: Option<String>,
    format: Option<String>,
}

fn text(v: &Option<String>) -> Option<String> {
    v.as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

fn day_us(field: &str, v: &Option<String>, next: bool) -> Result<Option<i64>, ApiError> {
    let Some(s) = text(v) else { return Ok(None) };
    let d = Date::parse(&s, &time::format_description::well_known::Iso8601::DATE)
        .map_err(|_| ApiError::BadRequest(format!("{field}: a day such as 2026-11-27")))?;
    let d = if next { d.next_day().unwrap_or(d) } else { d };
    Ok(Some(
        (d.midnight().assume_utc().unix_timestamp_nanos() / 1000) as i64,
    ))
}

impl Filters {
    /// The query the filters ask; the tenant is the viewer's (`decision_log::search`).
    fn query(&self, limit: Option<i64>) -> Result<AuditQuery, ApiError> {
        Ok(AuditQuery {
            tenant: None,
            patient_ref: crate::params::patient(self.patient.as_deref())?,
            caller_subject: text(&self.caller),
            rule_set_version: text(&self.version),
            decision_id: text(&self.decision),
            since_us: day_us("from", &self.from, false)?,
            // `to` is inclusive: up to the end of that day.
            until_us: day_us("to", &self.to, true)?.map(|us| us - 1),
            limit,
            action: text(&self.action)
                .map(|a| {
                    crate::audit::Action::from_name(&a).ok_or_else(|| {
                        ApiError::BadRequest("action: one of the actions the list offers".into())
                    })
                })
                .transpose()?,
        })
    }

    /// The filters as a query string (for the export link).
    fn encoded(&self) -> String {
        let mut q = url::form_urlencoded::Serializer::new(String::new());
        for (k, v) in [
            ("patient", &self.patient),
            ("caller", &self.caller),
            ("version", &self.version),
            ("decision", &self.decision),
            ("action", &self.action),
            ("from", &self.from),
            ("to", &self.to),
        ] {
            if let Some(v) = text(v) {
                q.append_pair(k, &v);
            }
        }
        q.finish()
    }
}

#[get("/ui/audit")]
#[tracing::instrument(name = "ui audit", skip_all)]
pub async fn search(
    req: HttpRequest,
    signed_in: Page<AuditRead>,
    f: web::Query<Filters>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, UiError> {
    let viewer = signed_in.viewer;
    let query = f.query(Some(100))?;
    let asked = json!({"caller": query.caller_subject, "ruleSetVersion": query.rule_set_version,
                       "decision": query.decision_id, "action": query.action, "from": f.from, "to": f.to});
    let actor = audit::actor(&req, &viewer.caller);
    let query = decision_log::search(
        state.store.as_ref(),
        &actor,
        query,
        Some("decision log"),
        asked,
    )
    .await
    .map_err(ApiError::from)?;

    let field = |id: &str, label: &str, v: &Option<String>, kind: &str| {
        format!(
            "<label for=\"{id}\">{label}</label><input type=\"{kind}\" id=\"{id}\" name=\"{id}\" value=\"{}\">",
            esc(v.as_deref().unwrap_or(""))
        )
    };
    let mut html = String::from(
        "<h1>Decision log</h1><form method=\"get\" action=\"/ui/audit\" class=\"filters\">",
    );
    html.push_str(&field("patient", "Patient", &f.patient, "text"));
    html.push_str(&field("caller", "Caller (subject)", &f.caller, "text"));
    html.push_str(&field("version", "Rule-set version", &f.version, "text"));
    html.push_str(&field("decision", "Decision id", &f.decision, "text"));
    html.push_str("<label for=\"action\">Action</label><select id=\"action\" name=\"action\"><option value=\"\">Any</option>");
    for a in crate::audit::Action::ALL
        .iter()
        .map(crate::audit::Action::as_str)
    {
        let sel = if f.action.as_deref() == Some(a) {
            " selected"
        } else {
            ""
        };
        html.push_str(&format!("<option value=\"{a}\"{sel}>{a}</option>"));
    }
    html.push_str("</select>");
    html.push_str(&field("from", "From", &f.from, "date"));
    html.push_str(&field("to", "To", &f.to, "date"));
    let q = f.encoded();
    html.push_str(&format!(
        "<button type=\"submit\">Search</button></form><p class=\"exports\">Export these entries: \
         <a href=\"/ui/audit/export?{q}\" download>NDJSON</a> · <a href=\"/ui/audit/export?{q}{}format=bundle\" download>FHIR Bundle of AuditEvents</a></p>",
        if q.is_empty() { "" } else { "&amp;" }
    ));

    let mut rows = decision_log::entries(state.store.as_ref(), &query);
    let mut table = String::new();
    let mut n = 0;
    while let Some(row) = rows.next().await {
        let a = row?;
        n += 1;
        let e = &a.entry;
        table.push_str(&format!(
            "<tr class=\"{}\"><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td><a href=\"/ui/audit/{}\">Open<span class=\"visually-hidden\"> entry {}</span></a></td></tr>",
            esc(&e.outcome),
            esc(&audit::recorded(&a)),
            esc(e.action.as_str()),
            esc(&e.outcome),
            esc(e.caller_subject.as_deref().unwrap_or("—")),
            esc(e.patient_ref.as_ref().map(PatientRef::as_str).unwrap_or("—")),
            esc(&e.decision_ids.join(", ")),
            e.id,
            a.seq,
        ));
    }
    if n == 0 {
        html.push_str("<p role=\"status\">No entries match.</p>");
    } else {
        html.push_str(&format!(
            "<p role=\"status\">{n} most recent matching entr{}.</p><div class=\"scroll\"><table class=\"audit\"><caption>Audit entries, newest first</caption><thead><tr>\
             <th scope=\"col\">Recorded</th><th scope=\"col\">Action</th><th scope=\"col\">Outcome</th><th scope=\"col\">Caller</th>\
             <th scope=\"col\">Patient</th><th scope=\"col\">Decisions</th><th scope=\"col\">Entry</th></tr></thead><tbody>{table}</tbody></table></div>",
            if n == 1 { "y" } else { "ies" }
        ));
    }
    Ok(page(StatusCode::OK, Some(&viewer), "Decision log", &html))
}

#[get("/ui/audit/export")]
#[tracing::instrument(name = "ui audit export", skip_all)]
pub async fn export(
    req: HttpRequest,
    signed_in: Page<AuditRead>,
    f: web::Query<Filters>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, UiError> {
    let viewer = signed_in.viewer;
    let bundle = f.format.as_deref() == Some("bundle");
    let query = f.query(None)?;
    let asked = json!({"caller": query.caller_subject, "ruleSetVersion": query.rule_set_version,
                       "decision": query.decision_id, "action": query.action, "from": f.from, "to": f.to,
                       "format": if bundle { "bundle" } else { "ndjson" }});
    let actor = audit::actor(&req, &viewer.caller);
    let query = decision_log::search(state.store.as_ref(), &actor, query, Some("export"), asked)
        .await
        .map_err(ApiError::from)?;
    let mut res = audit::export(state.store.clone(), query, bundle);
    let name = if bundle {
        "stride-audit.json"
    } else {
        "stride-audit.ndjson"
    };
    res.headers_mut().insert(
        header::CONTENT_DISPOSITION,
        header::HeaderValue::from_str(&format!("attachment; filename=\"{name}\""))
            .map_err(|e| ApiError::Internal(e.to_string()))?,
    );
    Ok(res)
}

#[get("/ui/audit/{id}")]
#[tracing::instrument(name = "ui audit entry", skip_all)]
pub async fn entry(
    req: HttpRequest,
    signed_in: Page<AuditRead>,
    path: web::Path<String>,
    q: web::Query<std::collections::HashMap<String, String>>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, UiError> {
    let viewer = signed_in.viewer;
    let actor = audit::actor(&req, &viewer.caller);
    // The entry itself is checked on every view (cheap); the whole chain of its tenant only when
    // asked for, since that reads every entry.
    let full_chain = q.get("chain").map(String::as_str) == Some("full");
    let decision_log::Viewed {
        entry: a,
        sealed: own,
        chain: check,
        replayed,
    } = decision_log::view(
        state.store.as_ref(),
        &state.catalog,
        &actor,
        &path,
        state.settings.audit_keys.as_ref().map(|k| &k.verify),
        full_chain,
    )
    .await
    .map_err(ApiError::from)?;

    let e = &a.entry;
    let mut html = format!("<h1>Audit entry {}</h1>", a.seq);
    let mut chain = match own {
        Ok(()) => "<p class=\"notice ok\" role=\"status\">Sealed: this entry's content matches its hash.</p>".to_owned(),
        Err(reason) => format!(
            "<p class=\"notice problem\" role=\"alert\">Not sealed: {}. This entry cannot be trusted as recorded.</p>",
            esc(reason)
        ),
    };
    chain.push_str(&match check.as_ref().map(|c| (c, &c.broken)) {
        None => format!(
            "<p><a href=\"/ui/audit/{}?chain=full\">Check the whole chain of this tenant</a> (reads every entry)</p>",
            a.entry.id
        ),
        Some((c, None)) => format!(
            "<p class=\"notice ok\" role=\"status\">Chain intact: all {} entries of this tenant link up, this one included.</p>",
            c.entries
        ),
        Some((_, Some(b))) if b.seq <= a.seq => format!(
            "<p class=\"notice problem\" role=\"alert\">Chain broken at entry {} ({}): this entry cannot be trusted as recorded.</p>",
            b.seq,
            esc(&b.reason)
        ),
        Some((_, Some(b))) => format!(
            "<p class=\"notice problem\" role=\"alert\">Chain broken later, at entry {} ({}); the links up to this entry hold.</p>",
            b.seq,
            esc(&b.reason)
        ),
    });
    html.push_str(&chain);
    let row = |k: &str, v: String| format!("<dt>{k}</dt><dd>{v}</dd>");
    let opt = |v: &Option<String>| esc(v.as_deref().unwrap_or("—"));
    html.push_str("<dl>");
    html.push_str(&row("Recorded", esc(&audit::recorded(&a))));
    html.push_str(&row("Action", esc(e.action.as_str())));
    html.push_str(&row("Outcome", esc(&e.outcome)));
    html.push_str(&row(
        "Caller",
        format!("{} ({})", opt(&e.caller_subject), opt(&e.caller_issuer)),
    ));
    html.push_str(&row("Tenant", esc(e.tenant.as_str())));
    html.push_str(&row(
        "Patient",
        esc(e
            .patient_ref
            .as_ref()
            .map(PatientRef::as_str)
            .unwrap_or("—")),
    ));
    html.push_str(&row(
        "Hook",
        format!("{} {}", opt(&e.hook), opt(&e.hook_instance)),
    ));
    html.push_str(&row(
        "Rule set",
        format!("{} {}", opt(&e.rule_set_id), opt(&e.rule_set_version)),
    ));
    html.push_str(&row("Decisions", esc(&e.decision_ids.join(", "))));
    html.push_str(&row("Cards", esc(&e.card_uuids.join(", "))));
    if let Some(c) = e.careplan_id {
        html.push_str(&row(
            "CarePlan",
            format!("<a href=\"/ui/careplans/{c}\">{c}</a>"),
        ));
    }
    html.push_str(&row("Trace id", opt(&e.trace_id)));
    html.push_str(&row("Sequence", a.seq.to_string()));
    html.push_str(&row("Hash", format!("<code>{}</code>", esc(&a.hash))));
    html.push_str(&row(
        "Previous hash",
        format!("<code>{}</code>", esc(&a.prev_hash)),
    ));
    html.push_str("</dl>");
    match replayed {
        Some(r) => {
            html.push_str(&format!(
                "<h2>Replay</h2><p class=\"notice {}\" role=\"status\">Re-evaluated with {} {}: {}</p>",
                if r.identical { "ok" } else { "problem" },
                esc(&r.rule_set_id),
                esc(&r.replayed_version),
                if r.identical {
                    "the same decision.".to_owned()
                } else {
                    format!(
                        "a different decision (only recorded: {}; only now: {}).",
                        esc(&r.only_recorded.join(", ")),
                        esc(&r.only_replayed.join(", "))
                    )
                }
            ));
        }
        None if e.facts.is_some() => html.push_str("<h2>Replay</h2><p>This decision cannot be replayed here: its rule-set version is not loaded.</p>"),
        None => {}
    }
    if !e.details.is_null() && e.details != json!({}) {
        html.push_str(&format!(
            "<h2>Details</h2><pre>{}</pre>",
            esc(&serde_json::to_string_pretty(&e.details).unwrap_or_default())
        ));
    }
    Ok(page(StatusCode::OK, Some(&viewer), "Audit entry", &html))
}
