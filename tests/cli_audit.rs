//! `keyferry audit` over real folders, saved reports and a real OpenSSH server on loopback.

use crate::common;
use common::*;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

const KEY_A: &[u8] = b"AUDIT-KEY-A";
const KEY_B: &[u8] = b"AUDIT-KEY-B";

fn audit(cluster: &Path, extra: &[&str]) -> Run {
    let mut a = Vec::from(argv!["audit", "-c", cluster, "--json"]);
    a.extend(extra.iter().map(OsString::from));
    keyferry(&a, None)
}

fn status(j: &serde_json::Value, node: &str) -> String {
    j["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["node"] == node)
        .unwrap_or_else(|| panic!("no {node}"))["status"]
        .as_str()
        .unwrap()
        .to_owned()
}

fn node<'a>(j: &'a serde_json::Value, node: &str) -> &'a serde_json::Value {
    j["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["node"] == node)
        .unwrap()
}

#[test]
fn audit_by_path_finds_differing_missing_and_then_agreement() {
    let c = Cluster::secret_server(KEY_A, Some(KEY_B));
    let r = audit(&c.cluster_file(), &[]);
    r.assert_code(1);
    let j = r.json();
    assert_eq!(j["ok"], false);
    assert_eq!(status(&j, "web1"), "match");
    assert_eq!(status(&j, "web2"), "differs");
    assert_eq!(status(&j, "dr1"), "missing");
    assert_eq!(status(&j, "proxy1"), "not-needed");
    assert_eq!(
        j["reference_fingerprint"],
        fingerprint_of(&[("encryption.config", KEY_A)]).as_str()
    );

    let text = keyferry(&argv!["audit", "-c", &c.cluster_file()], None);
    text.assert_code(1);
    assert!(
        text.stdout().contains("DIFFERS")
            && text.stdout().contains("Problem: different keys: web2")
            && text.stdout().contains("Problem: keys missing: dr1"),
        "{}",
        text.stdout()
    );

    let bundle = c.export();
    let copy = c.path("copy.kfb");
    std::fs::copy(&bundle, &copy).unwrap();
    c.keyferry_node("web2", &argv!["keys", "import", &bundle, "--replace"])
        .assert_code(0);
    c.keyferry_node("dr1", &argv!["keys", "import", &copy])
        .assert_code(0);
    let r = audit(&c.cluster_file(), &[]);
    r.assert_code(0);
    assert_eq!(r.json()["ok"], true);
}

#[test]
fn binaries_that_differ_are_named_with_paths() {
    let c = Cluster::secret_server(KEY_A, Some(KEY_A));
    for n in ["web1", "web2", "dr1", "proxy1"] {
        std::fs::create_dir_all(c.app(n).join("bin")).unwrap();
        std::fs::write(c.app(n).join("bin/SecretServer.dll"), b"10.9.0").unwrap();
    }
    std::fs::write(c.key_path("dr1"), KEY_A).unwrap();
    std::fs::write(c.app("web2").join("bin/SecretServer.dll"), b"11.0.0").unwrap();
    let r = audit(&c.cluster_file(), &[]);
    r.assert_code(1); // keys agree, but differing binaries are a failing result too
    let j = r.json();
    assert_eq!(node(&j, "web2")["binaries"], "differs");
    assert_eq!(
        node(&j, "web2")["differing_paths"],
        serde_json::json!(["bin/SecretServer.dll"])
    );
    assert_eq!(node(&j, "dr1")["binaries"], "same");
}

/// Saves each node's report with `fingerprint --json` and points the cluster file at them.
fn with_saved_reports(c: &Cluster) -> PathBuf {
    let text = std::fs::read_to_string(c.cluster_file()).unwrap();
    for (name, _, _) in NODES {
        let r = keyferry(
            &argv![
                "fingerprint",
                "-c",
                &c.cluster_file(),
                "--node",
                name,
                "--json"
            ],
            None,
        );
        r.assert_code(0);
        std::fs::write(c.path(&format!("{name}.json")), &r.out.stdout).unwrap();
    }
    let mut out = String::new();
    for line in text.lines() {
        out.push_str(line);
        out.push('\n');
        if let Some(name) = line
            .strip_prefix("name = \"")
            .and_then(|l| l.strip_suffix('"'))
        {
            if NODES.iter().any(|(n, _, _)| *n == name) {
                out.push_str(&format!("access = \"report:{name}.json\"\n"));
            }
        }
    }
    let p = c.path("reports.toml");
    std::fs::write(&p, out).unwrap();
    p
}

#[test]
fn audit_from_saved_reports_matches_audit_by_path() {
    let c = Cluster::secret_server(KEY_A, Some(KEY_B));
    let by_path = audit(&c.cluster_file(), &[]).json();
    let cl = with_saved_reports(&c);
    let r = audit(&cl, &[]);
    r.assert_code(1);
    let j = r.json();
    for (n, _, _) in NODES {
        assert_eq!(status(&j, n), status(&by_path, n), "{n}");
        assert_eq!(node(&j, n)["via"], "report");
    }
}

#[test]
fn hostile_saved_reports_are_rejected_never_a_panic() {
    let c = Cluster::secret_server(KEY_A, Some(KEY_A));
    std::fs::write(c.key_path("dr1"), KEY_A).unwrap();
    let cl = with_saved_reports(&c);
    audit(&cl, &[]).assert_code(0);
    let good = std::fs::read_to_string(c.path("web2.json")).unwrap();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "other node",
            good.replace("\"node\": \"web2\"", "\"node\": \"web1\"")
                .into_bytes(),
        ),
        (
            "wrong version",
            good.replace("\"version\": 1", "\"version\": 2")
                .into_bytes(),
        ),
        (
            "wrong role",
            good.replace("\"role\": \"secondary\"", "\"role\": \"dr\"")
                .into_bytes(),
        ),
        (
            "other cluster",
            good.replace("\"cluster\": \"ss-prod\"", "\"cluster\": \"ss-test\"")
                .into_bytes(),
        ),
        (
            "extra field",
            good.replacen('{', "{\"evil\": true,", 1).into_bytes(),
        ),
        ("truncated", good.as_bytes()[..good.len() / 2].to_vec()),
        ("binary", vec![0xff; 64]),
        ("huge", vec![b' '; 2 * 1024 * 1024]),
        (
            "huge field",
            good.replacen(
                "\"host\": \"",
                &format!("\"host\": \"{}", "x".repeat(100_000)),
                1,
            )
            .into_bytes(),
        ),
        ("empty", Vec::new()),
    ];
    for (what, bytes) in cases {
        assert_ne!(
            bytes,
            good.as_bytes(),
            "{what}: the case must change the report"
        );
        std::fs::write(c.path("web2.json"), &bytes).unwrap();
        let r = audit(&cl, &[]);
        r.assert_code(1);
        assert_eq!(status(&r.json(), "web2"), "rejected", "{what}");
        assert!(
            node(&r.json(), "web2")["reason"].as_str().unwrap().len() < 400,
            "{what}"
        );
    }
    std::fs::remove_file(c.path("web2.json")).unwrap();
    let r = audit(&cl, &[]);
    r.assert_code(1);
    assert_eq!(status(&r.json(), "web2"), "unreachable");
}

#[test]
fn unreadable_primary_means_nothing_can_be_compared() {
    let c = Cluster::secret_server(KEY_A, Some(KEY_A));
    std::fs::remove_dir_all(c.app("web1")).unwrap();
    let r = audit(&c.cluster_file(), &[]);
    r.assert_code(1);
    let j = r.json();
    assert_eq!(status(&j, "web1"), "unreachable");
    assert_eq!(status(&j, "web2"), "no-reference");
}

#[test]
fn privilege_secure_compares_appsettings_and_says_what_is_not_verifiable() {
    let d = tempfile::tempdir().unwrap();
    let mut toml = String::from("name = \"nps\"\nprofile = \"privilege-secure\"\n");
    for (name, role, ip) in [
        ("nps1", "primary", "10.9.1.1"),
        ("nps2", "secondary", "10.9.1.2"),
        ("act1", "action", "10.9.1.3"),
    ] {
        let kt = d.path().join(name).join("KeyTools");
        let ha = d.path().join(name).join("HA");
        std::fs::create_dir_all(&kt).unwrap();
        std::fs::create_dir_all(&ha).unwrap();
        std::fs::write(ha.join("appsettings.json"), b"{\"HA\":1}").unwrap();
        toml.push_str(&format!("\n[[node]]\nname = \"{name}\"\nrole = \"{role}\"\naddress = \"{ip}\"\npaths = {{ keytools = {kt:?}, ha = {ha:?} }}\n"));
    }
    let cl = d.path().join("c.toml");
    std::fs::write(&cl, toml).unwrap();
    let r = audit(&cl, &[]);
    r.assert_code(0);
    let j = r.json();
    assert_eq!(status(&j, "nps2"), "match");
    assert!(node(&j, "nps2")["reason"]
        .as_str()
        .unwrap()
        .contains("not verifiable from files: keys.exp"));
    assert_eq!(status(&j, "act1"), "not-verifiable");
    std::fs::write(d.path().join("nps2/HA/appsettings.json"), b"{\"HA\":2}").unwrap();
    let r = audit(&cl, &[]);
    r.assert_code(1);
    assert_eq!(status(&r.json(), "nps2"), "differs");
}

#[cfg(unix)]
#[test]
fn audit_over_real_ssh_with_a_mismatch_an_unreachable_node_and_a_proxy() {
    let c = Cluster::secret_server(KEY_A, Some(KEY_B));
    std::fs::write(c.key_path("dr1"), KEY_A).unwrap();
    let Some(sshd) = Sshd::start(c.dir.path()) else {
        return;
    };
    let text = std::fs::read_to_string(c.cluster_file()).unwrap();
    let closed = free_port(); // nothing listens here once the probe socket is dropped
    let mut out = String::new();
    for line in text.lines() {
        out.push_str(line);
        out.push('\n');
        let access = match line {
            "name = \"web1\"" | "name = \"web2\"" | "name = \"proxy1\"" => {
                format!("ssh://root@127.0.0.1:{}", sshd.port)
            }
            "name = \"dr1\"" => format!("ssh://root@127.0.0.1:{closed}"),
            _ => continue,
        };
        out.push_str(&format!(
            "access = \"{access}\"\nremote_keyferry = {:?}\n",
            bin()
        ));
    }
    let cl = c.path("ssh.toml");
    std::fs::write(&cl, out).unwrap();
    let r = keyferry(
        &argv![
            "audit",
            "-c",
            &cl,
            "--json",
            "--ssh-config",
            &sshd.config,
            "--timeout",
            "10s"
        ],
        None,
    );
    r.assert_code(1);
    let j = r.json();
    assert_eq!(status(&j, "web1"), "match", "{j}");
    assert_eq!(node(&j, "web1")["via"], "ssh");
    assert_eq!(status(&j, "web2"), "differs");
    assert_eq!(status(&j, "dr1"), "unreachable");
    assert!(
        node(&j, "dr1")["reason"].as_str().unwrap().contains("ssh"),
        "{j}"
    );
    assert_eq!(status(&j, "proxy1"), "not-needed");
    assert!(
        node(&j, "web1")["clock_skew_seconds"]
            .as_i64()
            .unwrap()
            .abs()
            <= 2
    );
}

#[cfg(unix)]
#[test]
fn a_node_that_never_answers_times_out_and_the_rest_still_finish() {
    // Stand-in for a host that accepts the connection and then hangs: an "ssh" program that
    // sleeps. (A real hung host cannot be made to order here; the timeout path is the same.)
    use std::os::unix::fs::PermissionsExt;
    let c = Cluster::secret_server(KEY_A, Some(KEY_A));
    std::fs::write(c.key_path("dr1"), KEY_A).unwrap();
    let hang = c.path("hanging-ssh");
    std::fs::write(&hang, "#!/bin/sh\nsleep 30\n").unwrap();
    std::fs::set_permissions(&hang, std::fs::Permissions::from_mode(0o755)).unwrap();
    let text = std::fs::read_to_string(c.cluster_file()).unwrap().replace(
        "name = \"dr1\"\n",
        "name = \"dr1\"\naccess = \"ssh://root@192.0.2.1\"\n",
    );
    let cl = c.path("hang.toml");
    std::fs::write(&cl, text).unwrap();
    let t = std::time::Instant::now();
    let r = keyferry(
        &argv![
            "audit",
            "-c",
            &cl,
            "--json",
            "--ssh",
            &hang,
            "--timeout",
            "1s"
        ],
        None,
    );
    r.assert_code(1);
    assert!(
        t.elapsed() < std::time::Duration::from_secs(10),
        "the audit waited for the hung node"
    );
    let j = r.json();
    assert_eq!(status(&j, "dr1"), "unreachable");
    assert!(node(&j, "dr1")["reason"]
        .as_str()
        .unwrap()
        .contains("no answer within 1s"));
    assert_eq!(status(&j, "web2"), "match");
}

/// libfaketime's command, where it is installed.
#[cfg(unix)]
fn faketime() -> Option<&'static str> {
    ["/usr/bin/faketime", "/bin/faketime"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
}

/// A node whose clock is five minutes ahead (its keyferry under libfaketime, reached over a
/// real sshd) fails the audit, as it fails the upgrade preflight: exit 1, not "ok", and the
/// problem says so; the same node with its clock right passes.
#[cfg(unix)]
#[test]
fn a_node_whose_clock_is_off_fails_the_audit() {
    let Some(faketime) = faketime() else {
        eprintln!("SKIPPED: faketime missing; scripts/setup installs it");
        return;
    };
    let c = Cluster::secret_server(KEY_A, Some(KEY_A));
    std::fs::write(c.key_path("dr1"), KEY_A).unwrap();
    let Some(sshd) = Sshd::start(c.dir.path()) else {
        return;
    };
    let skewed = keyferry_wrapper(&c.path("skewed"), "", &format!("{faketime} -f +5m "));
    let text = std::fs::read_to_string(c.cluster_file()).unwrap();
    let with = |remote: &std::path::Path| {
        text.replace(
            "name = \"web2\"",
            &format!(
                "name = \"web2\"\naccess = \"ssh://root@127.0.0.1:{}\"\nremote_keyferry = {:?}",
                sshd.port, remote
            ),
        )
    };
    let cl = c.path("ssh.toml");
    let audit = || {
        keyferry(
            &argv!["audit", "-c", &cl, "--json", "--ssh-config", &sshd.config],
            None,
        )
    };
    std::fs::write(&cl, with(&skewed)).unwrap();
    let r = audit();
    r.assert_code(1);
    let j = r.json();
    assert_eq!(j["ok"], false, "{j}");
    assert_eq!(node(&j, "web2")["clock_flagged"], true, "{j}");
    assert_eq!(status(&j, "web2"), "match", "the keys agree: {j}");
    std::fs::write(&cl, with(std::path::Path::new(&bin()))).unwrap();
    let r = audit();
    r.assert_code(0);
    assert_eq!(r.json()["ok"], true);
}

/// Nodes reached by path get a clock too: the time a file keyferry writes in the node's
/// folder gets (the file server's, through a share), removed at once. Here the folders are
/// this machine's: every node is within a second; with keyferry's own clock five minutes
/// ahead (libfaketime) every node is five minutes behind, and the audit fails. The folders
/// hold exactly what they held before.
#[cfg(unix)]
#[test]
fn nodes_reached_by_path_get_a_clock_from_their_file_system() {
    let Some(faketime) = faketime() else {
        assert!(std::env::var_os("CI").is_none(), "faketime missing");
        eprintln!("SKIPPED: faketime missing; scripts/setup installs it");
        return;
    };
    let c = Cluster::secret_server(KEY_A, Some(KEY_A));
    std::fs::write(c.key_path("dr1"), KEY_A).unwrap();
    let before = snapshot(c.dir.path());
    let cl = c.cluster_file();
    let r = keyferry(&argv!["audit", "-c", &cl, "--json"], None);
    r.assert_code(0);
    let j = r.json();
    for n in j["nodes"].as_array().unwrap() {
        let skew = n["clock_skew_seconds"]
            .as_i64()
            .unwrap_or_else(|| panic!("{n}"));
        assert!(skew.abs() <= 2, "{n}");
        assert_eq!(n["clock_flagged"], false, "{n}");
    }
    let out = std::process::Command::new(faketime)
        .args(["-f", "+5m"])
        .arg(bin())
        .args(argv!["audit", "-c", &cl, "--json"])
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    let r = Run {
        args: vec!["audit".into()],
        out,
    };
    r.assert_code(1);
    let j = r.json();
    assert_eq!(j["ok"], false, "{j}");
    for n in j["nodes"].as_array().unwrap() {
        let skew = n["clock_skew_seconds"]
            .as_i64()
            .unwrap_or_else(|| panic!("{n}"));
        assert!((-302..=-298).contains(&skew), "{n}");
        assert_eq!(n["clock_flagged"], true, "{n}");
    }
    assert_eq!(before, snapshot(c.dir.path()), "no probe file is left");
}
