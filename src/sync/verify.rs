//! Comparing a target folder with its source by content: every file a sync copies (not the
//! protected, volatile or linked ones) is hashed on both sides with BLAKE3, on every core.
//! A change that keeps the size and the modification time is caught, because nothing but
//! the bytes is compared. `keyferry sync verify` runs this alone; a sync runs the scoped
//! form ([`compare_scoped`]) on the new tree before putting it in place, having compared each
//! file it wrote with its source as it wrote it.

use crate::error::Result;
use crate::fs::Tree;
use crate::profile::Profile;
use crate::sync::hash::{hash_many, Hashed, Item};
use crate::sync::plan::{classify, list, scan, Class, Kind};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Why a file differs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Why {
    /// The source has it, the target does not.
    MissingOnTarget,
    /// The target has it, the source does not.
    OnlyOnTarget,
    /// Both have it; the bytes differ.
    Content,
    /// One side is a link, folder or special file where the other has a file.
    NotAFile,
    /// A file a sync kept (not written): its size or modification time is not the source's.
    QuickCheck,
}

impl Why {
    pub fn describe(self) -> &'static str {
        match self {
            Why::MissingOnTarget => "missing on the target",
            Why::OnlyOnTarget => "only on the target",
            Why::Content => "content differs",
            Why::NotAFile => "not a regular file on one side",
            Why::QuickCheck => "size or modification time differs",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Difference {
    #[serde(serialize_with = "crate::fs::name::serialize_shown")]
    pub path: String,
    pub why: Why,
}

/// The result of comparing a target with its source.
#[derive(Debug, Clone, Serialize)]
pub struct Verification {
    /// The folder compared against.
    pub source: PathBuf,
    /// The folder checked.
    pub target: PathBuf,
    /// Files compared by content, and their bytes (source side).
    pub files: u64,
    /// Files compared by size and modification time only (see `compare_scoped`).
    #[serde(skip_serializing_if = "is_zero")]
    pub quick_checked: u64,
    /// The bytes compared by content.
    pub bytes: u64,
    /// The files that differ, or are on one side only.
    pub differing: Vec<Difference>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl Verification {
    /// Nothing differs.
    pub fn identical(&self) -> bool {
        self.differing.is_empty()
    }
}

/// Compares the files of `target` a sync would manage with `source`'s, by content, on up
/// to `jobs` threads; `done(bytes)` after each file hashed. Reads only.
pub fn compare(
    source: &Path,
    target: &Path,
    profile: &Profile,
    jobs: usize,
    done: &(dyn Fn(u64) + Sync),
) -> Result<Verification> {
    compare_scoped(source, target, profile, jobs, None, done)
}

/// As [`compare`], with the content compared only for the files `by_content` names (by source
/// name; `None`: every file), byte for byte (see [`crate::sync::hash::same_many`]): the others
/// must have the source's size and modification time (full precision). A sync checks its new
/// tree this way: the files it wrote (compared by content as they were written) and the files
/// it kept (the target's own, which the plan found the same) by size and time, the files the
/// plan found equal behind another time by content. Without `by_content`, both sides of every
/// file are hashed.
pub fn compare_scoped(
    source: &Path,
    target: &Path,
    profile: &Profile,
    jobs: usize,
    by_content: Option<&std::collections::HashSet<String>>,
    done: &(dyn Fn(u64) + Sync),
) -> Result<Verification> {
    // Names keyed as the target's file system compares them: `A.dll` and `a.dll` are two
    // files on ext4 and one on NTFS.
    let ci = crate::sync::plan::case_insensitive(target);
    let files_of = |listed: BTreeMap<String, Kind>| -> BTreeMap<String, (String, Kind)> {
        listed
            .into_iter()
            .filter(|(rel, k)| classify(rel, profile) == Class::Normal && !matches!(k, Kind::Dir))
            .map(|(rel, k)| (if ci { rel.to_lowercase() } else { rel.clone() }, (rel, k)))
            .collect()
    };
    // The target's links are listed, never followed: one pointing into the target by its
    // absolute path is the target's own (a sync carries it into the new tree, where it
    // points at the live folder, not out of keyferry's).
    let (from, to) = std::thread::scope(|s| {
        let to = s.spawn(|| list(target, profile, "the target"));
        let from = scan(source, profile, "the source");
        (from, to.join().expect("listing does not panic"))
    });
    let (from, to) = (from?, to?);
    let (from, to) = (files_of(from), files_of(to));
    let (src_tree, dst_tree) = (Tree::open(source)?, Tree::open(target)?);
    let mut differing = Vec::new();
    let mut pairs: Vec<(&str, &str, u64)> = Vec::new();
    let mut quick_checked = 0;
    for (key, (rel, kind)) in &from {
        match (kind, to.get(key)) {
            (Kind::Link, _) => {}
            (_, None) => differing.push(Difference {
                path: rel.clone(),
                why: Why::MissingOnTarget,
            }),
            (Kind::File(len, mtime), Some((trel, Kind::File(tlen, tmtime))))
                if by_content.is_some_and(|only| !only.contains(rel.as_str())) =>
            {
                quick_checked += 1;
                if len != tlen || mtime.is_none() || mtime != tmtime {
                    differing.push(Difference {
                        path: rel.clone(),
                        why: Why::QuickCheck,
                    });
                }
            }
            (Kind::File(len, _), Some((trel, Kind::File(..)))) => {
                pairs.push((rel.as_str(), trel.as_str(), *len))
            }
            _ => differing.push(Difference {
                path: rel.clone(),
                why: Why::NotAFile,
            }),
        }
    }
    // What lies under a name the source has only as a link is the target's (a sync carries it).
    let under_link = |key: &str| {
        from.iter()
            .any(|(k, (_, kind))| matches!(kind, Kind::Link) && key.starts_with(&format!("{k}/")))
    };
    for (key, (rel, kind)) in &to {
        if !from.contains_key(key) && !matches!(kind, Kind::Link) && !under_link(key) {
            differing.push(Difference {
                path: rel.clone(),
                why: Why::OnlyOnTarget,
            });
        }
    }
    let mut bytes = 0;
    if by_content.is_some() {
        // A sync's check of the files it just wrote: byte for byte against the source,
        // stopping at the first difference, while the page cache holds both.
        let list: Vec<(Item, Item)> = pairs
            .iter()
            .map(|&(rel, trel, len)| ((&src_tree, rel, len), (&dst_tree, trel, len)))
            .collect();
        let same = crate::sync::hash::same_many(&list, jobs, done)?;
        for (s, &(rel, _, len)) in same.iter().zip(&pairs) {
            bytes += len;
            let why = match s {
                crate::sync::hash::Same::Yes => continue,
                crate::sync::hash::Same::No => Why::Content,
                crate::sync::hash::Same::Missing => Why::MissingOnTarget,
                crate::sync::hash::Same::NotAFile => Why::NotAFile,
            };
            differing.push(Difference {
                path: rel.to_owned(),
                why,
            });
        }
    } else {
        let list: Vec<Item> = pairs
            .iter()
            .flat_map(|&(rel, trel, len)| [(&src_tree, rel, len), (&dst_tree, trel, len)])
            .collect();
        let hashes = hash_many(&list, jobs, done)?;
        for (i, &(rel, _, len)) in pairs.iter().enumerate() {
            bytes += len;
            let why = match (&hashes[2 * i], &hashes[2 * i + 1]) {
                (Hashed::Hash(a), Hashed::Hash(b)) if a.ct_eq(b) => continue,
                (Hashed::Hash(_), Hashed::Hash(_)) => Why::Content,
                (_, Hashed::Missing) => Why::MissingOnTarget,
                _ => Why::NotAFile,
            };
            differing.push(Difference {
                path: rel.to_owned(),
                why,
            });
        }
    }
    differing.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(Verification {
        source: source.to_owned(),
        target: target.to_owned(),
        files: pairs.len() as u64,
        quick_checked,
        bytes,
        differing,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::ProfileId;

    #[test]
    fn a_same_size_same_time_change_is_caught_and_protected_files_are_not_compared() {
        let d = tempfile::tempdir().unwrap();
        let (s, t) = (d.path().join("s"), d.path().join("t"));
        for root in [&s, &t] {
            std::fs::create_dir_all(root.join("bin")).unwrap();
            std::fs::write(root.join("web.config"), b"<c/>").unwrap();
            std::fs::write(root.join("bin/a.dll"), b"AAAA").unwrap();
        }
        std::fs::write(s.join("encryption.config"), b"K1").unwrap();
        std::fs::write(t.join("Encryption.Config"), b"K2 differs").unwrap();
        let p = Profile::builtin(ProfileId::SecretServer).unwrap();
        let v = compare(&s, &t, &p, 4, &|_| {}).unwrap();
        assert!(v.identical(), "{:?}", v.differing);
        assert_eq!(v.files, 2);
        let when = std::fs::metadata(t.join("bin/a.dll"))
            .unwrap()
            .modified()
            .unwrap();
        std::fs::write(t.join("bin/a.dll"), b"AAAB").unwrap();
        let f = std::fs::File::options()
            .write(true)
            .open(t.join("bin/a.dll"))
            .unwrap();
        f.set_modified(when).unwrap();
        std::fs::write(t.join("bin/stale.dll"), b"x").unwrap();
        let v = compare(&s, &t, &p, 4, &|_| {}).unwrap();
        assert_eq!(
            v.differing,
            [
                Difference {
                    path: "bin/a.dll".into(),
                    why: Why::Content
                },
                Difference {
                    path: "bin/stale.dll".into(),
                    why: Why::OnlyOnTarget
                }
            ]
        );
    }
}
