//! `keys export` / `keys import` / `keys inspect` / `keys cleanup` through the real binary on
//! real files. Every refusal checks that the cluster's files are byte-identical afterwards.

use crate::common;
use common::*;
use std::ffi::OsString;
use std::path::Path;

const KEY_A: &[u8] = b"\x01\x02ENCRYPTION-CONFIG-A\x00\xffprimary key bytes 0123456789";
const KEY_B: &[u8] = b"\x09\x08ENCRYPTION-CONFIG-B\x00\xfesecondary key bytes 987654";

fn import(c: &Cluster, node: &str, bundle: &Path, extra: &[&str]) -> Run {
    let mut args = Vec::from(argv!["keys", "import", bundle]);
    args.extend(extra.iter().map(OsString::from));
    c.keyferry_node(node, &args)
}

/// Runs an import that must be refused with `code`, and checks nothing on disk changed and
/// that the refusal says what to do.
fn assert_refused(c: &Cluster, node: &str, bundle: &Path, extra: &[&str], code: &str) -> Run {
    let mut args = Vec::from(argv!["keys", "import", bundle]);
    args.extend(extra.iter().map(OsString::from));
    let r = c.assert_refused(node, &args, code);
    assert!(
        r.stderr().contains("error:") && r.stderr().contains("hint:"),
        "{}",
        r.stderr()
    );
    r
}

#[test]
fn export_then_import_installs_on_missing_node_and_removes_bundle() {
    let c = Cluster::secret_server(KEY_A, None);
    let bundle = c.export();
    let text = std::fs::read_to_string(&bundle).unwrap();
    assert!(text.starts_with("-----BEGIN AGE ENCRYPTED FILE-----"));
    #[cfg(unix)]
    assert_eq!(common::mode(&bundle), Some(0o600));

    let r = import(&c, "dr1", &bundle, &[]);
    r.assert_code(0);
    assert_eq!(std::fs::read(c.key_path("dr1")).unwrap(), KEY_A);
    // A new key file takes what the product's own file beside it has (database.config,
    // 0644 here), less any access for everyone else.
    #[cfg(unix)]
    {
        assert_eq!(
            common::mode(&c.app("dr1").join("database.config")),
            Some(0o644)
        );
        assert_eq!(common::mode(&c.key_path("dr1")), Some(0o640));
    }
    assert!(!bundle.exists(), "bundle removed after import");
    assert!(r.stderr().contains("--keep-bundle"), "{}", r.stderr());
    assert!(r.stdout().contains("installed"), "{}", r.stdout());
    assert!(
        r.stdout().contains("overwritten and removed")
            || r.stdout().contains("removed (not overwritten"),
        "{}",
        r.stdout()
    );
    // Node-local files untouched.
    assert_eq!(
        std::fs::read(c.app("dr1").join("database.config")).unwrap(),
        b"db for dr1\n"
    );
}

#[test]
fn export_prints_fingerprint_that_matches_fingerprint_command() {
    let c = Cluster::secret_server(KEY_A, None);
    let out = c.path("b.kfb");
    let r = c.keyferry_node("web1", &argv!["keys", "export", "-o", &out]);
    r.assert_code(0);
    let fp = keyferry(
        &argv!["fingerprint", "-c", &c.cluster_file(), "--node", "web1"],
        None,
    );
    fp.assert_code(0);
    let want = fingerprint_of(&[("encryption.config", KEY_A)]);
    assert_eq!(r.stdout().trim(), want);
    assert_eq!(fp.stdout().lines().next().unwrap(), want);
}

#[test]
fn same_keys_is_a_no_op_that_keeps_the_bundle() {
    let c = Cluster::secret_server(KEY_A, Some(KEY_A));
    let bundle = c.export();
    let key_before = std::fs::read(c.key_path("web2")).unwrap();
    let r = import(&c, "web2", &bundle, &["--json"]);
    r.assert_code(0);
    assert_eq!(r.json()["outcome"], "unchanged");
    assert_eq!(std::fs::read(c.key_path("web2")).unwrap(), key_before);
    assert!(bundle.exists(), "the bundle stays");
    // ... and is on the ledger, so keys cleanup keeps the promise it is given.
    let ledger = std::fs::read_to_string(c.path("web2/state/ledger.json")).unwrap();
    assert!(ledger.contains("kept-after-import"), "{ledger}");
    let r = keyferry(
        &argv!["keys", "cleanup", "-c", &c.cluster_file(), "--node", "web2"],
        None,
    );
    r.assert_code(0);
    assert!(!bundle.exists(), "{}", r.stdout());
}

#[test]
fn different_keys_refused_without_replace() {
    let c = Cluster::secret_server(KEY_A, Some(KEY_B));
    let bundle = c.export();
    let r = assert_refused(&c, "web2", &bundle, &[], "key-set-differs");
    assert!(r.stderr().contains("--replace"));
}

#[test]
fn replace_backs_up_then_installs() {
    let c = Cluster::secret_server(KEY_A, Some(KEY_B));
    let bundle = c.export();
    let r = import(&c, "web2", &bundle, &["--replace", "--json"]);
    r.assert_code(0);
    let j = r.json();
    assert_eq!(j["outcome"], "installed");
    assert_eq!(j["plan"]["files"][0]["action"], "replace");
    assert_eq!(std::fs::read(c.key_path("web2")).unwrap(), KEY_A);
    let backup_dir = Path::new(j["backup_dir"].as_str().unwrap()).to_path_buf();
    assert!(
        backup_dir.starts_with(c.path("web2/state/backups/web2")),
        "{backup_dir:?}"
    );
    let backup = backup_dir.join("encryption.config");
    assert_eq!(std::fs::read(&backup).unwrap(), KEY_B);
    #[cfg(unix)]
    {
        assert_eq!(common::mode(&backup), Some(0o600));
        assert_eq!(common::mode(&backup_dir), Some(0o700));
    }
    assert_eq!(j["bundle_kept"], false);
    assert!(!bundle.exists());
}

#[test]
fn dry_run_changes_nothing() {
    let c = Cluster::secret_server(KEY_A, Some(KEY_B));
    let bundle = c.export();
    let before = c.snapshot();
    let r = import(&c, "web2", &bundle, &["--replace", "--dry-run"]);
    r.assert_code(0);
    assert!(r.stdout().contains("would replace"), "{}", r.stdout());
    assert_eq!(before, c.snapshot());
}

#[test]
fn keep_bundle_records_it_and_cleanup_removes_it() {
    let c = Cluster::secret_server(KEY_A, None);
    let bundle = c.export();
    import(&c, "dr1", &bundle, &["--keep-bundle"]).assert_code(0);
    assert!(bundle.exists());
    let ledger = std::fs::read_to_string(c.path("dr1/state/ledger.json")).unwrap();
    assert!(ledger.contains("kept-after-import"), "{ledger}");
    let cluster = c.cluster_file();
    let dry = keyferry(
        &argv![
            "keys",
            "cleanup",
            "-c",
            &cluster,
            "--node",
            "dr1",
            "--dry-run"
        ],
        None,
    );
    dry.assert_code(0);
    assert!(dry.stdout().contains("would remove"), "{}", dry.stdout());
    assert!(bundle.exists());
    let r = keyferry(
        &argv!["keys", "cleanup", "-c", &cluster, "--node", "dr1"],
        None,
    );
    r.assert_code(0);
    assert!(!bundle.exists());
    // The exporting node's ledger also knows the bundle; it is already gone there.
    let r = keyferry(
        &argv!["keys", "cleanup", "-c", &cluster, "--node", "web1", "--json"],
        None,
    );
    r.assert_code(0);
    assert_eq!(r.json()["already_gone"].as_array().unwrap().len(), 1);
}

#[test]
fn cleanup_leaves_a_file_that_is_no_longer_a_bundle() {
    let c = Cluster::secret_server(KEY_A, None);
    let bundle = c.export();
    std::fs::write(&bundle, b"someone's notes").unwrap();
    let r = keyferry(
        &argv![
            "keys",
            "cleanup",
            "-c",
            &c.cluster_file(),
            "--node",
            "web1",
            "--json"
        ],
        None,
    );
    r.assert_code(0);
    assert_eq!(r.json()["left_alone"].as_array().unwrap().len(), 1);
    assert_eq!(std::fs::read(&bundle).unwrap(), b"someone's notes");
}

#[test]
fn refuses_wrong_passphrase() {
    let c = Cluster::secret_server(KEY_A, None);
    let bundle = c.export();
    c.write_passphrase_file("pass.txt", "not the passphrase");
    assert_refused(&c, "dr1", &bundle, &[], "wrong-passphrase");
}

#[test]
fn refuses_tampered_and_non_age_files() {
    let c = Cluster::secret_server(KEY_A, None);
    let bundle = c.export();
    // Flip one base64 character in the last armored payload line.
    let text = std::fs::read_to_string(&bundle).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let target = lines.len() - 2;
    let mut out = Vec::new();
    for (i, l) in lines.iter().enumerate() {
        if i == target {
            let mut b = l.as_bytes().to_vec();
            b[3] = if b[3] == b'A' { b'B' } else { b'A' };
            out.push(String::from_utf8(b).unwrap());
        } else {
            out.push(l.to_string());
        }
    }
    std::fs::write(&bundle, out.join("\n") + "\n").unwrap();
    assert_refused(&c, "dr1", &bundle, &[], "bundle-corrupt");

    // Not an age file at all is not an attack: it is the wrong file.
    std::fs::write(&bundle, b"PK\x03\x04 not an age file").unwrap();
    let r = assert_refused(&c, "dr1", &bundle, &[], "bundle-format");
    assert!(
        r.stderr().contains("not a keyferry bundle"),
        "{}",
        r.stderr()
    );
    assert!(!r.stderr().contains("tampered"), "{}", r.stderr());
    let r = keyferry(
        &argv![
            "keys",
            "inspect",
            &c.cluster_file(),
            "--passphrase-file",
            &c.path("pass.txt")
        ],
        None,
    );
    r.assert_code(2);
    assert!(
        r.stderr().contains("not a keyferry bundle"),
        "{}",
        r.stderr()
    );
}

#[test]
fn refuses_unknown_format_or_version() {
    let c = Cluster::secret_server(KEY_A, None);
    let b = c.path("v2.kfb");
    let mut p = plaintext(
        &header(&[("encryption.config", KEY_A)], "2099-01-01T00:00:00Z"),
        &[KEY_A],
    );
    p[16] = b'2';
    seal_raw(&p, PASSPHRASE, &b);
    let r = assert_refused(&c, "dr1", &b, &[], "bundle-format");
    assert!(r.stderr().contains("version 2"), "{}", r.stderr());
    seal_raw(b"just some text\n", PASSPHRASE, &b);
    assert_refused(&c, "dr1", &b, &[], "bundle-format");
}

#[test]
fn refuses_expired_unless_allowed_loudly() {
    let c = Cluster::secret_server(KEY_A, None);
    let b = c.path("old.kfb");
    let p = plaintext(
        &header(&[("encryption.config", KEY_A)], "2026-01-01T02:00:00Z"),
        &[KEY_A],
    );
    seal_raw(&p, PASSPHRASE, &b);
    assert_refused(&c, "dr1", &b, &[], "bundle-expired");
    let r = import(&c, "dr1", &b, &["--allow-expired"]);
    r.assert_code(0);
    assert!(r.stderr().contains("EXPIRED"), "{}", r.stderr());
    assert_eq!(std::fs::read(c.key_path("dr1")).unwrap(), KEY_A);
}

#[test]
fn refuses_bad_entry_names() {
    let c = Cluster::secret_server(KEY_A, None);
    let b = c.path("names.kfb");
    for name in [
        "../encryption.config",
        "/etc/passwd",
        "C:\\x",
        "sub/encryption.config",
        "database.config",
        "other.config",
    ] {
        let p = plaintext(&header(&[(name, KEY_A)], "2099-01-01T00:00:00Z"), &[KEY_A]);
        seal_raw(&p, PASSPHRASE, &b);
        assert_refused(&c, "dr1", &b, &[], "bad-entry-name");
    }
    // Duplicates.
    let entries = [("encryption.config", KEY_A), ("encryption.config", KEY_A)];
    let p = plaintext(&header(&entries, "2099-01-01T00:00:00Z"), &[KEY_A, KEY_A]);
    seal_raw(&p, PASSPHRASE, &b);
    assert_refused(&c, "dr1", &b, &[], "bad-entry-name");
}

#[test]
fn refuses_hash_and_fingerprint_mismatch() {
    let c = Cluster::secret_server(KEY_A, None);
    let b = c.path("hash.kfb");
    // Header describes KEY_A, content is KEY_B of the same length? Lengths differ, so pad.
    let mut other = KEY_A.to_vec();
    other[0] ^= 0xff;
    let p = plaintext(
        &header(&[("encryption.config", KEY_A)], "2099-01-01T00:00:00Z"),
        &[&other],
    );
    seal_raw(&p, PASSPHRASE, &b);
    assert_refused(&c, "dr1", &b, &[], "integrity-mismatch");

    let mut h = header(&[("encryption.config", KEY_A)], "2099-01-01T00:00:00Z");
    h["fingerprint"] = fingerprint_of(&[("encryption.config", KEY_B)]).into();
    seal_raw(&plaintext(&h, &[KEY_A]), PASSPHRASE, &b);
    assert_refused(&c, "dr1", &b, &[], "integrity-mismatch");
}

#[test]
fn refuses_proxy_role_and_other_profile_or_cluster() {
    let c = Cluster::secret_server(KEY_A, None);
    let bundle = c.export();
    assert_refused(&c, "proxy1", &bundle, &[], "wrong-role");

    let b = c.path("ps.kfb");
    let mut h = header(&[("keys.exp", KEY_A)], "2099-01-01T00:00:00Z");
    h["profile"] = "privilege-secure".into();
    h["entries"][0]["roles"] = serde_json::json!(["secondary", "dr"]);
    seal_raw(&plaintext(&h, &[KEY_A]), PASSPHRASE, &b);
    assert_refused(&c, "dr1", &b, &[], "wrong-profile");

    let mut h = header(&[("encryption.config", KEY_A)], "2099-01-01T00:00:00Z");
    h["cluster"] = "ss-test".into();
    seal_raw(&plaintext(&h, &[KEY_A]), PASSPHRASE, &b);
    assert_refused(&c, "dr1", &b, &[], "wrong-cluster");
}

#[cfg(unix)]
#[test]
fn refuses_symlink_at_destination() {
    let c = Cluster::secret_server(KEY_A, None);
    let bundle = c.export();
    let target = c.path("elsewhere");
    std::fs::write(&target, b"do not touch").unwrap();
    std::os::unix::fs::symlink(&target, c.key_path("dr1")).unwrap();
    assert_refused(&c, "dr1", &bundle, &["--replace"], "unsafe-destination");
    assert_eq!(std::fs::read(&target).unwrap(), b"do not touch");
}

#[test]
fn refuses_missing_app_folder() {
    let c = Cluster::secret_server(KEY_A, None);
    let bundle = c.export();
    std::fs::remove_dir_all(c.app("dr1")).unwrap();
    assert_refused(&c, "dr1", &bundle, &[], "folder-missing");
}

#[cfg(unix)]
#[test]
fn passphrase_file_readable_by_others_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let c = Cluster::secret_server(KEY_A, None);
    let bundle = c.export();
    std::fs::set_permissions(c.path("pass.txt"), std::fs::Permissions::from_mode(0o644)).unwrap();
    let r = assert_refused(&c, "dr1", &bundle, &[], "passphrase");
    assert!(r.stderr().contains("chmod 600"), "{}", r.stderr());
}

/// A passphrase file others may write (0622: another user replaced its content in the field)
/// or that another user owns is refused, whatever its read bits.
#[cfg(unix)]
#[test]
fn passphrase_file_others_may_write_or_another_user_owns_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let c = Cluster::secret_server(KEY_A, None);
    let bundle = c.export();
    let pass = c.path("pass.txt");
    for mode in [0o622, 0o620, 0o602, 0o610] {
        std::fs::set_permissions(&pass, std::fs::Permissions::from_mode(mode)).unwrap();
        let r = assert_refused(&c, "dr1", &bundle, &[], "passphrase");
        assert!(
            r.stderr().contains("owner only"),
            "{mode:o}: {}",
            r.stderr()
        );
    }
    std::fs::set_permissions(&pass, std::fs::Permissions::from_mode(0o600)).unwrap();
    if rustix::process::geteuid().is_root() {
        std::os::unix::fs::chown(&pass, Some(65534), None).unwrap();
        let r = assert_refused(&c, "dr1", &bundle, &[], "passphrase");
        assert!(
            r.stderr().contains("belongs to user 65534"),
            "{}",
            r.stderr()
        );
        std::os::unix::fs::chown(&pass, Some(0), None).unwrap();
    }
    import(&c, "dr1", &bundle, &[]).assert_code(0);
}

#[test]
fn passphrase_from_standard_input_descriptor() {
    let c = Cluster::secret_server(KEY_A, None);
    let bundle = c.export();
    let r = keyferry(
        &argv![
            "keys",
            "import",
            &bundle,
            "-c",
            &c.cluster_file(),
            "--node",
            "dr1",
            "--passphrase-fd",
            "0"
        ],
        Some(format!("{PASSPHRASE}\n").as_bytes()),
    );
    r.assert_code(0);
    assert_eq!(std::fs::read(c.key_path("dr1")).unwrap(), KEY_A);
}

#[test]
fn no_terminal_and_no_passphrase_source_fails_fast() {
    let c = Cluster::secret_server(KEY_A, None);
    let bundle = c.export();
    let before = c.snapshot();
    let cl = c.cluster_file();
    let r = keyferry(
        &argv!["keys", "import", &bundle, "-c", &cl, "--node", "dr1", "--batch"],
        None,
    );
    r.assert_code(2);
    assert!(r.stderr().contains("--passphrase-file"), "{}", r.stderr());
    // Export with a generated passphrase needs a terminal to show it on.
    let out = c.path("x.kfb");
    let r = keyferry(
        &argv!["keys", "export", "-c", &cl, "--node", "web1", "-o", &out],
        None,
    );
    r.assert_code(2);
    assert!(r.stderr().contains("--passphrase-file"), "{}", r.stderr());
    assert_eq!(before, c.snapshot());
}

#[test]
fn export_refuses_existing_output_without_force() {
    let c = Cluster::secret_server(KEY_A, None);
    let out = c.path("exists.kfb");
    std::fs::write(&out, b"keep me").unwrap();
    let before = c.snapshot();
    let r = c.keyferry_node("web1", &argv!["keys", "export", "-o", &out, "--json"]);
    r.assert_code(2);
    assert_eq!(r.json()["error"]["code"], "output-exists");
    assert_eq!(before, c.snapshot());
    c.keyferry_node("web1", &argv!["keys", "export", "-o", &out, "--force"])
        .assert_code(0);
    assert!(std::fs::read_to_string(&out)
        .unwrap()
        .starts_with("-----BEGIN AGE"));
}

#[test]
fn export_refuses_node_without_keys_and_changes_nothing() {
    let c = Cluster::secret_server(KEY_A, None);
    let out = c.path("x.kfb");
    c.assert_refused(
        "dr1",
        &argv!["keys", "export", "-o", &out, "--from-non-primary"],
        "key-file-missing",
    );
}

/// The primary's key is the source of truth: exporting elsewhere needs a flag and says why;
/// a proxy has nothing to export, and the hint points at the primary, not at an import.
#[test]
fn export_from_a_node_that_is_not_the_primary_needs_a_flag_and_says_why() {
    let c = Cluster::secret_server(KEY_A, Some(KEY_B));
    let out = c.path("x.kfb");
    let o = out.as_os_str();
    let r = c.assert_refused("web2", &argv!["keys", "export", "-o", o], "not-primary");
    assert!(r.stderr().contains("source of truth"), "{}", r.stderr());
    assert!(r.stderr().contains("--from-non-primary"), "{}", r.stderr());
    let r = c.assert_refused(
        "proxy1",
        &argv!["keys", "export", "-o", o],
        "nothing-to-export",
    );
    assert!(r.stderr().contains("on the primary"), "{}", r.stderr());
    assert!(!r.stderr().contains("run the import"), "{}", r.stderr());
    c.keyferry_node(
        "web2",
        &argv!["keys", "export", "-o", o, "--from-non-primary"],
    )
    .assert_code(0);
}

/// Replacing the primary's key set needs --replace-primary on top of --replace, and the
/// refusal says what the admin is about to do.
#[test]
fn replacing_the_primarys_keys_needs_its_own_flag() {
    let c = Cluster::secret_server(KEY_A, Some(KEY_B));
    let out = c.path("b.kfb");
    let o = out.as_os_str();
    c.keyferry_node(
        "web2",
        &argv!["keys", "export", "-o", o, "--from-non-primary"],
    )
    .assert_code(0);
    for extra in [&[][..], &["--replace"][..]] {
        let mut a = Vec::from(argv!["keys", "import", o]);
        a.extend(extra.iter().map(OsString::from));
        let r = c.assert_refused("web1", &a, "replaces-primary");
        assert!(
            r.stderr().contains("encrypts the database"),
            "{}",
            r.stderr()
        );
    }
    let r = import(&c, "web1", &out, &["--replace", "--replace-primary"]);
    r.assert_code(0);
    assert_eq!(std::fs::read(c.key_path("web1")).unwrap(), KEY_B);
}

/// A dry run on a node with a different key shows the plan, says what would be refused and
/// why, says the bundle would be removed, and exits 0 changing nothing.
#[test]
fn dry_run_shows_what_would_be_refused_and_exits_0() {
    let c = Cluster::secret_server(KEY_A, Some(KEY_B));
    let bundle = c.export();
    let before = c.snapshot();
    let r = import(&c, "web2", &bundle, &["--dry-run"]);
    r.assert_code(0);
    assert!(r.stdout().contains("would replace"), "{}", r.stdout());
    assert!(
        r.stdout().contains("would be refused [key-set-differs]"),
        "{}",
        r.stdout()
    );
    assert!(r.stdout().contains("--keep-bundle"), "{}", r.stdout());
    assert!(
        !r.stderr().contains("see the plan with --dry-run"),
        "{}",
        r.stderr()
    );
    assert_eq!(before, c.snapshot());
    let j = import(&c, "web2", &bundle, &["--dry-run", "--json"]).json();
    assert_eq!(j["would_refuse"]["code"], "key-set-differs");
    assert_eq!(j["bundle_removed_after"], true);
}

#[test]
fn binary_bundle_and_stdout_output() {
    let c = Cluster::secret_server(KEY_A, None);
    let r = c.keyferry_node("web1", &["keys", "export", "--binary"]);
    r.assert_code(0);
    assert!(r.out.stdout.starts_with(b"age-encryption.org/v1\n"));
    let b = c.path("stdout.kfb");
    std::fs::write(&b, &r.out.stdout).unwrap();
    import(&c, "dr1", &b, &[]).assert_code(0);
    assert_eq!(std::fs::read(c.key_path("dr1")).unwrap(), KEY_A);
}

#[test]
fn inspect_shows_manifest_without_key_bytes() {
    let c = Cluster::secret_server(KEY_A, None);
    let bundle = c.export();
    let before = c.snapshot();
    let r = keyferry(
        &argv![
            "keys",
            "inspect",
            &bundle,
            "--passphrase-file",
            &c.path("pass.txt"),
            "--json"
        ],
        None,
    );
    r.assert_code(0);
    let j = r.json();
    assert_eq!(j["source_node"], "web1");
    assert_eq!(j["entries"][0]["name"], "encryption.config");
    assert_eq!(j["entries"][0]["len"], KEY_A.len());
    assert_eq!(j["entries"][0]["sha256"], sha256_hex(KEY_A));
    assert_eq!(j["expired"], false);
    assert_eq!(before, c.snapshot());
}

#[test]
fn ttl_is_bounded() {
    let c = Cluster::secret_server(KEY_A, None);
    let out = c.path("t.kfb");
    let r = c.keyferry_node("web1", &argv!["keys", "export", "-o", &out, "--ttl", "30d"]);
    r.assert_code(2);
    assert!(!out.exists());
}

/// A missing key file's hint fits the product: no Privilege Secure tool in a Secret Server
/// cluster.
#[test]
fn a_missing_key_files_hint_fits_the_product() {
    let c = Cluster::secret_server(KEY_A, None);
    std::fs::remove_file(c.key_path("web1")).unwrap();
    let out = c.path("x.kfb");
    let r = c.assert_refused(
        "web1",
        &argv!["keys", "export", "-o", &out],
        "key-file-missing",
    );
    assert!(!r.stderr().contains("SbPAM"), "{}", r.stderr());
    assert!(r.stderr().contains("paths"), "{}", r.stderr());
}

/// `--ttl 90` suggested `90sec or 90ms`, which were then refused. Every range error now has
/// a hint with a value that is accepted, and those values are.
#[test]
fn ttl_errors_suggest_values_that_are_accepted() {
    let c = Cluster::secret_server(KEY_A, None);
    let out = c.path("t.kfb");
    let o = out.as_os_str();
    for (ttl, says) in [
        ("90", "--ttl 90m"),
        ("1m", "--ttl 30m"),
        ("30d", "--ttl 1d"),
        ("soon", "--ttl 30m"),
    ] {
        let before = c.snapshot();
        let r = c.keyferry_node("web1", &argv!["keys", "export", "-o", o, "--ttl", ttl]);
        r.assert_code(2);
        assert_eq!(before, c.snapshot(), "--ttl {ttl} changed files on disk");
        assert!(r.stderr().contains(says), "--ttl {ttl}: {}", r.stderr());
        assert!(!out.exists());
    }
    for ok in ["90m", "30m", "1d", "2h"] {
        let r = c.keyferry_node(
            "web1",
            &argv!["keys", "export", "-o", o, "--ttl", ok, "--force"],
        );
        r.assert_code(0);
    }
}

/// A missing cluster file, passphrase file or bundle says which kind of file is missing and
/// what to do, in the same words (not "No such file or directory (os error 2)" with a hint
/// about permissions).
#[test]
fn a_missing_file_says_which_kind_it_is() {
    let c = Cluster::secret_server(KEY_A, None);
    let bundle = c.export();
    let cl = c.cluster_file();
    for (args, kind) in [
        (
            Vec::from(argv![
                "fingerprint",
                "-c",
                "clustr.toml",
                "--node",
                "web1",
                "--json",
            ]),
            "cluster file",
        ),
        (
            Vec::from(argv![
                "keys",
                "import",
                &bundle,
                "-c",
                &cl,
                "--node",
                "dr1",
                "--passphrase-file",
                "/nonexistent/pass",
                "--json",
            ]),
            "passphrase file",
        ),
        (
            Vec::from(argv![
                "keys",
                "import",
                "/nonexistent/keys.kfb",
                "-c",
                &cl,
                "--node",
                "dr1",
                "--json",
            ]),
            "keyferry bundle",
        ),
    ] {
        let before = c.snapshot();
        let r = keyferry(&args, None);
        r.assert_code(2);
        assert_eq!(before, c.snapshot(), "{args:?} changed files on disk");
        let j = r.json();
        assert_eq!(j["error"]["code"], "file-missing", "{args:?}");
        let msg = j["error"]["message"].as_str().unwrap();
        assert!(msg.starts_with(&format!("the {kind} ")), "{msg}");
        assert!(msg.ends_with("does not exist"), "{msg}");
        assert!(
            !j["error"]["hint"].as_str().unwrap().contains("permission"),
            "{j}"
        );
        assert!(!r.stderr().contains("os error"), "{}", r.stderr());
    }
}
