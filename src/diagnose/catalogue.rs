//! The catalogue of errors admins meet in these clusters, as data: each entry has a stable
//! code, the phrases that identify it (case-insensitive; every phrase of one alternative must
//! appear), the cause, the vendor's fix, the keyferry commands, and the checks to run.

use crate::cluster::ClusterFile;
use crate::diagnose::facts::Facts;
use crate::profile::Role;
use serde::Serialize;

/// A check diagnose can run against a cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Check {
    /// The key sets, from the audit's reports.
    Keys,
    /// DPAPI protection that cannot travel.
    Dpapi,
    /// The application folders' binaries.
    Binaries,
    /// The nodes' clocks.
    Clocks,
    /// The ports the products use between nodes.
    Ports,
    /// The HA pair's `pg_hba.conf` lines.
    PgHba,
}

/// Every check, in the order `--check all` runs them.
pub const ALL_CHECKS: &[Check] = &[
    Check::Keys,
    Check::Dpapi,
    Check::Binaries,
    Check::Clocks,
    Check::Ports,
    Check::PgHba,
];

/// One known error.
#[derive(Debug, Clone, Serialize)]
pub struct Known {
    /// The entry's stable code.
    pub code: &'static str,
    /// Its title.
    pub title: &'static str,
    /// The message's words, each alternative a list of fragments that must all appear.
    #[serde(skip)]
    pub patterns: &'static [&'static [&'static str]],
    /// What causes it.
    pub cause: &'static str,
    /// What fixes it.
    pub fix: &'static str,
    /// Commands that help, in order.
    pub commands: &'static [&'static str],
    /// The checks that can find its cause on a cluster.
    pub checks: &'static [Check],
    /// Builds the fix for this message from its facts (and the cluster file, to name nodes).
    #[serde(skip)]
    pub tailor: Option<Tailor>,
}

/// Turns a message's facts into its specific fix.
pub type Tailor = fn(&Facts, Option<&ClusterFile>) -> Option<String>;

/// The catalogue of errors admins meet in these clusters.
pub const CATALOGUE: &[Known] = &[
    Known {
        code: "encryption-key-mismatch",
        title: "Encryption key or configuration does not match",
        patterns: &[
            &["encryption key", "match"],
            &["encryption config", "match"],
            &["encryption.config", "match"],
        ],
        cause: "this node's encryption.config (or imported key set) differs from the primary's",
        fix: "copy the primary's key set to this node; never overwrite a working node's key by accident",
        commands: &["keyferry audit -c cluster.toml", "keyferry keys export -c cluster.toml -o keys.kfb   (on the primary)", "keyferry keys import keys.kfb -c cluster.toml --replace   (on this node)"],
        checks: &[Check::Keys, Check::Dpapi],
        tailor: None,
    },
    Known {
        code: "version-mismatch",
        title: "Version does not match",
        patterns: &[
            &["version does not match"],
            &["version mismatch"],
            &["versions do not match"],
            // The log's form: "Application version 11.0.1 does not match database version 10.9.0".
            &["application version", "does not match", "database version"],
        ],
        cause: "this node's application binaries are older or newer than the database (and the primary)",
        fix: "copy the primary's application folder to this node, minus database.config and encryption.config (and per-node web.config changes)",
        commands: &["keyferry audit -c cluster.toml   (names the nodes and files whose binaries differ)"],
        checks: &[Check::Binaries],
        tailor: None,
    },
    Known {
        code: "server-dates-mismatch",
        title: "Server dates don't match",
        patterns: &[&["server dates", "match"], &["date", "do not match"], &["clock skew"]],
        cause: "the nodes' clocks differ (older Secret Server versions refuse to cluster then)",
        fix: "synchronise every node with the same time source (w32tm /resync on Windows, NTP or chrony elsewhere)",
        commands: &["keyferry audit -c cluster.toml   (clock column, ssh-collected nodes)"],
        checks: &[Check::Clocks],
        tailor: None,
    },
    Known {
        code: "dpapi-foreign-blob",
        title: "DPAPI blob from another machine",
        patterns: &[&["key not valid for use in specified state"], &["the data is invalid"]],
        cause: "a key protected with DPAPI on one machine was copied to another, which cannot decrypt it",
        fix: "on the source, turn DPAPI off (Secret Server: Admin > Configuration > Security > Decrypt Key to not use DPAPI), copy, then turn it on again on each node",
        commands: &["keyferry dpapi inspect encryption.config", "keyferry keys export ...   (on the source, on Windows: decrypts in memory)", "keyferry keys import ... --protect dpapi"],
        checks: &[Check::Dpapi, Check::Keys],
        tailor: None,
    },
    Known {
        code: "pg-hba-missing-replication",
        title: "no pg_hba.conf entry for replication connection",
        patterns: &[&["no pg_hba.conf entry for replication connection"]],
        cause: "the primary's pg_hba.conf has no line allowing the peer to connect for replication",
        fix: "add on each side, above broader rules: host replication repuser <peer>/32 md5 and host all all <peer>/32 md5 (an IPv6 peer: /128); reload PostgreSQL",
        commands: &["keyferry diagnose --check pg-hba -c cluster.toml"],
        checks: &[Check::PgHba, Check::Ports],
        tailor: Some(|f, c| {
            // Only the user the message names, quoted: never a guess, never a keyword.
            let named = f.user.as_deref()?;
            let user = pg_name(named)?;
            let fix = hba_fix(f, c, &format!("host replication {user}"))?;
            // Not the pair's replication role: an application account asking to replicate
            // is a misconfigured client, not a missing line.
            Some(match c.and_then(|c| c.ha.as_ref()) {
                Some(ha) if ha.repuser != named => format!(
                    "{named} is not the pair's replication role ({}, the cluster file's [ha] \
                     repuser): a standby or pg_basebackup connects as {}, so check the client \
                     (primary_conninfo's user); add a line for {named} only if it must \
                     replicate:\n{fix}",
                    ha.repuser, ha.repuser
                ),
                _ => fix,
            })
        }),
    },
    Known {
        code: "pg-hba-missing-host",
        title: "no pg_hba.conf entry for host (database connection)",
        patterns: &[&["no pg_hba.conf entry for host"]],
        cause: "the database server's pg_hba.conf has no line letting this client, user and database in",
        fix: "add, above broader rules, host <database> <user> <client>/32 md5 (an IPv6 client: /128) to the pg_hba.conf of the server the client connects to; reload PostgreSQL",
        commands: &["keyferry diagnose --check pg-hba -c cluster.toml"],
        checks: &[Check::PgHba],
        tailor: Some(|f, c| {
            // The one database and user the message names, quoted (`"replication"`, `"all"`
            // and `"sales data"` are names there, not keywords): never `all`.
            let db = pg_name(f.database.as_deref()?)?;
            let user = pg_name(f.user.as_deref()?)?;
            hba_fix(f, c, &format!("host {db} {user}"))
        }),
    },
    Known {
        code: "pg-connection-refused",
        title: "Connection refused by the PostgreSQL server",
        patterns: &[
            &["could not connect to server", "connection refused"],
            &["connection to server at", "connection refused"],
            &["connection refused", "5432"],
        ],
        cause: "nothing listens on that address and port: PostgreSQL is stopped, listens on another port, or only on localhost (listen_addresses)",
        fix: "start PostgreSQL on that node, and check port and listen_addresses in its postgresql.conf",
        commands: &["keyferry diagnose --check ports -c cluster.toml"],
        checks: &[Check::Ports],
        tailor: Some(|f, c| {
            let (at, port) = endpoint(f, c)?;
            // A port other than the pair's: most likely a mistyped client setting.
            if let Some(ha) = c.and_then(|c| c.ha.as_ref()).filter(|ha| ha.pg_port != port) {
                return Some(format!(
                    "nothing listens on {at}, and the pair's PostgreSQL port is {} (the cluster \
                     file's [ha] pg_port): check the port in the client's connection string \
                     first (keyferry diagnose --check ports tells whether {} is open)",
                    ha.pg_port, ha.pg_port
                ));
            }
            Some(format!(
                "nothing listens on {at}: start PostgreSQL there and check `port` and `listen_addresses` in its postgresql.conf"
            ))
        }),
    },
    Known {
        code: "pg-connection-timeout",
        title: "No answer from the PostgreSQL server (timeout)",
        patterns: &[
            &["connection to server at", "timeout"],
            &["could not connect to server", "timed out"],
            &["connection timed out", "5432"],
        ],
        cause: "the connection was not refused but never answered: a firewall drops it",
        fix: "open TCP 5432 between the nodes (Windows Firewall and any network firewall)",
        commands: &["keyferry diagnose --check ports -c cluster.toml"],
        checks: &[Check::Ports],
        tailor: Some(|f, c| {
            let (at, port) = endpoint(f, c)?;
            Some(format!(
                "no answer from {at}: a firewall drops the connection; open TCP {port} to it (Windows Firewall and any network firewall)"
            ))
        }),
    },
    Known {
        code: "pg-password-failed",
        title: "password authentication failed",
        patterns: &[&["password authentication failed for user"]],
        cause: "the password the client sent is not the one the server has: most often the client's copy is old (a password file, appsettings.json), less often the server's was changed",
        fix: "first check the client's copy of the password (the password file the cluster file's [ha] passfile names, or the connection string in appsettings.json) against the one the server should have; only if the server's is the wrong one, set it again on the primary (ALTER ROLE ... PASSWORD), which the replica receives",
        commands: &["keyferry ha check -c cluster.toml"],
        checks: &[Check::PgHba],
        tailor: Some(|f, _| {
            // The name is the client's choice: checked, and quoted as an SQL identifier
            // (always: a bare name would be folded to lower case there).
            let name = f.user.as_deref()?;
            pg_name(name)?;
            let user = double_quoted(name);
            Some(format!(
                "first check the password the client keeps for {user} (the password file the cluster file's [ha] passfile names; Privilege Secure: the connection string in appsettings.json); only if the server's is the wrong one, set it again on the primary: ALTER ROLE {user} PASSWORD '...' (never on a command line others can read)"
            ))
        }),
    },
    Known {
        code: "pg-hba-secondary-not-found",
        title: "%Secondary_IP% not found in pg_hba.conf",
        patterns: &[&["not found in pg_hba.conf"]],
        cause: "the HA tool did not find the secondary's address in the primary's pg_hba.conf",
        fix: "add host replication repuser <secondary>/32 md5 and host all all <secondary>/32 md5 (an IPv6 address: /128) to the primary's pg_hba.conf, then rerun the HA configuration",
        commands: &["keyferry diagnose --check pg-hba -c cluster.toml"],
        checks: &[Check::PgHba],
        tailor: None,
    },
    Known {
        code: "firewall-port-closed",
        title: "Firewall Port Not Open",
        patterns: &[&["firewall port not open"], &["port", "not open"]],
        cause: "a port the nodes need is blocked: 5432 (PostgreSQL) and 6500 (web services) between the HA pair; 6500, 6520, 6523, 6524 to remote services",
        fix: "open the ports in Windows Firewall (and any network firewall) between the nodes",
        commands: &["keyferry diagnose --check ports -c cluster.toml"],
        checks: &[Check::Ports],
        tailor: None,
    },
    Known {
        code: "ha-tool-needs-ip",
        title: "HA tool refuses a host name or 127.0.0.1 as Primary IP",
        patterns: &[&["primary ip"], &["ip address", "invalid"], &["127.0.0.1"]],
        cause: "the Privilege Secure HA tool accepts only real IP addresses: no FQDN, no loopback",
        fix: "enter the primary's real IPv4 address (the cluster file's `address`, which keyferry also requires to be an IP)",
        commands: &["keyferry audit -c cluster.toml"],
        checks: &[Check::Ports],
        tailor: None,
    },
    Known {
        code: "rest-url-without-port",
        title: "Index was outside the bounds of the array.",
        patterns: &[&["index was outside the bounds of the array"]],
        cause: "a REST/web-services URL was entered without its port (e.g. https://host instead of https://host:6500)",
        fix: "enter the URL with the port, e.g. https://<ip>:6500",
        commands: &["keyferry diagnose --check ports -c cluster.toml"],
        checks: &[Check::Ports],
        tailor: None,
    },
    Known {
        code: "aspnet-key-ring",
        title: "ASP.NET key ring: key not found / antiforgery token not decrypted",
        patterns: &[&["was not found in the key ring"], &["antiforgery token could not be decrypted"]],
        cause: "the nodes do not share the same ASP.NET Core data-protection key ring (or its keys are DPAPI-protected per machine)",
        fix: "give every node the same key-ring folder contents, protected so that every node can read them",
        commands: &["keyferry dpapi inspect <key-ring XML file>"],
        checks: &[Check::Dpapi],
        tailor: None,
    },
    Known {
        code: "pg-hba-rejects",
        title: "pg_hba.conf rejects connection",
        patterns: &[&["pg_hba.conf rejects connection"], &["pg_hba.conf rejects replication connection"]],
        cause: "a reject line in the server's pg_hba.conf is the first that matches this connection: it is refused on purpose, before any line that would let it in",
        fix: "find the reject line that decides (keyferry diagnose --check pg-hba names the deciding line for the pair); if this client should get in, put its own line above the reject, for its one address; never remove the reject blindly",
        commands: &["keyferry diagnose --check pg-hba -c cluster.toml"],
        checks: &[Check::PgHba],
        tailor: None,
    },
    Known {
        code: "pg-database-missing",
        title: "database \"…\" does not exist",
        patterns: &[&["database \"", "does not exist"]],
        cause: "the client names a database this server does not have: a typo in the connection settings, or the client reached the wrong server",
        fix: "check the database name and server in the client's settings (Privilege Secure: appsettings.json; Secret Server: database.config through its connection page); list the server's databases with psql -l",
        commands: &["keyferry ha status -c cluster.toml   (which server is the primary)"],
        checks: &[],
        tailor: None,
    },
    Known {
        code: "pg-role-missing",
        title: "role \"…\" does not exist",
        patterns: &[&["role \"", "does not exist"]],
        cause: "the user the client logs in as does not exist on this server (a typo, or the replication role was never created on the primary)",
        fix: "check the user name in the client's settings; create a missing replication role on the primary (CREATE ROLE repuser WITH REPLICATION LOGIN PASSWORD '...'), which the replica then receives",
        commands: &["keyferry ha check -c cluster.toml"],
        checks: &[],
        tailor: None,
    },
    Known {
        code: "pg-too-many-connections",
        title: "sorry, too many clients already (or the slots left are reserved, or the role's limit is reached)",
        patterns: &[
            &["sorry, too many clients already"],
            &["remaining connection slots are reserved"],
            &["too many connections for role"],
        ],
        cause: "the server's max_connections is reached (or the slots left are reserved for superusers, or the role's CONNECTION LIMIT is reached): a connection leak, or pools larger than the server allows",
        fix: "see who holds the connections: SELECT usename, application_name, client_addr, count(*) FROM pg_stat_activity GROUP BY 1, 2, 3 ORDER BY 4 DESC; fix the leak or the pool sizes; raise max_connections (restart) or ALTER ROLE ... CONNECTION LIMIT only if the load is real",
        commands: &["keyferry ha status -c cluster.toml"],
        checks: &[],
        tailor: None,
    },
    Known {
        code: "pg-server-no-ssl",
        title: "server does not support SSL",
        patterns: &[&["server does not support ssl"]],
        cause: "the client requires TLS (sslmode require or verify-full) and the server runs with ssl = off",
        fix: "turn on ssl in the server's postgresql.conf with a certificate and key, then reload; lower the client's sslmode (the cluster file's [ha] sslmode) only on a network you trust",
        commands: &["keyferry ha check -c cluster.toml"],
        checks: &[],
        tailor: None,
    },
    Known {
        code: "pg-walsender-privilege",
        title: "must be superuser or replication role to start walsender",
        patterns: &[&["must be superuser or replication role to start walsender"]],
        cause: "the user the replica (or pg_basebackup) connects as has no REPLICATION attribute",
        fix: "on the primary: ALTER ROLE <that user> WITH REPLICATION; or connect as the pair's replication user (the cluster file's [ha] repuser)",
        commands: &["keyferry ha check -c cluster.toml"],
        checks: &[],
        tailor: None,
    },
    Known {
        code: "pg-slot-missing",
        title: "replication slot does not exist",
        patterns: &[&["replication slot", "does not exist"]],
        cause: "the replica (or pg_basebackup) names a replication slot the primary does not have: dropped, or the primary was rebuilt or failed over",
        fix: "let keyferry set the replica up again (keyferry ha rejoin, or ha replica init), which creates the slot on the primary; by hand: SELECT pg_create_physical_replication_slot('<slot>') on the primary",
        commands: &["keyferry ha status -c cluster.toml", "keyferry ha rejoin -c cluster.toml --node <replica>"],
        checks: &[],
        tailor: None,
    },
    Known {
        code: "pg-rewind-not-clean",
        title: "pg_rewind: target server must be shut down cleanly",
        patterns: &[
            &["target server must be shut down cleanly"],
            &["target server", "is running"],
            &["target server", "still running"],
        ],
        cause: "pg_rewind needs the old primary stopped, and stopped cleanly; it is running, or it crashed",
        fix: "let keyferry ha rejoin do it (it stops the server, brings a crashed one to a clean stop first, then rewinds); by hand: start it once, then pg_ctl stop -m fast, then pg_rewind",
        commands: &["keyferry ha rejoin -c cluster.toml --node <old primary>"],
        checks: &[],
        tailor: None,
    },
    Known {
        code: "pg-rewind-different-systems",
        title: "pg_rewind: source and target clusters are from different systems",
        patterns: &[&["source and target clusters are from different systems"]],
        cause: "the two data folders are not the same database cluster (one was initialised afresh): no rewind can join them",
        fix: "copy the primary's database afresh onto the replica (keyferry ha replica init, which keeps the old folder and refuses to replace a database that is not the peer's without saying so)",
        commands: &["keyferry ha replica init -c cluster.toml --node <replica>"],
        checks: &[],
        tailor: None,
    },
];

/// The node of the cluster file with this address, if any.
fn node_named<'a>(c: Option<&'a ClusterFile>, host: &str) -> Option<&'a str> {
    let ip: std::net::IpAddr = host.parse().ok()?;
    c?.nodes
        .iter()
        .find(|n| n.address == ip)
        .map(|n| n.name.as_str())
}

/// `10.0.0.12:5432 (node web2)` for the server a message names (PostgreSQL's port unless it
/// says another), and the port.
fn endpoint(f: &Facts, c: Option<&ClusterFile>) -> Option<(String, u16)> {
    let host = f.host.as_deref()?;
    let port = f.port.unwrap_or(5432);
    let node = node_named(c, host)
        .map(|n| format!(" (node {n})"))
        .unwrap_or_default();
    Some((format!("{host}:{port}{node}"), port))
}

/// The exact pg_hba.conf line for the client in the message, and whose file it goes into:
/// the server that refused the connection, which in an HA pair is the primary.
/// A database or user name from a message (which any client chooses: it is untrusted) as a
/// `pg_hba.conf` token that means exactly that name: bare only when it is plain letters,
/// digits, `_`, `-` and `.` and not a keyword; otherwise quoted, a quote inside doubled, so
/// no name can become a keyword, a group, a file list, a second field or a comment. None for
/// a name PostgreSQL cannot have (empty, longer than 63 bytes, a control character).
pub fn pg_name(name: &str) -> Option<String> {
    if name.is_empty() || name.len() > 63 || name.chars().any(char::is_control) {
        return None;
    }
    let keyword = ["all", "sameuser", "samerole", "samegroup", "replication"].contains(&name);
    let plain = name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    Some(if plain && !keyword {
        name.to_owned()
    } else {
        double_quoted(name)
    })
}

/// `"name"` with each quote inside doubled: how both `pg_hba.conf` and SQL quote a name.
fn double_quoted(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

fn hba_fix(f: &Facts, c: Option<&ClusterFile>, head: &str) -> Option<String> {
    let host = f.host.as_deref()?;
    let ip: std::net::IpAddr = host.parse().ok()?;
    // The pair's method where the cluster file says it (scram-sha-256 by default), else md5
    // as the vendor documents it (it does SCRAM for SCRAM-stored passwords too).
    let method = c
        .and_then(|c| crate::ha::config::Pair::from_cluster(c).ok())
        .map_or_else(|| "md5".to_owned(), |p| p.hba_method);
    let line = format!("{head} {} {method}", crate::ha::hba::one_host(ip));
    let client = node_named(c, host)
        .map(|n| format!(" (node {n})"))
        .unwrap_or_default();
    let server = c
        .and_then(|c| c.nodes.iter().find(|n| n.role == Role::Primary))
        .map(|p| {
            format!(
                "the pg_hba.conf of {} ({}), the server that refused it",
                p.name, p.address
            )
        })
        .unwrap_or_else(|| "the pg_hba.conf of the server that refused it".into());
    Some(format!(
        "the client is {ip}{client}: add this line to {server}, above broader rules, then reload PostgreSQL (SELECT pg_reload_conf(); and check SELECT * FROM pg_hba_file_rules WHERE error IS NOT NULL):\n    {line}"
    ))
}

/// The catalogue entries that match a message.
pub fn match_message(message: &str) -> Vec<&'static Known> {
    let m = message.to_lowercase();
    CATALOGUE
        .iter()
        .filter(|k| {
            k.patterns
                .iter()
                .any(|alt| alt.iter().all(|p| m.contains(p)))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A failed password: first the client's copy (the password file, appsettings.json),
    /// then, only if the server's is wrong, the primary; the user named as SQL quotes it.
    #[test]
    fn a_failed_password_sends_the_admin_to_the_clients_copy_first() {
        let k = match_message("FATAL:  password authentication failed for user \"RepUser\"");
        assert_eq!(k[0].code, "pg-password-failed");
        let facts = crate::diagnose::facts::extract(
            "FATAL:  password authentication failed for user \"RepUser\"",
        );
        let fix = (k[0].tailor.unwrap())(&facts, None).unwrap();
        assert!(
            fix.starts_with("first check the password the client keeps"),
            "{fix}"
        );
        assert!(fix.contains("ALTER ROLE \"RepUser\" PASSWORD"), "{fix}");
        assert!(k[0].fix.starts_with("first check"), "{}", k[0].fix);
    }

    /// The messages the comparison found unrecognised, in the wording PostgreSQL 15, its
    /// clients and Secret Server's log use: each is recognised, as exactly its own entry.
    #[test]
    fn the_messages_admins_met_unrecognised_are_recognised() {
        for (msg, code) in [
            ("FATAL:  pg_hba.conf rejects connection for host \"10.0.0.7\", user \"ss\", database \"ss\", no encryption", "pg-hba-rejects"),
            ("FATAL:  pg_hba.conf rejects replication connection for host \"10.0.0.7\", user \"repuser\", no encryption", "pg-hba-rejects"),
            ("psql: error: connection to server at \"10.0.0.5\", port 5432 failed: FATAL:  database \"sbpam\" does not exist", "pg-database-missing"),
            ("FATAL:  role \"repuser\" does not exist", "pg-role-missing"),
            ("FATAL:  sorry, too many clients already", "pg-too-many-connections"),
            ("FATAL:  remaining connection slots are reserved for non-replication superuser connections", "pg-too-many-connections"),
            ("FATAL:  too many connections for role \"ss\"", "pg-too-many-connections"),
            ("psql: error: connection to server at \"10.0.0.5\", port 5432 failed: server does not support SSL, but SSL was required", "pg-server-no-ssl"),
            ("FATAL:  must be superuser or replication role to start walsender", "pg-walsender-privilege"),
            ("pg_basebackup: error: could not send replication command \"START_REPLICATION\": ERROR:  replication slot \"keyferry_nps2\" does not exist", "pg-slot-missing"),
            ("2026-12-05 08:00:00 UTC [77] FATAL:  could not start WAL streaming: ERROR:  replication slot \"keyferry_nps2\" does not exist", "pg-slot-missing"),
            ("pg_rewind: error: target server must be shut down cleanly", "pg-rewind-not-clean"),
            ("pg_rewind: error: source and target clusters are from different systems", "pg-rewind-different-systems"),
            ("2026-12-05 08:00:00 ERROR Application version 11.0.000001 does not match database version 10.9.000064", "version-mismatch"),
        ] {
            let got: Vec<&str> = match_message(msg).iter().map(|k| k.code).collect();
            assert_eq!(got, [code], "{msg}");
        }
    }

    #[test]
    fn catalogue_codes_are_unique_and_every_entry_matches_its_title() {
        let mut codes: Vec<_> = CATALOGUE.iter().map(|k| k.code).collect();
        codes.sort();
        codes.dedup();
        assert_eq!(codes.len(), CATALOGUE.len());
        // Every entry says what to run; the checks it names are only those that test its
        // cause (the database server's own state, a missing role or slot, has none: it is
        // not named a check that cannot see it).
        for k in CATALOGUE {
            assert!(!k.commands.is_empty(), "{}", k.code);
            assert!(
                !k.checks.is_empty() || k.code.starts_with("pg-"),
                "{}: a non-PostgreSQL entry names its check",
                k.code
            );
        }
    }

    #[test]
    fn real_messages_match() {
        let cases = [
            ("Encryption key doesn't match", "encryption-key-mismatch"),
            ("Encryption Configurations do not match between nodes", "encryption-key-mismatch"),
            ("Version does not match", "version-mismatch"),
            ("Server dates don't match", "server-dates-mismatch"),
            ("Key not valid for use in specified state.", "dpapi-foreign-blob"),
            ("System.Security.Cryptography.CryptographicException: The data is invalid.", "dpapi-foreign-blob"),
            ("FATAL:  no pg_hba.conf entry for replication connection from host \"10.0.0.2\", user \"repuser\", no encryption", "pg-hba-missing-replication"),
            ("10.0.0.2 not found in pg_hba.conf", "pg-hba-secondary-not-found"),
            ("Firewall Port Not Open", "firewall-port-closed"),
            ("Index was outside the bounds of the array.", "rest-url-without-port"),
            ("The key {0b3c8f62-0b5c-4a5d-9b2e-5b8b0f4f1e1a} was not found in the key ring.", "aspnet-key-ring"),
            ("The antiforgery token could not be decrypted.", "aspnet-key-ring"),
        ];
        for (msg, code) in cases {
            let m = match_message(msg);
            assert!(
                m.iter().any(|k| k.code == code),
                "{msg:?} -> {:?}",
                m.iter().map(|k| k.code).collect::<Vec<_>>()
            );
        }
        assert!(match_message("The printer is on fire").is_empty());
        let more = [
            ("FATAL: no pg_hba.conf entry for host \"10.0.0.12\", user \"ss\", database \"ss\", SSL on", "pg-hba-missing-host"),
            ("could not connect to server: Connection refused\n\tIs the server running on host \"10.0.0.12\" and accepting TCP/IP connections on port 5432?", "pg-connection-refused"),
            ("psql: error: connection to server at \"10.0.0.12\", port 5432 failed: Connection refused", "pg-connection-refused"),
            ("psql: error: connection to server at \"10.0.0.12\", port 5432 failed: timeout expired", "pg-connection-timeout"),
            ("encryption.config does not match", "encryption-key-mismatch"),
            ("2026-11-24 10:00:01 UTC [4711] FATAL:  password authentication failed for user \"repuser\"", "pg-password-failed"),
            ("2026-11-24 10:00:01.123 UTC [4711] FATAL:  no pg_hba.conf entry for replication connection from host \"10.0.0.2\", user \"repuser\", SSL off", "pg-hba-missing-replication"),
            ("[2026-11-24 10:00:01] ERROR  Encryption keys do not match between web nodes", "encryption-key-mismatch"),
        ];
        for (msg, code) in more {
            let m = match_message(msg);
            assert!(
                m.iter().any(|k| k.code == code),
                "{msg:?} -> {:?}",
                m.iter().map(|k| k.code).collect::<Vec<_>>()
            );
        }
    }
}
