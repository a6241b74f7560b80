//! What the run reads in a step's report: the key step's plan, what a step changed on
//! which node, what undoes it, and why it failed, each node's words kept to one line.

use super::erased::Word;
use super::Place;
use crate::keys::import::FileAction;
use crate::keys::push::PushOutcome;
use crate::report::{Document, ErrorDoc, StepReport};

/// What a key step's dry run found.
#[derive(Debug, PartialEq, Eq)]
pub enum KeyPlan {
    /// Nothing differs: the push installs or leaves keys as they are.
    Clear,
    /// Nodes whose keys differ (one line each: fingerprints, files, their protection): the
    /// admin decides.
    Differs(String),
    /// Nodes no confirmation may change from here (a key that cannot be compared, a check).
    Blocked(String),
}

/// Sorts a push plan's refused targets into the admin's to decide and the blocked.
pub fn key_plan_of(report: &crate::report::PushReport) -> KeyPlan {
    let mut differs = Vec::new();
    let mut blocked = Vec::new();
    for t in &report.targets {
        if t.outcome != PushOutcome::WouldRefuse {
            continue;
        }
        let files: Vec<String> = t
            .files
            .iter()
            .filter(|f| f.action != FileAction::Unchanged)
            .map(|f| {
                format!(
                    "{} ({}, {})",
                    f.path.display(),
                    f.action.word(),
                    match f.existing.as_deref() {
                        Some("none") | None => "not DPAPI-protected",
                        Some("dpapi") => "DPAPI-protected, compared by its plaintext",
                        Some(other) => other,
                    }
                )
            })
            .collect();
        let differ = t.code.as_deref() == Some("key-set-differs");
        // Each piece is the node's own text: kept to one line.
        let one = |s: &str| crate::text::one_line(s).into_owned();
        let files: Vec<String> = files.iter().map(|f| one(f)).collect();
        let line = format!(
            "  {}: key set {} (the primary's: {}){}{}",
            one(&t.node),
            one(t.before.as_deref().unwrap_or("unreadable")),
            one(&report.fingerprint),
            if files.is_empty() {
                String::new()
            } else {
                format!("; {}", files.join("; "))
            },
            t.detail
                .as_deref()
                .filter(|_| !differ)
                .map(|d| format!("\n    {}", one(d)))
                .unwrap_or_default()
        );
        if differ {
            differs.push(line);
        } else {
            blocked.push(line);
        }
    }
    if !blocked.is_empty() {
        blocked.extend(differs);
        KeyPlan::Blocked(blocked.join("\n"))
    } else if !differs.is_empty() {
        KeyPlan::Differs(differs.join("\n"))
    } else {
        KeyPlan::Clear
    }
}

/// A failed step's reason: its own error (relayed from the node it ran on, with that node's
/// hint), else the line of its report that says it failed, else its exit code.
pub(super) fn failure_reason(
    doc: Option<&Document>,
    place: &Place,
    changes: &[String],
    code: i32,
) -> String {
    if let Some(e) = doc.and_then(Document::error) {
        return relayed(e, place);
    }
    changes
        .iter()
        .find(|c| c.contains("error") || c.contains("FAILED") || c.contains("failed"))
        .cloned()
        .unwrap_or_else(|| format!("keyferry exited {code}"))
}

/// A step's error as the run keeps it: on another node, that node's name, address and hint
/// (a cluster file missing there: where, and what to set).
pub(super) fn relayed(e: &ErrorDoc, place: &Place) -> String {
    crate::text::one_line(&relayed_lines(e, place)).into_owned()
}

fn relayed_lines(e: &ErrorDoc, place: &Place) -> String {
    let (m, code) = (&e.message, &e.code);
    match place {
        Place::Ssh { node, target } => {
            let hint = e
                .hint
                .as_deref()
                .map(|h| format!("; there: {h}"))
                .unwrap_or_default();
            let cluster = if m.contains("cluster file") {
                format!(
                    " (copy the cluster file to that path on {node}, or set remote_cluster in \
                     {node}'s [[node]])"
                )
            } else {
                String::new()
            };
            format!("on {node} ({}): {m} [{code}]{cluster}{hint}", target.url())
        }
        _ => format!("{m} [{code}]"),
    }
}

/// `args` with its `--node` (if any) naming `node`.
pub(super) fn on_node(args: &[String], node: &str) -> Vec<String> {
    let mut out = args.to_vec();
    if let Some(i) = out.iter().position(|a| a == "--node") {
        if let Some(v) = out.get_mut(i + 1) {
            *v = node.to_owned();
        }
    }
    out
}

/// How to undo exactly what a step's command changed, from its report: for a sync, a
/// rollback of the nodes it changed and of no other (a node the step never touched would go
/// back to a folder kept from an earlier sync). `None` where the step's own undo applies.
pub fn undo_of(report: &StepReport, cluster_arg: &str, driver: &str) -> Option<String> {
    let StepReport::Sync(sync) = report else {
        return None;
    };
    let mut to: Vec<&str> = sync
        .targets
        .iter()
        .filter(|t| t.result.changed())
        .map(|t| t.node.split(" (").next().unwrap_or(&t.node))
        .collect();
    if to.is_empty() {
        return Some("nothing to undo: the step changed no node".into());
    }
    to.dedup();
    Some(format!(
        "keyferry sync rollback -c {cluster_arg} --node {driver} {} (only the nodes this step \
         changed)",
        to.iter()
            .map(|n| format!("--to {n}"))
            .collect::<Vec<_>>()
            .join(" ")
    ))
}

/// What an automatic step changed, on which node, from its command's report (one line per
/// node or fact; nothing for a report the run does not read).
pub fn changes(doc: &Document) -> Vec<String> {
    // Each line from another node's report stays one line (its text is that node's).
    changes_of(doc)
        .into_iter()
        .map(|c| crate::text::one_line(&c).into_owned())
        .collect()
}

fn changes_of(doc: &Document) -> Vec<String> {
    let report = match doc {
        Document::Error(e) => {
            return vec![format!(
                "error [{}]: {}{}",
                e.code,
                e.message,
                e.hint
                    .as_deref()
                    .map(|h| format!("; {h}"))
                    .unwrap_or_default()
            )]
        }
        Document::Report(r) => r.as_ref(),
    };
    match report {
        StepReport::Sync(s) | StepReport::SyncPlan(s) => s
            .targets
            .iter()
            .flat_map(|t| {
                let node = &t.node;
                let head = match (&t.error, &t.summary) {
                    // A failed target says why, not "failed (0 added, ...)".
                    (Some(e), _) => {
                        format!("{node}: {} [{}]: {}", t.result.word(), e.code, e.message)
                    }
                    (None, s) => {
                        let (a, u, d) = s
                            .as_ref()
                            .map_or((0, 0, 0), |s| (s.add, s.update, s.delete));
                        format!(
                            "{node}: {} ({a} added, {u} updated, {d} deleted)",
                            t.result.word()
                        )
                    }
                };
                // The sync's warnings (a per-node web.config replaced, a node without keys)
                // are the admin's to read.
                let warnings = t
                    .summary
                    .iter()
                    .flat_map(|s| s.warnings.iter())
                    .map(move |w| format!("{node}: warning: {w}"));
                std::iter::once(head).chain(warnings).collect::<Vec<_>>()
            })
            .collect(),
        StepReport::KeysPush(p) => p
            .targets
            .iter()
            .map(|t| {
                let backup = t
                    .backup_dir
                    .as_ref()
                    .map(|b| format!(", previous files in {}", b.display()))
                    .unwrap_or_default();
                format!("{}: {}{backup}", t.node, t.outcome.word())
            })
            .collect(),
        StepReport::Cleanup(c) => {
            let removed: Vec<String> = c
                .removed
                .iter()
                .map(|r| r.path.display().to_string())
                .collect();
            vec![if removed.is_empty() {
                format!("{}: nothing to remove", c.node)
            } else {
                format!("{}: removed {}", c.node, removed.join(", "))
            }]
        }
        StepReport::HaFailover(f) => vec![format!(
            "{} is the primary (timeline {} -> {}); {} {}",
            f.new_primary,
            shown(f.timeline_before),
            shown(f.timeline_after),
            f.old_primary,
            if f.fenced {
                "stopped and fenced"
            } else {
                "was confirmed off (not fenced)"
            }
        )],
        StepReport::HaRejoin(r) => vec![format!(
            "{} streams from {} again ({}){}",
            r.node,
            r.primary,
            r.method,
            r.old_folder
                .as_ref()
                .map(|f| format!("; its old data folder is kept in {}", f.display()))
                .unwrap_or_default()
        )],
        StepReport::HaStatus(s) => vec![format!("pair: {}", s.verdict.word())],
        StepReport::UpgradePreflight(p) => {
            use crate::finding::Severity;
            let noted: Vec<String> = p
                .checks
                .iter()
                .filter(|c| c.severity > Severity::Info)
                .map(|c| {
                    let outcome = if c.is_error() { "FAILED" } else { "warning" };
                    format!(
                        "{}: {outcome} ({}): {}{}",
                        c.node.as_deref().unwrap_or_default(),
                        c.code,
                        c.message,
                        c.fix.as_ref().map(|f| format!("; {f}")).unwrap_or_default()
                    )
                })
                .collect();
            if noted.is_empty() {
                vec![format!("all {} checks passed", p.checks.len())]
            } else {
                noted
            }
        }
        StepReport::Audit(a) => {
            use crate::audit::NodeStatus;
            if a.ok {
                vec!["every node that needs keys holds the primary's key set; the binaries match where compared".into()]
            } else {
                a.nodes
                    .iter()
                    .filter(|n| !matches!(n.status, NodeStatus::Match | NodeStatus::NotNeeded))
                    .map(|n| format!("{}: {}", n.node, n.status.word()))
                    .collect()
            }
        }
        StepReport::Host(h) => {
            let mut v: Vec<String> = h
                .changes
                .iter()
                .map(|c| {
                    if c.changed {
                        format!(
                            "{}: {} {} -> {}",
                            h.node,
                            c.thing,
                            c.before.word(),
                            c.after.word()
                        )
                    } else {
                        format!("{}: {} already {}", h.node, c.thing, c.after.word())
                    }
                })
                .collect();
            v.extend(h.note.iter().map(|n| format!("{}: {n}", h.node)));
            v
        }
        StepReport::HostSite(r) => r
            .sites
            .iter()
            .map(|s| match (&s.answer.why, s.answer.works) {
                (_, true) => format!(
                    "{}: {} works (HTTP {})",
                    s.node,
                    s.answer.url,
                    shown(s.answer.status.map(u32::from))
                ),
                (Some(why), false) => format!(
                    "{}: {} does not work: {why}{}",
                    s.node,
                    s.answer.url,
                    s.answer
                        .fix
                        .as_deref()
                        .map(|f| format!("; {f}"))
                        .unwrap_or_default()
                ),
                (None, false) => format!("{}: {} does not work", s.node, s.answer.url),
            })
            .collect(),
        StepReport::Other => Vec::new(),
    }
}

/// "null" for a value a report left out, as JSON shows it.
fn shown(v: Option<u32>) -> String {
    v.map_or_else(|| "null".into(), |v| v.to_string())
}
