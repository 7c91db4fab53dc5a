//! Seals: the audit log signed with a key that is not in the database. The hash chain proves
//! that the entries are as they were written only to someone who trusts the database: its
//! writer could delete the newest entries, or rewrite a decision and recompute every hash
//! after it. Each entry's hash is therefore signed (Ed25519) with the service's key, and
//! checkpoints of every chain head (`stride audit anchor`) are signed and kept outside the
//! database, so a deleted tail or a re-chained log shows even if every hash was recomputed.
//! Verifying needs only the public keys, so an auditor holds nothing that could seal.

use std::collections::BTreeMap;
use std::path::Path;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair, UnparsedPublicKey, ED25519};
use base64::Engine;
use serde::{Deserialize, Serialize};

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn unb64(s: &str) -> Result<Vec<u8>, String> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s.trim_end_matches('='))
        .map_err(|_| "not base64url".to_owned())
}

/// An entry's (or a checkpoint's) signature and the id of the key that made it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Seal {
    pub kid: String,
    pub sig: String,
}

/// The signing key of this service (one at a time; rotated by giving a new `kid`).
pub struct Sealer {
    kid: String,
    pair: Ed25519KeyPair,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sealer").field("kid", &self.kid).finish()
    }
}

impl Sealer {
    pub fn kid(&self) -> &str {
        &self.kid
    }

    pub fn seal(&self, message: &[u8]) -> Seal {
        Seal {
            kid: self.kid.clone(),
            sig: b64(self.pair.sign(message).as_ref()),
        }
    }

    fn public(&self) -> Vec<u8> {
        self.pair.public_key().as_ref().to_vec()
    }
}

/// How long a rotated key may still seal after its rotation: the rolling update that brings
/// the new key file to every replica. A rotated key file is deployed the day it is made.
pub const ROTATION_GRACE_US: i64 = 24 * 3600 * 1_000_000;

/// Public keys by id: what verifies seals. Retired keys stay here so old entries verify, each
/// with the time it was rotated: a seal it made on an entry written after that (and the
/// rollout's grace) is a forgery by whoever kept the old private key.
#[derive(Debug, Clone, Default)]
pub struct SealKeys {
    keys: BTreeMap<String, Vec<u8>>,
    /// Rotated keys: kid → when (µs since the epoch).
    retired: BTreeMap<String, i64>,
}

impl SealKeys {
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// `verify`, and the key was not retired before `at` (µs since the epoch: when the entry
    /// or checkpoint says it was made) by more than the rollout's grace.
    pub fn verify_at(&self, seal: &Seal, message: &[u8], at: i64) -> Result<(), &'static str> {
        self.verify(seal, message)?;
        match self.retired.get(&seal.kid) {
            Some(rotated) if at > rotated.saturating_add(ROTATION_GRACE_US) => {
                Err("sealed by a key that had been rotated out before (a retired key)")
            }
            _ => Ok(()),
        }
    }

    pub fn verify(&self, seal: &Seal, message: &[u8]) -> Result<(), &'static str> {
        let key = self
            .keys
            .get(&seal.kid)
            .ok_or("sealed with a key this check does not know")?;
        let sig = unb64(&seal.sig).map_err(|_| "the seal is not a signature")?;
        UnparsedPublicKey::new(&ED25519, key)
            .verify(message, &sig)
            .map_err(|_| "the seal does not verify (re-chained or forged)")
    }
}

/// The key file (`STRIDE_AUDIT_KEY_FILE`, or `--keys` for verify): the signing key, if this
/// holder may seal, and the public keys of every key ever used.
///
/// ```json
/// {"sign": {"kid": "2026-12", "pkcs8": "<base64url PKCS#8 Ed25519>"},
///  "verify": {"2026-06": "<base64url public key>", "2026-12": "<…>"}}
/// ```
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct KeyFile {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    sign: Option<SignKey>,
    #[serde(default)]
    verify: BTreeMap<String, String>,
    /// Keys rotated out, with when (RFC 3339): the end of each one's validity window.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    retired: BTreeMap<String, String>,
}

fn rfc3339_us(t: &str) -> Option<i64> {
    time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339)
        .ok()
        .map(|t| (t.unix_timestamp_nanos() / 1000) as i64)
}

fn us_rfc3339(us: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(us) * 1000)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct SignKey {
    kid: String,
    pkcs8: String,
}

/// What a key file gives: maybe a sealer, and the keys that verify.
#[derive(Debug)]
pub struct AuditKeys {
    pub sealer: Option<std::sync::Arc<Sealer>>,
    pub verify: SealKeys,
}

impl AuditKeys {
    pub fn load(path: &Path) -> Result<AuditKeys, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        Self::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    pub fn parse(text: &str) -> Result<AuditKeys, String> {
        let file: KeyFile = serde_json::from_str(text).map_err(|e| e.to_string())?;
        let mut verify = SealKeys::default();
        for (kid, public) in &file.verify {
            let key = unb64(public).map_err(|e| format!("verify.{kid}: {e}"))?;
            if key.len() != 32 {
                return Err(format!("verify.{kid}: not an Ed25519 public key"));
            }
            verify.keys.insert(kid.clone(), key);
        }
        for (kid, at) in &file.retired {
            let at =
                rfc3339_us(at).ok_or_else(|| format!("retired.{kid}: not an RFC 3339 time"))?;
            if !verify.keys.contains_key(kid) {
                return Err(format!("retired.{kid}: not a key of `verify`"));
            }
            verify.retired.insert(kid.clone(), at);
        }
        let sealer = match file.sign {
            Some(k) => {
                if k.kid.is_empty() || k.kid.len() > 64 {
                    return Err("sign.kid: 1 to 64 characters".into());
                }
                let der = unb64(&k.pkcs8).map_err(|e| format!("sign.pkcs8: {e}"))?;
                let pair = Ed25519KeyPair::from_pkcs8(&der)
                    .or_else(|_| Ed25519KeyPair::from_pkcs8_maybe_unchecked(&der))
                    .map_err(|_| "sign.pkcs8: not an Ed25519 PKCS#8 key".to_owned())?;
                if file.retired.contains_key(&k.kid) {
                    return Err(format!("sign.kid: {} was rotated out (retired)", k.kid));
                }
                let sealer = Sealer { kid: k.kid, pair };
                // The signing key verifies its own seals, whatever `verify` lists.
                let public = sealer.public();
                match verify.keys.get(sealer.kid()) {
                    Some(listed) if *listed != public => {
                        return Err(format!(
                            "verify.{}: is not the public key of the signing key",
                            sealer.kid()
                        ))
                    }
                    _ => verify.keys.insert(sealer.kid.clone(), public),
                };
                Some(std::sync::Arc::new(sealer))
            }
            None => None,
        };
        if sealer.is_none() && verify.is_empty() {
            return Err("no keys: give `sign`, `verify` or both".into());
        }
        Ok(AuditKeys { sealer, verify })
    }

    /// A new key file with one fresh signing key (`stride audit keygen`), keeping the public
    /// keys of `previous` so that entries sealed before the rotation still verify.
    pub fn generate(kid: &str, previous: Option<&AuditKeys>) -> Result<String, String> {
        let der = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new())
            .map_err(|_| "cannot generate a key".to_owned())?;
        let pair = Ed25519KeyPair::from_pkcs8(der.as_ref()).map_err(|_| "generated key")?;
        let mut verify: BTreeMap<String, String> = previous
            .map(|p| {
                p.verify
                    .keys
                    .iter()
                    .map(|(k, v)| (k.clone(), b64(v)))
                    .collect()
            })
            .unwrap_or_default();
        if verify.contains_key(kid) {
            return Err(format!("key id {kid} is used already; choose a new one"));
        }
        verify.insert(kid.to_owned(), b64(pair.public_key().as_ref()));
        // The key this one replaces ends its window now (and earlier rotations stay recorded).
        let mut retired: BTreeMap<String, String> = previous
            .map(|p| {
                p.verify
                    .retired
                    .iter()
                    .map(|(k, at)| (k.clone(), us_rfc3339(*at)))
                    .collect()
            })
            .unwrap_or_default();
        if let Some(old) = previous.and_then(|p| p.sealer.as_ref()) {
            let now = (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1000) as i64;
            retired.insert(old.kid().to_owned(), us_rfc3339(now));
        }
        let file = KeyFile {
            sign: Some(SignKey {
                kid: kid.to_owned(),
                pkcs8: b64(der.as_ref()),
            }),
            verify,
            retired,
        };
        serde_json::to_string_pretty(&file).map_err(|e| e.to_string())
    }

    /// The same file without the signing key: what an auditor is given.
    pub fn public_only(&self) -> String {
        let file = KeyFile {
            sign: None,
            verify: self
                .verify
                .keys
                .iter()
                .map(|(k, v)| (k.clone(), b64(v)))
                .collect(),
            retired: self
                .verify
                .retired
                .iter()
                .map(|(k, at)| (k.clone(), us_rfc3339(*at)))
                .collect(),
        };
        serde_json::to_string_pretty(&file).expect("a map of strings")
    }
}

/// A signed statement of one chain's head, kept outside the database (one JSON line each).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// As the chain holds it (a tenant an earlier version accepted is still anchored).
    #[serde(deserialize_with = "crate::TenantId::deserialize_stored")]
    pub tenant: crate::TenantId,
    pub seq: i64,
    pub hash: String,
    /// RFC 3339, when it was taken.
    pub time: String,
    pub kid: String,
    pub sig: String,
}

impl Checkpoint {
    fn message(tenant: &crate::TenantId, seq: i64, hash: &str, time: &str) -> Vec<u8> {
        serde_json::json!(["stride-audit-checkpoint", tenant, seq, hash, time])
            .to_string()
            .into_bytes()
    }

    pub fn new(
        sealer: &Sealer,
        tenant: &crate::TenantId,
        seq: i64,
        hash: &str,
        time: &str,
    ) -> Checkpoint {
        let seal = sealer.seal(&Self::message(tenant, seq, hash, time));
        Checkpoint {
            tenant: tenant.to_owned(),
            seq,
            hash: hash.to_owned(),
            time: time.to_owned(),
            kid: seal.kid,
            sig: seal.sig,
        }
    }

    pub fn verify(&self, keys: &SealKeys) -> Result<(), &'static str> {
        let at = rfc3339_us(&self.time).ok_or("the checkpoint's time is not RFC 3339")?;
        keys.verify_at(
            &Seal {
                kid: self.kid.clone(),
                sig: self.sig.clone(),
            },
            &Self::message(&self.tenant, self.seq, &self.hash, &self.time),
            at,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seal_verifies_with_the_public_key_only_and_nothing_else_does() {
        let file = AuditKeys::generate("k1", None).unwrap();
        let keys = AuditKeys::parse(&file).unwrap();
        let sealer = keys.sealer.as_ref().unwrap();
        let seal = sealer.seal(b"hash-1");
        let auditor = AuditKeys::parse(&keys.public_only()).unwrap();
        assert!(auditor.sealer.is_none(), "the auditor cannot seal");
        assert!(auditor.verify.verify(&seal, b"hash-1").is_ok());
        assert!(auditor.verify.verify(&seal, b"hash-2").is_err());
        let other = AuditKeys::parse(&AuditKeys::generate("k1", None).unwrap()).unwrap();
        assert!(
            other.verify.verify(&seal, b"hash-1").is_err(),
            "another key"
        );
    }

    #[test]
    fn a_rotated_key_file_still_verifies_old_seals() {
        let old = AuditKeys::parse(&AuditKeys::generate("k1", None).unwrap()).unwrap();
        let seal = old.sealer.as_ref().unwrap().seal(b"h");
        let new = AuditKeys::parse(&AuditKeys::generate("k2", Some(&old)).unwrap()).unwrap();
        assert_eq!(new.sealer.as_ref().unwrap().kid(), "k2");
        assert!(new.verify.verify(&seal, b"h").is_ok());
        assert!(
            AuditKeys::generate("k1", Some(&old)).is_err(),
            "ids are not reused"
        );
    }

    #[test]
    fn a_rotated_key_seals_nothing_written_after_its_rotation() {
        let old = AuditKeys::parse(&AuditKeys::generate("k1", None).unwrap()).unwrap();
        let sealer = old.sealer.as_ref().unwrap().clone();
        let text = AuditKeys::generate("k2", Some(&old)).unwrap();
        let new = AuditKeys::parse(&text).unwrap();
        let rotated = *new
            .verify
            .retired
            .get("k1")
            .expect("k1's rotation recorded");
        let seal = sealer.seal(b"h");
        // Before the rotation, and during the rollout that follows it: k1's seals hold.
        assert!(new.verify.verify_at(&seal, b"h", rotated - 1).is_ok());
        assert!(new
            .verify
            .verify_at(&seal, b"h", rotated + ROTATION_GRACE_US)
            .is_ok());
        // After it: an entry of that time sealed by k1 is a forgery.
        assert!(new
            .verify
            .verify_at(&seal, b"h", rotated + ROTATION_GRACE_US + 1)
            .is_err());
        // The window travels to the auditor's public file and to the next rotation.
        let auditor = AuditKeys::parse(&new.public_only()).unwrap();
        assert_eq!(auditor.verify.retired.get("k1"), Some(&rotated));
        let third = AuditKeys::parse(&AuditKeys::generate("k3", Some(&new)).unwrap()).unwrap();
        assert_eq!(third.verify.retired.get("k1"), Some(&rotated));
        assert!(third.verify.retired.contains_key("k2"));
        // A retired key cannot be made the signing key again.
        let revived = text.replacen("\"kid\": \"k2\"", "\"kid\": \"k1\"", 1);
        assert!(AuditKeys::parse(&revived).is_err());
    }

    #[test]
    fn a_checkpoint_binds_tenant_seq_hash_and_time() {
        let keys = AuditKeys::parse(&AuditKeys::generate("k1", None).unwrap()).unwrap();
        let cp = Checkpoint::new(
            keys.sealer.as_ref().unwrap(),
            &crate::TenantId::stored("a".into()),
            7,
            "abc",
            "2026-12-01T00:00:00Z",
        );
        assert!(cp.verify(&keys.verify).is_ok());
        // A checkpoint file is read back as written: a tenant an earlier version accepted,
        // which no longer parses, is still a chain to anchor and verify.
        let old = Checkpoint::new(
            keys.sealer.as_ref().unwrap(),
            &crate::TenantId::stored(" clinic-a".into()),
            7,
            "abc",
            "2026-12-01T00:00:00Z",
        );
        let line = serde_json::to_string(&old).unwrap();
        let read: Checkpoint = serde_json::from_str(&line).unwrap();
        assert!(read == old && read.verify(&keys.verify).is_ok());
        for forged in [
            Checkpoint {
                seq: 6,
                ..cp.clone()
            },
            Checkpoint {
                tenant: crate::TenantId::stored("b".into()),
                ..cp.clone()
            },
            Checkpoint {
                hash: "abd".into(),
                ..cp.clone()
            },
        ] {
            assert!(forged.verify(&keys.verify).is_err(), "{forged:?}");
        }
        // Every field right, the seal made by another key under the same id: only the
        // signature can tell, and it does.
        let other = AuditKeys::parse(&AuditKeys::generate("k1", None).unwrap()).unwrap();
        let by_other = Checkpoint::new(
            other.sealer.as_ref().unwrap(),
            &crate::TenantId::stored("a".into()),
            7,
            "abc",
            "2026-12-01T00:00:00Z",
        );
        assert!(by_other.verify(&other.verify).is_ok());
        assert!(
            by_other.verify(&keys.verify).is_err(),
            "a checkpoint signed by another key verifies"
        );
    }
}
