//! The previous trees a sync keeps beside each target, for `keyferry sync rollback`: numbered
//! generations, newest first. The tree the last sync replaced is `<target>.keyferry-prev`;
//! older ones are `<target>.keyferry-prev.2`, `.3`, ... Each holds its record
//! ([`PreviousRecord`]: the sync that replaced it, when, the fingerprints of the source that
//! sync installed and of the tree itself).
//!
//! Generation numbers are the trees' order, newest first, not the digits in their names: a
//! sync that stopped after making room (its tree was then discarded) leaves a gap in the
//! names and none in the numbers. Before a sync keeps another tree it retires the oldest
//! beyond [`ApplyOptions::keep`](crate::sync::ApplyOptions) and renames the others one
//! step older, each through a handle on the folder that holds them.

use crate::error::{Error, Result};
use crate::sync::journal::{PreviousRecord, MARKER, PREVIOUS_RECORD};
use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// How many previous trees a sync keeps by default.
pub const DEFAULT_KEEP: u32 = 3;
/// The most a target may keep.
pub const MAX_KEEP: u32 = 20;

/// One kept tree.
#[derive(Debug, Clone)]
pub struct Generation {
    /// 1 for the newest.
    pub number: u32,
    pub path: PathBuf,
    /// Its record; `None` for a tree a sync was still filling when it stopped (its marker
    /// says it is keyferry's).
    pub record: Option<PreviousRecord>,
}

const SUFFIX: &str = ".keyferry-prev";
const MAX_RECORD: u64 = 64 * 1024 * 1024;

/// The kept trees of `target`, newest first. A folder of a kept tree's name that carries
/// neither a record nor a sync marker is not keyferry's: refused.
pub fn generations(target: &Path) -> Result<Vec<Generation>> {
    let (parent, name) = crate::fs::split(target)?;
    let dir = crate::fs::Dir::open(&parent)?;
    let base = {
        let mut b = name.clone();
        b.push(SUFFIX);
        b
    };
    let mut found: Vec<(u32, OsString)> = Vec::new();
    for n in dir.names()? {
        if n == base {
            found.push((1, n));
            continue;
        }
        let (Some(n_str), Some(b_str)) = (n.to_str(), base.to_str()) else {
            continue;
        };
        if let Some(digits) = n_str
            .strip_prefix(b_str)
            .and_then(|rest| rest.strip_prefix('.'))
        {
            if let Ok(k) = digits.parse::<u32>() {
                if k >= 2 && digits == k.to_string() {
                    found.push((k, n));
                }
            }
        }
    }
    found.sort();
    let mut out = Vec::new();
    for (i, (_, n)) in found.into_iter().enumerate() {
        let path = parent.join(&n);
        let record = match crate::fs::read_bounded(
            &path.join(PREVIOUS_RECORD),
            MAX_RECORD,
            "previous-tree record",
        ) {
            Ok(bytes) => Some(serde_json::from_slice(&bytes).map_err(|e| {
                Error::SyncRefused(format!(
                    "{} is unreadable: {e}; move that kept tree away",
                    path.join(PREVIOUS_RECORD).display()
                ))
            })?),
            Err(e) if e.is_missing() || matches!(e, Error::NotAFile { .. }) => None,
            Err(e) => return Err(e),
        };
        if record.is_none() {
            // Without its record, a tree a sync was still filling carries that sync's marker.
            let folder =
                matches!(dir.entry(&n)?, crate::fs::Entry::Other(k) if k.ends_with("folder"));
            if !folder || crate::fs::read_bounded(&path.join(MARKER), 256, "sync marker").is_err() {
                return Err(Error::SyncRefused(format!(
                    "{} exists but is not a previous tree keyferry kept{}; move it away first",
                    path.display(),
                    if folder { "" } else { " (not a folder)" }
                )));
            }
        }
        out.push(Generation {
            number: i as u32 + 1,
            path,
            record,
        });
    }
    Ok(out)
}

/// The name a kept tree of `target` has at position `k` of its names (1: `.keyferry-prev`).
fn name_of(target_name: &OsString, k: u32) -> OsString {
    let mut n = target_name.clone();
    n.push(SUFFIX);
    if k > 1 {
        n.push(format!(".{k}"));
    }
    n
}

/// Makes room for the tree a sync of `target` is about to keep: the oldest kept trees beyond
/// `keep - 1` are removed (through handles, their marks last), and, where
/// `<target>.keyferry-prev` is taken, the others renamed one step up so it is free. Returns
/// the trees removed.
pub fn make_room(target: &Path, keep: u32) -> Result<Vec<PathBuf>> {
    let keep = keep.clamp(1, MAX_KEEP);
    let gens = generations(target)?;
    let mut removed = Vec::new();
    let mut stay = Vec::new();
    for g in gens {
        if g.number < keep {
            stay.push(g);
        } else {
            crate::sync::apply::remove_kept_tree(&g.path)?;
            removed.push(g.path);
        }
    }
    let (parent, name) = crate::fs::split(target)?;
    let dir = crate::fs::Dir::open(&parent)?;
    let first = name_of(&name, 1);
    if stay
        .first()
        .is_some_and(|g| g.path.file_name() == Some(first.as_os_str()))
    {
        // Each one step up, from the highest: the name above the highest is free (every name
        // of the pattern was found), and each next one was just vacated.
        let numbered: Vec<(u32, OsString)> = stay
            .iter()
            .map(|g| {
                let (_, n) = crate::fs::split(&g.path)?;
                let k = n
                    .to_str()
                    .and_then(|s| s.rsplit_once('.'))
                    .and_then(|(_, d)| d.parse::<u32>().ok())
                    .unwrap_or(1);
                Ok((k, n))
            })
            .collect::<Result<_>>()?;
        for (k, from) in numbered.iter().rev() {
            dir.rename(from, &name_of(&name, k + 1))?;
        }
    }
    if !stay.is_empty() {
        dir.sync()?;
    }
    Ok(removed)
}

/// The bytes a kept tree holds that no other name shares (files with one link: what its
/// removal frees; on Windows every file's bytes).
pub fn own_bytes(tree: &Path) -> Result<u64> {
    let mut total = 0u64;
    crate::fs::walk::walk(tree, |_, e, ft| {
        if ft.is_file() {
            let m = e.metadata().map_err(|err| Error::io(e.path(), err))?;
            #[cfg(unix)]
            let own = std::os::unix::fs::MetadataExt::nlink(&m) == 1;
            #[cfg(not(unix))]
            let own = true;
            if own {
                total = total.saturating_add(m.len());
            }
        }
        Ok(ft.is_dir())
    })?;
    Ok(total)
}

/// A fingerprint of a listing: each normal file's name, size and modification time (the
/// quick check's view of a tree), BLAKE3, hex. Two trees with the same fingerprint have the
/// same names, sizes and times.
pub fn listing_fingerprint<'a>(
    files: impl Iterator<Item = (&'a str, u64, Option<std::time::SystemTime>)>,
) -> String {
    let mut h = blake3::Hasher::new();
    for (rel, len, mtime) in files {
        let ns = mtime
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        h.update(rel.as_bytes());
        h.update(&[0]);
        h.update(&len.to_le_bytes());
        h.update(&ns.to_le_bytes());
    }
    h.finalize().to_hex()[..16].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kept(dir: &Path, name: &str, id: &str) {
        let p = dir.join(name);
        std::fs::create_dir(&p).unwrap();
        std::fs::write(p.join("f"), id).unwrap();
        let record = serde_json::json!({
            "version": 1, "kind": "sync-previous", "id": id, "node": "n", "mode": "swap",
            "target": dir.join("app"), "time": "2026-12-05T00:00:00Z"
        });
        std::fs::write(p.join(PREVIOUS_RECORD), record.to_string()).unwrap();
    }

    fn ids(t: &Path) -> Vec<(u32, String, String)> {
        generations(t)
            .unwrap()
            .into_iter()
            .map(|g| {
                (
                    g.number,
                    g.path.file_name().unwrap().to_string_lossy().into_owned(),
                    g.record.unwrap().id,
                )
            })
            .collect()
    }

    #[test]
    fn generations_are_numbered_by_age_and_room_keeps_the_newest() {
        let d = tempfile::tempdir().unwrap();
        let t = d.path().join("app");
        std::fs::create_dir(&t).unwrap();
        // A gap (a sync stopped after making room): numbers follow the order, not the names.
        kept(d.path(), "app.keyferry-prev.2", "s2");
        kept(d.path(), "app.keyferry-prev.5", "s1");
        std::fs::create_dir(d.path().join("app.keyferry-prev.x")).unwrap();
        std::fs::create_dir(d.path().join("other.keyferry-prev")).unwrap();
        assert_eq!(
            ids(&t),
            [
                (1, "app.keyferry-prev.2".into(), "s2".into()),
                (2, "app.keyferry-prev.5".into(), "s1".into())
            ]
        );
        kept(d.path(), "app.keyferry-prev", "s3");
        // Keep 3: room for one more, so the oldest (s1) goes and the rest move one step.
        let removed = make_room(&t, 3).unwrap();
        assert_eq!(removed, [d.path().join("app.keyferry-prev.5")]);
        assert!(!d.path().join("app.keyferry-prev.5").exists());
        assert_eq!(
            ids(&t),
            [
                (1, "app.keyferry-prev.2".into(), "s3".into()),
                (2, "app.keyferry-prev.3".into(), "s2".into())
            ]
        );
        assert!(!d.path().join("app.keyferry-prev").exists());
        // Keep 1: nothing stays.
        make_room(&t, 1).unwrap();
        assert!(ids(&t).is_empty());
        assert!(d.path().join("app.keyferry-prev.x").exists());
    }

    #[test]
    fn a_folder_of_a_kept_trees_name_that_keyferry_did_not_make_is_refused() {
        let d = tempfile::tempdir().unwrap();
        let t = d.path().join("app");
        std::fs::create_dir(&t).unwrap();
        std::fs::create_dir(d.path().join("app.keyferry-prev.3")).unwrap();
        std::fs::write(d.path().join("app.keyferry-prev.3/mine"), b"x").unwrap();
        let e = make_room(&t, 3).unwrap_err().to_string();
        assert!(e.contains("not a previous tree keyferry kept"), "{e}");
        assert!(d.path().join("app.keyferry-prev.3/mine").exists());
    }
}
