//! `keyferry ha` made to do the wrong thing on purpose, against two real PostgreSQL servers in
//! network namespaces (tests/pgbed): replica init on the primary and on a secondary with data
//! of its own, `--primary-lost` while the primary answers behind a reset pg_hba.conf, per-node
//! admin passwords, a fake server at the peer's address asking for the password in clear text
//! (or MD5, or saying nothing), a major-version change, and the service account swapping
//! keyferry's folders for links at the worst moment. Each ends with both databases' rows
//! counted against what was written. Linux only: the bed needs network namespaces and root.
#![cfg(target_os = "linux")]

use crate::common;
use crate::pgbed;

use pgbed::Bed;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

fn rows(bed: &Bed, i: usize, table: &str) -> Vec<String> {
    bed.psql(
        i,
        &format!("SELECT string_agg(v, ',' ORDER BY v) FROM {table}"),
    )
    .split(',')
    .map(str::to_owned)
    .collect()
}

fn wait_rows(bed: &Bed, i: usize, want: &[&str]) {
    let ok = (0..100).any(|_| {
        if rows(bed, i, "t") == want {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
        false
    });
    assert!(ok, "node {i} has {:?}, not {want:?}", rows(bed, i, "t"));
}

fn sysid(bed: &Bed, i: usize) -> String {
    bed.psql(i, "SELECT system_identifier FROM pg_control_system()")
}

/// `pg_controldata` of a (stopped) data folder: its system identifier.
fn folder_sysid(data: &Path) -> String {
    let out = std::process::Command::new(Path::new(pgbed::BIN).join("pg_controldata"))
        .arg("-D")
        .arg(data)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("Database system identifier:"))
        .map(|v| v.trim().to_owned())
        .unwrap_or_default()
}

/// The names beside node `i`'s data folder that start with `data.keyferry-old-`.
fn kept(bed: &Bed, i: usize) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(bed.node_dir(i))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("data.keyferry-old-")
        })
        .collect();
    v.sort();
    v
}

#[test]
fn replica_init_never_replaces_the_wrong_database() {
    need_bed!();
    let bed = Bed::new();
    bed.hba_both();
    bed.psql(
        0,
        "CREATE TABLE t (v text); INSERT INTO t VALUES ('p1'), ('p2')",
    );
    let (id0, id1) = (sysid(&bed, 0), sysid(&bed, 1));
    assert_ne!(id0, id1, "two separate installs");

    // 1. On the cluster file's primary, both servers standalone as the installer leaves them:
    // refused with both servers' facts, nothing touched, no "making ... a replica" first.
    let snap = [bed.config_snapshot(0), bed.config_snapshot(1)];
    let r = bed.keyferry(0, &["ha", "replica", "init"]);
    r.assert_code(2);
    let err = r.stderr();
    for want in [
        "the cluster file names nps1 the primary",
        &id0,
        &id1,
        "last write",
        "--replace-database-of nps1",
    ] {
        assert!(err.contains(want), "{want:?} not in {err}");
    }
    assert!(!err.contains("making"), "{err}");
    assert_eq!(snap, [bed.config_snapshot(0), bed.config_snapshot(1)]);
    assert!(bed.running(0) && bed.running(1));
    assert_eq!(rows(&bed, 0, "t"), ["p1", "p2"]);
    assert_eq!(sysid(&bed, 0), id0);

    // 2. A dry run on the secondary: every check and the plan, nothing changed.
    let r = bed.keyferry(1, &["ha", "replica", "init", "--dry-run"]);
    r.assert_code(0);
    let out = r.stdout();
    for want in [
        "would:",
        "stop nps2's server",
        "keep the old data folder as",
        "create replication slot keyferry_nps2",
        "set max_slot_wal_keep_size = 10GB on nps1",
        "nothing was changed",
    ] {
        assert!(out.contains(want), "{want:?} not in {out}");
    }
    assert_eq!(snap, [bed.config_snapshot(0), bed.config_snapshot(1)]);
    assert_eq!(sysid(&bed, 1), id1);
    assert_eq!(
        bed.psql(0, "SELECT count(*) FROM pg_replication_slots"),
        "0",
        "a dry run makes no slot"
    );

    // 3. The secondary holds data of its own: refused; naming the wrong node is refused too.
    bed.psql(
        1,
        "CREATE TABLE mine (v text); INSERT INTO mine VALUES ('n2')",
    );
    let snap1 = bed.config_snapshot(1);
    let r = bed.keyferry(1, &["ha", "replica", "init"]);
    r.assert_code(2);
    assert!(
        r.stderr().contains("a database of its own") && r.stderr().contains("user data"),
        "{}",
        r.stderr()
    );
    let r = bed.keyferry(
        1,
        &["ha", "replica", "init", "--replace-database-of", "nps1"],
    );
    r.assert_code(2);
    assert!(
        r.stderr().contains("names nps1, but this is node nps2"),
        "{}",
        r.stderr()
    );
    assert_eq!(snap1, bed.config_snapshot(1));
    assert_eq!(rows(&bed, 1, "mine"), ["n2"]);

    // 4. Named: replaced, and its old folder kept (the way back), whole.
    let r = bed.keyferry(
        1,
        &[
            "ha",
            "replica",
            "init",
            "--replace-database-of",
            "nps2",
            "--json",
        ],
    );
    r.assert_code(0);
    let j = r.json();
    assert_eq!(j["replaced"]["user_data"], true, "{j}");
    assert!(
        j["settings_changed"][0]
            .as_str()
            .unwrap()
            .contains("ALTER SYSTEM RESET max_slot_wal_keep_size"),
        "{j}"
    );
    assert_eq!(j["replaced"]["system_identifier"], id1.as_str(), "{j}");
    let old = PathBuf::from(j["old_folder"].as_str().unwrap());
    assert_eq!(kept(&bed, 1), std::slice::from_ref(&old));
    assert_eq!(
        folder_sysid(&old),
        id1,
        "the kept folder is nps2's own database"
    );
    assert_eq!(sysid(&bed, 1), id0);
    bed.psql(0, "INSERT INTO t VALUES ('p3')");
    wait_rows(&bed, 1, &["p1", "p2", "p3"]);
    assert_eq!(rows(&bed, 0, "t"), ["p1", "p2", "p3"]);

    // 5. Made again while it streams (a replica of the peer): no consent needed; a second
    // kept folder beside the first; --remove-old leaves none.
    let r = bed.keyferry(1, &["ha", "replica", "init", "--remove-old"]);
    r.assert_code(0);
    assert_eq!(kept(&bed, 1), [old]);
    wait_rows(&bed, 1, &["p1", "p2", "p3"]);
}

#[test]
fn primary_lost_is_refused_while_the_primary_answers_behind_a_reset_pg_hba() {
    need_bed!();
    let bed = Bed::new();
    bed.hba_both();
    bed.psql(0, "CREATE TABLE t (v text); INSERT INTO t VALUES ('a')");
    bed.keyferry(1, &["ha", "replica", "init"]).assert_code(0);
    bed.psql(0, "INSERT INTO t VALUES ('b')");
    wait_rows(&bed, 1, &["a", "b"]);

    // An installer resets nps1's pg_hba.conf: it runs and answers, but refuses every
    // network login.
    bed.write_hba(0, "local all all trust\n");
    bed.psql(0, "SELECT pg_reload_conf()");
    let r = bed.keyferry(1, &["ha", "status", "--json"]);
    r.assert_code(1);
    let j = r.json();
    assert_eq!(j["nodes"][0]["role"], "refuses-login", "{j}");
    assert_eq!(j["verdict"], "unknown", "{j}");
    let r = bed.keyferry(1, &["ha", "status"]);
    r.assert_code(1);
    assert!(
        !r.stdout().contains("no node is running as primary"),
        "{}",
        r.stdout()
    );
    assert!(
        r.stdout().contains("may be running as the primary"),
        "{}",
        r.stdout()
    );

    let snap = [bed.config_snapshot(0), bed.config_snapshot(1)];
    for extra in [&[][..], &["--confirm-lost", "nps1"], &["--dry-run"]] {
        let mut args = vec!["ha", "failover", "--primary-lost"];
        args.extend(extra);
        let r = bed.keyferry(1, &args);
        r.assert_code(2);
        assert!(
            r.stderr().contains("nps1 is not lost")
                && r.stderr().contains("refuses keyferry's login"),
            "{}",
            r.stderr()
        );
    }
    assert_eq!(snap, [bed.config_snapshot(0), bed.config_snapshot(1)]);
    assert_eq!(bed.psql(0, "SELECT pg_is_in_recovery()"), "f");
    assert_eq!(bed.psql(1, "SELECT pg_is_in_recovery()"), "t");
    bed.psql(0, "INSERT INTO t VALUES ('c')");
    wait_rows(&bed, 1, &["a", "b", "c"]);
    assert_eq!(rows(&bed, 0, "t"), ["a", "b", "c"]);

    // Now really gone: a dry run says what it would do; without the admin's word on a
    // machine that cannot be fenced from here it is refused; with it, promoted.
    bed.crash(0);
    let r = bed.keyferry(1, &["ha", "failover", "--primary-lost", "--dry-run"]);
    r.assert_code(0);
    assert!(r.stdout().contains("promote nps2"), "{}", r.stdout());
    assert_eq!(bed.psql(1, "SELECT pg_is_in_recovery()"), "t");
    let r = bed.keyferry(1, &["ha", "failover", "--primary-lost"]);
    r.assert_code(2);
    assert!(r.stderr().contains("--confirm-lost nps1"), "{}", r.stderr());
    // The product's port still answers: the machine runs, whatever the admin types.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let h = listen_in(&bed.ns[0], pgbed::ADDR[0], 6500, stop.clone());
    let r = bed.keyferry(
        1,
        &["ha", "failover", "--primary-lost", "--confirm-lost", "nps1"],
    );
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    h.join().unwrap();
    r.assert_code(2);
    assert!(
        r.stderr().contains("nps1 is not off") && r.stderr().contains(":6500"),
        "{}",
        r.stderr()
    );
    assert_eq!(bed.psql(1, "SELECT pg_is_in_recovery()"), "t");
    let r = bed.keyferry(
        1,
        &["ha", "failover", "--primary-lost", "--confirm-lost", "nps1"],
    );
    r.assert_code(0);
    assert_eq!(bed.psql(1, "SELECT pg_is_in_recovery()"), "f");
    assert_eq!(rows(&bed, 1, "t"), ["a", "b", "c"]);
}

#[test]
fn a_lost_primary_reachable_over_ssh_is_fenced_there_before_the_promotion() {
    need_bed!();
    let bed = Bed::new();
    bed.hba_both();
    bed.psql(0, "CREATE TABLE t (v text); INSERT INTO t VALUES ('a')");
    bed.keyferry(1, &["ha", "replica", "init"]).assert_code(0);
    wait_rows(&bed, 1, &["a"]);
    let sshd = bed.sshd(0);
    let text = std::fs::read_to_string(&bed.cluster).unwrap();
    let with_access = text.replacen(
        "role = \"primary\"",
        &format!(
            "role = \"primary\"\naccess = \"ssh://root@{}:2222\"\nremote_keyferry = \"{}\"",
            pgbed::ADDR[0],
            common::bin()
        ),
        1,
    );
    std::fs::write(&bed.cluster, with_access).unwrap();
    // nps1's PostgreSQL crashed; the machine and its sshd run. Anyone (a service manager,
    // an admin) could start it again as a primary: keyferry fences it there first.
    bed.crash(0);
    let r = bed.keyferry(
        1,
        &[
            "ha",
            "failover",
            "--primary-lost",
            "--ssh-config",
            sshd.config.to_str().unwrap(),
        ],
    );
    r.assert_code(0);
    assert!(
        r.stdout().contains("is stopped and fenced"),
        "{}",
        r.stdout()
    );
    assert!(!bed.running(0), "nps1's server was stopped over ssh");
    assert!(bed.data(0).join("standby.signal").exists(), "and fenced");
    assert_eq!(bed.psql(1, "SELECT pg_is_in_recovery()"), "f");
    assert_eq!(rows(&bed, 1, "t"), ["a"]);
    let fenced = r.stdout();
    assert!(
        fenced.contains("next: then run keyferry ha rejoin on nps1"),
        "{fenced}"
    );
}

#[test]
fn a_copy_that_invalidates_a_per_node_password_is_said_and_not_retried() {
    need_bed!();
    let bed = Bed::new();
    // A fresh secondary with its own admin password, and a line for it in the password file
    // above the pair's.
    let own = "Own-nps2-password-4711";
    bed.psql_stdin(1, &format!("ALTER ROLE postgres PASSWORD '{own}';\n"));
    bed.write_as_postgres(
        &bed.passfile,
        &format!(
            "{}:5432:*:postgres:{own}\n*:5432:*:postgres:{}\n*:5432:*:repuser:{}\n",
            pgbed::ADDR[1],
            bed.admin_pw,
            bed.rep_pw
        ),
        0o600,
    );
    bed.hba_both();
    bed.psql(0, "CREATE TABLE t (v text); INSERT INTO t VALUES ('x')");
    let r = bed.keyferry(1, &["ha", "replica", "init", "--dry-run"]);
    r.assert_code(0);
    assert!(
        r.stderr().contains("line 1 of") && r.stderr().contains("an admin password of its own"),
        "{}",
        r.stderr()
    );
    let started = Instant::now();
    let r = bed.keyferry(1, &["ha", "replica", "init"]);
    r.assert_code(0);
    assert!(
        r.stdout().contains("nps2 streams from nps1"),
        "{}",
        r.stdout()
    );
    assert!(
        r.stderr().contains("refuses keyferry's login") && r.stderr().contains("line 1 of"),
        "{}",
        r.stderr()
    );
    assert!(started.elapsed() < Duration::from_secs(60));
    // The new server logs where the old one did (the bed's server.log), not elsewhere.
    assert!(!bed.node_dir(1).join("data.keyferry.log").exists());
    let log = std::fs::read_to_string(bed.log(1)).unwrap();
    let failures = log.matches("password authentication failed").count();
    assert!(
        (1..=2).contains(&failures),
        "{failures} failed logins on the new replica"
    );
    wait_rows(&bed, 1, &["x"]);
    assert!(!r.stderr().contains(own) && !r.stdout().contains(own));
}

/// Moves the calling thread (only it) into the network namespace of `ns_file`.
fn enter(ns_file: &std::fs::File) {
    use std::os::fd::AsRawFd;
    #[allow(unsafe_code)]
    let rc = unsafe { libc::setns(ns_file.as_raw_fd(), libc::CLONE_NEWNET) };
    assert_eq!(rc, 0, "setns");
}

/// A thread inside namespace `ns` that accepts (and drops) connections on `addr:port` until
/// `stop` is set: a port that answers.
fn listen_in(
    ns: &str,
    addr: &'static str,
    port: u16,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> std::thread::JoinHandle<()> {
    let ns_file = std::fs::File::open(format!("/run/netns/{ns}")).unwrap();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let h = std::thread::spawn(move || {
        enter(&ns_file);
        let l = std::net::TcpListener::bind((addr, port)).unwrap();
        l.set_nonblocking(true).unwrap();
        ready_tx.send(()).unwrap();
        while !stop.load(std::sync::atomic::Ordering::SeqCst) {
            let _ = l.accept();
            std::thread::sleep(Duration::from_millis(10));
        }
    });
    ready_rx.recv_timeout(Duration::from_secs(10)).unwrap();
    h
}

/// What the fake server at the peer's address does after the startup message.
#[derive(Clone, Copy, Debug)]
enum Fake {
    Cleartext,
    Md5,
    Silent,
}

/// A fake PostgreSQL server on `addr`:5432 inside namespace `ns` (a thread that entered it):
/// answers an SSLRequest with N, then plays `mode`; returns every byte clients sent after
/// the authentication request, once `stop` is set.
fn fake_server(
    ns: &str,
    addr: &'static str,
    mode: Fake,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> std::thread::JoinHandle<Vec<u8>> {
    use std::io::{Read, Write};
    let ns_file = std::fs::File::open(format!("/run/netns/{ns}")).unwrap();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let h = std::thread::spawn(move || {
        enter(&ns_file);
        let l = std::net::TcpListener::bind((addr, 5432)).unwrap();
        l.set_nonblocking(true).unwrap();
        ready_tx.send(()).unwrap();
        let mut got = Vec::new();
        while !stop.load(std::sync::atomic::Ordering::SeqCst) {
            let Ok((mut s, _)) = l.accept() else {
                std::thread::sleep(Duration::from_millis(10));
                continue;
            };
            s.set_nonblocking(false).unwrap();
            // Longer than keyferry's 2 s deadline: a silent server must still be holding the
            // connection when keyferry gives up on it (with equal timeouts, a loaded machine
            // let the fake close first, and keyferry rightly saw "connection closed").
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            let mut head = [0u8; 8];
            if s.read_exact(&mut head).is_err() {
                continue;
            }
            let len = u32::from_be_bytes(head[..4].try_into().unwrap()) as usize;
            let code = u32::from_be_bytes(head[4..].try_into().unwrap());
            if code == 80877103 {
                s.write_all(b"N").unwrap();
                if s.read_exact(&mut head).is_err() {
                    continue;
                }
                let len = u32::from_be_bytes(head[..4].try_into().unwrap()) as usize;
                let mut rest = vec![0u8; len.saturating_sub(8)];
                let _ = s.read_exact(&mut rest);
            } else {
                let mut rest = vec![0u8; len.saturating_sub(8)];
                let _ = s.read_exact(&mut rest);
            }
            match mode {
                Fake::Cleartext => s.write_all(&[b'R', 0, 0, 0, 8, 0, 0, 0, 3]).unwrap(),
                Fake::Md5 => s
                    .write_all(&[b'R', 0, 0, 0, 12, 0, 0, 0, 5, 1, 2, 3, 4])
                    .unwrap(),
                Fake::Silent => {}
            }
            let mut buf = [0u8; 4096];
            while let Ok(n) = s.read(&mut buf) {
                if n == 0 {
                    break;
                }
                got.extend_from_slice(&buf[..n]);
            }
        }
        got
    });
    ready_rx.recv_timeout(Duration::from_secs(10)).unwrap();
    h
}

#[test]
fn a_fake_server_at_the_peers_address_learns_no_password() {
    need_bed!();
    let bed = Bed::new();
    bed.hba_both();
    bed.psql(0, "CREATE TABLE t (v text); INSERT INTO t VALUES ('a')");
    bed.keyferry(1, &["ha", "replica", "init"]).assert_code(0);
    wait_rows(&bed, 1, &["a"]);
    bed.stop(0);
    let secrets = [bed.admin_pw.clone(), bed.rep_pw.clone()];
    for (mode, sslmode) in [
        (Fake::Cleartext, "disable"),
        (Fake::Cleartext, "prefer"),
        (Fake::Cleartext, "require"),
        (Fake::Md5, "prefer"),
        (Fake::Silent, "prefer"),
    ] {
        bed.write_cluster(&format!("sslmode = \"{sslmode}\""));
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let h = fake_server(&bed.ns[0], pgbed::ADDR[0], mode, stop.clone());
        let started = Instant::now();
        let r = bed.keyferry(1, &["ha", "status", "--json"]);
        let took = started.elapsed();
        let failover = bed.keyferry(
            1,
            &["ha", "failover", "--primary-lost", "--confirm-lost", "nps1"],
        );
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
        let got = h.join().unwrap();
        let case = format!("{mode:?} under {sslmode}");
        for s in &secrets {
            assert!(
                !got.windows(s.len()).any(|w| w == s.as_bytes()),
                "{case}: the fake server got a password"
            );
        }
        assert!(
            !got.contains(&b'p'),
            "{case}: a password message was sent: {got:?}"
        );
        r.assert_code(1);
        let node = &r.json()["nodes"][0];
        let detail = node["detail"].as_str().unwrap_or_default().to_owned();
        match (mode, sslmode) {
            (Fake::Cleartext, "require") => {
                assert!(detail.contains("TLS"), "{case}: {detail}")
            }
            (Fake::Cleartext, _) => {
                assert_eq!(node["role"], "refuses-login", "{case}");
                assert!(detail.contains("clear text"), "{case}: {detail}");
            }
            (Fake::Md5, _) => assert!(detail.contains("MD5"), "{case}: {detail}"),
            (Fake::Silent, _) => {
                // It accepted the connection: listening, not answering.
                assert_eq!(node["role"], "error", "{case}");
                assert!(detail.contains("no answer within 2 s"), "{case}: {detail}");
            }
        }
        assert_eq!(
            r.json()["verdict"],
            "unknown",
            "{case}: never 'no primary' unseen"
        );
        assert!(
            took < Duration::from_secs(20),
            "{case}: status took {took:?}"
        );
        // Anything answering at the old primary's address is no lost primary. (Under require
        // the bed's real servers, which have no TLS, refuse keyferry too.)
        failover.assert_code(2);
        assert_eq!(
            bed.psql(1, "SELECT pg_is_in_recovery()"),
            "t",
            "{case}: not promoted"
        );
        if sslmode != "require" {
            assert!(
                failover.stderr().contains("nps1 is not lost"),
                "{case}: {}",
                failover.stderr()
            );
        }
        for out in [r.stdout(), r.stderr(), failover.stderr()] {
            for s in &secrets {
                assert!(
                    !out.contains(s.as_str()),
                    "{case}: a password in the output"
                );
            }
        }
    }
}

/// Node 1's PostgreSQL programs as another major version would show them: a bin folder of
/// links to the real ones, but `pg_controldata --version` says 16.
#[test]
fn a_major_version_change_is_refused_with_the_way_forward() {
    need_bed!();
    let bed = Bed::new();
    bed.hba_both();
    let bin = bed.dir.join("bin16");
    std::fs::create_dir(&bin).unwrap();
    for e in std::fs::read_dir(pgbed::BIN).unwrap().flatten() {
        std::os::unix::fs::symlink(e.path(), bin.join(e.file_name())).unwrap();
    }
    std::fs::remove_file(bin.join("pg_controldata")).unwrap();
    std::fs::write(
        bin.join("pg_controldata"),
        format!(
            "#!/bin/sh\n[ \"$1\" = --version ] && {{ echo 'pg_controldata (PostgreSQL) 16.4'; exit 0; }}\nexec {}/pg_controldata \"$@\"\n",
            pgbed::BIN
        ),
    )
    .unwrap();
    std::fs::set_permissions(
        bin.join("pg_controldata"),
        <std::fs::Permissions as std::os::unix::fs::PermissionsExt>::from_mode(0o755),
    )
    .unwrap();
    let text = std::fs::read_to_string(&bed.cluster).unwrap();
    let data1 = format!("ha = {{ data = \"{}\" }}", bed.data(1).display());
    assert!(text.contains(&data1));
    std::fs::write(
        &bed.cluster,
        text.replace(
            &data1,
            &format!(
                "ha = {{ data = \"{}\", bin = \"{}\" }}",
                bed.data(1).display(),
                bin.display()
            ),
        ),
    )
    .unwrap();
    let snap = bed.config_snapshot(1);
    let r = bed.keyferry(1, &["ha", "replica", "init"]);
    r.assert_code(2);
    assert!(
        r.stderr().contains("PostgreSQL 16") && r.stderr().contains("PostgreSQL 15"),
        "{}",
        r.stderr()
    );
    assert!(
        r.stderr().contains("install PostgreSQL 15"),
        "{}",
        r.stderr()
    );
    assert_eq!(snap, bed.config_snapshot(1));
    assert!(bed.running(1));
}

/// The service account owns the data folder's parent; at the worst moment it swaps
/// keyferry's folder for a link to a root-owned folder (a stand-in for /etc). The hook runs
/// the swap at exactly that point (KEYFERRY_FAILPOINT_RUN, test builds only).
#[cfg(feature = "failpoints")]
#[test]
fn the_service_account_cannot_point_roots_writes_or_removals_elsewhere() {
    need_bed!();
    let bed = Bed::new();
    bed.hba_both();
    bed.psql(0, "CREATE TABLE t (v text); INSERT INTO t VALUES ('r')");
    let victim = bed.dir.join("etc-standin");
    std::fs::create_dir(&victim).unwrap();
    std::fs::write(victim.join("passwd"), b"root:x:0:0\n").unwrap();
    let victim_names = || {
        let mut v: Vec<String> = std::fs::read_dir(&victim)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    };
    let node = bed.node_dir(1);
    let swap = |name: &str, glob: &str| -> PathBuf {
        let script = bed.dir.join(name);
        std::fs::write(
            &script,
            format!(
                "#!/bin/sh\nfor d in {n}/{glob}; do mv \"$d\" {n}/{name}-moved; ln -s {v} \"$d\"; done\n",
                n = node.display(),
                v = victim.display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(
            &script,
            <std::fs::Permissions as std::os::unix::fs::PermissionsExt>::from_mode(0o755),
        )
        .unwrap();
        script
    };
    let id1 = sysid(&bed, 1);
    // keyferry on nps2, the service account's move run at `point`.
    let with_hook = |args: &[&str], point: &str, script: &Path| {
        let out = bed
            .keyferry_cmd(1, args)
            .env(
                "KEYFERRY_FAILPOINT_RUN",
                format!("{point}={}", script.display()),
            )
            .output()
            .unwrap();
        common::Run {
            args: args.iter().map(|a| a.to_string()).collect(),
            out,
        }
    };

    // 1. The fresh copy swapped for a link just before the replica's settings are written.
    let script = swap("settings", "data.keyferry-new");
    let r = with_hook(&["ha", "replica", "init"], "replica-settings", &script);
    r.assert_code(2);
    assert!(r.stderr().contains("changed"), "{}", r.stderr());
    assert_eq!(
        victim_names(),
        ["passwd"],
        "nothing written into the victim"
    );
    assert_eq!(
        std::fs::read(victim.join("passwd")).unwrap(),
        b"root:x:0:0\n"
    );
    assert!(bed.running(1), "the old server is started again");
    assert_eq!(sysid(&bed, 1), id1, "nps2's own database is back");
    // Clear the attacker's leftovers so the next run can start.
    std::fs::remove_file(node.join("data.keyferry-new")).unwrap();
    std::fs::remove_dir_all(node.join("settings-moved")).unwrap();

    // 2. The old folder swapped for a link just before --remove-old removes it.
    let script = swap("remove", "data.keyferry-old-*");
    let r = with_hook(
        &["ha", "replica", "init", "--remove-old"],
        "remove-tree-open",
        &script,
    );
    r.assert_code(0);
    assert!(r.stderr().contains("was not removed"), "{}", r.stderr());
    assert_eq!(victim_names(), ["passwd"]);
    assert_eq!(
        std::fs::read(victim.join("passwd")).unwrap(),
        b"root:x:0:0\n"
    );
    wait_rows(&bed, 1, &["r"]);
    assert_eq!(rows(&bed, 0, "t"), ["r"]);
}

/// A CA and a certificate for each node's address (the node's own, with its IP in the
/// subject alternative name), made with the openssl program that PostgreSQL's package
/// brings. Returns the CA's path.
fn tls_bed(bed: &Bed) -> PathBuf {
    let dir = bed.dir.join("tls");
    std::fs::create_dir(&dir).unwrap();
    let openssl = |args: &[&str]| {
        let out = std::process::Command::new("openssl")
            .args(args)
            .current_dir(&dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let mut ca = vec!["req", "-x509"];
    ca.extend(ec);
    ca.extend([
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        "-subj",
        "/CN=kf-test-ca",
        "-days",
        "2",
    ]);
    openssl(&ca);
    for i in 0..2 {
        let ext = format!("subjectAltName=IP:{}\n", pgbed::ADDR[i]);
        std::fs::write(dir.join(format!("n{i}.ext")), ext).unwrap();
        let (key, csr, crt) = (
            format!("n{i}.key"),
            format!("n{i}.csr"),
            format!("n{i}.crt"),
        );
        let subj = format!("/CN={}", pgbed::ADDR[i]);
        let mut req = vec!["req"];
        req.extend(ec);
        req.extend(["-keyout", &key, "-out", &csr, "-subj", &subj]);
        openssl(&req);
        let extfile = format!("n{i}.ext");
        openssl(&[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            &crt,
            "-days",
            "2",
            "-extfile",
            &extfile,
        ]);
        let crt_text = std::fs::read_to_string(dir.join(&crt)).unwrap();
        let key_text = std::fs::read_to_string(dir.join(&key)).unwrap();
        bed.write_as_postgres(&bed.data(i).join("server.crt"), &crt_text, 0o600);
        bed.write_as_postgres(&bed.data(i).join("server.key"), &key_text, 0o600);
        bed.psql(i, "ALTER SYSTEM SET ssl = on");
        bed.psql(i, "SELECT pg_reload_conf()");
    }
    let ca = dir.join("ca.crt");
    std::fs::set_permissions(
        &ca,
        <std::fs::Permissions as std::os::unix::fs::PermissionsExt>::from_mode(0o644),
    )
    .unwrap();
    ca
}

#[test]
fn verify_full_with_certificates_in_the_data_folder_keeps_each_nodes_own() {
    need_bed!();
    let bed = Bed::new();
    let ca = tls_bed(&bed);
    bed.write_cluster(&format!(
        "sslmode = \"verify-full\"\nsslrootcert = \"{}\"",
        ca.display()
    ));
    let own = |i: usize| std::fs::read(bed.data(i).join("server.crt")).unwrap();
    let (crt0, crt1) = (own(0), own(1));
    assert_ne!(crt0, crt1);
    bed.hba_both();
    let r = bed.keyferry(1, &["ha", "check", "--json"]);
    let sslmode = r.json()["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["code"] == "sslmode")
        .map(|f| f["severity"].clone());
    assert_eq!(sslmode, Some(serde_json::json!("ok")));
    bed.psql(0, "CREATE TABLE t (v text); INSERT INTO t VALUES ('tls')");
    let r = bed.keyferry(1, &["ha", "replica", "init"]);
    r.assert_code(0);
    assert_eq!(own(1), crt1, "nps2 keeps its own certificate");
    wait_rows(&bed, 1, &["tls"]);
    // The replica streams over TLS, the certificate checked (verify-full in its conninfo).
    let ssl = bed.psql(
        0,
        "SELECT s.ssl FROM pg_stat_ssl s JOIN pg_stat_replication r USING (pid)",
    );
    assert_eq!(ssl, "t");
    let auto = std::fs::read_to_string(bed.data(1).join("postgresql.auto.conf")).unwrap();
    assert!(
        auto.contains("sslmode=verify-full") && auto.contains("channel_binding=require"),
        "{auto}"
    );
    bed.keyferry(0, &["ha", "status"]).assert_code(0);
    // Failover and rejoin by rewind, which copies nps2's files to nps1: nps1's own are back.
    bed.keyferry(0, &["ha", "failover"]).assert_code(0);
    let r = bed.keyferry(0, &["ha", "rejoin", "--json"]);
    r.assert_code(0);
    assert_eq!(r.json()["method"], "rewind");
    assert_eq!(own(0), crt0, "nps1 keeps its own certificate");
    bed.psql(1, "INSERT INTO t VALUES ('after')");
    wait_rows(&bed, 0, &["after", "tls"]);
    bed.keyferry(1, &["ha", "status"]).assert_code(0);
}

#[test]
fn hba_works_on_fresh_servers_that_take_only_local_connections() {
    need_bed!();
    let bed = Bed::new();
    // As installed: local connections only; keyferry's network login is refused.
    for i in 0..2 {
        bed.write_hba(i, "# fresh install\nlocal   all   all   trust\n");
        bed.psql(i, "SELECT pg_reload_conf()");
    }
    let r = bed.keyferry(0, &["ha", "status", "--json"]);
    assert_eq!(r.json()["nodes"][0]["role"], "refuses-login");
    // An edited file PostgreSQL rejects (the `@file` a line names goes away right after
    // keyferry's write, as another account could make it go): put back, reloaded, refused.
    let users = bed.data(0).join("kfusers");
    bed.write_as_postgres(&users, "app\n", 0o600);
    bed.write_hba(
        0,
        "# fresh install\nlocal   all   all   trust\nhost all @kfusers 10.231.0.9/32 md5\n",
    );
    bed.psql(0, "SELECT pg_reload_conf()");
    let before = std::fs::read(bed.hba_path(0)).unwrap();
    let spoil = common::shell_script(
        &bed.dir.join("spoil.sh"),
        &format!("rm -f '{}'", users.display()),
    );
    let out = bed
        .keyferry_cmd(0, &["ha", "hba"])
        .env(
            "KEYFERRY_FAILPOINT_RUN",
            format!("ha:hba-written={}", spoil.display()),
        )
        .output()
        .unwrap();
    let r = common::Run {
        args: vec!["ha".into(), "hba".into()],
        out,
    };
    r.assert_code(2);
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
    bed.write_cluster("");
    for i in 0..2 {
        let r = bed.keyferry(i, &["ha", "hba"]);
        r.assert_code(0);
        assert!(r.stdout().contains("pg_ctl reload"), "{}", r.stdout());
        let text = std::fs::read_to_string(bed.hba_path(i)).unwrap();
        assert!(
            text.starts_with("# fresh install\nlocal   all   all   trust\n"),
            "{text}"
        );
    }
    // Now the pair works over the network.
    bed.psql(0, "CREATE TABLE t (v text); INSERT INTO t VALUES ('fresh')");
    bed.keyferry(1, &["ha", "replica", "init"]).assert_code(0);
    wait_rows(&bed, 1, &["fresh"]);
    bed.keyferry(0, &["ha", "status"]).assert_code(0);
}

#[test]
fn the_archive_folder_is_emptied_only_when_asked_and_kept_aside() {
    need_bed!();
    let bed = Bed::new();
    bed.hba_both();
    let archive = bed.node_dir(1).join("Archive");
    std::fs::create_dir(&archive).unwrap();
    for f in ["000000010000000000000001", "000000010000000000000002"] {
        bed.write_as_postgres(&archive.join(f), "wal", 0o600);
    }
    std::process::Command::new("chown")
        .args(["postgres:postgres"])
        .arg(&archive)
        .status()
        .unwrap();
    let text = std::fs::read_to_string(&bed.cluster).unwrap();
    let data1 = format!("ha = {{ data = \"{}\" }}", bed.data(1).display());
    std::fs::write(
        &bed.cluster,
        text.replace(
            &data1,
            &format!(
                "ha = {{ data = \"{}\", archive = \"{}\" }}",
                bed.data(1).display(),
                archive.display()
            ),
        ),
    )
    .unwrap();
    let r = bed.keyferry(1, &["ha", "replica", "init", "--dry-run"]);
    r.assert_code(0);
    assert!(
        r.stderr().contains("holds 2 entries") && r.stderr().contains("--empty-archive"),
        "{}",
        r.stderr()
    );
    let r = bed.keyferry(1, &["ha", "replica", "init", "--empty-archive", "--json"]);
    r.assert_code(0);
    let backup = PathBuf::from(r.json()["archive_backup"].as_str().unwrap());
    assert_eq!(std::fs::read_dir(&archive).unwrap().count(), 0, "emptied");
    assert_eq!(std::fs::read_dir(&backup).unwrap().count(), 2, "kept aside");
    use std::os::unix::fs::MetadataExt;
    assert_eq!(
        std::fs::metadata(&archive).unwrap().uid(),
        std::fs::metadata(&backup).unwrap().uid(),
        "the new Archive folder belongs to the service account, as the old one"
    );
}

/// `ha rejoin` on a node whose database is not the peer's (two separate installs): a rejoin
/// never replaces a database of its own. Refused with both servers' facts; nothing changed.
#[test]
fn rejoin_refuses_a_database_that_is_not_the_peers() {
    need_bed!();
    let bed = Bed::new();
    bed.hba_both();
    bed.psql(
        1,
        "CREATE TABLE mine (v text); INSERT INTO mine VALUES ('n2')",
    );
    let id1 = sysid(&bed, 1);
    bed.stop(1);
    let snap = [bed.config_snapshot(0), bed.config_snapshot(1)];
    let r = bed.keyferry(1, &["ha", "rejoin"]);
    r.assert_code(2);
    assert!(
        r.stderr().contains("are different databases")
            && r.stderr().contains(&id1)
            && r.stderr().contains("--replace-database-of nps2"),
        "{}",
        r.stderr()
    );
    assert_eq!(snap, [bed.config_snapshot(0), bed.config_snapshot(1)]);
    assert!(!bed.running(1), "a refusal starts nothing");
    assert_eq!(folder_sysid(&bed.data(1)), id1);
    bed.start(1);
    assert_eq!(rows(&bed, 1, "mine"), ["n2"]);
}

/// `ha replica init` stopped abruptly (`abort`, like `kill -9`) at each step of its
/// data-folder swap: from the journal in the node's state folder, `keyferry recover` puts
/// the node back as it was (its own database in place and running, the copy removed, no
/// journal), and so does any command that changes the node, first (`ha hba` here), and the
/// init then goes through.
#[cfg(feature = "failpoints")]
#[test]
fn a_replica_init_cut_off_at_each_step_of_its_swap_is_rolled_back_by_recover() {
    need_bed!();
    let bed = Bed::new();
    bed.hba_both();
    bed.psql(
        1,
        "CREATE TABLE own (v text); INSERT INTO own VALUES ('nps2-before')",
    );
    let journal = bed.node_dir(1).join("state/ha-replica-swap.json");
    let leftovers = || -> Vec<String> {
        std::fs::read_dir(bed.node_dir(1))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("data.keyferry-"))
            .collect()
    };
    let init = ["ha", "replica", "init", "--replace-database-of", "nps2"];
    for fp in [
        "ha:replica-journaled",
        "ha:replica-copied",
        "ha:replica-old-moved",
        "ha:replica-swapped",
        "ha:replica-started",
    ] {
        let out = bed
            .keyferry_cmd(1, &init)
            .env("KEYFERRY_FAILPOINT", fp)
            .output()
            .unwrap();
        assert!(
            !out.status.success() && out.status.code() != Some(2),
            "{fp}: the run was to be cut off: {:?} {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(journal.exists(), "{fp}: the cut-off run left its journal");
        // A dry run changes nothing and says what to do.
        let (journal_before, left_before) = (std::fs::read(&journal).unwrap(), leftovers());
        let r = bed.keyferry(1, &["ha", "replica", "init", "--dry-run"]);
        r.assert_code(2);
        assert!(
            r.stderr().contains("keyferry recover"),
            "{fp}: {}",
            r.stderr()
        );
        assert_eq!(journal_before, std::fs::read(&journal).unwrap(), "{fp}");
        assert_eq!(left_before, leftovers(), "{fp}");
        // Any command that changes the node rolls it back first, as recover does: here, with
        // the old folder moved aside and the copy not yet in its place, `ha hba`.
        let said = if fp == "ha:replica-old-moved" {
            let r = bed.keyferry(1, &["ha", "hba"]);
            r.assert_code(0);
            let first = r
                .stderr()
                .lines()
                .find(|l| l.starts_with("warning: first: "))
                .unwrap_or_default()
                .to_owned();
            assert!(first.contains("rolled back"), "{fp}: {}", r.stderr());
            first
        } else {
            let r = bed.keyferry(1, &["recover", "--json"]);
            r.assert_code(0);
            let said = r.json()["replica"].as_str().unwrap_or_default().to_owned();
            assert!(said.contains("rolled back"), "{fp}: {}", r.stdout());
            said
        };
        eprintln!("{fp}: {said}");
        assert!(bed.running(1), "{fp}: the old server runs again: {said}");
        assert_eq!(
            rows(&bed, 1, "own"),
            ["nps2-before"],
            "{fp}: nps2's own database is back: {said}"
        );
        assert!(leftovers().is_empty(), "{fp}: {:?}", leftovers());
        assert!(!journal.exists(), "{fp}");
        // Nothing more to do.
        let r = bed.keyferry(1, &["recover", "--json"]);
        r.assert_code(0);
        assert!(r.json()["replica"].is_null(), "{fp}: {}", r.stdout());
    }
    // And after all of that the init goes through.
    bed.keyferry(1, &init).assert_code(0);
    assert!(!journal.exists());
    assert!(bed.psql(1, "SELECT pg_is_in_recovery()").contains('t'));
}
