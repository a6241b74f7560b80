//! Removing files that held secrets, and saying honestly what that did.
//!
//! The file is opened once, never through a link, and checked on its handle (a regular file,
//! the one the name points to, one link); the zeros go through that handle, and the name is
//! removed relative to the pinned folder only if it still names that file. A user who can
//! write the folder and swaps the file for a link between those steps gets the link left in
//! place and an error, never a truncated target.
//!
//! Overwriting only destroys the old bytes where the file system rewrites blocks in place.
//! On copy-on-write or log-structured file systems, snapshots, network shares and SSDs with
//! wear levelling the old blocks can survive; there keyferry just removes the file and says
//! "removed", never "overwritten". See `docs/security.md`.

use crate::error::{Error, Result};
use crate::fs::open::{split, Dir, Entry, Opened};
use serde::Serialize;
use std::ffi::OsStr;
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// What happened to a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RemovalMethod {
    /// Overwritten with zeros, flushed, then unlinked.
    OverwrittenAndRemoved,
    /// Unlinked only; `reason` says why it was not overwritten.
    Removed,
}

/// One removal, for the report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Removal {
    /// The file removed.
    pub path: PathBuf,
    /// How it was removed.
    pub method: RemovalMethod,
    /// Why not by overwriting, where it was not.
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

/// Overwrites (where that means something) and removes a regular file. A symbolic link is
/// removed without touching its target; folders, FIFOs and devices are refused.
pub fn shred_file(path: &Path) -> Result<Removal> {
    let (dir, name) = split(path)?;
    let dir = Dir::open(&dir)?;
    match dir.entry(&name)? {
        Entry::Missing => Err(Error::missing(path, "file to remove")),
        Entry::Symlink => {
            dir.unlink(&name)?;
            dir.sync()?;
            Ok(Removal {
                path: path.to_owned(),
                method: RemovalMethod::Removed,
                reason: Some("it is a symbolic link; its target was left alone".into()),
            })
        }
        Entry::Other(what) => Err(Error::NotAFile {
            path: path.to_owned(),
            what,
        }),
        Entry::File { .. } => match dir.open_file(&name, true)? {
            Some(opened) => shred_opened(&dir, &name, opened),
            None => Err(Error::Changed {
                path: path.to_owned(),
            }),
        },
    }
}

/// Shreds a file already opened (for writing) through [`Dir::open_file`].
pub fn shred_opened(dir: &Dir, name: &OsStr, mut opened: Opened) -> Result<Removal> {
    crate::failpoint::hit("shred:after-open");
    let path = dir.join(name);
    let reason = if opened.meta.links > 1 {
        Some("the file has other hard links that still name its data".to_string())
    } else {
        match crate::os::file_system_info_of(&opened.file) {
            Some(fs) if fs.overwrites_in_place => None,
            Some(fs) => Some(format!("{} does not overwrite in place", fs.name)),
            None => Some("the file system type is not known here".to_string()),
        }
    };
    if reason.is_none() {
        overwrite(&mut opened)?;
    }
    let method = if reason.is_none() {
        RemovalMethod::OverwrittenAndRemoved
    } else {
        RemovalMethod::Removed
    };
    #[cfg(windows)]
    {
        // The handle was opened with DELETE access on the file itself (never a link's
        // target): removal needs no second lookup of the name.
        crate::os::delete_by_handle(&opened.file).map_err(|e| Error::io(&path, e))?;
        drop(opened);
    }
    #[cfg(not(windows))]
    {
        if !dir.remove_if_same(name, opened.meta.id)? {
            return Err(Error::Changed { path });
        }
    }
    dir.sync()?;
    Ok(Removal {
        path,
        method,
        reason,
    })
}

fn overwrite(opened: &mut Opened) -> Result<()> {
    let path = opened.path.clone();
    let len = opened.meta.len;
    let f = &mut opened.file;
    f.seek(SeekFrom::Start(0))
        .map_err(|e| Error::io(&path, e))?;
    let zeros = [0u8; 64 * 1024];
    let mut left = len;
    while left > 0 {
        let n = left.min(zeros.len() as u64) as usize;
        f.write_all(&zeros[..n]).map_err(|e| Error::io(&path, e))?;
        left -= n as u64;
    }
    f.sync_all().map_err(|e| Error::io(&path, e))?;
    f.set_len(0).map_err(|e| Error::io(&path, e))?;
    f.sync_all().map_err(|e| Error::io(&path, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    #[test]
    fn removes_and_reports_method_matching_file_system() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("s");
        fs::write(&p, vec![9u8; 200_000]).unwrap();
        let r = shred_file(&p).unwrap();
        assert!(!p.exists());
        let expect = crate::os::file_system_info(d.path()).is_some_and(|f| f.overwrites_in_place);
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
        fs::create_dir(d.path().join("sub")).unwrap();
        assert!(shred_file(&d.path().join("sub")).is_err());
        assert!(d.path().join("sub").exists());
    }

    /// The race from the field: between keyferry's look at the bundle and its use, another
    /// user swaps the bundle for a link to a file they cannot write. Made deterministic with
    /// the test hook at the point where the old code re-opened the name.
    #[cfg(unix)]
    #[test]
    fn a_file_swapped_for_a_link_after_the_open_leaves_the_target_alone() {
        let d = tempfile::tempdir().unwrap();
        let victim = d.path().join("victim");
        fs::write(&victim, b"root-owned and precious").unwrap();
        let p = d.path().join("keys.kfb");
        fs::write(&p, b"bundle bytes").unwrap();
        let (pp, vv) = (p.clone(), victim.clone());
        let _hook = crate::failpoint::on("shred:after-open", move || {
            fs::rename(&pp, pp.with_extension("moved")).unwrap();
            std::os::unix::fs::symlink(&vv, &pp).unwrap();
        });
        let e = shred_file(&p).unwrap_err();
        assert!(matches!(e, Error::Changed { .. }), "{e}");
        assert_eq!(fs::read(&victim).unwrap(), b"root-owned and precious");
        assert!(fs::symlink_metadata(&p).unwrap().file_type().is_symlink());
    }

    #[cfg(unix)]
    #[test]
    fn a_link_to_a_device_is_removed_not_followed() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("keys.kfb");
        std::os::unix::fs::symlink("/dev/null", &p).unwrap();
        let r = shred_file(&p).unwrap();
        assert_eq!(r.method, RemovalMethod::Removed);
        assert!(Path::new("/dev/null").exists());
        assert!(matches!(
            shred_file(Path::new("/dev/null")),
            Err(Error::NotAFile { .. })
        ));
    }
}
