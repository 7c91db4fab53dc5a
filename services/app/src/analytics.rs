//! Card effectiveness and the decision-support feedback export: are clinicians following the
//! cards, which do they override and why. Counted by the store per rule-set version, card,
//! tenant and month (indexed queries, no re-evaluation), shown only within the reader's clinic
//! (all clinics for an all-tenants issuer), and every read is an audit entry. The feedback
//! export carries what 45 CFR 170.315(b)(11)(ii)(C) names: the intervention, the action taken,
//! the feedback, the user, the date and the location.

use std::sync::Arc;

use futures_util::{Stream, StreamExt};
use serde_json::{json, Value as Json};
use stride_auth::Caller;
use stride_store::audit::Action;
use stride_store::{CardOutcome, CardOutcomeQuery, FeedbackRow, Store, StoreError};
use time::{Date, OffsetDateTime, Time};

use crate::actor::Actor;
use crate::catalog::Catalog;

/// What the reader asked for: sent from / to (days, inclusive, UTC), a guideline, a version.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub from: Option<Date>,
    pub to: Option<Date>,
    pub guideline: Option<String>,
    pub version: Option<String>,
}

impl Filter {
    /// The filter a reader typed: days such as `2026-12-01` (blank is none), a guideline and
    /// a version (blank is any). What is wrong with it, for the reader, when it is not one.
    pub fn parse(
        from: Option<&str>,
        to: Option<&str>,
        guideline: Option<&str>,
        version: Option<&str>,
    ) -> Result<Filter, String> {
        fn text(v: Option<&str>) -> Option<&str> {
            v.map(str::trim).filter(|s| !s.is_empty())
        }
        let day = |field: &str, v: Option<&str>| match text(v) {
            None => Ok(None),
            Some(s) => Date::parse(s, &time::format_description::well_known::Iso8601::DATE)
                .map(Some)
                .map_err(|_| format!("{field}: a day such as 2026-12-01")),
        };
        let f = Filter {
            from: day("from", from)?,
            to: day("to", to)?,
            guideline: text(guideline).map(str::to_owned),
            version: text(version).map(str::to_owned),
        };
        if let (Some(a), Some(b)) = (f.from, f.to) {
            if a > b {
                return Err("from: after to".into());
            }
        }
        Ok(f)
    }

    /// The store query within what `caller` may see.
    pub fn query(&self, caller: &Caller) -> CardOutcomeQuery {
        CardOutcomeQuery {
            tenant: caller.tenant_scope().cloned(),
            from: self.from.map(|d| d.with_time(Time::MIDNIGHT).assume_utc()),
            // The day after `to`, when there is one (9999-12-31 has none: no upper bound).
            to: self
                .to
                .and_then(Date::next_day)
                .map(|d| d.with_time(Time::MIDNIGHT).assume_utc()),
            rule_set_id: self.guideline.clone(),
            rule_set_version: self.version.clone(),
        }
    }

    fn describe(&self) -> Json {
        json!({"from": self.from.map(|d| d.to_string()), "to": self.to.map(|d| d.to_string()),
               "guideline": self.guideline, "version": self.version})
    }
}

/// Card effectiveness within what `caller` may see; `audit` (an analytics-read entry by the
/// caller) is written first: figures nobody can trace are not shown.
pub async fn cards(
    store: &dyn Store,
    actor: &Actor,
    filter: &Filter,
) -> Result<Vec<CardOutcome>, StoreError> {
    let caller = &actor.caller;
    let mut audit = actor.entry(Action::AnalyticsRead, "success");
    audit.details["read"] = json!("card effectiveness");
    audit.details["filter"] = filter.describe();
    store.append_audit(&audit).await?;
    store.card_outcomes(&filter.query(caller)).await
}

/// Every feedback on the cards `filter` selects, within what `caller` may see (audited before
/// the first line): the export's lines as they are read from the store, CSV with its header
/// line first. A task reads the store and hands the lines over, so a year of a large clinic's
/// feedback is never held whole in memory; the lines stop when the reader goes away.
pub async fn feedback(
    store: Arc<dyn Store>,
    actor: &Actor,
    filter: &Filter,
    csv: bool,
) -> Result<impl Stream<Item = Result<String, StoreError>> + Send + 'static, StoreError> {
    let caller = &actor.caller;
    let mut audit = actor.entry(Action::AnalyticsRead, "success");
    audit.details["read"] = json!("feedback export");
    audit.details["filter"] = filter.describe();
    store.append_audit(&audit).await?;
    let query = filter.query(caller);
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    tokio::spawn(async move {
        if csv && tx.send(Ok(FEEDBACK_CSV_HEADER.to_owned())).await.is_err() {
            return;
        }
        let mut rows = store.feedback_stream(&query);
        while let Some(row) = rows.next().await {
            let line = row.map(|f| {
                if csv {
                    feedback_csv_line(&f)
                } else {
                    format!("{}\n", feedback_json(&f))
                }
            });
            if tx.send(line).await.is_err() {
                break;
            }
        }
    });
    Ok(futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|line| (line, rx))
    }))
}

/// Overridden / shown, to three places; none when nothing was shown.
pub fn override_rate(o: &CardOutcome) -> Option<f64> {
    (o.shown > 0).then(|| (o.overridden as f64 / o.shown as f64 * 1000.0).round() / 1000.0)
}

fn card_json(o: &CardOutcome) -> Json {
    json!({
        "guideline": o.rule_set_id, "version": o.rule_set_version, "decisionId": o.decision_id,
        "tenant": o.tenant, "period": o.period, "shown": o.shown, "accepted": o.accepted,
        "overridden": o.overridden, "withoutFeedback": o.without_feedback,
        "overrideRate": override_rate(o),
        "overriddenByReason": o.reasons.iter().map(|(r, n)| (r.clone(), json!(n))).collect::<serde_json::Map<_, _>>(),
    })
}

/// One JSON object per line.
pub fn cards_ndjson(rows: &[CardOutcome]) -> String {
    rows.iter().map(|o| format!("{}\n", card_json(o))).collect()
}

/// A CSV field, quoted where it must be (RFC 4180). Text the EHR sent (a comment, a reason)
/// that a spreadsheet would run as a formula (`=`, `+`, `-`, `@`, tab, CR) starts with `'`.
fn field(s: &str) -> String {
    let s = if s.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{s}")
    } else {
        s.to_owned()
    };
    let s = s.as_str();
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_owned()
    }
}

pub fn cards_csv(rows: &[CardOutcome]) -> String {
    let mut out = String::from(
        "guideline,version,decision_id,tenant,period,shown,accepted,overridden,without_feedback,override_rate,overridden_by_reason\r\n",
    );
    for o in rows {
        let reasons: Vec<String> = o.reasons.iter().map(|(r, n)| format!("{r}={n}")).collect();
        let cells = [
            field(&o.rule_set_id),
            field(&o.rule_set_version),
            field(&o.decision_id),
            field(o.tenant.as_str()),
            field(&o.period),
            o.shown.to_string(),
            o.accepted.to_string(),
            o.overridden.to_string(),
            o.without_feedback.to_string(),
            override_rate(o).map(|r| r.to_string()).unwrap_or_default(),
            field(&reasons.join(";")),
        ];
        out.push_str(&cells.join(","));
        out.push_str("\r\n");
    }
    out
}

/// A Bundle (collection) of MeasureReports, one per card and month.
pub fn cards_bundle(rows: &[CardOutcome], catalog: &Catalog) -> Json {
    let entries: Vec<Json> = rows
        .iter()
        .map(|o| {
            let rs = o
                .rule_set_version
                .parse()
                .ok()
                .and_then(|v| catalog.get(&o.rule_set_id, &v));
            let (url, system) = rs.map_or((o.rule_set_id.as_str(), ""), |rs| {
                (rs.doc.url.as_str(), rs.doc.decision_system.as_str())
            });
            let report = stride_fhir::measure::measure_report(&stride_fhir::measure::CardFigures {
                rule_set_url: url,
                rule_set_version: &o.rule_set_version,
                decision_system: system,
                decision_id: &o.decision_id,
                tenant: o.tenant.as_str(),
                period: &o.period,
                shown: o.shown,
                accepted: o.accepted,
                overridden: o.overridden,
                without_feedback: o.without_feedback,
                reasons: &o.reasons,
                override_system: crate::cards::OVERRIDE_SYSTEM,
            });
            json!({"fullUrl": format!("urn:uuid:{}", uuid::Uuid::new_v4()), "resource": report})
        })
        .collect();
    json!({"resourceType": "Bundle", "type": "collection", "timestamp": now(), "entry": entries})
}

fn now() -> String {
    OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// One feedback as the criterion's export names it.
fn feedback_json(f: &FeedbackRow) -> Json {
    let reason = &f.details["overrideReason"]["reason"];
    json!({
        "intervention": {"guideline": f.rule_set_id, "version": f.rule_set_version,
                         "decisionId": f.decision_id, "card": f.card_uuid, "service": f.service_id},
        "action": f.outcome,
        "acceptedSuggestions": f.details.get("acceptedSuggestions").cloned().unwrap_or(json!([])),
        "feedback": {"reason": reason.get("code"), "reasonDisplay": reason.get("display"),
                     "comment": f.details["overrideReason"].get("userComment")},
        "user": f.user,
        "date": f.outcome_timestamp.format(&time::format_description::well_known::Rfc3339).unwrap_or_default(),
        "location": {"tenant": f.tenant, "encounter": f.encounter},
    })
}

const FEEDBACK_CSV_HEADER: &str =
    "guideline,version,decision_id,card,service,action,reason,comment,user,date,tenant,encounter\r\n";

/// One feedback as a CSV line (the columns of `FEEDBACK_CSV_HEADER`).
pub fn feedback_csv_line(f: &FeedbackRow) -> String {
    let j = feedback_json(f);
    let s = |v: &Json| field(v.as_str().unwrap_or_default());
    let cells = [
        s(&j["intervention"]["guideline"]),
        s(&j["intervention"]["version"]),
        s(&j["intervention"]["decisionId"]),
        s(&j["intervention"]["card"]),
        s(&j["intervention"]["service"]),
        s(&j["action"]),
        s(&j["feedback"]["reason"]),
        s(&j["feedback"]["comment"]),
        s(&j["user"]),
        s(&j["date"]),
        s(&j["location"]["tenant"]),
        s(&j["location"]["encounter"]),
    ];
    format!("{}\r\n", cells.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_fields_are_quoted_where_they_must_be() {
        assert_eq!(field("plain"), "plain");
        assert_eq!(field("a,b"), "\"a,b\"");
        assert_eq!(field("say \"no\""), "\"say \"\"no\"\"\"");
        assert_eq!(field("=HYPERLINK(\"x\")"), "\"'=HYPERLINK(\"\"x\"\")\"");
        assert_eq!(field("@SUM(A1)"), "'@SUM(A1)");
    }
}
