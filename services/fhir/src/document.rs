//! The patient's take-home plan as a FHIR R4 DocumentReference: the PDF an EHR files beside
//! the approved CarePlan it was written from (`context.related`).

use base64::Engine;
use serde_json::{json, Value as Json};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// What the DocumentReference says about the take-home plan.
pub struct TakeHomeDocument<'a> {
    /// The DocumentReference's id (the CarePlan's: one take-home plan per approved plan).
    pub id: &'a str,
    /// `Patient/ID`.
    pub patient: &'a str,
    pub careplan: &'a str,
    /// When the plan was approved: the document's date.
    pub date: OffsetDateTime,
    pub title: &'a str,
    pub pdf: &'a [u8],
    /// Where the same PDF can be fetched (staff, `careplan.read`).
    pub url: &'a str,
}

pub fn take_home_document(d: &TakeHomeDocument<'_>) -> Json {
    let date = d.date.format(&Rfc3339).unwrap_or_default();
    json!({
        "resourceType": "DocumentReference",
        "id": d.id,
        "status": "current",
        "docStatus": "final",
        "subject": {"reference": d.patient},
        "date": date,
        "description": d.title,
        "content": [{"attachment": {
            "contentType": "application/pdf",
            "language": "en",
            "data": base64::engine::general_purpose::STANDARD.encode(d.pdf),
            "url": d.url,
            "size": d.pdf.len(),
            "title": d.title,
            "creation": date,
        }}],
        "context": {"related": [{"reference": format!("CarePlan/{}", d.careplan)}]},
    })
}
