//! `keyferry ha fence`: this node's server stopped and kept from starting as a primary.

use super::PairArgs;
use crate::cmd::CmdResult;
use crate::ui::Ui;
use keyferry::ha::replica;
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
#[command(
    after_help = "Run on a node whose server must not come back as a primary (a primary \
about to be given up, or lost and back): writes an empty standby.signal into its data folder \
first, so any start makes a read-only standby, then stops its server if it runs. `ha failover \
--primary-lost` runs it over ssh on the lost primary where it can.\n\n\
Exit status: 0 fenced; 2 failed."
)]
pub struct FenceArgs {
    #[command(flatten)]
    pub pair: PairArgs,
}

pub fn fence(args: FenceArgs, ui: &Ui) -> CmdResult {
    let (file, pair) = args.pair.load_pair()?;
    let node = args.pair.local(&pair)?;
    super::recover_first(ui, &file, node, keyferry::recover::Own::Nothing)?;
    let r = replica::fence(node)?;
    ui.show("ha-fence", &r, || {
        ui.out(&format!(
            "{} is fenced: standby.signal {}; its server {}",
            r.node,
            if r.signal_written {
                "written"
            } else {
                "was already there"
            },
            if r.stopped {
                "was stopped"
            } else {
                "was not running"
            }
        ));
    });
    Ok(ExitCode::SUCCESS)
}
