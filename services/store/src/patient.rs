//! A patient as Stride's records name them: `Patient/{FHIR id}`, the reference every CarePlan,
//! card and audit entry about a patient holds. A type of its own so that the one place that
//! writes the form is here (it was formatted in nine), so that a search by patient is asked
//! with a reference that parses, and so that a patient's id is never printed by accident: its
//! `Debug` shows `Patient/…`, and it has neither `Display` nor `Deref`; the text is read with
//! `as_str` where a record, a query or an answer needs it.

/// `Patient/{id}`, with `id` a FHIR id (or, read back from the store, as it was written).
/// Bound and read as its text in both backends.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, sqlx::Type)]
#[sqlx(transparent)]
pub struct PatientRef(String);

impl PatientRef {
    /// The patient of this FHIR id (a hook's `context.patientId`, `$apply`'s subject):
    /// `None` unless the id is one (1 to 64 letters, digits, `-` and `.`).
    pub fn of_id(id: &str) -> Option<PatientRef> {
        stride_ids::is_fhir_id(id).then(|| PatientRef(format!("Patient/{id}")))
    }

    /// The patient of an id the request's parse has checked already (a hook's
    /// `context.patientId`, `$apply`'s subject).
    pub fn of_checked_id(id: &str) -> PatientRef {
        debug_assert!(PatientRef::of_id(id).is_some(), "not a FHIR id");
        PatientRef(format!("Patient/{id}"))
    }

    /// `Patient/{id}` or a bare id, as staff type one into a search or a token names one.
    pub fn parse(text: &str) -> Option<PatientRef> {
        let text = text.trim();
        PatientRef::of_id(text.strip_prefix("Patient/").unwrap_or(text))
    }

    /// A reference read back from the store, as it was written (by this version or another).
    pub fn stored(text: String) -> PatientRef {
        PatientRef(text)
    }

    /// `Patient/{id}`, for a record, a query or an answer: never for a log.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The FHIR id alone.
    pub fn id(&self) -> &str {
        self.0.strip_prefix("Patient/").unwrap_or(&self.0)
    }
}

/// Never the id: an entry or a plan printed for a developer (a failed test, a debug log)
/// names no patient.
impl std::fmt::Debug for PatientRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Patient/…")
    }
}

/// As its text: the audit entry's hash and the exports carry `Patient/{id}`, as before the type.
impl serde::Serialize for PatientRef {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl PartialEq<&str> for PatientRef {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

#[cfg(test)]
mod tests {
    use super::PatientRef;

    #[test]
    fn a_reference_parses_from_an_id_or_itself_and_never_prints_the_id() {
        let p = PatientRef::of_id("p-1.2").unwrap();
        assert_eq!(p.as_str(), "Patient/p-1.2");
        assert_eq!(p.id(), "p-1.2");
        assert_eq!(PatientRef::parse(" Patient/p-1.2 "), Some(p.clone()));
        assert_eq!(PatientRef::parse("p-1.2"), Some(p.clone()));
        for bad in [
            "",
            "a b",
            "Patient/",
            "Group/g",
            "x/y",
            &"a".repeat(65),
            "p1'--",
        ] {
            assert_eq!(PatientRef::parse(bad), None, "{bad:?}");
        }
        assert_eq!(format!("{p:?}"), "Patient/…");
        assert_eq!(serde_json::to_string(&p).unwrap(), "\"Patient/p-1.2\"");
    }
}
