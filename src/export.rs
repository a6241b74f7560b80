//! `keys export`: read the local node's key set and seal it into a bundle.

use crate::bundle::{Bundle, Encoding};
use crate::cluster::Node;
use crate::error::{Error, Result};
use crate::fingerprint::{FileHash, Fingerprint};
use crate::fsx::write_new_private;
use crate::keyset::{read_local_keys, require_complete};
use crate::ledger::{absolute, Ledger, LedgerEntry, LedgerKind};
use crate::manifest::{Manifest, Source};
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
/// Longest lifetime `--ttl` accepts: a bundle is for one maintenance window, not for storage.
pub const MAX_TTL: Duration = Duration::from_secs(7 * 24 * 3600);

/// Builds the manifest of the local node's key set. Every key file the role holds must be
/// present.
pub fn build_manifest(node: &Node, host: &str, now: Timestamp, ttl: Duration) -> Result<Manifest> {
    if ttl.is_zero() || ttl > MAX_TTL {
        return Err(Error::InvalidInput(format!(
            "--ttl must be between 1s and {}",
            crate::time::format_duration(MAX_TTL)
        )));
    }
    let keys = read_local_keys(node)?;
    if keys.is_empty() {
        return Err(Error::WrongRole(format!(
            "role {} holds no keys in profile {}; export from a node that holds them",
            node.role, node.profile.id
        )));
    }
    require_complete(&keys)?;
    let files = keys
        .into_iter()
        .map(|k| {
            let content = k.content.expect("checked complete");
            (k.spec.name, k.spec.roles, content)
        })
        .collect();
    Ok(Manifest::new(
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
    ))
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
    write_new_private(path, force, |f| {
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
}

/// What `keys export` and `keys inspect` report.
#[derive(Debug, Clone, Serialize)]
pub struct BundleSummary {
    pub version: u32,
    pub kind: String,
    pub cluster: Option<String>,
    pub profile: ProfileId,
    pub source_node: String,
    pub source_role: Role,
    pub source_host: String,
    pub created: Timestamp,
    pub expires: Timestamp,
    pub fingerprint: Fingerprint,
    pub entries: Vec<EntrySummary>,
    pub output: Option<PathBuf>,
}

impl BundleSummary {
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
                })
                .collect(),
            output,
        }
    }
}
