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
    /// Which kept tree to go back to: 1 the newest (the tree the last sync replaced), 2 the
    /// one before it, ... (see --list); anything but the newest needs --older
    #[arg(long, value_name = "N", default_value_t = 1,
          value_parser = clap::value_parser!(u32).range(1..=keyferry::sync::MAX_KEEP as i64))]
    pub generation: u32,
    /// List each target's kept trees (generation, the sync that replaced it, when, the
    /// fingerprints) and change nothing
    #[arg(long, conflicts_with_all = ["older", "generation"])]
    pub list: bool,
}

/// One kept tree, for `--list`.
#[derive(Serialize)]
struct Kept {
    generation: u32,
    path: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    replaced_by: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    time: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    mode: Option<keyferry::sync::Mode>,
    /// What a rollback to it would do: `back` (the tree before the last sync), `older`,
    /// `already` (what a rollback replaced), `unfinished` (an interrupted sync's).
    state: &'static str,
    #[serde(skip_serializing_if = "String::is_empty")]
    fingerprint: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    source_fingerprint: String,
}

#[derive(Serialize)]
struct Row {
    node: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    kept: Option<Vec<Kept>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    recovered: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    rolled_back: Option<keyferry::sync::RolledBack>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<crate::failure::ErrorDoc>,
}

pub fn run(args: Args, ui: &Ui) -> CmdResult {
    let resolved = args.endpoints.resolve_for(false)?;
    if !args.list {
        resolved.recover_first(ui, args.wait.wait)?;
    }
    let rows = for_each_pair(&resolved.pairs, 1, |pair| {
        let mut row = Row {
            kept: None,
            node: label(&pair.node, &pair.slot),
            recovered: None,
            rolled_back: None,
            error: None,
        };
        let r = (|| -> keyferry::Result<()> {
            let target = super::target_path(&pair.target)?;
            if args.list {
                row.kept = Some(list(&resolved.state_dir, &target)?);
                return Ok(());
            }
            keyferry::sync::check_parent(&target)?;
            let _lock =
                keyferry::txn::NodeLock::acquire(&resolved.state_dir, &pair.node, args.wait.wait)?;
            // An interrupted rollback, finished, is the rollback asked for; an interrupted
            // sync is finished first and then rolled back.
            let interrupted = keyferry::sync::SyncJournal::load(&resolved.state_dir, &target)?
                .filter(|j| j.stage != keyferry::sync::Stage::Preparing)
                .map(|j| j.action);
            row.recovered = keyferry::sync::recover(&resolved.state_dir, &target)?;
            if interrupted == Some(keyferry::sync::Action::Rollback) {
                return Ok(());
            }
            row.rolled_back = Some(keyferry::sync::rollback(
                &resolved.state_dir,
                &pair.node,
                &target,
                &resolved.profile,
                args.older,
                args.generation,
            )?);
            Ok(())
        })();
        if let Err(e) = r {
            row.error = Some(Failure::from(e).into());
        }
        row
    });
    #[derive(Serialize)]
    struct RolledBack<'a> {
        targets: &'a [Row],
    }
    ui.show("sync-rollback", &RolledBack { targets: &rows }, || {
        for r in &rows {
            if let Some(rec) = &r.recovered {
                ui.info(&format!("{}: {rec}", r.node));
            }
            if let Some(kept) = &r.kept {
                ui.out(&format!(
                    "{}: {} kept tree{}",
                    r.node,
                    kept.len(),
                    if kept.len() == 1 { "" } else { "s" }
                ));
                for k in kept {
                    ui.out(&format!(
                        "  {}  {}  {}{}{}",
                        k.generation,
                        k.path,
                        match k.state {
                            "back" => "the tree before the last sync".to_string(),
                            "older" => "from before an earlier sync (--older)".to_string(),
                            "already" => "what a rollback replaced (rolling back to it is \
                                          already done)"
                                .to_string(),
                            _ => "an interrupted sync's (a rerun of sync finishes it)".to_string(),
                        },
                        k.replaced_by
                            .as_ref()
                            .map(|id| format!(
                                "; replaced by {id} at {}",
                                k.time.as_deref().unwrap_or("?")
                            ))
                            .unwrap_or_default(),
                        if k.fingerprint.is_empty() {
                            String::new()
                        } else {
                            format!("; fingerprint {}", k.fingerprint)
                        }
                    ));
                }
            }
            if let Some(rb) = r.rolled_back.as_ref().filter(|rb| rb.already) {
                ui.out(&format!(
                    "{}: already rolled back from sync {} (generation {}); nothing to do \
                     (keyferry sync goes forward again)",
                    r.node, rb.id, rb.generation
                ));
            } else if let Some(rb) = &r.rolled_back {
                ui.out(&format!(
                    "{}: back to generation {}, the folder before sync {} ({} protected files \
                     checked unchanged)",
                    r.node, rb.generation, rb.id, rb.protected_checked
                ));
            }
            if let Some(e) = &r.error {
                ui.failure(&crate::failure::shown(e, &format!("{}: ", r.node)));
            }
        }
    });
    let changed = rows
        .iter()
        .filter(|r| r.rolled_back.as_ref().is_some_and(|rb| !rb.already))
        .count();
    let failed = rows.iter().filter(|r| r.error.is_some()).count();
    Ok(ExitCode::from(crate::exit::of_many(changed, failed)))
}

/// The kept trees of `target`, with what a rollback to each would do.
fn list(state_dir: &std::path::Path, target: &std::path::Path) -> keyferry::Result<Vec<Kept>> {
    let last = keyferry::sync::LastSync::load(state_dir, target);
    Ok(keyferry::sync::generations(target)?
        .into_iter()
        .map(|g| {
            let state = match &g.record {
                None => "unfinished",
                Some(r) if r.by_rollback => "already",
                Some(r) if last.as_ref().is_none_or(|l| l.id == r.id) && g.number == 1 => "back",
                Some(_) => "older",
            };
            Kept {
                generation: g.number,
                path: g.path.display().to_string(),
                replaced_by: g.record.as_ref().map(|r| r.id.clone()),
                time: g.record.as_ref().map(|r| r.time.to_string()),
                mode: g.record.as_ref().map(|r| r.mode),
                state,
                fingerprint: g
                    .record
                    .as_ref()
                    .map(|r| r.fingerprint.clone())
                    .unwrap_or_default(),
                source_fingerprint: g
                    .record
                    .as_ref()
                    .map(|r| r.source_fingerprint.clone())
                    .unwrap_or_default(),
            }
        })
        .collect())
}
