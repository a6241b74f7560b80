//! `keys cleanup`: remove what a key transfer leaves behind on a node: bundles on the ledger
//! and the profile's temporary vendor export files (`keys.exp`).

use crate::cluster::Node;
use crate::error::Result;
use crate::ledger::Ledger;
use crate::shred::{shred_file, Removal};
use serde::Serialize;
use std::path::PathBuf;

/// What cleanup did or, with `dry_run`, would do.
#[derive(Debug, Clone, Serialize)]
pub struct CleanupReport {
    pub version: u32,
    pub kind: String,
    pub node: String,
    pub dry_run: bool,
    /// Files removed (empty on a dry run).
    pub removed: Vec<Removal>,
    /// Files that would be removed (dry run) .
    pub would_remove: Vec<PathBuf>,
    /// Ledger entries whose file was already gone.
    pub already_gone: Vec<PathBuf>,
    /// Ledger entries left alone because the file there is no longer an age file.
    pub left_alone: Vec<PathBuf>,
}

/// Whether a file still looks like an age bundle (armored or binary), so cleanup never
/// removes something else that took a recorded path.
fn looks_like_bundle(path: &std::path::Path) -> bool {
    use std::io::Read;
    let mut head = [0u8; 34];
    let n = std::fs::File::open(path)
        .and_then(|mut f| f.read(&mut head))
        .unwrap_or(0);
    let head = &head[..n];
    head.starts_with(b"age-encryption.org/")
        || head.starts_with(b"-----BEGIN AGE ENCRYPTED FILE-----")
}

pub fn cleanup(node: &Node, dry_run: bool) -> Result<CleanupReport> {
    let ledger = Ledger::at(&node.state_dir);
    let entries = ledger.entries()?;
    let mut report = CleanupReport {
        version: crate::JSON_VERSION,
        kind: "cleanup".into(),
        node: node.name.clone(),
        dry_run,
        removed: Vec::new(),
        would_remove: Vec::new(),
        already_gone: Vec::new(),
        left_alone: Vec::new(),
    };
    let mut targets = Vec::new();
    for e in &entries {
        match std::fs::symlink_metadata(&e.path) {
            Err(_) => report.already_gone.push(e.path.clone()),
            Ok(_) if !looks_like_bundle(&e.path) => report.left_alone.push(e.path.clone()),
            Ok(_) => targets.push(e.path.clone()),
        }
    }
    for spec in node.profile.keys.iter().filter(|k| k.transient) {
        if let Ok(path) = node.key_path(spec) {
            if std::fs::symlink_metadata(&path).is_ok() {
                targets.push(path);
            }
        }
    }
    if dry_run {
        report.would_remove = targets;
        return Ok(report);
    }
    for t in targets {
        report.removed.push(shred_file(&t)?);
    }
    if !entries.is_empty() {
        let kept = entries
            .into_iter()
            .filter(|e| report.left_alone.contains(&e.path))
            .collect();
        ledger.save(kept)?;
    }
    Ok(report)
}
