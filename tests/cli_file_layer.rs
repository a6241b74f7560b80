//! The file layer and the transaction engine, through the real binary on real files: a key
//! file keeps what lets the service read it, a second command on a node waits and then
//! refuses, crash leftovers are swept, and hostile paths (links to devices, FIFOs) are
//! refused at once instead of read without end.

use crate::common;
use common::*;
use std::ffi::OsString;
use std::path::Path;

const KEY_A: &[u8] = b"KEY A from the primary";
const KEY_B: &[u8] = b"KEY B the secondary had";

fn import(c: &Cluster, node: &str, bundle: &Path, extra: &[&str]) -> Run {
    let mut a = Vec::from(argv!["keys", "import", bundle]);
    a.extend(extra.iter().map(OsString::from));
    c.keyferry_node(node, &a)
}

/// A real second account, as a service would run: user and group `kfsvc`. Needs root (CI
/// runs as root); elsewhere the test says it was skipped.
#[cfg(unix)]
#[allow(clippy::print_stderr)] // the SKIPPED line must be visible in test output
fn service_account() -> Option<(u32, u32)> {
    use std::process::Command;
    if !rustix::process::geteuid().is_root() {
        eprintln!("SKIPPED: creating a service account needs root");
        return None;
    }
    static ONCE: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _g = ONCE.lock().unwrap();
    let id = |flag: &str| -> Option<u32> {
        let o = Command::new("id").args([flag, "kfsvc"]).output().ok()?;
        String::from_utf8_lossy(&o.stdout).trim().parse().ok()
    };
    if id("-u").is_none() {
        let _ = Command::new("groupadd").args(["-r", "kfsvc"]).status();
        let s = Command::new("useradd")
            .args([
                "-r",
                "-M",
                "-g",
                "kfsvc",
                "-s",
                "/usr/sbin/nologin",
                "kfsvc",
            ])
            .status()
            .unwrap();
        assert!(s.success() || id("-u").is_some(), "useradd kfsvc failed");
    }
    Some((id("-u")?, id("-g")?))
}

/// What the service account reads from `path` (runuser, as the account itself).
#[cfg(unix)]
fn read_as_service(path: &Path) -> Option<Vec<u8>> {
    let o = std::process::Command::new("runuser")
        .args(["-u", "kfsvc", "--", "cat"])
        .arg(path)
        .output()
        .unwrap();
    o.status.success().then_some(o.stdout)
}

#[cfg(unix)]
fn owner_of(p: &Path) -> (u32, u32, u32) {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(p).unwrap();
    (m.uid(), m.gid(), m.mode() & 0o7777)
}

/// The field finding: import --replace rebuilt encryption.config as root:root 0600 and the
/// service lost it. Now the replaced file keeps owner, group and mode, and a new file takes
/// what the product's database.config beside it has.
#[cfg(unix)]
#[test]
fn the_service_account_can_still_read_its_key_after_replace_and_after_a_fresh_install() {
    use std::os::unix::fs::{chown, PermissionsExt};
    let Some((_uid, gid)) = service_account() else {
        return;
    };
    let c = Cluster::secret_server(KEY_A, Some(KEY_B));
    // The tree must be traversable by the service account, as a real app folder is.
    let mut p = c.key_path("web2");
    while let Some(parent) = p.parent() {
        let _ = std::fs::set_permissions(parent, std::fs::Permissions::from_mode(0o755));
        if parent == c.dir.path() || parent == Path::new("/") {
            break;
        }
        p = parent.to_path_buf();
    }
    for node in ["web2", "dr1"] {
        for d in [c.path(node), c.app(node)] {
            std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
    }
    let key2 = c.key_path("web2");
    chown(&key2, Some(65534), Some(gid)).unwrap();
    std::fs::set_permissions(&key2, std::fs::Permissions::from_mode(0o640)).unwrap();
    assert_eq!(read_as_service(&key2).as_deref(), Some(KEY_B));
    let db = c.app("dr1").join("database.config");
    chown(&db, Some(0), Some(gid)).unwrap();
    std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o640)).unwrap();

    let bundle = c.export();
    let copy = c.path("copy.kfb");
    std::fs::copy(&bundle, &copy).unwrap();
    let r = import(&c, "web2", &bundle, &["--replace", "--json"]);
    r.assert_code(0);
    assert_eq!(
        owner_of(&key2),
        (65534, gid, 0o640),
        "owner, group and mode kept"
    );
    assert_eq!(read_as_service(&key2).as_deref(), Some(KEY_A));
    let a = &r.json()["plan"]["files"][0]["attributes"];
    assert_eq!(a["from"], "replaced", "{a}");
    assert_eq!(a["mode"], 0o640, "{a}");

    let r = import(&c, "dr1", &copy, &["--json"]);
    r.assert_code(0);
    let key3 = c.key_path("dr1");
    assert_eq!(
        owner_of(&key3),
        (0, gid, 0o640),
        "as database.config beside it"
    );
    assert_eq!(read_as_service(&key3).as_deref(), Some(KEY_A));
    let a = &r.json()["plan"]["files"][0]["attributes"];
    assert_eq!(a["from"], "sibling", "{a}");
    assert_eq!(a["name"], "database.config", "{a}");
    // Backups stay private: they are keyferry's, not the product's.
    let backups = c.path("web2/state/backups/web2");
    let dir = std::fs::read_dir(&backups)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    assert_eq!(owner_of(&dir.join("encryption.config")).2, 0o600);
    assert_eq!(read_as_service(&dir.join("encryption.config")), None);
}

/// Under Wine: the replaced file's DACL is carried to the new one. (Wine keeps the ACEs it
/// is given but drops the protected flag and cannot enforce them; that the service account
/// really reads the file can only be shown on real Windows.)
#[cfg(windows)]
#[test]
fn the_replaced_files_dacl_is_carried_to_the_new_one() {
    let c = Cluster::secret_server(KEY_A, Some(KEY_B));
    let key2 = c.key_path("web2");
    let before = keyferry::os::dacl_sddl(&key2).unwrap();
    let bundle = c.export();
    import(&c, "web2", &bundle, &["--replace"]).assert_code(0);
    assert_eq!(std::fs::read(&key2).unwrap(), KEY_A);
    assert_eq!(keyferry::os::dacl_sddl(&key2).unwrap(), before);
}

/// Two commands on one node: the second waits, then refuses with node-busy and changes
/// nothing. The race is made certain by holding the node's lock in the test.
#[test]
fn a_second_command_on_a_node_waits_then_refuses_and_changes_nothing() {
    let c = Cluster::secret_server(KEY_A, None);
    let bundle = c.export();
    let state = c.path("dr1/state");
    std::fs::create_dir_all(&state).unwrap();
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(state.join("lock"))
        .unwrap();
    lock.lock().unwrap();
    let r = c.assert_refused(
        "dr1",
        &argv!["keys", "import", &bundle, "--wait", "300ms"],
        "node-busy",
    );
    assert!(
        r.stderr().contains("another keyferry command"),
        "{}",
        r.stderr()
    );
    drop(lock);
    import(&c, "dr1", &bundle, &[]).assert_code(0);
}

/// `kill -9` during an import could leave `.keyferry-*.tmp` holding the plaintext key; the
/// next mutating command and `keys cleanup` remove such files.
#[test]
fn temp_files_left_by_a_crash_are_swept_by_cleanup_and_by_the_next_import() {
    let c = Cluster::secret_server(KEY_A, None);
    let left = c.app("dr1").join(".keyferry-4242-0-deadbeef.tmp");
    std::fs::write(&left, KEY_A).unwrap();
    let cleanup = || {
        keyferry(
            &argv!["keys", "cleanup", "-c", &c.cluster_file(), "--node", "dr1"],
            None,
        )
    };
    let r = cleanup();
    r.assert_code(0);
    assert!(!left.exists(), "{}", r.stdout());
    std::fs::write(&left, KEY_A).unwrap();
    let bundle = c.export();
    let r = import(&c, "dr1", &bundle, &[]);
    r.assert_code(0);
    assert!(!left.exists());
    assert!(r.stderr().contains("left by a crash"), "{}", r.stderr());
    // Names that only look similar are not keyferry's.
    let other = c.app("dr1").join(".keyferry-notes.txt");
    std::fs::write(&other, b"mine").unwrap();
    cleanup().assert_code(0);
    assert!(other.exists());
}

/// `diagnose --log /dev/zero` read 7 GB in 20 s; a saved report linked to /dev/zero took
/// audit to 9 GB; a FIFO as a saved report hung audit. Now each is refused at once.
#[cfg(unix)]
#[test]
fn devices_links_and_fifos_are_refused_not_read_without_end() {
    let c = Cluster::secret_server(KEY_A, None);
    let r = keyferry(&["diagnose", "--log", "/dev/zero", "--json"], None);
    r.assert_code(2);
    assert_eq!(r.json()["error"]["code"], "not-a-file");

    let link = c.path("web1.json");
    std::os::unix::fs::symlink("/dev/zero", &link).unwrap();
    let fifo = c.path("web2.json");
    rustix::fs::mknodat(
        rustix::fs::CWD,
        &fifo,
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o600),
        0,
    )
    .unwrap();
    let text = std::fs::read_to_string(c.cluster_file())
        .unwrap()
        .replace(
            "name = \"web1\"\n",
            "name = \"web1\"\naccess = \"report:web1.json\"\n",
        )
        .replace(
            "name = \"web2\"\n",
            "name = \"web2\"\naccess = \"report:web2.json\"\n",
        );
    std::fs::write(c.cluster_file(), text).unwrap();
    let r = keyferry(
        &argv![
            "audit",
            "-c",
            &c.cluster_file(),
            "--json",
            "--timeout",
            "5s"
        ],
        None,
    );
    r.assert_code(1);
    let j = r.json();
    for (i, what) in [(0, "symbolic link"), (1, "FIFO")] {
        let n = &j["nodes"][i];
        assert_eq!(n["status"], "rejected", "{n}");
        assert!(n["reason"].as_str().unwrap().contains(what), "{n}");
    }
    let r = keyferry(&argv!["shred", &fifo], None);
    r.assert_code(2);
    assert!(fifo.exists());
}

/// The application-folder digest read whole files into memory (a 3 GiB file cost 3.1 GB).
/// A sparse 1 GiB binary now costs a fixed buffer: the child's peak memory, measured by the
/// kernel (getrusage of children, through Python's resource module), stays far below it.
#[cfg(target_os = "linux")]
#[test]
fn the_app_folder_digest_streams_large_files() {
    let c = Cluster::secret_server(KEY_A, None);
    let big = c.app("web1").join("big.dll");
    std::fs::File::create(&big)
        .unwrap()
        .set_len(1024 * 1024 * 1024)
        .unwrap();
    let script = "import resource,subprocess,sys\n\
r=subprocess.run(sys.argv[1:],stdout=subprocess.DEVNULL)\n\
print(r.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)";
    let out = std::process::Command::new("python3")
        .args(["-c", script, bin(), "fingerprint", "--json", "-c"])
        .arg(c.cluster_file())
        .args(["--node", "web1"])
        .output()
        .expect("python3 runs the child and reads its peak memory");
    let text = String::from_utf8_lossy(&out.stdout);
    let mut parts = text.split_whitespace();
    assert_eq!(
        parts.next(),
        Some("0"),
        "{text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let max_kib: u64 = parts.next().unwrap().parse().unwrap();
    assert!(
        max_kib < 200 * 1024,
        "peak memory {max_kib} KiB hashing a 1 GiB file"
    );
}

/// A replaced key keeps the mode it had, even a careless one, but the admin is told.
#[cfg(unix)]
#[test]
fn a_world_readable_key_keeps_its_mode_and_the_import_says_so() {
    use std::os::unix::fs::PermissionsExt;
    let c = Cluster::secret_server(KEY_A, Some(KEY_B));
    let key2 = c.key_path("web2");
    std::fs::set_permissions(&key2, std::fs::Permissions::from_mode(0o644)).unwrap();
    let bundle = c.export();
    let r = import(&c, "web2", &bundle, &["--replace"]);
    r.assert_code(0);
    assert_eq!(mode(&key2), Some(0o644));
    assert!(
        r.stderr().contains("readable by every user"),
        "{}",
        r.stderr()
    );
    assert!(r.stderr().contains("chmod o-rwx"), "{}", r.stderr());
}

/// Once the keys are committed, later trouble (here: the ledger cannot be written) is a
/// warning in a successful report, not exit 2 with "nothing on disk was changed".
#[test]
fn trouble_after_the_commit_is_a_warning_not_a_failure() {
    let c = Cluster::secret_server(KEY_A, None);
    let bundle = c.export();
    std::fs::create_dir_all(c.path("dr1/state/ledger.json")).unwrap();
    let r = import(&c, "dr1", &bundle, &["--keep-bundle", "--json"]);
    r.assert_code(0);
    assert_eq!(std::fs::read(c.key_path("dr1")).unwrap(), KEY_A);
    let w = r.json()["warnings"].to_string();
    assert!(w.contains("could not be put on the ledger"), "{w}");
    assert!(w.contains("keyferry shred"), "{w}");
}

/// The way back: every replace leaves a backup; `keys restore` lists it with the old key
/// set's fingerprint and puts it back, backing up what it replaces.
#[test]
fn restore_lists_backups_and_puts_one_back() {
    let c = Cluster::secret_server(KEY_A, Some(KEY_B));
    let bundle = c.export();
    import(&c, "web2", &bundle, &["--replace"]).assert_code(0);
    let cluster = c.cluster_file();
    let run = |extra: &[&str]| {
        let mut a = Vec::from(argv![
            "keys", "restore", "-c", &cluster, "--node", "web2", "--json"
        ]);
        a.extend(extra.iter().map(OsString::from));
        keyferry(&a, None)
    };
    let list = run(&["--list"]);
    list.assert_code(0);
    let backups = list.json()["backups"].as_array().unwrap().clone();
    assert_eq!(backups.len(), 1);
    assert_eq!(
        backups[0]["fingerprint"],
        fingerprint_of(&[("encryption.config", KEY_B)])
    );
    let id = backups[0]["id"].as_str().unwrap();
    let r = run(&["--backup", id]);
    r.assert_code(0);
    assert_eq!(std::fs::read(c.key_path("web2")).unwrap(), KEY_B);
    assert!(
        r.json()["backup_dir"].is_string(),
        "what it replaced is backed up"
    );
    let list = run(&["--list"]);
    assert_eq!(list.json()["backups"].as_array().unwrap().len(), 2);
    // Saying neither which backup nor --list is a usage error that changes nothing.
    c.assert_refused_with(
        &argv!["keys", "restore", "-c", &cluster, "--node", "web2"],
        "usage",
    );
    // A backup name that is not one is refused and changes nothing.
    c.assert_refused_with(
        &argv![
            "keys",
            "restore",
            "-c",
            &cluster,
            "--node",
            "web2",
            "--backup",
            "../../etc"
        ],
        "invalid-input",
    );
}
