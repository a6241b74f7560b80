//! `keyferry ha` against two real PostgreSQL servers in network namespaces (tests/pgbed).
//! Linux only: the bed needs network namespaces and root.
#![cfg(target_os = "linux")]

mod common;
mod pgbed;

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
}
