//! Probes `heartbeat serve` exactly as the kubelet's gRPC prober does: a new
//! plaintext connection per probe, one 1 s deadline covering connect and
//! Check, user agent `kube-probe/1.31`, success only on SERVING. Through
//! startup, steady state and a SIGTERM drain: liveness (`""`) is SERVING until
//! shutdown starts, and readiness (`heartbeat.v1.Heartbeat`) reads
//! NOT_SERVING before the process stops accepting connections.

mod common;

use std::time::Duration;

use common::process::Proc;
use common::*;
use heartbeat::pb::health::v1::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};
use tonic::transport::Endpoint;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Probe {
    Success,
    /// Answered, but not SERVING (the kubelet counts it as a failure).
    NotServing,
    /// No connection (refused, or the deadline passed while connecting).
    NoConnection,
    /// Connected, but the RPC failed.
    RpcError(tonic::Code),
}

async fn kubelet_probe(addr: &str, service: &str) -> Probe {
    let attempt = async {
        let channel = Endpoint::from_shared(format!("http://{addr}"))
            .unwrap()
            .user_agent("kube-probe/1.31")
            .unwrap()
            .connect()
            .await
            .map_err(|_| Probe::NoConnection)?;
        let resp = HealthClient::new(channel)
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .map_err(|s| Probe::RpcError(s.code()))?;
        Ok::<_, Probe>(resp.into_inner().status)
    };
    match tokio::time::timeout(Duration::from_secs(1), attempt).await {
        Err(_) => Probe::NoConnection,
        Ok(Err(p)) => p,
        Ok(Ok(s)) if s == ServingStatus::Serving as i32 => Probe::Success,
        Ok(Ok(_)) => Probe::NotServing,
    }
}

#[tokio::test]
async fn startup_steady_state_and_sigterm_drain() {
    // The port is chosen up front so probes can start before the server listens.
    let addr = free_addr();
    let early = kubelet_probe(&addr, "").await;
    assert_eq!(early, Probe::NoConnection, "nothing listens yet");

    let mut p = Proc::spawn(&[
        "serve",
        "--listen",
        &addr,
        "--log-format",
        "json",
        "--drain",
        "1s",
    ]);
    p.logged_addr("listening").await;

    // Steady state: both probes succeed, on fresh connections each time.
    for _ in 0..5 {
        assert_eq!(kubelet_probe(&addr, "").await, Probe::Success);
        assert_eq!(
            kubelet_probe(&addr, "heartbeat.v1.Heartbeat").await,
            Probe::Success
        );
    }

    p.signal("-TERM");
    p.wait_log("shutdown to start", |v| {
        v["message"] == "shutting down: health NOT_SERVING, draining streams"
    })
    .await;
    // Readiness goes NOT_SERVING while connections are still accepted...
    let mut readiness = vec![];
    let mut liveness = vec![];
    let drained = within("the listener to close", async {
        loop {
            let r = kubelet_probe(&addr, "heartbeat.v1.Heartbeat").await;
            let l = kubelet_probe(&addr, "").await;
            let closed = r == Probe::NoConnection;
            readiness.push(r);
            liveness.push(l);
            if closed {
                return;
            }
        }
    });
    drained.await;
    // A compact summary for failure messages: (outcome, how many in a row).
    let runs = |v: &[Probe]| {
        let mut out: Vec<(Probe, usize)> = vec![];
        for p in v {
            match out.last_mut() {
                Some((q, n)) if q == p => *n += 1,
                _ => out.push((p.clone(), 1)),
            }
        }
        out
    };
    assert_eq!(
        readiness.first(),
        Some(&Probe::NotServing),
        "unready before the listener closes: {:?}",
        runs(&readiness)
    );
    // Never SERVING again. A probe caught by the closing of its connection
    // may fail otherwise, which the kubelet counts as a failure too.
    assert!(
        !readiness.contains(&Probe::Success),
        "{:?}",
        runs(&readiness)
    );
    assert_eq!(readiness.last(), Some(&Probe::NoConnection));
    assert!(
        !liveness.contains(&Probe::Success),
        "liveness follows shutdown: {:?}",
        runs(&liveness)
    );
    assert_eq!(p.wait_exit(WAIT).await.code(), Some(0));
}
