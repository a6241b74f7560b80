//! `keyferry completions SHELL`: an admin with only the binary gets tab completion for every
//! command and flag, generated from the same command tree as `--help`, so it cannot drift.

use crate::cmd::{success, CmdResult};
use crate::ui::Ui;

#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  keyferry completions bash > /etc/bash_completion.d/keyferry\n  keyferry completions zsh > \"${fpath[1]}/_keyferry\"\n  keyferry completions fish > ~/.config/fish/completions/keyferry.fish\n  keyferry completions powershell >> $PROFILE"
)]
pub struct Args {
    /// The shell to write completions for
    #[arg(value_enum, value_name = "SHELL")]
    pub shell: clap_complete::Shell,
}

pub fn run(args: Args, ui: &Ui, tree: fn() -> clap::Command) -> CmdResult {
    let mut out = Vec::new();
    clap_complete::generate(args.shell, &mut tree(), "keyferry", &mut out);
    ui.raw(&out);
    success()
}
