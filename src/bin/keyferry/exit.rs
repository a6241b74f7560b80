//! Exit codes, in one place. Each is exercised by a test in `tests/cli_exit_codes.rs`.

/// The command did what was asked, or found everything in order.
pub const SUCCESS: u8 = 0;
/// The command ran and the answer is no (a check found a mismatch or fault).
pub const NO: u8 = 1;
/// Bad input, usage error, refusal, or I/O error. Nothing on disk was changed.
pub const ERROR: u8 = 2;
