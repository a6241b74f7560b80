//! `keyferry ha replica init`: this node becomes a streaming replica of its peer.

use super::{show_plan, PairArgs};
use crate::cmd::CmdResult;
use crate::ui::Ui;
use clap::Subcommand;
use keyferry::ha::replica;
use std::process::ExitCode;

#[derive(Debug, Subcommand)]
pub enum ReplicaCommand {
    /// Make this node a streaming replica of its peer (the vendor's "Configure HA Secondary")
    Init(InitArgs),
}

#[derive(Debug, clap::Args)]
#[command(
    after_help = "Run on the node that becomes the replica. Preflight changes nothing: the \
primary answers and is a primary, its pg_hba.conf lets this node replicate, a WAL sender is \
free, both run the same PostgreSQL major version, there is room on disk, and this node's data \
folder is the pair's replica side: refused, showing both servers' system identifiers, roles, \
sizes and last writes, when the cluster file names this node the primary (and it is not a \
replica of the peer), when it is a primary of the same database (split brain), or when it is \
a primary with data of its own; --replace-database-of NODE says that node's database is to \
go. Then a base backup of the primary is taken into <data>.keyferry-new (made like the data \
folder) while this node's server is stopped, the recovery settings are written \
(primary_conninfo naming the password file, a replication slot), this node's port, \
listen_addresses and configuration files are put back, the folders are swapped, the server \
is started and keyferry waits until it streams. If it does not stream, the old folder is put \
back and started. The old data folder is kept as <data>.keyferry-old-<time> unless \
--remove-old.\n\n\
Exit status: 0 streaming (or, with --dry-run, the plan); 2 refused or failed (the message \
says what was put back)."
)]
pub struct InitArgs {
    #[command(flatten)]
    pub pair: PairArgs,
    /// Every check, then what would be stopped, copied, kept and started; nothing changes
    #[arg(long)]
    pub dry_run: bool,
    /// Remove the old data folder once the replica streams (kept by default, the way back)
    #[arg(long)]
    pub remove_old: bool,
    /// Empty this node's Archive folder first (the vendor's step), its entries moved aside
    /// to <archive>.keyferry-old-<time>
    #[arg(long)]
    pub empty_archive: bool,
    /// Replace this node's database although it is the cluster file's primary or a primary
    /// with data of its own (name this node: its data is given up)
    #[arg(long, value_name = "NODE")]
    pub replace_database_of: Option<String>,
}

pub fn replica(c: ReplicaCommand, ui: &Ui) -> CmdResult {
    let ReplicaCommand::Init(args) = c;
    let loaded = args.pair.load()?;
    let node = args.pair.local(&loaded.pair)?;
    if !args.dry_run {
        loaded.recover_first(ui, node, keyferry::recover::Own::Swap)?;
    }
    let mut opts = replica::InitOptions::new(
        args.remove_old,
        args.replace_database_of.clone(),
        args.dry_run,
    );
    opts.empty_archive = args.empty_archive;
    let r = replica::init(&loaded.connector(), node, &opts, &|l| ui.info(l))?;
    ui.show("ha-replica-init", &r, || {
        for w in &r.warnings {
            ui.warn(w);
        }
        if r.dry_run {
            ui.out(&format!("replica init of {} from {}:", r.node, r.primary));
            ui.out(&format!("  replaced: {}", r.replaced.line()));
            ui.out(&format!("  copied:   {}", r.source.line()));
            show_plan(ui, &r.plan);
            return;
        }
        ui.out(&format!(
            "{} streams from {} (slot {}); {} MB copied in {:.1} s",
            r.node,
            r.primary,
            r.slot,
            r.bytes / 1_000_000,
            r.seconds
        ));
        ui.out(&format!(
            "  {}",
            r.phases
                .iter()
                .map(|(n, s)| format!("{n} {s:.2} s"))
                .collect::<Vec<_>>()
                .join(", ")
        ));
        if let Some(old) = &r.old_folder {
            ui.out(&format!(
            "the old data folder is kept in {} (remove it when you no longer need the way back)",
            old.display()
        ));
        }
        for c in &r.settings_changed {
            ui.out(&format!("changed: {c}"));
        }
        if let Some(b) = &r.archive_backup {
            ui.out(&format!(
                "the Archive folder was emptied; its entries are in {}",
                b.display()
            ));
        }
    });
    Ok(ExitCode::SUCCESS)
}
