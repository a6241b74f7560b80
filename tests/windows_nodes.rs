//! Windows nodes as they are: reached over OpenSSH, whose default shell is `cmd.exe`, running
//! the Windows build of keyferry. The stand-in node is a real sshd on loopback whose forced
//! command hands the client's command to a small Windows program under Wine
//! (`tests/wine/openssh-exec.c`) that makes exactly the call OpenSSH for Windows makes:
//! `CreateProcessW` of `"C:\Windows\System32\cmd.exe" /c "<command>"`, the command verbatim,
//! stdin, stdout, stderr and the exit code passed through. Node names, folders and the cluster
//! file's path are full of what `cmd.exe` reads (`&`, `^`, `%`, `!`, parentheses, spaces).
//!
//! What only real Windows can show: Wine's `cmd.exe` is close to Windows' but not identical
//! (caret handling in some quoted forms), and Wine's PowerShell is a stub, so the PowerShell
//! form of the command line (`& '<program>' request`) is checked against PowerShell's
//! documented grammar in `src/remote/invoke.rs`, not run here.

#![cfg(unix)]

use crate::common;

use common::*;
use std::path::{Path, PathBuf};

const KEY_A: &[u8] = b"NPS-KEYS-A\x00\x01\x02 primary's keys.exp";
const KEY_B: &[u8] = b"NPS-KEYS-B\x00\x09 another keys.exp";
const SETTINGS_A: &[u8] = b"{\"ConnectionStrings\":{\"x\":\"primary\"}}";
const SETTINGS_B: &[u8] = b"{\"ConnectionStrings\":{\"x\":\"old\"}}";

/// The secondary's and the Action host's names: each would run something in `cmd.exe` if a
/// shell ever read it (`&copy nul ...` creates a file in the login's folder).
const NPS2: &str = "nps2 & co (100%OS%)^";
const ACT: &str = "act&copy nul kf-canary&(x)%PATH%^!";

/// The Windows build of keyferry, or `None` (said) when it is not built; `scripts/test-all`
/// builds it first and sets `KEYFERRY_REQUIRE_WINE`, so there it is never skipped.
#[allow(clippy::print_stderr)] // the SKIPPED line must be visible in test output
fn windows_exe() -> Option<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let exe = std::env::var_os("KEYFERRY_WINDOWS_EXE")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target/x86_64-pc-windows-gnu/debug/keyferry.exe"));
    let ready = exe.is_file()
        && Path::new("/usr/lib/wine/wine64").exists()
        && wine_prefix().join("drive_c/windows/system32").is_dir()
        && Path::new("/usr/bin/x86_64-w64-mingw32-gcc").exists();
    if !ready {
        assert!(
            std::env::var_os("KEYFERRY_REQUIRE_WINE").is_none(),
            "the Windows build, Wine's prefix or mingw is missing: {}",
            exe.display()
        );
        eprintln!(
            "SKIPPED: no Windows build at {} (or no Wine prefix): run \
             eval \"$(scripts/wine-env)\" && cargo build --target x86_64-pc-windows-gnu --features failpoints",
            exe.display()
        );
        return None;
    }
    Some(exe)
}

/// A Linux path as the Windows node sees it: Wine's drive Z: is `/`.
fn win(p: &Path) -> String {
    format!("Z:{}", p.display().to_string().replace('/', "\\"))
}

/// A TOML basic string (JSON's escapes are TOML's).
fn toml(s: &str) -> String {
    serde_json::to_string(s).unwrap()
}

/// The Wine prefix the node's "Windows" runs in: `KEYFERRY_NODES_WINEPREFIX` (`scripts/test-all`
/// gives this test a prefix of its own, so that it can run beside the Windows build's own
/// tests under Wine), else the one `scripts/wine-env` makes.
fn wine_prefix() -> PathBuf {
    std::env::var_os("KEYFERRY_NODES_WINEPREFIX").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("target/wine-prefix"),
        PathBuf::from,
    )
}

/// The OpenSSH stand-in and the tools' stand-in, built with mingw once per test run (each
/// build takes a second) under `target/wine/`, and copied into each bed.
fn wine_programs() -> &'static (PathBuf, PathBuf) {
    static BUILT: std::sync::OnceLock<(PathBuf, PathBuf)> = std::sync::OnceLock::new();
    BUILT.get_or_init(|| {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let out = std::env::var_os("CARGO_TARGET_DIR")
            .map_or_else(|| root.join("target"), PathBuf::from)
            .join("wine");
        std::fs::create_dir_all(&out).unwrap();
        let build = |name: &str, source: &str, libs: &[&str]| {
            let exe = out.join(format!("{name}.exe"));
            let part = out.join(format!("{name}.{}.part.exe", std::process::id()));
            let built = std::process::Command::new("x86_64-w64-mingw32-gcc")
                .args(["-O2", "-municode", "-o"])
                .arg(&part)
                .arg(root.join("tests/wine").join(source))
                .args(libs)
                .status()
                .unwrap();
            assert!(built.success(), "the stand-in {name} did not build");
            std::fs::rename(&part, &exe).unwrap();
            exe
        };
        (
            build("openssh-exec", "openssh-exec.c", &[]),
            build("standin", "standin.c", &["-lshell32"]),
        )
    })
}

/// The tests here share one Wine prefix: one at a time (Wine's process creation is not
/// reliable with several sessions starting at once, which real Windows does not show).
static WINE: std::sync::Mutex<()> = std::sync::Mutex::new(());

struct Bed {
    _one_at_a_time: std::sync::MutexGuard<'static, ()>,
    /// The Windows build.
    exe: PathBuf,
    /// The stand-in tools' folder (KEYFERRY_TEST_SYSTEM32 on the node).
    sys32: PathBuf,
    /// The node keyferry runs as here (the cluster's primary).
    driver: std::cell::Cell<&'static str>,
    dir: tempfile::TempDir,
    sshd: Sshd,
    /// Every command line the node's sshd was given, one per line.
    log: PathBuf,
    /// The login's folder there (cmd.exe's current folder).
    home: PathBuf,
    /// keyferry.exe as the node names it (under `Program Files (x86)`).
    program: String,
}

impl Bed {
    fn start() -> Option<Bed> {
        Bed::start_as(false)
    }

    /// With `subsystem`, the node's sshd has `Subsystem keyferry <keyferry.exe> request` and
    /// no forced command: keyferry.exe runs with no shell at all.
    fn start_as(subsystem: bool) -> Option<Bed> {
        let exe = windows_exe()?;
        let guard = WINE.lock().unwrap_or_else(|e| e.into_inner());
        let dir = tempfile::tempdir().unwrap();
        // One running Wine for every session, as one Windows for every login: its server
        // kept for a minute after the last client, its services started here, outside any
        // session. Otherwise each session boots Wine's services, which hold the session's
        // output open (sshd waits for them) until Wine shuts down again.
        let prefix = wine_prefix();
        let _ = std::process::Command::new("/usr/lib/wine/wineserver")
            .arg("-p60")
            .env("WINEPREFIX", &prefix)
            .status();
        let _ = std::process::Command::new("/usr/lib/wine/wine64")
            .args(["cmd", "/c", "exit"])
            .env("WINEPREFIX", &prefix)
            .env("WINEDEBUG", "-all")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status();
        let (exec, standin) = wine_programs();
        let launcher = dir.path().join("openssh-exec.exe");
        std::fs::copy(exec, &launcher).unwrap();
        // Stand-ins for appcmd, sc, iisreset and shutdown (no IIS, no product service here).
        let sys32 = dir.path().join("Windows/System32");
        std::fs::create_dir_all(sys32.join("inetsrv")).unwrap();
        for tool in [
            "inetsrv/appcmd.exe",
            "sc.exe",
            "iisreset.exe",
            "shutdown.exe",
        ] {
            std::fs::copy(standin, sys32.join(tool)).unwrap();
        }
        let folder = dir.path().join("Program Files (x86)/keyferry");
        std::fs::create_dir_all(&folder).unwrap();
        std::os::unix::fs::symlink(&exe, folder.join("keyferry.exe")).unwrap();
        let home = dir.path().join("home");
        std::fs::create_dir(&home).unwrap();
        let log = dir.path().join("commands.log");
        let script = shell_script(
            &dir.path().join("force-command"),
            &format!(
                "printf '%s\\n' \"$SSH_ORIGINAL_COMMAND\" >> {log:?}\n\
                 cd {home:?}\n\
                 export WINEPREFIX={prefix:?} WINEARCH=win64 WINEDEBUG=-all LANG=C.UTF-8 \
                 KEYFERRY_INSECURE_TEST_WORK_FACTOR={WORK_FACTOR} NO_COLOR=1 \
                 KEYFERRY_TEST_SYSTEM32={sys:?} STANDIN_DIR={sys:?}\n\
                 exec /usr/lib/wine/wine64 {launcher:?}\n",
                prefix = wine_prefix(),
                sys = win(&sys32),
            ),
        );
        let sub = shell_script(
            &dir.path().join("subsystem"),
            &format!(
                "printf 'subsystem keyferry\\n' >> {log:?}\n\
                 cd {home:?}\n\
                 export WINEPREFIX={prefix:?} WINEARCH=win64 WINEDEBUG=-all LANG=C.UTF-8 \
                 KEYFERRY_INSECURE_TEST_WORK_FACTOR={WORK_FACTOR} NO_COLOR=1\n\
                 exec /usr/lib/wine/wine64 {exe:?} request\n",
                prefix = wine_prefix(),
                exe = folder.join("keyferry.exe"),
            ),
        );
        let option = if subsystem {
            format!("Subsystem keyferry {}", sub.display())
        } else {
            format!("ForceCommand {}", script.display())
        };
        let sshd = Sshd::start_with(dir.path(), &[option])?;
        Some(Bed {
            _one_at_a_time: guard,
            exe,
            sys32,
            driver: std::cell::Cell::new("nps1"),
            program: win(&folder.join("keyferry.exe")),
            dir,
            sshd,
            log,
            home,
        })
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn cluster(&self) -> PathBuf {
        self.path("cluster (1) & %OS%.toml")
    }

    /// A Privilege Secure cluster: nps1 here (Linux), its secondary and an Action host on the
    /// Windows node, with `extra` in each Windows node's `[[node]]`.
    fn write_cluster(&self, extra: &str) {
        let mut t = format!(
            "name = \"nps\"\nprofile = \"privilege-secure\"\n\n[ha]\npassfile = {}\n\n\
             [[node]]\nname = \"nps1\"\nrole = \"primary\"\naddress = \"10.0.5.1\"\n\
             state_dir = {}\npaths = {{ keytools = {}, ha = {} }}\n",
            toml(&self.path("pgpass").display().to_string()),
            toml(&self.path("nps1/state").display().to_string()),
            toml(&self.path("nps1/KeyTools").display().to_string()),
            toml(&self.path("nps1/HA").display().to_string()),
        );
        for (name, role, ip) in [
            (NPS2, "secondary", "10.0.5.2"),
            (ACT, "action", "10.0.5.11"),
        ] {
            let d = self.node_dir(name);
            let mut paths = format!("keytools = {}", toml(&win(&d.join("Key Tools (x86)"))));
            if role == "secondary" {
                paths.push_str(&format!(", ha = {}", toml(&win(&d.join("HA & more")))));
            }
            t.push_str(&format!(
                "\n[[node]]\nname = {}\nrole = \"{role}\"\naddress = \"{ip}\"\n\
                 access = \"ssh://root@127.0.0.1:{}\"\nremote_keyferry = {}\n\
                 remote_cluster = {}\nstate_dir = {}\npaths = {{ {paths} }}\n{extra}\n",
                toml(name),
                self.sshd.port,
                toml(&self.program),
                toml(&win(&self.cluster())),
                toml(&win(&d.join("state %TEMP%"))),
            ));
        }
        std::fs::write(self.cluster(), t).unwrap();
    }

    /// A Secret Server cluster: web1 here (Linux), a web node and a DR node on the Windows
    /// node, each with `extra` in its `[[node]]`; its files laid out.
    fn write_ss_cluster(&self, extra: &str) {
        self.driver.set("web1");
        let app = self.path("web1/app");
        std::fs::create_dir_all(&app).unwrap();
        std::fs::write(app.join("encryption.config"), KEY_A).unwrap();
        std::fs::write(app.join("web.config"), "<configuration/>").unwrap();
        let mut t = format!(
            "name = \"ss\"\nprofile = \"secret-server\"\n\n\
             [[node]]\nname = \"web1\"\nrole = \"primary\"\naddress = \"10.0.6.1\"\n\
             state_dir = {}\npaths = {{ app = {} }}\n",
            toml(&self.path("web1/state").display().to_string()),
            toml(&app.display().to_string()),
        );
        for (name, role, ip) in [(NPS2, "secondary", "10.0.6.2"), (ACT, "dr", "10.0.6.3")] {
            let d = self.node_dir(name).join("Secret Server");
            std::fs::create_dir_all(&d).unwrap();
            std::fs::write(d.join("encryption.config"), KEY_A).unwrap();
            t.push_str(&format!(
                "\n[[node]]\nname = {}\nrole = \"{role}\"\naddress = \"{ip}\"\n\
                 access = \"ssh://root@127.0.0.1:{}\"\nremote_keyferry = {}\n\
                 remote_cluster = {}\nstate_dir = {}\npaths = {{ app = {} }}\n{extra}\n",
                toml(name),
                self.sshd.port,
                toml(&self.program),
                toml(&win(&self.cluster())),
                toml(&win(&self.node_dir(name).join("state"))),
                toml(&win(&d)),
            ));
        }
        std::fs::write(self.cluster(), t).unwrap();
    }

    /// A Windows node's own folder (named after it, special characters and all).
    fn node_dir(&self, name: &str) -> PathBuf {
        self.path("nodes").join(name)
    }

    /// nps1 holds KEY_A and its settings; nps2 another set; the Action host none.
    fn lay_out(&self) {
        for (dir, files) in [
            (
                self.path("nps1"),
                vec![
                    ("KeyTools/keys.exp", KEY_A),
                    ("HA/appsettings.json", SETTINGS_A),
                ],
            ),
            (
                self.node_dir(NPS2),
                vec![
                    ("Key Tools (x86)/keys.exp", KEY_B),
                    ("HA & more/appsettings.json", SETTINGS_B),
                ],
            ),
            (self.node_dir(ACT), vec![]),
        ] {
            std::fs::create_dir_all(dir.join("state")).unwrap();
            for (rel, bytes) in files {
                let p = dir.join(rel);
                std::fs::create_dir_all(p.parent().unwrap()).unwrap();
                std::fs::write(p, bytes).unwrap();
            }
        }
        std::fs::create_dir_all(self.node_dir(ACT).join("Key Tools (x86)")).unwrap();
        std::fs::write(
            self.path("pgpass"),
            "*:5432:*:postgres:not-used-here\n*:5432:*:repuser:not-used-here\n",
        )
        .unwrap();
        private(&self.path("pgpass"));
    }

    /// `keyferry <args> -c <cluster> [--node nps1] --ssh-config <its config>` here (the
    /// audit takes no node: it runs from anywhere).
    fn keyferry(&self, args: &[&str]) -> Run {
        let cl = self.cluster();
        let cfg = self.sshd.config.clone();
        let mut a: Vec<std::ffi::OsString> = args.iter().map(Into::into).collect();
        a.extend(argv!["-c", cl, "--ssh-config", cfg]);
        if args[0] != "audit" {
            a.extend(argv!["--node", self.driver.get()]);
        }
        // The stand-in node never restarts: a reboot step's wait ends (fails) in seconds.
        keyferry_env(&a, None, &[("KEYFERRY_TEST_REBOOT_DEADLINE", "2s")])
    }

    /// keyferry.exe run on the Windows node itself (under Wine, no ssh): `args` then
    /// `-c <cluster as the node names it> --node <node> --json`.
    fn on_node(&self, node: &str, args: &[&str]) -> Run {
        let cl = win(&self.cluster());
        let mut a: Vec<&str> = args.to_vec();
        a.extend(["-c", &cl, "--node", node, "--json"]);
        let out = std::process::Command::new("/usr/lib/wine/wine64")
            .arg(&self.exe)
            .args(&a)
            .env("WINEPREFIX", wine_prefix())
            .env("WINEDEBUG", "-all")
            .env("KEYFERRY_TEST_SYSTEM32", win(&self.sys32))
            .env("STANDIN_DIR", win(&self.sys32))
            .env("NO_COLOR", "1")
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        Run {
            args: a.iter().map(|s| s.to_string()).collect(),
            out,
        }
    }

    /// What the stand-in tools were asked, one call per line (`tool|arg|arg...`), and the
    /// log emptied.
    fn tool_calls(&self) -> Vec<String> {
        let p = self.sys32.join("calls.log");
        let text = std::fs::read_to_string(&p).unwrap_or_default();
        let _ = std::fs::remove_file(&p);
        text.lines().map(str::to_owned).collect()
    }

    fn commands(&self) -> Vec<String> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }
}

fn target<'a>(doc: &'a serde_json::Value, node: &str) -> &'a serde_json::Value {
    doc["targets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["node"] == node)
        .unwrap_or_else(|| panic!("no target {node} in {doc}"))
}

/// Push, audit and a peer's HA check through cmd.exe on the Windows node, with node names,
/// folders and the cluster file's path full of what cmd.exe reads: each works, the node's
/// shell is found out as cmd, and the only command lines the node ever saw are the probe and
/// `"<keyferry.exe>" request`.
#[test]
fn a_windows_node_behind_cmd_exe_takes_pushes_and_answers_audits_and_checks() {
    let Some(bed) = Bed::start() else {
        return;
    };
    bed.lay_out();
    bed.write_cluster("");
    let nodes_before = snapshot(&bed.path("nodes"));

    // A dry run first: nps2 holds another set (refused without --replace), act none.
    let r = bed.keyferry(&[
        "keys",
        "push",
        "--to",
        NPS2,
        "--to",
        ACT,
        "--dry-run",
        "--json",
    ]);
    assert_eq!(r.code(), 1, "{}\n{}", r.stdout(), r.stderr());
    let doc = r.json();
    assert_eq!(target(&doc, NPS2)["outcome"], "would-refuse", "{doc}");
    assert_eq!(target(&doc, ACT)["outcome"], "would-install", "{doc}");
    assert_eq!(
        nodes_before,
        snapshot(&bed.path("nodes")),
        "a dry run changed the node"
    );

    let r = bed.keyferry(&[
        "keys",
        "push",
        "--to",
        NPS2,
        "--to",
        ACT,
        "--replace",
        "--json",
    ]);
    assert_eq!(r.code(), 0, "{}\n{}", r.stdout(), r.stderr());
    let doc = r.json();
    for n in [NPS2, ACT] {
        assert_eq!(target(&doc, n)["outcome"], "installed", "{doc}");
    }
    // The secondary takes the whole set; the Action host its role's part (keys.exp).
    assert_eq!(target(&doc, NPS2)["after"], doc["fingerprint"], "{doc}");
    let nps2 = bed.node_dir(NPS2);
    assert_eq!(
        std::fs::read(nps2.join("Key Tools (x86)/keys.exp")).unwrap(),
        KEY_A
    );
    assert_eq!(
        std::fs::read(nps2.join("HA & more/appsettings.json")).unwrap(),
        SETTINGS_A
    );
    assert_eq!(
        std::fs::read(bed.node_dir(ACT).join("Key Tools (x86)/keys.exp")).unwrap(),
        KEY_A
    );
    // nps2's own import kept its old settings in its own state folder, a Windows path there
    // (keys.exp is the vendor's transient export: not kept).
    let backup = PathBuf::from(
        target(&doc, NPS2)["backup_dir"]
            .as_str()
            .unwrap()
            .trim_start_matches("Z:")
            .replace('\\', "/"),
    );
    assert!(
        backup.starts_with(nps2.join("state %TEMP%")),
        "{}",
        backup.display()
    );
    let kept = snapshot(&backup);
    assert!(
        kept.iter()
            .any(|(p, b)| p.ends_with("appsettings.json") && b.as_slice() == SETTINGS_B),
        "the old appsettings.json is not in {}: {:?}",
        backup.display(),
        kept.keys().collect::<Vec<_>>()
    );
    for out in [&r.out.stdout, &r.out.stderr] {
        assert!(
            !out.windows(KEY_A.len()).any(|w| w == KEY_A),
            "key bytes in output"
        );
    }

    // The audit: every node's fingerprint, the Windows ones from their own keyferry.exe,
    // which also name the vendor's export left on them (so the audit says no).
    let r = bed.keyferry(&["audit", "--json"]);
    assert_eq!(r.code(), 1, "{}\n{}", r.stdout(), r.stderr());
    let doc = r.json();
    let nodes = doc["nodes"].as_array().unwrap();
    for n in [NPS2, ACT] {
        let row = nodes.iter().find(|x| x["node"] == n).unwrap();
        assert_eq!(row["via"], "ssh", "{row}");
        assert_eq!(row["status"], "match", "{row}");
        let left = row["export_files_left"][0].as_str().unwrap();
        assert!(
            left.starts_with("Z:\\") && left.ends_with("\\Key Tools (x86)\\keys.exp"),
            "{row}"
        );
    }

    // No shell on the node ever saw a name, a path or a key: only the probe and the program.
    let commands = bed.commands();
    assert!(commands.len() >= 3, "{commands:?}");
    let call = format!("\"{}\" request", bed.program);
    for c in &commands {
        assert!(
            c == keyferry::remote::PROBE || *c == call,
            "the node's shell was given {c:?}"
        );
    }
    // One probe per node and run (a push reaches two nodes: two probes at most).
    let probes = commands
        .iter()
        .filter(|c| *c == keyferry::remote::PROBE)
        .count();
    assert!(probes <= 2 * 3, "{commands:?}");
    // Nothing a name could have run: no file created in the login's folder.
    let left: Vec<_> = std::fs::read_dir(&bed.home).unwrap().flatten().collect();
    assert!(left.is_empty(), "cmd.exe ran part of a name: {left:?}");
}

/// The HA check from nps1 reaches its peer's own `ha check --here-only` through cmd.exe:
/// the peer's findings come back as the peer's, never "could not check".
#[test]
fn the_peers_ha_check_runs_through_cmd_exe_and_comes_back_as_its_findings() {
    let Some(bed) = Bed::start() else {
        return;
    };
    bed.lay_out();
    bed.write_cluster("shell = \"cmd\"");
    let r = bed.keyferry(&["ha", "check", "--json", "--timeout", "20s"]);
    let doc = r.json();
    let findings = doc["findings"]
        .as_array()
        .unwrap_or_else(|| panic!("{doc}"));
    assert!(
        !findings
            .iter()
            .any(|f| f["code"] == "peer-check-failed" || f["code"] == "peer-not-checked"),
        "{doc}\n{}",
        r.stderr()
    );
    assert!(
        findings.iter().any(|f| f["from"] == NPS2),
        "no finding made on {NPS2}: {doc}"
    );
    // Declared: no probe.
    let commands = bed.commands();
    assert!(!commands.is_empty());
    assert!(
        commands
            .iter()
            .all(|c| *c == format!("\"{}\" request", bed.program)),
        "{commands:?}"
    );
}

/// The usual mistakes: a node declared with the wrong shell fails with cmd.exe's own words
/// relayed and changes nothing; a `remote_keyferry` that cmd.exe would expand is refused when
/// the file is read, with what to do.
#[test]
fn a_wrongly_declared_shell_or_an_unquotable_program_is_said_and_changes_nothing() {
    let Some(bed) = Bed::start() else {
        return;
    };
    bed.lay_out();
    let before = snapshot(&bed.path("nodes"));
    for shell in ["sh", "powershell"] {
        bed.write_cluster(&format!("shell = \"{shell}\""));
        let r = bed.keyferry(&["keys", "push", "--to", ACT, "--json"]);
        assert_ne!(r.code(), 0, "{}", r.stdout());
        let doc = r.json();
        let t = target(&doc, ACT);
        assert_ne!(t["outcome"], "installed", "{t}");
        assert!(
            t["detail"]
                .as_str()
                .unwrap_or("")
                .contains("gave no report"),
            "{shell}: {t}"
        );
        assert_eq!(before, snapshot(&bed.path("nodes")), "{shell}");
    }
    let text = std::fs::read_to_string(bed.cluster()).unwrap().replace(
        &toml(&bed.program),
        &toml(r"C:\keyferry %PATH%\keyferry.exe"),
    );
    std::fs::write(bed.cluster(), text).unwrap();
    let r = bed.keyferry(&["audit", "--json"]);
    r.assert_code(2);
    let e = r.json()["error"].clone();
    assert_eq!(e["code"], "cluster-file", "{e}");
    assert!(
        e["message"].as_str().unwrap().contains("ssh subsystem"),
        "{e}"
    );
    assert_eq!(before, snapshot(&bed.path("nodes")));
}

/// The upgrade run's steps on the Windows nodes run there through cmd.exe: the key push to
/// them, each one's cleanup of the vendor's export, and the closing audit, which then agrees.
#[test]
fn an_upgrade_runs_its_steps_on_the_windows_nodes_through_cmd_exe() {
    let Some(bed) = Bed::start() else {
        return;
    };
    bed.lay_out();
    // Declared: each resume is a new keyferry, which would probe again.
    bed.write_cluster("shell = \"cmd\"");
    // The vendor's import done on nps2 by hand already: the push finds the same keys there.
    for rel in ["Key Tools (x86)/keys.exp", "HA & more/appsettings.json"] {
        let from = if rel.starts_with("Key") {
            KEY_A
        } else {
            SETTINGS_A
        };
        std::fs::write(bed.node_dir(NPS2).join(rel), from).unwrap();
    }
    // Run here: what reaches the Windows nodes (pushes, cleanups) and the audits. Everything
    // else needs the vendor's tools or a PostgreSQL pair, and is marked done by hand.
    let ours = [
        "ha.push-keys",
        "ha.cleanup",
        "rs.push-keys",
        "rs.cleanup",
        "rs.verify",
    ];
    let st = walk_upgrade(&bed, &ours, |id| {
        if id.ends_with("export-keys") {
            // The vendor's export, as the admin runs it before confirming.
            std::fs::write(bed.path("nps1/KeyTools/keys.exp"), KEY_A).unwrap();
        }
    });
    let steps = st["steps"].as_array().unwrap();
    for id in ours {
        for s in steps.iter().filter(|s| s["id"] == id) {
            assert!(
                s["done"] == "ran" || s["done"] == "already",
                "{id} on {}: {s}",
                s["node"]
            );
        }
    }
    for node in [NPS2, ACT] {
        let on = |s: &&serde_json::Value| {
            s["node"] == node && s["id"].as_str().unwrap().ends_with("cleanup")
        };
        assert!(steps.iter().any(|s| on(&s)), "no cleanup step on {node}");
        assert!(
            !bed.node_dir(node).join("Key Tools (x86)/keys.exp").exists(),
            "{node}'s keys.exp is still there"
        );
    }
    assert!(!bed.path("nps1/KeyTools/keys.exp").exists());
    // The secondary's reboot was asked of nps2 itself (planned), and waited for: the
    // stand-in never restarts, so the wait ended at its deadline and the step was marked.
    let calls = bed.tool_calls();
    assert!(
        calls
            .iter()
            .any(|c| c.starts_with("shutdown.exe|/r|/t|10|/d|p:4:1")),
        "{calls:?}"
    );
    let reboot = steps
        .iter()
        .find(|s| s["id"] == "ha.reboot-secondary")
        .unwrap();
    assert_eq!(reboot["done"], "marked", "{reboot}");
    let call = format!("\"{}\" request", bed.program);
    for c in bed.commands() {
        assert!(
            c == keyferry::remote::PROBE || c == call,
            "the node's shell was given {c:?}"
        );
    }
}

/// Through a subsystem no shell is involved: `ssh -s keyferry`, the node's sshd starts
/// keyferry.exe itself, and push and audit work the same.
#[test]
fn through_a_subsystem_keyferry_exe_runs_with_no_shell_at_all() {
    let Some(bed) = Bed::start_as(true) else {
        return;
    };
    bed.lay_out();
    bed.write_cluster("ssh_subsystem = \"keyferry\"");
    let r = bed.keyferry(&[
        "keys",
        "push",
        "--to",
        NPS2,
        "--to",
        ACT,
        "--replace",
        "--json",
    ]);
    assert_eq!(r.code(), 0, "{}\n{}", r.stdout(), r.stderr());
    for n in [NPS2, ACT] {
        assert_eq!(
            target(&r.json(), n)["outcome"],
            "installed",
            "{}",
            r.stdout()
        );
        assert_eq!(
            std::fs::read(bed.node_dir(n).join("Key Tools (x86)/keys.exp")).unwrap(),
            KEY_A
        );
    }
    let r = bed.keyferry(&["audit", "--json"]);
    let doc = r.json();
    for n in [NPS2, ACT] {
        let row = doc["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["node"] == n)
            .unwrap();
        assert_eq!(row["status"], "match", "{row}");
    }
    // Four sessions (two pushes, two audits), each the subsystem, none a command line.
    let commands = bed.commands();
    assert_eq!(commands.len(), 4, "{commands:?}");
    assert!(
        commands.iter().all(|c| c == "subsystem keyferry"),
        "{commands:?}"
    );
}

/// Walks an upgrade run from nps1 to its end: the steps in `ours` run (each must finish),
/// every other step is marked done or confirmed by hand (`before_confirm` first does what the
/// admin would); returns the run's final status.
fn walk_upgrade(bed: &Bed, ours: &[&str], before_confirm: impl Fn(&str)) -> serde_json::Value {
    let walk = |cmd: &str, extra: &[&str]| {
        let mut a = vec!["upgrade", cmd, "--batch"];
        a.extend_from_slice(extra);
        bed.keyferry(&a)
    };
    let cl = bed.cluster();
    let plan = keyferry(&argv!["upgrade", "plan", "--json", "-c", &cl], None).json();
    let kind_of = |n: u64| {
        plan["steps"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["n"] == n)
            .map(|s| s["kind"].as_str().unwrap().to_owned())
            .unwrap()
    };
    let r = walk("run", &[]);
    assert!(r.code() <= 3, "{}", r.stderr());
    let mut ran = Vec::new();
    let mut last = format!("{}\n{}", r.stdout(), r.stderr());
    for _ in 0..60 {
        let st = walk("status", &["--json"]).json();
        let Some(next) = st["steps"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["done"].is_null())
            .cloned()
        else {
            break;
        };
        let n = next["n"].as_u64().unwrap().to_string();
        let id = next["id"].as_str().unwrap();
        if ours.contains(&id) && !ran.contains(&n) {
            ran.push(n.clone());
            // A step that failed in the command before this one: that command's words say why.
            assert!(
                next["failed"].is_null(),
                "step {n} ({id}) on {} failed before it was resumed: {}\nthe command that ran \
                 it said:\n{last}",
                next["node"],
                next["failed"]
            );
            let r = walk("resume", &[]);
            last = format!("{}\n{}", r.stdout(), r.stderr());
            assert!(
                r.code() != 2,
                "step {n} ({id}) on {}: {}\n{}",
                next["node"],
                r.stdout(),
                r.stderr()
            );
            continue;
        }
        assert!(
            !ours.contains(&id),
            "step {n} ({id}) did not finish: {next}\n{last}"
        );
        let kind = if kind_of(next["n"].as_u64().unwrap()) == "auto" {
            "--mark-done"
        } else {
            "--confirm"
        };
        before_confirm(id);
        let mut extra = vec![kind, n.as_str()];
        if kind == "--mark-done" {
            extra.extend(["--because", "checked by hand in this test"]);
        }
        let r = walk("resume", &extra);
        last = format!("{}\n{}", r.stdout(), r.stderr());
    }
    walk("status", &["--json"]).json()
}

/// A Secret Server upgrade run stops the web node's application pool there over ssh before
/// the primary's upgrade and starts it again afterwards, and restarts IIS on the DR node:
/// the node's tools are asked exactly that, in that order, and the pool ends as it began.
#[test]
fn a_secret_server_upgrade_stops_and_starts_the_pools_on_the_windows_nodes() {
    let Some(bed) = Bed::start() else {
        return;
    };
    bed.write_ss_cluster("shell = \"cmd\"\napp_pool = \"SecretServer\"");
    std::fs::write(bed.sys32.join("pool-SecretServer"), "Started").unwrap();
    let st = walk_upgrade(&bed, &["ss.stop", "ss.start"], |id| {
        if id == "ss.upgrade-primary" {
            // While the primary is upgraded, the other web node's pool is stopped.
            assert_eq!(
                std::fs::read_to_string(bed.sys32.join("pool-SecretServer")).unwrap(),
                "Stopped"
            );
        }
    });
    for s in st["steps"].as_array().unwrap() {
        if s["id"] == "ss.stop" || s["id"] == "ss.start" {
            assert_eq!(s["done"], "ran", "{s}");
        }
    }
    let asked: Vec<String> = bed
        .tool_calls()
        .into_iter()
        .filter(|c| !c.contains("|list|"))
        .collect();
    // Both Windows nodes share this machine's stand-ins: web2's and dr1's pools are one file.
    assert_eq!(
        asked,
        [
            "appcmd.exe|stop|apppool|/apppool.name:SecretServer",
            "appcmd.exe|start|apppool|/apppool.name:SecretServer",
            "iisreset.exe|/restart",
        ],
        "{st}"
    );
    assert_eq!(
        std::fs::read_to_string(bed.sys32.join("pool-SecretServer")).unwrap(),
        "Started"
    );
}

/// An upgrade given up after it stopped the web node's pool starts that pool again on the way
/// out (over ssh, where it was stopped), and says so.
#[test]
fn an_abandoned_upgrade_starts_again_the_pools_it_stopped() {
    let Some(bed) = Bed::start() else {
        return;
    };
    bed.write_ss_cluster("shell = \"cmd\"\napp_pool = \"SecretServer\"");
    std::fs::write(bed.sys32.join("pool-SecretServer"), "Started").unwrap();
    let up = |cmd: &str, extra: &[&str]| {
        let mut a = vec!["upgrade", cmd, "--batch"];
        a.extend_from_slice(extra);
        bed.keyferry(&a)
    };
    up("run", &[]);
    for _ in 0..10 {
        let st = up("status", &["--json"]).json();
        let next = st["steps"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["done"].is_null())
            .cloned()
            .unwrap();
        let n = next["n"].to_string();
        match next["id"].as_str().unwrap() {
            "ss.upgrade-primary" => break,
            "preflight" => up(
                "resume",
                &["--mark-done", &n, "--because", "not this test's"],
            ),
            _ => up("resume", &["--confirm", &n]),
        };
    }
    assert_eq!(
        std::fs::read_to_string(bed.sys32.join("pool-SecretServer")).unwrap(),
        "Stopped"
    );
    bed.tool_calls();
    let r = up("abandon", &[]);
    r.assert_code(0);
    let said = format!("{}{}", r.stdout(), r.stderr());
    assert!(said.contains("put back on"), "{said}");
    assert_eq!(
        std::fs::read_to_string(bed.sys32.join("pool-SecretServer")).unwrap(),
        "Started"
    );
    let started: Vec<String> = bed
        .tool_calls()
        .into_iter()
        .filter(|c| c.contains("|start|"))
        .collect();
    // Two nodes stopped it (they share this machine's stand-in): the first start starts it,
    // the second finds it running and asks nothing.
    assert_eq!(
        started,
        ["appcmd.exe|start|apppool|/apppool.name:SecretServer"]
    );
}

/// The node's own services, driven on the node: each change checks the state first, asks the
/// tool with the name as one argument, and waits for the state; already-there is said and
/// asks nothing; a name the node does not know is refused with what to do. The tools are
/// stand-ins (no IIS or product service under Wine) that record exactly what they were asked.
#[test]
fn pools_and_services_are_driven_by_name_checked_first_and_said() {
    let Some(bed) = Bed::start() else {
        return;
    };
    bed.lay_out();
    bed.write_cluster(
        "shell = \"cmd\"\napp_pool = \"Secret Server (x86) & co\"\nservices = [\"SbPAM Web\", \"SbPAMProxy\"]",
    );
    std::fs::write(bed.sys32.join("pool-Secret Server (x86) & co"), "Started").unwrap();
    std::fs::write(bed.sys32.join("svc-SbPAM Web"), "4").unwrap();
    std::fs::write(bed.sys32.join("svc-SbPAMProxy"), "4").unwrap();

    // A change holds the node's lock, as every change on a node does: its lock file appears
    // in the node's state folder.
    let lock = bed.node_dir(ACT).join("state %TEMP%").join("lock");
    assert!(!lock.exists());
    let r = bed.on_node(ACT, &["host", "pool", "stop"]);
    assert_eq!(r.code(), 0, "{}\n{}", r.stdout(), r.stderr());
    assert!(lock.is_file(), "the change took no lock");
    let c = &r.json()["changes"][0];
    assert_eq!(
        (
            c["kind"].as_str(),
            c["name"].as_str(),
            c["before"].as_str(),
            c["after"].as_str(),
            c["changed"].as_bool()
        ),
        (
            Some("pool"),
            Some("Secret Server (x86) & co"),
            Some("running"),
            Some("stopped"),
            Some(true)
        ),
        "{c}"
    );
    assert_eq!(
        bed.tool_calls(),
        [
            "appcmd.exe|list|apppool|Secret Server (x86) & co|/text:state",
            "appcmd.exe|stop|apppool|/apppool.name:Secret Server (x86) & co",
            "appcmd.exe|list|apppool|Secret Server (x86) & co|/text:state",
        ]
    );
    // Again: already stopped, nothing asked of IIS but its state.
    let r = bed.on_node(ACT, &["host", "pool", "stop"]);
    assert_eq!(r.code(), 0, "{}", r.stderr());
    assert_eq!(r.json()["changes"][0]["changed"], false);
    assert_eq!(bed.tool_calls().len(), 1);

    // Services stop in the reverse of their start order, and start in it.
    let r = bed.on_node(ACT, &["host", "service", "stop"]);
    assert_eq!(r.code(), 0, "{}", r.stderr());
    let asked: Vec<String> = bed
        .tool_calls()
        .into_iter()
        .filter(|c| !c.contains("|query|"))
        .collect();
    assert_eq!(asked, ["sc.exe|stop|SbPAMProxy", "sc.exe|stop|SbPAM Web"]);
    let r = bed.on_node(ACT, &["host", "service", "start"]);
    assert_eq!(r.code(), 0, "{}", r.stderr());
    let asked: Vec<String> = bed
        .tool_calls()
        .into_iter()
        .filter(|c| !c.contains("|query|"))
        .collect();
    assert_eq!(asked, ["sc.exe|start|SbPAM Web", "sc.exe|start|SbPAMProxy"]);
    let r = bed.on_node(ACT, &["host", "status"]);
    let doc = r.json();
    let states: Vec<&str> = doc["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["after"].as_str().unwrap())
        .collect();
    assert_eq!(states, ["stopped", "running", "running"], "{doc}");
    assert!(doc["booted"].as_str().is_some(), "{doc}");

    // A service the node does not have: refused with the tool's words and what to do, and
    // nothing on the node changed (its services' states, its folders).
    std::fs::remove_file(bed.sys32.join("svc-SbPAMProxy")).unwrap();
    bed.tool_calls();
    let before = (snapshot(&bed.sys32), snapshot(&bed.path("nodes")));
    let r = bed.on_node(ACT, &["host", "service", "stop"]);
    r.assert_code(2);
    let e = &r.json()["error"];
    assert_eq!(e["code"], "host", "{e}");
    assert!(e["message"].as_str().unwrap().contains("1060"), "{e}");
    assert!(e["hint"].as_str().unwrap().contains("services.msc"), "{e}");
    assert!(bed.tool_calls().iter().all(|c| c.contains("|query|")));
    assert_eq!(before, (snapshot(&bed.sys32), snapshot(&bed.path("nodes"))));
    // A node without app_pool: refused before any tool is asked, saying what to write.
    let text = std::fs::read_to_string(bed.cluster()).unwrap();
    std::fs::write(
        bed.cluster(),
        text.replace("app_pool = \"Secret Server (x86) & co\"\n", ""),
    )
    .unwrap();
    let r = bed.on_node(ACT, &["host", "pool", "stop"]);
    r.assert_code(2);
    assert!(r.json()["error"]["hint"]
        .as_str()
        .unwrap()
        .contains("app_pool"));
    assert!(bed.tool_calls().is_empty());
    assert_eq!(before, (snapshot(&bed.sys32), snapshot(&bed.path("nodes"))));
    std::fs::write(bed.cluster(), text).unwrap();

    // IIS restart and reboot ask their tools exactly this.
    bed.tool_calls();
    bed.on_node(ACT, &["host", "iis-restart"]).assert_code(0);
    bed.on_node(ACT, &["host", "reboot", "--delay", "30s"])
        .assert_code(0);
    assert_eq!(
        bed.tool_calls(),
        [
            "iisreset.exe|/restart",
            "shutdown.exe|/r|/t|30|/d|p:4:1|/c|keyferry: the vendor's upgrade procedure reboots this server",
        ]
    );
    // No IIS on the node: said, nothing run.
    std::fs::remove_file(bed.sys32.join("inetsrv/appcmd.exe")).unwrap();
    let r = bed.on_node(ACT, &["host", "pool", "start"]);
    r.assert_code(2);
    assert!(r.json()["error"]["message"]
        .as_str()
        .unwrap()
        .contains("IIS is not installed"));
    assert!(bed.tool_calls().is_empty());
}
