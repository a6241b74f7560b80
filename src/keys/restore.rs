//! `keys restore`: the way back. Every replace leaves a backup folder
//! (`<state_dir>/backups/<node>/<UTC time>/` with `backup.json`); this lists them with their
//! time and fingerprint, and puts one back through the transaction engine, which takes a
//! backup of what it replaces, so a restore can itself be undone.

use crate::cluster::Node;
use crate::error::{Error, Result};
use crate::fingerprint::{FileHash, Fingerprint};
use crate::fs::attrs::{Applied as AttrsApplied, AttrSource, Attrs};
use crate::keys::manifest::MAX_ENTRY_LEN;
use crate::time::Timestamp;
use crate::txn::{BackupRecord, Before, Change, Recovery};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// One file in a backup.
#[derive(Debug, Clone, Serialize)]
pub struct BackupEntry {
    pub name: String,
    /// Where it goes back to.
    pub path: PathBuf,
    pub sha256: FileHash,
    /// The attributes recorded when it was backed up (older backups have none).
    #[serde(skip)]
    pub attrs: Option<Attrs>,
}

/// One backup folder.
#[derive(Debug, Clone, Serialize)]
pub struct BackupInfo {
    /// The folder name, which `keys restore --backup` takes.
    pub id: String,
    pub dir: PathBuf,
    pub time: Option<Timestamp>,
    pub command: Option<String>,
    /// Key-set fingerprint of the backed-up key files (of their plaintext where this machine
    /// can decrypt DPAPI blobs), as `keyferry fingerprint` would have shown then.
    pub fingerprint: Option<Fingerprint>,
    pub files: Vec<BackupEntry>,
    /// The node whose state folder keeps it, where that is not the node's own: a push that
    /// reached the node by path keeps its backups on the pushing node.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kept_by: Option<String>,
}

/// `keys restore --list --json`.
#[derive(Debug, Clone, Serialize)]
pub struct BackupList {
    pub version: u32,
    pub kind: String,
    pub node: String,
    pub backups: Vec<BackupInfo>,
}

/// The node's backups, oldest first.
pub fn list(node: &Node) -> Result<BackupList> {
    let root = node.backup_root();
    let mut backups = Vec::new();
    let mut names: Vec<_> = match std::fs::read_dir(&root) {
        Ok(rd) => rd
            .filter_map(|e| e.ok())
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(Error::io(&root, e)),
    };
    names.sort();
    for id in names {
        backups.push(read_backup(node, &root.join(&id), &id)?);
    }
    Ok(BackupList {
        version: crate::JSON_VERSION,
        kind: "backups".into(),
        node: node.name.clone(),
        backups,
    })
}

fn read_backup(node: &Node, dir: &Path, id: &str) -> Result<BackupInfo> {
    // A backup without a readable record is still listed, from its files.
    let record: Option<BackupRecord> =
        crate::fs::record::load(&dir.join("backup.json"), 1 << 20, "backup record", |e| {
            Error::InvalidInput(e.to_string())
        })
        .unwrap_or(None);
    let mut files = Vec::new();
    match &record {
        Some(r) => {
            for f in &r.files {
                files.push(BackupEntry {
                    name: f.label.clone(),
                    path: f.path.clone(),
                    sha256: f.sha256,
                    attrs: Some(f.attrs.clone()),
                });
            }
        }
        None => {
            // Backups from before backup.json: files named after the profile's key files.
            for spec in &node.profile.keys {
                let p = dir.join(&spec.name);
                if let Ok(bytes) = crate::fs::read_key_file(&p, MAX_ENTRY_LEN) {
                    files.push(BackupEntry {
                        name: spec.name.clone(),
                        path: node.key_path(spec)?,
                        sha256: FileHash::of(bytes.expose_secret()),
                        attrs: None,
                    });
                }
            }
        }
    }
    let mut hashes = Vec::new();
    for f in &files {
        if node.profile.key(&f.name).is_some() {
            if let Ok((plain, _)) = crate::keys::keyset::read_key(&dir.join(&f.name), None) {
                hashes.push((f.name.clone(), FileHash::of(plain.expose_secret())));
            }
        }
    }
    let fingerprint =
        (!hashes.is_empty()).then(|| Fingerprint::of(hashes.iter().map(|(n, h)| (n.as_str(), h))));
    Ok(BackupInfo {
        id: id.to_owned(),
        dir: dir.to_owned(),
        time: record.as_ref().map(|r| r.time),
        command: record.map(|r| r.command),
        fingerprint,
        files,
        kept_by: None,
    })
}

/// What `keys restore` did to one file.
#[derive(Debug, Clone, Serialize)]
pub struct RestoredFile {
    pub path: PathBuf,
    /// `unchanged`, `install` or `replace`.
    pub action: &'static str,
    pub attributes: Option<AttrsApplied>,
}

/// `keys restore --json`.
#[derive(Debug, Clone, Serialize)]
pub struct RestoreReport {
    pub version: u32,
    pub kind: String,
    pub node: String,
    pub restored_from: String,
    pub fingerprint: Option<Fingerprint>,
    pub files: Vec<RestoredFile>,
    /// Backup of what the restore replaced.
    pub backup_dir: Option<PathBuf>,
    pub recovered: Option<Recovery>,
}

/// Puts backup `id` back on the node.
pub fn restore(node: &Node, id: &str, wait: Duration) -> Result<RestoreReport> {
    crate::cluster::check_plain_name(id, "backup")?;
    let (_lock, recovered) = crate::txn::begin(&node.state_dir, &node.name, wait)?;
    let list = list(node)?;
    let Some(backup) = list.backups.into_iter().find(|b| b.id == id) else {
        return Err(Error::InvalidInput(format!(
            "node {} has no backup {id:?} (see keyferry keys restore --list)",
            node.name
        )));
    };
    if backup.files.is_empty() {
        return Err(Error::InvalidInput(format!(
            "backup {id} holds no key files"
        )));
    }
    let mut changes = Vec::new();
    let mut files = Vec::new();
    for f in &backup.files {
        let bytes = crate::fs::read_key_file(&backup.dir.join(&f.name), MAX_ENTRY_LEN)?;
        if !FileHash::of(bytes.expose_secret()).ct_eq(&f.sha256) {
            return Err(Error::IntegrityMismatch(format!(
                "backup file {} no longer holds what was backed up",
                backup.dir.join(&f.name).display()
            )));
        }
        let looked = crate::txn::look(&f.path, MAX_ENTRY_LEN, &[])?;
        let same = matches!(&looked.before, Before::File { sha256, .. } if sha256.ct_eq(&f.sha256));
        if same {
            files.push(RestoredFile {
                path: f.path.clone(),
                action: "unchanged",
                attributes: None,
            });
            continue;
        }
        let (attrs, source) = match (&looked.before, &f.attrs) {
            (Before::File { .. }, _) => (looked.attrs, AttrSource::Replaced),
            (Before::Missing, Some(a)) => (a.clone(), AttrSource::Backup),
            (Before::Missing, None) => (looked.attrs, looked.attr_source),
        };
        files.push(RestoredFile {
            path: f.path.clone(),
            action: if matches!(looked.before, Before::Missing) {
                "install"
            } else {
                "replace"
            },
            attributes: None,
        });
        changes.push(Change {
            path: f.path.clone(),
            label: f.name.clone(),
            before: looked.before,
            content: bytes,
            attrs,
            attr_source: source,
            transient: false,
        });
    }
    let mut backup_dir = None;
    if !changes.is_empty() {
        let ctx = crate::txn::Context {
            state_dir: &node.state_dir,
            backup_root: node.backup_root(),
            node: &node.name,
            command: "keys restore",
        };
        let applied = crate::txn::apply(&ctx, changes, &|| Ok(()))?;
        backup_dir = applied.backup_dir;
        for (path, a) in applied.files {
            if let Some(f) = files.iter_mut().find(|f| f.path == path) {
                f.attributes = Some(a);
            }
        }
    }
    Ok(RestoreReport {
        version: crate::JSON_VERSION,
        kind: "restore".into(),
        node: node.name.clone(),
        restored_from: backup.id,
        fingerprint: backup.fingerprint,
        files,
        backup_dir,
        recovered,
    })
}
