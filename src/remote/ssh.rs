//! Running a command on another node through the system OpenSSH client, in batch mode
//! (never a password prompt), with the user's own ssh configuration and host keys.

use crate::remote::process::{run, Finished, RunError};
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

/// How to reach a node over ssh.
#[derive(Debug, Clone)]
pub struct SshTarget {
    pub user: Option<String>,
    pub host: String,
    pub port: Option<u16>,
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
    pub program: String,
    pub config: Option<PathBuf>,
}

/// Quotes one word for a POSIX remote shell.
pub fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

impl SshClient {
    /// Runs `words` (quoted for a POSIX shell) on `target`.
    pub fn run(
        &self,
        target: &SshTarget,
        words: &[String],
        timeout: Duration,
        max_stdout: u64,
    ) -> Result<Finished, RunError> {
        run(self.command(target, words, timeout), timeout, max_stdout)
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
    ) -> Result<Finished, RunError> {
        crate::remote::process::run_streaming(
            self.command(target, words, timeout),
            timeout,
            max_stdout,
            on_line,
        )
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
    ) -> Result<Finished, RunError> {
        crate::remote::process::run_with_input(
            self.command(target, words, timeout),
            input,
            timeout,
            max_stdout,
        )
    }

    fn command(&self, target: &SshTarget, words: &[String], timeout: Duration) -> Command {
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
        let remote = words
            .iter()
            .map(|w| sh_quote(w))
            .collect::<Vec<_>>()
            .join(" ");
        cmd.arg("--").arg(target.destination()).arg(remote);
        cmd
    }
}
