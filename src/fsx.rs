//! File effects for secrets, in one place: atomic private writes, private folders, and the
//! destination checks that keep keyferry from writing through a symlink.
//!
//! Atomic write = temp file in the destination's own folder (0600 from creation on Unix),
//! write, fsync, rename over the destination, fsync the folder. A crash leaves either the old
//! file or the new one, never half of either.

use crate::error::{Error, Result};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

/// What is at a destination path now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Destination {
    Missing,
    RegularFile,
}

/// Refuses symlinks and anything that is not a regular file, without following links.
pub fn check_destination(path: &Path) -> Result<Destination> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_symlink() => Err(Error::UnsafeDestination {
            path: path.to_owned(),
            why: "it is a symbolic link",
        }),
        Ok(m) if m.is_file() => Ok(Destination::RegularFile),
        Ok(_) => Err(Error::UnsafeDestination {
            path: path.to_owned(),
            why: "it is not a regular file",
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Destination::Missing),
        Err(e) => Err(Error::io(path, e)),
    }
}

fn parent_of(path: &Path) -> Result<&Path> {
    match path.parent() {
        Some(p) if p.as_os_str().is_empty() => Ok(Path::new(".")),
        Some(p) => Ok(p),
        None => Err(Error::InvalidInput(format!(
            "{} has no parent folder",
            path.display()
        ))),
    }
}

fn temp_in(dir: &Path) -> Result<tempfile::NamedTempFile> {
    if !dir.is_dir() {
        return Err(Error::FolderMissing {
            path: dir.to_owned(),
        });
    }
    let mut b = tempfile::Builder::new();
    b.prefix(".keyferry-").suffix(".tmp");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        b.permissions(fs::Permissions::from_mode(0o600));
    }
    let tmp = b.tempfile_in(dir).map_err(|e| Error::io(dir, e))?;
    // Windows: owner-only ACL before a single byte is written (Unix: 0600 at creation above).
    crate::sys::restrict_to_owner(tmp.path()).map_err(|e| Error::io(tmp.path(), e))?;
    Ok(tmp)
}

/// Writes `bytes` to `path` atomically with owner-only permissions, replacing a regular file
/// that is there. Refuses symlinks and non-files at `path`.
pub fn atomic_write(path: &Path, bytes: &[u8]) -> Result<()> {
    check_destination(path)?;
    let dir = parent_of(path)?;
    let mut tmp = temp_in(dir)?;
    tmp.write_all(bytes).map_err(|e| Error::io(tmp.path(), e))?;
    tmp.as_file()
        .sync_all()
        .map_err(|e| Error::io(tmp.path(), e))?;
    // Re-check just before the rename: the window is small, and rename replaces a link
    // rather than following it, so the worst case is a replaced link, never a followed one.
    check_destination(path)?;
    tmp.persist(path).map_err(|e| Error::io(path, e.error))?;
    sync_dir(dir)
}

/// Creates `path` with owner-only permissions; refuses to replace anything unless `force`
/// (and then only a regular file). The content is produced by `fill` into the temp file, so a
/// failure leaves nothing behind.
pub fn write_new_private(
    path: &Path,
    force: bool,
    fill: impl FnOnce(&mut fs::File) -> Result<()>,
) -> Result<()> {
    let existing = check_destination(path)?;
    if existing == Destination::RegularFile && !force {
        return Err(Error::OutputExists {
            path: path.to_owned(),
        });
    }
    let dir = parent_of(path)?;
    let mut tmp = temp_in(dir)?;
    fill(tmp.as_file_mut())?;
    tmp.as_file()
        .sync_all()
        .map_err(|e| Error::io(tmp.path(), e))?;
    if force {
        check_destination(path)?;
        tmp.persist(path).map_err(|e| Error::io(path, e.error))?;
    } else {
        tmp.persist_noclobber(path).map_err(|e| {
            if e.error.kind() == std::io::ErrorKind::AlreadyExists {
                Error::OutputExists {
                    path: path.to_owned(),
                }
            } else {
                Error::io(path, e.error)
            }
        })?;
    }
    sync_dir(dir)
}

/// Creates a folder (and its parents) and makes the last component owner-only (0700).
pub fn create_private_dir(path: &Path) -> Result<()> {
    fs::create_dir_all(path).map_err(|e| Error::io(path, e))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(path, fs::Permissions::from_mode(0o700))
            .map_err(|e| Error::io(path, e))?;
    }
    crate::sys::restrict_to_owner(path).map_err(|e| Error::io(path, e))?;
    Ok(())
}

/// A fresh, owner-only folder `<root>/<stamp>` (or `<stamp>-2`, ... if taken).
pub fn create_unique_private_dir(root: &Path, stamp: &str) -> Result<PathBuf> {
    create_private_dir(root)?;
    for n in 1..1000 {
        let p = if n == 1 {
            root.join(stamp)
        } else {
            root.join(format!("{stamp}-{n}"))
        };
        match fs::create_dir(&p) {
            Ok(()) => {
                create_private_dir(&p)?;
                return Ok(p);
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(Error::io(&p, e)),
        }
    }
    Err(Error::InvalidInput(format!(
        "too many folders named {stamp} in {}",
        root.display()
    )))
}

/// fsync a folder so a rename in it survives a crash (a no-op where the OS has no such call).
pub fn sync_dir(dir: &Path) -> Result<()> {
    #[cfg(unix)]
    {
        fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| Error::io(dir, e))?;
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
    }
    Ok(())
}

/// Unix permission bits of a file, if the platform has them.
pub fn mode(path: &Path) -> Option<u32> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs::metadata(path)
            .ok()
            .map(|m| m.permissions().mode() & 0o7777)
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_replaces_and_is_private() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("k");
        fs::write(&p, b"old").unwrap();
        atomic_write(&p, b"new").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"new");
        #[cfg(unix)]
        assert_eq!(mode(&p), Some(0o600));
        let left: Vec<_> = fs::read_dir(d.path()).unwrap().collect();
        assert_eq!(left.len(), 1, "no temp file left behind");
    }

    #[cfg(windows)]
    #[test]
    fn secret_files_and_folders_get_an_owner_only_acl() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("k");
        atomic_write(&p, b"new").unwrap();
        let sub = d.path().join("backups");
        create_private_dir(&sub).unwrap();
        for path in [&p, &sub] {
            let sddl = crate::sys::dacl_sddl(path).unwrap();
            // Never a broad ACE: Everyone, Users, Authenticated Users, Interactive.
            for broad in [";;;WD)", ";;;BU)", ";;;AU)", ";;;IU)"] {
                assert!(!sddl.contains(broad), "{sddl}");
            }
            assert!(sddl.contains(";;;SY)"), "{sddl}");
            // Wine (detected by its WINEPREFIX, which it passes to Windows programs) keeps
            // only owner and SYSTEM ACEs and drops the protected flag; real Windows keeps the
            // whole descriptor: protected, exactly owner + SYSTEM + Administrators.
            if std::env::var_os("WINEPREFIX").is_none() {
                assert!(sddl.starts_with("D:P"), "{sddl}");
                assert_eq!(sddl.matches("(A;").count(), 3, "{sddl}");
                assert!(sddl.contains(";;;BA)"), "{sddl}");
            }
        }
    }

    #[cfg(unix)]
    #[test]
    fn refuses_symlink_destination_and_leaves_target_alone() {
        let d = tempfile::tempdir().unwrap();
        let target = d.path().join("target");
        fs::write(&target, b"precious").unwrap();
        let link = d.path().join("k");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        assert!(matches!(
            atomic_write(&link, b"x"),
            Err(Error::UnsafeDestination { .. })
        ));
        assert_eq!(fs::read(&target).unwrap(), b"precious");
    }

    #[test]
    fn write_new_private_refuses_existing_without_force() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("b");
        fs::write(&p, b"keep").unwrap();
        let r = write_new_private(&p, false, |f| {
            f.write_all(b"x").map_err(|e| Error::io("t", e))
        });
        assert!(matches!(r, Err(Error::OutputExists { .. })));
        assert_eq!(fs::read(&p).unwrap(), b"keep");
        write_new_private(&p, true, |f| {
            f.write_all(b"x").map_err(|e| Error::io("t", e))
        })
        .unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"x");
    }

    #[test]
    fn missing_folder_is_reported() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("nope").join("k");
        assert!(matches!(
            atomic_write(&p, b"x"),
            Err(Error::FolderMissing { .. })
        ));
    }
}
