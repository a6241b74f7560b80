//! A real PostgreSQL HA test bed: two Debian PostgreSQL servers, each in a network namespace
//! made here with its own address (10.231.0.1 and 10.231.0.2 on a veth pair), run as the
//! `postgres` account, stopped and removed when the bed is dropped. Only those two test
//! addresses are contacted. Needs root, iproute2 and PostgreSQL (scripts/setup installs
//! them); without them the tests say so and skip, except under CI, where they fail.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

pub const BIN: &str = "/usr/lib/postgresql/15/bin";
pub const ADDR: [&str; 2] = ["10.231.0.1", "10.231.0.2"];
pub const NAMES: [&str; 2] = ["nps1", "nps2"];

static SEQ: AtomicUsize = AtomicUsize::new(0);

/// Whether this machine can host the bed; `None` when it can, else why not.
pub fn unavailable() -> Option<String> {
    if !rustix_is_root() {
        return Some("needs root (network namespaces, runuser)".into());
    }
    if !Path::new(BIN).join("initdb").exists() {
        return Some(format!(
            "no PostgreSQL 15 in {BIN} (scripts/setup installs it)"
        ));
    }
    if Command::new("ip").arg("-V").output().is_err() {
        return Some("no ip command (iproute2)".into());
    }
    None
}

fn rustix_is_root() -> bool {
    // The test crate has no rustix; `id -u` is enough here.
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout.trim_ascii() == b"0")
        .unwrap_or(false)
}

/// Skips (prints why) or, under CI, fails when the bed cannot run here.
#[macro_export]
macro_rules! need_bed {
    () => {
        if let Some(why) = pgbed::unavailable() {
            if std::env::var_os("CI").is_some() {
                panic!("the PostgreSQL test bed cannot run: {why}");
            }
            eprintln!("SKIPPED: the PostgreSQL test bed cannot run here: {why}");
            return;
        }
    };
}

fn sh(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn ip(args: &[&str]) {
    sh(Command::new("ip").args(args));
}

/// The bed.
pub struct Bed {
    pub dir: PathBuf,
    pub ns: [String; 2],
    pub admin_pw: String,
    pub rep_pw: String,
    pub cluster: PathBuf,
    pub passfile: PathBuf,
}

fn random_hex(n: usize) -> String {
    let mut b = vec![0u8; n];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut b))
        .unwrap();
    b.iter().map(|x| format!("{x:02x}")).collect()
}

impl Bed {
    /// Namespaces, a primary on node 0 (initdb, the replication role), and on node 1 a
    /// standalone server of its own (as a freshly installed secondary has), both running.
    pub fn new() -> Bed {
        let id = format!(
            "{}{}",
            std::process::id() % 100000,
            SEQ.fetch_add(1, Ordering::SeqCst)
        );
        let dir = PathBuf::from(format!("/tmp/kf-ha-{id}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        sh(Command::new("chown").arg("postgres:postgres").arg(&dir));
        let ns = [format!("kf{id}a"), format!("kf{id}b")];
        let bed = Bed {
            dir: dir.clone(),
            ns: ns.clone(),
            admin_pw: format!("Adm-{}", random_hex(12)),
            rep_pw: format!("Rep-{}", random_hex(12)),
            cluster: dir.join("cluster.toml"),
            passfile: dir.join("pgpass"),
        };
        ip(&["netns", "add", &ns[0]]);
        ip(&["netns", "add", &ns[1]]);
        let veth = [format!("kv{id}a"), format!("kv{id}b")];
        ip(&[
            "link", "add", &veth[0], "type", "veth", "peer", "name", &veth[1],
        ]);
        for i in 0..2 {
            ip(&["link", "set", &veth[i], "netns", &ns[i]]);
            ip(&[
                "-n",
                &ns[i],
                "addr",
                "add",
                &format!("{}/24", ADDR[i]),
                "dev",
                &veth[i],
            ]);
            ip(&["-n", &ns[i], "link", "set", &veth[i], "up"]);
            ip(&["-n", &ns[i], "link", "set", "lo", "up"]);
        }
        // The password file: the admin's and the replication role's lines.
        bed.write_as_postgres(
            &bed.passfile,
            &format!(
                "*:5432:*:postgres:{}\n*:5432:*:repuser:{}\n",
                bed.admin_pw, bed.rep_pw
            ),
            0o600,
        );
        for i in 0..2 {
            std::fs::create_dir_all(bed.node_dir(i).join("keytools")).unwrap();
            std::fs::create_dir_all(bed.node_dir(i).join("ha")).unwrap();
            std::fs::set_permissions(bed.node_dir(i), std::fs::Permissions::from_mode(0o755))
                .unwrap();
            sh(Command::new("chown")
                .arg("postgres:postgres")
                .arg(bed.node_dir(i)));
            bed.initdb(i);
            bed.start(i);
        }
        bed.psql_stdin(
            0,
            &format!(
                "CREATE ROLE repuser REPLICATION LOGIN PASSWORD '{}';\n",
                bed.rep_pw
            ),
        );
        bed.write_cluster("");
        bed
    }

    pub fn node_dir(&self, i: usize) -> PathBuf {
        self.dir.join(NAMES[i])
    }
    pub fn data(&self, i: usize) -> PathBuf {
        self.node_dir(i).join("data")
    }
    pub fn sock(&self, i: usize) -> PathBuf {
        self.node_dir(i).join("sock")
    }
    pub fn log(&self, i: usize) -> PathBuf {
        self.node_dir(i).join("server.log")
    }

    /// The cluster file, with `extra` appended to the [ha] section.
    pub fn write_cluster(&self, extra_ha: &str) {
        self.write_cluster_with(extra_ha, ["", ""]);
    }

    /// The cluster file, with `extra_ha` in the [ha] section and `extra_node[i]` in node
    /// `i`'s table.
    pub fn write_cluster_with(&self, extra_ha: &str, extra_node: [&str; 2]) {
        let mut t = format!(
            "name = \"nps-test\"\nprofile = \"privilege-secure\"\n\n[ha]\npassfile = \"{}\"\nbin = \"{BIN}\"\nconnect_timeout = 2\n{extra_ha}\n",
            self.passfile.display()
        );
        for i in 0..2 {
            t.push_str(&format!(
                "\n[[node]]\nname = \"{}\"\nrole = \"{}\"\naddress = \"{}\"\npaths = {{ keytools = \"{}\", ha = \"{}\" }}\nstate_dir = \"{}\"\nha = {{ data = \"{}\" }}\n",
                NAMES[i],
                ["primary", "secondary"][i],
                ADDR[i],
                self.node_dir(i).join("keytools").display(),
                self.node_dir(i).join("ha").display(),
                self.node_dir(i).join("state").display(),
                self.data(i).display()
            ));
            t.push_str(extra_node[i]);
            t.push('\n');
        }
        std::fs::write(&self.cluster, t).unwrap();
    }

    pub fn write_as_postgres(&self, path: &Path, text: &str, mode: u32) {
        std::fs::write(path, text).unwrap();
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
        sh(Command::new("chown").arg("postgres:postgres").arg(path));
    }

    fn as_postgres(&self, i: usize, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args([
            "netns",
            "exec",
            &self.ns[i],
            "runuser",
            "-u",
            "postgres",
            "--",
        ])
        .arg(Path::new(BIN).join(program))
        .current_dir("/");
        c
    }

    fn initdb(&self, i: usize) {
        let pwfile = self.node_dir(i).join("pw");
        self.write_as_postgres(&pwfile, &format!("{}\n", self.admin_pw), 0o600);
        sh(self
            .as_postgres(i, "initdb")
            .arg("-D")
            .arg(self.data(i))
            .args(["-U", "postgres", "-A", "scram-sha-256", "--no-sync"])
            .arg(format!("--pwfile={}", pwfile.display())));
        std::fs::remove_file(&pwfile).unwrap();
        std::fs::create_dir_all(self.sock(i)).unwrap();
        sh(Command::new("chown")
            .arg("postgres:postgres")
            .arg(self.sock(i)));
        let conf = self.data(i).join("postgresql.conf");
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&conf)
            .unwrap();
        write!(
            f,
            "\nlisten_addresses = '{}'\nport = 5432\nunix_socket_directories = '{}'\nwal_log_hints = on\nfsync = off\nmax_wal_senders = 4\n",
            ADDR[i],
            self.sock(i).display()
        )
        .unwrap();
        self.write_hba(i, &self.base_hba());
    }

    /// The bed's starting `pg_hba.conf`: the harness's own socket access and the admin's
    /// network access; no line for the pair (that is `keyferry ha hba`'s job).
    pub fn base_hba(&self) -> String {
        "# test bed\nlocal   all   all                    trust\nhost    all   postgres   10.231.0.0/24   scram-sha-256\n".into()
    }

    pub fn hba_path(&self, i: usize) -> PathBuf {
        self.data(i).join("pg_hba.conf")
    }

    pub fn write_hba(&self, i: usize, text: &str) {
        self.write_as_postgres(&self.hba_path(i), text, 0o600);
    }

    pub fn start(&self, i: usize) {
        sh(self
            .as_postgres(i, "pg_ctl")
            .arg("start")
            .arg("-D")
            .arg(self.data(i))
            .arg("-l")
            .arg(self.log(i))
            .args(["-w", "-t", "60"])
            .stdout(Stdio::null()));
    }

    pub fn stop(&self, i: usize) {
        sh(self
            .as_postgres(i, "pg_ctl")
            .arg("stop")
            .arg("-D")
            .arg(self.data(i))
            .args(["-m", "fast", "-w"])
            .stdout(Stdio::null()));
    }

    /// Stops node `i`'s server as a crash would (no shutdown checkpoint).
    pub fn crash(&self, i: usize) {
        sh(self
            .as_postgres(i, "pg_ctl")
            .arg("stop")
            .arg("-D")
            .arg(self.data(i))
            .args(["-m", "immediate", "-w"])
            .stdout(Stdio::null()));
    }

    /// Whether node `i`'s server runs.
    pub fn running(&self, i: usize) -> bool {
        self.as_postgres(i, "pg_ctl")
            .arg("status")
            .arg("-D")
            .arg(self.data(i))
            .output()
            .unwrap()
            .status
            .success()
    }

    /// psql on node `i` over its private socket (trust, as the postgres account), stopping
    /// at the first error.
    fn psql_cmd(&self, i: usize) -> Command {
        let mut c = self.as_postgres(i, "psql");
        c.arg("-h").arg(self.sock(i)).args([
            "-p",
            "5432",
            "-U",
            "postgres",
            "-d",
            "postgres",
            "-AtXq",
            "-v",
            "ON_ERROR_STOP=1",
        ]);
        c
    }

    /// Runs SQL on node `i` and returns its output.
    pub fn psql(&self, i: usize, sql: &str) -> String {
        let out = sh(self.psql_cmd(i).args(["-c", sql]));
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// Runs SQL given on stdin (for statements holding a password).
    pub fn psql_stdin(&self, i: usize, sql: &str) {
        let mut child = self
            .psql_cmd(i)
            .args(["-f", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(sql.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// A command running keyferry on node `i` (inside its namespace).
    pub fn keyferry_cmd(&self, i: usize, args: &[&str]) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.ns[i]])
            .arg(super::common::bin())
            .args(args)
            .arg("-c")
            .arg(&self.cluster)
            .args(["--node", NAMES[i]])
            .env_remove("KEYFERRY_CLUSTER")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null());
        c
    }

    /// Runs keyferry on node `i`.
    pub fn keyferry(&self, i: usize, args: &[&str]) -> super::common::Run {
        let out = self.keyferry_cmd(i, args).output().unwrap();
        super::common::Run {
            args: args.iter().map(|s| s.to_string()).collect(),
            out,
        }
    }

    /// `keyferry ha hba` on both nodes: the pair's lines in each `pg_hba.conf`.
    pub fn hba_both(&self) {
        for i in 0..2 {
            self.keyferry(i, &["ha", "hba"]).assert_code(0);
        }
    }

    /// Runs a shell command inside node `i`'s namespace (as root).
    pub fn in_ns(&self, i: usize, args: &[&str]) -> Output {
        sh(Command::new("ip")
            .args(["netns", "exec", &self.ns[i]])
            .args(args))
    }
}

impl Drop for Bed {
    fn drop(&mut self) {
        // Every server the bed or keyferry may have left running under the bed's folder.
        for i in 0..2 {
            if let Ok(rd) = std::fs::read_dir(self.node_dir(i)) {
                for e in rd.flatten() {
                    if e.path().join("postmaster.pid").exists() {
                        let _ = self
                            .as_postgres(i, "pg_ctl")
                            .arg("stop")
                            .arg("-D")
                            .arg(e.path())
                            .args(["-m", "immediate", "-w"])
                            .output();
                    }
                }
            }
        }
        for ns in &self.ns {
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
        }
        if std::env::var_os("KEEP_BED").is_none() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// Every regular file under `root` (sockets, FIFOs and links skipped), with its bytes.
pub fn files(root: &Path) -> std::collections::BTreeMap<PathBuf, Vec<u8>> {
    let mut out = std::collections::BTreeMap::new();
    let mut stack = vec![root.to_owned()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let Ok(t) = e.file_type() else { continue };
            if t.is_dir() {
                stack.push(e.path());
            } else if t.is_file() {
                if let Ok(b) = std::fs::read(e.path()) {
                    out.insert(e.path(), b);
                }
            }
        }
    }
    out
}

impl Bed {
    /// What a refusal must leave as it was on node `i`: its configuration files, keyferry's
    /// state folder, and the names in the node's folder (no new data folder, no leftovers).
    /// The data folder's other files change while the server runs, so they are left out.
    pub fn config_snapshot(&self, i: usize) -> Vec<(PathBuf, Vec<u8>)> {
        let mut v = Vec::new();
        for name in [
            "pg_hba.conf",
            "pg_ident.conf",
            "postgresql.conf",
            "postgresql.auto.conf",
        ] {
            let p = self.data(i).join(name);
            v.push((p.clone(), std::fs::read(&p).unwrap_or_default()));
        }
        v.extend(files(&self.node_dir(i).join("state")));
        let mut names: Vec<String> = std::fs::read_dir(self.node_dir(i))
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        v.push((self.node_dir(i), names.join("\n").into_bytes()));
        v
    }
}

/// A real OpenSSH server inside node `i`'s namespace on its address, port 2222, with a
/// throwaway host key and a user key for root; killed when dropped.
pub struct NsSshd {
    pid: u32,
    pub config: PathBuf,
}

impl Bed {
    pub fn sshd(&self, i: usize) -> NsSshd {
        let dir = self.dir.join(format!("ssh{i}"));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::create_dir_all("/run/sshd").unwrap();
        // One user key for every node's sshd, as an admin's key would be.
        let user_key = self.dir.join("ssh_user_key");
        for key in [dir.join("host_key"), user_key.clone()] {
            if !key.exists() {
                sh(Command::new("ssh-keygen")
                    .args(["-q", "-t", "ed25519", "-N", "", "-f"])
                    .arg(&key));
            }
        }
        std::fs::copy(
            self.dir.join("ssh_user_key.pub"),
            dir.join("authorized_keys"),
        )
        .unwrap();
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.ns[i], "/usr/sbin/sshd"]);
        super::common::sshd_args(&mut c, &dir, ADDR[i], 2222);
        sh(&mut c);
        let pid = super::common::sshd_pid(&dir);
        let config = super::common::ssh_client_config(&dir, &user_key);
        NsSshd { pid, config }
    }
}

impl Drop for NsSshd {
    fn drop(&mut self) {
        let _ = Command::new("kill").arg(self.pid.to_string()).status();
    }
}
