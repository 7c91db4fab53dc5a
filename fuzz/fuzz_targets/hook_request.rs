//! Any bytes as a hook request body: the parser answers a typed request or a reason, never
//! panics, and never accepts a request without the fields CDS Hooks 2.0 requires.
#![no_main]

use libfuzzer_sys::fuzz_target;
use stride_hooks::{request::parse, Hook};

fuzz_target!(|data: &[u8]| {
    for hook in [Hook::PatientView, Hook::OrderSelect, Hook::OrderSign] {
        for loopback in [false, true] {
            if let Ok(r) = parse(data, hook, loopback) {
                assert!(!r.hook_instance.trim().is_empty());
                assert!(!r.context.patient_id.is_empty());
                assert!(!r.context.user_id.trim().is_empty());
                if let Some(server) = &r.fhir_server {
                    assert!(
                        loopback || server.scheme() == "https",
                        "plain http accepted: {server}"
                    );
                }
            }
        }
    }
});
