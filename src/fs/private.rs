//! What keyferry makes for itself (bundles, backups, ledgers, journals, its lock): private
//! files (0600, owner-only ACL) in folders it creates private (0700). Folders that already
//! exist are used as they are, never re-permissioned: a shared state folder stays shared.
//! A folder keyferry would create but finds already there must be a real folder (not a
//! link) owned by this account or root.

use crate::error::{Error, Result};
use crate::fs::atomic::TempFile;
use crate::fs::attrs::Attrs;
use crate::fs::open::{split, Dir, Entry};
use std::fs::File;
use std::path::{Path, PathBuf};

/// Creates `path` and any missing parents, owner-only. Existing components are left as they
/// are; an existing last component must pass `check_own_folder`.
pub fn create_private_dir(path: &Path) -> Result<()> {
    let mut missing = Vec::new();
    let mut p = path.to_path_buf();
    loop {
        match std::fs::symlink_metadata(&p) {
            Ok(_) => break,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                missing.push(p.clone());
                match p.parent() {
                    Some(parent) if !parent.as_os_str().is_empty() => p = parent.to_owned(),
                    _ => break,
                }
            }
            Err(e) => return Err(Error::io(&p, e)),
        }
    }
    if missing.is_empty() {
        return check_own_folder(path);
    }
    for dir in missing.iter().rev() {
        make_private_dir(dir)?;
    }
    Ok(())
}

/// Makes one new folder, owner-only; an existing one must pass [`check_own_folder`].
fn make_private_dir(path: &Path) -> Result<()> {
    #[cfg(unix)]
    let made = {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new().mode(0o700).create(path)
    };
    #[cfg(not(unix))]
    let made = std::fs::create_dir(path);
    match made {
        Ok(()) => {
            crate::os::restrict_to_owner(path).map_err(|e| Error::io(path, e))?;
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => check_own_folder(path),
        Err(e) => Err(Error::io(path, e)),
    }
}

/// An existing folder keyferry keeps secrets in: a real folder, not a link, owned by this
/// account or root (Unix).
pub fn check_own_folder(path: &Path) -> Result<()> {
    let m = std::fs::symlink_metadata(path).map_err(|e| Error::io(path, e))?;
    if m.file_type().is_symlink() {
        return Err(Error::NotAFile {
            path: path.to_owned(),
            what: "a symbolic link where keyferry keeps its own folder",
        });
    }
    if !m.is_dir() {
        return Err(Error::FolderMissing {
            path: path.to_owned(),
        });
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        let me = rustix::process::geteuid().as_raw();
        if m.uid() != me && m.uid() != 0 {
            return Err(Error::UnsafeDestination {
                path: path.to_owned(),
                why: "the folder belongs to another user",
            });
        }
    }
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
        #[cfg(unix)]
        let made = {
            use std::os::unix::fs::DirBuilderExt;
            std::fs::DirBuilder::new().mode(0o700).create(&p)
        };
        #[cfg(not(unix))]
        let made = std::fs::create_dir(&p);
        match made {
            Ok(()) => {
                crate::os::restrict_to_owner(&p).map_err(|e| Error::io(&p, e))?;
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

/// Writes a private file atomically, replacing a regular file of keyferry's there (a link or
/// anything else at the name is refused).
pub fn write_private(path: &Path, bytes: &[u8]) -> Result<()> {
    let (dir, name) = split(path)?;
    let dir = Dir::open(&dir)?;
    let mut tmp = TempFile::create(&dir)?;
    tmp.finish(&dir, bytes, &Attrs::private())?;
    match dir.entry(&name)? {
        Entry::Missing => tmp.install_new(&dir, &name),
        Entry::File { id, .. } => tmp.replace(&dir, &name, id),
        Entry::Symlink => {
            tmp.discard(&dir);
            Err(Error::NotAFile {
                path: path.to_owned(),
                what: "a symbolic link",
            })
        }
        Entry::Other(what) => {
            tmp.discard(&dir);
            Err(Error::NotAFile {
                path: path.to_owned(),
                what,
            })
        }
    }
}

/// Creates `path` with owner-only permissions; refuses to replace anything unless `force`
/// (and then only a regular file). The content is produced by `fill` into the temp file, so a
/// failure leaves nothing behind. Returns the new file's stamp, read from its handle (what a
/// later removal checks to know it is still the file keyferry made).
pub fn write_new_private(
    path: &Path,
    force: bool,
    fill: impl FnOnce(&mut File) -> Result<()>,
) -> Result<crate::fs::FileStamp> {
    let (dir_path, name) = split(path)?;
    let dir = Dir::open(&dir_path)?;
    let existing = match dir.entry(&name)? {
        Entry::Missing => None,
        Entry::File { id, .. } if force => Some(id),
        Entry::File { .. } => {
            return Err(Error::OutputExists {
                path: path.to_owned(),
            })
        }
        Entry::Symlink => {
            return Err(Error::UnsafeDestination {
                path: path.to_owned(),
                why: "it is a symbolic link",
            })
        }
        Entry::Other(_) => {
            return Err(Error::UnsafeDestination {
                path: path.to_owned(),
                why: "it is not a regular file",
            })
        }
    };
    let mut tmp = TempFile::create(&dir)?;
    if let Err(e) = fill(tmp.file()) {
        tmp.discard(&dir);
        return Err(e);
    }
    // Flushed first: what the file system writes later must not move its time.
    let stamp = match tmp
        .file()
        .sync_all()
        .map_err(|e| Error::io(path, e))
        .and_then(|()| crate::fs::stamp_of(tmp.file(), path))
    {
        Ok(s) => s,
        Err(e) => {
            tmp.discard(&dir);
            return Err(e);
        }
    };
    tmp.seal(&dir, &Attrs::private())?;
    match existing {
        Some(old) => tmp.replace(&dir, &name, old),
        None => tmp.install_new(&dir, &name).map_err(|e| match e {
            Error::Changed { .. } => Error::OutputExists {
                path: path.to_owned(),
            },
            e => e,
        }),
    }?;
    Ok(stamp)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn write_private_replaces_and_is_private() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("k");
        std::fs::write(&p, b"old").unwrap();
        write_private(&p, b"new").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"new");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
        let left: Vec<_> = std::fs::read_dir(d.path()).unwrap().collect();
        assert_eq!(left.len(), 1, "no temp file left behind");
    }

    #[cfg(unix)]
    #[test]
    fn refuses_symlink_destination_and_leaves_target_alone() {
        let d = tempfile::tempdir().unwrap();
        let target = d.path().join("target");
        std::fs::write(&target, b"precious").unwrap();
        let link = d.path().join("k");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        assert!(write_private(&link, b"x").is_err());
        assert_eq!(std::fs::read(&target).unwrap(), b"precious");
    }

    #[test]
    fn write_new_private_refuses_existing_without_force() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("b");
        std::fs::write(&p, b"keep").unwrap();
        let r = write_new_private(&p, false, |f| {
            f.write_all(b"x").map_err(|e| Error::io("t", e))
        });
        assert!(matches!(r, Err(Error::OutputExists { .. })));
        assert_eq!(std::fs::read(&p).unwrap(), b"keep");
        write_new_private(&p, true, |f| {
            f.write_all(b"x").map_err(|e| Error::io("t", e))
        })
        .unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"x");
    }

    #[test]
    fn missing_folder_is_reported() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("nope").join("k");
        assert!(matches!(
            write_private(&p, b"x"),
            Err(Error::FolderMissing { .. })
        ));
    }

    #[cfg(windows)]
    #[test]
    fn keyferrys_own_files_and_folders_get_an_owner_only_acl() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("ledger.json");
        write_private(&p, b"{}").unwrap();
        let sub = d.path().join("backups");
        create_private_dir(&sub).unwrap();
        let me = crate::os::current_user_sid().unwrap();
        for path in [&p, &sub] {
            let sddl = crate::os::dacl_sddl(path).unwrap();
            let foreign = crate::os::foreign_grants(&sddl, &["SY", "BA", me.as_str()]);
            assert!(foreign.is_empty(), "{sddl}");
            assert!(sddl.contains(";;;SY)"), "{sddl}");
            // Wine (detected by its WINEPREFIX, which it passes to Windows programs) keeps
            // only owner and SYSTEM ACEs and drops the protected flag; real Windows keeps the
            // whole descriptor: protected, exactly owner + SYSTEM + Administrators.
            if std::env::var_os("WINEPREFIX").is_none() {
                assert!(sddl.starts_with("D:P"), "{sddl}");
                assert!(sddl.contains(";;;BA)"), "{sddl}");
            }
        }
    }

    /// The field finding: a shared 1777 state folder became 0700 through a link.
    #[cfg(unix)]
    #[test]
    fn existing_folders_keep_their_mode_and_links_are_refused() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        let shared = d.path().join("shared");
        std::fs::create_dir(&shared).unwrap();
        std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o1777)).unwrap();
        create_private_dir(&shared).unwrap();
        let sub = shared.join("backups");
        create_private_dir(&sub).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o7777;
        assert_eq!(
            mode(&shared),
            0o1777,
            "an existing folder is not re-permissioned"
        );
        assert_eq!(mode(&sub), 0o700, "a folder keyferry makes is private");
        let link = d.path().join("state-link");
        std::os::unix::fs::symlink(&shared, &link).unwrap();
        assert!(create_private_dir(&link).is_err());
        assert_eq!(mode(&shared), 0o1777);
    }
}
