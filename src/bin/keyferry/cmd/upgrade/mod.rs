//! `keyferry upgrade plan|run|resume|status`: the vendor upgrade procedure for this cluster as
//! a checklist (node names filled in, automatic steps as the keyferry commands they are,
//! manual steps as what to do where, the check that gates each step), and a run of it that
//! keeps its state after every step.

use crate::cmd::CmdResult;
use crate::ui::Ui;
use clap::Subcommand;
use keyferry::cluster::access::{parse_access, Access};
use keyferry::cluster::host_name;
use keyferry::cluster::ClusterFile;
use keyferry::remote::ssh::{SshClient, SshTarget};
use keyferry::upgrade::{changes, plan, state_path, Kind, Plan, RunState, Step};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, Subcommand)]
pub enum UpgradeCommand {
    /// Print the whole upgrade checklist for this cluster (changes nothing)
    Plan(PlanArgs),
    /// Start walking the checklist from this node (its state kept after every step)
    Run(RunArgs),
    /// Go on with the run after a manual step, a reboot, a lost session or a crash
    Resume(RunArgs),
    /// Where the run stands
    Status(RunArgs),
    /// Give up the run here: it is kept on record (with its steps' reports), and a new run
    /// may start
    Abandon(RunArgs),
    /// Check before the first step: nodes reachable, room, clocks, roles (changes nothing)
    Preflight(preflight::Args),
}

mod preflight;

#[derive(Debug, clap::Args)]
#[command(
    after_help = "keyferry runs the automatic steps (the keyferry command shown in the plan), \
checking each step's gate first: here, or on the node named through its ssh:// access (its \
remote_keyferry and remote_cluster). A manual step, or an automatic step meant for a node keyferry \
cannot reach over ssh, is shown with exactly what to do and where, and the run waits: on a \
terminal it asks, otherwise it stops and says which --confirm N lets it go on. The state is kept \
in this node's state folder after every step, so a reboot, a lost session or a crash resumes at \
the first step not done; a step that ran but was not recorded runs again, and every automatic \
step is safe to run again.\n\n\
Exit status: 0 finished, or waiting for a manual step; 2 a step or its gate failed (the message \
says which and how to go on), or refused."
)]
pub struct RunArgs {
    /// Cluster file describing the nodes (docs/cluster-file.md)
    #[arg(long, short = 'c', value_name = "FILE", env = "KEYFERRY_CLUSTER")]
    pub cluster: PathBuf,
    /// This machine's node [default: the node named after this host]
    #[arg(long, value_name = "NAME")]
    pub node: Option<String>,
    /// The waiting step N is done (repeatable, in order)
    #[arg(long, value_name = "N")]
    pub confirm: Vec<usize>,
    /// Mark the waiting step N done without running it, an automatic step included, after
    /// you checked its end state yourself (say how with --because)
    #[arg(long, value_name = "N", requires = "because")]
    pub mark_done: Option<usize>,
    /// Why the step marked done is done (kept in the run's record)
    #[arg(long, value_name = "TEXT", requires = "mark_done")]
    pub because: Option<String>,
    #[command(flatten)]
    pub ssh: crate::node_args::SshArgs,
    /// Give up on a step run on another node over ssh after this long
    #[arg(long, default_value = "12h", value_parser = keyferry::time::parse_duration, value_name = "DURATION")]
    pub step_timeout: std::time::Duration,
    /// Walk the procedure for adding this node (in the cluster file, its folder empty)
    /// instead of the upgrade
    #[arg(long, value_name = "NODE")]
    pub add_node: Option<String>,
}

#[derive(Debug, clap::Args)]
#[command(
    after_help = "The procedure follows the cluster file's profile: a Secret Server web \
cluster (back up, stop all but the primary, upgrade it, copy its application folder minus \
database.config and encryption.config to the others, start them, confirm); a Privilege Secure \
HA pair (in keyferry's order, with one writable database at every step: docs/ha.md) and its \
remote Action, Scheduler and Proxy hosts (upgrade each, keys to Action and Scheduler only, \
register the services). A DR node gets its database (backed up, copied, restored) before its \
folder. The cluster file's [upgrade] section adds what the nodes do not say: SQL Server names for \
the DR commands, database mirroring, the Privilege Secure versions (3.6 or later to 3.7 CU1 or \
later leaves the key export and import out) and the HA pair's order (keyferry's or the \
vendor's). --add-node NODE gives the procedure for adding a Secret Server web node instead. \
[auto] steps are the keyferry commands shown, run on the node named; [manual] steps are the \
vendor's installer, reboots and console buttons.\n\n\
Examples:\n  keyferry upgrade plan -c cluster.toml\n  keyferry upgrade plan -c cluster.toml --json\n  \
keyferry upgrade plan -c cluster.toml --add-node web3"
)]
pub struct PlanArgs {
    /// Cluster file describing the nodes (docs/cluster-file.md)
    #[arg(long, short = 'c', value_name = "FILE", env = "KEYFERRY_CLUSTER")]
    pub cluster: PathBuf,
    /// The procedure for adding this Secret Server node (in the cluster file, its folder
    /// empty) instead of the upgrade
    #[arg(long, value_name = "NODE")]
    pub add_node: Option<String>,
}

/// The checklist the arguments ask for: the upgrade, or adding a node.
fn checklist(
    file: &ClusterFile,
    cluster: &std::path::Path,
    add_node: Option<&str>,
) -> keyferry::Result<Plan> {
    let arg = cluster.display().to_string();
    match add_node {
        Some(n) => keyferry::upgrade::plan_add_node(file, &arg, n),
        None => plan(file, &arg),
    }
}

pub fn run(c: UpgradeCommand, ui: &Ui) -> CmdResult {
    let args = match c {
        UpgradeCommand::Plan(a) => a,
        UpgradeCommand::Run(a) => return walk(a, ui, Start::New),
        UpgradeCommand::Resume(a) => return walk(a, ui, Start::Resume),
        UpgradeCommand::Status(a) => return walk(a, ui, Start::Status),
        UpgradeCommand::Abandon(a) => return walk(a, ui, Start::Abandon),
        UpgradeCommand::Preflight(a) => return preflight::run(a, ui),
    };
    let file = ClusterFile::load(&args.cluster)?;
    let p = checklist(&file, &args.cluster, args.add_node.as_deref())?;
    if ui.json {
        super::ha::emit(ui, "upgrade-plan", &p);
        return Ok(ExitCode::SUCCESS);
    }
    let mut current = None;
    for s in &p.steps {
        if current != Some(s.procedure) {
            current = Some(s.procedure);
            ui.out(&format!("\n{}", s.procedure.title()));
        }
        let kind = match s.kind {
            Kind::Auto => "auto",
            Kind::Manual => "manual",
        };
        ui.out(&format!("{:>3}. [{kind}] {}{}", s.n, s.title, on(&s.node)));
        if let Some(g) = &s.gate {
            ui.out(&format!("       only when: {g}"));
        }
        ui.out(&format!("       {}", s.what));
    }
    if !p.notes.is_empty() {
        ui.out("");
    }
    for n in &p.notes {
        ui.out(&format!("note: {n}"));
    }
    let manual = p.steps.iter().filter(|s| s.kind == Kind::Manual).count();
    ui.out(&format!(
        "\n{} steps: {} automatic, {manual} manual.",
        p.steps.len(),
        p.steps.len() - manual
    ));
    Ok(ExitCode::SUCCESS)
}

#[derive(Clone, Copy, PartialEq)]
enum Start {
    New,
    Resume,
    Status,
    Abandon,
}

fn refused(why: String, hint: &str) -> crate::failure::Failure {
    crate::failure::Failure::new("upgrade", &why, Some(hint))
}

/// A refusal with its own code (`upgrade-wrong-node`, `upgrade-gate`, `upgrade-step-failed`,
/// `upgrade-run-changed`, `upgrade-in-progress`, `upgrade-no-run`), so scripts tell them apart.
fn coded(code: &'static str, why: String, hint: &str) -> crate::failure::Failure {
    crate::failure::Failure::new(code, &why, Some(hint))
}

fn walk(args: RunArgs, ui: &Ui, start: Start) -> CmdResult {
    if matches!(start, Start::Status | Start::Abandon)
        && (!args.confirm.is_empty() || args.mark_done.is_some())
    {
        return Err(crate::failure::Failure::new(
            "usage",
            "--confirm and --mark-done go with upgrade run or resume, not with status or abandon",
            Some("keyferry upgrade resume -c FILE --confirm N"),
        ));
    }
    let file = ClusterFile::load(&args.cluster)?;
    let spec = file.select(args.node.as_deref(), &host_name())?;
    let local = keyferry::cluster::Node::from_cluster(&file, spec, None)?;
    let p = checklist(&file, &args.cluster, args.add_node.as_deref())?;
    if !matches!(start, Start::Status | Start::Abandon)
        && !local.name.eq_ignore_ascii_case(&p.driver)
    {
        return Err(coded(
            "upgrade-wrong-node",
            format!(
                "the upgrade is driven from the primary, {}, and this is {}",
                p.driver, local.name
            ),
            &format!(
                "run keyferry upgrade run on {} (the steps for other nodes run there over ssh \
                 or are shown to you); if {} is the primary now, say so in the cluster file \
                 (role = \"primary\")",
                p.driver, local.name
            ),
        ));
    }
    let path = state_path(&local.state_dir);
    let loaded = RunState::load(&path)?;
    if let Some(done) = loaded.as_ref().filter(|r| r.finished.is_some()) {
        // A finished run is kept beside its reports before a new run takes its place (it is
        // already, unless the run was cut off right after its last step).
        let record = records(&local.state_dir, &done.started).join("upgrade-run.json");
        if start == Start::New && !record.exists() {
            keyferry::fs::create_private_dir(record.parent().unwrap_or(&local.state_dir))?;
            done.save(&record)?;
        }
    }
    let kept = loaded.filter(|r| r.finished.is_none() || start == Start::Status);
    // How the admin names this run in the commands we suggest.
    let c = format!(
        "{}{}{}",
        args.cluster.display(),
        args.node
            .as_deref()
            .map(|n| format!(" --node {n}"))
            .unwrap_or_default(),
        args.ssh
            .ssh_config
            .as_deref()
            .map(|f| format!(" --ssh-config {}", f.display()))
            .unwrap_or_default()
    );
    let mut state = match (start, kept) {
        (Start::New, Some(_)) => {
            return Err(coded(
                "upgrade-in-progress",
                format!("an upgrade run is in progress here ({})", path.display()),
                &format!(
                "keyferry upgrade status -c {c} shows it; keyferry upgrade resume -c {c} goes on"
            ),
            ))
        }
        (Start::New, None) => {
            let mut s = RunState::new(&p, &local.name);
            // Each run's reports in a folder of their own (named after its start, in seconds).
            while records(&local.state_dir, &s.started).exists() {
                std::thread::sleep(std::time::Duration::from_millis(200));
                s = RunState::new(&p, &local.name);
            }
            keyferry::fs::create_private_dir(&local.state_dir)?;
            s.save(&path)?;
            s
        }
        (Start::Status, None) => {
            // No run is an answer, not an error.
            if ui.json {
                super::ha::emit(
                    ui,
                    "upgrade-status",
                    &serde_json::json!({ "run": null, "state": path }),
                );
            } else {
                ui.out(&format!(
                    "no upgrade run here ({}); keyferry upgrade run -c {c} starts one",
                    path.display()
                ));
            }
            return Ok(ExitCode::SUCCESS);
        }
        (_, None) => {
            return Err(coded(
                "upgrade-no-run",
                format!("no upgrade run here ({})", path.display()),
                &format!("keyferry upgrade run -c {c} starts one"),
            ))
        }
        (_, Some(s)) => s,
    };
    if start == Start::Abandon {
        // Kept on record beside its steps' reports, then the active run goes (a run whose
        // checklist no longer matches the cluster file can be abandoned too).
        state.abandoned = Some(keyferry::time::Timestamp::now().to_string());
        let dir = records(&local.state_dir, &state.started);
        keyferry::fs::create_private_dir(&dir)?;
        let record = dir.join("upgrade-run.json");
        state.save(&record)?;
        keyferry::fs::remove_if_present(&path)?;
        if ui.json {
            super::ha::emit(ui, "upgrade-run", &state);
        } else {
            let done = state.steps.iter().filter(|s| s.done.is_some()).count();
            ui.out(&format!(
                "the run started {} is abandoned after {done} of {} steps; its record is {} \
                 (what its steps changed stays as it is: see that record and each step's undo); \
                 keyferry upgrade run -c {c} starts a new one",
                state.started,
                state.steps.len(),
                record.display()
            ));
        }
        return Ok(ExitCode::SUCCESS);
    }
    if !state.matches(&p) {
        return Err(coded(
            "upgrade-run-changed",
            "the cluster file's checklist is not the one this run started with".into(),
            &format!(
                "put the cluster file back as it was, or move {} away to start over",
                path.display()
            ),
        ));
    }
    if start == Start::Status {
        show_status(&state, &p, ui);
        return Ok(ExitCode::SUCCESS);
    }
    if let Some(m) = args.mark_done {
        let Some(i) = state.current() else {
            return Err(refused(
                format!("--mark-done {m}: every step is done"),
                "nothing waits",
            ));
        };
        if state.steps[i].n != m {
            return Err(refused(
                format!(
                    "--mark-done {m}: the step waiting is {} ({})",
                    state.steps[i].n, state.steps[i].title
                ),
                "mark the waiting step, after checking its end state",
            ));
        }
        let why = args.because.clone().unwrap_or_default();
        state.mark(
            i,
            "marked",
            0.0,
            vec![format!("marked done by the admin: {why}")],
            &path,
        )?;
        ui.info(&format!(
            "step {m} marked done ({why}); the run goes on at the next step"
        ));
    }
    let exec = Exec {
        ui,
        file: &file,
        cluster: &args.cluster,
        ssh: args.ssh.client(),
        timeout: args.step_timeout,
    };
    // A confirmation of a step already done (the same resume typed again) has nothing to do.
    let (done, open): (Vec<usize>, Vec<usize>) = args
        .confirm
        .iter()
        .copied()
        .partition(|&n| state.steps.iter().any(|s| s.n == n && s.done.is_some()));
    for n in done {
        ui.info(&format!("step {n} is done already"));
    }
    let mut confirms = open.into_iter().peekable();
    while let Some(i) = state.current() {
        let step = &p.steps[i];
        let place = exec.place(step, &local.name);
        let began = std::time::Instant::now();
        if step.kind == Kind::Auto && !step.done_when.is_empty() {
            // Its end state may hold already (a run cut off while the step ran on another
            // node, which finished it): then it is done, and neither its gate nor the step
            // runs again.
            let status = vec![
                "ha".to_owned(),
                "status".to_owned(),
                "-c".to_owned(),
                args.cluster.display().to_string(),
                "--node".to_owned(),
                local.name.clone(),
            ];
            if let Ok((_, Some(report))) = exec.run(&Place::Here, &status) {
                let role_of = |node: &str| {
                    report["nodes"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .find(|n| n["node"] == node)
                        .and_then(|n| n["role"].as_str())
                        .unwrap_or("")
                        .to_owned()
                };
                let holds = step.done_when.iter().all(|(node, want)| {
                    let role = role_of(node);
                    match want.strip_prefix('!') {
                        // Seen not to be one: a replica, or nothing listening (fenced and
                        // stopped). Unreachable or refusing keyferry proves nothing.
                        Some(_) => matches!(role.as_str(), "running-replica" | "not-running"),
                        None => role == *want,
                    }
                });
                if holds {
                    let seen: Vec<String> = step
                        .done_when
                        .iter()
                        .map(|(n, _)| format!("{n}: {}", role_of(n)))
                        .collect();
                    ui.say(&format!(
                        "step {} ({}): already done ({})",
                        step.n,
                        step.title,
                        seen.join(", ")
                    ));
                    state.mark(
                        i,
                        "already",
                        0.0,
                        vec![format!("its end state held already: {}", seen.join(", "))],
                        &path,
                    )?;
                    continue;
                }
            }
        }
        if step.kind == Kind::Auto && !matches!(place, Place::Elsewhere) {
            if !step.gate_args.is_empty() {
                ui.say(&format!(
                    "step {}: checking its gate: {}",
                    step.n,
                    step.gate.as_deref().unwrap_or("")
                ));
                // Checked from here, the node that reaches every other.
                let (code, _) = exec.run(&Place::Here, &on_node(&step.gate_args, &local.name))?;
                if code != 0 {
                    return Err(coded(
                        "upgrade-gate",
                        format!(
                            "step {} ({}) waits for: {}; keyferry {} exited {code}",
                            step.n,
                            step.title,
                            step.gate.as_deref().unwrap_or(""),
                            step.gate_args.join(" ")
                        ),
                        &format!("fix that, then: keyferry upgrade resume -c {c}"),
                    ));
                }
            }
            let mut run_args = step.args.clone();
            if step.confirm_replace {
                match key_step_plan(&exec, &place, step)? {
                    KeyPlan::Clear => {
                        // Nothing to ask (a resume after the replace ran): a confirmation
                        // typed for it has nothing left to confirm.
                        if confirms.peek() == Some(&step.n) {
                            confirms.next();
                        }
                    }
                    KeyPlan::Blocked(why) => {
                        let earlier = state.changed_before(i);
                        let fail = crate::failure::Failure::new(
                            "key-protection",
                            format!(
                                "step {} ({}) cannot bring these nodes to the primary's keys \
                                 from here:\n{why}",
                                step.n, step.title
                            ),
                            Some(&format!(
                                "act on each node named (its own keyferry compares a DPAPI key \
                                 it can decrypt: keys push over ssh, or keyferry dpapi \
                                 unprotect there), then: keyferry upgrade resume -c {c}"
                            )),
                        );
                        // Nothing changed by this step; earlier ones changed nodes.
                        return Err(if earlier { fail.partial() } else { fail });
                    }
                    KeyPlan::Differs(who) => {
                        let next = confirms.peek().copied();
                        let confirmed = match next {
                            Some(n) if n == step.n => {
                                confirms.next();
                                true
                            }
                            Some(n) => {
                                return Err(refused(
                                    format!(
                                        "--confirm {n}: the step waiting is {} ({}), whose \
                                         nodes hold other keys than the primary",
                                        step.n, step.title
                                    ),
                                    "confirm the steps in order, each once it is done",
                                ))
                            }
                            None if ui.can_prompt() && std::io::stdin().is_terminal() => {
                                ui.say(&format!(
                                    "step {} ({}): these nodes hold other keys than the \
                                     primary:\n{who}",
                                    step.n, step.title
                                ));
                                ui.ask_yes(
                                    "Replace their keys with the primary's (each backed up first)?",
                                )
                            }
                            _ => false,
                        };
                        if !confirmed {
                            if ui.json {
                                super::ha::emit(ui, "upgrade-run", &state);
                                return Ok(ExitCode::SUCCESS);
                            }
                            ui.out(&format!(
                                "step {}/{} waits for you: {}\n  these nodes hold other keys \
                                 than the primary, and keyferry never replaces a key unasked:\n{who}\n\
                                 to replace them (each backed up first): keyferry upgrade resume \
                                 -c {c} --confirm {}",
                                step.n,
                                p.steps.len(),
                                step.title,
                                step.n
                            ));
                            return Ok(ExitCode::SUCCESS);
                        }
                        run_args.push("--replace".into());
                    }
                }
            }
            ui.say(&format!(
                "step {}/{}{}: {}\n  {}",
                step.n,
                p.steps.len(),
                match &place {
                    Place::Ssh { node, target } => format!(" on {node} (over {})", target.url()),
                    _ => String::new(),
                },
                step.title,
                step.what
            ));
            let (code, report) = exec.run(&place, &run_args)?;
            // What it changed or found, on which node (a failing step's too: its reasons).
            let changes = report.as_ref().map(changes).unwrap_or_default();
            for c in &changes {
                ui.say(&format!("  -> {c}"));
            }
            if !step.ok_codes.contains(&code) {
                // Steps before it changed nodes (or this one changed some and failed on
                // others): partly done, not "nothing changed".
                let earlier = state.changed_before(i);
                // The failure, its reason (the step's own error, relayed) and what it changed,
                // kept in the run's state for status and --json.
                // A step run on another node fails there: its error names that node, with the
                // node's own hint (a cluster file missing there: where, and what to set).
                let there = match &place {
                    Place::Ssh { node, target } => Some((node.clone(), target.url())),
                    _ => None,
                };
                let reason = report
                    .as_ref()
                    .and_then(|r| {
                        r["error"]["message"].as_str().map(|m| {
                            let code = r["error"]["code"].as_str().unwrap_or("?");
                            match &there {
                                None => format!("{m} [{code}]"),
                                Some((node, url)) => {
                                    let hint = r["error"]["hint"]
                                        .as_str()
                                        .map(|h| format!("; there: {h}"))
                                        .unwrap_or_default();
                                    let cluster = if m.contains("cluster file") {
                                        format!(
                                            " (copy the cluster file to that path on {node}, \
                                             or set remote_cluster in {node}'s [[node]])"
                                        )
                                    } else {
                                        String::new()
                                    };
                                    format!("on {node} ({url}): {m} [{code}]{cluster}{hint}")
                                }
                            }
                        })
                    })
                    .or_else(|| {
                        changes
                            .iter()
                            .find(|c| {
                                c.contains("error") || c.contains("FAILED") || c.contains("failed")
                            })
                            .cloned()
                    })
                    .unwrap_or_else(|| format!("keyferry exited {code}"));
                state.fail(i, &reason, changes.clone(), &path)?;
                let fail = coded(
                    "upgrade-step-failed",
                    format!(
                        "step {} ({}) failed: {reason} ({} exited {code})",
                        step.n, step.title, step.what
                    ),
                    &format!(
                        "fix the cause, then: keyferry upgrade resume -c {c} (the step runs again){}",
                        report
                            .as_ref()
                            .and_then(|r| keyferry::upgrade::undo_of(r, &args.cluster.display().to_string(), &local.name))
                            .or_else(|| step.undo.clone())
                            .map(|u| format!("; to undo what it changed: {u}"))
                            .unwrap_or_default()
                    ),
                );
                return Err(if earlier || code == i32::from(crate::exit::PARTIAL) {
                    fail.partial()
                } else {
                    fail
                });
            }
            if let Some(r) = &report {
                // The command's whole report, kept with the run as its record.
                let dir = records(&local.state_dir, &state.started);
                keyferry::fs::create_private_dir(&dir)?;
                let text = serde_json::to_vec_pretty(r).unwrap_or_default();
                keyferry::fs::write_private(
                    &dir.join(format!("{:02}-{}.json", step.n, step.id)),
                    &text,
                )?;
            }
            keyferry::failpoint::hit("upgrade:step-ran");
            state.mark(i, "ran", began.elapsed().as_secs_f64(), changes, &path)?;
            keyferry::failpoint::hit("upgrade:step-done");
            continue;
        }
        // The admin's step (or keyferry's, on another node).
        let confirmed = match confirms.peek() {
            Some(&n) if n == step.n => {
                confirms.next();
                true
            }
            Some(&n) => {
                return Err(refused(
                    format!(
                        "--confirm {n}: the step waiting is {} ({})",
                        step.n, step.title
                    ),
                    "confirm the steps in order, each once it is done",
                ))
            }
            None if ui.can_prompt() && std::io::stdin().is_terminal() => {
                ui.say(&waiting(step, p.steps.len()));
                ui.ask_yes("Done?")
            }
            None => false,
        };
        if !confirmed {
            if ui.json {
                super::ha::emit(ui, "upgrade-run", &state);
                return Ok(ExitCode::SUCCESS);
            }
            if !ui.can_prompt() {
                ui.out(&waiting(step, p.steps.len()));
            }
            ui.out(&format!(
                "when it is done: keyferry upgrade resume -c {c} --confirm {}",
                step.n
            ));
            return Ok(ExitCode::SUCCESS);
        }
        state.mark(
            i,
            "confirmed",
            began.elapsed().as_secs_f64(),
            Vec::new(),
            &path,
        )?;
        ui.say(&format!(
            "step {}/{} confirmed: {}{}",
            step.n,
            p.steps.len(),
            step.title,
            on(&step.node)
        ));
        keyferry::failpoint::hit("upgrade:step-done");
    }
    if let Some(&n) = confirms.peek() {
        return Err(refused(
            format!("--confirm {n}: every step is done"),
            "nothing waits",
        ));
    }
    // The finished run beside its steps' reports, where the next run leaves it.
    let dir = records(&local.state_dir, &state.started);
    keyferry::fs::create_private_dir(&dir)?;
    let record = dir.join("upgrade-run.json");
    state.save(&record)?;
    if ui.json {
        super::ha::emit(ui, "upgrade-run", &state);
        return Ok(ExitCode::SUCCESS);
    }
    ui.out(&format!(
        "upgrade finished: {} steps ({} run by keyferry, {} confirmed); the record is {}",
        state.steps.len(),
        state
            .steps
            .iter()
            .filter(|s| s.done.as_deref() == Some("ran"))
            .count(),
        state
            .steps
            .iter()
            .filter(|s| s.done.as_deref() == Some("confirmed"))
            .count(),
        record.display()
    ));
    Ok(ExitCode::SUCCESS)
}

use std::io::IsTerminal;

/// What a key step's dry run found.
enum KeyPlan {
    /// Nothing differs: the push installs or leaves keys as they are.
    Clear,
    /// Nodes whose keys differ (one line each: fingerprints, files, their protection): the
    /// admin decides.
    Differs(String),
    /// Nodes no confirmation may change from here (a key that cannot be compared, a check).
    Blocked(String),
}

/// Plans a key push step: its own command with `--dry-run`, where it runs.
fn key_step_plan(
    exec: &Exec,
    place: &Place,
    step: &Step,
) -> Result<KeyPlan, crate::failure::Failure> {
    let mut dry = step.args.clone();
    dry.push("--dry-run".into());
    let (code, report) = exec.run(place, &dry)?;
    let Some(report) = report.filter(|_| code == 0 || code == 1) else {
        return Err(crate::failure::Failure::new(
            "step-failed",
            format!(
                "step {} ({}): its plan (keyferry {}) exited {code}",
                step.n,
                step.title,
                dry.join(" ")
            ),
            Some("the lines above say why; fix that, then resume the run"),
        ));
    };
    let source = report["fingerprint"].as_str().unwrap_or("?").to_owned();
    let mut differs = Vec::new();
    let mut blocked = Vec::new();
    for t in report["targets"].as_array().into_iter().flatten() {
        if t["outcome"] != "would-refuse" {
            continue;
        }
        let node = t["node"].as_str().unwrap_or("?");
        let files: Vec<String> = t["files"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|f| f["action"] != "unchanged")
            .map(|f| {
                format!(
                    "{} ({}, {})",
                    f["path"].as_str().unwrap_or("?"),
                    f["action"].as_str().unwrap_or("?"),
                    match f["existing"].as_str() {
                        Some("none") | None => "not DPAPI-protected",
                        Some("dpapi") => "DPAPI-protected, compared by its plaintext",
                        Some(other) => other,
                    }
                )
            })
            .collect();
        let line = format!(
            "  {node}: key set {} (the primary's: {source}){}{}",
            t["before"].as_str().unwrap_or("unreadable"),
            if files.is_empty() {
                String::new()
            } else {
                format!("; {}", files.join("; "))
            },
            t["detail"]
                .as_str()
                .filter(|_| t["code"] != "key-set-differs")
                .map(|d| format!("\n    {d}"))
                .unwrap_or_default()
        );
        if t["code"] == "key-set-differs" {
            differs.push(line);
        } else {
            blocked.push(line);
        }
    }
    Ok(if !blocked.is_empty() {
        blocked.extend(differs);
        KeyPlan::Blocked(blocked.join("\n"))
    } else if !differs.is_empty() {
        KeyPlan::Differs(differs.join("\n"))
    } else {
        KeyPlan::Clear
    })
}

fn waiting(step: &Step, total: usize) -> String {
    format!(
        "step {}/{} waits for you{}: {}\n  {}{}",
        step.n,
        total,
        step.node
            .as_deref()
            .map(|n| format!(" on {n}"))
            .unwrap_or_default(),
        step.title,
        step.what,
        step.gate
            .as_deref()
            .map(|g| format!("\n  only when: {g}"))
            .unwrap_or_default()
    )
}

/// Runs this keyferry with `args` and `--json`: its messages go to the admin's terminal
/// (stderr), its report comes back. The exit code, and the report when there is one.
/// `ssh` (the program and configuration file the run was given) reaches the command through
/// KEYFERRY_SSH and KEYFERRY_SSH_CONFIG.
pub(super) fn keyferry_json(
    args: &[String],
    ssh: Option<&SshClient>,
) -> Result<(i32, Option<serde_json::Value>), crate::failure::Failure> {
    let exe = std::env::current_exe().map_err(|e| keyferry::Error::io("keyferry", e))?;
    let mut cmd = std::process::Command::new(exe);
    // Its messages and progress reach the admin as they come (stderr is this one's).
    cmd.args(args)
        .arg("--json")
        .env("KEYFERRY_STEP_PROGRESS", "1")
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::inherit());
    if let Some(ssh) = ssh {
        cmd.env("KEYFERRY_SSH", &ssh.program);
        if let Some(c) = &ssh.config {
            cmd.env("KEYFERRY_SSH_CONFIG", c);
        }
    }
    let out = cmd
        .output()
        .map_err(|e| keyferry::Error::io("keyferry", e))?;
    Ok((
        out.status.code().unwrap_or(2),
        serde_json::from_slice(&out.stdout).ok(),
    ))
}

/// Where an automatic step runs.
enum Place {
    /// On this node.
    Here,
    /// On its node, through that node's ssh access.
    Ssh { node: String, target: SshTarget },
    /// On a node keyferry cannot run it on from here: the admin runs it there.
    Elsewhere,
}

/// Runs steps' commands here or over ssh.
struct Exec<'a> {
    ui: &'a Ui,
    file: &'a ClusterFile,
    cluster: &'a std::path::Path,
    ssh: SshClient,
    timeout: std::time::Duration,
}

impl Exec<'_> {
    fn place(&self, step: &Step, local: &str) -> Place {
        let Some(node) = step.node.as_deref() else {
            return Place::Here;
        };
        if node == local {
            return Place::Here;
        }
        let base = self.cluster.parent().unwrap_or(std::path::Path::new("."));
        let spec = self.file.nodes.iter().find(|n| n.name == node);
        match spec.map(|s| parse_access(s.access.as_deref(), base)) {
            Some(Ok(Access::Ssh { user, host, port })) => Place::Ssh {
                node: node.to_owned(),
                target: SshTarget { user, host, port },
            },
            _ => Place::Elsewhere,
        }
    }

    /// Runs `keyferry <args> --json` where `place` says: the exit code and the report.
    fn run(
        &self,
        place: &Place,
        args: &[String],
    ) -> Result<(i32, Option<serde_json::Value>), crate::failure::Failure> {
        let (node, target) = match place {
            Place::Here | Place::Elsewhere => return keyferry_json(args, Some(&self.ssh)),
            Place::Ssh { node, target } => (node, target),
        };
        let Some(spec) = self.file.nodes.iter().find(|n| &n.name == node) else {
            return Err(refused(
                format!("no node {node} in the cluster file"),
                "check the cluster file",
            ));
        };
        // The step's command without its cluster file and node, which the node's own
        // (remote_cluster, its name) replace.
        let mut rest: Vec<&str> = Vec::new();
        let mut it = args.iter();
        while let Some(a) = it.next() {
            if a == "-c" || a == "--node" {
                it.next();
            } else {
                rest.push(a);
            }
        }
        let words = spec.remote_command(self.cluster, &rest);
        // Its messages and progress lines, as they come (escaped: another machine's).
        let done = self
            .ssh
            .run_streaming(target, &words, self.timeout, 16 << 20, &|line| {
                self.ui.relay(node, &String::from_utf8_lossy(line))
            })
            .map_err(|e| {
                refused(
                    format!("keyferry on {node} through {}: {e}", target.url()),
                    "fix ssh to the node (keyferry audit reaches it the same way), then: keyferry upgrade resume",
                )
            })?;
        Ok((
            done.code.unwrap_or(2),
            serde_json::from_slice(&done.stdout).ok(),
        ))
    }
}

fn show_status(state: &RunState, p: &Plan, ui: &Ui) {
    if ui.json {
        super::ha::emit(ui, "upgrade-status", state);
        return;
    }
    let current = state.current();
    for (i, s) in state.steps.iter().enumerate() {
        let mark = match (&s.done, Some(i) == current, &s.failed) {
            (Some(how), _, _) => how.as_str(),
            (None, true, Some(_)) => "FAILED",
            (None, true, None) => "NEXT",
            (None, false, _) => "",
        };
        ui.out(&format!("{mark:>9} {:>3}. {}{}", s.n, s.title, on(&s.node)));
        if let (None, Some(f)) = (&s.done, &s.failed) {
            ui.out(&format!("               failed {}: {}", f.at, f.reason));
        }
        for c in &s.changes {
            ui.out(&format!("               -> {c}"));
        }
    }
    match current {
        Some(i) => ui.out(&format!("next: step {}: {}", p.steps[i].n, p.steps[i].what)),
        None => ui.out(&format!(
            "finished {}",
            state.finished.as_deref().unwrap_or("")
        )),
    }
}

/// `args` with its `--node` (if any) naming `node`.
fn on_node(args: &[String], node: &str) -> Vec<String> {
    let mut out = args.to_vec();
    if let Some(i) = out.iter().position(|a| a == "--node") {
        if let Some(v) = out.get_mut(i + 1) {
            *v = node.to_owned();
        }
    }
    out
}

/// " (on NODE)" for a step's node.
fn on(node: &Option<String>) -> String {
    node.as_deref()
        .map(|n| format!(" (on {n})"))
        .unwrap_or_default()
}

/// Where a run keeps each automatic step's report: `upgrade-runs/<its start>/` beside its
/// state, so an earlier run's record stays.
fn records(state_dir: &std::path::Path, started: &str) -> PathBuf {
    let stamp: String = started
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .collect();
    state_dir.join("upgrade-runs").join(stamp)
}
