//! `keys push` through the real binary on real folders: a cluster whose nodes hold the same,
//! a different, or no key set, and a Proxy host. Refusals leave the refused node's files
//! byte-identical; no bundle or temp file is left anywhere.

use crate::common;
use common::*;
use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::PathBuf;

const KEY_A: &[u8] = b"\x01\x02PUSH-KEY-A\x00\xffprimary key bytes 0123456789";
const KEY_B: &[u8] = b"\x09\x08PUSH-KEY-B\x00\xfesecondary key bytes 987654";

fn push(c: &Cluster, extra: &[&str]) -> Run {
    push_env(c, extra, &[])
}

/// `keys push` from web1 with `extra` arguments (and `--json`), in `env`.
fn push_env(c: &Cluster, extra: &[&str], env: &[(&str, &str)]) -> Run {
    let cluster = c.cluster_file();
    let mut a = Vec::from(argv!["keys", "push", "-c", cluster, "--node", "web1"]);
    a.extend(extra.iter().map(OsString::from));
    a.push("--json".into());
    keyferry_env(&a, None, env)
}

fn target<'j>(j: &'j serde_json::Value, node: &str) -> &'j serde_json::Value {
    j["targets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["node"] == node)
        .unwrap_or_else(|| panic!("no {node} in {j}"))
}

/// The files under `node`'s folder.
fn node_files(c: &Cluster, node: &str) -> BTreeMap<PathBuf, Vec<u8>> {
    snapshot(&c.path(node))
}

/// Neither key's bytes appear in what keyferry printed.
fn no_key_bytes(r: &Run) {
    for k in [KEY_A, KEY_B] {
        for out in [&r.out.stdout, &r.out.stderr] {
            assert!(!out.windows(k.len()).any(|w| w == k), "key bytes in output");
        }
    }
}

#[test]
fn push_brings_every_node_to_the_primarys_keys_and_refuses_a_different_set_without_replace() {
    let c = Cluster::secret_server(KEY_A, Some(KEY_B));
    let all_before = c.snapshot();

    // A dry run plans every node and changes nothing.
    let r = push(&c, &["--dry-run"]);
    r.assert_code(1);
    no_key_bytes(&r);
    let j = r.json();
    assert_eq!(target(&j, "web2")["outcome"], "would-refuse");
    assert_eq!(target(&j, "dr1")["outcome"], "would-install");
    assert_eq!(target(&j, "proxy1")["outcome"], "skipped");
    assert_eq!(all_before, c.snapshot(), "a dry run changed files");

    // Without --replace: web2 (different keys) refused and untouched; dr1 gets the keys.
    let web2_before = node_files(&c, "web2");
    let r = push(&c, &[]);
    // Partly done (3): dr1 changed, web2 refused.
    r.assert_code(3);
    no_key_bytes(&r);
    let j = r.json();
    assert_eq!(j["ok"], false);
    let w2 = target(&j, "web2");
    assert_eq!(w2["outcome"], "refused");
    assert!(
        w2["detail"].as_str().unwrap().contains("key-set-differs"),
        "{w2}"
    );
    assert_eq!(w2["before"], w2["after"]);
    assert_eq!(
        web2_before,
        node_files(&c, "web2"),
        "a refused node changed"
    );
    assert_eq!(target(&j, "dr1")["outcome"], "installed");
    assert_eq!(std::fs::read(c.key_path("dr1")).unwrap(), KEY_A);
    assert_eq!(target(&j, "dr1")["after"], j["fingerprint"]);
    assert!(!c.key_path("proxy1").exists(), "a Proxy host needs no keys");

    // With --replace: web2 backed up, then given the primary's keys.
    let r = push(&c, &["--replace"]);
    r.assert_code(0);
    let j = r.json();
    let w2 = target(&j, "web2");
    assert_eq!(w2["outcome"], "installed");
    let backup = PathBuf::from(w2["backup_dir"].as_str().unwrap());
    assert_eq!(
        std::fs::read(backup.join("encryption.config")).unwrap(),
        KEY_B
    );
    assert_eq!(std::fs::read(c.key_path("web2")).unwrap(), KEY_A);
    assert_eq!(target(&j, "dr1")["outcome"], "unchanged");

    // Again: nothing to do anywhere.
    let r = push(&c, &[]);
    r.assert_code(0);
    let j = r.json();
    for n in ["web2", "dr1"] {
        assert_eq!(target(&j, n)["outcome"], "unchanged");
    }
    // No bundle, no temp file: only the keys, the product's files, and keyferry's lock and
    // backups in the primary's state folder.
    for (path, bytes) in c.snapshot() {
        if bytes == b"<dir>" {
            continue;
        }
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let rel = path.strip_prefix(c.dir.path()).unwrap().to_owned();
        let ok = matches!(
            name.as_str(),
            "encryption.config" | "database.config" | "web.config" | "cluster.toml" | "pass.txt"
        ) || rel.starts_with("web1/state");
        assert!(ok, "left behind: {}", rel.display());
    }
}

#[test]
fn push_refusals_change_nothing() {
    let c = Cluster::secret_server(KEY_A, Some(KEY_B));
    let cluster = c.cluster_file();
    let cl = cluster.to_str().unwrap();
    // From a node that is not the primary.
    c.assert_refused_with(&["keys", "push", "-c", cl, "--node", "web2"], "not-primary");
    // To a node that is not in the file, or to itself.
    let r = c.assert_refused_with(
        &["keys", "push", "-c", cl, "--node", "web1", "--to", "web9"],
        "invalid-input",
    );
    assert!(r.stderr().contains("web2"), "{}", r.stderr());
    c.assert_refused_with(
        &["keys", "push", "-c", cl, "--node", "web1", "--to", "web1"],
        "invalid-input",
    );
}

#[test]
fn push_reaches_a_node_through_its_reach_folder_and_says_when_it_cannot() {
    let c = Cluster::secret_server(KEY_A, None);
    // web2's paths are its own (not reachable from here); reach names where this machine
    // sees them (a share). dr1's share is missing.
    let text = std::fs::read_to_string(c.cluster_file()).unwrap();
    let share = c.path("share-web2");
    std::fs::rename(c.app("web2"), &share).unwrap();
    let text = text.replace(
        "name = \"web2\"",
        &format!("name = \"web2\"\nreach = {{ app = {share:?} }}"),
    );
    let text = text.replace(
        "name = \"dr1\"",
        &format!(
            "name = \"dr1\"\nreach = {{ app = {:?} }}",
            c.path("no-such-share")
        ),
    );
    std::fs::write(c.cluster_file(), text).unwrap();
    let dr1_before = node_files(&c, "dr1");
    let r = push(&c, &["--to", "web2", "--to", "dr1"]);
    r.assert_code(3);
    let j = r.json();
    assert_eq!(target(&j, "web2")["outcome"], "installed");
    assert_eq!(
        std::fs::read(share.join("encryption.config")).unwrap(),
        KEY_A
    );
    let d = target(&j, "dr1");
    assert_eq!(d["outcome"], "failed");
    assert!(
        d["detail"].as_str().unwrap().contains("cannot reach"),
        "{d}"
    );
    assert_eq!(dr1_before, node_files(&c, "dr1"));
    assert!(
        j["targets"].as_array().unwrap().len() == 2,
        "--to limits the push: {j}"
    );
}

/// Over a real OpenSSH server on loopback: the key set goes as a push stream on the stdin of
/// `keyferry keys import -` on the node, whose own state folder gets the backup; the node's
/// refusal comes back as a refusal, with its files unchanged.
#[cfg(unix)]
#[test]
fn push_over_real_ssh_installs_through_the_nodes_own_import() {
    let c = Cluster::secret_server(KEY_A, Some(KEY_B));
    let Some(sshd) = Sshd::start(c.dir.path()) else {
        return;
    };
    // Each side's temp folder is one of the test's own, to show that nothing lands there:
    // the pushing keyferry's through TMPDIR, web2's through the program ssh runs there.
    let (tmp_here, tmp_there) = (c.path("tmp-web1"), c.path("tmp-web2"));
    for t in [&tmp_here, &tmp_there] {
        std::fs::create_dir(t).unwrap();
    }
    let remote = keyferry_wrapper(
        &c.path("web2-keyferry"),
        "",
        &format!("env TMPDIR={tmp_there:?} TMP={tmp_there:?} "),
    );
    // Two nodes over ssh in different states: web2 holds another key set, dr1 none.
    let mut text = std::fs::read_to_string(c.cluster_file()).unwrap();
    for n in ["web2", "dr1"] {
        text = text.replace(
            &format!("name = \"{n}\""),
            &format!(
                "name = \"{n}\"\naccess = \"ssh://root@127.0.0.1:{}\"\nremote_keyferry = {:?}",
                sshd.port, remote
            ),
        );
    }
    std::fs::write(c.cluster_file(), text).unwrap();
    let cfg = sshd.config.to_str().unwrap().to_owned();
    let tmp_env = tmp_here.to_str().unwrap().to_owned();
    let ssh = |extra: &[&str]| {
        let mut a = vec!["--ssh-config", cfg.as_str(), "--to", "web2", "--to", "dr1"];
        a.extend_from_slice(extra);
        push_env(&c, &a, &[("TMPDIR", &tmp_env), ("TMP", &tmp_env)])
    };

    let web2_before = node_files(&c, "web2");
    let r = ssh(&["--dry-run"]);
    r.assert_code(1);
    let w = target(&r.json(), "web2").clone();
    assert_eq!(w["outcome"], "would-refuse", "{w}");
    assert!(w["via"]
        .as_str()
        .unwrap()
        .starts_with("ssh://root@127.0.0.1:"));
    assert_eq!(target(&r.json(), "dr1")["outcome"], "would-install");
    assert!(!c.key_path("dr1").exists(), "a dry run installed");
    // One push, two states: dr1 gets the keys, web2 is refused and unchanged.
    let r = ssh(&[]);
    r.assert_code(3);
    no_key_bytes(&r);
    let d = target(&r.json(), "dr1").clone();
    assert_eq!(d["outcome"], "installed", "{d}");
    assert_eq!(d["after"], r.json()["fingerprint"]);
    assert_eq!(std::fs::read(c.key_path("dr1")).unwrap(), KEY_A);
    let w = target(&r.json(), "web2").clone();
    assert_eq!(w["outcome"], "refused", "{w}");
    assert!(
        w["detail"].as_str().unwrap().contains("key-set-differs"),
        "{w}"
    );
    assert_eq!(
        web2_before,
        node_files(&c, "web2"),
        "a refused node changed"
    );

    let r = ssh(&["--replace"]);
    r.assert_code(0);
    no_key_bytes(&r);
    let w = target(&r.json(), "web2").clone();
    assert_eq!(w["outcome"], "installed", "{w}");
    assert_eq!(w["after"], r.json()["fingerprint"]);
    let backup = PathBuf::from(w["backup_dir"].as_str().unwrap());
    assert!(
        backup.starts_with(c.path("web2").join("state")),
        "the node's own import keeps its backup: {}",
        backup.display()
    );
    assert_eq!(
        std::fs::read(backup.join("encryption.config")).unwrap(),
        KEY_B
    );
    assert_eq!(std::fs::read(c.key_path("web2")).unwrap(), KEY_A);
    assert_eq!(target(&r.json(), "dr1")["outcome"], "unchanged");
    let r = ssh(&[]);
    r.assert_code(0);
    assert_eq!(target(&r.json(), "web2")["outcome"], "unchanged");
    assert_eq!(target(&r.json(), "dr1")["outcome"], "unchanged");
    // Nothing at rest: both temp folders are empty; web2 holds its application files, the
    // installed key, the one backup and keyferry's lock file, and nothing else.
    for t in [&tmp_here, &tmp_there] {
        let left: Vec<_> = std::fs::read_dir(t)
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .collect();
        assert!(left.is_empty(), "left in a temp folder: {left:?}");
    }
    let web2: Vec<PathBuf> = node_files(&c, "web2")
        .into_keys()
        .filter(|p| p.is_file())
        .map(|p| p.strip_prefix(c.path("web2")).unwrap().to_owned())
        .collect();
    let backup_rel = backup.strip_prefix(c.path("web2")).unwrap();
    assert_eq!(
        web2,
        [
            PathBuf::from("app/database.config"),
            PathBuf::from("app/encryption.config"),
            PathBuf::from("app/web.config"),
            backup_rel.join("backup.json"),
            backup_rel.join("encryption.config"),
            PathBuf::from("state/lock"),
        ],
        "web2 holds more than its files, its key, the backup and keyferry's lock"
    );
    let dr1: Vec<PathBuf> = node_files(&c, "dr1")
        .into_keys()
        .filter(|p| p.is_file())
        .map(|p| p.strip_prefix(c.path("dr1")).unwrap().to_owned())
        .collect();
    assert_eq!(
        dr1,
        [
            "app/database.config",
            "app/encryption.config",
            "app/web.config",
            "state/lock"
        ]
        .map(PathBuf::from),
        "dr1 holds more than its files, its new key and keyferry's lock"
    );
    // No bundle or stream file in any node's folders, keyferry's own state included.
    for (path, bytes) in c.snapshot() {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        assert!(
            !name.ends_with(".kfb") && !name.contains(".keyferry-") && !name.ends_with(".tmp"),
            "left behind: {}",
            path.display()
        );
        assert!(
            !bytes.starts_with(b"keyferry-push"),
            "a push stream at rest: {}",
            path.display()
        );
    }
}

/// `keys import -` takes only a push stream: anything else on stdin, or a passphrase option
/// beside it, is refused and changes nothing.
#[test]
fn import_from_stdin_takes_only_a_push_stream() {
    let c = Cluster::secret_server(KEY_A, Some(KEY_B));
    let before = c.snapshot();
    let cluster = c.cluster_file();
    let args = argv!["keys", "import", "-", "--json", "--batch", "-c", &cluster, "--node", "dr1",];
    for junk in [
        &b"not a stream\n"[..],
        b"keyferry-push 1\nno newline after",
        b"",
    ] {
        let r = keyferry(&args, Some(junk));
        r.assert_code(2);
        assert_eq!(r.json()["error"]["code"], "bundle-format", "{}", r.stdout());
    }
    // A real stream with a wrong passphrase line.
    let r = keyferry(
        &args,
        Some(b"keyferry-push 1\nwrong words here\nage-encryption.org/v1\n"),
    );
    r.assert_code(2);
    let pass = c.path("pass.txt");
    let mut with_file = args.to_vec();
    with_file.extend(argv!["--passphrase-file", pass]);
    let r = keyferry(&with_file, Some(b"keyferry-push 1\n"));
    r.assert_code(2);
    assert!(r.stdout().contains("push stream"), "{}", r.stdout());
    assert_eq!(before, c.snapshot());
}

/// A node whose `encryption.config` is a DPAPI blob this machine cannot decrypt (here: the
/// real Windows sample, on Linux or under Wine, where it was not made): whether it holds the
/// primary's key cannot be told from here, so it is never replaced, not even with
/// `--replace`; the dry run says "cannot compare" and names the protection; web2's files stay
/// byte-identical. (On the node itself, where DPAPI decrypts it, it is compared by its
/// plaintext and, replaced, protected again.)
#[test]
fn a_dpapi_key_that_cannot_be_decrypted_here_is_never_replaced() {
    let sample = include_bytes!("fixtures/dpapi/windows-machine-aes256.bin");
    let c = Cluster::secret_server(KEY_A, Some(KEY_B));
    std::fs::write(c.key_path("web2"), sample).unwrap();
    let before = node_files(&c, "web2");
    let r = push(&c, &["--to", "web2", "--dry-run"]);
    r.assert_code(1);
    let w2 = target(&r.json(), "web2").clone();
    assert_eq!(w2["outcome"], "would-refuse", "{w2}");
    assert!(
        w2["detail"].as_str().unwrap().contains("cannot decrypt"),
        "{w2}"
    );
    for extra in [&["--to", "web2"][..], &["--to", "web2", "--replace"]] {
        let r = push(&c, extra);
        r.assert_code(2);
        let w2 = target(&r.json(), "web2").clone();
        assert_eq!(w2["outcome"], "refused", "{extra:?}: {w2}");
        assert!(
            w2["detail"]
                .as_str()
                .unwrap()
                .contains("dpapi-undecryptable"),
            "{w2}"
        );
        assert_eq!(before, node_files(&c, "web2"), "{extra:?}");
        no_key_bytes(&r);
    }
}

/// The dry run's table says what each node would hold (`would be = primary` where keys would
/// be installed, not "none"), and a node whose keys differ gets the command that would
/// replace them, naming it.
#[test]
fn a_dry_run_says_what_would_be_and_how_to_replace() {
    let c = Cluster::secret_server(KEY_A, Some(KEY_B));
    let cluster = c.cluster_file();
    let r = keyferry(
        &argv![
            "keys",
            "push",
            "-c",
            &cluster,
            "--node",
            "web1",
            "--dry-run"
        ],
        None,
    );
    r.assert_code(1);
    let out = r.stdout();
    let dr1 = out.lines().find(|l| l.contains("dr1")).unwrap_or_default();
    assert!(dr1.contains("would be = primary"), "{out}");
    assert!(
        out.contains("run the push again with --replace --to web2"),
        "{out}"
    );
    no_key_bytes(&r);
}

/// A push that reached web2 by path kept web2's replaced key on web1 (the pushing node's
/// state folder). From here `keys restore --node web2 --list` shows it, saying who keeps it
/// and where, and `--backup ID` puts web2's key back through the same folders.
#[test]
fn backups_a_path_push_kept_on_the_pushing_node_are_listed_and_restored_from_there() {
    let c = Cluster::secret_server(b"KEY-A primary", Some(b"KEY-B web2's own"));
    push(&c, &["--replace", "--to", "web2"]).assert_code(0);
    assert_eq!(std::fs::read(c.key_path("web2")).unwrap(), b"KEY-A primary");
    let cl = c.cluster_file();
    let restore = |extra: &[&str]| {
        let mut a = Vec::from(argv!["keys", "restore", "-c", &cl, "--node", "web2"]);
        a.extend(extra.iter().map(OsString::from));
        keyferry(&a, None)
    };
    let r = restore(&["--list", "--json"]);
    r.assert_code(0);
    let backups = r.json()["backups"].as_array().unwrap().clone();
    assert_eq!(backups.len(), 1, "{backups:?}");
    assert_eq!(backups[0]["kept_by"], "web1");
    assert!(backups[0]["dir"]
        .as_str()
        .unwrap()
        .contains(&c.path("web1").join("state").display().to_string()));
    let text = restore(&["--list"]);
    assert!(text.stdout().contains("kept by web1"), "{}", text.stdout());
    let id = backups[0]["id"].as_str().unwrap().to_owned();
    restore(&["--backup", &id]).assert_code(0);
    assert_eq!(
        std::fs::read(c.key_path("web2")).unwrap(),
        b"KEY-B web2's own"
    );
}

/// A backup name held by two state folders (web2's own and the one web1 kept for it) is
/// refused, saying so: exit 2, and every node's files are byte for byte as they were.
#[test]
fn a_backup_name_two_state_folders_hold_is_refused_and_changes_nothing() {
    let c = Cluster::secret_server(b"KEY-A primary", Some(b"KEY-B web2's own"));
    push(&c, &["--replace", "--to", "web2"]).assert_code(0);
    let kept = c.path("web1").join("state").join("backups").join("web2");
    let id = std::fs::read_dir(&kept)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .file_name();
    let own = c
        .path("web2")
        .join("state")
        .join("backups")
        .join("web2")
        .join(&id);
    std::fs::create_dir_all(&own).unwrap();
    for f in std::fs::read_dir(kept.join(&id)).unwrap() {
        let f = f.unwrap();
        std::fs::copy(f.path(), own.join(f.file_name())).unwrap();
    }
    let before = c.snapshot();
    let cl = c.cluster_file();
    let r = keyferry(
        &argv!["keys", "restore", "-c", &cl, "--node", "web2", "--backup", &id],
        None,
    );
    r.assert_code(2);
    assert!(
        r.stderr().contains("more than one state folder"),
        "{}",
        r.stderr()
    );
    assert_eq!(c.snapshot(), before);
}
