//! The realistic patient-view request of the load test and the benchmarks: a Patient, 3
//! Conditions (one knee-pain episode 45 days old), 60 Observations over six weeks (daily walking
//! pain, running sessions with components, exams, tests), dated relative to today.

use serde_json::json;

/// `v` as JSON text the way FHIR servers write it: `resourceType` first in every resource
/// (serde_json's own writer sorts keys, which no EHR does, and which Stride reads by a slower
/// path).
pub fn as_sent(v: &serde_json::Value) -> String {
    fn write(v: &serde_json::Value, out: &mut String) {
        match v {
            serde_json::Value::Object(m) => {
                out.push('{');
                let first = m.get_key_value("resourceType");
                let rest = m.iter().filter(|(k, _)| *k != "resourceType");
                for (i, (k, v)) in first.into_iter().chain(rest).enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push_str(&serde_json::to_string(k).unwrap());
                    out.push(':');
                    write(v, out);
                }
                out.push('}');
            }
            serde_json::Value::Array(a) => {
                out.push('[');
                for (i, v) in a.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    write(v, out);
                }
                out.push(']');
            }
            other => out.push_str(&other.to_string()),
        }
    }
    let mut out = String::new();
    write(v, &mut out);
    out
}

pub fn patient_view() -> serde_json::Value {
    let day =
        |d: i64| (time::OffsetDateTime::now_utc().date() - time::Duration::days(d)).to_string();
    let local = "http://stride-cds.org/fhir/CodeSystem/running-knee";
    let obs = |id: String, code: &str, d: i64, value: serde_json::Value| {
        let mut o = json!({"resourceType": "Observation", "id": id, "status": "final",
            "code": {"coding": [{"system": local, "code": code}]}, "subject": {"reference": "Patient/load-1"},
            "effectiveDateTime": day(d)});
        for (k, v) in value.as_object().unwrap() {
            o[k] = v.clone();
        }
        o
    };
    let mut observations: Vec<serde_json::Value> = (1..=42)
        .map(|d| {
            obs(
                format!("w{d}"),
                "pain-walking",
                d,
                json!({"valueInteger": if d > 25 { 2 } else { 0 }}),
            )
        })
        .collect();
    for d in (1..=13).step_by(2) {
        let mut s = obs(format!("s{d}"), "running-session", d, json!({}));
        s["component"] = json!([
            {"code": {"coding": [{"system": local, "code": "run-distance"}]}, "valueQuantity": {"value": 3.0, "unit": "km", "system": "http://unitsofmeasure.org", "code": "km"}},
            {"code": {"coding": [{"system": local, "code": "pain-running"}]}, "valueInteger": 0},
            {"code": {"coding": [{"system": local, "code": "speed-work"}]}, "valueBoolean": false}]);
        observations.push(s);
    }
    for (i, d) in [1, 5, 10, 20].iter().enumerate() {
        observations.push(obs(
            format!("t{i}"),
            "bony-tenderness",
            *d,
            json!({"valueBoolean": false}),
        ));
        observations.push(obs(
            format!("n{i}"),
            "pain-night",
            *d,
            json!({"valueBoolean": false}),
        ));
    }
    observations.push(obs("lsi".into(), "limb-symmetry-index", 3, json!({"valueQuantity": {"value": 82, "unit": "%", "system": "http://unitsofmeasure.org", "code": "%"}})));
    observations.push(obs("walk".into(), "pain-free-walking-minutes", 2, json!({"valueQuantity": {"value": 45, "unit": "min", "system": "http://unitsofmeasure.org", "code": "min"}})));
    observations.push(obs("base".into(), "preinjury-weekly-distance", 90, json!({"valueQuantity": {"value": 30, "unit": "km", "system": "http://unitsofmeasure.org", "code": "km"}})));
    assert_eq!(observations.len(), 60);
    let condition = |id: &str, code: &str, onset: i64| {
        json!({"resourceType": "Condition", "id": id,
        "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}]},
        "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": code}]},
        "subject": {"reference": "Patient/load-1"}, "onsetDateTime": day(onset)})
    };
    let bundle = |rs: Vec<serde_json::Value>| {
        json!({"resourceType": "Bundle", "type": "searchset",
        "entry": rs.into_iter().map(|r| json!({"resource": r})).collect::<Vec<_>>()})
    };
    json!({
        "hook": "patient-view", "hookInstance": "load",
        "context": {"userId": "Practitioner/load", "patientId": "load-1"},
        "prefetch": {
            "Patient": {"resourceType": "Patient", "id": "load-1", "gender": "female", "birthDate": "1990-01-01"},
            "Condition": bundle(vec![condition("knee", "M25.561", 45), condition("htn", "I10", 900), condition("asthma", "J45.909", 3000)]),
            "Observation": bundle(observations),
        }
    })
}
