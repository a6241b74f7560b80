//! `keyferry upgrade plan`: the vendor procedures as a checklist for a real cluster file.

mod common;
use common::*;

fn plan(cluster: &std::path::Path) -> Run {
    keyferry(
        &["upgrade", "plan", "-c", cluster.to_str().unwrap(), "--json"],
        None,
    )
}

fn ids(j: &serde_json::Value) -> Vec<String> {
    j["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_owned())
        .collect()
}

fn pos(ids: &[String], id: &str) -> usize {
    ids.iter()
        .position(|i| i == id)
        .unwrap_or_else(|| panic!("no step {id} in {ids:?}"))
}

#[test]
fn a_secret_server_cluster_gets_the_seeds_steps_in_order_with_its_node_names() {
    let c = Cluster::secret_server(b"KEY-A", Some(b"KEY-B"));
    let before = c.snapshot();
    let r = plan(&c.cluster_file());
    r.assert_code(0);
    let j = r.json();
    assert_eq!(j["kind"], "upgrade-plan");
    assert_eq!(
        j["procedures"],
        serde_json::json!(["secret-server-cluster"])
    );
    let ids = ids(&j);
    for (a, b) in [
        ("ss.preflight", "ss.backup"),
        ("ss.backup", "ss.stop"),
        ("ss.stop", "ss.upgrade-primary"),
        ("ss.upgrade-primary", "ss.primary-works"),
        ("ss.primary-works", "ss.sync"),
        ("ss.sync", "ss.keys"),
        ("ss.keys", "ss.start"),
        ("ss.start", "ss.verify"),
    ] {
        assert!(pos(&ids, a) < pos(&ids, b), "{a} before {b}: {ids:?}");
    }
    let steps = j["steps"].as_array().unwrap();
    // One stop and one start per other node; none for the primary.
    for id in ["ss.stop", "ss.start"] {
        let mut on: Vec<&str> = steps
            .iter()
            .filter(|s| s["id"] == id)
            .map(|s| s["node"].as_str().unwrap())
            .collect();
        on.sort();
        assert_eq!(on, ["dr1", "proxy1", "web2"], "{id}");
    }
    for (i, s) in steps.iter().enumerate() {
        assert_eq!(s["n"], i + 1);
        assert!(s["node"].is_string(), "every step names its node: {s}");
        if s["kind"] == "auto" {
            let what = s["what"].as_str().unwrap();
            assert!(
                what.starts_with("keyferry ") && what.contains("--node web1"),
                "{what}"
            );
        }
    }
    let sync = &steps[pos(&ids, "ss.sync")];
    assert!(sync["gate"].as_str().unwrap().contains("primary works"));
    // Text: the same checklist, and it changed nothing.
    let t = keyferry(
        &["upgrade", "plan", "-c", c.cluster_file().to_str().unwrap()],
        None,
    );
    t.assert_code(0);
    assert!(
        t.stdout()
            .contains("[manual] Upgrade the primary (on web1)"),
        "{}",
        t.stdout()
    );
    assert!(t.stdout().contains("keyferry sync -c"), "{}", t.stdout());
    assert_eq!(before, c.snapshot());
}

const PS: &str = r#"name = "nps"
profile = "privilege-secure"
[ha]
passfile = "/nonexistent/pgpass"
[[node]]
name = "nps1"
role = "primary"
address = "10.0.5.1"
paths = { keytools = "/k1", ha = "/h1" }
[[node]]
name = "nps2"
role = "secondary"
address = "10.0.5.2"
paths = { keytools = "/k2", ha = "/h2" }
[[node]]
name = "act1"
role = "action"
address = "10.0.5.11"
paths = { keytools = "/k3" }
[[node]]
name = "prx1"
role = "proxy"
address = "10.0.5.12"
"#;

#[test]
fn a_privilege_secure_pair_with_remote_hosts_keeps_one_writable_database_and_skips_proxy_keys() {
    let d = tempfile::tempdir().unwrap();
    let f = d.path().join("nps.toml");
    std::fs::write(&f, PS).unwrap();
    let r = plan(&f);
    r.assert_code(0);
    let j = r.json();
    assert_eq!(
        j["procedures"],
        serde_json::json!(["privilege-secure-ha", "privilege-secure-remote"])
    );
    let ids = ids(&j);
    let order = [
        "ha.preflight",
        "ha.failover",
        "ha.upgrade-secondary",
        "ha.rejoin-primary",
        "ha.failover-back",
        "ha.upgrade-primary",
        "ha.push-keys",
        "ha.import-keys",
        "ha.cleanup",
        "ha.rejoin-secondary",
        "ha.verify",
        "rs.upgrade-host",
        "rs.push-keys",
        "rs.import-keys",
        "rs.register",
        "rs.verify",
    ];
    for w in order.windows(2) {
        assert!(pos(&ids, w[0]) < pos(&ids, w[1]), "{w:?}: {ids:?}");
    }
    let steps = j["steps"].as_array().unwrap();
    let on = |id: &str| -> Vec<String> {
        steps
            .iter()
            .filter(|s| s["id"] == id)
            .map(|s| s["node"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(on("ha.failover"), ["nps1"]);
    assert_eq!(on("ha.failover-back"), ["nps2"]);
    assert_eq!(on("ha.upgrade-secondary"), ["nps2"]);
    assert_eq!(on("rs.upgrade-host"), ["act1", "prx1"]);
    assert_eq!(on("rs.import-keys"), ["act1"], "no keys for a Proxy host");
}

#[test]
fn clusters_without_a_procedure_are_refused() {
    let d = tempfile::tempdir().unwrap();
    let f = d.path().join("plain.toml");
    // Privilege Secure without [ha] and without remote hosts: a standard upgrade.
    let plain: String = PS
        .split("[[node]]")
        .take(3)
        .collect::<Vec<_>>()
        .join("[[node]]")
        .replace("[ha]\npassfile = \"/nonexistent/pgpass\"\n", "");
    std::fs::write(&f, plain).unwrap();
    let r = plan(&f);
    r.assert_code(2);
    assert_eq!(r.json()["error"]["code"], "invalid-input", "{}", r.stdout());
    assert!(r.stderr().contains("NPS_Setup") || r.stdout().contains("NPS_Setup"));
}
