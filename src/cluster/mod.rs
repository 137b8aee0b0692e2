//! Cluster mode (SPEC §7), being built: several replicas share one member
//! table in etcd, and a ping never writes to it. Done so far: the records
//! and their fenced writes ([`store`]); the etcd client, lease keeper and
//! mirror they stand on are in [`crate::etcd`]. Not yet wired into `serve`.

pub mod store;
