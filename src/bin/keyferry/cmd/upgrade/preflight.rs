//! `keyferry upgrade preflight`: the checks before an upgrade's first step, one row each:
//! every node reachable (the audit's collection), keys and binaries as the primary's
//! (differences are warnings: the upgrade's steps fix them), the clocks (over ssh from the
//! node's report, by path from the time a file written there gets), room beside each sync
//! target for the new folder while the old one is kept, the state folders writable with room
//! (here, and on each ssh node by `--here-only` there), and for an HA pair that the cluster
//! file's primary runs as the primary.

use crate::cmd::sync::Endpoints;
use crate::cmd::CmdResult;
use crate::failure::Failure;
use crate::ui::Ui;
use keyferry::audit::{collect, compare, AuditOptions, Binaries, NodeStatus};
use keyferry::cluster::{parse_access, Access};
use keyferry::cluster::{ClusterFile, Node};
use keyferry::preflight::{self, Check, Preflight, Severity};
use keyferry::remote::SshTarget;
use keyferry::sync::{plan as sync_plan, PlanOptions, DEFAULT_MAX_DELETE};
use keyferry::time::parse_duration;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, clap::Args)]
#[command(
    after_help = "Checks, one row each: every node reachable as the audit reaches it; keys and \
binaries as the primary's (differences are listed as warnings: the upgrade's steps fix them); each \
node's clock (over ssh from its report, by path from the time a file keyferry writes there gets); \
room beside each sync target for the new application folder while the old one is kept for sync \
rollback; the state folders writable with room (here, and on each node reached over ssh by \
running keyferry upgrade preflight --here-only there); for a Privilege Secure HA pair, that the \
cluster file's primary runs as the primary and its replica streams. Changes nothing (a file \
written to measure a clock is removed at once).\n\n\
Exit status: 0 nothing stops the upgrade; 1 a check failed (the row says what to do); 2 error."
)]
pub struct Args {
    #[command(flatten)]
    pub cluster: crate::node_args::ClusterArg,
    #[command(flatten)]
    pub node: crate::node_args::NodeName,
    /// Only this node's own checks (its state folder); what the primary runs on ssh nodes
    #[arg(long)]
    pub here_only: bool,
    /// Fail a node whose clock differs from this machine's by more than this
    #[arg(long, default_value = "60s", value_parser = parse_duration, value_name = "DURATION")]
    pub max_skew: Duration,
    /// Give up on a node after this long
    #[arg(long, default_value = "30s", value_parser = parse_duration, value_name = "DURATION")]
    pub timeout: Duration,
    /// A node being added (upgrade plan --add-node): its application folder may be empty
    #[arg(long, value_name = "NODE")]
    pub new_node: Option<String>,
    #[command(flatten)]
    pub ssh: crate::node_args::SshArgs,
}

pub fn run(args: Args, ui: &Ui) -> CmdResult {
    let file = args.cluster.load()?;
    let spec = args.node.select(&file)?;
    let local = Node::from_cluster(&file, spec, None)?;
    let mut checks = vec![preflight::state_folder(&local.name, &local.state_dir)];
    if !args.here_only {
        checks.extend(cluster_checks(&args, &file, &local, ui));
    }
    let report = Preflight::new(&file.name, &local.name, checks);
    ui.show_report(&report, || {
        let mut t = ui.table(["node", "check", "result", "detail"]);
        for c in &report.checks {
            t.add_row([
                c.node.clone().unwrap_or_default(),
                c.code.to_string(),
                match c.severity {
                    Severity::Ok => "ok".into(),
                    Severity::Info => "info".into(),
                    Severity::Warning => "warning".into(),
                    Severity::Error => "FAILED".into(),
                },
                match &c.fix {
                    Some(fix) => format!("{}\nfix: {fix}", c.message),
                    None => c.message.clone(),
                },
            ]);
        }
        ui.out(&t.to_string());
        let (w, f) = (report.count(Severity::Warning), report.count(Severity::Error));
        ui.out(&if report.ok {
            format!(
                "preflight: nothing stops the upgrade ({} checks, {w} warnings)",
                report.checks.len()
            )
        } else {
            format!("preflight: {f} failed; the upgrade must not start: do what each FAILED row says, then run again")
        });
    });
    Ok(if report.ok {
        crate::exit::SUCCESS
    } else {
        crate::exit::NO
    }
    .into())
}

fn cluster_checks(args: &Args, file: &ClusterFile, local: &Node, ui: &Ui) -> Vec<Check> {
    let base = args.cluster.path.parent().unwrap_or(Path::new("."));
    let opts = AuditOptions {
        jobs: 8,
        timeout: args.timeout,
        ssh_program: args.ssh.ssh.clone(),
        ssh_config: args.ssh.ssh_config.clone(),
        max_skew: args.max_skew,
        cluster_path: args.cluster.path.clone(),
    };
    let audit = compare(file, &collect(file, &opts, ui), args.max_skew);
    let sync = sync_checks(args, local);
    let mut checks = Vec::new();
    for (spec, n) in file.nodes.iter().zip(&audit.nodes) {
        let name = spec.name.as_str();
        let why = n.reason.clone().unwrap_or_default();
        let reached = match n.status {
            NodeStatus::Unreachable | NodeStatus::Rejected => {
                checks.push(preflight::row_fix(
                    name,
                    preflight::Code::Reach,
                    Severity::Error,
                    format!("cannot be read: {why}"),
                    "correct its access in the cluster file, or the share, ssh or keyferry on \
                     it, then run again",
                ));
                false
            }
            NodeStatus::NotNeeded
                if n.via.is_none() || (spec.paths.is_empty() && spec.reach.is_empty()) =>
            {
                checks.push(preflight::row(
                    name,
                    preflight::Code::Reach,
                    Severity::Ok,
                    "holds no keys; keyferry changes nothing there (its steps are manual)",
                ));
                false
            }
            NodeStatus::NoReference => {
                checks.push(preflight::row_fix(
                    name,
                    preflight::Code::Reach,
                    Severity::Error,
                    format!("{why}: nothing can be compared with it"),
                    "make the primary readable from here (its paths or access in the cluster \
                     file), then run again",
                ));
                false
            }
            _ => {
                let via = n.via.as_deref().unwrap_or("?");
                checks.push(preflight::row(
                    name,
                    preflight::Code::Reach,
                    Severity::Ok,
                    format!("read by {via}"),
                ));
                true
            }
        };
        if !reached {
            continue;
        }
        if spec.name != local.name {
            let (outcome, detail) = match n.status {
                NodeStatus::Match => (Severity::Ok, "the primary's key set".to_owned()),
                NodeStatus::NotNeeded => (Severity::Ok, "needs no keys".to_owned()),
                // Normal where the product holds the keys once imported (Action hosts).
                NodeStatus::NotVerifiable => (Severity::Ok, why.clone()),
                s => (
                    Severity::Warning,
                    format!(
                        "{}; the upgrade's key steps bring it to the primary's",
                        if why.is_empty() { s.as_str() } else { &why }
                    ),
                ),
            };
            checks.push(preflight::row(name, preflight::Code::Keys, outcome, detail));
            if n.binaries == Binaries::Differs {
                checks.push(preflight::row(
                    name,
                    preflight::Code::Binaries,
                    Severity::Warning,
                    "differ from the primary's: the sync step copies the primary's application folder",
                ));
            }
        }
        // Over ssh from its report; a node reached by path is probed where keyferry writes
        // (below), which also proves it can write there.
        if let Some(skew) = n
            .clock_skew_seconds
            .filter(|_| n.via.as_deref() == Some("ssh"))
        {
            checks.push(preflight::clock(
                name,
                skew,
                args.max_skew,
                "its clock (from its report over ssh)",
            ));
        }
        match parse_access(spec.access.as_deref(), base) {
            Ok(Access::Ssh { user, host, port }) if spec.name != local.name => {
                checks.extend(remote_here_only(
                    args,
                    spec,
                    &SshTarget {
                        user,
                        host,
                        port,
                        launch: spec.launch(),
                    },
                ));
            }
            Ok(Access::Path(dir)) if spec.name != local.name && dir.is_dir() => {
                checks.push(path_clock(name, &dir, args.max_skew));
            }
            Ok(Access::Paths) if spec.name != local.name => {
                checks.push(match write_folder(spec, &sync, base) {
                    Some(dir) => path_clock(name, &dir, args.max_skew),
                    None => preflight::row(
                        name,
                        preflight::Code::Clock,
                        Severity::Warning,
                        "not checked: none of its folders is reachable from here to write in",
                    ),
                });
            }
            _ => {}
        }
    }
    checks.extend(sync.into_iter().map(|s| s.check));
    if file.ha.is_some() {
        checks.push(ha_roles(file));
    }
    // Each node's rows together, in the cluster file's order ("web2 (tms)" with web2).
    let rank = |c: &Check| {
        file.nodes.iter().position(|n| {
            c.node.as_deref().and_then(|c| c.split(' ').next()) == Some(n.name.as_str())
        })
    };
    checks.sort_by_key(rank);
    checks
}

/// One sync target: where its new folder goes, and the check of its room.
struct SyncTarget {
    node: String,
    target: PathBuf,
    check: Check,
}

/// For a profile that syncs (Secret Server): each target planned as the sync step will plan
/// it (a refusal shows now), and the room beside it for a whole new copy of the source.
fn sync_checks(args: &Args, local: &Node) -> Vec<SyncTarget> {
    if local.profile.app_folder.is_none() {
        return Vec::new();
    }
    let ends = Endpoints {
        cluster: Some(args.cluster.path.clone()),
        node: crate::node_args::NodeName {
            name: Some(local.name.clone()),
        },
        to: Vec::new(),
        profile: None,
        from: None,
        root: None,
        state_dir: crate::node_args::StateDir { dir: None },
    };
    let resolved = match ends.resolve() {
        Ok(r) => r,
        Err(f) => {
            return vec![SyncTarget {
                node: local.name.clone(),
                target: PathBuf::new(),
                check: failed_row(&local.name, preflight::Code::Sync, "", &f),
            }]
        }
    };
    let opts = PlanOptions {
        allow_new_target: false,
        max_delete: DEFAULT_MAX_DELETE,
        checksum: false,
    };
    crate::cmd::sync::for_each_pair(&resolved.pairs, 4, |pair| {
        let label = crate::cmd::sync::label(&pair.node, &pair.slot);
        let new_node = args
            .new_node
            .as_deref()
            .is_some_and(|n| n.eq_ignore_ascii_case(&pair.node));
        let opts = PlanOptions {
            allow_new_target: new_node,
            ..opts.clone()
        };
        let check = match sync_plan(&pair.source, &pair.target, &resolved.profile, &opts) {
            Err(e) => failed_row(
                &label,
                preflight::Code::Sync,
                "the sync step would refuse this target: ",
                &Failure::from(e),
            ),
            Ok(p) => {
                let parent = pair.target.parent().unwrap_or(Path::new("."));
                match keyferry::os::free_space(parent) {
                    Ok(free) => preflight::room(
                        &label,
                        &pair.target,
                        free,
                        p.source_bytes(),
                        kept_room(&pair.target),
                    ),
                    Err(e) => preflight::row_fix(
                        &label,
                        preflight::Code::Room,
                        Severity::Error,
                        format!("free space beside {} unknown: {e}", pair.target.display()),
                        format!(
                            "check that {} exists and can be read from here, then run again",
                            parent.display()
                        ),
                    ),
                }
            }
        };
        SyncTarget {
            node: pair.node.clone(),
            target: pair.target.clone(),
            check,
        }
    })
}

/// The kept trees beside a sync target, for the room check: what they hold of their own, and
/// what the sync step (keeping the default number) retires first. Unreadable: counted as none.
fn kept_room(target: &Path) -> preflight::KeptRoom {
    use keyferry::sync as kept;
    let gens = kept::generations(target).unwrap_or_default();
    let mut r = preflight::KeptRoom {
        trees: gens.len(),
        ..Default::default()
    };
    for g in &gens {
        let own = kept::own_bytes(&g.path).unwrap_or(0);
        r.own_bytes += own;
        if g.number >= kept::DEFAULT_KEEP {
            r.freed_by_sync += own;
        }
    }
    r
}

/// The folder keyferry writes in on a node reached by path: beside its application folder
/// (where the sync builds the new one), else its first key folder (where keys go).
fn write_folder(
    spec: &keyferry::cluster::NodeSpec,
    sync: &[SyncTarget],
    base: &Path,
) -> Option<PathBuf> {
    if let Some(t) = sync.iter().find(|t| t.node == spec.name) {
        return t.target.parent().map(Path::to_path_buf);
    }
    spec.first_folder(base)
}

/// The clock of the file system behind `dir` (the node's, through its share), from a file
/// keyferry writes there and removes.
fn path_clock(node: &str, dir: &Path, max: Duration) -> Check {
    match keyferry::fs::clock_skew_of(dir) {
        Ok(skew) => preflight::clock(
            node,
            skew,
            max,
            &format!("the time of files written in {}", dir.display()),
        ),
        Err(e) => preflight::row_fix(
            node,
            preflight::Code::Write,
            Severity::Error,
            format!(
                "keyferry cannot create files in {}: {e}; the upgrade's sync or key push writes \
                 there",
                dir.display()
            ),
            "grant this account write access there, then run again",
        ),
    }
}

/// `keyferry upgrade preflight --here-only` on an ssh node: its own state folder.
fn remote_here_only(
    args: &Args,
    spec: &keyferry::cluster::NodeSpec,
    target: &SshTarget,
) -> Vec<Check> {
    let client = args.ssh.client();
    let words = spec.remote_command(&args.cluster.path, &["upgrade", "preflight", "--here-only"]);
    let failed = |why: String| {
        vec![preflight::row_fix(
            &spec.name,
            preflight::Code::State,
            Severity::Error,
            format!(
                "keyferry upgrade preflight --here-only on {} through {}: {why}",
                spec.name,
                target.url()
            ),
            format!(
                "check {}'s access in the cluster file, its sshd and its keyferry \
                 (docs/cluster-file.md, \"Nodes reached over ssh\")",
                spec.name
            ),
        )]
    };
    let done = match client.run(target, &words, args.timeout, 1 << 20) {
        Ok(d) => d,
        Err(e) => return failed(e.to_string()),
    };
    let doc: serde_json::Value = match serde_json::from_slice(&done.stdout) {
        Ok(v) => v,
        Err(_) => return failed(format!("no report ({})", done.last_error_line())),
    };
    match serde_json::from_value::<Vec<Check>>(doc["checks"].clone()) {
        Ok(c) if doc["kind"] == "upgrade-preflight" && doc["node"] == spec.name.as_str() => c,
        _ => failed(format!(
            "not a preflight report of {}: {}",
            spec.name,
            doc.get("error")
                .and_then(|e| e["message"].as_str())
                .unwrap_or("unexpected report")
        )),
    }
}

/// The HA pair as `keyferry ha status` sees it from here (the library's call, no child).
fn ha_roles(file: &ClusterFile) -> Check {
    let primary = keyferry::upgrade::primary(file)
        .map(|n| n.name.clone())
        .unwrap_or_default();
    match keyferry::upgrade::pair_status(file) {
        Ok(status) => preflight::roles(&primary, &status),
        Err(e) => failed_row(&primary, preflight::Code::Roles, "", &Failure::from(e)),
    }
}

/// A row for a failure: its message (after `lead`), and its hint as what to do.
fn failed_row(node: &str, code: preflight::Code, lead: &str, f: &Failure) -> Check {
    let message = format!("{lead}{}", f.message);
    match &f.hint {
        Some(h) => preflight::row_fix(node, code, Severity::Error, message, h.as_str()),
        None => preflight::row(node, code, Severity::Error, message),
    }
}
