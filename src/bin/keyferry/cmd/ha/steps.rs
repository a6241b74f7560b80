//! `keyferry ha replica init`, `ha failover` and `ha rejoin`: the steps that stop, copy,
//! promote and start servers.

use super::emit;
use super::PairArgs;
use crate::cmd::CmdResult;
use crate::ui::Ui;
use clap::Subcommand;
use keyferry::ha::check::{run_on, PeerRun};
use keyferry::ha::config::HaNode;
use keyferry::ha::replica::{self, LostPrimary};
use std::io::IsTerminal;
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

#[derive(Debug, clap::Args)]
#[command(
    after_help = "Run on a node whose server must not come back as a primary (a primary \
about to be given up, or lost and back): writes an empty standby.signal into its data folder \
first, so any start makes a read-only standby, then stops its server if it runs. `ha failover \
--primary-lost` runs it over ssh on the lost primary where it can.\n\n\
Exit status: 0 fenced; 2 failed."
)]
pub struct FenceArgs {
    #[command(flatten)]
    pub pair: PairArgs,
}

fn show_plan(ui: &Ui, plan: &[String]) {
    ui.out("would:");
    for (i, p) in plan.iter().enumerate() {
        ui.out(&format!("  {}. {p}", i + 1));
    }
    ui.out("nothing was changed (--dry-run)");
}

pub fn replica(c: ReplicaCommand, ui: &Ui) -> CmdResult {
    let ReplicaCommand::Init(args) = c;
    let loaded = args.pair.load()?;
    let node = args.pair.local(&loaded.pair)?;
    let mut opts = replica::InitOptions::new(
        args.remove_old,
        args.replace_database_of.clone(),
        args.dry_run,
    );
    opts.empty_archive = args.empty_archive;
    let r = replica::init(&loaded.connector(), node, &opts, &|l| ui.info(l))?;
    if ui.json {
        emit(ui, "ha-replica-init", &r);
        return Ok(ExitCode::SUCCESS);
    }
    for w in &r.warnings {
        ui.warn(w);
    }
    if r.dry_run {
        ui.out(&format!("replica init of {} from {}:", r.node, r.primary));
        ui.out(&format!("  replaced: {}", r.replaced.line()));
        ui.out(&format!("  copied:   {}", r.source.line()));
        show_plan(ui, &r.plan);
        return Ok(ExitCode::SUCCESS);
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
    Ok(ExitCode::SUCCESS)
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
            _ => Err(keyferry::Error::HaFailed {
                why: format!(
                    "keyferry ha fence on {} failed: {}",
                    node.name,
                    done.last_error_line()
                ),
                hint: "run keyferry ha fence on it by hand".into(),
            }),
        }
    }

    fn confirm_off(&self, node: &HaNode) -> bool {
        if !self.ui.can_prompt() || !std::io::stdin().is_terminal() {
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
    let lost = Lost {
        run: PeerRun {
            file: &loaded.file,
            cluster_path: &args.pair.cluster,
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
    if ui.json {
        ui.report(&r);
        return Ok(ExitCode::SUCCESS);
    }
    if r.dry_run {
        ui.out(&format!(
            "failover from {} to {} ({}):",
            r.old_primary,
            r.new_primary,
            if r.planned { "planned" } else { "primary lost" }
        ));
        show_plan(ui, &r.plan);
        return Ok(ExitCode::SUCCESS);
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
    Ok(ExitCode::SUCCESS)
}

pub fn rejoin(args: RejoinArgs, ui: &Ui) -> CmdResult {
    let loaded = args.pair.load()?;
    let node = args.pair.local(&loaded.pair)?;
    let opts = replica::RejoinOptions {
        dry_run: args.dry_run,
        remove_old: args.remove_old,
    };
    let r = replica::rejoin(&loaded.connector(), node, &opts, &|l| ui.info(l))?;
    if ui.json {
        ui.report(&r);
        return Ok(ExitCode::SUCCESS);
    }
    for w in &r.warnings {
        ui.warn(w);
    }
    if r.dry_run {
        ui.out(&format!(
            "rejoin of {} to {} by {}:",
            r.node, r.primary, r.method
        ));
        show_plan(ui, &r.plan);
        return Ok(ExitCode::SUCCESS);
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
    Ok(ExitCode::SUCCESS)
}

pub fn fence(args: FenceArgs, ui: &Ui) -> CmdResult {
    let (_, pair) = args.pair.load_pair()?;
    let node = args.pair.local(&pair)?;
    let r = replica::fence(node)?;
    if ui.json {
        emit(ui, "ha-fence", &r);
        return Ok(ExitCode::SUCCESS);
    }
    ui.out(&format!(
        "{} is fenced: standby.signal {}; its server {}",
        r.node,
        if r.signal_written {
            "written"
        } else {
            "was already there"
        },
        if r.stopped {
            "was stopped"
        } else {
            "was not running"
        }
    ));
    Ok(ExitCode::SUCCESS)
}
