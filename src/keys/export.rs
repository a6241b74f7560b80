//! `keys export`: read the local node's key set and seal it into a bundle.

use crate::cluster::Node;
use crate::error::{Error, Result};
use crate::fingerprint::{FileHash, Fingerprint};
use crate::fs::write_new_private;
use crate::keys::bundle::{Bundle, Encoding};
use crate::keys::keyset::{read_local_keys, require_complete, Protection};
use crate::keys::ledger::{absolute, Ledger, LedgerEntry, LedgerKind};
use crate::keys::manifest::{Manifest, Source};
use crate::profile::{ProfileId, Role};
use crate::progress::Progress;
use crate::secret::Passphrase;
use crate::time::Timestamp;
use serde::Serialize;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Default bundle lifetime, like kubeadm's two-hour certificate key.
pub const DEFAULT_TTL: Duration = Duration::from_secs(2 * 3600);
/// Shortest lifetime `--ttl` accepts: enough to copy the bundle and type the passphrase.
pub const MIN_TTL: Duration = Duration::from_secs(5 * 60);
/// Longest lifetime `--ttl` accepts: a bundle is for one maintenance window, not for storage.
pub const MAX_TTL: Duration = Duration::from_secs(7 * 24 * 3600);

/// Builds the manifest of the local node's key set. Every key file the role holds must be
/// present. Also returns warnings for the admin (key files that only look DPAPI-protected).
pub fn build_manifest(
    node: &Node,
    host: &str,
    now: Timestamp,
    ttl: Duration,
    from_non_primary: bool,
) -> Result<(Manifest, Vec<String>)> {
    if !(MIN_TTL..=MAX_TTL).contains(&ttl) {
        return Err(Error::InvalidInput(format!(
            "--ttl must be between {} and {}",
            crate::time::format_duration(MIN_TTL),
            crate::time::format_duration(MAX_TTL)
        )));
    }
    if !node.profile.role_needs_keys(node.role) {
        return Err(Error::NothingToExport {
            node: node.name.clone(),
            role: node.role.to_string(),
        });
    }
    // The primary's keys encrypt the database: they are the cluster's source of truth.
    if node.role != Role::Primary && !from_non_primary {
        return Err(Error::NotPrimary {
            node: node.name.clone(),
            role: node.role.to_string(),
        });
    }
    let keys = read_local_keys(node)?;
    require_complete(&keys)?;
    for k in &keys {
        if !k.protection.can_travel() {
            return Err(dpapi_refusal(k));
        }
    }
    let warnings = keys
        .iter()
        .filter(|k| k.protection == Protection::LooksDpapi)
        .map(looks_dpapi_warning)
        .collect();
    let scopes: Vec<(String, Option<crate::dpapi::Scope>)> = keys
        .iter()
        .map(|k| match k.protection {
            Protection::Dpapi { scope, .. } => (k.spec.name.clone(), Some(scope)),
            _ => (k.spec.name.clone(), None),
        })
        .collect();
    let files = keys
        .into_iter()
        .map(|k| {
            let content = k.content.expect("checked complete");
            (k.spec.name, k.spec.roles, content)
        })
        .collect();
    let mut manifest = Manifest::new(
        now,
        now.plus(ttl),
        node.cluster.clone(),
        node.profile.id,
        Source {
            node: node.name.clone(),
            role: node.role,
            host: host.to_owned(),
        },
        files,
    );
    for (e, (_, scope)) in manifest.header.entries.iter_mut().zip(scopes) {
        e.dpapi = scope;
    }
    Ok((manifest, warnings))
}

/// The product's way to turn DPAPI off for a key file, from the profile table.
fn dpapi_remedy(k: &crate::keys::keyset::LocalKey) -> &str {
    k.spec.dpapi_remedy.as_deref().unwrap_or(
        "turn DPAPI protection off in the product that wrote the file, export, then turn it on again on each node",
    )
}

fn looks_dpapi_warning(k: &crate::keys::keyset::LocalKey) -> String {
    format!(
        "{} looks DPAPI-protected (it is over {} bytes; a size hint, not proof): if imports \
         fail with \"Key not valid for use in specified state\", then {}",
        k.path.display(),
        k.spec.dpapi_size_hint.unwrap_or(0),
        dpapi_remedy(k)
    )
}

fn dpapi_refusal(k: &crate::keys::keyset::LocalKey) -> Error {
    let product = dpapi_remedy(k);
    let (what, remedy) = match k.protection {
        Protection::Dpapi { scope, .. } if cfg!(windows) => (
            format!("a {scope}-scope blob that this machine cannot decrypt: it was protected on another machine or account"),
            format!("run keyferry keys export on the machine that protected it, or {product}"),
        ),
        Protection::Dpapi { scope, .. } => (
            format!("a {scope}-scope blob; only Windows can decrypt it, on the machine that made it"),
            "run keyferry keys export on that Windows node, which decrypts it in memory before it goes into the bundle".to_string(),
        ),
        Protection::DpapiEmbedded => (
            "DPAPI blobs inside the file; keyferry does not rewrite such files".to_string(),
            product.to_string(),
        ),
        _ => ("DPAPI-NG data".to_string(), product.to_string()),
    };
    Error::DpapiProtected {
        path: k.path.clone(),
        what,
        remedy,
    }
}

/// Seals `manifest` into `out` (a file path, or a writer such as stdout).
pub fn seal_to(
    manifest: &Manifest,
    passphrase: &Passphrase,
    work_factor: u8,
    encoding: Encoding,
    out: impl Write,
    progress: &dyn Progress,
) -> Result<()> {
    progress.start("encrypting (scrypt)");
    let r = Bundle::seal(manifest, passphrase, work_factor, encoding, out);
    progress.finish();
    r
}

/// Seals into a new owner-only file and records it on the node's ledger.
#[allow(clippy::too_many_arguments)]
pub fn export_to_file(
    node: &Node,
    manifest: &Manifest,
    passphrase: &Passphrase,
    work_factor: u8,
    encoding: Encoding,
    path: &Path,
    force: bool,
    progress: &dyn Progress,
) -> Result<PathBuf> {
    let stamp = write_new_private(path, force, |f| {
        seal_to(
            manifest,
            passphrase,
            work_factor,
            encoding,
            &mut *f,
            progress,
        )
    })?;
    let abs = absolute(path);
    Ledger::at(&node.state_dir).record(LedgerEntry {
        path: abs.clone(),
        time: manifest.header.created,
        fingerprint: manifest.header.fingerprint,
        node: node.name.clone(),
        kind: LedgerKind::Exported,
        stamp: Some(stamp),
    })?;
    Ok(abs)
}

/// One entry as reports show it: never the bytes.
#[derive(Debug, Clone, Serialize)]
pub struct EntrySummary {
    pub name: String,
    pub len: u64,
    pub sha256: FileHash,
    pub roles: Vec<Role>,
    /// The source file was DPAPI-protected (decrypted for transport).
    pub dpapi: Option<crate::dpapi::Scope>,
}

/// What `keys export` and `keys inspect` report.
#[derive(Debug, Clone, Serialize)]
pub struct BundleSummary {
    /// [`crate::JSON_VERSION`].
    pub version: u32,
    /// `keys-export` or `keys-inspect`.
    pub kind: String,
    /// The cluster it was made for.
    pub cluster: Option<String>,
    /// Its product profile.
    pub profile: ProfileId,
    /// The node it was exported from.
    pub source_node: String,
    /// That node's role.
    pub source_role: Role,
    /// That node's host name.
    pub source_host: String,
    /// When it was sealed.
    pub created: Timestamp,
    /// When it stops being accepted.
    pub expires: Timestamp,
    /// The key set's fingerprint.
    pub fingerprint: Fingerprint,
    /// Each entry: name, size and hash, never its bytes.
    pub entries: Vec<EntrySummary>,
    /// Where it was written, if to a file.
    pub output: Option<PathBuf>,
}

impl BundleSummary {
    /// The summary of `manifest`, as a report of `kind`.
    pub fn of(manifest: &Manifest, kind: &str, output: Option<PathBuf>) -> BundleSummary {
        let h = &manifest.header;
        BundleSummary {
            version: crate::JSON_VERSION,
            kind: kind.into(),
            cluster: h.cluster.clone(),
            profile: h.profile,
            source_node: h.source.node.clone(),
            source_role: h.source.role,
            source_host: h.source.host.clone(),
            created: h.created,
            expires: h.expires,
            fingerprint: h.fingerprint,
            entries: h
                .entries
                .iter()
                .map(|e| EntrySummary {
                    name: e.name.clone(),
                    len: e.len,
                    sha256: e.sha256,
                    roles: e.roles.clone(),
                    dpapi: e.dpapi,
                })
                .collect(),
            output,
        }
    }
}
