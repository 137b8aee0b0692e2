//! The HTTP port of SPEC §9 over real TCP: `/api/v1/members` is the proto3
//! JSON of the ListMembers a gRPC client gets, `/api/v1/events` is the
//! WatchMembers feed as Server-Sent Events that resumes from
//! `Last-Event-ID` or `?since=` without a snapshot, every bad request is a
//! 4xx naming what was wrong, reads follow the authorisation file, the
//! page and `/metrics` are served, and event streams end at shutdown and
//! count against `--max-watches`.

mod common;

use common::http_client::{Sse, get, read, request};
use common::*;
use heartbeat::config::ServerConfig;
use heartbeat::pb::heartbeat::v1::{Join, ListMembersRequest};

fn labelled(service: &str, instance: &str) -> Join {
    Join {
        service: service.into(),
        instance: instance.into(),
        labels: [("zone".to_owned(), "a".to_owned())].into(),
        endpoint: "10.0.0.7:8080".into(),
        ..Default::default()
    }
}

#[tokio::test]
async fn the_member_table_is_the_proto3_json_of_list_members() {
    let (server, http) = TestServer::with_http(quick_drain()).await;
    let mut client = server.client().await;
    let (mut web, _) = Beat::join_with(&mut client, labelled("web", "web-1")).await;
    web.ping(1).await;
    let (mut db, _) = Beat::join(&mut client, "db", "db-1").await;
    db.ping(1).await;

    let reply = get(http, "/api/v1/members", &[]).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("content-type"), "application/json");
    let json = reply.json();
    let grpc = client
        .list_members(ListMembersRequest::default())
        .await
        .unwrap()
        .into_inner();
    // 64-bit integers are strings; names are lowerCamelCase; enums by name.
    assert_eq!(json["revision"], grpc.revision.to_string());
    let members = json["members"].as_array().unwrap();
    assert_eq!(members.len(), 2);
    let web_json = members.iter().find(|m| m["service"] == "web").unwrap();
    let web_grpc = grpc.members.iter().find(|m| m.service == "web").unwrap();
    assert_eq!(web_json["instance"], "web-1");
    assert_eq!(web_json["state"], "MEMBER_STATE_ALIVE");
    assert_eq!(web_json["status"], "MEMBER_STATUS_SERVING");
    assert_eq!(web_json["labels"], serde_json::json!({"zone": "a"}));
    assert_eq!(web_json["endpoint"], "10.0.0.7:8080");
    assert_eq!(web_json["session"], web_grpc.session.to_string());
    assert_eq!(web_json["interval"], "1s");
    assert_eq!(web_json["timeout"], "3s");
    assert!(web_json["joinedAt"].as_str().unwrap().ends_with('Z'));
    assert!(web_json["lastSeen"].is_string());
    // The empty replica (embedded mode) is left out, as proto3 JSON does.
    assert!(web_json.get("replica").is_none());

    let only_db = get(http, "/api/v1/members?service=db", &[]).await.json();
    let only_db = only_db["members"].as_array().unwrap();
    assert_eq!(only_db.len(), 1);
    assert_eq!(only_db[0]["instance"], "db-1");
    server.stop().await;
}

#[tokio::test]
async fn bad_requests_get_a_4xx_that_names_the_parameter() {
    let (server, http) = TestServer::with_http(quick_drain()).await;
    for (path, code, names) in [
        ("/api/v1/members?service=no%20spaces", 400, "service"),
        ("/api/v1/members?servce=web", 400, "servce"),
        ("/api/v1/events?since=yesterday", 400, "since"),
        ("/api/v1/events?since=-1", 400, "since"),
        ("/api/v1/events?service=%2A", 400, "service"),
        ("/api/v1/nothing", 404, "/api/v1/nothing"),
    ] {
        let reply = get(http, path, &[]).await;
        assert_eq!(reply.status, code, "{path}: {}", reply.body);
        let body = reply.json();
        assert_eq!(body["code"], if code == 400 { 3 } else { 5 }, "{path}");
        let message = body["message"].as_str().unwrap();
        assert!(message.contains(names), "{path}: {message}");
    }
    let reply = get(http, "/api/v1/events", &[("last-event-id", "abc")]).await;
    assert_eq!(reply.status, 400);
    assert!(reply.body.contains("Last-Event-ID"), "{}", reply.body);
    let reply = read(request(http, "POST", "/api/v1/members", &[]).await).await;
    assert_eq!(reply.status, 405);
    // The server is unharmed: the API still answers.
    assert_eq!(get(http, "/api/v1/members", &[]).await.status, 200);
    server.stop().await;
}

#[tokio::test]
async fn events_resume_from_last_event_id_or_since_without_a_snapshot() {
    let (server, http) = TestServer::with_http(quick_drain()).await;
    let mut client = server.client().await;
    let (mut a, _) = Beat::join(&mut client, "web", "a").await;
    a.ping(1).await;

    let mut sse = Sse::open(http, "/api/v1/events", &[]).await;
    let (rows, _) = sse.snapshot().await;
    assert_eq!(rows, ["a"]);
    let (mut b, _) = Beat::join(&mut client, "web", "b").await;
    b.ping(1).await;
    let joined = sse.next().await.unwrap();
    assert_eq!(
        (joined.kind(), joined.instance()),
        ("EVENT_TYPE_JOINED", "b")
    );
    assert_eq!(joined.id, Some(joined.revision().to_string()));
    let last = joined.id.clone().unwrap();
    drop(sse);

    // Changes while nobody watches.
    b.send(leave_req()).await;
    b.expect_ok_end().await;
    let (mut c, _) = Beat::join(&mut client, "db", "c").await;
    c.ping(1).await;

    for (path, headers) in [
        (
            "/api/v1/events".to_owned(),
            vec![("last-event-id", last.as_str())],
        ),
        (format!("/api/v1/events?since={last}"), vec![]),
    ] {
        let mut sse = Sse::open(http, &path, &headers).await;
        let left = sse.next().await.unwrap();
        assert_eq!(
            (left.kind(), left.instance()),
            ("EVENT_TYPE_LEFT", "b"),
            "{path}: resumes with the first change after {last}, no snapshot"
        );
        assert!(left.revision() > last.parse().unwrap());
        let next = sse.next().await.unwrap();
        assert_eq!((next.kind(), next.instance()), ("EVENT_TYPE_JOINED", "c"));
    }
    // Filtered by service, resumed: only db's change.
    let path = format!("/api/v1/events?service=db&since={last}");
    let mut sse = Sse::open(http, &path, &[]).await;
    let first = sse.next().await.unwrap();
    assert_eq!((first.kind(), first.instance()), ("EVENT_TYPE_JOINED", "c"));
    // A revision from before this server's history: a snapshot.
    let mut sse = Sse::open(http, "/api/v1/events?since=1", &[]).await;
    let (mut rows, _) = sse.snapshot().await;
    rows.sort();
    assert_eq!(rows, ["a", "b", "c"]);
    server.stop().await;
}

#[tokio::test]
async fn an_event_stream_ends_when_the_server_shuts_down() {
    let (mut server, http) = TestServer::with_http(quick_drain()).await;
    let mut sse = Sse::open(http, "/api/v1/events", &[]).await;
    sse.snapshot().await;
    server.begin_shutdown();
    assert!(
        sse.next().await.is_none(),
        "the stream ends, so clients reconnect"
    );
    server.stop().await;
}

#[tokio::test]
async fn event_streams_count_against_max_watches() {
    let cfg = ServerConfig {
        max_watches: 2,
        ..quick_drain()
    };
    let (server, http) = TestServer::with_http(cfg).await;
    let mut open = Vec::new();
    for _ in 0..2 {
        let mut sse = Sse::open(http, "/api/v1/events", &[]).await;
        sse.snapshot().await;
        open.push(sse);
    }
    let reply = get(http, "/api/v1/events", &[]).await;
    assert_eq!(reply.status, 429, "{}", reply.body);
    assert_eq!(reply.json()["code"], 8);
    assert!(reply.body.contains("--max-watches"), "{}", reply.body);
    // The table itself is still readable.
    assert_eq!(get(http, "/api/v1/members", &[]).await.status, 200);
    server.stop().await;
}

#[tokio::test]
async fn reads_need_a_bearer_token_when_the_authorisation_file_says_so() {
    let token = "s3cret-reader";
    let file = format!(
        r#"{{"read":"authenticated","rules":[{{"token_sha256":"{}","services":["*"]}}]}}"#,
        heartbeat::authz::sha256_hex(token)
    );
    let cfg = ServerConfig {
        authz: Some(heartbeat::authz::Authz::parse(file.as_bytes()).unwrap()),
        ..quick_drain()
    };
    let (server, http) = TestServer::with_http(cfg).await;
    let good = format!("Bearer {token}");
    for path in ["/", "/api/v1/members", "/api/v1/events"] {
        for headers in [vec![], vec![("authorization", "Bearer wrong")]] {
            let reply = get(http, path, &headers).await;
            assert_eq!(reply.status, 401, "{path} {headers:?}");
            assert!(reply.header("www-authenticate").starts_with("Bearer"));
            if path == "/" {
                // The page itself (no data), which asks for a token.
                assert!(reply.body.contains("Bearer token"), "{}", reply.body);
            } else {
                assert_eq!(reply.json()["code"], 16, "{path}");
            }
        }
    }
    let reply = get(http, "/api/v1/members", &[("authorization", &good)]).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert!(reply.json()["revision"].is_string());
    let mut sse = Sse::open(http, "/api/v1/events", &[("authorization", &good)]).await;
    sse.snapshot().await;
    assert_eq!(
        get(http, "/", &[("authorization", &good)]).await.status,
        200
    );
    // Metrics and the page's static files stay open.
    assert_eq!(get(http, "/metrics", &[]).await.status, 200);
    assert_eq!(get(http, "/assets/app.js", &[]).await.status, 200);
    server.stop().await;
}

#[tokio::test]
async fn the_page_and_metrics_are_served_from_the_binary() {
    let (server, http) = TestServer::with_http(quick_drain()).await;
    let page = get(http, "/", &[]).await;
    assert_eq!(page.status, 200);
    assert_eq!(page.header("content-type"), "text/html; charset=utf-8");
    // Nothing from anywhere but this origin.
    let csp = page.header("content-security-policy");
    assert!(csp.contains("default-src 'none'") && csp.contains("script-src 'self'"));
    assert!(!page.body.contains("http://") && !page.body.contains("https://"));
    for (asset, kind) in [
        ("/assets/app.js", "text/javascript"),
        ("/assets/wire.js", "text/javascript"),
        ("/assets/filters.js", "text/javascript"),
        ("/assets/view.js", "text/javascript"),
        ("/assets/style.css", "text/css"),
    ] {
        let reply = get(http, asset, &[]).await;
        assert_eq!(reply.status, 200, "{asset}");
        assert!(reply.header("content-type").starts_with(kind), "{asset}");
        assert!(
            !reply.body.contains("://"),
            "{asset} refers to nothing outside"
        );
    }
    assert_eq!(get(http, "/assets/nope.js", &[]).await.status, 404);
    let metrics = get(http, "/metrics", &[]).await;
    assert_eq!(metrics.status, 200);
    assert!(metrics.body.ends_with("# EOF\n"));
    assert_eq!(get(http, "/nothing", &[]).await.status, 404);
    server.stop().await;
}
