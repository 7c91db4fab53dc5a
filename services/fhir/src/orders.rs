//! The orders a clinician is drafting (CDS Hooks `order-select` / `order-sign`
//! `context.draftOrders`), as the cards need them: which are imaging orders, so that a red flag
//! an imaging order already answers is not given a second one.

use serde::Deserialize;
use serde_json::value::RawValue;
use stride_guideline::terminology::canonical;
use stride_guideline::Code;

/// ServiceRequest.category codes that mark an imaging order: SNOMED CT "Imaging" (US Core's
/// ServiceRequest category, and the category of the orders Stride suggests) and HL7 v2 table
/// 0074 "Radiology" (the diagnostic service section some EHRs put on orders).
const IMAGING: &[(&str, &str)] = &[
    ("http://snomed.info/sct", "363679005"),
    ("http://terminology.hl7.org/CodeSystem/v2-0074", "RAD"),
];

/// One drafted order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DraftOrder {
    /// `ServiceRequest/{id}` (the id an action's `resourceId` names).
    pub reference: String,
    /// What the order is, as the EHR wrote it (code text or display), if it says.
    pub label: Option<String>,
    /// Its category says imaging (SNOMED CT Imaging, HL7 v2 RAD).
    pub imaging: bool,
    /// Its codes (canonical systems and codes): what it orders, e.g. a LOINC or CPT study of
    /// a region, for the rule set to judge.
    pub codes: Vec<Code>,
    /// Its body sites (`bodySite` codings): which region a study coded for "any joint of
    /// the lower extremity" is of.
    pub sites: Vec<Code>,
}

#[derive(Deserialize)]
struct Bundle {
    #[serde(default)]
    entry: Vec<Entry>,
}

#[derive(Deserialize)]
struct Entry {
    resource: Option<Order>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Order {
    resource_type: String,
    id: Option<String>,
    status: Option<String>,
    #[serde(default)]
    category: Vec<Concept>,
    code: Option<Concept>,
    #[serde(default)]
    body_site: Vec<Concept>,
}

#[derive(Deserialize)]
struct Concept {
    #[serde(default)]
    coding: Vec<Coding>,
    text: Option<String>,
}

#[derive(Deserialize)]
struct Coding {
    system: Option<String>,
    code: Option<String>,
    display: Option<String>,
}

impl Concept {
    fn label(&self) -> Option<String> {
        self.text
            .clone()
            .or_else(|| self.coding.iter().find_map(|c| c.display.clone()))
    }

    fn is_imaging(&self) -> bool {
        self.coding.iter().any(|c| {
            IMAGING.iter().any(|(system, code)| {
                c.system.as_deref() == Some(*system) && c.code.as_deref() == Some(*code)
            })
        })
    }
}

/// The ServiceRequests among `draft_orders` (a Bundle) that are still to be placed: `draft`
/// or `active`, with an id. Anything else in the Bundle is not an order these cards weigh; a
/// Bundle that does not read yields nothing (the request parse already refused a non-Bundle).
pub fn draft_orders(draft_orders: &RawValue) -> Vec<DraftOrder> {
    let Ok(bundle) = serde_json::from_str::<Bundle>(draft_orders.get()) else {
        return Vec::new();
    };
    bundle
        .entry
        .into_iter()
        .filter_map(|e| e.resource)
        .filter(|o| o.resource_type == "ServiceRequest")
        .filter(|o| matches!(o.status.as_deref(), Some("draft" | "active")))
        .filter_map(|o| {
            let id = o.id?;
            Some(DraftOrder {
                reference: format!("ServiceRequest/{id}"),
                label: o.code.as_ref().and_then(Concept::label),
                imaging: o.category.iter().any(Concept::is_imaging),
                codes: o
                    .code
                    .as_ref()
                    .map(|c| {
                        c.coding
                            .iter()
                            .filter_map(|k| {
                                Some(canonical(k.system.as_deref()?, k.code.as_deref()?))
                            })
                            .collect()
                    })
                    .unwrap_or_default(),
                sites: o
                    .body_site
                    .iter()
                    .flat_map(|c| &c.coding)
                    .filter_map(|k| Some(canonical(k.system.as_deref()?, k.code.as_deref()?)))
                    .collect(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn raw(v: serde_json::Value) -> Box<RawValue> {
        RawValue::from_string(v.to_string()).unwrap()
    }

    #[test]
    fn imaging_orders_are_known_by_category_and_the_rest_are_kept_as_orders() {
        let bundle = raw(
            json!({"resourceType": "Bundle", "type": "collection", "entry": [
                {"resource": {"resourceType": "ServiceRequest", "id": "mri", "status": "draft", "intent": "order",
                  "category": [{"coding": [{"system": "http://snomed.info/sct", "code": "363679005"}]}],
                  "code": {"coding": [{"system": "http://loinc.org", "code": "30691-0", "display": "MR Knee WO contrast"}]}}},
                {"resource": {"resourceType": "ServiceRequest", "id": "xr", "status": "active", "intent": "order",
                  "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0074", "code": "RAD"}]}],
                  "code": {"text": "Knee radiographs"}}},
                {"resource": {"resourceType": "ServiceRequest", "id": "pt", "status": "draft", "intent": "order",
                  "code": {"text": "Physiotherapy"}}},
                {"resource": {"resourceType": "ServiceRequest", "id": "old", "status": "revoked", "intent": "order",
                  "category": [{"coding": [{"system": "http://snomed.info/sct", "code": "363679005"}]}]}},
                {"resource": {"resourceType": "MedicationRequest", "id": "m", "status": "draft"}}
            ]}),
        );
        let got = draft_orders(&bundle);
        assert_eq!(
            got,
            vec![
                DraftOrder {
                    reference: "ServiceRequest/mri".into(),
                    label: Some("MR Knee WO contrast".into()),
                    imaging: true,
                    codes: vec![Code {
                        system: "http://loinc.org".into(),
                        code: "30691-0".into()
                    }],
                    sites: vec![],
                },
                DraftOrder {
                    reference: "ServiceRequest/xr".into(),
                    label: Some("Knee radiographs".into()),
                    imaging: true,
                    codes: vec![],
                    sites: vec![],
                },
                DraftOrder {
                    reference: "ServiceRequest/pt".into(),
                    label: Some("Physiotherapy".into()),
                    imaging: false,
                    codes: vec![],
                    sites: vec![],
                },
            ]
        );
    }

    #[test]
    fn a_bundle_that_does_not_read_has_no_orders() {
        assert!(draft_orders(&raw(json!({"resourceType": "Bundle", "entry": "x"}))).is_empty());
        assert!(draft_orders(&raw(json!({"resourceType": "Bundle"}))).is_empty());
    }

    #[test]
    fn an_orders_body_sites_are_kept() {
        let bundle = raw(
            json!({"resourceType": "Bundle", "type": "collection", "entry": [
            {"resource": {"resourceType": "ServiceRequest", "id": "mri", "status": "draft", "intent": "order",
              "code": {"coding": [{"system": "http://www.ama-assn.org/go/cpt", "code": "73721"}], "text": "MRI"},
              "bodySite": [{"coding": [{"system": "http://snomed.info/sct", "code": "6685009"}]}, {"text": "ankle"}]}}]}),
        );
        let got = draft_orders(&bundle);
        assert_eq!(
            got[0].sites,
            vec![Code {
                system: "http://snomed.info/sct".into(),
                code: "6685009".into()
            }]
        );
    }
}
