//! Why SQLite keeps the two largest texts of a hook call compressed.
//!
//! Each hook call writes an audit entry whose facts are every record the decision read (15.6 KB
//! of canonical JSON for the load test's 60 Observations) and the answer kept for a retry
//! (23.6 KB). As text they filled about ten overflow pages per call, each written to the WAL and
//! again into the database at the checkpoint: most of the 120 KB written per call, and the SQLite
//! writer thread's time was mostly the kernel's, copying those pages (docs/benchmarks.md, "Where
//! a hook call's time went after stop 45"). Both are repetitive JSON: lz4 keeps the facts in
//! 1.5 KB and the answer in 5 KB, in 4 and 13 µs (the measurement: docs/benchmarks.md, "SQLite
//! keeps facts and answers compressed").
//!
//! A value is kept as a BLOB: lz4's block format with the text's length in front. Rows written
//! before keep their TEXT and read as before; the column's type says which it is. What the audit
//! chain hashes is the text, never these bytes, so a chain verifies the same either way.
//! PostgreSQL compresses large values itself (lz4 TOAST, migration 20261207000021).

use rusqlite::types::ValueRef;

/// The most a stored value may claim to unpack to. The largest facts are bounded by the hook
/// body limit; a length beyond this is an edited row, refused before anything is allocated.
const MOST: usize = 64 << 20;

pub(crate) fn pack(text: &str) -> Vec<u8> {
    lz4_flex::block::compress_prepend_size(text.as_bytes())
}

/// A stored value as text: a BLOB unpacked, a TEXT (a row written before) as it is. `None`
/// when it cannot be read (neither, or edited).
pub(crate) fn unpack(value: ValueRef<'_>) -> Option<String> {
    match value {
        ValueRef::Text(t) => String::from_utf8(t.to_vec()).ok(),
        ValueRef::Blob(b) => {
            let (len, packed) = lz4_flex::block::uncompressed_size(b).ok()?;
            if len > MOST {
                return None;
            }
            let mut out = vec![0; len];
            let n = lz4_flex::block::decompress_into(packed, &mut out).ok()?;
            out.truncate(n);
            String::from_utf8(out).ok()
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_packed_text_unpacks_to_itself_and_is_smaller() {
        let text = format!(
            "{{\"records\":[{}]}}",
            vec![r#"{"kind":"observation","status":"final"}"#; 200].join(",")
        );
        let packed = pack(&text);
        assert!(
            packed.len() * 5 < text.len(),
            "{} of {}",
            packed.len(),
            text.len()
        );
        assert_eq!(
            unpack(ValueRef::Blob(&packed)).as_deref(),
            Some(text.as_str())
        );
        assert_eq!(
            unpack(ValueRef::Text(text.as_bytes())).as_deref(),
            Some(text.as_str())
        );
    }

    #[test]
    fn an_edited_or_foreign_value_does_not_unpack() {
        let mut packed = pack("{\"records\":[]}");
        // A length no hook call writes: refused before allocating it.
        let huge = pack(&"x".repeat(100));
        let mut claim = huge.clone();
        claim[..4].copy_from_slice(&(u32::MAX).to_le_bytes());
        assert_eq!(unpack(ValueRef::Blob(&claim)), None);
        // Bytes that are not lz4 of what they claim.
        let n = packed.len();
        packed[n - 1] ^= 0xff;
        packed.truncate(n - 2);
        assert_eq!(unpack(ValueRef::Blob(&packed)), None);
        assert_eq!(unpack(ValueRef::Integer(3)), None);
        assert_eq!(unpack(ValueRef::Text(b"\xff\xfe")), None);
    }
}
