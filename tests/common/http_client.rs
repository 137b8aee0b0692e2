//! A plain HTTP/1.1 client for the HTTP port (SPEC §9): one request per
//! connection through hyper's own client, and a Server-Sent Events reader
//! that hands out one event at a time, every wait bounded.

use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;

use super::within;

/// A response read whole.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: String,
}

impl Reply {
    /// The body as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {}", self.body))
    }

    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .unwrap_or_else(|| panic!("no {name} header in {:?}", self.headers))
            .to_str()
            .unwrap()
    }
}

/// Sends `method path` with `headers` on a new connection to `addr`;
/// returns the response with its body not yet read.
pub async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> http::Response<Incoming> {
    let tcp = within("connect over HTTP", tokio::net::TcpStream::connect(addr))
        .await
        .expect("connect to the HTTP port");
    let (mut sender, conn) = within("HTTP handshake", http1::handshake(TokioIo::new(tcp)))
        .await
        .expect("HTTP/1.1 handshake");
    tokio::spawn(conn);
    let mut req = http::Request::builder()
        .method(method)
        .uri(path)
        .header("host", addr.to_string());
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let req = req.body(Empty::<Bytes>::new()).unwrap();
    within("the HTTP response head", sender.send_request(req))
        .await
        .expect("HTTP response")
}

/// `GET path`, read whole.
pub async fn get(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Reply {
    read(request(addr, "GET", path, headers).await).await
}

/// Reads a whole response.
pub async fn read(response: http::Response<Incoming>) -> Reply {
    let (parts, body) = response.into_parts();
    let body = within("the HTTP body", body.collect())
        .await
        .expect("HTTP body")
        .to_bytes();
    Reply {
        status: parts.status.as_u16(),
        headers: parts.headers,
        body: String::from_utf8(body.to_vec()).expect("UTF-8 body"),
    }
}

/// One Server-Sent Event with data.
#[derive(Debug, Clone)]
pub struct SseEvent {
    /// Its own `id` field, if it had one.
    pub id: Option<String>,
    pub data: serde_json::Value,
}

impl SseEvent {
    pub fn kind(&self) -> &str {
        self.data["type"].as_str().unwrap_or("")
    }

    pub fn revision(&self) -> u64 {
        self.data["revision"].as_str().unwrap().parse().unwrap()
    }

    pub fn instance(&self) -> &str {
        self.data["member"]["instance"].as_str().unwrap_or("")
    }

    pub fn state(&self) -> &str {
        self.data["member"]["state"].as_str().unwrap_or("")
    }
}

/// An open `text/event-stream` response.
pub struct Sse {
    body: Incoming,
    buf: String,
}

impl Sse {
    /// `GET path` as an event stream; fails unless it is one.
    pub async fn open(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Self {
        let response = request(addr, "GET", path, headers).await;
        assert_eq!(response.status(), 200, "GET {path}");
        let ct = response.headers()[http::header::CONTENT_TYPE]
            .to_str()
            .unwrap();
        assert_eq!(ct, "text/event-stream");
        Sse {
            body: response.into_body(),
            buf: String::new(),
        }
    }

    /// The next event with data; `None` when the stream ends.
    pub async fn next(&mut self) -> Option<SseEvent> {
        within("the next server-sent event", async {
            loop {
                while let Some(end) = self.buf.find("\n\n") {
                    let block: String = self.buf.drain(..end + 2).collect();
                    let (mut id, mut data) = (None, Vec::new());
                    for line in block.lines() {
                        if let Some(v) = line.strip_prefix("data:") {
                            data.push(v.strip_prefix(' ').unwrap_or(v).to_owned());
                        } else if let Some(v) = line.strip_prefix("id:") {
                            id = Some(v.strip_prefix(' ').unwrap_or(v).to_owned());
                        }
                    }
                    if !data.is_empty() {
                        let data = serde_json::from_str(&data.join("\n"))
                            .unwrap_or_else(|e| panic!("event data is not JSON ({e}): {block}"));
                        return Some(SseEvent { id, data });
                    }
                }
                match self.body.frame().await {
                    None => return None,
                    Some(Err(e)) => panic!("event stream broke: {e}"),
                    Some(Ok(frame)) => {
                        if let Ok(data) = frame.into_data() {
                            self.buf.push_str(std::str::from_utf8(&data).unwrap());
                        }
                    }
                }
            }
        })
        .await
    }

    /// Reads a snapshot: its rows (which carry no id) and the SNAPSHOT_END
    /// (which does); returns the instances and the revision.
    pub async fn snapshot(&mut self) -> (Vec<String>, u64) {
        let mut rows = Vec::new();
        loop {
            let e = self.next().await.expect("a snapshot");
            match e.kind() {
                "EVENT_TYPE_SNAPSHOT" => {
                    assert_eq!(e.id, None, "snapshot rows carry no id");
                    rows.push(e.instance().to_owned());
                }
                "EVENT_TYPE_SNAPSHOT_END" => {
                    assert_eq!(e.id, Some(e.revision().to_string()));
                    return (rows, e.revision());
                }
                other => panic!("{other} inside a snapshot"),
            }
        }
    }
}
