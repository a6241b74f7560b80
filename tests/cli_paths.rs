//! Paths and text as Windows admins write them: folders with spaces, CRLF cluster files and
//! passphrase files, and on Windows drive and UNC-form (`\\?\C:\...`) paths. A real share
//! (`\\node2\c$\...`) needs a second Windows machine; its parsing is covered in `cluster.rs`.

mod common;
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
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&pass, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let r = keyferry(
        &["fingerprint", "-c", cl.to_str().unwrap(), "--node", "web1"],
        None,
    );
    r.assert_code(0);
    assert_eq!(
        r.stdout().lines().next().unwrap(),
        fingerprint_of(&[("encryption.config", b"KEY")])
    );
    let out = d.path().join("out dir");
    std::fs::create_dir(&out).unwrap();
    let b = out.join("keys bundle.kfb");
    keyferry(
        &[
            "keys",
            "export",
            "-c",
            cl.to_str().unwrap(),
            "--node",
            "web1",
            "-o",
            b.to_str().unwrap(),
            "--passphrase-file",
            pass.to_str().unwrap(),
        ],
        None,
    )
    .assert_code(0);
    // The same passphrase typed without the line ending opens it.
    let r = keyferry(
        &[
            "keys",
            "inspect",
            b.to_str().unwrap(),
            "--passphrase-fd",
            "0",
            "--json",
        ],
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
