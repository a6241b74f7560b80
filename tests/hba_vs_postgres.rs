//! keyferry's reading of `pg_hba.conf` held against PostgreSQL 15 itself, on seeded generated
//! files (quoting, lists, groups, `@file`s, continuations, CRLF and `\r\r\n`, comments that
//! swallow the next line, IPv4 in the C library's forms, IPv6 with a zone, masks contiguous or
//! not, every method and its options, Latin-1 bytes, invalid lines of every kind):
//!
//! - **parse**: each file (and its `@file`s) is written into a real server's data folder, and
//!   PostgreSQL's `pg_hba_file_rules` (its verdict per logical line: a rule, or an error) must
//!   be exactly keyferry's (the same logical lines, the same lines in error);
//! - **decision**: each file PostgreSQL loads is loaded (`pg_reload_conf`), and real startup
//!   packets are sent from chosen source addresses (IPv4 and IPv6, inside the test's own
//!   network namespace) as chosen users, to chosen databases or for replication. The server's
//!   answer (an authentication request of a kind, or "no pg_hba.conf entry", or "rejects")
//!   must be what keyferry's decision (the line it says decides, and that line's method)
//!   predicts.
//!
//! `KEYFERRY_HBA_FILES` (default 80) and `KEYFERRY_HBA_SEED` choose the run. Needs root and
//! PostgreSQL 15 (skipped with the reason elsewhere, failed under CI). Only the test's own
//! addresses (10.232.0.0/24, fd77::/64 on its veth pair) are contacted.

#![cfg(target_os = "linux")]

use crate::pgbed;

use keyferry::ha::hba::{self, Connection, EntryKind, Server};
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const SERVER4: &str = "10.232.0.1";
const SERVER6: &str = "fd77::1";
/// The client addresses the test's side of the veth holds (.250 only for the reload marker).
const CLIENTS: [&str; 5] = [
    "10.232.0.2",
    "10.232.0.5",
    "10.232.0.9",
    "fd77::2",
    "fd77::5",
];
const MARKER_SRC: &str = "10.232.0.250";
const PG15: Server = Server {
    major: 15,
    windows: false,
};

fn sh(cmd: &mut Command) -> std::process::Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// One PostgreSQL 15 server in a namespace of its own, reached over a veth pair whose other
/// end (in this namespace) holds the client addresses.
struct Judge {
    dir: PathBuf,
    ns: String,
}

impl Judge {
    fn new() -> Judge {
        let id = std::process::id() % 100_000;
        let dir = PathBuf::from(format!("/tmp/kf-hba-{id}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        sh(Command::new("chown").arg("postgres:postgres").arg(&dir));
        let ns = format!("kfh{id}");
        let (va, vb) = (format!("kh{id}a"), format!("kh{id}b"));
        let ip = |args: &[&str]| sh(Command::new("ip").args(args));
        ip(&["netns", "add", &ns]);
        let judge = Judge {
            dir: dir.clone(),
            ns: ns.clone(),
        };
        ip(&["link", "add", &va, "type", "veth", "peer", "name", &vb]);
        ip(&["link", "set", &va, "netns", &ns]);
        ip(&[
            "-n",
            &ns,
            "addr",
            "add",
            &format!("{SERVER4}/24"),
            "dev",
            &va,
        ]);
        ip(&[
            "-n",
            &ns,
            "addr",
            "add",
            &format!("{SERVER6}/64"),
            "dev",
            &va,
            "nodad",
        ]);
        ip(&["-n", &ns, "link", "set", &va, "up"]);
        ip(&["-n", &ns, "link", "set", "lo", "up"]);
        for c in CLIENTS.iter().chain([&MARKER_SRC]) {
            let len = if c.contains(':') { 64 } else { 24 };
            let mut args = vec!["addr", "add"];
            let a = format!("{c}/{len}");
            args.extend([a.as_str(), "dev", &vb]);
            if len == 64 {
                args.push("nodad");
            }
            ip(&args);
        }
        ip(&["link", "set", &vb, "up"]);
        let pg = |args: &[&str]| {
            sh(Command::new("runuser")
                .args(["-u", "postgres", "--"])
                .arg(Path::new(pgbed::BIN).join(args[0]))
                .args(&args[1..]))
        };
        let data = judge.data();
        pg(&[
            "initdb",
            "-D",
            data.to_str().unwrap(),
            "-U",
            "postgres",
            "-A",
            "peer",
            "--no-sync",
        ]);
        let (cert, key) = ssl_files(&dir);
        // The languages the server speaks in the message test, built here (LOCPATH).
        let locales = dir.join("locales");
        std::fs::create_dir_all(&locales).unwrap();
        for (l, name) in [("de_DE", "de_DE.UTF-8"), ("fr_FR", "fr_FR.UTF-8")] {
            sh(Command::new("localedef")
                .args(["-i", l, "-f", "UTF-8"])
                .arg(locales.join(name)));
        }
        sh(Command::new("chmod").args(["-R", "a+rX"]).arg(&locales));
        let mut conf = std::fs::OpenOptions::new()
            .append(true)
            .open(data.join("postgresql.conf"))
            .unwrap();
        write!(
            conf,
            "\nlisten_addresses = '{SERVER4},{SERVER6}'\nport = 5432\n\
             unix_socket_directories = '{}'\nfsync = off\nlc_messages = 'C'\n\
             ssl = on\nssl_cert_file = '{}'\nssl_key_file = '{}'\n",
            dir.display(),
            cert.display(),
            key.display()
        )
        .unwrap();
        drop(conf);
        judge.write(&data.join("pg_hba.conf"), b"local all postgres peer\n");
        sh(Command::new("ip")
            .args([
                "netns", "exec", &ns, "runuser", "-u", "postgres", "--", "env",
            ])
            .arg(format!("LOCPATH={}", locales.display()))
            .arg(Path::new(pgbed::BIN).join("pg_ctl"))
            .arg("-D")
            .arg(&data)
            .args(["-w", "-l"])
            .arg(dir.join("log"))
            .arg("start"));
        judge.sql(
            "CREATE ROLE admins NOLOGIN; \
             CREATE ROLE app LOGIN PASSWORD 'Kf-app-1'; \
             CREATE ROLE admin1 LOGIN PASSWORD 'Kf-adm-1' IN ROLE admins; \
             CREATE ROLE repuser REPLICATION LOGIN PASSWORD 'Kf-rep-1'; \
             CREATE ROLE \"rep\"\"user\" LOGIN PASSWORD 'Kf-rq-1'; \
             CREATE ROLE limited LOGIN CONNECTION LIMIT 0;",
        );
        judge
    }

    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// Writes a file as the server's account owns its files.
    fn write(&self, path: &Path, bytes: &[u8]) {
        std::fs::write(path, bytes).unwrap();
        sh(Command::new("chown").arg("postgres:postgres").arg(path));
    }

    fn sql(&self, sql: &str) -> String {
        let out = sh(Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(Path::new(pgbed::BIN).join("psql"))
            .args(["-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h"])
            .arg(&self.dir)
            .args(["-d", "postgres", "-c", sql]));
        String::from_utf8(out.stdout).unwrap()
    }
}

impl Drop for Judge {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "exec", &self.ns, "runuser", "-u", "postgres", "--"])
            .arg(Path::new(pgbed::BIN).join("pg_ctl"))
            .args([
                "-D",
                self.data().to_str().unwrap(),
                "-m",
                "immediate",
                "stop",
            ])
            .output();
        let _ = Command::new("ip").args(["netns", "del", &self.ns]).output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The server's certificate and key: Debian's snakeoil pair (readable by the `ssl-cert`
/// group, which postgres is in), else one made here.
fn ssl_files(dir: &Path) -> (PathBuf, PathBuf) {
    let (cert, key) = (
        PathBuf::from("/etc/ssl/certs/ssl-cert-snakeoil.pem"),
        PathBuf::from("/etc/ssl/private/ssl-cert-snakeoil.key"),
    );
    if cert.exists() && key.exists() {
        return (cert, key);
    }
    let (cert, key) = (dir.join("server.crt"), dir.join("server.key"));
    sh(Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
        ])
        .args(["-subj", "/CN=kf-hba-test", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&cert));
    for f in [&cert, &key] {
        sh(Command::new("chown").arg("postgres:postgres").arg(f));
    }
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    (cert, key)
}

/// What the server answered a startup packet.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Answer {
    /// An authentication request of this type (0 ok, 3 cleartext, 5 MD5, 7 GSS, 10 SASL).
    Auth(i32),
    NoEntry,
    Rejects,
    IdentFailed,
    /// Any other error (after a `trust` line: no such role or database, not a walsender).
    Other(String),
}

/// Sends a protocol 3.0 startup packet from `src` and reads the first answer.
fn startup(src: IpAddr, user: &str, database: Option<&str>) -> Answer {
    startup_with(src, user, database, None).0
}

/// A startup packet, a password when the server asks for one in clear text, and the answer
/// (with the server's error text, when it is an error).
fn startup_with(
    src: IpAddr,
    user: &str,
    database: Option<&str>,
    password: Option<&str>,
) -> (Answer, String) {
    use socket2::{Domain, Socket, Type};
    let dst: SocketAddr = if src.is_ipv4() {
        format!("{SERVER4}:5432").parse().unwrap()
    } else {
        format!("[{SERVER6}]:5432").parse().unwrap()
    };
    let s = Socket::new(Domain::for_address(dst), Type::STREAM, None).unwrap();
    s.bind(&SocketAddr::new(src, 0).into()).unwrap();
    s.connect_timeout(&dst.into(), Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("connect from {src}: {e}"));
    let mut stream: std::net::TcpStream = s.into();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut body = Vec::new();
    body.extend_from_slice(&196_608i32.to_be_bytes());
    let mut param = |k: &str, v: &str| {
        body.extend_from_slice(k.as_bytes());
        body.push(0);
        body.extend_from_slice(v.as_bytes());
        body.push(0);
    };
    param("user", user);
    match database {
        Some(d) => param("database", d),
        None => param("replication", "true"),
    }
    body.push(0);
    let mut packet = ((body.len() + 4) as i32).to_be_bytes().to_vec();
    packet.extend(body);
    stream.write_all(&packet).unwrap();
    let read = |stream: &mut std::net::TcpStream| {
        let mut head = [0u8; 5];
        stream.read_exact(&mut head).unwrap();
        let len = i32::from_be_bytes(head[1..5].try_into().unwrap()) as usize;
        let mut msg = vec![0u8; len.saturating_sub(4)];
        stream.read_exact(&mut msg).unwrap();
        (head[0], msg)
    };
    let (mut kind, mut msg) = read(&mut stream);
    if let (b'R', Some(pw)) = (kind, password.filter(|p| !p.is_empty())) {
        if msg[0..4] == 3i32.to_be_bytes() {
            let mut p = vec![b'p'];
            p.extend_from_slice(&((pw.len() + 5) as i32).to_be_bytes());
            p.extend_from_slice(pw.as_bytes());
            p.push(0);
            stream.write_all(&p).unwrap();
            (kind, msg) = read(&mut stream);
        }
    }
    if password.is_some() && kind == b'R' && msg[0..4] == 0i32.to_be_bytes() {
        // Logged in (trust): what fails after the login (no such role or database, not a
        // replication role, a limit) comes next.
        while !matches!(kind, b'E' | b'Z') {
            (kind, msg) = read(&mut stream);
        }
    }
    match kind {
        b'R' => (
            Answer::Auth(i32::from_be_bytes(msg[0..4].try_into().unwrap())),
            String::new(),
        ),
        b'E' => {
            let text = msg
                .split(|&b| b == 0)
                .find(|f| f.first() == Some(&b'M'))
                .map(|f| String::from_utf8_lossy(&f[1..]).into_owned())
                .unwrap_or_default();
            let answer = if text.contains("no pg_hba.conf entry") {
                Answer::NoEntry
            } else if text.contains("pg_hba.conf rejects") {
                Answer::Rejects
            } else if text.contains("Ident authentication failed") {
                Answer::IdentFailed
            } else {
                Answer::Other(text.clone())
            };
            (answer, text)
        }
        other => (
            Answer::Other(format!("message {}", other as char)),
            String::new(),
        ),
    }
}

/// What keyferry predicts from the method of the line it says decides.
fn predicted(method: Option<&str>) -> &'static str {
    match method {
        None => "no entry",
        Some("reject") => "rejects",
        Some("trust") => "trust",
        Some("md5") => "md5",
        Some("scram-sha-256") => "scram",
        Some("password" | "pam" | "ldap" | "radius") => "cleartext",
        Some("gss") => "gss",
        Some("ident") => "ident",
        Some(_) => "never over plain TCP",
    }
}

/// Whether the server's answer is what the prediction says.
fn agrees(prediction: &str, answer: &Answer) -> bool {
    match (prediction, answer) {
        ("no entry", Answer::NoEntry) | ("rejects", Answer::Rejects) => true,
        ("trust", Answer::Auth(0) | Answer::Other(_)) => true,
        // An MD5 line does SCRAM for a SCRAM-stored password.
        ("md5", Answer::Auth(5 | 10)) => true,
        ("scram", Answer::Auth(10)) => true,
        ("cleartext", Answer::Auth(3)) => true,
        ("gss", Answer::Auth(7)) => true,
        ("ident", Answer::IdentFailed) => true,
        _ => false,
    }
}

/// A small seeded generator (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn pct(&mut self, p: usize) -> bool {
        self.below(100) < p
    }
    fn pick<'a>(&mut self, xs: &[&'a str]) -> &'a str {
        xs[self.below(xs.len())]
    }
    /// One of `(weight, text)`.
    fn weighted<'a>(&mut self, xs: &[(usize, &'a str)]) -> &'a str {
        let total: usize = xs.iter().map(|x| x.0).sum();
        let mut r = self.below(total);
        for (w, t) in xs {
            if r < *w {
                return t;
            }
            r -= w;
        }
        xs[0].1
    }
}

const DBS: [&str; 13] = [
    "all",
    "all",
    "replication",
    "sameuser",
    "samerole",
    "db1",
    "db2",
    "app",
    "admins",
    "\"all\"",
    "al\"l\"",
    "repl\"ication\"",
    "@dbs",
];
const USERS: [&str; 12] = [
    "all",
    "all",
    "app",
    "repuser",
    "bob",
    "admin1",
    "+admins",
    "+\"admins\"",
    "\"+admins\"",
    "\"rep\"\"user\"",
    "@users",
    "\"app\"",
];

/// A list of tokens from `xs`, joined as admins write lists (and, where invalid lines are
/// wanted, as they mistype them).
fn list(r: &mut Rng, xs: &[&str], odd: bool) -> String {
    let n = 1 + r.below(3) * usize::from(r.pct(40));
    let mut out = r.pick(xs).to_owned();
    for _ in 1..n {
        let sep = if odd {
            r.pick(&[",", ", ", ",,", " ,", ","])
        } else {
            r.pick(&[",", ", ", ",,", ","])
        };
        out.push_str(sep);
        out.push_str(r.pick(xs));
    }
    if r.pct(3) {
        out.push(',');
    }
    out
}

/// One rule line (no line end). `odd`: invalid forms may appear.
fn rule(r: &mut Rng, odd: bool) -> String {
    let mut conn = r
        .weighted(&[
            (50, "host"),
            (10, "hostnossl"),
            (8, "hostssl"),
            (4, "hostgssenc"),
            (6, "hostnogssenc"),
            (6, "local"),
            (3, "\"host\""),
        ])
        .to_owned();
    if odd && r.pct(8) {
        conn = r
            .pick(&["Host", "hostx", "include_if_exists", "h\"ost\""])
            .into();
    }
    let local = conn == "local";
    let mut f = vec![conn.clone(), list(r, &DBS, odd), list(r, &USERS, odd)];
    if !local {
        let mut addrs = vec![
            (10, "all"),
            (10, "10.232.0.0/24"),
            (8, "10.232.0.2/32"),
            (8, "10.232.0.5/32"),
            (5, "10.232.0.5 255.255.255.255"),
            (4, "10.232.0.0 255.255.255.248"),
            (3, "10.232.0.0 255.255.255.253"),
            (3, "012.0350.0.05/32"),
            (3, "10.232.5/32"),
            (3, "0x0ae80005/32"),
            (2, "10.232.0.0/-0"),
            (2, "10.232.0.2/+32"),
            (6, "fd77::/64"),
            (5, "fd77::5/128"),
            (3, "fd77::2 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"),
            (2, "fe80::1%lo"),
            (4, "0.0.0.0/0"),
            (3, "::/0"),
            (2, "samehost"),
            (2, "samenet"),
            (2, "\"all\""),
        ];
        if odd {
            addrs.extend([
                (3, "10.232.0.5/33"),
                (3, "10.232.0.256/32"),
                (2, "kf-nohost.invalid/24"),
                (2, "10.232.0.5"),
                (2, "10.232.0.5 ffff::"),
                (2, "10.232.0.0/0x8"),
            ]);
        }
        f.push(r.weighted(&addrs).to_owned());
    }
    let ssl = conn == "hostssl";
    let mut methods = vec![
        (15, "trust"),
        (10, "reject"),
        (15, "md5"),
        (15, "scram-sha-256"),
        (8, "password"),
        (4, "ident"),
        (3, "gss"),
        (3, "pam"),
        (3, "ldap ldapserver=10.232.0.77 ldapbasedn=\"dc=example,dc=com\""),
        (2, "ldap ldapprefix=cn= ldapsuffix=,dc=example"),
        (2, "radius radiusservers=10.232.0.77 radiussecrets=s3cret"),
        (1, "radius \"radiusservers=10.232.0.77, 10.232.0.78\" \"radiussecrets=a,b\" radiusports=1812"),
        (2, "\"md5\""),
    ];
    if local {
        methods.push((6, "peer"));
        methods.push((2, "peer map=omicron"));
    } else {
        methods.push((2, "ident map=omicron"));
    }
    if ssl {
        methods.push((4, "cert"));
        methods.push((3, "md5 clientcert=verify-full"));
        methods.push((2, "scram-sha-256 clientcert=verify-ca"));
    }
    if odd {
        methods.extend([
            (3, "MD5"),
            (2, "Trust"),
            (2, "scram"),
            (2, "md6"),
            (2, "sspi"),
            (2, "bsd"),
            (2, "ldap ldapserver=10.232.0.77"),
            (2, "radius radiusservers=10.232.0.77"),
            (
                1,
                "radius radiusservers=10.232.0.77 radiussecrets=s radiusports=0",
            ),
            (
                1,
                "radius \"radiusservers=10.232.0.77,,10.232.0.78\" radiussecrets=s",
            ),
            (
                1,
                "radius radiusservers=10.232.0.77,10.232.0.78 radiussecrets=s",
            ),
            (1, "ldap ldapurl=ldap://10.232.0.77"),
            (1, "ldap ldapurl=ldap://10.232.0.77/dc=x"),
            (2, "md5 foo=bar"),
            (2, "md5 nonsense"),
            (2, "md5 map=omicron"),
            (2, "trust clientcert=verify-full"),
            (2, "peer"),
            (2, "cert"),
            (2, "gss include_realm=0 krb_realm=X"),
            (1, "pam pamservice=login"),
        ]);
        if local {
            methods.push((2, "gss"));
        }
    }
    f.push(r.weighted(&methods).to_owned());
    let blank = |r: &mut Rng| -> &'static str {
        if odd && r.pct(3) {
            r.pick(&["\u{a0}", "\u{b}", "\u{c}"])
        } else {
            r.pick(&[" ", "  ", "\t", " \t ", "    "])
        }
    };
    let mut line = String::new();
    for (i, x) in f.iter().enumerate() {
        if i > 0 {
            line.push_str(blank(r));
        }
        line.push_str(x);
    }
    if r.pct(10) {
        line.push_str(" # note");
    }
    line
}

/// A generated file: its bytes, and its `@file`s (`None`: not written).
struct Generated {
    text: Vec<u8>,
    dbs: Option<String>,
    users: Option<String>,
}

fn generate(r: &mut Rng, marker: &str) -> Generated {
    let odd = r.pct(40);
    let mut text: Vec<u8> = Vec::new();
    // The harness's own socket access, and the line that says the file is loaded.
    text.extend_from_slice(b"local all postgres peer\n");
    text.extend_from_slice(format!("host all {marker} {MARKER_SRC}/32 reject\n").as_bytes());
    let n = 1 + r.below(9);
    for _ in 0..n {
        match r.below(100) {
            0..=5 => text.extend_from_slice(b"# a comment line\n"),
            6..=7 => text.extend_from_slice(b"\n"),
            8 => text.extend_from_slice(b"# caf\xe9 (Latin-1)\n"),
            // A comment ending in a backslash swallows the next line.
            9..=10 => text.extend_from_slice(b"# disabled \\\n"),
            _ => {
                let mut line = rule(r, odd);
                if odd && r.pct(4) {
                    let mut at = r.below(line.len());
                    while !line.is_char_boundary(at) {
                        at -= 1;
                    }
                    line.insert(at, '"');
                }
                // A continuation anywhere in the line (PostgreSQL joins with nothing between).
                if r.pct(8) {
                    let mut at = r.below(line.len());
                    while !line.is_char_boundary(at) {
                        at -= 1;
                    }
                    line.insert_str(at, "\\\n");
                }
                text.extend_from_slice(line.as_bytes());
                let eol: &[u8] = match r.below(20) {
                    0..=2 => b"\r\n",
                    3 => b"\r\r\n",
                    _ => b"\n",
                };
                text.extend_from_slice(eol);
            }
        }
    }
    if r.pct(5) {
        // The last line ends in a backslash.
        text.extend_from_slice(b"host all bob 10.232.0.9/32 md5\\");
    }
    let dbs = (!r.pct(5)).then(|| {
        r.pick(&[
            "db1\n",
            "replication\n",
            "db2, \"all\"\n# comment\nadmins",
            "sameuser",
        ])
        .to_owned()
    });
    let users = (!r.pct(5)).then(|| {
        r.pick(&["app\n", "+admins, repuser", "\"rep\"\"user\" bob"])
            .to_owned()
    });
    Generated { text, dbs, users }
}

/// A connection the test makes, and what keyferry knows about it.
struct Probe {
    src: IpAddr,
    user: &'static str,
    /// `None`: a replication connection.
    database: Option<&'static str>,
}

impl Probe {
    fn connection(&self) -> Connection {
        let mut c = Connection::new(self.database.is_none(), Some(self.user), self.src);
        c.database = self.database.map(str::to_owned);
        c.ssl = Some(false);
        c.gssenc = Some(false);
        // Every role the test made, and what each is a member of (itself included).
        c.member_of = Some(match self.user {
            "admin1" => vec!["admin1".into(), "admins".into()],
            "bob" => vec![],
            u => vec![u.to_owned()],
        });
        c
    }
}

fn probes() -> Vec<Probe> {
    let mut out = Vec::new();
    for src in CLIENTS {
        let src: IpAddr = src.parse().unwrap();
        for (user, database) in [
            ("app", Some("db1")),
            ("app", Some("app")),
            ("admin1", Some("admins")),
            ("bob", Some("db2")),
            ("repuser", None),
            ("rep\"user", Some("all")),
        ] {
            out.push(Probe {
                src,
                user,
                database,
            });
        }
    }
    out
}

#[test]
fn keyferry_reads_and_decides_pg_hba_conf_as_postgresql_15_does() {
    need_bed!();
    let files: usize = std::env::var("KEYFERRY_HBA_FILES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(80);
    let seed: u64 = std::env::var("KEYFERRY_HBA_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0x6b66_6862_6121);
    let judge = Judge::new();
    let data = judge.data();
    let mut r = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    let probes = probes();
    let (mut loaded, mut refused, mut lines, mut decided, mut maybe) = (0, 0, 0, 0, 0);
    let mut disagreements = Vec::new();
    for n in 0..files {
        let marker = format!("kfmark{n}");
        let g = generate(&mut r, &marker);
        for (name, content) in [("dbs", &g.dbs), ("users", &g.users)] {
            let path = data.join(name);
            match content {
                Some(c) => judge.write(&path, c.as_bytes()),
                None => {
                    let _ = std::fs::remove_file(&path);
                }
            }
        }
        judge.write(&data.join("pg_hba.conf"), &g.text);
        // PostgreSQL's verdict per logical line.
        let theirs: Vec<(usize, bool)> = judge
            // A line PostgreSQL refuses without saying why there (some RADIUS options) has
            // no type: refused all the same (the file is not loaded).
            .sql(
                "SELECT line_number, error IS NOT NULL OR type IS NULL \
                 FROM pg_hba_file_rules ORDER BY line_number",
            )
            .lines()
            .filter(|l| !l.is_empty())
            .map(|l| {
                let (a, b) = l.split_once('|').unwrap();
                (a.parse().unwrap(), b == "t")
            })
            .collect();
        let (text, _) = hba::decode(&g.text);
        let read = hba::files_beside(&data);
        let file = hba::parse_for(&text, &PG15, Some(&read));
        let ours: Vec<(usize, bool)> = file
            .entries
            .iter()
            .map(|e| (e.first + 1, matches!(e.kind, EntryKind::Invalid(_))))
            .collect();
        lines += ours.len();
        if theirs != ours {
            let why: Vec<String> = file
                .entries
                .iter()
                .filter_map(|e| match &e.kind {
                    EntryKind::Invalid(w) => Some(format!("line {}: {w}", e.first + 1)),
                    _ => None,
                })
                .collect();
            disagreements.push(format!(
                "file {n}: PostgreSQL (line, error) {theirs:?}, keyferry {ours:?}\n{}\n\
                 @dbs: {:?}, @users: {:?}\nkeyferry's reasons: {why:?}\nPostgreSQL's: {}",
                String::from_utf8_lossy(&g.text),
                g.dbs,
                g.users,
                judge.sql(
                    "SELECT line_number, error FROM pg_hba_file_rules WHERE error IS NOT NULL"
                )
            ));
            continue;
        }
        if theirs.iter().any(|(_, e)| *e) {
            refused += 1;
            continue;
        }
        loaded += 1;
        judge.sql("SELECT pg_reload_conf()");
        // Loaded once the marker line answers.
        let mark: IpAddr = MARKER_SRC.parse().unwrap();
        let mut tries = 0;
        while startup(mark, &marker, Some("postgres")) != Answer::Rejects {
            tries += 1;
            assert!(tries < 200, "file {n} was not loaded after 10 s");
            std::thread::sleep(Duration::from_millis(50));
        }
        for p in &probes {
            let c = p.connection();
            let d = file.decide(&c);
            if !d.maybe_before.is_empty() {
                maybe += 1;
                continue;
            }
            let method = d
                .entry
                .and_then(|i| file.rule(i))
                .map(|r| r.method.as_str());
            let prediction = predicted(method);
            let answer = startup(p.src, p.user, p.database);
            decided += 1;
            if !agrees(prediction, &answer) {
                disagreements.push(format!(
                    "file {n}: {c}: keyferry says line {:?} ({prediction}), PostgreSQL answered {answer:?}\n{}",
                    d.entry.map(|i| file.entries[i].first + 1),
                    String::from_utf8_lossy(&g.text)
                ));
            }
        }
    }
    eprintln!(
        "pg_hba.conf against PostgreSQL 15: {files} files (seed {seed}), {lines} logical lines; \
         {loaded} loaded, {refused} refused by both; {decided} connections decided alike or not \
         below, {maybe} left open by keyferry (host names, samehost/samenet); {} disagreements",
        disagreements.len()
    );
    assert!(
        disagreements.is_empty(),
        "{} disagreements:\n{}",
        disagreements.len(),
        disagreements.join("\n\n")
    );
    assert!(
        loaded > files / 4 && refused > 0,
        "the generator must give both kinds"
    );
    messages_in_three_languages(&judge);
}

/// The messages admins get, provoked from the real server in English, German and French
/// (its own translations), each recognised by `diagnose` with the facts it carries.
#[allow(clippy::print_stderr)] // the count is the run's report, shown with --nocapture
fn messages_in_three_languages(judge: &Judge) {
    let data = judge.data();
    judge.write(
        &data.join("pg_hba.conf"),
        b"local all postgres peer\n\
          host all all 10.232.0.2/32 trust\n\
          host replication all 10.232.0.2/32 trust\n\
          host all all 10.232.0.5/32 password\n\
          host all all 10.232.0.9/32 reject\n\
          host replication all 10.232.0.9/32 reject\n",
    );
    let ip = |s: &str| s.parse::<IpAddr>().unwrap();
    // (what, from, user, database (None: replication), password, catalogue code, facts:
    // host, user, database)
    type Case = (
        &'static str,
        &'static str,
        &'static str,
        Option<&'static str>,
        Option<&'static str>,
        &'static str,
        [Option<&'static str>; 3],
    );
    let cases: [Case; 9] = [
        (
            "no line",
            "fd77::2",
            "app",
            Some("nps"),
            None,
            "pg-hba-missing-host",
            [Some("fd77::2"), Some("app"), Some("nps")],
        ),
        (
            "no replication line",
            "fd77::2",
            "repuser",
            None,
            None,
            "pg-hba-missing-replication",
            [Some("fd77::2"), Some("repuser"), None],
        ),
        (
            "a reject line",
            "10.232.0.9",
            "app",
            Some("nps"),
            None,
            "pg-hba-rejects",
            [Some("10.232.0.9"), Some("app"), Some("nps")],
        ),
        (
            "a reject line for replication",
            "10.232.0.9",
            "repuser",
            None,
            None,
            "pg-hba-rejects",
            [Some("10.232.0.9"), Some("repuser"), None],
        ),
        (
            "no such role",
            "10.232.0.2",
            "nobody",
            Some("postgres"),
            None,
            "pg-role-missing",
            [None, None, None],
        ),
        (
            "no such database",
            "10.232.0.2",
            "app",
            Some("nps data"),
            None,
            "pg-database-missing",
            [None, None, Some("nps data")],
        ),
        (
            "the role's limit",
            "10.232.0.2",
            "limited",
            Some("postgres"),
            None,
            "pg-too-many-connections",
            [None, None, None],
        ),
        (
            "not a replication role",
            "10.232.0.2",
            "app",
            None,
            None,
            "pg-walsender-privilege",
            [None, None, None],
        ),
        (
            "a wrong password",
            "10.232.0.5",
            "app",
            Some("postgres"),
            Some("wrong"),
            "pg-password-failed",
            [None, Some("app"), None],
        ),
    ];
    let mut checked = 0;
    for lang in ["C", "de_DE.UTF-8", "fr_FR.UTF-8"] {
        judge.sql(&format!("ALTER SYSTEM SET lc_messages = '{lang}'"));
        judge.sql("SELECT pg_reload_conf()");
        // Spoken once a refusal comes back in the language (new backends read the setting).
        let mut tries = 0;
        loop {
            let (_, text) = startup_with(ip("fd77::2"), "app", Some("nps"), None);
            if (lang == "C") == text.starts_with("no pg_hba.conf entry") {
                break;
            }
            tries += 1;
            assert!(tries < 200, "{lang}: the server still answers {text:?}");
            std::thread::sleep(Duration::from_millis(50));
        }
        for (what, from, user, database, password, code, facts) in &cases {
            let (_, text) = startup_with(ip(from), user, *database, Some(password.unwrap_or("")));
            assert!(!text.is_empty(), "{lang} {what}: no error");
            let message = format!("FATAL:  {text}");
            let found = keyferry::diagnose::explain(&message, None);
            assert!(
                found.iter().any(|x| x.known.code == *code),
                "{lang} {what}: {message:?} is not recognised as {code}: {:?}",
                found.iter().map(|x| x.known.code).collect::<Vec<_>>()
            );
            let f = &found[0].facts;
            let got = [f.host.as_deref(), f.user.as_deref(), f.database.as_deref()];
            for (want, have) in facts.iter().zip(got) {
                if want.is_some() {
                    assert_eq!(*want, have, "{lang} {what}: {message:?} -> {f:?}");
                }
            }
            checked += 1;
        }
        // A client's own message in the language: libpq's prefix and the C library's reason
        // (nothing listens on port 5433).
        let out = Command::new(Path::new(pgbed::BIN).join("psql"))
            .args([
                "-X", "-h", SERVER4, "-p", "5433", "-U", "app", "-d", "nps", "-w",
            ])
            .env("LC_ALL", lang)
            .env("LOCPATH", judge.dir.join("locales"))
            .env_remove("LANGUAGE")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stderr).into_owned();
        let found = keyferry::diagnose::explain(&text, None);
        assert!(
            found
                .iter()
                .any(|x| x.known.code == "pg-connection-refused"),
            "{lang}: {text:?} is not recognised as pg-connection-refused"
        );
        assert_eq!(found[0].facts.port, Some(5433), "{lang}: {text:?}");
        assert_eq!(
            found[0].facts.host.as_deref(),
            Some(SERVER4),
            "{lang}: {text:?}"
        );
        checked += 1;
    }
    judge.sql("ALTER SYSTEM RESET lc_messages");
    judge.sql("SELECT pg_reload_conf()");
    let suggested = suggested_lines_admit_exactly_their_connection(judge);
    eprintln!(
        "server messages in 3 languages: {checked} recognised with their facts; {suggested} \
         suggested pg_hba.conf lines loaded and admitting exactly their connection"
    );
}

/// The line `diagnose` suggests for a "no pg_hba.conf entry" message, put into the real
/// server's file: PostgreSQL loads it, the refused connection now reaches its login, and a
/// connection that differs in its user, database or address is still refused.
fn suggested_lines_admit_exactly_their_connection(judge: &Judge) -> usize {
    let base = "local all postgres peer\n";
    let ip = |s: &str| s.parse::<IpAddr>().unwrap();
    let mut n = 0;
    // A connection: from, user, database (None: replication).
    type Conn = (&'static str, &'static str, Option<&'static str>);
    // Each refused connection, and a neighbour that must stay refused.
    let cases: [(&str, &str, Option<&str>, Conn); 4] = [
        (
            "fd77::2",
            "app",
            Some("nps"),
            ("fd77::5", "app", Some("nps")),
        ),
        (
            "fd77::2",
            "app",
            Some("nps"),
            ("fd77::2", "bob", Some("nps")),
        ),
        (
            "10.232.0.5",
            "app",
            Some("all"),
            ("10.232.0.5", "app", Some("nps")),
        ),
        ("10.232.0.9", "repuser", None, ("10.232.0.9", "app", None)),
    ];
    for (from, user, database, (nfrom, nuser, ndb)) in cases {
        judge.write(&judge.data().join("pg_hba.conf"), base.as_bytes());
        judge.sql("SELECT pg_reload_conf()");
        let (answer, text) = startup_with(ip(from), user, database, None);
        assert_eq!(answer, Answer::NoEntry, "{text}");
        let found = keyferry::diagnose::explain(&format!("FATAL:  {text}"), None);
        let fix = found[0].specific_fix.clone().unwrap_or_default();
        let line = fix
            .lines()
            .last()
            .map(str::trim)
            .unwrap_or_default()
            .to_owned();
        assert!(line.starts_with("host "), "{fix}");
        assert!(
            !line.contains("trust") && !line.contains(" all all "),
            "{line}"
        );
        judge.write(
            &judge.data().join("pg_hba.conf"),
            format!("{base}{line}\n").as_bytes(),
        );
        let errors = judge
            .sql("SELECT count(*) FROM pg_hba_file_rules WHERE error IS NOT NULL OR type IS NULL");
        assert_eq!(errors.trim(), "0", "{line}");
        judge.sql("SELECT pg_reload_conf()");
        let mut tries = 0;
        while startup_with(ip(from), user, database, None).0 == Answer::NoEntry {
            tries += 1;
            assert!(tries < 200, "{line} does not let {user} in");
            std::thread::sleep(Duration::from_millis(50));
        }
        assert!(
            matches!(
                startup_with(ip(from), user, database, None).0,
                Answer::Auth(5 | 10)
            ),
            "{line}"
        );
        assert_eq!(
            startup_with(ip(nfrom), nuser, ndb, None).0,
            Answer::NoEntry,
            "{line} lets in more than its connection"
        );
        n += 1;
    }
    n
}
