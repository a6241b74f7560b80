//! The plaintext inside a bundle, byte for byte (see `docs/bundle-format.md`):
//!
//! ```text
//! keyferry-bundle 1\n          format name and version, ASCII
//! {header JSON}\n              one line of UTF-8 JSON, at most 64 KiB
//! <entry 0 bytes><entry 1 bytes>...   the key files, in header order, lengths from the header
//! ```
//!
//! Key bytes never pass through the JSON codec: they are read straight into [`KeyBytes`]
//! buffers of the declared length, and nothing may follow the last entry.

use crate::error::{Error, Result};
use crate::fingerprint::{FileHash, Fingerprint};
use crate::profile::{ProfileId, Role};
use crate::secret::KeyBytes;
use crate::time::Timestamp;
use serde::{Deserialize, Serialize};
use std::io::{self, Read, Write};

pub use crate::fs::name::check_plain_name;

/// First line's text before the version number.
pub const MAGIC: &str = "keyferry-bundle";
/// The format version this build writes and reads.
pub const FORMAT_VERSION: u32 = 1;
/// Largest header line accepted.
pub const MAX_HEADER: usize = 64 * 1024;
/// Most entries in one bundle.
pub const MAX_ENTRIES: usize = 32;
/// Largest single key file carried (the vendor export files are well below this).
pub const MAX_ENTRY_LEN: u64 = crate::fs::MAX_KEY_FILE;
/// Largest sum of entry lengths.
pub const MAX_TOTAL_LEN: u64 = 64 * 1024 * 1024;

/// Where the bundle came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Source {
    pub node: String,
    pub role: Role,
    pub host: String,
}

/// What the header says about one key file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EntryMeta {
    pub name: String,
    pub len: u64,
    pub sha256: FileHash,
    pub roles: Vec<Role>,
    /// The source file was a DPAPI blob of this scope, decrypted for transport.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dpapi: Option<crate::dpapi::Scope>,
}

/// The JSON header line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Header {
    pub created: Timestamp,
    pub expires: Timestamp,
    pub cluster: Option<String>,
    pub profile: ProfileId,
    pub source: Source,
    pub fingerprint: Fingerprint,
    pub entries: Vec<EntryMeta>,
}

impl Header {
    /// The fingerprint recomputed from the entries' hashes.
    pub fn computed_fingerprint(&self) -> Fingerprint {
        Fingerprint::of(self.entries.iter().map(|e| (e.name.as_str(), &e.sha256)))
    }
}

/// A decrypted bundle: header plus the key bytes of each entry.
pub struct Manifest {
    /// The bundle's header: its facts and each entry's name, size and hash.
    pub header: Header,
    contents: Vec<KeyBytes>,
}

impl Manifest {
    /// Builds a manifest from key files; hashes, lengths and the fingerprint are computed here.
    pub fn new(
        created: Timestamp,
        expires: Timestamp,
        cluster: Option<String>,
        profile: ProfileId,
        source: Source,
        files: Vec<(String, Vec<Role>, KeyBytes)>,
    ) -> Manifest {
        let mut entries = Vec::with_capacity(files.len());
        let mut contents = Vec::with_capacity(files.len());
        for (name, roles, bytes) in files {
            entries.push(EntryMeta {
                name,
                len: bytes.len() as u64,
                sha256: FileHash::of(bytes.expose_secret()),
                roles,
                dpapi: None,
            });
            contents.push(bytes);
        }
        let fingerprint = Fingerprint::of(entries.iter().map(|e| (e.name.as_str(), &e.sha256)));
        Manifest {
            header: Header {
                created,
                expires,
                cluster,
                profile,
                source,
                fingerprint,
                entries,
            },
            contents,
        }
    }

    /// The entries `role` takes, alone (their fingerprint recomputed): what a node of that
    /// role is sent, never another role's files.
    pub fn for_role(&self, role: Role) -> Manifest {
        let (entries, contents): (Vec<EntryMeta>, Vec<KeyBytes>) = self
            .entries()
            .filter(|(e, _)| e.roles.contains(&role))
            .map(|(e, b)| (e.clone(), KeyBytes::copy_from(b.expose_secret())))
            .unzip();
        let mut header = self.header.clone();
        header.entries = entries;
        header.fingerprint = header.computed_fingerprint();
        Manifest { header, contents }
    }

    /// Entry metadata with its key bytes.
    pub fn entries(&self) -> impl Iterator<Item = (&EntryMeta, &KeyBytes)> {
        self.header.entries.iter().zip(self.contents.iter())
    }

    /// Writes the plaintext form.
    pub fn write_to(&self, w: &mut impl Write) -> io::Result<()> {
        writeln!(w, "{MAGIC} {FORMAT_VERSION}")?;
        let header = serde_json::to_vec(&self.header).map_err(io::Error::other)?;
        w.write_all(&header)?;
        w.write_all(b"\n")?;
        for c in &self.contents {
            w.write_all(c.expose_secret())?;
        }
        Ok(())
    }

    /// Reads the plaintext form, checking structure only (names, hashes and expiry are
    /// checked by [`Manifest::check_names`], [`Manifest::verify_integrity`] and the importer,
    /// in the order the importer documents).
    ///
    /// I/O errors other than a short read come from the decrypting reader and mean the
    /// ciphertext was damaged.
    pub fn read_from(r: &mut impl Read) -> Result<Manifest> {
        let first = read_line(r, MAGIC.len() + 12)?;
        let version = first
            .strip_prefix(MAGIC.as_bytes())
            .and_then(|rest| rest.strip_prefix(b" "))
            .ok_or_else(|| Error::BundleFormat("this is not a keyferry bundle".into()))?;
        let version = std::str::from_utf8(version)
            .ok()
            .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|v| v.parse::<u32>().ok())
            .ok_or_else(|| Error::BundleFormat("the format version is unreadable".into()))?;
        if version != FORMAT_VERSION {
            return Err(Error::BundleFormat(format!(
                "format version {version} (this build reads version {FORMAT_VERSION})"
            )));
        }
        let header_line = read_line(r, MAX_HEADER)?;
        let header: Header = serde_json::from_slice(&header_line)
            .map_err(|e| Error::BundleFormat(format!("bad header: {e}")))?;
        if header.entries.len() > MAX_ENTRIES {
            return Err(Error::BundleFormat(format!(
                "{} entries (at most {MAX_ENTRIES})",
                header.entries.len()
            )));
        }
        let mut total = 0u64;
        for e in &header.entries {
            if e.len > MAX_ENTRY_LEN {
                return Err(Error::BundleFormat(format!(
                    "entry of {} bytes (at most {MAX_ENTRY_LEN})",
                    e.len
                )));
            }
            total += e.len;
        }
        if total > MAX_TOTAL_LEN {
            return Err(Error::BundleFormat(format!(
                "{total} bytes of entries (at most {MAX_TOTAL_LEN})"
            )));
        }
        let mut contents = Vec::with_capacity(header.entries.len());
        for e in &header.entries {
            let mut buf = vec![0u8; e.len as usize];
            if let Err(err) = r.read_exact(&mut buf) {
                zeroize::Zeroize::zeroize(&mut buf);
                return Err(payload_error(err));
            }
            contents.push(KeyBytes::new(buf));
        }
        let mut probe = [0u8; 1];
        match r.read(&mut probe) {
            Ok(0) => {}
            Ok(_) => return Err(Error::BundleFormat("bytes follow the last entry".into())),
            Err(err) => return Err(payload_error(err)),
        }
        Ok(Manifest { header, contents })
    }

    /// Parses plaintext bytes (tests and the fuzzer).
    pub fn parse(mut bytes: &[u8]) -> Result<Manifest> {
        Manifest::read_from(&mut bytes)
    }

    /// Entry names must be plain file names, unique, and key files of `allowed` (the bundle
    /// profile's key names) when that list is given.
    pub fn check_names(&self, allowed: Option<&[&str]>) -> Result<()> {
        let mut seen = std::collections::HashSet::new();
        for e in &self.header.entries {
            check_plain_name(&e.name)?;
            if !seen.insert(e.name.as_str()) {
                return Err(Error::BadEntryName {
                    name: e.name.clone(),
                    why: "it appears twice",
                });
            }
            if let Some(allowed) = allowed {
                if !allowed.contains(&e.name.as_str()) {
                    return Err(Error::BadEntryName {
                        name: e.name.clone(),
                        why: "it is not a key file of the bundle's profile",
                    });
                }
            }
        }
        Ok(())
    }

    /// Every entry's length and SHA-256 match the header, and the header's fingerprint is the
    /// one its entries give.
    pub fn verify_integrity(&self) -> Result<()> {
        for (meta, bytes) in self.entries() {
            if bytes.len() as u64 != meta.len
                || !FileHash::of(bytes.expose_secret()).ct_eq(&meta.sha256)
            {
                return Err(Error::IntegrityMismatch(format!(
                    "{} does not match its SHA-256 in the manifest",
                    meta.name
                )));
            }
        }
        if !self
            .header
            .computed_fingerprint()
            .ct_eq(&self.header.fingerprint)
        {
            return Err(Error::IntegrityMismatch(
                "the key-set fingerprint does not match the entries".into(),
            ));
        }
        Ok(())
    }
}

fn payload_error(err: io::Error) -> Error {
    if err.kind() == io::ErrorKind::UnexpectedEof {
        Error::BundleFormat("the entries are shorter than the header declares".into())
    } else {
        Error::BundleCorrupt(format!("payload: {err}"))
    }
}

fn read_line(r: &mut impl Read, max: usize) -> Result<Vec<u8>> {
    let mut line = Vec::new();
    let mut b = [0u8; 1];
    loop {
        match r.read(&mut b) {
            Ok(0) => {
                return Err(Error::BundleFormat(if line.is_empty() {
                    "the bundle is empty".into()
                } else {
                    "a header line is not terminated".into()
                }))
            }
            Ok(_) if b[0] == b'\n' => return Ok(line),
            Ok(_) => {
                if line.len() >= max {
                    return Err(Error::BundleFormat("a header line is too long".into()));
                }
                line.push(b[0]);
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(payload_error(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample(files: Vec<(&str, &[u8])>) -> Manifest {
        Manifest::new(
            Timestamp::from_unix(1_800_000_000),
            Timestamp::from_unix(1_800_007_200),
            Some("prod".into()),
            ProfileId::SecretServer,
            Source {
                node: "web1".into(),
                role: Role::Primary,
                host: "WEB1".into(),
            },
            files
                .into_iter()
                .map(|(n, b)| (n.to_string(), vec![Role::Secondary], KeyBytes::copy_from(b)))
                .collect(),
        )
    }

    fn bytes_of(m: &Manifest) -> Vec<u8> {
        let mut v = Vec::new();
        m.write_to(&mut v).unwrap();
        v
    }

    /// A node is sent only its role's files: an Action host never gets the HA secondary's
    /// `appsettings.json`; the fingerprint is that of what is sent.
    #[test]
    fn a_role_gets_only_its_files() {
        let m = Manifest::new(
            Timestamp::from_unix(1_800_000_000),
            Timestamp::from_unix(1_800_007_200),
            None,
            ProfileId::PrivilegeSecure,
            Source {
                node: "nps1".into(),
                role: Role::Primary,
                host: "NPS1".into(),
            },
            vec![
                (
                    "keys.exp".into(),
                    vec![Role::Secondary, Role::Action],
                    KeyBytes::copy_from(b"EXP"),
                ),
                (
                    "appsettings.json".into(),
                    vec![Role::Secondary],
                    KeyBytes::copy_from(b"{\"HA\":1}"),
                ),
            ],
        );
        let action = m.for_role(Role::Action);
        let names: Vec<&str> = action.entries().map(|(e, _)| e.name.as_str()).collect();
        assert_eq!(names, ["keys.exp"]);
        assert_eq!(action.entries().next().unwrap().1.expose_secret(), b"EXP");
        assert_eq!(
            action.header.fingerprint,
            action.header.computed_fingerprint()
        );
        assert_ne!(action.header.fingerprint, m.header.fingerprint);
        assert_eq!(
            m.for_role(Role::Secondary).header.fingerprint,
            m.header.fingerprint
        );
        assert_eq!(m.for_role(Role::Proxy).entries().count(), 0);
    }

    #[test]
    fn layout_is_as_documented() {
        let v = bytes_of(&sample(vec![("encryption.config", b"KEY")]));
        assert!(v.starts_with(b"keyferry-bundle 1\n{\"created\":\"2027-01-15T08:00:00Z\""));
        assert!(v.ends_with(b"]}\nKEY"));
    }

    #[test]
    fn rejects_other_versions_and_trailing_bytes() {
        let mut v = bytes_of(&sample(vec![("a", b"x")]));
        v[16] = b'2';
        assert!(
            matches!(Manifest::parse(&v), Err(Error::BundleFormat(m)) if m.contains("version 2"))
        );
        let mut v = bytes_of(&sample(vec![("a", b"x")]));
        v.push(0);
        assert!(matches!(Manifest::parse(&v), Err(Error::BundleFormat(_))));
        let v = bytes_of(&sample(vec![("a", b"xy")]));
        assert!(matches!(
            Manifest::parse(&v[..v.len() - 1]),
            Err(Error::BundleFormat(_))
        ));
        assert!(matches!(
            Manifest::parse(b"age-encryption.org/v1\n"),
            Err(Error::BundleFormat(_))
        ));
    }

    #[test]
    fn integrity_catches_swapped_bytes() {
        let v = bytes_of(&sample(vec![("a", b"xy")]));
        let mut t = v.clone();
        let n = t.len();
        t[n - 1] = b'z';
        let m = Manifest::parse(&t).unwrap();
        assert!(matches!(
            m.verify_integrity(),
            Err(Error::IntegrityMismatch(_))
        ));
        Manifest::parse(&v).unwrap().verify_integrity().unwrap();
    }

    #[test]
    fn names() {
        for bad in [
            "", "../x", "a/b", "a\\b", "C:x", "/etc", "..", ".", "nul", "con.txt", "a\0", "x ",
        ] {
            assert!(check_plain_name(bad).is_err(), "{bad:?}");
        }
        for good in [
            "encryption.config",
            "keys.exp",
            "appsettings.json",
            ".hidden-ok",
        ] {
            check_plain_name(good).unwrap();
        }
        let m = sample(vec![("a", b"1"), ("a", b"2")]);
        assert!(matches!(
            m.check_names(None),
            Err(Error::BadEntryName { .. })
        ));
        let m = sample(vec![("b", b"1")]);
        assert!(m.check_names(Some(&["a"])).is_err());
    }

    proptest! {
        #[test]
        fn write_then_read_round_trips(
            files in proptest::collection::btree_map("[a-z]{1,10}", proptest::collection::vec(any::<u8>(), 0..300), 0..5)
        ) {
            let m = sample(files.iter().map(|(n, c)| (n.as_str(), c.as_slice())).collect());
            let v = bytes_of(&m);
            let back = Manifest::parse(&v).unwrap();
            back.verify_integrity().unwrap();
            prop_assert_eq!(&back.header, &m.header);
            for ((_, a), (_, b)) in back.entries().zip(m.entries()) {
                prop_assert_eq!(a.expose_secret(), b.expose_secret());
            }
            prop_assert_eq!(bytes_of(&back), v);
        }

        #[test]
        fn arbitrary_bytes_never_panic(v in proptest::collection::vec(any::<u8>(), 0..400)) {
            let _ = Manifest::parse(&v);
        }
    }
}
