//! `keyferry demo`: the whole job on a throwaway four-node cluster, so an admin (or a reviewer)
//! can see what keyferry does before pointing it at real nodes.

use crate::cmd::{export_work_factor, success, CmdResult};
use crate::failure::Failure;
use crate::ui::Ui;

#[derive(Debug, clap::Args)]
#[command(
    after_help = "Builds four Secret Server-style nodes in a temp folder (primary; secondary with a \
different key; DR with none; proxy), shows that their fingerprints disagree, exports from the primary, \
imports on the others, shows that they agree, and removes everything. Real age bundles at the real \
scrypt work factor; no prompts."
)]
pub struct Args {}

pub fn run(_args: Args, ui: &Ui) -> CmdResult {
    let report = keyferry::demo::run(export_work_factor(ui), ui)?;
    if ui.json {
        ui.json(&report);
    } else if report.agreed_after && !report.agreed_before {
        ui.out("Before: the nodes disagreed. After: every node that needs keys holds the same key set.");
    }
    if !report.agreed_after {
        return Err(Failure::new(
            "demo-failed",
            "the nodes still disagree after the import",
            None,
        ));
    }
    success()
}
