//! `keyferry sync`: copying the application folder from the upgraded node to the others,
//! never touching their keys or node-local files.
//!
//! - [`plan`]: what copying would do, computed from both trees, with the refusals that keep a
//!   wrong source or target from ever being touched;
//! - [`apply`]: the new tree built beside the live one, verified, swapped in (or moved in
//!   file by file where the folder is held open), journaled ([`journal`]) so a rerun
//!   finishes it, and `rollback`;
//! - [`kept`]: the previous trees kept for rollback, numbered generations;
//! - [`verify`]: both trees compared by content ([`hash`]: BLAKE3 on every core), also used
//!   by the audit's binaries check.

pub mod apply;
pub mod hash;
pub mod iis;
pub mod journal;
pub mod kept;
pub mod plan;
pub mod verify;

pub use apply::{
    apply, recover, rollback, ApplyOptions, NoSyncProgress, RolledBack, SyncOutcome, SyncProgress,
    Target,
};
/// Most files in one application folder, for sync and for the audit's folder digest: a bound
/// for hostile or mistaken paths (a whole drive).
pub const MAX_FILES: usize = 200_000;

pub use plan::{classify, plan, Class, PlanOptions, SyncPlan, DEFAULT_MAX_DELETE};
pub use verify::{compare, Verification};
