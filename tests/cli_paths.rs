//! Paths and text as Windows admins write them: folders with spaces, CRLF cluster files and
//! passphrase files, and on Windows drive and UNC-form (`\\?\C:\...`) paths. A real share
//! (`\\node2\c$\...`) needs a second Windows machine; its parsing is covered in `cluster.rs`.

use crate::common;
use common::*;

#[test]
fn crlf_cluster_file_and_folders_with_spaces() {
    let d = tempfile::tempdir().unwrap();
    let app = d.path().join("Secret Server").join("web app");
    std::fs::create_dir_all(&app).unwrap();
    std::fs::write(app.join("encryption.config"), b"KEY").unwrap();
    let toml = format!(
        "name = \"ss\"\r\nprofile = \"secret-server\"\r\n\r\n[[node]]\r\nname = \"web1\"\r\nrole = \"primary\"\r\naddress = \"10.0.0.1\"\r\npaths = {{ app = '{}' }}\r\nstate_dir = '{}'\r\n",
        app.display(),
        d.path().join("state dir").display()
    );
    let cl = d.path().join("cluster file.toml");
    std::fs::write(&cl, toml).unwrap();
    let pass = d.path().join("pass word.txt");
    std::fs::write(&pass, b"crlf ended passphrase\r\n").unwrap();
    private(&pass);
    let r = keyferry(&argv!["fingerprint", "-c", &cl, "--node", "web1"], None);
    r.assert_code(0);
    assert_eq!(
        r.stdout().lines().next().unwrap(),
        fingerprint_of(&[("encryption.config", b"KEY")])
    );
    let out = d.path().join("out dir");
    std::fs::create_dir(&out).unwrap();
    let b = out.join("keys bundle.kfb");
    keyferry(
        &argv![
            "keys",
            "export",
            "-c",
            &cl,
            "--node",
            "web1",
            "-o",
            &b,
            "--passphrase-file",
            &pass
        ],
        None,
    )
    .assert_code(0);
    // The same passphrase typed without the line ending opens it.
    let r = keyferry(
        &argv!["keys", "inspect", &b, "--passphrase-fd", "0", "--json"],
        Some(b"crlf ended passphrase"),
    );
    r.assert_code(0);
    assert_eq!(r.json()["source_node"], "web1");
}

#[cfg(windows)]
#[test]
fn drive_and_verbatim_unc_form_paths() {
    let d = tempfile::tempdir().unwrap();
    let app = d
        .path()
        .join("inetpub")
        .join("wwwroot")
        .join("Secret Server");
    std::fs::create_dir_all(&app).unwrap();
    std::fs::write(app.join("encryption.config"), b"KEY").unwrap();
    let drive = app.display().to_string();
    assert!(drive.chars().nth(1) == Some(':'), "{drive}");
    for form in [drive.clone(), format!(r"\\?\{drive}")] {
        let r = keyferry(
            &[
                "fingerprint",
                "--profile",
                "secret-server",
                "--root",
                &form,
                "--json",
            ],
            None,
        );
        r.assert_code(0);
        assert_eq!(r.json()["status"], "complete", "{form}");
        assert!(r.json()["files"][0]["path"]
            .as_str()
            .unwrap()
            .ends_with(r"Secret Server\encryption.config"));
    }
}

#[cfg(windows)]
#[test]
fn passphrase_file_readable_by_everyone_is_refused_on_windows() {
    let c = Cluster::secret_server(b"KEY", None);
    let p = c.path("pass.txt");
    // Let Everyone read it, as a careless copy to a share might.
    grant_everyone_read(&p);
    let before = c.snapshot();
    let r = c.keyferry_node(
        "web1",
        &argv!["keys", "export", "-o", &c.path("b.kfb"), "--json"],
    );
    let sddl = keyferry::os::dacl_sddl(&p).unwrap();
    if !sddl.contains(";;;WD)") {
        // Wine keeps only owner and SYSTEM ACEs (docs/dpapi.md), so the broad ACE cannot be
        // set up there; the detection itself is unit-tested in sys.rs.
        eprintln!("SKIPPED: this system did not store an Everyone ACE ({sddl})");
        return;
    }
    r.assert_code(2);
    assert_eq!(r.json()["error"]["code"], "passphrase");
    assert_eq!(before, c.snapshot());
}

#[cfg(windows)]
fn grant_everyone_read(path: &std::path::Path) {
    // icacls is part of Windows; where it is missing the check above skips the test.
    let _ = std::process::Command::new("icacls")
        .arg(path)
        .args(["/grant", "Everyone:R"])
        .output();
}
