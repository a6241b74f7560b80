//! `keyferry upgrade plan|run|resume|status`: the vendor upgrade procedure for this cluster as
//! a checklist (node names filled in, automatic steps as the keyferry commands they are,
//! manual steps as what to do where, the check that gates each step), and a run of it that
//! keeps its state after every step.

use crate::cmd::CmdResult;
use crate::failure::{Code, Failure};
use crate::ui::Ui;
use clap::Subcommand;
use keyferry::cluster::ClusterFile;
use keyferry::remote::{SshClient, SshTarget};
use keyferry::upgrade::{plan, Done, Kind, Plan, RunState, Step};
use keyferry::upgrade::{Driver, Event, Hands, Question, Ran, RunError, Stop, Wait};
use keyferry::Error;
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
    #[command(flatten)]
    pub cluster: crate::node_args::ClusterArg,
    #[command(flatten)]
    pub node: crate::node_args::NodeName,
    /// The waiting step N is done (repeatable, or a list: --confirm 4,5,6; in order, each
    /// step's gate still checked)
    #[arg(long, value_name = "N", value_delimiter = ',')]
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
    #[command(flatten)]
    pub cluster: crate::node_args::ClusterArg,
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
        UpgradeCommand::Run(a) => return drive(a, ui, Start::New),
        UpgradeCommand::Resume(a) => return drive(a, ui, Start::Resume),
        UpgradeCommand::Status(a) => return drive(a, ui, Start::Status),
        UpgradeCommand::Abandon(a) => return drive(a, ui, Start::Abandon),
        UpgradeCommand::Preflight(a) => return preflight::run(a, ui),
    };
    let file = args.cluster.load()?;
    let p = checklist(&file, &args.cluster.path, args.add_node.as_deref())?;
    ui.show("upgrade-plan", &p, || {
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
    });
    Ok(ExitCode::SUCCESS)
}

#[derive(Clone, Copy, PartialEq)]
enum Start {
    New,
    Resume,
    Status,
    Abandon,
}

/// What the admin is told to do when the run refuses or fails: each refusal with its own
/// code (`upgrade-wrong-node`, `upgrade-gate`, `upgrade-step-failed`, `upgrade-run-changed`,
/// `upgrade-in-progress`, `upgrade-no-run`, `key-protection`), so scripts tell them apart.
/// `c` is how the admin names this run (`-c FILE` and the options that go with it).
fn failure(e: RunError, c: &str) -> Failure {
    let f = |code: Code, why: String, hint: String| Failure::new(code, why, Some(&hint));
    match e {
        RunError::WrongNode { driver, here } => f(
            Code::UpgradeWrongNode,
            format!("the upgrade is driven from the primary, {driver}, and this is {here}"),
            format!(
                "run keyferry upgrade run on {driver} (the steps for other nodes run there over \
                 ssh or are shown to you); if {here} is the primary now, say so in the cluster \
                 file (role = \"primary\")"
            ),
        ),
        RunError::Busy { lock } => f(
            Code::UpgradeInProgress,
            format!(
                "another keyferry command is working on this node's upgrade run now (it holds {})",
                lock.display()
            ),
            format!(
                "let it finish (it may be waiting for its admin's answer in another terminal), \
                 then: keyferry upgrade status -c {c}"
            ),
        ),
        RunError::InProgress { path } => f(
            Code::UpgradeInProgress,
            format!("an upgrade run is in progress here ({})", path.display()),
            format!(
                "keyferry upgrade status -c {c} shows it; keyferry upgrade resume -c {c} goes on"
            ),
        ),
        RunError::NoRun { path } => f(
            Code::UpgradeNoRun,
            format!("no upgrade run here ({})", path.display()),
            format!("keyferry upgrade run -c {c} starts one"),
        ),
        RunError::Changed { path } => f(
            Code::UpgradeRunChanged,
            "the cluster file's checklist is not the one this run started with".into(),
            format!(
                "put the cluster file back as it was, or abandon the run (keyferry upgrade \
                 abandon -c {c}, kept on record) to start over; the run is {}",
                path.display()
            ),
        ),
        RunError::NotWaiting {
            flag,
            n,
            waiting: None,
            ..
        } => f(
            Code::Upgrade,
            format!("{flag} {n}: every step is done"),
            "nothing waits".into(),
        ),
        RunError::NotWaiting {
            flag,
            n,
            waiting: Some((w, title)),
            keys,
        } => f(
            Code::Upgrade,
            format!(
                "{flag} {n}: the step waiting is {w} ({title}){}",
                if keys {
                    ", whose nodes hold other keys than the primary"
                } else {
                    ""
                }
            ),
            if flag == "--mark-done" {
                "mark the waiting step, after checking its end state".into()
            } else {
                "confirm the steps in order, each once it is done".into()
            },
        ),
        RunError::Gate {
            n,
            title,
            gate,
            command,
            code,
        } => f(
            Code::UpgradeGate,
            format!("step {n} ({title}) waits for: {gate}; keyferry {command} exited {code}"),
            format!("fix that, then: keyferry upgrade resume -c {c}"),
        ),
        RunError::KeyPlan {
            n,
            title,
            command,
            code,
            reason,
        } => f(
            Code::StepFailed,
            format!(
                "step {n} ({title}): its plan (keyferry {command}) exited {code}{}",
                reason.map(|r| format!(": {r}")).unwrap_or_default()
            ),
            format!("fix that, then: keyferry upgrade resume -c {c}"),
        ),
        RunError::KeysBlocked {
            n,
            title,
            who,
            partial,
        } => {
            let fail = Failure::library(
                Error::KeyProtection,
                format!(
                    "step {n} ({title}) cannot bring these nodes to the primary's keys from \
                     here:\n{who}"
                ),
                Some(&format!(
                    "act on each node named (its own keyferry compares a DPAPI key it can \
                     decrypt: keys push over ssh, or keyferry dpapi unprotect there), then: \
                     keyferry upgrade resume -c {c}"
                )),
            );
            // Nothing changed by this step; earlier ones may have changed nodes.
            if partial {
                fail.partial()
            } else {
                fail
            }
        }
        RunError::StepFailed {
            n,
            title,
            what,
            code,
            reason,
            undo,
            partial,
        } => {
            let fail = f(
                Code::UpgradeStepFailed,
                format!("step {n} ({title}) failed: {reason} ({what} exited {code})"),
                format!(
                    "fix the cause, then: keyferry upgrade resume -c {c} (the step runs again){}",
                    undo.map(|u| format!("; to undo what it changed: {u}"))
                        .unwrap_or_default()
                ),
            );
            if partial {
                fail.partial()
            } else {
                fail
            }
        }
        RunError::Unreachable { node, url, why } => f(
            Code::Upgrade,
            format!("keyferry on {node} through {url}: {why}"),
            format!(
                "fix ssh to the node (keyferry audit reaches it the same way), then: keyferry \
                 upgrade resume -c {c}"
            ),
        ),
        RunError::Error(e) => e.into(),
    }
}

/// Starts, resumes, shows or abandons this node's run, and drives it as far as it goes.
fn drive(args: RunArgs, ui: &Ui, start: Start) -> CmdResult {
    if matches!(start, Start::Status | Start::Abandon)
        && (!args.confirm.is_empty() || args.mark_done.is_some())
    {
        return Err(Failure::new(
            Code::Usage,
            "--confirm and --mark-done go with upgrade run or resume, not with status or abandon",
            Some("keyferry upgrade resume -c FILE --confirm N"),
        ));
    }
    let file = args.cluster.load()?;
    let spec = args.node.select(&file)?;
    let local = keyferry::cluster::Node::from_cluster(&file, spec, None)?;
    let p = checklist(&file, &args.cluster.path, args.add_node.as_deref())?;
    let driver = Driver {
        file: &file,
        cluster: &args.cluster.path,
        local: &local.name,
        state_dir: &local.state_dir,
        plan: &p,
    };
    // How the admin names this run in the commands we suggest.
    // (each value one word, quoted where it has spaces).
    let mut words = vec![args.cluster.path.display().to_string()];
    if let Some(n) = &args.node.name {
        words.extend(["--node".to_owned(), n.clone()]);
    }
    if let Some(f) = &args.ssh.ssh_config {
        words.extend(["--ssh-config".to_owned(), f.display().to_string()]);
    }
    let c = keyferry::text::command_line(&words);
    let fail = |e: RunError| failure(e, &c);
    match start {
        Start::Status => {
            match driver.status().map_err(fail)? {
                Some(state) => show_status(&state, &p, ui),
                // No run is an answer, not an error.
                None => ui.show(
                    "upgrade-status",
                    &serde_json::json!({ "run": null, "state": driver.state_path() }),
                    || {
                        ui.out(&format!(
                            "no upgrade run here ({}); keyferry upgrade run -c {c} starts one",
                            driver.state_path().display()
                        ))
                    },
                ),
            }
            return Ok(ExitCode::SUCCESS);
        }
        Start::Abandon => {
            let held = driver.lock(true).map_err(fail)?;
            // What the run changed and would have put back itself (a pool it stopped) is
            // put back first, on each node, each said.
            if let Some(open) = driver
                .status()
                .map_err(fail)?
                .filter(|r| r.finished.is_none())
            {
                let hands = Terminal {
                    ui,
                    ssh: args.ssh.client(),
                    timeout: args.step_timeout,
                    asked: std::cell::Cell::new(false),
                };
                driver.put_back(&open, &hands, &held);
            }
            let (state, record) = driver.abandon(&held).map_err(fail)?;
            ui.show("upgrade-run", &state, || {
                let done = state.steps.iter().filter(|s| s.done.is_some()).count();
                ui.out(&format!(
                    "the run started {} is abandoned after {done} of {} steps; its record is \
                     {} (what its steps changed stays as it is: see that record and each \
                     step's undo); keyferry upgrade run -c {c} starts a new one",
                    state.started,
                    state.steps.len(),
                    record.display()
                ));
            });
            return Ok(ExitCode::SUCCESS);
        }
        Start::New | Start::Resume => {}
    }
    // Held to the end: one command at a time works on this node's run.
    let held = driver.lock(start == Start::Resume).map_err(fail)?;
    let mut state = driver.open(start == Start::Resume, &held).map_err(fail)?;
    let hands = Terminal {
        ui,
        ssh: args.ssh.client(),
        timeout: args.step_timeout,
        asked: std::cell::Cell::new(false),
    };
    if let Some(m) = args.mark_done {
        let why = args.because.as_deref().unwrap_or_default();
        driver.mark_done(&mut state, m, why, &hands).map_err(fail)?;
    }
    let stop = driver
        .advance(&mut state, &args.confirm, &hands)
        .map_err(fail)?;
    ui.show("upgrade-run", &state, || match stop {
        Stop::Finished { record } => {
            let count = |how| state.steps.iter().filter(|s| s.done == Some(how)).count();
            ui.out(&format!(
                "upgrade finished: {} steps ({} run by keyferry, {} confirmed); the record is {}",
                state.steps.len(),
                count(Done::Ran),
                count(Done::Confirmed),
                record.display()
            ));
        }
        Stop::Waiting {
            at,
            why: Wait::KeysDiffer(who),
        } => {
            let step = &p.steps[at];
            ui.out(&format!(
                "step {}/{} waits for you: {}\n  these nodes hold other keys than the primary, \
                 and keyferry never replaces a key unasked:\n{who}\n\
                 to replace them (each backed up first): keyferry upgrade resume -c {c} \
                 --confirm {}",
                step.n,
                p.steps.len(),
                step.title,
                step.n
            ));
        }
        Stop::Waiting {
            at,
            why: Wait::Manual,
        } => {
            let step = &p.steps[at];
            if !hands.asked.get() {
                ui.out(&waiting(step, p.steps.len()));
            }
            ui.out(&format!(
                "when it is done: keyferry upgrade resume -c {c} --confirm {}",
                step.n
            ));
        }
    });
    Ok(ExitCode::SUCCESS)
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

/// The run's hands on this terminal: keyferry's own commands as children here (each takes
/// its node's lock, writes its report, exits with its code) or over ssh on another node;
/// what the run says, on stderr; its questions, where someone can answer.
struct Terminal<'a> {
    ui: &'a Ui,
    ssh: SshClient,
    timeout: std::time::Duration,
    /// A question was put to the admin (the step was shown with it).
    asked: std::cell::Cell<bool>,
}

/// The error document a failed command writes with `--json`.
fn error_document(f: &Failure) -> Vec<u8> {
    serde_json::to_vec(&keyferry::report::ErrorEnvelope::of(&f.doc())).unwrap_or_default()
}

impl Hands for Terminal<'_> {
    /// The step's keyferry command, run in this process (no child): parsed as its command
    /// line, with `--json --batch`, its report kept, its messages and progress lines on
    /// stderr as they come, its failure its error document.
    fn here(&self, args: &[String]) -> keyferry::Result<Ran> {
        use clap::Parser;
        let argv = |ssh: bool| {
            let mut v = vec!["keyferry".to_owned()];
            v.extend(args.iter().cloned());
            v.extend(["--json".to_owned(), "--batch".to_owned()]);
            // The run's ssh program and configuration, for a step that reaches nodes.
            if ssh {
                v.extend(["--ssh".to_owned(), self.ssh.program.clone()]);
                if let Some(c) = &self.ssh.config {
                    v.extend(["--ssh-config".to_owned(), c.display().to_string()]);
                }
            }
            v
        };
        let parsed = crate::cli::Cli::try_parse_from(argv(true))
            .or_else(|_| crate::cli::Cli::try_parse_from(argv(false)));
        let cli = match parsed {
            Ok(cli) => cli,
            Err(e) => {
                return Ok(Ran {
                    code: i32::from(crate::exit::ERROR),
                    stdout: error_document(&Failure::new(
                        Code::Usage,
                        format!(
                            "keyferry {}: {}",
                            keyferry::text::command_line(args),
                            e.kind()
                        ),
                        None,
                    )),
                })
            }
        };
        let ui = Ui::capturing(cli.global.color);
        let tree = <crate::cli::Cli as clap::CommandFactory>::command;
        Ok(match crate::cmd::run(cli.command, &ui, tree) {
            Ok(code) => Ran {
                code: crate::exit::code_of(code),
                stdout: ui.captured(),
            },
            Err(f) => {
                // Its error on stderr as it would have said it, and its document for the run.
                ui.failure(&f);
                Ran {
                    code: i32::from(f.exit),
                    stdout: error_document(&f),
                }
            }
        })
    }

    fn there(&self, node: &str, target: &SshTarget, words: &[String]) -> Result<Ran, String> {
        // Its messages and progress lines, as they come (escaped: another machine's).
        let done = self
            .ssh
            .run_streaming(target, words, self.timeout, 16 << 20, &|line| {
                self.ui.relay(node, &String::from_utf8_lossy(line))
            })
            .map_err(|e| e.to_string())?;
        Ok(Ran {
            code: done.code.unwrap_or(i32::from(crate::exit::ERROR)),
            stdout: done.stdout,
        })
    }

    fn tell(&self, event: Event<'_>) {
        let ui = self.ui;
        match event {
            Event::DoneAlready(n) => ui.info(&format!("step {n} is done already")),
            Event::Marked { n, why } => ui.info(&format!(
                "step {n} marked done ({why}); the run goes on at the next step"
            )),
            Event::AlreadyDone { step, seen } => ui.say(&format!(
                "step {} ({}): already done ({seen})",
                step.n, step.title
            )),
            Event::CheckingGate { step } => ui.say(&format!(
                "step {}: checking its gate: {}",
                step.n,
                step.gate.as_deref().unwrap_or("")
            )),
            Event::Running { step, total, over } => ui.say(&format!(
                "step {}/{total}{}: {}\n  {}",
                step.n,
                over.map(|(node, url)| format!(" on {node} (over {url})"))
                    .unwrap_or_default(),
                step.title,
                step.what
            )),
            Event::Changed(c) => ui.say(&format!("  -> {c}")),
            Event::WaitingReboot {
                node,
                seconds,
                last,
            } => ui.say(&format!(
                "  waiting for {node} to come back ({seconds}s so far): {last}"
            )),
            Event::Confirmed { step, total } => ui.say(&format!(
                "step {}/{total} confirmed: {}{}",
                step.n,
                step.title,
                on(&step.node)
            )),
        }
    }

    fn ask(&self, question: Question<'_>) -> Option<bool> {
        if !(self.ui.can_prompt() && self.ui.stdin_is_terminal()) {
            return None;
        }
        self.asked.set(true);
        Some(match question {
            Question::ReplaceKeys { step, who } => {
                self.ui.say(&format!(
                    "step {} ({}): these nodes hold other keys than the primary:\n{who}",
                    step.n, step.title
                ));
                self.ui
                    .ask_yes("Replace their keys with the primary's (each backed up first)?")
            }
            Question::Done { step, total } => {
                self.ui.say(&waiting(step, total));
                self.ui.ask_yes("Done?")
            }
        })
    }
}

fn show_status(state: &RunState, p: &Plan, ui: &Ui) {
    ui.show("upgrade-status", state, || {
        let current = state.current();
        for (i, s) in state.steps.iter().enumerate() {
            let mark = match (s.done, Some(i) == current, &s.failed) {
                (Some(how), _, _) => how.word(),
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
    });
}

/// " (on NODE)" for a step's node.
fn on(node: &Option<String>) -> String {
    node.as_deref()
        .map(|n| format!(" (on {n})"))
        .unwrap_or_default()
}
