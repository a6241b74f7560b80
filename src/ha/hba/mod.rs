//! `pg_hba.conf`: parsed the way PostgreSQL reads it, simulated the way it decides, and edited
//! without touching a byte of any line keyferry does not own.
//!
//! PostgreSQL takes the **first** line whose connection type, database, user and address
//! match a connection, and that line alone decides: a failed password does not fall through
//! to the next line, and `all` in the database column does not cover replication
//! connections. So the lines an HA pair needs must not merely be present: no line above them
//! may catch the peer first.
//!
//! The file is kept as its physical lines, each with its own line ending, so what is parsed
//! serialises back byte for byte. Entries are logical lines (a `\` at the end of a line
//! continues it). A field is a comma list of tokens; a token in double quotes loses any
//! keyword meaning (`"all"` is a database named all). Addresses compare by meaning:
//! `10.0.0.5/32` and `10.0.0.5 255.255.255.255` are the same rule.

use std::fmt;
use std::net::IpAddr;

mod edit;
mod inet;
mod parse;

pub use edit::{
    plan_edit, Decided, Decision, Edit, Explained, LineOutcome, LineVerdict, PeerRules, Refusal,
    BEGIN, END,
};
pub use parse::{Files, Server};

/// One token of a field: its text (quotes removed) and whether it was quoted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    /// The token's text, without its quotes.
    pub text: String,
    /// It was quoted (so `all` or `+group` is a name, not a keyword).
    pub quoted: bool,
    /// A regular expression (`/^app.*`, PostgreSQL 16 and later, database and user columns):
    /// keyferry does not evaluate it, so it may match any name.
    pub regex: bool,
}

impl Token {
    fn keyword(&self, k: &str) -> bool {
        !self.quoted && self.text == k
    }
}

/// The connection types of the first column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnType {
    /// `local`: Unix-domain sockets.
    Local,
    /// `host`: TCP, with or without SSL.
    Host,
    /// `hostssl`: TCP with SSL.
    HostSsl,
    /// `hostnossl`: TCP without SSL.
    HostNoSsl,
    /// `hostgssenc`: TCP with GSSAPI encryption.
    HostGssEnc,
    /// `hostnogssenc`: TCP without GSSAPI encryption.
    HostNoGssEnc,
}

/// The address column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Address {
    /// `all`: any address.
    All,
    /// `samehost`: any of the server's own addresses.
    SameHost,
    /// `samenet`: any address on a subnet the server is on.
    SameNet,
    /// An address and prefix length (`IP/n`, or `IP` and a contiguous mask in the next
    /// column).
    Net(IpAddr, u8),
    /// An address and a mask that is not contiguous (`10.0.0.1 255.0.255.0`): PostgreSQL
    /// compares the bits the mask has.
    Masked(IpAddr, IpAddr),
    /// A host name, or a `.suffix` (matched through DNS: keyferry cannot say).
    Name(String),
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Address::All => f.write_str("all"),
            Address::SameHost => f.write_str("samehost"),
            Address::SameNet => f.write_str("samenet"),
            Address::Net(ip, bits) => write!(f, "{ip}/{bits}"),
            Address::Masked(ip, mask) => write!(f, "{ip} (mask {mask})"),
            Address::Name(n) => f.write_str(n),
        }
    }
}

impl Address {
    fn contains(&self, ip: IpAddr) -> Match {
        match self {
            Address::All => Match::Yes,
            Address::Net(net, prefix) => match (net, ip) {
                (IpAddr::V4(n), IpAddr::V4(a)) => {
                    let mask = u32::MAX.checked_shl(32 - u32::from(*prefix)).unwrap_or(0);
                    Match::from(u32::from(*n) & mask == u32::from(a) & mask)
                }
                (IpAddr::V6(n), IpAddr::V6(a)) => {
                    let mask = u128::MAX.checked_shl(128 - u32::from(*prefix)).unwrap_or(0);
                    Match::from(u128::from(*n) & mask == u128::from(a) & mask)
                }
                _ => Match::No,
            },
            Address::Masked(net, mask) => match (net, mask, ip) {
                (IpAddr::V4(n), IpAddr::V4(m), IpAddr::V4(a)) => {
                    let m = u32::from(*m);
                    Match::from(u32::from(*n) & m == u32::from(a) & m)
                }
                (IpAddr::V6(n), IpAddr::V6(m), IpAddr::V6(a)) => {
                    let m = u128::from(*m);
                    Match::from(u128::from(*n) & m == u128::from(a) & m)
                }
                _ => Match::No,
            },
            Address::SameHost | Address::SameNet | Address::Name(_) => Match::Maybe,
        }
    }

    /// Exactly one host: `IP/32` (or `/128`).
    fn is_exactly(&self, ip: IpAddr) -> bool {
        match self {
            Address::Net(n, p) => *n == ip && u32::from(*p) == host_bits(ip),
            _ => false,
        }
    }
}

fn host_bits(ip: IpAddr) -> u32 {
    if ip.is_ipv4() {
        32
    } else {
        128
    }
}

/// `ip` as a `pg_hba.conf` address that admits exactly that one host: `10.0.0.5/32`,
/// `fd00::5/128` (`/32` after an IPv6 address would admit a whole network).
pub fn one_host(ip: IpAddr) -> String {
    format!("{ip}/{}", host_bits(ip))
}

/// A rule line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// The first column.
    pub conn_type: ConnType,
    /// The database column's tokens.
    pub databases: Vec<Token>,
    /// The user column's tokens.
    pub users: Vec<Token>,
    /// `None` for `local` lines.
    pub address: Option<Address>,
    /// The authentication method (`scram-sha-256`, `md5`, `reject`, ...).
    pub method: String,
    /// The options after the method (`name=value`).
    pub options: Vec<String>,
}

/// What a logical line is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryKind {
    /// A rule.
    Rule(Rule),
    /// `include`, `include_if_exists` or `include_dir`: rules keyferry cannot see from here.
    Include(String),
    /// A line PostgreSQL would reject (it then refuses the whole file).
    Invalid(String),
}

/// A logical line: the physical lines it spans (`first..=last`, 0-based) and what it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Its first physical line (0-based).
    pub first: usize,
    /// Its last physical line (0-based): more than `first` when it is continued with `\`.
    pub last: usize,
    /// What it is.
    pub kind: EntryKind,
}

/// A parsed `pg_hba.conf`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HbaFile {
    /// Physical lines, each with its line ending (the last may have none).
    pub lines: Vec<String>,
    /// The logical lines, rules and others, in file order.
    pub entries: Vec<Entry>,
}

/// Whether a line matches a connection: surely, surely not, or it depends on something
/// keyferry cannot know from the file (group membership, DNS, the server's own addresses,
/// whether the client uses SSL).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Match {
    /// Surely not.
    No,
    /// Depends on what the file cannot show.
    Maybe,
    /// Surely.
    Yes,
}

impl From<bool> for Match {
    fn from(b: bool) -> Match {
        if b {
            Match::Yes
        } else {
            Match::No
        }
    }
}

/// A TCP connection to simulate: from `addr`, as `user` (`None`: any user), to `database`
/// (`None`: any) or for replication, with or without SSL or GSSAPI encryption (`None`:
/// either: libpq tries SSL first), the user a member of `member_of` (`None`: not known).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connection {
    /// For replication (the `replication` database keyword).
    pub replication: bool,
    /// The login role.
    pub user: Option<String>,
    /// Where the connection comes from.
    pub addr: IpAddr,
    /// The database asked for.
    pub database: Option<String>,
    /// Whether it uses SSL.
    pub ssl: Option<bool>,
    /// Whether it uses GSSAPI encryption.
    pub gssenc: Option<bool>,
    /// The roles the user is a member of, directly or through others (PostgreSQL's `+role`
    /// and `samerole`), the user itself included where it exists (a role is a member of
    /// itself; a user that does not exist is a member of nothing).
    pub member_of: Option<Vec<String>>,
}

impl Connection {
    /// A connection of which only these are known.
    pub fn new(replication: bool, user: Option<&str>, addr: IpAddr) -> Connection {
        Connection {
            replication,
            user: user.map(str::to_owned),
            addr,
            database: None,
            ssl: None,
            gssenc: None,
            member_of: None,
        }
    }

    /// Whether the user is a member of `role`, where known.
    fn member(&self, role: &str) -> Match {
        match &self.member_of {
            Some(roles) => Match::from(roles.iter().any(|r| r == role)),
            None => Match::Maybe,
        }
    }
}

impl fmt::Display for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let user = self.user.as_deref().unwrap_or("any user");
        match (&self.database, self.replication) {
            (_, true) => write!(f, "replication as {user} from {}", self.addr),
            (Some(db), false) => write!(f, "database {db} as {user} from {}", self.addr),
            (None, false) => write!(f, "any database as {user} from {}", self.addr),
        }
    }
}

/// A token of `@file` that was not read, or a regular expression: it may stand for anything.
fn unread_file(t: &Token) -> bool {
    t.regex || (!t.quoted && t.text.len() > 1 && t.text.starts_with('@'))
}

impl Rule {
    /// Whether this rule catches `c` (PostgreSQL's `check_hba`: type, SSL and GSSAPI state,
    /// address, then database and role).
    pub fn matches(&self, c: &Connection) -> Match {
        self.part_matches(c).into_iter().min().expect("four parts")
    }

    /// Whether each part of the rule (type, address, database, user) matches `c`; no words
    /// (deciding runs this for every line and connection).
    fn part_matches(&self, c: &Connection) -> [Match; 4] {
        let either = |state: Option<bool>, want: bool| match state {
            Some(s) => Match::from(s == want),
            None => Match::Maybe,
        };
        let ty = match self.conn_type {
            ConnType::Local => Match::No,
            ConnType::Host => Match::Yes,
            ConnType::HostSsl => either(c.ssl, true),
            ConnType::HostNoSsl => either(c.ssl, false),
            ConnType::HostGssEnc => either(c.gssenc, true),
            ConnType::HostNoGssEnc => either(c.gssenc, false),
        };
        let addr = self
            .address
            .as_ref()
            .map(|a| a.contains(c.addr))
            .unwrap_or(Match::No);
        let db = self
            .databases
            .iter()
            .map(|t| {
                if unread_file(t) {
                    Match::Maybe
                } else if c.replication {
                    // A physical replication connection matches only `replication`.
                    Match::from(t.keyword("replication"))
                } else if t.keyword("all") {
                    Match::Yes
                } else if t.keyword("sameuser") {
                    match (&c.database, &c.user) {
                        (Some(d), Some(u)) => Match::from(d == u),
                        _ => Match::Maybe,
                    }
                } else if t.keyword("samerole") || t.keyword("samegroup") {
                    match &c.database {
                        Some(d) => c.member(d),
                        None => Match::Maybe,
                    }
                } else if t.keyword("replication") {
                    Match::No
                } else {
                    match &c.database {
                        Some(d) => Match::from(&t.text == d),
                        None => Match::Maybe,
                    }
                }
            })
            .max()
            .unwrap_or(Match::No);
        let user = self
            .users
            .iter()
            .map(|t| {
                if unread_file(t) {
                    Match::Maybe
                } else if !t.quoted && t.text.starts_with('+') {
                    c.member(&t.text[1..])
                } else if t.keyword("all") {
                    Match::Yes
                } else {
                    match &c.user {
                        Some(u) => Match::from(&t.text == u),
                        None => Match::Maybe,
                    }
                }
            })
            .max()
            .unwrap_or(Match::No);
        [ty, addr, db, user]
    }

    /// Each part of the decision (the line's type, address, database, user): whether it
    /// matches `c`, and why not (or why it might), in words.
    pub fn parts(&self, c: &Connection) -> [(Match, String); 4] {
        let [ty, addr, db, user] = self.part_matches(c);
        let ty_why = match (ty, self.conn_type) {
            (Match::Yes, _) => String::new(),
            (_, ConnType::Local) => "a local line (Unix socket connections only)".to_owned(),
            (m, t) => {
                let (what, want) = match t {
                    ConnType::HostSsl => ("SSL", true),
                    ConnType::HostNoSsl => ("SSL", false),
                    ConnType::HostGssEnc => ("GSSAPI encryption", true),
                    _ => ("GSSAPI encryption", false),
                };
                match (m, want) {
                    (Match::Maybe, _) => format!("whether the client uses {what} is not known"),
                    (_, true) => format!("the connection does not use {what}"),
                    (_, false) => format!("the connection uses {what}"),
                }
            }
        };
        let listed = |ts: &[Token]| {
            ts.iter()
                .map(|t| {
                    if t.quoted {
                        format!("\"{}\"", t.text)
                    } else {
                        t.text.clone()
                    }
                })
                .collect::<Vec<_>>()
                .join(",")
        };
        let db_why = match (db, c.replication) {
            (Match::Yes, _) => String::new(),
            (Match::No, true) => format!(
                "database {}: a replication connection matches only the replication keyword",
                listed(&self.databases)
            ),
            (Match::No, false) => format!(
                "database {} does not name {}",
                listed(&self.databases),
                c.database.as_deref().unwrap_or("the database")
            ),
            (Match::Maybe, _) => format!(
                "database {} may name it (an @file not read, a regular expression, or the \
                 database or memberships not known)",
                listed(&self.databases)
            ),
        };
        let user_why = match user {
            Match::Yes => String::new(),
            Match::No => format!(
                "user {} does not name {}",
                listed(&self.users),
                c.user.as_deref().unwrap_or("the user")
            ),
            Match::Maybe => format!(
                "user {} may name it (a group whose members are not known, an @file not read, \
                 a regular expression, or any user)",
                listed(&self.users)
            ),
        };
        let addr_why = match (addr, &self.address) {
            (Match::Yes, _) | (_, None) => String::new(),
            (Match::No, Some(a)) => format!("address {a} does not contain {}", c.addr),
            (Match::Maybe, Some(a)) => format!(
                "address {a} may contain {} (a host name, or the server's own addresses: \
                 keyferry cannot tell from the file)",
                c.addr
            ),
        };
        [
            (ty, ty_why),
            (addr, addr_why),
            (db, db_why),
            (user, user_why),
        ]
    }

    /// A method that lets a peer in with the replication user's password.
    pub fn admits_password(&self) -> bool {
        matches!(
            self.method.as_str(),
            "md5" | "scram-sha-256" | "password" | "trust"
        )
    }
}

/// A file's text from its bytes: UTF-8 when it is, else Latin-1 (one character per byte), as
/// PostgreSQL reads any bytes (a Latin-1 comment is no reason to refuse a file it loads).
/// `true` when it was not UTF-8: [`encode`] then writes it back byte for byte.
pub fn decode(bytes: &[u8]) -> (String, bool) {
    match std::str::from_utf8(bytes) {
        Ok(t) => (t.to_owned(), false),
        Err(_) => (bytes.iter().map(|&b| char::from(b)).collect(), true),
    }
}

/// The bytes of a text [`decode`] read (`latin1`: one byte per character; every character
/// keyferry adds is ASCII).
pub fn encode(text: &str, latin1: bool) -> Vec<u8> {
    if latin1 {
        text.chars()
            .map(|c| u8::try_from(u32::from(c)).unwrap_or(b'?'))
            .collect()
    } else {
        text.as_bytes().to_vec()
    }
}

/// An `@file` reader for a `pg_hba.conf` in `dir`: a name relative to that folder (or
/// absolute), read as a regular file (never through a link), bounded.
pub fn files_beside(dir: &std::path::Path) -> impl Fn(&str) -> Result<String, String> + '_ {
    move |name: &str| {
        let path = dir.join(name);
        crate::fs::read_bounded(&path, 1 << 20, "secondary authentication file")
            .map(|b| decode(&b).0)
            .map_err(|e| format!("{}: {e}", path.display()))
    }
}

/// Parses a whole file as the server keyferry assumes ([`Server::here`]) reads it, without
/// reading `@file`s. Never fails: lines PostgreSQL would reject are kept as
/// [`EntryKind::Invalid`] (the file still serialises byte for byte).
pub fn parse(text: &str) -> HbaFile {
    parse_for(text, &Server::here(), None)
}

/// Parses a whole file as `server` reads it, its `@file`s read through `files`.
pub fn parse_for(text: &str, server: &Server, files: parse::Files<'_>) -> HbaFile {
    let lines: Vec<String> = text.split_inclusive('\n').map(str::to_owned).collect();
    let mut entries = Vec::new();
    for l in parse::logical_lines(text) {
        let kind = match parse::fields(&l.text, files, 0) {
            Ok(fields) if fields.is_empty() => continue,
            Ok(fields) => parse::entry(&fields, server).unwrap_or_else(EntryKind::Invalid),
            Err(why) => EntryKind::Invalid(why),
        };
        entries.push(Entry {
            first: l.first,
            last: l.last,
            kind,
        });
    }
    HbaFile { lines, entries }
}

use parse::strip_eol;

impl HbaFile {
    /// The file's text, byte for byte.
    pub fn text(&self) -> String {
        self.lines.concat()
    }

    /// The rule that decides `c` (the first that surely matches) and the lines above it
    /// that might catch it first, by index into [`HbaFile::entries`].
    pub fn decide(&self, c: &Connection) -> Decision {
        let mut maybe = Vec::new();
        for (i, e) in self.entries.iter().enumerate() {
            if let EntryKind::Rule(r) = &e.kind {
                match r.matches(c) {
                    Match::Yes => {
                        return Decision {
                            entry: Some(i),
                            maybe_before: maybe,
                        }
                    }
                    Match::Maybe => maybe.push(i),
                    Match::No => {}
                }
            }
        }
        Decision {
            entry: None,
            maybe_before: maybe,
        }
    }

    /// The rule of entry `i`.
    pub fn rule(&self, i: usize) -> Option<&Rule> {
        match &self.entries.get(i)?.kind {
            EntryKind::Rule(r) => Some(r),
            _ => None,
        }
    }

    /// Whether `c` is let in with a password for sure: it is decided by a password rule, and
    /// nothing above that might catch it would refuse it.
    pub fn admits(&self, c: &Connection) -> bool {
        let d = self.decide(c);
        d.entry
            .and_then(|i| self.rule(i))
            .is_some_and(Rule::admits_password)
            && d.maybe_before
                .iter()
                .all(|&i| self.rule(i).is_some_and(Rule::admits_password))
    }

    /// The line ending the file mostly uses (`\r\n` if most of its lines end so).
    pub fn eol(&self) -> &'static str {
        let crlf = self.lines.iter().filter(|l| l.ends_with("\r\n")).count();
        if crlf * 2 > self.lines.len() {
            "\r\n"
        } else {
            "\n"
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn conn(replication: bool, user: Option<&str>, addr: &str) -> Connection {
        Connection::new(replication, user, addr.parse().unwrap())
    }

    #[test]
    fn parses_the_forms_postgres_reads() {
        let f = parse(
            "# comment\r\n\
             local all postgres peer\r\n\
             host \"all\",db2 +admins,bob 10.0.0.0 255.0.0.0 md5 # trailing\r\n\
             host replication repuser 10.1.2.3/32 \\\r\n   scram-sha-256\r\n\
             hostssl all all ::1/128 cert clientcert=verify-full\r\n\
             host all all .example.com md5\r\n\
             host all all 10.0.0.1 255.0.255.0 md5\r\n\
             host all all 10.0.0.1/33 md5\n\
             host \"all all 10.0.0.1/32 md5\n\
             include_if_exists other.conf\n\
             host all all 0.0.0.0/0 reject",
        );
        assert_eq!(f.entries.len(), 10);
        let EntryKind::Rule(r) = &f.entries[1].kind else {
            panic!("{:?}", f.entries[1])
        };
        assert_eq!(
            r.databases[0],
            Token {
                text: "all".into(),
                quoted: true,
                regex: false
            }
        );
        assert_eq!(r.users[0].text, "+admins");
        assert_eq!(
            r.address,
            Some(Address::Net("10.0.0.0".parse().unwrap(), 8))
        );
        let e = &f.entries[2];
        assert_eq!((e.first, e.last), (3, 4), "a continued line spans two");
        assert_eq!(f.rule(2).unwrap().method, "scram-sha-256");
        assert_eq!(f.rule(3).unwrap().options, ["clientcert=verify-full"]);
        assert_eq!(
            f.rule(4).unwrap().address,
            Some(Address::Name(".example.com".into()))
        );
        // A mask that is not contiguous is loaded (PostgreSQL compares the bits it has).
        assert_eq!(
            f.rule(5).unwrap().address,
            Some(Address::Masked(
                "10.0.0.1".parse().unwrap(),
                "255.0.255.0".parse().unwrap()
            ))
        );
        // /33, an open quote, and (before PostgreSQL 16) an include line.
        for bad in [6, 7, 8] {
            assert!(
                matches!(f.entries[bad].kind, EntryKind::Invalid(_)),
                "{bad}: {:?}",
                f.entries[bad]
            );
        }
        let v16 = Server {
            major: 16,
            windows: false,
        };
        let g = parse_for("include_if_exists other.conf\n", &v16, None);
        assert!(matches!(g.entries[0].kind, EntryKind::Include(_)));
        assert_eq!(f.eol(), "\r\n");
    }

    /// Continuations as PostgreSQL 15 reads them (each checked against a real server's
    /// `pg_hba_file_rules`): a comment ending in a backslash swallows the next line, a
    /// continuation joins with nothing between (`/3\` + `2` is `/32`), a backslash ends the
    /// last line harmlessly, and `\r\r\n` is one line end.
    #[test]
    fn continuations_join_as_postgres_joins_them() {
        let f = parse("local all all trust\n# disabled \\\nhost all all 0.0.0.0/0 trust\n");
        let any: IpAddr = "192.0.2.7".parse().unwrap();
        assert!(
            !f.admits(&conn(false, None, "192.0.2.7")),
            "the trust line is part of the comment: {:?}",
            f.entries
        );
        assert_eq!(f.entries.len(), 1, "{:?}", f.entries);
        assert!(!f.admits(&conn(false, None, &any.to_string())));
        // The field report: `ha hba` put its block between such a comment and the line it
        // swallows, which turned that trust line on for every client. The block now goes
        // around the pair, never between them, and the trust line stays swallowed.
        let text = "local all all peer\n# off for now \\\nhost all all 0.0.0.0/0 trust\nhost all all 0.0.0.0/0 reject\n";
        let edit = plan_edit(text, &rules(&["10.0.0.5", "10.0.0.6"]), None).unwrap();
        assert!(
            edit.text
                .contains("# off for now \\\nhost all all 0.0.0.0/0 trust\n"),
            "{}",
            edit.text
        );
        let after = parse(&edit.text);
        assert!(
            !after.admits(&conn(false, None, "192.0.2.7")),
            "{}",
            edit.text
        );
        assert!(
            after.admits(&conn(true, Some("repuser"), "10.0.0.5")),
            "{}",
            edit.text
        );
        let f = parse("host all all 10.20.0.5/3\\\n2 md5\n");
        assert_eq!(
            f.rule(0).unwrap().address,
            Some(Address::Net("10.20.0.5".parse().unwrap(), 32))
        );
        let f = parse("host all all 10.0.0.1/32 md5 \\");
        assert_eq!(f.rule(0).unwrap().method, "md5");
        assert!(f.rule(0).unwrap().options.is_empty());
        let f = parse("host all all 10.0.0.1/32 md5\r\r\nhost all all 10.0.0.2/32 md5\r\r\n");
        assert_eq!(f.entries.len(), 2);
        assert_eq!(f.rule(1).unwrap().method, "md5");
    }

    /// Quotes as PostgreSQL 15 reads them (checked against a real server): only a token that
    /// starts with a quote is quoted; two quotes inside quotes are one; a no-break space, a
    /// vertical tab or a form feed is part of a token, not a blank between two.
    #[test]
    fn a_token_is_quoted_only_where_it_starts_with_a_quote() {
        let tok = |line: &str| parse::fields(line, None, 0).unwrap();
        let t = tok("host al\"l\" +\"replicators\" \"rep\"\"user\" repl\"ication\"");
        assert_eq!(
            t[1],
            [Token {
                text: "all".into(),
                quoted: false,
                regex: false
            }]
        );
        assert_eq!(
            t[2],
            [Token {
                text: "+replicators".into(),
                quoted: false,
                regex: false
            }]
        );
        assert_eq!(
            t[3],
            [Token {
                text: "rep\"user".into(),
                quoted: true,
                regex: false
            }]
        );
        assert_eq!(
            t[4],
            [Token {
                text: "replication".into(),
                quoted: false,
                regex: false
            }]
        );
        assert_eq!(
            tok("\"all\"")[0],
            [Token {
                text: "all".into(),
                quoted: true,
                regex: false
            }]
        );
        // `al"l"` is the keyword: it matches a user of any name; `repl"ication"` matches a
        // replication connection.
        let f = parse("host repl\"ication\" al\"l\" 10.0.0.5/32 md5\n");
        assert!(
            f.admits(&conn(true, Some("whoever"), "10.0.0.5")),
            "{:?}",
            f.entries
        );
        for odd in ['\u{a0}', '\u{b}', '\u{c}'] {
            let fields = tok(&format!("host all{odd}all 10.0.0.5/32 md5"));
            assert_eq!(fields.len(), 4, "{odd:?} is not a blank: {fields:?}");
        }
    }

    #[test]
    fn first_match_decides_and_all_does_not_cover_replication() {
        let f = parse(
            "host all all 10.0.0.0/8 md5\n\
             host replication repuser 10.0.0.5/32 md5\n\
             host all all 0.0.0.0/0 reject\n",
        );
        let rep = conn(true, Some("repuser"), "10.0.0.5");
        assert_eq!(f.decide(&rep).entry, Some(1));
        assert!(f.admits(&rep));
        assert_eq!(f.decide(&conn(false, None, "10.0.0.5")).entry, Some(0));
        // `all` does not cover replication: not even the final reject catches it (and with
        // no line deciding, it is refused).
        let other = conn(true, Some("repuser"), "192.168.1.1");
        assert_eq!(f.decide(&other).entry, None);
        assert!(!f.admits(&other));
        assert_eq!(f.decide(&conn(false, None, "192.168.1.1")).entry, Some(2));
        // The same rule in the mask form.
        let g = parse("host replication repuser 10.0.0.5 255.255.255.255 md5\n");
        assert_eq!(g.rule(0).unwrap().address, f.rule(1).unwrap().address);
        // A quoted "replication" is a database of that name, not replication connections.
        let q = parse("host \"replication\" all all md5\n");
        assert_eq!(q.decide(&rep).entry, None);
        // Group membership and SSL are unknown: maybe, and a maybe-reject spoils admission.
        let m = parse("hostssl replication +ops 10.0.0.0/8 reject\nhost replication all all md5\n");
        let d = m.decide(&rep);
        assert_eq!((d.entry, d.maybe_before), (Some(1), vec![0]));
        assert!(!m.admits(&rep));
    }

    fn rules(peers: &[&str]) -> PeerRules {
        PeerRules {
            peers: peers.iter().map(|p| p.parse().unwrap()).collect(),
            repuser: "repuser".into(),
            method: "md5".into(),
            override_reject: false,
            server: Server {
                major: 16,
                windows: false,
            },
        }
    }

    const DEBIAN: &str = "# Database administrative login by Unix domain socket\n\
        local   all             postgres                                peer\n\
        local   all             all                                     peer\n\
        host    all             all             127.0.0.1/32            scram-sha-256\n\
        host    all             all             ::1/128                 scram-sha-256\n\
        local   replication     all                                     peer\n\
        host    all             all             10.0.0.0/8              ldap ldapserver=x ldapbasedn=dc=x\n\
        host    all             all             0.0.0.0/0               reject\n";

    #[test]
    fn the_block_goes_above_the_first_line_that_would_catch_a_peer() {
        let want = rules(&["10.0.0.5", "10.0.0.6"]);
        let edit = plan_edit(DEBIAN, &want, None).unwrap();
        assert!(edit.changed);
        let lines: Vec<&str> = edit.text.lines().collect();
        let at = lines.iter().position(|l| *l == BEGIN).unwrap();
        assert!(
            lines[at - 1].starts_with("local   replication"),
            "{}",
            edit.text
        );
        assert_eq!(
            lines[at + 1],
            "host    replication  repuser      10.0.0.5/32          md5"
        );
        // Every line of the file is still there, byte for byte and in order.
        let without: String = edit
            .text
            .split_inclusive('\n')
            .filter(|l| {
                !l.starts_with("# keyferry ha")
                    && !l.starts_with("host    replication  ")
                    && !l.starts_with("host    all          all          10.0.0.")
            })
            .collect();
        assert_eq!(without, DEBIAN);
        let after = parse(&edit.text);
        for (c, before, now) in &edit.decisions {
            assert!(after.admits(c), "{c}: {now}");
            assert!(!parse(DEBIAN).admits(c), "{c}: {before}");
        }
        // Planned again: nothing to do.
        let again = plan_edit(&edit.text, &want, None).unwrap();
        assert!(!again.changed);
        assert_eq!(again.text, edit.text);
    }

    #[test]
    fn refusals_and_files_that_need_nothing() {
        let want = rules(&["10.0.0.5", "10.0.0.6"]);
        let reject = format!("host all all 10.0.0.5/32 reject\n{DEBIAN}");
        assert!(matches!(
            plan_edit(&reject, &want, None),
            Err(Refusal::Reject { line: 1, .. })
        ));
        let forced = PeerRules {
            override_reject: true,
            ..want.clone()
        };
        assert!(
            parse(&plan_edit(&reject, &forced, None).unwrap().text).admits(&conn(
                true,
                Some("repuser"),
                "10.0.0.5"
            ))
        );
        let broken = format!("{DEBIAN}host all all 10.0.0.1 md5\n");
        assert!(matches!(
            plan_edit(&broken, &want, None),
            Err(Refusal::Invalid { line: 9, .. })
        ));
        let include = format!("include_dir conf.d\n{DEBIAN}");
        let r = plan_edit(&include, &want, None);
        assert!(
            matches!(r, Err(Refusal::Include { line: 1 })),
            "{:?}",
            r.map(|e| e.text)
        );
        let damaged = format!("{BEGIN}\n{DEBIAN}");
        assert_eq!(
            plan_edit(&damaged, &want, None).unwrap_err(),
            Refusal::DamagedBlock
        );
        assert!(matches!(
            plan_edit(
                DEBIAN,
                &PeerRules {
                    repuser: "rep user".into(),
                    ..want.clone()
                },
                None
            ),
            Err(Refusal::BadName(_))
        ));
        // An admin's own lines that already let both peers in: nothing to change.
        let done = "host replication repuser 10.0.0.5 255.255.255.255 md5\r\n\
                    host replication repuser 10.0.0.6/32 scram-sha-256\r\n\
                    host all all 10.0.0.0/24 md5\r\n\
                    host all all 0.0.0.0/0 reject\r\n";
        let e = plan_edit(done, &want, None).unwrap();
        assert!(!e.changed);
        // CRLF files get CRLF lines; a file without a final newline keeps its bytes as a prefix.
        let crlf = plan_edit("host all all 0.0.0.0/0 reject\r\n", &want, None).unwrap();
        assert!(crlf.text.contains(&format!("{BEGIN}\r\n")));
        let bare = plan_edit("local all all peer", &want, None).unwrap();
        assert!(bare
            .text
            .starts_with("local all all peer\n# keyferry ha: begin"));
    }

    fn line() -> impl Strategy<Value = String> {
        let tok = prop_oneof![
            Just("all".to_string()),
            Just("replication".to_string()),
            Just("\"all\"".to_string()),
            Just("repuser".to_string()),
            Just("+grp".to_string()),
            Just("10.0.0.5/32".to_string()),
            Just("10.0.0.0 255.0.0.0".to_string()),
            Just("0.0.0.0/0".to_string()),
            Just("md5".to_string()),
            Just("reject".to_string()),
            Just("host".to_string()),
            Just("local".to_string()),
            Just("hostssl".to_string()),
            Just("#".to_string()),
            Just("\\".to_string()),
            Just("\"".to_string()),
            Just(",".to_string()),
            "[a-z0-9.:/]{1,8}",
        ];
        (
            proptest::collection::vec(tok, 0..8),
            prop_oneof![Just("\n"), Just("\r\n"), Just(" \t\n")],
        )
            .prop_map(|(t, eol)| t.join(" ") + eol)
    }

    proptest! {
        /// Whatever the text, parsing keeps every byte, and each entry spans real lines.
        #[test]
        fn parse_keeps_every_byte(lines in proptest::collection::vec(line(), 0..12), tail in "[ -~]{0,12}") {
            let text = lines.concat() + &tail;
            let f = parse(&text);
            prop_assert_eq!(f.text(), text);
            for w in f.entries.windows(2) {
                prop_assert!(w[0].last < w[1].first);
            }
            for e in &f.entries {
                prop_assert!(e.first <= e.last && e.last < f.lines.len());
            }
        }

        /// The simulation is PostgreSQL's rule: the decider is the first line that surely
        /// matches, no line before it surely matches, and an exact /32 password line at the
        /// top always decides its peer's connections.
        #[test]
        fn first_sure_match_decides(lines in proptest::collection::vec(line(), 0..12), last in 0u8..255) {
            let text = lines.concat();
            let c = conn(true, Some("repuser"), &format!("10.0.0.{last}"));
            let f = parse(&text);
            let d = f.decide(&c);
            let sure: Vec<usize> = (0..f.entries.len())
                .filter(|&i| f.rule(i).is_some_and(|r| r.matches(&c) == Match::Yes))
                .collect();
            prop_assert_eq!(d.entry, sure.first().copied());
            let top = format!("host replication repuser 10.0.0.{last}/32 md5\n{text}");
            let g = parse(&top);
            prop_assert_eq!(g.decide(&c).entry, Some(0));
            prop_assert!(g.admits(&c));
        }

        /// Any edit keyferry makes lets both peers in, keeps every other line byte for byte,
        /// and is made once: planned again, nothing changes.
        #[test]
        fn edits_admit_both_peers_and_keep_every_other_line(lines in proptest::collection::vec(line(), 0..12)) {
            let text = lines.concat();
            let want = rules(&["10.0.0.5", "10.0.0.6"]);
            if let Ok(edit) = plan_edit(&text, &want, None) {
                let after = parse(&edit.text);
                for (c, _, now) in &edit.decisions {
                    prop_assert!(after.admits(c), "{}: {}", c, now);
                }
                let mut kept: Vec<&str> = Vec::new();
                let mut inside = false;
                for l in edit.text.split_inclusive('\n') {
                    match strip_eol(l) {
                        BEGIN => inside = true,
                        END => inside = false,
                        _ if !inside => kept.push(l),
                        _ => {}
                    }
                }
                let kept = kept.concat();
                prop_assert!(kept == text || kept == format!("{text}\n"), "{:?}", kept);
                let again = plan_edit(&edit.text, &want, None).unwrap();
                prop_assert!(!again.changed);
            }
        }
    }
}
