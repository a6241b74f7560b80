//! The value a change is made from: for each file, what was there when the plan was made
//! (hash, identity, attributes) and the exact bytes and attributes to put there. Planning
//! reads only; [`crate::txn::apply`] is the one place that writes.

use crate::error::{Error, Result};
use crate::fingerprint::FileHash;
use crate::fs::attrs::{AttrSource, Attrs};
use crate::fs::open::{split, Dir};
use crate::os::FileId;
use crate::secret::KeyBytes;
use std::path::{Path, PathBuf};

/// What a destination held when the plan was made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Before {
    /// Nothing was there.
    Missing,
    /// A regular file.
    File {
        /// Its content's hash.
        sha256: FileHash,
        /// Its identity.
        id: FileId,
        /// Its attributes.
        attrs: Attrs,
    },
}

/// One file of a change.
pub struct Change {
    /// The destination.
    pub path: PathBuf,
    /// The file's name in the backup folder (unique within the change).
    pub label: String,
    /// What it held when the plan was made (checked again before it is replaced).
    pub before: Before,
    /// The bytes to write, exactly as they will be on disk.
    pub content: KeyBytes,
    /// The attributes the new file gets.
    pub attrs: Attrs,
    /// Where those attributes come from.
    pub attr_source: AttrSource,
    /// A temporary vendor export file (`keys.exp`): the copy of the file it replaces is not
    /// kept once the change is committed (the vendor says to delete it everywhere).
    pub transient: bool,
}

/// What is at `path` now: its raw bytes (bounded by `limit`), and the [`Before`] a plan
/// records. `siblings`: product files in the same folder whose attributes a new file copies.
pub struct Looked {
    /// What a plan records of it.
    pub before: Before,
    /// Its bytes, if it is a file (wiped on drop).
    pub bytes: Option<KeyBytes>,
    /// The attributes a file written there gets, and where they come from.
    pub attrs: Attrs,
    /// Where a new file's attributes would come from.
    pub attr_source: AttrSource,
}

/// Looks at a destination for a plan: opened once, no-follow, through its folder's handle.
pub fn look(path: &Path, limit: u64, siblings: &[String]) -> Result<Looked> {
    let (dir, name) = split(path)?;
    let dir = Dir::open(&dir)?;
    match dir.open_file(&name, false).map_err(Error::at_destination)? {
        Some(opened) => {
            let attrs = Attrs::of(&opened)?;
            let id = opened.meta.id;
            let bytes = crate::fs::read_opened(opened, limit)?;
            Ok(Looked {
                before: Before::File {
                    sha256: FileHash::of(bytes.expose_secret()),
                    id,
                    attrs: attrs.clone(),
                },
                bytes: Some(bytes),
                attrs,
                attr_source: AttrSource::Replaced,
            })
        }
        None => {
            let (attrs, attr_source) = Attrs::for_new_file(&dir, siblings)?;
            Ok(Looked {
                before: Before::Missing,
                bytes: None,
                attrs,
                attr_source,
            })
        }
    }
}
