//! `keyferry keys ...`: everything that moves, restores or cleans up key files between nodes.

pub mod cleanup;
pub mod export;
pub mod import;
pub mod inspect;
pub mod push;
pub mod recover;
pub mod restore;

use super::CmdResult;
use crate::ui::Ui;
use clap::Subcommand;

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Seal this node's key set into a passphrase-protected bundle
    Export(export::Args),
    /// Check a bundle and install its keys on this node
    Import(import::Args),
    /// From the primary, its key set to every node that needs it (no bundle)
    Push(push::Args),
    /// Show a bundle's manifest (never the key bytes)
    Inspect(inspect::Args),
    /// Remove leftover bundles and vendor export files from this node
    Cleanup(cleanup::Args),
    /// List this node's backups, or put one back
    Restore(restore::Args),
    /// Finish or roll back a change a crash interrupted on this node
    Recover(recover::Args),
}

pub fn run(c: KeysCommand, ui: &Ui) -> CmdResult {
    match c {
        KeysCommand::Export(a) => export::run(a, ui),
        KeysCommand::Import(a) => import::run(a, ui),
        KeysCommand::Push(a) => push::run(a, ui),
        KeysCommand::Inspect(a) => inspect::run(a, ui),
        KeysCommand::Cleanup(a) => cleanup::run(a, ui),
        KeysCommand::Restore(a) => restore::run(a, ui),
        KeysCommand::Recover(a) => recover::run(a, ui),
    }
}
