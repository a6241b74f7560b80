//! Crash trials: the real binary, built with the test-only `failpoints` feature, is stopped
//! abruptly (`abort`, like `kill -9`: no destructors, nothing flushed) at each durable step
//! of the transaction engine, over single- and multi-file imports, partial replaces and
//! restores. After each, the next command (`keys recover`, the same import again, or
//! `keys cleanup`) must leave the node exactly in its old or its new state, byte for byte
//! and with the old files' permissions, with no keyferry temp file and no journal left.

#![cfg(feature = "failpoints")]

use crate::common;
use common::*;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

const OLD_KEY: &[u8] = b"OLD KEY the node had";
const NEW_KEY: &[u8] = b"NEW KEY from the primary";
const OLD_EXP: &[u8] = b"OLD keys.exp\x00\x01";
const NEW_EXP: &[u8] = b"NEW keys.exp\x00\x02\xff";
const OLD_SETTINGS: &[u8] = b"{ \"old\": true }\r\n";
const NEW_SETTINGS: &[u8] = b"{ \"HA\": { \"PrimaryIp\": \"10.9.1.1\" } }\r\n";

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Import,
    Restore,
}

struct Scenario {
    name: &'static str,
    profile: &'static str,
    /// The primary's files (the bundle's content).
    source: &'static [(&'static str, &'static [u8])],
    /// What the node has before.
    before: &'static [(&'static str, &'static [u8])],
    kind: Kind,
}

const SCENARIOS: &[Scenario] = &[
    Scenario {
        name: "secret-server install",
        profile: "secret-server",
        source: &[("encryption.config", NEW_KEY)],
        before: &[],
        kind: Kind::Import,
    },
    Scenario {
        name: "secret-server replace",
        profile: "secret-server",
        source: &[("encryption.config", NEW_KEY)],
        before: &[("encryption.config", OLD_KEY)],
        kind: Kind::Import,
    },
    Scenario {
        name: "privilege-secure install of two files",
        profile: "privilege-secure",
        source: &[("keys.exp", NEW_EXP), ("appsettings.json", NEW_SETTINGS)],
        before: &[],
        kind: Kind::Import,
    },
    Scenario {
        name: "privilege-secure replace of two files",
        profile: "privilege-secure",
        source: &[("keys.exp", NEW_EXP), ("appsettings.json", NEW_SETTINGS)],
        before: &[("keys.exp", OLD_EXP), ("appsettings.json", OLD_SETTINGS)],
        kind: Kind::Import,
    },
    Scenario {
        name: "privilege-secure one replaced, one new",
        profile: "privilege-secure",
        source: &[("keys.exp", NEW_EXP), ("appsettings.json", NEW_SETTINGS)],
        before: &[("keys.exp", OLD_EXP)],
        kind: Kind::Import,
    },
    Scenario {
        name: "secret-server restore",
        profile: "secret-server",
        source: &[("encryption.config", NEW_KEY)],
        before: &[("encryption.config", OLD_KEY)],
        kind: Kind::Restore,
    },
    Scenario {
        name: "privilege-secure restore of two files",
        profile: "privilege-secure",
        source: &[("keys.exp", NEW_EXP), ("appsettings.json", NEW_SETTINGS)],
        before: &[("keys.exp", OLD_EXP), ("appsettings.json", OLD_SETTINGS)],
        kind: Kind::Restore,
    },
];

/// Every durable step the change passes, with its occurrence: the failpoints to stop at.
fn points(changed: usize, replaced: usize) -> Vec<String> {
    let mut v = vec!["txn:after-journal".to_string()];
    v.extend((1..=replaced).map(|i| format!("txn:after-backup#{i}")));
    v.extend((1..=changed).map(|i| format!("txn:after-temp#{i}")));
    v.extend((1..=changed).map(|i| format!("txn:after-rename#{i}")));
    v.push("txn:before-commit".into());
    v
}

struct Bed {
    dir: tempfile::TempDir,
    profile: &'static str,
}

impl Bed {
    fn new(s: &Scenario) -> Bed {
        let dir = tempfile::tempdir().unwrap();
        for d in ["src", "dst"] {
            std::fs::create_dir_all(dir.path().join(d)).unwrap();
        }
        for (n, b) in s.source {
            std::fs::write(dir.path().join("src").join(n), b).unwrap();
        }
        // A product file beside the keys, so new key files have something to copy.
        let local = dir.path().join("dst/database.config");
        std::fs::write(&local, b"db\n").unwrap();
        set_mode(&local, 0o640);
        for (n, b) in s.before {
            let p = dir.path().join("dst").join(n);
            std::fs::write(&p, b).unwrap();
            set_mode(&p, 0o640);
        }
        let pass = dir.path().join("pass.txt");
        std::fs::write(&pass, PASSPHRASE).unwrap();
        private(&pass);
        Bed {
            dir,
            profile: s.profile,
        }
    }

    fn p(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn run<A: AsRef<std::ffi::OsStr>>(
        &self,
        node: &str,
        args: &[A],
        failpoint: Option<&str>,
    ) -> Run {
        let root = if node == "src" { "src" } else { "dst" };
        let role = if node == "src" {
            "primary"
        } else {
            "secondary"
        };
        let mut a: Vec<String> = args
            .iter()
            .map(|s| s.as_ref().to_string_lossy().into_owned())
            .collect();
        for (k, v) in [
            ("--profile", self.profile.to_string()),
            ("--root", self.p(root).display().to_string()),
            ("--role", role.to_string()),
            ("--node", node.to_string()),
            (
                "--state-dir",
                self.p(&format!("state-{node}")).display().to_string(),
            ),
        ] {
            a.push(k.into());
            a.push(v);
        }
        if args.first().is_some_and(|w| w.as_ref() == "keys")
            && args
                .get(1)
                .is_some_and(|w| w.as_ref() == "import" || w.as_ref() == "export")
        {
            a.push("--passphrase-file".into());
            a.push(self.p("pass.txt").display().to_string());
        }
        let env: Vec<(&str, &str)> = failpoint
            .map(|f| vec![("KEYFERRY_FAILPOINT", f)])
            .unwrap_or_default();
        keyferry_env(
            &a.iter().map(String::as_str).collect::<Vec<_>>(),
            None,
            &env,
        )
    }

    fn import_args(&self) -> Vec<String> {
        vec![
            "keys".into(),
            "import".into(),
            self.p("b.kfb").display().to_string(),
            "--keep-bundle".into(),
            "--replace".into(),
        ]
    }

    /// The node's folder: every file with its bytes and mode.
    fn node_state(&self) -> BTreeMap<String, (Vec<u8>, Option<u32>)> {
        std::fs::read_dir(self.p("dst"))
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                let n = e.file_name().to_string_lossy().into_owned();
                (n, (std::fs::read(e.path()).unwrap(), mode(&e.path())))
            })
            .collect()
    }

    fn leftovers(&self) -> Vec<PathBuf> {
        let mut out = Vec::new();
        let mut stack = vec![self.dir.path().to_path_buf()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).unwrap() {
                let e = e.unwrap();
                let name = e.file_name().to_string_lossy().into_owned();
                if e.file_type().unwrap().is_dir() {
                    stack.push(e.path());
                } else if (name.starts_with(".keyferry-") && name.ends_with(".tmp"))
                    || name == "journal.json"
                {
                    out.push(e.path());
                }
            }
        }
        out
    }
}

fn set_mode(p: &Path, m: u32) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap();
    }
    let _ = (p, m);
}

fn args(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// One trial: crash at `point`, then run `next`, then check the node.
fn trial(s: &Scenario, point: &str, next: &str) {
    let bed = Bed::new(s);
    let bundle = bed.p("b.kfb");
    bed.run("src", &argv!["keys", "export", "-o", &bundle], None)
        .assert_code(0);
    let import = bed.import_args();
    let (old, new, crash_args) = match s.kind {
        Kind::Import => {
            let old = bed.node_state();
            // What a clean import gives, on a twin bed, is the "new" state.
            let twin = Bed::new(s);
            std::fs::copy(&bundle, twin.p("b.kfb")).unwrap();
            twin.run("dst", &args(&twin.import_args()), None)
                .assert_code(0);
            (old, twin.node_state(), import.clone())
        }
        Kind::Restore => {
            // Replace first (cleanly), then restore the backup that made: the restore is
            // the change under trial; "old" is the replaced state, "new" the restored one.
            let before_import = bed.node_state();
            bed.run("dst", &args(&import), None).assert_code(0);
            let list = bed.run("dst", &["keys", "restore", "--list", "--json"], None);
            list.assert_code(0);
            let id = list.json()["backups"][0]["id"].as_str().unwrap().to_owned();
            let replaced = bed.node_state();
            // The replaced keys.exp is not kept in the backup (the vendor says to delete the
            // export file everywhere): a restore leaves the one there as it is.
            let mut restored = before_import;
            if let Some(exp) = replaced.get("keys.exp") {
                restored.insert("keys.exp".into(), exp.clone());
            }
            (
                replaced,
                restored,
                vec!["keys".into(), "restore".into(), "--backup".into(), id],
            )
        }
    };
    let crashed = bed.run("dst", &args(&crash_args), Some(point));
    assert!(
        !matches!(crashed.code(), 0..=2),
        "{}: the run meant to crash at {point} ended normally ({}): {}",
        s.name,
        crashed.code(),
        crashed.stderr()
    );
    let next_args: Vec<String> = match next {
        "recover" => vec!["keys".into(), "recover".into()],
        "cleanup" => vec!["keys".into(), "cleanup".into()],
        _ => crash_args.clone(),
    };
    let r = bed.run("dst", &args(&next_args), None);
    r.assert_code(0);
    let after = bed.node_state();
    let mut expect = if next == "again" {
        new.clone()
    } else {
        old.clone()
    };
    if next == "cleanup" {
        // Cleanup's own job: the vendor's temporary export file goes.
        expect.remove("keys.exp");
    }
    let expect = &expect;
    assert!(
        &after == expect,
        "{} crashed at {point}, then {next}: the node is in neither its old nor its new state\n\
         after: {after:?}\nold: {old:?}\nnew: {new:?}\n{}",
        s.name,
        r.stderr()
    );
    assert_eq!(
        bed.leftovers(),
        Vec::<PathBuf>::new(),
        "{} at {point}, then {next}",
        s.name
    );
    if next != "again" {
        assert!(
            r.stdout().contains("rolled back") || r.stderr().contains("rolled back"),
            "{} at {point}: the next command did not say it rolled back:\n{}{}",
            s.name,
            r.stdout(),
            r.stderr()
        );
    }
    let ledger = bed.p("state-dst/ledger.json");
    if ledger.exists() {
        let v: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&ledger).unwrap()).expect("ledger is JSON");
        assert_eq!(v["version"], 1);
    }
}

#[test]
fn every_durable_step_of_every_change_survives_a_crash() {
    let mut count = 0;
    for s in SCENARIOS {
        // An import writes every file of the bundle and backs up those the node had; a
        // restore puts back (and so first backs up) every file the import replaced.
        let (changed, replaced) = match s.kind {
            Kind::Import => (s.source.len(), s.before.len()),
            Kind::Restore => {
                // What the backup holds: not the vendor's temporary keys.exp.
                let kept = s.before.iter().filter(|(n, _)| *n != "keys.exp").count();
                (kept, kept)
            }
        };
        for point in points(changed, replaced) {
            for next in ["recover", "again", "cleanup"] {
                trial(s, &point, next);
                count += 1;
            }
        }
    }
    #[allow(clippy::print_stderr)] // the count is quoted in the issue note
    {
        eprintln!("crash trials: {count} passed");
    }
    assert!(count >= 100, "only {count} trials");
}

/// `dpapi protect` at each durable step (Windows: DPAPI exists only there; under Wine its
/// blobs are Wine's, which is enough for the engine). The new state cannot be compared byte
/// for byte (each blob is fresh), so "new" means: a DPAPI blob that decrypts to the old
/// bytes, with the old file's ACL.
#[cfg(windows)]
#[test]
fn dpapi_protect_survives_a_crash_at_every_durable_step() {
    let mut count = 0;
    for point in points(1, 1) {
        for next in ["recover", "again"] {
            let bed = Bed::new(&SCENARIOS[1]);
            let key = bed.p("dst/encryption.config");
            let state = bed.p("state-dst");
            let acl_before = keyferry::os::dacl_sddl(&key).unwrap();
            let protect = argv!["dpapi", "protect", &key, "--state-dir", &state];
            let crashed = keyferry_env(&protect, None, &[("KEYFERRY_FAILPOINT", point.as_str())]);
            assert!(
                !matches!(crashed.code(), 0..=2),
                "{point}: {}",
                crashed.stderr()
            );
            let r = match next {
                "recover" => bed.run("dst", &["keys", "recover"], None),
                _ => keyferry(&protect, None),
            };
            r.assert_code(0);
            let now = std::fs::read(&key).unwrap();
            if next == "recover" {
                assert_eq!(now, OLD_KEY, "{point} then recover");
            } else {
                let plain = keyferry::dpapi::unprotect(&now).expect("a DPAPI blob");
                assert_eq!(plain.expose_secret(), OLD_KEY, "{point} then again");
            }
            assert_eq!(
                keyferry::os::dacl_sddl(&key).unwrap(),
                acl_before,
                "{point}"
            );
            assert_eq!(
                bed.leftovers(),
                Vec::<PathBuf>::new(),
                "{point} then {next}"
            );
            count += 1;
        }
    }
    assert_eq!(count, 10);
}
