//! One entry point that finishes or rolls back whatever was cut off on a node
//! (`keyferry recover`): a key or `pg_hba.conf` change ([`crate::txn`]), the temp files a
//! transfer left, every sync or rollback whose journal is in the state folder
//! ([`crate::sync`]), and a replica's data-folder swap (`crate::ha::swap`). All of it
//! under the node's lock, in that order; each part says what it did. The commands that
//! change a node do their own part of it first anyway (`txn::begin`, `sync`, `ha replica
//! init`); this does all of it and nothing else.

use crate::cluster::Node;
use crate::error::Result;
use crate::ha::config::HaNode;
use serde::Serialize;
use std::time::Duration;

/// What [`node`] found and did.
#[derive(Debug, Clone, Serialize)]
pub struct Recovered {
    /// The node.
    pub node: String,
    /// An interrupted key or `pg_hba.conf` change, finished or rolled back.
    pub change: Option<crate::txn::Recovery>,
    /// keyferry temp files removed from the node's folders.
    pub swept: Vec<crate::fs::Removal>,
    /// Each interrupted sync or rollback: its target and what was done.
    pub syncs: Vec<(std::path::PathBuf, String)>,
    /// An interrupted replica init, rolled back.
    pub replica: Option<String>,
}

impl Recovered {
    /// Whether anything was cut off (temp files aside).
    pub fn found(&self) -> bool {
        self.change.is_some() || !self.syncs.is_empty() || self.replica.is_some()
    }
}

/// Recovers `node` (and, where it is a node of the HA pair, its replica swap: `ha`),
/// waiting at most `wait` for another command that holds the node's lock.
pub fn node(node: &Node, ha: Option<&HaNode>, wait: Duration) -> Result<Recovered> {
    let (_lock, change) = crate::txn::begin(&node.state_dir, &node.name, wait)?;
    let swept = crate::keys::import::sweep_node(node)?;
    let mut syncs = Vec::new();
    for target in crate::sync::journal::SyncJournal::pending(&node.state_dir)? {
        if let Some(what) = crate::sync::apply::recover(&node.state_dir, &target)? {
            syncs.push((target, what));
        }
    }
    let replica = match ha {
        Some(h) => {
            // The swap's journal is in the state folder the cluster file gives the pair's
            // node; under its lock too where `--state-dir` named another.
            let _also = (h.state_dir != node.state_dir)
                .then(|| crate::txn::NodeLock::acquire(&h.state_dir, &h.name, wait))
                .transpose()?;
            crate::ha::swap::recover(h)?
        }
        None => None,
    };
    Ok(Recovered {
        node: node.name.clone(),
        change,
        swept,
        syncs,
        replica,
    })
}
