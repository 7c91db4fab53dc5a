//! A clinic, as the trust file names it (or, when it names none, its issuer). Before this type
//! a tenant was a `&str` in about eighty signatures, and nothing told a clinic's name from a
//! patient's id, an issuer or a version in a call with four string arguments. Parsed where it
//! enters (the trust file, an activation's body, the command line), read back as stored (from
//! the database, a checkpoint file, a kept report), and never printed by accident: its `Debug`
//! hides the name and it has neither `Display` nor `Deref`, so a log line or an error message
//! carries one only through `as_str`.

use std::borrow::Borrow;

use serde::Deserialize as _;

/// The longest tenant accepted: an issuer URL stands in for an unnamed tenant, and the store's
/// keys and the audit chain's rows carry it on every entry.
pub const MAX_TENANT_BYTES: usize = 256;

/// A clinic's tenant: 1 to 256 bytes, no control characters, no space at either end.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TenantId(String);

/// Why a text is not a tenant (it quotes nothing of it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TenantError {
    Empty,
    TooLong,
    /// A control character, or a space at either end (a name pasted with its newline).
    Unprintable,
}

impl std::fmt::Display for TenantError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            TenantError::Empty => "a tenant cannot be empty",
            TenantError::TooLong => "a tenant is at most 256 bytes",
            TenantError::Unprintable => {
                "a tenant has no control characters and no space at either end"
            }
        })
    }
}

impl std::error::Error for TenantError {}

impl TenantId {
    /// A tenant as a trust file, a request body or a command line gives it.
    pub fn parse(text: &str) -> Result<TenantId, TenantError> {
        if text.is_empty() {
            return Err(TenantError::Empty);
        }
        if text.len() > MAX_TENANT_BYTES {
            return Err(TenantError::TooLong);
        }
        if text.chars().any(char::is_control) || text.trim() != text {
            return Err(TenantError::Unprintable);
        }
        Ok(TenantId(text.to_owned()))
    }

    /// A tenant read back from the store, as it was written (by this version or another).
    pub fn stored(text: String) -> TenantId {
        TenantId(text)
    }

    /// For `#[serde(deserialize_with)]` on what Stride wrote itself and reads back (a checkpoint
    /// file, a kept report): as written, like `stored`. A chain of a tenant an earlier version
    /// accepted and this one would not must still be anchored and verified.
    pub fn deserialize_stored<'de, D: serde::Deserializer<'de>>(
        d: D,
    ) -> Result<TenantId, D::Error> {
        String::deserialize(d).map(TenantId)
    }

    /// The name, for a record, a query, a path or an answer: never for a log.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Never the name: a caller or an entry printed for a developer names no clinic.
impl std::fmt::Debug for TenantId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TenantId(…)")
    }
}

/// As its text: an audit entry's hash and the exports carry the name, as before the type.
impl serde::Serialize for TenantId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

/// Parsed: a trust file or a request body with a tenant that is not one is refused.
impl<'de> serde::Deserialize<'de> for TenantId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<TenantId, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        TenantId::parse(&text).map_err(serde::de::Error::custom)
    }
}

impl PartialEq<str> for TenantId {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

impl PartialEq<&str> for TenantId {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

/// So that a map keyed by tenant is looked up with a stored row's text.
impl Borrow<str> for TenantId {
    fn borrow(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::{TenantError, TenantId};

    #[test]
    fn a_tenant_parses_from_a_name_or_an_issuer_and_never_prints_itself() {
        for good in [
            "clinic-a",
            "https://ehr.example.org/fhir",
            "Clinique Saint-Éloi",
            "a",
        ] {
            assert_eq!(TenantId::parse(good).unwrap().as_str(), good);
        }
        let long = "a".repeat(257);
        for (bad, why) in [
            ("", TenantError::Empty),
            (long.as_str(), TenantError::TooLong),
            ("clinic-a\n", TenantError::Unprintable),
            (" clinic-a", TenantError::Unprintable),
            ("clinic\u{0}a", TenantError::Unprintable),
        ] {
            assert_eq!(TenantId::parse(bad), Err(why), "{bad:?}");
        }
        assert!(TenantId::parse(&"a".repeat(256)).is_ok());
        let t = TenantId::parse("clinic-a").unwrap();
        assert_eq!(format!("{t:?}"), "TenantId(…)");
        assert_eq!(serde_json::to_string(&t).unwrap(), "\"clinic-a\"");
        assert_eq!(serde_json::from_str::<TenantId>("\"clinic-a\"").unwrap(), t);
        let refused = serde_json::from_str::<TenantId>("\"\"")
            .unwrap_err()
            .to_string();
        assert!(refused.contains("cannot be empty"), "{refused}");
        assert!(t == "clinic-a" && t != "clinic-b");
    }
}
