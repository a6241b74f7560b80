//! The local PostgreSQL server, through PostgreSQL's own programs: `pg_ctl` (or the service
//! manager where the node names a service), `pg_controldata`, `pg_basebackup`, `pg_rewind`.
//! On Unix, run as root, they run as the account that owns the data folder (PostgreSQL
//! refuses to run as anyone else, and refuses root), through `setpriv` with that account's
//! user and group, no supplementary groups and that account's own environment (no PAM
//! session, unlike `runuser`). Their arguments never hold a password: connection strings name the password
//! file (`passfile=`).

use super::config::HaNode;
use crate::error::{Error, Result};
use crate::reason::HaReason;
use crate::remote::process::{self, Finished};
use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// Most output kept from PostgreSQL's programs.
const MAX_OUT: u64 = 1024 * 1024;

/// A command for one of the node's PostgreSQL programs, as the node's account.
pub fn command(node: &HaNode, program: &str, args: &[OsString]) -> Command {
    let exe = node.program(program);
    #[cfg(unix)]
    if rustix::process::geteuid().is_root() {
        if let Some((uid, gid)) = node.data.as_deref().and_then(data_owner) {
            let mut c = Command::new("setpriv");
            // --reset-env: the account's own HOME, USER and a plain PATH, not root's
            // environment (libpq would otherwise look for ~/.postgresql certificates and
            // keys in /root, and take PGSSLMODE and the like from root's session).
            c.arg(format!("--reuid={uid}"))
                .arg(format!("--regid={gid}"))
                .arg("--clear-groups")
                .arg("--reset-env")
                .arg("--")
                .arg(exe)
                .args(args);
            c.current_dir("/");
            return c;
        }
    }
    let mut c = Command::new(exe);
    c.args(args);
    c
}

/// Runs a program and insists it succeeds.
pub fn run_ok(
    node: &HaNode,
    program: &str,
    args: &[OsString],
    timeout: Duration,
) -> Result<Finished> {
    let what = format!("{program} on {}", node.name);
    let done = process::run(command(node, program, args), timeout, MAX_OUT).map_err(|e| {
        Error::HaFailed {
            why: format!("{what}: {e}"),
            reason: HaReason::Program,
        }
    })?;
    if !done.success {
        return Err(Error::HaFailed {
            why: format!("{what} failed: {}", done.last_error_line()),
            reason: HaReason::ProgramSaid,
        });
    }
    Ok(done)
}

/// The owner of the data folder (or, before it exists, of the folder it goes in), when that
/// is not root. The name itself is looked at, never followed: a link the service account
/// put there names the service account.
#[cfg(unix)]
fn data_owner(data: &Path) -> Option<(u32, u32)> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::symlink_metadata(data)
        .ok()
        .or_else(|| std::fs::metadata(data.parent()?).ok())?;
    (meta.uid() != 0).then(|| (meta.uid(), meta.gid()))
}

fn os(s: impl Into<OsString>) -> OsString {
    s.into()
}

/// Where the server of each data folder wrote its output when keyferry last saw it run
/// (the file its standard error went to), so that a server keyferry starts again logs where
/// it logged before.
static LOGS: std::sync::Mutex<Vec<(PathBuf, PathBuf)>> = std::sync::Mutex::new(Vec::new());

/// Notes where the running server of `data` sends its output (Linux: its postmaster's
/// standard error, when that is a file; `logging_collector` writes its own files anyway).
fn note_log(data: &Path) {
    #[cfg(target_os = "linux")]
    {
        let Some(pid) = pid_of(&data.join("postmaster.pid")) else {
            return;
        };
        let Ok(target) = std::fs::read_link(format!("/proc/{pid}/fd/2")) else {
            return;
        };
        let is_file = std::fs::metadata(&target).is_ok_and(|m| m.is_file());
        if target.is_absolute() && is_file {
            let mut logs = LOGS.lock().unwrap_or_else(|e| e.into_inner());
            logs.retain(|(d, _)| d != data);
            logs.push((data.to_owned(), target));
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = data;
}

/// Where the server's output goes when keyferry starts it with `pg_ctl`: where it went when
/// keyferry last saw it run, else beside the data folder (`<data>.keyferry.log`), never
/// inside it (base backups and rewinds copy it).
pub fn start_log(data: &Path) -> PathBuf {
    LOGS.lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .find(|(d, _)| d == data)
        .map(|(_, l)| l.clone())
        .unwrap_or_else(|| sibling(data, ".keyferry.log"))
}

/// A sibling of the data folder: `<data><suffix>`.
pub fn sibling(data: &Path, suffix: &str) -> PathBuf {
    let mut name = data.file_name().unwrap_or_default().to_os_string();
    name.push(suffix);
    data.with_file_name(name)
}

/// Whether the local server of `data` runs (`pg_ctl status`: 0 runs, 3 stopped).
pub fn is_running(node: &HaNode, data: &Path) -> Result<bool> {
    let done = process::run(
        command(node, "pg_ctl", &[os("status"), os("-D"), data.into()]),
        Duration::from_secs(30),
        MAX_OUT,
    )
    .map_err(|e| Error::HaFailed {
        why: format!("pg_ctl status on {}: {e}", node.name),
        reason: HaReason::Program,
    })?;
    match done.code {
        Some(0) => {
            note_log(data);
            Ok(true)
        }
        Some(3) => Ok(false),
        _ => Err(Error::HaRefused {
            why: format!(
                "pg_ctl status on {} for {}: {}",
                node.name,
                data.display(),
                done.last_error_line()
            ),
            reason: HaReason::DataFolder,
        }),
    }
}

/// Stops the local server cleanly (fast mode: sessions are ended, a shutdown checkpoint is
/// written and, on a primary, sent to the replicas before it exits).
pub fn stop(node: &HaNode, data: &Path) -> Result<()> {
    note_log(data);
    match &node.service {
        Some(service) => service_control(node, service, false),
        None => pg_ctl_stop(node, data, "fast"),
    }
}

/// `pg_ctl stop -m <mode>`, then waits until the server is gone. On Unix the wait is
/// keyferry's: `postmaster.pid` is removed as the server exits, looked for every 10 ms
/// (pg_ctl -w looks every 100 ms).
fn pg_ctl_stop(node: &HaNode, data: &Path, mode: &str) -> Result<()> {
    #[cfg(unix)]
    {
        run_ok(
            node,
            "pg_ctl",
            &[
                os("stop"),
                os("-D"),
                data.into(),
                os("-m"),
                os(mode),
                os("-W"),
            ],
            Duration::from_secs(30),
        )?;
        let pidfile = data.join("postmaster.pid");
        let gone = wait_for_every(Duration::from_secs(120), Duration::from_millis(10), || {
            Ok(std::fs::symlink_metadata(&pidfile).is_err())
        })?;
        if !gone {
            return Err(Error::HaFailed {
                why: format!(
                    "the server of {} on {} did not stop within 120 s",
                    data.display(),
                    node.name
                ),
                reason: HaReason::WontStop,
            });
        }
        Ok(())
    }
    #[cfg(not(unix))]
    pg_ctl_wait(node, data, &[os("stop"), os("-m"), os(mode)])
}

/// Stops the local server whose data is about to be replaced (`replica init`): at once,
/// without the shutdown checkpoint, which would only write pages the copy replaces while the
/// copy competes for the disk. Should the old folder be needed again, its start is an
/// ordinary crash recovery from its WAL. A service is stopped through its manager as usual.
pub fn stop_for_replacement(node: &HaNode, data: &Path) -> Result<()> {
    note_log(data);
    match &node.service {
        Some(service) => service_control(node, service, false),
        None => pg_ctl_stop(node, data, "immediate"),
    }
}

/// Starts the local server and waits until it accepts connections.
pub fn start(node: &HaNode, data: &Path) -> Result<()> {
    match &node.service {
        Some(service) => service_control(node, service, true),
        #[cfg(unix)]
        None => {
            // pg_ctl -w looks every 100 ms; the server's own status line in postmaster.pid,
            // read every 10 ms, says "ready" (or "standby") as soon as it takes connections.
            // A file left by a crashed server is not the new server's.
            let stale = pid_of(&data.join("postmaster.pid"));
            run_ok(
                node,
                "pg_ctl",
                &[
                    os("start"),
                    os("-l"),
                    start_log(data).into(),
                    os("-D"),
                    data.into(),
                    os("-W"),
                ],
                Duration::from_secs(30),
            )?;
            wait_ready(node, data, stale, Duration::from_secs(120))
        }
        #[cfg(not(unix))]
        None => pg_ctl_wait(node, data, &[os("start"), os("-l"), start_log(data).into()]),
    }
}

/// The process id in a `postmaster.pid`, if there is one.
#[cfg(unix)]
fn pid_of(pidfile: &Path) -> Option<i32> {
    let bytes = crate::fs::read_bounded(pidfile, 4096, "postmaster.pid").ok()?;
    String::from_utf8_lossy(&bytes)
        .lines()
        .next()?
        .trim()
        .parse()
        .ok()
}

/// Waits until the server of `data` says it takes connections (`postmaster.pid`'s status
/// line), failing as soon as its process is gone.
#[cfg(unix)]
fn wait_ready(node: &HaNode, data: &Path, stale: Option<i32>, limit: Duration) -> Result<()> {
    let pidfile = data.join("postmaster.pid");
    let started = Instant::now();
    let gone = |why: String| Error::HaFailed {
        why: format!("the server of {} on {} {why}", data.display(), node.name),
        reason: HaReason::ServerGone {
            log: start_log(data),
        },
    };
    loop {
        match crate::fs::read_bounded(&pidfile, 4096, "postmaster.pid") {
            Ok(bytes) => {
                let text = String::from_utf8_lossy(&bytes);
                let lines: Vec<&str> = text.lines().collect();
                let pid = lines.first().and_then(|l| l.trim().parse::<i32>().ok());
                if pid.is_none() || pid == stale {
                    // Being written, or still the old one.
                    if started.elapsed() > Duration::from_secs(10) {
                        return Err(gone("did not start (no postmaster.pid of its own)".into()));
                    }
                    std::thread::sleep(Duration::from_millis(10));
                    continue;
                }
                if matches!(lines.get(7).map(|l| l.trim()), Some("ready" | "standby")) {
                    return Ok(());
                }
                let alive = pid.and_then(rustix::process::Pid::from_raw).map(|pid| {
                    !matches!(
                        rustix::process::test_kill_process(pid),
                        Err(rustix::io::Errno::SRCH)
                    )
                });
                if alive == Some(false) {
                    return Err(gone("stopped while starting".into()));
                }
            }
            // Not written yet, or removed by a server that gave up.
            Err(e) if e.is_missing() => {
                if started.elapsed() > Duration::from_secs(10) {
                    return Err(gone("did not start (no postmaster.pid)".into()));
                }
            }
            Err(e) => return Err(e),
        }
        if started.elapsed() > limit {
            return Err(gone(format!(
                "did not take connections within {}s",
                limit.as_secs()
            )));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// `pg_ctl <args> -D <data> -w -t 120`: waits up to two minutes for the server's state.
#[cfg(not(unix))]
fn pg_ctl_wait(node: &HaNode, data: &Path, args: &[OsString]) -> Result<()> {
    let mut all = args.to_vec();
    all.extend([os("-D"), data.into(), os("-w"), os("-t"), os("120")]);
    run_ok(node, "pg_ctl", &all, Duration::from_secs(150))?;
    Ok(())
}

/// Starts or stops the server's service: systemd on Linux, the service manager on Windows
/// (`net start`/`net stop` wait for the service to reach its state).
fn service_control(node: &HaNode, service: &str, start: bool) -> Result<()> {
    let (prog, args): (&str, Vec<&str>) = if cfg!(windows) {
        (
            "net.exe",
            vec![if start { "start" } else { "stop" }, service],
        )
    } else {
        (
            "systemctl",
            vec![if start { "start" } else { "stop" }, service],
        )
    };
    let mut c = Command::new(prog);
    c.args(&args);
    let done = process::run(c, Duration::from_secs(180), MAX_OUT).map_err(|e| Error::HaFailed {
        why: format!("{prog} {} on {}: {e}", args.join(" "), node.name),
        reason: HaReason::ServiceControl,
    })?;
    if !done.success {
        return Err(Error::HaFailed {
            why: format!(
                "{prog} {} on {} failed: {}",
                args.join(" "),
                node.name,
                done.last_error_line()
            ),
            reason: HaReason::ServiceFailed,
        });
    }
    Ok(())
}

/// Has the local server of `data` read its configuration files again (`pg_ctl reload`, as
/// the service account; it needs no login, and works whether or not a service manager
/// started the server).
pub fn reload(node: &HaNode, data: &Path) -> Result<()> {
    run_ok(
        node,
        "pg_ctl",
        &[os("reload"), os("-D"), data.into()],
        Duration::from_secs(30),
    )?;
    Ok(())
}

/// The major version of the node's PostgreSQL programs (`pg_controldata --version`), or
/// `None` when its output is not understood.
pub fn bin_major(node: &HaNode) -> Result<Option<u32>> {
    let done = run_ok(
        node,
        "pg_controldata",
        &[os("--version")],
        Duration::from_secs(30),
    )?;
    let text = String::from_utf8_lossy(&done.stdout);
    Ok(text
        .split_whitespace()
        .last()
        .and_then(|v| v.split('.').next())
        .and_then(|m| m.parse().ok()))
}

/// What `pg_controldata` says about a data folder (the lines keyferry needs).
#[derive(Debug, Clone, Default)]
pub struct Control {
    pub fields: BTreeMap<String, String>,
}

impl Control {
    pub fn get(&self, k: &str) -> Option<&str> {
        self.fields.get(k).map(String::as_str)
    }

    /// "shut down" (a primary stopped cleanly), "shut down in recovery" (a replica), ...
    pub fn state(&self) -> &str {
        self.get("Database cluster state").unwrap_or("unknown")
    }

    /// Whether `pg_rewind` can work on it: `wal_log_hints` on or data checksums.
    pub fn rewindable(&self) -> bool {
        self.get("wal_log_hints setting") == Some("on")
            || self
                .get("Data page checksum version")
                .is_some_and(|v| v != "0")
    }
}

/// Reads `pg_controldata` of a (stopped or running) data folder.
pub fn control(node: &HaNode, data: &Path) -> Result<Control> {
    let done = run_ok(
        node,
        "pg_controldata",
        &[os("-D"), data.into()],
        Duration::from_secs(30),
    )?;
    let mut fields = BTreeMap::new();
    for line in String::from_utf8_lossy(&done.stdout).lines() {
        if let Some((k, v)) = line.split_once(':') {
            fields.insert(k.trim().to_owned(), v.trim().to_owned());
        }
    }
    Ok(Control { fields })
}

/// Waits until `check` says yes, up to `limit`, polling every 20 ms.
pub fn wait_for(limit: Duration, check: impl FnMut() -> Result<bool>) -> Result<bool> {
    wait_for_every(limit, Duration::from_millis(20), check)
}

/// Waits until `check` says yes, up to `limit`, polling every `every`.
pub fn wait_for_every(
    limit: Duration,
    every: Duration,
    mut check: impl FnMut() -> Result<bool>,
) -> Result<bool> {
    let deadline = Instant::now() + limit;
    loop {
        if check()? {
            return Ok(true);
        }
        if Instant::now() >= deadline {
            return Ok(false);
        }
        std::thread::sleep(every);
    }
}
