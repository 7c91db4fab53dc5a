//! Fill a database with N realistic hook-call audit entries (for the export benchmark):
//! `cargo run --release -p stride-store --example fill_audit -- sqlite:///tmp/a.db 100000`

use serde_json::json;
use stride_store::{NewAuditEntry, PoolOptions};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let url = args.next().ok_or("usage: fill_audit DATABASE_URL N")?;
    let n: usize = args
        .next()
        .ok_or("usage: fill_audit DATABASE_URL N")?
        .parse()?;
    let store = stride_store::connect(&url, &PoolOptions::default()).await?;
    store.migrate().await?;
    // A patient-view's facts: a Condition and 60 Observations, about 12 KiB of JSON.
    // (The Condition opens an episode, so replaying an entry is a whole evaluation.)
    let mut records = vec![json!({"source": "Condition/knee", "kind": "condition",
        "codes": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "M25.561"}],
        "status": "active", "date": "2026-10-20"})];
    records.extend((0..60).map(|i| {
        json!({"source": format!("Observation/o{i}"), "kind": "observation",
               "codes": [{"system": "http://stride-cds.org/fhir/CodeSystem/running-knee", "code": "pain-walking"}],
               "status": "final", "date": "2026-11-01", "value": {"integer": i % 3}})
    }));
    let facts = stride_store::AuditFacts::from_json(&json!({ "records": records }));
    let started = std::time::Instant::now();
    for i in 0..n {
        let e = NewAuditEntry {
            id: uuid::Uuid::new_v4(),
            tenant: "clinic-a".into(),
            recorded_us: 1_790_000_000_000_000 + i as i64,
            action: "hook-call".into(),
            outcome: "success".into(),
            caller_issuer: Some("https://ehr.example.org".into()),
            caller_subject: Some("ehr".into()),
            hook: Some("patient-view".into()),
            hook_instance: Some(uuid::Uuid::new_v4().to_string()),
            service_id: Some("running-knee-patient-view".into()),
            patient_ref: Some(format!("Patient/p{}", i % 5000)),
            as_of: Some("2026-11-27".into()),
            facts: Some(facts.clone()),
            rule_set_id: Some("medial-knee-pain-running".into()),
            rule_set_version: Some("1.0.0".into()),
            rule_set_hash: Some("0".repeat(64)),
            decision_ids: vec!["rest".into()],
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
