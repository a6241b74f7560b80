//! `dpapi protect` / `dpapi unprotect`: wrap or unwrap one whole key file with machine-scope
//! DPAPI, in place, through the transaction engine (lock, journal, backup, atomic replace
//! that keeps the file's owner and ACL, verify). Windows only; elsewhere a clear error.

use crate::dpapi::classify;
use crate::error::{Error, Result};
use crate::fingerprint::FileHash;
use crate::fs::MAX_KEY_FILE;
use crate::secret::KeyBytes;
use crate::txn::{Before, Change};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// What a protect or unprotect did.
#[derive(Debug, Clone, Serialize)]
pub struct ProtectReport {
    pub version: u32,
    pub kind: String,
    pub path: PathBuf,
    pub backup: PathBuf,
    /// SHA-256 of the plaintext, unchanged by the operation.
    pub sha256: FileHash,
    /// An earlier change a crash interrupted, finished or rolled back first.
    pub recovered: Option<crate::txn::Recovery>,
}

fn require_windows(verb: &str) -> Result<()> {
    if cfg!(windows) {
        Ok(())
    } else {
        Err(Error::Unsupported(format!(
            "dpapi {verb} works only on Windows: DPAPI is a Windows facility"
        )))
    }
}

/// Replaces a raw DPAPI blob file with its plaintext.
pub fn unprotect_file(path: &Path, state_dir: &Path, wait: Duration) -> Result<ProtectReport> {
    require_windows("unprotect")?;
    rewrite(path, state_dir, wait, "dpapi unprotect", |raw| {
        let c = classify(raw.expose_secret());
        if c.single_raw().is_none() {
            return Err(Error::InvalidInput(if c.is_protected() {
                format!("{} holds DPAPI data inside a larger file; keyferry only unwraps files that are one raw blob", path.display())
            } else {
                format!("{} is not DPAPI-protected", path.display())
            }));
        }
        let plain = crate::dpapi::unprotect(raw.expose_secret())
            .map_err(|e| Error::Dpapi(e.to_string()))?;
        let hash = FileHash::of(plain.expose_secret());
        Ok((plain, hash))
    })
}

/// Replaces a plain file with a machine-scope DPAPI blob of it, checked to decrypt back.
pub fn protect_file(path: &Path, state_dir: &Path, wait: Duration) -> Result<ProtectReport> {
    require_windows("protect")?;
    rewrite(path, state_dir, wait, "dpapi protect", |plain| {
        if classify(plain.expose_secret()).is_protected() {
            return Err(Error::InvalidInput(format!(
                "{} is already DPAPI-protected",
                path.display()
            )));
        }
        let blob = crate::os::dpapi_protect(plain.expose_secret(), true)
            .map_err(|e| Error::Dpapi(e.to_string()))?;
        let check = crate::dpapi::unprotect(&blob).map_err(|e| Error::Dpapi(e.to_string()))?;
        if check.expose_secret() != plain.expose_secret() {
            return Err(Error::Dpapi(
                "the protected blob does not decrypt to the file".into(),
            ));
        }
        Ok((KeyBytes::new(blob), FileHash::of(plain.expose_secret())))
    })
}

/// Locks, recovers, reads the file once, computes the new bytes with `make` (which also
/// returns the plaintext's hash), and replaces the file through the engine; the check
/// before commit decrypts what is on disk and compares plaintexts.
fn rewrite(
    path: &Path,
    state_dir: &Path,
    wait: Duration,
    command: &str,
    make: impl Fn(&KeyBytes) -> Result<(KeyBytes, FileHash)>,
) -> Result<ProtectReport> {
    let read = || -> Result<(crate::txn::Looked, KeyBytes, FileHash)> {
        let mut looked = crate::txn::look(path, MAX_KEY_FILE, &[])?;
        let Some(raw) = looked.bytes.take() else {
            return Err(Error::KeyFileMissing {
                path: path.to_owned(),
                remedy: None,
            });
        };
        let (content, plain_hash) = make(&raw)?;
        Ok((looked, content, plain_hash))
    };
    // Refusals first, without the lock: they must leave everything as it was.
    if !crate::txn::journal::Journal::path(state_dir).exists() {
        read()?;
    }
    let (_lock, recovered) = crate::txn::begin(state_dir, "this machine", wait)?;
    let (looked, content, plain_hash) = read()?;
    let ctx = crate::txn::Context {
        state_dir,
        backup_root: state_dir.join("backups").join("dpapi"),
        node: "this machine",
        command,
    };
    let verify = || {
        let (on_disk, _) = super::keyset::read_key(path, None)?;
        if FileHash::of(on_disk.expose_secret()).ct_eq(&plain_hash) {
            Ok(())
        } else {
            Err(Error::IntegrityMismatch(format!(
                "{} does not decrypt to the original",
                path.display()
            )))
        }
    };
    debug_assert!(matches!(looked.before, Before::File { .. }));
    let change = Change {
        path: path.to_owned(),
        label: path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "file".into()),
        before: looked.before,
        content,
        attrs: looked.attrs,
        attr_source: looked.attr_source,
        transient: false,
    };
    let applied = crate::txn::apply(&ctx, vec![change], &verify)?;
    let backup = applied
        .backup_dir
        .map(|d| d.join(path.file_name().unwrap_or_default()))
        .unwrap_or_default();
    Ok(ProtectReport {
        version: crate::JSON_VERSION,
        kind: command.replace(' ', "-"),
        path: path.to_owned(),
        backup,
        sha256: plain_hash,
        recovered,
    })
}
