//! Files as the tests look at them: private like an admin makes them, modes, times set back,
//! a whole folder's snapshot, small scripts.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Makes a file private the way an admin would: mode 0600 on Unix, an owner-only ACL on
/// Windows (keyferry refuses passphrase files others can read).
pub fn private(p: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    keyferry::os::restrict_to_owner(p).unwrap();
}

/// Unix permission bits of a file (`None` elsewhere).
#[cfg_attr(all(windows, not(feature = "failpoints")), allow(dead_code))] // failpoint tests only
pub fn mode(p: &Path) -> Option<u32> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::symlink_metadata(p)
            .ok()
            .map(|m| m.permissions().mode() & 0o7777)
    }
    #[cfg(not(unix))]
    {
        let _ = p;
        None
    }
}

/// Makes every regular file under `root` an hour old: an old version's files are older than
/// the new one's. (Written within one clock tick, two files of one size could get one time,
/// which the quick check, rsync's too, takes as the same file.)
pub fn backdate(root: &Path) {
    let then = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let t = e.file_type().unwrap();
            if t.is_dir() {
                stack.push(e.path());
            } else if t.is_file() {
                std::fs::File::options()
                    .write(true)
                    .open(e.path())
                    .unwrap()
                    .set_modified(then)
                    .unwrap();
            }
        }
    }
}

pub fn snapshot(root: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            let m = std::fs::symlink_metadata(&p).unwrap();
            if m.file_type().is_symlink() {
                out.insert(
                    p.clone(),
                    std::fs::read_link(&p)
                        .unwrap()
                        .into_os_string()
                        .into_encoded_bytes(),
                );
            } else if m.is_dir() {
                out.insert(p.clone(), b"<dir>".to_vec());
                stack.push(p);
            } else {
                out.insert(p.clone(), std::fs::read(&p).unwrap());
            }
        }
    }
    out
}

/// A shell script at `path` standing in for keyferry on a node: `pre` (lines), then
/// `exec <run_with>keyferry "$@"`; executable.
#[cfg(unix)]
pub fn keyferry_wrapper(path: &Path, pre: &str, run_with: &str) -> PathBuf {
    shell_script(
        path,
        &format!("{pre}exec {run_with}{:?} \"$@\"", super::bin()),
    )
}

/// An executable `sh` script at `path` running `body` (a failpoint hook, a stand-in program).
#[cfg(unix)]
pub fn shell_script(path: &Path, body: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path.to_owned()
}

/// The first entry of a folder that holds one (an upgrade run's records folder).
pub fn first_entry(dir: &Path) -> PathBuf {
    std::fs::read_dir(dir)
        .unwrap()
        .next()
        .unwrap_or_else(|| panic!("{} is empty", dir.display()))
        .unwrap()
        .path()
}
