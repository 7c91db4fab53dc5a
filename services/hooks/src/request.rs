//! A CDS Hooks request, read into types. Everything the specification requires is checked
//! here; messages say which field is wrong and never echo its value (it may be PHI).

use std::collections::BTreeMap;

use serde_json::value::RawValue;
use serde_json::{Map, Value as Json};
use url::Url;

pub use stride_ids::is_fhir_id;

use crate::Hook;

/// A hook request, borrowing the body it was read from: the prefetch and the draft orders,
/// most of a request's bytes, stay raw JSON text until the FHIR reader takes them.
#[derive(Debug)]
pub struct HookRequest<'a> {
    pub hook_instance: String,
    pub fhir_server: Option<Url>,
    pub access_token: Option<String>,
    pub context: HookContext<'a>,
    pub prefetch: BTreeMap<String, &'a RawValue>,
    /// Every top-level member as sent, unparsed: what a retry of this call must repeat.
    pub members: BTreeMap<String, &'a RawValue>,
}

#[derive(Debug)]
pub struct HookContext<'a> {
    pub user_id: String,
    pub patient_id: String,
    pub encounter_id: Option<String>,
    /// order-select / order-sign: the draft orders Bundle.
    pub draft_orders: Option<&'a RawValue>,
    /// order-select: the ids of the orders just selected.
    pub selections: Vec<String>,
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// Not JSON at all.
    #[error("{0}")]
    Malformed(String),
    /// JSON, but not a request this hook accepts: which field, and why.
    #[error("{0}")]
    Invalid(String),
}

/// One small field of the body as JSON. The body parsed, so failure means only a value no
/// field takes (nested past serde_json's depth limit, a number out of range): read as `null`.
fn json(raw: Option<&RawValue>) -> Option<Json> {
    raw.map(|r| serde_json::from_str(r.get()).unwrap_or(Json::Null))
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

fn fhir_id(s: &str, path: &str) -> Result<String, String> {
    let id = s.strip_prefix("Patient/").unwrap_or(s);
    if !is_fhir_id(id) {
        return Err(format!("{path}: not a FHIR id"));
    }
    Ok(id.to_owned())
}

/// An object's members, each left as raw JSON text; `None` when the value is not an object.
fn members(raw: &RawValue) -> Option<BTreeMap<String, &RawValue>> {
    serde_json::from_str(raw.get()).ok()
}

fn is_bundle(raw: &RawValue) -> bool {
    #[derive(serde::Deserialize)]
    struct Head<'a> {
        #[serde(rename = "resourceType", borrow)]
        kind: Option<&'a RawValue>,
    }
    serde_json::from_str::<Head>(raw.get())
        .ok()
        .and_then(|h| h.kind)
        .is_some_and(|k| serde_json::from_str::<String>(k.get()).is_ok_and(|k| k == "Bundle"))
}

/// Read a request body for `hook`. `loopback_http`: accept `http://` FHIR servers on loopback
/// (development and tests only).
///
/// Values are skipped over without recursion, so nesting depth cannot exhaust the stack here;
/// whatever is later built from a raw value (the small fields below, FHIR resources) is under
/// serde_json's depth limit, and a value too deep for it is refused as the wrong type.
pub fn parse(body: &[u8], hook: Hook, loopback_http: bool) -> Result<HookRequest<'_>, ParseError> {
    let obj = match serde_json::from_slice::<BTreeMap<String, &RawValue>>(body) {
        Ok(obj) => obj,
        Err(e) if e.is_data() => {
            return Err(ParseError::Invalid(
                "the request must be a JSON object".into(),
            ))
        }
        // Never serde's message: the position only (see `stride::body::refused`).
        Err(e) => {
            return Err(ParseError::Malformed(format!(
                "line {}, column {}",
                e.line(),
                e.column()
            )))
        }
    };
    let mut request = read(&obj, hook, loopback_http).map_err(ParseError::Invalid)?;
    request.members = obj;
    Ok(request)
}

fn read<'a>(
    obj: &BTreeMap<String, &'a RawValue>,
    hook: Hook,
    loopback_http: bool,
) -> Result<HookRequest<'a>, String> {
    // The small top-level fields, as JSON; the prefetch and context are read on their own.
    let top: Map<String, Json> = ["hook", "hookInstance", "fhirServer", "fhirAuthorization"]
        .into_iter()
        .filter_map(|k| Some((k.to_owned(), json(obj.get(k).copied())?)))
        .collect();
    let named = text(&top, "hook", "")?;
    if named != hook.name() {
        return Err(format!(
            "hook: this service answers `{}`, not another hook",
            hook.name()
        ));
    }
    let hook_instance = text(&top, "hookInstance", "")?.to_owned();

    let fhir_server = match top.get("fhirServer") {
        None => None,
        Some(Json::String(s)) => Some(server_url(s, loopback_http)?),
        Some(_) => return Err("fhirServer: must be a URL string".into()),
    };
    let access_token = match top.get("fhirAuthorization") {
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

    let Some(mut raw_ctx) = obj.get("context").copied().and_then(members) else {
        return Err("context: required, an object".into());
    };
    // Only the draft orders can be large: they stay raw, the rest is read as JSON.
    let raw_orders = raw_ctx.remove("draftOrders");
    let ctx: Map<String, Json> = raw_ctx
        .into_iter()
        .filter_map(|(k, v)| Some((k, json(Some(v))?)))
        .collect();
    let user_id = text(&ctx, "userId", "context.")?.to_owned();
    let patient_id = fhir_id(text(&ctx, "patientId", "context.")?, "context.patientId")?;
    let encounter_id = optional_text(&ctx, "encounterId", "context.")?;
    let (draft_orders, selections) = match hook {
        Hook::PatientView => (None, Vec::new()),
        Hook::OrderSelect | Hook::OrderSign => {
            let orders = match raw_orders {
                Some(b) if is_bundle(b) => b,
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

    let prefetch = match obj.get("prefetch") {
        None => BTreeMap::new(),
        Some(p) => members(p).ok_or("prefetch: must be an object")?,
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
        members: BTreeMap::new(),
    })
}

/// The EHR's FHIR server: HTTPS, or plain HTTP only on loopback (tests, local development),
/// and a base URL only: no query, fragment or credentials. One rule for a hook's `fhirServer`
/// and `$apply`'s.
pub fn server_url(s: &str, loopback_http: bool) -> Result<Url, String> {
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

    /// Parse `body` as the bytes an EHR would send.
    fn parse(body: Json, hook: Hook, loopback_http: bool) -> Result<Parsed, String> {
        let bytes = serde_json::to_vec(&body).unwrap();
        super::parse(&bytes, hook, loopback_http)
            .map(|r| Parsed {
                patient_id: r.context.patient_id,
                selections: r.context.selections,
                fhir_server: r.fhir_server,
                prefetch: r.prefetch.len(),
            })
            .map_err(|e| e.to_string())
    }

    #[derive(Debug)]
    struct Parsed {
        patient_id: String,
        selections: Vec<String>,
        fhir_server: Option<Url>,
        prefetch: usize,
    }

    fn base() -> Json {
        json!({"hook": "patient-view", "hookInstance": "d1577c69-dfbe-44ad-ba6d-3e05e953b2ea",
               "context": {"userId": "Practitioner/1", "patientId": "p-1"}})
    }

    #[test]
    fn reads_a_minimal_patient_view() {
        let r = parse(base(), Hook::PatientView, true).unwrap();
        assert_eq!(r.patient_id, "p-1");
        assert!(r.fhir_server.is_none() && r.prefetch == 0);
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
            parse(body, Hook::OrderSelect, true).unwrap().selections,
            ["ServiceRequest/1"]
        );
    }

    #[test]
    fn bytes_that_are_not_json_differ_from_json_that_is_not_a_request() {
        for bad in [&b"{\"hook\":"[..], &[0x7b, 0xff, 0xfe, 0x7d], b"{} {}"] {
            assert!(
                matches!(
                    super::parse(bad, Hook::PatientView, true),
                    Err(ParseError::Malformed(_))
                ),
                "{bad:?}"
            );
        }
        let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
        let deep_hook = format!(
            r#"{{"hook": {}1{}}}"#,
            "[".repeat(10_000),
            "]".repeat(10_000)
        );
        for wrong in [
            &b"[1, 2]"[..],
            b"\"patient-view\"",
            b"{\"context\": 7}",
            deep.as_bytes(),
            deep_hook.as_bytes(),
        ] {
            assert!(
                matches!(
                    super::parse(wrong, Hook::PatientView, true),
                    Err(ParseError::Invalid(_))
                ),
                "{}",
                String::from_utf8_lossy(&wrong[..wrong.len().min(40)])
            );
        }
    }

    #[test]
    fn prefetch_and_draft_orders_stay_the_text_the_ehr_sent() {
        let body = br#"{"hook": "order-sign", "hookInstance": "i",
            "context": {"userId": "u", "patientId": "p", "draftOrders": {"resourceType": "Bundle", "entry": [ ]}},
            "prefetch": {"Condition": {"resourceType" : "Bundle"}, "Observation": null}}"#;
        let r = super::parse(body, Hook::OrderSign, true).unwrap();
        assert_eq!(
            r.context.draft_orders.unwrap().get(),
            r#"{"resourceType": "Bundle", "entry": [ ]}"#
        );
        assert_eq!(
            r.prefetch["Condition"].get(),
            r#"{"resourceType" : "Bundle"}"#
        );
        assert_eq!(r.prefetch["Observation"].get(), "null");
        let not_bundle = br#"{"hook": "order-sign", "hookInstance": "i",
            "context": {"userId": "u", "patientId": "p", "draftOrders": {"resourceType": "Patient"}}}"#;
        assert!(super::parse(not_bundle, Hook::OrderSign, true)
            .unwrap_err()
            .to_string()
            .contains("draftOrders"));
    }
}
