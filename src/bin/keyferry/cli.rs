//! The command tree: `keyferry <noun> <verb>` in the manner of `sq`.

use crate::cmd;
use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "keyferry",
    bin_name = "keyferry",
    version,
    about = "Move encryption keys between the nodes of a PAM cluster, safely, and prove every node holds the same keys",
    long_about = None,
    propagate_version = true,
    max_term_width = 100,
    after_help = "Exit status: 0 success, 1 a check said no, 2 error (nothing on disk was changed).\nDocs: README.md and docs/ in the source tree."
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

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ColorChoice {
    Auto,
    Always,
    Never,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Export, import, inspect and clean up key bundles
    #[command(subcommand)]
    Keys(cmd::keys::KeysCommand),
    /// Check that every node holds the primary's keys and binaries
    Audit(cmd::audit::Args),
    /// Explain an error message and run the checks that bear on it
    Diagnose(cmd::diagnose::Args),
    /// Show this node's key-set fingerprint
    Fingerprint(cmd::fingerprint::Args),
    /// Overwrite (where that works) and remove files that held secrets
    Shred(cmd::shred::Args),
    /// Inspect DPAPI blobs; protect or unprotect key files (Windows)
    #[command(subcommand)]
    Dpapi(cmd::dpapi::DpapiCommand),
    /// Run the whole export/import on a throwaway four-node cluster
    Demo(cmd::demo::Args),
}
