//! Reaching other machines: running programs with a time limit (`process`), keyferry on
//! another node over ssh (`ssh`) through a command line no shell can misread
//! (`invoke`).

pub(crate) mod invoke;
pub(crate) mod process;
pub(crate) mod ssh;

pub use invoke::{read_header, BadRequest, PROBE};
pub use ssh::{SshClient, SshTarget};
