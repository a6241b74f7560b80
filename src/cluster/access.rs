//! How another machine reaches a node (`access` in the cluster file): its folders by path or
//! UNC, one folder, ssh, or a report saved earlier. Parsed here, used by the audit and, next,
//! by folder sync and the HA steps.

use std::path::{Path, PathBuf};

/// How the auditing machine reaches a node (`access` in the cluster file).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Access {
    /// Read the node's `paths` as written (local folders or UNC shares).
    Paths,
    /// Read this folder as the node's application folder (single-folder profiles).
    Path(PathBuf),
    /// Run `keyferry fingerprint --json` on the node over the system OpenSSH client.
    Ssh {
        /// The login name, if not ssh's default.
        user: Option<String>,
        /// The host name or address.
        host: String,
        /// The port, if not 22.
        port: Option<u16>,
    },
    /// A report saved earlier (PowerShell remoting, Ansible, a copy by hand).
    Report(PathBuf),
}

/// Parses `access`; relative report paths are relative to the cluster file's folder.
pub fn parse_access(access: Option<&str>, base: &Path) -> crate::Result<Access> {
    parse(access, base).map_err(crate::Error::InvalidInput)
}

fn parse(access: Option<&str>, base: &Path) -> Result<Access, String> {
    let Some(a) = access.map(str::trim).filter(|a| !a.is_empty()) else {
        return Ok(Access::Paths);
    };
    if a == "paths" || a == "local" {
        return Ok(Access::Paths);
    }
    if let Some(rest) = a.strip_prefix("ssh://") {
        let (user, hostport) = match rest.rsplit_once('@') {
            Some((u, h)) if !u.is_empty() => (Some(u.to_owned()), h),
            Some(_) => return Err(format!("bad ssh access {a:?}: empty user")),
            None => (None, rest),
        };
        let hostport = hostport.trim_end_matches('/');
        let (host, port) = if let Some(h) = hostport.strip_prefix('[') {
            let (h, p) = h
                .split_once(']')
                .ok_or_else(|| format!("bad ssh access {a:?}"))?;
            (h.to_owned(), p.strip_prefix(':'))
        } else {
            match hostport.rsplit_once(':') {
                Some((h, p)) => (h.to_owned(), Some(p)),
                None => (hostport.to_owned(), None),
            }
        };
        // Host and user reach ssh as one argument, but ssh hands the host to a
        // ProxyCommand or Match exec of the admin's own configuration through a shell
        // (%h): only the characters of host names and addresses.
        if host.is_empty()
            || host.starts_with('-')
            || !host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || ".-_:".contains(c))
        {
            return Err(format!(
                "bad ssh host in {a:?}: a host name or IP address (letters, digits, . - _ and \
                 the colons of an IPv6 address in brackets)"
            ));
        }
        if user.as_deref().is_some_and(|u| {
            u.starts_with('-')
                || !u
                    .chars()
                    .all(|c| c.is_alphanumeric() || ".-_\\@".contains(c))
        }) {
            return Err(format!(
                "bad ssh user in {a:?}: a user name (letters, digits, . - _, a domain as \
                 DOMAIN\\user or user@domain)"
            ));
        }
        let port = match port {
            Some(p) => Some(
                p.parse::<u16>()
                    .map_err(|_| format!("bad ssh port in {a:?}"))?,
            ),
            None => None,
        };
        return Ok(Access::Ssh { user, host, port });
    }
    if let Some(p) = a.strip_prefix("report:") {
        let p = PathBuf::from(p);
        return Ok(Access::Report(if p.is_absolute() {
            p
        } else {
            base.join(p)
        }));
    }
    Ok(Access::Path(PathBuf::from(a)))
}

/// Checks a pool or service name from the cluster file: it reaches the tool as one argument,
/// so only what a name can hold (no quotes, no control characters, no leading switch).
pub fn check_service_name(name: &str) -> std::result::Result<(), String> {
    if name.is_empty()
        || name.len() > 256
        || name.starts_with(['/', '-'])
        || name.contains(['"', '\\'])
        || name.chars().any(char::is_control)
    {
        return Err(format!(
            "{name:?} is not an IIS application pool or Windows service name (1 to 256 \
             characters, no quotes, backslashes or control characters, not starting with / or -)"
        ));
    }
    Ok(())
}

/// Checks a site URL from the cluster file: `https://` (or `http://`), a host, no user or
/// password in it.
pub fn check_site_url(url: &str) -> std::result::Result<(), String> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .ok_or_else(|| format!("site_url {url:?} is not an https:// (or http://) URL"))?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    if authority.is_empty() || authority.contains('@') || url.chars().any(char::is_control) {
        return Err(format!(
            "site_url {url:?} needs a host and no user or password in it"
        ));
    }
    Ok(())
}
