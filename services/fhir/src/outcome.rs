//! OperationOutcome: how every Stride endpoint says what went wrong.

use serde_json::json;

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
    Processing,
}

impl IssueCode {
    /// The code in http://hl7.org/fhir/issue-type.
    fn fhir(self) -> &'static str {
        match self {
            IssueCode::Invalid => "invalid",
            IssueCode::Structure => "structure",
            IssueCode::Required => "required",
            IssueCode::Value => "value",
            IssueCode::TooLong => "too-long",
            IssueCode::Security => "security",
            IssueCode::Login => "login",
            IssueCode::Forbidden => "forbidden",
            IssueCode::NotFound => "not-found",
            IssueCode::NotSupported => "not-supported",
            IssueCode::Conflict => "conflict",
            IssueCode::Incomplete => "incomplete",
            IssueCode::Transient => "transient",
            IssueCode::Exception => "exception",
            IssueCode::Timeout => "timeout",
            IssueCode::Throttled => "throttled",
            IssueCode::Processing => "processing",
        }
    }

    #[cfg(test)]
    const ALL: [IssueCode; 17] = [
        IssueCode::Invalid,
        IssueCode::Structure,
        IssueCode::Required,
        IssueCode::Value,
        IssueCode::TooLong,
        IssueCode::Security,
        IssueCode::Login,
        IssueCode::Forbidden,
        IssueCode::NotFound,
        IssueCode::NotSupported,
        IssueCode::Conflict,
        IssueCode::Incomplete,
        IssueCode::Transient,
        IssueCode::Exception,
        IssueCode::Timeout,
        IssueCode::Throttled,
        IssueCode::Processing,
    ];
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
        Severity::Fatal => "fatal",
        Severity::Error => "error",
        Severity::Warning => "warning",
        Severity::Information => "information",
    };
    // Written as JSON rather than through the fhir-sdk model: serialising its `Resource` enum
    // compiled serde code for every R4 resource into this crate, 5 of the 11 minutes of a cold
    // release build (docs/benchmarks.md, "A faster first run"). The test reads it back as the
    // model's OperationOutcome.
    json!({
        "resourceType": "OperationOutcome",
        "issue": [{
            "severity": severity,
            "code": code.fhir(),
            "details": {
                "coding": [{
                    "system": ERROR_SYSTEM,
                    "code": stride_code,
                    "display": stride_code.replace(['_', '-'], " "),
                }],
                "text": text,
            },
        }],
    })
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
        // What we emit reads as the R4 model's OperationOutcome.
        crate::careplan::check::<fhir_sdk::r4b::resources::OperationOutcome>(
            "OperationOutcome",
            &v,
        )
        .unwrap();
    }

    #[test]
    fn every_issue_code_and_severity_is_an_r4_code() {
        for code in IssueCode::ALL {
            for severity in [
                Severity::Fatal,
                Severity::Error,
                Severity::Warning,
                Severity::Information,
            ] {
                let v = operation_outcome(severity, code, "x", "y");
                crate::careplan::check::<fhir_sdk::r4b::resources::OperationOutcome>(
                    "OperationOutcome",
                    &v,
                )
                .unwrap_or_else(|e| panic!("{code:?} {severity:?}: {e}"));
            }
        }
    }
}
