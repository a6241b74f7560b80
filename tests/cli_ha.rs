//! `keyferry ha` against two real PostgreSQL servers in network namespaces (tests/pgbed).
//! Linux only: the bed needs network namespaces and root.
#![cfg(target_os = "linux")]

use crate::common;
use crate::pgbed;
use common::argv;

use pgbed::Bed;

#[test]
fn status_of_two_separate_servers_says_not_a_pair() {
    need_bed!();
    let bed = Bed::new();
    let r = bed.keyferry(0, &["ha", "status"]);
    eprintln!("{}{}", r.stdout(), r.stderr());
    r.assert_code(1);
    assert!(r.stdout().contains("separate databases"), "{}", r.stdout());
}

fn rows(bed: &Bed, i: usize) -> Vec<String> {
    bed.psql(i, "SELECT string_agg(v, ',' ORDER BY v) FROM t")
        .split(',')
        .map(str::to_owned)
        .collect()
}

#[test]
fn from_nothing_to_a_pair_then_failover_rejoin_and_back() {
    need_bed!();
    let bed = Bed::new();
    // Replica init before the primary lets the peer in: refused, nothing changed.
    let before = std::fs::read(bed.hba_path(0)).unwrap();
    let r = bed.keyferry(1, &["ha", "replica", "init"]);
    r.assert_code(2);
    assert!(
        r.stderr().contains("does not let nps2 in"),
        "{}",
        r.stderr()
    );
    assert!(
        bed.running(1),
        "a refusal must leave the node's server running"
    );
    // The plan first, its decisions as fields: no line lets the peer in now, the block's
    // first lines after (the base file's own line 2 is `local`; the block goes above line 3).
    let snap = bed.config_snapshot(0);
    let r = bed.keyferry(0, &["ha", "hba", "--dry-run", "--json"]);
    r.assert_code(0);
    let j = r.json();
    let decisions = j["decisions"].as_array().unwrap();
    assert_eq!(decisions.len(), 4, "{j}");
    let rep = decisions
        .iter()
        .find(|d| d["connection"] == "replication as repuser from 10.231.0.2")
        .unwrap();
    assert_eq!(
        rep["before_decided"]["line"],
        serde_json::Value::Null,
        "{rep}"
    );
    assert_eq!(rep["after_decided"]["line"], 6, "{rep}");
    assert_eq!(rep["after_decided"]["method"], "scram-sha-256");
    assert_eq!(rep["after_decided"]["might"], serde_json::json!([]));
    assert_eq!(snap, bed.config_snapshot(0), "a dry run changes nothing");
    // The pair's lines on both nodes.
    for i in 0..2 {
        let r = bed.keyferry(i, &["ha", "hba"]);
        r.assert_code(0);
        assert!(r.stdout().contains("has reloaded it"), "{}", r.stdout());
    }
    let after = std::fs::read(bed.hba_path(0)).unwrap();
    assert!(after.ends_with(&before[before.len() - 20..]) || after.len() > before.len());
    // Again: nothing to do.
    let r = bed.keyferry(0, &["ha", "hba"]);
    r.assert_code(0);
    assert!(r.stdout().contains("nothing to change"), "{}", r.stdout());

    bed.psql(
        0,
        "CREATE TABLE t (v text); INSERT INTO t VALUES ('before-init')",
    );
    let r = bed.keyferry(1, &["ha", "replica", "init"]);
    r.assert_code(0);
    assert!(
        r.stdout().contains("nps2 streams from nps1"),
        "{}",
        r.stdout()
    );
    bed.psql(0, "INSERT INTO t VALUES ('streamed')");
    let seen = (0..50).any(|_| {
        std::thread::sleep(std::time::Duration::from_millis(100));
        rows(&bed, 1).contains(&"streamed".to_owned())
    });
    assert!(seen, "a row written on the primary is read on the replica");
    // Node-local settings survived the copy: nps2 still listens on its own address only.
    assert_eq!(bed.psql(1, "SHOW listen_addresses"), "10.231.0.2");
    let auto = std::fs::read_to_string(bed.data(1).join("postgresql.auto.conf")).unwrap();
    assert!(auto.contains("passfile=") && !auto.contains(&bed.rep_pw));
    let r = bed.keyferry(0, &["ha", "status", "--json"]);
    r.assert_code(0);
    let j = r.json();
    assert_eq!(j["verdict"], "healthy");
    assert_eq!(j["nodes"][0]["role"], "running-primary");
    assert_eq!(j["nodes"][1]["role"], "running-replica");

    // On the running primary of a healthy pair: nothing to rejoin, said as such.
    let snap = [bed.config_snapshot(0), bed.config_snapshot(1)];
    let r = bed.keyferry(0, &["ha", "rejoin"]);
    r.assert_code(2);
    assert!(
        r.stderr()
            .contains("is the running primary and nps2 is its replica"),
        "{}",
        r.stderr()
    );
    // Dry runs: the plan, nothing changed, the roles as they were.
    let r = bed.keyferry(0, &["ha", "failover", "--dry-run"]);
    r.assert_code(0);
    assert!(
        r.stdout().contains("would:") && r.stdout().contains("promote nps2"),
        "{}",
        r.stdout()
    );
    assert_eq!(snap, [bed.config_snapshot(0), bed.config_snapshot(1)]);
    assert_eq!(bed.psql(0, "SELECT pg_is_in_recovery()"), "f");
    assert_eq!(bed.psql(1, "SELECT pg_is_in_recovery()"), "t");
    let r = bed.keyferry(0, &["ha", "check", "--json"]);
    let ok_codes: Vec<String> = r.json()["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["severity"] == "ok")
        .map(|f| f["code"].as_str().unwrap().to_owned())
        .collect();
    assert!(
        ok_codes.contains(&"local-address".to_owned()) && ok_codes.contains(&"rewind".to_owned()),
        "codes say what they check, not the failure: {ok_codes:?}"
    );

    // Planned failover on the primary.
    let r = bed.keyferry(0, &["ha", "failover"]);
    r.assert_code(0);
    assert!(
        r.stdout()
            .contains("nps2 is the primary now (timeline 1 -> 2)"),
        "{}",
        r.stdout()
    );
    assert!(!bed.running(0));
    assert!(
        bed.data(0).join("standby.signal").exists(),
        "old primary fenced"
    );
    bed.psql(1, "INSERT INTO t VALUES ('on-new-primary')");
    let snap0 = bed.config_snapshot(0);
    let r = bed.keyferry(0, &["ha", "rejoin", "--dry-run"]);
    r.assert_code(0);
    assert!(
        r.stdout().contains("by rewind") && r.stdout().contains("pg_rewind"),
        "{}",
        r.stdout()
    );
    assert_eq!(snap0, bed.config_snapshot(0));
    assert!(!bed.running(0) && bed.data(0).join("standby.signal").exists());
    // Rejoin the old primary by rewind.
    let r = bed.keyferry(0, &["ha", "rejoin"]);
    r.assert_code(0);
    assert!(r.stdout().contains("(rewind in"), "{}", r.stdout());
    assert_eq!(bed.psql(0, "SHOW listen_addresses"), "10.231.0.1");
    let r = bed.keyferry(1, &["ha", "status", "--json"]);
    r.assert_code(0);
    assert_eq!(r.json()["nodes"][1]["role"], "running-primary");
    // And back.
    let r = bed.keyferry(1, &["ha", "failover"]);
    r.assert_code(0);
    assert!(r.stdout().contains("timeline 2 -> 3"), "{}", r.stdout());
    bed.psql(0, "INSERT INTO t VALUES ('back-on-nps1')");
    let r = bed.keyferry(1, &["ha", "rejoin"]);
    r.assert_code(0);
    let r = bed.keyferry(0, &["ha", "status"]);
    r.assert_code(0);
    assert!(r.stdout().contains("healthy"), "{}", r.stdout());
    let want = ["back-on-nps1", "before-init", "on-new-primary", "streamed"];
    assert_eq!(rows(&bed, 0), want);
    let seen = (0..50).any(|_| {
        std::thread::sleep(std::time::Duration::from_millis(100));
        rows(&bed, 1) == want
    });
    assert!(seen, "every row on the replica too: {:?}", rows(&bed, 1));
    // After two failovers and two rejoins no slot is left holding WAL for nobody: the only
    // slot is nps2's, on nps1, in use.
    for i in 0..2 {
        assert_eq!(
            bed.psql(
                i,
                "SELECT string_agg(slot_name || ':' || active, ',') FROM pg_replication_slots"
            ),
            ["keyferry_nps2:true", ""][i],
            "slots on node {i}"
        );
    }
}

/// Every process's argv and environment, read while `f` runs, and every file under the bed
/// but the password file afterwards: neither password may appear anywhere.
fn assert_passwords_stay_in_the_passfile(bed: &Bed, f: impl FnOnce()) {
    use std::sync::atomic::{AtomicBool, Ordering};
    let secrets = [bed.admin_pw.clone(), bed.rep_pw.clone()];
    let done = AtomicBool::new(false);
    let mut seen = Vec::new();
    let mut scans = 0;
    std::thread::scope(|s| {
        let h = s.spawn(|| {
            let mut hits = Vec::new();
            let mut n = 0;
            while !done.load(Ordering::SeqCst) {
                n += 1;
                for p in std::fs::read_dir("/proc").unwrap().flatten() {
                    for what in ["cmdline", "environ"] {
                        if let Ok(b) = std::fs::read(p.path().join(what)) {
                            for s in &secrets {
                                if b.windows(s.len()).any(|w| w == s.as_bytes()) {
                                    hits.push(format!("{}/{what}", p.path().display()));
                                }
                            }
                        }
                    }
                }
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            (hits, n)
        });
        f();
        done.store(true, Ordering::SeqCst);
        (seen, scans) = h.join().unwrap();
    });
    assert!(scans > 10, "the process scan ran {scans} times only");
    assert!(seen.is_empty(), "a password was in {seen:?}");
    let all = pgbed::files(&bed.dir);
    assert!(all.len() > 500, "the scan saw {} files", all.len());
    for (path, bytes) in all {
        if path == bed.passfile {
            continue;
        }
        for s in &secrets {
            assert!(
                !bytes.windows(s.len()).any(|w| w == s.as_bytes()),
                "a password is in {}",
                path.display()
            );
        }
    }
}

/// An nftables rule inside node `i`'s namespace that drops TCP to `port`, from `from` only
/// when given.
fn nft_drop(bed: &Bed, i: usize, port: u16, from: Option<&str>) {
    bed.in_ns(i, &["nft", "add", "table", "inet", "kf"]);
    let chain = "{ type filter hook input priority 0 ; }";
    bed.in_ns(i, &["nft", "add", "chain", "inet", "kf", "input", chain]);
    let port = port.to_string();
    let mut rule = vec!["nft", "add", "rule", "inet", "kf", "input"];
    if let Some(addr) = from {
        rule.extend(["ip", "saddr", addr]);
    }
    rule.extend(["tcp", "dport", &port, "drop"]);
    bed.in_ns(i, &rule);
}

fn codes(r: &common::Run, node: &str) -> Vec<String> {
    r.json()["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["node"] == node && f["severity"] != "ok")
        .map(|f| f["code"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn refusals_change_nothing_and_check_tells_refused_from_dropped() {
    need_bed!();
    let bed = Bed::new();
    // Before any set-up: the check says what is missing.
    let r = bed.keyferry(0, &["ha", "check", "--json"]);
    r.assert_code(1);
    let peer = codes(&r, "nps2");
    assert!(peer.contains(&"hba-refuses".to_owned()), "{peer:?}");
    assert!(
        peer.contains(&"port-refused".to_owned()),
        "6500 has no listener: {peer:?}"
    );

    // A reject line for the peer above: refused, the file byte for byte as it was.
    let hba = format!(
        "host replication all 10.231.0.2/32 reject\n{}",
        bed.base_hba()
    );
    bed.write_hba(0, &hba);
    let snap = bed.config_snapshot(0);
    let r = bed.keyferry(0, &["ha", "hba"]);
    r.assert_code(2);
    assert!(
        r.stderr().contains("rejects a peer explicitly"),
        "{}",
        r.stderr()
    );
    assert!(r.stderr().contains("--override-reject"), "{}", r.stderr());
    assert_eq!(snap, bed.config_snapshot(0));

    // A method the pair's lines cannot take (ldap needs options): refused from the cluster
    // file, nothing touched.
    bed.write_hba(0, &bed.base_hba());
    bed.write_cluster("hba_method = \"ldap\"");
    let snap = bed.config_snapshot(0);
    let r = bed.keyferry(0, &["ha", "hba"]);
    r.assert_code(2);
    assert!(r.stderr().contains("hba_method \"ldap\""), "{}", r.stderr());
    assert_eq!(snap, bed.config_snapshot(0));
    bed.write_cluster("");

    // An edited file PostgreSQL rejects (keyferry writes only lines it loads; here the `@file`
    // a line names goes away right after the write, as another account could make it go):
    // put back, server not reloaded.
    let users = bed.data(0).join("kfusers");
    bed.write_as_postgres(&users, "app\n", 0o600);
    bed.write_hba(
        0,
        &format!("{}host all @kfusers 10.231.0.9/32 md5\n", bed.base_hba()),
    );
    let before = std::fs::read(bed.hba_path(0)).unwrap();
    let with_hook = |body: &str| {
        let hook = common::shell_script(&bed.dir.join("hook.sh"), body);
        let out = bed
            .keyferry_cmd(0, &["ha", "hba"])
            .env(
                "KEYFERRY_FAILPOINT_RUN",
                format!("ha:hba-written={}", hook.display()),
            )
            .output()
            .unwrap();
        common::Run {
            args: vec!["ha".into(), "hba".into()],
            out,
        }
    };
    let r = with_hook(&format!("rm -f '{}'", users.display()));
    r.assert_code(2);
    assert!(
        r.stderr().contains("PostgreSQL rejects the edited"),
        "{}",
        r.stderr()
    );
    assert!(r.stderr().contains("put back as it was"), "{}", r.stderr());
    assert_eq!(before, std::fs::read(bed.hba_path(0)).unwrap());
    bed.write_as_postgres(&users, "app\n", 0o600);
    assert_eq!(
        bed.psql(
            0,
            "SELECT count(*) FROM pg_hba_file_rules WHERE error IS NOT NULL"
        ),
        "0"
    );
    assert_eq!(bed.psql(0, "SELECT 1"), "1", "the server keeps working");
    // The file changed again by someone else after the write: keyferry cannot put it back
    // without undoing their change, and says so (never "put back").
    let r = with_hook(&format!(
        "printf 'host all all all ldap\\n' >> '{}'",
        bed.hba_path(0).display()
    ));
    assert_ne!(r.code(), 0);
    assert!(
        r.stderr().contains("could not be put back"),
        "{}",
        r.stderr()
    );
    assert!(!r.stderr().contains("put back as it was"), "{}", r.stderr());
    assert!(std::fs::read_to_string(bed.hba_path(0))
        .unwrap()
        .ends_with("host all all all ldap\n"));
    bed.write_hba(0, &bed.base_hba());

    // Host names and localhost in the cluster file: refused before anything is touched.
    for bad in ["nps2.corp.example", "localhost", "127.0.0.1"] {
        bed.write_cluster("");
        let text = std::fs::read_to_string(&bed.cluster).unwrap();
        std::fs::write(&bed.cluster, text.replace("10.231.0.2", bad)).unwrap();
        let snap = bed.config_snapshot(0);
        for args in [
            &["ha", "hba"][..],
            &["ha", "replica", "init"],
            &["ha", "check"],
        ] {
            let r = bed.keyferry(0, args);
            r.assert_code(2);
            assert!(
                r.stderr().contains("not an IP address")
                    || r.stderr().contains("not a real node address"),
                "{bad}: {}",
                r.stderr()
            );
        }
        assert_eq!(snap, bed.config_snapshot(0));
    }
    bed.write_cluster("");

    // Nothing listening vs. dropped by a firewall rule inside the peer's namespace.
    bed.stop(1);
    let r = bed.keyferry(0, &["ha", "check", "--json"]);
    r.assert_code(1);
    let found = r.json()["findings"].as_array().unwrap().clone();
    let pg_port = |want: &str| {
        found
            .iter()
            .any(|f| f["code"] == want && f["message"].as_str().unwrap().contains(":5432"))
    };
    assert!(pg_port("port-refused"), "{found:?}");
    // What to do is the finding's own field, and each finding that is not ok has one: here,
    // start the server; a firewall that drops the port, open it (below).
    let fix = |code: &str| {
        found
            .iter()
            .find(|f| f["code"] == code)
            .and_then(|f| f["fix"].as_str())
            .unwrap_or_default()
            .to_owned()
    };
    assert!(
        fix("port-refused").starts_with("start PostgreSQL on nps2"),
        "{found:?}"
    );
    assert!(
        found
            .iter()
            .all(|f| (f["severity"] == "ok") == f["fix"].is_null()),
        "{found:?}"
    );
    let text = bed.keyferry(0, &["ha", "check"]);
    assert!(
        text.stdout().contains("fix: start PostgreSQL on nps2"),
        "{}",
        text.stdout()
    );
    let r = bed.keyferry(0, &["ha", "status", "--json"]);
    r.assert_code(1);
    assert_eq!(r.json()["nodes"][1]["role"], "not-running");
    bed.start(1);
    nft_drop(&bed, 1, 5432, None);
    let r = bed.keyferry(0, &["ha", "check", "--json"]);
    r.assert_code(1);
    let found = r.json()["findings"].as_array().unwrap().clone();
    assert!(
        found.iter().any(|f| f["code"] == "port-dropped"
            && f["message"].as_str().unwrap().contains(":5432")
            && f["fix"].as_str().unwrap().starts_with("open TCP 5432")),
        "{found:?}"
    );
    let r = bed.keyferry(0, &["ha", "status", "--json"]);
    r.assert_code(1);
    assert_eq!(r.json()["nodes"][1]["role"], "unreachable");
}

#[test]
fn status_says_split_brain_loudly() {
    need_bed!();
    let bed = Bed::new();
    bed.hba_both();
    assert_passwords_stay_in_the_passfile(&bed, || {
        bed.keyferry(1, &["ha", "replica", "init"]).assert_code(0);
        bed.keyferry(1, &["ha", "status"]).assert_code(0);
    });
    // Refusals on a healthy pair change nothing on either node.
    let snap = [bed.config_snapshot(0), bed.config_snapshot(1)];
    let r = bed.keyferry(1, &["ha", "failover"]);
    r.assert_code(2);
    assert!(
        r.stderr().contains("is a replica, not the primary"),
        "{}",
        r.stderr()
    );
    let r = bed.keyferry(1, &["ha", "failover", "--primary-lost"]);
    r.assert_code(2);
    assert!(r.stderr().contains("nps1 is not lost"), "{}", r.stderr());
    std::fs::create_dir(pgbed_sibling(&bed.data(1), ".keyferry-new")).unwrap();
    let r = bed.keyferry(1, &["ha", "replica", "init"]);
    r.assert_code(2);
    assert!(
        r.stderr().contains("left from an earlier run"),
        "{}",
        r.stderr()
    );
    std::fs::remove_dir(pgbed_sibling(&bed.data(1), ".keyferry-new")).unwrap();
    assert_eq!(snap, [bed.config_snapshot(0), bed.config_snapshot(1)]);
    assert!(bed.running(0) && bed.running(1));
    bed.keyferry(0, &["ha", "status"]).assert_code(0);

    // Someone promotes the replica by hand while the primary still runs.
    bed.psql(1, "SELECT pg_promote()");
    let split = (0..50).any(|_| {
        std::thread::sleep(std::time::Duration::from_millis(100));
        bed.psql(1, "SELECT pg_is_in_recovery()") == "f"
    });
    assert!(split);
    let r = bed.keyferry(0, &["ha", "status"]);
    r.assert_code(1);
    assert!(r.stdout().contains("SPLIT BRAIN"), "{}", r.stdout());
    let r = bed.keyferry(1, &["ha", "status", "--json"]);
    r.assert_code(1);
    assert_eq!(r.json()["verdict"], "split-brain");
    // Rejoin refuses to throw away the second primary's writes without a decision.
    let r = bed.keyferry(1, &["ha", "rejoin"]);
    r.assert_code(2);
    assert!(r.stderr().contains("split brain"), "{}", r.stderr());
}

/// `<data><suffix>` beside a data folder.
fn pgbed_sibling(data: &std::path::Path, suffix: &str) -> std::path::PathBuf {
    let mut name = data.file_name().unwrap().to_os_string();
    name.push(suffix);
    data.with_file_name(name)
}

/// Polls `ha status` on node `i` until the pair is healthy (the replica streams).
fn wait_healthy(bed: &Bed, i: usize) {
    let ok = (0..100).any(|_| {
        let r = bed.keyferry(i, &["ha", "status", "--json"]);
        if r.out.status.code() == Some(0) && r.json()["verdict"] == "healthy" {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
        false
    });
    assert!(ok, "the pair did not become healthy");
}

/// A healthy pair: the pair's `pg_hba.conf` lines on both, a row written on nps1, nps2 made
/// its replica and streaming.
fn healthy_pair() -> Bed {
    let bed = Bed::new();
    bed.hba_both();
    bed.psql(
        0,
        "CREATE TABLE t (v text); INSERT INTO t VALUES ('before')",
    );
    bed.keyferry(1, &["ha", "replica", "init"]).assert_code(0);
    wait_healthy(&bed, 0);
    bed
}

/// Each node's role as `ha status` on nps1 sees it, and that status's text.
#[cfg(feature = "failpoints")]
fn roles(bed: &Bed) -> (Vec<String>, String) {
    let st = bed.keyferry(0, &["ha", "status", "--json"]);
    let roles = st.json()["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["role"].as_str().unwrap().to_owned())
        .collect();
    (roles, st.stdout())
}

/// Waits until every row in `want` is on node `i`.
fn wait_rows(bed: &Bed, i: usize, want: &[&str]) {
    let ok = (0..50).any(|_| {
        if rows(bed, i) == want {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
        false
    });
    assert!(ok, "node {i} has {:?}, not {want:?}", rows(bed, i));
}

/// The primary `p` crashes; `--primary-lost` on the replica promotes it; the admin fences
/// the old primary as told and it stays down; `ha rejoin` on it must bring it back as a
/// replica by `method`. Returns the rejoin's report.
fn crash_promote_rejoin(bed: &Bed, p: usize, tl: (u32, u32)) -> serde_json::Value {
    let r_ = 1 - p;
    bed.crash(p);
    let r = bed.keyferry(r_, &["ha", "status", "--json"]);
    r.assert_code(1);
    assert_eq!(r.json()["nodes"][p]["role"], "not-running");
    // Nothing of it answers, and it has no ssh access to fence it through: the admin must
    // say by its name that the machine is off.
    let r = bed.keyferry(r_, &["ha", "failover", "--primary-lost"]);
    r.assert_code(2);
    let lost = pgbed::NAMES[p];
    assert!(
        r.stderr().contains(&format!("--confirm-lost {lost}")),
        "{}",
        r.stderr()
    );
    assert_eq!(bed.psql(r_, "SELECT pg_is_in_recovery()"), "t");
    let r = bed.keyferry(
        r_,
        &["ha", "failover", "--primary-lost", "--confirm-lost", lost],
    );
    r.assert_code(0);
    let said = format!(
        "{} is the primary now (timeline {} -> {})",
        pgbed::NAMES[r_],
        tl.0,
        tl.1
    );
    assert!(r.stdout().contains(&said), "{}", r.stdout());
    assert!(r.stdout().contains("standby.signal"), "{}", r.stdout());
    assert_eq!(bed.psql(r_, "SELECT pg_is_in_recovery()"), "f");
    std::fs::write(bed.data(p).join("standby.signal"), b"").unwrap();
    let r = bed.keyferry(p, &["ha", "rejoin", "--json"]);
    r.assert_code(0);
    assert!(bed.data(p).join("standby.signal").exists(), "fenced");
    wait_healthy(bed, p);
    r.json()
}

#[test]
fn primary_lost_then_rejoin_after_a_crash_and_by_copy_without_wal_log_hints() {
    need_bed!();
    let bed = Bed::new();
    bed.hba_both();
    bed.psql(0, "CREATE TABLE t (v text); INSERT INTO t VALUES ('one')");
    bed.keyferry(1, &["ha", "replica", "init"]).assert_code(0);
    bed.psql(0, "INSERT INTO t VALUES ('two')");
    wait_healthy(&bed, 1);
    // --primary-lost loses what was not sent: wait until the replica has it.
    wait_rows(&bed, 1, &["one", "two"]);
    // 1. A crash soon after replica init, before a checkpoint saved the replica's slot: with
    // wal_keep_size = 0, pg_rewind's own crash recovery ends in a checkpoint that removes the
    // WAL the rewind then needs. The rewind fails; rejoin copies instead.
    let j = crash_promote_rejoin(&bed, 0, (1, 2));
    assert_eq!(j["method"], "base-backup", "{j}");
    let why = j["why_not_rewind"].as_str().unwrap();
    assert!(why.contains("pg_rewind failed"), "{why}");
    bed.psql(1, "INSERT INTO t VALUES ('three')");
    wait_rows(&bed, 0, &["one", "three", "two"]);

    // 2. With wal_keep_size the rewind after a crash works (docs/ha.md; ha check warns).
    bed.psql(1, "ALTER SYSTEM SET wal_keep_size = '256MB'");
    bed.psql(1, "SELECT pg_reload_conf()");
    let r = bed.keyferry(1, &["ha", "check", "--json"]);
    let keep = |node: &str| {
        r.json()["findings"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["code"] == "wal-keep-size" && f["node"] == node)
            .map(|f| f["severity"].as_str().unwrap().to_owned())
    };
    assert_eq!(keep("nps2").as_deref(), Some("ok"));
    assert_eq!(keep("nps1").as_deref(), Some("warning"));
    let j = crash_promote_rejoin(&bed, 1, (2, 3));
    assert_eq!(j["method"], "rewind", "{j}");
    bed.psql(0, "INSERT INTO t VALUES ('four')");
    wait_rows(&bed, 1, &["four", "one", "three", "two"]);
    // Made again while it streams: the copy takes a temporary slot, the old replica stops
    // alongside, and the node's slot is taken over by the new copy.
    let r = bed.keyferry(1, &["ha", "replica", "init", "--json"]);
    r.assert_code(0);
    assert_eq!(r.json()["slot"], "keyferry_nps2");
    wait_healthy(&bed, 1);
    assert_eq!(
        bed.psql(0, "SELECT count(*) FROM pg_replication_slots"),
        "1",
        "no slot left behind"
    );

    // 3. Without wal_log_hints (and no checksums) a rewind cannot work at all: after a
    // planned failover, rejoin copies and says why.
    bed.psql(0, "ALTER SYSTEM SET wal_log_hints = off");
    bed.stop(0);
    bed.start(0);
    assert_eq!(bed.psql(0, "SHOW wal_log_hints"), "off");
    wait_healthy(&bed, 0);
    bed.keyferry(0, &["ha", "failover"]).assert_code(0);
    bed.psql(1, "INSERT INTO t VALUES ('five')");
    let r = bed.keyferry(0, &["ha", "rejoin", "--json"]);
    r.assert_code(0);
    let j = r.json();
    assert_eq!(j["method"], "base-backup", "{j}");
    assert!(
        j["why_not_rewind"]
            .as_str()
            .unwrap()
            .contains("wal_log_hints"),
        "{j}"
    );
    wait_healthy(&bed, 1);
    let want = ["five", "four", "one", "three", "two"];
    assert_eq!(rows(&bed, 1), want);
    wait_rows(&bed, 0, &want);
    // Beside the data folders: the old folders the copies replaced, kept (the way back),
    // and nothing else (no copy or failed folder left behind).
    for i in 0..2 {
        let names: Vec<String> = std::fs::read_dir(bed.node_dir(i))
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("data."))
            .collect();
        assert!(
            names
                .iter()
                .all(|n| n == "data.keyferry.log" || n.starts_with("data.keyferry-old-")),
            "{names:?}"
        );
    }
    assert!(j["old_folder"]
        .as_str()
        .unwrap()
        .contains("data.keyferry-old-"));
}

#[test]
fn check_runs_on_the_peer_through_its_access_and_sees_a_one_way_firewall() {
    need_bed!();
    let bed = Bed::new();
    bed.hba_both();
    // sshd in both namespaces; it is also the "web services" port the check probes.
    let sshd = [bed.sshd(0), bed.sshd(1)];
    let cfg = sshd[0].config.to_str().unwrap().to_owned();
    let access = |port: u16| {
        [0, 1].map(|i| {
            format!(
                "access = \"ssh://root@{}:{port}\"\nremote_keyferry = {:?}",
                pgbed::ADDR[i],
                common::bin()
            )
        })
    };
    let check = |i: usize| bed.keyferry(i, &["ha", "check", "--json", "--ssh-config", &cfg]);
    let find = |r: &common::Run, code: &str, node: &str, from: &str| -> Vec<serde_json::Value> {
        r.json()["findings"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|f| f["code"] == code && f["node"] == node && f["from"] == from)
            .cloned()
            .collect()
    };

    // No access: the peer's view is missing, and the report says so.
    bed.write_cluster("web_port = 2222");
    let r = check(0);
    r.assert_code(0);
    assert_eq!(r.json()["from"], serde_json::json!(["nps1"]));
    assert_eq!(
        r.json()["version"],
        2,
        "findings in the shape every check shares"
    );
    assert_eq!(find(&r, "peer-not-checked", "nps2", "nps1").len(), 1);
    let t = bed.keyferry(0, &["ha", "check"]);
    assert!(
        t.stdout().contains("from nps1 only: no error finding"),
        "{}",
        t.stdout()
    );

    // Through ssh: each node's keyferry checks the other's ports from there.
    let a = access(2222);
    bed.write_cluster_with("web_port = 2222", [&a[0], &a[1]]);
    for (i, me, peer) in [(0, "nps1", "nps2"), (1, "nps2", "nps1")] {
        let r = check(i);
        r.assert_code(0);
        assert_eq!(
            r.json()["from"],
            serde_json::json!([me, peer]),
            "{}",
            r.stdout()
        );
        let open = find(&r, "port-open", me, peer);
        assert_eq!(open.len(), 2, "{}", r.stdout());
        assert_eq!(find(&r, "port-open", peer, me).len(), 2);
    }

    let t = bed.keyferry(0, &["ha", "check", "--ssh-config", &cfg]);
    assert!(
        t.stdout().contains("from nps1 and nps2: no error finding"),
        "{}",
        t.stdout()
    );

    // A firewall on nps1 drops nps2's connections to 5432 only: nps1's own view says all is
    // well; nps2's view, run there, finds it.
    nft_drop(&bed, 0, 5432, Some("10.231.0.2"));
    let r = check(0);
    r.assert_code(1);
    let dropped = find(&r, "port-dropped", "nps1", "nps2");
    assert_eq!(dropped.len(), 1, "{}", r.stdout());
    assert!(dropped[0]["message"]
        .as_str()
        .unwrap()
        .contains("10.231.0.1:5432"));
    assert_eq!(find(&r, "port-open", "nps2", "nps1").len(), 2);

    // An access that does not answer: said as an error, not skipped.
    let bad = access(2223);
    bed.write_cluster_with("web_port = 2222", [&a[0], &bad[1]]);
    let r = bed.keyferry(
        0,
        &[
            "ha",
            "check",
            "--json",
            "--ssh-config",
            &cfg,
            "--timeout",
            "5s",
        ],
    );
    r.assert_code(1);
    let failed = find(&r, "peer-check-failed", "nps2", "nps1");
    assert_eq!(failed.len(), 1, "{}", r.stdout());
    assert!(failed[0]["message"]
        .as_str()
        .unwrap()
        .contains("ssh://root@10.231.0.2:2223"));
    drop(sshd);
}

/// The Privilege Secure pair's whole upgrade as one `upgrade run` from nps1 (docs/upgrade.md):
/// keyferry's steps run, the installer and console steps are confirmed, the steps meant for
/// nps2 are run there and confirmed; every committed row survives, the pair ends healthy and
/// nps2 holds nps1's appsettings.json.
#[test]
fn a_privilege_secure_ha_upgrade_runs_end_to_end() {
    need_bed!();
    let bed = healthy_pair();
    let settings = bed.node_dir(0).join("ha").join("appsettings.json");
    std::fs::write(&settings, b"{\"ConnectionStrings\": \"nps primary\"}").unwrap();
    std::fs::write(
        bed.node_dir(1).join("ha").join("appsettings.json"),
        b"{\"ConnectionStrings\": \"stale\"}",
    )
    .unwrap();
    // A stale export file from an earlier upgrade on nps2: the push replaces it, and no copy
    // of it may be kept anywhere (checked at the end).
    std::fs::create_dir_all(bed.node_dir(1).join("keytools")).unwrap();
    std::fs::write(
        bed.node_dir(1).join("keytools").join("keys.exp"),
        b"stale export from last year",
    )
    .unwrap();
    // nps2 is reached over ssh (an sshd in its namespace): the run on nps1 runs nps2's steps
    // there itself, pushes the keys through the session, and checks nps2 from its own view.
    let sshd = bed.sshd(1);
    let cfg = sshd.config.to_str().unwrap().to_owned();
    // nps2's keyferry says something with a terminal escape in it first (a compromised or
    // odd node): the run on nps1 shows it escaped, never raw.
    let remote = common::keyferry_wrapper(
        &bed.dir.join("nps2-keyferry"),
        "printf 'nps2 says \\033]0;owned\\007\\n' >&2\n",
        "",
    );
    let nps2 = format!(
        "access = \"ssh://root@{}:2222\"\nremote_keyferry = {:?}",
        pgbed::ADDR[1],
        remote
    );
    bed.write_cluster_with("", ["", &nps2]);
    // An Action host reached by path, with an old keys.exp's worth of nothing yet, and a
    // Proxy host (no keys): the remote-service upgrade follows the pair's.
    let act1 = bed.dir.join("act1");
    std::fs::create_dir_all(act1.join("keytools")).unwrap();
    let mut text = std::fs::read_to_string(&bed.cluster).unwrap();
    text.push_str(&format!(
        "\n[[node]]\nname = \"act1\"\nrole = \"action\"\naddress = \"10.231.0.11\"\npaths = {{ keytools = {:?} }}\nstate_dir = {:?}\n\n[[node]]\nname = \"prx1\"\nrole = \"proxy\"\naddress = \"10.231.0.12\"\n",
        act1.join("keytools"),
        act1.join("state")
    ));
    std::fs::write(&bed.cluster, text).unwrap();
    let plan = common::keyferry(
        &argv!["upgrade", "plan", "--json", "-c", &bed.cluster],
        None,
    );
    plan.assert_code(0);
    let kinds: Vec<(String, String, String)> = plan.json()["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["id"].as_str().unwrap().to_owned(),
                // A key push waits for the admin where a node's keys differ (nps2's own
                // appsettings.json): keyferry never replaces one unasked.
                if s["confirm_replace"] == true {
                    "asks".to_owned()
                } else {
                    s["kind"].as_str().unwrap().to_owned()
                },
                s["node"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let waiting = || -> Option<usize> {
        let r = bed.keyferry(0, &["upgrade", "status", "--json"]);
        r.assert_code(0);
        r.json()["steps"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["done"].is_null())
            .map(|s| s["n"].as_u64().unwrap() as usize)
    };
    // What the admin saw, for docs/upgrade.md when KEYFERRY_TRANSCRIPT names a file.
    let mut transcript = String::new();
    let mut relayed = 0;
    let mut saw = |r: &common::Run| {
        assert!(
            !r.out.stderr.contains(&0x1b),
            "a raw escape reached the terminal"
        );
        relayed += r
            .stderr()
            .matches("nps2| nps2 says \\u{1b}]0;owned\\u{7}")
            .count();
        transcript.push_str(&format!(
            "$ keyferry {} -c cluster.toml --node nps1\n{}{}\n",
            r.args.join(" ").replace(&cfg, "ssh_config"),
            r.stderr(),
            r.stdout()
        ));
    };
    let r = bed.keyferry(0, &["upgrade", "run", "--batch", "--ssh-config", &cfg]);
    r.assert_code(0);
    saw(&r);
    // The preflight found the pair healthy, nps1 the running primary, nps2 reachable with
    // a writable state folder (checked there) and its clock in step.
    let runs = bed.node_dir(0).join("state").join("upgrade-runs");
    let run = common::first_entry(&runs);
    let pre: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run.join("01-preflight.json")).unwrap()).unwrap();
    let passed = |node: &str, check: &str| {
        pre["checks"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["node"] == node && c["code"] == check && c["severity"] == "ok")
    };
    for (node, check) in [
        ("nps1", "roles"),
        ("nps1", "state"),
        ("nps2", "reach"),
        ("nps2", "clock"),
        ("nps2", "state"),
    ] {
        assert!(passed(node, check), "{node} {check}: {pre}");
    }
    let mut rounds = 0;
    while let Some(n) = waiting() {
        rounds += 1;
        assert!(rounds < 40, "the run does not finish");
        let (id, kind, node) = &kinds[n - 1];
        // What the admin does for the step the run waits at.
        match (id.as_str(), kind.as_str()) {
            ("ha.upgrade-secondary", _) => {
                bed.psql(1, "INSERT INTO t VALUES ('on nps2')");
            }
            ("ha.upgrade-primary", _) => {
                bed.psql(0, "INSERT INTO t VALUES ('on nps1')");
            }
            ("ha.export-keys" | "rs.export-keys", _) => std::fs::write(
                bed.node_dir(0).join("keytools").join("keys.exp"),
                b"vendor export",
            )
            .unwrap(),
            ("rs.import-keys", _) => {
                // The vendor import on act1 reads the keys.exp the push placed.
                assert_eq!(
                    std::fs::read(act1.join("keytools").join("keys.exp")).unwrap(),
                    b"vendor export"
                );
            }
            ("rs.cleanup", "auto") if node == "act1" => {
                // act1 has no ssh access: the admin runs the step shown, on act1.
                let r = common::keyferry(
                    &argv!["keys", "cleanup", "-c", &bed.cluster, "--node", "act1"],
                    None,
                );
                r.assert_code(0);
            }
            (_, "auto") => panic!("keyferry's step {id} on {node} waits: it runs over ssh"),
            _ => {}
        }
        let r = bed.keyferry(
            0,
            &[
                "upgrade",
                "resume",
                "--batch",
                "--ssh-config",
                &cfg,
                "--confirm",
                &n.to_string(),
            ],
        );
        if id == "ha.upgrade-secondary" {
            // The next step reboots nps2 over ssh (keyferry host reboot there), which only a
            // Windows node does; this test's nodes are Linux and cannot restart: the step
            // fails with nps2's own words, and the admin marks it done after rebooting by hand.
            // 3: the run's earlier steps changed the pair (partly done), this one failed.
            assert_eq!(r.code(), 3, "{}", r.stderr());
            assert!(
                r.stderr()
                    .contains("on a Windows node only, and this one is not"),
                "{}",
                r.stderr()
            );
            saw(&r);
            let reboot = waiting().unwrap();
            assert_eq!(kinds[reboot - 1].0, "ha.reboot-secondary");
            let r = bed.keyferry(
                0,
                &[
                    "upgrade",
                    "resume",
                    "--batch",
                    "--ssh-config",
                    &cfg,
                    "--mark-done",
                    &reboot.to_string(),
                    "--because",
                    "nps2 rebooted by hand",
                ],
            );
            r.assert_code(0);
            saw(&r);
            continue;
        }
        r.assert_code(0);
        saw(&r);
    }
    if let Some(path) = std::env::var_os("KEYFERRY_TRANSCRIPT") {
        std::fs::write(path, &transcript).unwrap();
    }
    assert_eq!(relayed, 4, "nps2's messages from its four steps, escaped");
    // Every automatic step on nps2 was run by the run, over ssh (its reboot failed there and
    // was marked done).
    let st = bed.keyferry(0, &["upgrade", "status", "--json"]).json();
    let on_nps2: Vec<&serde_json::Value> = st["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["node"] == "nps2" && kinds[s["n"].as_u64().unwrap() as usize - 1].1 == "auto")
        .filter(|s| s["id"] != "ha.reboot-secondary")
        .collect();
    assert_eq!(on_nps2.len(), 3, "{st}");
    assert!(on_nps2.iter().all(|s| s["done"] == "ran"), "{st}");
    let r = bed.keyferry(0, &["ha", "status", "--json"]);
    r.assert_code(0);
    let j = r.json();
    assert_eq!(j["verdict"], "healthy");
    assert_eq!(j["nodes"][0]["role"], "running-primary");
    let want = ["before", "on nps1", "on nps2"];
    assert_eq!(rows(&bed, 0), want);
    assert!(
        (0..50).any(|_| {
            std::thread::sleep(std::time::Duration::from_millis(100));
            rows(&bed, 1) == want
        }),
        "{:?}",
        rows(&bed, 1)
    );
    assert_eq!(
        std::fs::read(bed.node_dir(1).join("ha").join("appsettings.json")).unwrap(),
        std::fs::read(&settings).unwrap()
    );
    for dir in [bed.node_dir(0), bed.node_dir(1), act1.clone()] {
        assert!(
            !dir.join("keytools").join("keys.exp").exists(),
            "keys.exp left in {}",
            dir.display()
        );
        // Nor a copy in any of keyferry's folders there (backups, records).
        let mut copies: Vec<std::path::PathBuf> = Vec::new();
        let mut stack = vec![dir.clone()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
                let p = e.path();
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    stack.push(p);
                } else if e.file_name() == "keys.exp" {
                    copies.push(p);
                }
            }
        }
        assert!(copies.is_empty(), "keys.exp copies left: {copies:?}");
    }
    // Both procedures ran to the end: the remote hosts' keys went to act1 only.
    let steps = st["steps"].as_array().unwrap();
    assert!(steps.iter().all(|s| s["done"].is_string()), "{st}");
    let push = steps.iter().find(|s| s["id"] == "rs.push-keys").unwrap();
    assert_eq!(
        push["changes"],
        serde_json::json!(["act1: installed"]),
        "{push}"
    );
}

/// A run cut off right after the failover step did its work, before the run recorded it
/// (the kill at `upgrade:step-ran`): on resume the step's end state holds (nps2 the running
/// primary, nps1 fenced), so the step is "already" done. Before, its gate ("ha status:
/// healthy") failed forever, with the old primary fenced, and the run could not go on.
#[cfg(feature = "failpoints")]
#[test]
fn a_run_cut_off_after_the_failover_finds_it_done_on_resume() {
    need_bed!();
    let bed = healthy_pair();
    let out = bed
        .keyferry_cmd(0, &["upgrade", "run", "--batch"])
        .env("KEYFERRY_FAILPOINT", "upgrade:step-ran#2")
        .output()
        .unwrap();
    assert!(!out.status.success(), "the kill did not happen");
    let (roles, st) = roles(&bed);
    assert_eq!(roles, ["not-running", "running-primary"], "{st}");
    let r = bed.keyferry(0, &["upgrade", "resume", "--batch"]);
    r.assert_code(0);
    let said = format!("{}{}", r.stdout(), r.stderr());
    assert!(
        said.contains("step 2 (Fail over to the secondary (the old primary is stopped and fenced)): already done (nps2: running-primary, nps1: not-running)"),
        "{said}"
    );
    let j = bed.keyferry(0, &["upgrade", "status", "--json"]).json();
    assert_eq!(j["steps"][1]["id"], "ha.failover");
    assert_eq!(j["steps"][1]["done"], "already", "{j}");
    assert!(j["steps"][2]["done"].is_null(), "{j}");
    assert_eq!(j["steps"][2]["id"], "ha.upgrade-secondary");
}

/// The run on nps1 killed right after a step it ran on nps2 over ssh (the failover back)
/// did its work there, before the run recorded it: the resume checks the step's end state
/// (nps1 the primary, nps2 not), finds it done, says so, and goes on at the next step.
#[cfg(feature = "failpoints")]
#[test]
fn a_run_killed_right_after_a_remote_step_finds_it_done_on_resume() {
    need_bed!();
    let bed = healthy_pair();
    let sshd = bed.sshd(1);
    let cfg = sshd.config.to_str().unwrap().to_owned();
    let nps2 = format!(
        "access = \"ssh://root@{}:2222\"\nremote_keyferry = {:?}",
        pgbed::ADDR[1],
        common::bin()
    );
    bed.write_cluster_with("", ["", &nps2]);
    let status = || bed.keyferry(0, &["upgrade", "status", "--json"]).json();
    let next = |j: &serde_json::Value| -> (usize, String) {
        let s = j["steps"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["done"].is_null())
            .cloned()
            .expect("the run is not finished");
        (
            s["n"].as_u64().unwrap() as usize,
            s["id"].as_str().unwrap().to_owned(),
        )
    };
    let resume = |confirm: &str| {
        bed.keyferry_cmd(
            0,
            &[
                "upgrade",
                "resume",
                "--batch",
                "--ssh-config",
                &cfg,
                "--confirm",
                confirm,
            ],
        )
    };
    bed.keyferry(0, &["upgrade", "run", "--batch", "--ssh-config", &cfg])
        .assert_code(0);
    // The manual steps before the rejoin, confirmed; the resume that confirms the last of
    // them runs the rejoin here, then the failover back on nps2, and dies after that one.
    for round in 0.. {
        assert!(round < 12, "never reached the failover back");
        let j = status();
        let (n, id) = next(&j);
        assert_ne!(id, "ha.rejoin-primary", "the rejoin waits: {j}");
        if id == "ha.reboot-secondary" {
            // keyferry reboots only Windows nodes (this test's are Linux): its failure was
            // said, and the admin marks the step done after rebooting by hand.
            bed.keyferry(
                0,
                &[
                    "upgrade",
                    "resume",
                    "--batch",
                    "--ssh-config",
                    &cfg,
                    "--mark-done",
                    &n.to_string(),
                    "--because",
                    "nps2 rebooted by hand",
                ],
            )
            .assert_code(0);
            continue;
        }
        let last = j["steps"][n]["id"] == "ha.rejoin-primary";
        let mut cmd = resume(&n.to_string());
        if last {
            cmd.env("KEYFERRY_FAILPOINT", "upgrade:step-ran#2");
        }
        let out = cmd.output().unwrap();
        if last {
            assert!(!out.status.success(), "the kill did not happen");
            break;
        }
        if !out.status.success() && next(&status()).1 == "ha.reboot-secondary" {
            continue;
        }
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // The failover back happened on nps2, but the run did not record it.
    let (n, id) = next(&status());
    assert_eq!(id, "ha.failover-back");
    let (roles, st) = roles(&bed);
    assert_eq!(roles[0], "running-primary", "{st}");
    assert_ne!(roles[1], "running-primary", "{st}");
    let r = bed.keyferry(0, &["upgrade", "resume", "--batch", "--ssh-config", &cfg]);
    r.assert_code(0);
    let said = format!("{}{}", r.stdout(), r.stderr());
    assert!(said.contains(&format!("step {n} (")), "{said}");
    assert!(said.contains("already done"), "{said}");
    let j = status();
    assert_eq!(j["steps"][n - 1]["done"], "already", "{j}");
    let (_, now) = next(&j);
    assert_eq!(now, "ha.upgrade-primary", "{j}");
    // Nothing was lost on the way: the row written before is on the primary.
    assert!(bed.psql(0, "SELECT v FROM t").contains("before"));
}
