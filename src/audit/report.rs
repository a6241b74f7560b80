//! The per-node report (`keyferry fingerprint --json`, `docs/node-report.md`): what one node
//! holds, in a form the fleet audit collects from every node.

use crate::cluster::Node;
use crate::error::Result;
use crate::fingerprint::{FileHash, Fingerprint};
use crate::keys::keyset::{fingerprint_of, read_local_keys};
use crate::profile::{ProfileId, Role};
use crate::time::Timestamp;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// Whether the node holds what its role needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum KeySetStatus {
    /// Every key file of the role is present.
    Complete,
    /// Some are present, some missing.
    Partial,
    /// None is present.
    Missing,
    /// The role needs no keys (proxy).
    NotNeeded,
}

impl KeySetStatus {
    /// The status as the JSON writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            KeySetStatus::Complete => "complete",
            KeySetStatus::Partial => "partial",
            KeySetStatus::Missing => "missing",
            KeySetStatus::NotNeeded => "not-needed",
        }
    }
}

/// One key file in a report: never its bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileEntry {
    pub name: String,
    pub path: PathBuf,
    pub present: bool,
    pub len: Option<u64>,
    pub sha256: Option<FileHash>,
    /// A temporary vendor export file (its absence is normal after the vendor import).
    pub transient: bool,
    /// DPAPI state of the file; `sha256` is of the plaintext when it was decrypted.
    pub protection: crate::keys::keyset::Protection,
}

/// `keyferry fingerprint --json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeReport {
    /// [`crate::JSON_VERSION`].
    pub version: u32,
    /// `node-report`.
    pub kind: String,
    /// The keyferry version that wrote it.
    pub keyferry: String,
    /// The cluster it was collected for.
    pub cluster: Option<String>,
    /// The node.
    pub node: String,
    /// Its role.
    pub role: Role,
    /// Its product profile.
    pub profile: ProfileId,
    /// Its host name.
    pub host: String,
    /// When it was collected (the node's clock).
    pub time: Timestamp,
    /// Whether the role's key files are all there.
    pub status: KeySetStatus,
    /// The key set's fingerprint, when it is complete.
    pub fingerprint: Option<Fingerprint>,
    /// Each key file of the role.
    pub files: Vec<FileEntry>,
    /// Digest of the application folder (binaries), when the profile has one.
    #[serde(default)]
    pub app: Option<crate::audit::appdigest::AppDigest>,
    /// The node-local files (`database.config`) this node's folders lack: a web node
    /// without its `database.config` never had its database connection set up.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub missing_local: Vec<String>,
}

/// Largest report accepted from another node.
pub const MAX_REPORT_BYTES: usize = 1024 * 1024;

impl NodeReport {
    /// Parses a report from another node: size-limited, strict fields, version 1 only.
    pub fn parse(bytes: &[u8]) -> Result<NodeReport> {
        Self::parse_text(bytes).map_err(crate::Error::NodeReport)
    }

    fn parse_text(bytes: &[u8]) -> std::result::Result<NodeReport, String> {
        if bytes.len() > MAX_REPORT_BYTES {
            return Err(format!(
                "report is {} bytes (at most {MAX_REPORT_BYTES})",
                bytes.len()
            ));
        }
        let v: serde_json::Value =
            serde_json::from_slice(bytes).map_err(|e| format!("not JSON: {e}"))?;
        match v.get("version").and_then(|x| x.as_u64()) {
            Some(1) => {}
            Some(n) => return Err(format!("report version {n} (this build reads 1)")),
            None => return Err("no report version".into()),
        }
        if v.get("kind").and_then(|k| k.as_str()) != Some("node-report") {
            return Err("not a node report (kind)".into());
        }
        let r: NodeReport = serde_json::from_value(v).map_err(|e| format!("bad report: {e}"))?;
        if r.node.len() > 256 || r.host.len() > 256 || r.files.len() > 64 {
            return Err("report fields are implausibly large".into());
        }
        Ok(r)
    }
}

/// Builds the report for the local node.
pub fn node_report(node: &Node, host: &str, now: Timestamp) -> Result<NodeReport> {
    node_report_with_app_files(node, host, now).map(|(report, _)| report)
}

/// Per-file hashes of the application folder, relative path → SHA-256.
pub type AppFiles = std::collections::BTreeMap<String, crate::fingerprint::FileHash>;

/// [`node_report`] plus the per-file hashes its application digest was built from, so a
/// caller that compares folders (the audit) does not read them a second time.
pub fn node_report_with_app_files(
    node: &Node,
    host: &str,
    now: Timestamp,
) -> Result<(NodeReport, Option<AppFiles>)> {
    let keys = read_local_keys(node)?;
    let fingerprint = fingerprint_of(&keys);
    let present = keys.iter().filter(|k| k.content.is_some()).count();
    let status = if keys.is_empty() {
        KeySetStatus::NotNeeded
    } else if present == keys.len() {
        KeySetStatus::Complete
    } else if present == 0 {
        KeySetStatus::Missing
    } else {
        KeySetStatus::Partial
    };
    let files = keys
        .iter()
        .map(|k| FileEntry {
            name: k.spec.name.clone(),
            path: k.path.clone(),
            present: k.content.is_some(),
            len: k.content.as_ref().map(|c| c.len() as u64),
            sha256: k.hash(),
            transient: k.spec.transient,
            protection: k.protection,
        })
        .collect();
    let app_files = app_file_hashes(node)?;
    let missing_local = node
        .profile
        .node_local
        .iter()
        .filter(|l| {
            node.folders.get(&l.folder).is_some_and(|dir| {
                dir.is_dir() && std::fs::symlink_metadata(dir.join(&l.name)).is_err()
            })
        })
        .map(|l| l.name.clone())
        .collect();
    let report = NodeReport {
        version: crate::JSON_VERSION,
        kind: "node-report".into(),
        keyferry: env!("CARGO_PKG_VERSION").into(),
        cluster: node.cluster.clone(),
        node: node.name.clone(),
        role: node.role,
        profile: node.profile.id,
        host: host.to_owned(),
        time: now,
        status,
        fingerprint,
        files,
        app: app_files.as_ref().map(crate::audit::appdigest::digest_of),
        missing_local,
    };
    Ok((report, app_files))
}

fn app_file_hashes(node: &Node) -> Result<Option<AppFiles>> {
    let Some(dir) = node
        .profile
        .app_folder
        .as_ref()
        .and_then(|slot| node.folders.get(slot))
    else {
        return Ok(None);
    };
    if !dir.is_dir() {
        return Ok(None);
    }
    crate::audit::appdigest::file_hashes(dir, &node.profile).map(Some)
}
