//! `keyferry sync`: plan each target, print the plan (`--dry-run`) or apply it, several
//! targets at once, a progress bar each, then one summary table.

use super::{for_each_pair, label, Endpoints, Pair};
use crate::cmd::CmdResult;
use crate::failure::{Code, Failure};
use crate::node_args::WaitArgs;
use crate::ui::Ui;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use keyferry::sync::{self, ApplyOptions, PlanOptions, SyncPlan, SyncProgress};
use keyferry::text::size;
use keyferry::Error;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub endpoints: Endpoints,
    /// Show what would be added, updated and deleted on each target; change nothing
    #[arg(long, short = 'n')]
    pub dry_run: bool,
    /// Refuse a target that would lose more files than this (a wrong folder would lose all)
    #[arg(long, value_name = "N", default_value_t = sync::DEFAULT_MAX_DELETE)]
    pub max_delete: usize,
    /// Compare files by content when planning, not by size and modification time
    #[arg(long)]
    pub checksum: bool,
    /// A target may be an empty folder (a new node); it gets the whole application
    #[arg(long)]
    pub new_target: bool,
    /// Put app_offline.htm in each target while its files go in (ASP.NET unloads the site,
    /// freeing files IIS holds open); removed afterwards
    #[arg(long)]
    pub app_offline: bool,
    /// Stop this IIS application pool while files go in and start it again afterwards
    /// (Windows, on the target itself: run sync there with --from)
    #[arg(long, value_name = "NAME")]
    pub app_pool: Option<String>,
    /// Move files in one by one instead of swapping the folder (for folders IIS keeps open)
    #[arg(long, conflicts_with = "no_in_place")]
    pub in_place: bool,
    /// Never move files in one by one: where the folder cannot be swapped (files held open, no
    /// hard links on a share), stop with the target unchanged
    #[arg(long)]
    pub no_in_place: bool,
    /// Copy from a node the cluster file does not call the primary (unusual: the upgraded
    /// node, whose folder is copied, is the primary; say why in the change record)
    #[arg(long)]
    pub from_non_primary: bool,
    /// Let the cluster file's primary be a target: its application folder is replaced by
    /// another node's (unusual: the primary is the upgraded node, the source)
    #[arg(long)]
    pub replace_primary: bool,
    /// Previous trees kept beside each target for sync rollback, newest first (1 to 20);
    /// the oldest beyond this goes when a sync keeps another
    #[arg(long, value_name = "N", default_value_t = keyferry::sync::DEFAULT_KEEP as u8,
          value_parser = clap::value_parser!(u8).range(1..=keyferry::sync::MAX_KEEP as i64))]
    pub keep: u8,
    /// Targets synced at once (1 to 64)
    #[arg(long, short = 'j', default_value_t = 4, value_name = "N",
          value_parser = clap::value_parser!(u16).range(1..=64))]
    pub jobs: u16,
    #[command(flatten)]
    pub wait: WaitArgs,
}

use keyferry::report::{PlanSummary, SyncReport, SyncResult, SyncTarget as TargetResult};

/// One target's progress: a bar on a terminal; where stderr is a log or a pipe (a step of an
/// upgrade run here or over ssh, a scheduled task) and the run asks for it (`--batch`, or
/// KEYFERRY_STEP_PROGRESS=1 from an upgrade run), a line at each phase and every 10 seconds.
struct Bar(ProgressBar, String, Option<std::sync::Mutex<Lines>>);

struct Lines {
    what: String,
    total: u64,
    done: u64,
    said: std::time::Instant,
}

/// How often a progress line is printed while a phase goes on.
const LINE_EVERY: std::time::Duration = std::time::Duration::from_secs(10);

impl Bar {
    fn line(&self, l: &Lines) {
        let amount = if l.total > 0 {
            format!(" {} of {}", size(l.done), size(l.total))
        } else {
            String::new()
        };
        let _ = writeln!(
            std::io::stderr().lock(),
            "{}: {}{amount}",
            crate::ui::escape(&self.1),
            l.what
        );
    }
}

impl SyncProgress for Bar {
    fn phase(&self, what: &str, _files: u64, bytes: u64) {
        self.0.set_length(bytes);
        self.0.set_position(0);
        self.0.set_message(format!("{} {what}", self.1));
        if let Some(m) = &self.2 {
            let Ok(mut l) = m.lock() else { return };
            *l = Lines {
                what: what.to_owned(),
                total: bytes,
                done: 0,
                said: std::time::Instant::now(),
            };
            self.line(&l);
        }
    }
    fn advance(&self, bytes: u64) {
        self.0.inc(bytes);
        if let Some(m) = &self.2 {
            let Ok(mut l) = m.lock() else { return };
            l.done = l.done.saturating_add(bytes).min(l.total);
            if l.said.elapsed() >= LINE_EVERY {
                l.said = std::time::Instant::now();
                self.line(&l);
            }
        }
    }
}

pub fn run(args: RunArgs, ui: &Ui) -> CmdResult {
    let resolved = args.endpoints.resolve()?;
    if !args.dry_run {
        resolved.recover_first(ui, args.wait.wait)?;
    }
    if args.app_pool.is_some() && args.endpoints.cluster_file().is_some() {
        return Err(Failure::new(
            Code::Usage,
            "--app-pool stops a pool on this machine, but the targets of a cluster sync are other machines",
            Some("run the sync on each target instead: keyferry sync --profile secret-server --from \\\\primary\\share --root C:\\inetpub\\wwwroot\\SecretServer --app-pool NAME; or use --app-offline"),
        ));
    }
    use keyferry::profile::Role;
    if let Some((name, role)) = &resolved.source_node {
        if *role != Role::Primary && !args.from_non_primary {
            return Err(Failure::library(
                Error::SyncRefused,
                format!(
                    "{name} is the {} in the cluster file, not the primary: sync copies the \
                     upgraded primary's folder to the other nodes",
                    role.as_str()
                ),
                Some(
                    "run keyferry sync on the primary (or name it with --node); if this node's \
                     folder really is the one to copy, say so with --from-non-primary",
                ),
            ));
        }
    }
    if !args.replace_primary {
        if let Some(p) = resolved
            .pairs
            .iter()
            .find(|p| p.role == Some(Role::Primary))
        {
            return Err(Failure::library(
                Error::SyncRefused,
                format!(
                    "{} is the cluster file's primary: its application folder would be replaced \
                     by {}'s",
                    p.node,
                    resolved
                        .source_node
                        .as_ref()
                        .map(|(n, _)| n.as_str())
                        .unwrap_or("the source")
                ),
                Some("leave it out of --to; if the primary's folder really is to be replaced, say so with --replace-primary"),
            ));
        }
    }
    for s in &resolved.skipped {
        ui.warn(s);
    }
    // A step of an upgrade run shows its progress though its report goes to stdout as JSON.
    let step = std::env::var_os("KEYFERRY_STEP_PROGRESS").is_some_and(|v| v == "1");
    let terminal = ui.stderr_is_terminal();
    let lines = !args.dry_run && !terminal && (ui.batch || step);
    let multi =
        MultiProgress::with_draw_target(if (ui.json && !step) || args.dry_run || !terminal {
            ProgressDrawTarget::hidden()
        } else {
            ProgressDrawTarget::stderr()
        });
    let style = ProgressStyle::with_template(
        "{msg:24} {bar:30} {decimal_bytes:>10}/{decimal_total_bytes:10} {elapsed}",
    )
    .expect("template");
    let opts = PlanOptions {
        allow_new_target: args.new_target,
        max_delete: args.max_delete,
        checksum: args.checksum,
    };
    let apply_opts = ApplyOptions {
        jobs: usize::MAX,
        app_offline: args.app_offline,
        in_place: args.in_place,
        no_in_place: args.no_in_place,
        keep: u32::from(args.keep),
    };
    // Several targets: planned together first, each source listed once and its files
    // compared with every target's in one pass (each target is planned again under its
    // lock only if a fresh listing differs).
    let early: Vec<std::sync::Mutex<Option<keyferry::Result<SyncPlan>>>> =
        if resolved.pairs.len() > 1 {
            let list: Vec<(PathBuf, PathBuf)> = resolved
                .pairs
                .iter()
                .map(|p| {
                    let t = super::target_path(&p.target).unwrap_or_else(|_| p.target.clone());
                    (p.source.clone(), t)
                })
                .collect();
            keyferry::sync::plan_many(&list, &resolved.profile, &opts)
                .into_iter()
                .map(|r| std::sync::Mutex::new(Some(r)))
                .collect()
        } else {
            vec![std::sync::Mutex::new(None)]
        };
    let results = for_each_pair(&resolved.pairs, usize::from(args.jobs), |pair| {
        let bar = Bar(
            multi.add(ProgressBar::new(0).with_style(style.clone())),
            label(&pair.node, &pair.slot),
            lines.then(|| {
                std::sync::Mutex::new(Lines {
                    what: String::new(),
                    total: 0,
                    done: 0,
                    said: std::time::Instant::now(),
                })
            }),
        );
        let at = resolved
            .pairs
            .iter()
            .position(|p| std::ptr::eq(p, pair))
            .unwrap_or(0);
        let planned = early
            .get(at)
            .and_then(|m| m.lock().ok().and_then(|mut g| g.take()));
        let r = sync_pair(pair, &resolved, &args, &opts, &apply_opts, &bar, planned);
        bar.0.finish_and_clear();
        r
    });
    let results = SyncReport { targets: results };
    report(&results, args.dry_run, ui);
    let results = &results.targets;
    let failed = results
        .iter()
        .filter(|r| {
            matches!(
                r.result,
                SyncResult::Failed | SyncResult::InstalledUnfinished
            )
        })
        .count();
    let changed = results.iter().filter(|r| r.result.changed()).count();
    Ok(ExitCode::from(crate::exit::of_many(changed, failed)))
}

/// A target's result as the table shows it (a failure in capitals).
fn result_word(r: SyncResult) -> String {
    match r {
        SyncResult::Planned => "planned",
        SyncResult::Synced => "synced",
        SyncResult::Unchanged => "unchanged",
        SyncResult::Failed => "FAILED",
        SyncResult::InstalledUnfinished => "installed-unfinished",
    }
    .into()
}

/// Plans (unless planned already), applies and reports one source-target pair.
fn sync_pair(
    pair: &Pair,
    resolved: &super::Resolved,
    args: &RunArgs,
    opts: &PlanOptions,
    apply_opts: &ApplyOptions,
    bar: &Bar,
    planned: Option<keyferry::Result<SyncPlan>>,
) -> TargetResult {
    let mut r = TargetResult {
        node: pair.node.clone(),
        slot: pair.slot.clone(),
        target: pair.target.display().to_string(),
        plan: None,
        summary: None,
        outcome: None,
        result: SyncResult::Failed,
        recovered: None,
        error: None,
    };
    let run = || -> Result<(), Failure> {
        let target = super::target_path(&pair.target)?;
        // Before the lock and the state folder: a refusal leaves nothing behind.
        if !args.dry_run {
            keyferry::sync::check_parent(&target)?;
        }
        let source = std::fs::canonicalize(&pair.source)
            .map_err(|e| keyferry::Error::io(&pair.source, e))?;
        // A refusal changes nothing, not even the state folder: plan first, unless an
        // interrupted sync of this target must be finished before its tree can be read.
        let interrupted = keyferry::sync::journal_path(&resolved.state_dir, &target).exists();
        let mut plan = None;
        if !interrupted {
            plan = Some(match planned {
                Some(p) => p?,
                None => sync::plan(&source, &target, &resolved.profile, opts)?,
            });
        }
        let _lock = if args.dry_run && !interrupted {
            None
        } else if args.dry_run {
            return Err(Failure::library(
                Error::SyncRefused,
                format!("a sync of {} was interrupted", target.display()),
                Some("run keyferry sync (it finishes the interrupted one first) or keyferry sync rollback"),
            ));
        } else {
            let lock =
                keyferry::txn::NodeLock::acquire(&resolved.state_dir, &pair.node, args.wait.wait)?;
            r.recovered = sync::recover(&resolved.state_dir, &target)?;
            if r.recovered.is_some() {
                plan = None;
            }
            Some(lock)
        };
        // Under the lock: the plan made before it stands only if neither tree changed since.
        let mut plan = match plan {
            Some(p) if _lock.is_some() => {
                sync::replan(p, &source, &target, &resolved.profile, opts)?
            }
            Some(p) => p,
            None => sync::plan(&source, &target, &resolved.profile, opts)?,
        };
        if args.dry_run {
            r.result = SyncResult::Planned;
            r.summary = Some(PlanSummary::of(&plan));
            r.plan = Some(plan);
            return Ok(());
        }
        if plan.is_times_only() {
            // The same bytes: only the source's times carried, in place; no new tree, no kept
            // tree (a rollback still goes back to the tree before the last real change).
            let warnings = keyferry::sync::set_times(&plan)?;
            plan.warnings.extend(warnings);
        }
        if plan.is_noop() || plan.is_times_only() {
            // Recorded: a rollback after it must not go back to a tree an earlier sync kept.
            keyferry::sync::LastSync::record(
                &resolved.state_dir,
                &target,
                &keyferry::sync::sync_id(),
                false,
            )?;
            r.result = SyncResult::Unchanged;
            r.summary = Some(PlanSummary::of(&plan));
            r.plan = Some(plan);
            return Ok(());
        }
        let _pool = match &args.app_pool {
            Some(name) => Some(keyferry::sync::AppPool::stop(name)?),
            None => None,
        };
        let outcome = sync::apply(
            &plan,
            &sync::Target {
                node: &pair.node,
                state_dir: &resolved.state_dir,
                profile: &resolved.profile,
            },
            apply_opts,
            bar,
        )?;
        r.result = SyncResult::Synced;
        r.summary = Some(PlanSummary::of(&plan));
        r.plan = Some(plan);
        r.outcome = Some(outcome);
        Ok(())
    };
    if let Err(f) = run() {
        // Installed, then failed: changed and failed at once.
        r.result = if matches!(&*f.code, "after-install" | "partly-installed") {
            SyncResult::InstalledUnfinished
        } else {
            SyncResult::Failed
        };
        r.error = Some(f.into());
    }
    r
}

fn report(report: &SyncReport, dry_run: bool, ui: &Ui) {
    let results = &report.targets;
    // A dry run's document is the same under its own kind: a plan, not a change.
    let kind = if dry_run {
        "sync-plan"
    } else {
        <SyncReport as keyferry::report::Kind>::KIND
    };
    ui.show(kind, report, || {
        let mut t = ui.table([
            "node",
            "result",
            "add",
            "update",
            "delete",
            "same",
            "protected",
            "how",
        ]);
        for r in results {
            let cells = |n: usize, b: u64| {
                if n == 0 {
                    "0".to_string()
                } else {
                    format!("{n} ({})", size(b))
                }
            };
            let name = label(&r.node, &r.slot);
            match &r.plan {
                Some(p) => {
                    let how = match &r.outcome {
                        Some(o) => format!(
                            "{}; {} verified by content, {} by size and time{}",
                            match o.mode {
                                sync::Mode::Swap => "swapped",
                                sync::Mode::InPlace => "in place",
                            },
                            o.verified_files,
                            o.quick_checked,
                            if o.recopied.is_empty() {
                                String::new()
                            } else {
                                format!(", {} re-copied", o.recopied.len())
                            }
                        ),
                        None if r.result == SyncResult::Unchanged => "same size and time".into(),
                        None => "-".into(),
                    };
                    t.add_row([
                        name,
                        result_word(r.result),
                        cells(p.add.len(), p.add_bytes),
                        cells(p.update.len(), p.update_bytes),
                        cells(p.delete.len(), p.delete_bytes),
                        p.unchanged.to_string(),
                        p.protected.len().to_string(),
                        how,
                    ]);
                }
                None => {
                    t.add_row([
                        name,
                        "FAILED".to_string(),
                        "-".into(),
                        "-".into(),
                        "-".into(),
                        "-".into(),
                        "-".into(),
                        "-".into(),
                    ]);
                }
            }
        }
        ui.out(&t.to_string());
        for r in results {
            let name = label(&r.node, &r.slot);
            if let Some(rec) = &r.recovered {
                ui.info(&format!("{name}: {rec}"));
            }
            if let Some(p) = &r.plan {
                if dry_run {
                    for f in &p.delete {
                        ui.out(&format!(
                            "{name}: would delete {} ({})",
                            keyferry::fs::shown(&f.path),
                            size(f.bytes)
                        ));
                    }
                    for f in p.add.iter().chain(&p.update) {
                        ui.out(&format!(
                            "{name}: would {} {} ({})",
                            if p.add.contains(f) { "add" } else { "update" },
                            keyferry::fs::shown(&f.path),
                            size(f.bytes)
                        ));
                    }
                }
                if !p.times_only.is_empty() {
                    ui.info(&format!(
                        "{name}: {} the same bytes as the source with another modification time: \
                     kept as they are, given the source's time{}",
                        crate::ui::count(p.times_only.len(), "file has", "files have"),
                        if dry_run { " (would be)" } else { "" }
                    ));
                }
                if !p.protected.is_empty() {
                    ui.info(&format!(
                        "{name}: left exactly as they are: {}",
                        p.protected.join(", ")
                    ));
                }
                for w in &p.warnings {
                    ui.warn(&format!("{name}: {w}"));
                }
                if r.result == SyncResult::Unchanged {
                    ui.info(&format!(
                        "{name}: every file already has the source's size and modification time; \
                     keyferry sync verify compares contents"
                    ));
                }
            }
            if let Some(o) = &r.outcome {
                for w in &o.warnings {
                    ui.warn(&format!("{name}: {w}"));
                }
                if let Some(why) = &o.why_in_place {
                    ui.info(&format!("{name}: files moved in one by one: {why}"));
                }
                ui.info(&format!(
                "{name}: the previous folder is kept as {} (keyferry sync rollback puts it back)",
                o.previous.display()
            ));
            }
            if let Some(e) = &r.error {
                ui.failure(&crate::failure::shown(e, &format!("{name}: ")));
            }
        }
    });
}
