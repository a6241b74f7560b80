//! Reaching other machines: running programs with a time limit ([`process`]), keyferry on
//! another node over ssh ([`ssh`]) through a command line no shell can misread
//! ([`invoke`]).

pub mod invoke;
pub mod process;
pub mod ssh;
