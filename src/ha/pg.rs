//! Talking to a node's PostgreSQL: TCP reachability (listening, refused, dropped), and SQL
//! through the `postgres` crate (SCRAM-SHA-256 and TLS), the password taken from the
//! password file and handed to the client in memory only.

use super::config::{HaNode, Pair, SslMode};
use super::pgpass::PassFile;
use crate::error::{Error, Result};
use serde::Serialize;
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::time::Duration;

/// What a TCP connection attempt found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "state", content = "detail")]
pub enum Reach {
    /// Something accepted the connection.
    Open,
    /// The host answered that nothing listens there (RST).
    Refused,
    /// No answer within the time limit: a firewall drops it, or the host is down.
    Dropped,
    /// No route to the host, or another network error.
    Unreachable(String),
}

impl Reach {
    pub fn describe(&self) -> String {
        match self {
            Reach::Open => "open".into(),
            Reach::Refused => "refused: the host answers but nothing listens on that port".into(),
            Reach::Dropped => {
                "no answer: a firewall drops the connection, or the host is down".into()
            }
            Reach::Unreachable(e) => format!("unreachable: {e}"),
        }
    }
}

/// Tries a TCP connection to `addr:port`.
pub fn probe(addr: IpAddr, port: u16, timeout: Duration) -> Reach {
    match TcpStream::connect_timeout(&SocketAddr::new(addr, port), timeout) {
        Ok(_) => Reach::Open,
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => Reach::Refused,
        Err(e) if e.kind() == std::io::ErrorKind::TimedOut => Reach::Dropped,
        Err(e) => Reach::Unreachable(e.to_string()),
    }
}

/// Whether `addr` is one of this machine's own addresses (a socket can be bound to it).
pub fn is_local_address(addr: IpAddr) -> bool {
    std::net::UdpSocket::bind(SocketAddr::new(addr, 0)).is_ok()
}

/// How keyferry connects: the pair's settings and the password file, read once.
pub struct Connector<'a> {
    pub pair: &'a Pair,
    pub passfile: &'a PassFile,
}

impl std::fmt::Debug for Connector<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Connector")
    }
}

/// A node's label for messages: `name (addr:port)`.
pub fn label(node: &HaNode) -> String {
    format!(
        "{} ({})",
        node.name,
        SocketAddr::new(node.addr, node.pg_port)
    )
}

impl Connector<'_> {
    /// Connects to `node` as the admin role.
    pub fn admin(&self, node: &HaNode) -> Result<postgres::Client> {
        self.connect(node, &self.pair.admin_user, &self.pair.database)
    }

    /// Connects to `node` as `user` to `database`.
    pub fn connect(&self, node: &HaNode, user: &str, database: &str) -> Result<postgres::Client> {
        let what = format!("PostgreSQL on {}", label(node));
        let host = node.addr.to_string();
        let password = self
            .passfile
            .lookup(&host, node.pg_port, database, user)
            .ok_or_else(|| Error::HaRefused {
                why: format!(
                    "{}: no line for {host}:{}:{database}:{user}",
                    self.pair.passfile.display(),
                    node.pg_port
                ),
                hint: format!(
                    "add a line {host}:{}:{database}:{user}:<password> (or with * fields) to the \
                     password file",
                    node.pg_port
                ),
            })?;
        let mut config = postgres::Config::new();
        config
            .host(&host)
            .port(node.pg_port)
            .user(user)
            .dbname(database)
            .password(password.expose_secret())
            .application_name("keyferry")
            .connect_timeout(self.pair.timeout)
            .keepalives(true);
        drop(password);
        let ssl = match self.pair.sslmode {
            SslMode::Disable => postgres::config::SslMode::Disable,
            SslMode::Prefer => postgres::config::SslMode::Prefer,
            SslMode::Require | SslMode::VerifyFull => postgres::config::SslMode::Require,
        };
        config.ssl_mode(ssl);
        let failed = |e: postgres::Error| Error::Postgres {
            what: what.clone(),
            why: describe(&e),
        };
        if self.pair.sslmode == SslMode::Disable {
            return config.connect(postgres::NoTls).map_err(failed);
        }
        if let (SslMode::VerifyFull, Some(ca)) = (self.pair.sslmode, &self.pair.sslrootcert) {
            // A missing or unreadable CA file is the cluster file's fault: say so up front.
            crate::fs::read_bounded(ca, 1024 * 1024, "CA certificate")?;
        }
        let tls = LazyTls {
            sslmode: self.pair.sslmode,
            rootcert: self.pair.sslrootcert.clone(),
        };
        config.connect(tls).map_err(failed)
    }
}

/// TLS for a connection, set up only when the server agrees to TLS: building a connector
/// makes OpenSSL read the system's CA bundle (tens of milliseconds), which `prefer` against
/// a server without TLS does not need.
#[derive(Debug, Clone)]
struct LazyTls {
    sslmode: SslMode,
    rootcert: Option<std::path::PathBuf>,
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl LazyTls {
    fn build(&self) -> std::result::Result<native_tls::TlsConnector, BoxError> {
        let mut tls = native_tls::TlsConnector::builder();
        // Only the CA the cluster file names is trusted (as libpq's sslrootcert).
        tls.disable_built_in_roots(true);
        match (&self.sslmode, &self.rootcert) {
            (SslMode::VerifyFull, Some(ca)) => {
                let pem = crate::fs::read_bounded(ca, 1024 * 1024, "CA certificate")?;
                let cert = native_tls::Certificate::from_pem(&pem)
                    .map_err(|e| format!("{}: not a PEM certificate: {e}", ca.display()))?;
                tls.add_root_certificate(cert);
            }
            _ => {
                // libpq's prefer and require: encrypted, the certificate not checked.
                tls.danger_accept_invalid_certs(true)
                    .danger_accept_invalid_hostnames(true);
            }
        }
        Ok(tls.build()?)
    }
}

/// [`LazyTls`] for one host.
struct LazyConnect {
    tls: LazyTls,
    domain: String,
}

impl postgres::tls::MakeTlsConnect<postgres::Socket> for LazyTls {
    type Stream = postgres_native_tls::TlsStream<postgres::Socket>;
    type TlsConnect = LazyConnect;
    type Error = BoxError;

    fn make_tls_connect(&mut self, domain: &str) -> std::result::Result<LazyConnect, BoxError> {
        Ok(LazyConnect {
            tls: self.clone(),
            domain: domain.to_owned(),
        })
    }
}

impl postgres::tls::TlsConnect<postgres::Socket> for LazyConnect {
    type Stream = postgres_native_tls::TlsStream<postgres::Socket>;
    type Error = BoxError;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = std::result::Result<Self::Stream, BoxError>> + Send>,
    >;

    fn connect(self, stream: postgres::Socket) -> Self::Future {
        let built = self.tls.build();
        let domain = self.domain;
        Box::pin(async move {
            let connector = postgres_native_tls::TlsConnector::new(built?, &domain);
            postgres::tls::TlsConnect::connect(connector, stream)
                .await
                .map_err(BoxError::from)
        })
    }
}

/// A client error with its causes (the crate's `Display` alone can say just "db error").
pub fn describe(e: &postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        return format!("{}: {}", db.severity(), db.message());
    }
    let mut s = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(c) = src {
        s.push_str(": ");
        s.push_str(&c.to_string());
        src = c.source();
    }
    s
}

/// Runs a query, mapping errors to [`Error::Postgres`] for `node`.
pub fn query(
    client: &mut postgres::Client,
    node: &HaNode,
    sql: &str,
    params: &[&(dyn postgres::types::ToSql + Sync)],
) -> Result<Vec<postgres::Row>> {
    client.query(sql, params).map_err(|e| Error::Postgres {
        what: format!("PostgreSQL on {}", label(node)),
        why: describe(&e),
    })
}

/// Runs a query that returns one row.
pub fn query_one(
    client: &mut postgres::Client,
    node: &HaNode,
    sql: &str,
    params: &[&(dyn postgres::types::ToSql + Sync)],
) -> Result<postgres::Row> {
    client.query_one(sql, params).map_err(|e| Error::Postgres {
        what: format!("PostgreSQL on {}", label(node)),
        why: describe(&e),
    })
}

/// Runs statements without results.
pub fn execute(client: &mut postgres::Client, node: &HaNode, sql: &str) -> Result<()> {
    client.batch_execute(sql).map_err(|e| Error::Postgres {
        what: format!("PostgreSQL on {}", label(node)),
        why: describe(&e),
    })
}
