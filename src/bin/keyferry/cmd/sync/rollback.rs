//! `keyferry sync rollback`: put back the folder the last sync replaced on each target (kept
//! beside it as `<folder>.keyferry-prev`). Protected files stay the target's own; the folder
//! that was in place is kept in turn, so a rollback can be rolled back.

use super::{for_each_pair, label, Endpoints};
use crate::cmd::CmdResult;
use crate::failure::Failure;
use crate::node_args::WaitArgs;
use crate::ui::Ui;
use serde::Serialize;
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
#[command(
    after_help = "Exit status: 0 every target is back to its previous folder; 2 error, nothing \
rolled back; 3 some targets rolled back and others failed (the lines say which)."
)]
pub struct Args {
    #[command(flatten)]
    pub endpoints: Endpoints,
    #[command(flatten)]
    pub wait: WaitArgs,
    /// Go back to the kept tree even when it is older than the target's last sync (a later
    /// sync found nothing to change, so the kept tree is from an earlier one)
    #[arg(long)]
    pub older: bool,
}

#[derive(Serialize)]
struct Row {
    node: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    recovered: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    rolled_back: Option<keyferry::sync::RolledBack>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<crate::failure::ErrorDoc>,
}

pub fn run(args: Args, ui: &Ui) -> CmdResult {
    let resolved = args.endpoints.resolve_for(false)?;
    let rows = for_each_pair(&resolved.pairs, 1, |pair| {
        let mut row = Row {
            node: label(&pair.node, &pair.slot),
            recovered: None,
            rolled_back: None,
            error: None,
        };
        let r = (|| -> keyferry::Result<()> {
            let target = super::target_path(&pair.target)?;
            keyferry::sync::apply::check_parent(&target)?;
            let _lock =
                keyferry::txn::NodeLock::acquire(&resolved.state_dir, &pair.node, args.wait.wait)?;
            // An interrupted rollback, finished, is the rollback asked for; an interrupted
            // sync is finished first and then rolled back.
            let interrupted =
                keyferry::sync::journal::SyncJournal::load(&resolved.state_dir, &target)?
                    .filter(|j| j.stage != keyferry::sync::journal::Stage::Building)
                    .map(|j| j.action);
            row.recovered = keyferry::sync::recover(&resolved.state_dir, &target)?;
            if interrupted == Some(keyferry::sync::journal::Action::Rollback) {
                return Ok(());
            }
            row.rolled_back = Some(keyferry::sync::rollback(
                &resolved.state_dir,
                &pair.node,
                &target,
                &resolved.profile,
                args.older,
            )?);
            Ok(())
        })();
        if let Err(e) = r {
            row.error = Some(Failure::from(e).into());
        }
        row
    });
    if ui.json {
        #[derive(Serialize)]
        struct Doc<'a> {
            version: u32,
            kind: &'static str,
            targets: &'a [Row],
        }
        ui.json(&Doc {
            version: keyferry::JSON_VERSION,
            kind: "sync-rollback",
            targets: &rows,
        });
    } else {
        for r in &rows {
            if let Some(rec) = &r.recovered {
                ui.info(&format!("{}: {rec}", r.node));
            }
            if let Some(rb) = r.rolled_back.as_ref().filter(|rb| rb.already) {
                ui.out(&format!(
                    "{}: already rolled back from sync {}; nothing to do (keyferry sync goes \
                     forward again)",
                    r.node, rb.id
                ));
            } else if let Some(rb) = &r.rolled_back {
                ui.out(&format!(
                    "{}: back to the folder before sync {} ({} protected files checked unchanged)",
                    r.node, rb.id, rb.protected_checked
                ));
            }
            if let Some(e) = &r.error {
                ui.failure(&e.failure(&format!("{}: ", r.node)));
            }
        }
    }
    let changed = rows
        .iter()
        .filter(|r| r.rolled_back.as_ref().is_some_and(|rb| !rb.already))
        .count();
    let failed = rows.iter().filter(|r| r.error.is_some()).count();
    Ok(ExitCode::from(crate::exit::of_many(changed, failed)))
}
