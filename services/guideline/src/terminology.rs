//! Code systems by meaning: an EHR may name a code system by its canonical URI or by its HL7
//! OID (`urn:oid:…`). Intake turns every name into the canonical URI, so a rule set names each
//! system once. Each OID is the one HL7 Terminology (THO) gives for the system (each rule
//! set's COVERAGE.md cites the THO resources in its terminology section).

/// (OID, canonical URI).
const OIDS: &[(&str, &str)] = &[
    (
        "2.16.840.1.113883.6.90",
        "http://hl7.org/fhir/sid/icd-10-cm",
    ),
    ("2.16.840.1.113883.6.96", "http://snomed.info/sct"),
    ("2.16.840.1.113883.6.1", "http://loinc.org"),
    ("2.16.840.1.113883.6.12", "http://www.ama-assn.org/go/cpt"),
    (
        "2.16.840.1.113883.6.285",
        "http://www.cms.gov/Medicare/Coding/HCPCSReleaseCodeSets",
    ),
    ("2.16.840.1.113883.6.8", "http://unitsofmeasure.org"),
];

/// The canonical URI of a code system named by URI or OID; other names are returned as given.
/// A coding as the engine compares it: the system named canonically (an OID becomes the
/// system's URI) and the code in that system's canonical form.
pub fn canonical(system: &str, code: &str) -> crate::facts::Code {
    let system = canonical_system(system).to_owned();
    crate::facts::Code {
        code: canonical_code(&system, code).into_owned(),
        system,
    }
}

pub fn canonical_system(system: &str) -> &str {
    let oid = system.strip_prefix("urn:oid:").unwrap_or(system);
    OIDS.iter()
        .find(|(o, _)| *o == oid)
        .map_or(system, |(_, uri)| uri)
}

/// A code as the rule set writes it. ICD-10-CM codes sent without their dot (`M25561`, as
/// billing systems store them) get it back after the category; letters are upper case.
pub fn canonical_code<'a>(system: &str, code: &'a str) -> std::borrow::Cow<'a, str> {
    if system == "http://hl7.org/fhir/sid/icd-10-cm" {
        let upper = code.trim().to_ascii_uppercase();
        if upper.len() > 3 && !upper.contains('.') && upper.is_ascii() {
            return format!("{}.{}", &upper[..3], &upper[3..]).into();
        }
        if upper != code {
            return upper.into();
        }
    }
    code.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oids_name_their_systems_and_other_names_pass_through() {
        assert_eq!(
            canonical_system("urn:oid:2.16.840.1.113883.6.90"),
            "http://hl7.org/fhir/sid/icd-10-cm"
        );
        assert_eq!(
            canonical_system("urn:oid:2.16.840.1.113883.6.96"),
            "http://snomed.info/sct"
        );
        assert_eq!(
            canonical_system("2.16.840.1.113883.6.1"),
            "http://loinc.org"
        );
        assert_eq!(canonical_system("http://loinc.org"), "http://loinc.org");
        // A prefix of a known OID is another system.
        assert_eq!(
            canonical_system("urn:oid:2.16.840.1.113883.6.9"),
            "urn:oid:2.16.840.1.113883.6.9"
        );
    }

    #[test]
    fn icd10_codes_get_their_dot_back() {
        let icd = "http://hl7.org/fhir/sid/icd-10-cm";
        assert_eq!(canonical_code(icd, "M25561"), "M25.561");
        assert_eq!(canonical_code(icd, "s83411a"), "S83.411A");
        assert_eq!(canonical_code(icd, "M25.561"), "M25.561");
        assert_eq!(canonical_code(icd, "M25"), "M25");
        assert_eq!(canonical_code("http://loinc.org", "72514-3"), "72514-3");
    }
}
