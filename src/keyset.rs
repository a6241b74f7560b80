//! Reading a node's key files: their bytes (for export) or just their hashes (for
//! fingerprints and reports).

use crate::cluster::Node;
use crate::error::{Error, Result};
use crate::fingerprint::{FileHash, Fingerprint};
use crate::fsx::{check_destination, Destination};
use crate::manifest::MAX_ENTRY_LEN;
use crate::profile::KeySpec;
use crate::secret::{read_key_file, KeyBytes};
use std::path::PathBuf;

/// One key file of a node as found on disk.
pub struct LocalKey {
    pub spec: KeySpec,
    pub path: PathBuf,
    /// `None` when the file is not there.
    pub content: Option<KeyBytes>,
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
            let content = match check_destination(&path) {
                Ok(Destination::RegularFile) => Some(read_key_file(&path, MAX_ENTRY_LEN)?),
                Ok(Destination::Missing) => None,
                Err(e) => return Err(e),
            };
            Ok(LocalKey {
                spec: spec.clone(),
                path,
                content,
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
        }),
        None => Ok(()),
    }
}
