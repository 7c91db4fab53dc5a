//! Writes what the load test sends: a patient-view request with realistic prefetch (a Patient,
//! 3 Conditions, 60 Observations), N CDS client tokens (unique jti each, signed with the
//! test-only key in tests/fixtures/keys), and the trust file that accepts them.
//! `cargo run --release --example load_fixture -- OUT_DIR N PUBLIC_URL`

use std::io::Write;

use serde_json::json;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let out = std::path::PathBuf::from(
        args.next()
            .ok_or("usage: load_fixture OUT_DIR N PUBLIC_URL")?,
    );
    let n: usize = args.next().ok_or("N")?.parse()?;
    let public = args
        .next()
        .unwrap_or_else(|| "http://127.0.0.1:8090".into());
    let keys = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/keys");
    std::fs::create_dir_all(&out)?;

    let jwk: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(keys.join("ehr-es384.jwk.json"))?)?;
    let trust = json!({"issuers": [{"iss": "https://ehr.load.test", "kind": "cds-client", "tenant": "load", "jwks": {"keys": [jwk]}}]});
    std::fs::write(out.join("trust.json"), trust.to_string())?;

    let key = jsonwebtoken::EncodingKey::from_ec_pem(
        std::fs::read_to_string(keys.join("ehr-es384.pem"))?.as_bytes(),
    )?;
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES384);
    header.kid = Some("ehr-es384".into());
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();
    let aud = format!("{public}/cds-services/running-knee-patient-view");
    let mut tokens = std::io::BufWriter::new(std::fs::File::create(out.join("tokens.txt"))?);
    for i in 0..n {
        let claims = json!({"iss": "https://ehr.load.test", "sub": "load", "aud": aud, "iat": now, "exp": now + 3000,
                            "jti": format!("load-{now}-{i}"), "tenant": "load"});
        writeln!(tokens, "{}", jsonwebtoken::encode(&header, &claims, &key)?)?;
    }
    tokens.flush()?;

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
    let body = json!({
        "hook": "patient-view", "hookInstance": "load",
        "context": {"userId": "Practitioner/load", "patientId": "load-1"},
        "prefetch": {
            "Patient": {"resourceType": "Patient", "id": "load-1", "gender": "female", "birthDate": "1990-01-01"},
            "Condition": bundle(vec![condition("knee", "M25.561", 45), condition("htn", "I10", 900), condition("asthma", "J45.909", 3000)]),
            "Observation": bundle(observations),
        }
    });
    std::fs::write(out.join("request.json"), body.to_string())?;
    eprintln!(
        "wrote {n} tokens, trust file and a {} byte request to {}",
        body.to_string().len(),
        out.display()
    );
    Ok(())
}
