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
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let (send, mut conn) = h2::client::handshake(tcp).await.expect("h2 handshake");
    let mut ping = conn.ping_pong().expect("ping_pong taken once");
    let driver = tokio::spawn(conn);
    super::within("the server's PONG", ping.ping(h2::Ping::opaque()))
        .await
        .expect("the server answers PING");
    RawH2 { send, driver }
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
