//! The journal of a change in progress: `<state_dir>/journal.json`, private, rewritten
//! atomically at each stage. It names the files, what they were before (hash and
//! attributes), the hash of what is being written and the backup folder; never key bytes.
//! Its presence means a change did not finish; [`crate::txn::recover`] finishes or rolls
//! it back.

use crate::error::{Error, Result};
use crate::fingerprint::FileHash;
use crate::fs::attrs::Attrs;
use crate::time::Timestamp;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Largest journal accepted (it holds a few paths and hashes).
pub const MAX_JOURNAL: u64 = 1024 * 1024;

pub use crate::fs::record::Stage;

/// What a file was before the change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Previous {
    pub sha256: FileHash,
    pub attrs: Attrs,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JournalFile {
    pub path: PathBuf,
    /// Its name in the backup folder.
    pub label: String,
    /// `None`: there was no file.
    pub before: Option<Previous>,
    /// Hash of the bytes being written (as they are on disk).
    pub after: FileHash,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Journal {
    pub version: u32,
    pub kind: String,
    pub id: String,
    pub node: String,
    pub command: String,
    pub started: Timestamp,
    pub stage: Stage,
    pub backup_dir: Option<PathBuf>,
    pub files: Vec<JournalFile>,
}

impl Journal {
    pub fn path(state_dir: &Path) -> PathBuf {
        state_dir.join("journal.json")
    }

    /// The journal of an unfinished change, if there is one.
    pub fn load(state_dir: &Path) -> Result<Option<Journal>> {
        let path = Journal::path(state_dir);
        crate::fs::record::load(&path, MAX_JOURNAL, "journal", |e| {
            Error::RecoveryConflict(format!(
                "the journal {} is unreadable ({e}); compare the node's files with the backups \
                 in {} and remove the journal by hand",
                path.display(),
                state_dir.join("backups").display()
            ))
        })
    }

    /// Writes the journal (atomically, private).
    pub fn save(&self, state_dir: &Path) -> Result<()> {
        crate::fs::record::save(&Journal::path(state_dir), self)
    }

    /// Removes the journal: the change is over.
    pub fn remove(state_dir: &Path) -> Result<()> {
        crate::fs::remove_if_present(&Journal::path(state_dir)).map(drop)
    }
}
