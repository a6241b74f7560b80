//! `keyferry dpapi ...`: DPAPI-protected key files cannot travel; these find blobs anywhere and,
//! on Windows, unwrap or wrap a key file in place (the vendor's "Decrypt Key to not use DPAPI").

pub mod inspect;
pub mod protect;

use super::CmdResult;
use crate::ui::Ui;
use clap::Subcommand;

#[derive(Debug, Subcommand)]
pub enum DpapiCommand {
    /// Find and describe DPAPI blobs in a file (any platform)
    Inspect(inspect::Args),
    /// Wrap a key file with machine-scope DPAPI in place, after a backup (Windows)
    Protect(protect::Args),
    /// Decrypt a DPAPI-protected key file in place, after a backup (Windows)
    Unprotect(protect::Args),
}

pub fn run(c: DpapiCommand, ui: &Ui) -> CmdResult {
    match c {
        DpapiCommand::Inspect(a) => inspect::run(a, ui),
        DpapiCommand::Protect(a) => protect::run(a, true, ui),
        DpapiCommand::Unprotect(a) => protect::run(a, false, ui),
    }
}
