//! heartbeat: a gRPC liveness service.
//!
//! Members hold one bidirectional `Beat` stream and ping every interval; the
//! server answers each ping and declares a silent member DEAD when its
//! deadline passes. Everything the server knows is published through the
//! standard `grpc.health.v1.Health` service and through `WatchMembers`.
//!
//! # Layout
//!
//! - [`pb`]: generated protobuf/gRPC code and the reflection descriptor set.
//! - [`liveness`]: the core: members, states, deadlines; pure, `now` passed in.
//! - [`health`]: `grpc.health.v1` over a status map: Check, Watch, List.
//! - [`server`]: Beat / ListMembers / WatchMembers over the core, the timer
//!   driver, and shutdown.
//! - [`cluster`]: cluster mode on etcd: the records and their fenced writes.
//! - [`xds`]: discovery (SPEC §8): the server as an xDS control plane, so
//!   standard gRPC clients on `xds:///<service>` reach live members only.
//! - [`etcd`]: a thin client of etcd's v3 API for cluster mode: calls with
//!   a deadline and endpoint rotation, and a lease keeper.
//! - [`http`]: the HTTP port (SPEC §9): the live status page, `/api/v1`
//!   (the member table as proto3 JSON, its events as Server-Sent Events)
//!   and `/metrics`.
//! - [`edge`]: every listening port's connections: handshake deadline, one
//!   connection limit with eviction of the longest-idle, idle timeout,
//!   `grpc-timeout` on streams, HTTP 415, bounded shutdown.
//! - [`client`]: the Rust client library: join, ping, server-liveness
//!   deadline, reconnect with backoff.
//! - [`agent`]: `heartbeat beat`, a member for any process (sidecar), with
//!   local checks and its own health endpoint.
//! - [`probe`]: one `grpc_health_probe`-style health check.
//! - [`authz`]: identities (mTLS SANs, bearer tokens) and who may join what.
//! - [`bench`]: the `heartbeat bench` load generator.
//! - [`validate`]: checks of every network input against SPEC §2.
//! - [`metrics`]: Prometheus metrics of server and agent, and `/metrics`.
//! - [`procfs`]: CPU, memory and descriptors of a process, from `/proc`.
//! - [`codec`]: the protobuf codec, with small per-stream buffers.
//! - [`config`]: server configuration as plain data with `validate()`.
//!
//! # Features
//!
//! `cli` (the default) builds everything. A service that is only a member
//! uses `default-features = false, features = ["client"]`: the wire types,
//! the liveness core's timing rules, [`client`] and [`probe`], and none of
//! the server. `server`, `agent` and `bench` are the other parts.

#[cfg(feature = "agent")]
pub mod agent;
#[cfg(feature = "server")]
pub mod authz;
#[cfg(feature = "bench")]
pub mod bench;
#[cfg(feature = "client")]
pub mod client;
#[cfg(feature = "server")]
pub mod cluster;
pub mod codec;
#[cfg(feature = "server")]
pub mod config;
#[cfg(feature = "server")]
pub mod edge;
#[cfg(feature = "server")]
pub mod etcd;
#[cfg(feature = "server")]
pub mod health;
#[cfg(feature = "server")]
pub mod http;
pub mod liveness;
#[cfg(feature = "server")]
pub mod metrics;
pub mod pb;
#[cfg(feature = "client")]
pub mod probe;
#[cfg(any(feature = "server", feature = "bench"))]
pub mod procfs;
#[cfg(feature = "server")]
pub mod server;
pub mod validate;
#[cfg(feature = "server")]
pub mod xds;

/// The README's Rust examples, compiled as doctests so they cannot rot.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
