//! `keyferry ha rejoin`: a former primary becomes a replica of the new one.

use super::{show_plan, PairArgs};
use crate::cmd::CmdResult;
use crate::ui::Ui;
use keyferry::ha::replica;
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
#[command(
    after_help = "Run on the old primary after a failover, its server started or not. \
Refused on the running primary, on a database that is not the peer's (different system \
identifiers), and across PostgreSQL major versions. pg_rewind when it can work (wal_log_hints \
or data checksums; after a crash it finishes the crash recovery first, which needs \
wal_keep_size), then this node's own settings are put back (pg_rewind copies the new \
primary's) and the recovery settings written; otherwise a fresh base backup as replica init \
does (the old folder kept unless --remove-old), and the report says why. Waits until it \
streams.\n\n\
Exit status: 0 streaming (or, with --dry-run, the plan); 2 refused or failed."
)]
pub struct RejoinArgs {
    #[command(flatten)]
    pub pair: PairArgs,
    /// Every check, then the method and what would be stopped and replaced; nothing changes
    #[arg(long)]
    pub dry_run: bool,
    /// When a fresh copy replaces the rewind: remove the old data folder once it streams
    #[arg(long)]
    pub remove_old: bool,
}

pub fn rejoin(args: RejoinArgs, ui: &Ui) -> CmdResult {
    let loaded = args.pair.load()?;
    let node = args.pair.local(&loaded.pair)?;
    if !args.dry_run {
        loaded.recover_first(ui, node, keyferry::recover::Own::Nothing)?;
    }
    let opts = replica::RejoinOptions {
        dry_run: args.dry_run,
        remove_old: args.remove_old,
    };
    let r = replica::rejoin(&loaded.connector(), node, &opts, &|l| ui.info(l))?;
    ui.show_report(&r, || {
        for w in &r.warnings {
            ui.warn(w);
        }
        if r.dry_run {
            ui.out(&format!(
                "rejoin of {} to {} by {}:",
                r.node, r.primary, r.method
            ));
            show_plan(ui, &r.plan);
            return;
        }
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
        if let Some(old) = &r.old_folder {
            ui.out(&format!("the old data folder is kept in {}", old.display()));
        }
        for slot in &r.removed_slots {
            ui.out(&format!("removed replication slot {slot}: left from when it was the primary, it held WAL for nobody"));
        }
        for c in &r.settings_changed {
            ui.out(&format!("changed: {c}"));
        }
    });
    Ok(ExitCode::SUCCESS)
}
