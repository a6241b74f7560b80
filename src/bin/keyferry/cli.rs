//! The top of the command line: the global options every command takes, and the command
//! tree (`keyferry <noun> <verb>` in the manner of `sq`) from [`crate::cmd`].

use crate::cmd::Command;
use crate::ui::ColorChoice;
use clap::{Args, Parser};

#[derive(Debug, Parser)]
#[command(
    name = "keyferry",
    bin_name = "keyferry",
    version,
    about = "Move encryption keys between the nodes of a PAM cluster, safely, and prove every node holds the same keys",
    long_about = None,
    propagate_version = true,
    max_term_width = 100,
    after_help = "Exit status: 0 success, 1 a check said no, 2 error (nothing on disk was changed).\n\nMore: keyferry help <command> for any command; keyferry man > keyferry.1 for the manual page;\nkeyferry completions bash|zsh|fish|powershell for tab completion."
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// Print one JSON document on stdout (errors too)
    #[arg(long, global = true)]
    pub json: bool,
    /// Never prompt; fail with a hint where a terminal would be needed
    #[arg(long, global = true)]
    pub batch: bool,
    /// When to colour messages
    #[arg(long, global = true, value_enum, default_value_t = ColorChoice::Auto, value_name = "WHEN")]
    pub color: ColorChoice,
}
