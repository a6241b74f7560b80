//! `keyferry diagnose`: the catalogue through the CLI, logs, and checks against a cluster.
//! Port checks contact a node address, so they run only against a test host in a network
//! namespace this test creates (veth pair, addresses on that link only); every other test
//! names its checks so nothing else is contacted.

use crate::common;
use common::*;

#[test]
fn message_is_explained_with_cause_fix_and_commands() {
    let r = keyferry(&["diagnose", "FATAL:  no pg_hba.conf entry for replication connection from host \"10.0.0.2\", user \"repuser\"", "--json"], None);
    r.assert_code(0);
    let j = r.json();
    assert_eq!(j["recognised"], true);
    assert_eq!(j["matches"][0]["code"], "pg-hba-missing-replication");
    assert!(j["matches"][0]["fix"]
        .as_str()
        .unwrap()
        .contains("host replication repuser"));
    let r = keyferry(&["diagnose", "The printer is on fire"], None);
    r.assert_code(0);
    assert!(r.stdout().contains("Not recognised") && r.stdout().contains("--check all"));
    keyferry(&["diagnose"], None).assert_code(2);
}

#[test]
fn log_file_yields_each_known_error_once_with_evidence() {
    let d = tempfile::tempdir().unwrap();
    let log = d.path().join("ss.log");
    std::fs::write(
        &log,
        "2026-11-22 10:00:01 INFO start\r\n2026-11-22 10:00:02 ERROR Version does not match\r\n\
         2026-11-22 10:00:03 ERROR System.Security.Cryptography.CryptographicException: Key not valid for use in specified state.\r\n\
         2026-11-22 10:00:04 ERROR Version does not match\r\n",
    )
    .unwrap();
    let r = keyferry(&argv!["diagnose", "--log", &log, "--json"], None);
    r.assert_code(0);
    let codes: Vec<_> = r.json()["matches"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["code"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(codes, ["version-mismatch", "dpapi-foreign-blob"]);
    assert!(r.json()["matches"][0]["evidence"]
        .as_str()
        .unwrap()
        .contains("10:00:02"));
}

#[test]
fn with_a_cluster_the_relevant_checks_run_and_faults_exit_1() {
    let c = Cluster::secret_server(b"A", Some(b"B"));
    std::fs::write(c.key_path("dr1"), b"A").unwrap();
    let cl = c.cluster_file();
    let r = keyferry(
        &argv![
            "diagnose",
            "Encryption key doesn't match",
            "-c",
            &cl,
            "--check",
            "keys",
            "--json"
        ],
        None,
    );
    r.assert_code(1);
    let j = r.json();
    // Findings in the shape every check shares: the document's second version.
    assert_eq!(
        (j["version"].as_u64(), j["kind"].as_str()),
        (Some(2), Some("diagnose"))
    );
    assert_eq!(j["findings"][0]["code"], "keys-differ");
    assert_eq!(j["findings"][0]["node"], "web2");
    assert_eq!(j["findings"][0]["severity"], "error");
    std::fs::write(c.key_path("web2"), b"A").unwrap();
    let r = keyferry(
        &argv!["diagnose", "-c", &cl, "--check", "keys", "--check", "binaries", "--json"],
        None,
    );
    r.assert_code(0);
    assert_eq!(r.json()["findings"].as_array().unwrap().len(), 0);
}

#[test]
fn pg_hba_peer_lines_are_checked_when_readable() {
    let c = Cluster::secret_server(b"A", Some(b"A"));
    let text = std::fs::read_to_string(c.cluster_file()).unwrap();
    let hba1 = c.path("web1.hba");
    let hba2 = c.path("web2.hba");
    std::fs::write(
        &hba1,
        "host replication repuser 10.9.0.2/32 md5\nhost all all 10.9.0.2/32 md5\n",
    )
    .unwrap();
    std::fs::write(
        &hba2,
        "host all all 10.9.0.1 255.255.255.255 md5\nhost all all 0.0.0.0/0 reject\n",
    )
    .unwrap();
    let text = text
        .replace(
            "name = \"web1\"\n",
            &format!("name = \"web1\"\npg_hba = {hba1:?}\n"),
        )
        .replace(
            "name = \"web2\"\n",
            &format!("name = \"web2\"\npg_hba = {hba2:?}\n"),
        );
    let cl = c.path("hba.toml");
    std::fs::write(&cl, text).unwrap();
    let r = keyferry(
        &argv!["diagnose", "-c", &cl, "--check", "pg-hba", "--json"],
        None,
    );
    r.assert_code(1);
    let f = &r.json()["findings"];
    assert_eq!(f.as_array().unwrap().len(), 1, "{f}");
    assert_eq!(f[0]["node"], "web2");
    assert!(f[0]["fix"]
        .as_str()
        .unwrap()
        .contains("host replication repuser 10.9.0.1/32 md5"));
    // The decisions as fields: replication is decided by no line (`all` in line 2 does not
    // cover replication), the normal connection by line 1.
    let d = &f[0]["pg_hba_decisions"];
    assert_eq!(d[0]["decided"]["line"], serde_json::Value::Null, "{d}");
    assert_eq!(d[1]["decided"]["line"], 1, "{d}");
    assert_eq!(d[1]["decided"]["method"], "md5", "{d}");
    // A file PostgreSQL refuses (a method in capitals) is said so, with the line as fields,
    // never "lets the peer in": before, the bad line was skipped and the file passed.
    std::fs::write(
        &hba1,
        "host replication repuser 10.9.0.2/32 MD5\nhost all all 10.9.0.2/32 md5\n",
    )
    .unwrap();
    let r = keyferry(
        &argv!["diagnose", "-c", &cl, "--check", "pg-hba", "--json"],
        None,
    );
    r.assert_code(1);
    let f = &r.json()["findings"];
    let refused = f
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["code"] == "pg-hba-refused")
        .unwrap_or_else(|| panic!("{f}"));
    assert_eq!(refused["node"], "web1");
    assert_eq!(refused["pg_hba_lines"][0]["line"], 1);
    assert_eq!(refused["pg_hba_lines"][0]["outcome"], "refused");
    assert!(refused["pg_hba_lines"][0]["why"][0]
        .as_str()
        .unwrap()
        .contains("invalid authentication method \"MD5\""));
    assert!(!f
        .as_array()
        .unwrap()
        .iter()
        .any(|x| x["node"] == "web1" && x["code"] == "pg-hba-missing-peer"));
}

/// A test host in its own network namespace, reachable over a veth pair.
#[cfg(target_os = "linux")]
struct TestHost {
    ns: String,
    veth: String,
    listener: std::process::Child,
}

#[cfg(target_os = "linux")]
impl TestHost {
    #[allow(clippy::print_stderr)] // the SKIPPED line must be visible in test output
    fn start(port: u16) -> Option<TestHost> {
        let id = std::process::id() % 10000;
        let ns = format!("kf{id}");
        let veth = format!("kfv{id}");
        let ip = |args: &[&str]| {
            std::process::Command::new("ip")
                .args(args)
                .status()
                .map(|s| s.success())
                .unwrap_or(false)
        };
        if !ip(&["netns", "add", &ns]) {
            eprintln!("SKIPPED: cannot create a network namespace (needs root and iproute2)");
            return None;
        }
        let ok = ip(&[
            "link",
            "add",
            &veth,
            "type",
            "veth",
            "peer",
            "name",
            &format!("{veth}p"),
        ]) && ip(&["link", "set", &format!("{veth}p"), "netns", &ns])
            && ip(&["addr", "add", "10.254.77.1/30", "dev", &veth])
            && ip(&["link", "set", &veth, "up"])
            && ip(&[
                "netns",
                "exec",
                &ns,
                "ip",
                "addr",
                "add",
                "10.254.77.2/30",
                "dev",
                &format!("{veth}p"),
            ])
            && ip(&[
                "netns",
                "exec",
                &ns,
                "ip",
                "link",
                "set",
                &format!("{veth}p"),
                "up",
            ])
            && ip(&["netns", "exec", &ns, "ip", "link", "set", "lo", "up"]);
        assert!(ok, "veth set-up failed");
        let mut listener = std::process::Command::new("ip")
            .args(["netns", "exec", &ns, "python3", "-c"])
            .arg(format!(
                "import socket,time\ns=socket.socket()\ns.bind(('10.254.77.2',{port}))\ns.listen()\nprint('listening',flush=True)\ntime.sleep(60)"
            ))
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // Wait for the listener to say it listens (a fixed sleep was too short on a loaded
        // CI machine, and the test then saw both ports closed).
        let out = listener.stdout.take().unwrap();
        let host = TestHost { ns, veth, listener };
        let mut line = String::new();
        std::io::BufRead::read_line(&mut std::io::BufReader::new(out), &mut line).unwrap();
        assert_eq!(
            line.trim(),
            "listening",
            "the test host's listener did not start"
        );
        Some(host)
    }
}

#[cfg(target_os = "linux")]
impl Drop for TestHost {
    fn drop(&mut self) {
        let _ = self.listener.kill();
        let _ = self.listener.wait();
        let _ = std::process::Command::new("ip")
            .args(["link", "del", &self.veth])
            .status();
        let _ = std::process::Command::new("ip")
            .args(["netns", "del", &self.ns])
            .status();
    }
}

#[cfg(target_os = "linux")]
#[test]
fn blocked_ports_are_found_on_a_real_test_host() {
    let Some(_host) = TestHost::start(6500) else {
        return;
    };
    let c = Cluster::secret_server(b"A", Some(b"A"));
    let text = std::fs::read_to_string(c.cluster_file())
        .unwrap()
        .replace("10.9.0.1", "10.254.77.2");
    let cl = c.path("ports.toml");
    std::fs::write(&cl, text).unwrap();
    // An HA pair's ports on the primary: 6500 listens there, 5432 does not.
    let r = keyferry(
        &argv![
            "diagnose",
            "Firewall Port Not Open",
            "-c",
            &cl,
            "--check",
            "ports",
            "--ports",
            "5432,6500",
            "--timeout",
            "2s",
            "--json"
        ],
        None,
    );
    r.assert_code(1);
    let f = r.json()["findings"].clone();
    let closed: Vec<_> = f
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["message"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(closed.len(), 1, "{f}");
    assert!(closed[0].starts_with("10.254.77.2:5432"), "{f}");
}

/// The facts in a message go into the fix: the exact line, and whose pg_hba.conf it goes
/// into, by the cluster file's addresses. (`--check pg-hba` keeps the port check, which would
/// contact the nodes' addresses, from running.)
#[test]
fn the_fix_carries_the_messages_address_user_and_nodes() {
    let c = Cluster::secret_server(b"A", Some(b"A"));
    let cl = c.cluster_file();
    let msg = "2026-11-24 10:00:01.123 UTC [4711] FATAL:  no pg_hba.conf entry for replication connection from host \"10.9.0.2\", user \"repuser\", no encryption";
    let r = keyferry(
        &argv!["diagnose", msg, "-c", &cl, "--check", "pg-hba"],
        None,
    );
    r.assert_code(0);
    let out = r.stdout();
    assert!(
        out.contains("host replication repuser 10.9.0.2/32 md5"),
        "{out}"
    );
    assert!(out.contains("(node web2)"), "{out}");
    assert!(out.contains("pg_hba.conf of web1"), "{out}");
    // Not recognised, with a cluster file given: no advice to give one.
    let r = keyferry(
        &argv![
            "diagnose",
            "The printer is on fire",
            "-c",
            &cl,
            "--check",
            "keys"
        ],
        None,
    );
    assert!(r.stdout().contains("Not recognised"), "{}", r.stdout());
    assert!(
        !r.stdout().contains("with --cluster FILE"),
        "{}",
        r.stdout()
    );
}

#[test]
fn a_log_scan_says_how_many_lines_it_read_and_shows_what_it_could_not_match() {
    let d = tempfile::tempdir().unwrap();
    let log = d.path().join("ss.log");
    std::fs::write(
        &log,
        "2026-11-22 10:00:01 INFO start\n\
         2026-11-22 10:00:02 ERROR Version does not match\n\
         2026-11-22 10:00:03 ERROR The widget frobnicator failed to start\n",
    )
    .unwrap();
    let r = keyferry(&argv!["diagnose", "--log", &log], None);
    let out = r.stdout();
    assert!(
        out.contains("Read 3 lines: 1 matched a known error, 2 did not."),
        "{out}"
    );
    assert!(out.contains("widget frobnicator"), "{out}");
    assert!(!out.contains("  10:00:01 INFO"), "{out}");
}

/// Fix texts name the node they are about.
#[test]
fn fixes_name_the_node_they_are_about() {
    let c = Cluster::secret_server(b"A", Some(b"B"));
    std::fs::write(c.key_path("dr1"), b"A").unwrap();
    let cl = c.cluster_file();
    let r = keyferry(
        &argv!["diagnose", "-c", &cl, "--check", "keys", "--json"],
        None,
    );
    let fix = r.json()["findings"][0]["fix"].as_str().unwrap().to_owned();
    assert!(
        fix.contains("on web2:") && fix.contains("--node web2"),
        "{fix}"
    );
    assert!(!fix.contains("this node"), "{fix}");
}

/// A port check with nothing to test says so and what would give it something, instead of
/// "Checks found nothing wrong". (A custom profile lists no ports; nothing is contacted.)
#[test]
fn a_port_check_with_nothing_to_test_says_so() {
    let d = tempfile::tempdir().unwrap();
    let cl = d.path().join("c.toml");
    std::fs::write(
        &cl,
        "name = \"c\"\nprofile = \"custom\"\n[custom]\nkey = [{ name = \"k\", folder = \"f\", roles = [\"secondary\"] }]\n\
         [[node]]\nname = \"a\"\nrole = \"primary\"\naddress = \"10.9.9.1\"\npaths = { f = \"/nonexistent\" }\n",
    )
    .unwrap();
    let r = keyferry(&argv!["diagnose", "-c", &cl, "--check", "ports"], None);
    r.assert_code(0);
    let out = r.stdout();
    assert!(!out.contains("Checks found nothing wrong."), "{out}");
    assert!(out.contains("nothing was tested"), "{out}");
    assert!(out.contains("--ports"), "{out}");
}

/// Every `run:` line names the cluster file given with `-c` (quoted where it has a blank),
/// not `cluster.toml`; a node the clock check could not reach is a finding (exit 1), never
/// "nothing wrong"; the ssh settings the audit takes are taken here too.
#[cfg(unix)]
#[test]
fn run_lines_name_the_cluster_file_given_and_an_unreached_node_is_not_fine() {
    let c = Cluster::secret_server(b"KEY-A", Some(b"KEY-A"));
    let dir = c.path("my files");
    std::fs::create_dir_all(&dir).unwrap();
    let text = std::fs::read_to_string(c.cluster_file()).unwrap();
    // dr1 is reached over ssh on a port where nothing listens.
    let closed = free_port();
    let cl = dir.join("prod cluster.toml");
    std::fs::write(
        &cl,
        text.replace(
            "name = \"dr1\"",
            &format!("name = \"dr1\"\naccess = \"ssh://root@127.0.0.1:{closed}\""),
        ),
    )
    .unwrap();
    let cls = cl.to_str().unwrap();
    let msg = "FATAL:  no pg_hba.conf entry for host \"10.0.0.12\", user \"ss\", database \"ss\", SSL off";
    let r = keyferry(&["diagnose", msg, "-c", cls, "--check", "pg-hba"], None);
    let out = r.stdout();
    assert!(out.contains(&format!("-c \"{cls}\"")), "{out}");
    assert!(!out.contains("-c cluster.toml"), "{out}");
    let ssh_config = c.path("ssh_config");
    std::fs::write(&ssh_config, "Host *\n  ConnectTimeout 2\n").unwrap();
    let r = keyferry(
        &argv![
            "diagnose",
            "-c",
            cls,
            "--check",
            "clocks",
            "--ssh-config",
            &ssh_config,
            "--timeout",
            "3s",
            "--json"
        ],
        None,
    );
    r.assert_code(1);
    let j = r.json();
    let unreached: Vec<&serde_json::Value> = j["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["node"] == "dr1")
        .collect();
    assert_eq!(unreached.len(), 1, "{j}");
    assert_eq!(unreached[0]["code"], "node-unreachable", "{j}");
}

/// A log with one error thousands of times says how often, where and when (first and last),
/// not one line without a count; an unrecognised error line is shown whole, not cut at 200
/// characters; a line of `İ` (whose lower case is longer in bytes) does not upset the scan.
#[test]
fn a_log_scan_counts_each_error_with_its_first_and_last_time() {
    let d = tempfile::tempdir().unwrap();
    let log = d.path().join("ss.log");
    let mut text =
        String::from("2026-11-22 09:59:59 INFO İİİİ start İstanbul \"x\" user \"İ\"\r\n");
    for i in 0..3181 {
        let (h, m, s) = (10 + i / 3600, (i / 60) % 60, i % 60);
        text.push_str(&format!(
            "2026-11-22 {h:02}:{m:02}:{s:02} ERROR Application version 11.0.000001 does not match database version 10.9.000064\r\n"
        ));
    }
    let long = format!(
        "2026-11-22 11:00:00 ERROR something odd: {}",
        "x".repeat(1000)
    );
    text.push_str(&long);
    text.push_str("\r\n");
    std::fs::write(&log, &text).unwrap();
    let r = keyferry(&argv!["diagnose", "--log", &log, "--json"], None);
    r.assert_code(0);
    let j = r.json();
    let m = &j["matches"][0];
    assert_eq!(m["code"], "version-mismatch", "{j}");
    assert_eq!(m["seen"]["count"], 3181, "{m}");
    assert_eq!(m["seen"]["first_line"], 2);
    assert_eq!(m["seen"]["last_line"], 3182);
    assert_eq!(m["seen"]["first_time"], "2026-11-22 10:00:00");
    assert_eq!(m["seen"]["last_time"], "2026-11-22 10:53:00");
    let unmatched = j["log"]["unmatched_errors"].as_array().unwrap();
    assert!(
        unmatched.iter().any(|l| l.as_str() == Some(long.as_str())),
        "{unmatched:?}"
    );
    let t = keyferry(&argv!["diagnose", "--log", &log], None);
    assert!(
        t.stdout()
            .contains("3181 times, lines 2 to 3182 (2026-11-22 10:00:00 to 2026-11-22 10:53:00)"),
        "{}",
        t.stdout()
    );
}

/// `ha explain`: which line decides a connection, and why each line above does not, as
/// text and JSON; exit 0 only where a line surely lets it on to its login. Needs no cluster
/// file and no server (the decisions are the ones `tests/hba_vs_postgres.rs` holds against a
/// real PostgreSQL).
#[test]
fn ha_explain_names_the_deciding_line_and_why_the_lines_above_do_not_match() {
    let d = tempfile::tempdir().unwrap();
    let hba = d.path().join("pg_hba.conf");
    std::fs::write(d.path().join("ops"), "ops1\n").unwrap();
    std::fs::write(
        &hba,
        "# test\nlocal all all peer\nhost all +admins,@ops 10.0.5.0/24 reject\n\
         host all all 10.0.0.0/8 md5\nhost replication repuser 10.0.5.2/32 scram-sha-256\n\
         host all all 0.0.0.0/0 reject\n",
    )
    .unwrap();
    let before = snapshot(d.path());
    let file = hba.to_str().unwrap();
    let explain = |extra: &[&str]| {
        let mut args = vec!["ha", "explain", "--file", file, "--json"];
        args.extend(extra);
        keyferry(&args, None)
    };
    // Replication: the `all` lines above do not cover it; line 5 decides.
    let r = explain(&["--from", "10.0.5.2", "--user", "repuser", "--replication"]);
    r.assert_code(0);
    let j = r.json();
    assert_eq!(j["decided_by"], 5, "{j}");
    assert_eq!(j["method"], "scram-sha-256");
    assert_eq!(j["lines"][2]["outcome"], "no");
    assert!(
        j["lines"][2]["why"][0]
            .as_str()
            .unwrap()
            .contains("matches only the replication keyword"),
        "{j}"
    );
    // Outside 10/8: the catch-all reject decides (exit 1), line 4 says why it did not match.
    let r = explain(&[
        "--from",
        "192.168.1.4",
        "--user",
        "app",
        "--database",
        "nps",
    ]);
    r.assert_code(1);
    let j = r.json();
    assert_eq!(
        (j["decided_by"].clone(), j["method"].clone()),
        (6.into(), "reject".into())
    );
    assert!(
        j["lines"][2]["why"][0]
            .as_str()
            .unwrap()
            .contains("10.0.0.0/8 does not contain 192.168.1.4"),
        "{j}"
    );
    // A user the `@ops` file beside it names: line 3 rejects.
    let r = explain(&["--from", "10.0.5.9", "--user", "ops1", "--database", "nps"]);
    r.assert_code(1);
    assert_eq!(r.json()["decided_by"], 3);
    // A group whose members are not given: line 3 might catch it first (exit 1, not sure).
    let bob = ["--from", "10.0.5.9", "--user", "bob", "--database", "nps"];
    let r = explain(&bob);
    r.assert_code(1);
    let j = r.json();
    assert_eq!(j["decided_by"], 4, "{j}");
    assert_eq!(j["might_be_decided_by"], serde_json::json!([3]));
    assert_eq!(j["lines"][1]["outcome"], "might");
    // Given: not a member, line 4 decides (line 5 is below); a member, line 3 rejects.
    let r = explain(&[&bob[..], &["--member-of", "staff"]].concat());
    r.assert_code(0);
    assert_eq!(r.json()["lines"][3]["outcome"], "below");
    let r = explain(&[&bob[..], &["--member-of", "admins"]].concat());
    r.assert_code(1);
    assert_eq!(r.json()["decided_by"], 3);
    // A file PostgreSQL refuses: said, exit 1, in text too.
    std::fs::write(&hba, "host all all 10.0.0.0/8 MD5\n").unwrap();
    let r = explain(&["--from", "10.0.5.2"]);
    r.assert_code(1);
    assert_eq!(r.json()["loads"], false);
    let r = keyferry(
        &["ha", "explain", "--file", file, "--from", "10.0.5.2"],
        None,
    );
    r.assert_code(1);
    assert!(
        r.stdout().contains("PostgreSQL refuses this file")
            && r.stdout().contains("invalid authentication method \"MD5\""),
        "{}",
        r.stdout()
    );
    // It changed nothing but the file this test wrote.
    let after = snapshot(d.path());
    assert_eq!(before.len(), after.len());
    assert_eq!(
        before.get(&d.path().join("ops")),
        after.get(&d.path().join("ops"))
    );
}

/// A GNU message catalogue (`.mo`): each original message and its translation.
#[cfg(target_os = "linux")]
fn mo_catalogue(bytes: &[u8]) -> std::collections::HashMap<String, String> {
    let le = bytes[0..4] == [0xde, 0x12, 0x04, 0x95];
    let word = |at: usize| {
        let b: [u8; 4] = bytes[at..at + 4].try_into().unwrap();
        (if le {
            u32::from_le_bytes(b)
        } else {
            u32::from_be_bytes(b)
        }) as usize
    };
    let (n, originals, translations) = (word(8), word(12), word(16));
    let text = |table: usize, i: usize| {
        let (len, off) = (word(table + 8 * i), word(table + 8 * i + 4));
        String::from_utf8_lossy(&bytes[off..off + len]).into_owned()
    };
    (0..n)
        .map(|i| (text(originals, i), text(translations, i)))
        .collect()
}

/// `src/diagnose/pg-messages.json` holds PostgreSQL's own translations, exactly as its
/// installed catalogues have them (none written by hand), and every language installed here
/// that translates one of its messages (`scripts/pg-messages` writes the file).
#[cfg(target_os = "linux")]
#[test]
fn the_translations_are_postgresqls_own_catalogues() {
    let locale = std::path::Path::new("/usr/share/locale");
    if !locale.join("de/LC_MESSAGES/postgres-15.mo").exists() {
        assert!(
            std::env::var_os("CI").is_none(),
            "PostgreSQL 15's message catalogues are not installed (scripts/setup installs them)"
        );
        eprintln!("SKIPPED: PostgreSQL 15's message catalogues are not installed here");
        return;
    }
    let data: Vec<serde_json::Value> =
        serde_json::from_str(include_str!("../src/diagnose/pg-messages.json")).unwrap();
    let mut wanted = std::collections::BTreeSet::new();
    let mut have = std::collections::BTreeSet::new();
    for e in &data {
        let (domain, lang, msgid, msgstr) = (
            e["domain"].as_str().unwrap(),
            e["lang"].as_str().unwrap(),
            e["msgid"].as_str().unwrap(),
            e["msgstr"].as_str().unwrap(),
        );
        let mo = locale.join(format!("{lang}/LC_MESSAGES/{domain}.mo"));
        let cat = mo_catalogue(&std::fs::read(&mo).unwrap());
        assert_eq!(
            cat.get(msgid).map(String::as_str),
            Some(msgstr),
            "{lang} {msgid}"
        );
        wanted.insert((domain.to_owned(), msgid.to_owned()));
        have.insert((domain.to_owned(), lang.to_owned(), msgid.to_owned()));
    }
    for dir in std::fs::read_dir(locale).unwrap().flatten() {
        let lang = dir.file_name().to_string_lossy().into_owned();
        for (domain, msgid) in &wanted {
            let mo = dir.path().join(format!("LC_MESSAGES/{domain}.mo"));
            let Ok(bytes) = std::fs::read(&mo) else {
                continue;
            };
            let translated = mo_catalogue(&bytes)
                .get(msgid)
                .is_some_and(|s| !s.is_empty() && s != msgid);
            assert!(
                !translated || have.contains(&(domain.clone(), lang.clone(), msgid.clone())),
                "{lang} translates {msgid:?} ({domain}) and the file lacks it: run scripts/pg-messages"
            );
        }
    }
}
