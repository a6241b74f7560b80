//! `ha check`: what the pair needs before HA can work. Each finding has a stable code
//! (docs/ha.md) and a severity; an error finding makes the check fail. What only a node can
//! see for itself (its address, the peer's ports from there, its Archive folder) is checked
//! on this node and, through the peer's `access` (ssh), on the peer by its own keyferry.

use super::config::{HaNode, Pair};
use super::hba::{self, Connection};
use super::pg::{self, Connector, Reach};
use crate::cluster::access::{parse_access, Access};
use crate::cluster::ClusterFile;
use crate::remote::ssh::{SshClient, SshTarget};
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::time::Duration;

pub use crate::finding::Severity;

/// The stable codes of `ha check` (docs/ha.md).
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Serialize,
    Deserialize,
    strum::IntoStaticStr,
    strum::VariantArray,
)]
#[serde(rename_all = "kebab-case")]
#[strum(serialize_all = "kebab-case")]
#[allow(missing_docs)] // each is documented in docs/ha.md, which a test holds to this list
pub enum Code {
    LocalAddress,
    PortOpen,
    PortRefused,
    PortDropped,
    PortUnreachable,
    PgUnavailable,
    HbaAdmits,
    HbaRefuses,
    WalLevel,
    WalSenders,
    HotStandby,
    Rewind,
    WalKeepSize,
    Sslmode,
    ArchiveNotEmpty,
    VersionMismatch,
    PeerNotChecked,
    PeerCheckFailed,
}

impl Code {
    /// The code as the JSON writes it.
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// Where an `ha check` finding was seen from: `ha check`'s own field beside the shared ones.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeenFrom {
    /// The node it was seen from.
    pub from: String,
}

/// One finding of `ha check`: the shared model, with the node it was seen from.
pub type Finding = crate::finding::Finding<Code, SeenFrom>;

/// `keyferry ha check --json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CheckReport {
    /// The nodes whose own view is in the report: this node, and the peer when its
    /// keyferry ran there.
    pub from: Vec<String>,
    /// Every finding, from both sides.
    pub findings: Vec<Finding>,
}

impl CheckReport {
    /// How many findings are errors.
    pub fn errors(&self) -> usize {
        crate::finding::errors(&self.findings)
    }
}

/// Findings seen from one node.
struct Seen<'a> {
    from: &'a str,
    v: Vec<Finding>,
}

fn push(v: &mut Seen<'_>, severity: Severity, code: Code, node: &str, message: String) {
    push_fix(v, severity, code, node, message, None);
}

/// [`push`], with what to do about it.
fn push_fix(
    v: &mut Seen<'_>,
    severity: Severity,
    code: Code,
    node: &str,
    message: String,
    fix: Option<String>,
) {
    v.v.push(Finding {
        code,
        severity,
        node: Some(node.to_owned()),
        message,
        fix,
        more: SeenFrom {
            from: v.from.to_owned(),
        },
    });
}

impl CheckReport {
    /// Adds the peer's own view (from [`peer_view`]).
    pub fn add_peer(&mut self, peer: &HaNode, view: PeerView) {
        match view {
            PeerView::Ran(findings) => {
                self.from.push(peer.name.clone());
                self.findings.extend(findings);
            }
            PeerView::Missing(finding) => self.findings.push(finding),
        }
    }
}

/// What `local` sees for itself, and both servers through SQL.
pub fn check(conn: &Connector<'_>, local: &HaNode) -> CheckReport {
    let mut r = check_here(conn.pair, local);
    let mut f = Seen {
        from: &local.name,
        v: std::mem::take(&mut r.findings),
    };
    let pair = conn.pair;
    let verify = pair.sslmode == super::config::SslMode::VerifyFull;
    push_fix(
        &mut f,
        if verify {
            Severity::Ok
        } else {
            Severity::Warning
        },
        Code::Sslmode,
        &local.name,
        if verify {
            "sslmode = verify-full: keyferry and the replica know they talk to the pair's server"
                .into()
        } else {
            format!(
                "sslmode = {}: the servers' certificates are not checked, so a machine that takes \
                 a peer's address sees the connections (not the passwords)",
                serde_json::to_value(pair.sslmode)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default()
            )
        },
        (!verify).then(|| {
            "set sslmode = \"verify-full\" and sslrootcert in the cluster file's [ha] section \
             (docs/ha.md)"
                .into()
        }),
    );
    let mut versions = Vec::new();
    for node in &pair.nodes {
        match server_facts(conn, node) {
            Ok(facts) => {
                versions.push((node.name.clone(), facts.version_num / 10000));
                judge_server(&mut f, conn, node, &facts);
            }
            Err(e) => push_fix(
                &mut f,
                Severity::Error,
                Code::PgUnavailable,
                &node.name,
                format!("cannot query PostgreSQL: {e}"),
                Some(format!(
                    "check that PostgreSQL runs on {}, its address and port in the cluster file, \
                     and the password file's line for it",
                    node.name
                )),
            ),
        }
    }
    if let [(a, va), (b, vb)] = versions.as_slice() {
        if va != vb {
            push_fix(
                &mut f,
                Severity::Error,
                Code::VersionMismatch,
                b,
                format!("PostgreSQL {va} on {a} but {vb} on {b}: streaming needs the same major version"),
                Some("install the same PostgreSQL major version on both nodes".into()),
            );
        }
    }
    r.findings = f.v;
    r
}

/// What only `local` can see for itself: that its address is its own, the peer's ports from
/// here, its Archive folder. No SQL, no password file (`ha check --here-only`).
pub fn check_here(pair: &Pair, local: &HaNode) -> CheckReport {
    let peer = pair.peer_of(local);
    let mut f = Seen {
        from: &local.name,
        v: Vec::new(),
    };
    if pg::is_local_address(local.addr) {
        push(
            &mut f,
            Severity::Ok,
            Code::LocalAddress,
            &local.name,
            format!("{} is an address of this machine", local.addr),
        );
    } else {
        push_fix(
            &mut f,
            Severity::Error,
            Code::LocalAddress,
            &local.name,
            format!("{} is not an address of this machine", local.addr),
            Some(format!(
                "either this is not {} (name this machine's node with --node) or the cluster \
                 file has the wrong address for it",
                local.name
            )),
        );
    }
    for (port, what) in [
        (peer.pg_port, "PostgreSQL"),
        (peer.web_port, "web services"),
    ] {
        let reach = pg::probe(peer.addr, port, pair.timeout);
        let (sev, code) = match &reach {
            Reach::Open => (Severity::Ok, Code::PortOpen),
            Reach::Refused => (Severity::Error, Code::PortRefused),
            Reach::Dropped => (Severity::Error, Code::PortDropped),
            Reach::Unreachable(_) => (Severity::Error, Code::PortUnreachable),
        };
        let fix = match &reach {
            Reach::Open => None,
            Reach::Refused => Some(format!(
                "start {what} on {} and check that it listens on {}:{port}",
                peer.name, peer.addr
            )),
            Reach::Dropped => Some(format!(
                "open TCP {port} from {} to {} (Windows Firewall on {} and any network firewall)",
                local.name, peer.name, peer.name
            )),
            Reach::Unreachable(_) => Some(format!(
                "check {}'s address in the cluster file and the route to it",
                peer.name
            )),
        };
        push_fix(
            &mut f,
            sev,
            code,
            &peer.name,
            format!(
                "{what} port {}:{port} from {}: {}",
                peer.addr,
                local.name,
                reach.describe()
            ),
            fix,
        );
    }
    if let Some(archive) = &local.archive {
        archive_check(&mut f, &local.name, archive);
    }
    CheckReport {
        from: vec![local.name.clone()],
        findings: f.v,
    }
}

struct Facts {
    version_num: i32,
    wal_level: String,
    max_wal_senders: i32,
    hot_standby: String,
    rewindable: bool,
    wal_keep_size: String,
    hba: String,
}

fn server_facts(conn: &Connector<'_>, node: &HaNode) -> crate::Result<Facts> {
    let mut c = conn.admin(node)?;
    let r = pg::query_one(
        &mut c,
        node,
        "SELECT current_setting('server_version_num')::int, current_setting('wal_level'), \
           current_setting('max_wal_senders')::int, current_setting('hot_standby'), \
           current_setting('wal_log_hints') = 'on' OR current_setting('data_checksums') = 'on', \
           current_setting('wal_keep_size'), pg_read_file(current_setting('hba_file'))",
        &[],
    )?;
    Ok(Facts {
        version_num: r.get(0),
        wal_level: r.get(1),
        max_wal_senders: r.get(2),
        hot_standby: r.get(3),
        rewindable: r.get(4),
        wal_keep_size: r.get(5),
        hba: r.get(6),
    })
}

fn judge_server(f: &mut Seen<'_>, conn: &Connector<'_>, node: &HaNode, facts: &Facts) {
    let pair = conn.pair;
    // Read as that server's version reads it (its @files are not read from here: "might").
    let server = hba::Server::version(u32::try_from(facts.version_num / 10_000).unwrap_or(15));
    let file = hba::parse_for(&facts.hba, &server, None);
    for peer in &pair.nodes {
        for c in [
            Connection::new(true, Some(pair.repuser.as_str()), peer.addr),
            Connection::new(false, None, peer.addr),
        ] {
            let ok = file.admits(&c);
            push_fix(
                f,
                if ok { Severity::Ok } else { Severity::Error },
                if ok {
                    Code::HbaAdmits
                } else {
                    Code::HbaRefuses
                },
                &node.name,
                if ok {
                    format!("pg_hba.conf lets in {c}")
                } else {
                    format!("pg_hba.conf does not surely let in {c}")
                },
                (!ok).then(|| {
                    format!(
                        "keyferry ha hba on {} puts the pair's lines where they win",
                        node.name
                    )
                }),
            );
        }
    }
    let bad_level = facts.wal_level == "minimal";
    push_fix(
        f,
        if bad_level {
            Severity::Error
        } else {
            Severity::Ok
        },
        Code::WalLevel,
        &node.name,
        format!(
            "wal_level = {}{}",
            facts.wal_level,
            if bad_level {
                ": streaming needs replica"
            } else {
                ""
            }
        ),
        bad_level.then(|| restart(node, "wal_level = replica")),
    );
    let few = facts.max_wal_senders < 2;
    push_fix(
        f,
        if few { Severity::Error } else { Severity::Ok },
        Code::WalSenders,
        &node.name,
        format!(
            "max_wal_senders = {}{}",
            facts.max_wal_senders,
            if few {
                ": a replica and its base backup need at least 2"
            } else {
                ""
            }
        ),
        few.then(|| restart(node, "max_wal_senders = 10")),
    );
    let hs = facts.hot_standby == "on";
    push_fix(
        f,
        if hs { Severity::Ok } else { Severity::Warning },
        Code::HotStandby,
        &node.name,
        format!(
            "hot_standby = {}{}",
            facts.hot_standby,
            if hs {
                ""
            } else {
                ": as a replica it would take no queries, and ha status could not read it"
            }
        ),
        (!hs).then(|| restart(node, "hot_standby = on")),
    );
    push_fix(
        f,
        if facts.rewindable {
            Severity::Ok
        } else {
            Severity::Warning
        },
        Code::Rewind,
        &node.name,
        if facts.rewindable {
            "wal_log_hints or data checksums on: a rejoin can rewind".into()
        } else {
            "neither wal_log_hints nor data checksums: a rejoin after failover copies the whole \
             database"
                .into()
        },
        (!facts.rewindable).then(|| restart(node, "wal_log_hints = on")),
    );
    keep_check(f, node, &facts.wal_keep_size);
}

/// `wal_keep_size`: after a crash, pg_rewind first finishes the crash recovery, whose
/// checkpoint recycles the WAL the rewind then needs (back to the last checkpoint before the
/// failover) unless this keeps it. Seen in tests/cli_ha.rs: with 0 the rewind failed with
/// "could not find previous WAL record".
fn keep_check(f: &mut Seen<'_>, node: &HaNode, keep: &str) {
    let digits: String = keep.chars().take_while(char::is_ascii_digit).collect();
    let zero = digits.parse::<u64>() == Ok(0);
    push_fix(
        f,
        if zero {
            Severity::Warning
        } else {
            Severity::Ok
        },
        Code::WalKeepSize,
        &node.name,
        if zero {
            "wal_keep_size = 0: a rewind after a crash of this node can find its WAL gone, \
             and rejoin then copies everything"
                .into()
        } else {
            format!("wal_keep_size = {keep}: WAL kept for a rewind after a crash")
        },
        zero.then(|| {
            format!(
                "set wal_keep_size on {} (ALTER SYSTEM SET wal_keep_size = '1GB'), then SELECT \
                 pg_reload_conf()",
                node.name
            )
        }),
    );
}

/// What to do to change a setting that needs a restart of `node`'s server.
fn restart(node: &HaNode, setting: &str) -> String {
    format!(
        "set {setting} on {} (ALTER SYSTEM SET, or its postgresql.conf), then restart its server",
        node.name
    )
}

fn archive_check(f: &mut Seen<'_>, node: &str, archive: &Path) {
    let (severity, message, fix) = match std::fs::read_dir(archive) {
        Ok(rd) => match rd.count() {
            0 => (Severity::Ok, format!("{}: empty", archive.display()), None),
            n => (
                Severity::Warning,
                format!(
                    "{} holds {n} {}; the vendor's procedure empties it before configuring HA",
                    archive.display(),
                    if n == 1 { "entry" } else { "entries" }
                ),
                Some(
                    "keyferry ha replica init --empty-archive moves the entries aside (a backup) \
                     first"
                        .into(),
                ),
            ),
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => (
            Severity::Ok,
            format!("{}: no such folder", archive.display()),
            None,
        ),
        Err(e) => (
            Severity::Warning,
            format!(
                "{}: cannot be read ({e}), so not checked",
                archive.display()
            ),
            None,
        ),
    };
    push_fix(f, severity, Code::ArchiveNotEmpty, node, message, fix);
}

/// The peer's own view of the pair, or why it is missing.
pub enum PeerView {
    /// Its findings, from its keyferry.
    Ran(Vec<Finding>),
    /// A `peer-not-checked` or `peer-check-failed` finding.
    Missing(Finding),
}

/// How to run keyferry on the peer.
pub struct PeerRun<'a> {
    /// The cluster file.
    pub file: &'a ClusterFile,
    /// The cluster file here: relative `access` paths, and the remote path by default.
    pub cluster_path: &'a Path,
    /// The ssh program and its configuration.
    pub ssh: SshClient,
    /// How long the peer's command may take.
    pub timeout: Duration,
}

/// Runs `keyferry <words>` on `node` through its `access`: `Ok(None)` when its access is
/// not ssh (nothing was run).
pub fn run_on(
    run: &PeerRun<'_>,
    node: &HaNode,
    words: &[&str],
) -> crate::error::Result<Option<crate::remote::process::Finished>> {
    let spec = run
        .file
        .nodes
        .iter()
        .find(|n| n.name.eq_ignore_ascii_case(&node.name))
        .ok_or_else(|| crate::error::Error::HaRefused {
            why: format!("no node {} in the cluster file", node.name),
            reason: crate::HaReason::NoSuchNode,
        })?;
    let base = run.cluster_path.parent().unwrap_or(Path::new("."));
    let target = match parse_access(spec.access.as_deref(), base)? {
        Access::Ssh { user, host, port } => SshTarget {
            user,
            host,
            port,
            launch: spec.launch(),
        },
        _ => return Ok(None),
    };
    let words = spec.remote_command(run.cluster_path, words);
    run.ssh
        .run(&target, &words, run.timeout, 1 << 20)
        .map(Some)
        .map_err(|e| crate::error::Error::HaFailed {
            why: format!("keyferry on {} through {}: {e}", node.name, target.url()),
            reason: crate::HaReason::PeerUnreachable,
        })
}

/// Runs `keyferry ha check --here-only --json` on `peer` through its `access` (ssh) and
/// returns its findings; any other access, or a failure, is said as a finding.
pub fn peer_view(run: &PeerRun<'_>, local: &HaNode, peer: &HaNode) -> PeerView {
    let missing = |severity, code, message: String| {
        let fix = if code == Code::PeerNotChecked {
            format!("run keyferry ha check on {} too", peer.name)
        } else {
            format!(
                "check {}'s access in the cluster file, its sshd and its keyferry \
                 (docs/cluster-file.md, \"Nodes reached over ssh\")",
                peer.name
            )
        };
        PeerView::Missing(Finding {
            code,
            severity,
            node: Some(peer.name.clone()),
            message,
            fix: Some(fix),
            more: SeenFrom {
                from: local.name.clone(),
            },
        })
    };
    let Some(spec) = run
        .file
        .nodes
        .iter()
        .find(|n| n.name.eq_ignore_ascii_case(&peer.name))
    else {
        return missing(
            Severity::Error,
            Code::PeerCheckFailed,
            format!("no node {} in the cluster file", peer.name),
        );
    };
    let base = run.cluster_path.parent().unwrap_or(Path::new("."));
    let target = match parse_access(spec.access.as_deref(), base) {
        Ok(Access::Ssh { user, host, port }) => SshTarget {
            user,
            host,
            port,
            launch: spec.launch(),
        },
        Ok(_) => {
            return missing(
                Severity::Warning,
                Code::PeerNotChecked,
                format!(
                    "not checked from {p}: {p}'s address, {l}'s ports from {p} and {p}'s Archive \
                     folder (its access is not ssh)",
                    p = peer.name,
                    l = local.name
                ),
            )
        }
        Err(e) => return missing(Severity::Error, Code::PeerCheckFailed, e.to_string()),
    };
    let words = spec.remote_command(run.cluster_path, &["ha", "check", "--here-only"]);
    let failed = |why: String| {
        missing(
            Severity::Error,
            Code::PeerCheckFailed,
            format!(
                "keyferry ha check --here-only on {} through {}: {why}",
                peer.name,
                target.url()
            ),
        )
    };
    let done = match run.ssh.run(&target, &words, run.timeout, 1 << 20) {
        Ok(d) => d,
        Err(e) => return failed(e.to_string()),
    };
    // 0: no error finding, 1: some; anything else is a failure of the run itself.
    if !matches!(done.code, Some(0 | 1)) {
        return failed(format!(
            "exit {}: {}",
            done.code
                .map(|c| c.to_string())
                .unwrap_or_else(|| "by a signal".into()),
            done.last_error_line()
        ));
    }
    #[derive(Deserialize)]
    struct Doc {
        kind: String,
        #[serde(flatten)]
        report: CheckReport,
    }
    let doc: Doc = match serde_json::from_slice(&done.stdout) {
        Ok(d) => d,
        Err(e) => return failed(format!("its report does not parse: {e}")),
    };
    let own = doc.report.from.len() == 1
        && doc.report.from[0].eq_ignore_ascii_case(&peer.name)
        && doc
            .report
            .findings
            .iter()
            .all(|f| f.more.from.eq_ignore_ascii_case(&peer.name));
    if doc.kind != "ha-check" || !own {
        return failed(format!(
            "its report is not {}'s own ha check (kind {}, from {:?})",
            peer.name, doc.kind, doc.report.from
        ));
    }
    PeerView::Ran(doc.report.findings)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_is_documented_once() {
        let docs = include_str!("../../docs/ha.md");
        let mut seen = std::collections::HashSet::new();
        for c in <Code as strum::VariantArray>::VARIANTS {
            let s = c.as_str();
            assert!(!s.is_empty());
            assert!(seen.insert(s), "duplicate {s}");
            assert!(
                docs.contains(&format!("| `{s}` |")),
                "{s} is not in docs/ha.md"
            );
        }
    }
}
