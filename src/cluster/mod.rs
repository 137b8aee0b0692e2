//! Cluster mode (SPEC §7): several replicas share one member table in
//! etcd, and a ping never writes to it. The records and their fenced
//! writes are in [`store`], what a replica knows of them in [`records`];
//! the etcd client, lease keeper and mirror they stand on are in
//! [`crate::etcd`]; the server's side (the view, the writer, authority) is
//! in `crate::server::replica`.

pub mod records;
pub mod store;
