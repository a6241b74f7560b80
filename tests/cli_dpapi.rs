//! DPAPI through the real binary: inspection everywhere; refusal to carry undecryptable or
//! embedded blobs; the size hint; Windows-only commands refused elsewhere; and, on Windows
//! (under Wine in CI), decrypt-before-copy and re-protect on import with real
//! CryptProtectData/CryptUnprotectData. Wine's blobs are Wine's (DOMAIN.md §4): these tests
//! prove the code path, not Windows' machine binding.

use crate::common;
use common::*;
use std::path::Path;

const SAMPLE: &[u8] = include_bytes!("fixtures/dpapi/windows-machine-aes256.bin");
const SAMPLE_B64: &str = include_str!("fixtures/dpapi/windows-machine-aes256.b64");

fn inspect(path: &Path) -> serde_json::Value {
    let r = keyferry(&argv!["dpapi", "inspect", &path, "--json"], None);
    r.assert_code(0);
    r.json()
}

#[test]
fn inspect_reports_the_real_sample_fields() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("blob.bin");
    std::fs::write(&p, SAMPLE).unwrap();
    let j = inspect(&p);
    assert_eq!(j["protected"], true);
    let b = &j["blobs"][0];
    assert_eq!(b["encoding"], "raw");
    assert_eq!(b["whole_file"], true);
    assert_eq!(b["variant"], "windows");
    assert_eq!(b["scope"], "machine");
    assert_eq!(b["master_key"], "6557823a-346c-42bd-b107-f347e53e1f36");
    assert_eq!(b["cipher"], "AES-256");
    assert_eq!(b["cipher_key_bits"], 256);
    assert_eq!(b["hash"], "SHA-512");
    assert_eq!(b["lengths"]["data"], 240);
    assert_eq!(b["lengths"]["signature"], 64);
    assert_eq!(b["lengths"]["salt"], 32);
    assert_eq!(b["lengths"]["blob"], 454);
    let text = keyferry(&argv!["dpapi", "inspect", &p], None);
    assert!(text.stdout().contains("machine") && text.stdout().contains("AES-256"));
}

#[test]
fn inspect_finds_blobs_in_text_xml_and_utf16() {
    let d = tempfile::tempdir().unwrap();
    let xml = format!(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?>\r\n<key id=\"3f1c\" version=\"1\">\r\n  <descriptor>\r\n    <encryption>\r\n      <encryptedKey>\r\n        <value>{}</value>\r\n      </encryptedKey>\r\n    </encryption>\r\n  </descriptor>\r\n</key>\r\n",
        SAMPLE_B64.trim()
    );
    let cases: Vec<(&str, Vec<u8>, &str, bool, bool)> = vec![
        (
            "b64.txt",
            SAMPLE_B64.as_bytes().to_vec(),
            "base64",
            false,
            true,
        ),
        (
            "key-3f1c.xml",
            xml.as_bytes().to_vec(),
            "base64",
            false,
            false,
        ),
        (
            "hex.txt",
            SAMPLE
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
                .into_bytes(),
            "hex",
            false,
            true,
        ),
        (
            "utf16.config",
            [
                &[0xffu8, 0xfe][..],
                &xml.encode_utf16()
                    .flat_map(|u| u.to_le_bytes())
                    .collect::<Vec<_>>(),
            ]
            .concat(),
            "base64",
            true,
            false,
        ),
    ];
    for (name, bytes, enc, utf16, whole) in cases {
        let p = d.path().join(name);
        std::fs::write(&p, bytes).unwrap();
        let j = inspect(&p);
        assert_eq!(j["blobs"].as_array().unwrap().len(), 1, "{name}");
        let b = &j["blobs"][0];
        assert_eq!(b["encoding"], enc, "{name}");
        assert_eq!(b["utf16"], utf16, "{name}");
        assert_eq!(b["whole_file"], whole, "{name}");
        assert_eq!(
            b["master_key"], "6557823a-346c-42bd-b107-f347e53e1f36",
            "{name}"
        );
    }
    let plain = d.path().join("plain.config");
    std::fs::write(&plain, b"<configuration/>").unwrap();
    assert_eq!(inspect(&plain)["protected"], false);
}

#[test]
fn export_refuses_a_blob_this_machine_cannot_decrypt() {
    // The real Windows sample was made on another machine: no system here can decrypt it
    // (elsewhere than Windows, none at all). Export must refuse and change nothing.
    let c = Cluster::secret_server(SAMPLE, None);
    let out = c.path("b.kfb");
    let r = c.assert_refused(
        "web1",
        &argv!["keys", "export", "-o", &out],
        "dpapi-protected",
    );
    assert!(r.stderr().contains("encryption.config"), "{}", r.stderr());
    if cfg!(windows) {
        assert!(r.stderr().contains("cannot decrypt"), "{}", r.stderr());
    } else {
        assert!(
            r.stderr().contains("on that Windows node"),
            "{}",
            r.stderr()
        );
    }
}

/// The refusal about the key comes first: without a passphrase and without a terminal, a
/// DPAPI file this machine cannot decrypt is what is said (not "give a passphrase file",
/// which would only lead to the same refusal).
#[test]
fn export_refuses_an_undecryptable_key_before_asking_for_a_passphrase() {
    let c = Cluster::secret_server(SAMPLE, None);
    let out = c.path("b.kfb");
    let before = c.snapshot();
    let cluster = c.cluster_file();
    let r = keyferry(
        &argv!["keys", "export", "-c", &cluster, "--node", "web1", "-o", &out, "--json"],
        None,
    );
    r.assert_code(2);
    assert_eq!(
        r.json()["error"]["code"],
        "dpapi-protected",
        "{}",
        r.stdout()
    );
    assert_eq!(before, c.snapshot());
}

#[test]
fn export_refuses_embedded_blobs_with_the_product_remedy() {
    let xml = format!(
        "<configuration><key>{}</key></configuration>\r\n",
        SAMPLE_B64.trim()
    );
    let c = Cluster::secret_server(xml.as_bytes(), None);
    let out = c.path("b.kfb");
    let r = c.assert_refused(
        "web1",
        &argv!["keys", "export", "-o", &out],
        "dpapi-protected",
    );
    assert!(
        r.stderr().contains("Decrypt Key to not use DPAPI"),
        "{}",
        r.stderr()
    );
}

#[test]
fn large_encryption_config_gets_the_labelled_size_hint() {
    let big: Vec<u8> = (0..1500u32).map(|i| (i * 7 % 251) as u8).collect();
    let c = Cluster::secret_server(&big, None);
    let r = c.keyferry_node("web1", &argv!["keys", "export", "-o", &c.path("b.kfb")]);
    r.assert_code(0);
    assert!(
        r.stderr().contains("looks DPAPI-protected"),
        "{}",
        r.stderr()
    );
    assert!(
        r.stderr().contains("size hint, not proof"),
        "{}",
        r.stderr()
    );
    let fp = keyferry(
        &argv![
            "fingerprint",
            "-c",
            &c.cluster_file(),
            "--node",
            "web1",
            "--json"
        ],
        None,
    );
    assert_eq!(fp.json()["files"][0]["protection"]["kind"], "looks-dpapi");
}

#[cfg(not(windows))]
#[test]
fn windows_only_commands_refuse_clearly_and_change_nothing() {
    let c = Cluster::secret_server(b"PLAIN KEY", None);
    let before = c.snapshot();
    for verb in ["protect", "unprotect"] {
        let r = keyferry(&argv!["dpapi", verb, &c.key_path("web1"), "--json"], None);
        r.assert_code(2);
        assert_eq!(r.json()["error"]["code"], "unsupported");
        assert!(r.stderr().contains("only on Windows"), "{}", r.stderr());
    }
    let bundle = c.export();
    let before_import = c.snapshot();
    let r = c.keyferry_node(
        "dr1",
        &argv!["keys", "import", &bundle, "--protect", "dpapi", "--json"],
    );
    r.assert_code(2);
    assert_eq!(r.json()["error"]["code"], "unsupported");
    assert_eq!(before_import, c.snapshot());
    assert!(before.keys().all(|k| before_import.contains_key(k)));
}

#[cfg(not(windows))]
#[test]
fn dpapi_source_without_dpapi_here_installs_plain_and_says_so() {
    let c = Cluster::secret_server(b"K", None);
    let key: &[u8] = b"decrypted master key";
    let mut h = header(&[("encryption.config", key)], "2099-01-01T00:00:00Z");
    h["entries"][0]["dpapi"] = "machine".into();
    let b = c.path("dp.kfb");
    seal_raw(&plaintext(&h, &[key]), PASSPHRASE, &b);
    let r = c.keyferry_node("dr1", &argv!["keys", "import", &b]);
    r.assert_code(0);
    assert!(
        r.stderr().contains("installed unprotected"),
        "{}",
        r.stderr()
    );
    assert_eq!(std::fs::read(c.key_path("dr1")).unwrap(), key);
}

#[cfg(windows)]
#[test]
fn dpapi_key_is_decrypted_into_the_bundle_and_protected_again_on_import() {
    let key: &[u8] = b"\x01SS-MASTER-KEY-material-0123456789";
    let c = Cluster::secret_server(key, None);
    let cl = c.cluster_file();
    let cl = cl.to_str().unwrap();
    let plain_fp = fingerprint_of(&[("encryption.config", key)]);
    let state = c.path("dpstate");
    keyferry(
        &argv![
            "dpapi",
            "protect",
            &c.key_path("web1"),
            "--state-dir",
            &state
        ],
        None,
    )
    .assert_code(0);
    let on_disk = std::fs::read(c.key_path("web1")).unwrap();
    assert_ne!(on_disk, key);
    assert!(keyferry::dpapi::Blob::parse(&on_disk).is_ok());

    // The fingerprint is of the plaintext, so protected and plain nodes compare equal.
    let fp = keyferry(&["fingerprint", "-c", cl, "--node", "web1", "--json"], None);
    assert_eq!(fp.json()["fingerprint"], plain_fp.as_str());
    assert_eq!(fp.json()["files"][0]["protection"]["decrypted"], true);

    let bundle = c.export();
    let ins = keyferry(
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
    ins.assert_code(0);
    assert_eq!(
        ins.json()["entries"][0]["dpapi"],
        "user",
        "Wine writes scope flags 0"
    );
    assert_eq!(ins.json()["fingerprint"], plain_fp.as_str());

    // Import protects again by default because the source was protected.
    let r = c.keyferry_node(
        "dr1",
        &argv!["keys", "import", &bundle, "--keep-bundle", "--json"],
    );
    r.assert_code(0);
    assert_eq!(r.json()["plan"]["files"][0]["dpapi"], true);
    let installed = std::fs::read(c.key_path("dr1")).unwrap();
    assert!(
        keyferry::dpapi::Blob::parse(&installed).is_ok(),
        "installed as a DPAPI blob"
    );
    let un = keyferry(
        &argv![
            "dpapi",
            "unprotect",
            &c.key_path("dr1"),
            "--state-dir",
            &state
        ],
        None,
    );
    un.assert_code(0);
    assert_eq!(
        std::fs::read(c.key_path("dr1")).unwrap(),
        key,
        "unprotects to the original bytes"
    );

    // --protect none installs the plaintext.
    let r = c.keyferry_node(
        "web2",
        &argv!["keys", "import", &bundle, "--protect", "none"],
    );
    r.assert_code(0);
    assert_eq!(std::fs::read(c.key_path("web2")).unwrap(), key);
}

#[cfg(windows)]
#[test]
fn corrupted_blob_is_a_clear_error_and_changes_nothing() {
    let c = Cluster::secret_server(b"PLAIN", None);
    let state = c.path("dpstate");
    let k = c.key_path("web1");
    keyferry(&argv!["dpapi", "protect", &k, "--state-dir", &state], None).assert_code(0);
    let mut blob = std::fs::read(&k).unwrap();
    let n = blob.len();
    blob[n - 1] ^= 0xff; // last signature byte: structure intact, content wrong
    std::fs::write(&k, &blob).unwrap();
    let before = c.snapshot();
    let r = keyferry(
        &argv!["dpapi", "unprotect", &k, "--state-dir", &state, "--json"],
        None,
    );
    r.assert_code(2);
    assert_eq!(r.json()["error"]["code"], "dpapi-failed");
    assert_eq!(before, c.snapshot());
    let r = c.keyferry_node(
        "web1",
        &argv!["keys", "export", "-o", &c.path("x.kfb"), "--json"],
    );
    r.assert_code(2);
    assert_eq!(r.json()["error"]["code"], "dpapi-protected");
    assert_eq!(before, c.snapshot());
}

#[cfg(windows)]
#[test]
fn protect_twice_and_unprotect_plain_are_refused_and_change_nothing() {
    let c = Cluster::secret_server(b"PLAIN", None);
    let state = c.path("dpstate");
    let k = c.key_path("web1");
    let run = |verb: &str| {
        keyferry(
            &argv!["dpapi", verb, &k, "--state-dir", &state, "--json"],
            None,
        )
    };
    let before = c.snapshot();
    let r = run("unprotect");
    r.assert_code(2);
    assert!(
        r.stderr().contains("is not DPAPI-protected"),
        "{}",
        r.stderr()
    );
    assert_eq!(before, c.snapshot());

    run("protect").assert_code(0);
    let before = c.snapshot();
    let r = run("protect");
    r.assert_code(2);
    assert!(
        r.stderr().contains("already DPAPI-protected"),
        "{}",
        r.stderr()
    );
    assert_eq!(before, c.snapshot());
}

/// A DPAPI-protected key this node can decrypt, replaced: `keys push` protects the new one
/// again; `keys import --protect none --replace` is refused (`key-protection`, the node's
/// files byte-identical) unless `--leave-unprotected` says so. Runs under Wine's DPAPI.
#[cfg(windows)]
#[test]
fn a_protected_key_is_never_left_unprotected_unasked() {
    let c = Cluster::secret_server(b"KEY-A primary", Some(b"KEY-B stale"));
    let cl = c.cluster_file();
    let protect = |node: &str| {
        keyferry(
            &argv![
                "dpapi",
                "protect",
                &c.key_path(node),
                "--state-dir",
                &c.path("dpstate")
            ],
            None,
        )
        .assert_code(0);
    };
    protect("web2");
    let bundle = c.export();
    let before = c.snapshot();
    let r = c.keyferry_node(
        "web2",
        &argv![
            "keys",
            "import",
            &bundle,
            "--protect",
            "none",
            "--replace",
            "--json"
        ],
    );
    r.assert_code(2);
    assert_eq!(
        r.json()["error"]["code"],
        "key-protection",
        "{}",
        r.stdout()
    );
    assert_eq!(before, c.snapshot());
    // With the admin's word, the key goes in unprotected (the refused import left the
    // bundle where it was).
    c.keyferry_node(
        "web2",
        &argv![
            "keys",
            "import",
            &bundle,
            "--protect",
            "none",
            "--replace",
            "--leave-unprotected"
        ],
    )
    .assert_code(0);
    assert_eq!(std::fs::read(c.key_path("web2")).unwrap(), b"KEY-A primary");
    // A push keeps a node's protection: protected there, replaced, protected again.
    std::fs::write(c.key_path("web2"), b"KEY-C other").unwrap();
    protect("web2");
    keyferry(
        &argv![
            "keys",
            "push",
            "-c",
            &cl,
            "--node",
            "web1",
            "--to",
            "web2",
            "--replace"
        ],
        None,
    )
    .assert_code(0);
    let on_disk = std::fs::read(c.key_path("web2")).unwrap();
    assert!(
        keyferry::dpapi::Blob::parse(&on_disk).is_ok(),
        "protected again"
    );
    let fp = keyferry(
        &argv!["fingerprint", "-c", &cl, "--node", "web2", "--json"],
        None,
    );
    assert_eq!(
        fp.json()["fingerprint"],
        fingerprint_of(&[("encryption.config", b"KEY-A primary")]).as_str()
    );
}
