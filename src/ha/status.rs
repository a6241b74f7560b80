//! `ha status`: what each node of the pair is (Running Primary, Running Replica, not
//! running, unreachable), how replication stands (state, lag in bytes and seconds,
//! timelines, slots), and the pair's verdict. Both nodes are asked at the same time.

use super::config::{HaNode, Pair};
use super::pg::{self, Connector, Reach};
use crate::error::Error;
use serde::{Deserialize, Serialize};

/// What a node is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// It runs and is not in recovery: it takes writes.
    RunningPrimary,
    /// It runs in recovery: a read-only standby.
    RunningReplica,
    /// The host answers but nothing listens on the port.
    NotRunning,
    /// No answer at all (firewall, host down, no route).
    Unreachable,
    /// Its PostgreSQL answers but refuses keyferry's login (a wrong password, no
    /// pg_hba.conf entry, an unknown role): it runs, whatever it is.
    RefusesLogin,
    /// It listens but keyferry could not log in or query it.
    Error,
}

impl Role {
    /// The role as the table shows it.
    pub fn label(self) -> &'static str {
        match self {
            Role::RunningPrimary => "Running Primary",
            Role::RunningReplica => "Running Replica",
            Role::NotRunning => "not running",
            Role::Unreachable => "unreachable",
            Role::RefusesLogin => "answers, refuses login",
            Role::Error => "error",
        }
    }
}

/// A replica as its primary sees it (`pg_stat_replication`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Sender {
    pub application_name: String,
    pub client_addr: Option<String>,
    pub state: String,
    pub lag_bytes: Option<i64>,
    /// Zero when replay has caught up.
    pub lag_seconds: Option<f64>,
}

/// The replica's side (`pg_stat_wal_receiver`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Receiver {
    pub status: String,
    pub sender_host: Option<String>,
    pub received_timeline: Option<i32>,
    /// WAL received but not yet replayed.
    pub replay_lag_bytes: Option<i64>,
    /// Zero when replay has caught up with what was received.
    pub replay_lag_seconds: Option<f64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Slot {
    pub name: String,
    pub active: bool,
    pub wal_status: Option<String>,
}

/// One node's status.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeStatus {
    pub node: String,
    pub address: String,
    pub port: u16,
    pub role: Role,
    pub detail: Option<String>,
    pub version: Option<String>,
    /// The database cluster's identity (`pg_control_system()`): a replica made from a
    /// primary has the primary's.
    pub system_identifier: Option<String>,
    pub timeline: Option<u32>,
    pub lsn: Option<String>,
    pub replicas: Vec<Sender>,
    pub receiver: Option<Receiver>,
    pub slots: Vec<Slot>,
}

/// The pair's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    /// One primary, one replica streaming from it.
    Healthy,
    /// Two primaries: both accept writes.
    SplitBrain,
    /// A primary, but the other node is not a streaming replica of it.
    Degraded,
    /// Both nodes were looked at and neither runs as a primary.
    NoPrimary,
    /// No primary was seen, but a node could not be looked at (it answers but refuses
    /// keyferry's login, or does not answer): it may be a primary.
    Unknown,
    /// Both run as primary but are separate databases (different system identifiers): the
    /// pair was never set up, or a replica was rebuilt elsewhere.
    NotAPair,
}

/// `keyferry ha status --json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PairStatus {
    /// Each node, in the cluster file's order.
    pub nodes: Vec<NodeStatus>,
    /// What the pair is as a whole.
    pub verdict: Verdict,
    /// What is wrong, in words (empty when healthy).
    pub problems: Vec<String>,
}

impl PairStatus {
    /// Exactly one primary, streaming to its replica.
    pub fn healthy(&self) -> bool {
        self.verdict == Verdict::Healthy
    }
}

/// Asks both nodes at once, each within the pair's deadline: a node that has not answered
/// by then (it accepted the connection and fell silent) is reported unreachable.
pub fn pair_status(conn: &Connector<'_>) -> PairStatus {
    let pair = conn.pair;
    // Connecting has the connect timeout; the queries after it get as long again.
    let limit = pair.timeout * 2 + std::time::Duration::from_secs(1);
    let nodes: Vec<NodeStatus> = pair
        .nodes
        .iter()
        .map(|n| {
            let (tx, rx) = std::sync::mpsc::channel();
            let (pair, passfile, node) = (pair.clone(), conn.passfile.duplicate(), n.clone());
            // Not scoped: a thread stuck on a silent server is left behind, not waited for.
            std::thread::spawn(move || {
                let conn = Connector {
                    pair: &pair,
                    passfile: &passfile,
                };
                let _ = tx.send(node_status(&conn, &node));
            });
            (rx, n)
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|(rx, n)| {
            rx.recv_timeout(limit).unwrap_or_else(|_| NodeStatus {
                role: Role::Unreachable,
                detail: Some(format!(
                    "no answer within {} s: it accepted the connection and fell silent",
                    limit.as_secs()
                )),
                ..empty(n)
            })
        })
        .collect();
    judge(pair, nodes)
}

fn empty(node: &HaNode) -> NodeStatus {
    NodeStatus {
        node: node.name.clone(),
        address: node.addr.to_string(),
        port: node.pg_port,
        role: Role::Error,
        detail: None,
        version: None,
        system_identifier: None,
        timeline: None,
        lsn: None,
        replicas: Vec::new(),
        receiver: None,
        slots: Vec::new(),
    }
}

fn judge(pair: &Pair, nodes: Vec<NodeStatus>) -> PairStatus {
    let primaries: Vec<&NodeStatus> = nodes
        .iter()
        .filter(|n| n.role == Role::RunningPrimary)
        .collect();
    let mut problems = Vec::new();
    let verdict = match primaries.len() {
        2 if primaries[0].system_identifier != primaries[1].system_identifier => {
            problems.push(format!(
                "{} and {} are separate databases (different system identifiers), each its own \
                 primary: the pair is not set up; make {} a replica with keyferry ha replica init",
                nodes[0].node, nodes[1].node, nodes[1].node
            ));
            Verdict::NotAPair
        }
        2 => {
            problems.push(format!(
                "SPLIT BRAIN: both {} and {} are running as primary and accept writes; stop the \
                 one whose writes you will give up before anything else writes to it, then make \
                 it a replica (keyferry ha rejoin on it)",
                nodes[0].node, nodes[1].node
            ));
            Verdict::SplitBrain
        }
        0 => {
            let unseen: Vec<&NodeStatus> = nodes
                .iter()
                .filter(|n| !matches!(n.role, Role::RunningReplica | Role::NotRunning))
                .collect();
            if unseen.is_empty() {
                problems.push("no node is running as primary".into());
                Verdict::NoPrimary
            } else {
                for n in unseen {
                    problems.push(format!(
                        "{} could not be looked at ({}: {}); it may be running as the primary",
                        n.node,
                        n.role.label(),
                        n.detail.as_deref().unwrap_or("no detail")
                    ));
                }
                Verdict::Unknown
            }
        }
        _ => {
            let p = primaries[0];
            let other = nodes.iter().find(|n| n.node != p.node).expect("two nodes");
            let other_node = pair.nodes.iter().find(|n| n.name == other.node);
            let streaming = p.replicas.iter().any(|r| {
                r.state == "streaming"
                    && other_node.is_some_and(|o| {
                        r.client_addr.as_deref() == Some(o.addr.to_string().as_str())
                            || r.application_name == o.name
                    })
            });
            let receiving = other
                .receiver
                .as_ref()
                .is_some_and(|r| r.status == "streaming");
            if other.role == Role::RunningReplica && streaming && receiving {
                Verdict::Healthy
            } else {
                problems.push(match other.role {
                    Role::RunningReplica => format!(
                        "{} is a replica but does not stream from {} (see its receiver state)",
                        other.node, p.node
                    ),
                    r => format!("{} is {}: the pair has no replica", other.node, r.label()),
                });
                Verdict::Degraded
            }
        }
    };
    for n in &nodes {
        for s in &n.slots {
            if s.wal_status.as_deref() == Some("lost") {
                problems.push(format!(
                    "slot {} on {} has lost WAL its replica needs: that replica must be set up \
                     again (keyferry ha replica init)",
                    s.name, n.node
                ));
            }
        }
    }
    PairStatus {
        nodes,
        verdict,
        problems,
    }
}

/// One node's status; never fails (an unreachable node is a status).
pub fn node_status(conn: &Connector<'_>, node: &HaNode) -> NodeStatus {
    let mut st = empty(node);
    let mut client = match conn.try_admin(node) {
        Ok(c) => c,
        Err(e) if e.kind.server_answered() => {
            st.role = Role::RefusesLogin;
            st.detail = Some(e.error.to_string());
            return st;
        }
        Err(e) => {
            let e = e.error;
            let reach = pg::probe(node.addr, node.pg_port, conn.pair.timeout);
            st.role = match reach {
                Reach::Refused => Role::NotRunning,
                Reach::Dropped | Reach::Unreachable(_) => Role::Unreachable,
                Reach::Open => Role::Error,
            };
            st.detail = Some(match reach {
                Reach::Open => e.to_string(),
                r => r.describe(),
            });
            return st;
        }
    };
    if let Err(e) = fill(&mut client, node, &mut st) {
        st.role = Role::Error;
        st.detail = Some(e.to_string());
    }
    st
}

fn fill(client: &mut pg::Client, node: &HaNode, st: &mut NodeStatus) -> Result<(), Error> {
    let row = pg::query_one(
        client,
        node,
        "SELECT pg_is_in_recovery(), current_setting('server_version'), \
         CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn()::text \
              ELSE pg_current_wal_lsn()::text END, \
         CASE WHEN pg_is_in_recovery() THEN NULL \
              ELSE substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8) END, \
         (SELECT timeline_id FROM pg_control_checkpoint())::int, \
         (SELECT system_identifier FROM pg_control_system())::text",
        &[],
    )?;
    let recovery: bool = row.get(0);
    st.version = row.get(1);
    st.lsn = row.get(2);
    let wal_tli: Option<String> = row.get(3);
    let ckpt_tli: Option<i32> = row.get(4);
    st.system_identifier = row.get(5);
    st.timeline = wal_tli
        .and_then(|t| u32::from_str_radix(&t, 16).ok())
        .or(ckpt_tli.map(|t| t as u32));
    if recovery {
        st.role = Role::RunningReplica;
        let rows = pg::query(
            client,
            node,
            "SELECT status, sender_host, received_tli, \
               greatest(0, pg_wal_lsn_diff(pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn()))::bigint, \
               CASE WHEN pg_last_wal_receive_lsn() IS NULL \
                      OR pg_last_wal_receive_lsn() <= pg_last_wal_replay_lsn() THEN 0::float8 \
                    ELSE extract(epoch FROM now() - pg_last_xact_replay_timestamp())::float8 END \
             FROM pg_stat_wal_receiver",
            &[],
        )?;
        st.receiver = rows.first().map(|r| Receiver {
            status: r.get(0),
            sender_host: r.get(1),
            received_timeline: r.get(2),
            replay_lag_bytes: r.get(3),
            replay_lag_seconds: r.get(4),
        });
        if let Some(tli) = st.receiver.as_ref().and_then(|r| r.received_timeline) {
            st.timeline = Some(tli as u32);
        }
    } else {
        st.role = Role::RunningPrimary;
        let rows = pg::query(
            client,
            node,
            "SELECT application_name, host(client_addr), state, \
               greatest(0, pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn))::bigint, \
               CASE WHEN replay_lsn >= pg_current_wal_lsn() THEN 0::float8 \
                    ELSE extract(epoch FROM replay_lag)::float8 END \
             FROM pg_stat_replication ORDER BY application_name",
            &[],
        )?;
        st.replicas = rows
            .iter()
            .map(|r| Sender {
                application_name: r.get(0),
                client_addr: r.get(1),
                state: r.get(2),
                lag_bytes: r.get(3),
                lag_seconds: r.get(4),
            })
            .collect();
    }
    let rows = pg::query(
        client,
        node,
        "SELECT slot_name::text, active, wal_status FROM pg_replication_slots ORDER BY 1",
        &[],
    )?;
    st.slots = rows
        .iter()
        .map(|r| Slot {
            name: r.get(0),
            active: r.get(1),
            wal_status: r.get(2),
        })
        .collect();
    Ok(())
}
