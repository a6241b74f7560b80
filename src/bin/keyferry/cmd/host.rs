//! `keyferry host ...`: the steps of the vendor procedures that drive a node's own services,
//! run on that node (directly, or by an upgrade run over ssh): its IIS application pool, its
//! Windows services, IIS, a reboot; and, from anywhere, whether a node's site works. Names
//! and URLs come from the node's `[[node]]` (`app_pool`, `services`, `site_url`).

use crate::cmd::CmdResult;
use crate::failure::Failure;
use crate::ui::Ui;
use clap::{Args, Subcommand, ValueEnum};
use keyferry::cluster::{ClusterFile, NodeSpec};
use keyferry::host::{Thing, Tools, Want};
use keyferry::recover::Own;
use keyferry::report::{HostAction, HostReport, SiteReport, SiteRow};
use keyferry::{Error, HostReason};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Subcommand)]
pub enum HostCommand {
    /// Stop or start this node's IIS application pool (its app_pool)
    Pool(ChangeArgs),
    /// Stop or start this node's Windows services (its services; stopped in reverse order)
    Service(ChangeArgs),
    /// Restart IIS on this node (iisreset /restart)
    IisRestart(NodeOnly),
    /// Restart this node (shutdown /r, planned maintenance); returns at once
    Reboot(RebootArgs),
    /// This node's pool and services as they are now, and when it last started
    Status(NodeOnly),
    /// Request each node's site (its site_url) from here: it must answer with success and no
    /// "Version does not match" or "Encryption key doesn't match" page
    CheckSite(SiteArgs),
}

#[derive(Debug, Clone, Args)]
pub struct NodeOnly {
    #[command(flatten)]
    pub cluster: crate::node_args::ClusterArg,
    #[command(flatten)]
    pub node: crate::node_args::NodeName,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Action {
    Stop,
    Start,
}

#[derive(Debug, Args)]
#[command(
    after_help = "Checks the state first: a pool or service that is already stopped (or started) \
is left as it is and reported \"already\". Otherwise runs appcmd (pools) or sc (services) and \
waits until the state shows the change (60 s).\n\nExit status: 0 done; 2 refused or failed (the \
message says what the node's tool said)."
)]
pub struct ChangeArgs {
    /// stop or start
    #[arg(value_enum)]
    pub action: Action,
    #[command(flatten)]
    pub node: NodeOnly,
}

#[derive(Debug, Args)]
pub struct RebootArgs {
    #[command(flatten)]
    pub node: NodeOnly,
    /// How long Windows waits before it restarts (so this command's answer gets out)
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = keyferry::time::parse_duration)]
    pub delay: Duration,
}

#[derive(Debug, Args)]
#[command(
    after_help = "Exit status: 0 every site checked works; 1 a site does not (the page's words and \
the matching diagnose advice are shown); 2 error (no node with a site_url)."
)]
pub struct SiteArgs {
    #[command(flatten)]
    pub cluster: crate::node_args::ClusterArg,
    /// Check only these nodes' sites (repeatable) [default: every node with a site_url]
    #[arg(long = "to", value_name = "NAME")]
    pub to: Vec<String>,
    // Accepted for the upgrade run's steps, which name their node; the check runs from here.
    #[command(flatten)]
    pub node: crate::node_args::NodeName,
    /// Give up on a site after this long
    #[arg(long, value_name = "DURATION", default_value = "20s", value_parser = keyferry::time::parse_duration)]
    pub timeout: Duration,
}

pub fn run(c: HostCommand, ui: &Ui) -> CmdResult {
    match c {
        HostCommand::CheckSite(a) => check_site(a, ui),
        HostCommand::Pool(a) => {
            let (file, spec) = load(&a.node)?;
            let pool = spec.app_pool.clone().ok_or_else(|| {
                Failure::from(Error::host(
                    format!("node {} has no app_pool in the cluster file", spec.name),
                    HostReason::NoAppPool,
                ))
            })?;
            let want = want(a.action);
            let tools = tools(ui)?;
            let _lock = lock(ui, &file, &spec)?;
            let change = tools.set(&Thing::Pool(pool), want)?;
            show(
                ui,
                report(&spec, action(true, a.action), vec![change], None),
            )
        }
        HostCommand::Service(a) => {
            let (file, spec) = load(&a.node)?;
            if spec.services.is_empty() {
                return Err(Failure::from(Error::host(
                    format!("node {} has no services in the cluster file", spec.name),
                    HostReason::NoServices,
                )));
            }
            let tools = tools(ui)?;
            let _lock = lock(ui, &file, &spec)?;
            let want = want(a.action);
            let mut names: Vec<&String> = spec.services.iter().collect();
            if matches!(a.action, Action::Stop) {
                names.reverse();
            }
            let mut changes = Vec::new();
            for n in names {
                changes.push(tools.set(&Thing::Service(n.clone()), want)?);
            }
            show(ui, report(&spec, action(false, a.action), changes, None))
        }
        HostCommand::IisRestart(a) => {
            let (file, spec) = load(&a)?;
            let tools = tools(ui)?;
            let _lock = lock(ui, &file, &spec)?;
            let said = tools.restart_iis()?;
            show(
                ui,
                report(
                    &spec,
                    HostAction::IisRestart,
                    Vec::new(),
                    Some(format!("IIS restarted: {said}")),
                ),
            )
        }
        HostCommand::Reboot(a) => {
            let (file, spec) = load(&a.node)?;
            let tools = tools(ui)?;
            let _lock = lock(ui, &file, &spec)?;
            tools.reboot(
                a.delay,
                "keyferry: the vendor's upgrade procedure reboots this server",
            )?;
            show(
                ui,
                report(
                    &spec,
                    HostAction::Reboot,
                    Vec::new(),
                    Some(format!(
                        "restarting in {}s (shutdown /r, planned maintenance)",
                        a.delay.as_secs().max(1)
                    )),
                ),
            )
        }
        HostCommand::Status(a) => {
            let (_, spec) = load(&a)?;
            let tools = tools(ui)?;
            let mut changes = Vec::new();
            let things = spec
                .app_pool
                .iter()
                .map(|p| Thing::Pool(p.clone()))
                .chain(spec.services.iter().map(|s| Thing::Service(s.clone())));
            for t in things {
                let now = tools.state(&t)?;
                changes.push(keyferry::host::Change {
                    thing: t,
                    before: now,
                    after: now,
                    changed: false,
                });
            }
            show(ui, report(&spec, HostAction::Status, changes, None))
        }
    }
}

/// The node's lock, around a change of its services as around every change on a node, after
/// whatever an earlier command left cut off there is finished or rolled back (a pool started
/// on a half-synced folder would serve it). Taken once the command is known to be possible,
/// so a refusal changes nothing.
fn lock(ui: &Ui, file: &ClusterFile, spec: &NodeSpec) -> Result<keyferry::txn::NodeLock, Failure> {
    let node = keyferry::cluster::Node::from_cluster(file, spec, None)?;
    let wait = keyferry::txn::DEFAULT_WAIT;
    crate::cmd::recover::first_in(ui, Some(file), &node, wait, Own::Nothing)?;
    Ok(keyferry::txn::NodeLock::acquire(
        &node.state_dir,
        &node.name,
        wait,
    )?)
}

/// This node's tools, said loudly when they are a test's stand-ins.
fn tools(ui: &Ui) -> Result<Tools, Failure> {
    let t = Tools::here()?;
    if t.stand_ins {
        ui.warn("debug build: Windows tools from KEYFERRY_TEST_SYSTEM32 (tests only)");
    }
    Ok(t)
}

fn want(a: Action) -> Want {
    match a {
        Action::Stop => Want::Stopped,
        Action::Start => Want::Running,
    }
}

/// The report's word for stopping or starting a pool (`pool`) or the services.
fn action(pool: bool, a: Action) -> HostAction {
    match (pool, a) {
        (true, Action::Stop) => HostAction::PoolStop,
        (true, Action::Start) => HostAction::PoolStart,
        (false, Action::Stop) => HostAction::ServiceStop,
        (false, Action::Start) => HostAction::ServiceStart,
    }
}

/// The cluster file, and this machine's node in it (a change needs the file again for the
/// node's state folder and its recovery).
fn load(a: &NodeOnly) -> Result<(ClusterFile, NodeSpec), Failure> {
    let file = a.cluster.load()?;
    let spec = a.node.select(&file)?.clone();
    Ok((file, spec))
}

fn report(
    spec: &NodeSpec,
    action: HostAction,
    changes: Vec<keyferry::host::Change>,
    note: Option<String>,
) -> HostReport {
    HostReport {
        node: spec.name.clone(),
        action,
        changes,
        booted: keyferry::host::boot_time().map(|t| t.to_string()),
        note,
    }
}

fn show(ui: &Ui, r: HostReport) -> CmdResult {
    ui.show_report(&r, || {
        let word = keyferry::host::State::word;
        for c in &r.changes {
            if r.action == HostAction::Status {
                ui.out(&format!("{}: {} is {}", r.node, c.thing, word(c.after)));
            } else if c.changed {
                ui.out(&format!(
                    "{}: {} {} -> {}",
                    r.node,
                    c.thing,
                    word(c.before),
                    word(c.after)
                ));
            } else {
                ui.out(&format!(
                    "{}: {} already {}",
                    r.node,
                    c.thing,
                    word(c.after)
                ));
            }
        }
        if let Some(n) = &r.note {
            ui.out(&format!("{}: {n}", r.node));
        }
        if r.action == HostAction::Status {
            if let Some(b) = &r.booted {
                ui.out(&format!("{}: started {b}", r.node));
            }
        }
    });
    crate::cmd::success()
}

fn check_site(a: SiteArgs, ui: &Ui) -> CmdResult {
    let file = a.cluster.load()?;
    let base = a
        .cluster
        .path
        .parent()
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."));
    for n in &a.to {
        if !file.nodes.iter().any(|s| s.name.eq_ignore_ascii_case(n)) {
            return Err(Failure::library(
                Error::NodeNotFound,
                format!("no node {n} in the cluster file"),
                Some("check --to against the [[node]] names"),
            ));
        }
    }
    let nodes: Vec<&NodeSpec> = file
        .nodes
        .iter()
        .filter(|s| a.to.is_empty() || a.to.iter().any(|n| n.eq_ignore_ascii_case(&s.name)))
        .collect();
    if let Some(n) = nodes
        .iter()
        .find(|s| s.site_url.is_none() && !a.to.is_empty())
    {
        return Err(Failure::from(Error::host(
            format!("node {} has no site_url in the cluster file", n.name),
            HostReason::NoSiteUrl,
        )));
    }
    let mut sites = Vec::new();
    for s in nodes {
        let Some(url) = &s.site_url else { continue };
        let ca = s.site_ca.as_ref().map(|p| base.join(p));
        let answer = keyferry::host::check_site(url, ca.as_deref(), a.timeout)?;
        sites.push(SiteRow {
            node: s.name.clone(),
            answer,
        });
    }
    if sites.is_empty() {
        return Err(Failure::from(Error::host(
            "no node in the cluster file has a site_url: nothing to check",
            HostReason::NoSiteUrls,
        )));
    }
    let r = SiteReport {
        ok: sites.iter().all(|s| s.answer.works),
        sites,
    };
    let code = if r.ok {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::from(crate::exit::NO)
    };
    ui.show_report(&r, || {
        for s in &r.sites {
            if s.answer.works {
                ui.out(&format!(
                    "{}: {} works (HTTP {})",
                    s.node,
                    s.answer.url,
                    s.answer.status.unwrap_or(0)
                ));
            } else {
                ui.out(&format!(
                    "{}: {} does NOT work: {}",
                    s.node,
                    s.answer.url,
                    s.answer.why.as_deref().unwrap_or("")
                ));
                if let Some(f) = &s.answer.fix {
                    ui.out(&format!(
                        "  {} ({}): {f}",
                        s.answer.diagnose.as_deref().unwrap_or(""),
                        "keyferry diagnose"
                    ));
                }
            }
        }
    });
    Ok(code)
}
