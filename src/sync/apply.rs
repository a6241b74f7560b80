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
    pub node: &'a str,
    pub state_dir: &'a Path,
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
    /// Previous trees kept per target for rollback (at least 1; see [`crate::sync::kept`]).
    pub keep: u32,
}

/// What an apply did.
#[derive(Debug, Clone, Serialize)]
pub struct SyncOutcome {
    pub target: PathBuf,
    pub mode: Mode,
    pub copied: u64,
    pub copied_bytes: u64,
    pub linked: u64,
    pub deleted: u64,
    /// Files the plan thought unchanged that differed in content, copied again.
    #[serde(serialize_with = "crate::fs::name::serialize_all_shown")]
    pub recopied: Vec<String>,
    /// Files compared with the source by content before the new tree went in.
    pub verified_files: u64,
    pub verified_bytes: u64,
    /// Files kept from the target, checked against the source by size and time.
    pub quick_checked: u64,
    pub protected_checked: usize,
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
    format!("{}-{}", Timestamp::now().compact(), std::process::id())
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
        stage: Stage::Building,
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
    let built = match build(plan, &journal, opts, progress) {
        Ok(b) => b,
        Err(e) => {
            discard_staging(&journal)?;
            SyncJournal::remove(target.state_dir, t)?;
            return Err(e);
        }
    };
    crate::failpoint::hit("sync:built");
    if let Err(e) = check_protected(&journal, false) {
        discard_staging(&journal)?;
        SyncJournal::remove(target.state_dir, t)?;
        return Err(e);
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
        let e = forbidden(why);
        discard_staging(&journal)?;
        SyncJournal::remove(target.state_dir, t)?;
        return Err(e);
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
                let err = forbidden(&e.to_string());
                discard_staging(&journal)?;
                SyncJournal::remove(target.state_dir, t)?;
                return Err(err);
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
        Stage::Building if journal.action == Action::Rollback => {
            unstage_previous(&journal)?;
            SyncJournal::remove(state_dir, target)?;
            "put back the previous tree an interrupted rollback had started to prepare; the \
             target was never changed"
        }
        Stage::Building => {
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

/// What a finished build left.
struct Built {
    copied: u64,
    copied_bytes: u64,
    linked: u64,
    recopied: Vec<String>,
    verified_files: u64,
    verified_bytes: u64,
    quick_checked: u64,
    /// Why the tree cannot be swapped in (a protected file or kept entry could not be linked).
    no_swap: Option<String>,
}

fn build(
    plan: &SyncPlan,
    journal: &SyncJournal,
    opts: &ApplyOptions,
    progress: &dyn SyncProgress,
) -> Result<Built> {
    // Copied files go to a thread that asks the OS to start writing each to disk, so the
    // copying threads never wait on the disk and the disk works while the tree is verified;
    // the flush before the swap then has little left to wait for.
    let (written, copied) = std::sync::mpsc::channel::<std::fs::File>();
    let done = std::sync::atomic::AtomicBool::new(false);
    let built = std::thread::scope(|s| {
        s.spawn(|| {
            for f in copied {
                if !done.load(std::sync::atomic::Ordering::Relaxed) {
                    crate::os::start_writeback(&f);
                }
            }
        });
        let built = build_tree(plan, journal, opts, progress, written);
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        built
    })?;

    flush(&journal.staging)?;

    Ok(built)
}

fn build_tree(
    plan: &SyncPlan,
    journal: &SyncJournal,
    opts: &ApplyOptions,
    progress: &dyn SyncProgress,
    written: std::sync::mpsc::Sender<std::fs::File>,
) -> Result<Built> {
    let (src, t, n) = (&plan.source, &plan.target, &journal.staging);
    create_dir_private(n)?;
    write_marker(n, &journal.id)?;
    let trees = Trees {
        source: Tree::open(src)?,
        live: Tree::open(t)?,
        new: Tree::open(n)?,
        written,
    };
    let dirs = DirAttrs::new(&trees.live, &trees.new)?;

    for d in &plan.source_dirs {
        dirs.create(d, source_mode(&trees.source, d))?;
    }
    // Unchanged files: a second name for the target's file (same bytes, same attributes).
    let mut to_copy: Vec<(String, Option<String>, u64)> = plan
        .add
        .iter()
        .map(|f| (f.path.clone(), None, f.bytes))
        .chain(
            plan.update
                .iter()
                .map(|f| (f.path.clone(), Some(plan.target_name(&f.path)), f.bytes)),
        )
        .collect();
    // Unchanged files are linked on a thread of their own while the changed ones are copied
    // (metadata work beside data work: on two cores the one hides most of the other).
    let total: u64 = to_copy.iter().map(|c| c.2).sum();
    progress.phase("copying", to_copy.len() as u64, total);
    let (links, copied) = std::thread::scope(|s| {
        let links = s.spawn(|| {
            let mut linked = 0u64;
            let mut failed = Vec::new();
            for (rel, trel, len) in &plan.unchanged_files {
                if link_across(&trees.live, trel, &trees.new, rel).is_ok() {
                    linked += 1;
                } else {
                    failed.push((rel.clone(), Some(trel.clone()), *len));
                }
            }
            (linked, failed)
        });
        let copied = copy_all(&trees, &to_copy, &dirs, opts.jobs, progress);
        (links.join().expect("linking does not panic"), copied)
    });
    let mut recopied = copied?;
    let (linked, failed) = links;
    // Where a second name could not be made (a share without hard links): copied instead.
    recopied.extend(copy_all(&trees, &failed, &dirs, opts.jobs, progress)?);
    to_copy.extend(failed);
    // What the target keeps: the same files, by a second name.
    let mut no_swap = None;
    for rel in journal
        .protected
        .iter()
        .map(|p| &p.path)
        .chain(journal.protected_links.iter().map(|l| &l.path))
    {
        if let Err(e) = dirs.link_from_target(rel, &Kind::File(0, None)) {
            no_swap.get_or_insert(format!("{rel} could not be linked into the new tree ({e})"));
        }
    }
    for (rel, kind) in &plan.target_kept {
        if let Err(e) = dirs.link_from_target(rel, kind) {
            no_swap.get_or_insert(format!("{rel} could not be linked into the new tree ({e})"));
        }
    }
    let copied = to_copy.len() as u64;

    crate::failpoint::hit("sync:copied");

    // The whole new tree against a fresh listing of the source: every file written was
    // compared with its source by content as it was written (see `copy_in`), so here it must
    // still have the source's size and time, as must the files kept from the target (the plan
    // found them the same: size and full-precision time, or their content with --checksum);
    // files whose content the plan found equal behind another time (they get the source's
    // time after the install) are compared by content.
    let by_content: std::collections::HashSet<String> =
        plan.times_only.iter().map(|f| f.path.clone()).collect();
    progress.phase(
        "verifying",
        0,
        2 * plan.times_only.iter().map(|f| f.bytes).sum::<u64>(),
    );
    let check = || {
        crate::sync::verify::compare_scoped(
            src,
            n,
            &plan.profile,
            opts.jobs,
            Some(&by_content),
            &|b| progress.advance(b),
        )
    };
    let v = check()?;
    if !v.identical() {
        // Changed on the source since it was copied or listed: copied again, then checked.
        let mut again = Vec::new();
        for d in &v.differing {
            if d.why == crate::sync::verify::Why::OnlyOnTarget {
                return Err(Error::TreeMismatch(format!(
                    "the new tree of {} holds {} that the source does not",
                    t.display(),
                    d.path
                )));
            }
            trees.new.remove_file(&d.path)?;
            again.push((d.path.clone(), Some(plan.target_name(&d.path)), 0));
            recopied.push(d.path.clone());
        }
        copy_all(&trees, &again, &dirs, opts.jobs, progress)?;
        if let Some(d) = check()?.differing.first() {
            return Err(Error::TreeMismatch(format!(
                "{} in the new tree of {} does not match the source ({}); is something \
                 changing the source while it is copied?",
                d.path,
                t.display(),
                d.why.describe()
            )));
        }
    }
    recopied.sort();
    recopied.dedup();
    dirs.finish()?;

    Ok(Built {
        copied,
        copied_bytes: to_copy.iter().map(|c| c.2).sum(),
        linked,
        recopied,
        verified_files: copied + v.files,
        verified_bytes: to_copy.iter().map(|c| c.2).sum::<u64>() + v.bytes,
        quick_checked: v.quick_checked.saturating_sub(copied),
        no_swap,
    })
}

/// The three trees a sync works on, each through folder handles, and where copied files go
/// when written.
struct Trees {
    source: Tree,
    live: Tree,
    new: Tree,
    written: std::sync::mpsc::Sender<std::fs::File>,
}

/// Copies `files` into the new tree on up to `jobs` threads, largest first; returns the
/// files that had to be copied a second time (see [`copy_in`]).
fn copy_all(
    trees: &Trees,
    files: &[(String, Option<String>, u64)],
    dirs: &DirAttrs,
    jobs: usize,
    progress: &dyn SyncProgress,
) -> Result<Vec<String>> {
    let order = crate::parallel::largest_first(files.iter().map(|f| f.2));
    let again = crate::parallel::try_map(
        &order,
        crate::parallel::threads(jobs),
        || {
            (
                vec![0u8; crate::sync::hash::BUF],
                vec![0u8; crate::sync::hash::BUF],
            )
        },
        |bufs, i| {
            let (rel, trel, _) = &files[i];
            let (bytes, again) = copy_in(trees, rel, trel.as_deref(), dirs, bufs)?;
            progress.advance(bytes);
            Ok::<_, Error>(again)
        },
    )?;
    Ok(files
        .iter()
        .zip(again)
        .filter(|(_, again)| *again)
        .map(|(f, _)| f.0.clone())
        .collect())
}

/// Copies one source file into the new tree: opened once no-follow, created new there, the
/// source's modification time, the attributes of the target file it replaces (or, for a new
/// file, its folder's owner and the source's mode bits).
///
/// The copy is then read back beside the source, through the same two handles, while the
/// page cache still holds both, and compared byte for byte: a file whose copy differs (the
/// source was written to meanwhile) is copied once more, and refused if it differs again.
/// Returns the bytes copied and whether it took a second copy.
fn copy_in(
    trees: &Trees,
    rel: &str,
    trel: Option<&str>,
    dirs: &DirAttrs,
    bufs: &mut (Vec<u8>, Vec<u8>),
) -> Result<(u64, bool)> {
    use std::io::Seek;
    let mut from = trees.source.open_file(rel)?.ok_or_else(|| Error::Changed {
        path: trees.source.join(rel),
    })?;
    let attrs = match trel.map(|r| trees.live.open_file(r)) {
        Some(Ok(Some(old))) => Some(Attrs::of(&old)?),
        _ => None,
    };
    let to_path = trees.new.join(rel);
    let (dir, name) = trees.new.parent(rel)?.ok_or_else(|| Error::Changed {
        path: to_path.clone(),
    })?;
    let mut to = dir.create_new(&name, 0o600)?;
    let mut again = false;
    let bytes = loop {
        let bytes = std::io::copy(&mut from.file, &mut to).map_err(|e| Error::io(&to_path, e))?;
        crate::failpoint::hit_at("sync:file-copied", rel);
        if crate::sync::hash::same_files((&from.file, &from.path), (&to, &to_path), bufs)? {
            break bytes;
        }
        if again {
            return Err(Error::TreeMismatch(format!(
                "{rel} in the new tree of {} does not match the source (copied twice, and \
                 the bytes differed each time); is something changing the source while it is \
                 copied?",
                trees.live.path().display()
            )));
        }
        again = true;
        let restart = |f: &mut std::fs::File, p: &Path| {
            f.seek(std::io::SeekFrom::Start(0))
                .map(drop)
                .map_err(|e| Error::io(p, e))
        };
        restart(&mut from.file, &from.path)?;
        to.set_len(0).map_err(|e| Error::io(&to_path, e))?;
        restart(&mut to, &to_path)?;
    };
    if let Ok(m) = from.file.metadata().and_then(|m| m.modified()) {
        to.set_modified(m).map_err(|e| Error::io(&to_path, e))?;
    }
    let attrs = match attrs {
        Some(a) => a,
        None => dirs.for_new_file(rel, &from)?,
    };
    attrs.apply(&to, &to_path)?;
    #[cfg(windows)]
    to.sync_all().map_err(|e| Error::io(&to_path, e))?;
    // Off to be written to disk (if that thread is gone, the flush still does it).
    let _ = trees.written.send(to);
    Ok((bytes, again))
}

/// Gives `from` in tree `a` the second name `to` in tree `b` (both folders through handles,
/// nothing followed).
fn link_across(a: &Tree, from: &str, b: &Tree, to: &str) -> Result<()> {
    let missing = |t: &Tree, rel: &str| Error::Changed { path: t.join(rel) };
    let (ad, an) = a.parent(from)?.ok_or_else(|| missing(a, from))?;
    let (bd, bn) = b.parent(to)?.ok_or_else(|| missing(b, to))?;
    ad.link_to(&an, &bd, &bn)
}

/// Moves `from` in tree `a` to `to` in tree `b` (the name itself; a link is moved, never
/// followed). `to`'s folders are made (private) where missing if `b` is keyferry's own
/// tree (`b_ours`); in the live target they must exist.
fn move_across(a: &Tree, from: &str, b: &Tree, to: &str, b_ours: bool) -> Result<()> {
    let missing = |t: &Tree, rel: &str| Error::Changed { path: t.join(rel) };
    let (ad, an) = a.parent(from)?.ok_or_else(|| missing(a, from))?;
    let (bd, bn) = if b_ours {
        b.parent_made(to, 0o700)?
    } else {
        b.parent(to)?.ok_or_else(|| missing(b, to))?
    };
    ad.rename_to(&an, &bd, &bn)
}

/// Whether `rel` names anything in a tree (not followed).
fn present(tree: &Tree, rel: &str) -> Result<bool> {
    Ok(tree.entry(rel)? != Entry::Missing)
}

/// The source folder's mode bits (Unix), for a folder new to the target.
fn source_mode(source: &Tree, rel: &str) -> Option<u32> {
    #[cfg(unix)]
    {
        source
            .dir(rel)
            .ok()
            .flatten()
            .and_then(|d| d.unix_owner().ok())
            .map(|a| a.2)
    }
    #[cfg(not(unix))]
    {
        let _ = (source, rel);
        None
    }
}

/// Folder attributes for the new tree: each folder gets the attributes of the target's
/// folder of the same name, or (new folders) its parent's owner with the source's mode.
struct DirAttrs<'a> {
    live: &'a Tree,
    new: &'a Tree,
    #[cfg(unix)]
    made: std::sync::Mutex<Vec<(String, UnixAttrs)>>,
}

impl<'a> DirAttrs<'a> {
    fn new(live: &'a Tree, new: &'a Tree) -> Result<DirAttrs<'a>> {
        let d = DirAttrs {
            live,
            new,
            #[cfg(unix)]
            made: std::sync::Mutex::new(Vec::new()),
        };
        #[cfg(unix)]
        {
            let root = d.live.dir("")?.expect("the root").unix_owner()?;
            d.made
                .lock()
                .expect("not poisoned")
                .push((String::new(), root));
        }
        Ok(d)
    }

    /// Creates `rel` in the new tree (its parents exist). `source_mode`: the source folder's
    /// mode bits, for a folder the target does not have.
    fn create(&self, rel: &str, source_mode: Option<u32>) -> Result<()> {
        let (parent, name) = self.new.parent(rel)?.ok_or_else(|| Error::Changed {
            path: self.new.join(rel),
        })?;
        if !parent.mkdir(&name, 0o700)? {
            return Ok(());
        }
        #[cfg(unix)]
        {
            let attrs = match self.live.dir(rel) {
                Ok(Some(d)) => d.unix_owner()?,
                _ => {
                    let (uid, gid, pmode) = self.attrs_of(parent_rel(rel));
                    (uid, gid, source_mode.unwrap_or(pmode) & 0o775)
                }
            };
            self.made
                .lock()
                .expect("not poisoned")
                .push((rel.to_owned(), attrs));
        }
        let _ = source_mode;
        Ok(())
    }

    #[cfg(unix)]
    fn attrs_of(&self, rel: &str) -> (u32, u32, u32) {
        self.made
            .lock()
            .expect("not poisoned")
            .iter()
            .rev()
            .find(|(r, _)| r == rel)
            .map(|(_, a)| *a)
            .unwrap_or((0, 0, 0o755))
    }

    /// The attributes of a file new to the target: its folder's owner and group, the
    /// source's mode bits without write for others (Unix); the folder's inherited ACL
    /// (Windows).
    fn for_new_file(&self, rel: &str, from: &crate::fs::Opened) -> Result<Attrs> {
        #[cfg(unix)]
        {
            let (uid, gid, _) = self.attrs_of(parent_rel(rel));
            let mode = from.meta.unix.map(|u| u.2).unwrap_or(0o644) & 0o775;
            Ok(Attrs {
                owner: Some(uid),
                group: Some(gid),
                mode: Some(mode),
                acl: None,
                inherit: false,
            })
        }
        #[cfg(windows)]
        {
            let _ = (rel, from);
            Ok(Attrs {
                owner: None,
                group: None,
                mode: None,
                acl: None,
                inherit: true,
            })
        }
    }

    /// Gives every folder of the new tree its attributes, deepest first, the root last,
    /// each through its handle.
    fn finish(&self) -> Result<()> {
        #[cfg(unix)]
        {
            let mut made = self.made.lock().expect("not poisoned").clone();
            made.sort_by_key(|m| std::cmp::Reverse(m.0.len()));
            for (rel, attrs) in made {
                let d = self.new.dir(&rel)?.ok_or_else(|| Error::Changed {
                    path: self.new.join(&rel),
                })?;
                d.set_unix_owner(attrs)?;
            }
        }
        Ok(())
    }

    /// Gives the new tree a second name for something the target keeps as it is (a protected
    /// file, a volatile folder's files, a link), creating the folders on the way. Whatever is
    /// already there stays (a rollback merges the target's newer logs into the previous
    /// tree's).
    fn link_from_target(&self, rel: &str, kind: &Kind) -> Result<()> {
        let (parent, _) = crate::fs::tree::split_rel(rel)?;
        let mut prefix = String::new();
        for part in parent.split('/').filter(|p| !p.is_empty()) {
            if !prefix.is_empty() {
                prefix.push('/');
            }
            prefix.push_str(part);
            self.create(&prefix, None)?;
        }
        match kind {
            Kind::Dir => self.link_folder(rel),
            _ => self.link_one(rel),
        }
    }

    fn link_one(&self, rel: &str) -> Result<()> {
        if present(self.new, rel)? {
            return Ok(());
        }
        link_across(self.live, rel, self.new, rel)
    }

    /// Every file and link under the target's folder `rel`, by second names, its folders made.
    fn link_folder(&self, rel: &str) -> Result<()> {
        self.create(rel, None)?;
        let Some(dir) = self.live.dir(rel)? else {
            return Ok(());
        };
        for name in dir.names()? {
            let n = crate::fs::name::to_rel_or_refuse(&name, &dir.join(&name))?;
            let sub = format!("{rel}/{n}");
            match dir.sub(&name) {
                Ok(Some(_)) => self.link_folder(&sub)?,
                Ok(None) => {}
                Err(Error::Changed { .. }) => self.link_one(&sub)?,
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
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

/// Protected files of the target now: identity, hash and attributes, each opened once,
/// no-follow, and hashed through that handle. A protected name that is a link or folder (or
/// lies under a link) is left alone and not recorded.
fn record_protected(t: &Path, rels: &[String]) -> Result<Vec<ProtectedState>> {
    let tree = Tree::open(t)?;
    let mut buf = vec![0u8; 64 * 1024];
    let mut out = Vec::new();
    for rel in rels {
        let mut opened = match tree.open_file(rel) {
            Ok(Some(o)) => o,
            Ok(None) | Err(Error::NotAFile { .. }) | Err(Error::Changed { .. }) => continue,
            Err(e) => return Err(e),
        };
        out.push(ProtectedState {
            path: rel.clone(),
            id: opened.meta.id,
            attrs: Attrs::of(&opened)?,
            blake3: crate::sync::hash::hash_opened(&mut opened, &mut buf)?,
        });
    }
    Ok(out)
}

/// Protected names of the target that are links, with the link's own text.
fn record_protected_links(t: &Path, rels: &[String]) -> Result<Vec<ProtectedLink>> {
    let tree = Tree::open(t)?;
    let mut out = Vec::new();
    for rel in rels {
        if matches!(tree.entry(rel), Ok(Entry::Symlink)) {
            let p = tree.join(rel);
            let points_to = std::fs::read_link(&p).map_err(|e| Error::io(&p, e))?;
            out.push(ProtectedLink {
                path: rel.clone(),
                points_to,
            });
        }
    }
    Ok(out)
}

/// Checks the target's protected files against the journal: the same files (identity), and
/// after the install (`full`) the same bytes and attributes too.
fn check_protected(journal: &SyncJournal, full: bool) -> Result<()> {
    let now = record_protected(
        &journal.target,
        &journal
            .protected
            .iter()
            .map(|p| p.path.clone())
            .collect::<Vec<_>>(),
    )?;
    for l in &journal.protected_links {
        let p = journal.target.join(&l.path);
        if std::fs::read_link(&p).ok().as_ref() != Some(&l.points_to) {
            return Err(if full {
                Error::ProtectedChanged(format!(
                    "{} is no longer the link to {} it was before the sync",
                    p.display(),
                    l.points_to.display()
                ))
            } else {
                Error::Changed { path: p }
            });
        }
    }
    for before in &journal.protected {
        let after = now.iter().find(|a| a.path == before.path);
        let same = match after {
            Some(a) if !full => a.id == before.id,
            Some(a) => {
                a.id == before.id && a.blake3.ct_eq(&before.blake3) && a.attrs == before.attrs
            }
            None => false,
        };
        if !same {
            let p = journal.target.join(&before.path);
            return Err(if full {
                Error::ProtectedChanged(format!(
                    "{} is not the file it was before the sync (identity, bytes or \
                     attributes differ); compare it with its backup now",
                    p.display()
                ))
            } else {
                Error::Changed { path: p }
            });
        }
    }
    Ok(())
}

/// Flushes the new tree to disk before it goes in, so a power cut cannot leave a swapped
/// folder of empty files (Linux: one `syncfs` for the volume; Windows flushes each copied
/// file as it is written).
fn flush(n: &Path) -> Result<()> {
    #[cfg(target_os = "linux")]
    {
        let d = crate::fs::Dir::open(n)?;
        d.sync_fs()?;
    }
    let _ = n;
    Ok(())
}

/// Whether an error means files are held open: Windows access denied, sharing or lock
/// violation (a folder with open files cannot be renamed); `EBUSY` elsewhere.
fn in_use(e: &Error) -> bool {
    let Error::Io { source, .. } = e else {
        return false;
    };
    let codes: &[i32] = if cfg!(windows) { &[5, 32, 33] } else { &[16] };
    source.raw_os_error().is_some_and(|c| codes.contains(&c))
}

/// Puts the new tree in place of the target (idempotent: recovery calls it again). The
/// renames go through a handle on the folder holding all three.
fn swap(journal: &SyncJournal) -> Result<()> {
    let (t, n, b) = (&journal.target, &journal.staging, &journal.previous);
    let swapped = read_marker(t).is_some_and(|id| id == journal.id);
    if !swapped {
        if exists(t) && exists(n) {
            exchange(t, n, b)?;
        } else if !exists(t) && exists(n) {
            rename_sibling(n, t)?;
        } else {
            return Err(Error::RecoveryConflict(format!(
                "neither {} nor {} is the new tree of this sync; compare {} with its source",
                t.display(),
                n.display(),
                t.display()
            )));
        }
    }
    crate::failpoint::hit("sync:swapped");
    // Linux's exchange leaves the old tree under the new tree's name.
    if exists(n) && read_marker(n).is_none_or(|id| id != journal.id) {
        rename_sibling(n, b)?;
    }
    Ok(())
}

/// Swaps `t` and `n`; the old `t` ends up as `n` (Linux, atomic) or as `b` (elsewhere).
fn exchange(t: &Path, n: &Path, b: &Path) -> Result<()> {
    #[cfg(target_os = "linux")]
    {
        let _ = b;
        let sib = siblings(t)?;
        let d = crate::fs::Dir::open(&sib.parent)?;
        let (_, nn) = crate::fs::split(n)?;
        d.exchange(&sib.name, &nn)
    }
    #[cfg(not(target_os = "linux"))]
    {
        rename_sibling(t, b)?;
        crate::failpoint::hit("sync:moved-out");
        rename_sibling(n, t)
    }
}

/// Renames a folder to a sibling name (the target and keyferry's folders beside it), through
/// a handle on their folder, and makes the rename durable.
fn rename_sibling(from: &Path, to: &Path) -> Result<()> {
    let (parent, from_name) = crate::fs::split(from)?;
    let (_, to_name) = crate::fs::split(to)?;
    let d = crate::fs::Dir::open(&parent)?;
    d.rename(&from_name, &to_name)?;
    d.sync()
}

/// A folder's Unix owner, group and mode in the live target, as its handle says.
fn folder_attrs(live: Option<&Tree>, rel: &str) -> Option<(u32, u32, u32)> {
    #[cfg(unix)]
    {
        live?.dir(rel).ok().flatten()?.unix_owner().ok()
    }
    #[cfg(not(unix))]
    {
        let _ = (live, rel);
        None
    }
}

/// The steps of an in-place apply: folders first, then files, then emptied folders.
fn steps_of(plan: &SyncPlan, recopied: &[String]) -> Vec<Step> {
    let live = Tree::open(&plan.target).ok();
    // What stands where the source puts another kind of entry goes first: a file where a
    // folder comes, a folder (and what it holds) where a file comes, a link.
    let early = |path: &str| {
        plan.kind_changes
            .iter()
            .any(|c| path == c || path.starts_with(&format!("{c}/")))
    };
    let rm_steps = |dirs: Vec<&String>| -> Vec<Step> {
        let mut dirs = dirs;
        dirs.sort_by_key(|d| std::cmp::Reverse(d.len()));
        dirs.into_iter()
            .map(|d| Step::RmDir {
                path: d.clone(),
                attrs: folder_attrs(live.as_ref(), d),
            })
            .collect()
    };
    let mut steps: Vec<Step> = plan
        .delete
        .iter()
        .filter(|f| early(&f.path))
        .map(|f| Step::Delete {
            path: f.path.clone(),
        })
        .collect();
    steps.extend(rm_steps(
        plan.delete_dirs.iter().filter(|d| early(d)).collect(),
    ));
    steps.extend(
        plan.add_dirs
            .iter()
            .map(|d| Step::MkDir { path: d.clone() }),
    );
    let target_of = |rel: &str| plan.target_name(rel);
    for f in &plan.add {
        steps.push(Step::Put {
            path: f.path.clone(),
            target: target_of(&f.path),
            replaced: false,
        });
    }
    for f in &plan.update {
        steps.push(Step::Put {
            path: f.path.clone(),
            target: target_of(&f.path),
            replaced: true,
        });
    }
    // An unchanged file whose name differs from the source's in letter case only (a target
    // that compares names without regard to case): the swap takes the source's name, and so
    // does this, moving the same bytes in under it.
    for (rel, trel, _) in &plan.unchanged_files {
        if rel != trel && !recopied.contains(rel) {
            steps.push(Step::Put {
                path: rel.clone(),
                target: trel.clone(),
                replaced: true,
            });
        }
    }
    for r in recopied {
        steps.push(Step::Put {
            path: r.clone(),
            target: target_of(r),
            replaced: true,
        });
    }
    for f in plan.delete.iter().filter(|f| !early(&f.path)) {
        steps.push(Step::Delete {
            path: f.path.clone(),
        });
    }
    steps.extend(rm_steps(
        plan.delete_dirs.iter().filter(|d| !early(d)).collect(),
    ));
    steps
}

/// Carries out in-place steps; each checks what is already done, so a rerun finishes them.
/// Every step goes through folder handles in the live target, the new tree and the previous
/// tree: a folder of the target swapped for a link mid-way stops the apply, never redirects
/// it.
fn run_steps(journal: &SyncJournal) -> Result<()> {
    let (t, n, b) = (&journal.target, &journal.staging, &journal.previous);
    if !exists(b) {
        create_dir_private(b)?;
    }
    if !exists(&b.join(MARKER)) {
        write_marker(b, &journal.id)?;
    }
    let live = Tree::open(t)?;
    let prev = Tree::open(b)?;
    let new = match Tree::open(n) {
        Ok(tree) => Some(tree),
        Err(Error::FolderMissing { .. }) => None,
        Err(e) => return Err(e),
    };
    for step in &journal.steps {
        match step {
            Step::MkDir { path } => {
                let d = live.dir_made(path, 0o755)?;
                #[cfg(unix)]
                if let Some(nd) = new.as_ref().and_then(|n| n.dir(path).ok().flatten()) {
                    d.set_unix_owner(nd.unix_owner()?)?;
                }
                let _ = d;
            }
            Step::Put { path, target, .. } => {
                if let Some(new) = &new {
                    if present(new, path)? {
                        move_out(&live, &prev, target)?;
                        move_across(new, path, &live, path, false)?;
                    }
                }
            }
            Step::Delete { path } => move_out(&live, &prev, path)?,
            Step::RmDir { path, .. } => {
                live.rmdir(path)?;
            }
        }
        crate::failpoint::hit("sync:step");
    }
    Ok(())
}

/// Moves the target's file `rel` into the previous tree (unless already there).
fn move_out(live: &Tree, prev: &Tree, rel: &str) -> Result<()> {
    if !present(live, rel)? || present(prev, rel)? {
        return Ok(());
    }
    move_across(live, rel, prev, rel, true)
}

/// After the install: protected files checked, the previous tree recorded (and rid of its
/// second names for the protected files), keyferry's marks removed, the journal closed.
fn finish(journal: &SyncJournal, state_dir: &Path) -> Result<()> {
    let (t, n, b) = (&journal.target, &journal.staging, &journal.previous);
    let checked = check_protected(journal, true);
    if exists(b) && journal.action == Action::Rollback && journal.mode == Mode::InPlace {
        // Everything in it went back; what is left (folders) goes, and the record below says
        // the target was rolled back (a second rollback is then already done).
        empty_tree(b, true)?;
    }
    if exists(b) {
        remove_second_names(journal, b)?;
        if journal.app_offline {
            crate::fs::remove_if_present(&b.join(APP_OFFLINE))?;
        }
        let record = PreviousRecord {
            version: crate::JSON_VERSION,
            kind: "sync-previous".into(),
            id: journal.id.clone(),
            node: journal.node.clone(),
            mode: journal.mode,
            target: t.clone(),
            time: Timestamp::now(),
            steps: journal.steps.clone(),
            by_rollback: journal.action == Action::Rollback,
            source_fingerprint: journal.source_fingerprint.clone(),
            fingerprint: journal.target_fingerprint.clone(),
        };
        crate::fs::record::save(&b.join(PREVIOUS_RECORD), &record)?;
        crate::fs::remove_if_present(&b.join(MARKER))?;
    }
    if journal.app_offline {
        crate::fs::remove_if_present(&t.join(APP_OFFLINE))?;
    }
    if exists(n) {
        discard_staging(journal)?;
    }
    crate::fs::remove_if_present(&t.join(MARKER))?;
    crate::fs::remove_if_present(&t.join(PREVIOUS_RECORD))?;
    SyncJournal::remove(state_dir, t)?;
    crate::sync::journal::LastSync::record(state_dir, t, &journal.id, true)?;
    checked
}

/// ASP.NET's own switch: while this file is in the application folder, the site is
/// unloaded and its files are free.
pub const APP_OFFLINE: &str = "app_offline.htm";

/// Puts `app_offline.htm` in the target; false if one was already there (it stays).
fn put_app_offline(t: &Path) -> Result<bool> {
    let p = t.join(APP_OFFLINE);
    if exists(&p) {
        return Ok(false);
    }
    let mut o = std::fs::File::options();
    o.write(true).create_new(true);
    let mut f = o.open(&p).map_err(|e| Error::io(&p, e))?;
    use std::io::Write;
    f.write_all(
        b"<!doctype html><title>Updating</title><p>This site is being updated. Try again in a minute.</p>\n",
    )
    .map_err(|e| Error::io(&p, e))?;
    drop(f);
    // ASP.NET notices the file and unloads the application; give it a moment.
    std::thread::sleep(std::time::Duration::from_secs(2));
    Ok(true)
}

/// What a rollback did.
#[derive(Debug, Clone, Serialize)]
pub struct RolledBack {
    pub target: PathBuf,
    pub mode: Mode,
    pub id: String,
    /// Which kept tree (1: the newest).
    pub generation: u32,
    pub protected_checked: usize,
    /// The target was already rolled back from sync `id`: nothing was done.
    pub already: bool,
}

/// Puts the previous tree back (`keyferry sync rollback`): a swap back for a swapped sync
/// (the protected files and volatile folders are the target's current ones, linked in), or
/// the in-place steps undone in reverse. The tree that was in place is kept beside it, marked
/// as replaced by a rollback: a second rollback says it is already done (it would otherwise
/// put the sync back).
pub fn rollback(
    state_dir: &Path,
    node: &str,
    t: &Path,
    profile: &Profile,
    older: bool,
    generation: u32,
) -> Result<RolledBack> {
    check_parent(t)?;
    let sib = siblings(t)?;
    let gens = crate::sync::kept::generations(t)?;
    let Some(chosen) = gens.iter().find(|g| g.number == generation.max(1)) else {
        return Err(Error::SyncRefused(if gens.is_empty() {
            format!(
                "there is no previous tree of {} to go back to (no {} beside it)",
                t.display(),
                sib.previous
                    .file_name()
                    .unwrap_or_default()
                    .to_string_lossy()
            )
        } else {
            format!(
                "{} keeps {} previous trees; there is no generation {generation} (see keyferry                  sync rollback --list)",
                t.display(),
                gens.len()
            )
        }));
    };
    let kept_path = chosen.path.clone();
    let Some(record) = chosen.record.clone() else {
        return Err(Error::SyncRefused(format!(
            "{} is a tree an interrupted sync was still filling, not a whole previous tree;              run keyferry sync again to finish that sync first",
            kept_path.display()
        )));
    };
    if record.by_rollback {
        return Ok(RolledBack {
            target: t.to_owned(),
            mode: record.mode,
            id: record.id,
            generation: chosen.number,
            protected_checked: 0,
            already: true,
        });
    }
    // A tree an in-place sync kept holds only the files that sync replaced: it can go back
    // only onto the tree that sync left, which is the target only while nothing came after.
    if record.mode == Mode::InPlace && chosen.number > 1 {
        return Err(Error::SyncRefused(format!(
            "generation {} ({}) was kept by an in-place sync: it holds only the files sync {}              replaced, so it can go back only onto what that sync left; roll back the newer              generations first; nothing was changed",
            chosen.number,
            kept_path.display(),
            record.id
        )));
    }
    // The kept tree is from the target's last sync, or the admin says an older one is meant.
    if let Some(last) = crate::sync::journal::LastSync::load(state_dir, t) {
        if last.id != record.id && !older {
            return Err(Error::SyncRefused(format!(
                "generation {} of {} ({}) is the tree from before sync {} ({}), but the last                  sync of {} was {} ({}{}): rolling back would go back further than that sync;                  nothing was changed (--older goes back to it all the same)",
                chosen.number,
                t.display(),
                kept_path.display(),
                record.id,
                record.time,
                t.display(),
                last.id,
                last.time,
                if last.changed {
                    ""
                } else {
                    ", which found nothing to change"
                }
            )));
        }
    }
    if record.target != t {
        return Err(Error::SyncRefused(format!(
            "{} was the previous tree of {}, not {}",
            kept_path.display(),
            record.target.display(),
            t.display()
        )));
    }
    // What of the target stays through the rollback: its protected files and links, its
    // volatile folders, and links the kept tree does not have. Found from the two listings
    // alone, not from a plan of the kept tree against the target, which can refuse (an
    // empty kept tree after --new-target, a link leading out): the keys stay whatever the
    // trees hold. A listing that fails refuses the rollback before anything changes.
    let listed = |root: &Path, side: &str| {
        crate::sync::plan::list(root, profile, side).map_err(|e| {
            Error::SyncRefused(format!(
                "{side} {} could not be listed, so the rollback cannot know which of its files \
                 to keep ({e}); nothing was changed",
                root.display()
            ))
        })
    };
    let (in_prev, in_target) = (
        listed(&kept_path, "the kept tree")?,
        listed(t, "the target")?,
    );
    let prev_lower: std::collections::BTreeSet<String> =
        in_prev.keys().map(|k| k.to_lowercase()).collect();
    let mut protected_rels = Vec::new();
    let mut kept: Vec<(String, Kind)> = Vec::new();
    for (rel, kind) in &in_target {
        match crate::sync::plan::classify(rel, profile) {
            crate::sync::plan::Class::Protected => protected_rels.push(rel.clone()),
            crate::sync::plan::Class::Volatile => kept.push((rel.clone(), kind.clone())),
            crate::sync::plan::Class::Normal
                if *kind == Kind::Link && !prev_lower.contains(&rel.to_lowercase()) =>
            {
                kept.push((rel.clone(), kind.clone()))
            }
            crate::sync::plan::Class::Normal => {}
        }
    }
    let protected = record_protected(t, &protected_rels)?;
    let protected_links = record_protected_links(t, &protected_rels)?;
    // A protected file the kept tree holds under the same name, other than the target's (an
    // older key, put there by hand): keyferry does not choose between two keys.
    if let Ok(prev_tree) = Tree::open(&kept_path) {
        for p in &protected {
            if let Ok(Entry::File { id, .. }) = prev_tree.entry(&p.path) {
                if id != p.id {
                    return Err(Error::SyncRefused(format!(
                        "the kept tree {} holds its own {} beside the target's; keyferry will \
                         not choose between two of them: move the kept tree's copy away (it \
                         may be an older key), then roll back",
                        kept_path.display(),
                        p.path
                    )));
                }
            }
        }
    }
    let mut journal = SyncJournal {
        version: crate::JSON_VERSION,
        kind: "sync-journal".into(),
        id: sync_id(),
        node: node.to_owned(),
        action: Action::Rollback,
        mode: record.mode,
        stage: Stage::Building,
        source: kept_path.clone(),
        target: t.to_owned(),
        staging: sib.staging.clone(),
        previous: kept_path.clone(),
        protected,
        protected_links,
        steps: Vec::new(),
        app_offline: false,
        started: Timestamp::now(),
        source_fingerprint: record.source_fingerprint.clone(),
        target_fingerprint: String::new(),
    };
    match record.mode {
        Mode::Swap => {
            // The previous tree becomes the staging tree, with the target's kept files.
            if exists(&sib.staging) {
                return Err(Error::SyncRefused(format!(
                    "{} exists: another sync of {} is under way or was interrupted",
                    sib.staging.display(),
                    t.display()
                )));
            }
            journal.save(state_dir)?;
            rename_sibling(&kept_path, &sib.staging)?;
            crate::failpoint::hit("sync:rollback-staged");
            write_marker(&sib.staging, &journal.id)?;
            {
                // The trees' handles go before the swap (Windows: a folder this process
                // holds cannot be renamed).
                let (live, staged) = (Tree::open(t)?, Tree::open(&sib.staging)?);
                let dirs = DirAttrs::new(&live, &staged)?;
                for rel in journal
                    .protected
                    .iter()
                    .map(|p| &p.path)
                    .chain(journal.protected_links.iter().map(|l| &l.path))
                {
                    dirs.link_from_target(rel, &Kind::File(0, None))?;
                }
                for (rel, kind) in &kept {
                    dirs.link_from_target(rel, kind)?;
                }
                dirs.finish()?;
            }
            flush(&sib.staging)?;
            journal.stage = Stage::Installing;
            journal.save(state_dir)?;
            swap(&journal)?;
        }
        Mode::InPlace => {
            // Undo each step in reverse: the previous tree holds what each replaced.
            journal.steps = record.steps.clone();
            journal.stage = Stage::Installing;
            journal.save(state_dir)?;
            undo_steps(&journal, &journal.steps)?;
        }
    }
    journal.stage = Stage::Committed;
    journal.save(state_dir)?;
    let n = journal.protected.len();
    finish(&journal, state_dir)?;
    Ok(RolledBack {
        target: t.to_owned(),
        mode: record.mode,
        id: record.id,
        generation: chosen.number,
        protected_checked: n,
        already: false,
    })
}

/// Undoes the preparation of an interrupted swap-back: the previous tree goes back under its
/// name, without the second names of the target's protected files linked into it.
fn unstage_previous(journal: &SyncJournal) -> Result<()> {
    let (n, b) = (&journal.staging, &journal.previous);
    if !exists(n) {
        return Ok(());
    }
    remove_second_names(journal, n)?;
    crate::fs::remove_if_present(&n.join(MARKER))?;
    rename_sibling(n, b)
}

/// Removes from keyferry's tree `dir` the second names it gave the target's protected files
/// (only names that are the very same file as the target's).
fn remove_second_names(journal: &SyncJournal, dir: &Path) -> Result<()> {
    let (live, ours) = (Tree::open(&journal.target)?, Tree::open(dir)?);
    for p in &journal.protected {
        let same = match (ours.entry(&p.path), live.entry(&p.path)) {
            (Ok(Entry::File { id: a, .. }), Ok(Entry::File { id: b, .. })) => a == b,
            _ => false,
        };
        if same {
            ours.remove_file(&p.path)?;
        }
    }
    Ok(())
}

/// Undoes in-place steps, in reverse: a replaced or deleted file comes back from the
/// previous tree; a file the sync added goes.
fn undo_steps(journal: &SyncJournal, steps: &[Step]) -> Result<()> {
    let live = Tree::open(&journal.target)?;
    let prev = Tree::open(&journal.previous)?;
    for step in steps.iter().rev() {
        match step {
            Step::RmDir { path, attrs } => {
                let d = live.dir_made(path, if attrs.is_some() { 0o700 } else { 0o755 })?;
                #[cfg(unix)]
                if let Some(a) = attrs {
                    d.set_unix_owner(*a)?;
                }
                let _ = (d, attrs);
            }
            Step::Delete { path } => {
                if present(&prev, path)? {
                    move_across(&prev, path, &live, path, false)?;
                }
            }
            // Each undo checks what is done already, so a rerun after a crash redoes only
            // what is left: a replaced file comes back once; an added file goes.
            Step::Put {
                path,
                target,
                replaced: true,
            } => {
                if present(&prev, target)? {
                    if target != path {
                        live.remove_file(path)?;
                    }
                    move_across(&prev, target, &live, target, false)?;
                }
            }
            Step::Put {
                path,
                replaced: false,
                ..
            } => live.remove_file(path)?,
            Step::MkDir { path } => {
                live.rmdir(path)?;
            }
        }
        crate::failpoint::hit("sync:undo-step");
    }
    Ok(())
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
