//! `dpapi protect` / `dpapi unprotect`: wrap or unwrap one whole key file with machine-scope
//! DPAPI, in place, atomically, after a backup. Windows only; elsewhere a clear error.

use crate::dpapi::classify;
use crate::error::{Error, Result};
use crate::fingerprint::FileHash;
use crate::fsx::{atomic_write, create_unique_private_dir, write_new_private};
use crate::manifest::MAX_ENTRY_LEN;
use crate::secret::read_key_file;
use crate::time::Timestamp;
use serde::Serialize;
use std::io::Write;
use std::path::{Path, PathBuf};

/// What a protect or unprotect did.
#[derive(Debug, Clone, Serialize)]
pub struct ProtectReport {
    pub version: u32,
    pub kind: String,
    pub path: PathBuf,
    pub backup: PathBuf,
    /// SHA-256 of the plaintext, unchanged by the operation.
    pub sha256: FileHash,
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

fn backup(path: &Path, state_dir: &Path, bytes: &[u8]) -> Result<PathBuf> {
    let name = path
        .file_name()
        .ok_or_else(|| Error::InvalidInput(format!("{} is not a file", path.display())))?;
    let dir = create_unique_private_dir(
        &state_dir.join("backups").join("dpapi"),
        &Timestamp::now().compact(),
    )?;
    let b = dir.join(name);
    write_new_private(&b, false, |f| {
        f.write_all(bytes).map_err(|e| Error::io(&b, e))
    })?;
    Ok(b)
}

/// Replaces a raw DPAPI blob file with its plaintext.
pub fn unprotect_file(path: &Path, state_dir: &Path) -> Result<ProtectReport> {
    require_windows("unprotect")?;
    crate::fsx::check_destination(path)?;
    let raw = read_key_file(path, MAX_ENTRY_LEN)?;
    let c = classify(raw.expose_secret());
    if c.single_raw().is_none() {
        return Err(Error::InvalidInput(if c.is_protected() {
            format!("{} holds DPAPI data inside a larger file; keyferry only unwraps files that are one raw blob", path.display())
        } else {
            format!("{} is not DPAPI-protected", path.display())
        }));
    }
    let plain = crate::sys::dpapi_unprotect(raw.expose_secret())
        .map_err(|e| Error::Dpapi(e.to_string()))?;
    let backup = backup(path, state_dir, raw.expose_secret())?;
    atomic_write(path, plain.expose_secret())?;
    Ok(ProtectReport {
        version: crate::JSON_VERSION,
        kind: "dpapi-unprotect".into(),
        path: path.to_owned(),
        backup,
        sha256: FileHash::of(plain.expose_secret()),
    })
}

/// Replaces a plain file with a machine-scope DPAPI blob of it, and checks it decrypts back.
pub fn protect_file(path: &Path, state_dir: &Path) -> Result<ProtectReport> {
    require_windows("protect")?;
    crate::fsx::check_destination(path)?;
    let plain = read_key_file(path, MAX_ENTRY_LEN)?;
    if classify(plain.expose_secret()).is_protected() {
        return Err(Error::InvalidInput(format!(
            "{} is already DPAPI-protected",
            path.display()
        )));
    }
    let blob = crate::sys::dpapi_protect(plain.expose_secret(), true)
        .map_err(|e| Error::Dpapi(e.to_string()))?;
    let check = crate::sys::dpapi_unprotect(&blob).map_err(|e| Error::Dpapi(e.to_string()))?;
    if check.expose_secret() != plain.expose_secret() {
        return Err(Error::Dpapi(
            "the protected blob does not decrypt to the file".into(),
        ));
    }
    let backup = backup(path, state_dir, plain.expose_secret())?;
    atomic_write(path, &blob)?;
    Ok(ProtectReport {
        version: crate::JSON_VERSION,
        kind: "dpapi-protect".into(),
        path: path.to_owned(),
        backup,
        sha256: FileHash::of(plain.expose_secret()),
    })
}
