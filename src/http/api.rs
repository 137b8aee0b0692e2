//! `/api/v1`: the member table as JSON and the WatchMembers feed as
//! Server-Sent Events (SPEC §9), served by the same ListMembers and
//! WatchMembers code as gRPC ([`crate::server::Reads`]).
//!
//! The event stream is WatchMembers itself, pulled as the client reads: a
//! browser that stops reading costs the watcher's position and one batch,
//! as a gRPC watcher does. Change events and SNAPSHOT_END carry their
//! revision as the SSE `id`, so a reconnecting `EventSource` resumes with
//! `Last-Event-ID` and gets every event after it without a snapshot while
//! the server's history still holds it. SNAPSHOT rows carry no `id`: a
//! stream cut in the middle of a snapshot resumes from before it (a fresh
//! snapshot), never half a table.
//!
//! A refused request gets the HTTP status gRPC-to-HTTP gateways use for its
//! gRPC code and a `google.rpc.Status` body: `{"code": 3, "message": "…"}`,
//! the message naming the parameter that was wrong.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::{Stream, StreamExt};
use serde::Deserialize;
use tokio::sync::Semaphore;
use tonic::{Code, Status as GrpcStatus};

use super::json;
use crate::pb::heartbeat::v1::{EventType, MemberEvent};
use crate::server::Reads;

/// How often an idle event stream sends a comment, so proxies and the
/// page can tell a quiet stream from a dead one.
pub(super) const KEEPALIVE: Duration = Duration::from_secs(15);

/// How long an `EventSource` waits before reconnecting (the SSE `retry`).
const RETRY: Duration = Duration::from_secs(1);

const JSON: &str = "application/json";

/// Whole-table JSON documents built at once. Each holds the table's size
/// in memory while it is built and sent (about 260 bytes a member), so a
/// crowd of readers waits here instead of multiplying it.
const LISTS_AT_ONCE: usize = 4;

/// What the API's handlers share.
#[derive(Debug, Clone)]
pub(super) struct Api {
    pub(super) reads: Reads,
    lists: Arc<Semaphore>,
}

impl Api {
    pub(super) fn new(reads: Reads) -> Self {
        Self {
            reads,
            lists: Arc::new(Semaphore::new(LISTS_AT_ONCE)),
        }
    }
}

/// The query of `/api/v1/members`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct MembersQuery {
    #[serde(default)]
    service: String,
}

/// The query of `/api/v1/events`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct EventsQuery {
    #[serde(default)]
    service: String,
    since: Option<String>,
}

/// `GET /api/v1/members[?service=S]`: ListMembersResponse as proto3 JSON.
pub(super) async fn members(
    State(api): State<Api>,
    query: Result<Query<MembersQuery>, QueryRejection>,
) -> Response {
    let Query(q) = match query {
        Ok(q) => q,
        Err(e) => return bad_query(e),
    };
    // The semaphore is never closed.
    let Ok(_permit) = api.lists.acquire().await else {
        return error(&GrpcStatus::unavailable("server is shutting down"));
    };
    let list = match api.reads.list(&q.service) {
        Ok(list) => list,
        Err(status) => return error(&status),
    };
    // About 12 µs a member: off the runtime's workers, which serve pings.
    let json = tokio::task::spawn_blocking(move || {
        json::to_json(&list, "heartbeat.v1.ListMembersResponse")
    });
    match json.await {
        Ok(Ok(body)) => ([(header::CONTENT_TYPE, JSON)], body).into_response(),
        Ok(Err(e)) => error(&GrpcStatus::internal(e.to_string())),
        Err(e) => error(&GrpcStatus::internal(format!("building the JSON: {e}"))),
    }
}

/// `GET /api/v1/events[?service=S][&since=R]`: WatchMembers as
/// Server-Sent Events; `Last-Event-ID` takes precedence over `since`.
pub(super) async fn events(
    State(api): State<Api>,
    headers: HeaderMap,
    query: Result<Query<EventsQuery>, QueryRejection>,
) -> Response {
    let Query(q) = match query {
        Ok(q) => q,
        Err(e) => return bad_query(e),
    };
    let since = match since(&headers, q.since.as_deref()) {
        Ok(since) => since,
        Err(status) => return error(&status),
    };
    let watch = match api.reads.watch(&q.service, since) {
        Ok(watch) => watch,
        Err(status) => return error(&status),
    };
    let retry = futures_util::stream::once(async { Ok(Event::default().retry(RETRY)) });
    let mut response = Sse::new(retry.chain(sse(watch)))
        .keep_alive(KeepAlive::new().interval(KEEPALIVE))
        .into_response();
    // Tell buffering proxies (nginx) to pass events on as they come.
    response
        .headers_mut()
        .insert("x-accel-buffering", HeaderValue::from_static("no"));
    response
}

/// The revision to resume after: `Last-Event-ID`, else `since`, else 0.
fn since(headers: &HeaderMap, query: Option<&str>) -> Result<u64, GrpcStatus> {
    let revision = |what: &str, text: &str| {
        let text = text.trim();
        if text.is_empty() {
            return Ok(0);
        }
        text.parse::<u64>().map_err(|_| {
            GrpcStatus::invalid_argument(format!(
                "{what}: {text:?} is not a revision (a whole number)"
            ))
        })
    };
    if let Some(id) = headers.get("last-event-id") {
        let text = id
            .to_str()
            .map_err(|_| GrpcStatus::invalid_argument("Last-Event-ID: not text"))?;
        return revision("Last-Event-ID", text);
    }
    query.map_or(Ok(0), |q| revision("since", q))
}

/// The watch as SSE events; an error ends the stream after a comment that
/// says why (the HTTP status was sent long ago).
fn sse(
    watch: crate::server::WatchMembersStream,
) -> impl Stream<Item = Result<Event, Infallible>> + Send {
    watch.scan(false, |ended, item| {
        let out = if *ended {
            None
        } else {
            match item.and_then(|e| event(&e)) {
                Ok(event) => Some(Ok(event)),
                Err(status) => {
                    *ended = true;
                    let code = status.code();
                    let comment = format!("{code:?}: {}", status.message().replace('\n', " "));
                    Some(Ok(Event::default().comment(comment)))
                }
            }
        };
        std::future::ready(out)
    })
}

fn event(e: &MemberEvent) -> Result<Event, GrpcStatus> {
    let data = json::to_json(e, "heartbeat.v1.MemberEvent")
        .map_err(|e| GrpcStatus::internal(e.to_string()))?;
    // The JSON of a message is one line of UTF-8 (serde_json escapes
    // control characters), as an SSE `data` line needs.
    let data = String::from_utf8(data).map_err(|e| GrpcStatus::internal(e.to_string()))?;
    let event = Event::default().data(data);
    Ok(if e.r#type == EventType::Snapshot as i32 {
        event
    } else {
        event.id(e.revision.to_string())
    })
}

fn bad_query(e: QueryRejection) -> Response {
    error(&GrpcStatus::invalid_argument(format!(
        "query: {}",
        e.body_text()
    )))
}

/// The HTTP status a gRPC-to-HTTP gateway answers for `code`.
pub(super) fn http_status(code: Code) -> StatusCode {
    match code {
        Code::Ok => StatusCode::OK,
        Code::InvalidArgument | Code::FailedPrecondition | Code::OutOfRange => {
            StatusCode::BAD_REQUEST
        }
        Code::Unauthenticated => StatusCode::UNAUTHORIZED,
        Code::PermissionDenied => StatusCode::FORBIDDEN,
        Code::NotFound => StatusCode::NOT_FOUND,
        Code::AlreadyExists | Code::Aborted => StatusCode::CONFLICT,
        Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
        Code::Cancelled => StatusCode::from_u16(499).unwrap_or(StatusCode::BAD_REQUEST),
        Code::Unimplemented => StatusCode::NOT_IMPLEMENTED,
        Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        Code::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
        Code::Unknown | Code::Internal | Code::DataLoss => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// `status` as an HTTP response: the gateway status code and the
/// `google.rpc.Status` JSON body.
pub(super) fn error(status: &GrpcStatus) -> Response {
    let body = serde_json::json!({
        "code": status.code() as i32,
        "message": status.message(),
    });
    let mut response = (
        http_status(status.code()),
        [(header::CONTENT_TYPE, JSON)],
        body.to_string(),
    )
        .into_response();
    if status.code() == Code::Unauthenticated {
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"heartbeat\""),
        );
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_id(id: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("last-event-id", id.parse().unwrap());
        h
    }

    #[test]
    fn since_reads_last_event_id_first_then_the_query() {
        let none = HeaderMap::new();
        assert_eq!(since(&none, None).unwrap(), 0);
        assert_eq!(since(&none, Some("42")).unwrap(), 42);
        assert_eq!(since(&with_id("7"), Some("42")).unwrap(), 7);
        assert_eq!(since(&with_id(""), Some("42")).unwrap(), 0);
        let e = since(&none, Some("x1")).unwrap_err();
        assert!(e.message().starts_with("since:"), "{e:?}");
        let e = since(&with_id("-1"), None).unwrap_err();
        assert!(e.message().starts_with("Last-Event-ID:"), "{e:?}");
        assert_eq!(e.code(), Code::InvalidArgument);
    }

    #[test]
    fn every_code_has_a_gateway_status() {
        assert_eq!(
            http_status(Code::ResourceExhausted),
            StatusCode::TOO_MANY_REQUESTS
        );
        assert_eq!(http_status(Code::Unauthenticated), StatusCode::UNAUTHORIZED);
        assert_eq!(
            http_status(Code::Unavailable),
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(http_status(Code::Cancelled).as_u16(), 499);
    }
}
