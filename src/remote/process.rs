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
    run_inner(cmd, None, timeout, max_stdout, None)
}

/// As [`run`], with `input` written to the program's stdin (then closed) from a thread; the
/// buffer is wiped when written.
pub fn run_with_input(
    cmd: Command,
    input: zeroize::Zeroizing<Vec<u8>>,
    timeout: Duration,
    max_stdout: u64,
) -> Result<Finished, RunError> {
    run_inner(cmd, Some(input), timeout, max_stdout, None)
}

/// As [`run_with_input`], with each line written to stderr handed to `on_line` as it comes
/// (a line longer than 4 KiB in pieces).
pub fn run_streaming_with_input(
    cmd: Command,
    input: zeroize::Zeroizing<Vec<u8>>,
    timeout: Duration,
    max_stdout: u64,
    on_line: &dyn Fn(&[u8]),
) -> Result<Finished, RunError> {
    run_inner(cmd, Some(input), timeout, max_stdout, Some(on_line))
}

/// What is handed each line of stderr as it comes.
type OnLine<'a> = Option<&'a dyn Fn(&[u8])>;

/// Most of a child's stderr kept in its result.
const MAX_STDERR: usize = 64 * 1024;

fn run_inner(
    mut cmd: Command,
    input: Option<zeroize::Zeroizing<Vec<u8>>>,
    timeout: Duration,
    max_stdout: u64,
    on_line: OnLine<'_>,
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
    let stderr = child.stderr.take().expect("piped");
    let out_t = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = (&mut stdout).take(max_stdout).read_to_end(&mut v);
        v
    });
    // stderr a line at a time (each at most 4 KiB: a longer one comes in pieces), kept up to
    // MAX_STDERR and handed over as it comes; read to its end, so the child never blocks on
    // a full pipe. The threads are not waited for after a timeout (a program the child
    // started may hold the pipes open).
    let (lines, said) = std::sync::mpsc::channel::<Vec<u8>>();
    let err_t = std::thread::spawn(move || {
        let mut v = Vec::new();
        let mut r = std::io::BufReader::new(stderr);
        loop {
            let mut line = Vec::new();
            match std::io::BufRead::read_until(&mut (&mut r).take(4096), b'\n', &mut line) {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
            let room = MAX_STDERR.saturating_sub(v.len());
            v.extend_from_slice(&line[..line.len().min(room)]);
            let _ = lines.send(line);
        }
        v
    });
    let relay = || {
        for line in said.try_iter() {
            if let Some(f) = on_line {
                f(&line);
            }
        }
    };
    let deadline = Instant::now() + timeout;
    let status = loop {
        relay();
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
    let stderr = err_t.join().unwrap_or_default();
    relay();
    Ok(Finished {
        success: status.success(),
        code: status.code(),
        stdout: out_t.join().unwrap_or_default(),
        stderr,
    })
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::cell::RefCell;

    /// Each stderr line reaches the caller while the program still runs, and the whole of it
    /// is still in the result; more than the kept bound is read to its end (the program never
    /// blocks on a full pipe).
    #[test]
    fn stderr_lines_arrive_as_they_are_written() {
        let mut cmd = Command::new("sh");
        cmd.args([
            "-c",
            "echo first >&2; sleep 1; echo second >&2; head -c 200000 /dev/zero | tr '\\0' x >&2; echo out",
        ]);
        let seen: RefCell<Vec<(Instant, Vec<u8>)>> = RefCell::new(Vec::new());
        let start = Instant::now();
        let input = zeroize::Zeroizing::new(Vec::new());
        let done = run_streaming_with_input(cmd, input, Duration::from_secs(20), 1024, &|l| {
            seen.borrow_mut().push((Instant::now(), l.to_vec()))
        })
        .unwrap();
        let end = Instant::now();
        assert!(done.success);
        assert_eq!(done.stdout, b"out\n");
        let seen = seen.into_inner();
        assert_eq!(seen[0].1, b"first\n");
        assert_eq!(seen[1].1, b"second\n");
        // "first" was handed over a second before the program ended.
        assert!(
            end - seen[0].0 >= Duration::from_millis(700),
            "{:?}",
            seen[0].0 - start
        );
        // 200000 bytes without a newline: in pieces of at most 4 KiB, all of them.
        let rest: usize = seen[2..].iter().map(|(_, l)| l.len()).sum();
        assert_eq!(rest, 200_000);
        assert!(seen[2..].iter().all(|(_, l)| l.len() <= 4096));
        assert_eq!(done.stderr.len(), MAX_STDERR);
    }
}
