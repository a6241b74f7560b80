//! Carrying out a change, all or nothing across a crash:
//!
//! 1. journal (stage `preparing`): the files, their previous hashes and attributes, the
//!    backup folder;
//! 2. back up every file that will be replaced (private copies, plus `backup.json`);
//! 3. write each new file to a private temp file in its folder, fsync, give it its final
//!    attributes;
//! 4. journal (stage `installing`); for each file, re-check that the destination is still
//!    what the plan saw (hash and identity), then rename (or link) it into place;
//! 5. verify (the engine re-reads every file; the caller adds its own check);
//! 6. journal (stage `committed`), then remove the journal.
//!
//! Any failure before the commit rolls back: replaced files come back from the backup with
//! their old attributes, new ones go. A crash at any point is finished or rolled back by
//! [`recover`] the next time a command changes this node.

use crate::error::{Error, Result};
use crate::fingerprint::FileHash;
use crate::fs::attrs::{Applied as AttrsApplied, Attrs};
use crate::fs::open::{split, Dir, Entry};
use crate::fs::private::{create_unique_private_dir, write_new_private};
use crate::fs::TempFile;
use crate::time::Timestamp;
use crate::txn::journal::{Journal, JournalFile, Previous, Stage};
use crate::txn::plan::{Before, Change};
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Largest file the engine reads back (key files are far smaller).
const MAX_FILE: u64 = crate::fs::MAX_KEY_FILE;

/// Where a change is recorded: the node's state folder and its backup folder.
pub struct Context<'a> {
    /// The node's state folder (journal, lock).
    pub state_dir: &'a Path,
    /// Where backups of replaced files go.
    pub backup_root: PathBuf,
    /// The node's name.
    pub node: &'a str,
    /// The command, for the journal and backup records (`keys import`).
    pub command: &'a str,
}

/// What a committed change did.
#[derive(Debug, Clone, Serialize)]
pub struct Applied {
    /// Where the replaced files were backed up, if any were.
    pub backup_dir: Option<PathBuf>,
    /// Each written file and the attributes it got.
    pub files: Vec<(PathBuf, AttrsApplied)>,
}

/// One file in a backup folder's `backup.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupFile {
    pub label: String,
    pub path: PathBuf,
    pub sha256: FileHash,
    pub attrs: Attrs,
}

/// `backup.json`: where each backed-up file came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupRecord {
    /// [`crate::JSON_VERSION`].
    pub version: u32,
    /// `backup`.
    pub kind: String,
    /// The node.
    pub node: String,
    /// The command that replaced the files.
    pub command: String,
    /// When.
    pub time: Timestamp,
    /// Each file backed up and where it came from.
    pub files: Vec<BackupFile>,
}

/// Applies a change; `verify` runs after every file is in place and before the commit.
pub fn apply(
    ctx: &Context<'_>,
    changes: Vec<Change>,
    verify: &dyn Fn() -> Result<()>,
) -> Result<Applied> {
    crate::fs::create_private_dir(ctx.state_dir)?;
    let now = Timestamp::now();
    let replaces = changes
        .iter()
        .any(|c| matches!(c.before, Before::File { .. }));
    let backup_dir = if replaces {
        Some(create_unique_private_dir(&ctx.backup_root, &now.compact())?)
    } else {
        None
    };
    let mut journal = Journal {
        version: crate::JSON_VERSION,
        kind: "journal".into(),
        id: crate::fs::record::change_id(now),
        node: ctx.node.to_owned(),
        command: ctx.command.to_owned(),
        started: now,
        stage: Stage::Preparing,
        backup_dir: backup_dir.clone(),
        files: changes
            .iter()
            .map(|c| JournalFile {
                path: c.path.clone(),
                label: c.label.clone(),
                before: match &c.before {
                    Before::Missing => None,
                    Before::File { sha256, attrs, .. } => Some(Previous {
                        sha256: *sha256,
                        attrs: attrs.clone(),
                    }),
                },
                after: FileHash::of(c.content.expose_secret()),
            })
            .collect(),
    };
    journal.save(ctx.state_dir)?;
    crate::failpoint::hit("txn:after-journal");

    match carry_out(
        ctx,
        &mut journal,
        &changes,
        backup_dir.as_deref(),
        verify,
        now,
    ) {
        Ok(files) => {
            journal.stage = Stage::Committed;
            journal.save(ctx.state_dir)?;
            Journal::remove(ctx.state_dir)?;
            // The replaced copy of a temporary vendor file is not kept. A failure here leaves
            // it for `keys cleanup`, which removes such copies too.
            let transient: Vec<&str> = changes
                .iter()
                .filter(|c| c.transient && matches!(c.before, Before::File { .. }))
                .map(|c| c.label.as_str())
                .collect();
            let backup_dir = match backup_dir {
                Some(d) if !transient.is_empty() => {
                    let _ = drop_from_backup(&d, &|label| transient.contains(&label));
                    d.exists().then_some(d)
                }
                d => d,
            };
            Ok(Applied { backup_dir, files })
        }
        Err((e, touched)) => match roll_back(ctx.state_dir, &journal, touched) {
            Ok(_) if touched > 0 => Err(Error::VerifyFailed(e.to_string())),
            Ok(_) => Err(e),
            Err(r) => Err(Error::RecoveryConflict(format!(
                "{e}; rolling back also failed: {r}"
            ))),
        },
    }
}

/// Removes from the backup folder `dir` (keyferry's own, private) the copies whose label
/// `drop` picks, each shredded through its handle, and their lines in `backup.json`; the
/// folder goes when nothing else is left in it. Returns what was removed.
pub fn drop_from_backup(
    dir: &Path,
    drop: &dyn Fn(&str) -> bool,
) -> Result<Vec<crate::fs::Removal>> {
    let record_path = dir.join("backup.json");
    let Some(mut record): Option<BackupRecord> =
        crate::fs::record::load(&record_path, 1 << 20, "backup record", |e| {
            Error::RecoveryConflict(format!(
                "{} is not a backup record: {e}",
                record_path.display()
            ))
        })?
    else {
        return Ok(Vec::new());
    };
    let (gone, kept): (Vec<BackupFile>, Vec<BackupFile>) =
        record.files.into_iter().partition(|f| drop(&f.label));
    let mut removed = Vec::new();
    if gone.is_empty() {
        return Ok(removed);
    }
    for f in &gone {
        let p = dir.join(&f.label);
        if p.symlink_metadata().is_ok() {
            removed.push(crate::fs::shred_file(&p)?);
        }
    }
    if kept.is_empty() {
        crate::fs::shred_file(&record_path)?;
        std::fs::remove_dir(dir).map_err(|e| Error::io(dir, e))?;
    } else {
        record.files = kept;
        crate::fs::record::save(&record_path, &record)?;
    }
    Ok(removed)
}

/// The error, and how many files (in order) were already put in place.
type Failed = (Error, usize);

fn carry_out(
    ctx: &Context<'_>,
    journal: &mut Journal,
    changes: &[Change],
    backup_dir: Option<&Path>,
    verify: &dyn Fn() -> Result<()>,
    now: Timestamp,
) -> std::result::Result<Vec<(PathBuf, AttrsApplied)>, Failed> {
    let early = |e: Error| (e, 0);
    // 2. Back up what will be replaced, checking it is still what the plan saw.
    if let Some(dir) = backup_dir {
        let mut record = BackupRecord {
            version: crate::JSON_VERSION,
            kind: "backup".into(),
            node: ctx.node.to_owned(),
            command: ctx.command.to_owned(),
            time: now,
            files: Vec::new(),
        };
        for c in changes {
            let Before::File { sha256, attrs, .. } = &c.before else {
                continue;
            };
            let current = read_if_unchanged(&c.path, &c.before).map_err(early)?;
            let dest = dir.join(&c.label);
            write_new_private(&dest, false, |f| {
                f.write_all(current.expose_secret())
                    .map_err(|e| Error::io(&dest, e))
            })
            .map_err(early)?;
            record.files.push(BackupFile {
                label: c.label.clone(),
                path: c.path.clone(),
                sha256: *sha256,
                attrs: attrs.clone(),
            });
            crate::failpoint::hit("txn:after-backup");
        }
        crate::fs::record::save(&dir.join("backup.json"), &record).map_err(early)?;
    }

    // 3. Temp files, private while written, then given their final attributes.
    let mut staged = Vec::new();
    for c in changes {
        let (dir_path, name) = split(&c.path).map_err(early)?;
        let dir = Dir::open(&dir_path).map_err(early)?;
        let mut tmp = TempFile::create(&dir).map_err(early)?;
        let owner_kept = match tmp.finish(&dir, c.content.expose_secret(), &c.attrs) {
            Ok(k) => k,
            Err(e) => {
                tmp.discard(&dir);
                return Err(early(e));
            }
        };
        crate::failpoint::hit("txn:after-temp");
        staged.push((dir, name, tmp, owner_kept));
    }

    // 4. Into place, each after re-checking the destination.
    journal.stage = Stage::Installing;
    journal.save(ctx.state_dir).map_err(early)?;
    let mut applied = Vec::new();
    for (touched, (c, (dir, name, tmp, owner_kept))) in changes.iter().zip(staged).enumerate() {
        let put = match &c.before {
            Before::Missing => match dir.entry(&name) {
                Ok(Entry::Missing) => tmp.install_new(&dir, &name),
                Ok(_) => {
                    tmp.discard(&dir);
                    Err(Error::Changed {
                        path: c.path.clone(),
                    })
                }
                Err(e) => Err(e),
            },
            Before::File { id, .. } => match read_if_unchanged(&c.path, &c.before) {
                Ok(_) => tmp.replace(&dir, &name, *id),
                Err(e) => {
                    tmp.discard(&dir);
                    Err(e)
                }
            },
        };
        put.map_err(|e| (e, touched))?;
        crate::failpoint::hit("txn:after-rename");
        applied.push((
            c.path.clone(),
            AttrsApplied {
                source: c.attr_source.clone(),
                attrs: c.attrs.clone(),
                owner_not_kept: !owner_kept,
            },
        ));
    }

    // 5. Verify: every file reads back as written, then the caller's own check.
    crate::failpoint::hit("txn:before-commit");
    for f in &journal.files {
        let n = journal.files.len();
        let bytes = crate::fs::read_key_file(&f.path, MAX_FILE).map_err(|e| (e, n))?;
        if !FileHash::of(bytes.expose_secret()).ct_eq(&f.after) {
            return Err((
                Error::IntegrityMismatch(format!(
                    "{} does not read back as written",
                    f.path.display()
                )),
                journal.files.len(),
            ));
        }
    }
    verify().map_err(|e| (e, journal.files.len()))?;
    Ok(applied)
}

/// Reads a destination, requiring it to be what the plan saw (hash and identity).
fn read_if_unchanged(path: &Path, before: &Before) -> Result<crate::secret::KeyBytes> {
    let Before::File { sha256, id, .. } = before else {
        unreachable!("only called for files that were there");
    };
    let (dir, name) = split(path)?;
    let dir = Dir::open(&dir)?;
    let changed = || Error::Changed {
        path: path.to_owned(),
    };
    let opened = dir.open_file(&name, false)?.ok_or_else(changed)?;
    if opened.meta.id != *id {
        return Err(changed());
    }
    let bytes = crate::fs::read_opened(opened, MAX_FILE)?;
    if !FileHash::of(bytes.expose_secret()).ct_eq(sha256) {
        return Err(changed());
    }
    Ok(bytes)
}

/// What [`recover`] did about an interrupted change.
#[derive(Debug, Clone, Serialize)]
pub struct Recovery {
    /// The change's id.
    pub id: String,
    /// The command that made it.
    pub command: String,
    /// When it began.
    pub started: Timestamp,
    /// Whether it was finished or rolled back.
    pub outcome: RecoveryOutcome,
    /// Files put back to their previous content (or removed, if they were new).
    pub restored: Vec<PathBuf>,
}

/// How an interrupted change ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RecoveryOutcome {
    /// It had committed; only its journal was left, and is now gone.
    Completed,
    /// It had not committed; the node is back in its state before it.
    RolledBack,
}

impl std::fmt::Display for Recovery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.outcome {
            RecoveryOutcome::Completed => write!(
                f,
                "an interrupted `{}` (started {}) had finished; its journal was removed",
                self.command, self.started
            ),
            RecoveryOutcome::RolledBack => write!(
                f,
                "an interrupted `{}` (started {}) was rolled back: {} put back as {} were",
                self.command,
                self.started,
                match self.restored.len() {
                    1 => "1 file".to_string(),
                    n => format!("{n} files"),
                },
                if self.restored.len() == 1 {
                    "it"
                } else {
                    "they"
                }
            ),
        }
    }
}

/// Finishes or rolls back a change a crash interrupted. Call with the node's lock held.
pub fn recover(state_dir: &Path) -> Result<Option<Recovery>> {
    let Some(journal) = Journal::load(state_dir)? else {
        return Ok(None);
    };
    let (outcome, restored) = if journal.stage == Stage::Committed {
        sweep_folders(&journal)?;
        Journal::remove(state_dir)?;
        (RecoveryOutcome::Completed, Vec::new())
    } else {
        let all = journal.files.len();
        (
            RecoveryOutcome::RolledBack,
            roll_back(state_dir, &journal, all)?,
        )
    };
    Ok(Some(Recovery {
        id: journal.id,
        command: journal.command,
        started: journal.started,
        outcome,
        restored,
    }))
}

/// Puts the first `touched` files of the journal back as they were (after a crash: all of
/// them, as far as is known), removes temp files and the journal. A file that holds
/// neither its old nor its new content was changed by someone else: a conflict after a
/// crash, left alone after a live failure (keyferry never put it in place).
fn roll_back(state_dir: &Path, journal: &Journal, touched: usize) -> Result<Vec<PathBuf>> {
    let mut restored = Vec::new();
    for (i, f) in journal.files.iter().enumerate().rev() {
        if i >= touched {
            if let Ok((d, _)) = split(&f.path) {
                if let Ok(dir) = Dir::open(&d) {
                    crate::fs::sweep(&dir)?;
                }
            }
            continue;
        }
        let (dir_path, name) = split(&f.path)?;
        let dir = Dir::open(&dir_path)?;
        let current = match dir.open_file(&name, false)? {
            Some(o) => {
                let id = o.meta.id;
                Some((
                    FileHash::of(crate::fs::read_opened(o, MAX_FILE)?.expose_secret()),
                    id,
                ))
            }
            None => None,
        };
        let conflict = |what: &str| {
            Error::RecoveryConflict(format!(
                "{} {what}; keyferry left it alone. The previous file, if any, is in {}",
                f.path.display(),
                journal
                    .backup_dir
                    .as_ref()
                    .map(|d| d.display().to_string())
                    .unwrap_or_else(|| "(no backup: there was no file)".into())
            ))
        };
        match (&f.before, current) {
            (None, None) => {}
            (Some(prev), Some((h, _))) if h.ct_eq(&prev.sha256) => {}
            (None, Some((h, id))) if h.ct_eq(&f.after) => {
                if dir.remove_if_same(&name, id)? {
                    dir.sync()?;
                    restored.push(f.path.clone());
                }
            }
            (Some(prev), Some((h, id))) if h.ct_eq(&f.after) => {
                restore_from_backup(journal, f, prev, &dir, &name, Some(id))?;
                restored.push(f.path.clone());
            }
            (Some(prev), None) => {
                restore_from_backup(journal, f, prev, &dir, &name, None)?;
                restored.push(f.path.clone());
            }
            (_, Some(_)) => return Err(conflict("holds neither the old nor the new content")),
        }
        crate::fs::sweep(&dir)?;
    }
    Journal::remove(state_dir)?;
    Ok(restored)
}

fn restore_from_backup(
    journal: &Journal,
    f: &JournalFile,
    prev: &Previous,
    dir: &Dir,
    name: &std::ffi::OsStr,
    current: Option<crate::os::FileId>,
) -> Result<()> {
    let backup = journal
        .backup_dir
        .as_ref()
        .map(|d| d.join(&f.label))
        .ok_or_else(|| Error::RecoveryConflict("the journal names no backup folder".into()))?;
    let bytes = crate::fs::read_key_file(&backup, MAX_FILE)?;
    if !FileHash::of(bytes.expose_secret()).ct_eq(&prev.sha256) {
        return Err(Error::RecoveryConflict(format!(
            "the backup {} does not hold what {} held",
            backup.display(),
            f.path.display()
        )));
    }
    let mut tmp = TempFile::create(dir)?;
    tmp.finish(dir, bytes.expose_secret(), &prev.attrs)?;
    match current {
        Some(id) => tmp.replace(dir, name, id),
        None => tmp.install_new(dir, name),
    }
}

fn sweep_folders(journal: &Journal) -> Result<()> {
    for f in &journal.files {
        if let Ok((d, _)) = split(&f.path) {
            if let Ok(dir) = Dir::open(&d) {
                crate::fs::sweep(&dir)?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::KeyBytes;
    use crate::txn::look;

    fn change(path: &Path, content: &[u8]) -> Change {
        let l = look(path, 1 << 20, &[]).unwrap();
        Change {
            path: path.to_owned(),
            label: path.file_name().unwrap().to_string_lossy().into_owned(),
            before: l.before,
            content: KeyBytes::copy_from(content),
            attrs: l.attrs,
            attr_source: l.attr_source,
            transient: false,
        }
    }

    fn ctx(state: &Path) -> Context<'_> {
        Context {
            state_dir: state,
            backup_root: state.join("backups"),
            node: "n",
            command: "test",
        }
    }

    /// Another program writes the key after keyferry planned: the engine's re-check just
    /// before the rename sees it, stops, and leaves that program's bytes in place.
    #[test]
    fn a_destination_changed_after_the_plan_is_not_overwritten() {
        let d = tempfile::tempdir().unwrap();
        let k = d.path().join("encryption.config");
        std::fs::write(&k, b"OLD").unwrap();
        let c = change(&k, b"NEW");
        let kk = k.clone();
        let _h = crate::failpoint::on("txn:after-temp", move || {
            std::fs::write(&kk, b"SOMEONE ELSE").unwrap();
        });
        let state = d.path().join("state");
        let e = apply(&ctx(&state), vec![c], &|| Ok(())).unwrap_err();
        assert!(matches!(e, Error::Changed { .. }), "{e}");
        assert_eq!(std::fs::read(&k).unwrap(), b"SOMEONE ELSE");
        assert!(!Journal::path(&state).exists());
    }

    /// Two files; the second changes under keyferry after the first is in place: the first
    /// is rolled back, the second left as the other writer made it.
    #[test]
    fn a_later_file_changing_rolls_back_the_earlier_ones() {
        let d = tempfile::tempdir().unwrap();
        let a = d.path().join("keys.exp");
        let b = d.path().join("appsettings.json");
        std::fs::write(&a, b"OLD A").unwrap();
        std::fs::write(&b, b"OLD B").unwrap();
        let changes = vec![change(&a, b"NEW A"), change(&b, b"NEW B")];
        let bb = b.clone();
        let _h = crate::failpoint::on("txn:after-rename", move || {
            if std::fs::read(&bb).unwrap() == b"OLD B" {
                std::fs::write(&bb, b"OTHER B").unwrap();
            }
        });
        let state = d.path().join("state");
        let e = apply(&ctx(&state), changes, &|| Ok(())).unwrap_err();
        assert!(matches!(e, Error::VerifyFailed(_)), "{e}");
        assert_eq!(std::fs::read(&a).unwrap(), b"OLD A");
        assert_eq!(std::fs::read(&b).unwrap(), b"OTHER B");
        assert!(!Journal::path(&state).exists());
        let names: Vec<_> = std::fs::read_dir(d.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with(".keyferry-"))
            .collect();
        assert!(names.is_empty(), "{names:?}");
    }
}
