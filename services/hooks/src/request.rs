//! A CDS Hooks request, read into types. Everything the specification requires is checked
//! here; messages say which field is wrong and never echo its value (it may be PHI).

use serde_json::{Map, Value as Json};
use url::Url;

use crate::Hook;

#[derive(Debug)]
pub struct HookRequest {
    pub hook_instance: String,
    pub fhir_server: Option<Url>,
    pub access_token: Option<String>,
    pub context: HookContext,
    pub prefetch: Map<String, Json>,
}

#[derive(Debug)]
pub struct HookContext {
    pub user_id: String,
    pub patient_id: String,
    pub encounter_id: Option<String>,
    /// order-select / order-sign: the draft orders Bundle.
    pub draft_orders: Option<Json>,
    /// order-select: the ids of the orders just selected.
    pub selections: Vec<String>,
}

fn text<'a>(obj: &'a Map<String, Json>, field: &str, path: &str) -> Result<&'a str, String> {
    match obj.get(field) {
        Some(Json::String(s)) if !s.trim().is_empty() => Ok(s),
        Some(Json::String(_)) => Err(format!("{path}{field}: must not be empty")),
        Some(_) => Err(format!("{path}{field}: must be a string")),
        None => Err(format!("{path}{field}: required")),
    }
}

fn optional_text(
    obj: &Map<String, Json>,
    field: &str,
    path: &str,
) -> Result<Option<String>, String> {
    match obj.get(field) {
        None => Ok(None),
        Some(_) => text(obj, field, path).map(|s| Some(s.to_owned())),
    }
}

/// FHIR ids are [A-Za-z0-9-.]{1,64}; anything else is not an id we can search with.
fn fhir_id(s: &str, path: &str) -> Result<String, String> {
    let id = s.strip_prefix("Patient/").unwrap_or(s);
    if id.is_empty()
        || id.len() > 64
        || !id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
    {
        return Err(format!("{path}: not a FHIR id"));
    }
    Ok(id.to_owned())
}

/// `loopback_http`: accept `http://` FHIR servers on loopback (development and tests only).
pub fn parse(body: Json, hook: Hook, loopback_http: bool) -> Result<HookRequest, String> {
    let Json::Object(mut obj) = body else {
        return Err("the request must be a JSON object".into());
    };
    let named = text(&obj, "hook", "")?;
    if named != hook.name() {
        return Err(format!(
            "hook: this service answers `{}`, not another hook",
            hook.name()
        ));
    }
    let hook_instance = text(&obj, "hookInstance", "")?.to_owned();

    let fhir_server = match obj.get("fhirServer") {
        None => None,
        Some(Json::String(s)) => Some(server_url(s, loopback_http)?),
        Some(_) => return Err("fhirServer: must be a URL string".into()),
    };
    let access_token = match obj.get("fhirAuthorization") {
        None => None,
        Some(Json::Object(auth)) => {
            if fhir_server.is_none() {
                return Err("fhirAuthorization: given without fhirServer".into());
            }
            let token = text(auth, "access_token", "fhirAuthorization.")?;
            let token_type = text(auth, "token_type", "fhirAuthorization.")?;
            if !token_type.eq_ignore_ascii_case("bearer") {
                return Err("fhirAuthorization.token_type: must be Bearer".into());
            }
            match auth.get("expires_in") {
                Some(v) if v.as_u64().is_some() => {}
                _ => {
                    return Err(
                        "fhirAuthorization.expires_in: required, a whole number of seconds".into(),
                    )
                }
            }
            text(auth, "scope", "fhirAuthorization.")?;
            text(auth, "subject", "fhirAuthorization.")?;
            Some(token.to_owned())
        }
        Some(_) => return Err("fhirAuthorization: must be an object".into()),
    };

    let Some(Json::Object(mut ctx)) = obj.remove("context") else {
        return Err("context: required, an object".into());
    };
    let user_id = text(&ctx, "userId", "context.")?.to_owned();
    let patient_id = fhir_id(text(&ctx, "patientId", "context.")?, "context.patientId")?;
    let encounter_id = optional_text(&ctx, "encounterId", "context.")?;
    let (draft_orders, selections) = match hook {
        Hook::PatientView => (None, Vec::new()),
        Hook::OrderSelect | Hook::OrderSign => {
            // Moved out, not copied: a Bundle of draft orders can be large.
            let orders = match ctx.remove("draftOrders") {
                Some(b @ Json::Object(_))
                    if b.get("resourceType").and_then(Json::as_str) == Some("Bundle") =>
                {
                    b
                }
                Some(_) => return Err("context.draftOrders: must be a FHIR Bundle".into()),
                None => return Err("context.draftOrders: required".into()),
            };
            let selections = match (hook, ctx.get("selections")) {
                (Hook::OrderSelect, Some(Json::Array(a))) => a
                    .iter()
                    .map(|v| {
                        v.as_str()
                            .map(str::to_owned)
                            .ok_or("context.selections: must be strings")
                    })
                    .collect::<Result<Vec<_>, _>>()?,
                (Hook::OrderSelect, _) => {
                    return Err("context.selections: required, an array".into())
                }
                _ => Vec::new(),
            };
            (Some(orders), selections)
        }
    };

    // Moved out of the body, not copied: the prefetch is most of a request's bytes.
    let prefetch = match obj.remove("prefetch") {
        None => Map::new(),
        Some(Json::Object(p)) => p,
        Some(_) => return Err("prefetch: must be an object".into()),
    };
    Ok(HookRequest {
        hook_instance,
        fhir_server,
        access_token,
        context: HookContext {
            user_id,
            patient_id,
            encounter_id,
            draft_orders,
            selections,
        },
        prefetch,
    })
}

/// The EHR's FHIR server: HTTPS, or plain HTTP only on loopback (tests, local development).
fn server_url(s: &str, loopback_http: bool) -> Result<Url, String> {
    let url = Url::parse(s).map_err(|_| "fhirServer: not an absolute URL".to_owned())?;
    let loopback = match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => d == "localhost",
        None => false,
    };
    match url.scheme() {
        "https" => {}
        "http" if loopback && loopback_http => {}
        _ => return Err("fhirServer: must use https".into()),
    }
    if url.query().is_some() || url.fragment().is_some() || !url.username().is_empty() {
        return Err("fhirServer: must be a base URL without query, fragment or credentials".into());
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn base() -> Json {
        json!({"hook": "patient-view", "hookInstance": "d1577c69-dfbe-44ad-ba6d-3e05e953b2ea",
               "context": {"userId": "Practitioner/1", "patientId": "p-1"}})
    }

    #[test]
    fn reads_a_minimal_patient_view() {
        let r = parse(base(), Hook::PatientView, true).unwrap();
        assert_eq!(r.context.patient_id, "p-1");
        assert!(r.fhir_server.is_none() && r.prefetch.is_empty());
    }

    #[test]
    fn refuses_what_the_spec_forbids_naming_the_field() {
        let cases: Vec<(Json, &str)> = vec![
            (json!({"hook": "order-sign"}), "hook"),
            (json!({"hookInstance": ""}), "hookInstance"),
            (json!({"context": {"userId": "u"}}), "context.patientId"),
            (
                json!({"context": {"userId": "u", "patientId": "a b/../c"}}),
                "context.patientId",
            ),
            (
                json!({"fhirAuthorization": {"access_token": "t", "token_type": "Bearer", "expires_in": 300, "scope": "s", "subject": "x"}}),
                "without fhirServer",
            ),
            (
                json!({"fhirServer": "http://ehr.example.org/fhir"}),
                "https",
            ),
            (
                json!({"fhirServer": "https://ehr.example.org/fhir", "fhirAuthorization": {"access_token": "t", "token_type": "MAC", "expires_in": 1, "scope": "s", "subject": "x"}}),
                "token_type",
            ),
            (json!({"prefetch": []}), "prefetch"),
        ];
        for (patch, expect) in cases {
            let mut body = base();
            for (k, v) in patch.as_object().unwrap() {
                body[k] = v.clone();
            }
            let e = parse(body, Hook::PatientView, true).unwrap_err();
            assert!(e.contains(expect), "{expect}: {e}");
            assert!(!e.contains("a b/../c"), "values are not echoed: {e}");
        }
    }

    #[test]
    fn loopback_http_is_allowed_only_when_stride_itself_runs_on_loopback() {
        let mut body = base();
        body["fhirServer"] = json!("http://127.0.0.1:8081/fhir");
        assert!(parse(body.clone(), Hook::PatientView, true).is_ok());
        assert!(parse(body, Hook::PatientView, false)
            .unwrap_err()
            .contains("https"));
    }

    #[test]
    fn order_select_needs_draft_orders_and_selections() {
        let mut body = base();
        body["hook"] = json!("order-select");
        assert!(parse(body.clone(), Hook::OrderSelect, true)
            .unwrap_err()
            .contains("draftOrders"));
        body["context"]["draftOrders"] = json!({"resourceType": "Bundle", "entry": []});
        assert!(parse(body.clone(), Hook::OrderSelect, true)
            .unwrap_err()
            .contains("selections"));
        body["context"]["selections"] = json!(["ServiceRequest/1"]);
        assert_eq!(
            parse(body, Hook::OrderSelect, true)
                .unwrap()
                .context
                .selections,
            ["ServiceRequest/1"]
        );
    }
}
