//! The key-set fingerprint: one short value that is equal on two nodes exactly when they hold
//! the same key files with the same bytes.
//!
//! ```text
//! digest = SHA-256( "keyferry key-set fingerprint v1\0"
//!                   || u32be(entry count)
//!                   || for each entry, sorted by name (bytewise):
//!                        u32be(len(name)) || name (UTF-8) || SHA-256(content) )
//! shown  = "SHA256:" || base64(digest), standard alphabet, no padding
//! ```
//!
//! The domain prefix keeps it from ever equalling the plain hash of a file, and because it is
//! built from per-file hashes, it can be recomputed from a manifest or a report without the
//! key bytes.

use base64::prelude::{Engine, BASE64_STANDARD_NO_PAD};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};
use std::fmt;
use subtle::ConstantTimeEq;

const DOMAIN: &[u8] = b"keyferry key-set fingerprint v1\0";

/// A SHA-256 digest of one file.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FileHash(pub [u8; 32]);

impl FileHash {
    /// The SHA-256 of `bytes`.
    pub fn of(bytes: &[u8]) -> FileHash {
        FileHash(Sha256::digest(bytes).into())
    }

    /// Lowercase hex.
    pub fn to_hex(&self) -> String {
        let mut s = String::with_capacity(64);
        for b in self.0 {
            s.push_str(&format!("{b:02x}"));
        }
        s
    }

    /// Parses 64 lowercase hex digits.
    pub fn from_hex(s: &str) -> Option<FileHash> {
        if s.len() != 64
            || !s
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return None;
        }
        let mut out = [0u8; 32];
        for (i, o) in out.iter_mut().enumerate() {
            *o = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok()?;
        }
        Some(FileHash(out))
    }

    /// Constant-time equality: hashes of secrets are compared without early exit.
    pub fn ct_eq(&self, other: &FileHash) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}

impl fmt::Debug for FileHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FileHash({})", self.to_hex())
    }
}

impl Serialize for FileHash {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for FileHash {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        FileHash::from_hex(&s)
            .ok_or_else(|| serde::de::Error::custom("sha256 must be 64 lowercase hex digits"))
    }
}

/// The fingerprint of a set of key files.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fingerprint([u8; 32]);

impl Fingerprint {
    /// Computes the fingerprint of `(name, hash)` pairs; order does not matter.
    pub fn of<'a>(entries: impl IntoIterator<Item = (&'a str, &'a FileHash)>) -> Fingerprint {
        let mut v: Vec<(&str, &FileHash)> = entries.into_iter().collect();
        v.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
        let mut h = Sha256::new();
        h.update(DOMAIN);
        h.update((v.len() as u32).to_be_bytes());
        for (name, hash) in v {
            h.update((name.len() as u32).to_be_bytes());
            h.update(name.as_bytes());
            h.update(hash.0);
        }
        Fingerprint(h.finalize().into())
    }

    /// Parses the canonical `SHA256:<base64>` form; any other spelling is refused.
    pub fn parse(s: &str) -> Option<Fingerprint> {
        let b64 = s.strip_prefix("SHA256:")?;
        let bytes = BASE64_STANDARD_NO_PAD.decode(b64).ok()?;
        let arr: [u8; 32] = bytes.try_into().ok()?;
        let fp = Fingerprint(arr);
        (fp.to_string() == s).then_some(fp)
    }

    /// The 32 bytes.
    pub fn bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Twelve words (132 bits) for reading the fingerprint aloud.
    pub fn words(&self) -> Vec<&'static str> {
        crate::words::encode(&self.0, 12)
    }

    /// Compares in constant time.
    pub fn ct_eq(&self, other: &Fingerprint) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SHA256:{}", BASE64_STANDARD_NO_PAD.encode(self.0))
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Fingerprint({self})")
    }
}

impl Serialize for Fingerprint {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Fingerprint {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Fingerprint::parse(&s)
            .ok_or_else(|| serde::de::Error::custom("fingerprint must be SHA256:<base64>"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn known_vector() {
        // Pinned: changing the construction changes every node's fingerprint.
        let h = FileHash::of(b"key");
        let fp = Fingerprint::of([("encryption.config", &h)]);
        let mut manual = Sha256::new();
        manual.update(b"keyferry key-set fingerprint v1\0");
        manual.update(1u32.to_be_bytes());
        manual.update(17u32.to_be_bytes());
        manual.update(b"encryption.config");
        manual.update(Sha256::digest(b"key"));
        assert_eq!(fp.bytes(), &<[u8; 32]>::from(manual.finalize()));
        assert_eq!(fp.to_string().len(), "SHA256:".len() + 43);
    }

    #[test]
    fn not_the_plain_file_hash_and_name_matters() {
        let h = FileHash::of(b"key");
        let fp = Fingerprint::of([("a", &h)]);
        assert_ne!(fp.bytes(), &h.0);
        assert_ne!(fp, Fingerprint::of([("b", &h)]));
    }

    #[test]
    fn hex_round_trip_and_rejects_uppercase() {
        let h = FileHash::of(b"x");
        assert_eq!(FileHash::from_hex(&h.to_hex()), Some(h));
        assert_eq!(FileHash::from_hex(&h.to_hex().to_uppercase()), None);
    }

    proptest! {
        #[test]
        fn order_independent_and_parse_round_trip(
            files in proptest::collection::btree_map("[a-z.]{1,12}", any::<Vec<u8>>(), 0..6)
        ) {
            let hashes: Vec<(String, FileHash)> =
                files.iter().map(|(n, c)| (n.clone(), FileHash::of(c))).collect();
            let fwd = Fingerprint::of(hashes.iter().map(|(n, h)| (n.as_str(), h)));
            let rev = Fingerprint::of(hashes.iter().rev().map(|(n, h)| (n.as_str(), h)));
            prop_assert_eq!(fwd, rev);
            prop_assert_eq!(Fingerprint::parse(&fwd.to_string()), Some(fwd));
        }
    }
}
