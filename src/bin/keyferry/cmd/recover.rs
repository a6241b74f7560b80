//! `keyferry recover`: finish or roll back whatever a crash or a killed command cut off on
//! this node (a key or `pg_hba.conf` change, syncs and rollbacks, a replica's data-folder
//! swap) and remove keyferry temp files left behind, then say what was done.

use crate::cmd::{success, CmdResult};
use crate::node_args::{NodeArgs, WaitArgs};
use crate::ui::Ui;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub node: NodeArgs,
    #[command(flatten)]
    pub wait: WaitArgs,
}

pub fn run(args: Args, ui: &Ui) -> CmdResult {
    let node = args.node.resolve()?;
    // This node's PostgreSQL, where the cluster file's [ha] pair has it.
    let pair = match &args.node.cluster {
        Some(path) => {
            let file = keyferry::cluster::ClusterFile::load(path)?;
            match file.ha {
                Some(_) => Some(keyferry::ha::Pair::from_cluster(&file)?),
                None => None,
            }
        }
        None => None,
    };
    let ha = pair.as_ref().and_then(|p| p.node(&node.name).ok());
    let r = keyferry::recover::node(&node, ha, args.wait.wait)?;
    ui.show("recover", &r, || {
        if let Some(c) = &r.change {
            ui.out(&format!("Node {}: {c}.", r.node));
        }
        for (target, what) in &r.syncs {
            ui.out(&format!("{}: {what}", target.display()));
        }
        if let Some(what) = &r.replica {
            ui.out(what);
        }
        for s in &r.swept {
            ui.out(&format!("removed a keyferry temp file: {s}"));
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
