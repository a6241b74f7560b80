//! Reaching other machines: running programs with a time limit ([`process`]) and over ssh
//! ([`ssh`]). Used by the audit; folder sync and the HA steps will use the same.

pub mod process;
pub mod ssh;
