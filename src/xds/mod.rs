//! Discovery (SPEC §8): the server is an xDS control plane on its gRPC
//! port, so a standard gRPC client whose bootstrap names it dials
//! `xds:///<service>` and is balanced round robin over the endpoints of
//! that service's live, SERVING members, with no heartbeat code in the
//! caller. Routing then follows liveness (a DEAD member gets no new calls
//! while its process still accepts connections), not connection errors.
//!
//! - [`hub`]: the routable endpoints per service, changed with the table.
//! - [`resources`]: Listener, Cluster and ClusterLoadAssignment as clients
//!   accept them.
//! - [`session`]: one ADS stream's protocol state (versions, nonces,
//!   ACK/NACK, subscriptions); pure.
//! - [`service`]: the tonic service and the per-stream task.
//! - [`bootstrap`]: the bootstrap file clients read (`heartbeat
//!   xds-bootstrap`).

pub mod bootstrap;
pub mod hub;
pub mod resources;
pub mod service;
pub mod session;

pub use hub::Hub;
pub use resources::Kind;
pub use service::Ads;
