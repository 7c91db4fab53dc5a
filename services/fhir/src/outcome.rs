//! OperationOutcome: how every Stride endpoint says what went wrong.

use fhir_sdk::r4b::codes::{IssueSeverity, IssueType};
use fhir_sdk::r4b::resources::{OperationOutcome, OperationOutcomeIssue, Resource};
use fhir_sdk::r4b::types::{CodeableConcept, Coding};

/// Stride's own error codes, beside the FHIR issue type, live in this code system.
pub const ERROR_SYSTEM: &str = "http://stride-cds.org/fhir/CodeSystem/error";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    Fatal,
    Error,
    Warning,
    Information,
}

/// The FHIR issue types Stride uses (http://hl7.org/fhir/issue-type).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IssueCode {
    Invalid,
    Structure,
    Required,
    Value,
    TooLong,
    Security,
    Login,
    Forbidden,
    NotFound,
    NotSupported,
    Conflict,
    Incomplete,
    Transient,
    Exception,
    Timeout,
    Throttled,
}

impl IssueCode {
    fn fhir(self) -> IssueType {
        match self {
            IssueCode::Invalid => IssueType::Invalid,
            IssueCode::Structure => IssueType::Structure,
            IssueCode::Required => IssueType::Required,
            IssueCode::Value => IssueType::Value,
            IssueCode::TooLong => IssueType::TooLong,
            IssueCode::Security => IssueType::Security,
            IssueCode::Login => IssueType::Login,
            IssueCode::Forbidden => IssueType::Forbidden,
            IssueCode::NotFound => IssueType::NotFound,
            IssueCode::NotSupported => IssueType::NotSupported,
            IssueCode::Conflict => IssueType::Conflict,
            IssueCode::Incomplete => IssueType::Incomplete,
            IssueCode::Transient => IssueType::Transient,
            IssueCode::Exception => IssueType::Exception,
            IssueCode::Timeout => IssueType::Timeout,
            IssueCode::Throttled => IssueType::Throttled,
        }
    }
}

/// One-issue OperationOutcome as JSON. `stride_code` is the stable, documented error code;
/// `text` says what was wrong in words a caller can act on (never internals, never PHI).
pub fn operation_outcome(
    severity: Severity,
    code: IssueCode,
    stride_code: &str,
    text: &str,
) -> serde_json::Value {
    let severity = match severity {
        Severity::Fatal => IssueSeverity::Fatal,
        Severity::Error => IssueSeverity::Error,
        Severity::Warning => IssueSeverity::Warning,
        Severity::Information => IssueSeverity::Information,
    };
    let coding = Coding::builder()
        .system(ERROR_SYSTEM.to_owned())
        .code(stride_code.to_owned())
        .display(stride_code.replace(['_', '-'], " "))
        .build()
        .expect("coding has no required fields");
    let details = CodeableConcept::builder()
        .coding(vec![Some(coding)])
        .text(text.to_owned())
        .build()
        .expect("codeable concept has no required fields");
    let issue = OperationOutcomeIssue::builder()
        .severity(severity)
        .code(code.fhir())
        .details(details)
        .build()
        .expect("severity and code are set");
    let oo = OperationOutcome::builder()
        .issue(vec![Some(issue)])
        .build()
        .expect("issue is set");
    serde_json::to_value(Resource::from(oo)).expect("an OperationOutcome serialises")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcome_is_a_fhir_resource_with_code_and_text() {
        let v = operation_outcome(
            Severity::Error,
            IssueCode::Invalid,
            "malformed_json",
            "body is not JSON",
        );
        assert_eq!(v["resourceType"], "OperationOutcome");
        assert_eq!(v["issue"][0]["severity"], "error");
        assert_eq!(v["issue"][0]["code"], "invalid");
        assert_eq!(
            v["issue"][0]["details"]["coding"][0]["code"],
            "malformed_json"
        );
        assert_eq!(v["issue"][0]["details"]["text"], "body is not JSON");
        // Round-trips through the R4 model: what we emit parses as FHIR.
        let back: Resource = serde_json::from_value(v).unwrap();
        assert!(matches!(back, Resource::OperationOutcome(_)));
    }
}
