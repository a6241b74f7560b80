//! Listing a tree for a plan: every entry by relative path without following links, links
//! that lead out refused (or recorded, for a rollback), and whether a folder's file system
//! takes two spellings of a name for one.

use super::{classify, Class};
use crate::error::{Error, Result};
use crate::profile::Profile;
use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

/// An entry of a tree, as listed (links not followed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Kind {
    File(u64, Option<std::time::SystemTime>),
    Dir,
    Link,
}

/// Every entry of a tree by relative path, links not followed; volatile folders are recorded
/// but not entered.
pub(crate) fn scan(root: &Path, profile: &Profile, side: &str) -> Result<BTreeMap<String, Kind>> {
    scan_with(root, profile, side, true)
}

/// As [`scan`], a link that leads out of the folder recorded as a link rather than refused
/// (a rollback carries the target's links as they are, never through them).
pub(crate) fn list(root: &Path, profile: &Profile, side: &str) -> Result<BTreeMap<String, Kind>> {
    scan_with(root, profile, side, false)
}

fn scan_with(
    root: &Path,
    profile: &Profile,
    side: &str,
    refuse_out: bool,
) -> Result<BTreeMap<String, Kind>> {
    let mut out = BTreeMap::new();
    crate::fs::walk(root, |rel, e, ft| {
        if ft.is_symlink() || is_reparse_point(e) {
            if refuse_out && leads_out(root, &e.path()) {
                return Err(Error::SyncRefused(format!(
                    "{side} {} has a link that leads out of the folder ({rel}); keyferry \
                     never follows or copies through one: remove it or point it inside",
                    root.display()
                )));
            }
            out.insert(rel.to_owned(), Kind::Link);
            return Ok(false);
        }
        if ft.is_dir() {
            out.insert(rel.to_owned(), Kind::Dir);
            return Ok(classify(rel, profile) != Class::Volatile);
        }
        if ft.is_file() {
            let m = e.metadata().map_err(|err| Error::io(e.path(), err))?;
            out.insert(rel.to_owned(), Kind::File(m.len(), m.modified().ok()));
        }
        if out.len() > crate::sync::MAX_FILES {
            return Err(Error::SyncRefused(format!(
                "{side} {} holds more than {} entries; is it the application folder?",
                root.display(),
                crate::sync::MAX_FILES
            )));
        }
        Ok(false)
    })?;
    Ok(out)
}

/// Lists the source and the target at once (each is mostly waiting on its file system).
pub(crate) fn scan_both(
    src: &Path,
    dst: &Path,
    profile: &Profile,
) -> Result<(BTreeMap<String, Kind>, BTreeMap<String, Kind>)> {
    let (from, to) = std::thread::scope(|s| {
        let to = s.spawn(|| scan(dst, profile, "the target"));
        let from = scan(src, profile, "the source");
        (from, to.join().expect("listing does not panic"))
    });
    Ok((from?, to?))
}

#[cfg(windows)]
fn is_reparse_point(e: &std::fs::DirEntry) -> bool {
    use std::os::windows::fs::MetadataExt;
    e.metadata()
        .map(|m| m.file_attributes() & 0x400 != 0)
        .unwrap_or(true)
}

#[cfg(not(windows))]
fn is_reparse_point(_e: &std::fs::DirEntry) -> bool {
    false
}

/// Whether a link's target, read but not followed, lies outside `root`.
fn leads_out(root: &Path, link: &Path) -> bool {
    let Ok(target) = std::fs::read_link(link) else {
        return true;
    };
    let base = link.parent().unwrap_or(root);
    let joined = if target.is_absolute() {
        target
    } else {
        base.join(target)
    };
    let mut parts: Vec<Component> = Vec::new();
    for c in joined.components() {
        match c {
            Component::ParentDir => {
                if parts.pop().is_none() {
                    return true;
                }
            }
            Component::CurDir => {}
            c => parts.push(c),
        }
    }
    let resolved: PathBuf = parts.iter().collect();
    !resolved.starts_with(root)
}

/// Whether names in the folder `dir` are compared without regard to letter case: the
/// folder's own name (or, where it has no letter, one of its entries') spelled in another case
/// names the same thing. Windows file systems (and Wine's drives) are taken as such.
pub fn case_insensitive(dir: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        let flip = |s: &str| -> String {
            s.chars()
                .map(|c| {
                    if c.is_ascii_lowercase() {
                        c.to_ascii_uppercase()
                    } else {
                        c.to_ascii_lowercase()
                    }
                })
                .collect()
        };
        let probe = |p: &Path| -> Option<bool> {
            let name = p.file_name()?.to_str()?;
            let other = flip(name);
            if other == name {
                return None;
            }
            let a = std::fs::symlink_metadata(p).ok()?;
            Some(
                std::fs::symlink_metadata(p.with_file_name(other))
                    .is_ok_and(|b| (a.dev(), a.ino()) == (b.dev(), b.ino())),
            )
        };
        if let Some(v) = probe(dir) {
            return v;
        }
        if let Ok(rd) = std::fs::read_dir(dir) {
            for e in rd.flatten().take(64) {
                if let Some(v) = probe(&e.path()) {
                    return v;
                }
            }
        }
        false
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        true
    }
}
