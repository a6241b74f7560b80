//! Exit codes, in one place. Each is exercised by a test in `tests/cli_exit_codes.rs`.

/// The command did what was asked, or found everything in order.
pub const SUCCESS: u8 = 0;
/// The command ran and the answer is no (a check found a mismatch or fault).
pub const NO: u8 = 1;
/// Bad input, usage error, refusal, or I/O error. Nothing on disk was changed.
pub const ERROR: u8 = 2;
/// Partly done: some nodes or folders were changed and others failed (or a change failed
/// after it had changed something). The report says what changed where.
pub const PARTIAL: u8 = 3;

/// The exit code of a command that worked on several targets: all done, none changed and
/// some failed, or some changed and some failed.
pub fn of_many(changed: usize, failed: usize) -> u8 {
    match (changed, failed) {
        (_, 0) => SUCCESS,
        (0, _) => ERROR,
        _ => PARTIAL,
    }
}

/// The number of an exit code a command returned (a step of an upgrade run in this process).
pub fn code_of(code: std::process::ExitCode) -> i32 {
    (0..=u8::MAX)
        .find(|&c| std::process::ExitCode::from(c) == code)
        .map_or(i32::from(ERROR), i32::from)
}
