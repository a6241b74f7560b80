//! Talking to a node's PostgreSQL: TCP reachability (listening, refused, dropped), and SQL
//! through the `postgres` crate (SCRAM-SHA-256 and TLS), the password taken from the
//! password file and handed to the client in memory only.

use super::config::{HaNode, Pair, SslMode};
use super::pgpass::PassFile;
use crate::error::{Error, Result};
use serde::Serialize;
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::path::Path;
use std::time::Duration;

#[path = "authguard.rs"]
pub mod guard;

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
    /// The pair's settings.
    pub pair: &'a Pair,
    /// The password file, read once.
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

/// How long one query may take before keyferry gives up on the server (a peer that logged
/// keyferry in and then falls silent). Steps that wait on the server longer say so
/// ([`Client::query_within`]).
pub const QUERY_DEADLINE: Duration = Duration::from_secs(60);

/// Why a connection failed, as far as it tells whether the server is alive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Failure {
    /// The server answered and refused keyferry's login (a wrong password, no pg_hba.conf
    /// entry, an unknown role or database, too many connections): it is up.
    LoginRefused,
    /// Something answered in the PostgreSQL protocol but not as keyferry accepts (it asked
    /// for the password in clear text, or for MD5 the pair does not use): it is up.
    Unsafe,
    /// No PostgreSQL answer: nothing listens, the network drops it, or it fell silent
    /// within the deadline.
    NoAnswer,
    /// keyferry's own side: no password-file line, an unreadable CA file.
    Local,
}

impl Failure {
    /// Whether the failure itself proves a server answers at that address.
    pub fn server_answered(self) -> bool {
        matches!(self, Failure::LoginRefused | Failure::Unsafe)
    }
}

/// A failed connection: what kind, and the error to show.
#[derive(Debug)]
pub struct ConnectError {
    pub kind: Failure,
    pub error: Error,
}

impl From<ConnectError> for Error {
    fn from(e: ConnectError) -> Error {
        e.error
    }
}

/// A connection to one server. Every call has a deadline: connecting (TCP, TLS, the login)
/// the pair's `connect_timeout`, each query [`QUERY_DEADLINE`] unless a step says otherwise.
pub struct Client {
    rt: tokio::runtime::Runtime,
    inner: tokio_postgres::Client,
    what: String,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Client({})", self.what)
    }
}

/// A statement's parameters.
pub type Params<'a> = [&'a (dyn tokio_postgres::types::ToSql + Sync)];

/// A row of a result.
pub type Row = tokio_postgres::Row;

impl Client {
    fn timed<T>(
        &self,
        limit: Duration,
        f: impl std::future::Future<Output = std::result::Result<T, tokio_postgres::Error>>,
    ) -> Result<T> {
        match self
            .rt
            .block_on(async { tokio::time::timeout(limit, f).await })
        {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(Error::Postgres {
                what: self.what.clone(),
                why: describe(&e),
            }),
            Err(_) => Err(Error::Postgres {
                what: self.what.clone(),
                why: format!("no answer within {} s", limit.as_secs()),
            }),
        }
    }

    /// Runs a query.
    pub fn query(&mut self, sql: &str, params: &Params<'_>) -> Result<Vec<Row>> {
        self.query_within(sql, params, QUERY_DEADLINE)
    }

    /// Runs a query that may take up to `limit` (a promotion, a checkpoint).
    pub fn query_within(
        &mut self,
        sql: &str,
        params: &Params<'_>,
        limit: Duration,
    ) -> Result<Vec<Row>> {
        let inner = &self.inner;
        self.timed(limit, inner.query(sql, params))
    }

    /// Runs a query that returns one row.
    pub fn query_one(&mut self, sql: &str, params: &Params<'_>) -> Result<Row> {
        let inner = &self.inner;
        self.timed(QUERY_DEADLINE, inner.query_one(sql, params))
    }

    /// Runs statements without results, within `limit`.
    pub fn execute_within(&mut self, sql: &str, limit: Duration) -> Result<()> {
        let inner = &self.inner;
        self.timed(limit, inner.batch_execute(sql))
    }
}

impl Connector<'_> {
    /// Connects to `node` as the admin role.
    pub fn admin(&self, node: &HaNode) -> Result<Client> {
        Ok(self.try_admin(node)?)
    }

    /// Connects to `node` as the admin role, saying what kind of failure a failure is.
    pub fn try_admin(&self, node: &HaNode) -> std::result::Result<Client, ConnectError> {
        self.try_connect(node, &self.pair.admin_user, &self.pair.database)
    }

    /// Connects to `node` as `user` to `database`.
    pub fn connect(&self, node: &HaNode, user: &str, database: &str) -> Result<Client> {
        Ok(self.try_connect(node, user, database)?)
    }

    /// Connects to `node` as `user` to `database`. The password is answered only to SCRAM
    /// (and to MD5 where the cluster file's `hba_method` is md5): a server, or anything
    /// posing as one, that asks for it in clear text gets nothing and the connection ends
    /// (`guard`). With TLS (`require`, `verify-full`) SCRAM must bind the channel, so a
    /// listener between the two cannot relay the login.
    pub fn try_connect(
        &self,
        node: &HaNode,
        user: &str,
        database: &str,
    ) -> std::result::Result<Client, ConnectError> {
        let what = format!("PostgreSQL on {}", label(node));
        let local = |error: Error| ConnectError {
            kind: Failure::Local,
            error,
        };
        let host = node.addr.to_string();
        let password = self
            .passfile
            .lookup(&host, node.pg_port, database, user)
            .ok_or_else(|| {
                local(Error::HaRefused {
                    why: format!(
                        "{}: no line for {host}:{}:{database}:{user}",
                        self.pair.passfile.display(),
                        node.pg_port
                    ),
                    reason: crate::HaReason::NoPassword {
                        host: host.clone(),
                        port: node.pg_port,
                        database: database.to_owned(),
                        user: user.to_owned(),
                    },
                })
            })?;
        let md5_ok = self.pair.hba_method == "md5";
        let mut config = tokio_postgres::Config::new();
        config
            .host(&host)
            .port(node.pg_port)
            .user(user)
            .dbname(database)
            .password(password.expose_secret())
            .application_name("keyferry");
        drop(password);
        use tokio_postgres::config::{ChannelBinding, SslMode as Ssl};
        let (ssl, binding) = match self.pair.sslmode {
            SslMode::Disable => (Ssl::Disable, ChannelBinding::Disable),
            SslMode::Prefer => (Ssl::Prefer, ChannelBinding::Prefer),
            SslMode::Require | SslMode::VerifyFull if md5_ok => {
                (Ssl::Require, ChannelBinding::Prefer)
            }
            SslMode::Require | SslMode::VerifyFull => (Ssl::Require, ChannelBinding::Require),
        };
        config.ssl_mode(ssl).channel_binding(binding);
        if let (SslMode::VerifyFull, Some(ca)) = (self.pair.sslmode, &self.pair.sslrootcert) {
            // A missing or unreadable CA file is the cluster file's fault: say so up front.
            crate::fs::read_bounded(ca, 1024 * 1024, "CA certificate").map_err(local)?;
        }
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| local(Error::io(Path::new("tokio runtime"), e)))?;
        let addr = SocketAddr::new(node.addr, node.pg_port);
        let tls = LazyConnect {
            tls: LazyTls {
                sslmode: self.pair.sslmode,
                rootcert: self.pair.sslrootcert.clone(),
                md5_ok,
            },
            domain: host.clone(),
        };
        let expect_ssl = self.pair.sslmode != SslMode::Disable;
        enum Failed {
            Tcp(std::io::Error),
            Pg(tokio_postgres::Error),
        }
        let connecting = async {
            let tcp = tokio::net::TcpStream::connect(addr)
                .await
                .map_err(Failed::Tcp)?;
            let _ = tcp.set_nodelay(true);
            let stream = guard::Guarded::raw(tcp, expect_ssl, md5_ok);
            let (client, connection) = config.connect_raw(stream, tls).await.map_err(Failed::Pg)?;
            tokio::spawn(async move {
                let _ = connection.await;
            });
            Ok::<_, Failed>(client)
        };
        let limit = self.pair.timeout;
        match rt.block_on(async { tokio::time::timeout(limit, connecting).await }) {
            Ok(Ok(inner)) => Ok(Client { rt, inner, what }),
            Ok(Err(Failed::Tcp(e))) => Err(ConnectError {
                kind: Failure::NoAnswer,
                error: Error::Postgres {
                    what,
                    why: e.to_string(),
                },
            }),
            Ok(Err(Failed::Pg(e))) => {
                let kind = if e.as_db_error().is_some() {
                    Failure::LoginRefused
                } else if guard::refused(&e) {
                    Failure::Unsafe
                } else {
                    Failure::NoAnswer
                };
                Err(ConnectError {
                    kind,
                    error: Error::Postgres {
                        what,
                        why: describe(&e),
                    },
                })
            }
            Err(_) => Err(ConnectError {
                kind: Failure::NoAnswer,
                error: Error::Postgres {
                    what,
                    why: format!(
                        "no answer within {} s (connect_timeout): the connection, TLS or the \
                         login did not finish",
                        self.pair.timeout.as_secs()
                    ),
                },
            }),
        }
    }
}

/// TLS for a connection, set up only when the server agrees to TLS: building a connector
/// makes OpenSSL read the system's CA bundle (tens of milliseconds), which `prefer` against
/// a server without TLS does not need.
#[derive(Debug, Clone)]
struct LazyTls {
    sslmode: SslMode,
    rootcert: Option<std::path::PathBuf>,
    md5_ok: bool,
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

/// [`LazyTls`] for one host; the TLS stream is guarded as the raw one is.
struct LazyConnect {
    tls: LazyTls,
    domain: String,
}

type Raw = guard::Guarded<tokio::net::TcpStream>;
type Tls = guard::Guarded<postgres_native_tls::TlsStream<Raw>>;

impl tokio_postgres::tls::TlsConnect<Raw> for LazyConnect {
    type Stream = Tls;
    type Error = BoxError;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = std::result::Result<Self::Stream, BoxError>> + Send>,
    >;

    fn connect(self, stream: Raw) -> Self::Future {
        let built = self.tls.build();
        let domain = self.domain;
        let md5_ok = self.tls.md5_ok;
        Box::pin(async move {
            let connector = postgres_native_tls::TlsConnector::new(built?, &domain);
            let tls = tokio_postgres::tls::TlsConnect::connect(connector, stream)
                .await
                .map_err(BoxError::from)?;
            Ok(guard::Guarded::tls(tls, md5_ok))
        })
    }
}

/// A client error with its causes (the crate's `Display` alone can say just "db error").
pub fn describe(e: &tokio_postgres::Error) -> String {
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
    client: &mut Client,
    _node: &HaNode,
    sql: &str,
    params: &Params<'_>,
) -> Result<Vec<Row>> {
    client.query(sql, params)
}

/// Runs a query that returns one row.
pub fn query_one(
    client: &mut Client,
    _node: &HaNode,
    sql: &str,
    params: &Params<'_>,
) -> Result<Row> {
    client.query_one(sql, params)
}

/// Runs statements without results.
pub fn execute(client: &mut Client, _node: &HaNode, sql: &str) -> Result<()> {
    client.execute_within(sql, QUERY_DEADLINE)
}
