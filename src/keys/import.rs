//! `keys import`: check a bundle against this node, plan, and install.
//!
//! The checks run in a fixed, documented order and each has its own error code:
//! wrong passphrase → corrupt or tampered → unknown format or version → expired → entry names
//! → SHA-256 and fingerprint → role → profile and cluster → completeness for the role.
//! A refusal changes nothing on disk. Planning is pure; [`apply`] is the one place that writes.

use crate::cluster::Node;
use crate::error::{Error, Result};
use crate::fingerprint::{FileHash, Fingerprint};
use crate::fs::attrs::Applied as AttrsApplied;
use crate::keys::bundle::Bundle;
use crate::keys::manifest::{Manifest, MAX_ENTRY_LEN};
use crate::profile::{Profile, ProfileId, Role};
use crate::progress::Progress;
use crate::secret::{KeyBytes, Passphrase};
use crate::time::Timestamp;
use crate::txn::{Before, Change, Recovery};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Whether installed files are wrapped with DPAPI.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ProtectMode {
    /// Protect (machine scope) exactly the files whose source was DPAPI-protected, on Windows.
    #[default]
    Auto,
    /// Protect every installed file with machine-scope DPAPI (Windows only).
    Dpapi,
    /// Install plain files.
    None,
}

/// Options of one import.
#[derive(Debug, Clone, Copy)]
pub struct ImportOptions {
    /// Whether the installed keys are DPAPI-protected as the node's were.
    pub protect: ProtectMode,
    /// Replace keys that differ (`--replace`).
    pub replace: bool,
    /// Also allow replacing the primary's key set (it encrypts the database).
    pub replace_primary: bool,
    /// Plan only; change nothing.
    pub dry_run: bool,
    /// Accept an expired bundle (`--allow-expired`).
    pub allow_expired: bool,
    /// The time to check the bundle's expiry against.
    pub now: Timestamp,
    /// The most scrypt work the bundle may ask for.
    pub max_work_factor: u8,
    /// How long to wait for another keyferry command changing this node.
    pub wait: Duration,
    /// Let a replace leave a DPAPI-protected key unprotected (the admin says so).
    pub leave_unprotected: bool,
}

/// Opens a bundle file and runs every check up to the plan.
pub fn open_and_check(
    bundle: &Path,
    passphrase: &Passphrase,
    node: &Node,
    opts: &ImportOptions,
    progress: &dyn Progress,
) -> Result<(Manifest, Checked)> {
    let bytes = Bundle::read_file(bundle)?;
    progress.start("decrypting (scrypt)");
    let manifest = Bundle::open(&bytes[..], passphrase, opts.max_work_factor);
    progress.finish();
    let manifest = manifest?;
    let checked = check(&manifest, node, opts)?;
    Ok((manifest, checked))
}

/// What the checks found that the plan and report need.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Checked {
    /// The bundle had expired and `--allow-expired` let it through.
    pub expired_override: bool,
}

/// The checks after decryption, in the documented order.
pub fn check(manifest: &Manifest, node: &Node, opts: &ImportOptions) -> Result<Checked> {
    let h = &manifest.header;
    let expired = opts.now >= h.expires;
    if expired && !opts.allow_expired {
        return Err(Error::BundleExpired {
            expires: h.expires.to_string(),
            now: opts.now.to_string(),
        });
    }
    let bundle_profile: Option<Profile> = match h.profile {
        ProfileId::Custom if node.profile.id == ProfileId::Custom => Some(node.profile.clone()),
        ProfileId::Custom => None,
        id => Profile::builtin(id),
    };
    let allowed: Option<Vec<&str>> = bundle_profile
        .as_ref()
        .map(|p| p.keys.iter().map(|k| k.name.as_str()).collect());
    manifest.check_names(allowed.as_deref())?;
    for e in &h.entries {
        if node.profile.is_node_local(&e.name) {
            return Err(Error::BadEntryName {
                name: e.name.clone(),
                why: "it is a node-local file and never travels",
            });
        }
    }
    manifest.verify_integrity()?;
    if !node.profile.role_needs_keys(node.role) {
        return Err(Error::WrongRole(format!(
            "node {} is a {} node, which needs no keys in profile {}",
            node.name, node.role, node.profile.id
        )));
    }
    if node.role != Role::Primary && !h.entries.iter().any(|e| e.roles.contains(&node.role)) {
        return Err(Error::WrongRole(format!(
            "the bundle carries nothing for role {} (its entries are for {})",
            node.role,
            roles_of(manifest)
        )));
    }
    if h.profile != node.profile.id {
        return Err(Error::WrongProfile {
            bundle: h.profile.to_string(),
            node: node.profile.id.to_string(),
        });
    }
    if let (Some(b), Some(n)) = (&h.cluster, &node.cluster) {
        if b != n {
            return Err(Error::WrongCluster {
                bundle: b.clone(),
                node: n.clone(),
            });
        }
    }
    for spec in node.profile.keys_held_by(node.role) {
        if !h.entries.iter().any(|e| e.name == spec.name) {
            return Err(Error::BundleIncomplete {
                name: spec.name.clone(),
                role: node.role.to_string(),
            });
        }
    }
    Ok(Checked {
        expired_override: expired,
    })
}

fn roles_of(m: &Manifest) -> String {
    let mut roles: Vec<Role> = m
        .header
        .entries
        .iter()
        .flat_map(|e| e.roles.iter().copied())
        .collect();
    roles.sort();
    roles.dedup();
    roles
        .iter()
        .map(|r| r.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// What import will do to one file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FileAction {
    /// The node already has these exact bytes.
    Unchanged,
    /// No file there yet.
    Install,
    /// A different file is there; replaced only with `--replace`, after a backup.
    Replace,
    /// A DPAPI-protected file (or one the product wraps) this machine cannot decrypt: whether
    /// it holds the same key cannot be told here, so it is never replaced from here, with or
    /// without `--replace`.
    CannotCompare,
}

#[derive(Debug, Clone, Serialize)]
pub struct PlannedFile {
    pub name: String,
    pub path: PathBuf,
    pub action: FileAction,
    pub len: u64,
    pub sha256: FileHash,
    /// Written as a machine-scope DPAPI blob (the hash above is of the plaintext).
    pub dpapi: bool,
    /// How the file there now is protected: `none`, `dpapi` (decrypted here and compared by
    /// its plaintext), `dpapi-undecryptable`, `dpapi-embedded`, `dpapi-ng`, `looks-dpapi`;
    /// `None` when there is no file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub existing: Option<&'static str>,
    /// The owner, group and mode (or ACL) the file gets, and where they come from.
    pub attributes: AttrsApplied,
    /// What was there when planned (for the engine's re-check before each rename).
    #[serde(skip)]
    pub before: Before,
}

/// The whole plan: a value that can be shown, tested and diffed before anything is written.
#[derive(Debug, Clone, Serialize)]
pub struct ImportPlan {
    pub files: Vec<PlannedFile>,
    /// Bundle entries this role does not take (e.g. `appsettings.json` on an action host).
    pub skipped: Vec<String>,
    /// The fingerprint the node will have for its role once the plan is applied.
    pub fingerprint: Fingerprint,
    /// Things the admin should know (e.g. a DPAPI source installed unprotected).
    pub warnings: Vec<String>,
}

impl ImportPlan {
    pub fn is_noop(&self) -> bool {
        self.files.iter().all(|f| f.action == FileAction::Unchanged)
    }

    pub fn replaces(&self) -> bool {
        self.files.iter().any(|f| f.action == FileAction::Replace)
    }

    /// Why this plan may not be applied whatever the flags: a file whose protection keeps
    /// this machine from comparing it, or a replace that would leave a DPAPI-protected key
    /// unprotected (unless `leave_unprotected`).
    pub fn protection_refusal(&self, leave_unprotected: bool) -> Option<Error> {
        if let Some(f) = self
            .files
            .iter()
            .find(|f| f.action == FileAction::CannotCompare)
        {
            return Some(Error::KeyProtection(format!(
                "{} is protected ({}) in a way this machine cannot decrypt, so keyferry cannot \
                 tell whether it holds the primary's key: it is never replaced on a comparison \
                 that could not see the key. Compare it on that node itself (keys push reaches \
                 a node over ssh, where its own keyferry decrypts it), or turn its protection \
                 off there first (keyferry dpapi unprotect); nothing was changed",
                f.path.display(),
                f.existing.unwrap_or("unknown")
            )));
        }
        if !leave_unprotected {
            if let Some(f) = self.files.iter().find(|f| {
                f.action == FileAction::Replace && f.existing == Some("dpapi") && !f.dpapi
            }) {
                return Some(Error::KeyProtection(format!(
                    "{} is DPAPI-protected on this node and would be replaced by an \
                     unprotected key; keyferry keeps a node's protection (run it with \
                     --protect auto or dpapi on that node), or say that the key is to be left \
                     unprotected with --leave-unprotected; nothing was changed",
                    f.path.display()
                )));
            }
        }
        None
    }

    /// The refusal for a plan that would replace files without `--replace`, naming them.
    pub fn differs(&self) -> Error {
        let files = self
            .files
            .iter()
            .filter(|f| f.action == FileAction::Replace)
            .map(|f| f.path.display().to_string())
            .collect::<Vec<_>>()
            .join(", ");
        Error::KeySetDiffers { files }
    }
}

/// Compares the bundle with what is on disk. Reads only. DPAPI-protected files on this node
/// are compared by their plaintext where the OS can decrypt them.
pub fn plan(manifest: &Manifest, node: &Node, protect: ProtectMode) -> Result<ImportPlan> {
    if protect == ProtectMode::Dpapi && !cfg!(windows) {
        return Err(Error::Unsupported(
            "--protect dpapi works only on Windows: DPAPI is a Windows facility".into(),
        ));
    }
    let specs = node.profile.keys_held_by(node.role);
    let mut files = Vec::new();
    let mut warnings = Vec::new();
    for spec in &specs {
        let meta = manifest
            .header
            .entries
            .iter()
            .find(|e| e.name == spec.name)
            .ok_or_else(|| Error::BundleIncomplete {
                name: spec.name.clone(),
                role: node.role.to_string(),
            })?;
        let path = node.key_path(spec)?;
        let siblings: Vec<String> = node
            .profile
            .keys
            .iter()
            .filter(|k| k.folder == spec.folder && k.name != spec.name)
            .map(|k| k.name.clone())
            .chain(
                node.profile
                    .node_local
                    .iter()
                    .filter(|l| l.folder == spec.folder)
                    .map(|l| l.name.clone()),
            )
            .collect();
        let looked = crate::txn::look(&path, MAX_ENTRY_LEN, &siblings)?;
        use crate::keys::keyset::Protection;
        let (action, existing) = match looked.bytes {
            None => (FileAction::Install, None),
            Some(raw) => {
                let (current, prot) = crate::keys::keyset::interpret(raw, spec.dpapi_size_hint);
                let same = FileHash::of(current.expose_secret()).ct_eq(&meta.sha256);
                let existing = match prot {
                    Protection::None => "none",
                    Protection::Dpapi {
                        decrypted: true, ..
                    } => "dpapi",
                    Protection::Dpapi {
                        decrypted: false, ..
                    } => "dpapi-undecryptable",
                    Protection::DpapiEmbedded => "dpapi-embedded",
                    Protection::DpapiNg => "dpapi-ng",
                    Protection::LooksDpapi => "looks-dpapi",
                };
                let action = if same {
                    FileAction::Unchanged
                } else if matches!(existing, "none" | "dpapi") {
                    FileAction::Replace
                } else {
                    // A comparison that could not see the plaintext proves nothing.
                    FileAction::CannotCompare
                };
                (action, Some(existing))
            }
        };
        if action == FileAction::Replace && looked.attrs.readable_by_everyone() {
            warnings.push(format!(
                "{} is readable by every user of this machine (mode {:04o}); keyferry keeps the \
                 mode it found, but the key should not be: chmod o-rwx {}",
                path.display(),
                looked.attrs.mode.unwrap_or(0),
                path.display()
            ));
        }
        // Auto keeps a node's protection: a file DPAPI-protected there now is protected again
        // (on Windows, where this runs on that node), as is one protected on the source.
        let dpapi = match protect {
            ProtectMode::Dpapi => true,
            ProtectMode::None => false,
            ProtectMode::Auto => {
                (meta.dpapi.is_some() || existing == Some("dpapi")) && cfg!(windows)
            }
        };
        if let (Some(scope), false, ProtectMode::Auto) = (meta.dpapi, dpapi, protect) {
            warnings.push(format!(
                "{} was DPAPI-protected ({scope} scope) on the source; this system has no DPAPI, \
                 so it is installed unprotected",
                spec.name
            ));
        }
        files.push(PlannedFile {
            name: spec.name.clone(),
            path,
            action,
            len: meta.len,
            sha256: meta.sha256,
            dpapi,
            existing,
            attributes: AttrsApplied {
                source: looked.attr_source,
                attrs: looked.attrs,
                owner_not_kept: false,
            },
            before: looked.before,
        });
    }
    let skipped = manifest
        .header
        .entries
        .iter()
        .filter(|e| !specs.iter().any(|s| s.name == e.name))
        .map(|e| e.name.clone())
        .collect();
    let fingerprint = Fingerprint::of(files.iter().map(|f| (f.name.as_str(), &f.sha256)));
    Ok(ImportPlan {
        files,
        skipped,
        fingerprint,
        warnings,
    })
}

/// What [`apply`] did.
#[derive(Debug, Clone, Serialize)]
pub struct Applied {
    /// Folder holding the previous files, if any were replaced.
    pub backup_dir: Option<PathBuf>,
    /// The attributes each written file got.
    pub attributes: Vec<(PathBuf, AttrsApplied)>,
}

/// Installs the plan through the transaction engine: back up what will be replaced, write
/// each file atomically with the attributes the plan chose, re-read and fingerprint the
/// result, and roll back if that check fails. Call with the node's lock held.
///
/// Refuses (changing nothing) when the plan replaces files and `replace` is false.
pub fn apply(
    manifest: &Manifest,
    plan: &ImportPlan,
    node: &Node,
    replace: bool,
) -> Result<Applied> {
    // A file that cannot be compared is never replaced, whatever the caller's flags (its
    // own check, with its --leave-unprotected, ran first).
    if let Some(e) = plan.protection_refusal(true) {
        return Err(e);
    }
    if plan.replaces() && !replace {
        return Err(plan.differs());
    }
    let mut changes = Vec::new();
    for f in plan
        .files
        .iter()
        .filter(|f| f.action != FileAction::Unchanged)
    {
        let plain = manifest
            .entries()
            .find(|(m, _)| m.name == f.name)
            .map(|(_, b)| b)
            .expect("plan entries come from the manifest");
        let content = if f.dpapi {
            KeyBytes::new(
                crate::os::dpapi_protect(plain.expose_secret(), true)
                    .map_err(|e| Error::Dpapi(e.to_string()))?,
            )
        } else {
            KeyBytes::copy_from(plain.expose_secret())
        };
        changes.push(Change {
            path: f.path.clone(),
            label: f.name.clone(),
            before: f.before.clone(),
            content,
            attrs: f.attributes.attrs.clone(),
            attr_source: f.attributes.source.clone(),
            transient: node.profile.key(&f.name).is_some_and(|k| k.transient),
        });
    }
    let ctx = crate::txn::Context {
        state_dir: &node.state_dir,
        backup_root: node.backup_root(),
        node: &node.name,
        command: "keys import",
    };
    let applied = crate::txn::apply(&ctx, changes, &|| verify(plan))?;
    Ok(Applied {
        backup_dir: applied.backup_dir,
        attributes: applied.files,
    })
}

fn verify(plan: &ImportPlan) -> Result<()> {
    let mut hashes = Vec::new();
    for f in &plan.files {
        let (on_disk, protection) = crate::keys::keyset::read_key(&f.path, None)?;
        if f.dpapi
            && !matches!(
                protection,
                crate::keys::keyset::Protection::Dpapi {
                    decrypted: true,
                    ..
                }
            )
        {
            return Err(Error::IntegrityMismatch(format!(
                "{} is not a DPAPI blob this machine can decrypt",
                f.path.display()
            )));
        }
        let h = FileHash::of(on_disk.expose_secret());
        if !h.ct_eq(&f.sha256) {
            return Err(Error::IntegrityMismatch(format!(
                "{} does not read back as written",
                f.path.display()
            )));
        }
        hashes.push((f.name.as_str(), h));
    }
    let fp = Fingerprint::of(hashes.iter().map(|(n, h)| (*n, h)));
    if !fp.ct_eq(&plan.fingerprint) {
        return Err(Error::IntegrityMismatch(
            "key-set fingerprint after install".into(),
        ));
    }
    Ok(())
}

/// The import report (`--json`).
#[derive(Debug, Clone, Serialize)]
pub struct ImportReport {
    /// [`crate::JSON_VERSION`].
    pub version: u32,
    /// `keys-import`.
    pub kind: String,
    /// The node imported to.
    pub node: String,
    /// Its role.
    pub role: Role,
    /// What happened.
    pub outcome: ImportOutcome,
    /// The bundle's own facts.
    pub bundle: crate::keys::export::BundleSummary,
    /// An expired bundle was accepted because the admin said so.
    pub expired_override: bool,
    /// Each file: what it was and what it becomes.
    pub plan: ImportPlan,
    /// Where the replaced files were backed up, when any were.
    pub backup_dir: Option<PathBuf>,
    /// How the bundle file was removed, when it was.
    pub bundle_removal: Option<crate::fs::shred::Removal>,
    /// The bundle was kept (`--keep-bundle`), and put on the ledger for `keys cleanup`.
    pub bundle_kept: bool,
    /// What the admin does next, if the product needs a step of its own.
    pub next_step: Option<String>,
    /// An earlier change that a crash interrupted, finished or rolled back first.
    pub recovered: Option<Recovery>,
    /// keyferry temp files left by a crash, removed from the node's folders first.
    pub swept: Vec<crate::fs::Removal>,
    /// Trouble after the keys were committed (ledger, bundle removal): the import stands.
    pub warnings: Vec<String>,
    /// A real import removes the bundle afterwards (not with `--keep-bundle`): other nodes
    /// that were to import the same copy need their own copy, or `--keep-bundle` here.
    pub bundle_removed_after: bool,
    /// `--dry-run`: what a real import would refuse, and why.
    pub would_refuse: Option<WouldRefuse>,
}

/// A refusal a dry run found.
/// The refusal's code, as the error's.
#[derive(Debug, Clone, Serialize)]
pub struct WouldRefuse {
    pub code: &'static str,
    pub message: String,
}

/// What an import did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ImportOutcome {
    /// The node already held these keys; nothing was written.
    Unchanged,
    /// Files were written (installed and/or replaced).
    Installed,
    /// `--dry-run`: the plan only.
    DryRun,
}

/// The whole import of a bundle file: checks, plan, install, then removal of the bundle
/// (unless `keep_bundle`, in which case it goes on the ledger for `keys cleanup`).
/// Nothing is written, and the bundle stays, when the node already holds the keys, on
/// `--dry-run`, and on every refusal.
pub fn import_file(
    bundle: &Path,
    passphrase: &Passphrase,
    node: &Node,
    opts: &ImportOptions,
    keep_bundle: bool,
    progress: &dyn Progress,
) -> Result<ImportReport> {
    let (manifest, checked) = open_and_check(bundle, passphrase, node, opts, progress)?;
    let mut report = install(&manifest, checked, node, opts)?;
    report.bundle_removed_after = !keep_bundle;
    match report.outcome {
        ImportOutcome::DryRun => {}
        ImportOutcome::Unchanged if opts.dry_run => {}
        ImportOutcome::Unchanged => keep_on_ledger(&mut report, bundle, &manifest, node, opts),
        // The keys are committed: what follows can only warn.
        ImportOutcome::Installed if keep_bundle => {
            keep_on_ledger(&mut report, bundle, &manifest, node, opts)
        }
        ImportOutcome::Installed => match crate::fs::shred_file(bundle) {
            Ok(r) => {
                report.bundle_removal = Some(r);
                report.bundle_kept = false;
            }
            Err(e) => report.warnings.push(format!(
                "the keys are installed, but the bundle could not be removed ({e}); remove it \
                 with: keyferry shred {}",
                bundle.display()
            )),
        },
    }
    Ok(report)
}

/// The import of a push stream (`keys import -`, fed by `keys push` over ssh): the
/// passphrase and the bundle from the stream, then the same checks and install as a bundle
/// file. Nothing was on disk, so nothing is removed or recorded afterwards.
pub fn import_stream(
    stream: &[u8],
    node: &Node,
    opts: &ImportOptions,
    progress: &dyn Progress,
) -> Result<ImportReport> {
    let (passphrase, bundle) = crate::keys::push::parse_stream(stream)?;
    progress.start("decrypting (scrypt)");
    let manifest = Bundle::open(bundle, &passphrase, opts.max_work_factor);
    progress.finish();
    let manifest = manifest?;
    let checked = check(&manifest, node, opts)?;
    let mut report = install(&manifest, checked, node, opts)?;
    report.bundle_kept = false;
    Ok(report)
}

/// Installs a checked manifest on `node` (from a bundle, or straight from the primary's
/// key set for `keys push`): plan, refusals, then under the node's lock, after any
/// interrupted change is finished or rolled back, the change through the transaction
/// engine. Nothing is written when the node already holds the keys, on a dry run, and on
/// every refusal.
pub fn install(
    manifest: &Manifest,
    checked: Checked,
    node: &Node,
    opts: &ImportOptions,
) -> Result<ImportReport> {
    // A first plan, without the lock, decides refusals and dry runs: a refusal must leave
    // the node exactly as it was, lock file and state folder included. If a change was
    // interrupted here, what is on disk may be half of it: go on to recover first.
    let interrupted = crate::txn::journal::Journal::path(&node.state_dir).exists();
    let first = plan(manifest, node, opts.protect)?;
    let mut report = ImportReport {
        version: crate::JSON_VERSION,
        kind: "import".into(),
        node: node.name.clone(),
        role: node.role,
        outcome: ImportOutcome::DryRun,
        bundle: crate::keys::export::BundleSummary::of(manifest, "bundle", None),
        expired_override: checked.expired_override,
        plan: first,
        backup_dir: None,
        bundle_removal: None,
        bundle_kept: true,
        next_step: None,
        recovered: None,
        swept: Vec::new(),
        warnings: Vec::new(),
        bundle_removed_after: false,
        would_refuse: None,
    };
    if opts.dry_run && interrupted {
        report.warnings.push(
            "a change on this node was interrupted; the next import (or keyferry keys recover) \
             finishes or rolls it back first"
                .into(),
        );
    }
    if report.plan.is_noop() && !interrupted {
        report.outcome = ImportOutcome::Unchanged;
        return Ok(report);
    }
    if let Some(refusal) = refusal(&report.plan, node, opts) {
        if opts.dry_run {
            report.would_refuse = Some(WouldRefuse {
                code: refusal.code(),
                message: refusal.to_string(),
            });
            return Ok(report);
        }
        if !interrupted {
            return Err(refusal);
        }
    }
    if opts.dry_run {
        return Ok(report);
    }
    let (held, recovered) = crate::txn::begin(&node.state_dir, &node.name, opts.wait)?;
    report.recovered = recovered;
    report.swept = sweep_node(node)?;
    report.plan = plan(manifest, node, opts.protect)?;
    if report.plan.is_noop() {
        report.outcome = ImportOutcome::Unchanged;
        return Ok(report);
    }
    if let Some(refusal) = refusal(&report.plan, node, opts) {
        return Err(refusal);
    }
    let applied = apply(manifest, &report.plan, node, opts.replace)?;
    drop(held);
    report.outcome = ImportOutcome::Installed;
    report.backup_dir = applied.backup_dir;
    for (path, a) in applied.attributes {
        if let Some(f) = report.plan.files.iter_mut().find(|f| f.path == path) {
            f.attributes = a;
        }
    }
    report.next_step = node.profile.after_import.map(str::to_owned);
    Ok(report)
}

/// Why import would refuse this plan, if it would: replacing the primary's key set needs
/// `--replace --replace-primary`; replacing any other differing file needs `--replace`.
pub fn refusal(plan: &ImportPlan, node: &Node, opts: &ImportOptions) -> Option<Error> {
    if let Some(e) = plan.protection_refusal(opts.leave_unprotected) {
        return Some(e);
    }
    if !plan.replaces() {
        return None;
    }
    if node.role == Role::Primary && !(opts.replace && opts.replace_primary) {
        return Some(Error::ReplacesPrimary {
            node: node.name.clone(),
        });
    }
    if !opts.replace {
        return Some(plan.differs());
    }
    None
}

/// A bundle that stays on disk goes on the ledger, so `keys cleanup` finds it. The keys are
/// already in place (or were): a ledger that cannot be written is a warning.
fn keep_on_ledger(
    report: &mut ImportReport,
    bundle: &Path,
    manifest: &Manifest,
    node: &Node,
    opts: &ImportOptions,
) {
    // Its identity and owner as it is now, through a handle never following a link: what
    // `keys cleanup` later checks before it removes the file.
    let opened = crate::fs::split(bundle)
        .and_then(|(dir, name)| crate::fs::Dir::open(&dir)?.open_file(&name, false));
    let stamp = match opened {
        Ok(Some(o)) => crate::fs::stamp_of(&o.file, &o.path).ok(),
        _ => None,
    };
    let entry = crate::keys::ledger::LedgerEntry {
        path: crate::keys::ledger::absolute(bundle),
        time: opts.now,
        fingerprint: manifest.header.fingerprint,
        node: node.name.clone(),
        kind: crate::keys::ledger::LedgerKind::KeptAfterImport,
        stamp,
    };
    if let Err(e) = crate::keys::ledger::Ledger::at(&node.state_dir).record(entry) {
        report.warnings.push(format!(
            "the bundle stays on disk but could not be put on the ledger ({e}); remove it \
             yourself when every node has it: keyferry shred {}",
            bundle.display()
        ));
    }
}

/// Removes keyferry temp files a crash left in the node's folders.
pub fn sweep_node(node: &Node) -> Result<Vec<crate::fs::Removal>> {
    let mut out = Vec::new();
    for dir in node.folders.values() {
        if let Ok(d) = crate::fs::Dir::open(dir) {
            out.extend(crate::fs::sweep(&d)?);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::manifest::Source;
    use crate::profile::ProfileId;

    fn node(dir: &Path) -> Node {
        Node::from_root(
            ProfileId::SecretServer,
            dir,
            Role::Secondary,
            "n",
            Some(dir.join("state")),
        )
        .unwrap()
    }

    fn manifest(key: &[u8]) -> Manifest {
        Manifest::new(
            Timestamp::now(),
            Timestamp::now().plus(std::time::Duration::from_secs(60)),
            None,
            ProfileId::SecretServer,
            Source {
                node: "p".into(),
                role: Role::Primary,
                host: "h".into(),
            },
            vec![(
                "encryption.config".into(),
                vec![Role::Secondary],
                KeyBytes::copy_from(key),
            )],
        )
    }

    #[test]
    fn failed_verification_restores_the_previous_file() {
        let d = tempfile::tempdir().unwrap();
        let n = node(d.path());
        let key = d.path().join("encryption.config");
        std::fs::write(&key, b"OLD KEY").unwrap();
        let m = manifest(b"NEW KEY");
        let mut p = plan(&m, &n, ProtectMode::Auto).unwrap();
        assert!(p.replaces());
        // Make the expected hash wrong, as if the disk returned other bytes than written.
        p.files[0].sha256 = FileHash::of(b"something else");
        let err = apply(&m, &p, &n, true).unwrap_err();
        assert!(matches!(err, Error::VerifyFailed(_)), "{err}");
        assert_eq!(std::fs::read(&key).unwrap(), b"OLD KEY");
    }

    #[test]
    fn failed_verification_removes_a_newly_installed_file() {
        let d = tempfile::tempdir().unwrap();
        let n = node(d.path());
        let m = manifest(b"NEW KEY");
        let mut p = plan(&m, &n, ProtectMode::Auto).unwrap();
        assert_eq!(p.files[0].action, FileAction::Install);
        p.files[0].sha256 = FileHash::of(b"something else");
        let r = apply(&m, &p, &n, false);
        assert!(matches!(r, Err(Error::VerifyFailed(_))), "{:?}", r.err());
        assert!(!d.path().join("encryption.config").exists());
    }

    #[test]
    fn replace_is_refused_before_any_backup_without_the_flag() {
        let d = tempfile::tempdir().unwrap();
        let n = node(d.path());
        std::fs::write(d.path().join("encryption.config"), b"OLD").unwrap();
        let m = manifest(b"NEW");
        let p = plan(&m, &n, ProtectMode::Auto).unwrap();
        assert!(matches!(
            apply(&m, &p, &n, false),
            Err(Error::KeySetDiffers { .. })
        ));
        assert!(!d.path().join("state").exists(), "no backup folder made");
    }
}
