//! `keyferry recover`: finish or roll back whatever a crash or a killed command cut off on
//! this node (a key or `pg_hba.conf` change, syncs and rollbacks, a replica's data-folder
//! swap) and remove keyferry temp files left behind, then say what was done.

use crate::cmd::{success, CmdResult};
use crate::failure::Failure;
use crate::node_args::{NodeArgs, WaitArgs};
use crate::ui::Ui;
use keyferry::cluster::{ClusterFile, Node};
use keyferry::ha::{HaNode, Pair};
use keyferry::recover::{Own, Recovered};
use std::time::Duration;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub node: NodeArgs,
    #[command(flatten)]
    pub wait: WaitArgs,
}

pub fn run(args: Args, ui: &Ui) -> CmdResult {
    let (node, file) = args.node.resolve_in()?;
    let pair = file.as_ref().map(pair_of).transpose()?.flatten();
    let ha = pair.as_ref().and_then(|p| p.node(&node.name).ok());
    let r = keyferry::recover::node(&node, ha, args.wait.wait)?;
    ui.show("recover", &r, || {
        for line in said(&r) {
            ui.out(&line);
        }
        if !r.found() {
            ui.out(&format!(
                "Node {}: nothing was cut off here (no journal in {}).",
                r.node,
                node.state_dir.display()
            ));
        }
    });
    success()
}

/// What was done, a line each.
fn said(r: &Recovered) -> Vec<String> {
    let mut lines = Vec::new();
    if let Some(c) = &r.change {
        lines.push(format!("Node {}: {c}.", r.node));
    }
    // Each says its target.
    lines.extend(r.syncs.iter().map(|(_, what)| what.clone()));
    lines.extend(r.replica.clone());
    for s in &r.swept {
        lines.push(format!("removed a keyferry temp file: {s}"));
    }
    lines
}

/// The cluster file's HA pair, where it has one (the node's PostgreSQL, for its swap).
fn pair_of(file: &ClusterFile) -> keyferry::Result<Option<Pair>> {
    file.ha
        .as_ref()
        .map(|_| Pair::from_cluster(file))
        .transpose()
}

/// What every command that changes a node runs first ([`keyferry::recover::before`]):
/// whatever an earlier command left cut off on this node, of any kind, is finished or rolled
/// back under the node's lock and said on stderr (`warning: first: ...`), beside the part the
/// command does itself (`own`) and reports in its own document.
pub fn first(
    ui: &Ui,
    node: &Node,
    ha: Option<&HaNode>,
    wait: Duration,
    own: Own<'_>,
) -> Result<(), Failure> {
    let r = keyferry::recover::before(node, ha, wait, own)?;
    for line in said(&r) {
        ui.warn(&format!("first: {line}"));
    }
    Ok(())
}

/// [`first`] on a node of the cluster file `file` (its HA pair's swap too, where the pair
/// has the node). An `[ha]` section this cannot read is the `ha` commands' to refuse (and
/// `recover`'s), not a key import's or a sync's: a replica swap left by a run of that pair is
/// still found by `keyferry recover`, which says what is wrong with the section.
pub fn first_in(
    ui: &Ui,
    file: Option<&ClusterFile>,
    node: &Node,
    wait: Duration,
    own: Own<'_>,
) -> Result<(), Failure> {
    let pair = file.and_then(|f| pair_of(f).ok().flatten());
    let ha = pair.as_ref().and_then(|p| p.node(&node.name).ok());
    first(ui, node, ha, wait, own)
}
