//! PostgreSQL's password file (`host:port:database:user:password`), read the way libpq reads
//! it: the first line whose four fields match (each `*` or exact) gives the password; `\:`
//! and `\\` escape; lines starting with `#` are comments. keyferry reads it for its own
//! queries; PostgreSQL's programs and the replica's server read the same file by its path
//! (`passfile=` in a connection string), so no password is ever in argv, the environment
//! or a configuration file.

use crate::error::{Error, Result};
use crate::reason::HaReason;
use crate::secret::KeyBytes;
use std::path::Path;
use zeroize::Zeroize;

/// Largest password file read.
pub const MAX_PASSFILE: u64 = 64 * 1024;

/// A password file's text, wiped on drop.
pub struct PassFile {
    text: KeyBytes,
}

impl std::fmt::Debug for PassFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PassFile(..)")
    }
}

impl PassFile {
    /// Reads `path` through a bound. On Unix a file others may read is refused, as libpq
    /// ignores it (the replica's server would then fail to authenticate).
    pub fn load(path: &Path) -> Result<PassFile> {
        let opened =
            crate::fs::open_regular(path)?.ok_or_else(|| Error::missing(path, "password file"))?;
        if let Some((_, _, mode)) = opened.meta.unix {
            let mode = mode & 0o777;
            if mode & 0o077 != 0 {
                return Err(Error::HaRefused {
                    why: format!(
                        "{}: the password file may be read by others (mode {mode:o}); PostgreSQL \
                         ignores such a file",
                        path.display()
                    ),
                    reason: HaReason::PassFileOpen {
                        path: path.to_path_buf(),
                    },
                });
            }
        }
        let text = crate::fs::read_opened(opened, MAX_PASSFILE)?;
        if std::str::from_utf8(text.expose_secret()).is_err() {
            return Err(Error::HaRefused {
                why: format!("{}: the password file is not UTF-8 text", path.display()),
                reason: HaReason::PassFileNotText,
            });
        }
        Ok(PassFile { text })
    }

    /// A second copy in memory (wiped on drop too), for a thread of its own.
    pub fn duplicate(&self) -> PassFile {
        PassFile {
            text: KeyBytes::copy_from(self.text.expose_secret()),
        }
    }

    /// For tests and for a file already in memory.
    pub fn from_text(text: &str) -> PassFile {
        PassFile {
            text: KeyBytes::copy_from(text.as_bytes()),
        }
    }

    /// The password for a connection, or `None` when no line matches.
    pub fn lookup(&self, host: &str, port: u16, database: &str, user: &str) -> Option<KeyBytes> {
        self.find(host, port, database, user).map(|(_, _, pw)| pw)
    }

    /// Which line gives the password for a connection: its number (from 1) and its first
    /// four fields as written (never the password), for messages.
    pub fn line_of(
        &self,
        host: &str,
        port: u16,
        database: &str,
        user: &str,
    ) -> Option<(usize, String)> {
        self.find(host, port, database, user)
            .map(|(n, f, _)| (n, f))
    }

    fn find(
        &self,
        host: &str,
        port: u16,
        database: &str,
        user: &str,
    ) -> Option<(usize, String, KeyBytes)> {
        let text = std::str::from_utf8(self.text.expose_secret()).ok()?;
        let port = port.to_string();
        for (i, line) in text.lines().enumerate() {
            let line = line.strip_suffix('\r').unwrap_or(line);
            if line.starts_with('#') || line.trim().is_empty() {
                continue;
            }
            let mut fields = split(line);
            if fields.len() < 5 {
                fields.zeroize();
                continue;
            }
            let want = [host, port.as_str(), database, user];
            let hit = fields[..4]
                .iter()
                .zip(want)
                .all(|(f, w)| f == "*" || f == w);
            if hit {
                // The password is the rest of the line (a fifth `:` would be escaped).
                let pw = KeyBytes::copy_from(fields[4].as_bytes());
                let shown = fields[..4].join(":");
                fields.zeroize();
                return Some((i + 1, shown, pw));
            }
            fields.zeroize();
        }
        None
    }
}

/// Splits a line at unescaped colons into at most five fields, unescaping `\:` and `\\`.
fn split(line: &str) -> Vec<String> {
    let mut out = vec![String::new()];
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                if let Some(n) = chars.next() {
                    out.last_mut().expect("one field").push(n);
                }
            }
            ':' if out.len() < 5 => out.push(String::new()),
            c => out.last_mut().expect("one field").push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_matching_line_wins_with_wildcards_and_escapes() {
        let f = PassFile::from_text(
            "# comment\n10.0.0.1:5432:*:postgres:first\r\n*:*:replication:repuser:re\\:p\\\\w\n*:*:*:postgres:second\n",
        );
        let get = |h, p, d, u| {
            f.lookup(h, p, d, u)
                .map(|k| String::from_utf8(k.expose_secret().to_vec()).unwrap())
        };
        assert_eq!(
            get("10.0.0.1", 5432, "postgres", "postgres").as_deref(),
            Some("first")
        );
        assert_eq!(
            get("10.0.0.2", 5432, "postgres", "postgres").as_deref(),
            Some("second")
        );
        assert_eq!(
            get("10.0.0.1", 5433, "x", "postgres").as_deref(),
            Some("second")
        );
        assert_eq!(
            get("10.0.0.9", 1, "replication", "repuser").as_deref(),
            Some("re:p\\w")
        );
        assert_eq!(get("10.0.0.9", 1, "postgres", "repuser"), None);
    }

    #[test]
    fn short_lines_are_skipped() {
        let f = PassFile::from_text("a:b:c\n*:*:*:*:pw\n");
        assert!(f.lookup("a", 1, "c", "u").is_some());
    }
}
