//! Reading a node's key files: their bytes (for export) or just their hashes (for
//! fingerprints and reports).

use crate::cluster::Node;
use crate::dpapi::{classify, Scope};
use crate::error::{Error, Result};
use crate::fingerprint::{FileHash, Fingerprint};
use crate::fs::read_key_file;
use crate::keys::manifest::MAX_ENTRY_LEN;
use crate::profile::KeySpec;
use crate::secret::KeyBytes;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// How a key file is protected on this node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum Protection {
    /// Plain bytes.
    None,
    /// The file is one raw DPAPI blob. `decrypted`: keyferry decrypted it in memory (Windows,
    /// on the machine that protected it); the content and hash are then the plaintext's.
    Dpapi { scope: Scope, decrypted: bool },
    /// DPAPI blobs inside a larger file (XML, config, text forms): never rewritten.
    DpapiEmbedded,
    /// DPAPI-NG (CMS) data.
    DpapiNg,
    /// No blob found, but the size suggests the product's own DPAPI wrapping (the profile's
    /// `dpapi_size_hint`; a hint, not proof).
    LooksDpapi,
}

impl Protection {
    /// Whether the bytes can travel to another machine as they are (or were decrypted).
    pub fn can_travel(&self) -> bool {
        matches!(
            self,
            Protection::None
                | Protection::LooksDpapi
                | Protection::Dpapi {
                    decrypted: true,
                    ..
                }
        )
    }
}

/// Reads a key file and works out its protection; decrypts a raw DPAPI blob in memory where
/// the OS can (Windows). The returned bytes are what the key *is*: plaintext when decrypted.
/// `size_hint`: the profile's size above which the file only *looks* protected.
pub fn read_key(path: &Path, size_hint: Option<u64>) -> Result<(KeyBytes, Protection)> {
    Ok(interpret(read_key_file(path, MAX_ENTRY_LEN)?, size_hint))
}

/// What a key file's raw bytes are (see [`read_key`]).
pub fn interpret(raw: KeyBytes, size_hint: Option<u64>) -> (KeyBytes, Protection) {
    let c = classify(raw.expose_secret());
    if let Some(blob) = c.single_raw() {
        let scope = blob.scope();
        return match crate::dpapi::unprotect(raw.expose_secret()) {
            Ok(plain) => (
                plain,
                Protection::Dpapi {
                    scope,
                    decrypted: true,
                },
            ),
            Err(_) => (
                raw,
                Protection::Dpapi {
                    scope,
                    decrypted: false,
                },
            ),
        };
    }
    let p = if c.dpapi_ng.is_some() {
        Protection::DpapiNg
    } else if !c.blobs.is_empty() {
        Protection::DpapiEmbedded
    } else if size_hint.is_some_and(|limit| raw.len() as u64 > limit) {
        Protection::LooksDpapi
    } else {
        Protection::None
    };
    (raw, p)
}

/// One key file of a node as found on disk.
pub struct LocalKey {
    pub spec: KeySpec,
    pub path: PathBuf,
    /// `None` when the file is not there.
    pub content: Option<KeyBytes>,
    pub protection: Protection,
}

impl LocalKey {
    pub fn hash(&self) -> Option<FileHash> {
        self.content
            .as_ref()
            .map(|c| FileHash::of(c.expose_secret()))
    }
}

/// The key files this node's role holds, read from disk. Missing files are reported as such;
/// a symlink or a non-file where a key should be is an error.
pub fn read_local_keys(node: &Node) -> Result<Vec<LocalKey>> {
    node.profile
        .keys_held_by(node.role)
        .into_iter()
        .map(|spec| {
            let path = node.key_path(spec)?;
            let (content, protection) =
                match crate::fs::open_regular(&path).map_err(Error::at_destination)? {
                    Some(opened) => {
                        let raw = crate::fs::read_opened(opened, MAX_ENTRY_LEN)?;
                        let (bytes, p) = interpret(raw, spec.dpapi_size_hint);
                        (Some(bytes), p)
                    }
                    None => (None, Protection::None),
                };
            Ok(LocalKey {
                spec: spec.clone(),
                path,
                content,
                protection,
            })
        })
        .collect()
}

/// Fingerprint of the present files, `None` if no key file is present.
pub fn fingerprint_of(keys: &[LocalKey]) -> Option<Fingerprint> {
    let hashes: Vec<(&str, FileHash)> = keys
        .iter()
        .filter_map(|k| k.hash().map(|h| (k.spec.name.as_str(), h)))
        .collect();
    (!hashes.is_empty()).then(|| Fingerprint::of(hashes.iter().map(|(n, h)| (*n, h))))
}

/// Every key file of the role, or the first missing one as an error (export needs all).
pub fn require_complete(keys: &[LocalKey]) -> Result<()> {
    match keys.iter().find(|k| k.content.is_none()) {
        Some(k) => Err(Error::KeyFileMissing {
            path: k.path.clone(),
            remedy: k.spec.missing_remedy.clone(),
        }),
        None => Ok(()),
    }
}
