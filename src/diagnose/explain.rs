//! From what an admin pastes to what to do: the catalogue entries a message matches, the
//! facts it carries, and the fix tailored to them; for a log, how many lines were read and
//! matched, and a few error-looking lines nothing matched, so they can be pasted on.

use crate::cluster::ClusterFile;
use crate::diagnose::catalogue::{match_message, Known};
use crate::diagnose::facts::{extract, Facts};
use serde::Serialize;

/// One catalogue entry a message matched, with the fix for this very message.
#[derive(Debug, Clone, Serialize)]
pub struct Explained {
    /// The catalogue entry.
    #[serde(flatten)]
    pub known: &'static Known,
    /// The line that matched (logs), shortened.
    pub evidence: Option<String>,
    /// What the message says of host, user, database, port and node.
    #[serde(skip_serializing_if = "Facts::is_empty")]
    pub facts: Facts,
    /// The fix with the message's host, user, database, port and node names in it.
    pub specific_fix: Option<String>,
    /// The entry's commands with the cluster file given (`-c`) in them, where one was.
    pub run: Vec<String>,
    /// In a log: how often, and where and when first and last.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seen: Option<Seen>,
}

/// Where a log shows one error: how many lines, the first and last (1-based), and their
/// times where the lines start with one.
#[derive(Debug, Clone, Serialize)]
pub struct Seen {
    pub count: usize,
    pub first_line: usize,
    pub last_line: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_time: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_time: Option<String>,
    /// A later line that shows the problem gone (the same user let in, streaming started).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resolved: Option<Resolved>,
}

/// The line that shows a problem resolved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Resolved {
    pub line: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub time: Option<String>,
    pub text: String,
}

impl std::fmt::Display for Seen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let times = if self.count == 1 { "once" } else { "times" };
        if self.count == 1 {
            write!(f, "{times}, line {}", self.first_line)?;
        } else {
            write!(
                f,
                "{} {times}, lines {} to {}",
                self.count, self.first_line, self.last_line
            )?;
        }
        match (&self.first_time, &self.last_time) {
            (Some(a), Some(b)) if a != b => write!(f, " ({a} to {b})"),
            (Some(a), _) => write!(f, " ({a})"),
            _ => Ok(()),
        }?;
        if let Some(r) = &self.resolved {
            write!(
                f,
                "; resolved since line {}{}: {}",
                r.line,
                r.time
                    .as_deref()
                    .map(|t| format!(" ({t})"))
                    .unwrap_or_default(),
                r.text
            )?;
        }
        Ok(())
    }
}

/// Whether a log line shows a connection problem gone: a login of that user let in (with
/// `log_connections`), or a standby streaming from its primary.
fn resolves(code: &str, facts: &Facts, line: &str) -> bool {
    let l = line.to_ascii_lowercase();
    let connection = [
        "pg-hba-missing-replication",
        "pg-hba-missing-host",
        "pg-hba-rejects",
        "pg-password-failed",
        "pg-role-missing",
        "pg-database-missing",
        "pg-too-many-connections",
        "pg-walsender-privilege",
        "pg-connection-refused",
        "pg-connection-timeout",
        "pg-slot-missing",
        "pg-hba-secondary-not-found",
    ];
    if !connection.contains(&code) {
        return false;
    }
    if l.contains("started streaming wal from primary")
        || l.contains("streaming replication successfully connected to primary")
    {
        return true;
    }
    let authorized = l.contains("connection authorized: user=");
    match facts.user.as_deref() {
        Some(u) => authorized && l.contains(&format!("user={}", u.to_ascii_lowercase())),
        None => authorized,
    }
}

/// The time a log line starts with (`2026-11-22 10:00:02`, with fractions or a `T`), if any.
fn line_time(line: &str) -> Option<String> {
    let t = line.trim_start();
    let b = t.as_bytes();
    let digits =
        |r: std::ops::Range<usize>| b.get(r).is_some_and(|s| s.iter().all(u8::is_ascii_digit));
    let ok = b.len() >= 19
        && digits(0..4)
        && b[4] == b'-'
        && digits(5..7)
        && b[7] == b'-'
        && digits(8..10)
        && matches!(b[10], b' ' | b'T')
        && digits(11..13)
        && b[13] == b':'
        && digits(14..16)
        && b[16] == b':'
        && digits(17..19);
    ok.then(|| t[..19].to_owned())
}

/// `word` as one word for the shells an admin types into (cmd.exe, PowerShell, sh): quoted
/// when it holds a blank or a quote.
pub fn shell_word(word: &str) -> String {
    if word.is_empty()
        || word
            .chars()
            .any(|c| c.is_whitespace() || matches!(c, '"' | '\'' | '&' | ';' | '|'))
    {
        format!("\"{}\"", word.replace('"', "\\\""))
    } else {
        word.to_owned()
    }
}

/// A catalogue command with the cluster file given instead of `cluster.toml`.
fn with_cluster(cmd: &str, cluster: Option<&ClusterFile>) -> String {
    match cluster {
        Some(f) => cmd.replace(
            "-c cluster.toml",
            &format!("-c {}", shell_word(&f.path.display().to_string())),
        ),
        None => cmd.to_owned(),
    }
}

/// What a message means.
pub fn explain(message: &str, cluster: Option<&ClusterFile>) -> Vec<Explained> {
    // PostgreSQL's message in another language: read as its English text.
    let english = crate::diagnose::translate::english(message);
    let message = english.as_ref();
    let facts = extract(message);
    match_message(message)
        .into_iter()
        .map(|known| Explained {
            known,
            evidence: None,
            specific_fix: known.tailor.and_then(|t| t(&facts, cluster)),
            facts: facts.clone(),
            run: known
                .commands
                .iter()
                .map(|c| with_cluster(c, cluster))
                .collect(),
            seen: None,
        })
        .collect()
}

/// What a log scan found.
#[derive(Debug, Clone, Serialize)]
pub struct LogScan {
    /// Lines read.
    pub lines: usize,
    /// Lines a catalogue entry matched.
    pub matched: usize,
    /// Error-looking lines none matched.
    pub unmatched: usize,
    /// Up to five error-looking lines that no catalogue entry matched, whole (bounded at
    /// 4 KiB each, saying so).
    pub unmatched_errors: Vec<String>,
    /// Each catalogue entry once, with the first line that matched it and how often, where
    /// and when it was seen.
    pub explained: Vec<Explained>,
}

/// Most unmatched error lines shown.
const SHOWN_UNMATCHED: usize = 5;

/// Scans a log line by line.
pub fn scan_log(text: &str, cluster: Option<&ClusterFile>) -> LogScan {
    let mut scan = LogScan {
        lines: 0,
        matched: 0,
        unmatched: 0,
        unmatched_errors: Vec::new(),
        explained: Vec::new(),
    };
    for line in text.lines() {
        scan.lines += 1;
        // A line that shows an earlier problem gone.
        for x in &mut scan.explained {
            let (code, facts) = (x.known.code, x.facts.clone());
            if let Some(s) = x.seen.as_mut().filter(|s| s.resolved.is_none()) {
                if resolves(code, &facts, line) {
                    s.resolved = Some(Resolved {
                        line: scan.lines,
                        time: line_time(line),
                        text: shorten(line),
                    });
                }
            }
        }
        let found = explain(line, cluster);
        if found.is_empty() {
            scan.unmatched += 1;
            let l = line.to_lowercase();
            if scan.unmatched_errors.len() < SHOWN_UNMATCHED
                && ["error", "fatal", "exception", "failed", "denied"]
                    .iter()
                    .any(|w| l.contains(w))
            {
                scan.unmatched_errors.push(shorten(line));
            }
            continue;
        }
        scan.matched += 1;
        let at = scan.lines;
        let time = line_time(line);
        for mut e in found {
            match scan
                .explained
                .iter_mut()
                .find(|x| x.known.code == e.known.code)
            {
                Some(x) => {
                    if let Some(s) = &mut x.seen {
                        s.count += 1;
                        s.last_line = at;
                        // Back again: not resolved (yet).
                        s.resolved = None;
                        if time.is_some() {
                            s.last_time = time.clone();
                        }
                    }
                }
                None => {
                    e.evidence = Some(shorten(line));
                    e.seen = Some(Seen {
                        count: 1,
                        first_line: at,
                        last_line: at,
                        first_time: time.clone(),
                        last_time: time.clone(),
                        resolved: None,
                    });
                    scan.explained.push(e);
                }
            }
        }
    }
    scan
}

/// Most of one log line kept: a line is shown whole up to this, and cut visibly after.
const MAX_SHOWN_LINE: usize = 4096;

fn shorten(line: &str) -> String {
    let line = line.trim();
    if line.len() <= MAX_SHOWN_LINE {
        return line.to_owned();
    }
    let mut end = MAX_SHOWN_LINE;
    while !line.is_char_boundary(end) {
        end -= 1;
    }
    format!("{} … ({} more bytes)", &line[..end], line.len() - end)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The security finding: the user and database names in a message are the client's
    /// choice. Whatever they hold, the suggested line is one rule for exactly that address
    /// and that user, with a password method, never `trust`, never `all`; a name that cannot
    /// be one gets no line. A message with `İ` (whose lower case is longer) does not crash.
    #[test]
    fn names_from_a_message_never_widen_the_suggested_line() {
        use crate::ha::hba::{parse, Connection};
        let cases = [
            (true, "all 0.0.0.0/0 trust #", None),
            (true, "x\" 0.0.0.0/0 trust #", None),
            (false, "bob", Some("all all 0.0.0.0/0 trust")),
            (false, "+admins", Some("replication")),
            (false, "all", Some("all")),
            (false, "ops", Some("sales data")),
            (false, "İstanbul", Some("d@b")),
        ];
        for (replication, user, db) in cases {
            let msg = match (replication, db) {
                (true, _) => format!(
                    "FATAL:  no pg_hba.conf entry for replication connection from host \"10.0.0.5\", user \"{user}\", no encryption"
                ),
                (false, Some(db)) => format!(
                    "FATAL:  no pg_hba.conf entry for host \"10.0.0.5\", user \"{user}\", database \"{db}\", SSL off"
                ),
                _ => unreachable!(),
            };
            let e = explain(&msg, None);
            let Some(fix) = e.first().and_then(|k| k.specific_fix.clone()) else {
                continue;
            };
            let line = fix.lines().last().unwrap().trim().to_owned();
            let f = parse(&format!("{line}\n"));
            assert_eq!(f.entries.len(), 1, "{line}");
            let rule = f.rule(0).unwrap_or_else(|| panic!("not one rule: {line}"));
            assert_eq!(rule.method, "md5", "{line}");
            assert!(rule.options.is_empty(), "{line}");
            let facts = crate::diagnose::facts::extract(&msg);
            let named = facts.user.clone().unwrap();
            let conn =
                |who: &str, at: &str| Connection::new(replication, Some(who), at.parse().unwrap());
            // The database is a name (not all): a plain connection's is not known here, so
            // only a replication line can be proved to admit it.
            if replication {
                assert!(f.admits(&conn(&named, "10.0.0.5")), "{line}");
            }
            assert!(!f.admits(&conn(&named, "10.0.0.6")), "{line}");
            assert!(!f.admits(&conn("someone-else", "10.0.0.5")), "{line}");
        }
        assert_eq!(
            crate::diagnose::facts::extract(
                "FATAL: no pg_hba.conf entry for host \"10.0.0.5\", user \"İİİİ\", database \"d\""
            )
            .user
            .as_deref(),
            Some("İİİİ")
        );
    }

    const CLUSTER: &str = r#"
name = "nps"
profile = "privilege-secure"
[[node]]
name = "nps1"
role = "primary"
address = "10.20.30.40"
paths = { keytools = "/k", ha = "/h" }
[[node]]
name = "nps2"
role = "secondary"
address = "10.20.30.41"
paths = { keytools = "/k", ha = "/h" }
"#;

    /// With the pair's `[ha]` section, the advice uses the pair's own facts: its method for
    /// the line, its replication role when an application account asks to replicate, and its
    /// port when a client was refused on another.
    #[test]
    fn advice_takes_the_pairs_method_replication_role_and_port_from_the_cluster_file() {
        let text = format!(
            "{CLUSTER}[ha]\npassfile = \"/p\"\nrepuser = \"replicator\"\nhba_method = \"scram-sha-256\"\n"
        );
        let c = ClusterFile::parse(&text, std::path::Path::new("c.toml")).unwrap();
        let fix = |msg: &str| {
            explain(msg, Some(&c))[0]
                .specific_fix
                .clone()
                .unwrap_or_default()
        };
        let own = fix("FATAL:  no pg_hba.conf entry for replication connection from host \"10.20.30.41\", user \"replicator\", no encryption");
        assert!(
            own.contains("host replication replicator 10.20.30.41/32 scram-sha-256"),
            "{own}"
        );
        assert!(!own.contains("not the pair's replication role"), "{own}");
        let app = fix("FATAL:  no pg_hba.conf entry for replication connection from host \"10.20.30.41\", user \"nps_app\", no encryption");
        assert!(
            app.starts_with("nps_app is not the pair's replication role (replicator"),
            "{app}"
        );
        let refused = fix("psql: error: connection to server at \"10.20.30.40\", port 5433 failed: Connection refused");
        assert!(
            refused.contains("the pair's PostgreSQL port is 5432"),
            "{refused}"
        );
        let right = fix("psql: error: connection to server at \"10.20.30.40\", port 5432 failed: Connection refused");
        assert!(
            right.starts_with("nothing listens on 10.20.30.40:5432 (node nps1)"),
            "{right}"
        );
    }

    #[test]
    fn the_fix_names_the_address_user_and_the_node_whose_file_it_goes_into() {
        let c = ClusterFile::parse(CLUSTER, std::path::Path::new("c.toml")).unwrap();
        let msg = "FATAL:  no pg_hba.conf entry for replication connection from host \"10.20.30.41\", user \"repuser\", no encryption";
        let e = explain(msg, Some(&c));
        let fix = e[0].specific_fix.as_deref().unwrap();
        assert!(
            fix.contains("host replication repuser 10.20.30.41/32 md5"),
            "{fix}"
        );
        assert!(fix.contains("(node nps2)"), "{fix}");
        assert!(fix.contains("pg_hba.conf of nps1"), "{fix}");
        // Without a cluster file the line is still exact.
        let e = explain(msg, None);
        assert!(e[0]
            .specific_fix
            .as_deref()
            .unwrap()
            .contains("10.20.30.41/32"));
    }

    /// A later line that lets the same user in says the problem is resolved, with its line
    /// and time; a failure after it takes that back.
    #[test]
    fn a_log_says_when_a_later_line_shows_the_problem_resolved() {
        let fail = |t: &str| {
            format!("2026-11-24 10:00:{t} UTC [1] FATAL:  password authentication failed for user \"repuser\"\n")
        };
        let ok = "2026-11-24 10:05:00 UTC [2] LOG:  connection authorized: user=repuser database=postgres\n";
        let other =
            "2026-11-24 10:04:00 UTC [3] LOG:  connection authorized: user=app database=nps\n";
        let log = format!("{}{}{}{other}{ok}", fail("01"), fail("02"), fail("03"));
        let scan = scan_log(&log, None);
        let seen = scan.explained[0].seen.as_ref().unwrap();
        assert_eq!(seen.count, 3);
        let r = seen.resolved.as_ref().expect("resolved by line 5");
        assert_eq!(
            (r.line, r.time.as_deref()),
            (5, Some("2026-11-24 10:05:00"))
        );
        assert!(seen.to_string().contains("resolved since line 5"), "{seen}");
        // Failing again afterwards: not resolved.
        let again = format!("{log}{}", fail("59"));
        let scan = scan_log(&again, None);
        assert!(scan.explained[0].seen.as_ref().unwrap().resolved.is_none());
    }

    #[test]
    fn a_log_scan_counts_and_shows_what_it_could_not_match() {
        let log = "2026-11-24 10:00:00 INFO started\n\
                   2026-11-24 10:00:01 ERROR Encryption key doesn't match\n\
                   2026-11-24 10:00:02 ERROR Something nobody has seen before\n\
                   2026-11-24 10:00:03 ERROR Encryption key doesn't match\n";
        let s = scan_log(log, None);
        assert_eq!((s.lines, s.matched, s.unmatched), (4, 2, 2));
        assert_eq!(s.explained.len(), 1);
        assert_eq!(s.unmatched_errors.len(), 1);
        assert!(s.unmatched_errors[0].contains("nobody has seen"));
    }
}
