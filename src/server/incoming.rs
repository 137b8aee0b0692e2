//! Accepting connections with limits, before tonic sees them:
//! - at most `max_connections` at once; one more is closed at accept;
//! - a connection must send the 24-byte HTTP/2 client preface (or, with TLS,
//!   a TLS handshake record) within the join timeout, or it is closed
//!   (slowloris, port scanners, garbage). The bytes are read here and
//!   replayed to the server, and the wait runs in a task of its own, so a
//!   slow client never holds up `accept`.
//!
//! It also consolidates writes, as Netty's `FlushConsolidationHandler` does:
//! the first write of a burst yields to the scheduler once before the
//! syscall. When one event readies many streams of a connection at once (a
//! health flip reaching thousands of Watch streams, the pongs of many
//! members), tokio would otherwise run the connection task right after each
//! stream task (its LIFO slot), and h2 would write every frame in a
//! `writev` of its own. Yielding puts the connection task at the back of the
//! run queue, so the other streams queue their frames first and one syscall
//! carries them all. Measured: a flip reaching 10k watchers spent 45 % of the
//! server's time in `writev`, about 10 µs per watcher.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::server::{Connected, TcpConnectInfo};
use tracing::debug;

use crate::metrics::ServerMetrics;

const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// What a connection must start with, within the handshake deadline.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Gate {
    /// The 24-byte HTTP/2 client preface (plaintext).
    Http2,
    /// A TLS handshake record (the rest is rustls' business).
    Tls,
}

impl Gate {
    fn prefix_len(self) -> usize {
        match self {
            Gate::Http2 => PREFACE.len(),
            Gate::Tls => 1,
        }
    }

    fn accepts(self, prefix: &[u8]) -> bool {
        match self {
            Gate::Http2 => prefix == PREFACE,
            Gate::Tls => prefix == [0x16],
        }
    }
}

/// An accepted connection that began as its gate requires; the bytes read
/// to check it are replayed. Holds its slot under the connection limit until
/// dropped.
pub(crate) struct Conn {
    stream: TcpStream,
    prefix: [u8; 24],
    prefix_len: usize,
    replay: usize,
    /// This write burst already yielded once (see the module docs).
    yielded: bool,
    _permit: OwnedSemaphorePermit,
    metrics: ServerMetrics,
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.metrics.connection_closed();
    }
}

impl Connected for Conn {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> TcpConnectInfo {
        self.stream.connect_info()
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.replay < self.prefix_len {
            let n = (self.prefix_len - self.replay).min(buf.remaining());
            let start = self.replay;
            buf.put_slice(&self.prefix[start..start + n]);
            self.replay += n;
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl Conn {
    /// Yields once per write burst; `Ready` when the write may go ahead.
    fn consolidate(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if self.yielded {
            return Poll::Ready(());
        }
        self.yielded = true;
        cx.waker().wake_by_ref();
        Poll::Pending
    }

    /// Ends the burst once a write went through.
    fn wrote<T>(&mut self, result: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        if result.is_ready() {
            self.yielded = false;
        }
        result
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        std::task::ready!(self.consolidate(cx));
        let result = Pin::new(&mut self.stream).poll_write(cx, buf);
        self.wrote(result)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        std::task::ready!(self.consolidate(cx));
        let result = Pin::new(&mut self.stream).poll_write_vectored(cx, bufs);
        self.wrote(result)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

/// Accepts on `listener` until the returned stream is dropped (or the
/// returned task is aborted, which closes the listener).
pub(crate) fn accept(
    listener: TcpListener,
    max_connections: usize,
    handshake: Duration,
    gate: Gate,
    metrics: ServerMetrics,
) -> (
    ReceiverStream<io::Result<Conn>>,
    tokio::task::JoinHandle<()>,
) {
    let (tx, rx) = mpsc::channel(64);
    let slots = Arc::new(Semaphore::new(max_connections));
    let task = tokio::spawn(async move {
        loop {
            let stream = match listener.accept().await {
                Ok((s, _)) => s,
                Err(e) => {
                    // Out of file descriptors and the like: back off a little.
                    debug!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            };
            let Ok(permit) = slots.clone().try_acquire_owned() else {
                metrics.connection_refused("connection_limit");
                continue; // dropping the stream closes it
            };
            let _ = stream.set_nodelay(true);
            if tx.is_closed() {
                return;
            }
            let (tx, metrics) = (tx.clone(), metrics.clone());
            tokio::spawn(async move {
                let mut stream = stream;
                let mut prefix = [0u8; 24];
                let len = gate.prefix_len();
                let read = stream.read_exact(&mut prefix[..len]);
                match tokio::time::timeout(handshake, read).await {
                    Ok(Ok(_)) if gate.accepts(&prefix[..len]) => {
                        metrics.connection_opened();
                        let conn = Conn {
                            stream,
                            prefix,
                            prefix_len: len,
                            replay: 0,
                            yielded: false,
                            _permit: permit,
                            metrics,
                        };
                        let _ = tx.send(Ok(conn)).await;
                    }
                    Ok(Ok(_)) => metrics.connection_refused(match gate {
                        Gate::Http2 => "not_http2",
                        Gate::Tls => "not_tls",
                    }),
                    Ok(Err(_)) => {}
                    Err(_) => metrics.connection_refused("handshake_timeout"),
                }
            });
        }
    });
    (ReceiverStream::new(rx), task)
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::Wake;

    use super::*;

    struct Count(AtomicUsize);

    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    #[tokio::test]
    async fn each_write_burst_yields_once_then_writes() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap());
        let (client, accepted) = tokio::join!(client, listener.accept());
        let (mut client, stream) = (client.unwrap(), accepted.unwrap().0);
        let mut conn = Conn {
            stream,
            prefix: [0; 24],
            prefix_len: 0,
            replay: 0,
            yielded: false,
            _permit: Arc::new(Semaphore::new(1)).try_acquire_owned().unwrap(),
            metrics: ServerMetrics::unregistered(),
        };
        let count = Arc::new(Count(AtomicUsize::new(0)));
        let waker = std::task::Waker::from(count.clone());
        let mut cx = Context::from_waker(&waker);
        for burst in 1..=3 {
            let mut w = Pin::new(&mut conn);
            assert!(w.as_mut().poll_write(&mut cx, b"ab").is_pending());
            assert_eq!(
                count.0.load(Ordering::Relaxed),
                burst,
                "woken to write later"
            );
            assert!(matches!(w.poll_write(&mut cx, b"ab"), Poll::Ready(Ok(2))));
        }
        let mut got = [0u8; 6];
        client.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"ababab");
    }
}
