//! `keyferry sync`: copying the application folder from the upgraded node to the others,
//! never touching their keys or node-local files.
//!
//! - [`plan`]: what copying would do, computed from both trees, with the refusals that keep a
//!   wrong source or target from ever being touched;
//! - [`apply`]: the new tree built beside the live one, verified, swapped in (or moved in
//!   file by file where the folder is held open), journaled (`journal`) so a rerun
//!   finishes it, and `rollback`;
//! - `kept`: the previous trees kept for rollback, numbered generations;
//! - `verify`: both trees compared by content (`hash`: BLAKE3 on every core), also used
//!   by the audit's binaries check.

pub(crate) mod apply;
pub(crate) mod hash;
pub(crate) mod iis;
pub(crate) mod journal;
pub(crate) mod kept;
pub(crate) mod plan;
pub(crate) mod verify;

pub use apply::{
    apply, recover, rollback, ApplyOptions, NoSyncProgress, RolledBack, SyncOutcome, SyncProgress,
    Target,
};
/// Most files in one application folder, for sync and for the audit's folder digest: a bound
/// for hostile or mistaken paths (a whole drive).
pub const MAX_FILES: usize = 200_000;

pub use apply::{check_parent, set_times, sync_id};
pub use iis::AppPool;
pub use journal::{path as journal_path, Action, LastSync, Mode, Stage, SyncJournal};
pub use kept::{generations, own_bytes, DEFAULT_KEEP, MAX_KEEP};
pub use plan::{
    classify, plan, plan_many, replan, Class, PlanOptions, SyncPlan, DEFAULT_MAX_DELETE,
};
pub use verify::{compare, Verification};
