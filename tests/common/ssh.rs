//! A real OpenSSH server on loopback, for the tests that reach nodes over ssh (Unix).

use std::path::{Path, PathBuf};
use std::process::Command;

/// A real OpenSSH server on 127.0.0.1 with a throwaway host key and user key.
#[cfg(unix)]
pub struct Sshd {
    pid: u32,
    pub port: u16,
    pub config: PathBuf,
}

#[cfg(unix)]
impl Sshd {
    pub fn start(dir: &Path) -> Option<Sshd> {
        Sshd::start_with(dir, &[])
    }

    /// As [`Sshd::start`], with more `sshd` options (`-o ForceCommand=...`).
    #[allow(clippy::print_stderr)] // the SKIPPED line must be visible in test output
    pub fn start_with(dir: &Path, options: &[String]) -> Option<Sshd> {
        use std::process::Command;
        if !Path::new("/usr/sbin/sshd").exists() || rustix_is_not_root() {
            eprintln!("SKIPPED: /usr/sbin/sshd missing or not root; scripts/setup installs openssh-server");
            return None;
        }
        std::fs::create_dir_all("/run/sshd").ok();
        let keygen = |path: &Path| {
            let ok = Command::new("ssh-keygen")
                .args(["-q", "-t", "ed25519", "-N", "", "-f"])
                .arg(path)
                .status()
                .unwrap()
                .success();
            assert!(ok);
        };
        keygen(&dir.join("host_key"));
        keygen(&dir.join("user_key"));
        std::fs::copy(dir.join("user_key.pub"), dir.join("authorized_keys")).unwrap();
        let port = free_port();
        let mut c = Command::new("/usr/sbin/sshd");
        sshd_args(&mut c, dir, "127.0.0.1", port);
        for o in options {
            c.arg("-o").arg(o);
        }
        let status = c.args(["-o", "MaxStartups=64"]).status().unwrap();
        assert!(status.success(), "sshd did not start");
        let pid = sshd_pid(dir);
        let config = ssh_client_config(dir, &dir.join("user_key"));
        Some(Sshd { pid, port, config })
    }
}

#[cfg(unix)]
impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = std::process::Command::new("kill")
            .arg(self.pid.to_string())
            .status();
    }
}

#[cfg(unix)]
pub fn rustix_is_not_root() -> bool {
    std::process::Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout != b"0\n")
        .unwrap_or(true)
}

#[cfg(unix)]
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// An OpenSSH client configuration in `dir` for the test servers: `key` as the identity,
/// throwaway host keys accepted (each test makes its own), quiet.
#[cfg(unix)]
pub fn ssh_client_config(dir: &Path, key: &Path) -> PathBuf {
    let config = dir.join("ssh_config");
    std::fs::write(
        &config,
        format!(
            "Host *\n  IdentityFile {}\n  UserKnownHostsFile /dev/null\n  StrictHostKeyChecking no\n  LogLevel ERROR\n",
            key.display()
        ),
    )
    .unwrap();
    config
}

/// sshd's arguments for a test server: no system configuration, `dir`'s host key and
/// authorized keys, root by key only, its pid in `dir/sshd.pid`.
#[cfg(unix)]
pub fn sshd_args(c: &mut Command, dir: &Path, listen: &str, port: u16) {
    c.args(["-f", "/dev/null", "-p", &port.to_string()])
        .args(["-o", &format!("ListenAddress={listen}")])
        .args([
            "-o",
            "StrictModes=no",
            "-o",
            "PermitRootLogin=prohibit-password",
        ])
        .arg("-h")
        .arg(dir.join("host_key"))
        .arg("-o")
        .arg(format!(
            "AuthorizedKeysFile={}",
            dir.join("authorized_keys").display()
        ))
        .arg("-o")
        .arg(format!("PidFile={}", dir.join("sshd.pid").display()));
}

/// The pid a test sshd wrote in `dir/sshd.pid` (it writes it once it listens).
#[cfg(unix)]
pub fn sshd_pid(dir: &Path) -> u32 {
    for _ in 0..250 {
        if let Some(pid) = std::fs::read_to_string(dir.join("sshd.pid"))
            .ok()
            .and_then(|s| s.trim().parse().ok())
        {
            return pid;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    panic!("sshd wrote no pid in {}", dir.display());
}
