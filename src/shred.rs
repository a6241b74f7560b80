//! Removing files that held secrets, and saying honestly what that did.
//!
//! Overwriting before unlinking only destroys the old bytes where the file system rewrites
//! blocks in place. On copy-on-write or log-structured file systems, snapshots, network
//! shares and SSDs with wear levelling, the old blocks can survive; there keyferry just
//! removes the file and says "removed", never "overwritten". See `docs/security.md`.

use crate::error::{Error, Result};
use crate::fsx::sync_dir;
use serde::Serialize;
use std::fs;
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// What happened to a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RemovalMethod {
    /// Overwritten with zeros, flushed, then unlinked.
    OverwrittenAndRemoved,
    /// Unlinked only; `reason` says why it was not overwritten.
    Removed,
}

/// One removal, for the report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Removal {
    pub path: PathBuf,
    pub method: RemovalMethod,
    pub reason: Option<String>,
}

impl std::fmt::Display for Removal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.method {
            RemovalMethod::OverwrittenAndRemoved => {
                write!(f, "{}: overwritten and removed", self.path.display())
            }
            RemovalMethod::Removed => {
                write!(f, "{}: removed", self.path.display())?;
                if let Some(r) = &self.reason {
                    write!(f, " (not overwritten: {r})")?;
                }
                Ok(())
            }
        }
    }
}

/// Overwrites (where that means something) and removes a regular file. Symlinks are removed
/// without touching their target; other kinds of file are refused.
pub fn shred_file(path: &Path) -> Result<Removal> {
    let meta = fs::symlink_metadata(path).map_err(|e| Error::io(path, e))?;
    let reason = if meta.file_type().is_symlink() {
        Some("it is a symbolic link; its target was left alone".to_string())
    } else if !meta.is_file() {
        return Err(Error::UnsafeDestination {
            path: path.to_owned(),
            why: "it is not a regular file",
        });
    } else if hard_links(&meta) > 1 {
        Some("the file has other hard links that still name its data".to_string())
    } else {
        match crate::sys::file_system_info(path) {
            Some(fs) if fs.overwrites_in_place => None,
            Some(fs) => Some(format!("{} does not overwrite in place", fs.name)),
            None => Some("the file system type is not known here".to_string()),
        }
    };
    let method = if reason.is_none() {
        overwrite(path, meta.len())?;
        RemovalMethod::OverwrittenAndRemoved
    } else {
        RemovalMethod::Removed
    };
    fs::remove_file(path).map_err(|e| Error::io(path, e))?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        sync_dir(dir)?;
    }
    Ok(Removal {
        path: path.to_owned(),
        method,
        reason,
    })
}

fn overwrite(path: &Path, len: u64) -> Result<()> {
    let mut f = fs::OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(|e| Error::io(path, e))?;
    f.seek(SeekFrom::Start(0)).map_err(|e| Error::io(path, e))?;
    let zeros = [0u8; 64 * 1024];
    let mut left = len;
    while left > 0 {
        let n = left.min(zeros.len() as u64) as usize;
        f.write_all(&zeros[..n]).map_err(|e| Error::io(path, e))?;
        left -= n as u64;
    }
    f.sync_all().map_err(|e| Error::io(path, e))?;
    f.set_len(0).map_err(|e| Error::io(path, e))?;
    f.sync_all().map_err(|e| Error::io(path, e))
}

#[cfg(unix)]
fn hard_links(meta: &fs::Metadata) -> u64 {
    use std::os::unix::fs::MetadataExt;
    meta.nlink()
}

#[cfg(not(unix))]
fn hard_links(_meta: &fs::Metadata) -> u64 {
    1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removes_and_reports_method_matching_file_system() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("s");
        fs::write(&p, vec![9u8; 200_000]).unwrap();
        let r = shred_file(&p).unwrap();
        assert!(!p.exists());
        let expect = crate::sys::file_system_info(d.path()).is_some_and(|f| f.overwrites_in_place);
        assert_eq!(
            r.method == RemovalMethod::OverwrittenAndRemoved,
            expect,
            "{r}"
        );
    }

    #[cfg(unix)]
    #[test]
    fn hard_linked_file_is_removed_not_overwritten() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("s");
        let other = d.path().join("other");
        fs::write(&p, b"data").unwrap();
        fs::hard_link(&p, &other).unwrap();
        let r = shred_file(&p).unwrap();
        assert_eq!(r.method, RemovalMethod::Removed);
        assert_eq!(fs::read(&other).unwrap(), b"data");
    }

    #[test]
    fn refuses_folders() {
        let d = tempfile::tempdir().unwrap();
        assert!(shred_file(d.path()).is_err());
        assert!(d.path().exists());
    }
}
