//! A run of the checklist as it is kept in the driving node's state folder after every step
//! (`upgrade-run.json`, a [`crate::fs::record`]): each step's state, how it was done, what it
//! changed, bounded.

use super::*;

/// Where a run's state is kept: the state folder of the node that runs it.
pub fn state_path(state_dir: &Path) -> PathBuf {
    state_dir.join("upgrade-run.json")
}

/// One step of a run: the plan's step and what became of it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StepState {
    /// Its number, from 1.
    pub n: usize,
    /// The plan's id of the step.
    pub id: String,
    /// The node it is for, if one.
    pub node: Option<String>,
    /// Its title.
    pub title: String,
    /// How it was done; `None` while it is not.
    pub done: Option<Done>,
    /// When it was done (RFC 3339).
    pub finished: Option<String>,
    /// How long it took, in seconds.
    pub seconds: Option<f64>,
    /// What it changed, on which node (automatic steps: from the command's report).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub changes: Vec<String>,
    /// Its last failure, while it is not done: when, why (the step's own error), and what it
    /// changed before it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed: Option<StepFailure>,
}

/// How a step of a run was done.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Done {
    /// keyferry ran it (here or on its node over ssh).
    Ran,
    /// The admin did it and said so (`--confirm N`, or at the prompt).
    Confirmed,
    /// Its end state held already: nothing was run.
    Already,
    /// The admin marked it done after checking its end state (`--mark-done N --because`).
    Marked,
}

impl Done {
    /// How it was done, as the status shows it (`ran`, `confirmed`, ...).
    pub fn word(self) -> &'static str {
        match self {
            Done::Ran => "ran",
            Done::Confirmed => "confirmed",
            Done::Already => "already",
            Done::Marked => "marked",
        }
    }
}

/// A step's failure, kept in the run's state.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StepFailure {
    /// When it failed (RFC 3339).
    pub at: String,
    /// Why: the step's own error.
    pub reason: String,
    /// What it changed before it failed, on which node.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub changes: Vec<String>,
}

/// Most lines of what one step changed kept in the run's state, and most characters each: a
/// broken or hostile node's report must never make the state too big to read again (the
/// whole report is kept beside it, in the run's records).
pub(super) const MAX_CHANGES: usize = 64;
pub(super) const MAX_CHANGE_LEN: usize = 400;

pub(super) fn bounded(changes: Vec<String>) -> Vec<String> {
    let total = changes.len();
    let mut out: Vec<String> = changes
        .into_iter()
        .take(MAX_CHANGES)
        .map(|c| {
            if c.len() <= MAX_CHANGE_LEN {
                c
            } else {
                let mut end = MAX_CHANGE_LEN;
                while !c.is_char_boundary(end) {
                    end -= 1;
                }
                format!("{}... ({} more bytes)", &c[..end], c.len() - end)
            }
        })
        .collect();
    if total > MAX_CHANGES {
        out.push(format!(
            "... and {} more (the step's whole report is in the run's records)",
            total - MAX_CHANGES
        ));
    }
    out
}

/// A run of the checklist, kept after every step (`upgrade run`, `resume`, `status`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunState {
    /// [`crate::JSON_VERSION`].
    pub version: u32,
    /// The cluster's name.
    pub cluster: String,
    /// The node the run is driven from.
    pub node: String,
    /// When the run began (RFC 3339).
    pub started: String,
    /// When its last step was done (RFC 3339).
    pub finished: Option<String>,
    /// When the admin abandoned the run (`upgrade abandon`): kept on record, not deleted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub abandoned: Option<String>,
    /// Every step of the checklist, in order.
    pub steps: Vec<StepState>,
}

impl RunState {
    /// A new run of `plan`, driven from `node`.
    pub fn new(plan: &Plan, node: &str) -> RunState {
        RunState {
            version: 1,
            cluster: plan.cluster.clone(),
            node: node.to_owned(),
            started: crate::time::Timestamp::now().to_string(),
            finished: None,
            abandoned: None,
            steps: plan
                .steps
                .iter()
                .map(|s| StepState {
                    n: s.n,
                    id: s.id.clone(),
                    node: s.node.clone(),
                    title: s.title.clone(),
                    done: None,
                    finished: None,
                    seconds: None,
                    changes: Vec::new(),
                    failed: None,
                })
                .collect(),
        }
    }

    /// The first step not done.
    pub fn current(&self) -> Option<usize> {
        self.steps.iter().position(|s| s.done.is_none())
    }

    /// Whether `plan` is still the plan this run walks (the cluster file may have changed).
    pub fn matches(&self, plan: &Plan) -> bool {
        self.cluster == plan.cluster
            && self.steps.len() == plan.steps.len()
            && self
                .steps
                .iter()
                .zip(&plan.steps)
                .all(|(a, b)| a.id == b.id && a.node == b.node)
    }

    /// Marks step `i` done, with what it changed, and saves the state.
    pub fn mark(
        &mut self,
        i: usize,
        how: Done,
        seconds: f64,
        changes: Vec<String>,
        path: &Path,
    ) -> Result<()> {
        self.steps[i].done = Some(how);
        self.steps[i].changes = bounded(changes);
        self.steps[i].failed = None;
        self.steps[i].finished = Some(crate::time::Timestamp::now().to_string());
        self.steps[i].seconds = Some(seconds);
        if self.current().is_none() {
            self.finished = Some(crate::time::Timestamp::now().to_string());
        }
        self.save(path)
    }

    /// Whether a step before `i` is done that may have changed nodes (the preflight changes
    /// nothing): a failure at `i` is then "partly done", not "nothing changed".
    pub fn changed_before(&self, i: usize) -> bool {
        self.steps
            .iter()
            .take(i)
            .any(|s| s.done.is_some() && s.id != "preflight")
    }

    /// Records step `i`'s failure (bounded like its changes) and saves the state.
    pub fn fail(
        &mut self,
        i: usize,
        reason: &str,
        changes: Vec<String>,
        path: &Path,
    ) -> Result<()> {
        let mut reason = bounded(vec![reason.to_owned()]);
        self.steps[i].failed = Some(StepFailure {
            at: crate::time::Timestamp::now().to_string(),
            reason: reason.pop().unwrap_or_default(),
            changes: bounded(changes),
        });
        self.save(path)
    }

    /// Writes it, private and atomic.
    pub fn save(&self, path: &Path) -> Result<()> {
        crate::fs::record::save(path, self)
    }

    /// The run kept at `path`, if there is one.
    pub fn load(path: &Path) -> Result<Option<RunState>> {
        crate::fs::record::load(path, 1 << 20, "upgrade run state", |e| {
            Error::InvalidInput(format!(
                "{} is not an upgrade run keyferry can read ({e}); move it away to start over",
                path.display()
            ))
        })
    }
}
