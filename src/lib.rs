//! keyferry moves encryption keys between the nodes of clustered privileged-access-management
//! servers and proves afterwards that every node holds the same keys.
//!
//! This crate is the library: planning, bundles, fingerprints and file effects. It never
//! prints, prompts or exits; it reaches people only through the [`progress::Progress`] trait.
//! The `keyferry` binary under `src/bin/keyferry/` owns argv, the terminal and exit codes.
//!
//! Where things are:
//! - [`cluster`]: the cluster file, the local [`cluster::Node`], how other nodes are reached;
//!   [`profile`]: the products as data.
//! - [`fs`]: the safe file layer (open once, no links, bounded reads, atomic replace that
//!   keeps the product's attributes, removal through handles); [`txn`]: the one transaction
//!   engine (lock, journal, backup, write, verify, commit or roll back).
//! - [`keys`]: key sets, bundles, export, import, restore, cleanup; [`dpapi`]: DPAPI blobs.
//! - [`audit`] and [`diagnose`]: comparing nodes and explaining errors; [`remote`]: running
//!   programs locally and over ssh with a time limit.
//! - [`os`]: the only `unsafe` (process hardening, memory locking, Windows calls).

#![deny(missing_docs)]
#![deny(unsafe_code)] // only `os` may allow it, for OS calls that need it

pub mod audit;
pub mod cluster;
pub(crate) mod codes;
pub mod demo;
pub mod diagnose;
pub mod dpapi;
pub(crate) mod error;
pub(crate) mod failpoint;
pub mod finding;
pub mod fingerprint;
pub mod fs;
pub mod ha;
pub mod host;
pub mod keys;
pub mod os;
pub mod parallel;
pub mod preflight;
pub mod profile;
pub mod progress;
pub(crate) mod reason;
pub mod recover;
pub mod remote;
pub mod report;
pub mod secret;
pub mod sync;
pub mod text;
pub mod time;
pub mod txn;
pub mod upgrade;
pub mod words;

pub use error::{Error, Result};
pub use reason::{HaReason, HostReason};

/// Version of every JSON document keyferry writes (`"version"` field).
pub const JSON_VERSION: u32 = 1;
