//! One mutating command per node at a time: an exclusive lock on `<state_dir>/lock`
//! (`flock` on Unix, `LockFileEx` on Windows, both through `std::fs::File::try_lock`). A
//! second command waits a bounded time, then refuses with [`Error::NodeBusy`]. The lock
//! goes with the process, so a crashed command never leaves a node locked.

use crate::error::{Error, Result};
use crate::fs::private::create_private_dir;
use std::fs::File;
use std::path::Path;
use std::time::{Duration, Instant};

/// How long a command waits for another one on the same node by default.
pub const DEFAULT_WAIT: Duration = Duration::from_secs(30);

/// Held while a command changes a node; released on drop.
#[derive(Debug)]
pub struct NodeLock {
    _file: File,
}

impl NodeLock {
    /// Takes the node's lock, waiting at most `wait` for another command to finish.
    pub fn acquire(state_dir: &Path, node: &str, wait: Duration) -> Result<NodeLock> {
        NodeLock::acquire_file(state_dir, "lock", node, wait)
    }

    /// Takes the lock kept in the state folder's file `name` (another lock than the node's,
    /// for work that runs other commands which take the node's lock themselves: an upgrade
    /// run), waiting at most `wait`.
    pub fn acquire_file(
        state_dir: &Path,
        name: &str,
        node: &str,
        wait: Duration,
    ) -> Result<NodeLock> {
        create_private_dir(state_dir)?;
        let path = state_dir.join(name);
        let file = open_lock_file(&path)?;
        let start = Instant::now();
        loop {
            match file.try_lock() {
                Ok(()) => return Ok(NodeLock { _file: file }),
                Err(std::fs::TryLockError::WouldBlock) if start.elapsed() < wait => {
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err(std::fs::TryLockError::WouldBlock) => {
                    return Err(Error::NodeBusy {
                        node: node.to_owned(),
                        lock: path,
                        waited_secs: start.elapsed().as_secs(),
                    })
                }
                Err(std::fs::TryLockError::Error(e)) => return Err(Error::io(&path, e)),
            }
        }
    }
}

fn open_lock_file(path: &Path) -> Result<File> {
    let mut o = std::fs::OpenOptions::new();
    o.read(true).write(true).create(true).truncate(false);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.mode(0o600).custom_flags(
            (rustix::fs::OFlags::NOFOLLOW | rustix::fs::OFlags::NONBLOCK).bits() as i32,
        );
    }
    let f = o.open(path).map_err(|e| Error::io(path, e))?;
    let m = f.metadata().map_err(|e| Error::io(path, e))?;
    if !m.is_file() {
        return Err(Error::NotAFile {
            path: path.to_owned(),
            what: "not a plain lock file",
        });
    }
    Ok(f)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_waits_then_is_refused() {
        let d = tempfile::tempdir().unwrap();
        let first = NodeLock::acquire(d.path(), "web2", Duration::ZERO).unwrap();
        let e = NodeLock::acquire(d.path(), "web2", Duration::from_millis(120)).unwrap_err();
        assert!(matches!(e, Error::NodeBusy { .. }), "{e}");
        drop(first);
        NodeLock::acquire(d.path(), "web2", Duration::ZERO).unwrap();
    }
}
