//! The decision log at the edge: who and where an entry's request came from (the Actor's
//! stamp), refused requests on their way to the log, and entries rendered for export (NDJSON,
//! FHIR AuditEvents, streamed). The use cases of stride-app write the entries; the store chains
//! and keeps them.

use actix_web::web::Bytes;
use actix_web::{HttpMessage, HttpRequest, HttpResponse};
use futures_util::StreamExt;
use serde_json::{json, Value as Json};
use stride_auth::Caller;
pub use stride_store::audit::Action;
use stride_store::PatientRef;
use stride_store::{AuditEntry, AuditQuery, NewAuditEntry};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use tokio::sync::mpsc;
use tracing_actix_web::RequestId;

use crate::state::AppState;

pub use stride_app::actor::{Actor, UNAUTHENTICATED};
pub use stride_app::now_us;

/// The request an audit entry belongs to: its trace id (OpenTelemetry's, else the request
/// id), route and method.
pub fn stamp(req: &HttpRequest) -> stride_app::actor::Stamp {
    stride_app::actor::Stamp {
        trace_id: trace_id().or_else(|| req.extensions().get::<RequestId>().map(|r| r.to_string())),
        route: req.match_pattern().unwrap_or_default(),
        method: req.method().as_str().to_owned(),
    }
}

/// `caller` making this request, as the use cases take it.
pub fn actor(req: &HttpRequest, caller: &Caller) -> Actor {
    Actor::new(caller.clone(), stamp(req))
}

/// The OpenTelemetry trace id of the current request, when traces are being recorded.
fn trace_id() -> Option<String> {
    use opentelemetry::trace::TraceContextExt;
    use tracing_opentelemetry::OpenTelemetrySpanExt;
    let cx = tracing::Span::current().context();
    let sc = cx.span().span_context().clone();
    sc.is_valid().then(|| sc.trace_id().to_string())
}

/// One refused request, on its way to the refusal log.
#[derive(Debug)]
pub struct Refusal {
    reason: String,
    route: String,
    method: String,
    /// The connecting address (the nearest proxy's when behind one).
    client: String,
    trace_id: Option<String>,
    at_us: i64,
}

/// Record a refused request, off the request path: a flood of bad tokens must not queue
/// real hook calls behind its audit writes, nor write a row each (50 a second from noise is
/// four million rows a day). The first refusal of a reason, client and route is written at
/// once; the rest of that interval's become one entry with their count, first and last time. Beyond
/// the queue or the groups an interval holds, a refusal is counted in the metrics instead
/// (`stride_audit_refusals_dropped_total`), never silently lost.
pub fn refused(req: &HttpRequest, state: &AppState, reason: &str) {
    let r = Refusal {
        reason: reason.to_owned(),
        route: req.match_pattern().unwrap_or_else(|| "unmatched".into()),
        method: req.method().as_str().to_owned(),
        client: req
            .peer_addr()
            .map(|a| a.ip().to_string())
            .unwrap_or_default(),
        trace_id: trace_id().or_else(|| req.extensions().get::<RequestId>().map(|r| r.to_string())),
        at_us: now_us(),
    };
    if state.refusals.try_send(r).is_err() {
        state.metrics.audit_refusals_dropped.inc();
    }
}

/// Groups written per interval at most; refusals of further groups are counted as dropped.
pub const REFUSAL_GROUPS: usize = 1024;
/// Group entries are written one by one, at most this many a second.
pub const REFUSALS_PER_SECOND: u64 = 50;

#[derive(Debug)]
struct Group {
    count: u64,
    first_us: i64,
    last_us: i64,
    trace_id: Option<String>,
}

pub fn refusal_writer(
    store: std::sync::Arc<dyn stride_store::Store>,
    every: std::time::Duration,
    dropped: prometheus::IntCounter,
) -> tokio::sync::mpsc::Sender<Refusal> {
    use std::collections::HashMap;
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Refusal>(4096);
    tokio::spawn(async move {
        // Groups of this interval; `count` is what is not written yet (the first refusal of a
        // group is written at once, so an attack shows in the log as it starts).
        let mut groups: HashMap<(String, String, String, String), Group> = HashMap::new();
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let open = tokio::select! {
                r = rx.recv() => match r {
                    Some(r) => {
                        let key = (r.reason, r.client, r.route, r.method);
                        if let Some(g) = groups.get_mut(&key) {
                            if g.count == 0 {
                                g.first_us = r.at_us;
                            }
                            g.count += 1;
                            g.last_us = r.at_us;
                        } else if groups.len() < REFUSAL_GROUPS {
                            let first = Group { count: 1, first_us: r.at_us, last_us: r.at_us, trace_id: r.trace_id };
                            write_group(store.as_ref(), &key, &first).await;
                            groups.insert(key, Group { count: 0, trace_id: None, ..first });
                        } else {
                            dropped.inc();
                        }
                        continue;
                    }
                    None => false,
                },
                _ = tick.tick() => true,
            };
            for (key, g) in groups.drain().filter(|(_, g)| g.count > 0) {
                write_group(store.as_ref(), &key, &g).await;
            }
            if !open {
                break;
            }
        }
    });
    tx
}

/// One audit entry for `g.count` refusals of one reason, client, route and method.
async fn write_group(
    store: &dyn stride_store::Store,
    (reason, client, route, method): &(String, String, String, String),
    g: &Group,
) {
    let e = NewAuditEntry {
        id: stride_store::new_row_id(),
        recorded_us: now_us(),
        action: Action::Refused,
        outcome: "refused".into(),
        trace_id: g.trace_id.clone(),
        details: json!({
            "reason": reason, "route": route, "method": method, "client": client,
            "count": g.count, "first": rfc3339_us(g.first_us), "last": rfc3339_us(g.last_us),
        }),
        ..NewAuditEntry::of(stride_app::actor::unauthenticated())
    };
    if let Err(err) = store.append_audit(&e).await {
        tracing::warn!(error = %err, refused = g.count, "could not record refused requests");
    }
    tokio::time::sleep(std::time::Duration::from_millis(1000 / REFUSALS_PER_SECOND)).await;
}

fn rfc3339_us(us: i64) -> String {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(us) * 1000)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_default()
}

pub fn recorded(a: &AuditEntry) -> String {
    rfc3339_us(a.entry.recorded_us)
}

/// The entry as auditors read it (NDJSON export, `GET /audit/{id}`).
pub fn to_json(a: &AuditEntry) -> Json {
    let e = &a.entry;
    let mut v = json!({
        "id": e.id, "tenant": e.tenant, "seq": a.seq, "recorded": recorded(a), "action": e.action, "outcome": e.outcome,
        "decisionIds": e.decision_ids, "cardUuids": e.card_uuids, "details": e.details, "prevHash": a.prev_hash, "hash": a.hash,
    });
    let optional = [
        ("callerIssuer", e.caller_issuer.clone()),
        ("callerSubject", e.caller_subject.clone()),
        ("hook", e.hook.clone()),
        ("hookInstance", e.hook_instance.clone()),
        ("serviceId", e.service_id.clone()),
        (
            "patient",
            e.patient_ref
                .as_ref()
                .map(PatientRef::as_str)
                .map(str::to_owned),
        ),
        ("asOf", e.as_of.clone()),
        ("inputDigest", a.input_digest.clone()),
        ("ruleSetId", e.rule_set_id.clone()),
        ("ruleSetVersion", e.rule_set_version.clone()),
        ("ruleSetHash", e.rule_set_hash.clone()),
        ("carePlanId", e.careplan_id.map(|u| u.to_string())),
        ("traceId", e.trace_id.clone()),
    ];
    for (k, val) in optional {
        if let Some(val) = val {
            v[k] = json!(val);
        }
    }
    if let Some(f) = &e.facts {
        v["facts"] = f.json();
    }
    v
}

pub fn to_event(a: &AuditEntry) -> Result<Json, stride_fhir::careplan::RenderError> {
    let e = &a.entry;
    let id = e.id.to_string();
    let recorded = recorded(a);
    let careplan = e.careplan_id.map(|u| u.to_string());
    stride_fhir::audit_event::audit_event(&stride_fhir::audit_event::AuditView {
        id: &id,
        recorded: &recorded,
        action: e.action.as_str(),
        outcome: &e.outcome,
        caller_issuer: e.caller_issuer.as_deref(),
        caller_subject: e.caller_subject.as_deref(),
        patient_ref: e.patient_ref.as_ref().map(PatientRef::as_str),
        careplan_id: careplan.as_deref(),
        hook: e.hook.as_deref(),
        hook_instance: e.hook_instance.as_deref(),
        rule_set: e
            .rule_set_id
            .as_ref()
            .map(|i| format!("{i}|{}", e.rule_set_version.as_deref().unwrap_or(""))),
        decision_ids: &e.decision_ids,
        input_digest: a.input_digest.as_deref(),
        hash: &a.hash,
        prev_hash: &a.prev_hash,
        seq: a.seq,
        tenant: e.tenant.as_str(),
    })
}

/// Stream the entries `query` selects as NDJSON or a FHIR Bundle of AuditEvents.
pub fn export(
    store: std::sync::Arc<dyn stride_store::Store>,
    query: AuditQuery,
    bundle: bool,
) -> HttpResponse {
    // Rows flow from the database to the client through a small channel: an export of any
    // size holds a few dozen entries in memory at a time.
    let (tx, rx) = mpsc::channel::<Result<Bytes, String>>(32);
    tokio::spawn(async move {
        let mut rows = store.audit_stream(&query, false);
        let mut first = true;
        if bundle
            && tx
                .send(Ok(Bytes::from_static(
                    br#"{"resourceType":"Bundle","type":"searchset""#,
                )))
                .await
                .is_err()
        {
            return;
        }
        while let Some(row) = rows.next().await {
            let chunk = match row {
                Ok(a) if bundle => match to_event(&a) {
                    Ok(ev) => {
                        let sep = if first { r#","entry":["# } else { "," };
                        format!("{sep}{}", json!({"resource": ev}))
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "audit entry could not be rendered");
                        // Abort the response: a well-formed but cut-short export would lie.
                        let _ = tx.send(Err("export interrupted".into())).await;
                        return;
                    }
                },
                Ok(a) => format!("{}\n", to_json(&a)),
                Err(e) => {
                    tracing::error!(error = %e, "audit export interrupted");
                    let _ = tx.send(Err("export interrupted".into())).await;
                    return;
                }
            };
            first = false;
            if tx.send(Ok(Bytes::from(chunk))).await.is_err() {
                return;
            }
        }
        if bundle {
            let end = if first { "}" } else { "]}" };
            let _ = tx.send(Ok(Bytes::from(end))).await;
        }
    });
    let body = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|c| (c.map_err(actix_web::error::ErrorInternalServerError), rx))
    });
    let content_type = if bundle {
        "application/fhir+json"
    } else {
        "application/x-ndjson"
    };
    HttpResponse::Ok()
        .content_type(content_type)
        .streaming(body)
}
