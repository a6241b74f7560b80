//! Steps 4 to 6: the protected files recorded and checked, the swap (or the file-by-file
//! install, each step journaled), `app_offline.htm`, and the finish that keeps the previous
//! tree.

use super::*;

/// Protected files of the target now: identity, hash and attributes, each opened once,
/// no-follow, and hashed through that handle. A protected name that is a link or folder (or
/// lies under a link) is left alone and not recorded.
pub(super) fn record_protected(t: &Path, rels: &[String]) -> Result<Vec<ProtectedState>> {
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
pub(super) fn record_protected_links(t: &Path, rels: &[String]) -> Result<Vec<ProtectedLink>> {
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
pub(super) fn check_protected(journal: &SyncJournal, full: bool) -> Result<()> {
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
pub(super) fn flush(n: &Path) -> Result<()> {
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
pub(super) fn in_use(e: &Error) -> bool {
    let Error::Io { source, .. } = e else {
        return false;
    };
    let codes: &[i32] = if cfg!(windows) { &[5, 32, 33] } else { &[16] };
    source.raw_os_error().is_some_and(|c| codes.contains(&c))
}

/// Puts the new tree in place of the target (idempotent: recovery calls it again). The
/// renames go through a handle on the folder holding all three.
pub(super) fn swap(journal: &SyncJournal) -> Result<()> {
    let (target_dir, new_dir, old_dir) = (&journal.target, &journal.staging, &journal.previous);
    let swapped = read_marker(target_dir).is_some_and(|id| id == journal.id);
    if !swapped {
        if exists(target_dir) && exists(new_dir) {
            exchange(target_dir, new_dir, old_dir)?;
        } else if !exists(target_dir) && exists(new_dir) {
            rename_sibling(new_dir, target_dir)?;
        } else {
            return Err(Error::RecoveryConflict(format!(
                "neither {} nor {} is the new tree of this sync; compare {} with its source",
                target_dir.display(),
                new_dir.display(),
                target_dir.display()
            )));
        }
    }
    crate::failpoint::hit("sync:swapped");
    // Linux's exchange leaves the old tree under the new tree's name.
    if exists(new_dir) && read_marker(new_dir).is_none_or(|id| id != journal.id) {
        rename_sibling(new_dir, old_dir)?;
    }
    Ok(())
}

/// Swaps `t` and `n`; the old `t` ends up as `n` (Linux, atomic) or as `b` (elsewhere).
pub(super) fn exchange(t: &Path, n: &Path, b: &Path) -> Result<()> {
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
pub(super) fn rename_sibling(from: &Path, to: &Path) -> Result<()> {
    let (parent, from_name) = crate::fs::split(from)?;
    let (_, to_name) = crate::fs::split(to)?;
    let d = crate::fs::Dir::open(&parent)?;
    d.rename(&from_name, &to_name)?;
    d.sync()
}

/// A folder's Unix owner, group and mode in the live target, as its handle says.
pub(super) fn folder_attrs(live: Option<&Tree>, rel: &str) -> Option<(u32, u32, u32)> {
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
pub(super) fn steps_of(plan: &SyncPlan, recopied: &[String]) -> Vec<Step> {
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
pub(super) fn run_steps(journal: &SyncJournal) -> Result<()> {
    let (target_dir, new_dir, old_dir) = (&journal.target, &journal.staging, &journal.previous);
    if !exists(old_dir) {
        create_dir_private(old_dir)?;
    }
    if !exists(&old_dir.join(MARKER)) {
        write_marker(old_dir, &journal.id)?;
    }
    let live = Tree::open(target_dir)?;
    let prev = Tree::open(old_dir)?;
    let new = match Tree::open(new_dir) {
        Ok(tree) => Some(tree),
        Err(Error::FolderMissing { .. }) => None,
        Err(e) => return Err(e),
    };
    for step in &journal.steps {
        match step {
            Step::MkDir { path } => {
                let d = live.dir_made(path, 0o755)?;
                #[cfg(unix)]
                if let Some(nd) = new.as_ref().and_then(|tree| tree.dir(path).ok().flatten()) {
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
pub(super) fn move_out(live: &Tree, prev: &Tree, rel: &str) -> Result<()> {
    if !present(live, rel)? || present(prev, rel)? {
        return Ok(());
    }
    move_across(live, rel, prev, rel, true)
}

/// After the install: protected files checked, the previous tree recorded (and rid of its
/// second names for the protected files), keyferry's marks removed, the journal closed.
pub(super) fn finish(journal: &SyncJournal, state_dir: &Path) -> Result<()> {
    let (target_dir, new_dir, old_dir) = (&journal.target, &journal.staging, &journal.previous);
    let checked = check_protected(journal, true);
    if exists(old_dir) && journal.action == Action::Rollback && journal.mode == Mode::InPlace {
        // Everything in it went back; what is left (folders) goes, and the record below says
        // the target was rolled back (a second rollback is then already done).
        empty_tree(old_dir, true)?;
    }
    if exists(old_dir) {
        remove_second_names(journal, old_dir)?;
        if journal.app_offline {
            crate::fs::remove_if_present(&old_dir.join(APP_OFFLINE))?;
        }
        let record = PreviousRecord {
            version: crate::JSON_VERSION,
            kind: "sync-previous".into(),
            id: journal.id.clone(),
            node: journal.node.clone(),
            mode: journal.mode,
            target: target_dir.clone(),
            time: Timestamp::now(),
            steps: journal.steps.clone(),
            by_rollback: journal.action == Action::Rollback,
            source_fingerprint: journal.source_fingerprint.clone(),
            fingerprint: journal.target_fingerprint.clone(),
        };
        crate::fs::record::save(&old_dir.join(PREVIOUS_RECORD), &record)?;
        crate::fs::remove_if_present(&old_dir.join(MARKER))?;
    }
    if journal.app_offline {
        crate::fs::remove_if_present(&target_dir.join(APP_OFFLINE))?;
    }
    if exists(new_dir) {
        discard_staging(journal)?;
    }
    crate::fs::remove_if_present(&target_dir.join(MARKER))?;
    crate::fs::remove_if_present(&target_dir.join(PREVIOUS_RECORD))?;
    SyncJournal::remove(state_dir, target_dir)?;
    crate::sync::journal::LastSync::record(state_dir, target_dir, &journal.id, true)?;
    checked
}

/// ASP.NET's own switch: while this file is in the application folder, the site is
/// unloaded and its files are free.
pub const APP_OFFLINE: &str = "app_offline.htm";

/// Puts `app_offline.htm` in the target; false if one was already there (it stays).
pub(super) fn put_app_offline(t: &Path) -> Result<bool> {
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
