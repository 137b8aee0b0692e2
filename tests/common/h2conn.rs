//! Raw HTTP/2 connections for edge tests: they complete the handshake and
//! answer every PING (the h2 crate does both), and open a stream only when
//! asked, as an idle or hostile client would.

use std::net::SocketAddr;

use bytes::Bytes;
use tokio::task::JoinHandle;

/// One client connection and the task driving it.
pub struct RawH2 {
    pub send: h2::client::SendRequest<Bytes>,
    driver: JoinHandle<Result<(), h2::Error>>,
}

/// Connects to `addr`, completes the HTTP/2 handshake and waits for the
/// server to answer a PING (so the server is serving the connection).
pub async fn raw_h2(addr: SocketAddr) -> RawH2 {
    raw_h2_window(addr, 65_535).await
}

/// [`raw_h2`] with `window` bytes of flow-control window per stream (and
/// for the connection): how much the server may send before it must wait.
pub async fn raw_h2_window(addr: SocketAddr, window: u32) -> RawH2 {
    try_raw_h2(addr, window)
        .await
        .unwrap_or_else(|e| panic!("an HTTP/2 connection to {addr}: {e}"))
}

/// [`raw_h2_window`], with an error instead of a panic when the server
/// closes the connection (at its connection limit, say).
pub async fn try_raw_h2(addr: SocketAddr, window: u32) -> Result<RawH2, String> {
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let (send, mut conn) = h2::client::Builder::new()
        .initial_window_size(window)
        .initial_connection_window_size(window.max(65_535))
        .handshake(tcp)
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    let mut ping = conn.ping_pong().expect("ping_pong taken once");
    let driver = tokio::spawn(conn);
    super::within("the server's PONG", ping.ping(h2::Ping::opaque()))
        .await
        .map_err(|e| format!("PING: {e}"))?;
    Ok(RawH2 { send, driver })
}

impl RawH2 {
    /// Completes when the server has closed the connection.
    pub async fn closed(self) {
        let _ = self.driver.await;
    }

    /// Whether the connection is still up.
    pub fn is_open(&self) -> bool {
        !self.driver.is_finished()
    }

    /// Starts a gRPC call of `path` whose one request message is `message`
    /// (raw bytes, framed here), half-closing the request.
    async fn start(
        &mut self,
        path: &str,
        message: &[u8],
    ) -> (h2::client::ResponseFuture, h2::SendStream<Bytes>) {
        let req = http::Request::post(format!("http://localhost{path}"))
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .body(())
            .unwrap();
        let mut send = self.send.clone().ready().await.expect("ready");
        let (response, mut body) = send.send_request(req, false).expect("send request");
        let mut framed = vec![0u8];
        framed.extend_from_slice(&(message.len() as u32).to_be_bytes());
        framed.extend_from_slice(message);
        body.send_data(Bytes::from(framed), true)
            .expect("send data");
        (response, body)
    }

    /// A gRPC call of `path` whose one request message is `message`;
    /// returns `grpc-status` and `grpc-message`.
    pub async fn grpc_call(&mut self, path: &str, message: &[u8]) -> (String, String) {
        let (response, _body) = self.start(path, message).await;
        let response = super::within("the response", response)
            .await
            .expect("response");
        let field = |h: &http::HeaderMap, k: &str| {
            h.get(k)
                .map(|v| percent_decode(v.to_str().unwrap_or_default()))
        };
        if let Some(code) = field(response.headers(), "grpc-status") {
            let msg = field(response.headers(), "grpc-message").unwrap_or_default();
            return (code, msg);
        }
        let mut recv = response.into_body();
        while let Some(chunk) = super::within("the response body", recv.data()).await {
            let chunk = chunk.expect("body");
            let _ = recv.flow_control().release_capacity(chunk.len());
        }
        let trailers = super::within("the trailers", recv.trailers())
            .await
            .expect("trailers")
            .expect("trailers present");
        (
            field(&trailers, "grpc-status").unwrap_or_default(),
            field(&trailers, "grpc-message").unwrap_or_default(),
        )
    }

    /// Opens a gRPC call of `path` with one request `message` and never
    /// reads its response (a client that stops reading); the returned
    /// handles keep the stream open.
    pub async fn open_unread(
        &mut self,
        path: &str,
        message: &[u8],
    ) -> (h2::client::ResponseFuture, h2::SendStream<Bytes>) {
        self.start(path, message).await
    }

    /// A POST of `path` with `content_type`; returns the response head.
    pub async fn post(
        &mut self,
        path: &str,
        content_type: &str,
    ) -> Result<http::Response<h2::RecvStream>, h2::Error> {
        let req = http::Request::post(format!("http://localhost{path}"))
            .header("content-type", content_type)
            .header("te", "trailers")
            .body(())
            .unwrap();
        let (response, _stream) = self.send.clone().ready().await?.send_request(req, true)?;
        response.await
    }
}

/// `grpc-message` is percent-encoded (gRPC over HTTP/2).
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match (b[i], b.get(i + 1..i + 3)) {
            (b'%', Some(hex)) => {
                match u8::from_str_radix(std::str::from_utf8(hex).unwrap_or("zz"), 16) {
                    Ok(v) => {
                        out.push(v);
                        i += 3;
                    }
                    Err(_) => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Reads gRPC messages of type `M` from a response body, releasing flow
/// control only for what it reads (so not reading blocks the server).
pub struct GrpcReader {
    body: h2::RecvStream,
    buf: Vec<u8>,
}

impl GrpcReader {
    pub fn new(body: h2::RecvStream) -> Self {
        Self {
            body,
            buf: Vec::new(),
        }
    }

    /// The next message.
    pub async fn next<M: prost::Message + Default>(&mut self) -> M {
        loop {
            if self.buf.len() >= 5 {
                let len = u32::from_be_bytes(self.buf[1..5].try_into().unwrap()) as usize;
                if self.buf.len() >= 5 + len {
                    let msg = M::decode(&self.buf[5..5 + len]).expect("a message");
                    self.buf.drain(..5 + len);
                    return msg;
                }
            }
            let chunk = super::within("response data", self.body.data())
                .await
                .expect("the stream is open")
                .expect("data");
            let _ = self.body.flow_control().release_capacity(chunk.len());
            self.buf.extend_from_slice(&chunk);
        }
    }
}
