//! Reading `pg_hba.conf` as PostgreSQL 15 reads it (`hba.c`: `tokenize_auth_file`,
//! `next_token`, `next_field_expand`, `parse_hba_line`, `parse_hba_auth_opt`), so that a line
//! PostgreSQL refuses is refused here with its reason, and a line it loads is never refused.
//!
//! - Tokens: a token is quoted only where it starts with a quote; two quotes inside quotes are
//!   one; a quote left open runs to the end of the line; blanks are space, tab and CR; blanks and commas before a token are skipped, so
//!   `db1 ,db2` is two fields and `db1,,db2` one list of two; a `#` outside quotes ends the
//!   line.
//! - `@file` in any field is replaced by the tokens of that file (relative to `pg_hba.conf`'s
//!   folder); a file that cannot be read is an error of the line.
//! - The connection type and the method are compared as written, quoted or not; `all`,
//!   `samehost`, `samenet` in the address column only unquoted.
//! - Addresses through the C library's numeric forms ([`super::inet`]), a CIDR length through
//!   `strtol`, a mask column through the same numeric forms, contiguous or not.
//! - Methods as the server's build has them, and each option checked against the method and
//!   line type it belongs to, as `parse_hba_auth_opt` does.

use super::inet;
use super::{Address, ConnType, EntryKind, Rule, Token};
use std::net::IpAddr;

/// The server that reads the file, as far as reading it depends on it: its major version
/// (`include` lines and regular expressions arrived in 16) and its platform (a Windows build
/// has SSPI and no PAM or BSD, needs `ldapserver`, and takes no `ldapurl`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Server {
    /// The major version (15, 16, ...).
    pub major: u32,
    /// A Windows build.
    pub windows: bool,
}

impl Server {
    /// What keyferry assumes when it does not know: PostgreSQL 15 (the version Privilege
    /// Secure's current releases install) on this machine's platform (keyferry reads
    /// `pg_hba.conf` on the node that runs the server).
    pub const fn here() -> Server {
        Server::version(15)
    }

    /// A server of that major version on this machine's platform.
    pub const fn version(major: u32) -> Server {
        Server {
            major,
            windows: cfg!(windows),
        }
    }
}

/// Reads an `@file` named in the file: its text, or why it cannot be read. `None` reads
/// nothing: an `@file` then stays a token `@name` that may match anything.
pub type Files<'a> = Option<&'a dyn Fn(&str) -> Result<String, String>>;

/// How deep `@file`s may name other `@file`s before the line is refused (PostgreSQL 15 has
/// no limit; a loop there never ends).
const MAX_DEPTH: usize = 10;

/// PostgreSQL's blanks between tokens (`pg_isblank`): space, tab, CR. Not a no-break space, a
/// vertical tab or a form feed: those are part of a token.
fn is_blank(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\r')
}

/// One token from `s` at `*pos` (`next_token`): the token, and whether a comma ended it.
/// `None` at the end of the line or a comment.
fn next_token(s: &[char], pos: &mut usize) -> Option<(Token, bool)> {
    while *pos < s.len() && (is_blank(s[*pos]) || s[*pos] == ',') {
        *pos += 1;
    }
    let (mut text, mut initial_quote, mut comma) = (String::new(), false, false);
    let (mut in_quote, mut was_quote, mut saw_quote) = (false, false, false);
    while *pos < s.len() && (!is_blank(s[*pos]) || in_quote) {
        let c = s[*pos];
        if c == '#' && !in_quote {
            // A comment runs to the end of the line.
            *pos = s.len();
            break;
        }
        if c == ',' && !in_quote {
            comma = true;
            *pos += 1;
            break;
        }
        if c != '"' || was_quote {
            text.push(c);
        }
        // A literal quote is two quotes.
        was_quote = in_quote && c == '"' && !was_quote;
        if c == '"' {
            in_quote = !in_quote;
            saw_quote = true;
            if text.is_empty() {
                initial_quote = true;
            }
        }
        *pos += 1;
    }
    // A quote left open runs to the end of the line (PostgreSQL 15 says nothing of it).
    (saw_quote || !text.is_empty()).then_some((
        Token {
            text,
            quoted: initial_quote,
            regex: false,
        },
        comma,
    ))
}

/// One field (`next_field_expand`): a comma list of tokens, `@file`s replaced by their
/// tokens. Empty at the end of the line.
fn next_field(
    s: &[char],
    pos: &mut usize,
    files: Files<'_>,
    depth: usize,
) -> Result<Vec<Token>, String> {
    let mut out = Vec::new();
    while let Some((t, comma)) = next_token(s, pos) {
        match (t.quoted, t.text.strip_prefix('@'), files) {
            (false, Some(name), Some(read)) if !name.is_empty() => {
                out.extend(file_tokens(name, read, depth + 1)?)
            }
            _ => out.push(t),
        }
        if !comma {
            break;
        }
    }
    Ok(out)
}

/// Every token of every line of an `@file`, in order (`tokenize_inc_file`).
fn file_tokens(
    name: &str,
    read: &dyn Fn(&str) -> Result<String, String>,
    depth: usize,
) -> Result<Vec<Token>, String> {
    if depth > MAX_DEPTH {
        return Err(format!(
            "secondary authentication file \"@{name}\" is nested more than {MAX_DEPTH} deep"
        ));
    }
    let text = read(name).map_err(|why| {
        format!("could not open secondary authentication file \"@{name}\": {why}")
    })?;
    let mut out = Vec::new();
    for line in logical_lines(&text) {
        for field in fields(&line.text, Some(read), depth)? {
            out.extend(field);
        }
    }
    Ok(out)
}

/// A logical line: its text and the physical lines it spans (0-based, inclusive).
pub struct Logical {
    pub text: String,
    pub first: usize,
    pub last: usize,
}

/// The file's logical lines as PostgreSQL joins them: a line ending in a backslash (after
/// every trailing CR and LF) goes on with the next line, joined with nothing between them,
/// inside a comment too (`# off \` swallows the line after it); a backslash at the end of the
/// last line is dropped.
pub fn logical_lines(text: &str) -> Vec<Logical> {
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let first = i;
        let mut logical = String::new();
        loop {
            let body = strip_eol(lines[i]);
            match body.strip_suffix('\\') {
                Some(rest) if i + 1 < lines.len() => {
                    logical.push_str(rest);
                    i += 1;
                }
                Some(rest) => {
                    logical.push_str(rest);
                    break;
                }
                None => {
                    logical.push_str(body);
                    break;
                }
            }
        }
        out.push(Logical {
            text: logical,
            first,
            last: i,
        });
        i += 1;
    }
    out
}

/// A line without its end: every trailing CR and LF, as PostgreSQL strips them (`\r\r\n`).
pub fn strip_eol(line: &str) -> &str {
    line.trim_end_matches(['\n', '\r'])
}

/// A logical line's fields. A NUL ends the line, as it ends a C string.
pub fn fields(line: &str, files: Files<'_>, depth: usize) -> Result<Vec<Vec<Token>>, String> {
    let s: Vec<char> = line.chars().take_while(|&c| c != '\0').collect();
    let mut pos = 0;
    let mut out = Vec::new();
    while pos < s.len() {
        let f = next_field(&s, &mut pos, files, depth)?;
        if !f.is_empty() {
            out.push(f);
        }
    }
    Ok(out)
}

/// One line's meaning (`parse_hba_line`), or PostgreSQL's reason to refuse it.
pub fn entry(fields: &[Vec<Token>], server: &Server) -> Result<EntryKind, String> {
    let first = &fields[0];
    if first.len() > 1 {
        return Err("multiple values specified for connection type".into());
    }
    let first = first[0].text.as_str();
    if server.major >= 16 && matches!(first, "include" | "include_if_exists" | "include_dir") {
        return Ok(EntryKind::Include(first.to_owned()));
    }
    let conn_type = match first {
        "local" => ConnType::Local,
        "host" => ConnType::Host,
        "hostssl" => ConnType::HostSsl,
        "hostnossl" => ConnType::HostNoSsl,
        "hostgssenc" => ConnType::HostGssEnc,
        "hostnogssenc" => ConnType::HostNoGssEnc,
        other => return Err(format!("invalid connection type \"{other}\"")),
    };
    let mut next = 1;
    let mut field = |what: &str| -> Result<&Vec<Token>, String> {
        let f = fields
            .get(next)
            .ok_or_else(|| format!("end-of-line before {what}"))?;
        next += 1;
        Ok(f)
    };
    // From PostgreSQL 16 a name starting with `/` is a regular expression.
    let names = |f: &Vec<Token>| -> Vec<Token> {
        f.iter()
            .map(|t| Token {
                regex: server.major >= 16 && !t.quoted && t.text.starts_with('/'),
                ..t.clone()
            })
            .collect()
    };
    let databases = names(field("database specification")?);
    let users = names(field("role specification")?);
    let address = if conn_type == ConnType::Local {
        None
    } else {
        let tokens = field("IP address specification")?;
        if tokens.len() > 1 {
            return Err("multiple values specified for host address".into());
        }
        let t = &tokens[0];
        let keyword = |k: &str| !t.quoted && t.text == k;
        Some(if keyword("all") {
            Address::All
        } else if keyword("samehost") {
            Address::SameHost
        } else if keyword("samenet") {
            Address::SameNet
        } else {
            let (host, cidr) = match t.text.split_once('/') {
                Some((h, c)) => (h, Some(c)),
                None => (t.text.as_str(), None),
            };
            match (inet::numeric(host), cidr) {
                (None, Some(_)) => {
                    return Err(format!(
                        "specifying both host name and CIDR mask is invalid: \"{}\"",
                        t.text
                    ))
                }
                (None, None) => Address::Name(host.to_owned()),
                (Some(ip), Some(c)) => {
                    let bits = inet::cidr_bits(c, ip.is_ipv6())
                        .ok_or_else(|| format!("invalid CIDR mask in address \"{}\"", t.text))?;
                    Address::Net(ip, bits)
                }
                (Some(ip), None) => {
                    let tokens = field("netmask specification")?;
                    if tokens.len() > 1 {
                        return Err("multiple values specified for netmask".into());
                    }
                    let m = &tokens[0].text;
                    let mask = inet::numeric(m).ok_or_else(|| {
                        format!("invalid IP mask \"{m}\": Name or service not known")
                    })?;
                    if mask.is_ipv4() != ip.is_ipv4() {
                        return Err("IP address and mask do not match".into());
                    }
                    Address::with_mask(ip, mask)
                }
            }
        })
    };
    let tokens = field("authentication method")?;
    if tokens.len() > 1 {
        return Err("multiple values specified for authentication type".into());
    }
    let mut method = tokens[0].text.clone();
    let built = |m: &str| match m {
        "trust" | "ident" | "peer" | "password" | "reject" | "md5" | "scram-sha-256" | "radius"
        | "gss" | "ldap" | "cert" => Some(true),
        "sspi" => Some(server.windows),
        "pam" => Some(!server.windows),
        "bsd" => Some(false),
        _ => None,
    };
    match built(&method) {
        None => return Err(format!("invalid authentication method \"{method}\"")),
        Some(false) => {
            return Err(format!(
                "invalid authentication method \"{method}\": not supported by this build"
            ))
        }
        Some(true) => {}
    }
    // ident on a local line is peer (as PostgreSQL has it, for old files).
    if conn_type == ConnType::Local && method == "ident" {
        method = "peer".into();
    }
    match (conn_type, method.as_str()) {
        (ConnType::Local, "gss") => {
            return Err("gssapi authentication is not supported on local sockets".into())
        }
        (t, "peer") if t != ConnType::Local => {
            return Err("peer authentication is only supported on local sockets".into())
        }
        (t, "cert") if t != ConnType::HostSsl => {
            return Err("cert authentication is only supported on hostssl connections".into())
        }
        _ => {}
    }
    let mut options = Vec::new();
    let mut set = Options::default();
    for f in &fields[next..] {
        for t in f {
            let Some((name, value)) = t.text.split_once('=') else {
                return Err(format!(
                    "authentication option not in name=value format: {}",
                    t.text
                ));
            };
            option(name, value, conn_type, &method, server, &mut set)?;
        }
        options.push(
            f.iter()
                .map(|t| t.text.clone())
                .collect::<Vec<_>>()
                .join(","),
        );
    }
    set.check(&method, server)?;
    Ok(EntryKind::Rule(Rule {
        conn_type,
        databases,
        users,
        address,
        method,
        options,
    }))
}

/// The options a line set, for the checks that look at several at once.
#[derive(Default)]
struct Options {
    ldap: Vec<&'static str>,
    radius_servers: Option<usize>,
    radius_secrets: Option<usize>,
    radius_ports: Option<usize>,
    radius_identifiers: Option<usize>,
}

/// The names of the LDAP options a line may set, as `Options::ldap` keeps them.
const LDAP_OPTIONS: [&str; 12] = [
    "ldapurl",
    "ldaptls",
    "ldapscheme",
    "ldapserver",
    "ldapport",
    "ldapbinddn",
    "ldapbindpasswd",
    "ldapsearchattribute",
    "ldapsearchfilter",
    "ldapbasedn",
    "ldapprefix",
    "ldapsuffix",
];

/// One `name=value` option (`parse_hba_auth_opt`).
fn option(
    name: &str,
    value: &str,
    conn_type: ConnType,
    method: &str,
    server: &Server,
    set: &mut Options,
) -> Result<(), String> {
    let only = |valid: &str| {
        Err(format!(
            "authentication option \"{name}\" is only valid for authentication methods {valid}"
        ))
    };
    match name {
        "map" => {
            if !matches!(method, "ident" | "peer" | "gss" | "sspi" | "cert") {
                return only("ident, peer, gssapi, sspi, and cert");
            }
        }
        "clientcert" => {
            if conn_type != ConnType::HostSsl {
                return Err("clientcert can only be configured for \"hostssl\" rows".into());
            }
            match value {
                "verify-full" => {}
                "verify-ca" if method == "cert" => {
                    return Err(
                        "clientcert can only be set to \"verify-full\" when using \"cert\" authentication"
                            .into(),
                    )
                }
                "verify-ca" => {}
                _ => return Err(format!("invalid value for clientcert: \"{value}\"")),
            }
        }
        "clientname" => {
            if conn_type != ConnType::HostSsl {
                return Err("clientname can only be configured for \"hostssl\" rows".into());
            }
            if !matches!(value, "CN" | "DN") {
                return Err(format!("invalid value for clientname: \"{value}\""));
            }
        }
        "pamservice" | "pam_use_hostname" => {
            if method != "pam" {
                return only("pam");
            }
        }
        "krb_realm" | "include_realm" => {
            if !matches!(method, "gss" | "sspi") {
                return only("gssapi and sspi");
            }
        }
        "compat_realm" | "upn_username" => {
            if method != "sspi" {
                return only("sspi");
            }
        }
        n if LDAP_OPTIONS.contains(&n) => {
            if method != "ldap" {
                return only("ldap");
            }
            match n {
                "ldapurl" if server.windows => {
                    return Err("LDAP URLs not supported on this platform".into())
                }
                "ldapurl" => {
                    let scheme = value.split_once("://").map(|(s, _)| s);
                    match scheme {
                        Some("ldap" | "ldaps") => {}
                        Some(s) => return Err(format!("unsupported LDAP URL scheme: {s}")),
                        None => return Err(format!("could not parse LDAP URL \"{value}\"")),
                    }
                }
                "ldapport" if atoi(value) == 0 => {
                    return Err(format!("invalid LDAP port number: \"{value}\""))
                }
                _ => {}
            }
            let known = LDAP_OPTIONS.iter().find(|o| **o == n).copied();
            set.ldap.extend(known);
            // A URL with a DN names the base DN too.
            if n == "ldapurl" && url_has_dn(value) {
                set.ldap.push("ldapbasedn");
            }
        }
        "radiusservers" | "radiussecrets" | "radiusports" | "radiusidentifiers" => {
            if method != "radius" {
                return only("radius");
            }
            // A list as PostgreSQL's SplitGUCList reads it; one it cannot read refuses the
            // line (PostgreSQL 15 says so only in its log: `pg_hba_file_rules` shows the line
            // without an error, and the file is not loaded).
            let items = guc_list(value)
                .ok_or_else(|| format!("could not parse RADIUS list \"{value}\" ({name})"))?;
            match name {
                "radiusservers" => set.radius_servers = Some(items.len()),
                "radiussecrets" => set.radius_secrets = Some(items.len()),
                "radiusports" => {
                    if items.iter().any(|p| atoi(p) == 0) {
                        return Err(format!("invalid RADIUS port number: \"{value}\""));
                    }
                    set.radius_ports = Some(items.len());
                }
                _ => set.radius_identifiers = Some(items.len()),
            }
        }
        _ => {
            return Err(format!(
                "unrecognized authentication option name: \"{name}\""
            ))
        }
    }
    Ok(())
}

impl Options {
    /// What a method needs set, and what may not be set together (`parse_hba_line`'s end).
    fn check(&self, method: &str, server: &Server) -> Result<(), String> {
        let has = |o: &str| self.ldap.contains(&o);
        if method == "ldap" {
            // OpenLDAP finds servers through DNS; Windows' LDAP library needs one named.
            if server.windows && !has("ldapserver") && !has("ldapurl") {
                return Err(
                    "authentication method \"ldap\" requires argument \"ldapserver\" to be set"
                        .into(),
                );
            }
            let search = [
                "ldapbasedn",
                "ldapbinddn",
                "ldapbindpasswd",
                "ldapsearchattribute",
                "ldapsearchfilter",
                "ldapurl",
            ];
            if has("ldapprefix") || has("ldapsuffix") {
                if search.iter().any(|o| has(o)) {
                    return Err("cannot use ldapbasedn, ldapbinddn, ldapbindpasswd, ldapsearchattribute, ldapsearchfilter, or ldapurl together with ldapprefix".into());
                }
            } else if !has("ldapbasedn") {
                return Err("authentication method \"ldap\" requires argument \"ldapbasedn\", \"ldapprefix\", or \"ldapsuffix\" to be set".into());
            }
            if has("ldapsearchattribute") && has("ldapsearchfilter") {
                return Err("cannot use ldapsearchattribute together with ldapsearchfilter".into());
            }
        }
        if method == "radius" {
            let servers = self.radius_servers.filter(|&n| n > 0);
            let Some(servers) = servers else {
                return Err(
                    "authentication method \"radius\" requires argument \"radiusservers\" to be set"
                        .into(),
                );
            };
            let Some(secrets) = self.radius_secrets.filter(|&n| n > 0) else {
                return Err(
                    "authentication method \"radius\" requires argument \"radiussecrets\" to be set"
                        .into(),
                );
            };
            let fits = |n: usize| n <= 1 || n == servers;
            if !fits(secrets) {
                return Err(format!("the number of RADIUS secrets ({secrets}) must be 1 or the same as the number of RADIUS servers ({servers})"));
            }
            for (n, what) in [
                (self.radius_ports, "ports"),
                (self.radius_identifiers, "identifiers"),
            ] {
                if let Some(n) = n.filter(|&n| !fits(n)) {
                    return Err(format!("the number of RADIUS {what} ({n}) must be 1 or the same as the number of RADIUS servers ({servers})"));
                }
            }
        }
        Ok(())
    }
}

/// C's `atoi`: leading blanks, a sign, digits; 0 where there are none.
fn atoi(s: &str) -> i64 {
    let t = s.trim_start();
    let (neg, d) = match t.as_bytes().first() {
        Some(b'-') => (true, &t[1..]),
        Some(b'+') => (false, &t[1..]),
        _ => (false, t),
    };
    let digits: String = d.chars().take_while(char::is_ascii_digit).collect();
    let v = digits.parse::<i64>().unwrap_or(0);
    if neg {
        -v
    } else {
        v
    }
}

/// A comma list as PostgreSQL's `SplitGUCList` reads it: items trimmed of blanks, an item in
/// double quotes may hold anything (`""` is a quote); an empty item, or a blank inside an
/// unquoted one, is no list.
fn guc_list(text: &str) -> Option<Vec<String>> {
    let s: Vec<char> = text.chars().collect();
    let space = |c: char| matches!(c, ' ' | '\t' | '\n' | '\r' | '\u{b}' | '\u{c}');
    let mut i = 0;
    let mut out = Vec::new();
    while i < s.len() && space(s[i]) {
        i += 1;
    }
    if i == s.len() {
        return Some(out);
    }
    loop {
        let mut item = String::new();
        if s[i] == '"' {
            i += 1;
            loop {
                match s.get(i) {
                    None => return None,
                    Some('"') if s.get(i + 1) == Some(&'"') => {
                        item.push('"');
                        i += 2;
                    }
                    Some('"') => {
                        i += 1;
                        break;
                    }
                    Some(&c) => {
                        item.push(c);
                        i += 1;
                    }
                }
            }
        } else {
            while i < s.len() && s[i] != ',' && !space(s[i]) {
                item.push(s[i]);
                i += 1;
            }
            if item.is_empty() {
                return None;
            }
        }
        out.push(item);
        while i < s.len() && space(s[i]) {
            i += 1;
        }
        match s.get(i) {
            Some(',') => {
                i += 1;
                while i < s.len() && space(s[i]) {
                    i += 1;
                }
            }
            None => return Some(out),
            Some(_) => return None,
        }
    }
}

/// Whether an LDAP URL names a DN (`ldap://host/dc=example`).
fn url_has_dn(url: &str) -> bool {
    url.split_once("://")
        .and_then(|(_, rest)| rest.split_once('/'))
        .is_some_and(|(_, dn)| !dn.split('?').next().unwrap_or("").is_empty())
}

/// An address and a mask column: as a prefix where the mask is contiguous.
impl Address {
    /// `ip` and `mask`: a prefix where the mask is contiguous, else the address and mask as they
    /// are.
    pub fn with_mask(ip: IpAddr, mask: IpAddr) -> Address {
        let (bits, len) = match mask {
            IpAddr::V4(m) => (u128::from(u32::from(m)) << 96, 32),
            IpAddr::V6(m) => (u128::from(m), 128),
        };
        let ones = bits.leading_ones();
        if bits.checked_shl(ones).unwrap_or(0) == 0 && ones <= len {
            Address::Net(ip, ones as u8)
        } else {
            Address::Masked(ip, mask)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verdict(line: &str) -> Result<(), String> {
        let linux = Server {
            major: 15,
            windows: false,
        };
        let f = fields(line, None, 0)?;
        entry(&f, &linux).map(|_| ())
    }

    /// Options as PostgreSQL 15 checks them, each line's verdict taken from a real server's
    /// `pg_hba_file_rules` (Debian's build; a line it shows without a type is refused too):
    /// what it refuses, and what it lets through that one might expect refused (an empty base
    /// DN, any `ldapscheme`, an empty `map`).
    #[test]
    fn options_are_checked_as_postgresql_15_checks_them() {
        let refused = [
            ("host all all all ldap", "requires argument \"ldapbasedn\""),
            ("host all all all ldap ldapserver=x", "requires argument \"ldapbasedn\""),
            ("host all all all ldap ldapsuffix=,dc=x", "unrecognized authentication option name: \"dc\""),
            ("host all all all ldap ldapprefix=cn= ldapbasedn=dc=x", "together with ldapprefix"),
            ("host all all all ldap ldapbasedn=dc=x ldapsearchattribute=uid ldapsearchfilter=(uid=$username)", "together with ldapsearchfilter"),
            ("host all all all ldap ldapurl=ldap://h", "requires argument \"ldapbasedn\""),
            ("host all all all ldap ldapurl=http://h/dc=x", "LDAP URL"),
            ("host all all all ldap ldapurl=garbage", "could not parse LDAP URL"),
            ("host all all all ldap ldapbasedn=dc=x ldapport=0", "invalid LDAP port number"),
            ("host all all all ldap ldapbasedn=dc=x ldapport=abc", "invalid LDAP port number"),
            ("host all all all md5 map=x", "only valid for authentication methods ident, peer"),
            ("host all all all md5 clientcert=verify-full", "only be configured for \"hostssl\""),
            ("hostssl all all all cert clientcert=verify-ca", "only be set to \"verify-full\""),
            ("host all all all md5 clientname=CN", "only be configured for \"hostssl\""),
            ("host all all all md5 pamservice=x", "methods pam"),
            ("host all all all md5 include_realm=0", "gssapi and sspi"),
            ("host all all all gss compat_realm=0", "methods sspi"),
            ("host all all all md5 foo=bar", "unrecognized authentication option name: \"foo\""),
            ("host all all all md5 nonsense", "not in name=value format: nonsense"),
            ("host all all all md5 =x", "unrecognized authentication option name: \"\""),
            ("host all all all ldap ldapurl=ldap://h/dc=x ldapprefix=cn=", "together with ldapprefix"),
            ("host all all all ldap ldapbasedn=dc=x ldapprefix=", "together with ldapprefix"),
            ("local all all radius radiusservers=10.0.0.1", "requires argument \"radiussecrets\""),
            ("local all all radius radiusservers= radiussecrets=x", "requires argument \"radiusservers\""),
            ("local all all radius radiusservers=10.0.0.1 radiussecrets=", "requires argument \"radiussecrets\""),
            ("local all all radius radiusservers=10.0.0.1,,10.0.0.2 radiussecrets=a", "not in name=value format: 10.0.0.2"),
            ("local all all radius \"radiusservers=10.0.0.1,,10.0.0.2\" radiussecrets=a", "could not parse RADIUS list"),
            ("local all all radius radiusservers=\"10.0.0.1 x\" radiussecrets=a", "could not parse RADIUS list"),
            ("local all all radius radiusservers=10.0.0.1 radiussecrets=a radiusports=0", "invalid RADIUS port number"),
            ("local all all radius radiusservers=10.0.0.1 radiussecrets=a radiusports=abc", "invalid RADIUS port number"),
            ("local all all radius \"radiusservers=10.0.0.1,10.0.0.2\" \"radiussecrets=a,b,c\"", "number of RADIUS secrets (3)"),
            ("local all all radius radiusservers=10.0.0.1 radiussecrets=a \"radiusports=1812,1813\"", "number of RADIUS ports (2)"),
            ("local all all radius \"radiusservers=10.0.0.1,10.0.0.2\" radiussecrets=a \"radiusidentifiers=x,y,z\"", "number of RADIUS identifiers (3)"),
            ("host all all all MD5", "invalid authentication method \"MD5\""),
            ("host all all all sspi", "not supported by this build"),
            ("host all all all peer", "only supported on local sockets"),
            ("host all all all cert", "only supported on hostssl"),
            ("local all all gss", "not supported on local sockets"),
        ];
        for (line, why) in refused {
            let got = verdict(line).expect_err(line);
            assert!(got.contains(why), "{line}: {got}");
        }
        for line in [
            "host all all all ldap ldapbasedn=dc=x",
            "host all all all ldap ldapprefix=cn=",
            "host all all all ldap ldapurl=ldap://h/dc=x",
            "host all all all ldap ldapbasedn=dc=x ldapport=389",
            "host all all all ldap ldapbasedn=dc=x ldapscheme=ldapx",
            "host all all all ldap ldapbasedn=dc=x ldaptls=yes",
            "host all all all ldap ldapbasedn=",
            "host all all all ident map=x",
            "host all all all ident map=",
            "host all all all gss include_realm=0",
            "host all all all gss krb_realm=X",
            "host all all all pam pam_use_hostname=2",
            "local all all radius \"radiusservers=10.0.0.1,10.0.0.2\" radiussecrets=a",
            "local all all radius \"radiusservers=10.0.0.1, 10.0.0.2\" \"radiussecrets=a,b\"",
            "local all all radius radiusservers=10.0.0.1 radiussecrets=a radiusports=1812",
            "local all all radius radiusservers=10.0.0.1 radiussecrets=a radiusidentifiers=x",
            "local all all ident",
            "\"host\" all all all \"md5\"",
            "host all all all scram-sha-\"256",
        ] {
            assert_eq!(verdict(line), Ok(()), "{line}");
        }
    }
}
