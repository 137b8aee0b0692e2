//! The Health/Check baseline for BENCHMARKS.md: tonic-health's reporter with
//! the same number of names a heartbeat server with N members has, served
//! plainly, so h2load can compare Check throughput side by side.
//!
//! ```sh
//! cargo run --release --example health_baseline -- 127.0.0.1:50071 10000
//! ```

use tonic_health::ServingStatus;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:50071".into());
    let members: usize = args.next().map_or(Ok(10_000), |s| s.parse())?;
    let (reporter, service) = tonic_health::server::health_reporter();
    reporter
        .set_service_status("bench", ServingStatus::Serving)
        .await;
    for i in 0..members {
        reporter
            .set_service_status(format!("bench/bench-{i:06}"), ServingStatus::Serving)
            .await;
    }
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    eprintln!("listening {}", listener.local_addr()?);
    tonic::transport::Server::builder()
        .add_service(service)
        .serve_with_incoming(
            tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true)),
        )
        .await?;
    Ok(())
}
