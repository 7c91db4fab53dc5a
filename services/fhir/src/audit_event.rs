//! An audit entry as a FHIR R4 AuditEvent, for auditors' exports.

use fhir_sdk::r4b::resources::AuditEvent;
use serde_json::{json, Value as Json};

use crate::careplan::{checked, RenderError};

/// Everything the AuditEvent shows, already read from the store.
pub struct AuditView<'a> {
    pub id: &'a str,
    pub recorded: &'a str,
    pub action: &'a str,
    pub outcome: &'a str,
    pub caller_issuer: Option<&'a str>,
    pub caller_subject: Option<&'a str>,
    pub patient_ref: Option<&'a str>,
    pub careplan_id: Option<&'a str>,
    pub hook: Option<&'a str>,
    pub hook_instance: Option<&'a str>,
    pub rule_set: Option<String>,
    pub decision_ids: &'a [String],
    pub input_digest: Option<&'a str>,
    pub hash: &'a str,
    pub prev_hash: &'a str,
    pub seq: i64,
    pub tenant: &'a str,
}

pub const ACTION_SYSTEM: &str = "http://stride-cds.org/fhir/CodeSystem/audit-action";

/// R4 AuditEvent.action: C create, R read, U update, D delete, E execute. Reading a clinic's
/// figures is a read as reading its plans is; a replay executes the engine again.
fn event_action(action: &str) -> &'static str {
    match action {
        "careplan-read" | "careplan-search" | "audit-read" | "audit-verify" | "analytics-read" => {
            "R"
        }
        "careplan-review" => "U",
        _ => "E",
    }
}

pub fn audit_event(v: &AuditView<'_>) -> Result<Json, RenderError> {
    let action = event_action(v.action);
    // R4 AuditEvent.outcome: 0 success, 4 minor failure, 8 serious failure.
    let outcome = match v.outcome {
        "success" => "0",
        "refused" => "4",
        _ => "8",
    };
    let mut agent = json!({"requestor": true, "type": {"text": "caller"}});
    match (v.caller_issuer, v.caller_subject) {
        (Some(iss), Some(sub)) => {
            agent["who"] = json!({"identifier": {"system": iss, "value": sub}})
        }
        _ => agent["who"] = json!({"display": "unauthenticated caller"}),
    }
    let mut details = vec![
        json!({"type": "tenant", "valueString": v.tenant}),
        json!({"type": "chain-seq", "valueString": v.seq.to_string()}),
        json!({"type": "hash", "valueString": v.hash}),
        json!({"type": "prev-hash", "valueString": v.prev_hash}),
    ];
    if let Some(rs) = &v.rule_set {
        details.push(json!({"type": "rule-set", "valueString": rs}));
    }
    if !v.decision_ids.is_empty() {
        details.push(json!({"type": "decisions", "valueString": v.decision_ids.join(",")}));
    }
    if let Some(d) = v.input_digest {
        details.push(json!({"type": "input-sha256", "valueString": d}));
    }
    if let Some(h) = v.hook {
        details.push(json!({"type": "hook", "valueString": h}));
    }
    if let Some(h) = v.hook_instance {
        details.push(json!({"type": "hookInstance", "valueString": h}));
    }
    let mut entities = vec![
        json!({"type": {"code": "2", "system": "http://terminology.hl7.org/CodeSystem/audit-entity-type", "display": "System Object"}, "detail": details}),
    ];
    if let Some(p) = v.patient_ref {
        entities.push(json!({"what": {"reference": p}, "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-entity-type", "code": "1", "display": "Person"}}));
    }
    if let Some(c) = v.careplan_id {
        entities.push(json!({"what": {"reference": format!("CarePlan/{c}")}}));
    }
    let event = json!({
        "resourceType": "AuditEvent",
        "id": v.id,
        "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-event-type", "code": "rest", "display": "RESTful Operation"},
        "subtype": [{"system": ACTION_SYSTEM, "code": v.action}],
        "action": action,
        "recorded": v.recorded,
        "outcome": outcome,
        "agent": [agent],
        "source": {"observer": {"display": "Stride"}},
        "entity": entities,
    });
    checked::<AuditEvent>("AuditEvent", event)
}

#[cfg(test)]
mod tests {
    use super::event_action;

    #[test]
    fn reads_are_read_and_decisions_executed() {
        for read in ["careplan-read", "audit-verify", "analytics-read"] {
            assert_eq!(event_action(read), "R", "{read}");
        }
        assert_eq!(event_action("careplan-review"), "U");
        for run in [
            "hook-call",
            "audit-replay",
            "plan-apply",
            "a-later-version's",
        ] {
            assert_eq!(event_action(run), "E", "{run}");
        }
    }
}
