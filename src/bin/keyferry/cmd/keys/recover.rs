//! `keyferry keys recover`: finish or roll back a change that a crash or a killed command
//! interrupted on this node, and remove keyferry temp files left behind. Every command that
//! changes the node does this first anyway; this does only that, and says which it did.

use crate::cmd::{success, CmdResult};
use crate::ui::Ui;

/// The same options as `keyferry recover`.
pub use crate::cmd::recover::Args;

pub fn run(args: Args, ui: &Ui) -> CmdResult {
    let node = args.node.resolve()?;
    let (_lock, recovered) = keyferry::txn::begin(&node.state_dir, &node.name, args.wait.wait)?;
    let swept = keyferry::keys::sweep_node(&node)?;
    let report = serde_json::json!({ "node": node.name, "recovered": recovered, "swept": swept });
    ui.show("recover", &report, || {
        match &recovered {
            Some(r) => ui.out(&format!("Node {}: {r}.", node.name)),
            None => ui.out(&format!(
                "Node {}: no interrupted change (no journal in {}).",
                node.name,
                node.state_dir.display()
            )),
        }
        for r in &swept {
            ui.out(&format!("removed a keyferry temp file: {r}"));
        }
    });
    success()
}
