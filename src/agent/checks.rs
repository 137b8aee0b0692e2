//! Local checks that gate the agent's reported status, like a Consul agent
//! check: the application's own gRPC health, a TCP port, or a command. A
//! failing check makes the member report NOT_SERVING (it stays ALIVE).

use std::time::Duration;

use tokio::process::Command;

use crate::client::{Dial, server_url};
use crate::probe;

/// What to check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LocalCheck {
    /// `grpc.health.v1.Health/Check` of `service` at `url`.
    Grpc {
        /// `http://host:port`.
        url: String,
        /// Health name ("" = the whole server).
        service: String,
    },
    /// A TCP connect to `host:port`.
    Tcp(String),
    /// A command run by `sh -c`; exit 0 = healthy.
    Exec(String),
}

impl LocalCheck {
    /// Parses `ADDR[/SERVICE]` for a gRPC check (`SERVICE` may contain `/`).
    pub fn grpc(spec: &str) -> Result<Self, String> {
        let (scheme, rest) = match spec.split_once("://") {
            Some((scheme, rest)) => (format!("{scheme}://"), rest),
            None => (String::new(), spec),
        };
        let (addr, service) = rest.split_once('/').unwrap_or((rest, ""));
        Ok(LocalCheck::Grpc {
            url: server_url(&format!("{scheme}{addr}"))?,
            service: service.to_owned(),
        })
    }

    /// Runs the check once, bounded by `timeout`; `Err` says why it failed.
    pub async fn run(&self, timeout: Duration) -> Result<(), String> {
        match self {
            LocalCheck::Grpc { url, service } => {
                match probe::check(&Dial::default(), url, service, timeout, timeout).await {
                    probe::Outcome::Serving => Ok(()),
                    other => Err(other.line(url, service)),
                }
            }
            LocalCheck::Tcp(addr) => {
                match tokio::time::timeout(timeout, tokio::net::TcpStream::connect(addr)).await {
                    Ok(Ok(_)) => Ok(()),
                    Ok(Err(e)) => Err(format!("tcp {addr}: {e}")),
                    Err(_) => Err(format!("tcp {addr}: no connection within {timeout:?}")),
                }
            }
            LocalCheck::Exec(cmd) => {
                let child = Command::new("sh")
                    .arg("-c")
                    .arg(cmd)
                    .stdin(std::process::Stdio::null())
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::null())
                    .kill_on_drop(true)
                    .spawn();
                let mut child = child.map_err(|e| format!("exec {cmd:?}: {e}"))?;
                match tokio::time::timeout(timeout, child.wait()).await {
                    Ok(Ok(status)) if status.success() => Ok(()),
                    Ok(Ok(status)) => Err(format!("exec {cmd:?}: {status}")),
                    Ok(Err(e)) => Err(format!("exec {cmd:?}: {e}")),
                    Err(_) => Err(format!("exec {cmd:?}: still running after {timeout:?}")),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_specs() {
        let g = |url: &str, service: &str| LocalCheck::Grpc {
            url: url.into(),
            service: service.into(),
        };
        assert_eq!(
            LocalCheck::grpc("127.0.0.1:8080"),
            Ok(g("http://127.0.0.1:8080", ""))
        );
        assert_eq!(
            LocalCheck::grpc("127.0.0.1:8080/my.Svc"),
            Ok(g("http://127.0.0.1:8080", "my.Svc"))
        );
        assert_eq!(
            LocalCheck::grpc("http://localhost:1/web/a"),
            Ok(g("http://localhost:1", "web/a"))
        );
        assert!(LocalCheck::grpc("localhost/svc").is_err());
    }

    #[tokio::test]
    async fn exec_checks() {
        let t = Duration::from_secs(5);
        assert!(LocalCheck::Exec("true".into()).run(t).await.is_ok());
        let e = LocalCheck::Exec("exit 3".into()).run(t).await.unwrap_err();
        assert!(e.contains('3'), "{e}");
        let slow = LocalCheck::Exec("sleep 5".into());
        assert!(
            slow.run(Duration::from_millis(50))
                .await
                .unwrap_err()
                .contains("still running")
        );
    }
}
