//! The journal of a sync in progress, one per target folder: `<state_dir>/sync/<id>.json`,
//! private, rewritten atomically at each stage. It names the target, the new tree being
//! built beside it, the previous tree, what the protected files were (identity, hash,
//! attributes) and, for an in-place apply, each step. Its presence means a sync of that
//! folder did not finish; [`crate::sync::recover`] finishes it.

use crate::error::{Error, Result};
use crate::fingerprint::FileHash;
use crate::fs::attrs::Attrs;
use crate::os::FileId;
use crate::time::Timestamp;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Largest journal accepted (an in-place apply lists its files: a few MiB at most).
pub const MAX_JOURNAL: u64 = 64 * 1024 * 1024;

/// What the run is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    /// A sync of a source onto the target.
    Sync,
    /// A rollback to a kept tree.
    Rollback,
}

/// How the new tree goes in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// The whole folder is swapped with the new tree built beside it.
    Swap,
    /// Files are moved in one by one (the folder could not be swapped: files held open).
    InPlace,
}

/// How far the run got: `Preparing` while the new tree is built and verified (the target
/// has not changed), `Installing` while it goes in (swap or in-place steps; a rerun finishes
/// this), `Committed` when only clean-up is left.
pub use crate::fs::record::Stage;

/// A protected file on the target, as it was before the sync.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProtectedState {
    pub path: String,
    pub id: FileId,
    pub blake3: FileHash,
    pub attrs: Attrs,
}

/// A protected name that is a link, and the link's own text (never followed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProtectedLink {
    pub path: String,
    pub points_to: PathBuf,
}

/// One step of an in-place apply. Each can be redone: it checks what is already done.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "op")]
pub enum Step {
    /// Create a folder on the target.
    MkDir { path: String },
    /// Move the target's file (if any) to the previous tree, then the new one in.
    /// `replaced`: the target had a file there (undo brings it back; else undo removes).
    Put {
        path: String,
        target: String,
        replaced: bool,
    },
    /// Move the target's file to the previous tree.
    Delete { path: String },
    /// Remove a folder the source no longer has (if empty). `attrs`: its Unix owner, group
    /// and mode, so that undoing the step makes it as it was (not root's 0755).
    RmDir {
        path: String,
        #[serde(default)]
        attrs: Option<(u32, u32, u32)>,
    },
}

/// The record of a sync or rollback in progress, written before each stage:
/// `<state_dir>/sync/<hash>.json`. A record found there means the run was cut off; it is finished
/// or rolled back first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyncJournal {
    /// [`crate::JSON_VERSION`].
    pub version: u32,
    /// `sync-journal`.
    pub kind: String,
    /// The run's id (also the kept tree's).
    pub id: String,
    /// The node it runs on.
    pub node: String,
    /// A sync or a rollback.
    pub action: Action,
    /// A swap of whole trees, or files moved in one by one.
    pub mode: Mode,
    /// How far it got.
    pub stage: Stage,
    /// The folder synced from.
    pub source: PathBuf,
    /// The folder synced.
    pub target: PathBuf,
    /// The new tree being built (`<target>.keyferry-new`).
    pub staging: PathBuf,
    /// The previous tree kept for rollback (`<target>.keyferry-prev`).
    pub previous: PathBuf,
    /// The target's protected files as they were before the run.
    pub protected: Vec<ProtectedState>,
    /// Protected names on the target that are links (`database.config -> App_Data/db.real`),
    /// with what they point to: carried into the new tree as links and checked afterwards.
    #[serde(default)]
    pub protected_links: Vec<ProtectedLink>,
    /// The in-place steps, in order (empty for a swap).
    #[serde(default)]
    pub steps: Vec<Step>,
    /// keyferry created `app_offline.htm` in the target and must remove it.
    #[serde(default)]
    pub app_offline: bool,
    /// When the run began.
    pub started: Timestamp,
    /// The plan's fingerprints of the source and of the target as it was (for the record of
    /// the tree kept).
    #[serde(default)]
    pub source_fingerprint: String,
    /// The target's fingerprint as it was.
    #[serde(default)]
    pub target_fingerprint: String,
}

/// Where the journal of a sync of `target` lives.
pub fn path(state_dir: &Path, target: &Path) -> PathBuf {
    let h = blake3::hash(target.as_os_str().as_encoded_bytes());
    let hex: String = h.as_bytes()[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    state_dir.join("sync").join(format!("{hex}.json"))
}

/// The last sync (or rollback) of a target that finished, including one that found nothing
/// to change: `<state_dir>/sync/<hash>.last.json`. A rollback checks the kept tree against
/// it, so that a target the last sync did not change never goes back to a tree kept from an
/// earlier one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastSync {
    /// The target.
    pub target: PathBuf,
    /// The run's id.
    pub id: String,
    /// When it finished.
    pub time: Timestamp,
    /// False when it found nothing to change (no tree was kept).
    pub changed: bool,
}

fn last_path(state_dir: &Path, target: &Path) -> PathBuf {
    path(state_dir, target).with_extension("last.json")
}

impl LastSync {
    /// Records the last finished sync or rollback of `target` (private, atomic).
    pub fn record(state_dir: &Path, target: &Path, id: &str, changed: bool) -> Result<()> {
        let last = LastSync {
            target: target.to_owned(),
            id: id.to_owned(),
            time: Timestamp::now(),
            changed,
        };
        crate::fs::create_private_dir(state_dir)?;
        crate::fs::create_private_dir(&state_dir.join("sync"))?;
        crate::fs::record::save(&last_path(state_dir, target), &last)
    }

    /// The last finished sync or rollback of `target`, if recorded (and readable).
    pub fn load(state_dir: &Path, target: &Path) -> Option<LastSync> {
        let path = last_path(state_dir, target);
        let last: LastSync = crate::fs::record::load(&path, 64 * 1024, "sync record", |e| {
            Error::InvalidInput(e.to_string())
        })
        .ok()??;
        Some(last).filter(|l| l.target == target)
    }
}

impl SyncJournal {
    /// The targets of every sync or rollback journal in the state folder (each one was cut
    /// off).
    pub fn pending(state_dir: &Path) -> Result<Vec<PathBuf>> {
        let dir = state_dir.join("sync");
        let names = match crate::fs::Dir::open(&dir) {
            Ok(d) => d.names()?,
            Err(Error::FolderMissing { .. }) => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let mut out = Vec::new();
        for name in names {
            let Some(stem) = name.to_str().and_then(|n| n.strip_suffix(".json")) else {
                continue;
            };
            if stem.len() != 16 || !stem.bytes().all(|b| b.is_ascii_hexdigit()) {
                continue;
            }
            let p = dir.join(&name);
            let j: Option<SyncJournal> =
                crate::fs::record::load(&p, MAX_JOURNAL, "sync journal", |e| {
                    Error::RecoveryConflict(format!(
                        "the sync journal {} is unreadable ({e}); remove it by hand once its \
                         target is checked",
                        p.display()
                    ))
                })?;
            out.extend(j.map(|j| j.target));
        }
        out.sort();
        Ok(out)
    }

    /// The journal of a sync of `target`, if one is there.
    pub fn load(state_dir: &Path, target: &Path) -> Result<Option<SyncJournal>> {
        let p = path(state_dir, target);
        let read = crate::fs::record::load(&p, MAX_JOURNAL, "sync journal", |e| {
            Error::RecoveryConflict(format!(
                "the sync journal {} is unreadable ({e}); compare {} with its source and \
                 remove the journal by hand",
                p.display(),
                target.display()
            ))
        })?;
        let Some(j): Option<SyncJournal> = read else {
            return Ok(None);
        };
        if j.target != target {
            return Err(Error::RecoveryConflict(format!(
                "the sync journal {} is for {}, not {}",
                p.display(),
                j.target.display(),
                target.display()
            )));
        }
        Ok(Some(j))
    }

    /// Writes it, private and atomic.
    pub fn save(&self, state_dir: &Path) -> Result<()> {
        crate::fs::create_private_dir(state_dir)?;
        crate::fs::create_private_dir(&state_dir.join("sync"))?;
        crate::fs::record::save(&path(state_dir, &self.target), self)
    }

    /// Removes the journal of a sync of `target` (nothing there is fine).
    pub fn remove(state_dir: &Path, target: &Path) -> Result<()> {
        crate::fs::remove_if_present(&path(state_dir, target)).map(drop)
    }
}

/// `.keyferry-prev.json` in a previous tree: what `keyferry sync rollback` puts back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PreviousRecord {
    pub version: u32,
    pub kind: String,
    pub id: String,
    pub node: String,
    pub mode: Mode,
    /// The folder this tree was (and goes back to).
    pub target: PathBuf,
    pub time: Timestamp,
    /// In-place: the steps that were applied (rollback undoes them in reverse).
    #[serde(default)]
    pub steps: Vec<Step>,
    /// This tree is what a rollback replaced (the synced tree), not what a sync replaced:
    /// a second rollback would re-apply the sync.
    #[serde(default)]
    pub by_rollback: bool,
    /// The fingerprint of the source the replacing sync installed, and of this tree as the
    /// plan saw it (names, sizes and times of the files a sync manages).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub source_fingerprint: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub fingerprint: String,
}

/// The name of the record inside a previous tree.
pub const PREVIOUS_RECORD: &str = ".keyferry-prev.json";
/// The marker a new tree carries while a sync builds and installs it.
pub const MARKER: &str = ".keyferry-sync-id";
