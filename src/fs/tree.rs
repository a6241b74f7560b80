//! A folder tree worked on through handles: each subfolder is opened from its parent's
//! handle without following a link, and files are opened, created, linked, moved and removed
//! relative to their folder's handle. A folder somebody swaps for a link after the tree was
//! listed is refused ([`Error::Changed`]), never followed out of the tree. Handles are kept
//! (a bounded number) so a tree of thousands of files costs one open per folder, not one per
//! file.

use crate::error::{Error, Result};
use crate::fs::{Dir, Entry, Opened};
use std::collections::HashMap;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// Folder handles kept open per tree; beyond this the cache starts over (a handle is an open
/// file, and the process has a limit on those).
const MAX_HANDLES: usize = 256;

/// A tree rooted at a folder, its subfolders opened through handles.
pub struct Tree {
    root: Arc<Dir>,
    dirs: Mutex<HashMap<String, Arc<Dir>>>,
}

impl Tree {
    /// Opens the tree's root (links in the root's own path are followed, as [`Dir::open`]:
    /// they belong to whoever named the folder).
    pub fn open(root: &Path) -> Result<Tree> {
        Ok(Tree {
            root: Arc::new(Dir::open(root)?),
            dirs: Mutex::new(HashMap::new()),
        })
    }

    pub fn path(&self) -> &Path {
        self.root.path()
    }

    /// The path of `rel` (`/`-separated), for messages.
    pub fn join(&self, rel: &str) -> PathBuf {
        if rel.is_empty() {
            self.path().to_owned()
        } else {
            self.path().join(rel)
        }
    }

    /// The folder `rel` (`""`: the root), opened component by component without following
    /// links. `Ok(None)` if it does not exist.
    pub fn dir(&self, rel: &str) -> Result<Option<Arc<Dir>>> {
        if rel.is_empty() {
            return Ok(Some(self.root.clone()));
        }
        if let Some(d) = self.dirs.lock().expect("not poisoned").get(rel) {
            return Ok(Some(d.clone()));
        }
        let (parent, name) = split_rel(rel)?;
        let Some(p) = self.dir(parent)? else {
            return Ok(None);
        };
        let Some(d) = p.sub(OsStr::new(name))? else {
            return Ok(None);
        };
        let d = Arc::new(d);
        let mut dirs = self.dirs.lock().expect("not poisoned");
        if dirs.len() >= MAX_HANDLES {
            dirs.clear();
        }
        dirs.insert(rel.to_owned(), d.clone());
        Ok(Some(d))
    }

    /// The folder holding `rel` and `rel`'s last component; `Ok(None)` if that folder does
    /// not exist.
    pub fn parent<'r>(&self, rel: &'r str) -> Result<Option<(Arc<Dir>, &'r OsStr)>> {
        let (parent, name) = split_rel(rel)?;
        Ok(self.dir(parent)?.map(|d| (d, OsStr::new(name))))
    }

    /// The folder holding `rel`, its missing folders created with `mode`.
    pub fn parent_made<'r>(&self, rel: &'r str, mode: u32) -> Result<(Arc<Dir>, &'r OsStr)> {
        let (parent, name) = split_rel(rel)?;
        Ok((self.dir_made(parent, mode)?, OsStr::new(name)))
    }

    /// The folder `rel`, it and its missing parents created with `mode`.
    pub fn dir_made(&self, rel: &str, mode: u32) -> Result<Arc<Dir>> {
        if let Some(d) = self.dir(rel)? {
            return Ok(d);
        }
        let (parent, name) = split_rel(rel)?;
        self.dir_made(parent, mode)?.mkdir(OsStr::new(name), mode)?;
        self.dir(rel)?.ok_or_else(|| Error::Changed {
            path: self.join(rel),
        })
    }

    /// Opens the regular file `rel` through its folder's handle, no-follow; `Ok(None)` if it
    /// (or its folder) is not there. See [`Dir::open_handle`].
    pub fn open_file(&self, rel: &str) -> Result<Option<Opened>> {
        match self.parent(rel)? {
            Some((d, name)) => d.open_handle(name, false),
            None => Ok(None),
        }
    }

    /// What `rel` is, not followed.
    pub fn entry(&self, rel: &str) -> Result<Entry> {
        match self.parent(rel)? {
            Some((d, name)) => d.entry(name),
            None => Ok(Entry::Missing),
        }
    }

    /// Removes the file or link `rel` if it is there (never a folder, never followed).
    pub fn remove_file(&self, rel: &str) -> Result<()> {
        if let Some((d, name)) = self.parent(rel)? {
            if matches!(d.entry(name)?, Entry::File { .. } | Entry::Symlink) {
                d.unlink(name)?;
            }
        }
        Ok(())
    }

    /// Removes the folder `rel` if it is there and empty (never followed); false if not.
    pub fn rmdir(&self, rel: &str) -> Result<bool> {
        let removed = match self.parent(rel)? {
            Some((d, name)) => d.rmdir(name)?,
            None => false,
        };
        self.forget(rel);
        Ok(removed)
    }

    /// Forgets the handles of `rel` and everything under it (after it was moved or removed).
    pub fn forget(&self, rel: &str) {
        let under = format!("{rel}/");
        self.dirs
            .lock()
            .expect("not poisoned")
            .retain(|k, _| k != rel && !k.starts_with(&under));
    }
}

/// Removes the folder `root` and everything in it: files spread over `threads` threads,
/// each removed through its folder's handle (a link is removed, never followed), then the
/// folders deepest first. Something that is neither file, link nor folder (a socket) makes
/// its folder not empty, and the removal fails there.
pub fn remove_tree(root: &Path, threads: usize) -> Result<()> {
    let (mut files, mut dirs) = (Vec::new(), Vec::new());
    crate::fs::walk(root, |rel, _, ft| {
        if ft.is_dir() {
            dirs.push(rel.to_owned());
            Ok(true)
        } else {
            files.push(rel.to_owned());
            Ok(false)
        }
    })?;
    let tree = Tree::open(root)?;
    let order: Vec<usize> = (0..files.len()).collect();
    crate::parallel::try_map(&order, threads, || (), |_, i| tree.remove_file(&files[i]))?;
    dirs.sort_by_key(|d| std::cmp::Reverse(d.matches('/').count()));
    let not_empty = |p: PathBuf| {
        Error::io(
            &p,
            std::io::Error::other("not empty after its contents were removed"),
        )
    };
    for d in &dirs {
        if !tree.rmdir(d)? {
            return Err(not_empty(tree.join(d)));
        }
    }
    drop(tree);
    let (parent, name) = crate::fs::split(root)?;
    if !Dir::open(&parent)?.rmdir(&name)? {
        return Err(not_empty(root.to_owned()));
    }
    Ok(())
}

/// Splits a relative path into its folder (`""` for the root) and last component; every
/// component must be a plain name (on Windows without a `\`, a separator there).
pub fn split_rel(rel: &str) -> Result<(&str, &str)> {
    let (parent, name) = rel.rsplit_once('/').unwrap_or(("", rel));
    if rel
        .split('/')
        .any(|c| c.is_empty() || c == "." || c == "..")
        || (cfg!(windows) && rel.contains('\\'))
    {
        return Err(Error::InvalidInput(format!(
            "{rel:?} is not a relative path of plain names"
        )));
    }
    Ok((parent, name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tree_is_removed_without_following_links_out_of_it() {
        let d = tempfile::tempdir().unwrap();
        let outside = d.path().join("outside");
        std::fs::create_dir(&outside).unwrap();
        std::fs::write(outside.join("keep"), b"k").unwrap();
        let root = d.path().join("data.keyferry-old");
        for sub in ["base/1", "base/2", "pg_wal/archive_status", "global"] {
            std::fs::create_dir_all(root.join(sub)).unwrap();
        }
        for (i, f) in [
            "base/1/1259",
            "base/2/16397",
            "global/pg_control",
            "PG_VERSION",
        ]
        .iter()
        .enumerate()
        {
            std::fs::write(root.join(f), vec![i as u8; 1000 * i]).unwrap();
        }
        #[cfg(unix)]
        std::os::unix::fs::symlink(&outside, root.join("pg_tblspc_link")).unwrap();
        remove_tree(&root, 4).unwrap();
        assert!(!root.exists());
        assert_eq!(std::fs::read(outside.join("keep")).unwrap(), b"k");
    }

    #[test]
    fn folders_are_opened_without_following_links() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("t/a/b")).unwrap();
        std::fs::write(d.path().join("t/a/b/f"), b"inside").unwrap();
        std::fs::create_dir_all(d.path().join("outside")).unwrap();
        std::fs::write(d.path().join("outside/f"), b"outside").unwrap();
        let t = Tree::open(&d.path().join("t")).unwrap();
        let mut got = Vec::new();
        std::io::Read::read_to_end(&mut t.open_file("a/b/f").unwrap().unwrap().file, &mut got)
            .unwrap();
        assert_eq!(got, b"inside");
        assert!(t.open_file("a/missing/f").unwrap().is_none());
        assert!(t.dir("a/b/f").is_err(), "a file is not a folder");
        for bad in ["", "a//f", "a/../f", "./f", "a/"] {
            assert!(split_rel(bad).is_err() || bad.is_empty(), "{bad}");
        }
        #[cfg(unix)]
        {
            std::os::unix::fs::symlink(d.path().join("outside"), d.path().join("t/link")).unwrap();
            let t = Tree::open(&d.path().join("t")).unwrap();
            assert!(matches!(t.open_file("link/f"), Err(Error::Changed { .. })));
            // A folder swapped for a link after its handle was taken: the handle still holds
            // the folder that was listed; a new lookup refuses the link.
            let a = t.dir("a").unwrap().unwrap();
            std::fs::rename(d.path().join("t/a"), d.path().join("t/a-moved")).unwrap();
            std::os::unix::fs::symlink(d.path().join("outside"), d.path().join("t/a")).unwrap();
            assert!(a.open_handle(OsStr::new("f"), false).unwrap().is_none());
            t.forget("a");
            assert!(matches!(t.open_file("a/f"), Err(Error::Changed { .. })));
        }
    }
}
