//! Query parameters that several routes read, parsed in one place so that each refuses a bad
//! value with the same words.

use stride_store::PatientRef;

use crate::error::ApiError;

/// `patient`: `Patient/{id}` or a bare id, `{id}` a FHIR id. Not quoted back: the value may
/// be a patient's identifier typed in the wrong field.
pub fn patient(value: Option<&str>) -> Result<Option<PatientRef>, ApiError> {
    value
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(|v| {
            PatientRef::parse(v).ok_or_else(|| {
                ApiError::BadRequest(
                    "patient: a Patient reference (Patient/{id}, or the id)".into(),
                )
            })
        })
        .transpose()
}
