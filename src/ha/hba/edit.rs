//! Deciding and editing: how the file decides each of the pair's connections (surely, or
//! "it depends" on what the file cannot show), line by line for `ha explain`, and the plan of
//! an edit that adds keyferry's block where no line above it catches the peer first.

use super::*;

/// How a connection is decided today.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// The entry that surely catches it first (`None`: no line does; refused).
    pub entry: Option<usize>,
    /// Entries above it that might catch it first, depending on what keyferry cannot know.
    pub maybe_before: Vec<usize>,
}

/// The first line of the block keyferry manages in `pg_hba.conf`.
pub const BEGIN: &str =
    "# keyferry ha: begin (the HA pair's lines; `keyferry ha hba` rewrites this block)";
/// Its last line.
pub const END: &str = "# keyferry ha: end";

/// What the pair needs in `pg_hba.conf`.
#[derive(Debug, Clone)]
pub struct PeerRules {
    /// Both nodes' addresses (both go in both files, so a failover needs no edit).
    pub peers: Vec<IpAddr>,
    /// The replication role.
    pub repuser: String,
    /// The authentication method of the lines (`md5` as the vendor documents; it also does
    /// SCRAM for SCRAM-stored passwords).
    pub method: String,
    /// Put the block above a `reject` line that names a peer exactly (an admin's decision).
    pub override_reject: bool,
    /// The server that reads the file.
    pub server: Server,
}

/// Why an edit is refused; nothing is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// PostgreSQL would refuse the file as it is (then it loads none of it).
    Invalid {
        /// The line's number (1-based).
        line: usize,
        /// PostgreSQL's reason.
        why: String,
    },
    /// Rules in other files that keyferry cannot see.
    Include {
        /// The `include` line's number (1-based).
        line: usize,
    },
    /// The managed block's markers are not a single begin/end pair.
    DamagedBlock,
    /// An explicit `reject` for a peer sits where the block would go above it.
    Reject {
        /// The `reject` line's number (1-based).
        line: usize,
        /// The line.
        text: String,
    },
    /// The role or method is not a plain word.
    BadName(String),
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::Invalid { line, why } => write!(
                f,
                "line {line}: {why}; PostgreSQL refuses a file with a bad line (and keeps its old \
                 rules), so fix that line first"
            ),
            Refusal::Include { line } => write!(
                f,
                "line {line} includes other files whose rules keyferry cannot see from here; add \
                 the pair's lines by hand or run `keyferry ha hba --file` on the included file"
            ),
            Refusal::DamagedBlock => write!(
                f,
                "the block keyferry manages is damaged (its begin and end lines do not pair up); \
                 remove its lines by hand and run again"
            ),
            Refusal::Reject { line, text } => write!(
                f,
                "line {line} rejects a peer explicitly ({text}); that is an admin's decision: \
                 remove the line, or pass --override-reject to put the pair's lines above it"
            ),
            Refusal::BadName(n) => write!(
                f,
                "{n:?} is not a plain PostgreSQL name (letters, digits, _ and -)"
            ),
        }
    }
}

/// A planned edit: the new text and how each of the pair's connections is decided before
/// and after.
#[derive(Debug, Clone)]
pub struct Edit {
    /// The file's new text.
    pub text: String,
    /// The text differs from the file's.
    pub changed: bool,
    /// Each connection, how it is decided now and after the edit (a line number, 1-based,
    /// and that line, or "nothing: refused").
    pub decisions: Vec<(Connection, String, String)>,
    /// The same as fields: each connection's verdict now and after the edit.
    pub verdicts: Vec<(Decided, Decided)>,
}

/// How a connection is decided, as fields: the line (1-based) that surely decides and its
/// method (`None`: no line; refused), and the lines above it that might decide first.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Decided {
    /// The line (1-based) that surely decides, if one does.
    pub line: Option<usize>,
    /// That line's method.
    pub method: Option<String>,
    /// Lines above it (1-based) that might decide first.
    pub might: Vec<usize>,
}

/// How one line takes part in deciding a connection (`keyferry ha explain`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum LineOutcome {
    /// This line decides the connection.
    Decides,
    /// It does not match: `why` says which part.
    No,
    /// It might match (what decides it is not in the file): `why` says what.
    Might,
    /// PostgreSQL refuses this line, so the whole file (the server keeps its old rules).
    Refused,
    /// An `include` line: rules keyferry cannot see from here.
    Include,
    /// Below the line that decides: never looked at.
    Below,
}

/// One logical line's verdict for a connection.
#[derive(Debug, Clone, serde::Serialize)]
pub struct LineVerdict {
    /// Its first physical line (1-based) and its last.
    pub line: usize,
    /// Its last physical line (1-based).
    pub last_line: usize,
    /// The line's text.
    pub text: String,
    /// How it takes part.
    pub outcome: LineOutcome,
    /// Its method, where it is a rule.
    pub method: Option<String>,
    /// Why it matches, does not or might.
    pub why: Vec<String>,
}

/// How a file decides a connection, line by line.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Explained {
    /// The connection, for people.
    pub connection: String,
    /// PostgreSQL loads the file (no line it refuses).
    pub loads: bool,
    /// The line that surely decides (`None`: no line does, or lines above might).
    pub decided_by: Option<usize>,
    /// The deciding line's method.
    pub method: Option<String>,
    /// Lines above it that might catch the connection first.
    pub might_be_decided_by: Vec<usize>,
    /// Each logical line down to the one that decides.
    pub lines: Vec<LineVerdict>,
}

impl Explained {
    /// Whether the connection gets as far as a login (a line decides, and not `reject`),
    /// for sure.
    pub fn admitted(&self) -> bool {
        self.loads
            && self.might_be_decided_by.is_empty()
            && self.method.as_deref().is_some_and(|m| m != "reject")
    }
}

impl HbaFile {
    /// A logical line's text, its physical lines joined.
    pub fn entry_text(&self, e: &Entry) -> String {
        self.lines[e.first..=e.last]
            .iter()
            .map(|l| strip_eol(l).trim_end_matches('\\').trim())
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// Every line's part in deciding `c`: which decides, and why each line above does not
    /// (or might).
    pub fn explain(&self, c: &Connection) -> Explained {
        let d = self.decide(c);
        let loads = !self
            .entries
            .iter()
            .any(|e| matches!(e.kind, EntryKind::Invalid(_)));
        let lines = self
            .entries
            .iter()
            .enumerate()
            .map(|(i, e)| {
                let (outcome, method, why) = match &e.kind {
                    EntryKind::Invalid(w) => (LineOutcome::Refused, None, vec![w.clone()]),
                    EntryKind::Include(_) => (LineOutcome::Include, None, vec![]),
                    EntryKind::Rule(r) if d.entry.is_some_and(|k| i > k) => {
                        (LineOutcome::Below, Some(r.method.clone()), vec![])
                    }
                    EntryKind::Rule(r) => {
                        let parts = r.parts(c);
                        let m = parts.iter().map(|p| p.0).min().unwrap_or(Match::No);
                        let outcome = match m {
                            Match::Yes => LineOutcome::Decides,
                            Match::Maybe => LineOutcome::Might,
                            Match::No => LineOutcome::No,
                        };
                        // The parts that do not match, or (for a line that might) the parts
                        // that might.
                        let why = parts
                            .iter()
                            .filter(|p| p.0 == m && m != Match::Yes)
                            .map(|p| p.1.clone())
                            .filter(|w| !w.is_empty())
                            .collect();
                        (outcome, Some(r.method.clone()), why)
                    }
                };
                LineVerdict {
                    line: e.first + 1,
                    last_line: e.last + 1,
                    text: self.entry_text(e),
                    outcome,
                    method,
                    why,
                }
            })
            .collect();
        let rule = d.entry.and_then(|i| self.rule(i));
        Explained {
            connection: c.to_string(),
            loads,
            decided_by: d.entry.map(|i| self.entries[i].first + 1),
            method: rule.map(|r| r.method.clone()),
            might_be_decided_by: d
                .maybe_before
                .iter()
                .map(|&i| self.entries[i].first + 1)
                .collect(),
            lines,
        }
    }

    fn describe(&self, c: &Connection) -> String {
        let d = self.decide(c);
        let shown = |i: usize| {
            let e = &self.entries[i];
            format!("line {}: {}", e.first + 1, self.entry_text(e))
        };
        let mut out = match d.entry {
            Some(i) => shown(i),
            None => "no line: refused".to_owned(),
        };
        for i in d.maybe_before {
            out.push_str(&format!(" (unless {} catches it first)", shown(i)));
        }
        out
    }
}

/// Plans the pair's lines in a `pg_hba.conf`: the managed block, placed above the first line
/// that could catch a peer's connection, so that it decides them; every other line kept
/// byte for byte. No change when the file already lets both peers in for replication and
/// normal connections.
pub fn plan_edit(text: &str, want: &PeerRules, files: Files<'_>) -> Result<Edit, Refusal> {
    let plain = |n: &str| {
        !n.is_empty()
            && n.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    };
    for n in [&want.repuser, &want.method] {
        if !plain(n) {
            return Err(Refusal::BadName(n.clone()));
        }
    }
    let file = parse_for(text, &want.server, files);
    // The managed block, if any.
    let marks: Vec<(usize, bool)> = file
        .lines
        .iter()
        .enumerate()
        .filter_map(|(i, l)| match strip_eol(l) {
            l if l == BEGIN => Some((i, true)),
            l if l == END => Some((i, false)),
            _ => None,
        })
        .collect();
    let block = match marks.as_slice() {
        [] => None,
        [(b, true), (e, false)] if b < e => Some((*b, *e)),
        _ => return Err(Refusal::DamagedBlock),
    };
    let base_lines: Vec<String> = file
        .lines
        .iter()
        .enumerate()
        .filter(|(i, _)| block.is_none_or(|(b, e)| *i < b || *i > e))
        .map(|(_, l)| l.clone())
        .collect();
    let base = parse_for(&base_lines.concat(), &want.server, files);
    let line_no = |e: &Entry| -> usize {
        // The line number in the file as it is (1-based), counting the block's lines.
        let n = e.first;
        match block {
            Some((b, end)) if n >= b => n + (end - b + 1) + 1,
            _ => n + 1,
        }
    };
    for e in &base.entries {
        match &e.kind {
            EntryKind::Invalid(why) => {
                return Err(Refusal::Invalid {
                    line: line_no(e),
                    why: why.clone(),
                })
            }
            EntryKind::Include(_) => return Err(Refusal::Include { line: line_no(e) }),
            EntryKind::Rule(_) => {}
        }
    }
    let conns: Vec<Connection> = want
        .peers
        .iter()
        .flat_map(|&addr| {
            [
                Connection::new(true, Some(want.repuser.as_str()), addr),
                Connection::new(false, None, addr),
            ]
        })
        .collect();
    // Where the block goes: above the first line that could catch any of them.
    let first_catch = base.entries.iter().position(|e| match &e.kind {
        EntryKind::Rule(r) => conns.iter().any(|c| r.matches(c) != Match::No),
        _ => false,
    });
    if !want.override_reject {
        for e in &base.entries[first_catch.unwrap_or(base.entries.len())..] {
            if let EntryKind::Rule(r) = &e.kind {
                let names_peer = r
                    .address
                    .as_ref()
                    .is_some_and(|a| want.peers.iter().any(|&p| a.is_exactly(p)));
                if r.method == "reject"
                    && names_peer
                    && conns.iter().any(|c| r.matches(c) != Match::No)
                {
                    return Err(Refusal::Reject {
                        line: line_no(e),
                        text: strip_eol(&base.lines[e.first]).trim().to_owned(),
                    });
                }
            }
        }
    }
    let eol = file.eol();
    let mut block_text = format!("{BEGIN}{eol}");
    let mut peers = want.peers.clone();
    peers.sort();
    peers.dedup();
    for p in &peers {
        let net = format!("{p}/{}", host_bits(*p));
        for (db, user) in [("replication", want.repuser.as_str()), ("all", "all")] {
            block_text.push_str(&format!(
                "host    {db:<12} {user:<12} {net:<20} {}{eol}",
                want.method
            ));
        }
    }
    block_text.push_str(END);
    block_text.push_str(eol);

    let already = block.is_none() && conns.iter().all(|c| base.admits(c));
    let new_text = if already {
        text.to_owned()
    } else {
        let at = first_catch.map(|i| base.entries[i].first);
        let mut out = String::new();
        for (i, l) in base.lines.iter().enumerate() {
            if Some(i) == at {
                out.push_str(&block_text);
            }
            out.push_str(l);
        }
        if at.is_none() {
            if !out.is_empty() && !out.ends_with('\n') {
                out.push_str(eol);
            }
            out.push_str(&block_text);
        }
        out
    };
    let after = parse_for(&new_text, &want.server, files);
    // The pair's own lines must be lines PostgreSQL loads (a method that needs options
    // would make it refuse the whole file); every other line was checked above.
    if let Some((e, w)) = after.entries.iter().find_map(|e| match &e.kind {
        EntryKind::Invalid(w) => Some((e, w)),
        _ => None,
    }) {
        return Err(Refusal::Invalid {
            line: e.first + 1,
            why: format!("the pair's new line would be refused: {w}"),
        });
    }
    let decided = |f: &HbaFile, c: &Connection| {
        let x = f.explain(c);
        Decided {
            line: x.decided_by,
            method: x.method,
            might: x.might_be_decided_by,
        }
    };
    let verdicts = conns
        .iter()
        .map(|c| (decided(&file, c), decided(&after, c)))
        .collect();
    let decisions = conns
        .iter()
        .map(|c| (c.clone(), file.describe(c), after.describe(c)))
        .collect();
    // Each peer connection is now decided by a line of the block, nothing above it.
    debug_assert!(
        already
            || conns.iter().all(|c| {
                let d = after.decide(c);
                d.maybe_before.is_empty()
                    && d.entry
                        .and_then(|i| after.rule(i))
                        .is_some_and(|r| r.method == want.method)
            })
    );
    Ok(Edit {
        changed: new_text != text,
        text: new_text,
        decisions,
        verdicts,
    })
}
