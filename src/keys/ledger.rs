//! A small per-node record of the bundles keyferry wrote or kept, so `keys cleanup` can find
//! leftovers. It holds paths, times and fingerprints, never a passphrase or key byte.
//! File: `<state_dir>/ledger.json`, owner-only, rewritten atomically.

use crate::error::{Error, Result};
use crate::fingerprint::Fingerprint;
use crate::fs::create_private_dir;
use crate::time::Timestamp;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Largest ledger read (thousands of entries).
const MAX_LEDGER: u64 = 4 * 1024 * 1024;

/// Why a bundle is on the ledger.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LedgerKind {
    /// Written by `keys export`.
    Exported,
    /// Imported with `--keep-bundle`, so still on disk.
    KeptAfterImport,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LedgerEntry {
    pub path: PathBuf,
    pub time: Timestamp,
    pub fingerprint: Fingerprint,
    pub node: String,
    pub kind: LedgerKind,
    /// The file as it was when recorded (identity, size, time, owner; read from its
    /// handle): `keys cleanup` removes only that file, never another that took its path
    /// later. An entry without one (written by an older keyferry) is left alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stamp: Option<crate::fs::FileStamp>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct LedgerFile {
    version: u32,
    entries: Vec<LedgerEntry>,
}

/// The ledger of one state folder.
#[derive(Debug, Clone)]
pub struct Ledger {
    path: PathBuf,
}

impl Ledger {
    pub fn at(state_dir: &Path) -> Ledger {
        Ledger {
            path: state_dir.join("ledger.json"),
        }
    }

    pub fn entries(&self) -> Result<Vec<LedgerEntry>> {
        let file: Option<LedgerFile> =
            crate::fs::record::load(&self.path, MAX_LEDGER, "ledger", |e| {
                Error::InvalidInput(format!("ledger {} is unreadable: {e}", self.path.display()))
            })?;
        Ok(file.map(|f| f.entries).unwrap_or_default())
    }

    pub fn record(&self, entry: LedgerEntry) -> Result<()> {
        let mut entries = self.entries()?;
        entries.retain(|e| e.path != entry.path);
        entries.push(entry);
        self.save(entries)
    }

    pub fn save(&self, entries: Vec<LedgerEntry>) -> Result<()> {
        if let Some(dir) = self.path.parent() {
            create_private_dir(dir)?;
        }
        let doc = LedgerFile {
            version: crate::JSON_VERSION,
            entries,
        };
        crate::fs::record::save(&self.path, &doc)
    }
}

/// Absolute form of a path for the ledger (relative paths would break from another folder).
pub fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_owned())
}
