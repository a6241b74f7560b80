//! `keyferry man`: the manual page (roff), from the same command tree as `--help`, for nodes
//! where only the binary was copied: `keyferry man > keyferry.1 && man ./keyferry.1`.

use crate::cmd::{success, CmdResult};
use crate::ui::Ui;

#[derive(Debug, clap::Args)]
#[command(after_help = "Example:\n  keyferry man > /usr/local/share/man/man1/keyferry.1")]
pub struct Args {}

pub fn run(_args: Args, ui: &Ui, tree: fn() -> clap::Command) -> CmdResult {
    let mut out = Vec::new();
    clap_mangen::Man::new(tree())
        .render(&mut out)
        .map_err(|e| keyferry::Error::io("<stdout>", e))?;
    ui.raw(&out);
    success()
}
