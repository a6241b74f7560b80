//! One module per leaf subcommand; groups are enums with a short `match`.

pub mod audit;
pub mod completions;
pub mod demo;
pub mod diagnose;
pub mod dpapi;
pub mod fingerprint;
pub mod ha;
pub mod host;
pub mod keys;
pub mod man;
pub mod recover;
pub mod request;
pub mod shred;
pub mod sync;
pub mod upgrade;

use crate::failure::Failure;
use crate::ui::Ui;
use clap::Subcommand;
use std::process::ExitCode;

pub type CmdResult = Result<ExitCode, Failure>;

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Export, import, inspect and clean up key bundles
    #[command(subcommand)]
    Keys(keys::KeysCommand),
    /// Check that every node holds the primary's keys and binaries
    Audit(audit::Args),
    /// Copy the application folder to the other nodes, never touching their keys
    Sync(Box<sync::Args>),
    /// The PostgreSQL HA steps of a Privilege Secure pair (check, hba, replica init, status,
    /// failover, rejoin)
    #[command(subcommand)]
    Ha(ha::HaCommand),
    /// A node's own services: its IIS application pool, Windows services, IIS, a reboot; and
    /// whether its site works
    #[command(subcommand)]
    Host(host::HostCommand),
    /// The vendor upgrade procedure for this cluster: its checklist, and a resumable run of it
    #[command(subcommand)]
    Upgrade(upgrade::UpgradeCommand),
    /// Explain an error message and run the checks that bear on it
    Diagnose(diagnose::Args),
    /// Show this node's key-set fingerprint
    Fingerprint(fingerprint::Args),
    /// Finish or roll back whatever a crash cut off on this node (keys, pg_hba.conf, syncs, a
    /// replica's data folder)
    Recover(recover::Args),
    /// Overwrite (where that works) and remove files that held secrets
    Shred(shred::Args),
    /// Inspect DPAPI blobs; protect or unprotect key files (Windows)
    #[command(subcommand)]
    Dpapi(dpapi::DpapiCommand),
    /// Run the whole export/import on a throwaway four-node cluster
    Demo(demo::Args),
    /// Print shell completions (bash, zsh, fish, powershell)
    Completions(completions::Args),
    /// Print the manual page (roff)
    Man(man::Args),
    /// Run one command sent on standard input (how other nodes run keyferry here over ssh)
    Request(request::Args),
}

/// Runs a command. `tree` builds the whole clap command tree, for the commands that print
/// it in another form (completions, man page).
pub fn run(command: Command, ui: &Ui, tree: fn() -> clap::Command) -> CmdResult {
    match command {
        Command::Completions(a) => completions::run(a, ui, tree),
        Command::Man(a) => man::run(a, ui, tree),
        Command::Request(a) => request::run(a, tree),
        Command::Keys(c) => keys::run(c, ui),
        Command::Fingerprint(a) => fingerprint::run(a, ui),
        Command::Recover(a) => recover::run(a, ui),
        Command::Shred(a) => shred::run(a, ui),
        Command::Demo(a) => demo::run(a, ui),
        Command::Audit(a) => audit::run(a, ui),
        Command::Sync(a) => sync::run(*a, ui),
        Command::Diagnose(a) => diagnose::run(a, ui),
        Command::Ha(c) => ha::run(c, ui),
        Command::Host(c) => host::run(c, ui),
        Command::Upgrade(c) => upgrade::run(c, ui),
        Command::Dpapi(c) => dpapi::run(c, ui),
    }
}

/// The scrypt work factor for new bundles. Always [`keyferry::keys::EXPORT_WORK_FACTOR`] in
/// release builds; debug builds (the test suite) may lower it through
/// `KEYFERRY_INSECURE_TEST_WORK_FACTOR`, loudly.
pub fn export_work_factor(ui: &Ui) -> u8 {
    #[cfg(debug_assertions)]
    {
        if let Some(wf) = std::env::var("KEYFERRY_INSECURE_TEST_WORK_FACTOR")
            .ok()
            .and_then(|v| v.parse::<u8>().ok())
            .filter(|wf| (1..=keyferry::keys::EXPORT_WORK_FACTOR).contains(wf))
        {
            ui.warn(&format!(
                "debug build: scrypt work factor {wf} from KEYFERRY_INSECURE_TEST_WORK_FACTOR (tests only)"
            ));
            return wf;
        }
    }
    let _ = ui;
    keyferry::keys::EXPORT_WORK_FACTOR
}

pub fn success() -> CmdResult {
    Ok(crate::exit::SUCCESS.into())
}
