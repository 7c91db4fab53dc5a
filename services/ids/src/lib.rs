//! The identifiers every layer passes, as types of their own, and the FHIR id check. A crate
//! apart because the tenant is established in `stride-auth` (the trust file says which clinic an
//! issuer's callers belong to) and stored by `stride-store`, and a FHIR id is checked by both
//! the hook's parse (`stride-hooks`) and the store's patient reference, and none of these may
//! depend on another (ARCHITECTURE.md: auth pulls no database, the store no HTTP client). No
//! database type here either: the store binds a tenant as its text.

mod tenant;

pub use tenant::{TenantError, TenantId};

/// Whether `s` is a FHIR logical id (R4 `id`: 1 to 64 of `A-Z a-z 0-9 - .`); anything else is
/// not an id Stride can search with or refer to.
pub fn is_fhir_id(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
}
