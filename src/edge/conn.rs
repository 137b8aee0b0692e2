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

use std::time::Duration;

use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::{self, HttpServerConnExec};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_rustls::server::TlsStream;
use tonic::service::Routes;
use tonic::transport::server::Connected;
use tracing::debug;

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
        () = handle.evicted() => return,
        () = edge.graceful.cancelled() => return,
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
            drive(edge, conn, &handle).await;
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
    drive(
        edge,
        edge.h2.serve_connection(TokioIo::new(io), service),
        handle,
    )
    .await;
}

/// Serves `conn` until it ends; closes it when it has been idle for the
/// idle timeout, when the table evicts it, or at shutdown.
async fn drive<C, E>(edge: &Inner, conn: C, handle: &ConnHandle)
where
    C: GracefulConnection<Output = Result<(), E>>,
    E: std::fmt::Display,
{
    let idle = edge.cfg.idle_timeout;
    tokio::pin!(conn);
    let timer = tokio::time::sleep(idle);
    tokio::pin!(timer);
    let mut closing = false;
    loop {
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(e) = result {
                    debug!(error = %e, "connection ended with an error");
                }
                return;
            }
            () = &mut timer => {
                if closing {
                    return; // its GOAWAY could not be flushed in time
                }
                let now = Instant::now();
                match handle.idle_since() {
                    Some(since) if now.duration_since(since) >= idle => {
                        edge.metrics.idle_closed();
                        conn.as_mut().shut();
                        closing = true;
                        timer.as_mut().reset(now + CLOSE_GRACE);
                    }
                    Some(since) => timer.as_mut().reset(since + idle),
                    None => timer.as_mut().reset(now + idle),
                }
            }
            () = handle.evicted(), if !closing => {
                conn.as_mut().shut();
                closing = true;
                timer.as_mut().reset(Instant::now() + CLOSE_GRACE);
            }
            () = edge.graceful.cancelled(), if !closing => {
                // Streams end themselves on shutdown; the edge's grace bounds it.
                conn.as_mut().shut();
                closing = true;
                timer.as_mut().reset(Instant::now() + Duration::from_secs(86_400));
            }
            () = edge.force.cancelled() => return,
        }
    }
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
