//! `keyferry sync`, `sync verify` and `sync rollback` through the real binary, on real folders
//! with real permissions: protected files keep their bytes, identity, owner and mode; stale
//! files go; links are never followed; every refusal leaves both trees byte-identical.

use crate::common;
use common::*;
use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

const SOURCE_KEY: &[u8] = b"SOURCE-ENCRYPTION-KEY-never-copied";
const TARGET_KEY: &[u8] = b"TARGET-ENCRYPTION-KEY-stays";

fn write(root: &Path, files: &[(&str, &[u8])]) {
    for (rel, bytes) in files {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, bytes).unwrap();
    }
}

/// A source (the upgraded primary) and a target (a node still on the old version).
struct Pair {
    dir: tempfile::TempDir,
}

impl Pair {
    fn new() -> Pair {
        let dir = tempfile::tempdir().unwrap();
        let p = Pair { dir };
        write(
            &p.src(),
            &[
                ("web.config", b"<configuration v='11'/>"),
                ("bin/Thycotic.dll", b"version 11.0 binary"),
                ("bin/New.dll", b"added in 11.0"),
                ("Scripts/app.js", b"console.log(11)"),
                ("encryption.config", SOURCE_KEY),
                ("database.config", b"source db connection"),
                ("logs/source.log", b"source log"),
            ],
        );
        write(
            &p.dst(),
            &[
                ("web.config", b"<configuration v='10'/>"),
                ("bin/Thycotic.dll", b"version 10.9 binary"),
                ("bin/Stale.dll", b"only in 10.9"),
                ("Scripts/app.js", b"console.log(10)"),
                ("encryption.config", TARGET_KEY),
                ("database.config", b"target db connection"),
                ("logs/target.log", b"target log"),
                ("App_Data/cache.bin", b"runtime data"),
            ],
        );
        backdate(&p.dst());
        p
    }
    fn src(&self) -> PathBuf {
        self.dir.path().join("src")
    }
    fn dst(&self) -> PathBuf {
        self.dir.path().join("wwwroot").join("SecretServer")
    }
    fn state(&self) -> PathBuf {
        self.dir.path().join("state")
    }
    /// `--profile`, the two folders and the state folder, then `extra`.
    fn args(&self, extra: &[&str]) -> Vec<OsString> {
        let mut a = Vec::from(argv![
            "--profile",
            "secret-server",
            "--from",
            self.src(),
            "--root",
            self.dst(),
            "--state-dir",
            self.state()
        ]);
        a.extend(extra.iter().map(OsString::from));
        a
    }
    fn run(&self, before: &[&str], extra: &[&str]) -> Run {
        let mut a: Vec<OsString> = before.iter().map(OsString::from).collect();
        a.extend(self.args(extra));
        keyferry(&a, None)
    }
    /// `keyferry sync --json` for this pair, running the `sh` script `body` (written as
    /// `name` in the test's folder) each time the sync reaches failpoint `point`.
    #[cfg(all(unix, feature = "failpoints"))]
    fn sync_with_hook(&self, point: &str, name: &str, body: &str) -> Run {
        let script = shell_script(&self.dir.path().join(name), body);
        let mut args = Vec::from(argv!["sync"]);
        args.extend(self.args(&["--json"]));
        let hook = format!("{point}={}", script.display());
        keyferry_env(&args, None, &[("KEYFERRY_FAILPOINT_RUN", &hook)])
    }
    fn everything(&self) -> BTreeMap<PathBuf, Vec<u8>> {
        snapshot(self.dir.path())
    }
}

fn read(p: &Path) -> Vec<u8> {
    std::fs::read(p).unwrap()
}

/// `chattr FLAG PATH` (`+i`: immutable); false where it does not work (not root, or a file
/// system without flags).
#[cfg(target_os = "linux")]
fn chattr(path: &Path, flag: &str) -> bool {
    std::process::Command::new("chattr")
        .arg(flag)
        .arg(path)
        .status()
        .is_ok_and(|s| s.success())
}

#[test]
fn sync_copies_the_application_and_leaves_protected_and_volatile_files_alone() {
    let p = Pair::new();
    let (d, s) = (p.dst(), p.src());
    #[cfg(unix)]
    let (key_meta, db_meta) = {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        // The product's service account owns its files; keyferry must keep it that way.
        std::os::unix::fs::chown(d.join("encryption.config"), Some(65534), Some(65534)).unwrap();
        std::fs::set_permissions(
            d.join("encryption.config"),
            std::fs::Permissions::from_mode(0o640),
        )
        .unwrap();
        std::os::unix::fs::chown(d.join("bin/Thycotic.dll"), Some(65534), Some(65534)).unwrap();
        let m = |f: &str| {
            let m = std::fs::metadata(d.join(f)).unwrap();
            (m.ino(), m.uid(), m.gid(), m.mode())
        };
        (m("encryption.config"), m("database.config"))
    };
    let r = p.run(&["sync"], &[]);
    r.assert_code(0);
    assert!(r.stdout().contains("synced"), "{}", r.stdout());
    // Protected: byte-identical, never the source's.
    assert_eq!(read(&d.join("encryption.config")), TARGET_KEY);
    assert_eq!(read(&d.join("database.config")), b"target db connection");
    // The application is the source's; the stale DLL is gone; volatile files stay.
    assert_eq!(
        read(&d.join("bin/Thycotic.dll")),
        read(&s.join("bin/Thycotic.dll"))
    );
    assert_eq!(read(&d.join("bin/New.dll")), b"added in 11.0");
    assert_eq!(read(&d.join("web.config")), read(&s.join("web.config")));
    assert!(!d.join("bin/Stale.dll").exists());
    assert_eq!(read(&d.join("logs/target.log")), b"target log");
    assert!(!d.join("logs/source.log").exists(), "logs are not copied");
    assert_eq!(read(&d.join("App_Data/cache.bin")), b"runtime data");
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        let m = |f: &str| {
            let m = std::fs::metadata(d.join(f)).unwrap();
            (m.ino(), m.uid(), m.gid(), m.mode())
        };
        assert_eq!(
            m("encryption.config"),
            key_meta,
            "the very same file, owner and mode"
        );
        assert_eq!(m("database.config"), db_meta);
        let dll = std::fs::metadata(d.join("bin/Thycotic.dll")).unwrap();
        assert_eq!(
            (dll.uid(), dll.gid()),
            (65534, 65534),
            "an updated file keeps its owner"
        );
    }
    // The per-node web.config is replaced: the plan said so.
    assert!(r.stderr().contains("web.config differs"), "{}", r.stderr());
    // No key bytes in any output.
    for out in [r.stdout(), r.stderr()] {
        assert!(!out.contains("ENCRYPTION-KEY"), "{out}");
    }
    // Nothing of keyferry's left in the live folder or beside it but the previous tree.
    let beside: Vec<String> = std::fs::read_dir(d.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(beside.len(), 2, "{beside:?}");
    assert!(beside.contains(&"SecretServer.keyferry-prev".to_string()));
    assert!(!d.join(".keyferry-sync-id").exists());
    let prev = d.parent().unwrap().join("SecretServer.keyferry-prev");
    assert!(
        !prev.join("encryption.config").exists(),
        "no second copy of the key is left lying around"
    );
    // Verify: identical; a same-size, same-time change is caught.
    p.run(&["sync", "verify"], &[]).assert_code(0);
    let when = std::fs::metadata(d.join("bin/New.dll"))
        .unwrap()
        .modified()
        .unwrap();
    std::fs::write(d.join("bin/New.dll"), b"ADDED IN 11.0").unwrap();
    std::fs::File::options()
        .write(true)
        .open(d.join("bin/New.dll"))
        .unwrap()
        .set_modified(when)
        .unwrap();
    let v = p.run(&["sync", "verify"], &[]);
    v.assert_code(1);
    assert!(
        v.stdout().contains("bin/New.dll: content differs"),
        "{}",
        v.stdout()
    );
    // The quick plan does not see it; --checksum does, and fixes it.
    p.run(&["sync"], &[]).assert_code(0);
    p.run(&["sync", "verify"], &[]).assert_code(1);
    p.run(&["sync"], &["--checksum"]).assert_code(0);
    p.run(&["sync", "verify"], &[]).assert_code(0);
    assert_eq!(read(&d.join("encryption.config")), TARGET_KEY);
}

#[test]
fn rollback_puts_the_old_folder_back_with_the_targets_own_keys() {
    for in_place in [false, true] {
        let p = Pair::new();
        let d = p.dst();
        let old_dll = read(&d.join("bin/Thycotic.dll"));
        let extra: &[&str] = if in_place { &["--in-place"] } else { &[] };
        let r = p.run(&["sync"], extra);
        r.assert_code(0);
        if in_place {
            assert!(r.stdout().contains("in place"), "{}", r.stdout());
        }
        std::fs::write(d.join("logs/after.log"), b"written after the sync").unwrap();
        let r = p.run(&["sync", "rollback"], &[]);
        r.assert_code(0);
        assert_eq!(
            read(&d.join("bin/Thycotic.dll")),
            old_dll,
            "in_place={in_place}"
        );
        assert_eq!(read(&d.join("bin/Stale.dll")), b"only in 10.9");
        assert!(!d.join("bin/New.dll").exists());
        assert_eq!(read(&d.join("encryption.config")), TARGET_KEY);
        assert_eq!(read(&d.join("database.config")), b"target db connection");
        assert_eq!(read(&d.join("logs/after.log")), b"written after the sync");
        assert!(!d.join(".keyferry-prev.json").exists());
        // A second rollback is already done: it does not put the sync back.
        let r = p.run(&["sync", "rollback"], &[]);
        r.assert_code(0);
        assert_eq!(
            read(&d.join("bin/Thycotic.dll")),
            old_dll,
            "in_place={in_place}"
        );
        assert!(!d.join("bin/New.dll").exists(), "in_place={in_place}");
        assert!(r.stdout().contains("already rolled back"), "{}", r.stdout());
    }
}

/// Every refusal: exit 2, the message says what to do, nothing changed anywhere.
#[test]
fn wrong_sources_and_targets_are_refused_and_nothing_changes() {
    let p = Pair::new();
    let refused = |before: &[&str], args: &[&str], what: &str| {
        let snap = p.everything();
        let r = keyferry(&[before, args].concat(), None);
        r.assert_code(2);
        assert!(r.stderr().contains(what), "{what}: {}", r.stderr());
        assert_eq!(snap, p.everything(), "refusal {what} changed files");
    };
    let (s, d, st) = (
        p.src().to_str().unwrap().to_owned(),
        p.dst().to_str().unwrap().to_owned(),
        p.state().to_str().unwrap().to_owned(),
    );
    let base = |from: &str, root: &str| -> Vec<String> {
        [
            "--profile",
            "secret-server",
            "--from",
            from,
            "--root",
            root,
            "--state-dir",
            &st,
        ]
        .iter()
        .map(|x| x.to_string())
        .collect()
    };
    let other = p.dir.path().join("documents");
    write(&other, &[("notes.txt", b"someone's files")]);
    let empty = p.dir.path().join("new-node");
    std::fs::create_dir(&empty).unwrap();
    let o = other.to_str().unwrap();
    let e = empty.to_str().unwrap();
    let cases: Vec<(Vec<String>, &str)> = vec![
        (base(&s, &s), "same folder"),
        (base(&s, &format!("{s}/bin")), "same folder"),
        (base(o, &d), "does not look like the application"),
        (base(&s, o), "does not look like the application"),
        (base(&s, e), "is empty"),
        (
            [base(&s, &d), vec!["--max-delete".into(), "0".into()]].concat(),
            "would delete 1 files",
        ),
    ];
    for (args, what) in &cases {
        let a: Vec<&str> = args.iter().map(|x| x.as_str()).collect();
        refused(&["sync"], &a, what);
        refused(&["sync", "--dry-run"], &a, what);
    }
    // A new node, said so: the whole application, no keys.
    let a = base(&s, e);
    let a: Vec<&str> = a.iter().map(|x| x.as_str()).collect();
    let r = keyferry(&[&["sync", "--new-target"][..], &a].concat(), None);
    r.assert_code(0);
    assert!(empty.join("bin/Thycotic.dll").exists());
    assert!(!empty.join("encryption.config").exists());
    assert!(r.stderr().contains("keys import"), "{}", r.stderr());
}

#[test]
fn dry_run_lists_the_plan_and_changes_nothing() {
    let p = Pair::new();
    let snap = p.everything();
    let r = p.run(&["sync", "--dry-run"], &[]);
    r.assert_code(0);
    assert!(
        r.stdout().contains("would delete bin/Stale.dll"),
        "{}",
        r.stdout()
    );
    assert!(
        r.stdout().contains("would add bin/New.dll"),
        "{}",
        r.stdout()
    );
    let j = p.run(&["sync", "--dry-run", "--json"], &[]);
    j.assert_code(0);
    let doc = j.json();
    assert_eq!(doc["kind"], "sync-plan");
    let plan = &doc["targets"][0]["plan"];
    assert_eq!(plan["delete"][0]["path"], "bin/Stale.dll");
    assert_eq!(plan["add"][0]["path"], "bin/New.dll");
    let protected: Vec<String> = plan["protected"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_lowercase())
        .collect();
    assert_eq!(protected, ["database.config", "encryption.config"]);
    assert_eq!(snap, p.everything());
}

#[cfg(unix)]
#[test]
fn links_leading_out_of_either_tree_refuse_and_are_never_written_through() {
    let p = Pair::new();
    let outside = p.dir.path().join("outside");
    write(&outside, &[("secret.txt", b"outside the tree")]);
    std::os::unix::fs::symlink(&outside, p.src().join("bin/escape")).unwrap();
    let snap = p.everything();
    let r = p.run(&["sync"], &[]);
    r.assert_code(2);
    assert!(r.stderr().contains("leads out"), "{}", r.stderr());
    assert_eq!(snap, p.everything());
    std::fs::remove_file(p.src().join("bin/escape")).unwrap();
    // In the target: a link where the source has a file is not written through.
    std::fs::remove_file(p.dst().join("Scripts/app.js")).unwrap();
    std::os::unix::fs::symlink(outside.join("secret.txt"), p.dst().join("Scripts/app.js")).unwrap();
    let snap = p.everything();
    let r = p.run(&["sync"], &[]);
    r.assert_code(2);
    assert!(r.stderr().contains("leads out"), "{}", r.stderr());
    assert_eq!(snap, p.everything());
    assert_eq!(read(&outside.join("secret.txt")), b"outside the tree");
}

#[test]
fn case_insensitive_protection_keeps_a_differently_cased_key() {
    let p = Pair::new();
    std::fs::remove_file(p.dst().join("encryption.config")).unwrap();
    std::fs::write(p.dst().join("Encryption.Config"), TARGET_KEY).unwrap();
    p.run(&["sync"], &[]).assert_code(0);
    assert_eq!(read(&p.dst().join("Encryption.Config")), TARGET_KEY);
    if cfg!(unix) {
        assert!(
            !p.dst().join("encryption.config").exists(),
            "the source's key never arrives under another case"
        );
    }
}

#[test]
fn a_cluster_sync_reaches_every_other_web_node_and_one_failure_does_not_stop_the_others() {
    let c = Cluster::secret_server(b"KEY", Some(b"KEY"));
    write(
        &c.app("web1"),
        &[("bin/App.dll", b"v11"), ("Scripts/a.js", b"11")],
    );
    write(&c.app("web2"), &[("bin/App.dll", b"v10")]);
    backdate(&c.app("web2"));
    // dr1's folder is not the application: refused, web2 still synced.
    std::fs::remove_file(c.app("dr1").join("web.config")).unwrap();
    let dr_before = snapshot(&c.app("dr1"));
    let cf = c.cluster_file();
    let sync = |extra: &[&str]| {
        let mut a = Vec::from(argv!["sync", "-c", &cf, "--node", "web1"]);
        a.extend(extra.iter().map(OsString::from));
        keyferry(&a, None)
    };
    // web2 changed, dr1 refused: partly done (3), the table says which.
    let r = sync(&[]);
    r.assert_code(3);
    assert_eq!(read(&c.app("web2").join("bin/App.dll")), b"v11");
    assert_eq!(
        read(&c.app("web2").join("database.config")),
        b"db for web2\n"
    );
    assert_eq!(snapshot(&c.app("dr1")), dr_before);
    assert!(r.stdout().contains("FAILED"), "{}", r.stdout());
    assert!(r.stderr().contains("dr1"), "{}", r.stderr());
    // --to picks one; proxy1 too has paths.app in this fixture, so it is a target.
    let r = sync(&["--to", "web2", "--json"]);
    r.assert_code(0);
    assert_eq!(r.json()["targets"].as_array().unwrap().len(), 1);
    assert_eq!(r.json()["targets"][0]["result"], "unchanged");
    let a = argv!["sync", "verify", "-c", &cf, "--node", "web1", "--to", "web2"];
    keyferry(&a, None).assert_code(0);
    let r = sync(&["--to", "nosuch"]);
    r.assert_code(2);
    assert!(r.stderr().contains("no node"), "{}", r.stderr());
}

#[cfg(windows)]
#[test]
fn windows_drive_and_unc_paths_work() {
    // Under Wine, Z: maps the Unix root and \\?\UNC-style long paths resolve through it.
    let p = Pair::new();
    let dst = p.dst();
    let unc = format!(r"\\?\{}", dst.display());
    let mut a = Vec::from(argv!["sync"]);
    let args = p.args(&[]);
    a.extend(args.iter().take(5).cloned());
    a.push(unc.into());
    a.extend(args.iter().skip(6).cloned());
    keyferry(&a, None).assert_code(0);
    assert_eq!(read(&dst.join("bin/New.dll")), b"added in 11.0");
    assert_eq!(read(&dst.join("encryption.config")), TARGET_KEY);
}

/// Windows resolves names without regard to case and drops trailing dots and spaces: a
/// source file named `Encryption.Config.` (made through a `\\?\` path, which keeps the dot)
/// is the key file there. Under Wine, on a real Windows path: the sync never copies it, the
/// target's key stays its own, byte for byte, and so does a `Database.Config ` in a subfolder.
#[cfg(windows)]
#[test]
fn windows_name_rules_protect_keys_under_other_spellings() {
    let p = Pair::new();
    let verbatim = |rel: &str| PathBuf::from(format!(r"\\?\{}\{rel}", p.src().display()));
    let dotted = verbatim("Encryption.Config.");
    if std::fs::write(&dotted, b"SOURCE KEY, other spelling").is_err()
        || !std::fs::read_dir(p.src())
            .unwrap()
            .any(|e| e.unwrap().file_name() == "Encryption.Config.")
    {
        eprintln!("SKIPPED: this file system does not keep a trailing dot in a name");
        return;
    }
    std::fs::create_dir_all(p.src().join("App")).unwrap();
    std::fs::write(verbatim(r"App\Database.Config "), b"source db").unwrap();
    std::fs::create_dir_all(p.dst().join("App")).unwrap();
    std::fs::write(p.dst().join(r"App\database.config"), b"target db, its own").unwrap();
    let r = p.run(&["sync", "--json"], &[]);
    r.assert_code(0);
    assert_eq!(read(&p.dst().join("encryption.config")), TARGET_KEY);
    assert_eq!(
        read(&p.dst().join(r"App\database.config")),
        b"target db, its own"
    );
    let names: Vec<String> = std::fs::read_dir(p.dst())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        !names.iter().any(|n| n == "Encryption.Config."),
        "{names:?}"
    );
    p.run(&["sync", "verify"], &[]).assert_code(0);
}

/// Refusals about keyferry's own folders beside the target and about options that do not
/// apply: exit 2, a message that says what to do, the node's files byte-identical.
#[test]
fn refusals_around_the_folders_beside_the_target_change_nothing() {
    let p = Pair::new();
    let node_files = || {
        let state = p.state();
        let mut s = p.everything();
        s.retain(|k, _| !k.starts_with(&state));
        s
    };
    let refused = |before: &[&str], extra: &[&str], what: &str| {
        let snap = node_files();
        let r = p.run(before, extra);
        r.assert_code(2);
        assert!(r.stderr().contains(what), "{what}: {}", r.stderr());
        assert_eq!(snap, node_files(), "refusal {what} changed files");
    };
    // No sync yet: nothing to roll back.
    refused(&["sync", "rollback"], &[], "no previous tree");
    // A new tree beside the target that this machine's journal does not know: a sync from
    // another machine, running or interrupted there.
    let staging = p.dst().with_file_name("SecretServer.keyferry-new");
    write(&staging, &[("web.config", b"someone else's sync")]);
    refused(&["sync"], &[], "from another machine");
    std::fs::remove_dir_all(&staging).unwrap();
    // A folder named like keyferry's previous tree that keyferry did not make.
    let prev = p.dst().with_file_name("SecretServer.keyferry-prev");
    write(&prev, &[("notes.txt", b"an admin's own copy")]);
    refused(&["sync"], &[], "not a previous tree keyferry kept");
    std::fs::remove_dir_all(&prev).unwrap();
    // --app-pool stops a pool on this machine; a cluster sync's targets are other machines.
    let c = Cluster::secret_server(b"KEY", Some(b"KEY"));
    let snap = c.snapshot();
    let cf = c.cluster_file();
    let r = keyferry(
        &argv![
            "sync",
            "-c",
            &cf,
            "--node",
            "web1",
            "--app-pool",
            "SecretServer"
        ],
        None,
    );
    r.assert_code(2);
    assert!(r.stderr().contains("--app-offline"), "{}", r.stderr());
    assert_eq!(snap, c.snapshot());
}

/// The target's keys survive every rollback, whatever the trees hold: the three ways in
/// that used to lose them (a plan of the kept tree against the target that fails), and a
/// protected name that is a link.
#[cfg(unix)]
#[test]
fn rollback_never_loses_the_targets_keys() {
    // 1. A new target, then the node gets its key, then a rollback: the key stays.
    let p = Pair::new();
    let d = p.dst();
    std::fs::remove_dir_all(&d).unwrap();
    std::fs::create_dir_all(&d).unwrap();
    p.run(&["sync"], &["--new-target"]).assert_code(0);
    std::fs::write(d.join("encryption.config"), TARGET_KEY).unwrap();
    let r = p.run(&["sync", "rollback"], &[]);
    r.assert_code(0);
    assert_eq!(
        read(&d.join("encryption.config")),
        TARGET_KEY,
        "{}",
        r.stdout()
    );
    assert!(
        !d.join("web.config").exists(),
        "the target is back to empty"
    );

    // 2. A link to a system folder added to the target after the sync.
    let p = Pair::new();
    let d = p.dst();
    p.run(&["sync"], &[]).assert_code(0);
    let system = p.dir.path().join("system");
    write(&system, &[("passwd", b"root")]);
    std::os::unix::fs::symlink(&system, d.join("sys")).unwrap();
    let r = p.run(&["sync", "rollback"], &[]);
    r.assert_code(0);
    assert_eq!(read(&d.join("encryption.config")), TARGET_KEY);
    assert_eq!(read(&d.join("database.config")), b"target db connection");
    assert_eq!(
        std::fs::read_link(d.join("sys")).unwrap(),
        system,
        "the link is carried"
    );
    assert_eq!(read(&system.join("passwd")), b"root");

    // 3. An absolute link into the target inside the kept tree.
    let p = Pair::new();
    let d = p.dst();
    p.run(&["sync"], &[]).assert_code(0);
    let kept = d.with_file_name("SecretServer.keyferry-prev");
    assert!(kept.is_dir());
    std::os::unix::fs::symlink(d.join("bin"), kept.join("into-target")).unwrap();
    let r = p.run(&["sync", "rollback"], &[]);
    r.assert_code(0);
    assert_eq!(read(&d.join("encryption.config")), TARGET_KEY);
    assert_eq!(read(&d.join("database.config")), b"target db connection");

    // 4. database.config is a link to the real file: through a sync and a rollback it is
    // the same link.
    let p = Pair::new();
    let d = p.dst();
    std::fs::remove_file(d.join("database.config")).unwrap();
    write(&d, &[("App_Data/db.real", b"the real connection")]);
    std::os::unix::fs::symlink("App_Data/db.real", d.join("database.config")).unwrap();
    for step in [&["sync"][..], &["sync", "rollback"]] {
        let r = p.run(step, &[]);
        r.assert_code(0);
        assert_eq!(
            std::fs::read_link(d.join("database.config")).unwrap(),
            Path::new("App_Data/db.real"),
            "{step:?}"
        );
        assert_eq!(read(&d.join("database.config")), b"the real connection");
        assert_eq!(read(&d.join("encryption.config")), TARGET_KEY);
    }
}

/// Run from the wrong node: a secondary's folder never replaces the upgraded primary's unless
/// both flags say so; refusals change nothing on any node.
#[test]
fn a_sync_from_a_secondary_onto_the_primary_is_refused() {
    let c = Cluster::secret_server(b"KEY", Some(b"KEY"));
    write(&c.app("web1"), &[("bin/App.dll", b"v11 (upgraded)")]);
    write(&c.app("web2"), &[("bin/App.dll", b"v10")]);
    backdate(&c.app("web2"));
    let cf = c.cluster_file();
    let sync = |extra: &[&str]| {
        let mut a = Vec::from(argv!["sync", "-c", &cf]);
        a.extend(extra.iter().map(OsString::from));
        keyferry(&a, None)
    };
    let before = c.snapshot();
    let r = sync(&["--node", "web2", "--to", "web1"]);
    r.assert_code(2);
    assert!(
        r.stderr().contains("web2 is the secondary") && r.stderr().contains("--from-non-primary"),
        "{}",
        r.stderr()
    );
    let r = sync(&["--node", "web2", "--to", "web1", "--from-non-primary"]);
    r.assert_code(2);
    assert!(
        r.stderr().contains("web1 is the cluster file's primary")
            && r.stderr().contains("--replace-primary"),
        "{}",
        r.stderr()
    );
    assert_eq!(before, c.snapshot());
    assert_eq!(read(&c.app("web1").join("bin/App.dll")), b"v11 (upgraded)");
    // Both flags: the admin's explicit decision.
    let r = sync(&[
        "--node",
        "web2",
        "--to",
        "web1",
        "--from-non-primary",
        "--replace-primary",
    ]);
    r.assert_code(0);
    assert_eq!(read(&c.app("web1").join("bin/App.dll")), b"v10");
    assert_eq!(read(&c.app("web1").join("encryption.config")), b"KEY");
}

/// An exported KEYFERRY_CLUSTER does not get in the way of a two-folder sync, and the hints
/// name the flag or command they mean.
#[test]
fn an_exported_cluster_variable_leaves_a_two_folder_sync_alone() {
    let p = Pair::new();
    let mut args = Vec::from(argv!["sync"]);
    args.extend(p.args(&[]));
    let out = std::process::Command::new(bin())
        .args(&args)
        .env(
            "KEYFERRY_CLUSTER",
            p.dir.path().join("no-such-cluster.toml"),
        )
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    let r = Run {
        args: args
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect(),
        out,
    };
    r.assert_code(0);
    assert_eq!(read(&p.dst().join("bin/New.dll")), b"added in 11.0");
    // sync rollback needs no --from (it reads no source).
    let r = keyferry(
        &argv![
            "sync",
            "rollback",
            "--profile",
            "secret-server",
            "--root",
            &p.dst(),
            "--state-dir",
            &p.state()
        ],
        None,
    );
    r.assert_code(0);
    assert_eq!(
        read(&p.dst().join("bin/Thycotic.dll")),
        b"version 10.9 binary"
    );
    // An empty target: the refusal names --new-target.
    let p = Pair::new();
    std::fs::remove_dir_all(p.dst()).unwrap();
    std::fs::create_dir_all(p.dst()).unwrap();
    let r = p.run(&["sync"], &[]);
    r.assert_code(2);
    assert!(r.stderr().contains("--new-target"), "{}", r.stderr());
}

/// Case-only twins in a Linux source onto a Linux target: two files, each its own bytes, and
/// `sync verify` agrees (it keys names as the target's file system compares them).
#[cfg(target_os = "linux")]
#[test]
fn case_only_twins_stay_two_files_on_a_case_sensitive_target() {
    let p = Pair::new();
    write(&p.src(), &[("bin/A.dll", b"AAAA"), ("bin/a.dll", b"aaaa")]);
    write(&p.dst(), &[("bin/a.dll", b"aaaa")]);
    let t = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000);
    for f in [
        p.src().join("bin/A.dll"),
        p.src().join("bin/a.dll"),
        p.dst().join("bin/a.dll"),
    ] {
        std::fs::File::options()
            .write(true)
            .open(&f)
            .unwrap()
            .set_modified(t)
            .unwrap();
    }
    p.run(&["sync"], &[]).assert_code(0);
    assert_eq!(read(&p.dst().join("bin/A.dll")), b"AAAA");
    assert_eq!(read(&p.dst().join("bin/a.dll")), b"aaaa");
    p.run(&["sync", "verify"], &[]).assert_code(0);
    std::fs::write(p.dst().join("bin/A.dll"), b"BBBB").unwrap();
    p.run(&["sync", "verify"], &[]).assert_code(1);
}

/// A name the source has only as a link (links are never copied): the target's entry of that
/// name, a link, a file or a folder with what it holds, stays, and the plan says so; nothing
/// is removed that the plan does not list.
#[cfg(unix)]
#[test]
fn a_name_the_source_has_as_a_link_keeps_the_targets_entry() {
    use std::os::unix::fs::symlink;
    let p = Pair::new();
    let (s, d) = (p.src(), p.dst());
    symlink("bin", s.join("lib")).unwrap();
    symlink("Scripts", d.join("lib")).unwrap();
    symlink("web.config", s.join("readme.txt")).unwrap();
    write(
        &d,
        &[
            ("readme.txt", b"target's own readme"),
            ("assets/a.css", b"css"),
        ],
    );
    symlink("Scripts", s.join("assets")).unwrap();
    let r = p.run(&["sync", "--dry-run", "--json"], &[]);
    r.assert_code(0);
    let plan = &r.json()["targets"][0]["plan"];
    let deleted: Vec<&str> = plan["delete"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["path"].as_str().unwrap())
        .collect();
    assert_eq!(deleted, ["bin/Stale.dll"], "{plan}");
    p.run(&["sync"], &[]).assert_code(0);
    assert_eq!(
        std::fs::read_link(d.join("lib")).unwrap(),
        Path::new("Scripts")
    );
    assert_eq!(read(&d.join("readme.txt")), b"target's own readme");
    assert_eq!(read(&d.join("assets/a.css")), b"css");
    assert!(!d.join("bin/Stale.dll").exists());
}

/// A parent folder every user may write in: another account could put a link where keyferry's
/// folders beside the target go. Refused, saying how to fix the permissions; nothing changed.
#[cfg(unix)]
#[test]
fn a_target_whose_parent_others_may_write_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let p = Pair::new();
    let parent = p.dst().parent().unwrap().to_owned();
    std::fs::set_permissions(&parent, std::fs::Permissions::from_mode(0o777)).unwrap();
    let before = p.everything();
    for step in [&["sync"][..], &["sync", "rollback"]] {
        let r = p.run(step, &[]);
        r.assert_code(2);
        assert!(
            r.stderr().contains("every user may write in it") && r.stderr().contains("chmod go-w"),
            "{}",
            r.stderr()
        );
    }
    assert_eq!(before, p.everything());
    std::fs::set_permissions(&parent, std::fs::Permissions::from_mode(0o755)).unwrap();
    p.run(&["sync"], &[]).assert_code(0);
}

/// A log the application writes while the new tree is built (after its logs folder was linked
/// in, before the swap) is in the live folder afterwards, not only in the kept one.
#[cfg(all(unix, feature = "failpoints"))]
#[test]
fn a_log_written_during_the_sync_is_carried_into_the_live_folder() {
    let p = Pair::new();
    let r = p.sync_with_hook(
        "sync:installing",
        "writes-a-log.sh",
        &format!(
            "echo 'written during the sync' > {:?}/logs/during.log",
            p.dst()
        ),
    );
    r.assert_code(0);
    assert_eq!(
        read(&p.dst().join("logs/during.log")),
        b"written during the sync\n"
    );
    assert_eq!(read(&p.dst().join("logs/target.log")), b"target log");
    assert_eq!(r.json()["targets"][0]["outcome"]["carried_after_swap"], 1);
}

/// Byte-identical trees whose modification times differ: nothing to update, no warning about
/// per-node settings, only the source's times carried; the next plain sync finds them the
/// same. With --checksum too.
#[test]
fn the_same_bytes_with_other_times_are_kept_and_given_the_sources_times() {
    for checksum in [false, true] {
        let p = Pair::new();
        let (s, d) = (p.src(), p.dst());
        // The target is the source's copy, written later (other times).
        std::thread::sleep(std::time::Duration::from_millis(20));
        for rel in ["web.config", "bin/Thycotic.dll", "Scripts/app.js"] {
            std::fs::write(d.join(rel), read(&s.join(rel))).unwrap();
        }
        std::fs::write(d.join("bin/New.dll"), read(&s.join("bin/New.dll"))).unwrap();
        std::fs::remove_file(d.join("bin/Stale.dll")).unwrap();
        let extra: &[&str] = if checksum { &["--checksum"] } else { &[] };
        let mut a = vec!["--dry-run"];
        a.extend(extra);
        let r = p.run(&["sync"], &a);
        r.assert_code(0);
        let out = r.stdout() + &r.stderr();
        assert!(!out.contains("would update"), "checksum={checksum}: {out}");
        assert!(!out.contains("per-node"), "checksum={checksum}: {out}");
        assert!(
            out.contains("4 files have the same bytes"),
            "checksum={checksum}: {out}"
        );
        p.run(&["sync"], extra).assert_code(0);
        for rel in [
            "web.config",
            "bin/Thycotic.dll",
            "Scripts/app.js",
            "bin/New.dll",
        ] {
            let m = |root: &Path| {
                std::fs::metadata(root.join(rel))
                    .unwrap()
                    .modified()
                    .unwrap()
            };
            assert_eq!(m(&s), m(&d), "checksum={checksum}: {rel}");
        }
        let r = p.run(&["sync", "--json"], &[]);
        r.assert_code(0);
        assert_eq!(
            r.json()["targets"][0]["result"],
            "unchanged",
            "checksum={checksum}"
        );
    }
}

/// One JSON error shape, the README's (`code`, `message`, `hint`), for a failing target of
/// sync, sync verify and sync rollback alike.
#[test]
fn every_sync_command_writes_a_targets_error_the_same_way() {
    let p = Pair::new();
    std::fs::remove_dir_all(p.dst()).unwrap();
    for cmd in [&["sync"][..], &["sync", "verify"], &["sync", "rollback"]] {
        let r = p.run(cmd, &["--json"]);
        assert_ne!(r.code(), 0, "{cmd:?}");
        let j = r.json();
        let e = &j["targets"][0]["error"];
        assert!(e.is_object(), "{cmd:?}: {j}");
        assert!(
            e["code"].as_str().is_some_and(|c| !c.is_empty()),
            "{cmd:?}: {j}"
        );
        assert!(
            e["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{cmd:?}: {j}"
        );
        let keys: Vec<&String> = e.as_object().unwrap().keys().collect();
        assert!(
            keys.iter()
                .all(|k| ["code", "message", "hint"].contains(&k.as_str())),
            "{cmd:?}: {keys:?}"
        );
    }
}

/// An absolute link into the target itself (an admin's shortcut) is the target's own: carried
/// as it is, and no sync fails on it (or names keyferry's temp folder as the target).
#[cfg(unix)]
#[test]
fn an_absolute_link_into_the_target_is_carried_and_does_not_stop_the_sync() {
    let p = Pair::new();
    let d = p.dst();
    std::os::unix::fs::symlink(d.join("bin"), d.join("bin-link")).unwrap();
    for _ in 0..2 {
        let r = p.run(&["sync"], &[]);
        r.assert_code(0);
        assert!(!r.stderr().contains("keyferry-new"), "{}", r.stderr());
        assert_eq!(
            std::fs::read_link(d.join("bin-link")).unwrap(),
            d.join("bin")
        );
    }
    p.run(&["sync", "verify"], &[]).assert_code(0);
}

/// The kept tree cannot be removed at once (an immutable file in it): the sync refuses with
/// the reason, the kept tree is still keyferry's (its record first removed, never), and once
/// the cause is gone the next sync goes on.
#[cfg(target_os = "linux")]
#[test]
fn a_kept_tree_that_cannot_be_removed_yet_is_still_recognised_afterwards() {
    let p = Pair::new();
    p.run(&["sync"], &[]).assert_code(0);
    let kept = p.dst().with_file_name("SecretServer.keyferry-prev");
    let stuck = kept.join("bin/Stale.dll");
    let chattr = |flag: &str| chattr(&stuck, flag);
    if !chattr("+i") {
        eprintln!(
            "SKIPPED: chattr +i does not work here (needs root and a file system with flags)"
        );
        return;
    }
    std::fs::write(p.src().join("bin/Newer.dll"), b"newer").unwrap();
    // Keeping one tree: the next sync must remove this one.
    let r = p.run(&["sync"], &["--keep", "1"]);
    chattr("-i");
    assert_ne!(r.code(), 0);
    assert!(
        kept.join(".keyferry-prev.json").exists(),
        "the record stays until the last"
    );
    let r = p.run(&["sync"], &[]);
    r.assert_code(0);
    assert_eq!(read(&p.dst().join("bin/Newer.dll")), b"newer");
    assert_eq!(read(&p.dst().join("encryption.config")), TARGET_KEY);
}

/// The disk fills up right after the swap (a real 8 MiB tmpfs, filled at that moment by the
/// failpoint hook): the target already is the new tree, so the sync says so and exits 3
/// (partly done), not "nothing changed"; once there is room, the next sync finishes it.
#[cfg(all(target_os = "linux", feature = "failpoints"))]
#[test]
fn a_disk_that_fills_right_after_the_swap_is_partly_done_and_finished_by_the_rerun() {
    let d = tempfile::tempdir().unwrap();
    let m = d.path().join("m");
    std::fs::create_dir(&m).unwrap();
    let mounted = std::process::Command::new("mount")
        .args([
            "-t",
            "tmpfs",
            "-o",
            "size=8m",
            "kf-test",
            m.to_str().unwrap(),
        ])
        .status()
        .is_ok_and(|s| s.success());
    if !mounted {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI runs as root: mount must work"
        );
        eprintln!("SKIPPED: mounting a tmpfs needs root");
        return;
    }
    struct Unmount(PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount").arg(&self.0).status();
        }
    }
    let _u = Unmount(m.clone());
    let (src, dst, state) = (m.join("src"), m.join("www/SecretServer"), m.join("state"));
    write(
        &src,
        &[
            ("web.config", b"<v11/>"),
            ("bin/New.dll", b"new"),
            ("encryption.config", SOURCE_KEY),
        ],
    );
    write(
        &dst,
        &[("web.config", b"<v10/>"), ("encryption.config", TARGET_KEY)],
    );
    let script = shell_script(
        &d.path().join("fill.sh"),
        // Large blocks, then page-sized ones: not even one page is left free.
        &format!(
            "dd if=/dev/zero of={m:?}/filler bs=64k >/dev/null 2>&1\n\
             dd if=/dev/zero of={m:?}/filler2 bs=4k >/dev/null 2>&1\nexit 0"
        ),
    );
    let args = argv![
        "sync",
        "--profile",
        "secret-server",
        "--from",
        &src,
        "--root",
        &dst,
        "--state-dir",
        &state,
    ];
    let hook = format!("sync:committed={}", script.display());
    let r = keyferry_env(&args, None, &[("KEYFERRY_FAILPOINT_RUN", &hook)]);
    r.assert_code(3);
    assert!(r.stderr().contains("is the new tree"), "{}", r.stderr());
    assert_eq!(read(&dst.join("bin/New.dll")), b"new");
    assert_eq!(read(&dst.join("encryption.config")), TARGET_KEY);
    std::fs::remove_file(m.join("filler")).unwrap();
    std::fs::remove_file(m.join("filler2")).unwrap();
    let r = keyferry(&args, None);
    r.assert_code(0);
    assert!(!dst.with_file_name("SecretServer.keyferry-new").exists());
    assert_eq!(read(&dst.join("web.config")), b"<v11/>");
}

/// Names that are not UTF-8 (Latin-1 file names from an old tool) are handled as the bytes
/// they are: copied to the target under the very same bytes, a stale one on the target
/// deleted (not left behind under a U+FFFD name), two that differ only in those bytes kept
/// apart, every listing showing them escaped (`\xe9`), never lossily; verify and rollback
/// alike.
#[cfg(target_os = "linux")]
#[test]
fn names_that_are_not_utf8_are_synced_as_their_bytes_and_shown_escaped() {
    use std::os::unix::ffi::OsStrExt;
    let p = Pair::new();
    let os = |b: &[u8]| std::ffi::OsStr::from_bytes(b).to_owned();
    std::fs::write(p.src().join("bin").join(os(b"caf\xe9.dll")), b"latin-1 e9").unwrap();
    std::fs::write(p.src().join("bin").join(os(b"caf\xe8.dll")), b"latin-1 e8").unwrap();
    std::fs::create_dir(p.src().join(os(b"d\xff"))).unwrap();
    std::fs::write(
        p.src().join(os(b"d\xff")).join("x.js"),
        b"in a latin-1 folder",
    )
    .unwrap();
    std::fs::write(p.dst().join("bin").join(os(b"stale\xfc.dll")), b"old").unwrap();
    let r = p.run(&["sync", "--dry-run", "--json"], &[]);
    r.assert_code(0);
    let out = r.stdout();
    let plan = &r.json()["targets"][0]["plan"];
    let paths = |list: &str| -> Vec<String> {
        plan[list]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["path"].as_str().unwrap().to_owned())
            .collect()
    };
    assert!(
        paths("add").contains(&"bin/caf\\xe9.dll".to_owned()),
        "{out}"
    );
    assert!(paths("add").contains(&"d\\xff/x.js".to_owned()), "{out}");
    assert!(
        paths("delete").contains(&"bin/stale\\xfc.dll".to_owned()),
        "{out}"
    );
    assert!(!out.contains('\u{FFFD}'), "{out}");
    let r = p.run(&["sync", "--dry-run"], &[]);
    assert!(
        r.stdout().contains("would delete bin/stale\\xfc.dll"),
        "{}",
        r.stdout()
    );
    p.run(&["sync"], &[]).assert_code(0);
    let d = p.dst();
    assert_eq!(read(&d.join("bin").join(os(b"caf\xe9.dll"))), b"latin-1 e9");
    assert_eq!(read(&d.join("bin").join(os(b"caf\xe8.dll"))), b"latin-1 e8");
    assert_eq!(
        read(&d.join(os(b"d\xff")).join("x.js")),
        b"in a latin-1 folder"
    );
    assert!(!d.join("bin").join(os(b"stale\xfc.dll")).exists());
    p.run(&["sync", "verify"], &[]).assert_code(0);
    // A change behind the same size and time is named escaped by verify.
    let f = d.join("bin").join(os(b"caf\xe9.dll"));
    let when = std::fs::metadata(&f).unwrap().modified().unwrap();
    std::fs::write(&f, b"LATIN-1 E9").unwrap();
    std::fs::File::options()
        .write(true)
        .open(&f)
        .unwrap()
        .set_modified(when)
        .unwrap();
    let r = p.run(&["sync", "verify"], &[]);
    r.assert_code(1);
    assert!(r.stdout().contains("bin/caf\\xe9.dll"), "{}", r.stdout());
    p.run(&["sync", "rollback"], &[]).assert_code(0);
    assert_eq!(read(&d.join("bin").join(os(b"stale\xfc.dll"))), b"old");
    assert!(!d.join("bin").join(os(b"caf\xe9.dll")).exists());
}

/// When the folder cannot be swapped (here: an immutable protected file cannot be linked into
/// the new tree), --no-in-place stops with the target unchanged; without it the fallback is
/// said, with its reason.
#[cfg(target_os = "linux")]
#[test]
fn the_in_place_fallback_is_said_and_can_be_forbidden() {
    let p = Pair::new();
    let key = p.dst().join("encryption.config");
    let chattr = |flag: &str| chattr(&key, flag);
    if !chattr("+i") {
        eprintln!("SKIPPED: chattr +i does not work here");
        return;
    }
    let before = snapshot(&p.dst());
    let r = p.run(&["sync"], &["--no-in-place"]);
    let after = snapshot(&p.dst());
    let r2 = p.run(&["sync"], &["--json"]);
    chattr("-i");
    r.assert_code(2);
    assert!(
        r.stderr().contains("--no-in-place forbids"),
        "{}",
        r.stderr()
    );
    assert_eq!(before, after, "the target was not changed");
    r2.assert_code(0);
    let o = &r2.json()["targets"][0]["outcome"];
    assert_eq!(o["mode"], "in-place", "{o}");
    assert!(
        o["why_in_place"]
            .as_str()
            .unwrap()
            .contains("encryption.config"),
        "{o}"
    );
    assert_eq!(read(&key), TARGET_KEY);
}

/// An in-place sync removes a folder the service owns with 0750; its rollback makes it again
/// with that owner and mode, not root's 0755.
#[cfg(target_os = "linux")]
#[test]
fn an_in_place_rollback_recreates_a_folder_as_it_was() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let p = Pair::new();
    let old = p.dst().join("areas/old");
    write(&p.dst(), &[("areas/old/page.cshtml", b"old page")]);
    let is_root = std::process::Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.trim_ascii() == b"0");
    let uid = if is_root {
        let _ = std::process::Command::new("chown")
            .args(["-R", "1:1"])
            .arg(p.dst().join("areas"))
            .status();
        1
    } else {
        std::fs::metadata(&old).unwrap().uid()
    };
    std::fs::set_permissions(&old, std::fs::Permissions::from_mode(0o750)).unwrap();
    p.run(&["sync"], &["--in-place"]).assert_code(0);
    assert!(!old.exists());
    p.run(&["sync", "rollback"], &[]).assert_code(0);
    let m = std::fs::metadata(&old).unwrap();
    assert_eq!(m.mode() & 0o7777, 0o750);
    assert_eq!(m.uid(), uid);
    assert_eq!(read(&old.join("page.cshtml")), b"old page");
}

/// A name that changes kind (a file where the source has a folder, a folder where it has a
/// file, a link where it has a folder): the target's entry is a planned, counted deletion, the
/// sync works in both modes, and a rollback brings the old kinds back.
#[cfg(unix)]
#[test]
fn a_name_that_changes_kind_is_planned_synced_and_rolled_back() {
    for in_place in [false, true] {
        let p = Pair::new();
        let (s, d) = (p.src(), p.dst());
        write(
            &s,
            &[
                ("bin/extra/child.dll", b"new child"),
                ("Scripts/lib", b"now a file"),
            ],
        );
        write(&s, &[("Content/site.css", b"css")]);
        write(
            &d,
            &[
                ("bin/extra", b"was a file"),
                ("Scripts/lib/a.js", b"was in a folder"),
            ],
        );
        std::os::unix::fs::symlink("bin", d.join("Content")).unwrap();
        let before = snapshot(&d);
        let mode: &[&str] = if in_place { &["--in-place"] } else { &[] };
        let mut dry = vec!["--dry-run", "--json"];
        dry.extend(mode);
        let r = p.run(&["sync"], &dry);
        r.assert_code(0);
        let deleted: Vec<String> = r.json()["targets"][0]["plan"]["delete"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["path"].as_str().unwrap().to_owned())
            .collect();
        for want in ["bin/extra", "Scripts/lib/a.js", "Content"] {
            assert!(
                deleted.contains(&want.to_owned()),
                "in_place={in_place}: {deleted:?}"
            );
        }
        p.run(&["sync"], mode).assert_code(0);
        assert_eq!(read(&d.join("bin/extra/child.dll")), b"new child");
        assert_eq!(read(&d.join("Scripts/lib")), b"now a file");
        assert_eq!(read(&d.join("Content/site.css")), b"css");
        p.run(&["sync", "verify"], &[]).assert_code(0);
        p.run(&["sync", "rollback"], &[]).assert_code(0);
        assert_eq!(snapshot(&d), before, "in_place={in_place}");
        assert_eq!(
            std::fs::read_link(d.join("Content")).unwrap(),
            Path::new("bin")
        );
    }
}

/// An in-place sync stopped part-way (an immutable file it must replace): exit 3, the message
/// says the target is part old, part new and what to do; once the cause is gone the rerun
/// finishes it.
#[cfg(target_os = "linux")]
#[test]
fn an_in_place_sync_stopped_part_way_says_so_and_the_rerun_finishes_it() {
    let p = Pair::new();
    let stuck = p.dst().join("bin/Thycotic.dll");
    let chattr = |flag: &str| chattr(&stuck, flag);
    if !chattr("+i") {
        eprintln!("SKIPPED: chattr +i does not work here");
        return;
    }
    let r = p.run(&["sync"], &["--in-place"]);
    chattr("-i");
    r.assert_code(3);
    assert!(
        r.stderr().contains("part old, part new") && r.stderr().contains("run the same sync again"),
        "{}",
        r.stderr()
    );
    p.run(&["sync"], &["--in-place"]).assert_code(0);
    assert_eq!(read(&stuck), b"version 11.0 binary");
    assert_eq!(read(&p.dst().join("bin/New.dll")), b"added in 11.0");
    assert_eq!(read(&p.dst().join("encryption.config")), TARGET_KEY);
    p.run(&["sync", "verify"], &[]).assert_code(0);
}

/// A later sync that found nothing to change leaves the kept tree from an earlier sync: a
/// rollback would go back two versions. Refused, saying so, unless --older.
#[test]
fn a_rollback_older_than_the_last_sync_needs_older() {
    let p = Pair::new();
    let d = p.dst();
    let old_dll = read(&d.join("bin/Thycotic.dll"));
    p.run(&["sync"], &[]).assert_code(0);
    // The next upgrade's sync found this node already up to date.
    let r = p.run(&["sync", "--json"], &[]);
    r.assert_code(0);
    assert_eq!(r.json()["targets"][0]["result"], "unchanged");
    let before = snapshot(&d);
    let r = p.run(&["sync", "rollback"], &[]);
    r.assert_code(2);
    assert!(
        r.stderr().contains("further than that sync") && r.stderr().contains("nothing to change"),
        "{}",
        r.stderr()
    );
    assert_eq!(before, snapshot(&d));
    p.run(&["sync", "rollback"], &["--older"]).assert_code(0);
    assert_eq!(read(&d.join("bin/Thycotic.dll")), old_dll);
    assert_eq!(read(&d.join("encryption.config")), TARGET_KEY);
}

/// Each target keeps its previous trees as numbered generations (three by default): listed
/// with the sync that replaced each; a rollback to an older generation needs --older and
/// brings back that tree; a second rollback of it is already done; `--keep` bounds them.
#[test]
fn previous_trees_are_kept_as_generations_and_any_can_come_back() {
    let p = Pair::new();
    let d = p.dst();
    let versions: Vec<Vec<u8>> = (0..4)
        .map(|i| format!("version 12.{i} binary, longer each time{}", "!".repeat(i)).into_bytes())
        .collect();
    let original = read(&d.join("bin/Thycotic.dll"));
    for v in &versions {
        std::fs::write(p.src().join("bin/Thycotic.dll"), v).unwrap();
        p.run(&["sync"], &[]).assert_code(0);
    }
    // Four syncs, three kept: the trees from before syncs 4, 3 and 2.
    let r = p.run(&["sync", "rollback", "--list", "--json"], &[]);
    r.assert_code(0);
    let kept = r.json()["targets"][0]["kept"].clone();
    let kept = kept.as_array().unwrap();
    assert_eq!(kept.len(), 3, "{kept:?}");
    let states: Vec<&str> = kept.iter().map(|k| k["state"].as_str().unwrap()).collect();
    assert_eq!(states, ["back", "older", "older"]);
    for (i, k) in kept.iter().enumerate() {
        assert_eq!(k["generation"], i as u64 + 1);
        assert_eq!(k["fingerprint"].as_str().unwrap().len(), 16, "{k}");
    }
    assert!(!kept.iter().any(|k| read(
        &PathBuf::from(k["path"].as_str().unwrap()).join("bin/Thycotic.dll")
    ) == original));
    let r = p.run(&["sync", "rollback", "--list"], &[]);
    assert!(
        r.stdout().contains("3 kept trees") && r.stdout().contains("the tree before the last sync"),
        "{}",
        r.stdout()
    );
    // Generation 3 is the tree from before sync 2 (version 12.0): refused without --older.
    let before = p.everything();
    let r = p.run(&["sync", "rollback", "--generation", "3"], &[]);
    r.assert_code(2);
    assert!(r.stderr().contains("generation 3"), "{}", r.stderr());
    assert_eq!(before, p.everything());
    let r = p.run(&["sync", "rollback", "--generation", "4"], &[]);
    r.assert_code(2);
    assert!(r.stderr().contains("no generation 4"), "{}", r.stderr());
    assert_eq!(before, p.everything());
    let r = p.run(&["sync", "rollback", "--generation", "3", "--older"], &[]);
    r.assert_code(0);
    assert!(r.stdout().contains("generation 3"), "{}", r.stdout());
    assert_eq!(read(&d.join("bin/Thycotic.dll")), versions[0]);
    assert_eq!(read(&d.join("encryption.config")), TARGET_KEY);
    let r = p.run(&["sync", "rollback", "--generation", "3", "--older"], &[]);
    r.assert_code(0);
    assert!(r.stdout().contains("already rolled back"), "{}", r.stdout());
    assert_eq!(read(&d.join("bin/Thycotic.dll")), versions[0]);
    p.run(&["sync", "verify"], &[]).assert_code(1);
    // --keep 1: the next sync leaves one kept tree.
    p.run(&["sync"], &["--keep", "1"]).assert_code(0);
    let r = p.run(&["sync", "rollback", "--list", "--json"], &[]);
    assert_eq!(
        r.json()["targets"][0]["kept"].as_array().unwrap().len(),
        1,
        "{}",
        r.stdout()
    );
    assert_eq!(read(&d.join("bin/Thycotic.dll")), versions[3]);
}

/// The source changes while the new tree is built: right after `bin/New.dll` is copied (and
/// before it is read back), it changes in content behind its size and time, and a file the
/// plan found unchanged (kept from the target) changes in size and time. The copy's read-back
/// catches the first by content, the check before the swap the second by its size and time;
/// both are copied again.
#[cfg(all(unix, feature = "failpoints"))]
#[test]
fn a_source_that_changes_during_the_build_is_caught_before_the_swap() {
    let p = Pair::new();
    // web.config is the same on both sides (kept from the target by the plan).
    std::fs::write(
        p.dst().join("web.config"),
        read(&p.src().join("web.config")),
    )
    .unwrap();
    let when = std::fs::metadata(p.src().join("web.config"))
        .unwrap()
        .modified()
        .unwrap();
    std::fs::File::options()
        .write(true)
        .open(p.dst().join("web.config"))
        .unwrap()
        .set_modified(when)
        .unwrap();
    let r = p.sync_with_hook(
        "sync:file-copied",
        "changes-the-source.sh",
        &format!(
            "set -e\n[ \"$KEYFERRY_FAILPOINT_AT\" = bin/New.dll ] || exit 0\n\
             [ -e {done:?} ] && exit 0\ntouch {done:?}\ncd {:?}\n\
             printf '<configuration v=\"11.1\"/>' > web.config\n\
             t=$(stat -c %y bin/New.dll)\nprintf 'ADDED in 11.0' > bin/New.dll\n\
             touch -d \"$t\" bin/New.dll",
            p.src(),
            done = p.dir.path().join("changed-once")
        ),
    );
    r.assert_code(0);
    assert!(
        p.dir.path().join("changed-once").exists(),
        "the hook never ran"
    );
    let o = &r.json()["targets"][0]["outcome"];
    let mut again: Vec<&str> = o["recopied"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    again.sort();
    assert_eq!(again, ["bin/New.dll", "web.config"], "{o}");
    assert_eq!(
        read(&p.dst().join("web.config")),
        b"<configuration v=\"11.1\"/>"
    );
    assert_eq!(read(&p.dst().join("bin/New.dll")), b"ADDED in 11.0");
    assert!(o["quick_checked"].as_u64().unwrap() >= 1, "{o}");
    p.run(&["sync", "verify"], &[]).assert_code(0);
}

/// A source file that changes again every time it is copied (a writer still busy in the
/// source folder) is copied twice, then refused: exit 2, the error names the file, the target
/// is byte for byte as it was and no new tree is left beside it.
#[cfg(all(unix, feature = "failpoints"))]
#[test]
fn a_source_file_that_changes_each_time_it_is_copied_is_refused_and_the_target_is_unchanged() {
    let p = Pair::new();
    let before = common::snapshot(&p.dst());
    let r = p.sync_with_hook(
        "sync:file-copied",
        "keeps-changing.sh",
        &format!(
            "set -e\n[ \"$KEYFERRY_FAILPOINT_AT\" = bin/New.dll ] || exit 0\n\
             cd {:?}\nt=$(stat -c %y bin/New.dll)\n\
             head -c 13 /dev/urandom > bin/New.dll\ntouch -d \"$t\" bin/New.dll",
            p.src()
        ),
    );
    r.assert_code(2);
    let e = &r.json()["targets"][0]["error"];
    assert_eq!(e["code"], "tree-mismatch", "{e}");
    let msg = e["message"].as_str().unwrap();
    assert!(
        msg.contains("bin/New.dll") && msg.contains("copied twice"),
        "{msg}"
    );
    assert_eq!(common::snapshot(&p.dst()), before);
    let parent = p.dst().parent().unwrap().to_owned();
    let left: Vec<_> = std::fs::read_dir(&parent)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".keyferry-"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

/// On a target that compares names without regard to case (NTFS; Wine's drives), an
/// unchanged file whose name differs in letter case only gets the source's name, in place as
/// in a swap; a rollback brings the target's name back.
#[test]
fn an_unchanged_file_takes_the_sources_letter_case_in_either_mode() {
    for in_place in [false, true] {
        let p = Pair::new();
        let d = p.dst();
        std::fs::write(d.join("probe.TXT"), b"x").unwrap();
        let insensitive = d.join("PROBE.txt").exists();
        std::fs::remove_file(d.join("probe.TXT")).unwrap();
        if !insensitive {
            eprintln!("SKIPPED: this file system tells names apart by case (runs under Wine)");
            return;
        }
        // The same bytes and time under another case of the name.
        std::fs::remove_file(d.join("Scripts/app.js")).unwrap();
        let names = |dir: &Path| -> Vec<String> {
            std::fs::read_dir(dir)
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        };
        std::fs::write(
            d.join("Scripts/APP.JS"),
            read(&p.src().join("Scripts/app.js")),
        )
        .unwrap();
        let when = std::fs::metadata(p.src().join("Scripts/app.js"))
            .unwrap()
            .modified()
            .unwrap();
        std::fs::File::options()
            .write(true)
            .open(d.join("Scripts/APP.JS"))
            .unwrap()
            .set_modified(when)
            .unwrap();
        assert_eq!(names(&d.join("Scripts")), ["APP.JS"]);
        let extra: &[&str] = if in_place { &["--in-place"] } else { &[] };
        p.run(&["sync"], extra).assert_code(0);
        assert_eq!(
            names(&d.join("Scripts")),
            ["app.js"],
            "in place: {in_place}"
        );
        p.run(&["sync", "rollback"], &[]).assert_code(0);
        assert_eq!(
            names(&d.join("Scripts")),
            ["APP.JS"],
            "in place: {in_place}"
        );
    }
}

/// Where stderr is not a terminal (a log, an upgrade step's pipe), a `--batch` sync says each
/// phase on a line of its own, naming the target and the amount; without --batch (and not a
/// step of an upgrade run) it stays quiet, as before.
#[test]
fn a_batch_sync_says_its_phases_on_lines_where_no_bar_can_be_drawn() {
    let p = Pair::new();
    let r = p.run(&["sync"], &["--batch"]);
    r.assert_code(0);
    let e = r.stderr();
    for phase in ["vm: copying", "vm: verifying", "vm: installing"] {
        assert!(e.contains(phase), "{phase}: {e}");
    }
    assert!(e.contains(" of "), "the amount: {e}");
    let q = Pair::new();
    let r = q.run(&["sync"], &[]);
    r.assert_code(0);
    assert!(!r.stderr().contains("vm: copying"), "{}", r.stderr());
}
