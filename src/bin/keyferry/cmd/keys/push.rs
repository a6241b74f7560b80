//! `keyferry keys push`: from the primary, its key set to every node that needs it, each
//! with the checks, refusals and backups of `keys import`, and no bundle anywhere.

use crate::cmd::CmdResult;
use crate::ui::Ui;
use keyferry::cluster::{host_name, Node};
use keyferry::keys::{build_manifest, DEFAULT_TTL};
use keyferry::keys::{
    push_one, push_ssh, route, skip, targets, PushOutcome, PushTarget, Route, SshPush,
};
use keyferry::keys::{ImportOptions, ProtectMode};
use keyferry::recover::Own;
use keyferry::time::Timestamp;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Debug, clap::Args)]
#[command(
    after_help = "Run on the primary. Every other node whose role needs keys (by role and \
profile; Proxy hosts are skipped) is brought to the primary's key set: a node that holds it is \
left unchanged, one that holds none gets it, one that holds a different key set is refused \
unless --replace (its files are backed up first). The key set goes from memory straight into \
each node's files through keyferry's transaction engine: no bundle, no passphrase, nothing to \
clean up.\n\n\
A node is reached by its access. Paths (with reach slots: a mounted share or UNC path) or a \
single folder: installed from here, with this machine's lock, journal and backups (the state \
folder, backups under backups/<node>/). ssh://user@host[:port]: a push stream (a one-time \
passphrase and the key set sealed with it) goes on the stdin of `keyferry keys import -` on the \
node (remote_keyferry, remote_cluster), inside the ssh session, never in argv, environment or a \
file; the node's own import checks, backs up in its own state folder and installs, and its \
report comes back.\n\n\
Exit status: 0 every node holds the key set (or would, with --dry-run); 1 with --dry-run, a node \
would be refused (its key set differs; --replace would replace it); 2 a node was refused or \
failed and none got keys; 3 some nodes got keys and others were refused or failed (the table \
says which).\n\n\
Examples:\n  keyferry keys push -c cluster.toml --dry-run\n  keyferry keys push -c cluster.toml --to web2 --replace"
)]
pub struct Args {
    #[command(flatten)]
    pub cluster: crate::node_args::ClusterArg,
    #[command(flatten)]
    pub node: crate::node_args::NodeName,
    /// Only these nodes (repeatable) [default: every other node]
    #[arg(long, value_name = "NODE")]
    pub to: Vec<String>,
    /// Replace key sets that differ (backed up first); without it such a node is refused
    #[arg(long)]
    pub replace: bool,
    /// With --replace, let a node's DPAPI-protected key be replaced by an unprotected one
    /// (without it such a replace is refused: keyferry keeps each node's protection)
    #[arg(long, requires = "replace")]
    pub leave_unprotected: bool,
    /// Show what each node would get and change nothing
    #[arg(long)]
    pub dry_run: bool,
    #[command(flatten)]
    pub state_dir: crate::node_args::StateDir,
    #[command(flatten)]
    pub ssh: crate::node_args::SshArgs,
    /// Give up on a node reached over ssh after this long
    #[arg(long, default_value = "120s", value_parser = keyferry::time::parse_duration, value_name = "DURATION")]
    pub timeout: Duration,
    #[command(flatten)]
    pub wait: crate::node_args::WaitArgs,
}

pub fn run(args: Args, ui: &Ui) -> CmdResult {
    let file = args.cluster.load()?;
    let spec = args.node.select(&file)?;
    let source = Node::from_cluster(&file, spec, args.state_dir.dir.clone())?;
    if !args.dry_run {
        // A push by path installs through this node's state folder (its lock and backups).
        let wait = args.wait.wait;
        crate::cmd::recover::first_in(ui, Some(&file), &source, wait, Own::Change)?;
    }
    let now = Timestamp::now();
    let (manifest, warnings) = build_manifest(&source, &host_name(), now, DEFAULT_TTL, false)?;
    for w in &warnings {
        ui.warn(w);
    }
    let nodes = targets(&file, &source.name, &args.to)?;
    let opts = ImportOptions {
        protect: ProtectMode::Auto,
        replace: args.replace,
        replace_primary: false,
        dry_run: args.dry_run,
        allow_expired: false,
        now,
        max_work_factor: keyferry::keys::MAX_IMPORT_WORK_FACTOR,
        wait: args.wait.wait,
        leave_unprotected: args.leave_unprotected,
    };
    let base = args.cluster.path.parent().unwrap_or(Path::new("."));
    let client = args.ssh.client();
    let how = SshPush {
        client: &client,
        cluster_path: &args.cluster.path,
        timeout: args.timeout,
        work_factor: crate::cmd::export_work_factor(ui),
    };
    let mut done = Vec::new();
    let doing = if args.dry_run {
        "planning"
    } else {
        "pushing to"
    };
    for spec in nodes {
        if let Some(t) = skip(&file, spec)? {
            done.push(t);
            continue;
        }
        let t = match route(&file, spec, base, &source.state_dir) {
            Ok(Route::Ssh(target)) => {
                ui.info(&format!("{doing} {} over ssh...", spec.name));
                push_ssh(&manifest, spec, &target, &how, &opts, ui)
            }
            Ok(Route::Path(node)) => {
                ui.info(&format!("{doing} {}...", node.name));
                push_one(&manifest, &node, &opts)
            }
            Err(why) => {
                let mut t = PushTarget::new(&spec.name, spec.role, "-");
                t.detail = Some(why);
                t
            }
        };
        done.push(t);
    }
    let failed = done.iter().filter(|t| t.failed()).count();
    let fingerprint = manifest.header.fingerprint.to_string();
    let report = keyferry::report::PushReport {
        source: source.name.clone(),
        fingerprint: fingerprint.clone(),
        dry_run: args.dry_run,
        ok: failed == 0,
        targets: done,
    };
    let done = &report.targets;
    ui.show_report(&report, || {
        show(&source.name, &fingerprint, done, ui);
        let next: Vec<&str> = done
            .iter()
            .filter(|t| t.outcome == PushOutcome::Installed)
            .filter_map(|t| t.import.as_ref()?.next_step.as_deref())
            .collect();
        if let Some(step) = next.first() {
            ui.out(&format!("next, on each node marked installed: {step}"));
        }
    });
    let would_refuse = done.iter().any(|t| t.outcome == PushOutcome::WouldRefuse);
    let installed = done
        .iter()
        .filter(|t| t.outcome == PushOutcome::Installed)
        .count();
    Ok(if failed > 0 {
        ExitCode::from(crate::exit::of_many(installed, failed))
    } else if would_refuse {
        crate::exit::NO.into()
    } else {
        ExitCode::SUCCESS
    })
}

fn show(source: &str, fingerprint: &str, done: &[PushTarget], ui: &Ui) {
    ui.out(&format!("key set of {source}: {fingerprint}"));
    let mut t = ui.table(["node", "role", "result", "before", "after", "backup / why"]);
    let short = |f: &Option<String>| match f {
        Some(f) if f == fingerprint => "= primary".to_owned(),
        Some(f) => f.chars().take(24).collect::<String>() + "…",
        None => "none".to_owned(),
    };
    for d in done {
        let result = match d.outcome {
            PushOutcome::Unchanged => "unchanged",
            PushOutcome::Installed => "installed",
            PushOutcome::WouldInstall => "would install",
            PushOutcome::WouldRefuse => "WOULD REFUSE",
            PushOutcome::Skipped => "skipped",
            PushOutcome::Refused => "REFUSED",
            PushOutcome::Failed => "FAILED",
        };
        let why = match (&d.backup_dir, &d.detail) {
            (Some(b), _) => format!("backup {}", b.display()),
            (None, Some(w)) if d.outcome != PushOutcome::Installed => w.clone(),
            _ => String::new(),
        };
        let role = d.role.to_string();
        // A dry run's "after" is what the node would hold: the primary's keys where it
        // would install them.
        let after = if d.outcome == PushOutcome::WouldInstall {
            "would be = primary".to_owned()
        } else {
            short(&d.after)
        };
        t.add_row([
            d.node.as_str(),
            role.as_str(),
            result,
            &short(&d.before),
            &after,
            &why,
        ]);
    }
    ui.out(&t.to_string());
    let differ: Vec<&str> = done
        .iter()
        .filter(|d| d.code.as_deref() == Some("key-set-differs"))
        .map(|d| d.node.as_str())
        .collect();
    if !differ.is_empty() {
        ui.out(&format!(
            "{} hold{} other keys than {source}: keyferry never replaces them unasked; to \
             replace them (each backed up first), run the push again with --replace{}",
            differ.join(", "),
            if differ.len() == 1 { "s" } else { "" },
            differ
                .iter()
                .map(|n| format!(" --to {n}"))
                .collect::<String>()
        ));
    }
    let failed = done.iter().filter(|t| t.failed()).count();
    if failed > 0 {
        ui.out(&format!(
            "{failed} node(s) refused or failed: nothing was changed on them (a failed install is put back by its journal)"
        ));
    }
}
