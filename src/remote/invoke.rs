//! How keyferry runs itself on another node over ssh so that no shell ever reads its data.
//!
//! The command line ssh hands the node's shell is always the same two words: the node's
//! keyferry program, quoted for that shell, and `request`. Everything else (the command,
//! its arguments, the cluster file's path on the node, node names) travels on standard
//! input, as one JSON line ([`header`]) that `keyferry request` reads and parses with
//! keyferry's own command-line parser; a bundle for `keys import -` follows it on the same
//! stream. So a node name like `web&1 (a)%PATH%^` is a string in a JSON document on every
//! node, never a word a shell splits, expands or runs.
//!
//! The shells it meets: OpenSSH for Windows runs a client's command with the account's
//! default shell, as `"C:\Windows\System32\cmd.exe" /c "<command>"` (nothing escaped) or as
//! PowerShell's `-c <command>`; OpenSSH on Unix as `$SHELL -c <command>`. A `Subsystem` or a
//! `ForceCommand` in `sshd_config` bypasses the command line altogether.

use serde::{Deserialize, Serialize};
use std::io::{BufRead, Read};

/// The verb the node's keyferry is called with: read one request from standard input.
pub const REQUEST_VERB: &str = "request";

/// The longest request header read (arguments only; a bundle follows it, unbounded here).
pub const MAX_HEADER: u64 = 64 << 10;

/// The shell a node's OpenSSH server runs a client's command with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Shell {
    /// A POSIX shell (`sh -c`): OpenSSH on Unix, or a Windows account whose shell is bash.
    Sh,
    /// `cmd.exe /c "<command>"`: OpenSSH for Windows' default.
    Cmd,
    /// `powershell.exe -c <command>` (or `pwsh`): OpenSSH for Windows with PowerShell as
    /// the default shell.
    Powershell,
}

impl Shell {
    pub fn name(self) -> &'static str {
        match self {
            Shell::Sh => "sh",
            Shell::Cmd => "cmd",
            Shell::Powershell => "powershell",
        }
    }
}

/// How the node's keyferry is started over ssh (from its `[[node]]`: `ssh_subsystem`, or
/// `shell`, or neither).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Launch {
    /// `ssh -s <name>`: the node's `sshd_config` has `Subsystem <name> <keyferry> request`,
    /// so no shell reads anything.
    Subsystem(String),
    /// The command line quoted for this shell.
    Shell(Shell),
    /// The shell is found out first, once per node and run, with [`PROBE`].
    Detect,
}

/// The characters a `remote_keyferry` path may hold: none that any of the three shells
/// reads inside its quotes (`%` and `!` in `cmd.exe`, `'` and the typographic quotes in
/// PowerShell, `[`/`]` as PowerShell wildcards, `"` everywhere).
fn program_char_ok(c: char) -> bool {
    c.is_alphanumeric() || " \\/:._-()+".contains(c)
}

/// Checks a `remote_keyferry` value: a path (Windows or Unix) that quotes the same way in
/// every shell.
pub fn check_program(program: &str) -> Result<(), String> {
    if program.is_empty() {
        return Err("remote_keyferry is empty".into());
    }
    if let Some(c) = program.chars().find(|&c| !program_char_ok(c)) {
        return Err(format!(
            "remote_keyferry {program:?} holds {c:?}, which a shell on the node would read \
             (cmd.exe expands % and ! even inside quotes, PowerShell ends its quotes at ' and \
             at typographic quotes): install keyferry in a folder whose path holds only \
             letters, digits, spaces and \\ / : . _ - ( ) +, or reach the node through an \
             ssh subsystem (ssh_subsystem)"
        ));
    }
    if program.starts_with('-') {
        return Err(format!(
            "remote_keyferry {program:?} starts with '-': give the program's path"
        ));
    }
    Ok(())
}

/// Checks an `ssh_subsystem` name (it goes to the node as the subsystem's name, which
/// `sshd_config` maps to a program; no shell reads it).
pub fn check_subsystem(name: &str) -> Result<(), String> {
    if name.is_empty()
        || name.len() > 64
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-@".contains(c))
        || name.starts_with('-')
    {
        return Err(format!(
            "ssh_subsystem {name:?} is not a subsystem name: use letters, digits and . _ - @ \
             (the name in the node's `Subsystem <name> <program> request` line)"
        ));
    }
    Ok(())
}

/// The command line a node's `shell` runs: `program request`, the program quoted for it.
/// `program` must have passed [`check_program`] (checked again here).
pub fn command_line(shell: Shell, program: &str) -> Result<String, String> {
    check_program(program)?;
    Ok(match shell {
        // Single quotes: nothing inside is special to sh, and the program holds none.
        Shell::Sh => format!("'{program}' {REQUEST_VERB}"),
        // OpenSSH wraps it as /c "<line>"; cmd strips the outer pair (more than two quotes)
        // and runs "<program>" request, where & | < > ( ) ^ and spaces are literal.
        Shell::Cmd => format!("\"{program}\" {REQUEST_VERB}"),
        // The call operator on a single-quoted (verbatim) string: no $, `, or ( is read.
        Shell::Powershell => format!("& '{program}' {REQUEST_VERB}"),
    })
}

/// The request a node's `keyferry request` reads: keyferry's arguments after the program
/// name, as they would be typed, but never seen by a shell.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Request {
    /// The format's version (1).
    #[serde(rename = "keyferry-request")]
    pub version: u32,
    pub args: Vec<String>,
}

/// The first line on the node's standard input: the request, as one line of JSON.
pub fn header(args: &[String]) -> Vec<u8> {
    let mut line = serde_json::to_vec(&Request {
        version: 1,
        args: args.to_vec(),
    })
    .expect("a request serialises");
    line.push(b'\n');
    line
}

/// The top-level commands a request may run: those other nodes send (the audit's
/// `fingerprint`, `keys import -` from `keys push`, `ha check --here-only`, `upgrade
/// preflight --here-only`, and an upgrade run's steps). `shred`, `demo`, `completions`,
/// `man` and `request` itself are not among them (`host` is: an upgrade run stops and starts
/// a node's pool and services, and reboots it): a node reached through a forced command
/// runs keyferry's cluster commands and nothing else.
pub const VERBS: &[&str] = &[
    "keys",
    "audit",
    "sync",
    "ha",
    "host",
    "upgrade",
    "diagnose",
    "fingerprint",
    "dpapi",
];

/// Why a request header is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BadRequest {
    /// Standard input ended before any request (a probe, or a caller that is not keyferry).
    Missing,
    /// Not a request keyferry reads, with the reason.
    Malformed(String),
    /// A command other nodes never send.
    Refused(String),
}

impl std::fmt::Display for BadRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BadRequest::Missing => write!(f, "no request on standard input"),
            BadRequest::Malformed(why) => write!(f, "not a keyferry request: {why}"),
            BadRequest::Refused(verb) => write!(
                f,
                "a request may not run {verb:?}: only {} are run for another node",
                VERBS.join(", ")
            ),
        }
    }
}

/// Reads the request line from `input`, leaving what follows it (a bundle) unread, and
/// checks its command against `VERBS`.
pub fn read_header(input: &mut impl BufRead) -> Result<Vec<String>, BadRequest> {
    let mut line = Vec::new();
    input
        .take(MAX_HEADER + 1)
        .read_until(b'\n', &mut line)
        .map_err(|e| BadRequest::Malformed(format!("cannot read standard input: {e}")))?;
    if line.is_empty() {
        return Err(BadRequest::Missing);
    }
    if line.last() != Some(&b'\n') {
        return Err(BadRequest::Malformed(if line.len() as u64 > MAX_HEADER {
            format!("its first line is longer than {MAX_HEADER} bytes")
        } else {
            "its first line has no end".into()
        }));
    }
    let request: Request = serde_json::from_slice(&line)
        .map_err(|e| BadRequest::Malformed(format!("its first line does not read: {e}")))?;
    if request.version != 1 {
        return Err(BadRequest::Malformed(format!(
            "request format {} (this keyferry reads 1): use the same keyferry version on every node",
            request.version
        )));
    }
    match request.args.first() {
        Some(verb) if VERBS.contains(&verb.as_str()) => Ok(request.args),
        Some(verb) => Err(BadRequest::Refused(verb.clone())),
        None => Err(BadRequest::Malformed("it names no command".into())),
    }
}

/// The command that tells the shells apart, harmless in each: `cmd.exe` expands `%OS%`
/// (`Windows_NT` on every Windows), PowerShell expands `$PSHOME` and writes each word on
/// its own line, sh drops the unset `$PSHOME` and keeps `%OS%`.
pub const PROBE: &str = "echo kf %OS% kf $PSHOME kf";

/// What answered [`PROBE`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Probed {
    Shell(Shell),
    /// keyferry itself (a `ForceCommand`): the command line is not read at all.
    Forced,
}

/// Reads the answer to [`PROBE`]; `None` when it is none of the known ones.
pub fn classify(stdout: &[u8]) -> Option<Probed> {
    let text = String::from_utf8_lossy(stdout);
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let words: Vec<&str> = text.split_whitespace().collect();
    if let Some(first) = lines.first() {
        if first.starts_with('{') {
            // keyferry's own error document: `request` got the probe's empty input.
            let doc: serde_json::Value = serde_json::from_str(&text).ok()?;
            return (doc["error"]["code"] == "request").then_some(Probed::Forced);
        }
    }
    match (lines.as_slice(), words.as_slice()) {
        (_, ["kf", "Windows_NT", "kf", "$PSHOME", "kf"]) if lines.len() == 1 => {
            Some(Probed::Shell(Shell::Cmd))
        }
        (["kf", "%OS%", "kf", home, "kf"], _) if !home.is_empty() => {
            Some(Probed::Shell(Shell::Powershell))
        }
        (_, ["kf", "%OS%", "kf", "kf"]) if lines.len() == 1 => Some(Probed::Shell(Shell::Sh)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_is_the_same_two_words_in_each_shell() {
        let p = r"C:\Program Files (x86)\keyferry\keyferry.exe";
        assert_eq!(
            command_line(Shell::Cmd, p).unwrap(),
            format!("\"{p}\" request")
        );
        assert_eq!(
            command_line(Shell::Powershell, p).unwrap(),
            format!("& '{p}' request")
        );
        assert_eq!(
            command_line(Shell::Sh, "/opt/key ferry/bin/keyferry").unwrap(),
            "'/opt/key ferry/bin/keyferry' request"
        );
    }

    #[test]
    fn a_program_a_shell_would_read_is_refused_with_what_to_do() {
        for bad in [
            r"C:\kf%PATH%\keyferry.exe",
            r"C:\kf!x!\keyferry.exe",
            r#"C:\k"f\keyferry.exe"#,
            r"C:\it's\keyferry.exe",
            "C:\\\u{2019}q\\keyferry.exe",
            r"C:\a[1]\keyferry.exe",
            r"C:\a&b\keyferry.exe",
            r"C:\a^b\keyferry.exe",
            r"C:\a$b\keyferry.exe",
            "C:\\a`b\\keyferry.exe",
            "C:\\a\nb",
            "-oProxyCommand=x",
            "",
        ] {
            let e = check_program(bad).unwrap_err();
            assert!(e.contains("remote_keyferry"), "{bad:?}: {e}");
            for shell in [Shell::Sh, Shell::Cmd, Shell::Powershell] {
                assert!(command_line(shell, bad).is_err(), "{bad:?}");
            }
        }
        assert!(check_program(r"D:\Programme\Schlüssel\keyferry.exe").is_ok());
        assert!(check_program("keyferry").is_ok());
    }

    #[test]
    fn a_header_reads_back_and_leaves_the_bundle_unread() {
        let args: Vec<String> = ["keys", "import", "-", "--node", "web&1 (a)%PATH%^\"'"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let mut stream = header(&args);
        stream.extend_from_slice(b"age-encryption.org/v1\n...");
        let mut input = std::io::Cursor::new(stream);
        assert_eq!(read_header(&mut input).unwrap(), args);
        let mut rest = Vec::new();
        std::io::Read::read_to_end(&mut input, &mut rest).unwrap();
        assert_eq!(rest, b"age-encryption.org/v1\n...");
    }

    #[test]
    fn bad_headers_are_refused_each_with_its_reason() {
        let read = |b: &[u8]| read_header(&mut std::io::Cursor::new(b.to_vec()));
        assert_eq!(read(b""), Err(BadRequest::Missing));
        assert!(
            matches!(read(b"{\"keyferry-request\":1,\"args\":[\"keys\"]}"), Err(BadRequest::Malformed(m)) if m.contains("no end"))
        );
        assert!(matches!(
            read(b"keys import\n"),
            Err(BadRequest::Malformed(_))
        ));
        assert!(
            matches!(read(b"{\"keyferry-request\":2,\"args\":[\"keys\"]}\n"), Err(BadRequest::Malformed(m)) if m.contains("format 2"))
        );
        assert!(matches!(
            read(b"{\"keyferry-request\":1,\"args\":[]}\n"),
            Err(BadRequest::Malformed(_))
        ));
        assert!(matches!(
            read(b"{\"keyferry-request\":1,\"args\":[\"k\"],\"x\":1}\n"),
            Err(BadRequest::Malformed(_))
        ));
        for verb in ["shred", "request", "demo", "man", "completions", "--help"] {
            let h = header(&[verb.to_string()]);
            assert_eq!(read(&h), Err(BadRequest::Refused(verb.into())));
        }
        let mut long = b"{\"keyferry-request\":1,\"args\":[\"".to_vec();
        long.resize(MAX_HEADER as usize + 10, b'a');
        long.extend_from_slice(b"\"]}\n");
        assert!(matches!(read(&long), Err(BadRequest::Malformed(m)) if m.contains("longer")));
    }

    #[test]
    fn the_probe_tells_the_shells_apart() {
        // cmd.exe's answer as Wine's cmd.exe gave it (the test bed's node).
        assert_eq!(
            classify(b"kf Windows_NT kf $PSHOME kf\r\n"),
            Some(Probed::Shell(Shell::Cmd))
        );
        // PowerShell's answer, from its documented behaviour: each argument of
        // Write-Output (`echo`) on its own line, `%OS%` a bare word, `$PSHOME` expanded.
        assert_eq!(
            classify(
                b"kf\r\n%OS%\r\nkf\r\nC:\\Windows\\System32\\WindowsPowerShell\\v1.0\r\nkf\r\n"
            ),
            Some(Probed::Shell(Shell::Powershell))
        );
        assert_eq!(classify(b"kf %OS% kf kf\n"), Some(Probed::Shell(Shell::Sh)));
        assert_eq!(
            classify(br#"{"version":1,"error":{"code":"request","message":"no request on standard input","hint":null}}"#),
            Some(Probed::Forced)
        );
        assert_eq!(
            classify(b"This service allows sftp connections only.\n"),
            None
        );
        assert_eq!(classify(b""), None);
    }

    #[test]
    fn subsystem_names_are_names() {
        assert!(check_subsystem("keyferry").is_ok());
        for bad in ["", "key ferry", "-x", "a;b", "k\"f"] {
            assert!(check_subsystem(bad).is_err(), "{bad:?}");
        }
    }
}
