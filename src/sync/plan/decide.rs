//! Deciding a plan from the two listings: what to add, update, delete and leave alone,
//! the refusals (names one on the target, a target that does not look like the
//! application, too many deletions), and the warnings an admin should read.

use super::{classify, Class, Kind, PlanFile, PlanOptions, SyncPlan};
use crate::error::{Error, Result};
use crate::profile::Profile;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::SystemTime;

/// Every entry of both listings (name, kind, size, full-precision time), as one digest.
pub(super) fn listings_digest(
    from: &BTreeMap<String, Kind>,
    to: &BTreeMap<String, Kind>,
) -> [u8; 32] {
    let mut h = blake3::Hasher::new();
    for listed in [from, to] {
        h.update(&(listed.len() as u64).to_le_bytes());
        for (rel, kind) in listed {
            h.update(&(rel.len() as u64).to_le_bytes());
            h.update(rel.as_bytes());
            match kind {
                Kind::Dir => h.update(b"d"),
                Kind::Link => h.update(b"l"),
                Kind::File(len, mtime) => {
                    // No time, a time before 1970, after: each spelled apart.
                    let (side, t) = match mtime.map(|t| t.duration_since(std::time::UNIX_EPOCH)) {
                        None => (b'n', 0),
                        Some(Ok(d)) => (b'a', d.as_nanos()),
                        Some(Err(e)) => (b'b', e.duration().as_nanos()),
                    };
                    h.update(b"f");
                    h.update(&len.to_le_bytes());
                    h.update(&[side]);
                    h.update(&t.to_le_bytes())
                }
            };
        }
    }
    *h.finalize().as_bytes()
}

/// [`crate::sync::kept::listing_fingerprint`] of a listing's normal files.
pub(super) fn listing_fingerprint(listed: &BTreeMap<String, Kind>, profile: &Profile) -> String {
    crate::sync::kept::listing_fingerprint(listed.iter().filter_map(|(rel, k)| match k {
        Kind::File(len, mtime) if classify(rel, profile) == Class::Normal => {
            Some((rel.as_str(), *len, *mtime))
        }
        _ => None,
    }))
}

/// Compares files of equal size by content, each (source name, target name, size): whether
/// each pair holds the same bytes.
pub(super) type Comparer<'a> = &'a dyn Fn(&[(String, String, u64)]) -> Result<Vec<bool>>;

/// Byte for byte, stopping at the first difference (cheaper than hashing both sides, and
/// exact), on every core.
pub(super) fn compare_pairs(
    src: &Path,
    dst: &Path,
    list: &[(String, String, u64)],
) -> Result<Vec<bool>> {
    let (src_tree, dst_tree) = (crate::fs::Tree::open(src)?, crate::fs::Tree::open(dst)?);
    let pairs: Vec<(crate::sync::hash::Item, crate::sync::hash::Item)> = list
        .iter()
        .map(|(rel, trel, len)| {
            (
                (&src_tree, rel.as_str(), *len),
                (&dst_tree, trel.as_str(), *len),
            )
        })
        .collect();
    Ok(crate::sync::hash::same_many(&pairs, usize::MAX, &|_| {})?
        .into_iter()
        .map(|s| s == crate::sync::hash::Same::Yes)
        .collect())
}

/// Refuses listings no sync may go ahead with: two source names that are one name on the
/// target, a source or a target that does not look like the application folder, an empty
/// target not declared new.
fn refuse_listings(
    src: &Path,
    dst: &Path,
    profile: &Profile,
    opts: &PlanOptions,
    from: &BTreeMap<String, Kind>,
    to: &BTreeMap<String, Kind>,
    ci: bool,
) -> Result<()> {
    let refuse = |why: String| Err(Error::SyncRefused(why));
    if ci {
        // Two source names that are one name on the target: a silent pick would install
        // the wrong file.
        let mut seen: BTreeMap<String, &String> = BTreeMap::new();
        for rel in from.keys() {
            if let Some(first) = seen.insert(rel.to_lowercase(), rel) {
                return refuse(format!(
                    "the source {} has both {first} and {rel}, which are one name on the \
                     target's file system ({} compares names without regard to case): keep one \
                     of them in the source, then sync again",
                    src.display(),
                    dst.display()
                ));
            }
        }
    }
    let marker = profile.app_marker.as_deref();
    let looks_like_app = |t: &BTreeMap<String, Kind>| match marker {
        Some(m) => t.keys().any(|k| k.eq_ignore_ascii_case(m)),
        None => t.values().any(|k| matches!(k, Kind::File(..))),
    };
    if from.is_empty() || !looks_like_app(from) {
        return refuse(format!(
            "the source {} does not look like the application folder{}",
            src.display(),
            marker
                .map(|m| format!(" (no {m})"))
                .unwrap_or_else(|| " (it holds no files)".into())
        ));
    }
    if to.is_empty() {
        if !opts.allow_new_target {
            return refuse(format!(
                "the target {} is empty; if it is a new node, say so with --new-target (it gets \
                 the whole application)",
                dst.display()
            ));
        }
    } else if !looks_like_app(to) {
        return refuse(format!(
            "the target {} does not look like the application folder{}; keyferry will not make \
             another folder into a copy of it",
            dst.display(),
            marker.map(|m| format!(" (no {m})")).unwrap_or_default()
        ));
    }
    Ok(())
}

/// The plan from both listings; `ci`: the target compares names without regard to case.
#[allow(clippy::too_many_arguments)]
pub(super) fn plan_listed(
    src: &Path,
    dst: &Path,
    profile: &Profile,
    opts: &PlanOptions,
    from: BTreeMap<String, Kind>,
    to: BTreeMap<String, Kind>,
    ci: bool,
    same: Comparer<'_>,
) -> Result<SyncPlan> {
    refuse_listings(src, dst, profile, opts, &from, &to, ci)?;
    let refuse = |why: String| Err(Error::SyncRefused(why));
    let (src, dst) = (src.to_owned(), dst.to_owned());

    let mut p = SyncPlan {
        source: src.clone(),
        target: dst.clone(),
        add: Vec::new(),
        update: Vec::new(),
        delete: Vec::new(),
        add_dirs: Vec::new(),
        delete_dirs: Vec::new(),
        unchanged: 0,
        times_only: Vec::new(),
        new_times: Vec::new(),
        kind_changes: Vec::new(),
        protected: Vec::new(),
        volatile: Vec::new(),
        links: Vec::new(),
        add_bytes: 0,
        update_bytes: 0,
        delete_bytes: 0,
        warnings: Vec::new(),
        case_insensitive: ci,
        source_fingerprint: listing_fingerprint(&from, profile),
        target_fingerprint: listing_fingerprint(&to, profile),
        listings: listings_digest(&from, &to),
        source_dirs: Vec::new(),
        unchanged_files: Vec::new(),
        target_kept: Vec::new(),
        update_targets: BTreeMap::new(),
        profile: profile.clone(),
    };
    let source_protected = from_source(&mut p, profile, opts, &from, &to, ci, same)?;
    from_target(&mut p, profile, &from, &to, ci);
    // A folder holding something left alone (protected, volatile, a link) is not removed.
    let kept: Vec<String> = p
        .protected
        .iter()
        .chain(&p.volatile)
        .chain(&p.links)
        .map(|k| k.to_lowercase())
        .collect();
    p.delete_dirs.retain(|d| {
        !kept
            .iter()
            .any(|k| k.starts_with(&format!("{}/", d.to_lowercase())))
    });
    if p.delete.len() > opts.max_delete {
        return refuse(format!(
            "the plan would delete {} files from {} (at most {} without saying so); check that \
             the target is the right folder, then raise the limit",
            p.delete.len(),
            dst.display(),
            opts.max_delete
        ));
    }
    for list in [&mut p.add, &mut p.update, &mut p.delete] {
        list.sort_by(|a, b| a.path.cmp(&b.path));
    }
    p.add_dirs.sort();
    p.source_dirs.sort();
    p.delete_dirs.sort();
    p.protected.sort();
    p.volatile.sort();
    p.links.sort();
    warn(&mut p, profile, &source_protected);
    Ok(p)
}

/// Adds `rel` to `list` unless a name of another case is there already.
fn note(rel: &str, list: &mut Vec<String>) {
    if !list.iter().any(|x| x.eq_ignore_ascii_case(rel)) {
        list.push(rel.to_owned());
    }
}

/// Plans `rel` (the target's `trel`) as an update of `len` bytes.
fn update(p: &mut SyncPlan, rel: &str, trel: &str, len: u64) {
    p.update_targets.insert(rel.to_owned(), trel.to_owned());
    p.update_bytes += len;
    p.update.push(PlanFile {
        path: rel.to_owned(),
        bytes: len,
    });
}

/// What the source has: the files to add and update (equal sizes compared by content with
/// `same` where the times do not settle it), the folders to make, and the names left alone.
/// Returns the protected names the source has, which are never copied.
fn from_source(
    p: &mut SyncPlan,
    profile: &Profile,
    opts: &PlanOptions,
    from: &BTreeMap<String, Kind>,
    to: &BTreeMap<String, Kind>,
    ci: bool,
    same: Comparer<'_>,
) -> Result<Vec<String>> {
    // Protected and volatile names on the target are matched case-insensitively, as Windows
    // would: a source `Database.config` never lands on a target's `database.config`.
    let target_lower: BTreeMap<String, (&String, &Kind)> =
        to.iter().map(|(k, v)| (k.to_lowercase(), (k, v))).collect();
    // The target's entry for a source path, under its own name (the same or another case).
    let on_target = |rel: &str| {
        to.get_key_value(rel).or_else(|| {
            if ci {
                target_lower.get(&rel.to_lowercase()).copied()
            } else {
                None
            }
        })
    };
    // Files of equal size compared by content (`--checksum`, or their times differ), hashed
    // together on every core: source name, target name, size, source time, target time.
    type Compared = (String, String, u64, Option<SystemTime>, Option<SystemTime>);
    let mut compare: Vec<Compared> = Vec::new();
    let mut source_protected = Vec::new();
    for (rel, kind) in from {
        match classify(rel, profile) {
            Class::Protected => note(rel, &mut source_protected),
            Class::Volatile => note(rel, &mut p.volatile),
            Class::Normal => match kind {
                Kind::Link => note(rel, &mut p.links),
                Kind::Dir => {
                    p.source_dirs.push(rel.clone());
                    if !matches!(to.get(rel), Some(Kind::Dir)) {
                        p.add_dirs.push(rel.clone());
                    }
                }
                Kind::File(len, mtime) => match on_target(rel) {
                    None | Some((_, Kind::Dir)) | Some((_, Kind::Link)) => {
                        p.add_bytes += len;
                        p.add.push(PlanFile {
                            path: rel.clone(),
                            bytes: *len,
                        });
                    }
                    Some((trel, Kind::File(tlen, tmtime))) => {
                        if tlen != len {
                            update(p, rel, trel, *len);
                        } else if !opts.checksum && mtime.is_some() && tmtime == mtime {
                            p.unchanged += 1;
                            p.unchanged_files.push((rel.clone(), trel.clone(), *len));
                        } else {
                            // The same size: `--checksum`, or the times differ. Compared by
                            // content: equal bytes are kept, only the source's time carried.
                            compare.push((rel.clone(), trel.clone(), *len, *mtime, *tmtime));
                        }
                    }
                },
            },
        }
    }
    if !compare.is_empty() {
        let list: Vec<(String, String, u64)> = compare
            .iter()
            .map(|(rel, trel, len, _, _)| (rel.clone(), trel.clone(), *len))
            .collect();
        let same = same(&list)?;
        for (i, (rel, trel, len, mtime, tmtime)) in compare.iter().enumerate() {
            match same[i] {
                true => {
                    p.unchanged += 1;
                    p.unchanged_files.push((rel.clone(), trel.clone(), *len));
                    if let (Some(m), true) = (mtime, mtime != tmtime) {
                        p.times_only.push(PlanFile {
                            path: rel.clone(),
                            bytes: *len,
                        });
                        p.new_times.push((rel.clone(), *m));
                    }
                }
                _ => update(p, rel, trel, *len),
            }
        }
    }
    Ok(source_protected)
}

/// What the target has and the source does not, or has as another kind: the files and
/// folders to delete, and what is kept as it is (protected and volatile names, names the
/// source has only as links, and all a kept folder holds).
fn from_target(
    p: &mut SyncPlan,
    profile: &Profile,
    from: &BTreeMap<String, Kind>,
    to: &BTreeMap<String, Kind>,
    ci: bool,
) {
    // Names as the target compares them.
    let key = |k: &str| if ci { k.to_lowercase() } else { k.to_owned() };
    let source_lower: std::collections::BTreeSet<String> = from.keys().map(|k| key(k)).collect();
    // Names the source has only as links: links are never copied, so the target's entry of
    // that name (a link, a file, a folder with all it holds) is left as it is and carried
    // into the new tree, never silently dropped.
    let source_links: std::collections::BTreeSet<String> = from
        .iter()
        .filter(|(_, k)| matches!(k, Kind::Link))
        .map(|(r, _)| key(r))
        .collect();
    let source_kinds: BTreeMap<String, &Kind> = from.iter().map(|(r, k)| (key(r), k)).collect();
    let mut kept_folders: Vec<String> = Vec::new();
    for (rel, kind) in to {
        if kept_folders
            .iter()
            .any(|d| key(rel).starts_with(&format!("{d}/")))
        {
            continue;
        }
        match classify(rel, profile) {
            // Every protected name the target has, each: `encryption.config` and
            // `Encryption.Config` are two files on a case-sensitive file system, and one left
            // out of this list would not be carried into the new tree.
            Class::Protected => {
                if !p.protected.contains(rel) {
                    p.protected.push(rel.clone());
                }
            }
            Class::Volatile => {
                note(rel, &mut p.volatile);
                p.target_kept.push((rel.clone(), kind.clone()));
            }
            Class::Normal if source_links.contains(&key(rel)) => {
                note(rel, &mut p.links);
                if matches!(kind, Kind::Dir) {
                    kept_folders.push(key(rel));
                }
                p.target_kept.push((rel.clone(), kind.clone()));
            }
            Class::Normal if matches!(kind, Kind::Link) && !source_lower.contains(&key(rel)) => {
                note(rel, &mut p.links);
                p.target_kept.push((rel.clone(), kind.clone()));
            }
            Class::Normal if !source_lower.contains(&key(rel)) => match kind {
                Kind::File(len, _) => {
                    p.delete_bytes += len;
                    p.delete.push(PlanFile {
                        path: rel.clone(),
                        bytes: *len,
                    });
                }
                Kind::Dir => p.delete_dirs.push(rel.clone()),
                Kind::Link => note(rel, &mut p.links),
            },
            // The same name, another kind: the target's entry goes (planned and counted), so
            // the source's can take its place.
            Class::Normal => match (kind, source_kinds.get(&key(rel))) {
                (Kind::File(len, _), Some(Kind::Dir)) => {
                    p.delete_bytes += len;
                    p.delete.push(PlanFile {
                        path: rel.clone(),
                        bytes: *len,
                    });
                    p.kind_changes.push(rel.clone());
                }
                (Kind::Link, Some(Kind::Dir | Kind::File(..))) => {
                    p.delete.push(PlanFile {
                        path: rel.clone(),
                        bytes: 0,
                    });
                    p.kind_changes.push(rel.clone());
                }
                (Kind::Dir, Some(Kind::File(..))) => {
                    p.delete_dirs.push(rel.clone());
                    p.kind_changes.push(rel.clone());
                }
                _ => {}
            },
        }
    }
}

/// Files an admin may have customised per node (DOMAIN.md §2): overwriting them is worth a
/// warning.
const PER_NODE_SETTINGS: &[&str] = &["web.config", "web-appsettings.config"];

fn warn(p: &mut SyncPlan, profile: &Profile, source_protected: &[String]) {
    for f in &p.update {
        if PER_NODE_SETTINGS.contains(&f.path.to_lowercase().as_str()) {
            p.warnings.push(format!(
                "{} differs on the target and will be replaced by the source's: per-node \
                 customisations in it will be lost",
                f.path
            ));
        }
    }
    for rel in source_protected {
        if !p.protected.iter().any(|t| t.eq_ignore_ascii_case(rel)) {
            let is_key = profile
                .keys
                .iter()
                .any(|k| rel.rsplit('/').next() == Some(k.name.as_str()));
            p.warnings.push(if is_key {
                format!(
                    "the target has no {rel}: sync never copies keys; give it the keys with \
                     keyferry keys push (or keys export / keys import)"
                )
            } else {
                format!("the target has no {rel}: sync never copies it; create it for this node")
            });
        }
    }
}
