//! `keys import`: check a bundle against this node, plan, and install.
//!
//! The checks run in a fixed, documented order and each has its own error code:
//! wrong passphrase → corrupt or tampered → unknown format or version → expired → entry names
//! → SHA-256 and fingerprint → role → profile and cluster → completeness for the role.
//! A refusal changes nothing on disk. Planning is pure; [`apply`] is the one place that writes.

use crate::bundle::Bundle;
use crate::cluster::Node;
use crate::error::{Error, Result};
use crate::fingerprint::{FileHash, Fingerprint};
use crate::fsx::{
    atomic_write, check_destination, create_unique_private_dir, write_new_private, Destination,
};
use crate::manifest::{Manifest, MAX_ENTRY_LEN};
use crate::profile::{Profile, ProfileId, Role};
use crate::progress::Progress;
use crate::secret::{read_key_file, KeyBytes, Passphrase};
use crate::time::Timestamp;
use serde::Serialize;
use std::io::Write;
use std::path::{Path, PathBuf};

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
    pub protect: ProtectMode,
    pub replace: bool,
    pub dry_run: bool,
    pub allow_expired: bool,
    pub now: Timestamp,
    pub max_work_factor: u8,
}

/// Opens a bundle file and runs every check up to the plan.
pub fn open_and_check(
    bundle: &Path,
    passphrase: &Passphrase,
    node: &Node,
    opts: &ImportOptions,
    progress: &dyn Progress,
) -> Result<(Manifest, Checked)> {
    let file = std::fs::File::open(bundle).map_err(|e| Error::io(bundle, e))?;
    progress.start("decrypting (scrypt)");
    let manifest = Bundle::open(file, passphrase, opts.max_work_factor);
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FileAction {
    /// The node already has these exact bytes.
    Unchanged,
    /// No file there yet.
    Install,
    /// A different file is there; replaced only with `--replace`, after a backup.
    Replace,
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
        let dir = path.parent().unwrap_or(Path::new("."));
        if !dir.is_dir() {
            return Err(Error::FolderMissing {
                path: dir.to_owned(),
            });
        }
        let action = match check_destination(&path)? {
            Destination::Missing => FileAction::Install,
            Destination::RegularFile => {
                let (current, _) = crate::keyset::read_key(&path, None)?;
                if FileHash::of(current.expose_secret()).ct_eq(&meta.sha256) {
                    FileAction::Unchanged
                } else {
                    FileAction::Replace
                }
            }
        };
        let dpapi = match protect {
            ProtectMode::Dpapi => true,
            ProtectMode::None => false,
            ProtectMode::Auto => meta.dpapi.is_some() && cfg!(windows),
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
}

/// Installs the plan: back up what will be replaced, write each file atomically, re-read
/// and fingerprint the result, and put the backup back if that check fails.
///
/// Refuses (changing nothing) when the plan replaces files and `replace` is false.
pub fn apply(
    manifest: &Manifest,
    plan: &ImportPlan,
    node: &Node,
    replace: bool,
) -> Result<Applied> {
    if plan.replaces() && !replace {
        let files = plan
            .files
            .iter()
            .filter(|f| f.action == FileAction::Replace)
            .map(|f| f.path.display().to_string())
            .collect::<Vec<_>>()
            .join(", ");
        return Err(Error::KeySetDiffers { files });
    }
    let bytes_of = |name: &str| -> &KeyBytes {
        manifest
            .entries()
            .find(|(m, _)| m.name == name)
            .map(|(_, b)| b)
            .expect("plan entries come from the manifest")
    };

    // 1. Back up every file that will be replaced, before touching any.
    let mut backups: Vec<(PathBuf, KeyBytes)> = Vec::new();
    let mut backup_dir = None;
    if plan.replaces() {
        let dir = create_unique_private_dir(&node.backup_root(), &Timestamp::now().compact())?;
        for f in plan
            .files
            .iter()
            .filter(|f| f.action == FileAction::Replace)
        {
            let current = read_key_file(&f.path, MAX_ENTRY_LEN)?;
            write_new_private(&dir.join(&f.name), false, |out| {
                out.write_all(current.expose_secret())
                    .map_err(|e| Error::io(dir.join(&f.name), e))
            })?;
            backups.push((f.path.clone(), current));
        }
        backup_dir = Some(dir);
    }

    // 2. Install.
    let mut written: Vec<&PlannedFile> = Vec::new();
    let mut result = Ok(());
    for f in plan
        .files
        .iter()
        .filter(|f| f.action != FileAction::Unchanged)
    {
        let plain = bytes_of(&f.name).expose_secret();
        // The plaintext is borrowed, never copied; only the (non-secret) blob is allocated.
        let write = if f.dpapi {
            crate::sys::dpapi_protect(plain, true)
                .map_err(|e| Error::Dpapi(e.to_string()))
                .and_then(|blob| atomic_write(&f.path, &blob))
        } else {
            atomic_write(&f.path, plain)
        };
        match write {
            Ok(()) => written.push(f),
            Err(e) => {
                result = Err(e);
                break;
            }
        }
    }

    // 3. Verify by re-reading: the fingerprint of what is on disk must be the plan's.
    if result.is_ok() {
        result = verify(plan);
    }

    if let Err(e) = result {
        let restore = rollback(&written, &backups);
        let why = match restore {
            Ok(()) => e.to_string(),
            Err(r) => format!("{e}; restoring the previous files also failed: {r}"),
        };
        return Err(Error::VerifyFailed(why));
    }
    Ok(Applied { backup_dir })
}

fn verify(plan: &ImportPlan) -> Result<()> {
    let mut hashes = Vec::new();
    for f in &plan.files {
        let (on_disk, protection) = crate::keyset::read_key(&f.path, None)?;
        if f.dpapi
            && !matches!(
                protection,
                crate::keyset::Protection::Dpapi {
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

fn rollback(written: &[&PlannedFile], backups: &[(PathBuf, KeyBytes)]) -> Result<()> {
    for f in written {
        match backups.iter().find(|(p, _)| p == &f.path) {
            Some((_, old)) => atomic_write(&f.path, old.expose_secret())?,
            None => std::fs::remove_file(&f.path).map_err(|e| Error::io(&f.path, e))?,
        }
    }
    Ok(())
}

/// The import report (`--json`).
#[derive(Debug, Clone, Serialize)]
pub struct ImportReport {
    pub version: u32,
    pub kind: String,
    pub node: String,
    pub role: Role,
    pub outcome: ImportOutcome,
    pub bundle: crate::export::BundleSummary,
    pub expired_override: bool,
    pub plan: ImportPlan,
    pub backup_dir: Option<PathBuf>,
    pub bundle_removal: Option<crate::shred::Removal>,
    pub bundle_kept: bool,
    pub next_step: Option<String>,
}

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
    let plan = plan(&manifest, node, opts.protect)?;
    let mut report = ImportReport {
        version: crate::JSON_VERSION,
        kind: "import".into(),
        node: node.name.clone(),
        role: node.role,
        outcome: ImportOutcome::DryRun,
        bundle: crate::export::BundleSummary::of(&manifest, "bundle", None),
        expired_override: checked.expired_override,
        plan,
        backup_dir: None,
        bundle_removal: None,
        bundle_kept: true,
        next_step: None,
    };
    if report.plan.is_noop() {
        report.outcome = ImportOutcome::Unchanged;
        return Ok(report);
    }
    if report.plan.replaces() && !opts.replace {
        // Same refusal as `apply` gives, before anything else happens.
        apply(&manifest, &report.plan, node, false)?;
    }
    if opts.dry_run {
        return Ok(report);
    }
    let applied = apply(&manifest, &report.plan, node, opts.replace)?;
    report.outcome = ImportOutcome::Installed;
    report.backup_dir = applied.backup_dir;
    report.next_step = node.profile.after_import.map(str::to_owned);
    if keep_bundle {
        crate::ledger::Ledger::at(&node.state_dir).record(crate::ledger::LedgerEntry {
            path: crate::ledger::absolute(bundle),
            time: opts.now,
            fingerprint: manifest.header.fingerprint,
            node: node.name.clone(),
            kind: crate::ledger::LedgerKind::KeptAfterImport,
        })?;
    } else {
        report.bundle_removal = Some(crate::shred::shred_file(bundle)?);
        report.bundle_kept = false;
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::Source;
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
        assert!(matches!(
            apply(&m, &p, &n, false),
            Err(Error::VerifyFailed(_))
        ));
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
