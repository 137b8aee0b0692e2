//! Beat rules 1 and 2: Join first and in time, Welcome with the agreed
//! values; validation of every Join field.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::*;
use heartbeat::config::ServerConfig;
use heartbeat::pb::heartbeat::v1::{BeatRequest, Join};
use tonic::Code;

#[tokio::test]
async fn welcome_carries_defaults_and_increasing_sessions() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let (_a, w1) = Beat::join(&mut client, "web", "a").await;
    assert_eq!(w1.interval, Some(millis(1_000)));
    assert_eq!(w1.timeout, Some(millis(3_000)));
    assert!(!w1.server_id.is_empty());
    let (_b, w2) = Beat::join(&mut client, "web", "b").await;
    assert!(w2.session > w1.session);
    assert_eq!(w2.server_id, w1.server_id);
    server.stop().await;
}

#[tokio::test]
async fn requested_values_are_clamped() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    // (asked interval, asked timeout) -> (agreed interval, agreed timeout), in ms
    let cases = [
        (Some(500), Some(2_000), 500, 2_000),
        (Some(10), None, 100, 2_000),
        (Some(120_000), None, 60_000, 120_000),
        (Some(1_000), Some(500), 1_000, 2_000),
        (Some(1_000), Some(100_000), 1_000, 20_000),
        (Some(0), Some(0), 1_000, 3_000),
    ];
    for (n, (i, t, wi, wt)) in cases.into_iter().enumerate() {
        let (_beat, w) = Beat::join_with(
            &mut client,
            Join {
                service: "web".into(),
                instance: format!("i{n}"),
                interval: i.map(millis),
                timeout: t.map(millis),
                labels: HashMap::new(),
                ..Default::default()
            },
        )
        .await;
        assert_eq!(
            (w.interval, w.timeout),
            (Some(millis(wi)), Some(millis(wt))),
            "case {n}"
        );
    }
    server.stop().await;
}

#[tokio::test]
async fn first_message_must_be_join() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    for (req, word) in [
        (ping_req(1), "ping"),
        (leave_req(), "leave"),
        (BeatRequest { kind: None }, "kind is not set"),
    ] {
        let mut beat = Beat::open(&mut client).await;
        beat.send(req).await;
        let msg = beat.expect_error(Code::InvalidArgument).await;
        assert!(msg.contains(word), "{msg:?} names {word:?}");
    }
    assert!(members(&mut client).await.is_empty());
    server.stop().await;
}

#[tokio::test]
async fn silence_before_join_ends_with_deadline_exceeded() {
    let server = TestServer::with(ServerConfig {
        join_timeout: Duration::from_millis(200),
        ..quick_drain()
    })
    .await;
    let mut client = server.client().await;
    let mut silent = Beat::open(&mut client).await;
    let msg = silent.expect_error(Code::DeadlineExceeded).await;
    assert!(msg.contains("join"), "{msg}");
    // The server is fine afterwards.
    let (mut ok, _) = Beat::join(&mut client, "web", "a").await;
    ok.ping(1).await;
    server.stop().await;
}

#[tokio::test]
async fn second_join_on_a_stream_is_refused() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let (mut beat, _) = Beat::join(&mut client, "web", "a").await;
    beat.send(join_req("web", "b")).await;
    let msg = beat.expect_error(Code::InvalidArgument).await;
    assert!(msg.contains("join"), "{msg}");
    server.stop().await;
}

fn join(service: &str, instance: &str, labels: &[(&str, &str)]) -> Join {
    Join {
        service: service.into(),
        instance: instance.into(),
        labels: labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ..Default::default()
    }
}

#[tokio::test]
async fn invalid_joins_name_the_field_and_change_nothing() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let (mut bystander, _) = Beat::join(&mut client, "web", "ok").await;
    let long = "a".repeat(129);
    let long_value = "v".repeat(257);
    let many: Vec<(String, String)> = (0..33).map(|i| (format!("k{i}"), String::new())).collect();
    let many: Vec<(&str, &str)> = many.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let cases: Vec<(Join, &str)> = vec![
        (join("", "a", &[]), "join.service"),
        (join(&long, "a", &[]), "join.service"),
        (join("a/b", "a", &[]), "join.service"),
        (join("grpc.health.v1.Health", "a", &[]), "join.service"),
        (join("heartbeat.v1.Heartbeat", "a", &[]), "join.service"),
        (join("web", "", &[]), "join.instance"),
        (join("web", &long, &[]), "join.instance"),
        (join("web", "a b", &[]), "join.instance"),
        (join("web", "a", &many), "join.labels"),
        (join("web", "a", &[("bad key", "")]), "join.labels"),
        (join("web", "a", &[("", "")]), "join.labels"),
        (join("web", "a", &[("k", &long_value)]), "join.labels"),
        (
            Join {
                status: 7,
                ..join("web", "a", &[])
            },
            "join.status",
        ),
        (
            Join {
                endpoint: "::1:80".into(),
                ..join("web", "a", &[])
            },
            "join.endpoint",
        ),
        (
            Join {
                interval: Some(prost_types::Duration {
                    seconds: -1,
                    nanos: 0,
                }),
                ..join("web", "a", &[])
            },
            "join.interval",
        ),
        (
            Join {
                timeout: Some(prost_types::Duration {
                    seconds: 0,
                    nanos: 2_000_000_000,
                }),
                ..join("web", "a", &[])
            },
            "join.timeout",
        ),
    ];
    for (j, field) in cases {
        let mut beat = Beat::open(&mut client).await;
        beat.send(join_with(j.clone())).await;
        let msg = beat.expect_error(Code::InvalidArgument).await;
        assert!(msg.contains(field), "{j:?}: {msg:?} names {field}");
    }
    let listed = members(&mut client).await;
    assert_eq!(listed.len(), 1, "only the valid member exists: {listed:?}");
    bystander.ping(1).await;
    server.stop().await;
}

#[tokio::test]
async fn join_status_holds_from_the_first_moment() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let mut health = server.health().await;
    let mut watch = health
        .watch(heartbeat::pb::health::v1::HealthCheckRequest {
            service: "web".into(),
        })
        .await
        .unwrap()
        .into_inner();
    let mut next = async || {
        within("a health message", watch.message())
            .await
            .unwrap()
            .unwrap()
            .status
    };
    assert_eq!(next().await, 3, "SERVICE_UNKNOWN");
    let (mut beat, _) = Beat::join_with(
        &mut client,
        Join {
            status: heartbeat::pb::heartbeat::v1::MemberStatus::NotServing as i32,
            ..join("web", "a", &[])
        },
    )
    .await;
    assert_eq!(next().await, 2, "NOT_SERVING from the Join on");
    let listed = common::members(&mut client).await;
    assert_eq!(listed[0].status, 2, "listed NOT_SERVING");
    beat.send(ping_status(1, 1)).await;
    beat.pong().await;
    assert_eq!(next().await, 1, "SERVING once a ping says so");
    server.stop().await;
}
