//! `keyferry sync rollback`: the kept previous tree put back through the same journaled
//! steps, and what a cut-off rollback undoes.

use super::*;

/// What a rollback did.
#[derive(Debug, Clone, Serialize)]
pub struct RolledBack {
    /// The folder rolled back.
    pub target: PathBuf,
    /// A swap of whole trees, or files moved back one by one.
    pub mode: Mode,
    /// The sync whose kept tree came back.
    pub id: String,
    /// Which kept tree (1: the newest).
    pub generation: u32,
    /// Protected files found unchanged afterwards.
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
                "{} keeps {} previous trees; there is no generation {generation} (see keyferry \
                 sync rollback --list)",
                t.display(),
                gens.len()
            )
        }));
    };
    let kept_path = chosen.path.clone();
    let Some(record) = chosen.record.clone() else {
        return Err(Error::SyncRefused(format!(
            "{} is a tree an interrupted sync was still filling, not a whole previous tree; run \
             keyferry sync again to finish that sync first",
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
            "generation {} ({}) was kept by an in-place sync: it holds only the files sync {} \
             replaced, so it can go back only onto what that sync left; roll back the newer \
             generations first; nothing was changed",
            chosen.number,
            kept_path.display(),
            record.id
        )));
    }
    // The kept tree is from the target's last sync, or the admin says an older one is meant.
    if let Some(last) = crate::sync::journal::LastSync::load(state_dir, t) {
        if last.id != record.id && !older {
            return Err(Error::SyncRefused(format!(
                "generation {} of {} ({}) is the tree from before sync {} ({}), but the last sync \
                 of {} was {} ({}{}): rolling back would go back further than that sync; nothing \
                 was changed (--older goes back to it all the same)",
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
    let Stays {
        protected,
        protected_links,
        kept,
    } = what_stays(t, &kept_path, profile)?;
    let mut journal = SyncJournal {
        version: crate::JSON_VERSION,
        kind: "sync-journal".into(),
        id: sync_id(),
        node: node.to_owned(),
        action: Action::Rollback,
        mode: record.mode,
        stage: Stage::Preparing,
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

/// What of the target `t` stays through a rollback to `kept_path`: its protected files and
/// links (recorded, to be checked afterwards), and its volatile folders and the links the kept
/// tree does not have. Refused when a listing fails, or when the kept tree holds a protected
/// file of its own beside the target's.
fn what_stays(t: &Path, kept_path: &Path, profile: &Profile) -> Result<Stays> {
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
        listed(kept_path, "the kept tree")?,
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
    if let Ok(prev_tree) = Tree::open(kept_path) {
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
    Ok(Stays {
        protected,
        protected_links,
        kept,
    })
}

/// What of the target stays through a rollback ([`what_stays`]).
struct Stays {
    protected: Vec<ProtectedState>,
    protected_links: Vec<ProtectedLink>,
    /// Volatile folders, and links the kept tree does not have.
    kept: Vec<(String, Kind)>,
}

/// Undoes the preparation of an interrupted swap-back: the previous tree goes back under its
/// name, without the second names of the target's protected files linked into it.
pub(super) fn unstage_previous(journal: &SyncJournal) -> Result<()> {
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
pub(super) fn remove_second_names(journal: &SyncJournal, dir: &Path) -> Result<()> {
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
pub(super) fn undo_steps(journal: &SyncJournal, steps: &[Step]) -> Result<()> {
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
