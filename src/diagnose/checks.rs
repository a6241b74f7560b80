//! The checks `diagnose` runs against a cluster: findings from the audit's reports (keys,
//! DPAPI, binaries, clocks), TCP reachability of the ports each role needs (from the profile),
//! and the `pg_hba.conf` lines each HA peer needs.

use crate::audit::{AuditReport, NodeStatus};
use crate::cluster::ClusterFile;
use crate::codes::FindingCode;
use crate::diagnose::catalogue::Check;
use crate::profile::Role;
use serde::Serialize;
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

pub use crate::finding::Severity;

/// `diagnose`'s own fields beside the shared ones: for `pg_hba.conf` findings, the lines
/// PostgreSQL refuses and how each connection the peer needs is decided.
#[derive(Debug, Clone, Default, Serialize)]
pub struct HbaDetail {
    /// The lines PostgreSQL refuses, as fields.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub pg_hba_lines: Vec<crate::ha::hba::LineVerdict>,
    /// How each connection the peer needs is decided, as fields.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub pg_hba_decisions: Vec<HbaDecision>,
}

/// One result of a check: the shared model, with the `pg_hba.conf` detail.
pub type Finding = crate::finding::Finding<FindingCode, HbaDetail>;

/// One connection and how a `pg_hba.conf` decides it.
#[derive(Debug, Clone, Serialize)]
pub struct HbaDecision {
    pub connection: String,
    pub decided: crate::ha::hba::Decided,
}

/// Findings from the audit's collected reports.
pub fn findings_from_audit(
    audit: &AuditReport,
    checks: &[Check],
    cluster: &std::path::Path,
) -> Vec<Finding> {
    let cl = crate::diagnose::explain::shell_word(&cluster.display().to_string());
    let mut out = Vec::new();
    for n in &audit.nodes {
        let f = |code: FindingCode, severity, evidence: String, fix: String| Finding {
            code,
            severity,
            node: Some(n.node.clone()),
            message: evidence,
            fix: Some(fix),
            more: HbaDetail::default(),
        };
        let (node, reference) = (&n.node, &audit.reference);
        let reason = n.reason.clone().unwrap_or_default();
        if checks.contains(&Check::Keys) {
            match n.status {
                NodeStatus::Differs => out.push(f(
                    FindingCode::KeysDiffer,
                    Severity::Error,
                    reason.clone(),
                    format!(
                        "on {node}: keyferry keys import BUNDLE -c {cl} --node {node} --replace, with a bundle exported on {reference}"
                    ),
                )),
                NodeStatus::Missing | NodeStatus::Partial => out.push(f(
                    FindingCode::KeysMissing,
                    Severity::Error,
                    reason.clone(),
                    format!(
                        "on {node}: keyferry keys import BUNDLE -c {cl} --node {node}, with a bundle exported on {reference}"
                    ),
                )),
                NodeStatus::Unreachable | NodeStatus::Rejected => out.push(f(
                    FindingCode::NodeUnreachable,
                    Severity::Error,
                    reason.clone(),
                    format!("check {node}'s access in the cluster file, and that {node} answers"),
                )),
                NodeStatus::NoReference => out.push(f(
                    FindingCode::NoReference,
                    Severity::Error,
                    reason.clone(),
                    format!("make {reference}'s report readable (its access in the cluster file)"),
                )),
                _ => {}
            }
        }
        if checks.contains(&Check::Dpapi) && n.status == NodeStatus::DpapiSuspected {
            out.push(f(
                FindingCode::DpapiSuspected,
                Severity::Error,
                reason.clone(),
                format!(
                    "decrypt the key on the node that protected it (Secret Server: Decrypt Key to not use DPAPI), then export on {reference} and import on {node}"
                ),
            ));
        }
        if checks.contains(&Check::Binaries) && n.binaries == crate::audit::Binaries::Differs {
            let paths = if n.differing_paths.is_empty() {
                String::new()
            } else {
                format!(": {}", n.differing_paths.join(", "))
            };
            out.push(f(
                FindingCode::BinariesDiffer,
                Severity::Error,
                format!("application folder differs from {}{paths}", audit.reference),
                format!(
                    "copy {reference}'s application folder to {node}, minus database.config and encryption.config"
                ),
            ));
        }
        // A node that was not reached was not checked: never "nothing wrong" (the keys
        // check says it above; the clock and binaries checks say it here when they ran alone).
        let unreached = matches!(n.status, NodeStatus::Unreachable | NodeStatus::Rejected);
        if unreached
            && !checks.contains(&Check::Keys)
            && (checks.contains(&Check::Clocks) || checks.contains(&Check::Binaries))
        {
            out.push(f(
                FindingCode::NodeUnreachable,
                Severity::Error,
                format!("not reached, so its clock and binaries were not checked: {reason}"),
                format!("check {node}'s access in the cluster file, and that {node} answers"),
            ));
        }
        if checks.contains(&Check::Clocks) && n.clock_flagged {
            out.push(f(
                FindingCode::ClockSkew,
                Severity::Error,
                format!("clock differs by {}s", n.clock_skew_seconds.unwrap_or(0)),
                format!("synchronise {node}'s clock (w32tm /resync on Windows; NTP or chrony elsewhere)"),
            ));
        }
    }
    out
}

/// TCP reachability from this machine to the primary on each port a role needs (or the
/// configured list). Only addresses from the cluster file are contacted, once each.
pub fn check_ports(file: &ClusterFile, ports: Option<&[u16]>, timeout: Duration) -> Vec<Finding> {
    let Ok(profile) = file.profile_table() else {
        return Vec::new();
    };
    let Some(primary) = file.nodes.iter().find(|n| n.role == Role::Primary) else {
        return Vec::new();
    };
    let mut wanted: Vec<u16> = match ports {
        Some(p) => p.to_vec(),
        None => file
            .nodes
            .iter()
            .flat_map(|n| profile.ports_needed(n.role).iter().copied())
            .collect(),
    };
    wanted.sort();
    wanted.dedup();
    if wanted.is_empty() {
        // A check with nothing to test says so, and what would give it something.
        return vec![Finding {
            code: FindingCode::NothingChecked,
            severity: Severity::Info,
            node: None,
            message: format!(
                "ports: profile {} lists no ports for the roles in this cluster, and --ports was not given: nothing was tested",
                profile.id
            ),
            fix: Some("pass --ports with the TCP ports the nodes must reach on the primary, e.g. --ports 443,80".into()),
            more: HbaDetail::default(),
        }];
    }
    wanted
        .into_iter()
        .filter_map(|port| {
            let addr = SocketAddr::new(primary.address, port);
            TcpStream::connect_timeout(&addr, timeout)
                .err()
                .map(|e| port_finding(&primary.name, addr, &e, timeout))
        })
        .collect()
}

/// What a failed connection means: refused is nothing listening (the service is stopped or on
/// another port); a timeout is a firewall dropping it. The fix differs.
fn port_finding(node: &str, addr: SocketAddr, e: &std::io::Error, timeout: Duration) -> Finding {
    let port = addr.port();
    let (evidence, fix) = match e.kind() {
        std::io::ErrorKind::ConnectionRefused => (
            format!("{addr}: connection refused: nothing listens there (from this machine)"),
            format!("start the service on {node} that should listen on TCP {port}, or check which port it uses"),
        ),
        std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock => (
            format!(
                "{addr}: no answer within {}s: a firewall drops the connection (from this machine)",
                timeout.as_secs().max(1)
            ),
            format!("open TCP {port} to {node} (Windows Firewall and any network firewall)"),
        ),
        _ => (
            format!("{addr}: {e} (from this machine)"),
            format!("check the network path to {node} and TCP {port} there"),
        ),
    };
    Finding {
        code: FindingCode::PortClosed,
        severity: Severity::Error,
        node: Some(node.to_owned()),
        message: evidence,
        fix: Some(fix),
        more: HbaDetail::default(),
    }
}

/// The lines a peer needs that a pg_hba.conf text does not let in: replication as `user`, and
/// any database as any user, from `peer`. Decided as PostgreSQL does (`ha::hba`: the first
/// rule that matches decides, a `reject` above counts, a wider CIDR counts), the same
/// simulation `keyferry ha check` and `ha hba` use.
pub fn check_pg_hba(text: &str, peer: std::net::IpAddr, user: &str) -> Vec<String> {
    peer_lines(&crate::ha::hba::parse(text), peer, user).0
}

/// The lines `peer` needs in `file`, and how each of its connections is decided now.
fn peer_lines(
    file: &crate::ha::hba::HbaFile,
    peer: std::net::IpAddr,
    user: &str,
) -> (Vec<String>, Vec<HbaDecision>) {
    use crate::ha::hba::{one_host, Connection, Decided};
    let mut missing = Vec::new();
    let mut decisions = Vec::new();
    for (c, line) in [
        (
            Connection::new(true, Some(user), peer),
            format!("host replication {user} {} md5", one_host(peer)),
        ),
        (
            Connection::new(false, None, peer),
            format!("host all all {} md5", one_host(peer)),
        ),
    ] {
        if !file.admits(&c) {
            missing.push(line);
        }
        let x = file.explain(&c);
        decisions.push(HbaDecision {
            connection: c.to_string(),
            decided: Decided {
                line: x.decided_by,
                method: x.method,
                might: x.might_be_decided_by,
            },
        });
    }
    (missing, decisions)
}

/// The `pg_hba.conf` lines each HA peer needs, for every node of the pair whose file is
/// readable from here (its `pg_hba` in the cluster file). A file PostgreSQL refuses is said
/// so, with its lines, and never said to let anyone in.
pub fn pg_hba_findings(file: &ClusterFile, user: &str) -> Vec<Finding> {
    use crate::ha::hba::{self, LineOutcome, LineVerdict};
    let pair: Vec<_> = file
        .nodes
        .iter()
        .filter(|n| matches!(n.role, Role::Primary | Role::Secondary))
        .collect();
    let mut out = Vec::new();
    let finding = |code, severity, node: &str, evidence: String, fix: String| Finding {
        code,
        severity,
        node: Some(node.to_owned()),
        message: evidence,
        fix: Some(fix),
        more: HbaDetail::default(),
    };
    for n in &pair {
        let Some(path) = &n.pg_hba else { continue };
        let bytes = match crate::fs::read_bounded(path, 1024 * 1024, "pg_hba.conf") {
            Ok(b) => b,
            Err(e) => {
                out.push(finding(
                    FindingCode::PgHbaUnreadable,
                    Severity::Warning,
                    &n.name,
                    format!("{}: {e}", path.display()),
                    "make the file readable from here, or check it on the node".into(),
                ));
                continue;
            }
        };
        let (text, _) = hba::decode(&bytes);
        let dir = path.parent().unwrap_or(std::path::Path::new("."));
        let files = hba::files_beside(dir);
        let parsed = hba::parse_for(&text, &hba::Server::here(), Some(&files));
        let refused: Vec<LineVerdict> = parsed
            .entries
            .iter()
            .filter_map(|e| match &e.kind {
                hba::EntryKind::Invalid(why) => Some(LineVerdict {
                    line: e.first + 1,
                    last_line: e.last + 1,
                    text: parsed.entry_text(e),
                    outcome: LineOutcome::Refused,
                    method: None,
                    why: vec![why.clone()],
                }),
                _ => None,
            })
            .collect();
        if !refused.is_empty() {
            let mut f = finding(
                FindingCode::PgHbaRefused,
                Severity::Error,
                &n.name,
                format!(
                    "PostgreSQL refuses {} ({}): a running server keeps its old rules, and one \
                     that starts with this file fails",
                    path.display(),
                    refused
                        .iter()
                        .map(|l| format!("line {}: {}", l.line, l.why.join("; ")))
                        .collect::<Vec<_>>()
                        .join("; ")
                ),
                format!(
                    "fix those lines first (keyferry ha explain --file {} --from ADDRESS shows \
                     how each line reads), then check again",
                    crate::diagnose::explain::shell_word(&path.display().to_string())
                ),
            );
            f.more.pg_hba_lines = refused;
            out.push(f);
            continue;
        }
        for peer in pair.iter().filter(|p| p.name != n.name) {
            let (missing, decisions) = peer_lines(&parsed, peer.address, user);
            if !missing.is_empty() {
                let mut f = finding(
                    FindingCode::PgHbaMissingPeer,
                    Severity::Error,
                    &n.name,
                    format!(
                        "{} has no line for peer {} ({})",
                        path.display(),
                        peer.name,
                        peer.address
                    ),
                    format!(
                        "add above broader rules, then reload PostgreSQL: {}",
                        missing.join("; ")
                    ),
                );
                f.more.pg_hba_decisions = decisions;
                out.push(f);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::{Profile, ProfileId, Role};

    #[test]
    fn default_ports_come_from_the_profiles() {
        let ps = Profile::builtin(ProfileId::PrivilegeSecure).unwrap();
        assert_eq!(ps.ports_needed(Role::Secondary), [5432, 6500]);
        assert_eq!(ps.ports_needed(Role::Action), [6500, 6520, 6523, 6524]);
        let ss = Profile::builtin(ProfileId::SecretServer).unwrap();
        assert_eq!(ss.ports_needed(Role::Secondary), [443, 80]);
        assert!(ss.ports_needed(Role::Proxy).is_empty());
    }

    #[test]
    fn refused_and_timed_out_get_different_fixes() {
        let addr: SocketAddr = "10.0.0.11:443".parse().unwrap();
        let t = Duration::from_secs(5);
        let refused = port_finding(
            "web1",
            addr,
            &std::io::Error::from(std::io::ErrorKind::ConnectionRefused),
            t,
        );
        assert!(
            refused.message.contains("nothing listens"),
            "{}",
            refused.message
        );
        assert!(
            refused
                .fix
                .as_deref()
                .unwrap()
                .contains("start the service on web1"),
            "{}",
            refused.fix.as_deref().unwrap_or_default()
        );
        let dropped = port_finding(
            "web1",
            addr,
            &std::io::Error::from(std::io::ErrorKind::TimedOut),
            t,
        );
        assert!(dropped.message.contains("firewall"), "{}", dropped.message);
        assert!(
            dropped
                .fix
                .as_deref()
                .unwrap()
                .contains("open TCP 443 to web1"),
            "{}",
            dropped.fix.as_deref().unwrap_or_default()
        );
    }

    #[test]
    fn pg_hba_lines_compared_semantically() {
        let peer: std::net::IpAddr = "10.0.0.5".parse().unwrap();
        let full = "host replication repuser 10.0.0.5/32 md5\r\nhost all all 10.0.0.5 255.255.255.255 md5\r\n";
        assert!(check_pg_hba(full, peer, "repuser").is_empty());
        let partial = "# comment\nhost all all 10.0.0.5/32 md5\nhost all all 10.0.0.6/32 md5\n";
        assert_eq!(
            check_pg_hba(partial, peer, "repuser"),
            ["host replication repuser 10.0.0.5/32 md5"]
        );
        assert_eq!(check_pg_hba("", peer, "repuser").len(), 2);
        // An IPv6 peer's lines name that one host (/128; /32 would admit a whole network),
        // and the lines given are the ones that let it in.
        let v6: std::net::IpAddr = "fd00::5".parse().unwrap();
        let fix = check_pg_hba("", v6, "repuser");
        assert_eq!(
            fix,
            [
                "host replication repuser fd00::5/128 md5",
                "host all all fd00::5/128 md5"
            ]
        );
        assert!(check_pg_hba(&fix.join("\n"), v6, "repuser").is_empty());
        let neighbour: std::net::IpAddr = "fd00::6".parse().unwrap();
        assert_eq!(check_pg_hba(&fix.join("\n"), neighbour, "repuser").len(), 2);
        // As PostgreSQL decides: a reject above the line wins (and "all" does not catch a
        // replication connection), a wider network counts.
        let rejected = "host all all 0.0.0.0/0 reject\nhost replication repuser 10.0.0.5/32 md5\nhost all all 10.0.0.5/32 md5\n";
        assert_eq!(
            check_pg_hba(rejected, peer, "repuser"),
            ["host all all 10.0.0.5/32 md5"]
        );
        let wide = "host replication all 10.0.0.0/24 scram-sha-256\nhost all all 10.0.0.0/8 md5\n";
        assert!(check_pg_hba(wide, peer, "repuser").is_empty());
        let all_only = "host all all 10.0.0.5/32 md5\n";
        assert_eq!(
            check_pg_hba(all_only, peer, "repuser"),
            ["host replication repuser 10.0.0.5/32 md5"]
        );
    }
}
