//! A content digest of a node's application folder, so nodes whose binaries differ from the
//! primary's ("Version does not match") can be named. Node-local files, key files, logs and
//! temp files are left out: they may legitimately differ.
//!
//! ```text
//! digest = BLAKE3( "keyferry app-folder digest v2\0"
//!                  || for each file, sorted by relative path ('/'-separated, bytewise):
//!                       u32be(len(path)) || path || BLAKE3(content) )
//! ```
//!
//! v2 (BLAKE3) replaced v1 (SHA-256) so the audit and `sync verify` share one hashing code;
//! a node report from an older keyferry carries a v1 digest and shows as different.

use crate::error::{Error, Result};
use crate::fingerprint::FileHash;
use crate::profile::Profile;
use crate::sync::hash::Hashed;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

const DOMAIN: &[u8] = b"keyferry app-folder digest v2\0";
pub use crate::sync::MAX_FILES;

/// Summary carried in node reports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppDigest {
    pub digest: FileHash,
    pub files: u64,
}

/// Whether a relative path is left out of the digest: what a sync leaves alone (key and
/// node-local files, logs, temp files), by the same rule ([`crate::sync::classify`]).
pub fn excluded(rel: &str, profile: &Profile) -> bool {
    crate::sync::classify(rel, profile) != crate::sync::Class::Normal
}

/// Relative path → BLAKE3 of every included file under `root`, hashed on every core by the
/// same code as `keyferry sync verify` ([`crate::sync::hash`]).
pub fn file_hashes(root: &Path, profile: &Profile) -> Result<BTreeMap<String, FileHash>> {
    let mut files: Vec<(String, u64)> = Vec::new();
    crate::fs::walk(root, |rel, e, ft| {
        if ft.is_symlink() || excluded(rel, profile) {
            return Ok(false);
        }
        if ft.is_file() {
            if files.len() >= MAX_FILES {
                return Err(Error::InvalidInput(format!(
                    "{} holds more than {MAX_FILES} files; is it the application folder?",
                    root.display()
                )));
            }
            let len = e.metadata().map(|m| m.len()).unwrap_or(0);
            files.push((rel.to_owned(), len));
        }
        Ok(ft.is_dir())
    })?;
    let tree = crate::fs::Tree::open(root)?;
    let list: Vec<crate::sync::hash::Item> = files
        .iter()
        .map(|(rel, len)| (&tree, rel.as_str(), *len))
        .collect();
    let hashes = crate::sync::hash::hash_many(&list, usize::MAX, &|_| {})?;
    let mut out = BTreeMap::new();
    for ((rel, _), h) in files.into_iter().zip(hashes) {
        // A file that became a link or vanished since the listing counts as empty: it
        // differs from any real binary, so the node is named.
        let h = match h {
            Hashed::Hash(h) => h,
            _ => FileHash(*blake3::hash(b"").as_bytes()),
        };
        out.insert(rel, h);
    }
    Ok(out)
}

pub fn digest_of(hashes: &BTreeMap<String, FileHash>) -> AppDigest {
    let mut h = blake3::Hasher::new();
    h.update(DOMAIN);
    for (path, fh) in hashes {
        h.update(&(path.len() as u32).to_be_bytes());
        h.update(path.as_bytes());
        h.update(&fh.0);
    }
    AppDigest {
        digest: FileHash(*h.finalize().as_bytes()),
        files: hashes.len() as u64,
    }
}

/// Paths that differ between two folders' hash maps (added, removed or changed), sorted.
pub fn differing_paths(
    a: &BTreeMap<String, FileHash>,
    b: &BTreeMap<String, FileHash>,
) -> Vec<String> {
    let mut v: Vec<String> = a
        .iter()
        .filter(|(p, h)| b.get(*p) != Some(h))
        .map(|(p, _)| p.clone())
        .chain(b.keys().filter(|p| !a.contains_key(*p)).cloned())
        .collect();
    v.sort();
    v.dedup();
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::ProfileId;

    #[test]
    fn node_local_keys_and_logs_do_not_count_but_binaries_do() {
        let p = Profile::builtin(ProfileId::SecretServer).unwrap();
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        for d in [a.path(), b.path()] {
            std::fs::create_dir_all(d.join("bin")).unwrap();
            std::fs::create_dir_all(d.join("logs")).unwrap();
            std::fs::write(d.join("bin/Thycotic.dll"), b"v10.9").unwrap();
        }
        std::fs::write(a.path().join("database.config"), b"A").unwrap();
        std::fs::write(b.path().join("database.config"), b"B").unwrap();
        std::fs::write(a.path().join("encryption.config"), b"K1").unwrap();
        std::fs::write(b.path().join("logs/today.txt"), b"noise").unwrap();
        std::fs::write(b.path().join("Web.log"), b"noise").unwrap();
        let ha = file_hashes(a.path(), &p).unwrap();
        let hb = file_hashes(b.path(), &p).unwrap();
        assert_eq!(digest_of(&ha), digest_of(&hb));
        std::fs::write(b.path().join("bin/Thycotic.dll"), b"v11.0").unwrap();
        let hb = file_hashes(b.path(), &p).unwrap();
        assert_ne!(digest_of(&ha), digest_of(&hb));
        assert_eq!(differing_paths(&ha, &hb), ["bin/Thycotic.dll"]);
    }
}
