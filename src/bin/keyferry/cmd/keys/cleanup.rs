//! `keyferry keys cleanup`: an export file and its bundle left lying around are the classic
//! leak; this removes what the ledger recorded, the vendor's keys.exp and crash leftovers.

use crate::cmd::{success, CmdResult};
use crate::node_args::NodeArgs;
use crate::ui::Ui;

#[derive(Debug, clap::Args)]
#[command(
    after_help = "Removes the bundles this node's ledger records (written by export, or kept by \
import --keep-bundle), the profile's temporary vendor files (Privilege Secure: keys.exp) and \
keyferry temp files a crash left in the node's folders. Files are overwritten first only where the file system rewrites in place; the report says which."
)]
pub struct Args {
    #[command(flatten)]
    pub node: NodeArgs,
    /// List what would be removed and remove nothing
    #[arg(long)]
    pub dry_run: bool,
    #[command(flatten)]
    pub wait: crate::node_args::WaitArgs,
}

pub fn run(args: Args, ui: &Ui) -> CmdResult {
    let node = args.node.resolve()?;
    let report = keyferry::keys::cleanup::cleanup(&node, args.dry_run, args.wait.wait)?;
    if let Some(r) = &report.recovered {
        ui.warn(&format!("first: {r}"));
    }
    if ui.json {
        ui.json(&report);
        return success();
    }
    for p in &report.would_remove {
        ui.out(&format!("would remove {}", p.display()));
    }
    for r in &report.removed {
        ui.out(&r.to_string());
    }
    for p in &report.already_gone {
        ui.out(&format!("{}: already gone", p.display()));
    }
    for p in &report.left_alone {
        ui.out(&format!("{}: left alone (no longer a bundle)", p.display()));
    }
    if report.removed.is_empty() && report.would_remove.is_empty() {
        ui.info(&format!("Nothing to clean up on node {}.", report.node));
    }
    success()
}
