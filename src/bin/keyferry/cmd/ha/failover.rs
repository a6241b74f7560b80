//! `keyferry ha failover`: the replica promoted; a lost primary fenced over ssh or
//! confirmed off by the admin.

use super::{show_plan, PairArgs};
use crate::cmd::CmdResult;
use crate::ui::Ui;
use keyferry::ha::replica::{self, LostPrimary};
use keyferry::ha::HaNode;
use keyferry::ha::{run_on, PeerRun};
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
#[command(
    after_help = "Planned (the default): run on the current primary. It is stopped \
cleanly, keyferry checks that the replica received its last WAL (no committed row is lost), \
fences it (standby.signal: a start makes a read-only standby, never a second primary), promotes \
the replica (pg_promote) and checkpoints so the new timeline is on disk.\n\n\
--primary-lost: the primary is gone. Refused while its PostgreSQL answers in any way (a \
refused login proves it runs) or anything accepts connections on its PostgreSQL port. Where \
its access is ssh://, its own keyferry stops and fences it first (keyferry ha fence); \
otherwise you confirm that the machine is off by typing its name (or --confirm-lost NODE). \
Then the replica is promoted.\n\n\
Exit status: 0 promoted (or, with --dry-run, the plan); 2 refused or failed."
)]
pub struct FailoverArgs {
    #[command(flatten)]
    pub pair: PairArgs,
    /// The primary is gone: promote the replica without stopping the primary cleanly
    #[arg(long)]
    pub primary_lost: bool,
    /// With --primary-lost: the lost primary's name, confirming that the machine is off
    #[arg(long, value_name = "NODE", requires = "primary_lost")]
    pub confirm_lost: Option<String>,
    /// Every check, then what would be stopped, fenced and promoted; nothing changes
    #[arg(long)]
    pub dry_run: bool,
    #[command(flatten)]
    pub ssh: crate::node_args::SshArgs,
}

/// `--primary-lost`'s reach to the old primary (its keyferry over ssh) and to the admin.
struct Lost<'a> {
    run: PeerRun<'a>,
    ui: &'a Ui,
}

impl LostPrimary for Lost<'_> {
    fn fence(&self, node: &HaNode) -> keyferry::Result<Option<String>> {
        let Some(done) = run_on(&self.run, node, &["ha", "fence"])? else {
            return Ok(None);
        };
        let report: Option<replica::FenceReport> =
            serde_json::from_slice::<serde_json::Value>(&done.stdout)
                .ok()
                .filter(|v| {
                    v["kind"] == "ha-fence"
                        && v["node"]
                            .as_str()
                            .is_some_and(|n| n.eq_ignore_ascii_case(&node.name))
                })
                .and_then(|v| serde_json::from_value(v).ok());
        match (done.success, report) {
            (true, Some(r)) => Ok(Some(format!(
                "standby.signal {}, server {}",
                if r.signal_written {
                    "written"
                } else {
                    "already there"
                },
                if r.stopped {
                    "stopped"
                } else {
                    "was not running"
                }
            ))),
            _ => Err(keyferry::Error::ha_failed(
                format!(
                    "keyferry ha fence on {} failed: {}",
                    node.name,
                    done.last_error_line()
                ),
                keyferry::HaReason::FenceFailed,
            )),
        }
    }

    fn confirm_off(&self, node: &HaNode) -> bool {
        if !self.ui.can_prompt() || !self.ui.stdin_is_terminal() {
            return false;
        }
        self.ui.warn(&format!(
            "nothing of {} answers. Promoting now is safe only if it is off and cannot come back \
             as a primary.",
            node.name
        ));
        self.ui
            .ask_line(&format!("Type {} to confirm it is off:", node.name))
            .is_some_and(|l| l.trim() == node.name)
    }
}

pub fn failover(args: FailoverArgs, ui: &Ui) -> CmdResult {
    let loaded = args.pair.load()?;
    let node = args.pair.local(&loaded.pair)?;
    if !args.dry_run {
        loaded.recover_first(ui, node, keyferry::recover::Own::Nothing)?;
    }
    let lost = Lost {
        run: PeerRun {
            file: &loaded.file,
            cluster_path: &args.pair.cluster.path,
            ssh: args.ssh.client(),
            timeout: std::time::Duration::from_secs(180),
        },
        ui,
    };
    let opts = replica::FailoverOptions {
        primary_lost: args.primary_lost,
        dry_run: args.dry_run,
        confirmed_off: args.confirm_lost.clone(),
    };
    let r = replica::failover(&loaded.connector(), node, &opts, &lost)?;
    ui.show_report(&r, || {
        if r.dry_run {
            ui.out(&format!(
                "failover from {} to {} ({}):",
                r.old_primary,
                r.new_primary,
                if r.planned { "planned" } else { "primary lost" }
            ));
            show_plan(ui, &r.plan);
            return;
        }
        let tl = |t: Option<u32>| t.map(|t| t.to_string()).unwrap_or("?".into());
        ui.out(&format!(
            "{} is the primary now (timeline {} -> {}); {} {}",
            r.new_primary,
            tl(r.timeline_before),
            tl(r.timeline_after),
            r.old_primary,
            match (r.planned, r.fenced) {
                (_, true) => "is stopped and fenced",
                (false, false) => "was confirmed off",
                (true, false) => "is stopped",
            }
        ));
        for slot in &r.removed_slots {
            ui.out(&format!(
                "removed replication slot {slot}: nothing uses it any more"
            ));
        }
        for n in &r.next {
            ui.out(&format!("next: {n}"));
        }
    });
    Ok(ExitCode::SUCCESS)
}
