//! `keyferry ha`: the PostgreSQL HA steps of a Privilege Secure pair (docs/ha.md). This file
//! holds what every step shares: the cluster file, the pair, the password file and the local
//! node.

pub mod check;
pub mod explain;
pub mod failover;
pub mod fence;
pub mod hba;
pub mod rejoin;
pub mod replica;
pub mod status;

use crate::cmd::CmdResult;
use crate::ui::Ui;
use clap::Subcommand;
use keyferry::cluster::{host_name, ClusterFile};
use keyferry::ha::PassFile;
use keyferry::ha::{HaNode, Pair};

#[derive(Debug, Subcommand)]
pub enum HaCommand {
    /// Addresses, ports, pg_hba.conf decisions, streaming settings, versions, Archive folder
    Check(check::Args),
    /// Both nodes: Running Primary, Running Replica, not running or unreachable; lag, timelines,
    /// slots
    Status(status::Args),
    /// Put the pair's lines in pg_hba.conf where they win, checked by PostgreSQL, then reload
    Hba(hba::Args),
    /// Which pg_hba.conf line decides a connection, and why each line above does not
    Explain(explain::Args),
    /// Set up this node as a replica of its peer
    #[command(subcommand)]
    Replica(replica::ReplicaCommand),
    /// Make the replica the primary (planned switchover, or --primary-lost)
    Failover(failover::FailoverArgs),
    /// Make the old primary a replica of the new one (pg_rewind, else a fresh copy)
    Rejoin(rejoin::RejoinArgs),
    /// Make sure this node's server cannot come back as a primary (standby.signal, then stop)
    Fence(fence::FenceArgs),
}

pub fn run(c: HaCommand, ui: &Ui) -> CmdResult {
    match c {
        HaCommand::Check(a) => check::run(a, ui),
        HaCommand::Status(a) => status::run(a, ui),
        HaCommand::Hba(a) => hba::run(a, ui),
        HaCommand::Explain(a) => explain::run(a, ui),
        HaCommand::Replica(c) => replica::replica(c, ui),
        HaCommand::Failover(a) => failover::failover(a, ui),
        HaCommand::Rejoin(a) => rejoin::rejoin(a, ui),
        HaCommand::Fence(a) => fence::fence(a, ui),
    }
}

/// The cluster file and the local node, for every `ha` step.
#[derive(Debug, Clone, clap::Args)]
pub struct PairArgs {
    // The cluster file, with the [ha] section (docs/ha.md).
    #[command(flatten)]
    pub cluster: crate::node_args::ClusterArg,
    // This machine's node of the pair.
    #[command(flatten)]
    pub node: crate::node_args::NodeName,
}

/// The loaded cluster file, pair and password file.
pub struct Loaded {
    pub file: ClusterFile,
    pub pair: Pair,
    pub passfile: PassFile,
}

impl PairArgs {
    pub fn load(&self) -> Result<Loaded, crate::failure::Failure> {
        let (file, pair) = self.load_pair()?;
        let passfile = PassFile::load(&pair.passfile)?;
        Ok(Loaded {
            file,
            pair,
            passfile,
        })
    }

    /// The cluster file and its pair, without the password file (for what needs no login).
    pub fn load_pair(&self) -> Result<(ClusterFile, Pair), crate::failure::Failure> {
        let file = self.cluster.load()?;
        let pair = Pair::from_cluster(&file)?;
        Ok((file, pair))
    }

    /// This machine's node of the pair (by --node or host name).
    pub fn local<'p>(&self, pair: &'p Pair) -> Result<&'p HaNode, crate::failure::Failure> {
        match &self.node.name {
            Some(n) => Ok(pair.node(n)?),
            None => {
                let host = host_name();
                let short = host.split('.').next().unwrap_or(&host).to_owned();
                pair.nodes
                    .iter()
                    .find(|n| {
                        n.name.eq_ignore_ascii_case(&host) || n.name.eq_ignore_ascii_case(&short)
                    })
                    .ok_or_else(|| {
                        keyferry::Error::ha_refused(
                            format!(
                                "this host ({host}) is neither node of the HA pair ({}, {})",
                                pair.nodes[0].name, pair.nodes[1].name
                            ),
                            keyferry::HaReason::HostNotInPair,
                        )
                        .into()
                    })
            }
        }
    }
}

impl Loaded {
    /// Whatever an earlier command left cut off on this machine's node `local` is finished or
    /// rolled back first ([`crate::cmd::recover::first`]), but `own`, which the step does
    /// itself and reports.
    pub fn recover_first(
        &self,
        ui: &Ui,
        local: &HaNode,
        own: keyferry::recover::Own<'_>,
    ) -> Result<(), crate::failure::Failure> {
        recover_first(ui, &self.file, local, own)
    }

    pub fn connector(&self) -> keyferry::ha::Connector<'_> {
        keyferry::ha::Connector {
            pair: &self.pair,
            passfile: &self.passfile,
        }
    }
}

/// [`Loaded::recover_first`] for a step that needs no login (`ha fence`).
pub fn recover_first(
    ui: &Ui,
    file: &ClusterFile,
    local: &HaNode,
    own: keyferry::recover::Own<'_>,
) -> Result<(), crate::failure::Failure> {
    let Some(spec) = file
        .nodes
        .iter()
        .find(|n| n.name.eq_ignore_ascii_case(&local.name))
    else {
        return Ok(());
    };
    let node = keyferry::cluster::Node::from_cluster(file, spec, None)?;
    let wait = keyferry::txn::DEFAULT_WAIT;
    crate::cmd::recover::first(ui, &node, Some(local), wait, own)
}

/// A dry run's plan, numbered, and that nothing changed.
pub fn show_plan(ui: &Ui, plan: &[String]) {
    ui.out("would:");
    for (i, p) in plan.iter().enumerate() {
        ui.out(&format!("  {}. {p}", i + 1));
    }
    ui.out("nothing was changed (--dry-run)");
}
