//! Crash trials for `keyferry sync` and `sync rollback`: the real binary, built with the
//! test-only `failpoints` feature, is stopped abruptly (`abort`, like `kill -9`) at every
//! durable step of a swapped sync, of an in-place sync (each file moved in is a step), and
//! of both kinds of rollback. After each crash, the next command (the same sync again, or
//! `sync rollback`) must leave the target exactly old or exactly new, byte for byte, its
//! protected files the very same files with the same bytes, and nothing of keyferry's
//! behind: no new tree, no marker, no journal.

#![cfg(feature = "failpoints")]

use crate::common;
use common::*;
use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

const KEY: &[u8] = b"TARGET KEY, never the source's";
const DB: &[u8] = b"target database connection";

struct Bed {
    dir: tempfile::TempDir,
}

fn write(root: &Path, rel: &str, bytes: &[u8]) {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, bytes).unwrap();
}

impl Bed {
    fn new() -> Bed {
        let b = Bed {
            dir: tempfile::tempdir().unwrap(),
        };
        let (s, t) = (b.src(), b.dst());
        write(&s, "web.config", b"<v11/>");
        write(&t, "web.config", b"<v10/>");
        for i in 0..6 {
            write(
                &s,
                &format!("bin/lib{i}.dll"),
                format!("v11 lib {i}").as_bytes(),
            );
            write(
                &t,
                &format!("bin/lib{i}.dll"),
                format!("v10 lib {i}!").as_bytes(),
            );
        }
        for i in 0..4 {
            write(&s, &format!("Areas/New{i}/view.cshtml"), b"new view");
            write(&t, &format!("Areas/Old{i}/view.cshtml"), b"old view");
        }
        for i in 0..5 {
            write(&s, &format!("Scripts/same{i}.js"), b"same");
            write(&t, &format!("Scripts/same{i}.js"), b"same");
        }
        write(&s, "encryption.config", b"SOURCE KEY");
        write(&t, "encryption.config", KEY);
        write(&t, "database.config", DB);
        write(&t, "logs/app.log", b"log line");
        // The old version's files are an hour older than the source's: written within one
        // clock tick, `<v10/>` and `<v11/>` could have one size and one time, which the quick
        // check takes as the same file (and the number of steps would change).
        backdate(&t);
        b
    }
    fn src(&self) -> PathBuf {
        self.dir.path().join("src")
    }
    fn dst(&self) -> PathBuf {
        self.dir.path().join("www").join("SecretServer")
    }
    fn run(&self, cmd: &[&str], extra: &[&str], failpoint: Option<&str>) -> Run {
        let (s, d, st) = (self.src(), self.dst(), self.dir.path().join("state"));
        let mut a: Vec<OsString> = cmd.iter().map(OsString::from).collect();
        a.extend(argv![
            "--profile",
            "secret-server",
            "--from",
            s,
            "--root",
            d,
            "--state-dir",
            st
        ]);
        a.extend(extra.iter().map(OsString::from));
        let env: Vec<(&str, &str)> = failpoint
            .map(|f| vec![("KEYFERRY_FAILPOINT", f)])
            .unwrap_or_default();
        keyferry_env(&a, None, &env)
    }
    /// The target folder, byte for byte, without keyferry's previous-tree record.
    fn state(&self) -> BTreeMap<PathBuf, Vec<u8>> {
        let root = self.dst();
        snapshot(&root)
            .into_iter()
            .map(|(k, v)| (k.strip_prefix(&root).unwrap().to_owned(), v))
            .collect()
    }
    fn protected_ok(&self, ids: &[(String, u64)]) {
        assert_eq!(
            std::fs::read(self.dst().join("encryption.config")).unwrap(),
            KEY
        );
        assert_eq!(
            std::fs::read(self.dst().join("database.config")).unwrap(),
            DB
        );
        assert_eq!(
            &file_ids(&self.dst()),
            ids,
            "protected files are the very same files"
        );
    }
    fn leftovers(&self) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(self.dst().parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            // The target and its kept trees (generations: `.keyferry-prev`, `.keyferry-prev.2`).
            .filter(|n| {
                n != "SecretServer"
                    && n != "SecretServer.keyferry-prev"
                    && n.strip_prefix("SecretServer.keyferry-prev.")
                        .is_none_or(|k| k.parse::<u32>().is_err())
            })
            .collect();
        if self.dst().join(".keyferry-sync-id").exists() {
            v.push("marker in the target".into());
        }
        // Journals left behind (the record of the last finished sync is no journal).
        if let Ok(rd) = std::fs::read_dir(self.dir.path().join("state/sync")) {
            v.extend(
                rd.map(|e| e.unwrap().file_name())
                    .filter(|n| !n.to_string_lossy().ends_with(".last.json"))
                    .map(|n| format!("journal {n:?}")),
            );
        }
        v
    }
}

fn file_ids(root: &Path) -> Vec<(String, u64)> {
    ["encryption.config", "database.config"]
        .iter()
        .map(|f| {
            #[cfg(unix)]
            let id = std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(root.join(f)).unwrap());
            #[cfg(not(unix))]
            let id = std::fs::metadata(root.join(f)).unwrap().len();
            (f.to_string(), id)
        })
        .collect()
}

/// How many in-place steps a sync of a fresh bed makes (each is a failpoint).
fn steps() -> usize {
    // 4 new folders, 6 + 4 + 1 files put, 4 files deleted, 4 folders removed.
    4 + 11 + 4 + 4
}

fn sync_points(in_place: bool) -> Vec<String> {
    let mut p: Vec<String> = ["sync:after-journal", "sync:built", "sync:installing"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    if in_place {
        p.extend((1..=steps()).map(|i| format!("sync:step#{i}")));
    } else {
        if !cfg!(target_os = "linux") {
            p.push("sync:moved-out".into());
        }
        p.push("sync:swapped".into());
    }
    p.push("sync:committed".into());
    if in_place {
        // The new tree's leftover folders removed one by one after the install.
        p.extend((1..=2).map(|i| format!("sync:cleanup#{i}")));
    }
    p
}

#[test]
fn a_sync_killed_at_any_durable_step_ends_old_or_new() {
    let mut trials = 0;
    for in_place in [false, true] {
        let mode: &[&str] = if in_place { &["--in-place"] } else { &[] };
        // The "new" state: a clean sync on a twin bed.
        let twin = Bed::new();
        twin.run(&["sync"], mode, None).assert_code(0);
        let new = twin.state();
        for point in sync_points(in_place) {
            for then_rollback in [false, true] {
                let bed = Bed::new();
                let old = bed.state();
                let ids = file_ids(&bed.dst());
                let crashed = bed.run(&["sync"], mode, Some(&point));
                assert_ne!(
                    crashed.code(),
                    0,
                    "{point}: the failpoint did not stop the sync"
                );
                // Between the two renames of a non-Linux swap the folder is briefly absent
                // (the journal says so; recovery completes it); otherwise the keys are intact.
                if bed.dst().exists() {
                    bed.protected_ok(&ids);
                } else {
                    assert_eq!(point, "sync:moved-out");
                }
                let want = if then_rollback {
                    let r = bed.run(&["sync", "rollback"], &[], None);
                    // Before the install there is nothing to roll back: the target is old.
                    assert!(
                        r.code() == 0 || r.stderr().contains("no previous tree"),
                        "{point}: {}",
                        r.stderr()
                    );
                    &old
                } else {
                    bed.run(&["sync"], mode, None).assert_code(0);
                    &new
                };
                let got = bed.state();
                if got != *want {
                    let diff: Vec<_> = got
                        .iter()
                        .filter(|(k, v)| want.get(*k) != Some(v))
                        .map(|(k, _)| k.clone())
                        .chain(want.keys().filter(|k| !got.contains_key(*k)).cloned())
                        .collect();
                    eprintln!("{point}: differs at {diff:?}; stderr {}", crashed.stderr());
                }
                assert!(
                    got == *want,
                    "{point} (in_place {in_place}, rollback {then_rollback}): the target is neither old nor new as expected"
                );
                bed.protected_ok(&ids);
                assert_eq!(bed.leftovers(), Vec::<String>::new(), "{point}");
                trials += 1;
            }
        }
    }
    assert!(trials >= 60, "{trials} trials");
}

#[test]
fn a_rollback_killed_at_any_durable_step_ends_old_or_new() {
    let mut trials = 0;
    for in_place in [false, true] {
        let mode: &[&str] = if in_place { &["--in-place"] } else { &[] };
        let points: Vec<String> = if in_place {
            (1..=steps())
                .map(|i| format!("sync:undo-step#{i}"))
                .collect()
        } else {
            vec!["sync:rollback-staged".into(), "sync:swapped".into()]
        };
        // The "new" state: a clean sync on a twin bed.
        let twin = Bed::new();
        twin.run(&["sync"], mode, None).assert_code(0);
        let new = twin.state();
        for point in points {
            for then_sync in [false, true] {
                let bed = Bed::new();
                let old = bed.state();
                let ids = file_ids(&bed.dst());
                bed.run(&["sync"], mode, None).assert_code(0);
                let crashed = bed.run(&["sync", "rollback"], &[], Some(&point));
                assert_ne!(crashed.code(), 0, "{point}");
                bed.protected_ok(&ids);
                if then_sync {
                    // A sync finishes the interrupted rollback, then syncs again: new.
                    bed.run(&["sync"], mode, None).assert_code(0);
                    assert!(bed.state() == new, "{point} (in_place {in_place}): not new");
                } else {
                    // The next rollback finishes (or redoes) it: the target is old again.
                    bed.run(&["sync", "rollback"], &[], None).assert_code(0);
                    assert!(
                        bed.state() == old,
                        "{point} (in_place {in_place}): not old after the rollback"
                    );
                }
                bed.protected_ok(&ids);
                assert_eq!(bed.leftovers(), Vec::<String>::new(), "{point}");
                trials += 1;
            }
        }
    }
    assert!(trials >= 50, "{trials} trials");
}

#[test]
fn a_dry_run_after_a_crash_refuses_and_changes_nothing() {
    let bed = Bed::new();
    let crashed = bed.run(&["sync"], &["--in-place"], Some("sync:step#3"));
    assert_ne!(crashed.code(), 0);
    let snap = snapshot(bed.dir.path());
    let r = bed.run(&["sync", "--dry-run"], &[], None);
    r.assert_code(2);
    assert!(r.stderr().contains("was interrupted"), "{}", r.stderr());
    assert_eq!(snap, snapshot(bed.dir.path()), "the dry run changed files");
    // The next sync finishes it.
    bed.run(&["sync"], &["--in-place"], None).assert_code(0);
    assert_eq!(bed.leftovers(), Vec::<String>::new());
}

/// Every command that changes a node finishes what an earlier one left cut off there first,
/// whatever its kind: a key cleanup on a node whose sync was killed finishes that sync as
/// `keyferry recover` does, says so, and only then does its own work. Its dry run changes
/// nothing.
#[test]
fn a_key_command_after_a_killed_sync_finishes_the_sync_first() {
    let keys = |bed: &Bed, cmd: &[&str]| {
        let (d, st) = (bed.dst(), bed.dir.path().join("state"));
        let mut a: Vec<OsString> = cmd.iter().map(OsString::from).collect();
        a.extend(argv![
            "--profile",
            "secret-server",
            "--root",
            d,
            "--state-dir",
            st
        ]);
        keyferry_env(&a, None, &[])
    };
    let (bed, twin) = (Bed::new(), Bed::new());
    for b in [&bed, &twin] {
        let crashed = b.run(&["sync"], &["--in-place"], Some("sync:step#3"));
        assert_ne!(crashed.code(), 0);
        assert_ne!(b.leftovers(), Vec::<String>::new(), "no journal was left");
    }
    // The dry run reads only.
    let snap = snapshot(bed.dir.path());
    keys(&bed, &["keys", "cleanup", "--dry-run"]).assert_code(0);
    assert_eq!(snap, snapshot(bed.dir.path()), "the dry run changed files");
    // The cleanup finishes the sync first, as recover does on the twin.
    let r = keys(&bed, &["keys", "cleanup"]);
    r.assert_code(0);
    assert!(
        r.stderr().contains("warning: first: ") && r.stderr().contains("SecretServer"),
        "{}",
        r.stderr()
    );
    let rec = keys(&twin, &["recover"]);
    rec.assert_code(0);
    assert_eq!(bed.state(), twin.state());
    assert_eq!(bed.leftovers(), Vec::<String>::new());
    // Nothing is left to recover: the next command says nothing first.
    let again = keys(&bed, &["keys", "cleanup"]);
    again.assert_code(0);
    assert!(!again.stderr().contains("first:"), "{}", again.stderr());
}
