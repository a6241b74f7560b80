//! The upgrade run: walks a [`Plan`] from the node that drives it, keeping its [`RunState`]
//! after every step, so that a reboot, a lost session or a crash resumes at the first step
//! not done.
//!
//! The engine decides everything about the run: which node a step runs on, whether its end
//! state holds already (then it is done without running), its gate, the key step's plan and
//! the admin's say before a differing key is replaced, what a step changed and why it failed
//! (from its command's typed report, [`crate::report`]), and what undoes it. The binary
//! supplies [`Hands`]: running a keyferry command here or on another node, telling the admin
//! and asking them; it decides how things look, nothing more.

use super::{Done, Kind, Plan, RunState, Step};
use crate::cluster::access::{parse_access, Access};
use crate::cluster::ClusterFile;
use crate::error::{Error, Result};
use crate::ha::status::{PairStatus, Role};
use crate::remote::ssh::SshTarget;
use crate::report::{Document, StepReport};
use erased::Word;
use std::path::{Path, PathBuf};

mod reboot;
mod reports;

use reboot::{reboot_wait, wait_reboot, why_not};
pub use reports::{changes, key_plan_of, undo_of, KeyPlan};
use reports::{failure_reason, on_node};

/// Where an automatic step runs.
#[derive(Debug, Clone)]
pub enum Place {
    /// On this node.
    Here,
    /// On its node, through that node's ssh access.
    Ssh { node: String, target: SshTarget },
    /// On a node keyferry cannot run it on from here: the admin runs it there.
    Elsewhere,
}

/// What a keyferry command run for a step gave back.
#[derive(Debug, Clone)]
pub struct Ran {
    /// Its exit code.
    pub code: i32,
    /// Its standard output: its `--json` report.
    pub stdout: Vec<u8>,
}

/// What the run tells the admin as it goes.
#[derive(Debug)]
pub enum Event<'a> {
    /// A `--confirm N` for a step done already (the same resume typed again).
    DoneAlready(usize),
    /// The admin marked the waiting step done (`--mark-done N --because ...`).
    Marked {
        /// The step's number.
        n: usize,
        /// The admin's reason (`--because`).
        why: &'a str,
    },
    /// A step's end state held already: done without running it.
    AlreadyDone {
        /// The step.
        step: &'a Step,
        /// What showed it done.
        seen: &'a str,
    },
    /// A step's gate is being checked.
    CheckingGate {
        /// The step.
        step: &'a Step,
    },
    /// A step starts, here or on a node over ssh (`over`: the node and its address).
    Running {
        /// The step.
        step: &'a Step,
        /// How many steps the checklist has.
        total: usize,
        /// The node it runs on, and its ssh address, when it runs over ssh.
        over: Option<(&'a str, String)>,
    },
    /// What a step changed or found, one line.
    Changed(&'a str),
    /// The admin confirmed a step.
    Confirmed {
        /// The step.
        step: &'a Step,
        /// How many steps the checklist has.
        total: usize,
    },
    /// Waiting for a rebooted node to answer again (how long so far, and what it last said).
    WaitingReboot {
        /// The node.
        node: &'a str,
        /// Seconds waited so far.
        seconds: u64,
        /// Its last answer, or why it did not answer.
        last: &'a str,
    },
}

/// How long a rebooted node may take to answer again, and how often it is asked.
pub const REBOOT_DEADLINE: std::time::Duration = std::time::Duration::from_secs(20 * 60);
const REBOOT_POLL: std::time::Duration = std::time::Duration::from_secs(10);

/// What the run asks the admin, where someone can answer.
#[derive(Debug)]
pub enum Question<'a> {
    /// The key step would replace these nodes' keys (one line each in `who`).
    ReplaceKeys {
        /// The key step.
        step: &'a Step,
        /// The nodes, one line each.
        who: &'a str,
    },
    /// A manual step (or one for a node keyferry cannot reach): is it done?
    Done {
        /// The step.
        step: &'a Step,
        /// How many steps the checklist has.
        total: usize,
    },
}

/// What the engine needs from whoever drives it.
pub trait Hands {
    /// Runs `keyferry <args> --json` on this node.
    fn here(&self, args: &[String]) -> Result<Ran>;
    /// Runs `words` (a keyferry command line for that node,
    /// [`crate::cluster::file::NodeSpec::remote_command`])
    /// on `node` through `target`, its lines relayed as they come. `Err` says why it could
    /// not be run there.
    fn there(
        &self,
        node: &str,
        target: &SshTarget,
        words: &[String],
    ) -> std::result::Result<Ran, String>;
    /// Tells the admin what happens (an [`Event`]).
    fn tell(&self, event: Event<'_>);
    /// The admin's answer, or `None` where nobody can answer (no terminal, `--batch`).
    fn ask(&self, question: Question<'_>) -> Option<bool>;
}

/// Why a run stops before its end.
#[derive(Debug)]
pub enum Wait {
    /// A manual step (or one for a node keyferry cannot reach) waits for the admin.
    Manual,
    /// The key step would replace these nodes' keys (one line each): only the admin says so.
    KeysDiffer(String),
}

/// Where [`Driver::advance`] stopped.
#[derive(Debug)]
pub enum Stop {
    /// Every step is done; the run's record is at `record`.
    Finished {
        /// Where the run's record was kept.
        record: PathBuf,
    },
    /// Step index `at` waits for the admin.
    Waiting {
        /// The step's index (0-based).
        at: usize,
        /// Why it waits.
        why: Wait,
    },
}

/// Why a run refused or failed. Each has its own code in the binary.
#[derive(Debug)]
pub enum RunError {
    /// The run is driven from the primary, and this is another node.
    WrongNode {
        /// The node that drives runs (the primary).
        driver: String,
        /// This node.
        here: String,
    },
    /// A run is in progress here already.
    InProgress {
        /// The run's state file.
        path: PathBuf,
    },
    /// No run here (resume, abandon).
    NoRun {
        /// Where the run's state file would be.
        path: PathBuf,
    },
    /// The cluster file's checklist is not the one the run started with.
    Changed {
        /// The run's state file.
        path: PathBuf,
    },
    /// A `--confirm N` or `--mark-done N` for a step that is not the one waiting (`waiting`:
    /// that one, or none when every step is done).
    NotWaiting {
        /// `--confirm` or `--mark-done`.
        flag: &'static str,
        /// The step's number given.
        n: usize,
        /// The step that waits (its number and title), if one does.
        waiting: Option<(usize, String)>,
        /// The waiting step's nodes hold other keys than the primary.
        keys: bool,
    },
    /// A step's gate does not hold.
    Gate {
        /// The step's number.
        n: usize,
        /// Its title.
        title: String,
        /// The gate that does not hold.
        gate: String,
        /// The command that checked it.
        command: String,
        /// That command's exit code.
        code: i32,
    },
    /// The key step's own plan (its dry run) failed.
    KeyPlan {
        /// The step's number.
        n: usize,
        /// Its title.
        title: String,
        /// The dry run's command.
        command: String,
        /// Its exit code.
        code: i32,
        /// Its reason, where its report said one.
        reason: Option<String>,
    },
    /// Nodes no confirmation may change from here (a key that cannot be compared).
    KeysBlocked {
        /// The step's number.
        n: usize,
        /// Its title.
        title: String,
        /// The nodes, one line each.
        who: String,
        /// Other nodes of the step were changed already.
        partial: bool,
    },
    /// A step failed: its own reason, and what undoes what it changed.
    StepFailed {
        /// The step's number.
        n: usize,
        /// Its title.
        title: String,
        /// What ran (the command, or the action).
        what: String,
        /// Its exit code.
        code: i32,
        /// Why it failed.
        reason: String,
        /// The command that undoes what it changed, where one does.
        undo: Option<String>,
        /// It changed some things before it failed.
        partial: bool,
    },
    /// A step's node could not be reached.
    Unreachable {
        /// The node.
        node: String,
        /// Its ssh address.
        url: String,
        /// Why it could not be reached.
        why: String,
    },
    /// Another command works on this node's run now (its lock is held).
    Busy {
        /// The lock file held.
        lock: PathBuf,
    },
    /// The run's own files.
    Error(Error),
}

/// A `--confirm N` for step `n` while `step` is the one waiting (`keys`: it waits for the
/// admin's say on replacing keys).
fn not_waiting(n: usize, step: &Step, keys: bool) -> RunError {
    RunError::NotWaiting {
        flag: "--confirm",
        n,
        waiting: Some((step.n, step.title.clone())),
        keys,
    }
}

/// Held while a command works on this node's upgrade run (run, resume, mark done, abandon):
/// one at a time, so that two terminals never run, mark or put back the same steps twice.
/// It is not the node's lock, which each step's own command takes for itself.
#[derive(Debug)]
pub struct RunLock {
    _held: crate::txn::NodeLock,
}

impl From<Error> for RunError {
    fn from(e: Error) -> RunError {
        RunError::Error(e)
    }
}

/// Where a run keeps each automatic step's report: `upgrade-runs/<its start>/` beside its
/// state, so an earlier run's record stays.
pub fn records(state_dir: &Path, started: &str) -> PathBuf {
    let stamp: String = started
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .collect();
    state_dir.join("upgrade-runs").join(stamp)
}

/// The run's setting: the cluster file, its path as given, this node, its state folder and
/// the checklist.
pub struct Driver<'a> {
    /// The cluster file.
    pub file: &'a ClusterFile,
    /// The cluster file's path as given (steps pass it on).
    pub cluster: &'a Path,
    /// This node's name.
    pub local: &'a str,
    /// This node's state folder.
    pub state_dir: &'a Path,
    /// The checklist.
    pub plan: &'a Plan,
}

impl Driver<'_> {
    /// Where the run's state is kept.
    pub fn state_path(&self) -> PathBuf {
        super::state_path(self.state_dir)
    }

    /// Takes this node's run lock, or says that another command holds it (no wait: the
    /// other command may be waiting for its admin). Refused first, creating nothing, on any
    /// node but the driver, and (`needs_run`: resume, mark, abandon) where no run is open.
    pub fn lock(&self, needs_run: bool) -> std::result::Result<RunLock, RunError> {
        if !self.local.eq_ignore_ascii_case(&self.plan.driver) {
            return Err(RunError::WrongNode {
                driver: self.plan.driver.clone(),
                here: self.local.to_owned(),
            });
        }
        let path = self.state_path();
        if needs_run
            && RunState::load(&path)?
                .filter(|r| r.finished.is_none())
                .is_none()
        {
            return Err(RunError::NoRun { path });
        }
        match crate::txn::NodeLock::acquire_file(
            self.state_dir,
            "upgrade.lock",
            self.local,
            std::time::Duration::ZERO,
        ) {
            Ok(l) => Ok(RunLock { _held: l }),
            Err(Error::NodeBusy { lock, .. }) => Err(RunError::Busy { lock }),
            Err(e) => Err(e.into()),
        }
    }

    /// The run kept here, unfinished (or finished, for `status`), checked against the
    /// checklist.
    pub fn status(&self) -> std::result::Result<Option<RunState>, RunError> {
        let path = self.state_path();
        match RunState::load(&path)? {
            None => Ok(None),
            Some(s) if !s.matches(self.plan) => Err(RunError::Changed { path }),
            Some(s) => Ok(Some(s)),
        }
    }

    /// Gives up the run here: kept on record beside its steps' reports, then the active
    /// run goes (a run whose checklist no longer matches can be abandoned too). The run
    /// and its record's path.
    pub fn abandon(&self, _held: &RunLock) -> std::result::Result<(RunState, PathBuf), RunError> {
        let path = self.state_path();
        let Some(mut state) = RunState::load(&path)?.filter(|r| r.finished.is_none()) else {
            return Err(RunError::NoRun { path });
        };
        state.abandoned = Some(crate::time::Timestamp::now().to_string());
        let dir = records(self.state_dir, &state.started);
        crate::fs::create_private_dir(&dir)?;
        let record = dir.join("upgrade-run.json");
        state.save(&record)?;
        crate::fs::remove_if_present(&path)?;
        Ok((state, record))
    }

    /// Starts a run (`resume`: goes on with the one here). Refused when a run is in progress
    /// (`new`), when none is (`resume`), and when the checklist changed; only the driver gets
    /// the `RunLock` it needs ([`Driver::lock`]).
    pub fn open(&self, resume: bool, _held: &RunLock) -> std::result::Result<RunState, RunError> {
        let path = self.state_path();
        let loaded = RunState::load(&path)?;
        if let Some(done) = loaded.as_ref().filter(|r| r.finished.is_some()) {
            // A finished run is kept beside its reports before a new run takes its place
            // (it is already, unless the run was cut off right after its last step).
            let record = records(self.state_dir, &done.started).join("upgrade-run.json");
            if !resume && !record.exists() {
                crate::fs::create_private_dir(record.parent().unwrap_or(self.state_dir))?;
                done.save(&record)?;
            }
        }
        let state = match (resume, loaded.filter(|r| r.finished.is_none())) {
            (false, Some(_)) => return Err(RunError::InProgress { path }),
            (true, None) => return Err(RunError::NoRun { path }),
            (true, Some(s)) => s,
            (false, None) => {
                let mut s = RunState::new(self.plan, self.local);
                // Each run's reports in a folder of their own (named after its start, in
                // seconds).
                while records(self.state_dir, &s.started).exists() {
                    std::thread::sleep(std::time::Duration::from_millis(200));
                    s = RunState::new(self.plan, self.local);
                }
                crate::fs::create_private_dir(self.state_dir)?;
                s.save(&path)?;
                s
            }
        };
        if !state.matches(self.plan) {
            return Err(RunError::Changed { path });
        }
        Ok(state)
    }

    /// Marks the waiting step `n` done without running it, after the admin checked its end
    /// state (`why`, kept in the record).
    pub fn mark_done(
        &self,
        state: &mut RunState,
        n: usize,
        why: &str,
        hands: &dyn Hands,
    ) -> std::result::Result<(), RunError> {
        let Some(i) = state.current() else {
            return Err(RunError::NotWaiting {
                flag: "--mark-done",
                n,
                waiting: None,
                keys: false,
            });
        };
        if state.steps[i].n != n {
            return Err(RunError::NotWaiting {
                flag: "--mark-done",
                n,
                waiting: Some((state.steps[i].n, state.steps[i].title.clone())),
                keys: false,
            });
        }
        state.mark(
            i,
            Done::Marked,
            0.0,
            vec![format!("marked done by the admin: {why}")],
            &self.state_path(),
        )?;
        hands.tell(Event::Marked { n, why });
        Ok(())
    }

    /// Puts back what the run's steps changed and nothing later put back (a pool it stopped
    /// and did not start again), each where its step ran: for `upgrade abandon`, before the
    /// run is given up. One line per step, said as it goes; a failure is said and the rest
    /// still tried.
    pub fn put_back(&self, state: &RunState, hands: &dyn Hands, _held: &RunLock) -> Vec<String> {
        let p = self.plan;
        let mut said = Vec::new();
        for (i, step) in p.steps.iter().enumerate().rev() {
            let ran = matches!(state.steps.get(i).and_then(|s| s.done), Some(Done::Ran));
            if !ran || step.undo_args.is_empty() {
                continue;
            }
            let put_back_later = p.steps.iter().enumerate().any(|(j, s)| {
                Some(&s.id) == step.undone_by.as_ref()
                    && s.node == step.node
                    && state.steps.get(j).is_some_and(|t| t.done.is_some())
            });
            if put_back_later {
                continue;
            }
            let node = step.node.as_deref().unwrap_or(self.local);
            let line = match self.run(hands, &self.place(step), &step.undo_args) {
                Ok(ran) if ran.code == 0 => {
                    let doc = Document::parse(&ran.stdout);
                    let what = doc.as_ref().map(changes).unwrap_or_default().join("; ");
                    format!(
                        "step {} ({}) put back on {node}: {what}",
                        step.n, step.title
                    )
                }
                Ok(ran) => format!(
                    "step {} ({}) NOT put back on {node} (exit {}): run keyferry {} there",
                    step.n,
                    step.title,
                    ran.code,
                    crate::text::command_line(&step.undo_args)
                ),
                Err(e) => format!(
                    "step {} ({}) NOT put back on {node} ({}): run keyferry {} there",
                    step.n,
                    step.title,
                    why_not(e),
                    crate::text::command_line(&step.undo_args)
                ),
            };
            hands.tell(Event::Changed(&line));
            said.push(line);
        }
        said
    }

    /// Where step `step` runs from this node.
    pub fn place(&self, step: &Step) -> Place {
        let Some(node) = step.node.as_deref() else {
            return Place::Here;
        };
        if node == self.local {
            return Place::Here;
        }
        let base = self.cluster.parent().unwrap_or(Path::new("."));
        let spec = self.file.nodes.iter().find(|n| n.name == node);
        match spec.map(|s| (s, parse_access(s.access.as_deref(), base))) {
            Some((s, Ok(Access::Ssh { user, host, port }))) => Place::Ssh {
                node: node.to_owned(),
                target: SshTarget {
                    user,
                    host,
                    port,
                    launch: s.launch(),
                },
            },
            _ => Place::Elsewhere,
        }
    }

    /// Runs `keyferry <args> --json` where `place` says: on another node, the step's command
    /// without its cluster file and node, which that node's own (`remote_cluster`, its name)
    /// replace.
    fn run(
        &self,
        hands: &dyn Hands,
        place: &Place,
        args: &[String],
    ) -> std::result::Result<Ran, RunError> {
        let (node, target) = match place {
            Place::Here | Place::Elsewhere => return Ok(hands.here(args)?),
            Place::Ssh { node, target } => (node, target),
        };
        let spec = self
            .file
            .nodes
            .iter()
            .find(|n| &n.name == node)
            .ok_or_else(|| Error::InvalidInput(format!("no node {node} in the cluster file")))?;
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
        hands
            .there(node, target, &words)
            .map_err(|why| RunError::Unreachable {
                node: node.clone(),
                url: target.url(),
                why,
            })
    }

    /// Walks the run from its first step not done, taking the admin's confirmations
    /// (`confirms`, in order) for the steps that wait for them.
    pub fn advance(
        &self,
        state: &mut RunState,
        confirms: &[usize],
        hands: &dyn Hands,
    ) -> std::result::Result<Stop, RunError> {
        let path = self.state_path();
        let p = self.plan;
        // A confirmation of a step already done (the same resume typed again) has nothing
        // to do.
        let (done, open): (Vec<usize>, Vec<usize>) = confirms
            .iter()
            .copied()
            .partition(|&n| state.steps.iter().any(|s| s.n == n && s.done.is_some()));
        for n in done {
            hands.tell(Event::DoneAlready(n));
        }
        let mut confirms = open.into_iter().peekable();
        while let Some(i) = state.current() {
            let step = &p.steps[i];
            let place = self.place(step);
            let began = std::time::Instant::now();
            if step.kind == Kind::Auto && !step.done_when.is_empty() {
                // Its end state may hold already (a run cut off while the step ran on
                // another node, which finished it): then it is done, and neither its gate
                // nor the step runs again.
                if let Some(seen) = self.end_state_holds(step) {
                    hands.tell(Event::AlreadyDone { step, seen: &seen });
                    state.mark(
                        i,
                        Done::Already,
                        0.0,
                        vec![format!("its end state held already: {seen}")],
                        &path,
                    )?;
                    continue;
                }
            }
            if step.kind == Kind::Auto && !matches!(place, Place::Elsewhere) {
                if let Some(stop) = self.run_step(state, i, &place, &mut confirms, hands)? {
                    return Ok(stop);
                }
                continue;
            }
            // The admin's step (or keyferry's, on another node).
            let confirmed = match confirms.peek().copied() {
                Some(n) if n == step.n => {
                    confirms.next();
                    true
                }
                Some(n) => return Err(not_waiting(n, step, false)),
                None => hands
                    .ask(Question::Done {
                        step,
                        total: p.steps.len(),
                    })
                    .unwrap_or(false),
            };
            if !confirmed {
                return Ok(Stop::Waiting {
                    at: i,
                    why: Wait::Manual,
                });
            }
            state.mark(
                i,
                Done::Confirmed,
                began.elapsed().as_secs_f64(),
                Vec::new(),
                &path,
            )?;
            hands.tell(Event::Confirmed {
                step,
                total: p.steps.len(),
            });
            crate::failpoint::hit("upgrade:step-done");
        }
        if let Some(n) = confirms.next() {
            return Err(RunError::NotWaiting {
                flag: "--confirm",
                n,
                waiting: None,
                keys: false,
            });
        }
        // The finished run beside its steps' reports, where the next run leaves it.
        let dir = records(self.state_dir, &state.started);
        crate::fs::create_private_dir(&dir)?;
        let record = dir.join("upgrade-run.json");
        state.save(&record)?;
        Ok(Stop::Finished { record })
    }

    /// Runs automatic step `i` where it runs (`place`): its gate, the key step's plan and
    /// the admin's say, the command, a rebooted node waited for, its report kept, the step
    /// marked done. `Some` where the run stops to wait for the admin.
    fn run_step(
        &self,
        state: &mut RunState,
        i: usize,
        place: &Place,
        confirms: &mut std::iter::Peekable<std::vec::IntoIter<usize>>,
        hands: &dyn Hands,
    ) -> std::result::Result<Option<Stop>, RunError> {
        let path = self.state_path();
        let step = &self.plan.steps[i];
        let began = std::time::Instant::now();
        if !step.gate_args.is_empty() {
            hands.tell(Event::CheckingGate { step });
            // Checked from here, the node that reaches every other.
            let ran = self.run(hands, &Place::Here, &on_node(&step.gate_args, self.local))?;
            if ran.code != 0 {
                return Err(RunError::Gate {
                    n: step.n,
                    title: step.title.clone(),
                    gate: step.gate.clone().unwrap_or_default(),
                    command: crate::text::command_line(&step.gate_args),
                    code: ran.code,
                });
            }
        }
        let mut args = step.args.clone();
        if step.confirm_replace {
            match self.key_plan(hands, place, step)? {
                KeyPlan::Clear => {
                    // Nothing to ask (a resume after the replace ran): a
                    // confirmation typed for it has nothing left to confirm.
                    if confirms.peek() == Some(&step.n) {
                        confirms.next();
                    }
                }
                KeyPlan::Blocked(who) => {
                    return Err(RunError::KeysBlocked {
                        n: step.n,
                        title: step.title.clone(),
                        who,
                        partial: state.changed_before(i),
                    })
                }
                KeyPlan::Differs(who) => {
                    let confirmed = match confirms.peek().copied() {
                        Some(n) if n == step.n => {
                            confirms.next();
                            true
                        }
                        Some(n) => return Err(not_waiting(n, step, true)),
                        None => hands
                            .ask(Question::ReplaceKeys { step, who: &who })
                            .unwrap_or(false),
                    };
                    if !confirmed {
                        return Ok(Some(Stop::Waiting {
                            at: i,
                            why: Wait::KeysDiffer(who),
                        }));
                    }
                    args.push("--replace".into());
                }
            }
        }
        hands.tell(Event::Running {
            step,
            total: self.plan.steps.len(),
            over: match place {
                Place::Ssh { node, target } => Some((node.as_str(), target.url())),
                _ => None,
            },
        });
        let ran = self.run(hands, place, &args)?;
        let raw: Option<serde_json::Value> = serde_json::from_slice(&ran.stdout).ok();
        let doc = raw.clone().and_then(Document::from_value);
        // What it changed or found, on which node (a failing step's too: its reasons).
        let changes = doc.as_ref().map(changes).unwrap_or_default();
        for c in &changes {
            hands.tell(Event::Changed(c));
        }
        if !step.ok_codes.contains(&ran.code) {
            let reason = failure_reason(doc.as_ref(), place, &changes, ran.code);
            state.fail(i, &reason, changes, &path)?;
            let cluster_arg = self.cluster.display().to_string();
            return Err(RunError::StepFailed {
                n: step.n,
                title: step.title.clone(),
                what: step.what.clone(),
                code: ran.code,
                reason,
                undo: doc
                    .as_ref()
                    .and_then(Document::report)
                    .and_then(|r| undo_of(r, &cluster_arg, self.local))
                    .or_else(|| step.undo.clone()),
                // Steps before it changed nodes, or this one changed some and failed
                // on others: partly done, not "nothing changed".
                partial: state.changed_before(i) || ran.code == i32::from(PARTIAL),
            });
        }
        let mut changes = changes;
        if let (true, Place::Ssh { node, .. }) = (step.wait_reboot, place) {
            let before = match doc.as_ref().and_then(Document::report) {
                Some(StepReport::Host(h)) => h.booted.clone(),
                _ => None,
            };
            let status = ["host".to_owned(), "status".to_owned()];
            let ask = || self.run(hands, place, &status).map_err(why_not);
            match wait_reboot(hands, node, &ask, before.as_deref(), reboot_wait()) {
                Ok(seen) => {
                    hands.tell(Event::Changed(&seen));
                    changes.push(seen);
                }
                Err(reason) => {
                    state.fail(i, &reason, changes, &path)?;
                    return Err(RunError::StepFailed {
                        n: step.n,
                        title: step.title.clone(),
                        what: step.what.clone(),
                        code: ran.code,
                        reason,
                        undo: None,
                        partial: true,
                    });
                }
            }
        }
        if let Some(r) = &raw {
            // The command's whole report, kept with the run as its record.
            let dir = records(self.state_dir, &state.started);
            crate::fs::create_private_dir(&dir)?;
            crate::fs::record::save(&dir.join(format!("{:02}-{}.json", step.n, step.id)), r)?;
        }
        crate::failpoint::hit("upgrade:step-ran");
        state.mark(i, Done::Ran, began.elapsed().as_secs_f64(), changes, &path)?;
        crate::failpoint::hit("upgrade:step-done");
        Ok(None)
    }

    /// Whether a step's end state holds already, from the pair's status seen from here (a
    /// library call, no child): each of its nodes in the role it wants, with what was seen.
    fn end_state_holds(&self, step: &Step) -> Option<String> {
        let status = pair_status(self.file).ok()?;
        let role_of = |node: &str| status.nodes.iter().find(|n| n.node == node).map(|n| n.role);
        let holds = step.done_when.iter().all(|(node, want)| {
            let role = role_of(node);
            match want.strip_prefix('!') {
                // Seen not to be one: a replica, or nothing listening (fenced and stopped).
                // Unreachable or refusing keyferry proves nothing.
                Some(_) => matches!(role, Some(Role::RunningReplica | Role::NotRunning)),
                None => role.map(|r| r.word()).as_deref() == Some(want.as_str()),
            }
        });
        holds.then(|| {
            step.done_when
                .iter()
                .map(|(n, _)| format!("{n}: {}", role_of(n).map(|r| r.word()).unwrap_or_default()))
                .collect::<Vec<_>>()
                .join(", ")
        })
    }

    /// Plans a key push step: its own command with `--dry-run`, where it runs.
    fn key_plan(
        &self,
        hands: &dyn Hands,
        place: &Place,
        step: &Step,
    ) -> std::result::Result<KeyPlan, RunError> {
        let mut dry = step.args.clone();
        dry.push("--dry-run".into());
        let ran = self.run(hands, place, &dry)?;
        let doc = Document::parse(&ran.stdout);
        let report = match &doc {
            Some(Document::Report(r)) if ran.code == 0 || ran.code == 1 => match r.as_ref() {
                StepReport::KeysPush(p) => Some(p),
                _ => None,
            },
            _ => None,
        };
        let Some(report) = report else {
            return Err(RunError::KeyPlan {
                n: step.n,
                title: step.title.clone(),
                command: crate::text::command_line(&dry),
                code: ran.code,
                reason: doc
                    .as_ref()
                    .and_then(Document::error)
                    .map(|e| format!("{} [{}]", e.message, e.code)),
            });
        };
        Ok(key_plan_of(report))
    }
}

/// The exit code of a command that changed some things and failed on others.
pub const PARTIAL: u8 = 3;

/// The pair's status from this node, as `keyferry ha status` sees it.
pub fn pair_status(file: &ClusterFile) -> Result<PairStatus> {
    let pair = crate::ha::config::Pair::from_cluster(file)?;
    let passfile = crate::ha::pgpass::PassFile::load(&pair.passfile)?;
    Ok(crate::ha::status::pair_status(&crate::ha::pg::Connector {
        pair: &pair,
        passfile: &passfile,
    }))
}

/// An enum's word as its report writes it (its serde name).
mod erased {
    pub trait Word {
        fn word(&self) -> String;
    }
    impl<T: serde::Serialize> Word for T {
        fn word(&self) -> String {
            match serde_json::to_value(self) {
                Ok(serde_json::Value::String(s)) => s,
                _ => "?".into(),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::reports::relayed;
    use super::*;
    use crate::keys::import::FileAction;
    use crate::keys::push::{PushOutcome, PushTarget};
    use crate::report::ErrorDoc;
    use crate::report::{Envelope, PlanSummary, PushReport, SyncReport, SyncResult, SyncTarget};

    /// A node that reboots, as the run sees it over ssh (a real reboot cannot happen here):
    /// each `host status` answer in turn, `None` for "no answer".
    struct Rebooting {
        answers: std::cell::RefCell<std::collections::VecDeque<Option<Option<&'static str>>>>,
        told: std::cell::RefCell<Vec<String>>,
        asked: std::cell::RefCell<Vec<Vec<String>>>,
    }

    impl Rebooting {
        fn new(answers: &[Option<Option<&'static str>>]) -> Rebooting {
            Rebooting {
                answers: std::cell::RefCell::new(answers.iter().copied().collect()),
                told: Default::default(),
                asked: Default::default(),
            }
        }
    }

    impl Hands for Rebooting {
        fn here(&self, _args: &[String]) -> Result<Ran> {
            panic!("a reboot wait runs nothing here")
        }
        fn there(
            &self,
            _node: &str,
            _target: &SshTarget,
            words: &[String],
        ) -> std::result::Result<Ran, String> {
            self.asked.borrow_mut().push(words.to_vec());
            match self.answers.borrow_mut().pop_front().flatten() {
                None => Err("ssh: connect to host 10.0.5.2 port 22: Connection refused".into()),
                Some(booted) => Ok(Ran {
                    code: 0,
                    stdout: serde_json::to_vec(&Envelope::of(&crate::report::HostReport {
                        node: "nps2".into(),
                        action: crate::report::HostAction::Status,
                        changes: Vec::new(),
                        booted: booted.map(str::to_owned),
                        note: None,
                    }))
                    .unwrap(),
                }),
            }
        }
        fn tell(&self, event: Event<'_>) {
            if let Event::WaitingReboot { last, .. } = event {
                self.told.borrow_mut().push(last.to_owned());
            }
        }
        fn ask(&self, _question: Question<'_>) -> Option<bool> {
            None
        }
    }

    fn nps2() -> SshTarget {
        SshTarget {
            user: None,
            host: "10.0.5.2".into(),
            port: None,
            launch: crate::remote::invoke::Launch::Detect,
        }
    }

    const QUICK: (std::time::Duration, std::time::Duration) = (
        std::time::Duration::from_millis(300),
        std::time::Duration::from_millis(1),
    );

    /// The node still up from before, then gone while it restarts, then back with a later
    /// start time: the wait ends there, having said each.
    #[test]
    fn a_rebooted_node_is_waited_for_until_it_answers_with_a_later_start() {
        let before = "2026-12-05T10:00:00Z";
        let hands = Rebooting::new(&[
            Some(Some(before)),
            None,
            None,
            Some(Some("2026-12-05T14:31:07Z")),
        ]);
        let words = vec!["keyferry".to_owned(), "host".into(), "status".into()];
        let ask = || hands.there("nps2", &nps2(), &words);
        let seen = wait_reboot(&hands, "nps2", &ask, Some(before), QUICK).unwrap();
        assert!(seen.contains("started 2026-12-05T14:31:07Z"), "{seen}");
        let told = hands.told.borrow();
        assert!(told[0].contains("not restarted yet"), "{told:?}");
        assert!(told[1].contains("Connection refused"), "{told:?}");
        assert_eq!(hands.asked.borrow().len(), 4);
        assert!(hands.asked.borrow().iter().all(|w| *w == words));
    }

    /// A node that never restarts (the reboot was refused, or it hangs) ends the wait at its
    /// deadline, with what it last said.
    #[test]
    fn a_node_that_never_comes_back_fails_the_step_at_the_deadline_with_its_last_words() {
        let before = "2026-12-05T10:00:00Z";
        let hands = Rebooting::new(&[Some(Some(before)); 10_000]);
        let ask = || hands.there("nps2", &nps2(), &[]);
        let e = wait_reboot(&hands, "nps2", &ask, Some(before), QUICK).unwrap_err();
        assert!(e.contains("did not answer again within 0 min"), "{e}");
        assert!(e.contains("not restarted yet"), "{e}");
        let hands = Rebooting::new(&[None; 10_000]);
        let ask = || hands.there("nps2", &nps2(), &[]);
        let e = wait_reboot(&hands, "nps2", &ask, Some(before), QUICK).unwrap_err();
        assert!(e.contains("Connection refused"), "{e}");
    }

    /// Without a start time before, answering again after being gone is the proof.
    #[test]
    fn without_a_start_time_gone_then_back_is_a_reboot() {
        let hands = Rebooting::new(&[Some(None), None, Some(None)]);
        let ask = || hands.there("nps2", &nps2(), &[]);
        let seen = wait_reboot(&hands, "nps2", &ask, None, QUICK).unwrap();
        assert!(seen.contains("unknown time"), "{seen}");
        assert_eq!(hands.asked.borrow().len(), 3);
    }

    fn target(node: &str, result: SyncResult, summary: Option<PlanSummary>) -> SyncTarget {
        SyncTarget {
            node: node.into(),
            slot: "app".into(),
            target: format!("/srv/{node}"),
            plan: None,
            summary,
            outcome: None,
            result,
            recovered: None,
            error: None,
        }
    }

    /// A report as its command writes it, read back as the run reads it.
    fn written<T: crate::report::Kind>(report: &T) -> Document {
        let text = serde_json::to_vec(&Envelope::of(report)).unwrap();
        Document::parse(&text).expect("a report keyferry wrote reads back")
    }

    #[test]
    fn a_failed_syncs_undo_names_exactly_the_nodes_it_changed() {
        let mut failed = target("web3", SyncResult::Failed, None);
        failed.error = Some(ErrorDoc {
            code: "io".into(),
            message: "disk full".into(),
            hint: None,
        });
        let doc = written(&SyncReport {
            targets: vec![
                target("web2", SyncResult::Synced, None),
                failed.clone(),
                target("dr1", SyncResult::Unchanged, None),
            ],
        });
        assert_eq!(
            undo_of(doc.report().unwrap(), "c.toml", "web1").unwrap(),
            "keyferry sync rollback -c c.toml --node web1 --to web2 (only the nodes this step changed)"
        );
        assert_eq!(changes(&doc)[1], "web3: failed [io]: disk full");
        let none = written(&SyncReport {
            targets: vec![failed],
        });
        assert!(undo_of(none.report().unwrap(), "c", "w")
            .unwrap()
            .starts_with("nothing to undo"));
        let push = written(&PushReport {
            source: "web1".into(),
            fingerprint: "f".into(),
            dry_run: false,
            ok: true,
            targets: vec![],
        });
        assert!(undo_of(push.report().unwrap(), "c", "w").is_none());
    }

    #[test]
    fn changes_name_each_node_and_what_happened_there() {
        let sync = written(&SyncReport {
            targets: vec![target(
                "web2",
                SyncResult::Synced,
                Some(PlanSummary {
                    add: 1,
                    update: 0,
                    delete: 2,
                    warnings: vec!["web.config differs".into()],
                }),
            )],
        });
        assert_eq!(
            changes(&sync),
            [
                "web2: synced (1 added, 0 updated, 2 deleted)",
                "web2: warning: web.config differs"
            ]
        );
        let mut web2 = PushTarget::new("web2", crate::profile::Role::Secondary, "ssh");
        web2.outcome = PushOutcome::Installed;
        web2.backup_dir = Some("/s/b/web2/1".into());
        let mut proxy = PushTarget::new("proxy1", crate::profile::Role::Proxy, "-");
        proxy.outcome = PushOutcome::Skipped;
        let push = written(&PushReport {
            source: "web1".into(),
            fingerprint: "f".into(),
            dry_run: false,
            ok: true,
            targets: vec![web2, proxy],
        });
        assert_eq!(
            changes(&push),
            [
                "web2: installed, previous files in /s/b/web2/1",
                "proxy1: skipped"
            ]
        );
        let other = Document::parse(br#"{"version": 1, "kind": "something-new"}"#).unwrap();
        assert!(changes(&other).is_empty());
        // A report of a known kind whose fields do not read is no report, not an empty one.
        assert!(Document::parse(br#"{"version": 1, "kind": "sync", "targets": 3}"#).is_none());
        let error = Document::parse(
            br#"{"version": 1, "error": {"code": "io", "message": "m", "hint": "h"}}"#,
        )
        .unwrap();
        assert_eq!(changes(&error), ["error [io]: m; h"]);
    }

    #[test]
    fn a_key_plan_asks_for_differing_keys_and_blocks_what_it_cannot_compare() {
        use crate::keys::push::PushedFile;
        let refused = |node: &str, code: &str, action: FileAction, existing: &str| {
            let mut t = PushTarget::new(node, crate::profile::Role::Secondary, "ssh");
            t.outcome = PushOutcome::WouldRefuse;
            t.code = Some(code.into());
            t.before = Some("aaaa".into());
            t.detail = Some("its keys differ".into());
            t.files = vec![PushedFile {
                path: "C:\\inetpub\\wwwroot\\SecretServer\\encryption.config".into(),
                action,
                existing: Some(existing.into()),
            }];
            t
        };
        let report = |targets| PushReport {
            source: "web1".into(),
            fingerprint: "bbbb".into(),
            dry_run: true,
            ok: false,
            targets,
        };
        let Document::Report(r) = written(&report(vec![refused(
            "web2",
            "key-set-differs",
            FileAction::Replace,
            "dpapi",
        )])) else {
            panic!("a report")
        };
        let StepReport::KeysPush(p) = *r else {
            panic!("a push report")
        };
        let KeyPlan::Differs(who) = key_plan_of(&p) else {
            panic!("differs")
        };
        assert!(
            who.contains("web2: key set aaaa (the primary's: bbbb)")
                && who.contains("replace, DPAPI-protected, compared by its plaintext"),
            "{who}"
        );
        let blocked = key_plan_of(&report(vec![
            refused("web2", "key-set-differs", FileAction::Replace, "none"),
            refused("web3", "cannot-compare", FileAction::CannotCompare, "dpapi"),
        ]));
        let KeyPlan::Blocked(who) = blocked else {
            panic!("blocked")
        };
        assert!(who.starts_with("  web3:") && who.contains("web2:"), "{who}");
        assert_eq!(key_plan_of(&report(vec![])), KeyPlan::Clear);
    }

    /// A hostile node's report cannot print a line that looks like keyferry's own: every
    /// line the run shows from it stays one line.
    #[test]
    fn a_nodes_text_stays_on_one_line() {
        let mut t = PushTarget::new(
            "web2\nupgrade finished: 17 steps",
            crate::profile::Role::Secondary,
            "ssh",
        );
        t.outcome = PushOutcome::Installed;
        let push = written(&PushReport {
            source: "web1".into(),
            fingerprint: "f".into(),
            dry_run: false,
            ok: true,
            targets: vec![t.clone()],
        });
        let lines = changes(&push);
        assert_eq!(lines.len(), 1);
        assert!(
            !lines[0].contains('\n') && lines[0].contains("\\n"),
            "{lines:?}"
        );
        t.outcome = PushOutcome::WouldRefuse;
        t.code = Some("key-set-differs".into());
        t.before = Some("x\r\nok".into());
        let plan = key_plan_of(&PushReport {
            source: "web1".into(),
            fingerprint: "f".into(),
            dry_run: true,
            ok: false,
            targets: vec![t],
        });
        let KeyPlan::Differs(who) = plan else {
            panic!()
        };
        assert_eq!(who.lines().count(), 1, "{who}");
        let e = ErrorDoc {
            code: "io".into(),
            message: "disk full\nstep 9/17 confirmed".into(),
            hint: Some("h\n".into()),
        };
        let place = Place::Ssh {
            node: "web2".into(),
            target: SshTarget {
                user: None,
                host: "h".into(),
                port: None,
                launch: crate::remote::invoke::Launch::Detect,
            },
        };
        assert_eq!(relayed(&e, &place).lines().count(), 1);
    }

    #[test]
    fn every_report_the_run_reads_comes_back_as_its_own_kind() {
        use crate::ha::replica::{FailoverReport, RejoinReport};
        use crate::ha::status::{PairStatus, Verdict};
        use crate::preflight::Preflight;
        let failover = FailoverReport {
            old_primary: "nps1".into(),
            new_primary: "nps2".into(),
            planned: true,
            dry_run: false,
            timeline_before: Some(1),
            timeline_after: Some(2),
            fenced: true,
            signs_of_life: vec![],
            removed_slots: vec![],
            plan: vec![],
            next: vec![],
        };
        assert_eq!(
            changes(&written(&failover)),
            ["nps2 is the primary (timeline 1 -> 2); nps1 stopped and fenced"]
        );
        let rejoin = RejoinReport {
            node: "nps1".into(),
            primary: "nps2".into(),
            dry_run: false,
            method: crate::ha::replica::RejoinMethod::Rewind,
            why_not_rewind: None,
            seconds: 1.0,
            old_folder: None,
            removed_slots: vec![],
            settings_changed: vec![],
            plan: vec![],
            warnings: vec![],
        };
        assert_eq!(
            changes(&written(&rejoin)),
            ["nps1 streams from nps2 again (rewind)"]
        );
        let status = PairStatus {
            nodes: vec![],
            verdict: Verdict::SplitBrain,
            problems: vec![],
        };
        assert_eq!(changes(&written(&status)), ["pair: split-brain"]);
        let preflight = Preflight::new("c", "web1", vec![]);
        assert_eq!(changes(&written(&preflight)), ["all 0 checks passed"]);
    }
}
