//! Key sets and how they travel: reading a node's key files (`keyset`), the bundle
//! plaintext (`manifest`) and its age envelope (`bundle`), export, import, restore from
//! backups, pushing a key set to every node (`push`), cleanup of what a transfer leaves
//! behind (`ledger`, [`cleanup()`]), and a key file DPAPI-wrapped or unwrapped in place on
//! Windows (`dpapi`). The submodules are private; what the binary and tests use is
//! re-exported here.

pub(crate) mod bundle;
pub(crate) mod cleanup;
pub(crate) mod dpapi;
pub(crate) mod export;
pub(crate) mod import;
pub(crate) mod keyset;
pub(crate) mod ledger;
pub(crate) mod manifest;
pub(crate) mod push;
pub(crate) mod restore;

pub use bundle::{Bundle, Encoding, EXPORT_WORK_FACTOR, MAX_BUNDLE_BYTES, MAX_IMPORT_WORK_FACTOR};
pub use cleanup::cleanup;
pub use dpapi::{protect_file, unprotect_file};
pub use export::{
    build_manifest, export_to_file, seal_to, BundleSummary, DEFAULT_TTL, MAX_TTL, MIN_TTL,
};
pub use import::{
    import_file, import_stream, sweep_node, FileAction, ImportOptions, ImportOutcome, ImportReport,
    ProtectMode,
};
pub use manifest::Manifest;
pub use push::{push_one, push_ssh, route, skip, targets, PushOutcome, PushTarget, Route, SshPush};
pub use restore::{list as list_backups, restore};
