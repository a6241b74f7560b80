//! A folder tree worked on through handles: each subfolder is opened from its parent's
//! handle without following a link, and files are opened, created, linked, moved and removed
//! relative to their folder's handle. A folder somebody swaps for a link after the tree was
//! listed is refused ([`Error::Changed`]), never followed out of the tree. Handles are kept
//! (a bounded number) so a tree of thousands of files costs one open per folder, not one per
//! file.

use crate::error::{Error, Result};
use crate::fs::{Dir, Entry, Opened};
use std::borrow::Cow;
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

    /// The root's path, for messages.
    pub fn path(&self) -> &Path {
        self.root.path()
    }

    /// The path of `rel` (`/`-separated), for messages.
    pub fn join(&self, rel: &str) -> PathBuf {
        if rel.is_empty() {
            self.path().to_owned()
        } else {
            self.path().join(crate::fs::name::to_path(rel))
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
        let Some(d) = p.sub(&crate::fs::name::to_os(name))? else {
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
    pub fn parent<'r>(&self, rel: &'r str) -> Result<Option<(Arc<Dir>, Cow<'r, OsStr>)>> {
        let (parent, name) = split_rel(rel)?;
        Ok(self.dir(parent)?.map(|d| (d, crate::fs::name::to_os(name))))
    }

    /// The folder holding `rel`, its missing folders created with `mode`.
    pub fn parent_made<'r>(&self, rel: &'r str, mode: u32) -> Result<(Arc<Dir>, Cow<'r, OsStr>)> {
        let (parent, name) = split_rel(rel)?;
        Ok((self.dir_made(parent, mode)?, crate::fs::name::to_os(name)))
    }

    /// The folder `rel`, it and its missing parents created with `mode`.
    pub fn dir_made(&self, rel: &str, mode: u32) -> Result<Arc<Dir>> {
        if let Some(d) = self.dir(rel)? {
            return Ok(d);
        }
        let (parent, name) = split_rel(rel)?;
        self.dir_made(parent, mode)?
            .mkdir(&crate::fs::name::to_os(name), mode)?;
        self.dir(rel)?.ok_or_else(|| Error::Changed {
            path: self.join(rel),
        })
    }

    /// Opens the regular file `rel` through its folder's handle, no-follow; `Ok(None)` if it
    /// (or its folder) is not there. See [`Dir::open_handle`].
    pub fn open_file(&self, rel: &str) -> Result<Option<Opened>> {
        match self.parent(rel)? {
            Some((d, name)) => d.open_handle(&name, false),
            None => Ok(None),
        }
    }

    /// What `rel` is, not followed.
    pub fn entry(&self, rel: &str) -> Result<Entry> {
        match self.parent(rel)? {
            Some((d, name)) => d.entry(&name),
            None => Ok(Entry::Missing),
        }
    }

    /// Removes the file or link `rel` if it is there (never a folder, never followed).
    pub fn remove_file(&self, rel: &str) -> Result<()> {
        if let Some((d, name)) = self.parent(rel)? {
            if matches!(d.entry(&name)?, Entry::File { .. } | Entry::Symlink) {
                d.unlink(&name)?;
            }
        }
        Ok(())
    }

    /// Removes the folder `rel` if it is there and empty (never followed); false if not.
    pub fn rmdir(&self, rel: &str) -> Result<bool> {
        // Its handle goes first: on Windows a folder this process holds cannot be removed.
        self.forget(rel);
        match self.parent(rel)? {
            Some((d, name)) => d.rmdir(&name),
            None => Ok(false),
        }
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

/// Removes the folder `root` and everything in it. The folder holding `root` is opened
/// by path (links in that path belong to whoever named it); `root` itself and everything
/// below it only through handles (see [`remove_tree_in`]).
#[cfg(test)]
pub fn remove_tree(root: &Path, threads: usize) -> Result<()> {
    let (parent, name) = crate::fs::split(root)?;
    remove_tree_in(&Dir::open(&parent)?, &name, threads)
}

/// Folder depth beyond which a removal stops (a loop of bind mounts, or a hostile tree).
const MAX_DEPTH: usize = 256;

/// Removes the folder `name` in `parent` and everything in it. `name` is opened once,
/// relative to the pinned parent and without following a link (a link there is refused
/// with [`Error::Changed`], never emptied: whoever can write the parent, such as the
/// PostgreSQL account beside its data folder, cannot point root's removal elsewhere); each
/// subfolder likewise from its own parent's handle, depth first, so at most one handle per
/// level is open. A folder's files are removed over `threads` threads, each through the
/// folder's handle (a link is removed, never followed; a socket or FIFO is removed too).
/// Nothing there is not an error.
pub fn remove_tree_in(parent: &Dir, name: &OsStr, threads: usize) -> Result<()> {
    crate::failpoint::hit("remove-tree-open");
    let Some(root) = parent.sub(name)? else {
        return Ok(());
    };
    empty_folder(&root, threads, 0)?;
    drop(root);
    if !parent.rmdir(name)? && !matches!(parent.entry(name)?, Entry::Missing) {
        return Err(not_empty(parent.join(name)));
    }
    Ok(())
}

fn not_empty(p: PathBuf) -> Error {
    Error::io(
        &p,
        std::io::Error::other("not empty after its contents were removed"),
    )
}

fn empty_folder(d: &Dir, threads: usize, depth: usize) -> Result<()> {
    if depth > MAX_DEPTH {
        return Err(Error::io(
            d.path(),
            std::io::Error::other(format!("more than {MAX_DEPTH} folders deep")),
        ));
    }
    let mut files = Vec::new();
    for n in d.names()? {
        match d.entry(&n)? {
            Entry::Missing => {}
            Entry::Other(k) if k.ends_with("folder") => {
                if let Some(sub) = d.sub(&n)? {
                    empty_folder(&sub, threads, depth + 1)?;
                }
                if !d.rmdir(&n)? {
                    return Err(not_empty(d.join(&n)));
                }
            }
            _ => files.push(n),
        }
    }
    let order: Vec<usize> = (0..files.len()).collect();
    crate::parallel::try_map(&order, threads, || (), |_, i| d.unlink(&files[i]))?;
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

    #[cfg(unix)]
    #[test]
    fn a_link_at_the_root_of_a_removal_is_refused_and_its_target_kept() {
        let d = tempfile::tempdir().unwrap();
        let victim = d.path().join("etc");
        std::fs::create_dir(&victim).unwrap();
        std::fs::write(victim.join("passwd"), b"root").unwrap();
        let old = d.path().join("data.keyferry-old");
        std::os::unix::fs::symlink(&victim, &old).unwrap();
        assert!(matches!(remove_tree(&old, 2), Err(Error::Changed { .. })));
        assert_eq!(std::fs::read(victim.join("passwd")).unwrap(), b"root");
        // Swapped in after the removal began (the failpoint runs just before the open).
        std::fs::remove_file(&old).unwrap();
        std::fs::create_dir(&old).unwrap();
        let (o, v) = (old.clone(), victim.clone());
        let _g = crate::failpoint::on("remove-tree-open", move || {
            std::fs::rename(&o, o.with_extension("moved")).unwrap();
            std::os::unix::fs::symlink(&v, &o).unwrap();
        });
        assert!(matches!(remove_tree(&old, 2), Err(Error::Changed { .. })));
        assert_eq!(std::fs::read(victim.join("passwd")).unwrap(), b"root");
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
