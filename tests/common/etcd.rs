//! A real etcd cluster on loopback for the cluster tests: Debian's etcd 3.4
//! (`scripts/etcd.sh` puts it under target/etcd; the test command runs it),
//! N members on free ports, data in temporary directories, a fast election
//! (heartbeat 100 ms, election timeout 1 s). A test that needs it fails when
//! etcd is missing: it never skips.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tokio::time::Instant;

/// Where the etcd binaries are: `$HEARTBEAT_ETCD_BIN`, else target/etcd,
/// else PATH.
pub fn bin_dir() -> PathBuf {
    if let Ok(dir) = std::env::var("HEARTBEAT_ETCD_BIN") {
        return dir.into();
    }
    let local = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/etcd/usr/bin");
    if local.join("etcd").exists() {
        return local;
    }
    let on_path = Command::new("sh")
        .args(["-c", "command -v etcd"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()));
    match on_path.and_then(|p| p.parent().map(PathBuf::from)) {
        Some(dir) => dir,
        None => panic!("etcd is missing: run scripts/etcd.sh (the test command does)"),
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One etcd cluster, stopped (and its data removed) on drop.
pub struct EtcdCluster {
    members: Vec<Option<Child>>,
    clients: Vec<String>,
    dirs: Vec<PathBuf>,
}

impl EtcdCluster {
    /// Starts `n` members and waits (bounded) until every one sees a leader.
    pub fn start(name: &str, n: usize) -> Self {
        let bin = bin_dir().join("etcd");
        let ports: Vec<(u16, u16)> = (0..n).map(|_| (free_port(), free_port())).collect();
        let initial: Vec<String> = ports
            .iter()
            .enumerate()
            .map(|(i, (_, peer))| format!("m{i}=http://127.0.0.1:{peer}"))
            .collect();
        let initial = initial.join(",");
        let mut members = Vec::new();
        let mut dirs = Vec::new();
        for (i, (client, peer)) in ports.iter().enumerate() {
            let dir = super::temp_dir(&format!("etcd-{name}-{i}"));
            let child = Command::new(&bin)
                .args(["--name", &format!("m{i}")])
                .arg("--data-dir")
                .arg(&dir)
                .args([
                    "--listen-client-urls",
                    &format!("http://127.0.0.1:{client}"),
                ])
                .args([
                    "--advertise-client-urls",
                    &format!("http://127.0.0.1:{client}"),
                ])
                .args(["--listen-peer-urls", &format!("http://127.0.0.1:{peer}")])
                .args([
                    "--initial-advertise-peer-urls",
                    &format!("http://127.0.0.1:{peer}"),
                ])
                .args(["--initial-cluster", &initial])
                .args(["--initial-cluster-state", "new"])
                .args(["--initial-cluster-token", &format!("hb-{name}")])
                .args(["--heartbeat-interval", "100", "--election-timeout", "1000"])
                .args(["--logger", "zap", "--log-level", "error"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
            members.push(Some(child));
            dirs.push(dir);
        }
        let cluster = Self {
            members,
            clients: ports
                .iter()
                .map(|(c, _)| format!("127.0.0.1:{c}"))
                .collect(),
            dirs,
        };
        cluster.wait_for_leader(Duration::from_secs(20));
        cluster
    }

    /// Client addresses (`host:port`), one per member.
    pub fn endpoints(&self) -> &[String] {
        &self.clients
    }

    /// `etcdctl` against every member; its stdout, or the failure.
    pub fn etcdctl(&self, args: &[&str]) -> Result<String, String> {
        self.etcdctl_at(&self.clients.join(","), args)
    }

    /// `etcdctl` against `endpoints`.
    pub fn etcdctl_at(&self, endpoints: &str, args: &[&str]) -> Result<String, String> {
        let out = Command::new(bin_dir().join("etcdctl"))
            .env("ETCDCTL_API", "3")
            .args([
                "--endpoints",
                endpoints,
                "--dial-timeout",
                "2s",
                "--command-timeout",
                "5s",
            ])
            .args(args)
            .output()
            .map_err(|e| format!("etcdctl: {e}"))?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }

    /// The member each endpoint says is the leader (its member id), or
    /// `None` while some endpoint sees none or cannot answer.
    fn leaders(&self) -> Option<Vec<u64>> {
        let out = self.etcdctl(&["endpoint", "status", "-w", "json"]).ok()?;
        let v: serde_json::Value = serde_json::from_str(&out).ok()?;
        let leaders: Vec<u64> = v
            .as_array()?
            .iter()
            .filter_map(|e| e["Status"]["leader"].as_u64())
            .collect();
        (leaders.len() == self.clients.len() && leaders.iter().all(|&l| l != 0)).then_some(leaders)
    }

    /// Waits until every member sees a leader.
    pub fn wait_for_leader(&self, bound: Duration) {
        let until = Instant::now() + bound;
        while self.leaders().is_none() {
            assert!(
                Instant::now() < until,
                "etcd elected no leader within {bound:?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The index of the leader among the members.
    pub fn leader(&self) -> Option<usize> {
        let out = self.etcdctl(&["endpoint", "status", "-w", "json"]).ok()?;
        let v: serde_json::Value = serde_json::from_str(&out).ok()?;
        v.as_array()?.iter().position(|e| {
            let s = &e["Status"];
            s["leader"].as_u64().is_some() && s["leader"] == s["header"]["member_id"]
        })
    }

    /// Sends `signal` (`-STOP`, `-CONT`, `-KILL`) to member `i`.
    pub fn signal(&self, i: usize, signal: &str) {
        let pid = self.members[i].as_ref().expect("running").id();
        let ok = Command::new("kill")
            .args([signal, &pid.to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill {signal} {pid}");
    }
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        for child in self.members.iter_mut().flatten() {
            let _ = child.kill();
            let _ = child.wait();
        }
        for dir in &self.dirs {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}
