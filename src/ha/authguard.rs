//! A guard on the bytes of a PostgreSQL connection while it logs in: it reads the server's
//! messages before the client library does and ends the connection when the server asks for
//! the password in clear text (`AuthenticationCleartextPassword`), or by MD5 where the pair
//! does not use MD5. The client library would answer either with the password (over TLS
//! that `prefer` and `require` do not authenticate, or with no TLS at all), so a listener
//! at the peer's address could learn it; with the guard it learns nothing. Once the server
//! says the login succeeded, the guard steps aside.
//!
//! Two guards sit on a connection: one on the TCP stream (it follows the `SSLRequest`
//! answer: after `S` the bytes are TLS and it steps aside; after `N`, or without TLS, it
//! reads the messages) and one on the TLS stream (the messages inside TLS).

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The text of the guard's refusals (found again in the client library's error).
const CLEARTEXT: &str = "the server asked for the password in clear text; keyferry never sends it \
                         (use scram-sha-256 in pg_hba.conf)";
const MD5: &str = "the server asked for an MD5 password, and the cluster file's [ha] hba_method \
                   is not md5; keyferry sends it only where the pair uses md5";

/// Whether a client error is one of the guard's refusals.
pub fn refused(e: &tokio_postgres::Error) -> bool {
    let mut src: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(c) = src {
        let t = c.to_string();
        if t.contains(CLEARTEXT) || t.contains(MD5) {
            return true;
        }
        src = c.source();
    }
    false
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// The next byte from the server answers the SSLRequest.
    SslAnswer,
    /// Reading the server's messages.
    Messages,
    /// TLS below this guard's view, or the login is done: bytes pass untouched.
    Aside,
}

/// The server's message stream, parsed as far as the login needs.
#[derive(Debug)]
struct Parser {
    md5_ok: bool,
    /// The message's type byte, length and (for `R`) the request code, as they arrive.
    head: Vec<u8>,
    /// Bytes of the current message's body still to pass.
    skip: usize,
}

impl Parser {
    /// Feeds bytes from the server; `Ok(true)` once the login succeeded.
    fn feed(&mut self, data: &[u8]) -> io::Result<bool> {
        let mut i = 0;
        while i < data.len() {
            if self.skip > 0 {
                let n = self.skip.min(data.len() - i);
                self.skip -= n;
                i += n;
                continue;
            }
            self.head.push(data[i]);
            i += 1;
            let len = |h: &[u8]| u32::from_be_bytes([h[1], h[2], h[3], h[4]]) as usize;
            if self.head.len() == 5 {
                let n = len(&self.head);
                if n < 4 {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "the server sent a malformed message",
                    ));
                }
                if self.head[0] != b'R' || n < 8 {
                    self.skip = n - 4;
                    self.head.clear();
                }
            } else if self.head.len() == 9 {
                let n = len(&self.head);
                let code =
                    u32::from_be_bytes([self.head[5], self.head[6], self.head[7], self.head[8]]);
                self.head.clear();
                self.skip = n - 8;
                match code {
                    0 => return Ok(true),
                    3 => return Err(io::Error::new(io::ErrorKind::PermissionDenied, CLEARTEXT)),
                    5 if !self.md5_ok => {
                        return Err(io::Error::new(io::ErrorKind::PermissionDenied, MD5))
                    }
                    _ => {}
                }
            }
        }
        Ok(false)
    }
}

/// A stream with the login guard on it.
#[derive(Debug)]
pub struct Guarded<S> {
    inner: S,
    phase: Phase,
    parser: Parser,
}

impl<S> Guarded<S> {
    /// The guard for the TCP stream; `expect_ssl`: the client sends an SSLRequest first.
    pub fn raw(inner: S, expect_ssl: bool, md5_ok: bool) -> Guarded<S> {
        Guarded {
            inner,
            phase: if expect_ssl {
                Phase::SslAnswer
            } else {
                Phase::Messages
            },
            parser: Parser {
                md5_ok,
                head: Vec::new(),
                skip: 0,
            },
        }
    }

    /// The guard for the stream inside TLS.
    pub fn tls(inner: S, md5_ok: bool) -> Guarded<S> {
        Guarded::raw(inner, false, md5_ok)
    }

    /// Looks at bytes just read from the server.
    fn inspect(&mut self, data: &[u8]) -> io::Result<()> {
        let mut data = data;
        if self.phase == Phase::SslAnswer {
            let Some((&first, rest)) = data.split_first() else {
                return Ok(());
            };
            self.phase = if first == b'S' {
                Phase::Aside
            } else {
                Phase::Messages
            };
            data = rest;
        }
        if self.phase == Phase::Messages && self.parser.feed(data)? {
            self.phase = Phase::Aside;
        }
        Ok(())
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Guarded<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if this.phase != Phase::Aside {
                    let new = buf.filled()[before..].to_vec();
                    if let Err(e) = this.inspect(&new) {
                        // The client never sees the request it would have answered.
                        buf.set_filled(before);
                        return Poll::Ready(Err(e));
                    }
                }
                Poll::Ready(Ok(()))
            }
            other => other,
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Guarded<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

impl<S: tokio_postgres::tls::TlsStream + Unpin> tokio_postgres::tls::TlsStream for Guarded<S> {
    fn channel_binding(&self) -> tokio_postgres::tls::ChannelBinding {
        self.inner.channel_binding()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth(code: u32) -> Vec<u8> {
        let mut m = vec![b'R', 0, 0, 0, 8];
        m.extend(code.to_be_bytes());
        m
    }

    fn parser(md5_ok: bool) -> Parser {
        Parser {
            md5_ok,
            head: Vec::new(),
            skip: 0,
        }
    }

    #[test]
    fn cleartext_and_unasked_md5_are_refused_in_any_split() {
        for (msg, md5_ok, refused) in [
            (auth(3), true, true),
            (auth(5), false, true),
            (auth(5), true, false),
            (auth(10), false, false),
        ] {
            // A notice first, then the request, cut at every byte.
            let mut all = vec![b'N', 0, 0, 0, 6, b'x', 0];
            all.extend(&msg);
            for cut in 0..all.len() {
                let mut p = parser(md5_ok);
                let r = p.feed(&all[..cut]).and_then(|_| p.feed(&all[cut..]));
                assert_eq!(r.is_err(), refused, "{msg:?} cut at {cut}");
            }
        }
    }

    #[test]
    fn the_guard_steps_aside_after_the_login_and_after_tls() {
        let mut p = parser(false);
        assert!(p.feed(&auth(0)).unwrap());
        let mut g = Guarded::raw((), true, false);
        g.inspect(b"S").unwrap();
        assert_eq!(g.phase, Phase::Aside);
        // After S, TLS bytes are not messages (a cleartext request's bytes pass).
        g.inspect(&auth(3)).unwrap();
        let mut g = Guarded::raw((), true, false);
        let mut n = b"N".to_vec();
        n.extend(auth(3));
        assert!(g.inspect(&n).is_err());
        let mut bad = parser(false);
        assert!(bad.feed(&[b'E', 0, 0, 0, 2]).is_err());
    }
}
