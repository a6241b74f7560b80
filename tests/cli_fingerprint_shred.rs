//! `fingerprint` (text, --words, --json node report) and `shred`.

use crate::common;
use common::*;

#[test]
fn fingerprint_json_is_the_documented_node_report() {
    let c = Cluster::secret_server(b"KEY", None);
    let cl = c.cluster_file();
    let r = keyferry(
        &argv!["fingerprint", "-c", &cl, "--node", "web1", "--json"],
        None,
    );
    r.assert_code(0);
    let j = r.json();
    assert_eq!(j["version"], 1);
    assert_eq!(j["kind"], "node-report");
    assert_eq!(j["cluster"], "ss-prod");
    assert_eq!(j["node"], "web1");
    assert_eq!(j["role"], "primary");
    assert_eq!(j["profile"], "secret-server");
    assert_eq!(j["status"], "complete");
    assert_eq!(
        j["fingerprint"],
        fingerprint_of(&[("encryption.config", b"KEY")])
    );
    assert_eq!(j["files"][0]["sha256"], sha256_hex(b"KEY"));
    assert_eq!(j["files"][0]["len"], 3);
    assert!(j["time"].as_str().unwrap().ends_with('Z'));
    // The report parses back into the library type (what audit will read).
    let back: keyferry::audit::NodeReport = serde_json::from_value(j).unwrap();
    assert_eq!(back.node, "web1");

    let r = keyferry(
        &argv!["fingerprint", "-c", &cl, "--node", "dr1", "--json"],
        None,
    );
    assert_eq!(r.json()["status"], "missing");
    assert!(r.json()["fingerprint"].is_null());
    let r = keyferry(
        &argv!["fingerprint", "-c", &cl, "--node", "proxy1", "--json"],
        None,
    );
    assert_eq!(r.json()["status"], "not-needed");
}

#[test]
fn fingerprint_words_are_twelve_listed_words() {
    let c = Cluster::secret_server(b"KEY", None);
    let cl = c.cluster_file();
    let r = keyferry(
        &argv!["fingerprint", "-c", &cl, "--node", "web1", "--words"],
        None,
    );
    r.assert_code(0);
    let stdout = r.stdout();
    let words: Vec<&str> = stdout.lines().nth(1).unwrap().split(' ').collect();
    assert_eq!(words.len(), 12);
    assert!(words.iter().all(|w| keyferry::words::list().contains(w)));
}

#[test]
fn fingerprint_without_cluster_file_uses_profile_and_root() {
    let d = tempfile::tempdir().unwrap();
    std::fs::write(d.path().join("encryption.config"), b"KEY").unwrap();
    let r = keyferry(
        &argv![
            "fingerprint",
            "--profile",
            "secret-server",
            "--root",
            &d.path()
        ],
        None,
    );
    r.assert_code(0);
    assert_eq!(
        r.stdout().lines().next().unwrap(),
        fingerprint_of(&[("encryption.config", b"KEY")])
    );
}

#[test]
fn unknown_node_and_bad_cluster_file_are_errors_with_hints() {
    let c = Cluster::secret_server(b"KEY", None);
    let cl = c.cluster_file();
    let r = keyferry(
        &argv!["fingerprint", "-c", &cl, "--node", "nope", "--json"],
        None,
    );
    r.assert_code(2);
    assert_eq!(r.json()["error"]["code"], "node-not-found");
    std::fs::write(&cl, "name = 1").unwrap();
    let r = keyferry(&argv!["fingerprint", "-c", &cl, "--json"], None);
    r.assert_code(2);
    assert_eq!(r.json()["error"]["code"], "cluster-file");
    assert!(r.stderr().contains("docs/cluster-file.md"));
}

#[test]
fn shred_checks_every_argument_before_removing_any() {
    let d = tempfile::tempdir().unwrap();
    let a = d.path().join("a");
    std::fs::write(&a, b"secret").unwrap();
    let before = snapshot(d.path());
    let r = keyferry(&argv!["shred", &a, &d.path().join("typo")], None);
    r.assert_code(2);
    assert_eq!(before, snapshot(d.path()));
    let r = keyferry(&argv!["shred", &a, &d.path()], None);
    r.assert_code(2);
    assert_eq!(before, snapshot(d.path()));

    let r = keyferry(&argv!["shred", &a, "--json"], None);
    r.assert_code(0);
    assert!(!a.exists());
    let m = r.json()["removed"][0]["method"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(m == "overwritten-and-removed" || m == "removed", "{m}");
}
