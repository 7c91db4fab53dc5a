//! The identifiers every layer passes, as types of their own. A crate apart because the tenant
//! is established in `stride-auth` (the trust file says which clinic an issuer's callers belong
//! to) and stored by `stride-store`, and neither may depend on the other (ARCHITECTURE.md: auth
//! pulls no database, the store no HTTP client). No database type here either: the store binds
//! a tenant as its text.

mod tenant;

pub use tenant::{TenantError, TenantId};
