//! `keyferry upgrade plan`: the vendor procedures as a checklist for a real cluster file.

use crate::common;
use common::*;
use std::ffi::OsString;

fn plan(cluster: &std::path::Path) -> Run {
    keyferry(&argv!["upgrade", "plan", "-c", &cluster, "--json"], None)
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
        ("preflight", "ss.backup"),
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
            // audit is cluster-wide; everything else names the node it runs on.
            assert!(
                what.starts_with("keyferry ")
                    && (what.contains("--node web1") || what.starts_with("keyferry audit")),
                "{what}"
            );
        }
    }
    let sync = &steps[pos(&ids, "ss.sync")];
    assert!(sync["gate"].as_str().unwrap().contains("primary works"));
    // "Upgrading Remote DR Instances": the web nodes get the folder; the DR node only after
    // the upgraded database is backed up, copied and restored there.
    let what = |id: &str| steps[pos(&ids, id)]["what"].as_str().unwrap().to_owned();
    assert!(
        what("ss.sync").contains("--to web2") && !what("ss.sync").contains("dr1"),
        "{}",
        what("ss.sync")
    );
    for (a, b) in [
        ("ss.sync", "ss.dr-backup-database"),
        ("ss.dr-backup-database", "ss.dr-copy-backup"),
        ("ss.dr-copy-backup", "ss.dr-restore-database"),
        ("ss.dr-restore-database", "ss.dr-sync"),
        ("ss.dr-sync", "ss.keys"),
    ] {
        assert!(pos(&ids, a) < pos(&ids, b), "{a} before {b}: {ids:?}");
    }
    assert!(what("ss.dr-backup-database").contains("BACKUP DATABASE"));
    assert!(what("ss.dr-restore-database").contains("RESTORE DATABASE"));
    assert!(what("ss.dr-sync").contains("sync --checksum --to dr1"));
    let dr_sync = &steps[pos(&ids, "ss.dr-sync")];
    assert_eq!(dr_sync["node"], "web1");
    assert!(dr_sync["gate"].as_str().unwrap().contains("dr1's database"));
    assert!(
        dr_sync["undo"].as_str().unwrap().contains("--to dr1"),
        "{dr_sync}"
    );
    assert!(!ids.iter().any(|i| i.starts_with("ss.mirror")), "{ids:?}");
    // Text: the same checklist, and it changed nothing.
    let t = keyferry(&argv!["upgrade", "plan", "-c", &c.cluster_file()], None);
    t.assert_code(0);
    assert!(
        t.stdout()
            .contains("[manual] Upgrade the primary (on web1)"),
        "{}",
        t.stdout()
    );
    assert!(
        t.stdout().contains("keyferry sync --checksum --to web2"),
        "{}",
        t.stdout()
    );
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
        "preflight",
        "ha.failover",
        "ha.upgrade-secondary",
        "ha.reboot-secondary",
        "ha.empty-archive",
        "ha.rejoin-primary",
        "ha.failover-back",
        "ha.upgrade-primary",
        "ha.reboot-primary",
        "ha.export-keys",
        "ha.push-keys",
        "ha.import-keys",
        "ha.cleanup",
        "ha.rejoin-secondary",
        "ha.verify",
        "rs.upgrade-host",
        "rs.export-keys",
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
    // The remote hosts' push names them: the pair's secondary, whose keys.exp was cleaned
    // up, must not get another.
    let push = steps.iter().find(|s| s["id"] == "rs.push-keys").unwrap();
    let args: Vec<&str> = push["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert!(args.windows(2).any(|w| w == ["--to", "act1"]), "{args:?}");
    assert!(!args.contains(&"nps2"), "{args:?}");
    assert!(!args.contains(&"prx1"), "{args:?}");
}

/// The plan's ids in order and its notes, for a cluster file with `extra` appended.
fn plan_with(base: &str, extra: &str) -> (Vec<String>, serde_json::Value) {
    let d = tempfile::tempdir().unwrap();
    let f = d.path().join("cluster.toml");
    std::fs::write(&f, format!("{base}\n{extra}")).unwrap();
    let r = plan(&f);
    r.assert_code(0);
    let j = r.json();
    (ids(&j), j)
}

fn in_order(ids: &[String], order: &[&str]) {
    for w in order.windows(2) {
        assert!(pos(ids, w[0]) < pos(ids, w[1]), "{w:?}: {ids:?}");
    }
}

const KEY_STEPS: [&str; 6] = [
    "ha.export-keys",
    "ha.import-keys",
    "ha.cleanup",
    "rs.export-keys",
    "rs.import-keys",
    "rs.cleanup",
];

/// "Upgrading from 3.6 or Higher to 3.7CU1 (3.7.1250) or Higher": the key export and import
/// are left out exactly then (appsettings.json still goes to the secondary), and the plan
/// says so; an unreadable version is refused with the cluster file named.
#[test]
fn privilege_secure_key_steps_are_left_out_from_3_6_to_3_7_cu1_only() {
    for (from, to, kept) in [
        ("3.6", "3.7CU1", true),
        ("3.6.1000", "3.7.1250", true),
        ("3.7", "4.1", true),
        ("3.6", "3.7", false),
        ("3.6", "3.7.1249", false),
        ("3.5", "3.7CU1", false),
    ] {
        let (ids, j) = plan_with(
            PS,
            &format!("[upgrade]\nfrom_version = \"{from}\"\nto_version = \"{to}\"\n"),
        );
        for k in KEY_STEPS {
            assert_eq!(
                !ids.contains(&k.to_owned()),
                kept,
                "{from} -> {to}: {k} in {ids:?}"
            );
        }
        assert!(
            ids.contains(&"ha.push-keys".to_owned()),
            "appsettings.json still goes"
        );
        assert_eq!(ids.contains(&"rs.push-keys".to_owned()), !kept, "{ids:?}");
        let notes = j["notes"].to_string();
        assert!(notes.contains(&format!("from {from} to {to}")), "{notes}");
        assert_eq!(notes.contains("left out"), kept, "{notes}");
    }
    // Without versions: every key step is there.
    let (ids, _) = plan_with(PS, "");
    for k in KEY_STEPS {
        assert!(ids.contains(&k.to_owned()), "{k}: {ids:?}");
    }
    for bad in ["three", "3.7CU", "3.7.1.2", ""] {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("cluster.toml");
        std::fs::write(
            &f,
            format!("{PS}\n[upgrade]\nfrom_version = \"{bad}\"\nto_version = \"4.0\"\n"),
        )
        .unwrap();
        let r = plan(&f);
        r.assert_code(2);
        assert_eq!(
            r.json()["error"]["code"],
            "cluster-file",
            "{bad}: {}",
            r.stdout()
        );
        assert!(
            r.stdout().contains("not a Privilege Secure version"),
            "{}",
            r.stdout()
        );
    }
}

/// `ha_order = "vendor"`: both servers upgraded first (the primary while fenced), then the
/// keys, then HA re-established, with one writable database throughout; a reboot after each
/// upgrade and the Archive folder emptied before HA is configured, in either order.
#[test]
fn the_vendors_ha_order_is_available_and_both_orders_reboot_and_empty_the_archive() {
    let (ids, j) = plan_with(PS, "[upgrade]\nha_order = \"vendor\"\n");
    in_order(
        &ids,
        &[
            "ha.failover",
            "ha.upgrade-secondary",
            "ha.reboot-secondary",
            "ha.upgrade-primary",
            "ha.reboot-primary",
            "ha.export-keys",
            "ha.push-keys",
            "ha.import-keys",
            "ha.cleanup",
            "ha.empty-archive",
            "ha.rejoin-primary",
            "ha.failover-back",
            "ha.rejoin-secondary",
            "ha.verify",
        ],
    );
    assert!(
        j["notes"].to_string().contains("vendor's order"),
        "{}",
        j["notes"]
    );
    let steps = j["steps"].as_array().unwrap();
    let on = |id: &str| -> Vec<&str> {
        steps
            .iter()
            .filter(|s| s["id"] == id)
            .map(|s| s["node"].as_str().unwrap())
            .collect()
    };
    assert_eq!(on("ha.empty-archive"), ["nps1", "nps2"]);
    assert_eq!(on("ha.reboot-primary"), ["nps1"]);
    // keyferry's order (the default) says how to get the vendor's.
    let (_, j) = plan_with(PS, "");
    assert!(
        j["notes"].to_string().contains("ha_order"),
        "{}",
        j["notes"]
    );
    // A word keyferry does not know is refused.
    let d = tempfile::tempdir().unwrap();
    let f = d.path().join("cluster.toml");
    std::fs::write(&f, format!("{PS}\n[upgrade]\nha_order = \"fastest\"\n")).unwrap();
    plan(&f).assert_code(2);
}

/// "Upgrading Database Mirroring": every web server on the same database first; after the
/// nodes start, licences activated, the mirror synchronized (the query to check it), and a
/// node that used the mirror pointed back.
#[test]
fn a_mirrored_secret_server_database_gets_the_mirroring_procedure() {
    let c = Cluster::secret_server(b"KEY-A", Some(b"KEY-B"));
    let base = std::fs::read_to_string(c.cluster_file()).unwrap();
    let (ids, j) = plan_with(
        &base,
        "[upgrade]\nmirroring = true\nsql_instance = \"SQL01\"\ndatabase = \"SecretServer\"\n\
         dr_sql_instance = \"DRSQL\"\n",
    );
    assert_eq!(
        j["procedures"],
        serde_json::json!(["secret-server-mirroring"])
    );
    in_order(
        &ids,
        &[
            "ss.backup",
            "ss.mirror-same-database",
            "ss.stop",
            "ss.upgrade-primary",
            "ss.sync",
            "ss.keys",
            "ss.start",
            "ss.mirror-activated",
            "ss.mirror-replicated",
            "ss.mirror-point-back",
            "ss.verify",
        ],
    );
    let steps = j["steps"].as_array().unwrap();
    let what = |id: &str| steps[pos(&ids, id)]["what"].as_str().unwrap().to_owned();
    assert!(what("ss.mirror-replicated").contains("sys.database_mirroring"));
    assert!(what("ss.mirror-replicated").contains("-S SQL01"));
    assert!(what("ss.mirror-replicated").contains("DB_ID('SecretServer')"));
    assert!(what("ss.dr-restore-database").contains("-S DRSQL"));
    assert!(what("ss.dr-backup-database").contains("[SecretServer]"));
    let back: Vec<&str> = steps
        .iter()
        .filter(|s| s["id"] == "ss.mirror-point-back")
        .map(|s| s["node"].as_str().unwrap())
        .collect();
    assert!(back.contains(&"web2") && !back.contains(&"dr1"), "{back:?}");
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

/// Runs `upgrade <cmd>` for web1 in batch mode with `extra` arguments and `env`.
fn up(c: &Cluster, cmd: &str, extra: &[&str], env: &[(&str, &str)]) -> Run {
    let cl = c.cluster_file();
    let mut a = Vec::from(argv!["upgrade", cmd, "-c", cl, "--node", "web1", "--batch"]);
    a.extend(extra.iter().map(OsString::from));
    keyferry_env(&a, None, env)
}

/// The step the run waits at, or None when it is finished.
fn waiting_at(c: &Cluster) -> Option<usize> {
    let r = up(c, "status", &["--json"], &[]);
    r.assert_code(0);
    let j = r.json();
    j["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["done"].is_null())
        .map(|s| s["n"].as_u64().unwrap() as usize)
}

/// A four-node Secret Server cluster mid-upgrade: web1 has the new application folder,
/// web2, dr1 and proxy1 the old one, each its own database.config; web2 a different key.
fn upgrade_cluster() -> Cluster {
    let c = Cluster::secret_server(b"KEY-A primary", Some(b"KEY-B stale"));
    for n in ["web1", "web2", "dr1", "proxy1"] {
        let v = if n == "web1" { "v2" } else { "v1" };
        std::fs::create_dir_all(c.app(n).join("bin")).unwrap();
        std::fs::write(c.app(n).join("bin/SecretServer.dll"), format!("dll {v}")).unwrap();
        std::fs::write(c.app(n).join("web.config"), format!("<configuration {v}/>")).unwrap();
    }
    std::fs::write(c.app("web2").join("bin/Old.dll"), b"gone in v2").unwrap();
    c
}

/// Every node's application folder equals web1's but for its own database.config, and the
/// keys are the primary's where the role holds them.
fn assert_upgraded(c: &Cluster, dbs: &BTreeMap<String, Vec<u8>>) {
    let tree = |n: &str| -> BTreeMap<PathBuf, Vec<u8>> {
        snapshot(&c.app(n))
            .into_iter()
            .map(|(p, b)| (p.strip_prefix(c.app(n)).unwrap().to_owned(), b))
            .filter(|(p, _)| p != Path::new("database.config"))
            .collect()
    };
    let want = tree("web1");
    for n in ["web2", "dr1"] {
        assert_eq!(tree(n), want, "{n}'s folder is not web1's");
    }
    for (n, db) in dbs {
        assert_eq!(
            &std::fs::read(c.app(n).join("database.config")).unwrap(),
            db,
            "{n}"
        );
    }
    let r = keyferry(&argv!["audit", "-c", &c.cluster_file(), "--json"], None);
    r.assert_code(0);
}

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

fn dbs(c: &Cluster) -> BTreeMap<String, Vec<u8>> {
    ["web1", "web2", "dr1", "proxy1"]
        .iter()
        .map(|n| {
            (
                n.to_string(),
                std::fs::read(c.app(n).join("database.config")).unwrap(),
            )
        })
        .collect()
}

#[test]
fn a_secret_server_upgrade_runs_to_the_end_with_the_manual_steps_confirmed() {
    let c = upgrade_cluster();
    let dbs = dbs(&c);
    let total = plan(&c.cluster_file()).json()["steps"]
        .as_array()
        .unwrap()
        .len();
    // --json: one document on stdout (the steps' own messages go to stderr).
    let r = upk(&c, "run", &["--json"], &[]);
    r.assert_code(0);
    assert_eq!(r.json()["kind"], "upgrade-run");
    assert_eq!(r.json()["steps"][0]["done"], "ran");
    // A second run is refused while this one is open, changing nothing.
    let before = c.snapshot();
    let r = upk(&c, "run", &[], &[]);
    r.assert_code(2);
    assert!(r.stderr().contains("in progress"), "{}", r.stderr());
    assert_eq!(before, c.snapshot());
    let mut rounds = 0;
    while let Some(n) = waiting_at(&c) {
        rounds += 1;
        assert!(rounds < 40, "the run does not finish");
        // Confirming a step that is not the waiting one is refused, changing nothing.
        let before = c.snapshot();
        let r = upk(&c, "resume", &["--confirm", &(n + 1).to_string()], &[]);
        r.assert_code(2);
        assert_eq!(before, c.snapshot());
        if n == 7 {
            // The sync comes next; web2's folder is missing: the step fails, the run stops
            // and says how to go on and how to undo, and goes on once it is back.
            std::fs::rename(c.app("web2"), c.path("web2-away")).unwrap();
            let r = upk(&c, "resume", &["--confirm", "7"], &[]);
            // Partly done (3): the run changed nodes before (and the sync changed proxy1;
            // dr1 gets its folder in a step of its own, after its database).
            r.assert_code(3);
            assert!(r.stderr().contains("step 8"), "{}", r.stderr());
            assert!(r.stderr().contains("upgrade resume"), "{}", r.stderr());
            assert!(r.stderr().contains("sync rollback"), "{}", r.stderr());
            assert!(
                !r.stderr().contains("--node web1 --node web1"),
                "{}",
                r.stderr()
            );
            assert!(
                r.stderr().contains("web2: failed [io]"),
                "the reason is relayed: {}",
                r.stderr()
            );
            assert_eq!(waiting_at(&c), Some(8));
            // The failure and its reason are kept in the run: status shows them.
            let st = up(&c, "status", &["--json"], &[]).json();
            let failed = &st["steps"][7]["failed"];
            assert!(failed["reason"].is_string(), "{st}");
            assert!(
                failed["changes"].to_string().contains("web2"),
                "the failure names the node: {failed}"
            );
            let text = up(&c, "status", &[], &[]).stdout();
            assert!(text.contains("FAILED"), "{text}");
            std::fs::rename(c.path("web2-away"), c.app("web2")).unwrap();
            upk(&c, "resume", &[], &[]).assert_code(0);
            continue;
        }
        if n == 3 {
            // The last resume typed again with the next step (as a list): step 2 is done
            // already, and that is no reason to refuse.
            let r = upk(&c, "resume", &["--confirm", "2,3"], &[]);
            r.assert_code(0);
            assert!(
                r.stderr().contains("step 2 is done already"),
                "{}",
                r.stderr()
            );
            continue;
        }
        let r = upk(&c, "resume", &["--confirm", &n.to_string()], &[]);
        r.assert_code(0);
        // A confirmed step says so (it used to print nothing); a confirmed key step runs.
        assert!(
            r.stdout().contains(&format!("step {n}/{total} confirmed"))
                || r.stdout()
                    .contains(&format!("step {n}/{total}: Bring every node")),
            "{}",
            r.stdout()
        );
    }
    assert_upgraded(&c, &dbs);
    assert_eq!(std::fs::read(c.key_path("web2")).unwrap(), b"KEY-A primary");
    assert_eq!(std::fs::read(c.key_path("dr1")).unwrap(), b"KEY-A primary");
    let r = upk(&c, "status", &[], &[]);
    assert!(r.stdout().contains("finished"), "{}", r.stdout());
    // The record: what each automatic step changed on which node, and its whole report.
    let j = upk(&c, "status", &["--json"], &[]).json();
    let step = |id: &str| {
        j["steps"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["id"] == id)
            .unwrap()
            .clone()
    };
    let sync = step("ss.sync");
    assert_eq!(sync["done"], "ran");
    let changed: Vec<&str> = sync["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    assert!(
        changed.contains(&"web2: synced (0 added, 2 updated, 1 deleted)"),
        "{changed:?}"
    );
    assert!(step("ss.keys")["changes"][0]
        .as_str()
        .unwrap()
        .starts_with("web2: installed, previous files in"));
    assert_eq!(step("ss.backup")["done"], "confirmed");
    let runs = c.path("web1/state/upgrade-runs");
    let run = first_entry(&runs);
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run.join("08-ss.sync.json")).unwrap()).unwrap();
    assert_eq!(report["kind"], "sync");
    // The finished run is kept beside its reports, where a next run leaves it.
    let record: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run.join("upgrade-run.json")).unwrap()).unwrap();
    assert!(record["finished"].is_string(), "{record}");
    assert_eq!(record["steps"], j["steps"]);
    // No key bytes in the run's state or its steps' reports (the replaced key is in the
    // backups folder, and only there).
    let state = snapshot(&c.path("web1/state"));
    assert!(
        state.contains_key(&run.join("08-ss.sync.json")),
        "{:?}",
        state.keys()
    );
    for (path, bytes) in state {
        if path.starts_with(c.path("web1/state/backups")) {
            continue;
        }
        for k in KEYS {
            assert!(
                !bytes.windows(k.len()).any(|w| w == k),
                "key bytes in {}",
                path.display()
            );
        }
    }
}

const KEYS: [&[u8]; 2] = [b"KEY-A primary", b"KEY-B stale"];

/// [`up`], and neither key's bytes in what it printed.
fn upk(c: &Cluster, cmd: &str, extra: &[&str], env: &[(&str, &str)]) -> Run {
    let r = up(c, cmd, extra, env);
    for k in KEYS {
        for out in [&r.out.stdout, &r.out.stderr] {
            assert!(!out.windows(k.len()).any(|w| w == k), "key bytes in output");
        }
    }
    r
}

/// Each step's kind ("auto" or "manual"), in order; a key push, which waits for the admin
/// when a node's keys differ, counts as "asks".
#[cfg(feature = "failpoints")]
fn step_kinds(c: &Cluster) -> Vec<String> {
    plan(&c.cluster_file()).json()["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            if s["confirm_replace"] == true {
                "asks".to_owned()
            } else {
                s["kind"].as_str().unwrap().to_owned()
            }
        })
        .collect()
}

/// (Built with the test-only `failpoints` feature, as scripts/test-all does.) The run killed
/// right after each automatic step did its work, before the run recorded
/// it, then resumed: it completes, and what must happen once happened once (one backup of
/// web2's replaced key, one swap of each synced folder).
#[cfg(feature = "failpoints")]
#[test]
fn an_upgrade_killed_after_every_step_resumes_and_does_nothing_twice() {
    let c = upgrade_cluster();
    let dbs = dbs(&c);
    let kinds = step_kinds(&c);
    up(
        &c,
        "run",
        &[],
        &[("KEYFERRY_FAILPOINT", "upgrade:step-ran")],
    );
    let mut kills = 1;
    let mut rounds = 0;
    // Each invocation dies at its first automatic step once it has run ("#1"), or runs that
    // one again and dies at the next ("#2"): every automatic step is killed at least once,
    // and every one that was killed runs again. A waiting manual step is confirmed.
    let mut which = "upgrade:step-ran#2";
    while let Some(n) = waiting_at(&c) {
        rounds += 1;
        assert!(rounds < 80, "the run does not finish");
        let confirm = n.to_string();
        let extra: &[&str] = if kinds[n - 1] != "auto" {
            &["--confirm", &confirm]
        } else {
            &[]
        };
        let r = up(&c, "resume", extra, &[("KEYFERRY_FAILPOINT", which)]);
        if r.code() == 0 {
            which = "upgrade:step-ran#1";
            continue;
        }
        kills += 1;
        assert_ne!(r.code(), 2, "a failure, not the kill: {}", r.stderr());
        which = if which.ends_with("#1") {
            "upgrade:step-ran#2"
        } else {
            "upgrade:step-ran#1"
        };
    }
    // Automatic steps here: preflight, sync, keys, verify.
    assert!(kills >= 4, "the kill hit {kills} times");
    assert_upgraded(&c, &dbs);
    let backups: Vec<_> = std::fs::read_dir(c.path("web1/state/backups/web2"))
        .unwrap()
        .collect();
    assert_eq!(backups.len(), 1, "web2's key was backed up more than once");
}

/// The run killed right after each step is recorded, manual and automatic alike (the state
/// written, nothing after it done): every resume goes on at the next step, and the run ends
/// as an unkilled one does, each step done once.
#[cfg(feature = "failpoints")]
#[test]
fn an_upgrade_killed_after_every_recorded_step_goes_on_at_the_next() {
    let c = upgrade_cluster();
    let dbs = dbs(&c);
    let kinds = step_kinds(&c);
    let die = [("KEYFERRY_FAILPOINT", "upgrade:step-done")];
    let r = up(&c, "run", &[], &die);
    assert_ne!(r.code(), 0, "the kill did not hit");
    assert_ne!(r.code(), 2, "a failure, not the kill: {}", r.stderr());
    let mut kills = 1;
    let mut last = waiting_at(&c).unwrap();
    assert_eq!(last, 2, "step 1 was recorded before the kill");
    while let Some(n) = waiting_at(&c) {
        assert!(kills < 40, "the run does not finish");
        let confirm = n.to_string();
        let extra: &[&str] = if kinds[n - 1] != "auto" {
            &["--confirm", &confirm]
        } else {
            &[]
        };
        let r = up(&c, "resume", extra, &die);
        assert_ne!(r.code(), 2, "a failure, not the kill: {}", r.stderr());
        if r.code() != 0 {
            kills += 1;
            // Exactly one step more is recorded per killed invocation.
            let now = waiting_at(&c).unwrap_or(kinds.len() + 1);
            assert_eq!(now, last + 1, "{}", r.stderr());
            last = now;
        }
    }
    assert_eq!(
        kills,
        kinds.len(),
        "every step's record was followed by a kill"
    );
    assert_upgraded(&c, &dbs);
    // Cut off right after its last step, the run's record beside its reports is missing; the
    // next run puts it there before taking its place, and keeps its own reports apart.
    let runs = c.path("web1/state/upgrade-runs");
    let first = first_entry(&runs);
    assert!(!first.join("upgrade-run.json").exists());
    up(&c, "run", &[], &[]).assert_code(0);
    let record: serde_json::Value =
        serde_json::from_slice(&std::fs::read(first.join("upgrade-run.json")).unwrap()).unwrap();
    assert!(record["finished"].is_string(), "{record}");
    assert_eq!(std::fs::read_dir(&runs).unwrap().count(), 2);
    let backups: Vec<_> = std::fs::read_dir(c.path("web1/state/backups/web2"))
        .unwrap()
        .collect();
    assert_eq!(backups.len(), 1, "web2's key was backed up more than once");
}

/// Starting a run on a node other than the primary, resuming with no run, and resuming a run
/// whose cluster file no longer makes the same checklist, are refused and change nothing.
#[test]
fn resume_without_a_run_or_with_a_changed_checklist_is_refused() {
    let c = upgrade_cluster();
    let before = c.snapshot();
    // Started on another node than the primary: refused, saying where to run it.
    let cl = c.cluster_file();
    let r = keyferry(
        &argv!["upgrade", "run", "-c", &cl, "--node", "web2", "--batch"],
        None,
    );
    r.assert_code(2);
    assert!(
        r.stderr().contains("driven from the primary, web1"),
        "{}",
        r.stderr()
    );
    assert_eq!(before, c.snapshot());
    let r = up(&c, "resume", &["--confirm", "2"], &[]);
    r.assert_code(2);
    assert!(r.stderr().contains("no upgrade run here"), "{}", r.stderr());
    assert_eq!(before, c.snapshot());

    up(&c, "run", &[], &[]).assert_code(0);
    // dr1 leaves the cluster file: the checklist has fewer steps.
    let text = std::fs::read_to_string(c.cluster_file()).unwrap();
    let start = text.find("[[node]]\nname = \"dr1\"").unwrap();
    let end = start + text[start + 1..].find("[[node]]").unwrap() + 1;
    std::fs::write(
        c.cluster_file(),
        format!("{}{}", &text[..start], &text[end..]),
    )
    .unwrap();
    let before = c.snapshot();
    let r = up(&c, "resume", &["--confirm", "2"], &[]);
    r.assert_code(2);
    assert!(
        r.stderr().contains("not the one this run started with"),
        "{}",
        r.stderr()
    );
    assert_eq!(before, c.snapshot());
}

/// Runs `upgrade preflight` for web1 and returns its checks as (node, code, severity).
fn preflight_rows(r: &Run) -> Vec<(String, String, String)> {
    // Rows in the shape every check shares: the document's second version. A row that stops
    // the upgrade says what to do in its own field.
    assert_eq!(r.json()["version"], 2, "{}", r.stdout());
    for c in r.json()["checks"].as_array().unwrap() {
        assert!(
            c["severity"] != "error" || c["fix"].as_str().is_some_and(|f| !f.is_empty()),
            "{c}"
        );
    }
    r.json()["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["node"].as_str().unwrap().to_owned(),
                c["code"].as_str().unwrap().to_owned(),
                c["severity"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn has(rows: &[(String, String, String)], node: &str, check: &str, outcome: &str) -> bool {
    rows.iter()
        .any(|(n, c, o)| n == node && c == check && o == outcome)
}

#[test]
fn the_preflight_checks_every_node_and_an_unreachable_one_stops_the_run_at_step_one() {
    let c = upgrade_cluster();
    let before = c.snapshot();
    let r = up(&c, "preflight", &["--json"], &[]);
    r.assert_code(0);
    assert_eq!(r.json()["kind"], "upgrade-preflight");
    assert_eq!(r.json()["ok"], true);
    let rows = preflight_rows(&r);
    for n in ["web1", "web2", "dr1", "proxy1"] {
        assert!(has(&rows, n, "reach", "ok"), "{n}: {rows:?}");
    }
    assert!(has(&rows, "web1", "state", "ok"), "{rows:?}");
    for n in ["web2", "dr1", "proxy1"] {
        // Each target: its clock read from a file written beside its folder, and room
        // there for the new folder.
        assert!(has(&rows, n, "clock", "ok"), "{n}: {rows:?}");
        assert!(has(&rows, n, "room", "ok"), "{n}: {rows:?}");
    }
    for n in ["web2", "dr1"] {
        assert!(has(&rows, n, "binaries", "warning"), "{n}: {rows:?}");
    }
    // web2's different key and dr1's missing one are the later steps' to fix.
    assert!(has(&rows, "web2", "keys", "warning"), "{rows:?}");
    assert!(has(&rows, "dr1", "keys", "warning"), "{rows:?}");
    // It changed nothing: no probe file is left anywhere.
    assert_eq!(before, c.snapshot());
    let t = up(&c, "preflight", &[], &[]);
    t.assert_code(0);
    assert!(
        t.stdout().contains("preflight: nothing stops the upgrade"),
        "{}",
        t.stdout()
    );

    // dr1 cannot be reached: the preflight fails (exit 1) and says what to do; the run
    // stops at step 1 and changes nothing on any node.
    std::fs::rename(c.app("dr1"), c.path("dr1-away")).unwrap();
    let r = up(&c, "preflight", &["--json"], &[]);
    r.assert_code(1);
    assert_eq!(r.json()["ok"], false);
    assert!(
        has(&preflight_rows(&r), "dr1", "reach", "error"),
        "{}",
        r.stdout()
    );
    let t = up(&c, "preflight", &[], &[]);
    t.assert_code(1);
    assert!(t.stdout().contains("FAILED"), "{}", t.stdout());
    assert!(t.stdout().contains("run again"), "{}", t.stdout());
    let before = c.snapshot();
    let r = up(&c, "run", &[], &[]);
    r.assert_code(2);
    assert!(r.stderr().contains("step 1"), "{}", r.stderr());
    assert_eq!(waiting_at(&c), Some(1));
    let after = c.snapshot();
    let changed: Vec<_> = after
        .keys()
        .filter(|p| before.get(*p) != after.get(*p))
        .filter(|p| !p.starts_with(c.path("web1/state")))
        .collect();
    assert!(
        changed.is_empty(),
        "changed outside web1's state: {changed:?}"
    );
    std::fs::rename(c.path("dr1-away"), c.app("dr1")).unwrap();
    let r = up(&c, "resume", &[], &[]);
    r.assert_code(0);
    assert_eq!(waiting_at(&c), Some(2));
}

/// web2 reached over a real sshd on loopback, its keyferry run under libfaketime ten minutes
/// ahead: the preflight reads web2's clock from its report and fails it; web2's own checks
/// (its state folder) come back from `--here-only` run there.
#[cfg(unix)]
#[test]
fn the_preflight_fails_a_node_whose_clock_is_off_read_over_ssh() {
    let c = upgrade_cluster();
    let Some(faketime) = ["/usr/bin/faketime", "/bin/faketime"]
        .into_iter()
        .find(|p| Path::new(p).exists())
    else {
        eprintln!("SKIPPED: faketime missing; scripts/setup installs it");
        return;
    };
    let Some(sshd) = Sshd::start(c.dir.path()) else {
        return;
    };
    let skewed = keyferry_wrapper(
        &c.path("skewed-keyferry"),
        "",
        &format!("{faketime} -f +10m "),
    );
    let text = std::fs::read_to_string(c.cluster_file()).unwrap();
    let ssh_node = |remote: &Path| {
        text.replace(
            "name = \"web2\"",
            &format!(
                "name = \"web2\"\naccess = \"ssh://root@127.0.0.1:{}\"\nremote_keyferry = {:?}",
                sshd.port, remote
            ),
        )
    };
    let cfg = sshd.config.to_str().unwrap().to_owned();
    std::fs::write(c.cluster_file(), ssh_node(&skewed)).unwrap();
    let before = c.snapshot();
    let r = up(&c, "preflight", &["--json", "--ssh-config", &cfg], &[]);
    r.assert_code(1);
    let clock = r.json()["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["node"] == "web2" && k["code"] == "clock")
        .cloned()
        .unwrap_or_else(|| panic!("no clock row for web2: {}", r.stdout()));
    assert_eq!(clock["severity"], "error", "{clock}");
    let detail = clock["message"].as_str().unwrap();
    // Ten minutes ahead, read over ssh: +600 s, or a second less when the round trip is slow
    // (the whole suite running beside it).
    assert!(detail.contains("+6") || detail.contains("+59"), "{detail}");
    // What to do is the row's own field.
    let fix = clock["fix"].as_str().unwrap_or_default();
    assert!(fix.contains("w32tm /resync"), "{clock}");
    let rows = preflight_rows(&r);
    assert!(has(&rows, "web2", "state", "ok"), "{rows:?}");
    assert!(has(&rows, "web2", "reach", "ok"), "{rows:?}");
    assert_eq!(before, c.snapshot());
    // The same node with its clock right passes, through the same ssh.
    std::fs::write(c.cluster_file(), ssh_node(Path::new(&bin()))).unwrap();
    let r = up(&c, "preflight", &["--json", "--ssh-config", &cfg], &[]);
    r.assert_code(0);
    assert!(
        has(&preflight_rows(&r), "web2", "clock", "ok"),
        "{}",
        r.stdout()
    );
}

/// dr1's application folder on a file system too small for a second copy of web1's: the
/// preflight fails its room, with the numbers, before anything is copied. (Root only: it
/// mounts a 4 MiB tmpfs.)
#[cfg(target_os = "linux")]
#[test]
fn the_preflight_fails_a_target_without_room_for_the_new_folder() {
    use std::process::Command;
    let c = upgrade_cluster();
    let small = c.path("dr1");
    let keep = c.path("dr1-copy");
    std::fs::rename(&small, &keep).unwrap();
    std::fs::create_dir(&small).unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=4m", "tmpfs"])
        .arg(&small)
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !mounted {
        eprintln!("SKIPPED: cannot mount a tmpfs (not root?)");
        return;
    }
    struct Unmount(PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount").arg(&self.0).status();
        }
    }
    let _guard = Unmount(small.clone());
    let ok = Command::new("cp")
        .args(["-a", "--"])
        .arg(keep.join("."))
        .arg(&small)
        .status()
        .unwrap()
        .success();
    assert!(ok);
    let before = c.snapshot();
    let r = up(&c, "preflight", &["--json"], &[]);
    r.assert_code(1);
    let rows = preflight_rows(&r);
    assert!(has(&rows, "dr1", "room", "error"), "{rows:?}");
    assert!(has(&rows, "web2", "room", "ok"), "{rows:?}");
    let room = r.json()["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["node"] == "dr1" && k["code"] == "room")
        .cloned()
        .unwrap();
    let detail = room["message"].as_str().unwrap();
    assert!(detail.contains("MiB free beside"), "{detail}");
    assert!(detail.contains("sync rollback"), "{detail}");
    assert_eq!(before, c.snapshot());
    let r = up(&c, "run", &[], &[]);
    r.assert_code(2);
    assert_eq!(waiting_at(&c), Some(1));
}

/// Walks the run to the key step (`ss.keys`), confirming every step before it; returns its
/// number.
fn to_the_key_step(c: &Cluster) -> usize {
    let ids = ids(&plan(&c.cluster_file()).json());
    let keys = pos(&ids, "ss.keys") + 1;
    up(c, "run", &[], &[]).assert_code(0);
    let mut rounds = 0;
    while let Some(n) = waiting_at(c) {
        rounds += 1;
        assert!(rounds < 40, "the run does not reach the key step");
        if n == keys {
            return n;
        }
        up(c, "resume", &["--confirm", &n.to_string()], &[]).assert_code(0);
    }
    panic!("the run finished without stopping at the key step");
}

/// The vendor's hard rule: a node whose encryption.config differs is never replaced unasked.
/// The run stops at the key step, naming the node, both fingerprints and the file's
/// protection; a resume without the confirmation changes nothing; the confirmation of that
/// step replaces it (backed up first).
#[test]
fn the_run_never_replaces_a_differing_key_unasked() {
    let c = upgrade_cluster();
    let n = to_the_key_step(&c);
    let web2 = std::fs::read(c.key_path("web2")).unwrap();
    assert_eq!(web2, b"KEY-B stale");
    for _ in 0..2 {
        let before = c.snapshot();
        let r = up(&c, "resume", &[], &[]);
        r.assert_code(0);
        let out = r.stdout();
        assert!(out.contains("never replaces a key unasked"), "{out}");
        assert!(out.contains("web2: key set"), "{out}");
        assert!(out.contains("the primary's:"), "{out}");
        assert!(out.contains("not DPAPI-protected"), "{out}");
        assert!(out.contains(&format!("--confirm {n}")), "{out}");
        assert!(!out.contains("dr1: key set"), "dr1 only lacks keys: {out}");
        assert_eq!(before, c.snapshot(), "a waiting key step changed files");
        assert_eq!(waiting_at(&c), Some(n));
    }
    up(&c, "resume", &["--confirm", &n.to_string()], &[]).assert_code(0);
    assert_eq!(std::fs::read(c.key_path("web2")).unwrap(), b"KEY-A primary");
    assert_eq!(std::fs::read(c.key_path("dr1")).unwrap(), b"KEY-A primary");
    assert_eq!(
        std::fs::read_dir(c.path("web1/state/backups/web2"))
            .unwrap()
            .count(),
        1,
        "web2's key is backed up before it is replaced"
    );
}

/// A node whose key is DPAPI-protected in a way this machine cannot decrypt (the real
/// Windows sample): the run cannot tell whether it differs, so even a confirmation does not
/// replace it; the step fails with its own code, naming the node and the protection, and
/// the node's file stays as it was.
#[test]
fn a_key_the_driver_cannot_decrypt_is_not_replaced_even_when_confirmed() {
    let c = upgrade_cluster();
    std::fs::write(
        c.key_path("web2"),
        include_bytes!("fixtures/dpapi/windows-machine-aes256.bin"),
    )
    .unwrap();
    let before = std::fs::read(c.key_path("web2")).unwrap();
    let keys = pos(&ids(&plan(&c.cluster_file()).json()), "ss.keys") + 1;
    up(&c, "run", &[], &[]).assert_code(0);
    let mut stopped = None;
    while let Some(n) = waiting_at(&c) {
        assert!(n <= keys, "the run went past the key step");
        let r = up(&c, "resume", &["--confirm", &n.to_string(), "--json"], &[]);
        if r.code() != 0 {
            stopped = Some(r);
            break;
        }
    }
    let r = stopped.expect("the run stops at the key step");
    // Partly done (3): earlier steps changed nodes; this one changed nothing.
    r.assert_code(3);
    let err = r.json();
    assert_eq!(err["error"]["code"], "key-protection", "{err}");
    let msg = err["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains("web2") && msg.contains("dpapi-undecryptable"),
        "{msg}"
    );
    assert_eq!(std::fs::read(c.key_path("web2")).unwrap(), before);
    assert_eq!(waiting_at(&c), Some(keys));
    // Confirming the key step itself does not make the comparison possible.
    let r = up(&c, "resume", &["--confirm", &keys.to_string()], &[]);
    r.assert_code(3);
    assert_eq!(std::fs::read(c.key_path("web2")).unwrap(), before);
}

/// `upgrade status` with no run is an answer (exit 0), not an error; it takes no --confirm.
/// `--mark-done N --because WHY` lets the admin mark the waiting step done (an automatic one
/// included) after checking its end state: it is recorded as "marked" with the reason, and
/// only the waiting step may be marked. `upgrade abandon` keeps the run on record and lets a
/// new run start.
#[test]
fn a_run_can_be_marked_on_and_abandoned_and_status_needs_no_run() {
    let c = upgrade_cluster();
    let r = up(&c, "status", &[], &[]);
    r.assert_code(0);
    assert!(r.stdout().contains("no upgrade run here"), "{}", r.stdout());
    let r = up(&c, "status", &["--json"], &[]);
    r.assert_code(0);
    assert!(r.json()["run"].is_null(), "{}", r.stdout());
    let before = c.snapshot();
    let r = up(&c, "status", &["--confirm", "2"], &[]);
    r.assert_code(2);
    assert_eq!(before, c.snapshot());
    let n = to_the_key_step(&c);
    // Marking another step than the waiting one is refused, changing nothing.
    let before = c.snapshot();
    let r = up(
        &c,
        "resume",
        &["--mark-done", &(n + 1).to_string(), "--because", "checked"],
        &[],
    );
    r.assert_code(2);
    assert_eq!(before, c.snapshot());
    let r = up(&c, "resume", &["--mark-done", &n.to_string()], &[]);
    r.assert_code(2);
    // The admin brought web2's key over by hand and marks the key step done.
    std::fs::write(c.key_path("web2"), b"KEY-A primary").unwrap();
    let r = up(
        &c,
        "resume",
        &[
            "--mark-done",
            &n.to_string(),
            "--because",
            "web2 key copied by hand, fingerprint compared",
        ],
        &[],
    );
    r.assert_code(0);
    let j = up(&c, "status", &["--json"], &[]).json();
    let step = &j["steps"][n - 1];
    assert_eq!(step["done"], "marked", "{step}");
    assert!(
        step["changes"][0]
            .as_str()
            .unwrap()
            .contains("copied by hand"),
        "{step}"
    );
    assert_eq!(waiting_at(&c), Some(n + 1));
    // While another command holds the run (here: this test, on the run's lock file), a
    // resume, a mark or an abandon is refused at once and changes nothing.
    let held = std::fs::File::options()
        .read(true)
        .write(true)
        .open(c.path("web1/state/upgrade.lock"))
        .expect("the run's lock file");
    held.try_lock().unwrap();
    let before = c.snapshot();
    for (cmd, extra) in [
        ("resume", vec!["--confirm", "1"]),
        ("abandon", vec![]),
        ("run", vec![]),
    ] {
        let r = up(&c, cmd, &[&extra[..], &["--json"]].concat(), &[]);
        r.assert_code(2);
        assert_eq!(
            r.json()["error"]["code"],
            "upgrade-in-progress",
            "{}",
            r.stdout()
        );
        assert!(
            r.json()["error"]["message"]
                .as_str()
                .unwrap()
                .contains("upgrade.lock"),
            "{}",
            r.stdout()
        );
        assert_eq!(before, c.snapshot(), "{cmd}");
    }
    drop(held);
    // Abandoned: kept on record, and a new run may start.
    let r = up(&c, "abandon", &[], &[]);
    r.assert_code(0);
    assert!(r.stdout().contains("abandoned"), "{}", r.stdout());
    let runs = c.path("web1/state/upgrade-runs");
    let record = std::fs::read_dir(&runs)
        .unwrap()
        .map(|e| e.unwrap().path().join("upgrade-run.json"))
        .find(|p| p.exists())
        .expect("the abandoned run is kept on record");
    let kept: serde_json::Value = serde_json::from_slice(&std::fs::read(record).unwrap()).unwrap();
    assert!(kept["abandoned"].is_string(), "{kept}");
    assert_eq!(kept["steps"][n - 1]["done"], "marked");
    let r = up(&c, "status", &[], &[]);
    assert!(r.stdout().contains("no upgrade run here"), "{}", r.stdout());
    up(&c, "run", &[], &[]).assert_code(0);
}

/// "Setting up Clustering", initial set-up: `--add-node` plans and walks the procedure for a
/// new web node, keyferry copying the folder and the key, the product's steps confirmed; the
/// audit it ends with fails while the node has no database.config (the connection reset
/// writes it) and passes once it has.
#[test]
fn a_node_is_added_with_its_own_procedure_and_the_audit_wants_its_database_config() {
    // A cluster in agreement: the same key and folder on every node.
    let c = Cluster::secret_server(b"KEY-A primary", Some(b"KEY-A primary"));
    std::fs::write(c.key_path("dr1"), b"KEY-A primary").unwrap();
    for n in ["web1", "web2", "dr1", "proxy1"] {
        std::fs::create_dir_all(c.app(n).join("bin")).unwrap();
        std::fs::write(c.app(n).join("bin/SecretServer.dll"), b"dll v2").unwrap();
    }
    keyferry(&argv!["audit", "-c", &c.cluster_file()], None).assert_code(0);
    let app3 = c.path("web3").join("app");
    std::fs::create_dir_all(&app3).unwrap();
    let mut toml = std::fs::read_to_string(c.cluster_file()).unwrap();
    toml.push_str(&format!(
        "\n[[node]]\nname = \"web3\"\nrole = \"secondary\"\naddress = \"10.0.0.13\"\n\
         state_dir = {:?}\npaths = {{ app = {:?} }}\n",
        c.path("web3").join("state"),
        app3
    ));
    std::fs::write(c.cluster_file(), toml).unwrap();
    let cl = c.cluster_file();
    let cl = cl.to_str().unwrap();
    let r = keyferry(
        &["upgrade", "plan", "-c", cl, "--add-node", "web3", "--json"],
        None,
    );
    r.assert_code(0);
    let j = r.json();
    assert_eq!(
        j["procedures"],
        serde_json::json!(["secret-server-add-node"])
    );
    let ids = ids(&j);
    in_order(
        &ids,
        &[
            "preflight",
            "add.enable-clustering",
            "add.copy-folder",
            "add.keys",
            "add.iis",
            "add.connection-reset",
            "add.licences",
            "add.dpapi",
            "add.load-balancer",
            "add.verify",
        ],
    );
    let steps = j["steps"].as_array().unwrap();
    let what = |id: &str| steps[pos(&ids, id)]["what"].as_str().unwrap().to_owned();
    assert!(what("add.copy-folder").contains("sync --checksum --new-target --to web3"));
    assert!(what("add.keys").contains("keys push --to web3"));
    // Not a node to add: refused, naming what to do.
    for (node, says) in [
        ("web9", "add its [[node]]"),
        ("web1", "primary"),
        ("proxy1", "proxy"),
    ] {
        let r = keyferry(&["upgrade", "plan", "-c", cl, "--add-node", node], None);
        r.assert_code(2);
        assert!(r.stderr().contains(says), "{node}: {}", r.stderr());
    }
    // The walk, from web1, confirming each manual step; the admin's connection reset writes
    // web3's database.config.
    let walk = |cmd: &str, extra: &[&str]| {
        let mut a = vec![
            "upgrade",
            cmd,
            "-c",
            cl,
            "--node",
            "web1",
            "--batch",
            "--add-node",
            "web3",
        ];
        a.extend_from_slice(extra);
        keyferry(&a, None)
    };
    let r = walk("run", &[]);
    r.assert_code(0);
    for _ in 0..20 {
        let s = walk("status", &["--json"]);
        s.assert_code(0);
        let j = s.json();
        let Some(next) = j["steps"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["done"].is_null())
            .cloned()
        else {
            break;
        };
        if next["id"] == "add.connection-reset" {
            std::fs::write(app3.join("database.config"), b"db for web3\n").unwrap();
        }
        let n = next["n"].as_u64().unwrap().to_string();
        let r = walk("resume", &["--confirm", &n]);
        assert!(r.code() == 0, "step {n}: {}\n{}", r.stdout(), r.stderr());
    }
    let s = walk("status", &["--json"]);
    assert!(
        s.json()["steps"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| !s["done"].is_null()),
        "{}",
        s.stdout()
    );
    let tree = |root: &Path| -> BTreeMap<PathBuf, Vec<u8>> {
        snapshot(root)
            .into_iter()
            .map(|(p, b)| (p.strip_prefix(root).unwrap().to_owned(), b))
            .filter(|(p, _)| p != Path::new("database.config"))
            .collect()
    };
    assert_eq!(tree(&app3), tree(&c.app("web1")));
    assert_eq!(
        std::fs::read(app3.join("encryption.config")).unwrap(),
        b"KEY-A primary"
    );
    // Without its database.config, the audit names web3 and fails.
    std::fs::remove_file(app3.join("database.config")).unwrap();
    let r = keyferry(&["audit", "-c", cl, "--json"], None);
    r.assert_code(1);
    let web3 = r.json()["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["node"] == "web3")
        .cloned()
        .unwrap();
    assert_eq!(
        web3["missing_local"],
        serde_json::json!(["database.config"]),
        "{web3}"
    );
    let t = keyferry(&["audit", "-c", cl], None);
    t.assert_code(1);
    assert!(t.stdout().contains("database.config") || t.stderr().contains("database.config"));
}

/// A step run on another node over ssh fails there because the cluster file is not at the
/// path given for it: the run's failure names the node, the path, what to do (copy it, or
/// set remote_cluster) and relays the node's own hint, in the message and in the run's state.
#[cfg(unix)]
#[test]
fn a_remote_steps_missing_cluster_file_is_relayed_with_the_node_and_what_to_do() {
    let d = tempfile::tempdir().unwrap();
    let Some(sshd) = Sshd::start(d.path()) else {
        return;
    };
    let root = d.path();
    for p in ["nps1/KeyTools", "nps1/HA", "act1/KeyTools"] {
        std::fs::create_dir_all(root.join(p)).unwrap();
    }
    let missing = root.join("not-copied-there/cluster.toml");
    let cl = root.join("cluster.toml");
    std::fs::write(
        &cl,
        format!(
            "name = \"nps\"\nprofile = \"privilege-secure\"\n\
             [[node]]\nname = \"nps1\"\nrole = \"primary\"\naddress = \"10.0.5.1\"\n\
             state_dir = {:?}\npaths = {{ keytools = {:?}, ha = {:?} }}\n\
             [[node]]\nname = \"act1\"\nrole = \"action\"\naddress = \"10.0.5.11\"\n\
             access = \"ssh://root@127.0.0.1:{}\"\nremote_keyferry = {:?}\n\
             remote_cluster = {:?}\npaths = {{ keytools = {:?} }}\n",
            root.join("nps1/state"),
            root.join("nps1/KeyTools"),
            root.join("nps1/HA"),
            sshd.port,
            bin(),
            missing,
            root.join("act1/KeyTools"),
        ),
    )
    .unwrap();
    let cfg = sshd.config.to_str().unwrap().to_owned();
    let cls = cl.to_str().unwrap();
    let walk = |cmd: &str, extra: &[&str]| {
        let mut a = vec![
            "upgrade",
            cmd,
            "-c",
            cls,
            "--node",
            "nps1",
            "--batch",
            "--ssh-config",
            &cfg,
        ];
        a.extend_from_slice(extra);
        keyferry(&a, None)
    };
    walk("run", &[]);
    let mut failure = None;
    for _ in 0..30 {
        let st = walk("status", &["--json"]).json();
        let Some(next) = st["steps"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["done"].is_null())
            .cloned()
        else {
            break;
        };
        let n = next["n"].as_u64().unwrap().to_string();
        if next["id"] == "rs.cleanup" && next["node"] == "act1" {
            if !next["failed"].is_null() {
                failure = Some(next["failed"]["reason"].as_str().unwrap().to_owned());
                break;
            }
            let r = walk("resume", &[]);
            assert_eq!(r.code(), 2, "{}\n{}", r.stdout(), r.stderr());
            let e = r.stderr();
            assert!(e.contains("on act1 (ssh://root@127.0.0.1"), "{e}");
            assert!(e.contains(&missing.display().to_string()), "{e}");
            assert!(e.contains("set remote_cluster in act1's [[node]]"), "{e}");
            continue;
        }
        // Everything else (its steps need the vendor tools) checked by hand here.
        let kind = if ["preflight", "rs.push-keys", "rs.verify", "rs.cleanup"]
            .contains(&next["id"].as_str().unwrap())
        {
            "--mark-done"
        } else {
            "--confirm"
        };
        let mut extra = vec![kind, n.as_str()];
        if kind == "--mark-done" {
            extra.extend(["--because", "checked by hand in this test"]);
        }
        walk("resume", &extra);
    }
    let reason = failure.expect("the run reached act1's cleanup");
    assert!(
        reason.contains("on act1") && reason.contains("[file-missing]"),
        "{reason}"
    );
    assert!(reason.contains("there: check the path"), "{reason}");
}

/// The pool, IIS and "it works" steps are keyferry's on a node it reaches over ssh and whose
/// pool is named, and the admin's elsewhere, with the exact command (the pool's own name
/// where the file gives it); a site is confirmed by keyferry where the file names its URL.
#[test]
fn pools_iis_and_site_checks_are_automatic_where_keyferry_reaches_the_node() {
    let c = Cluster::secret_server(b"KEY-A", None);
    let mut text = std::fs::read_to_string(c.cluster_file()).unwrap();
    text = text.replace(
        "name = \"web2\"\n",
        "name = \"web2\"\naccess = \"ssh://admin@10.9.0.2\"\napp_pool = \"SecretServer\"\n\
         site_url = \"https://web2.example.com/SecretServer/\"\n",
    );
    text = text.replace(
        "name = \"dr1\"\n",
        "name = \"dr1\"\napp_pool = \"SS (DR)\"\n",
    );
    std::fs::write(c.cluster_file(), text).unwrap();
    let j = plan(&c.cluster_file()).json();
    let steps = j["steps"].as_array().unwrap();
    let step = |id: &str, node: &str| {
        steps
            .iter()
            .find(|s| s["id"] == id && s["node"] == node)
            .unwrap_or_else(|| panic!("no {id} on {node}: {j}"))
            .clone()
    };
    let s = step("ss.stop", "web2");
    assert_eq!(s["kind"], "auto", "{s}");
    assert_eq!(
        s["args"].as_array().unwrap()[0..3],
        [serde_json::json!("host"), "pool".into(), "stop".into()],
        "{s}"
    );
    assert!(
        s["undo"].as_str().unwrap().contains("host pool start"),
        "{s}"
    );
    assert_eq!(step("ss.start", "web2")["kind"], "auto");
    // The site check runs from the primary, about web2.
    let w = step("ss.works", "web1");
    assert_eq!(w["kind"], "auto");
    assert!(
        w["what"]
            .as_str()
            .unwrap()
            .contains("host check-site --to web2"),
        "{w}"
    );
    // dr1 is reached by path: its IIS is the admin's, with the exact commands.
    let d = step("ss.stop", "dr1");
    assert_eq!(d["kind"], "manual");
    assert!(
        d["what"]
            .as_str()
            .unwrap()
            .contains(r#"appcmd stop apppool /apppool.name:"SS (DR)""#),
        "{d}"
    );
    let d = step("ss.start", "dr1");
    assert_eq!(d["kind"], "manual");
    assert!(
        d["what"].as_str().unwrap().contains("iisreset /restart"),
        "{d}"
    );
    // No site_url: the admin browses to it, told what must not be on the page.
    let w = step("ss.works", "dr1");
    assert_eq!(w["kind"], "manual");
    assert!(
        w["what"]
            .as_str()
            .unwrap()
            .contains("Version does not match"),
        "{w}"
    );
}
