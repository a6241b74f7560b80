//! Key sets and how they travel: reading a node's key files ([`keyset`]), the bundle
//! plaintext ([`manifest`]) and its age envelope ([`bundle`]), export, import, restore from
//! backups, pushing a key set to every node ([`push`]), cleanup of what a transfer leaves behind ([`ledger`], [`cleanup`]), and a
//! key file DPAPI-wrapped or unwrapped in place on Windows ([`dpapi`]).

pub mod bundle;
pub mod cleanup;
pub mod dpapi;
pub mod export;
pub mod import;
pub mod keyset;
pub mod ledger;
pub mod manifest;
pub mod push;
pub mod restore;
