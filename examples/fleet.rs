//! A fleet of members in one process, through the client library: used to
//! size a server (see README "Sizing") and as an example of the library at
//! scale. Each member has its own connection, as separate processes would.
//!
//! ```sh
//! cargo run --release --example fleet -- 127.0.0.1:50051 2000 60
//! ```
//! (server, members, seconds). Prints when all are ONLINE, then leaves.

use std::time::Duration;

use heartbeat::client::{Client, ClientConfig, ClientState};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let server = args
        .get(1)
        .cloned()
        .unwrap_or_else(|| "127.0.0.1:50051".into());
    let n: usize = args.get(2).map_or(Ok(100), |s| s.parse())?;
    let secs: u64 = args.get(3).map_or(Ok(30), |s| s.parse())?;
    let start = tokio::time::Instant::now();
    let mut clients = Vec::with_capacity(n);
    for i in 0..n {
        let cfg = ClientConfig::new([server.clone()], "fleet", format!("m-{i:06}"));
        clients.push(Client::spawn(cfg)?);
    }
    for c in &clients {
        c.subscribe()
            .wait_for(|s| s.state == ClientState::Online)
            .await?;
    }
    println!("{n} members online after {:?}", start.elapsed());
    tokio::time::sleep(Duration::from_secs(secs)).await;
    let offline = clients
        .iter()
        .filter(|c| c.status().state != ClientState::Online)
        .count();
    println!("after {secs}s: {offline} members not ONLINE");
    for c in clients {
        let _ = c.leave().await;
    }
    Ok(())
}
