//! Secrets stay where they belong. Known key bytes and a known passphrase go through every
//! command path; afterwards neither the bytes (raw, hex, base64) nor the passphrase may appear
//! in any stdout or stderr, ledger, backup name or leftover temporary file. Key bytes may
//! exist only in installed key files and in backup files (their purpose).

use crate::common;
use base64::prelude::*;
use common::*;
use std::path::Path;

const KEY_A: &[u8] = b"\x13\x37SECRET-MASTER-KEY-A\xc3\x28k1Zq9\x00Vx7Lm2Pw4Rt8Ys";
const KEY_B: &[u8] = b"\x42\x42SECRET-MASTER-KEY-B\x91\x07n5Hj3\x00Qa6Dc0Fe2Gi7Kb";

fn forms(key: &[u8]) -> Vec<Vec<u8>> {
    let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
    vec![
        key[2..22].to_vec(),
        hex.as_bytes().to_vec(),
        hex.to_uppercase().into_bytes(),
        BASE64_STANDARD.encode(key).into_bytes(),
        BASE64_STANDARD_NO_PAD.encode(key).into_bytes(),
        BASE64_URL_SAFE_NO_PAD.encode(key).into_bytes(),
    ]
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

fn assert_clean(what: &str, bytes: &[u8]) {
    for key in [KEY_A, KEY_B] {
        for f in forms(key) {
            assert!(!contains(bytes, &f), "key material in {what}");
        }
    }
    assert!(
        !contains(bytes, PASSPHRASE.as_bytes()),
        "passphrase in {what}"
    );
}

#[test]
fn no_secret_in_output_ledger_backup_names_or_temp_files() {
    let c = Cluster::secret_server(KEY_A, Some(KEY_B));
    let cl = c.cluster_file();
    let cl = cl.to_str().unwrap();
    let pass = c.path("pass.txt");
    let pass = pass.to_str().unwrap();
    let bundle = c.path("bundle.kfb");
    let b = bundle.to_str().unwrap();
    let mut runs = Vec::new();
    let mut run = |args: &[&str]| runs.push(keyferry(args, None));

    for json in [false, true] {
        let j: &[&str] = if json { &["--json"] } else { &[] };
        fn with<'a>(a: &[&'a str], j: &[&'a str]) -> Vec<&'a str> {
            [a, j].concat()
        }
        run(&with(
            &["fingerprint", "-c", cl, "--node", "web1", "--words"],
            j,
        ));
        run(&with(
            &[
                "keys",
                "export",
                "-c",
                cl,
                "--node",
                "web1",
                "-o",
                b,
                "--force",
                "--passphrase-file",
                pass,
            ],
            j,
        ));
        run(&with(&["keys", "inspect", b, "--passphrase-file", pass], j));
        run(&with(
            &[
                "keys",
                "import",
                b,
                "-c",
                cl,
                "--node",
                "web2",
                "--passphrase-file",
                pass,
            ],
            j,
        ));
        run(&with(
            &[
                "keys",
                "import",
                b,
                "-c",
                cl,
                "--node",
                "web2",
                "--dry-run",
                "--replace",
                "--passphrase-file",
                pass,
            ],
            j,
        ));
    }
    let wrong = c.write_passphrase_file("wrong.txt", "wrong words entirely");
    run(&[
        "keys",
        "import",
        b,
        "-c",
        cl,
        "--node",
        "web2",
        "--passphrase-file",
        wrong.to_str().unwrap(),
    ]);
    run(&[
        "keys",
        "import",
        b,
        "-c",
        cl,
        "--node",
        "web2",
        "--replace",
        "--keep-bundle",
        "--passphrase-file",
        pass,
    ]);
    run(&[
        "keys",
        "import",
        b,
        "-c",
        cl,
        "--node",
        "dr1",
        "--passphrase-file",
        pass,
    ]);
    run(&["fingerprint", "-c", cl, "--node", "web2", "--json"]);
    run(&[
        "keys",
        "export",
        "-c",
        cl,
        "--node",
        "web1",
        "--passphrase-file",
        pass,
    ]);
    run(&["keys", "cleanup", "-c", cl, "--node", "web2"]);
    run(&["keys", "cleanup", "-c", cl, "--node", "web1", "--json"]);

    assert!(
        runs.iter().any(|r| r.code() == 2),
        "a refusal path was exercised"
    );
    assert!(runs.iter().filter(|r| r.code() == 0).count() >= 12);
    for r in &runs {
        if r.args.contains(&"--binary".to_string())
            || (r.args[1] == "export" && !r.args.contains(&"-o".to_string()))
        {
            // The bundle itself on stdout: encrypted, but check stderr.
            assert_clean(&format!("stderr of {:?}", r.args), &r.out.stderr);
            continue;
        }
        assert_clean(&format!("stdout of {:?}", r.args), &r.out.stdout);
        assert_clean(&format!("stderr of {:?}", r.args), &r.out.stderr);
    }

    // Files: only key files and backups may hold key bytes; nothing may hold the passphrase
    // except the passphrase file; no temp file may be left.
    let mut backups = 0;
    for (path, bytes) in c.snapshot() {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        assert_clean(&format!("file name {path:?}"), name.as_bytes());
        assert!(
            !name.starts_with(".keyferry-"),
            "leftover temp file {path:?}"
        );
        let is_key = name == "encryption.config";
        let in_backups = path.components().any(|c| c.as_os_str() == "backups");
        if in_backups && is_key {
            backups += 1;
        }
        if is_key || path == Path::new(pass) {
            continue;
        }
        assert_clean(&format!("file {path:?}"), &bytes);
    }
    assert!(backups >= 1, "the --replace import made a backup");
    // The ledger exists and was checked above.
    assert!(c.path("web1/state/ledger.json").exists());
}

/// Runs a shell command on a real pseudo-terminal (util-linux `script`); `None`, with a loud
/// SKIPPED line, where `script` is not installed.
#[cfg(unix)]
#[allow(clippy::print_stderr)] // the SKIPPED line must be visible in test output
fn in_pty(cmd: &str) -> Option<std::process::Output> {
    if std::process::Command::new("script")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("SKIPPED: util-linux `script` not installed; no pseudo-terminal for this test");
        return None;
    }
    let o = std::process::Command::new("script")
        .args(["-q", "-e", "-c", cmd, "/dev/null"])
        .env("KEYFERRY_INSECURE_TEST_WORK_FACTOR", WORK_FACTOR)
        .env("NO_COLOR", "1")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    Some(o)
}

#[cfg(unix)]
#[test]
fn generated_passphrase_is_shown_only_on_the_terminal_and_works() {
    // A real pseudo-terminal from util-linux `script`, so the generated-passphrase path runs as
    // an admin would see it. Skipped (loudly) where `script` is missing.
    let c = Cluster::secret_server(KEY_A, None);
    let out = c.path("gen.kfb");
    let cmd = format!(
        "{} keys export -c {} --node web1 -o {}",
        bin(),
        c.cluster_file().display(),
        out.display()
    );
    let Some(o) = in_pty(&cmd) else { return };
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stdout));
    let screen = String::from_utf8_lossy(&o.stdout).into_owned();
    let pos = screen
        .find("(shown once):")
        .expect("passphrase banner on the terminal");
    let words: Vec<&str> = screen[pos..]
        .lines()
        .map(str::trim)
        .find(|l| l.split(' ').count() == 10)
        .expect("a line of ten words")
        .split(' ')
        .collect();
    assert!(words.iter().all(|w| keyferry::words::list().contains(w)));
    let phrase = words.join(" ");
    // Not in the bundle, the ledger or any file.
    for (path, bytes) in c.snapshot() {
        assert!(
            !contains(&bytes, phrase.as_bytes()),
            "passphrase in {path:?}"
        );
    }
    // And it opens the bundle.
    let r = keyferry(
        &argv![
            "keys",
            "import",
            &out,
            "-c",
            c.cluster_file(),
            "--node",
            "dr1",
            "--passphrase-fd",
            "0",
        ],
        Some(phrase.as_bytes()),
    );
    r.assert_code(0);
    assert_eq!(std::fs::read(c.key_path("dr1")).unwrap(), KEY_A);
}

#[cfg(unix)]
#[test]
fn export_refuses_to_write_a_bundle_to_a_terminal() {
    let c = Cluster::secret_server(KEY_A, None);
    let before = c.snapshot();
    let cmd = format!(
        "{} keys export -c {} --node web1 --passphrase-file {}",
        bin(),
        c.cluster_file().display(),
        c.path("pass.txt").display()
    );
    let Some(o) = in_pty(&cmd) else { return };
    assert_eq!(o.status.code(), Some(2));
    let screen = String::from_utf8_lossy(&o.stdout);
    assert!(
        screen.contains("refusing to write a bundle to the terminal"),
        "{screen}"
    );
    assert!(!screen.contains("BEGIN AGE"), "{screen}");
    assert_eq!(before, c.snapshot());
}

/// A supplied passphrase of `a` exported without a word, while the README promises 110 bits.
#[test]
fn a_weak_supplied_passphrase_is_refused_unless_the_admin_says_so() {
    let c = Cluster::secret_server(KEY_A, None);
    c.write_passphrase_file("pass.txt", "a");
    let out = c.path("w.kfb");
    let r = c.assert_refused(
        "web1",
        &argv!["keys", "export", "-o", &out],
        "weak-passphrase",
    );
    assert!(
        r.stderr().contains("--allow-weak-passphrase"),
        "{}",
        r.stderr()
    );
    c.keyferry_node(
        "web1",
        &argv!["keys", "export", "-o", &out, "--allow-weak-passphrase"],
    )
    .assert_code(0);
}

/// Ten words read aloud come back with capitals, hyphens and extra spaces: for passphrases of
/// the word list both sides use the same canonical form.
#[test]
fn a_word_list_passphrase_typed_with_capitals_and_hyphens_still_opens() {
    let c = Cluster::secret_server(KEY_A, None);
    c.write_passphrase_file(
        "pass.txt",
        "tiger lemon orbit basket pilot cargo wisdom maple rhythm canvas",
    );
    let bundle = c.export();
    let r = keyferry(
        &argv![
            "keys",
            "import",
            &bundle,
            "-c",
            c.cluster_file(),
            "--node",
            "dr1",
            "--passphrase-fd",
            "0",
        ],
        Some(b"Tiger-Lemon  Orbit basket PILOT cargo_wisdom maple rhythm canvas\n"),
    );
    r.assert_code(0);
    assert_eq!(std::fs::read(c.key_path("dr1")).unwrap(), KEY_A);
}

/// On a terminal a mistyped passphrase can be typed again, three tries in all.
#[cfg(unix)]
#[test]
fn a_mistyped_passphrase_can_be_typed_again_on_a_terminal() {
    let c = Cluster::secret_server(KEY_A, None);
    let bundle = c.export();
    // rpassword reads the terminal, so the lines are typed at the pseudo-terminal.
    let cmd = format!(
        "{} keys import {} -c {} --node dr1",
        bin(),
        bundle.display(),
        c.cluster_file().display()
    );
    let typed = format!("wrong one\nwrong two\n{PASSPHRASE}\n");
    let Some(o) = in_pty_with_input(&cmd, typed.as_bytes()) else {
        return;
    };
    let screen = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(o.status.success(), "{screen}");
    assert!(screen.contains("try again (2 of 3)"), "{screen}");
    assert!(screen.contains("try again (3 of 3)"), "{screen}");
    assert_eq!(std::fs::read(c.key_path("dr1")).unwrap(), KEY_A);
    assert!(
        !screen.contains(PASSPHRASE),
        "the passphrase was echoed: {screen}"
    );
}

/// [`in_pty`] with bytes typed at the terminal.
#[cfg(unix)]
fn in_pty_with_input(cmd: &str, typed: &[u8]) -> Option<std::process::Output> {
    use std::io::Write;
    in_pty("true")?;
    let mut child = std::process::Command::new("script")
        .args(["-q", "-e", "-c", cmd, "/dev/null"])
        .env("KEYFERRY_INSECURE_TEST_WORK_FACTOR", WORK_FACTOR)
        .env("NO_COLOR", "1")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    // One line at a time, each after the prompt had time to appear.
    for line in typed.split_inclusive(|b| *b == b'\n') {
        std::thread::sleep(std::time::Duration::from_millis(700));
        stdin.write_all(line).unwrap();
        stdin.flush().unwrap();
    }
    std::thread::sleep(std::time::Duration::from_millis(500));
    drop(stdin);
    Some(child.wait_with_output().unwrap())
}
