//! Shared fixture for the CLI tests: a real Secret Server-style cluster in a temp folder
//! (real files, real permissions), the real `keyferry` binary, real age bundles at a low
//! scrypt work factor (debug builds only, see `cmd::export_work_factor`).

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

/// A command line of words and paths alike, each as the OS takes it: `argv!["audit", "-c",
/// &cluster]` for what was `&argv!["audit", "-c", &cluster]`.
macro_rules! argv {
    ($($arg:expr),* $(,)?) => {
        [$(std::ffi::OsString::from($arg)),*]
    };
}
pub(crate) use argv;

mod bundle;
mod files;
#[cfg(unix)]
mod ssh;

pub use bundle::*;
pub use files::*;
#[cfg(unix)]
pub use ssh::*;

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
    pub fn keyferry_node<A: AsRef<OsStr>>(&self, node: &str, args: &[A]) -> Run {
        let mut a: Vec<OsString> = args.iter().map(|s| s.as_ref().to_owned()).collect();
        a.extend(argv![
            "--cluster",
            self.cluster_file(),
            "--node",
            node,
            "--passphrase-file",
            self.path("pass.txt"),
        ]);
        keyferry(&a, None)
    }

    /// Runs `keyferry <args> --json` for `node` (as [`Cluster::keyferry_node`]), expects a
    /// refusal: exit 2 with error `code`, and no file under the cluster changed.
    pub fn assert_refused<A: AsRef<OsStr>>(&self, node: &str, args: &[A], code: &str) -> Run {
        self.expect_refusal(code, || self.keyferry_node(node, &with_json(args)))
    }

    /// As [`Cluster::assert_refused`], with the arguments exactly as given (no node or
    /// passphrase file added).
    pub fn assert_refused_with<A: AsRef<OsStr>>(&self, args: &[A], code: &str) -> Run {
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
        let r = self.keyferry_node("web1", &argv!["keys", "export", "-o", &out]);
        r.assert_code(0);
        out
    }

    /// Every file below the cluster folder with its bytes (the node's state on disk).
    pub fn snapshot(&self) -> BTreeMap<PathBuf, Vec<u8>> {
        snapshot(self.dir.path())
    }
}

fn with_json<A: AsRef<OsStr>>(args: &[A]) -> Vec<OsString> {
    let mut a: Vec<OsString> = args.iter().map(|s| s.as_ref().to_owned()).collect();
    a.push("--json".into());
    a
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

/// Runs the binary with a clean environment for keyferry's variables.
pub fn keyferry<A: AsRef<OsStr>>(args: &[A], stdin: Option<&[u8]>) -> Run {
    keyferry_env(args, stdin, &[])
}

/// [`keyferry`] with extra environment variables (e.g. a test build's failpoint).
pub fn keyferry_env<A: AsRef<OsStr>>(
    args: &[A],
    stdin: Option<&[u8]>,
    env: &[(&str, &str)],
) -> Run {
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
        args: args
            .iter()
            .map(|s| s.as_ref().to_string_lossy().into_owned())
            .collect(),
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
