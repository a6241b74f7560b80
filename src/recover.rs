//! One entry point that finishes or rolls back whatever was cut off on a node
//! (`keyferry recover`): a key or `pg_hba.conf` change ([`crate::txn`]), the temp files a
//! transfer left, every sync or rollback whose journal is in the state folder
//! ([`crate::sync`]), and a replica's data-folder swap (`crate::ha::swap`). All of it
//! under the node's lock, in that order; each part says what it did. Every command that
//! changes a node calls [`before`] first: the rest of the recovery, beside the part it does
//! itself (`txn::begin`, `sync`, `ha replica init`) and reports in its own document.

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
    /// Nothing yet, on `node`.
    fn nothing(node: &Node) -> Recovered {
        Recovered {
            node: node.name.clone(),
            change: None,
            swept: Vec::new(),
            syncs: Vec::new(),
            replica: None,
        }
    }

    /// Whether anything was cut off (temp files aside).
    pub fn found(&self) -> bool {
        self.change.is_some() || !self.syncs.is_empty() || self.replica.is_some()
    }
}

/// The part of the recovery a command does itself, under its own lock, and reports in its
/// own document (an import's `recovered`, a sync target's row, a replica init's first words).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Own<'a> {
    /// Nothing: every part is recovered first.
    Nothing,
    /// A key or `pg_hba.conf` change (`txn::begin`).
    Change,
    /// The syncs and rollbacks of these targets, the ones it works on.
    Syncs(&'a [std::path::PathBuf]),
    /// The replica's data-folder swap (`ha replica init`).
    Swap,
}

/// Recovers `node` (and, where it is a node of the HA pair, its replica swap: `ha`),
/// waiting at most `wait` for another command that holds the node's lock.
pub fn node(node: &Node, ha: Option<&HaNode>, wait: Duration) -> Result<Recovered> {
    let mut r = Recovered::nothing(node);
    recover_all(node, ha, wait, Own::Nothing, true, &mut r)?;
    Ok(r)
}

/// What every command that changes a node calls first, before its own lock: the same
/// recovery as [`node`] but for the part the command does itself (`own`) and reports in its
/// own document, and without the temp-file sweep (import and cleanup sweep and report it;
/// `recover` does it on request). So no change builds on one that was cut off, whatever its
/// kind. When nothing is cut off it only reads: no lock is taken and nothing is created.
pub fn before(node: &Node, ha: Option<&HaNode>, wait: Duration, own: Own<'_>) -> Result<Recovered> {
    let mut r = Recovered::nothing(node);
    if !pending(node, ha, own)? {
        return Ok(r);
    }
    recover_all(node, ha, wait, own, false, &mut r)?;
    Ok(r)
}

/// Whether anything but the caller's own part was cut off on `node` (read only).
fn pending(node: &Node, ha: Option<&HaNode>, own: Own<'_>) -> Result<bool> {
    if own != Own::Change && crate::txn::journal::Journal::load(&node.state_dir)?.is_some() {
        return Ok(true);
    }
    let syncs = crate::sync::journal::SyncJournal::pending(&node.state_dir)?;
    if syncs
        .iter()
        .any(|t| !matches!(own, Own::Syncs(mine) if mine.contains(t)))
    {
        return Ok(true);
    }
    Ok(match ha.filter(|_| own != Own::Swap) {
        Some(h) => crate::ha::swap::SwapJournal::load(&h.state_dir)?.is_some(),
        None => false,
    })
}

/// The recovery itself, under the node's lock, in order: a key or `pg_hba.conf` change, the
/// temp files (with `sweep`), the syncs, the replica's swap; each but the caller's own part.
fn recover_all(
    node: &Node,
    ha: Option<&HaNode>,
    wait: Duration,
    own: Own<'_>,
    sweep: bool,
    r: &mut Recovered,
) -> Result<()> {
    let _lock = if own == Own::Change {
        crate::txn::NodeLock::acquire(&node.state_dir, &node.name, wait)?
    } else {
        let (lock, change) = crate::txn::begin(&node.state_dir, &node.name, wait)?;
        r.change = change;
        lock
    };
    if sweep {
        r.swept = crate::keys::import::sweep_node(node)?;
    }
    for target in crate::sync::journal::SyncJournal::pending(&node.state_dir)? {
        if matches!(own, Own::Syncs(mine) if mine.contains(&target)) {
            continue;
        }
        if let Some(what) = crate::sync::apply::recover(&node.state_dir, &target)? {
            r.syncs.push((target, what));
        }
    }
    if let Some(h) = ha.filter(|_| own != Own::Swap) {
        // The swap's journal is in the state folder the cluster file gives the pair's node;
        // under its lock too where `--state-dir` named another.
        let _also = (h.state_dir != node.state_dir)
            .then(|| crate::txn::NodeLock::acquire(&h.state_dir, &h.name, wait))
            .transpose()?;
        r.replica = crate::ha::swap::recover(h)?;
    }
    Ok(())
}
