//! Each exit code of `src/bin/keyferry/exit.rs`, and the JSON error contract.

use crate::common;
use common::*;

#[test]
fn zero_on_success() {
    keyferry(&["--version"], None).assert_code(0);
    keyferry(&["--help"], None).assert_code(0);
    let c = Cluster::secret_server(b"K", None);
    keyferry(
        &argv!["fingerprint", "-c", &c.cluster_file(), "--node", "web1"],
        None,
    )
    .assert_code(0);
}

#[test]
fn two_on_usage_errors_with_json_error_document() {
    keyferry(&["keys", "frobnicate"], None).assert_code(2);
    keyferry::<&str>(&[], None).assert_code(2);
    let r = keyferry(&["keys", "import", "--json"], None);
    r.assert_code(2);
    assert_eq!(r.json()["error"]["code"], "usage");
    assert_eq!(r.json()["version"], 1);
}

#[test]
fn two_on_bad_input() {
    let r = keyferry(&["fingerprint", "--json"], None);
    r.assert_code(2);
    assert_eq!(r.json()["error"]["code"], "usage");
    let r = keyferry(
        &[
            "keys",
            "inspect",
            "/nonexistent/bundle",
            "--batch",
            "--json",
        ],
        None,
    );
    r.assert_code(2);
    assert_eq!(r.json()["error"]["code"], "file-missing");
    assert!(r.stderr().contains("keyferry bundle"), "{}", r.stderr());
}

#[test]
fn one_when_a_check_says_no() {
    let c = Cluster::secret_server(b"A", Some(b"B"));
    let r = keyferry(&argv!["audit", "-c", &c.cluster_file()], None);
    r.assert_code(1);
    // And 0 when it says yes; 2 when it cannot run.
    std::fs::write(c.key_path("web2"), b"A").unwrap();
    std::fs::write(c.key_path("dr1"), b"A").unwrap();
    keyferry(&argv!["audit", "-c", &c.cluster_file()], None).assert_code(0);
    keyferry(&["audit", "-c", "/nonexistent/cluster.toml"], None).assert_code(2);
}

#[test]
fn demo_runs_end_to_end() {
    let r = keyferry(&["demo", "--json"], None);
    r.assert_code(0);
    let j = r.json();
    assert_eq!(j["agreed_before"], false);
    assert_eq!(j["agreed_after"], true);
    assert_eq!(j["before"]["kind"], "audit");
    assert_eq!(j["after"]["ok"], true);
    assert_eq!(j["after"]["nodes"].as_array().unwrap().len(), 4);
    let fps: Vec<_> = j["after"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["role"] != "proxy")
        .map(|n| n["fingerprint"].clone())
        .collect();
    assert!(fps.iter().all(|f| f == &fps[0] && f.is_string()));
}

/// The demo shows the audit before and after, and ends with the commands an admin would type
/// on a real cluster.
#[test]
fn demo_audits_and_ends_with_the_real_commands() {
    let r = keyferry(&["demo"], None);
    r.assert_code(0);
    let out = r.stdout();
    assert_eq!(out.matches("keyferry audit:").count(), 2, "{out}");
    assert!(out.contains("problem: different keys: web2"), "{out}");
    assert!(out.contains("On a real cluster"), "{out}");
    assert!(
        out.contains("keyferry keys export -c cluster.toml -o keys.kfb"),
        "{out}"
    );
    assert!(out.contains("--replace --keep-bundle"), "{out}");
}

/// 3: partly done. A cluster sync that changes one node and fails on another says so, and
/// its JSON names which target changed and which failed.
#[test]
fn three_when_some_targets_changed_and_others_failed() {
    let c = Cluster::secret_server(b"KEY", Some(b"KEY"));
    std::fs::write(c.app("web1").join("new.js"), b"new").unwrap();
    std::fs::remove_file(c.app("dr1").join("web.config")).unwrap();
    let cf = c.cluster_file();
    let r = keyferry(
        &argv!["sync", "-c", &cf, "--node", "web1", "--to", "web2", "--to", "dr1", "--json"],
        None,
    );
    r.assert_code(3);
    let results: Vec<(String, String)> = r.json()["targets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["node"].as_str().unwrap().to_owned(),
                t["result"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert!(
        results.contains(&("web2".into(), "synced".into())),
        "{results:?}"
    );
    assert!(
        results.contains(&("dr1".into(), "failed".into())),
        "{results:?}"
    );
}
