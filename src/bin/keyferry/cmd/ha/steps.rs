//! `keyferry ha replica init`, `ha failover` and `ha rejoin`: the steps that stop, copy,
//! promote and start servers.

use super::emit;
use super::PairArgs;
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
    after_help = "Run on the node that becomes the replica. Preflight (the primary answers \
and is a primary, its pg_hba.conf lets this node replicate, a WAL sender is free, room on disk) \
changes nothing; then a base backup of the primary is taken into <data>.keyferry-new (made \
like the data folder) while this node's server is stopped, the recovery settings are written (primary_conninfo naming the password \
file, a replication slot), this node's port, listen_addresses and pg_hba.conf are put back, the \
folders are swapped, the server is started and keyferry waits until it streams. If it does not \
stream, the old folder is put back and started.\n\n\
Exit status: 0 streaming; 2 refused or failed (the message says what was put back)."
)]
pub struct InitArgs {
    #[command(flatten)]
    pub pair: PairArgs,
    /// Keep the old data folder as <data>.keyferry-old once the replica streams
    #[arg(long)]
    pub keep_old: bool,
}

#[derive(Debug, clap::Args)]
#[command(
    after_help = "Planned (the default): run on the current primary. It is stopped \
cleanly, keyferry checks that the replica received its last WAL (no committed row is lost), \
fences it (standby.signal: a start makes a read-only standby, never a second primary), promotes \
the replica (pg_promote) and checkpoints so the new timeline is on disk.\n\n\
--primary-lost: the primary is gone; it must not answer. The replica is promoted; fence the old \
primary before it comes back.\n\n\
Exit status: 0 promoted; 2 refused or failed."
)]
pub struct FailoverArgs {
    #[command(flatten)]
    pub pair: PairArgs,
    /// The primary is gone: promote the replica without stopping it
    #[arg(long)]
    pub primary_lost: bool,
}

#[derive(Debug, clap::Args)]
#[command(
    after_help = "Run on the old primary after a failover, its server started or not. \
pg_rewind when it can work (wal_log_hints or data checksums; after a crash it finishes the \
crash recovery first, which needs wal_keep_size), then this node's own settings are put back \
(pg_rewind copies the new primary's) and the recovery settings written; otherwise a fresh base \
backup as replica init does, and the report says why. Waits until it streams.\n\n\
Exit status: 0 streaming; 2 refused or failed."
)]
pub struct RejoinArgs {
    #[command(flatten)]
    pub pair: PairArgs,
}

pub fn replica(c: ReplicaCommand, ui: &Ui) -> CmdResult {
    let ReplicaCommand::Init(args) = c;
    let loaded = args.pair.load()?;
    let node = args.pair.local(&loaded.pair)?;
    ui.info(&format!(
        "making {} a replica of {} (stops its server, copies the primary)...",
        node.name,
        loaded.pair.peer_of(node).name
    ));
    let r = replica::init(&loaded.connector(), node, args.keep_old)?;
    if ui.json {
        emit(ui, "ha-replica-init", &r);
    } else {
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
            ui.out(&format!("the old data folder is kept in {}", old.display()));
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub fn failover(args: FailoverArgs, ui: &Ui) -> CmdResult {
    let loaded = args.pair.load()?;
    let node = args.pair.local(&loaded.pair)?;
    let r = replica::failover(&loaded.connector(), node, args.primary_lost)?;
    if ui.json {
        emit(ui, "ha-failover", &r);
    } else {
        let tl = |t: Option<u32>| t.map(|t| t.to_string()).unwrap_or("?".into());
        ui.out(&format!(
            "{} is the primary now (timeline {} -> {}); {} {}",
            r.new_primary,
            tl(r.timeline_before),
            tl(r.timeline_after),
            r.old_primary,
            if r.fenced {
                "is stopped and fenced"
            } else {
                "was not reachable"
            }
        ));
        for n in &r.next {
            ui.out(&format!("next: {n}"));
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub fn rejoin(args: RejoinArgs, ui: &Ui) -> CmdResult {
    let loaded = args.pair.load()?;
    let node = args.pair.local(&loaded.pair)?;
    let r = replica::rejoin(&loaded.connector(), node)?;
    if ui.json {
        emit(ui, "ha-rejoin", &r);
    } else {
        ui.out(&format!(
            "{} streams from {} again ({} in {:.1} s{})",
            r.node,
            r.primary,
            r.method,
            r.seconds,
            r.why_not_rewind
                .as_deref()
                .map(|w| format!("; no rewind: {w}"))
                .unwrap_or_default()
        ));
    }
    Ok(ExitCode::SUCCESS)
}
