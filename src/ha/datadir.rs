//! A PostgreSQL data folder and the folders keyferry keeps beside it (`<data>.keyferry-new`,
//! `-old-<time>`, `-failed`), reached only through the handle of the folder that holds them.
//!
//! The PostgreSQL account owns that parent on every packaging (`/var/lib/postgresql/15` on
//! Debian, `/var/lib/pgsql/15` on RHEL, the data folder's parent on Windows installs) and can
//! rename, remove or replace anything in it at any moment, while keyferry runs as root. So
//! every name beside or inside the data folder is opened once, relative to the pinned
//! parent, never through a link; a folder whose owner is not the data folder's owner is
//! refused before root writes into it; and removals go through the same handles
//! ([`crate::fs::tree::remove_tree_in`]). The service account can then only ever reach its
//! own files.

use crate::error::{Error, Result};
use crate::fs::{Dir, Entry};
use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};

/// The data folder's parent, pinned, and the data folder's name in it.
pub struct DataDir {
    path: PathBuf,
    parent: Dir,
    name: OsString,
    /// The data folder's Unix owner when it was pinned (every folder keyferry writes into
    /// beside it must have the same one).
    #[cfg(unix)]
    owner: Option<u32>,
}

impl std::fmt::Debug for DataDir {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DataDir({})", self.path.display())
    }
}

impl DataDir {
    /// Pins the folder that holds `data` (links in that folder's own path are followed: they
    /// belong to whoever configured the path) and notes the data folder's owner.
    pub fn open(data: &Path) -> Result<DataDir> {
        let (parent, name) = crate::fs::split(data)?;
        let parent = Dir::open(&parent)?;
        #[cfg(unix)]
        let owner = match parent.sub(&name)? {
            Some(d) => Some(d.unix_owner()?.0),
            None => None,
        };
        Ok(DataDir {
            path: data.to_owned(),
            parent,
            name,
            #[cfg(unix)]
            owner,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn parent(&self) -> &Dir {
        &self.parent
    }

    /// The data folder's own name.
    pub fn name(&self) -> &OsStr {
        &self.name
    }

    /// The name of `<data><suffix>`.
    pub fn sibling(&self, suffix: &str) -> OsString {
        let mut n = self.name.clone();
        n.push(suffix);
        n
    }

    /// The path of `name` in the parent, for messages.
    pub fn join(&self, name: &OsStr) -> PathBuf {
        self.parent.join(name)
    }

    /// Whether anything (a link included, never followed) is at `name`.
    pub fn present(&self, name: &OsStr) -> Result<bool> {
        Ok(!matches!(self.parent.entry(name)?, Entry::Missing))
    }

    /// Opens the folder `name` (the data folder or a sibling) without following a link and
    /// checks that its owner is the data folder's: a link, or a folder of another owner, is
    /// [`Error::Changed`]; nothing there is [`Error::FolderMissing`].
    pub fn folder(&self, name: &OsStr) -> Result<Dir> {
        let d = self.parent.sub(name)?.ok_or_else(|| Error::FolderMissing {
            path: self.join(name),
        })?;
        #[cfg(unix)]
        {
            let (uid, _, _) = d.unix_owner()?;
            if self.owner.is_some_and(|o| o != uid) {
                return Err(Error::Changed {
                    path: self.join(name),
                });
            }
        }
        Ok(d)
    }

    /// The data folder itself, opened as [`DataDir::folder`] does.
    pub fn data(&self) -> Result<Dir> {
        self.folder(&self.name)
    }

    /// Removes the folder `name` and everything in it through handles; nothing there is fine.
    pub fn remove(&self, name: &OsStr) -> Result<()> {
        crate::fs::tree::remove_tree_in(&self.parent, name, crate::parallel::threads(4))
    }

    /// Renames `from` to `to` in the parent, through its handle.
    pub fn rename(&self, from: &OsStr, to: &OsStr) -> Result<()> {
        self.parent.rename(from, to)
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    #[test]
    fn a_link_or_a_stranger_beside_the_data_folder_is_never_entered() {
        let d = tempfile::tempdir().unwrap();
        let data = d.path().join("data");
        std::fs::create_dir(&data).unwrap();
        let victim = d.path().join("victim");
        std::fs::create_dir(&victim).unwrap();
        let dd = DataDir::open(&data).unwrap();
        std::os::unix::fs::symlink(&victim, d.path().join("data.keyferry-new")).unwrap();
        let new = dd.sibling(".keyferry-new");
        assert!(dd.present(&new).unwrap());
        assert!(matches!(dd.folder(&new), Err(Error::Changed { .. })));
        assert!(matches!(dd.remove(&new), Err(Error::Changed { .. })));
        assert!(victim.exists());
        assert!(matches!(
            dd.folder(OsStr::new("absent")),
            Err(Error::FolderMissing { .. })
        ));
        assert!(dd.data().is_ok());
    }
}
