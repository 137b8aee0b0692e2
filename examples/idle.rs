//! Holds N idle HTTP/2 connections to a server (handshake done, every PING
//! answered, no stream ever opened) and prints what the server pays for
//! them: RSS per idle connection, from /proc. This is the cost that
//! `--idle-timeout` and the eviction of the longest-idle connection at
//! `--max-connections` bound (SPEC §6).
//!
//! ```sh
//! cargo run --release --example idle -- 127.0.0.1:50051 10000 SERVER_PID
//! ```

use std::time::Duration;

fn rss(pid: u32) -> Option<u64> {
    heartbeat::procfs::ProcStats::read(pid).map(|p| p.rss)
}

/// RSS once three readings 200 ms apart agree within 256 KiB.
async fn settled(pid: u32) -> u64 {
    let mut last = rss(pid).unwrap_or(0);
    let mut steady = 0;
    while steady < 3 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let now = rss(pid).unwrap_or(0);
        steady = if now.abs_diff(last) < 256 * 1024 {
            steady + 1
        } else {
            0
        };
        last = now;
    }
    last
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let usage = "usage: idle ADDR N SERVER_PID";
    let addr: std::net::SocketAddr = args.next().ok_or(usage)?.parse()?;
    let n: usize = args.next().ok_or(usage)?.parse()?;
    let pid: u32 = args.next().ok_or(usage)?.parse()?;
    rlimit::increase_nofile_limit(u64::MAX)?;
    let before = settled(pid).await;
    let mut held = Vec::with_capacity(n);
    for _ in 0..n {
        let tcp = tokio::net::TcpStream::connect(addr).await?;
        let (send, mut conn) = h2::client::handshake(tcp).await?;
        let mut ping = conn.ping_pong().ok_or("ping_pong taken")?;
        let driver = tokio::spawn(conn);
        ping.ping(h2::Ping::opaque()).await?;
        held.push((send, driver));
    }
    let after = settled(pid).await;
    let open = held.iter().filter(|(_, d)| !d.is_finished()).count();
    let per = after.saturating_sub(before) as f64 / n as f64 / 1024.0;
    println!(
        "{{\"connections\":{n},\"still_open\":{open},\"rss_before_bytes\":{before},\"rss_after_bytes\":{after},\"rss_per_idle_connection_kib\":{per:.2}}}"
    );
    Ok(())
}
