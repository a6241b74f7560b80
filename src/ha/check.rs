//! `ha check`: what the pair needs before HA can work, from this node. Each finding has a
//! stable code (docs/ha.md) and a severity; an error finding makes the check fail.

use super::config::HaNode;
use super::hba::{self, Connection};
use super::pg::{self, Connector, Reach};
use serde::Serialize;
use std::path::Path;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Severity {
    Ok,
    Warning,
    Error,
}

/// The stable codes of `ha check`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Code {
    AddressNotLocal,
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
    RewindUnsupported,
    WalKeepSize,
    ArchiveNotEmpty,
    VersionMismatch,
}

impl Code {
    pub const ALL: &'static [Code] = &[
        Code::AddressNotLocal,
        Code::PortOpen,
        Code::PortRefused,
        Code::PortDropped,
        Code::PortUnreachable,
        Code::PgUnavailable,
        Code::HbaAdmits,
        Code::HbaRefuses,
        Code::WalLevel,
        Code::WalSenders,
        Code::HotStandby,
        Code::RewindUnsupported,
        Code::WalKeepSize,
        Code::ArchiveNotEmpty,
        Code::VersionMismatch,
    ];

    pub fn as_str(self) -> String {
        serde_json::to_value(self)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default()
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    pub severity: Severity,
    pub code: Code,
    pub node: String,
    pub message: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct CheckReport {
    pub from: String,
    pub findings: Vec<Finding>,
}

impl CheckReport {
    pub fn errors(&self) -> usize {
        self.findings
            .iter()
            .filter(|f| f.severity == Severity::Error)
            .count()
    }
}

fn push(v: &mut Vec<Finding>, severity: Severity, code: Code, node: &str, message: String) {
    v.push(Finding {
        severity,
        code,
        node: node.to_owned(),
        message,
    });
}

/// Runs every check from `local`.
pub fn check(conn: &Connector<'_>, local: &HaNode) -> CheckReport {
    let pair = conn.pair;
    let peer = pair.peer_of(local);
    let mut f = Vec::new();
    if !pg::is_local_address(local.addr) {
        push(
            &mut f,
            Severity::Error,
            Code::AddressNotLocal,
            &local.name,
            format!(
                "{} is not an address of this machine: either this is not {} (see --node) or the \
                 cluster file has the wrong address",
                local.addr, local.name
            ),
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
        push(
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
        );
    }
    let mut versions = Vec::new();
    for node in &pair.nodes {
        match server_facts(conn, node) {
            Ok(facts) => {
                versions.push((node.name.clone(), facts.version_num / 10000));
                judge_server(&mut f, conn, node, &facts);
            }
            Err(e) => push(
                &mut f,
                Severity::Error,
                Code::PgUnavailable,
                &node.name,
                format!("cannot query PostgreSQL: {e}"),
            ),
        }
    }
    if let [(a, va), (b, vb)] = versions.as_slice() {
        if va != vb {
            push(
                &mut f,
                Severity::Error,
                Code::VersionMismatch,
                b,
                format!("PostgreSQL {va} on {a} but {vb} on {b}: streaming needs the same major version"),
            );
        }
    }
    if let Some(archive) = &local.archive {
        archive_check(&mut f, &local.name, archive);
    }
    CheckReport {
        from: local.name.clone(),
        findings: f,
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

fn judge_server(f: &mut Vec<Finding>, conn: &Connector<'_>, node: &HaNode, facts: &Facts) {
    let pair = conn.pair;
    let file = hba::parse(&facts.hba);
    for peer in &pair.nodes {
        for c in [
            Connection {
                replication: true,
                user: Some(pair.repuser.clone()),
                addr: peer.addr,
            },
            Connection {
                replication: false,
                user: None,
                addr: peer.addr,
            },
        ] {
            let ok = file.admits(&c);
            push(
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
                    format!(
                        "pg_hba.conf does not surely let in {c}: keyferry ha hba on {} puts the \
                         pair's lines where they win",
                        node.name
                    )
                },
            );
        }
    }
    let bad_level = facts.wal_level == "minimal";
    push(
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
    );
    let few = facts.max_wal_senders < 2;
    push(
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
    );
    let hs = facts.hot_standby == "on";
    push(
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
    );
    push(
        f,
        if facts.rewindable {
            Severity::Ok
        } else {
            Severity::Warning
        },
        Code::RewindUnsupported,
        &node.name,
        if facts.rewindable {
            "wal_log_hints or data checksums on: a rejoin can rewind".into()
        } else {
            "neither wal_log_hints nor data checksums: a rejoin after failover copies the whole \
             database (set wal_log_hints = on and restart to allow pg_rewind)"
                .into()
        },
    );
    keep_check(f, node, &facts.wal_keep_size);
}

/// `wal_keep_size`: after a crash, pg_rewind first finishes the crash recovery, whose
/// checkpoint recycles the WAL the rewind then needs (back to the last checkpoint before the
/// failover) unless this keeps it. Seen in tests/cli_ha.rs: with 0 the rewind failed with
/// "could not find previous WAL record".
fn keep_check(f: &mut Vec<Finding>, node: &HaNode, keep: &str) {
    let digits: String = keep.chars().take_while(char::is_ascii_digit).collect();
    let zero = digits.parse::<u64>() == Ok(0);
    push(
        f,
        if zero {
            Severity::Warning
        } else {
            Severity::Ok
        },
        Code::WalKeepSize,
        &node.name,
        if zero {
            "wal_keep_size = 0: after a crash of this node a rewind usually finds its WAL gone \
             and ha rejoin copies the whole database (set wal_keep_size, e.g. '1GB')"
                .into()
        } else {
            format!("wal_keep_size = {keep}: WAL kept for a rewind after a crash")
        },
    );
}

fn archive_check(f: &mut Vec<Finding>, node: &str, archive: &Path) {
    let n = match std::fs::read_dir(archive) {
        Ok(rd) => rd.count(),
        Err(_) => 0,
    };
    push(
        f,
        if n == 0 {
            Severity::Ok
        } else {
            Severity::Warning
        },
        Code::ArchiveNotEmpty,
        node,
        if n == 0 {
            format!("{}: empty (or missing)", archive.display())
        } else {
            format!(
                "{} holds {n} entries; the vendor's procedure empties it before configuring HA",
                archive.display()
            )
        },
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_is_documented_once() {
        let docs = include_str!("../../docs/ha.md");
        let mut seen = std::collections::HashSet::new();
        for c in Code::ALL {
            let s = c.as_str();
            assert!(!s.is_empty());
            assert!(seen.insert(s.clone()), "duplicate {s}");
            assert!(
                docs.contains(&format!("| `{s}` |")),
                "{s} is not in docs/ha.md"
            );
        }
    }
}
