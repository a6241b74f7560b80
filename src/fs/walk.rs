//! Walking a folder tree without following links, for the app-folder digest and the sync
//! plan: each entry is given with its `/`-separated relative path and its own type (a link
//! is a link, never what it points to), and a folder is entered only if the visitor says so.

use crate::error::{Error, Result};
use std::fs::{DirEntry, FileType};
use std::path::Path;

/// Calls `visit(rel, entry, type)` for every entry under `root`; a folder is entered when
/// `visit` returns true for it (the return value is ignored for anything else).
pub fn walk(
    root: &Path,
    mut visit: impl FnMut(&str, &DirEntry, FileType) -> Result<bool>,
) -> Result<()> {
    let mut stack = vec![(root.to_path_buf(), String::new())];
    while let Some((dir, prefix)) = stack.pop() {
        let entries = std::fs::read_dir(&dir).map_err(|e| Error::io(&dir, e))?;
        for e in entries {
            let e = e.map_err(|e| Error::io(&dir, e))?;
            // Losslessly (bytes that are not UTF-8 kept, see [`crate::fs::name`]).
            let name = crate::fs::name::to_rel_or_refuse(&e.file_name(), &e.path())?;
            let rel = if prefix.is_empty() {
                name
            } else {
                format!("{prefix}/{name}")
            };
            let ft = e.file_type().map_err(|err| Error::io(e.path(), err))?;
            if visit(&rel, &e, ft)? && ft.is_dir() && !ft.is_symlink() {
                stack.push((e.path(), rel));
            }
        }
    }
    Ok(())
}
