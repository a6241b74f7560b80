//! The facts an error message carries (client host, user, database, port), taken out so the
//! fix can name them: the exact `pg_hba.conf` line to add, and which node it belongs to.
//! Parsed from the wordings PostgreSQL and its clients use (`host "…"`, `user "…"`,
//! `database "…"`, `server at "…"`, `port N`), case-insensitively, anywhere in the line.

use serde::Serialize;

/// What a message says about who connected where.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Facts {
    pub host: Option<String>,
    pub user: Option<String>,
    pub database: Option<String>,
    pub port: Option<u16>,
}

impl Facts {
    pub fn is_empty(&self) -> bool {
        *self == Facts::default()
    }
}

/// The facts in one message.
pub fn extract(message: &str) -> Facts {
    // ASCII case only: the keys are ASCII, and lowering `İ` would change the byte offsets
    // this takes back into `message`.
    let lower = message.to_ascii_lowercase();
    let quoted = |key: &str| -> Option<String> {
        let at = lower.find(key)? + key.len();
        let rest = &message[at..];
        let end = rest.find('"')?;
        let v = &rest[..end];
        (!v.is_empty() && v.len() <= 255 && !v.chars().any(char::is_control)).then(|| v.to_owned())
    };
    let port = lower.find("port ").and_then(|at| {
        let digits: String = lower[at + 5..]
            .trim_start_matches('"')
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        digits.parse::<u16>().ok()
    });
    Facts {
        host: quoted("host \"")
            .or_else(|| quoted("server at \""))
            .or_else(|| quoted("connect to server at \"")),
        user: quoted("user \""),
        database: quoted("database \""),
        port,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn facts_come_out_of_the_wordings_admins_paste() {
        let f = extract("2026-11-24 10:00:01.123 UTC [4711] FATAL:  no pg_hba.conf entry for replication connection from host \"10.20.30.41\", user \"repuser\", no encryption");
        assert_eq!(f.host.as_deref(), Some("10.20.30.41"));
        assert_eq!(f.user.as_deref(), Some("repuser"));
        let f = extract("FATAL: no pg_hba.conf entry for host \"10.0.0.12\", user \"ss\", database \"ss\", SSL on");
        assert_eq!(
            (f.host.as_deref(), f.user.as_deref(), f.database.as_deref()),
            (Some("10.0.0.12"), Some("ss"), Some("ss"))
        );
        let f = extract("psql: error: connection to server at \"10.0.0.12\", port 5432 failed: Connection refused");
        assert_eq!((f.host.as_deref(), f.port), (Some("10.0.0.12"), Some(5432)));
        let f = extract("could not connect to server: Connection refused\n\tIs the server running on host \"10.0.0.12\" and accepting TCP/IP connections on port 5432?");
        assert_eq!((f.host.as_deref(), f.port), (Some("10.0.0.12"), Some(5432)));
        assert!(extract("The printer is on fire").is_empty());
    }
}
