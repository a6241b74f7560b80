//! keyferry moves encryption keys between the nodes of clustered privileged-access-management
//! servers and proves afterwards that every node holds the same keys.
//!
//! This crate is the library: planning, bundles, fingerprints and file effects. It never
//! prints, prompts or exits; it reaches people only through the [`progress::Progress`] trait.
//! The `keyferry` binary under `src/bin/keyferry/` owns argv, the terminal and exit codes.

#![deny(unsafe_code)] // only `sys` may allow it, for OS calls that need it

pub mod appdigest;
pub mod audit;
pub mod bundle;
pub mod cleanup;
pub mod cluster;
pub mod demo;
pub mod diagnose;
pub mod dpapi;
pub mod error;
pub mod export;
pub mod fingerprint;
pub mod fsx;
pub mod import;
pub mod keyset;
pub mod ledger;
pub mod manifest;
pub mod profile;
pub mod progress;
pub mod protect;
pub mod report;
pub mod secret;
pub mod shred;
pub mod sys;
pub mod time;
pub mod words;

pub use error::{Error, Result};

/// Version of every JSON document keyferry writes (`"version"` field).
pub const JSON_VERSION: u32 = 1;
