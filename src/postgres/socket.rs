//! Opening the byte stream to a server: TCP or a Unix socket, trying each configured host in turn.
//!
//! millpond opens the socket itself, instead of letting tokio-postgres do it, so that it can put
//! the protocol watcher ([`Watched`](super::wire::Watched)) underneath the session.

use std::fmt;
use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
#[cfg(unix)]
use tokio::net::UnixStream;
use tokio_postgres::config::{Config, Host};

/// A connected socket to a PostgreSQL server.
#[derive(Debug)]
pub struct Socket(Stream);

#[derive(Debug)]
enum Stream {
    Tcp(TcpStream),
    #[cfg(unix)]
    Unix(UnixStream),
}

/// Where a connection went: kept to send a cancel request to the same server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Endpoint {
    Tcp {
        /// The name from the configuration: what TLS verifies.
        host: String,
        /// The `hostaddr` to connect to instead of resolving `host`, if one is set.
        addr: Option<IpAddr>,
        port: u16,
    },
    #[cfg(unix)]
    Unix(std::path::PathBuf),
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Tcp { host, port, .. } => write!(f, "{host}:{port}"),
            #[cfg(unix)]
            Self::Unix(path) => write!(f, "{}", path.display()),
        }
    }
}

impl Endpoint {
    /// The hostname the TLS handshake verifies, if this is a TCP endpoint.
    pub(crate) fn host(&self) -> &str {
        match self {
            Self::Tcp { host, .. } => host,
            #[cfg(unix)]
            Self::Unix(_) => "",
        }
    }

    /// Opens a socket to this endpoint, within `timeout` if one is set.
    pub(crate) async fn connect(&self, timeout: Option<Duration>) -> io::Result<Socket> {
        let connecting = async {
            match self {
                Self::Tcp { host, addr, port } => {
                    let stream = match addr {
                        Some(addr) => TcpStream::connect((*addr, *port)).await?,
                        None => TcpStream::connect((host.as_str(), *port)).await?,
                    };
                    // Queries are small writes that wait for an answer: Nagle only adds latency.
                    stream.set_nodelay(true)?;
                    Ok(Socket(Stream::Tcp(stream)))
                }
                #[cfg(unix)]
                Self::Unix(path) => Ok(Socket(Stream::Unix(UnixStream::connect(path).await?))),
            }
        };
        match timeout {
            Some(limit) => tokio::time::timeout(limit, connecting).await.map_err(|_| {
                io::Error::new(io::ErrorKind::TimedOut, format!("connecting to {self} timed out"))
            })?,
            None => connecting.await,
        }
    }
}

/// The endpoints a configuration names, in the order to try them, as libpq reads them: one
/// port for every host, or one port per host; 5432 if none is given; a `hostaddr` in place of
/// resolving its host; `localhost` if neither is given.
pub(crate) fn endpoints(config: &Config) -> Vec<Endpoint> {
    let ports = config.get_ports();
    let port_for = |index: usize| match ports {
        [] => 5432,
        [port] => *port,
        ports => ports.get(index).copied().unwrap_or(5432),
    };
    let addrs = config.get_hostaddrs();
    let hosts = config.get_hosts();
    if hosts.is_empty() {
        if addrs.is_empty() {
            return vec![Endpoint::Tcp {
                host: "localhost".to_owned(),
                addr: None,
                port: port_for(0),
            }];
        }
        return addrs
            .iter()
            .enumerate()
            .map(|(index, addr)| Endpoint::Tcp {
                host: addr.to_string(),
                addr: Some(*addr),
                port: port_for(index),
            })
            .collect();
    }
    hosts
        .iter()
        .enumerate()
        .map(|(index, host)| match host {
            Host::Tcp(name) => Endpoint::Tcp {
                host: name.clone(),
                addr: addrs.get(index).copied(),
                port: port_for(index),
            },
            #[cfg(unix)]
            Host::Unix(dir) => Endpoint::Unix(dir.join(format!(".s.PGSQL.{}", port_for(index)))),
        })
        .collect()
}

/// Connects to the first endpoint that answers; the error is the last endpoint's.
pub(crate) async fn connect(config: &Config) -> io::Result<(Socket, Endpoint)> {
    let timeout = config.get_connect_timeout().copied();
    let mut last_error = None;
    for endpoint in endpoints(config) {
        match endpoint.connect(timeout).await {
            Ok(socket) => return Ok((socket, endpoint)),
            Err(err) => {
                last_error = Some(io::Error::new(
                    err.kind(),
                    format!("could not connect to {endpoint}: {err}"),
                ));
            }
        }
    }
    Err(last_error.unwrap_or_else(|| io::Error::other("no host to connect to")))
}

macro_rules! delegate {
    ($this:ident, $stream:ident => $call:expr) => {
        match &mut $this.0 {
            Stream::Tcp($stream) => $call,
            #[cfg(unix)]
            Stream::Unix($stream) => $call,
        }
    };
}

impl AsyncRead for Socket {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        delegate!(self, stream => Pin::new(stream).poll_read(cx, buf))
    }
}

impl AsyncWrite for Socket {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        delegate!(self, stream => Pin::new(stream).poll_write(cx, buf))
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        delegate!(self, stream => Pin::new(stream).poll_write_vectored(cx, bufs))
    }

    fn is_write_vectored(&self) -> bool {
        match &self.0 {
            Stream::Tcp(stream) => stream.is_write_vectored(),
            #[cfg(unix)]
            Stream::Unix(stream) => stream.is_write_vectored(),
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        delegate!(self, stream => Pin::new(stream).poll_flush(cx))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        delegate!(self, stream => Pin::new(stream).poll_shutdown(cx))
    }
}
