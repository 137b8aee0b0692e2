//! Reflection v1 and v1alpha (grpcurl 1.8.6 speaks only v1alpha): every
//! service listed once, every descriptor resolvable.

mod common;

use common::*;
use prost::Message;
use tokio_stream::StreamExt;

macro_rules! reflect {
    ($v:ident, $server:expr, $req:expr) => {{
        use tonic_reflection::pb::$v::{
            ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
            server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
        };
        let mut client = ServerReflectionClient::new($server.channel().await);
        let req: MessageRequest = $req(
            |s: String| MessageRequest::FileContainingSymbol(s),
            MessageRequest::ListServices(String::new()),
        );
        let request = ServerReflectionRequest {
            host: String::new(),
            message_request: Some(req),
        };
        let mut stream = within(
            "reflection",
            client.server_reflection_info(tokio_stream::iter([request])),
        )
        .await
        .expect("reflection call")
        .into_inner();
        let resp = within("reflection response", stream.next())
            .await
            .expect("a response")
            .expect("ok");
        match resp.message_response.expect("a message response") {
            MessageResponse::ListServicesResponse(l) => {
                Ok(l.service.into_iter().map(|s| s.name).collect::<Vec<_>>())
            }
            MessageResponse::FileDescriptorResponse(f) => Err(f.file_descriptor_proto),
            other => panic!("unexpected {other:?}"),
        }
    }};
}

const SERVICES: [&str; 4] = [
    "grpc.health.v1.Health",
    "grpc.reflection.v1.ServerReflection",
    "grpc.reflection.v1alpha.ServerReflection",
    "heartbeat.v1.Heartbeat",
];

#[tokio::test]
async fn both_versions_list_every_service_once() {
    let server = TestServer::start().await;
    let mut v1 = reflect!(v1, server, |_, list| list).unwrap();
    let mut v1alpha = reflect!(v1alpha, server, |_, list| list).unwrap();
    v1.sort();
    v1alpha.sort();
    assert_eq!(v1, SERVICES);
    assert_eq!(v1alpha, SERVICES);
    server.stop().await;
}

#[tokio::test]
async fn descriptors_resolve_with_docs_and_the_health_list_method() {
    let server = TestServer::start().await;
    let files = reflect!(v1alpha, server, |sym: fn(String) -> _, _| sym(
        "heartbeat.v1.Heartbeat".into()
    ))
    .unwrap_err();
    let files: Vec<prost_types::FileDescriptorProto> = files
        .iter()
        .map(|b| prost_types::FileDescriptorProto::decode(&b[..]).unwrap())
        .collect();
    let main = files
        .iter()
        .find(|f| f.package() == "heartbeat.v1")
        .expect("heartbeat file");
    let names: Vec<&str> = main.message_type.iter().map(|m| m.name()).collect();
    for want in [
        "BeatRequest",
        "Join",
        "Ping",
        "Leave",
        "BeatResponse",
        "Welcome",
        "Pong",
        "Drain",
        "Member",
        "MemberEvent",
    ] {
        assert!(names.contains(&want), "{want} in {names:?}");
    }
    assert!(main.source_code_info.is_some(), "doc comments are served");
    let health = reflect!(v1, server, |sym: fn(String) -> _, _| sym(
        "grpc.health.v1.Health".into()
    ))
    .unwrap_err();
    let health = prost_types::FileDescriptorProto::decode(&health[0][..]).unwrap();
    let methods: Vec<&str> = health.service[0].method.iter().map(|m| m.name()).collect();
    assert_eq!(methods, ["Check", "List", "Watch"]);
    server.stop().await;
}
