//! The cluster file's `[ha]` section and each node's `ha` table, resolved into the pair
//! `keyferry ha` works on. No password lives here: the section names a password file in
//! PostgreSQL's own format ([`super::pgpass`]).

use crate::cluster::{ClusterFile, NodeSpec};
use crate::error::{Error, Result};
use crate::profile::Role;
use crate::reason::HaReason;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use crate::cluster::ha::SslMode;

/// One node of the pair, resolved.
#[derive(Debug, Clone)]
pub struct HaNode {
    /// The node's name in the cluster file.
    pub name: String,
    /// Its place in the pair now.
    pub role: Role,
    /// Its address.
    pub addr: IpAddr,
    /// Its PostgreSQL port.
    pub pg_port: u16,
    /// The product's web port.
    pub web_port: u16,
    /// PostgreSQL's program folder, where the cluster file names it.
    pub bin: Option<PathBuf>,
    /// The data folder, where the cluster file names it.
    pub data: Option<PathBuf>,
    /// PostgreSQL's service name on Windows.
    pub service: Option<String>,
    /// Where its WAL archive is kept, if anywhere.
    pub archive: Option<PathBuf>,
    /// keyferry's state folder on this node (journal, lock, backups).
    pub state_dir: PathBuf,
}

impl HaNode {
    /// A PostgreSQL program of this node (`bin` joined, or found on PATH).
    pub fn program(&self, name: &str) -> PathBuf {
        let exe = if cfg!(windows) {
            format!("{name}.exe")
        } else {
            name.to_owned()
        };
        match &self.bin {
            Some(b) => b.join(exe),
            None => PathBuf::from(exe),
        }
    }

    /// The data folder, or a refusal saying where to set it.
    pub fn data_dir(&self) -> Result<&Path> {
        self.data.as_deref().ok_or_else(|| Error::HaRefused {
            why: format!("node {}: no PostgreSQL data folder is set", self.name),
            reason: HaReason::NoDataFolder {
                node: self.name.clone(),
            },
        })
    }

    /// A replication slot name for this node (PostgreSQL allows a-z, 0-9 and _).
    pub fn slot(&self) -> String {
        let mut s: String = self
            .name
            .chars()
            .map(|c| {
                let c = c.to_ascii_lowercase();
                if c.is_ascii_alphanumeric() {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        s.insert_str(0, "keyferry_");
        s.truncate(63);
        s
    }
}

/// The HA pair of a cluster file.
#[derive(Debug, Clone)]
pub struct Pair {
    /// The two nodes, in the cluster file's order.
    pub nodes: [HaNode; 2],
    /// The replication role.
    pub repuser: String,
    /// The role keyferry logs in as to check and change the servers.
    pub admin_user: String,
    /// The product's database.
    pub database: String,
    /// The password file (`pgpass` format) both logins read.
    pub passfile: PathBuf,
    /// The method the `pg_hba.conf` lines use (`scram-sha-256`).
    pub hba_method: String,
    /// How connections use SSL.
    pub sslmode: SslMode,
    /// The CA that signs the servers' certificates, for `verify-full`.
    pub sslrootcert: Option<PathBuf>,
    /// How long a connection or a query may take.
    pub timeout: Duration,
    /// The replication slot's `max_slot_wal_keep_size`.
    pub max_slot_wal_keep_size: String,
}

impl Pair {
    /// The pair of `cluster`, or why there is none.
    pub fn from_cluster(cluster: &ClusterFile) -> Result<Pair> {
        let bad = |why: String| Error::ClusterFile {
            path: cluster.path.clone(),
            why,
        };
        let ha = cluster.ha.as_ref().ok_or_else(|| {
            bad("it has no [ha] section (keyferry ha needs the pair's passfile at least; see docs/ha.md)".into())
        })?;
        let pick: Vec<&NodeSpec> = match &ha.nodes {
            Some(names) => {
                if names.len() != 2 {
                    return Err(bad(format!(
                        "[ha] nodes must name two nodes, it names {}",
                        names.len()
                    )));
                }
                let mut v = Vec::new();
                for n in names {
                    let spec = cluster
                        .nodes
                        .iter()
                        .find(|s| s.name.eq_ignore_ascii_case(n))
                        .ok_or_else(|| bad(format!("[ha] nodes names {n:?}, which is no node")))?;
                    v.push(spec);
                }
                v
            }
            None => {
                let mut v: Vec<&NodeSpec> = cluster
                    .nodes
                    .iter()
                    .filter(|s| s.role == Role::Primary)
                    .collect();
                let secondaries: Vec<&NodeSpec> = cluster
                    .nodes
                    .iter()
                    .filter(|s| s.role == Role::Secondary)
                    .collect();
                if secondaries.len() != 1 {
                    return Err(bad(format!(
                        "[ha] nodes is not set and the file has {} secondary nodes: name the pair \
                         with nodes = [\"primary\", \"secondary\"]",
                        secondaries.len()
                    )));
                }
                v.extend(secondaries);
                v
            }
        };
        if pick[0].name.eq_ignore_ascii_case(&pick[1].name) {
            return Err(bad("[ha] nodes names the same node twice".into()));
        }
        if pick[0].address == pick[1].address {
            return Err(bad(format!(
                "the pair's nodes {} and {} have the same address",
                pick[0].name, pick[1].name
            )));
        }
        for name in [&ha.repuser, &ha.admin_user, &ha.database, &ha.hba_method] {
            if name.is_empty()
                || !name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
            {
                return Err(bad(format!(
                    "[ha]: {name:?} is not a plain PostgreSQL name (letters, digits, _ and -)"
                )));
            }
        }
        if matches!(ha.hba_method.as_str(), "trust" | "password" | "reject") {
            return Err(bad(format!(
                "[ha] hba_method {:?} would let the peer in without a password, send it in clear \
                 text, or lock it out: use scram-sha-256 (or md5 for md5-stored passwords)",
                ha.hba_method
            )));
        }
        if !matches!(ha.hba_method.as_str(), "scram-sha-256" | "md5") {
            // The pair logs in with the replication role's password; other methods need
            // options keyferry does not write (ldap, radius), a certificate or a ticket, or
            // are not methods at all (PostgreSQL would refuse the lines, and the file).
            return Err(bad(format!(
                "[ha] hba_method {:?}: the pair's lines take a password method, scram-sha-256 \
                 (or md5 for md5-stored passwords)",
                ha.hba_method
            )));
        }
        if ha.sslmode == SslMode::VerifyFull && ha.sslrootcert.is_none() {
            return Err(bad(
                "[ha] sslmode = \"verify-full\" needs sslrootcert (the CA certificate)".into(),
            ));
        }
        if !(1..=600).contains(&ha.connect_timeout) {
            return Err(bad("[ha] connect_timeout must be 1 to 600 seconds".into()));
        }
        let keep = &ha.max_slot_wal_keep_size;
        let digits = keep.trim_end_matches(|c: char| c.is_ascii_alphabetic());
        let unit = &keep[digits.len()..];
        if digits.parse::<u64>().is_err() || !matches!(unit, "" | "kB" | "MB" | "GB" | "TB") {
            return Err(bad(format!(
                "[ha] max_slot_wal_keep_size {keep:?} is not a size like \"10GB\""
            )));
        }
        let resolve = |s: &NodeSpec| -> HaNode {
            let own = s.ha.clone().unwrap_or_default();
            HaNode {
                name: s.name.clone(),
                role: s.role,
                addr: s.address,
                pg_port: own.pg_port.unwrap_or(ha.pg_port),
                web_port: ha.web_port,
                bin: own.bin.or_else(|| ha.bin.clone()),
                data: own.data.or_else(|| ha.data.clone()),
                service: own.service.or_else(|| ha.service.clone()),
                archive: own.archive.or_else(|| ha.archive.clone()),
                state_dir: s
                    .state_dir
                    .clone()
                    .unwrap_or_else(crate::cluster::default_state_dir),
            }
        };
        Ok(Pair {
            nodes: [resolve(pick[0]), resolve(pick[1])],
            repuser: ha.repuser.clone(),
            admin_user: ha.admin_user.clone(),
            database: ha.database.clone(),
            passfile: ha.passfile.clone(),
            hba_method: ha.hba_method.clone(),
            sslmode: ha.sslmode,
            sslrootcert: ha.sslrootcert.clone(),
            timeout: Duration::from_secs(ha.connect_timeout),
            max_slot_wal_keep_size: ha.max_slot_wal_keep_size.clone(),
        })
    }

    /// The node called `name` (case-insensitive), or a refusal naming both.
    pub fn node(&self, name: &str) -> Result<&HaNode> {
        self.nodes
            .iter()
            .find(|n| n.name.eq_ignore_ascii_case(name))
            .ok_or_else(|| Error::HaRefused {
                why: format!(
                    "node {name:?} is not one of the HA pair ({}, {})",
                    self.nodes[0].name, self.nodes[1].name
                ),
                reason: HaReason::NotInPair,
            })
    }

    /// The other node of the pair.
    pub fn peer_of(&self, node: &HaNode) -> &HaNode {
        if self.nodes[0].name == node.name {
            &self.nodes[1]
        } else {
            &self.nodes[0]
        }
    }
}
