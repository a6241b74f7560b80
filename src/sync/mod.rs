//! `keyferry sync` (issue 9, in progress): copying the application folder from the upgraded
//! node to the others, never touching their keys or node-local files.
//!
//! What is here: the plan ([`plan`]), a value computed from the two trees that says what would
//! be added, updated, deleted or left alone, with the refusals that keep a wrong source or
//! target from ever being touched. Applying a plan (a new tree built beside the live one and
//! swapped in, through the transaction engine), `sync verify` and the command itself come
//! next; until then nothing in keyferry writes with a sync plan.

pub mod plan;

pub use plan::{classify, plan, Class, PlanOptions, SyncPlan};
