//! FHIR R4 test data, dated relative to today (the service decides "as of" today).

use serde_json::{json, Value as Json};
use time::{Date, Duration, OffsetDateTime};

pub const LOCAL: &str = "http://stride-cds.org/fhir/CodeSystem/running-knee";
pub const ICD10: &str = "http://hl7.org/fhir/sid/icd-10-cm";
pub const UCUM: &str = "http://unitsofmeasure.org";

pub fn today() -> Date {
    OffsetDateTime::now_utc().date()
}

pub fn day(days_ago: i64) -> String {
    (today() - Duration::days(days_ago)).to_string()
}

pub fn condition(id: &str, icd: &str, onset_days_ago: Option<i64>) -> Json {
    let mut c = json!({
        "resourceType": "Condition", "id": id,
        "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}]},
        "verificationStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-ver-status", "code": "confirmed"}]},
        "code": {"coding": [{"system": ICD10, "code": icd}]},
        "subject": {"reference": "Patient/p1"},
    });
    if let Some(d) = onset_days_ago {
        c["onsetDateTime"] = json!(day(d));
    }
    c
}

/// An Observation with a local code; `value` is the `value[x]` member(s), e.g. `{"valueInteger": 0}`.
pub fn obs(id: &str, code: &str, days_ago: i64, value: Json) -> Json {
    let mut o = json!({
        "resourceType": "Observation", "id": id, "status": "final",
        "code": {"coding": [{"system": LOCAL, "code": code}]},
        "subject": {"reference": "Patient/p1"},
        "effectiveDateTime": day(days_ago),
    });
    for (k, v) in value.as_object().expect("value[x] members") {
        o[k] = v.clone();
    }
    o
}

pub fn qty(value: f64, unit: &str) -> Json {
    json!({"valueQuantity": {"value": value, "unit": unit, "system": UCUM, "code": unit}})
}

pub fn int(v: i64) -> Json {
    json!({"valueInteger": v})
}

pub fn boolean(v: bool) -> Json {
    json!({"valueBoolean": v})
}

pub fn session(id: &str, days_ago: i64, km: f64, pain: i64, speed_work: bool) -> Json {
    let comp = |code: &str, value: Json| {
        let mut c = json!({"code": {"coding": [{"system": LOCAL, "code": code}]}});
        for (k, v) in value.as_object().unwrap() {
            c[k] = v.clone();
        }
        c
    };
    let mut o = obs(id, "running-session", days_ago, json!({}));
    o["component"] = json!([
        comp("run-distance", qty(km, "km")),
        comp("pain-running", int(pain)),
        comp("speed-work", boolean(speed_work)),
    ]);
    o
}

pub fn bundle(resources: &[Json]) -> Json {
    json!({
        "resourceType": "Bundle", "type": "searchset", "total": resources.len(),
        "entry": resources.iter().map(|r| json!({"fullUrl": format!("urn:uuid:{}", uuid::Uuid::new_v4()), "resource": r})).collect::<Vec<_>>(),
    })
}

/// A patient who has met every exit criterion of phase 1: 12 pain-free walking days, a
/// 40-minute walk, no tenderness, no pain at rest or at night on the latest exam (every red
/// flag ruled out, as rule set 1.0.1 asks before progression), 80 % symmetry, pain 0 now.
pub fn recovered_walker() -> Vec<Json> {
    let mut v: Vec<Json> = (1..=12)
        .map(|d| obs(&format!("walk-{d}"), "pain-walking", d, int(0)))
        .collect();
    v.push(obs(
        "walk-min",
        "pain-free-walking-minutes",
        2,
        qty(40.0, "min"),
    ));
    v.push(obs("tender", "bony-tenderness", 2, boolean(false)));
    v.push(obs("rest-pain", "pain-rest", 2, boolean(false)));
    v.push(obs("night-pain", "pain-night", 2, boolean(false)));
    v.push(obs("lsi", "limb-symmetry-index", 3, qty(80.0, "%")));
    v
}

/// A patient-view on day 20 of a knee-pain episode with phase 1 complete (walk-run under
/// 1.0.1), plus `extra` Observations.
pub fn walker_day_20(extra: &[Json]) -> Json {
    let mut o = recovered_walker();
    o.extend(extra.iter().cloned());
    patient_view(prefetch(&[condition("k", "M25.561", Some(20))], &o))
}

pub fn patient_view(prefetch: Json) -> Json {
    json!({
        "hook": "patient-view",
        "hookInstance": uuid::Uuid::new_v4().to_string(),
        "context": {"userId": "Practitioner/dr-1", "patientId": "p1", "encounterId": "e1"},
        "prefetch": prefetch,
    })
}

pub fn prefetch(conditions: &[Json], observations: &[Json]) -> Json {
    json!({
        "Patient": {"resourceType": "Patient", "id": "p1", "gender": "female", "birthDate": "1990-04-01"},
        "Condition": bundle(conditions),
        "Observation": bundle(observations),
    })
}

/// The contained resource of a CarePlan with this id (`#id` or `id`).
pub fn contained<'p>(plan: &'p Json, id: &str) -> &'p Json {
    let id = id.strip_prefix('#').unwrap_or(id);
    plan["contained"]
        .as_array()
        .expect("contained resources")
        .iter()
        .find(|r| r["id"] == id)
        .unwrap_or_else(|| panic!("no contained #{id}"))
}

/// The RequestGroup a CarePlan of the CPG shape proposes its recommendations in: what its one
/// activity references.
pub fn recommendation_group(plan: &Json) -> &Json {
    let target = plan["activity"][0]["reference"]["reference"]
        .as_str()
        .expect("the activity references the RequestGroup");
    let group = contained(plan, target);
    assert_eq!(group["resourceType"], "RequestGroup", "{group}");
    group
}

/// The group of imaging options (at most one to be ordered) among the plan's recommendations.
pub fn imaging_options(plan: &Json) -> &Json {
    let group = recommendation_group(plan);
    group["action"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["selectionBehavior"] == "at-most-one")
        .unwrap_or_else(|| panic!("no imaging options in {group}"))
}

/// The records of these helpers name `Patient/p1`; a call about another patient carries them
/// as that patient's (a resource about anyone else is never used).
pub fn as_patient(resources: &Json, patient: &str) -> Json {
    serde_json::from_str(
        &resources
            .to_string()
            .replace("\"Patient/p1\"", &format!("\"Patient/{patient}\"")),
    )
    .expect("JSON stays JSON")
}
