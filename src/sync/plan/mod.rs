//! The sync plan: what copying a source application folder onto a target would do, computed
//! from both trees without writing anything.
//!
//! - **Protected** files (the profile's key and node-local files: `encryption.config`,
//!   `database.config`) are never read from the source and never touched on the target. They
//!   are matched by name case-insensitively at any depth, on every system: `Encryption.Config`
//!   copied to a Windows node would overwrite `encryption.config`, so it counts as the same.
//! - **Volatile** paths (logs, temp folders, keyferry's own temp files) are neither copied nor
//!   deleted.
//! - Links are never followed and never copied; a link that leads out of its tree refuses the
//!   whole plan.
//! - Files are compared by size and modification time, as `rsync` does (a sync gives every
//!   file it writes the source's modification time); `--checksum` compares contents instead.
//!   Whatever the plan decides, a sync compares every file it writes with its source by
//!   content as it writes it, then the whole new tree with a fresh listing of the source
//!   ([`crate::sync::verify::compare_scoped`]) before it is put in place.

use crate::error::{Error, Result};
use crate::profile::Profile;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

mod decide;
mod scan;

use decide::{compare_pairs, listings_digest, plan_listed, Comparer};
pub(crate) use scan::{case_insensitive, list, scan, scan_both, Kind};

/// How a relative path of the application folder travels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Class {
    /// Copied, updated and deleted to match the source.
    Normal,
    /// A key or node-local file: never read from the source, never touched on the target.
    Protected,
    /// Logs and temp files: neither copied nor deleted.
    Volatile,
}

/// The class of a `/`-separated relative path, for this profile.
///
/// Names are compared as Win32 resolves them, where the products run: without regard to case,
/// and with each component's trailing dots and spaces dropped (`Encryption.Config .` opens
/// `encryption.config` there), on every platform: a name that is the protected file on
/// Windows is protected everywhere.
pub fn classify(rel: &str, profile: &Profile) -> Class {
    let lower: String = rel
        .to_lowercase()
        .split('/')
        .map(|c| {
            let t = c.trim_end_matches(['.', ' ']);
            if t.is_empty() {
                c
            } else {
                t
            }
        })
        .collect::<Vec<_>>()
        .join("/");
    let name = lower.rsplit('/').next().unwrap_or(&lower);
    let top = lower.split('/').next().unwrap_or("");
    let named = |n: &str| n.to_lowercase() == name;
    if profile.keys.iter().any(|k| named(&k.name))
        || profile.node_local.iter().any(|l| named(&l.name))
    {
        return Class::Protected;
    }
    if name.ends_with(".log")
        || name.ends_with(".tmp")
        || top.starts_with(".keyferry-")
        || name.starts_with(".keyferry-")
        || profile.volatile.iter().any(|v| v == top)
    {
        return Class::Volatile;
    }
    Class::Normal
}

/// One file of a plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanFile {
    #[serde(serialize_with = "crate::fs::name::serialize_shown")]
    pub path: String,
    pub bytes: u64,
}

/// What a sync from `source` onto `target` would do.
#[derive(Debug, Clone, Serialize)]
pub struct SyncPlan {
    /// The folder synced from.
    pub source: PathBuf,
    /// The folder synced.
    pub target: PathBuf,
    /// Files only the source has.
    pub add: Vec<PlanFile>,
    /// Files whose content differs.
    pub update: Vec<PlanFile>,
    /// Files only the target has.
    pub delete: Vec<PlanFile>,
    /// Folders to create on the target, and to remove (empty once their files are deleted).
    #[serde(serialize_with = "crate::fs::name::serialize_all_shown")]
    pub add_dirs: Vec<String>,
    /// Folders to remove once their files are gone.
    #[serde(serialize_with = "crate::fs::name::serialize_all_shown")]
    pub delete_dirs: Vec<String>,
    /// Files that are the same on both sides.
    pub unchanged: u64,
    /// Files whose bytes equal the source's but whose modification time differs: kept as
    /// they are, given the source's time (so the next plain sync takes them as the same).
    pub times_only: Vec<PlanFile>,
    /// Protected files on the target (as it names them): left exactly as they are.
    #[serde(serialize_with = "crate::fs::name::serialize_all_shown")]
    pub protected: Vec<String>,
    /// Volatile paths found on either side: left alone.
    #[serde(serialize_with = "crate::fs::name::serialize_all_shown")]
    pub volatile: Vec<String>,
    /// Links inside a tree: not followed, not copied, left alone.
    #[serde(serialize_with = "crate::fs::name::serialize_all_shown")]
    pub links: Vec<String>,
    /// Bytes to add.
    pub add_bytes: u64,
    /// Bytes to replace.
    pub update_bytes: u64,
    /// Bytes to delete.
    pub delete_bytes: u64,
    /// Things the admin should know before applying (per-node settings overwritten, keys the
    /// new node still needs).
    pub warnings: Vec<String>,
    /// Whether the target's file system takes `A.dll` and `a.dll` for one name (NTFS, SMB,
    /// Wine's drives): names are then matched without regard to case, else exactly.
    pub case_insensitive: bool,
    /// The quick check's view of each tree (names, sizes, times of the files a sync manages),
    /// as a fingerprint: the previous tree a sync keeps is recorded with both.
    pub source_fingerprint: String,
    /// The target's fingerprint, as the quick check sees it.
    pub target_fingerprint: String,
    /// For applying: every folder of the new tree (source names, parents first).
    #[serde(skip)]
    pub(crate) source_dirs: Vec<String>,
    /// For applying: files the plan found unchanged (source name, target name, size).
    #[serde(skip)]
    pub(crate) unchanged_files: Vec<(String, String, u64)>,
    /// For applying: target names whose kind the source changes (a file where the source has
    /// a folder, a folder where it has a file, a link): cleared before anything goes in.
    #[serde(skip)]
    pub(crate) kind_changes: Vec<String>,
    /// For applying: the source's modification time for each file of `times_only`.
    #[serde(skip)]
    pub(crate) new_times: Vec<(String, SystemTime)>,
    /// For applying: what the target keeps as it is (volatile entries, links), by its names.
    #[serde(skip)]
    pub(crate) target_kept: Vec<(String, Kind)>,
    /// For applying: the target's name of each updated file (its case may differ).
    #[serde(skip)]
    pub(crate) update_targets: BTreeMap<String, String>,
    #[serde(skip)]
    pub(crate) profile: Profile,
    /// Both listings the plan was made from (every entry's name, kind, size and time), as a
    /// digest: see [`replan`].
    #[serde(skip)]
    listings: [u8; 32],
}

impl SyncPlan {
    /// The target's name for a source path (the same, or another case of it).
    pub(crate) fn target_name(&self, rel: &str) -> String {
        self.update_targets
            .get(rel)
            .or_else(|| {
                self.unchanged_files
                    .iter()
                    .find(|u| u.0 == rel)
                    .map(|u| &u.1)
            })
            .cloned()
            .unwrap_or_else(|| rel.to_owned())
    }
}

impl SyncPlan {
    /// Bytes of the whole source tree as planned (what a copy of it takes).
    pub fn source_bytes(&self) -> u64 {
        self.add_bytes
            .saturating_add(self.update_bytes)
            .saturating_add(self.unchanged_files.iter().map(|u| u.2).sum())
    }

    /// Whether the target's files already hold the source's bytes and only some modification
    /// times differ: those are set in place ([`crate::sync::apply::set_times`]), with no new
    /// tree and no kept tree (a rollback still goes back to the tree before the last real
    /// change).
    pub fn is_times_only(&self) -> bool {
        self.same_content() && !self.times_only.is_empty()
    }

    /// Whether the target already matches the source.
    pub fn is_noop(&self) -> bool {
        self.same_content() && self.times_only.is_empty()
    }

    /// Nothing to add, update or delete, no folder or kind to change.
    fn same_content(&self) -> bool {
        self.add.is_empty()
            && self.update.is_empty()
            && self.delete.is_empty()
            && self.add_dirs.is_empty()
            && self.delete_dirs.is_empty()
            && self.kind_changes.is_empty()
    }
}

/// Settings of a plan.
#[derive(Debug, Clone)]
pub struct PlanOptions {
    /// The target may be an empty folder (a new node); otherwise it must look like the
    /// application.
    pub allow_new_target: bool,
    /// Most files a plan may delete before it is refused (a wrong target would lose them all).
    pub max_delete: usize,
    /// Compare files of equal size by content rather than by modification time.
    pub checksum: bool,
}

/// The default cap on deletions.
pub const DEFAULT_MAX_DELETE: usize = 200;

/// Plans a sync of `source` onto `target`. Reads only.
pub fn plan(
    source: &Path,
    target: &Path,
    profile: &Profile,
    opts: &PlanOptions,
) -> Result<SyncPlan> {
    let (src, dst) = roots(source, target)?;
    let (from, to) = scan_both(&src, &dst, profile)?;
    let ci = case_insensitive(&dst);
    plan_listed(&src, &dst, profile, opts, from, to, ci, &|l| {
        compare_pairs(&src, &dst, l)
    })
}

/// The plan again, for a plan made before the node's lock was taken (so that a refusal
/// leaves nothing behind) and applied after it: both trees are listed afresh, and where
/// neither changed (every entry's name, kind, size and full-precision time the same), the
/// plan stands as it was made, its comparisons by content not read again; else it is made
/// again from the new listings. Reads only.
pub fn replan(
    previous: SyncPlan,
    source: &Path,
    target: &Path,
    profile: &Profile,
    opts: &PlanOptions,
) -> Result<SyncPlan> {
    let (src, dst) = roots(source, target)?;
    let (from, to) = scan_both(&src, &dst, profile)?;
    let ci = case_insensitive(&dst);
    if src == previous.source
        && dst == previous.target
        && ci == previous.case_insensitive
        && listings_digest(&from, &to) == previous.listings
    {
        return Ok(previous);
    }
    plan_listed(&src, &dst, profile, opts, from, to, ci, &|l| {
        compare_pairs(&src, &dst, l)
    })
}

/// Plans every (source, target) pair at once, as [`plan`] plans one, reading each source
/// once: each source folder is listed once, and the files a plan compares by content
/// (`--checksum`, or the same size behind another time) are compared with every target's in
/// one pass over the source file. The results are in the order of `pairs`. Reads only.
pub fn plan_many(
    pairs: &[(PathBuf, PathBuf)],
    profile: &Profile,
    opts: &PlanOptions,
) -> Vec<Result<SyncPlan>> {
    use std::collections::HashMap;
    use std::sync::Mutex;
    let roots: Vec<Result<(PathBuf, PathBuf)>> = pairs.iter().map(|(s, t)| roots(s, t)).collect();
    // Every tree listed once, two at a time.
    let mut trees: Vec<(PathBuf, &str)> = Vec::new();
    for (s, t) in roots.iter().flatten() {
        for (p, side) in [(s, "the source"), (t, "the target")] {
            if !trees.iter().any(|(q, _)| q == p) {
                trees.push((p.clone(), side));
            }
        }
    }
    let listed: Vec<Result<BTreeMap<String, Kind>>> =
        crate::parallel::map(trees.len(), 2, |i| scan(&trees[i].0, profile, trees[i].1));
    let listing = |p: &Path| -> Result<BTreeMap<String, Kind>> {
        let i = trees
            .iter()
            .position(|(q, _)| q == p)
            .expect("listed above");
        match &listed[i] {
            Ok(l) => Ok(l.clone()),
            Err(e) => Err(again(e)),
        }
    };
    // Each target's case rule, probed once; a pair's plan from the shared listings, with
    // the comparer given.
    let ci: Vec<bool> = roots
        .iter()
        .map(|r| r.as_ref().is_ok_and(|(_, dst)| case_insensitive(dst)))
        .collect();
    let plan_pair = |i: usize, src: &Path, dst: &Path, same: Comparer<'_>| {
        plan_listed(
            src,
            dst,
            profile,
            opts,
            listing(src)?,
            listing(dst)?,
            ci[i],
            same,
        )
    };
    // Each pair's plan, its comparisons recorded rather than made (taken as different: the
    // plan is made again below with the answers).
    let wanted: Vec<Mutex<Vec<(String, String, u64)>>> =
        pairs.iter().map(|_| Mutex::new(Vec::new())).collect();
    let first: Vec<Result<()>> = roots
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let (src, dst) = r.as_ref().map_err(again)?;
            plan_pair(i, src, dst, &|l| {
                *wanted[i].lock().expect("not poisoned") = l.to_vec();
                Ok(vec![false; l.len()])
            })
            .map(drop)
        })
        .collect();
    // The comparisons of all pairs of one source, in one pass over each source file.
    let mut answers: HashMap<(usize, String), bool> = HashMap::new();
    let mut sources: Vec<&PathBuf> = Vec::new();
    for (s, _) in roots.iter().flatten() {
        if !sources.contains(&s) {
            sources.push(s);
        }
    }
    for source in sources {
        let members: Vec<usize> = (0..pairs.len())
            .filter(|&i| first[i].is_ok() && roots[i].as_ref().is_ok_and(|(s, _)| s == source))
            .collect();
        let Ok(src_tree) = crate::fs::Tree::open(source) else {
            continue;
        };
        let dst_trees: Vec<Option<crate::fs::Tree>> = members
            .iter()
            .map(|&i| {
                roots[i]
                    .as_ref()
                    .ok()
                    .and_then(|(_, t)| crate::fs::Tree::open(t).ok())
            })
            .collect();
        // Each source file (name, size) and who compares it: (its place among this
        // source's targets, its pair, its name there).
        let mut by_file: BTreeMap<(String, u64), Vec<Asker>> = BTreeMap::new();
        for (m, &i) in members.iter().enumerate() {
            for (rel, trel, len) in wanted[i].lock().expect("not poisoned").iter() {
                by_file
                    .entry((rel.clone(), *len))
                    .or_default()
                    .push((m, i, trel.clone()));
            }
        }
        let items: Vec<((String, u64), Vec<Asker>)> = by_file.into_iter().collect();
        let across: Vec<crate::sync::hash::Across> = items
            .iter()
            .map(|((rel, len), ts)| crate::sync::hash::Across {
                rel: rel.as_str(),
                len: *len,
                targets: ts
                    .iter()
                    .filter_map(|(m, _, trel)| dst_trees[*m].as_ref().map(|t| (t, trel.as_str())))
                    .collect(),
            })
            .collect();
        let Ok(same) = crate::sync::hash::same_across(&src_tree, &across, usize::MAX) else {
            continue;
        };
        for (((rel, _), ts), same) in items.iter().zip(same) {
            let alive: Vec<&Asker> = ts
                .iter()
                .filter(|(m, _, _)| dst_trees[*m].is_some())
                .collect();
            for ((_, i, _), yes) in alive.into_iter().zip(same) {
                answers.insert((*i, rel.clone()), yes);
            }
        }
    }
    // Each plan again, with the answers (a comparison not made counts as different); a
    // refusal is the one the pair met first.
    roots
        .into_iter()
        .zip(first)
        .enumerate()
        .map(|(i, (r, f))| {
            let (src, dst) = r?;
            f?;
            plan_pair(i, &src, &dst, &|l| {
                Ok(l.iter()
                    .map(|(rel, _, _)| answers.get(&(i, rel.clone())).copied().unwrap_or(false))
                    .collect())
            })
        })
        .collect()
}

/// Who compares a source file with its own: its place among the source's targets, its pair,
/// the file's name there.
type Asker = (usize, usize, String);

/// The same error again, for a second use of it (an error is not `Clone`): a refusal as
/// itself, an I/O error with its kind and path.
fn again(e: &Error) -> Error {
    match e {
        Error::SyncRefused(m) => Error::SyncRefused(m.clone()),
        Error::Io { path, source } => {
            Error::io(path, std::io::Error::new(source.kind(), source.to_string()))
        }
        other => Error::SyncRefused(other.to_string()),
    }
}

/// The source's and the target's folders as the file system resolves them, refused where
/// they are not two separate folders, neither a file system's root.
fn roots(source: &Path, target: &Path) -> Result<(PathBuf, PathBuf)> {
    let refuse = |why: String| Err(Error::SyncRefused(why));
    let src = std::fs::canonicalize(source).map_err(|e| Error::io(source, e))?;
    let dst = std::fs::canonicalize(target).map_err(|e| Error::io(target, e))?;
    for (side, p) in [("source", &src), ("target", &dst)] {
        if !p.is_dir() {
            return refuse(format!("the {side} {} is not a folder", p.display()));
        }
        if p.parent().is_none() {
            return refuse(format!(
                "the {side} {} is the root of a file system; point it at the application folder",
                p.display()
            ));
        }
    }
    if src == dst || src.starts_with(&dst) || dst.starts_with(&src) {
        return refuse(format!(
            "source {} and target {} are the same folder, or one is inside the other",
            src.display(),
            dst.display()
        ));
    }
    Ok((src, dst))
}

#[cfg(test)]
mod tests {

    /// Planned together (each source read once), every target gets exactly the plan it gets
    /// alone: same size behind other times, same size and time with other bytes (`--checksum`),
    /// sizes that differ, files only on one side; and a refused target the same refusal.
    #[test]
    fn targets_planned_together_get_the_plans_they_get_alone() {
        let d = tempfile::tempdir().unwrap();
        let t = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000);
        let set = |p: &Path, bytes: &[u8], when: std::time::SystemTime| {
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, bytes).unwrap();
            let f = std::fs::File::options().write(true).open(p).unwrap();
            f.set_modified(when).unwrap();
        };
        let later = t + std::time::Duration::from_secs(60);
        let src = d.path().join("src");
        set(&src.join("web.config"), b"<c v2/>", t);
        set(&src.join("bin/a.dll"), &[7u8; 700_000], t);
        set(&src.join("bin/b.dll"), b"BBBB", t);
        set(&src.join("bin/new.dll"), b"new", t);
        let mut other = vec![7u8; 700_000];
        other[699_999] = 8;
        let targets = [
            // the same bytes behind other times
            vec![
                ("web.config", &b"<c v2/>"[..], later),
                ("bin/a.dll", &[7u8; 700_000][..], later),
                ("bin/b.dll", b"BBBB", t),
            ],
            // other bytes behind the same size and time; one more file
            vec![
                ("web.config", &b"<c v1/>"[..], t),
                ("bin/a.dll", &other[..], t),
                ("bin/b.dll", b"BBBC", t),
                ("bin/old.dll", b"old", t),
            ],
            // a size that differs
            vec![("web.config", &b"<c/>"[..], t), ("bin/a.dll", b"short", t)],
        ];
        let mut pairs = Vec::new();
        for (i, files) in targets.iter().enumerate() {
            let root = d.path().join(format!("t{i}"));
            for (rel, bytes, when) in files {
                set(&root.join(rel), bytes, *when);
            }
            pairs.push((src.clone(), root));
        }
        // A target that is not there: refused alike.
        pairs.push((src.clone(), d.path().join("missing")));
        let profile = Profile::builtin(crate::profile::ProfileId::SecretServer).unwrap();
        for checksum in [false, true] {
            let opts = PlanOptions {
                allow_new_target: false,
                max_delete: DEFAULT_MAX_DELETE,
                checksum,
            };
            let together = plan_many(&pairs, &profile, &opts);
            assert_eq!(together.len(), pairs.len());
            for ((s, t), got) in pairs.iter().zip(together) {
                let alone = plan(s, t, &profile, &opts);
                match (alone, got) {
                    (Ok(a), Ok(b)) => assert_eq!(
                        serde_json::to_value(&a).unwrap(),
                        serde_json::to_value(&b).unwrap(),
                        "{} with checksum {checksum}",
                        t.display()
                    ),
                    (Err(a), Err(b)) => {
                        assert!(b.to_string().contains(&a.to_string()), "{a} / {b}")
                    }
                    (a, b) => panic!("{}: alone {a:?}, together {b:?}", t.display()),
                }
            }
        }
    }

    /// A plan made before the lock stands under it while neither tree's listing changed (its
    /// comparisons by content are not read again), and is made again as soon as one did.
    #[test]
    fn a_plan_stands_under_the_lock_only_while_both_listings_are_the_same() {
        let d = tempfile::tempdir().unwrap();
        let (src, dst) = (d.path().join("src"), d.path().join("dst"));
        let t = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000);
        let set = |p: &Path, bytes: &[u8], when: std::time::SystemTime| {
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, bytes).unwrap();
            let f = std::fs::File::options().write(true).open(p).unwrap();
            f.set_modified(when).unwrap();
        };
        for root in [&src, &dst] {
            set(&root.join("web.config"), b"<c/>", t);
            set(&root.join("bin/a.dll"), b"AAAA", t);
        }
        let profile = Profile::builtin(crate::profile::ProfileId::SecretServer).unwrap();
        let opts = PlanOptions {
            allow_new_target: false,
            max_delete: DEFAULT_MAX_DELETE,
            checksum: true,
        };
        let first = plan(&src, &dst, &profile, &opts).unwrap();
        assert!(first.is_noop());
        // The same size and time, other bytes: the listing is the same, the plan stands
        // (the build's read-back and the next --checksum run see it; see `replan`).
        set(&dst.join("bin/a.dll"), b"AAAB", t);
        let again = replan(first.clone(), &src, &dst, &profile, &opts).unwrap();
        assert!(again.is_noop());
        assert_eq!(again.listings, first.listings);
        // Another time: the listing differs, the plan is made again and finds the change.
        set(
            &dst.join("bin/a.dll"),
            b"AAAB",
            t + std::time::Duration::from_secs(1),
        );
        let again = replan(first.clone(), &src, &dst, &profile, &opts).unwrap();
        assert_eq!(again.update.len(), 1, "{:?}", again.update);
        // A new folder on the target alone is a change as well.
        std::fs::create_dir(dst.join("bin/extra")).unwrap();
        set(&dst.join("bin/a.dll"), b"AAAA", t);
        let again = replan(first.clone(), &src, &dst, &profile, &opts).unwrap();
        assert_eq!(again.delete_dirs, ["bin/extra"]);
    }

    #[test]
    fn protected_and_volatile_names_match_as_win32_resolves_them() {
        let profile = Profile::builtin(crate::profile::ProfileId::SecretServer).unwrap();
        for rel in [
            "encryption.config",
            "Encryption.Config",
            "encryption.config.",
            "Encryption.Config ",
            "encryption.config. .",
            "sub/DATABASE.CONFIG..",
        ] {
            assert_eq!(classify(rel, &profile), Class::Protected, "{rel:?}");
        }
        for rel in ["logs./a.txt", "Logs /a.txt", "x/app.log.", "x/app.LOG "] {
            assert_eq!(classify(rel, &profile), Class::Volatile, "{rel:?}");
        }
        for rel in ["encryption.config.bak", "web.config", "bin/encryption"] {
            assert_eq!(classify(rel, &profile), Class::Normal, "{rel:?}");
        }
    }

    #[cfg(unix)]
    #[test]
    fn case_only_twins_are_two_files_on_a_case_sensitive_target_and_refused_on_another() {
        let d = tempfile::tempdir().unwrap();
        let (src, dst) = (d.path().join("src"), d.path().join("dst"));
        for (root, files) in [
            (
                &src,
                &[
                    ("web.config", &b"w"[..]),
                    ("bin/A.dll", b"AAAA"),
                    ("bin/a.dll", b"aaaa"),
                ][..],
            ),
            (
                &dst,
                &[("web.config", &b"w"[..]), ("bin/a.dll", b"aaaa")][..],
            ),
        ] {
            for (rel, bytes) in files {
                let p = root.join(rel);
                std::fs::create_dir_all(p.parent().unwrap()).unwrap();
                std::fs::write(&p, bytes).unwrap();
            }
        }
        // The same time on all three: only the name tells them apart.
        let t = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000);
        for p in [
            src.join("bin/A.dll"),
            src.join("bin/a.dll"),
            dst.join("bin/a.dll"),
            src.join("web.config"),
            dst.join("web.config"),
        ] {
            std::fs::File::options()
                .write(true)
                .open(&p)
                .unwrap()
                .set_modified(t)
                .unwrap();
        }
        let profile = Profile::builtin(crate::profile::ProfileId::SecretServer).unwrap();
        let opts = PlanOptions {
            allow_new_target: false,
            max_delete: 10,
            checksum: false,
        };
        assert!(
            !case_insensitive(&dst),
            "a Linux temp folder compares names exactly"
        );
        let p = plan(&src, &dst, &profile, &opts).unwrap();
        assert_eq!(
            p.add.iter().map(|f| f.path.as_str()).collect::<Vec<_>>(),
            ["bin/A.dll"]
        );
        assert!(
            p.update.is_empty() && p.delete.is_empty(),
            "{:?} {:?}",
            p.update,
            p.delete
        );
        assert_eq!(p.unchanged_files[0].0, "bin/a.dll");
        // The target as NTFS would see it: refused, naming both.
        let (from, to) = scan_both(&src, &dst, &profile).unwrap();
        let e = plan_listed(&src, &dst, &profile, &opts, from, to, true, &|l| {
            compare_pairs(&src, &dst, l)
        })
        .unwrap_err();
        assert!(e.to_string().contains("bin/A.dll and bin/a.dll"), "{e}");
        // verify keys names exactly too: a target missing A.dll differs.
        let v = crate::sync::verify::compare(&src, &dst, &profile, 2, &|_| {}).unwrap();
        assert_eq!(v.differing.len(), 1, "{:?}", v.differing);
        assert_eq!(v.differing[0].path, "bin/A.dll");
    }

    use super::*;
    use crate::profile::ProfileId;
    use std::fs;

    fn ss() -> Profile {
        Profile::builtin(ProfileId::SecretServer).unwrap()
    }

    fn tree(root: &Path, files: &[(&str, &[u8])]) {
        for (rel, bytes) in files {
            let p = root.join(rel);
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            fs::write(p, bytes).unwrap();
        }
    }

    fn opts() -> PlanOptions {
        PlanOptions {
            allow_new_target: false,
            max_delete: DEFAULT_MAX_DELETE,
            checksum: false,
        }
    }

    #[test]
    fn protected_files_are_left_alone_whatever_their_case_and_the_rest_is_planned() {
        let d = tempfile::tempdir().unwrap();
        let (s, t) = (d.path().join("src"), d.path().join("dst"));
        tree(
            &s,
            &[
                ("web.config", b"<c/>"),
                ("bin/app.dll", b"v11.0"),
                ("bin/new.dll", b"new"),
                ("encryption.config", b"SOURCE KEY"),
                ("Database.config", b"source db"),
                ("logs/today.log", b"noise"),
                ("same.js", b"aaaa"),
            ],
        );
        tree(
            &t,
            &[
                ("web.config", b"<c/>"),
                ("bin/app.dll", b"v10.9"),
                ("bin/stale.dll", b"old"),
                ("Encryption.Config", b"TARGET KEY"),
                ("database.config", b"target db"),
                ("logs/old.log", b"keep"),
                ("same.js", b"aaaa"),
            ],
        );
        let p = plan(
            &s,
            &t,
            &ss(),
            &PlanOptions {
                checksum: true,
                ..opts()
            },
        )
        .unwrap();
        let paths = |v: &[PlanFile]| v.iter().map(|f| f.path.clone()).collect::<Vec<_>>();
        assert_eq!(paths(&p.add), ["bin/new.dll"]);
        assert_eq!(paths(&p.update), ["bin/app.dll"]);
        assert_eq!(paths(&p.delete), ["bin/stale.dll"]);
        assert_eq!(p.unchanged, 2, "web.config and same.js");
        for protected in ["encryption.config", "Database.config"] {
            assert!(
                p.protected
                    .iter()
                    .any(|x| x.eq_ignore_ascii_case(protected)),
                "{:?}",
                p.protected
            );
        }
        assert!(!paths(&p.add)
            .iter()
            .chain(&paths(&p.update))
            .chain(&paths(&p.delete))
            .any(|x| x.to_lowercase().ends_with(".config") && x != "web.config"));
        assert!(p.volatile.iter().any(|x| x == "logs"));
    }

    #[test]
    fn a_same_size_change_is_an_update() {
        let d = tempfile::tempdir().unwrap();
        let (s, t) = (d.path().join("src"), d.path().join("dst"));
        tree(&s, &[("web.config", b"<c/>"), ("bin/a.dll", b"AAAA")]);
        tree(&t, &[("web.config", b"<c/>"), ("bin/a.dll", b"AAAB")]);
        for f in ["web.config", "bin/a.dll"] {
            let when = fs::metadata(s.join(f)).unwrap().modified().unwrap();
            let h = fs::File::options().write(true).open(t.join(f)).unwrap();
            h.set_modified(when).unwrap();
        }
        // Same size, same time: the quick check sees nothing; --checksum does.
        let p = plan(&s, &t, &ss(), &opts()).unwrap();
        assert!(p.is_noop());
        let p = plan(
            &s,
            &t,
            &ss(),
            &PlanOptions {
                checksum: true,
                ..opts()
            },
        )
        .unwrap();
        assert_eq!(p.update.len(), 1);
        assert_eq!(p.unchanged, 1);
    }

    #[test]
    fn wrong_sources_and_targets_are_refused() {
        let d = tempfile::tempdir().unwrap();
        let (s, t) = (d.path().join("src"), d.path().join("dst"));
        tree(&s, &[("web.config", b"<c/>"), ("bin/a.dll", b"A")]);
        tree(&t, &[("notes.txt", b"someone's files")]);
        let refused = |r: Result<SyncPlan>, what: &str| match r {
            Err(Error::SyncRefused(why)) => assert!(why.contains(what), "{why}"),
            other => panic!(
                "expected a refusal about {what}, got {:?}",
                other.map(|p| p.target)
            ),
        };
        refused(
            plan(&s, &t, &ss(), &opts()),
            "does not look like the application",
        );
        refused(
            plan(&t, &s, &ss(), &opts()),
            "does not look like the application",
        );
        refused(plan(&s, &s, &ss(), &opts()), "same folder");
        refused(plan(&s, &s.join("bin"), &ss(), &opts()), "same folder");
        let empty = d.path().join("new");
        fs::create_dir(&empty).unwrap();
        refused(plan(&s, &empty, &ss(), &opts()), "is empty");
        let p = plan(
            &s,
            &empty,
            &ss(),
            &PlanOptions {
                allow_new_target: true,
                max_delete: 200,
                checksum: false,
            },
        )
        .unwrap();
        assert_eq!(p.add.len(), 2);
        refused(
            plan(&s, Path::new("/"), &ss(), &opts()),
            "root of a file system",
        );
        // Too many deletions: a wrong target would lose them all.
        let t2 = d.path().join("big");
        tree(&t2, &[("web.config", b"<c/>")]);
        for i in 0..5 {
            tree(&t2, &[(&format!("old/{i}.dll"), b"x")]);
        }
        refused(
            plan(
                &s,
                &t2,
                &ss(),
                &PlanOptions {
                    allow_new_target: false,
                    max_delete: 3,
                    checksum: false,
                },
            ),
            "would delete 5 files",
        );
    }

    #[cfg(unix)]
    #[test]
    fn links_are_never_followed_and_links_leading_out_refuse() {
        let d = tempfile::tempdir().unwrap();
        let (s, t) = (d.path().join("src"), d.path().join("dst"));
        tree(&s, &[("web.config", b"<c/>"), ("bin/a.dll", b"A")]);
        tree(&t, &[("web.config", b"<c/>")]);
        std::os::unix::fs::symlink("bin/a.dll", s.join("inside")).unwrap();
        let p = plan(&s, &t, &ss(), &opts()).unwrap();
        assert_eq!(p.links, ["inside"]);
        assert!(!p.add.iter().any(|f| f.path == "inside"));
        std::os::unix::fs::symlink("/etc", t.join("out")).unwrap();
        assert!(
            matches!(plan(&s, &t, &ss(), &opts()), Err(Error::SyncRefused(why)) if why.contains("leads out"))
        );
    }
}
