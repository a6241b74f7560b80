//! "Confirm each node works", as keyferry can confirm it: an HTTPS request to the node's site
//! (`site_url` in the cluster file) that must answer with success and, for Secret Server,
//! without the pages the product shows when a node's binaries or key differ from the
//! database's ("Version does not match", "Encryption key doesn't match"). A failing answer
//! carries the page's words and the matching `diagnose` entry.

use serde::{Deserialize, Serialize};
use std::path::Path;
use std::time::Duration;

/// The most of a page read.
const MAX_PAGE: u64 = 1 << 20;

/// The product's own error pages: the words, and the `diagnose` entry that explains them.
const PAGES: &[(&str, &str)] = &[
    ("version does not match", "version-mismatch"),
    ("encryption key doesn't match", "encryption-key-mismatch"),
    ("encryption key does not match", "encryption-key-mismatch"),
];

/// What a site answered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SiteAnswer {
    /// The URL asked.
    pub url: String,
    /// The HTTP status of the last answer (after redirects), if any came.
    pub status: Option<u16>,
    /// It answered with success and none of the product's error pages.
    pub works: bool,
    /// Why not, in words an admin reads: the connection's failure, the status, or the page's
    /// own words.
    pub why: Option<String>,
    /// The `diagnose` entry for the page (`version-mismatch`, `encryption-key-mismatch`).
    pub diagnose: Option<String>,
    /// What that entry says to do.
    pub fix: Option<String>,
}

pub use crate::cluster::access::check_site_url as check_url;

/// Requests `url` (following at most 5 redirects) within `timeout`, trusting the system's
/// roots and, if given, the certificates in the PEM file `ca`.
pub fn check(url: &str, ca: Option<&Path>, timeout: Duration) -> crate::Result<SiteAnswer> {
    check_url(url).map_err(crate::Error::InvalidInput)?;
    use ureq::tls::{Certificate, RootCerts, TlsConfig, TlsProvider};
    let roots = match ca {
        Some(p) => {
            let pem = crate::fs::read_bounded(p, 1 << 20, "site CA file")?;
            let certs: Vec<Certificate<'static>> = ureq::tls::parse_pem(&pem)
                .filter_map(|i| match i {
                    Ok(ureq::tls::PemItem::Certificate(c)) => Some(c),
                    _ => None,
                })
                .collect();
            if certs.is_empty() {
                return Err(crate::Error::InvalidInput(format!(
                    "{} holds no PEM certificate (site_ca)",
                    p.display()
                )));
            }
            RootCerts::new_with_certs(&certs)
        }
        None => RootCerts::PlatformVerifier,
    };
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .tls_config(
            TlsConfig::builder()
                .provider(TlsProvider::NativeTls)
                .root_certs(roots)
                .build(),
        )
        .timeout_global(Some(timeout))
        .http_status_as_error(false)
        .max_redirects(5)
        .user_agent(concat!("keyferry/", env!("CARGO_PKG_VERSION")))
        .build()
        .into();
    let mut answer = SiteAnswer {
        url: url.to_owned(),
        status: None,
        works: false,
        why: None,
        diagnose: None,
        fix: None,
    };
    let mut resp = match agent.get(url).call() {
        Ok(r) => r,
        Err(e) => {
            answer.why = Some(format!("no answer: {e}"));
            return Ok(answer);
        }
    };
    let status = resp.status().as_u16();
    answer.status = Some(status);
    let page = resp
        .body_mut()
        .with_config()
        .limit(MAX_PAGE)
        .lossy_utf8(true)
        .read_to_string()
        .unwrap_or_default();
    let lower = page.to_lowercase();
    if let Some((words, code)) = PAGES.iter().find(|(w, _)| lower.contains(w)) {
        answer.why = Some(format!(
            "its page says \"{}\" (HTTP {status})",
            original_words(&page, &lower, words)
        ));
        answer.diagnose = Some((*code).to_owned());
        answer.fix = crate::diagnose::catalogue::match_message(words)
            .first()
            .map(|k| k.fix.to_owned());
        return Ok(answer);
    }
    if !(200..300).contains(&status) {
        answer.why = Some(format!("it answered HTTP {status}"));
        return Ok(answer);
    }
    answer.works = true;
    Ok(answer)
}

/// The page's own spelling of `words` (found in its lower-cased copy).
fn original_words<'a>(page: &'a str, lower: &str, words: &'a str) -> &'a str {
    lower
        .find(words)
        .and_then(|i| page.get(i..i + words.len()))
        .unwrap_or(words)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn site_urls_are_checked() {
        assert!(check_url("https://web1.example.com/SecretServer/").is_ok());
        assert!(check_url("http://10.0.0.5:8080").is_ok());
        for bad in [
            "web1",
            "ftp://x",
            "https://",
            "https://user:pw@web1/",
            "https://web1/\n",
        ] {
            assert!(check_url(bad).is_err(), "{bad:?}");
        }
    }
}
