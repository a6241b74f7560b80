//! Steps 2 and 3: the new tree built beside the live one (copied, hard-linked, the
//! protected files and volatile folders linked from the live target) with each folder's
//! attributes.

use super::*;

/// What a finished build left.
pub(super) struct Built {
    pub(super) copied: u64,
    pub(super) copied_bytes: u64,
    pub(super) linked: u64,
    pub(super) recopied: Vec<String>,
    pub(super) verified_files: u64,
    pub(super) verified_bytes: u64,
    pub(super) quick_checked: u64,
    /// Why the tree cannot be swapped in (a protected file or kept entry could not be linked).
    pub(super) no_swap: Option<String>,
}

pub(super) fn build(
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

pub(super) fn build_tree(
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
pub(super) struct Trees {
    source: Tree,
    live: Tree,
    new: Tree,
    written: std::sync::mpsc::Sender<std::fs::File>,
}

/// Copies `files` into the new tree on up to `jobs` threads, largest first; returns the
/// files that had to be copied a second time (see [`copy_in`]).
pub(super) fn copy_all(
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
pub(super) fn copy_in(
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
pub(super) fn link_across(a: &Tree, from: &str, b: &Tree, to: &str) -> Result<()> {
    let missing = |t: &Tree, rel: &str| Error::Changed { path: t.join(rel) };
    let (ad, an) = a.parent(from)?.ok_or_else(|| missing(a, from))?;
    let (bd, bn) = b.parent(to)?.ok_or_else(|| missing(b, to))?;
    ad.link_to(&an, &bd, &bn)
}

/// Moves `from` in tree `a` to `to` in tree `b` (the name itself; a link is moved, never
/// followed). `to`'s folders are made (private) where missing if `b` is keyferry's own
/// tree (`b_ours`); in the live target they must exist.
pub(super) fn move_across(a: &Tree, from: &str, b: &Tree, to: &str, b_ours: bool) -> Result<()> {
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
pub(super) fn present(tree: &Tree, rel: &str) -> Result<bool> {
    Ok(tree.entry(rel)? != Entry::Missing)
}

/// The source folder's mode bits (Unix), for a folder new to the target.
pub(super) fn source_mode(source: &Tree, rel: &str) -> Option<u32> {
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
pub(super) struct DirAttrs<'a> {
    live: &'a Tree,
    new: &'a Tree,
    #[cfg(unix)]
    made: std::sync::Mutex<Vec<(String, UnixAttrs)>>,
}

impl<'a> DirAttrs<'a> {
    pub(super) fn new(live: &'a Tree, new: &'a Tree) -> Result<DirAttrs<'a>> {
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
    pub(super) fn create(&self, rel: &str, source_mode: Option<u32>) -> Result<()> {
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
    pub(super) fn attrs_of(&self, rel: &str) -> (u32, u32, u32) {
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
    pub(super) fn for_new_file(&self, rel: &str, from: &crate::fs::Opened) -> Result<Attrs> {
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
    pub(super) fn finish(&self) -> Result<()> {
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
    pub(super) fn link_from_target(&self, rel: &str, kind: &Kind) -> Result<()> {
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

    pub(super) fn link_one(&self, rel: &str) -> Result<()> {
        if present(self.new, rel)? {
            return Ok(());
        }
        link_across(self.live, rel, self.new, rel)
    }

    /// Every file and link under the target's folder `rel`, by second names, its folders made.
    pub(super) fn link_folder(&self, rel: &str) -> Result<()> {
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
