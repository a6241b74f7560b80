//! Running another program with a time limit and bounded output: the child is killed when
//! the limit passes, its stdout is read through a bound, and its stderr is kept short.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// What a finished program gave.
#[derive(Debug)]
pub struct Finished {
    pub success: bool,
    /// The exit code, or `None` after a signal.
    pub code: Option<i32>,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

impl Finished {
    /// The last non-empty line of stderr, at most 300 characters.
    pub fn last_error_line(&self) -> String {
        String::from_utf8_lossy(&self.stderr)
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("")
            .chars()
            .take(300)
            .collect()
    }
}

/// Why a program gave no answer.
#[derive(Debug)]
pub enum RunError {
    /// It could not be started.
    Spawn(std::io::Error),
    /// It did not finish within the limit and was killed.
    TimedOut(Duration),
    Wait(std::io::Error),
}

impl std::fmt::Display for RunError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RunError::Spawn(e) => write!(f, "cannot start it: {e}"),
            RunError::TimedOut(t) => write!(f, "no answer within {}s", t.as_secs()),
            RunError::Wait(e) => write!(f, "{e}"),
        }
    }
}

/// Runs `cmd` with no stdin, at most `max_stdout` bytes of stdout and 64 KiB of stderr kept,
/// killed after `timeout`.
pub fn run(cmd: Command, timeout: Duration, max_stdout: u64) -> Result<Finished, RunError> {
    run_inner(cmd, None, timeout, max_stdout)
}

/// As [`run`], with `input` written to the program's stdin (then closed) from a thread; the
/// buffer is wiped when written.
pub fn run_with_input(
    cmd: Command,
    input: zeroize::Zeroizing<Vec<u8>>,
    timeout: Duration,
    max_stdout: u64,
) -> Result<Finished, RunError> {
    run_inner(cmd, Some(input), timeout, max_stdout)
}

fn run_inner(
    mut cmd: Command,
    input: Option<zeroize::Zeroizing<Vec<u8>>>,
    timeout: Duration,
    max_stdout: u64,
) -> Result<Finished, RunError> {
    cmd.stdin(if input.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(RunError::Spawn)?;
    if let (Some(input), Some(mut stdin)) = (input, child.stdin.take()) {
        std::thread::spawn(move || {
            // A program that exits early closes the pipe: its exit status says why.
            let _ = std::io::Write::write_all(&mut stdin, &input);
        });
    }
    let mut stdout = child.stdout.take().expect("piped");
    let mut stderr = child.stderr.take().expect("piped");
    let out_t = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = (&mut stdout).take(max_stdout).read_to_end(&mut v);
        v
    });
    let err_t = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = (&mut stderr).take(64 * 1024).read_to_end(&mut v);
        v
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break s,
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(RunError::TimedOut(timeout));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            Err(e) => return Err(RunError::Wait(e)),
        }
    };
    Ok(Finished {
        success: status.success(),
        code: status.code(),
        stdout: out_t.join().unwrap_or_default(),
        stderr: err_t.join().unwrap_or_default(),
    })
}
