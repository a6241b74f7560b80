//! `keyferry diagnose`: turn an error message into its cause, the vendor's fix and the keyferry
//! commands that carry it out; with a cluster file, run the checks that bear on it.
//!
//! The catalogue is data: each entry has a stable code, the phrases that identify it
//! (case-insensitive; every phrase of one alternative must appear), and the checks to run.

use crate::audit::{AuditReport, NodeStatus};
use crate::cluster::ClusterFile;
use crate::profile::{ProfileId, Role};
use serde::Serialize;
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// A check diagnose can run against a cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Check {
    Keys,
    Dpapi,
    Binaries,
    Clocks,
    Ports,
    PgHba,
}

pub const ALL_CHECKS: &[Check] = &[
    Check::Keys,
    Check::Dpapi,
    Check::Binaries,
    Check::Clocks,
    Check::Ports,
    Check::PgHba,
];

/// One known error.
#[derive(Debug, Clone, Serialize)]
pub struct Known {
    pub code: &'static str,
    pub title: &'static str,
    #[serde(skip)]
    pub patterns: &'static [&'static [&'static str]],
    pub cause: &'static str,
    pub fix: &'static str,
    pub commands: &'static [&'static str],
    pub checks: &'static [Check],
}

/// The catalogue of errors admins meet in these clusters.
pub const CATALOGUE: &[Known] = &[
    Known {
        code: "encryption-key-mismatch",
        title: "Encryption key or configuration does not match",
        patterns: &[&["encryption key", "match"], &["encryption config", "match"]],
        cause: "this node's encryption.config (or imported key set) differs from the primary's",
        fix: "copy the primary's key set to this node; never overwrite a working node's key by accident",
        commands: &["keyferry audit -c cluster.toml", "keyferry keys export -c cluster.toml -o keys.kfb   (on the primary)", "keyferry keys import keys.kfb -c cluster.toml --replace   (on this node)"],
        checks: &[Check::Keys, Check::Dpapi],
    },
    Known {
        code: "version-mismatch",
        title: "Version does not match",
        patterns: &[&["version does not match"], &["version mismatch"], &["versions do not match"]],
        cause: "this node's application binaries are older or newer than the database (and the primary)",
        fix: "copy the primary's application folder to this node, minus database.config and encryption.config (and per-node web.config changes)",
        commands: &["keyferry audit -c cluster.toml   (names the nodes and files whose binaries differ)"],
        checks: &[Check::Binaries],
    },
    Known {
        code: "server-dates-mismatch",
        title: "Server dates don't match",
        patterns: &[&["server dates", "match"], &["date", "do not match"], &["clock skew"]],
        cause: "the nodes' clocks differ (older Secret Server versions refuse to cluster then)",
        fix: "synchronise every node with the same time source (w32tm /resync on Windows, NTP or chrony elsewhere)",
        commands: &["keyferry audit -c cluster.toml   (clock column, ssh-collected nodes)"],
        checks: &[Check::Clocks],
    },
    Known {
        code: "dpapi-foreign-blob",
        title: "DPAPI blob from another machine",
        patterns: &[&["key not valid for use in specified state"], &["the data is invalid"]],
        cause: "a key protected with DPAPI on one machine was copied to another, which cannot decrypt it",
        fix: "on the source, turn DPAPI off (Secret Server: Admin > Configuration > Security > Decrypt Key to not use DPAPI), copy, then turn it on again on each node",
        commands: &["keyferry dpapi inspect encryption.config", "keyferry keys export ...   (on the source, on Windows: decrypts in memory)", "keyferry keys import ... --protect dpapi"],
        checks: &[Check::Dpapi, Check::Keys],
    },
    Known {
        code: "pg-hba-missing-replication",
        title: "no pg_hba.conf entry for replication connection",
        patterns: &[&["no pg_hba.conf entry for replication connection"]],
        cause: "the primary's pg_hba.conf has no line allowing the peer to connect for replication",
        fix: "add on each side, above broader rules: host replication repuser <peer>/32 md5 and host all all <peer>/32 md5; reload PostgreSQL",
        commands: &["keyferry diagnose --check pg-hba -c cluster.toml"],
        checks: &[Check::PgHba, Check::Ports],
    },
    Known {
        code: "pg-hba-secondary-not-found",
        title: "%Secondary_IP% not found in pg_hba.conf",
        patterns: &[&["not found in pg_hba.conf"]],
        cause: "the HA tool did not find the secondary's address in the primary's pg_hba.conf",
        fix: "add host replication repuser <secondary>/32 md5 and host all all <secondary>/32 md5 to the primary's pg_hba.conf, then rerun the HA configuration",
        commands: &["keyferry diagnose --check pg-hba -c cluster.toml"],
        checks: &[Check::PgHba],
    },
    Known {
        code: "firewall-port-closed",
        title: "Firewall Port Not Open",
        patterns: &[&["firewall port not open"], &["port", "not open"]],
        cause: "a port the nodes need is blocked: 5432 (PostgreSQL) and 6500 (web services) between the HA pair; 6500, 6520, 6523, 6524 to remote services",
        fix: "open the ports in Windows Firewall (and any network firewall) between the nodes",
        commands: &["keyferry diagnose --check ports -c cluster.toml"],
        checks: &[Check::Ports],
    },
    Known {
        code: "ha-tool-needs-ip",
        title: "HA tool refuses a host name or 127.0.0.1 as Primary IP",
        patterns: &[&["primary ip"], &["ip address", "invalid"], &["127.0.0.1"]],
        cause: "the Privilege Secure HA tool accepts only real IP addresses: no FQDN, no loopback",
        fix: "enter the primary's real IPv4 address (the cluster file's `address`, which keyferry also requires to be an IP)",
        commands: &["keyferry audit -c cluster.toml"],
        checks: &[Check::Ports],
    },
    Known {
        code: "rest-url-without-port",
        title: "Index was outside the bounds of the array.",
        patterns: &[&["index was outside the bounds of the array"]],
        cause: "a REST/web-services URL was entered without its port (e.g. https://host instead of https://host:6500)",
        fix: "enter the URL with the port, e.g. https://<ip>:6500",
        commands: &["keyferry diagnose --check ports -c cluster.toml"],
        checks: &[Check::Ports],
    },
    Known {
        code: "aspnet-key-ring",
        title: "ASP.NET key ring: key not found / antiforgery token not decrypted",
        patterns: &[&["was not found in the key ring"], &["antiforgery token could not be decrypted"]],
        cause: "the nodes do not share the same ASP.NET Core data-protection key ring (or its keys are DPAPI-protected per machine)",
        fix: "give every node the same key-ring folder contents, protected so that every node can read them",
        commands: &["keyferry dpapi inspect <key-ring XML file>"],
        checks: &[Check::Dpapi],
    },
];

/// The catalogue entries that match a message.
pub fn match_message(message: &str) -> Vec<&'static Known> {
    let m = message.to_lowercase();
    CATALOGUE
        .iter()
        .filter(|k| {
            k.patterns
                .iter()
                .any(|alt| alt.iter().all(|p| m.contains(p)))
        })
        .collect()
}

/// Severity of a finding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Severity {
    Info,
    Warning,
    Error,
}

/// One result of a check.
#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    pub code: String,
    pub severity: Severity,
    pub node: Option<String>,
    pub evidence: String,
    pub fix: String,
}

/// Findings from the audit's collected reports.
pub fn findings_from_audit(audit: &AuditReport, checks: &[Check]) -> Vec<Finding> {
    let mut out = Vec::new();
    for n in &audit.nodes {
        let f = |code: &str, severity, evidence: String, fix: &str| Finding {
            code: code.into(),
            severity,
            node: Some(n.node.clone()),
            evidence,
            fix: fix.into(),
        };
        let reason = n.reason.clone().unwrap_or_default();
        if checks.contains(&Check::Keys) {
            match n.status {
                NodeStatus::Differs => out.push(f(
                    "keys-differ",
                    Severity::Error,
                    reason.clone(),
                    "keyferry keys import BUNDLE --replace on this node",
                )),
                NodeStatus::Missing | NodeStatus::Partial => out.push(f(
                    "keys-missing",
                    Severity::Error,
                    reason.clone(),
                    "keyferry keys import BUNDLE on this node",
                )),
                NodeStatus::Unreachable | NodeStatus::Rejected => out.push(f(
                    "node-unreachable",
                    Severity::Error,
                    reason.clone(),
                    "check the node's access in the cluster file",
                )),
                NodeStatus::NoReference => out.push(f(
                    "no-reference",
                    Severity::Error,
                    reason.clone(),
                    "make the primary's report readable",
                )),
                _ => {}
            }
        }
        if checks.contains(&Check::Dpapi) && n.status == NodeStatus::DpapiSuspected {
            out.push(f(
                "dpapi-suspected",
                Severity::Error,
                reason.clone(),
                "decrypt the key on its own node (Decrypt Key to not use DPAPI), export, import",
            ));
        }
        if checks.contains(&Check::Binaries) && n.binaries == crate::audit::Binaries::Differs {
            let paths = if n.differing_paths.is_empty() {
                String::new()
            } else {
                format!(": {}", n.differing_paths.join(", "))
            };
            out.push(f(
                "binaries-differ",
                Severity::Error,
                format!("application folder differs from {}{paths}", audit.reference),
                "copy the primary's application folder minus database.config and encryption.config",
            ));
        }
        if checks.contains(&Check::Clocks) && n.clock_flagged {
            out.push(f(
                "clock-skew",
                Severity::Error,
                format!("clock differs by {}s", n.clock_skew_seconds.unwrap_or(0)),
                "synchronise the node's clock",
            ));
        }
    }
    out
}

/// Ports a role needs to reach on the primary, per product: Privilege Secure's HA pair uses
/// 5432 and 6500, its remote services 6500, 6520, 6523 and 6524. Other profiles have no
/// documented defaults: pass `--ports`.
pub fn needed_ports(profile: ProfileId, role: Role) -> &'static [u16] {
    match (profile, role) {
        (ProfileId::PrivilegeSecure, Role::Secondary) => &[5432, 6500],
        (ProfileId::PrivilegeSecure, Role::Action | Role::Scheduler | Role::Proxy) => {
            &[6500, 6520, 6523, 6524]
        }
        _ => &[],
    }
}

/// TCP reachability from this machine to the primary on each port a role needs (or the
/// configured list). Only addresses from the cluster file are contacted, once each.
pub fn check_ports(file: &ClusterFile, ports: Option<&[u16]>, timeout: Duration) -> Vec<Finding> {
    let Some(primary) = file.nodes.iter().find(|n| n.role == Role::Primary) else {
        return Vec::new();
    };
    let mut wanted: Vec<u16> = match ports {
        Some(p) => p.to_vec(),
        None => file
            .nodes
            .iter()
            .flat_map(|n| needed_ports(file.profile, n.role).iter().copied())
            .collect(),
    };
    wanted.sort();
    wanted.dedup();
    wanted
        .into_iter()
        .filter_map(|port| {
            let addr = SocketAddr::new(primary.address, port);
            match TcpStream::connect_timeout(&addr, timeout) {
                Ok(_) => None,
                Err(e) => Some(Finding {
                    code: "port-closed".into(),
                    severity: Severity::Error,
                    node: Some(primary.name.clone()),
                    evidence: format!("{addr}: {e} (from this machine)"),
                    fix: format!(
                        "open TCP {port} on {} (Windows Firewall and any network firewall)",
                        primary.name
                    ),
                }),
            }
        })
        .collect()
}

/// Whether a pg_hba.conf text has the two lines a peer needs (exact /32 or equivalent mask).
pub fn check_pg_hba(text: &str, peer: std::net::IpAddr, user: &str) -> Vec<String> {
    let mut have_replication = false;
    let mut have_all = false;
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or("").trim();
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 4 || f[0] != "host" && f[0] != "hostssl" {
            continue;
        }
        let (db, usr) = (f[1], f[2]);
        let addr_ok = match (f[3].split_once('/'), f.get(4)) {
            (Some((ip, bits)), _) => ip.parse() == Ok(peer) && (bits == "32" || bits == "128"),
            (None, Some(mask)) => f[3].parse() == Ok(peer) && (*mask == "255.255.255.255"),
            _ => false,
        } || f[3] == "all"
            || f[3] == "0.0.0.0/0";
        if !addr_ok {
            continue;
        }
        let user_ok = usr == "all" || usr == user;
        if db == "replication" && user_ok {
            have_replication = true;
        }
        if db == "all" && usr == "all" {
            have_all = true;
        }
    }
    let mut missing = Vec::new();
    if !have_replication {
        missing.push(format!("host replication {user} {peer}/32 md5"));
    }
    if !have_all {
        missing.push(format!("host all all {peer}/32 md5"));
    }
    missing
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalogue_codes_are_unique_and_every_entry_matches_its_title() {
        let mut codes: Vec<_> = CATALOGUE.iter().map(|k| k.code).collect();
        codes.sort();
        codes.dedup();
        assert_eq!(codes.len(), CATALOGUE.len());
        for k in CATALOGUE {
            assert!(!k.checks.is_empty() && !k.commands.is_empty(), "{}", k.code);
        }
    }

    #[test]
    fn real_messages_match() {
        let cases = [
            ("Encryption key doesn't match", "encryption-key-mismatch"),
            ("Encryption Configurations do not match between nodes", "encryption-key-mismatch"),
            ("Version does not match", "version-mismatch"),
            ("Server dates don't match", "server-dates-mismatch"),
            ("Key not valid for use in specified state.", "dpapi-foreign-blob"),
            ("System.Security.Cryptography.CryptographicException: The data is invalid.", "dpapi-foreign-blob"),
            ("FATAL:  no pg_hba.conf entry for replication connection from host \"10.0.0.2\", user \"repuser\", no encryption", "pg-hba-missing-replication"),
            ("10.0.0.2 not found in pg_hba.conf", "pg-hba-secondary-not-found"),
            ("Firewall Port Not Open", "firewall-port-closed"),
            ("Index was outside the bounds of the array.", "rest-url-without-port"),
            ("The key {0b3c8f62-0b5c-4a5d-9b2e-5b8b0f4f1e1a} was not found in the key ring.", "aspnet-key-ring"),
            ("The antiforgery token could not be decrypted.", "aspnet-key-ring"),
        ];
        for (msg, code) in cases {
            let m = match_message(msg);
            assert!(
                m.iter().any(|k| k.code == code),
                "{msg:?} -> {:?}",
                m.iter().map(|k| k.code).collect::<Vec<_>>()
            );
        }
        assert!(match_message("The printer is on fire").is_empty());
    }

    #[test]
    fn default_ports_are_privilege_secure_only() {
        assert_eq!(
            needed_ports(ProfileId::PrivilegeSecure, Role::Secondary),
            [5432, 6500]
        );
        assert_eq!(
            needed_ports(ProfileId::PrivilegeSecure, Role::Action),
            [6500, 6520, 6523, 6524]
        );
        assert!(needed_ports(ProfileId::SecretServer, Role::Secondary).is_empty());
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
    }
}
