//! This node's own services, as the vendor procedures drive them: an IIS application pool
//! (`appcmd.exe`), a Windows service (the Service Control Manager's `sc.exe`), IIS as a whole
//! (`iisreset.exe`), a reboot (`shutdown.exe`); and (`site`) whether a node's site answers.
//!
//! Each change checks its end state first (a stopped pool is "already stopped"), makes the
//! change, and waits until the state says it took (bounded), reporting what it found and did.
//! Names come from the cluster file (`app_pool`, `services`), never from guesses, and reach
//! the tools as single arguments (no shell).
//!
//! Windows only: elsewhere there is no IIS and no Service Control Manager. Debug builds (the
//! test suite) may point keyferry at stand-in tools through `KEYFERRY_TEST_SYSTEM32`, loudly.

pub(crate) mod site;

use crate::error::{Error, Result};
use crate::reason::HostReason;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// What a pool or service is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum State {
    /// Running.
    Running,
    /// Stopped.
    Stopped,
    /// Starting, not yet running.
    Starting,
    /// Stopping, not yet stopped.
    Stopping,
    /// The tool answered something else (a paused service, an unknown word).
    Other,
}

impl State {
    /// The state in words, as reports and messages say it.
    pub fn word(self) -> &'static str {
        match self {
            State::Running => "running",
            State::Stopped => "stopped",
            State::Starting => "starting",
            State::Stopping => "stopping",
            State::Other => "in another state",
        }
    }
}

/// The two ends a step asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Want {
    /// Running.
    Running,
    /// Stopped.
    Stopped,
}

impl Want {
    fn state(self) -> State {
        match self {
            Want::Running => State::Running,
            Want::Stopped => State::Stopped,
        }
    }

    fn verb(self) -> &'static str {
        match self {
            Want::Running => "start",
            Want::Stopped => "stop",
        }
    }
}

/// An IIS application pool or a Windows service, by its name on the node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "name", rename_all = "kebab-case")]
pub enum Thing {
    /// An IIS application pool.
    Pool(String),
    /// A Windows service.
    Service(String),
}

impl Thing {
    /// Its name on the node.
    pub fn name(&self) -> &str {
        match self {
            Thing::Pool(n) | Thing::Service(n) => n,
        }
    }

    fn word(&self) -> &'static str {
        match self {
            Thing::Pool(_) => "application pool",
            Thing::Service(_) => "service",
        }
    }
}

impl std::fmt::Display for Thing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {:?}", self.word(), self.name())
    }
}

pub use crate::cluster::access::check_service_name as check_name;
pub use site::{check as check_site, SiteAnswer};

/// One pool's or service's change: what it was, what it is, whether keyferry changed it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    /// The pool or service.
    #[serde(flatten)]
    pub thing: Thing,
    /// Its state before.
    pub before: State,
    /// Its state after.
    pub after: State,
    /// False when it was in the wanted state already.
    pub changed: bool,
}

/// Where the tools are: `%SystemRoot%\System32` on Windows.
#[derive(Debug, Clone)]
pub struct Tools {
    system32: PathBuf,
    /// How long a change may take to show in the state.
    pub settle: Duration,
    /// Stand-ins from `KEYFERRY_TEST_SYSTEM32` (debug builds only): the caller says so.
    pub stand_ins: bool,
}

impl Tools {
    /// This machine's tools, or why there are none.
    pub fn here() -> Result<Tools> {
        #[cfg(debug_assertions)]
        if let Some(dir) = std::env::var_os("KEYFERRY_TEST_SYSTEM32") {
            return Ok(Tools {
                system32: dir.into(),
                settle: Duration::from_secs(10),
                stand_ins: true,
            });
        }
        if cfg!(windows) {
            let root = std::env::var_os("SystemRoot").unwrap_or_else(|| "C:\\Windows".into());
            return Ok(Tools {
                system32: PathBuf::from(root).join("System32"),
                settle: Duration::from_secs(60),
                stand_ins: false,
            });
        }
        Err(Error::Host {
            why: "IIS application pools, Windows services and reboots are driven on a Windows \
                  node only, and this one is not"
                .into(),
            reason: HostReason::NotWindows,
        })
    }

    fn tool(&self, rel: &str) -> Result<PathBuf> {
        let p = rel
            .split('\\')
            .fold(self.system32.clone(), |p, part| p.join(part));
        if !p.is_file() {
            let what = match rel {
                r"inetsrv\appcmd.exe" | "iisreset.exe" => {
                    "IIS is not installed on this node (no application pool to drive)"
                }
                _ => "Windows' own tool is missing",
            };
            return Err(Error::Host {
                why: format!("{} is not there: {what}", p.display()),
                reason: HostReason::ToolMissing,
            });
        }
        Ok(p)
    }

    /// Runs a tool with `args` (each one argument, no shell), its output kept (bounded).
    fn run(&self, rel: &str, args: &[&str]) -> Result<(Option<i32>, String)> {
        let exe = self.tool(rel)?;
        let done = crate::remote::process::run(
            {
                let mut c = Command::new(&exe);
                c.args(args).stdin(Stdio::null());
                c
            },
            self.settle,
            64 << 10,
        )
        .map_err(|e| Error::Host {
            why: format!("{} {}: {e}", exe.display(), args.join(" ")),
            reason: HostReason::ToolFailed,
        })?;
        let mut out = String::from_utf8_lossy(&done.stdout).into_owned();
        out.push_str(&String::from_utf8_lossy(&done.stderr));
        Ok((done.code, out))
    }

    /// What `thing` is doing now.
    pub fn state(&self, thing: &Thing) -> Result<State> {
        check_name(thing.name()).map_err(Error::InvalidInput)?;
        match thing {
            Thing::Pool(name) => {
                let (code, out) = self.run(
                    r"inetsrv\appcmd.exe",
                    &["list", "apppool", name, "/text:state"],
                )?;
                if code != Some(0) {
                    return Err(Error::Host {
                        why: format!(
                            "IIS has no application pool {name:?}: {}",
                            crate::text::one_line(out.trim())
                        ),
                        reason: HostReason::NoSuchPool,
                    });
                }
                Ok(pool_state(&out))
            }
            Thing::Service(name) => {
                let (code, out) = self.run("sc.exe", &["query", name])?;
                match (code, service_state(&out)) {
                    (Some(0), Some(s)) => Ok(s),
                    _ => Err(Error::Host {
                        why: format!(
                            "the Service Control Manager has no service {name:?}: {}",
                            crate::text::one_line(out.trim())
                        ),
                        reason: HostReason::NoSuchService,
                    }),
                }
            }
        }
    }

    /// Brings `thing` to `want`: nothing when it is there already; else the tool's stop or
    /// start, then its state read until it shows `want` (within [`Tools::settle`]).
    pub fn set(&self, thing: &Thing, want: Want) -> Result<Change> {
        let before = self.state(thing)?;
        if before == want.state() {
            return Ok(Change {
                thing: thing.clone(),
                before,
                after: before,
                changed: false,
            });
        }
        let name = thing.name();
        let (code, out) = match thing {
            Thing::Pool(_) => self.run(
                r"inetsrv\appcmd.exe",
                &[want.verb(), "apppool", &format!("/apppool.name:{name}")],
            )?,
            Thing::Service(_) => self.run("sc.exe", &[want.verb(), name])?,
        };
        let began = Instant::now();
        loop {
            let now = self.state(thing)?;
            if now == want.state() {
                return Ok(Change {
                    thing: thing.clone(),
                    before,
                    after: now,
                    changed: true,
                });
            }
            if began.elapsed() >= self.settle {
                return Err(Error::Host {
                    why: format!(
                        "{thing} is {} {}s after `{} {}` (which said: {}); wanted {}",
                        now.word(),
                        self.settle.as_secs(),
                        want.verb(),
                        name,
                        crate::text::one_line(out.trim()),
                        want.state().word()
                    ),
                    reason: HostReason::DidNotSettle { exit: code },
                });
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// `iisreset /restart`: IIS stopped and started, every pool with it.
    pub fn restart_iis(&self) -> Result<String> {
        let (code, out) = self.run("iisreset.exe", &["/restart"])?;
        if code != Some(0) {
            return Err(Error::Host {
                why: format!(
                    "iisreset /restart failed: {}",
                    crate::text::one_line(out.trim())
                ),
                reason: HostReason::IisReset,
            });
        }
        Ok(crate::text::one_line(out.trim()).into_owned())
    }

    /// Asks Windows to restart in `delay` (planned maintenance, with `why` as its comment):
    /// the command returns at once; the node goes down a little later.
    pub fn reboot(&self, delay: Duration, why: &str) -> Result<()> {
        let t = delay.as_secs().clamp(1, 600).to_string();
        let (code, out) = self.run("shutdown.exe", &["/r", "/t", &t, "/d", "p:4:1", "/c", why])?;
        if code != Some(0) {
            return Err(Error::Host {
                why: format!(
                    "shutdown /r was refused: {}",
                    crate::text::one_line(out.trim())
                ),
                reason: HostReason::RebootRefused,
            });
        }
        Ok(())
    }
}

/// appcmd's `/text:state`: `Started`, `Stopped`, `Starting`, `Stopping`, `Unknown`.
fn pool_state(out: &str) -> State {
    match out.trim() {
        "Started" => State::Running,
        "Stopped" => State::Stopped,
        "Starting" => State::Starting,
        "Stopping" => State::Stopping,
        _ => State::Other,
    }
}

/// `sc query`'s `STATE : 4  RUNNING` line, by its number (the words are not translated, but
/// the number is what the Service Control Manager defines).
fn service_state(out: &str) -> Option<State> {
    let line = out.lines().find(|l| l.trim_start().starts_with("STATE"))?;
    let n: u32 = line
        .split_once(':')?
        .1
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    Some(match n {
        1 => State::Stopped,
        2 => State::Starting,
        3 => State::Stopping,
        4 => State::Running,
        _ => State::Other,
    })
}

/// When this machine last started, from its uptime; a node that answers with a later one
/// has rebooted.
pub fn boot_time() -> Option<crate::time::Timestamp> {
    let up = uptime()?;
    let now = crate::time::Timestamp::now();
    Some(crate::time::Timestamp::from_unix(
        now.unix().saturating_sub(up.as_secs()),
    ))
}

#[cfg(windows)]
fn uptime() -> Option<Duration> {
    Some(Duration::from_millis(crate::os::tick_count()))
}

#[cfg(not(windows))]
fn uptime() -> Option<Duration> {
    let text = std::fs::read_to_string("/proc/uptime").ok()?;
    let secs: f64 = text.split_whitespace().next()?.parse().ok()?;
    Some(Duration::from_secs_f64(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_read_as_the_tools_write_them() {
        assert_eq!(pool_state("Started\r\n"), State::Running);
        assert_eq!(pool_state("Stopped\r\n"), State::Stopped);
        assert_eq!(pool_state("Unknown\r\n"), State::Other);
        let sc = "\r\nSERVICE_NAME: SbPAMWebServices\r\n        TYPE               : 10  WIN32_OWN_PROCESS\r\n        STATE              : 4  RUNNING\r\n                                (STOPPABLE, NOT_PAUSABLE, ACCEPTS_SHUTDOWN)\r\n";
        assert_eq!(service_state(sc), Some(State::Running));
        assert_eq!(
            service_state(&sc.replace("4  RUNNING", "1  STOPPED")),
            Some(State::Stopped)
        );
        assert_eq!(
            service_state(&sc.replace("4  RUNNING", "7  PAUSED")),
            Some(State::Other)
        );
        assert_eq!(
            service_state("[SC] EnumQueryServicesStatus:OpenService FAILED 1060"),
            None
        );
    }

    #[test]
    fn names_that_would_be_another_argument_are_refused() {
        for bad in ["", "/apppool.name:x", "-x", "a\"b", "a\\b", "a\nb"] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
        for good in ["SecretServer", "Secret Server (x86)", "SbPAM.Web Services"] {
            assert!(check_name(good).is_ok(), "{good:?}");
        }
    }
}
