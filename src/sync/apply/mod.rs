//! Applying a sync plan: a target ends up entirely as it was or entirely like the source,
//! whenever keyferry stops.
//!
//! 1. Record the target's protected files (identity, hash, attributes) and journal (stage
//!    `building`).
//! 2. Build the new tree beside the live one, on the same volume (`<target>.keyferry-new`,
//!    private while it is built): changed files copied from the source (opened no-follow,
//!    the source's modification time, the attributes of the file they replace), unchanged
//!    files hard-linked (or copied where links do not work), protected files, volatile
//!    folders and the target's own links hard-linked from the live target, so they stay the
//!    very same files with the same owner, mode and ACL.
//! 3. Compare the whole new tree with the source by content; copy again anything that
//!    differs behind an equal size and time. Flush it to disk. Give the tree's root the
//!    target root's attributes.
//! 4. Journal (stage `installing`), then swap: Linux exchanges the two folders in one atomic
//!    `renameat2(RENAME_EXCHANGE)`; elsewhere two renames, which recovery completes. The old
//!    tree becomes `<target>.keyferry-prev`, kept for `keyferry sync rollback` (without the
//!    second names of the protected files).
//! 5. Where the folder cannot be swapped (Windows, files held open by IIS, or a share without
//!    hard links), the verified files are moved in one by one instead, each step journaled
//!    and redone by recovery, the replaced files kept in `<target>.keyferry-prev`.
//! 6. Check the protected files again: same file, same bytes, same attributes, or a loud
//!    failure.

use crate::error::{Error, Result};
use crate::fs::attrs::Attrs;
use crate::fs::{Entry, Tree};
use crate::profile::Profile;
use crate::sync::journal::{
    Action, Mode, PreviousRecord, ProtectedLink, ProtectedState, Stage, Step, SyncJournal, MARKER,
    PREVIOUS_RECORD,
};
use crate::sync::plan::{Kind, SyncPlan};
use crate::time::Timestamp;
use serde::Serialize;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

mod build;
mod install;
mod rollback;

use build::*;
use install::*;
use rollback::*;
pub use rollback::{rollback, RolledBack};

/// How a sync reports progress: one call per file copied or hashed. Implementations must
/// be usable from several threads.
pub trait SyncProgress: Sync {
    /// A phase starts: `what` ("copying", "verifying", "installing") over `files` / `bytes`.
    fn phase(&self, what: &str, files: u64, bytes: u64) {
        let _ = (what, files, bytes);
    }
    /// One file of the phase is done.
    fn advance(&self, bytes: u64) {
        let _ = bytes;
    }
}

/// Reports nothing.
pub struct NoSyncProgress;
impl SyncProgress for NoSyncProgress {}

/// Which node and state folder a sync works for.
pub struct Target<'a> {
    /// The node's name.
    pub node: &'a str,
    /// The node's state folder (journal, lock, kept-tree records).
    pub state_dir: &'a Path,
    /// The node's product profile (its protected files).
    pub profile: &'a Profile,
}

/// Settings of an apply.
#[derive(Debug, Clone, Default)]
pub struct ApplyOptions {
    /// Threads for copying and hashing.
    pub jobs: usize,
    /// Put `app_offline.htm` in the target while files go in (ASP.NET unloads the site).
    pub app_offline: bool,
    /// Move files in one by one even where the folder could be swapped (tests; shares).
    pub in_place: bool,
    /// Never fall back to moving files in one by one: where the folder cannot be swapped,
    /// stop with the target unchanged (`--no-in-place`).
    pub no_in_place: bool,
    /// Previous trees kept per target for rollback (at least 1; see `crate::sync::kept`).
    pub keep: u32,
}

/// What an apply did.
#[derive(Debug, Clone, Serialize)]
pub struct SyncOutcome {
    /// The folder synced.
    pub target: PathBuf,
    /// A swap of whole trees, or files moved in one by one.
    pub mode: Mode,
    /// Files copied from the source.
    pub copied: u64,
    /// Their bytes.
    pub copied_bytes: u64,
    /// Unchanged files hard-linked from the target into the new tree instead of copied.
    pub linked: u64,
    /// Files removed.
    pub deleted: u64,
    /// Files the plan thought unchanged that differed in content, copied again.
    #[serde(serialize_with = "crate::fs::name::serialize_all_shown")]
    pub recopied: Vec<String>,
    /// Files compared with the source by content before the new tree went in.
    pub verified_files: u64,
    /// Their bytes.
    pub verified_bytes: u64,
    /// Files kept from the target, checked against the source by size and time.
    pub quick_checked: u64,
    /// Protected files found unchanged afterwards.
    pub protected_checked: usize,
    /// Where the previous tree is kept.
    pub previous: PathBuf,
    /// Why the folder was not swapped, for in-place applies.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub why_in_place: Option<String>,
    /// Files the application wrote into volatile folders (logs) while the new tree was
    /// built, carried into the live folder right after the swap.
    pub carried_after_swap: u64,
    /// What did not go as it should but did not fail the sync.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

/// The folders a sync of `target` uses beside it.
#[cfg_attr(not(unix), allow(dead_code))] // `parent` and `name`: Unix checks and exchange only
pub struct Siblings {
    pub parent: PathBuf,
    pub name: OsString,
    pub staging: PathBuf,
    pub previous: PathBuf,
}

pub fn siblings(target: &Path) -> Result<Siblings> {
    let (parent, name) = crate::fs::split(target)?;
    let with = |suffix: &str| {
        let mut n = name.clone();
        n.push(suffix);
        parent.join(n)
    };
    Ok(Siblings {
        staging: with(".keyferry-new"),
        previous: with(".keyferry-prev"),
        parent,
        name,
    })
}

/// Refuses a target whose parent folder another account could write (the way OpenSSH's
/// StrictModes refuses a home folder others can write): that account could put a link where
/// keyferry's folders beside the target go, between keyferry's steps. The parent must be
/// owned by root or by the target's owner, and writable by nobody else (no write for others;
/// for the group only where it is root's). Windows: the folder's ACL decides, not checked here.
pub fn check_parent(target: &Path) -> Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        let sib = siblings(target)?;
        let parent = std::fs::metadata(&sib.parent).map_err(|e| Error::io(&sib.parent, e))?;
        let own = std::fs::symlink_metadata(target).map_err(|e| Error::io(target, e))?;
        let mode = parent.mode() & 0o7777;
        let owner_ok = parent.uid() == 0 || parent.uid() == own.uid();
        let group_writes = mode & 0o020 != 0 && parent.gid() != 0;
        let others_write = mode & 0o002 != 0;
        if !owner_ok || group_writes || others_write {
            let why = if !owner_ok {
                format!(
                    "it belongs to user {}, neither root nor the target's owner ({})",
                    parent.uid(),
                    own.uid()
                )
            } else if others_write {
                format!("every user may write in it (mode {mode:o})")
            } else {
                format!(
                    "its group ({}) may write in it (mode {mode:o})",
                    parent.gid()
                )
            };
            return Err(Error::SyncRefused(format!(
                "the folder holding {}, {}, is not safe for keyferry's folders beside the target: \
                 {why}; another account could put a link where they go. Fix it: chown root {} \
                 and chmod go-w {} (or move the application folder); nothing was changed",
                target.display(),
                sib.parent.display(),
                sib.parent.display(),
                sib.parent.display()
            )));
        }
    }
    #[cfg(not(unix))]
    let _ = target;
    Ok(())
}

/// A new sync's id: its start time and process.
pub fn sync_id() -> String {
    crate::fs::record::change_id(Timestamp::now())
}

/// Applies a plan (made after [`crate::sync::recover`] for the same target).
pub fn apply(
    plan: &SyncPlan,
    target: &Target<'_>,
    opts: &ApplyOptions,
    progress: &dyn SyncProgress,
) -> Result<SyncOutcome> {
    let t = &plan.target;
    check_parent(t)?;
    let sib = siblings(t)?;
    if exists(&sib.staging) {
        return Err(Error::SyncRefused(format!(
            "{} exists: a sync of {} is running from another machine or was interrupted there; \
             finish it there (a rerun finishes it), or remove that folder if no sync is running",
            sib.staging.display(),
            t.display()
        )));
    }
    // Room for the tree this sync keeps: the oldest kept trees beyond `keep` go, the others
    // move one step older (a folder of their names keyferry did not make is refused first).
    crate::sync::kept::make_room(t, opts.keep)?;
    let protected = record_protected(t, &plan.protected)?;
    let protected_links = record_protected_links(t, &plan.protected)?;
    let mut journal = SyncJournal {
        version: crate::JSON_VERSION,
        kind: "sync-journal".into(),
        id: sync_id(),
        node: target.node.to_owned(),
        action: Action::Sync,
        mode: Mode::Swap,
        stage: Stage::Preparing,
        source: plan.source.clone(),
        target: t.clone(),
        staging: sib.staging.clone(),
        previous: sib.previous.clone(),
        protected,
        protected_links,
        steps: Vec::new(),
        app_offline: false,
        started: Timestamp::now(),
        source_fingerprint: plan.source_fingerprint.clone(),
        target_fingerprint: plan.target_fingerprint.clone(),
    };
    journal.save(target.state_dir)?;
    crate::failpoint::hit("sync:after-journal");
    // Before the install: the new tree goes, and the journal with it; the target is as it was.
    let give_up = |journal: &SyncJournal, e: Error| -> Result<SyncOutcome> {
        discard_staging(journal)?;
        SyncJournal::remove(target.state_dir, t)?;
        Err(e)
    };
    let built = match build(plan, &journal, opts, progress) {
        Ok(b) => b,
        Err(e) => return give_up(&journal, e),
    };
    crate::failpoint::hit("sync:built");
    if let Err(e) = check_protected(&journal, false) {
        return give_up(&journal, e);
    }

    let mut why_in_place = if opts.in_place {
        Some("asked for (--in-place)".to_string())
    } else {
        built.no_swap.clone()
    };
    // The fallback is the admin's to forbid: then the target stays as it was.
    let forbidden = |why: &str| {
        Error::SyncRefused(format!(
            "{} cannot be swapped with its new tree ({why}), and --no-in-place forbids moving \
             the files in one by one; the new tree was discarded and the target was not changed",
            t.display()
        ))
    };
    if let (true, Some(why)) = (opts.no_in_place, &why_in_place) {
        return give_up(&journal, forbidden(why));
    }
    journal.stage = Stage::Installing;
    journal.mode = if why_in_place.is_some() {
        Mode::InPlace
    } else {
        Mode::Swap
    };
    if journal.mode == Mode::InPlace {
        journal.steps = steps_of(plan, &built.recopied);
    }
    if opts.app_offline {
        journal.app_offline = put_app_offline(t)?;
    }
    journal.save(target.state_dir)?;
    crate::failpoint::hit("sync:installing");

    progress.phase("installing", 0, 0);
    if journal.mode == Mode::Swap {
        if let Err(e) = swap(&journal) {
            if !in_use(&e) {
                return Err(e);
            }
            // Files are held open (IIS): move the files in one by one instead.
            if opts.no_in_place {
                return give_up(&journal, forbidden(&e.to_string()));
            }
            why_in_place = Some(format!("the folder could not be swapped ({e})"));
            journal.mode = Mode::InPlace;
            journal.steps = steps_of(plan, &built.recopied);
            journal.save(target.state_dir)?;
        }
    }
    let mut carried = 0;
    let mut warnings = Vec::new();
    if journal.mode == Mode::InPlace {
        // Files go in one by one: a failure part-way leaves the target between old and new,
        // which its journal records; the rerun finishes it, a rollback undoes it.
        run_steps(&journal).map_err(|e| match e {
            Error::ProtectedChanged(_) => e,
            e => Error::PartlyInstalled {
                target: t.clone(),
                why: e.to_string(),
            },
        })?;
    } else {
        // Whatever the application wrote into its volatile folders (logs) after they were
        // linked into the new tree is only in the old tree now: carried into the live one,
        // by second names, so the next sync (which removes the old tree) cannot lose it.
        match carry_volatile(&sib.previous, t, &plan.target_kept, &plan.profile) {
            Ok(n) => carried = n,
            Err(e) => warnings.push(format!(
                "files written into the volatile folders during the sync may be only in {} ({e})",
                sib.previous.display()
            )),
        }
    }
    // Files whose bytes equal the source's get its modification time (the next plain sync
    // then takes them as the same instead of copying them again).
    match times_into(plan, t, journal.mode == Mode::InPlace) {
        Ok(w) => warnings.extend(w),
        Err(e) => warnings.push(format!(
            "the source's modification times were not set ({e})"
        )),
    }
    // The target is the new tree now: a failure from here on (a full disk writing the kept
    // tree's record) must not read as "nothing changed".
    let installed = |e: Error| match e {
        Error::ProtectedChanged(_) => e,
        e => Error::AfterInstall {
            target: t.clone(),
            why: e.to_string(),
        },
    };
    journal.stage = Stage::Committed;
    journal.save(target.state_dir).map_err(installed)?;
    crate::failpoint::hit("sync:committed");
    finish(&journal, target.state_dir).map_err(installed)?;

    Ok(SyncOutcome {
        target: t.clone(),
        mode: journal.mode,
        copied: built.copied,
        copied_bytes: built.copied_bytes,
        linked: built.linked,
        deleted: plan.delete.len() as u64,
        recopied: built.recopied,
        verified_files: built.verified_files,
        verified_bytes: built.verified_bytes,
        quick_checked: built.quick_checked,
        protected_checked: journal.protected.len(),
        previous: sib.previous,
        why_in_place,
        carried_after_swap: carried,
        warnings,
    })
}

/// Gives the files of `times_only` the source's modification time in the target `t`, each
/// opened through its folder's handle, never followed. `target_names`: under the target's
/// names (in place, or a times-only plan), else the source's (a swapped-in tree). Returns a
/// warning per file whose time could not be set.
fn times_into(plan: &SyncPlan, t: &Path, target_names: bool) -> Result<Vec<String>> {
    let mut warnings = Vec::new();
    if plan.new_times.is_empty() {
        return Ok(warnings);
    }
    let live = Tree::open(t)?;
    for (rel, time) in &plan.new_times {
        let name = if target_names {
            plan.target_name(rel)
        } else {
            rel.clone()
        };
        let set = live
            .parent(&name)
            .and_then(|p| match p {
                Some((d, n)) => d.open_file(&n, true),
                None => Ok(None),
            })
            .and_then(|o| match o {
                Some(o) => o
                    .file
                    .set_modified(*time)
                    .map_err(|e| Error::io(live.join(&name), e)),
                None => Ok(()),
            });
        if let Err(e) = set {
            warnings.push(format!(
                "{}: its modification time was not set ({e})",
                crate::fs::name::shown(&name)
            ));
        }
    }
    Ok(warnings)
}

/// A plan whose only differences are modification times ([`SyncPlan::is_times_only`]):
/// the times set in place. Returns a warning per file whose time could not be set.
pub fn set_times(plan: &SyncPlan) -> Result<Vec<String>> {
    check_parent(&plan.target)?;
    times_into(plan, &plan.target, true)
}

/// Links into the live tree `t` every file under the volatile entries `kept` that the old
/// tree `prev` has and `t` lacks (written after the new tree was built). Returns how many.
fn carry_volatile(
    prev: &Path,
    t: &Path,
    kept: &[(String, Kind)],
    profile: &Profile,
) -> Result<u64> {
    let (old, live) = (Tree::open(prev)?, Tree::open(t)?);
    let mut n = 0;
    let mut stack: Vec<String> = kept
        .iter()
        .filter(|(rel, _)| {
            crate::sync::plan::classify(rel, profile) == crate::sync::plan::Class::Volatile
        })
        .map(|(rel, _)| rel.clone())
        .collect();
    while let Some(rel) = stack.pop() {
        match old.entry(&rel)? {
            Entry::File { .. } | Entry::Symlink => {
                if matches!(live.entry(&rel)?, Entry::Missing) {
                    if let Some(parent) = crate::fs::tree::split_rel(&rel)
                        .ok()
                        .map(|(p, _)| p.to_owned())
                    {
                        if !parent.is_empty() && live.dir(&parent)?.is_none() {
                            continue;
                        }
                    }
                    link_across(&old, &rel, &live, &rel)?;
                    n += 1;
                }
            }
            Entry::Other(k) if k.ends_with("folder") => {
                if let Some(d) = old.dir(&rel)? {
                    for name in d.names()? {
                        stack.push(format!(
                            "{rel}/{}",
                            crate::fs::name::to_rel_or_refuse(&name, &d.join(&name))?
                        ));
                    }
                }
            }
            _ => {}
        }
    }
    Ok(n)
}

/// Finishes an interrupted sync or rollback of `target`, if there is one: before the new
/// tree was complete it is discarded (the target never changed); after, the install is
/// completed. Returns what was done.
pub fn recover(state_dir: &Path, target: &Path) -> Result<Option<String>> {
    let Some(mut journal) = SyncJournal::load(state_dir, target)? else {
        return Ok(None);
    };
    let what = match journal.stage {
        Stage::Preparing if journal.action == Action::Rollback => {
            unstage_previous(&journal)?;
            SyncJournal::remove(state_dir, target)?;
            "put back the previous tree an interrupted rollback had started to prepare; the \
             target was never changed"
        }
        Stage::Preparing => {
            discard_staging(&journal)?;
            SyncJournal::remove(state_dir, target)?;
            "discarded the new tree of an interrupted sync; the target was never changed"
        }
        Stage::Installing | Stage::Committed => {
            if journal.stage == Stage::Installing {
                match (journal.action, journal.mode) {
                    (_, Mode::Swap) => swap(&journal)?,
                    (Action::Sync, Mode::InPlace) => run_steps(&journal)?,
                    (Action::Rollback, Mode::InPlace) => undo_steps(&journal, &journal.steps)?,
                }
                journal.stage = Stage::Committed;
                journal.save(state_dir)?;
            }
            finish(&journal, state_dir)?;
            match journal.action {
                Action::Sync => "finished an interrupted sync: the target is the new tree",
                Action::Rollback => "finished an interrupted rollback: the target is the old tree",
            }
        }
    };
    Ok(Some(format!("{}: {what}", target.display())))
}

/// Owner, group and mode of a folder.
#[cfg(unix)]
type UnixAttrs = (u32, u32, u32);

#[cfg(unix)]
fn parent_rel(rel: &str) -> &str {
    rel.rsplit_once('/').map(|x| x.0).unwrap_or("")
}

fn create_dir_private(p: &Path) -> Result<()> {
    #[cfg(unix)]
    let b = {
        let mut b = std::fs::DirBuilder::new();
        std::os::unix::fs::DirBuilderExt::mode(&mut b, 0o700);
        b
    };
    #[cfg(not(unix))]
    let b = std::fs::DirBuilder::new();
    b.create(p).map_err(|e| Error::io(p, e))
}

fn write_marker(dir: &Path, id: &str) -> Result<()> {
    let p = dir.join(MARKER);
    crate::fs::write_new_private(&p, false, |f: &mut std::fs::File| {
        use std::io::Write;
        f.write_all(id.as_bytes()).map_err(|e| Error::io(&p, e))
    })
    .map(drop)
}

fn read_marker(dir: &Path) -> Option<String> {
    crate::fs::read_bounded(&dir.join(MARKER), 256, "sync marker")
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
}

fn exists(p: &Path) -> bool {
    std::fs::symlink_metadata(p).is_ok()
}

/// Removes the new tree of a sync that did not install it, after checking it is that
/// sync's (its marker): never a folder keyferry did not build.
fn discard_staging(journal: &SyncJournal) -> Result<()> {
    let n = &journal.staging;
    if !exists(n) {
        return Ok(());
    }
    match read_marker(n) {
        Some(id) if id == journal.id => {}
        None if std::fs::read_dir(n)
            .map(|mut d| d.next().is_none())
            .unwrap_or(false) => {}
        _ => {
            return Err(Error::RecoveryConflict(format!(
                "{} is not the new tree this sync was building; look at it and remove it by hand",
                n.display()
            )))
        }
    }
    remove_marked_tree(n)
}

/// Removes one of keyferry's trees beside the target (the new tree, the kept one): opened
/// from the parent's handle without following a link, everything in it removed through
/// handles, and keyferry's marks (the sync id, the kept tree's record) last, so that a removal
/// that fails part-way (an immutable file) leaves a tree keyferry still recognises and the
/// next run removes once the cause is gone.
fn remove_marked_tree(folder: &Path) -> Result<()> {
    empty_tree(folder, false)
}

/// Empties one of keyferry's trees beside the target (see [`remove_marked_tree`]); with
/// `keep_marks` its marks and the folder itself stay.
fn empty_tree(folder: &Path, keep_marks: bool) -> Result<()> {
    let (parent, name) = crate::fs::split(folder)?;
    let parent = crate::fs::Dir::open(&parent)?;
    let Some(dir) = parent.sub(&name)? else {
        return Ok(());
    };
    let marks = [
        std::ffi::OsStr::new(MARKER),
        std::ffi::OsStr::new(PREVIOUS_RECORD),
    ];
    for entry in dir.names()? {
        if marks.contains(&entry.as_os_str()) {
            continue;
        }
        match dir.entry(&entry)? {
            Entry::Missing => {}
            Entry::Other(k) if k.ends_with("folder") => {
                crate::fs::tree::remove_tree_in(&dir, &entry, crate::parallel::threads(4))?
            }
            _ => dir.unlink(&entry)?,
        }
        crate::failpoint::hit("sync:cleanup");
    }
    if keep_marks {
        return Ok(());
    }
    for m in marks {
        if !matches!(dir.entry(m)?, Entry::Missing) {
            dir.unlink(m)?;
        }
    }
    drop(dir);
    parent.rmdir(&name)?;
    Ok(())
}

/// Removes a kept tree (keyferry's, by its record or marker: [`crate::sync::kept`] checked).
pub(crate) fn remove_kept_tree(previous: &Path) -> Result<()> {
    remove_marked_tree(previous)
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use crate::profile::ProfileId;

    fn write(p: &Path, bytes: &[u8]) {
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, bytes).unwrap();
    }

    /// A folder of the live target swapped for a link to somewhere else after the plan: the
    /// in-place steps go through folder handles, so they stop at the link and neither move
    /// nor replace anything behind it.
    #[test]
    fn in_place_steps_stop_at_a_folder_swapped_for_a_link() {
        let d = tempfile::tempdir().unwrap();
        let (src, t, out) = (
            d.path().join("src"),
            d.path().join("t"),
            d.path().join("out"),
        );
        write(&src.join("web.config"), b"<new/>");
        write(&src.join("bin/a.dll"), b"new a");
        write(&t.join("web.config"), b"<old/>");
        write(&t.join("encryption.config"), b"KEY");
        write(&t.join("bin/a.dll"), b"old a, longer");
        write(&t.join("bin/stale.dll"), b"stale");
        write(&out.join("a.dll"), b"SOMEONE ELSE'S a.dll");
        write(&out.join("stale.dll"), b"SOMEONE ELSE'S stale.dll");
        let profile = Profile::builtin(ProfileId::SecretServer).unwrap();
        let opts = crate::sync::PlanOptions {
            allow_new_target: false,
            max_delete: 10,
            checksum: false,
        };
        let plan = crate::sync::plan(&src, &t, &profile, &opts).unwrap();
        assert_eq!(plan.delete.len(), 1);
        let state = d.path().join("state");
        let target = Target {
            node: "web2",
            state_dir: &state,
            profile: &profile,
        };
        let (t2, out2) = (t.clone(), out.clone());
        let _hook = crate::failpoint::on("sync:installing", move || {
            std::fs::rename(t2.join("bin"), t2.join("bin-moved")).unwrap();
            std::os::unix::fs::symlink(&out2, t2.join("bin")).unwrap();
        });
        let opts = ApplyOptions {
            jobs: 2,
            app_offline: false,
            in_place: true,
            no_in_place: false,
            keep: 1,
        };
        let e = apply(&plan, &target, &opts, &NoSyncProgress).unwrap_err();
        assert!(
            matches!(&e, Error::PartlyInstalled { why, .. } if why.contains("changed")),
            "{e}"
        );
        assert_eq!(
            std::fs::read(out.join("a.dll")).unwrap(),
            b"SOMEONE ELSE'S a.dll"
        );
        assert_eq!(
            std::fs::read(out.join("stale.dll")).unwrap(),
            b"SOMEONE ELSE'S stale.dll"
        );
        assert_eq!(std::fs::read_dir(&out).unwrap().count(), 2);
        assert_eq!(std::fs::read(t.join("encryption.config")).unwrap(), b"KEY");
    }
}
