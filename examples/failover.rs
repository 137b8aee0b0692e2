//! The failover benchmark of cluster mode (SPEC §7.5): N members, through
//! the client library, all held by the first replica; then that replica is
//! killed (`kill -9` of `--kill-pid`) and the members move to the others.
//! Reports what a user would check: false DEAD (DEAD events of members that
//! kept running, from a WatchMembers stream on a surviving replica), how long
//! until every member is ALIVE on a survivor, and etcd's write rate during
//! the burst (etcd revisions sampled every 100 ms, peak over 1 s windows).
//!
//! ```sh
//! cargo run --release --example failover -- \
//!   --servers A,B,C --members 10000 --kill-pid PID_OF_A --etcd 127.0.0.1:2379
//! ```
//! Half the members try B after A, half C. One JSON line on stdout.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use heartbeat::client::{Client, ClientConfig, ClientState};
use heartbeat::etcd::Etcd;
use heartbeat::etcd::pb::etcdserverpb::RangeRequest;
use heartbeat::pb::heartbeat::v1::{
    EventType, ListMembersRequest, MemberState, WatchMembersRequest,
    heartbeat_client::HeartbeatClient,
};
use tokio::time::Instant;

struct Args {
    servers: Vec<String>,
    members: usize,
    kill_pid: u32,
    etcd: String,
    interval: Duration,
    timeout: Duration,
}

fn args() -> Result<Args, String> {
    let mut a = Args {
        servers: Vec::new(),
        members: 10_000,
        kill_pid: 0,
        etcd: "127.0.0.1:2379".into(),
        interval: Duration::from_secs(1),
        timeout: Duration::from_secs(3),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().ok_or(format!("{flag} needs a value"))?;
        let ms = |v: &str| humantime::parse_duration(v).map_err(|e| format!("{flag}: {e}"));
        match flag.as_str() {
            "--servers" => a.servers = value.split(',').map(String::from).collect(),
            "--members" => a.members = value.parse().map_err(|e| format!("{flag}: {e}"))?,
            "--kill-pid" => a.kill_pid = value.parse().map_err(|e| format!("{flag}: {e}"))?,
            "--etcd" => a.etcd = value,
            "--interval" => a.interval = ms(&value)?,
            "--timeout" => a.timeout = ms(&value)?,
            other => return Err(format!("unknown flag {other}")),
        }
    }
    if a.servers.len() < 3 || a.kill_pid == 0 {
        return Err("--servers A,B,C and --kill-pid (of A) are required".into());
    }
    Ok(a)
}

async fn etcd_revision(etcd: &Etcd) -> i64 {
    let r = etcd
        .range(RangeRequest {
            key: b"/".to_vec(),
            limit: 1,
            ..Default::default()
        })
        .await;
    r.ok().and_then(|r| r.header).map_or(0, |h| h.revision)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let a = args().map_err(|e| {
        eprintln!("failover: {e}");
        std::process::exit(2)
    })?;
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    let (first, b, c) = (&a.servers[0], &a.servers[1], &a.servers[2]);
    let mut clients = Vec::with_capacity(a.members);
    for i in 0..a.members {
        let order = if i % 2 == 0 {
            [first, b, c]
        } else {
            [first, c, b]
        };
        let cfg = ClientConfig::new(order.map(|s| s.clone()), "fleet", format!("m-{i:06}"))
            .interval(a.interval)
            .timeout(a.timeout);
        clients.push(Client::spawn(cfg)?);
        if i % 200 == 199 {
            // A batch at a time, each inside A's Join queue, so that A
            // holds the whole fleet (all at once, the Joins beyond A's
            // queue are refused RESOURCE_EXHAUSTED and land on a peer).
            for cl in &clients[i - 199..] {
                cl.subscribe()
                    .wait_for(|s| s.state == ClientState::Online)
                    .await?;
            }
        }
    }
    for cl in &clients {
        cl.subscribe()
            .wait_for(|s| s.state == ClientState::Online)
            .await?;
    }
    let url = |s: &str| format!("http://{s}");
    let mut on_b = HeartbeatClient::connect(url(b)).await?;
    let on_c = HeartbeatClient::connect(url(c)).await?;
    let until = Instant::now() + Duration::from_secs(60);
    loop {
        let l = on_b
            .list_members(ListMembersRequest::default())
            .await?
            .into_inner();
        if l.members.len() == a.members {
            break;
        }
        if Instant::now() > until {
            return Err("not every member listed on B".into());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Every DEAD seen on B from now on.
    let dead = Arc::new(Mutex::new(HashMap::<String, usize>::new()));
    let mut watch = on_b
        .watch_members(WatchMembersRequest::default())
        .await?
        .into_inner();
    let d = dead.clone();
    tokio::spawn(async move {
        while let Ok(Some(e)) = watch.message().await {
            if e.r#type == EventType::Dead as i32
                && let Some(m) = e.member
            {
                *d.lock().unwrap().entry(m.instance).or_default() += 1;
            }
        }
    });
    let etcd = Etcd::new(std::slice::from_ref(&a.etcd), Duration::from_secs(2))?;
    let before = etcd_revision(&etcd).await;
    let (a_id, on_a, killed) = {
        // Replica ids are `heartbeat-<pid>-<start>`.
        let id_prefix = format!("heartbeat-{}-", a.kill_pid);
        let l = on_b
            .list_members(ListMembersRequest::default())
            .await?
            .into_inner();
        let id = l
            .members
            .iter()
            .map(|m| m.replica.clone())
            .find(|r| r.starts_with(&id_prefix))
            .unwrap_or(id_prefix);
        // Members that landed on a peer at the start (A busy) move nowhere.
        let on_a = l.members.iter().filter(|m| m.replica == id).count();
        let ok = std::process::Command::new("kill")
            .args(["-KILL", &a.kill_pid.to_string()])
            .status()?
            .success();
        if !ok {
            return Err("kill -9 failed".into());
        }
        (id, on_a, Instant::now())
    };
    // Sample etcd's revision and the survivors' table until every member is
    // ALIVE on one of them.
    let mut samples = vec![(0.0, before)];
    let mut on_c = on_c;
    let moved = loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let rev = etcd_revision(&etcd).await;
        samples.push((killed.elapsed().as_secs_f64(), rev));
        let l = on_c
            .list_members(ListMembersRequest::default())
            .await?
            .into_inner();
        // A client superseded by a Join attempt of its own that it had
        // given up on stops (SPEC §5): counted, not waited for.
        let running: std::collections::HashSet<String> = clients
            .iter()
            .enumerate()
            .filter(|(_, c)| c.status().state != ClientState::Superseded)
            .map(|(i, _)| format!("m-{i:06}"))
            .collect();
        let done = running.iter().all(|name| {
            l.members.iter().any(|m| {
                &m.instance == name && m.state == MemberState::Alive as i32 && m.replica != a_id
            })
        });
        if done {
            break killed.elapsed();
        }
        if killed.elapsed() > Duration::from_secs(120) {
            let mut states = HashMap::<(i32, bool), usize>::new();
            for m in &l.members {
                *states.entry((m.state, m.replica == a_id)).or_default() += 1;
            }
            let mut clients_by = HashMap::<String, usize>::new();
            for c in &clients {
                *clients_by
                    .entry(format!("{:?}", c.status().state))
                    .or_default() += 1;
            }
            eprintln!(
                "listed {} by (state, held by A): {states:?}; clients: {clients_by:?}",
                l.members.len()
            );
            for m in l
                .members
                .iter()
                .filter(|m| m.state != MemberState::Alive as i32)
                .take(5)
            {
                let i: usize = m.instance[2..].parse().unwrap_or(0);
                let st = clients[i].status();
                eprintln!(
                    "  {} state {} replica {} session {}; client {:?} session {:?} server {:?}",
                    m.instance, m.state, m.replica, m.session, st.state, st.session, st.server
                );
            }
            return Err("members never all ALIVE on the survivors".into());
        }
    };
    let after = etcd_revision(&etcd).await;
    // Over windows of at least 1 s: one slow sample must not read as a burst.
    let mut peak: f64 = 0.0;
    for (i, &(t0, r0)) in samples.iter().enumerate() {
        if let Some(&(t1, r1)) = samples[i..].iter().find(|(t, _)| t - t0 >= 1.0) {
            peak = peak.max((r1 - r0) as f64 / (t1 - t0));
        }
    }
    let offline = clients
        .iter()
        .filter(|c| c.status().state != ClientState::Online)
        .count();
    let false_dead: usize = dead.lock().unwrap().values().sum();
    let superseded = clients
        .iter()
        .filter(|c| c.status().state == ClientState::Superseded)
        .count();
    println!(
        "{}",
        serde_json::json!({
            "members": a.members,
            "held_by_a_at_kill": on_a,
            "false_dead": false_dead,
            "all_alive_on_survivors_s": moved.as_secs_f64(),
            "etcd_writes": after - before,
            "etcd_writes_per_s_mean": (after - before) as f64 / moved.as_secs_f64(),
            "etcd_writes_per_s_peak_1s": peak,
            "clients_not_online_at_end": offline,
            "clients_superseded": superseded,
        })
    );
    drop(clients);
    Ok(())
}
