//! Running keyferry on another node through the system OpenSSH client, in batch mode
//! (never a password prompt), with the user's own ssh configuration and host keys. The
//! command line the node's shell sees is fixed ([`crate::remote::invoke`]); the request
//! travels on standard input.

use crate::remote::invoke::{self, Launch, Probed, Shell};
use crate::remote::process::{Finished, RunError};
use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How to reach a node over ssh.
#[derive(Debug, Clone)]
pub struct SshTarget {
    /// The login name, if not ssh's default.
    pub user: Option<String>,
    /// The host name or address.
    pub host: String,
    /// The port, if not 22.
    pub port: Option<u16>,
    /// How keyferry is started there (the node's `ssh_subsystem` or `shell`).
    pub launch: Launch,
}

impl SshTarget {
    /// `user@host` or `host`.
    pub fn destination(&self) -> String {
        match &self.user {
            Some(u) => format!("{u}@{}", self.host),
            None => self.host.clone(),
        }
    }

    /// `ssh://user@host:port`, as the cluster file's access says it.
    pub fn url(&self) -> String {
        format!(
            "ssh://{}{}",
            self.destination(),
            self.port.map(|p| format!(":{p}")).unwrap_or_default()
        )
    }
}

/// The ssh program and its configuration.
#[derive(Debug, Clone)]
pub struct SshClient {
    /// The ssh program (`ssh`, or a path).
    pub program: String,
    /// An ssh config file (`-F`).
    pub config: Option<PathBuf>,
    /// The shells found out so far, by destination (one probe per node and run).
    shells: Arc<Mutex<HashMap<String, Probed>>>,
}

/// Why keyferry could not be run on a node.
#[derive(Debug)]
pub enum SshError {
    /// ssh could not be run, or gave no answer in time.
    Run(RunError),
    /// ssh could not reach the node (its own failure, exit 255, while finding out the shell).
    Unreachable(String),
    /// The node's shell is none keyferry knows, so the command line cannot be quoted.
    Shell(String),
}

impl std::fmt::Display for SshError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SshError::Run(e) => write!(f, "{e}"),
            SshError::Unreachable(why) => write!(f, "ssh failed: {why}"),
            SshError::Shell(why) => write!(f, "{why}"),
        }
    }
}

impl From<RunError> for SshError {
    fn from(e: RunError) -> SshError {
        SshError::Run(e)
    }
}

impl SshClient {
    /// A client of `program`, with an optional config file.
    pub fn new(program: impl Into<String>, config: Option<PathBuf>) -> SshClient {
        SshClient {
            program: program.into(),
            config,
            shells: Arc::default(),
        }
    }

    /// Runs keyferry on `target`: `words` is the program there (`remote_keyferry`) and its
    /// arguments ([`crate::cluster::file::NodeSpec::remote_command`]). The arguments go on
    /// standard input, never on a command line.
    pub fn run(
        &self,
        target: &SshTarget,
        words: &[String],
        timeout: Duration,
        max_stdout: u64,
    ) -> Result<Finished, SshError> {
        let (cmd, input) = self.call(target, words, None, timeout)?;
        Ok(crate::remote::process::run_with_input(
            cmd, input, timeout, max_stdout,
        )?)
    }

    /// As [`SshClient::run`], with each line the remote command writes to stderr handed to
    /// `on_line` as it comes (the whole stderr is still in the result, bounded).
    pub fn run_streaming(
        &self,
        target: &SshTarget,
        words: &[String],
        timeout: Duration,
        max_stdout: u64,
        on_line: &dyn Fn(&[u8]),
    ) -> Result<Finished, SshError> {
        let (cmd, input) = self.call(target, words, None, timeout)?;
        Ok(crate::remote::process::run_streaming_with_input(
            cmd, input, timeout, max_stdout, on_line,
        )?)
    }

    /// As [`SshClient::run`], with `input` on the remote command's stdin (inside the ssh
    /// session's encryption; never in argv or environment).
    pub fn run_with_input(
        &self,
        target: &SshTarget,
        words: &[String],
        input: zeroize::Zeroizing<Vec<u8>>,
        timeout: Duration,
        max_stdout: u64,
    ) -> Result<Finished, SshError> {
        let (cmd, input) = self.call(target, words, Some(input), timeout)?;
        Ok(crate::remote::process::run_with_input(
            cmd, input, timeout, max_stdout,
        )?)
    }

    /// The ssh command for `words` on `target`, and its standard input: the request line,
    /// then `input`.
    fn call(
        &self,
        target: &SshTarget,
        words: &[String],
        input: Option<zeroize::Zeroizing<Vec<u8>>>,
        timeout: Duration,
    ) -> Result<(Command, zeroize::Zeroizing<Vec<u8>>), SshError> {
        let (program, args) = words
            .split_first()
            .expect("a remote command names its program");
        let mut stream = zeroize::Zeroizing::new(invoke::header(args));
        if let Some(input) = input {
            stream.extend_from_slice(&input);
        }
        let cmd = match &target.launch {
            Launch::Subsystem(name) => {
                invoke::check_subsystem(name).map_err(SshError::Shell)?;
                let mut cmd = self.base(target, timeout);
                cmd.arg("-s").arg("--").arg(target.destination()).arg(name);
                cmd
            }
            Launch::Shell(shell) => self.shell_command(target, *shell, program, timeout)?,
            Launch::Detect => {
                let shell = match self.probe(target, timeout)? {
                    Probed::Shell(s) => s,
                    // The command line is not read; any quoting will do.
                    Probed::Forced => Shell::Cmd,
                };
                self.shell_command(target, shell, program, timeout)?
            }
        };
        Ok((cmd, stream))
    }

    fn shell_command(
        &self,
        target: &SshTarget,
        shell: Shell,
        program: &str,
        timeout: Duration,
    ) -> Result<Command, SshError> {
        let line = invoke::command_line(shell, program).map_err(SshError::Shell)?;
        let mut cmd = self.base(target, timeout);
        cmd.arg("--").arg(target.destination()).arg(line);
        Ok(cmd)
    }

    /// Which shell runs commands on `target`, found out with [`invoke::PROBE`] once per
    /// destination (a fixed command: nothing from the cluster file is in it).
    pub fn probe(&self, target: &SshTarget, timeout: Duration) -> Result<Probed, SshError> {
        let key = target.url();
        if let Some(p) = self.shells.lock().ok().and_then(|m| m.get(&key).copied()) {
            return Ok(p);
        }
        let mut cmd = self.base(target, timeout);
        cmd.arg("--").arg(target.destination()).arg(invoke::PROBE);
        let done = crate::remote::process::run(cmd, timeout, 64 << 10)?;
        if done.code == Some(255) {
            // ssh's own failure (no route, refused, host key): say it as ssh said it.
            return Err(SshError::Unreachable(done.last_error_line()));
        }
        let probed = invoke::classify(&done.stdout).ok_or_else(|| {
            SshError::Shell(format!(
                "cannot tell which shell runs commands for {}: it answered {:?} to `{}`; \
                 write shell = \"cmd\" (or \"powershell\", \"sh\") in its [[node]], or set \
                 up the keyferry subsystem (ssh_subsystem)",
                target.url(),
                crate::text::one_line(&String::from_utf8_lossy(&done.stdout))
                    .chars()
                    .take(120)
                    .collect::<String>(),
                invoke::PROBE
            ))
        })?;
        if let Ok(mut m) = self.shells.lock() {
            m.insert(key, probed);
        }
        Ok(probed)
    }

    fn base(&self, target: &SshTarget, timeout: Duration) -> Command {
        let mut cmd = Command::new(&self.program);
        cmd.args(["-o", "BatchMode=yes"]);
        cmd.args([
            "-o",
            &format!("ConnectTimeout={}", timeout.as_secs().max(1)),
        ]);
        if let Some(cfg) = &self.config {
            cmd.arg("-F").arg(cfg);
        }
        if let Some(p) = target.port {
            cmd.args(["-p", &p.to_string()]);
        }
        cmd
    }
}
