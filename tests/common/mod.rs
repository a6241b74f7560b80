//! Shared fixture for the CLI tests: a real Secret Server-style cluster in a temp folder
//! (real files, real permissions), the real `keyferry` binary, real age bundles at a low
//! scrypt work factor (debug builds only, see `cmd::export_work_factor`).

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

pub const PASSPHRASE: &str = "correct horse battery staple orbit lemon";
pub const WORK_FACTOR: &str = "4";

pub struct Cluster {
    pub dir: tempfile::TempDir,
}

pub const NODES: &[(&str, &str, &str)] = &[
    ("web1", "primary", "10.9.0.1"),
    ("web2", "secondary", "10.9.0.2"),
    ("dr1", "dr", "10.9.0.3"),
    ("proxy1", "proxy", "10.9.0.4"),
];

impl Cluster {
    /// Secret Server cluster: web1 holds `primary_key`, web2 `secondary_key` (if any), dr1 none.
    pub fn secret_server(primary_key: &[u8], secondary_key: Option<&[u8]>) -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let mut toml = String::from("name = \"ss-prod\"\nprofile = \"secret-server\"\n");
        for (name, role, ip) in NODES {
            let app = dir.path().join(name).join("app");
            std::fs::create_dir_all(&app).unwrap();
            std::fs::write(app.join("database.config"), format!("db for {name}\n")).unwrap();
            std::fs::write(app.join("web.config"), b"<configuration/>\r\n").unwrap();
            toml.push_str(&format!(
                "\n[[node]]\nname = \"{name}\"\nrole = \"{role}\"\naddress = \"{ip}\"\nstate_dir = {:?}\npaths = {{ app = {:?} }}\n",
                dir.path().join(name).join("state"),
                app
            ));
        }
        std::fs::write(dir.path().join("cluster.toml"), toml).unwrap();
        let c = Cluster { dir };
        std::fs::write(c.key_path("web1"), primary_key).unwrap();
        if let Some(k) = secondary_key {
            std::fs::write(c.key_path("web2"), k).unwrap();
        }
        c.write_passphrase_file("pass.txt", PASSPHRASE);
        c
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    pub fn cluster_file(&self) -> PathBuf {
        self.path("cluster.toml")
    }

    pub fn app(&self, node: &str) -> PathBuf {
        self.path(node).join("app")
    }

    pub fn key_path(&self, node: &str) -> PathBuf {
        self.app(node).join("encryption.config")
    }

    pub fn write_passphrase_file(&self, name: &str, text: &str) -> PathBuf {
        let p = self.path(name);
        std::fs::write(&p, text).unwrap();
        private(&p);
        p
    }

    /// `keyferry <args> --cluster cluster.toml --node <node>` with the passphrase file.
    pub fn keyferry_node(&self, node: &str, args: &[&str]) -> Run {
        let cluster = self.cluster_file();
        let pass = self.path("pass.txt");
        let mut a: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        a.extend([
            "--cluster".into(),
            cluster.display().to_string(),
            "--node".into(),
            node.into(),
            "--passphrase-file".into(),
            pass.display().to_string(),
        ]);
        keyferry(&a.iter().map(String::as_str).collect::<Vec<_>>(), None)
    }

    /// Runs `keyferry <args> --json` for `node` (as [`Cluster::keyferry_node`]), expects a
    /// refusal: exit 2 with error `code`, and no file under the cluster changed.
    pub fn assert_refused(&self, node: &str, args: &[&str], code: &str) -> Run {
        self.expect_refusal(code, || self.keyferry_node(node, &with_json(args)))
    }

    /// As [`Cluster::assert_refused`], with the arguments exactly as given (no node or
    /// passphrase file added).
    pub fn assert_refused_with(&self, args: &[&str], code: &str) -> Run {
        self.expect_refusal(code, || keyferry(&with_json(args), None))
    }

    fn expect_refusal(&self, code: &str, run: impl FnOnce() -> Run) -> Run {
        let before = self.snapshot();
        let r = run();
        r.assert_code(2);
        assert_eq!(r.json()["error"]["code"], code, "{}", r.stderr());
        assert_eq!(
            before,
            self.snapshot(),
            "refusal {code} changed files on disk"
        );
        r
    }

    /// Exports from web1 to `bundle.kfb` and returns its path.
    pub fn export(&self) -> PathBuf {
        let out = self.path("bundle.kfb");
        let r = self.keyferry_node("web1", &["keys", "export", "-o", out.to_str().unwrap()]);
        r.assert_code(0);
        out
    }

    /// Every file below the cluster folder with its bytes (the node's state on disk).
    pub fn snapshot(&self) -> BTreeMap<PathBuf, Vec<u8>> {
        snapshot(self.dir.path())
    }
}

fn with_json<'a>(args: &[&'a str]) -> Vec<&'a str> {
    let mut a = args.to_vec();
    a.push("--json");
    a
}

/// Makes a file private the way an admin would: mode 0600 on Unix, an owner-only ACL on
/// Windows (keyferry refuses passphrase files others can read).
pub fn private(p: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    keyferry::os::restrict_to_owner(p).unwrap();
}

/// Unix permission bits of a file (`None` elsewhere).
pub fn mode(p: &Path) -> Option<u32> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::symlink_metadata(p)
            .ok()
            .map(|m| m.permissions().mode() & 0o7777)
    }
    #[cfg(not(unix))]
    {
        let _ = p;
        None
    }
}

/// Makes every regular file under `root` an hour old: an old version's files are older than
/// the new one's. (Written within one clock tick, two files of one size could get one time,
/// which the quick check, rsync's too, takes as the same file.)
pub fn backdate(root: &Path) {
    let then = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let t = e.file_type().unwrap();
            if t.is_dir() {
                stack.push(e.path());
            } else if t.is_file() {
                std::fs::File::options()
                    .write(true)
                    .open(e.path())
                    .unwrap()
                    .set_modified(then)
                    .unwrap();
            }
        }
    }
}

pub fn snapshot(root: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            let m = std::fs::symlink_metadata(&p).unwrap();
            if m.file_type().is_symlink() {
                out.insert(
                    p.clone(),
                    std::fs::read_link(&p)
                        .unwrap()
                        .into_os_string()
                        .into_encoded_bytes(),
                );
            } else if m.is_dir() {
                out.insert(p.clone(), b"<dir>".to_vec());
                stack.push(p);
            } else {
                out.insert(p.clone(), std::fs::read(&p).unwrap());
            }
        }
    }
    out
}

pub struct Run {
    pub args: Vec<String>,
    pub out: Output,
}

impl Run {
    pub fn code(&self) -> i32 {
        self.out.status.code().unwrap_or(-1)
    }
    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.out.stdout).into_owned()
    }
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.out.stderr).into_owned()
    }
    pub fn assert_code(&self, code: i32) -> &Self {
        assert_eq!(
            self.code(),
            code,
            "keyferry {:?}\n--- stdout\n{}\n--- stderr\n{}",
            self.args,
            self.stdout(),
            self.stderr()
        );
        self
    }
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.out.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {}", self.stdout()))
    }
}

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_keyferry")
}

/// A shell script at `path` standing in for keyferry on a node: `pre` (lines), then
/// `exec <run_with>keyferry "$@"`; executable.
#[cfg(unix)]
pub fn keyferry_wrapper(path: &Path, pre: &str, run_with: &str) -> PathBuf {
    shell_script(path, &format!("{pre}exec {run_with}{:?} \"$@\"", bin()))
}

/// An executable `sh` script at `path` running `body` (a failpoint hook, a stand-in program).
#[cfg(unix)]
pub fn shell_script(path: &Path, body: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path.to_owned()
}

/// The first entry of a folder that holds one (an upgrade run's records folder).
pub fn first_entry(dir: &Path) -> PathBuf {
    std::fs::read_dir(dir)
        .unwrap()
        .next()
        .unwrap_or_else(|| panic!("{} is empty", dir.display()))
        .unwrap()
        .path()
}

/// Runs the binary with a clean environment for keyferry's variables.
pub fn keyferry(args: &[&str], stdin: Option<&[u8]>) -> Run {
    keyferry_env(args, stdin, &[])
}

/// [`keyferry`] with extra environment variables (e.g. a test build's failpoint).
pub fn keyferry_env(args: &[&str], stdin: Option<&[u8]>, env: &[(&str, &str)]) -> Run {
    let mut cmd = Command::new(bin());
    cmd.envs(env.iter().copied());
    cmd.args(args)
        .env_remove("KEYFERRY_CLUSTER")
        .env_remove("KEYFERRY_STATE_DIR")
        .env("KEYFERRY_INSECURE_TEST_WORK_FACTOR", WORK_FACTOR)
        .env("NO_COLOR", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = spawn(&mut cmd);
    {
        let mut i = child.stdin.take().unwrap();
        if let Some(bytes) = stdin {
            i.write_all(bytes).unwrap();
        }
    }
    let out = child.wait_with_output().unwrap();
    Run {
        args: args.iter().map(|s| s.to_string()).collect(),
        out,
    }
}

/// Starts the child. Under Wine, CreateProcess now and then fails with ERROR_INTERNAL_ERROR
/// (1359) when several test threads spawn at once; that one error, and only on Windows
/// builds, is retried a few times. Anything else fails the test at once.
fn spawn(cmd: &mut Command) -> std::process::Child {
    let mut tries = 0;
    loop {
        match cmd.spawn() {
            Ok(c) => return c,
            Err(e) if cfg!(windows) && e.raw_os_error() == Some(1359) && tries < 5 => {
                tries += 1;
                std::thread::sleep(std::time::Duration::from_millis(50 * tries));
            }
            Err(e) => panic!("spawn keyferry: {e}"),
        }
    }
}

/// Seals arbitrary plaintext as an armored age passphrase file, bypassing keyferry's own
/// manifest writer, to build hostile bundles.
pub fn seal_raw(plaintext: &[u8], passphrase: &str, path: &Path) {
    use age::secrecy::SecretString;
    let mut r = age::scrypt::Recipient::new(SecretString::from(passphrase.to_owned()));
    r.set_work_factor(4);
    let enc = age::Encryptor::with_recipients(std::iter::once(&r as &dyn age::Recipient)).unwrap();
    let mut out = Vec::new();
    let armor =
        age::armor::ArmoredWriter::wrap_output(&mut out, age::armor::Format::AsciiArmor).unwrap();
    let mut w = enc.wrap_output(armor).unwrap();
    w.write_all(plaintext).unwrap();
    w.finish().unwrap().finish().unwrap();
    std::fs::write(path, out).unwrap();
}

/// A hand-built bundle plaintext in the documented format (docs/bundle-format.md).
pub fn plaintext(header: &serde_json::Value, contents: &[&[u8]]) -> Vec<u8> {
    let mut v = b"keyferry-bundle 1\n".to_vec();
    v.extend_from_slice(serde_json::to_string(header).unwrap().as_bytes());
    v.push(b'\n');
    for c in contents {
        v.extend_from_slice(c);
    }
    v
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    keyferry::fingerprint::FileHash::of(bytes).to_hex()
}

pub fn fingerprint_of(entries: &[(&str, &[u8])]) -> String {
    let hashes: Vec<(&str, keyferry::fingerprint::FileHash)> = entries
        .iter()
        .map(|(n, b)| (*n, keyferry::fingerprint::FileHash::of(b)))
        .collect();
    keyferry::fingerprint::Fingerprint::of(hashes.iter().map(|(n, h)| (*n, h))).to_string()
}

/// A valid header for `entries` (name, bytes), for the Secret Server cluster "ss-prod".
pub fn header(entries: &[(&str, &[u8])], expires: &str) -> serde_json::Value {
    serde_json::json!({
        "created": "2026-01-01T00:00:00Z",
        "expires": expires,
        "cluster": "ss-prod",
        "profile": "secret-server",
        "source": { "node": "web1", "role": "primary", "host": "WEB1" },
        "fingerprint": fingerprint_of(entries),
        "entries": entries.iter().map(|(n, b)| serde_json::json!({
            "name": n, "len": b.len(), "sha256": sha256_hex(b),
            "roles": ["primary", "secondary", "dr", "action", "scheduler"],
        })).collect::<Vec<_>>(),
    })
}

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
