//! What every request passes through before its handler: it is counted as
//! an open stream of its connection for as long as its response lasts (the
//! idle rule of [`super::table`]), and on a gRPC port the rules of gRPC over
//! HTTP/2 that tonic's router does not apply itself:
//!
//! - a request whose content-type is not `application/grpc…` gets HTTP 415;
//! - `grpc-timeout` bounds the whole call, streams included: a response not
//!   started by then is DEADLINE_EXCEEDED, and a stream still open then is
//!   ended with DEADLINE_EXCEEDED trailers (tonic's own timeout only bounds
//!   the handler's future, which for a stream returns at once);
//! - the connection's address and verified TLS certificates go into the
//!   request's extensions, where `tonic::Request::peer_certs` finds them.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use tokio::time::{Instant, Sleep};
use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};
use tower::ServiceExt;

use super::table::{StreamGuard, Streams};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// What a gRPC handler may learn of its connection.
#[derive(Debug, Clone)]
pub(crate) enum ConnInfo {
    Tcp(TcpConnectInfo),
    Tls(TlsConnectInfo<TcpConnectInfo>),
}

/// Per-connection state handlers may keep (in every gRPC request's
/// extensions as `Arc<PerConnection>`): limits that apply per connection.
#[derive(Debug, Default)]
pub struct PerConnection {
    /// Open WatchMembers streams on this connection.
    pub watches: std::sync::atomic::AtomicUsize,
}

/// The service of one connection: `inner` (shared by all connections of the
/// port) behind the edge's rules.
#[derive(Debug, Clone)]
pub(crate) struct EdgeService<S> {
    pub(crate) inner: S,
    pub(crate) streams: Streams,
    /// `Some` on a gRPC port.
    pub(crate) grpc: Option<(ConnInfo, Arc<PerConnection>)>,
}

type ResponseFuture<B> =
    Pin<Box<dyn Future<Output = Result<Response<EdgeBody<B>>, Infallible>> + Send>>;

impl<S, B> hyper::service::Service<Request<Incoming>> for EdgeService<S>
where
    S: tower::Service<Request<Incoming>, Response = Response<B>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send,
    B: Body<Data = Bytes> + Default + Send + Unpin + 'static,
    B::Error: Into<BoxError>,
{
    type Response = Response<EdgeBody<B>>;
    type Error = Infallible;
    type Future = ResponseFuture<B>;

    fn call(&self, mut req: Request<Incoming>) -> Self::Future {
        let stream = self.streams.open();
        let mut deadline = None;
        if let Some((info, per_conn)) = &self.grpc {
            if !is_grpc(req.headers()) {
                return Box::pin(std::future::ready(Ok(unsupported_media_type(stream))));
            }
            match grpc_timeout(req.headers()) {
                Ok(timeout) => deadline = timeout.map(|t| Instant::now() + t),
                Err(e) => {
                    let status = tonic::Status::invalid_argument(e);
                    return Box::pin(std::future::ready(Ok(status_response(status, stream))));
                }
            }
            req.extensions_mut().insert(per_conn.clone());
            match info {
                ConnInfo::Tcp(i) => {
                    req.extensions_mut().insert(i.clone());
                }
                ConnInfo::Tls(i) => {
                    req.extensions_mut().insert(i.clone());
                }
            }
        }
        let call = self.inner.clone().oneshot(req);
        Box::pin(async move {
            let response = match deadline {
                None => call.await,
                Some(at) => match tokio::time::timeout_at(at, call).await {
                    Ok(r) => r,
                    Err(_) => return Ok(status_response(deadline_exceeded(), stream)),
                },
            };
            let Ok(response) = response;
            Ok(response.map(|body| EdgeBody {
                inner: Some(body),
                deadline: deadline.map(|at| Box::pin(tokio::time::sleep_until(at))),
                _stream: stream,
            }))
        })
    }
}

fn is_grpc(headers: &HeaderMap) -> bool {
    headers
        .get(http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"))
}

fn deadline_exceeded() -> tonic::Status {
    tonic::Status::deadline_exceeded("the call's grpc-timeout passed")
}

fn unsupported_media_type<B: Default>(stream: StreamGuard) -> Response<EdgeBody<B>> {
    let mut response = Response::new(EdgeBody::empty(stream));
    *response.status_mut() = StatusCode::UNSUPPORTED_MEDIA_TYPE;
    response
}

fn status_response<B: Default>(
    status: tonic::Status,
    stream: StreamGuard,
) -> Response<EdgeBody<B>> {
    status.into_http::<()>().map(|()| EdgeBody::empty(stream))
}

/// Parses `grpc-timeout` (gRPC over HTTP/2: at most 8 digits and a unit of
/// `H`, `M`, `S`, `m`, `u` or `n`); `None` when absent.
pub(crate) fn grpc_timeout(headers: &HeaderMap) -> Result<Option<Duration>, String> {
    let Some(value) = headers.get("grpc-timeout") else {
        return Ok(None);
    };
    let bad = || format!("grpc-timeout {value:?} is not 1-8 digits and a unit (H M S m u n)");
    let text = value.to_str().map_err(|_| bad())?;
    let split = text.len().checked_sub(1).ok_or_else(bad)?;
    let (digits, unit) = text.split_at(split);
    if digits.is_empty() || digits.len() > 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let n: u64 = digits.parse().map_err(|_| bad())?;
    let d = match unit {
        "H" => Duration::from_secs(n * 3600),
        "M" => Duration::from_secs(n * 60),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return Err(bad()),
    };
    Ok(Some(d))
}

/// A response body that keeps its stream counted until it ends, and ends
/// with DEADLINE_EXCEEDED trailers when the call's deadline passes first.
pub(crate) struct EdgeBody<B> {
    inner: Option<B>,
    deadline: Option<Pin<Box<Sleep>>>,
    _stream: StreamGuard,
}

impl<B: Default> EdgeBody<B> {
    fn empty(stream: StreamGuard) -> Self {
        Self {
            inner: Some(B::default()),
            deadline: None,
            _stream: stream,
        }
    }
}

impl<B> Body for EdgeBody<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        let Some(inner) = this.inner.as_mut() else {
            return Poll::Ready(None);
        };
        if let Some(deadline) = this.deadline.as_mut()
            && deadline.as_mut().poll(cx).is_ready()
        {
            this.inner = None;
            this.deadline = None;
            let mut trailers = HeaderMap::new();
            // A status made here always encodes.
            let _ = deadline_exceeded().add_header(&mut trailers);
            return Poll::Ready(Some(Ok(Frame::trailers(trailers))));
        }
        match Pin::new(inner).poll_frame(cx) {
            Poll::Ready(None) => {
                this.inner = None;
                Poll::Ready(None)
            }
            Poll::Ready(Some(frame)) => {
                let frame = frame.map_err(Into::into)?;
                if frame.is_trailers() {
                    this.deadline = None;
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_none_or(|b| b.is_end_stream())
    }

    fn size_hint(&self) -> SizeHint {
        match &self.inner {
            Some(b) if self.deadline.is_none() => b.size_hint(),
            Some(_) => SizeHint::default(),
            None => SizeHint::with_exact(0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(v: &str) -> Result<Option<Duration>, String> {
        let mut h = HeaderMap::new();
        h.insert("grpc-timeout", v.parse().unwrap());
        grpc_timeout(&h)
    }

    #[test]
    fn grpc_timeout_takes_every_unit_and_refuses_the_rest() {
        assert_eq!(grpc_timeout(&HeaderMap::new()), Ok(None));
        let d = |v| parse(v).unwrap().unwrap();
        assert_eq!(d("1H"), Duration::from_secs(3600));
        assert_eq!(d("2M"), Duration::from_secs(120));
        assert_eq!(d("3S"), Duration::from_secs(3));
        assert_eq!(d("250m"), Duration::from_millis(250));
        assert_eq!(d("7u"), Duration::from_micros(7));
        assert_eq!(d("99999999n"), Duration::from_nanos(99_999_999));
        assert_eq!(d("0m"), Duration::ZERO);
        for bad in ["", "m", "10", "123456789m", "1x", "-1S", "1.5S", " 1S"] {
            let e = parse(bad).unwrap_err();
            assert!(e.contains("grpc-timeout"), "{bad:?}: {e}");
        }
    }
}
