//! `keys push`: the primary's key set to every node of the cluster that needs it, with the
//! checks, refusals, backups, attribute rules and journal of `keys import`, and no bundle at
//! all: the manifest goes from the primary's memory straight into the transaction engine.
//!
//! A node is reached by its `access`: its `paths` (with `reach` slots, as `keyferry sync`
//! uses them: a mounted share or UNC path) or a single folder. The journal, lock and backups
//! of a node reached that way are this machine's (its state folder, backups under
//! `backups/<node>/`), since the node's own state folder is on the node.

use crate::cluster::access::{parse_access, Access};
use crate::cluster::{ClusterFile, Node};
use crate::error::{Error, Result};
use crate::keys::import::{install, ImportOptions, ImportOutcome, ImportReport};
use crate::keys::keyset::{fingerprint_of, read_local_keys};
use crate::keys::manifest::Manifest;
use crate::profile::Role;
use serde::Serialize;
use std::path::{Path, PathBuf};

/// What happened on one node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum PushOutcome {
    /// It held the key set already.
    Unchanged,
    /// Keys were installed or replaced.
    Installed,
    /// `--dry-run`: it would get keys.
    WouldInstall,
    /// `--dry-run`: it would be refused (see `detail`).
    WouldRefuse,
    /// Its role needs no keys (a Proxy host): nothing to do.
    Skipped,
    /// Refused (a different key set without `--replace`, a check): nothing changed there.
    Refused,
    /// It could not be reached or the install failed (the detail says what was put back).
    Failed,
}

/// One node's line of the push report.
#[derive(Debug, Clone, Serialize)]
pub struct PushTarget {
    pub node: String,
    pub role: Role,
    /// How it was reached: "path", or why not.
    pub via: String,
    pub outcome: PushOutcome,
    /// Its key set's fingerprint before (None: no complete key set).
    pub before: Option<String>,
    /// And after.
    pub after: Option<String>,
    pub backup_dir: Option<PathBuf>,
    pub detail: Option<String>,
    /// Each key file and what was done to it (or would be).
    pub files: Vec<PushedFile>,
    /// The import report, where an install ran (or was planned).
    #[serde(skip)]
    pub import: Option<Box<ImportReport>>,
}

/// One key file of a push.
#[derive(Debug, Clone, Serialize)]
pub struct PushedFile {
    pub path: PathBuf,
    pub action: crate::keys::import::FileAction,
}

impl PushTarget {
    pub fn failed(&self) -> bool {
        matches!(self.outcome, PushOutcome::Refused | PushOutcome::Failed)
    }
}

/// The nodes a push goes to: every node but `source`, or those named in `to` (each must
/// exist and not be the source).
pub fn targets<'f>(
    file: &'f ClusterFile,
    source: &str,
    to: &[String],
) -> Result<Vec<&'f crate::cluster::file::NodeSpec>> {
    for t in to {
        if t.eq_ignore_ascii_case(source) {
            return Err(Error::InvalidInput(format!(
                "--to {t}: that is the node keys are pushed from"
            )));
        }
        if !file.nodes.iter().any(|n| n.name.eq_ignore_ascii_case(t)) {
            return Err(Error::InvalidInput(format!(
                "--to {t}: no such node in the cluster file (nodes: {})",
                file.nodes
                    .iter()
                    .map(|n| n.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
    }
    Ok(file
        .nodes
        .iter()
        .filter(|n| !n.name.eq_ignore_ascii_case(source))
        .filter(|n| to.is_empty() || to.iter().any(|t| t.eq_ignore_ascii_case(&n.name)))
        .collect())
}

/// The node as this machine reaches it, or why it cannot. `state_dir` is this machine's.
pub fn reached(
    file: &ClusterFile,
    spec: &crate::cluster::file::NodeSpec,
    base: &Path,
    state_dir: &Path,
) -> std::result::Result<Node, String> {
    let mut node =
        Node::from_cluster(file, spec, Some(state_dir.to_owned())).map_err(|e| e.to_string())?;
    match parse_access(spec.access.as_deref(), base).map_err(|e| e.to_string())? {
        Access::Paths => {
            for (slot, p) in &spec.reach {
                node.folders.insert(slot.clone(), p.clone());
            }
        }
        Access::Path(p) => {
            if node.profile.folders.len() != 1 {
                return Err(format!(
                    "access is a single folder but profile {} has folders {}; use access = \
                     \"paths\" with reach",
                    node.profile.id,
                    node.profile.folders.join(", ")
                ));
            }
            node.folders.insert(node.profile.folders[0].clone(), p);
        }
        Access::Ssh { .. } => {
            return Err(
                "access is ssh: keys push over ssh is not built yet; run keyferry keys \
                        export here and keys import on the node"
                    .into(),
            )
        }
        Access::Report(_) => {
            return Err(
                "access is a saved report, which cannot receive keys; give the node paths \
                 (and reach) or run keyferry keys import there"
                    .into(),
            )
        }
    }
    for (slot, dir) in &node.folders {
        if node.profile.keys.iter().any(|k| &k.folder == slot) && !dir.is_dir() {
            return Err(format!("cannot reach its {slot} folder {}", dir.display()));
        }
    }
    Ok(node)
}

/// Pushes `manifest` to one node reached as `node`.
pub fn push_one(manifest: &Manifest, node: &Node, opts: &ImportOptions) -> PushTarget {
    let mut t = PushTarget {
        node: node.name.clone(),
        role: node.role,
        via: "path".into(),
        outcome: PushOutcome::Failed,
        before: None,
        after: None,
        backup_dir: None,
        detail: None,
        files: Vec::new(),
        import: None,
    };
    if !node.profile.role_needs_keys(node.role) {
        t.outcome = PushOutcome::Skipped;
        t.detail = Some(format!(
            "role {} needs no keys in profile {}",
            node.role, node.profile.id
        ));
        return t;
    }
    t.before = fingerprint(node);
    let checked = match crate::keys::import::check(manifest, node, opts) {
        Ok(c) => c,
        Err(e) => return refused(t, e),
    };
    match install(manifest, checked, node, opts) {
        Ok(report) => {
            t.outcome = match (report.outcome, &report.would_refuse) {
                (ImportOutcome::Unchanged, _) => PushOutcome::Unchanged,
                (ImportOutcome::Installed, _) => PushOutcome::Installed,
                (ImportOutcome::DryRun, Some(w)) => {
                    t.detail = Some(w.message.clone());
                    PushOutcome::WouldRefuse
                }
                (ImportOutcome::DryRun, None) => PushOutcome::WouldInstall,
            };
            t.backup_dir = report.backup_dir.clone();
            if t.detail.is_none() {
                t.detail = report.next_step.clone();
            }
            t.after = if opts.dry_run {
                t.before.clone()
            } else {
                fingerprint(node)
            };
            t.files = report
                .plan
                .files
                .iter()
                .map(|f| PushedFile {
                    path: f.path.clone(),
                    action: f.action,
                })
                .collect();
            t.import = Some(Box::new(report));
            t
        }
        Err(e) => refused(t, e),
    }
}

/// A node's error: a refusal (nothing was changed: a check, a different key set without
/// `--replace`), or a failure of the install itself (its journal put back what it changed).
fn refused(mut t: PushTarget, e: Error) -> PushTarget {
    t.after = t.before.clone();
    t.outcome = match e {
        Error::Io { .. }
        | Error::VerifyFailed(_)
        | Error::Changed { .. }
        | Error::RecoveryConflict(_)
        | Error::Dpapi(_) => PushOutcome::Failed,
        _ => PushOutcome::Refused,
    };
    t.detail = Some(format!("{e} [{}]", e.code()));
    t
}

/// The fingerprint of the key files the node holds ("... (incomplete)" when some of its
/// role's files are missing); None when it holds none or they cannot be read.
fn fingerprint(node: &Node) -> Option<String> {
    let keys = read_local_keys(node).ok()?;
    let f = fingerprint_of(&keys)?.to_string();
    Some(if keys.iter().any(|k| k.content.is_none()) {
        format!("{f} (incomplete)")
    } else {
        f
    })
}
