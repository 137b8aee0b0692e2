//! One connection's life: the handshake inside its deadline, then hyper
//! serving it until it ends, goes idle for too long, is evicted, or the
//! process shuts down.
//!
//! ```text
//!   accept ──(TLS, HTTP/2 preface within the handshake deadline)──► serving
//!     │ late, garbage, evicted                                       │ idle timeout / evicted
//!     ▼                                                              ▼
//!   closed ◄──────────(no stream left, or CLOSE_GRACE over)────── GOAWAY sent
//! ```

use std::pin::Pin;
use std::task::Poll;
use std::time::Duration;

use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::{self, HttpServerConnExec};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};
use tokio::net::TcpStream;
use tokio::time::{Instant, Sleep};
use tokio_rustls::server::TlsStream;
use tonic::service::Routes;
use tonic::transport::server::Connected;
use tracing::debug;

use super::control::{CLOSE, FORCE, SHUTDOWN};
use super::io::{Consolidated, Replay};
use super::service::{ConnInfo, EdgeService};
use super::table::ConnHandle;
use super::{CLOSE_GRACE, Inner, Port};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// First byte of a TLS handshake record.
const TLS_HANDSHAKE: u8 = 0x16;

/// Why a handshake failed (the `connections_refused` reason).
#[derive(Debug, Clone, Copy)]
enum Refused {
    Timeout,
    NotHttp2,
    NotTls,
    Tls,
    Closed,
}

impl Refused {
    fn reason(self) -> Option<crate::metrics::Refused> {
        use crate::metrics::Refused as Reason;
        match self {
            Refused::Timeout => Some(Reason::HandshakeTimeout),
            Refused::NotHttp2 => Some(Reason::NotHttp2),
            Refused::NotTls => Some(Reason::NotTls),
            Refused::Tls => Some(Reason::TlsHandshake),
            Refused::Closed => None,
        }
    }
}

/// A connection past its handshake.
enum Accepted<'a> {
    Plain(Replay<Consolidated>, ConnInfo, &'a Routes),
    Tls(Box<Replay<TlsStream<Consolidated>>>, ConnInfo, &'a Routes),
    Http(Consolidated, &'a axum::Router),
}

pub(super) async fn run(edge: &Inner, stream: TcpStream, handle: ConnHandle, port: &Port) {
    let deadline = Instant::now() + edge.cfg.handshake_timeout;
    let accepted = tokio::select! {
        result = handshake(stream, port, deadline) => result,
        () = asked(&handle) => return,
    };
    match accepted {
        Err(refused) => {
            if let Some(reason) = refused.reason() {
                edge.metrics.refused(reason);
            }
        }
        Ok(Accepted::Plain(io, info, routes)) => grpc(edge, io, routes, info, &handle).await,
        Ok(Accepted::Tls(io, info, routes)) => grpc(edge, io, routes, info, &handle).await,
        Ok(Accepted::Http(io, router)) => {
            let service = EdgeService {
                inner: router.clone(),
                streams: handle.streams(),
                grpc: None,
            };
            let conn = edge.h1.serve_connection(TokioIo::new(io), service);
            drive(conn, &handle).await;
        }
    }
}

/// The handshake `port` asks for, by `deadline`.
async fn handshake(
    stream: TcpStream,
    port: &Port,
    deadline: Instant,
) -> Result<Accepted<'_>, Refused> {
    match port {
        Port::Http(router) => Ok(Accepted::Http(Consolidated::new(stream), router)),
        Port::Grpc { routes, tls: None } => {
            let mut io = Consolidated::new(stream);
            let info = ConnInfo::Tcp(io.connect_info());
            preface(&mut io, deadline).await?;
            Ok(Accepted::Plain(Replay::new(io, PREFACE), info, routes))
        }
        Port::Grpc {
            routes,
            tls: Some(config),
        } => {
            let mut first = [0u8; 1];
            match tokio::time::timeout_at(deadline, stream.peek(&mut first)).await {
                Err(_) => return Err(Refused::Timeout),
                Ok(Ok(1)) if first[0] == TLS_HANDSHAKE => {}
                Ok(Ok(1)) => return Err(Refused::NotTls),
                Ok(_) => return Err(Refused::Closed),
            }
            let acceptor = tokio_rustls::TlsAcceptor::from(config.clone());
            let accept = acceptor.accept(Consolidated::new(stream));
            let mut io = match tokio::time::timeout_at(deadline, accept).await {
                Err(_) => return Err(Refused::Timeout),
                Ok(Err(e)) => {
                    debug!(error = %e, "TLS handshake failed");
                    return Err(Refused::Tls);
                }
                Ok(Ok(io)) => io,
            };
            let info = ConnInfo::Tls(io.connect_info());
            preface(&mut io, deadline).await?;
            Ok(Accepted::Tls(
                Box::new(Replay::new(io, PREFACE)),
                info,
                routes,
            ))
        }
    }
}

/// Reads the HTTP/2 client preface by `deadline`.
async fn preface<T: AsyncRead + Unpin>(io: &mut T, deadline: Instant) -> Result<(), Refused> {
    let mut got = [0u8; 24];
    match tokio::time::timeout_at(deadline, io.read_exact(&mut got)).await {
        Err(_) => Err(Refused::Timeout),
        Ok(Err(_)) => Err(Refused::Closed),
        Ok(Ok(_)) if &got == PREFACE => Ok(()),
        Ok(Ok(_)) => Err(Refused::NotHttp2),
    }
}

async fn grpc<T>(edge: &Inner, io: T, routes: &Routes, info: ConnInfo, handle: &ConnHandle)
where
    T: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let service = EdgeService {
        inner: routes.clone(),
        streams: handle.streams(),
        grpc: Some((info, Default::default())),
    };
    drive(edge.h2.serve_connection(TokioIo::new(io), service), handle).await;
}

/// Completes when the edge asks anything of the connection (during the
/// handshake, any request ends it).
fn asked(handle: &ConnHandle) -> impl std::future::Future<Output = ()> + '_ {
    std::future::poll_fn(|cx| match handle.control().poll(cx) {
        0 => Poll::Pending,
        _ => Poll::Ready(()),
    })
}

/// Serves `conn` until it ends, or until the edge asks it to close (idle
/// for the idle timeout, evicted, shutdown: GOAWAY, then a grace) or to go
/// at once. Each poll reads the requests with one atomic load ([`control`]).
///
/// [`control`]: super::control
async fn drive<C, E>(conn: C, handle: &ConnHandle)
where
    C: GracefulConnection<Output = Result<(), E>>,
    E: std::fmt::Display,
{
    tokio::pin!(conn);
    let mut closing: Option<Pin<Box<Sleep>>> = None;
    std::future::poll_fn(|cx| {
        let asked = handle.control().poll(cx);
        if asked & FORCE != 0 {
            return Poll::Ready(());
        }
        if asked & (CLOSE | SHUTDOWN) != 0 && closing.is_none() {
            conn.as_mut().shut();
            // Closed to make room or for idling: its GOAWAY gets the close
            // grace. At shutdown the edge's own grace bounds it (FORCE).
            let grace = if asked & CLOSE != 0 {
                CLOSE_GRACE
            } else {
                Duration::from_secs(86_400)
            };
            closing = Some(Box::pin(tokio::time::sleep(grace)));
        }
        if let Some(grace) = closing.as_mut()
            && grace.as_mut().poll(cx).is_ready()
        {
            return Poll::Ready(()); // its GOAWAY could not be flushed in time
        }
        match conn.as_mut().poll(cx) {
            Poll::Ready(Err(e)) => {
                debug!(error = %e, "connection ended with an error");
                Poll::Ready(())
            }
            Poll::Ready(Ok(())) => Poll::Ready(()),
            Poll::Pending => Poll::Pending,
        }
    })
    .await
}

/// A hyper connection that can be told to finish (GOAWAY, then close).
trait GracefulConnection: std::future::Future {
    fn shut(self: std::pin::Pin<&mut Self>);
}

impl<I, S, B> GracefulConnection for auto::Connection<'_, I, S, TokioExecutor>
where
    S: hyper::service::Service<http::Request<Incoming>, Response = http::Response<B>>,
    S::Future: 'static,
    S::Error: Into<BoxError>,
    B: http_body::Body + 'static,
    B::Error: Into<BoxError>,
    I: hyper::rt::Read + hyper::rt::Write + Unpin + 'static,
    TokioExecutor: HttpServerConnExec<S::Future, B>,
{
    fn shut(self: std::pin::Pin<&mut Self>) {
        self.graceful_shutdown();
    }
}
