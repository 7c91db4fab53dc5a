//! Who a plan is for, as the EHR's Patient says: a name, a birth date and an administrative
//! sex, kept with the plan so that the review queue and the plan page name the patient (a
//! 13-year-old's plan must not look like anyone's). Only what a reviewer reads is kept; the
//! Patient resource itself is not stored.

use serde_json::{json, Value as Json};

/// The identity the Patient `raw` gives, if it is a Patient about `patient_id` (a Patient of
/// someone else is never used). Missing parts are left out.
pub fn identity(raw: &serde_json::value::RawValue, patient_id: &str) -> Option<Json> {
    let p: Json = serde_json::from_str(raw.get()).ok()?;
    if p["resourceType"] != "Patient" {
        return None;
    }
    // Only this patient's Patient: one without an id cannot be told from someone else's.
    if p["id"].as_str() != Some(patient_id) {
        return None;
    }
    let mut out = json!({});
    if let Some(name) = name(&p["name"]) {
        out["name"] = json!(name);
    }
    for key in ["birthDate", "gender"] {
        if let Some(v) = p[key].as_str().filter(|v| !v.is_empty()) {
            out[key] = json!(v);
        }
    }
    Some(out)
}

/// The name to show: the official one, else the usual one, else the first; its text, else
/// its given names and family name.
fn name(names: &Json) -> Option<String> {
    let names = names.as_array()?;
    let by_use = |u: &str| names.iter().find(|n| n["use"] == u);
    let n = by_use("official")
        .or_else(|| by_use("usual"))
        .or_else(|| names.first())?;
    if let Some(t) = n["text"].as_str().filter(|t| !t.trim().is_empty()) {
        return Some(t.trim().to_owned());
    }
    let mut parts: Vec<&str> = n["given"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Json::as_str)
        .collect();
    if let Some(f) = n["family"].as_str() {
        parts.push(f);
    }
    let joined = parts.join(" ");
    (!joined.trim().is_empty()).then(|| joined.trim().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(v: Json) -> Box<serde_json::value::RawValue> {
        serde_json::value::to_raw_value(&v).unwrap()
    }

    #[test]
    fn the_official_name_birth_date_and_sex_of_this_patient_only() {
        let p = raw(
            json!({"resourceType": "Patient", "id": "p1", "gender": "female", "birthDate": "2013-04-01",
            "name": [{"use": "nickname", "given": ["Annie"]}, {"use": "official", "given": ["Ana", "Maria"], "family": "Lima"}]}),
        );
        assert_eq!(
            identity(&p, "p1"),
            Some(json!({"name": "Ana Maria Lima", "birthDate": "2013-04-01", "gender": "female"}))
        );
        assert_eq!(identity(&p, "p2"), None, "another patient's Patient");
        let bare = raw(json!({"resourceType": "Patient", "id": "p1"}));
        assert_eq!(identity(&bare, "p1"), Some(json!({})));
        let text =
            raw(json!({"resourceType": "Patient", "id": "p1", "name": [{"text": " Jo Doe "}]}));
        assert_eq!(identity(&text, "p1"), Some(json!({"name": "Jo Doe"})));
        let anonymous = raw(json!({"resourceType": "Patient", "name": [{"text": "Jo Doe"}]}));
        assert_eq!(
            identity(&anonymous, "p1"),
            None,
            "no id: not known to be this patient"
        );
        let obs = raw(json!({"resourceType": "Observation", "id": "p1"}));
        assert_eq!(identity(&obs, "p1"), None);
    }
}
