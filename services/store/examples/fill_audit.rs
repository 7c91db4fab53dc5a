//! Fill a database with N copies of one hook-call audit entry (for the decision-log benchmark),
//! the entry's guideline, version and facts read from a template:
//! `cargo run --release -p stride-store --example fill_audit -- sqlite:///tmp/a.db 100000 tests/fixtures/bench/hook-call.json [TENANT]`
//! (the clinic defaults to `clinic-a`; `dev` is the clinic of `stride dev`'s staff tokens).

use serde_json::{json, Value};
use stride_store::{NewAuditEntry, PoolOptions};

const USAGE: &str = "usage: fill_audit DATABASE_URL N TEMPLATE_JSON [TENANT]";

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let url = args.next().ok_or(USAGE)?;
    let n: usize = args.next().ok_or(USAGE)?.parse()?;
    let template: Value =
        serde_json::from_str(&std::fs::read_to_string(args.next().ok_or(USAGE)?)?)?;
    let tenant = stride_store::TenantId::parse(&args.next().unwrap_or_else(|| "clinic-a".into()))
        .map_err(|e| e.to_string())?;
    let text = |key: &str| -> Result<String, String> {
        template[key]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| format!("the template has no `{key}`"))
    };
    let (service, rule_set, version, as_of) = (
        text("serviceId")?,
        text("ruleSetId")?,
        text("ruleSetVersion")?,
        text("asOf")?,
    );
    let decision_ids: Vec<String> = serde_json::from_value(template["decisionIds"].clone())?;
    let facts = stride_store::AuditFacts::from_json(&template["facts"]);
    let store = stride_store::connect(&url, &PoolOptions::default()).await?;
    store.migrate().await?;
    let started = std::time::Instant::now();
    for i in 0..n {
        let e = NewAuditEntry {
            id: uuid::Uuid::new_v4(),
            tenant: tenant.clone(),
            recorded_us: 1_790_000_000_000_000 + i as i64,
            action: stride_store::audit::Action::HookCall,
            outcome: "success".into(),
            caller_issuer: Some("https://ehr.example.org".into()),
            caller_subject: Some("ehr".into()),
            hook: Some("patient-view".into()),
            hook_instance: Some(uuid::Uuid::new_v4().to_string()),
            service_id: Some(service.clone()),
            patient_ref: stride_store::PatientRef::of_id(&format!("p{}", i % 5000)),
            as_of: Some(as_of.clone()),
            facts: Some(facts.clone()),
            rule_set_id: Some(rule_set.clone()),
            rule_set_version: Some(version.clone()),
            rule_set_hash: Some("0".repeat(64)),
            decision_ids: decision_ids.clone(),
            card_uuids: vec![uuid::Uuid::new_v4().to_string()],
            careplan_id: None,
            trace_id: None,
            details: json!({}),
        };
        store.append_audit(&e).await?;
    }
    eprintln!(
        "appended {n} entries in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    store.close().await;
    Ok(())
}
