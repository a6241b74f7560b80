//! One transaction engine for every change keyferry makes on a node: import, restore,
//! `dpapi protect|unprotect`, and later folder sync and `pg_hba.conf` edits. Plan
//! (`plan`), lock (`lock`), journal (`journal`), back up, write, verify, commit or roll
//! back ([`apply`]).

pub(crate) mod apply;
pub(crate) mod journal;
pub(crate) mod lock;
pub(crate) mod plan;

pub use apply::{
    apply, drop_from_backup, recover, Applied, BackupRecord, Context, Recovery, RecoveryOutcome,
};
pub use lock::{NodeLock, DEFAULT_WAIT};
pub use plan::{look, Before, Change, Looked};

use crate::error::Result;
use std::path::Path;
use std::time::Duration;

/// Takes the node's lock and finishes or rolls back whatever a crash interrupted there.
pub fn begin(state_dir: &Path, node: &str, wait: Duration) -> Result<(NodeLock, Option<Recovery>)> {
    let lock = NodeLock::acquire(state_dir, node, wait)?;
    let recovered = recover(state_dir)?;
    Ok((lock, recovered))
}
