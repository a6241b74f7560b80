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
use crate::remote::ssh::{SshClient, SshTarget};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// What happened on one node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
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
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PushTarget {
    /// The node.
    pub node: String,
    /// Its role.
    pub role: Role,
    /// How it was reached: "path", or why not.
    pub via: String,
    /// What happened there.
    pub outcome: PushOutcome,
    /// Its key set's fingerprint before (None: no complete key set).
    pub before: Option<String>,
    /// And after.
    pub after: Option<String>,
    /// Where its replaced files were backed up, if any were.
    pub backup_dir: Option<PathBuf>,
    /// What happened, in words, where there is more to say.
    pub detail: Option<String>,
    /// The error code of a refusal (or of one a dry run found): `key-set-differs` is for the
    /// admin to decide (`--replace`); `key-protection` is not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    /// Each key file and what was done to it (or would be).
    pub files: Vec<PushedFile>,
    /// The import report, where an install ran (or was planned).
    #[serde(skip)]
    pub import: Option<Box<ImportReport>>,
}

/// One key file of a push.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PushedFile {
    pub path: PathBuf,
    pub action: crate::keys::import::FileAction,
    /// How the file there was protected (see `PlannedFile::existing`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub existing: Option<String>,
}

impl PushTarget {
    /// A line for `node`, reached `via`, failed until something better is known.
    pub fn new(node: &str, role: Role, via: impl Into<String>) -> PushTarget {
        PushTarget {
            node: node.to_owned(),
            role,
            via: via.into(),
            outcome: PushOutcome::Failed,
            before: None,
            after: None,
            backup_dir: None,
            detail: None,
            code: None,
            files: Vec::new(),
            import: None,
        }
    }

    /// Whether this node makes the push fail.
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

/// The line of a node whose role needs no keys (a Proxy host), or None.
pub fn skip(
    file: &ClusterFile,
    spec: &crate::cluster::file::NodeSpec,
) -> Result<Option<PushTarget>> {
    let profile = file.profile_table()?;
    if profile.role_needs_keys(spec.role) {
        return Ok(None);
    }
    let mut t = PushTarget::new(&spec.name, spec.role, "-");
    t.outcome = PushOutcome::Skipped;
    t.detail = Some(format!(
        "role {} needs no keys in profile {}",
        spec.role, profile.id
    ));
    Ok(Some(t))
}

/// How a push reaches a node.
pub enum Route {
    /// Its folders, from here (paths with reach slots, or a single folder).
    Path(Box<Node>),
    /// `keyferry keys import -` on the node over ssh.
    Ssh(SshTarget),
}

/// The node as this machine reaches it, or why it cannot. `state_dir` is this machine's.
pub fn route(
    file: &ClusterFile,
    spec: &crate::cluster::file::NodeSpec,
    base: &Path,
    state_dir: &Path,
) -> std::result::Result<Route, String> {
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
        Access::Ssh { user, host, port } => {
            return Ok(Route::Ssh(SshTarget {
                user,
                host,
                port,
                launch: spec.launch(),
            }));
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
    Ok(Route::Path(Box::new(node)))
}

/// How to run keyferry on a node over ssh for a push.
pub struct SshPush<'a> {
    /// The ssh program and its configuration.
    pub client: &'a SshClient,
    /// The cluster file here (the remote path by default).
    pub cluster_path: &'a Path,
    /// How long each node's command may take.
    pub timeout: std::time::Duration,
    /// The scrypt work factor of the bundle sent.
    pub work_factor: u8,
}

/// Pushes `manifest` to `spec`'s node over ssh: a push stream on the stdin of
/// `keyferry keys import -` there, whose JSON report is checked.
pub fn push_ssh(
    manifest: &Manifest,
    spec: &crate::cluster::file::NodeSpec,
    target: &SshTarget,
    how: &SshPush<'_>,
    opts: &ImportOptions,
    progress: &dyn crate::progress::Progress,
) -> PushTarget {
    let mut t = PushTarget::new(&spec.name, spec.role, target.url());
    // Only the files this node's role takes travel (an Action host never receives the
    // secondary's appsettings.json).
    let sent = manifest.for_role(spec.role);
    let input = match stream(&sent, how.work_factor, progress) {
        Ok(s) => s,
        Err(e) => return refused(t, e),
    };
    let mut words = spec.remote_command(how.cluster_path, &["keys", "import", "-"]);
    if opts.replace {
        words.push("--replace".into());
    }
    if opts.dry_run {
        words.push("--dry-run".into());
    }
    if opts.leave_unprotected {
        words.push("--leave-unprotected".into());
    }
    let done = match how
        .client
        .run_with_input(target, &words, input, how.timeout, 4 << 20)
    {
        Ok(d) => d,
        Err(e) => {
            t.detail = Some(format!("{e} over ssh"));
            return t;
        }
    };
    let doc: serde_json::Value = match serde_json::from_slice(&done.stdout) {
        Ok(v) => v,
        Err(_) => {
            t.detail = Some(format!(
                "keyferry keys import - on {} gave no report (exit {}): {}",
                spec.name,
                done.code
                    .map(|c| c.to_string())
                    .unwrap_or_else(|| "by a signal".into()),
                done.last_error_line()
            ));
            return t;
        }
    };
    if let Some(err) = doc.get("error") {
        let code = err["code"].as_str().unwrap_or("?");
        t.code = Some(code.to_owned());
        t.outcome = match code {
            "io" | "verify-failed" | "changed-underfoot" | "recovery-conflict" | "dpapi-failed" => {
                PushOutcome::Failed
            }
            _ => PushOutcome::Refused,
        };
        t.detail = Some(format!(
            "{} [{code}]",
            err["message"].as_str().unwrap_or("refused")
        ));
        return t;
    }
    let fingerprint = sent.header.fingerprint.to_string();
    if doc["kind"] != "import"
        || doc["node"] != spec.name.as_str()
        || doc["bundle"]["fingerprint"] != fingerprint.as_str()
    {
        t.detail = Some(format!(
            "the report from {} is not the import of this key set",
            spec.name
        ));
        return t;
    }
    let files = doc["plan"]["files"].as_array().cloned().unwrap_or_default();
    let replaces = files.iter().any(|f| f["action"] == "replace");
    let all_new = !files.is_empty() && files.iter().all(|f| f["action"] == "install");
    t.files = files
        .iter()
        .filter_map(|f| {
            Some(PushedFile {
                path: PathBuf::from(f["path"].as_str()?),
                action: serde_json::from_value(f["action"].clone()).ok()?,
                existing: f["existing"].as_str().map(str::to_owned),
            })
        })
        .collect();
    t.backup_dir = doc["backup_dir"].as_str().map(PathBuf::from);
    t.detail = doc["next_step"].as_str().map(str::to_owned);
    t.before = if replaces {
        Some("a different key set".to_owned())
    } else if all_new {
        None
    } else {
        Some(fingerprint.clone())
    };
    t.outcome = match (doc["outcome"].as_str(), doc["would_refuse"].is_object()) {
        (Some("unchanged"), _) => PushOutcome::Unchanged,
        (Some("installed"), _) => PushOutcome::Installed,
        (Some("dry-run"), true) => {
            t.detail = doc["would_refuse"]["message"].as_str().map(str::to_owned);
            t.code = doc["would_refuse"]["code"].as_str().map(str::to_owned);
            PushOutcome::WouldRefuse
        }
        (Some("dry-run"), false) => PushOutcome::WouldInstall,
        _ => {
            t.detail = Some(format!(
                "an import outcome keyferry does not know: {}",
                doc["outcome"]
            ));
            return t;
        }
    };
    t.after = match t.outcome {
        PushOutcome::Unchanged | PushOutcome::Installed => Some(fingerprint),
        _ => t.before.clone(),
    };
    t
}

/// Pushes `manifest` to one node reached as `node`.
pub fn push_one(manifest: &Manifest, node: &Node, opts: &ImportOptions) -> PushTarget {
    let mut t = PushTarget::new(&node.name, node.role, "path");
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
                    t.code = Some(w.code.to_owned());
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
                    existing: f.existing.map(str::to_owned),
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
        | Error::TreeMismatch(_)
        | Error::Changed { .. }
        | Error::RecoveryConflict(_)
        | Error::Dpapi(_) => PushOutcome::Failed,
        _ => PushOutcome::Refused,
    };
    t.detail = Some(format!("{e} [{}]", e.code()));
    t.code = Some(e.code().to_owned());
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

/// The first line of a push stream (`keys push` to `keys import -` over ssh).
pub const STREAM_MAGIC: &str = "keyferry-push 1";

/// A push stream: the magic line, a fresh one-time passphrase on the second line, then the
/// key set sealed with it as an ordinary bundle. It travels only on the ssh session's stdin,
/// inside its encryption, and is never written anywhere; the buffer is wiped when sent.
pub fn stream(
    manifest: &Manifest,
    work_factor: u8,
    progress: &dyn crate::progress::Progress,
) -> Result<zeroize::Zeroizing<Vec<u8>>> {
    let passphrase = crate::secret::Passphrase::generate();
    let mut out = zeroize::Zeroizing::new(Vec::with_capacity(64 * 1024));
    out.extend_from_slice(STREAM_MAGIC.as_bytes());
    out.push(b'\n');
    out.extend_from_slice(passphrase.expose_secret().as_bytes());
    out.push(b'\n');
    crate::keys::export::seal_to(
        manifest,
        &passphrase,
        work_factor,
        crate::keys::bundle::Encoding::Binary,
        &mut *out,
        progress,
    )?;
    Ok(out)
}

/// Splits a push stream: its passphrase and the bundle's bytes.
pub fn parse_stream(bytes: &[u8]) -> Result<(crate::secret::Passphrase, &[u8])> {
    let bad = || {
        Error::BundleFormat(format!(
            "standard input is not a keyferry push stream (it starts with {STREAM_MAGIC:?} \
             and comes from keyferry keys push)"
        ))
    };
    let rest = bytes
        .strip_prefix(STREAM_MAGIC.as_bytes())
        .and_then(|r| r.strip_prefix(b"\n"))
        .ok_or_else(bad)?;
    let nl = rest
        .iter()
        .take(1024)
        .position(|&b| b == b'\n')
        .ok_or_else(bad)?;
    let passphrase = crate::secret::Passphrase::from_bytes(rest[..nl].to_vec())?;
    Ok((passphrase, &rest[nl + 1..]))
}
