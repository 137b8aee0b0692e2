//! The byte streams under a connection.
//!
//! [`Consolidated`] consolidates writes, as Netty's
//! `FlushConsolidationHandler` does: a write that comes within [`BURST`] of
//! the connection's previous one yields to the scheduler once before the
//! syscall. When one event readies many streams of a connection at once (a
//! health flip reaching thousands of Watch streams, the pongs of many
//! members read in one chunk), tokio would otherwise run the connection
//! task right after each stream task (its LIFO slot), and h2 would write
//! every frame in a `writev` of its own. Yielding puts the connection task
//! at the back of the run queue, so the other streams queue their frames
//! first and one syscall carries them all. Measured: a flip reaching 10k
//! watchers spent 45 % of the server's time in `writev`, about 10 µs per
//! watcher.
//!
//! A write with nothing before it (a member's pong, most of the time) goes
//! out at once: the yield is a whole extra poll of the connection (h2's
//! bookkeeping included), which cost a lone pong about 3,000 instructions,
//! 13 % of the floor's whole ping, by callgrind.
//!
//! [`Replay`] gives back the bytes the handshake gate read (the HTTP/2
//! preface) before the rest of the stream.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tonic::transport::server::{Connected, TcpConnectInfo};

/// Writes closer together than this are one burst: from the second on,
/// each yields once first (see the module docs). Far above the few
/// microseconds between the frames of one scheduling round, far below the
/// time between two pings of a connection's members.
pub(crate) const BURST: Duration = Duration::from_micros(200);

/// A TCP stream whose write bursts share one syscall (see the module docs).
#[derive(Debug)]
pub(crate) struct Consolidated {
    stream: TcpStream,
    /// This write already yielded once.
    yielded: bool,
    /// When the last write was attempted.
    last_write: Option<Instant>,
}

impl Consolidated {
    pub(crate) fn new(stream: TcpStream) -> Self {
        Self {
            stream,
            yielded: false,
            last_write: None,
        }
    }

    /// Yields once for a write inside a burst; `Ready` when the write may
    /// go ahead.
    fn consolidate(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if self.yielded {
            return Poll::Ready(());
        }
        let now = Instant::now();
        let in_burst = self.last_write.is_some_and(|at| now - at < BURST);
        self.last_write = Some(now);
        if !in_burst {
            return Poll::Ready(());
        }
        self.yielded = true;
        cx.waker().wake_by_ref();
        Poll::Pending
    }

    /// Ends the wait once a write went through.
    fn wrote<T>(&mut self, result: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        if result.is_ready() {
            self.yielded = false;
        }
        result
    }
}

impl Connected for Consolidated {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> TcpConnectInfo {
        self.stream.connect_info()
    }
}

impl AsyncRead for Consolidated {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Consolidated {
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

/// `inner`, after the bytes already read from it.
#[derive(Debug)]
pub(crate) struct Replay<T> {
    inner: T,
    prefix: [u8; 24],
    len: usize,
    replayed: usize,
}

impl<T> Replay<T> {
    /// Replays `prefix` (at most 24 bytes) before reading `inner`.
    pub(crate) fn new(inner: T, prefix: &[u8]) -> Self {
        let mut buf = [0u8; 24];
        let len = prefix.len().min(buf.len());
        buf[..len].copy_from_slice(&prefix[..len]);
        Self {
            inner,
            prefix: buf,
            len,
            replayed: 0,
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Replay<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.replayed < self.len {
            let n = (self.len - self.replayed).min(buf.remaining());
            let start = self.replayed;
            buf.put_slice(&self.prefix[start..start + n]);
            self.replayed += n;
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Replay<T> {
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

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::Wake;

    use tokio::io::AsyncReadExt;
    use tokio::net::TcpListener;

    use super::*;

    struct Count(AtomicUsize);

    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_lone_write_goes_at_once_and_one_in_a_burst_yields_once() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap());
        let (client, accepted) = tokio::join!(client, listener.accept());
        let (mut client, stream) = (client.unwrap(), accepted.unwrap().0);
        let mut conn = Consolidated::new(stream);
        let count = Arc::new(Count(AtomicUsize::new(0)));
        let waker = std::task::Waker::from(count.clone());
        let mut cx = Context::from_waker(&waker);
        let woken = || count.0.load(Ordering::Relaxed);
        for round in 1..=2 {
            let mut w = Pin::new(&mut conn);
            // The first write of a round has nothing before it: at once.
            assert!(matches!(
                w.as_mut().poll_write(&mut cx, b"ab"),
                Poll::Ready(Ok(2))
            ));
            assert_eq!(woken(), round - 1, "a lone write never yields");
            // The next one (the clock stands still: same instant) is in a
            // burst: it yields once, woken to write later.
            assert!(w.as_mut().poll_write(&mut cx, b"cd").is_pending());
            assert_eq!(woken(), round, "woken to write later");
            assert!(matches!(w.poll_write(&mut cx, b"cd"), Poll::Ready(Ok(2))));
            tokio::time::advance(BURST).await;
        }
        let mut got = [0u8; 8];
        client.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"abcdabcd");
    }

    #[tokio::test]
    async fn the_prefix_comes_back_before_the_rest() {
        let (a, mut b) = tokio::io::duplex(64);
        tokio::io::AsyncWriteExt::write_all(&mut b, b"rest")
            .await
            .unwrap();
        drop(b);
        let mut r = Replay::new(a, b"PRI ");
        let mut got = String::new();
        r.read_to_string(&mut got).await.unwrap();
        assert_eq!(got, "PRI rest");
    }
}
