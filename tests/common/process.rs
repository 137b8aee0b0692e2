//! The `heartbeat` binary as a child process: JSON log lines from stderr (or
//! output lines from stdout) read on a thread, bounded waits, signals.

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use super::within;

pub struct Proc {
    child: Option<Child>,
    /// stderr lines (JSON logs when started with --log-format json).
    pub logs: mpsc::UnboundedReceiver<String>,
    /// stdout lines.
    pub out: mpsc::UnboundedReceiver<String>,
}

/// Lines of `r`, read on a thread so the test's runtime is never blocked.
fn lines(r: impl Read + Send + 'static) -> mpsc::UnboundedReceiver<String> {
    let (tx, rx) = mpsc::unbounded_channel();
    std::thread::spawn(move || {
        for line in BufReader::new(r).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    rx
}

impl Proc {
    pub fn spawn(args: &[&str]) -> Self {
        Self::spawn_env(args, &[])
    }

    pub fn spawn_env(args: &[&str], env: &[(&str, &str)]) -> Self {
        Self::spawn_under(&[], args, env)
    }

    /// `heartbeat ARGS` run by `wrapper` (e.g. `["prlimit", "--nofile=512"]`).
    pub fn spawn_under(wrapper: &[&str], args: &[&str], env: &[(&str, &str)]) -> Self {
        let bin = env!("CARGO_BIN_EXE_heartbeat");
        let mut cmd = match wrapper.split_first() {
            Some((program, rest)) => {
                let mut c = Command::new(program);
                c.args(rest).arg(bin);
                c
            }
            None => Command::new(bin),
        };
        let mut child = cmd
            .args(args)
            .env_remove("RUST_LOG")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn heartbeat");
        let logs = lines(child.stderr.take().unwrap());
        let out = lines(child.stdout.take().unwrap());
        Self {
            child: Some(child),
            logs,
            out,
        }
    }

    /// Runs `heartbeat ARGS` to its end; returns its exit code and its
    /// output (stdout, then stderr).
    pub async fn run(args: &[&str]) -> (i32, String) {
        let mut p = Self::spawn(args);
        let mut text = String::new();
        while let Some(line) = p.out.recv().await {
            text.push_str(&line);
            text.push('\n');
        }
        while let Some(line) = p.logs.recv().await {
            text.push_str(&line);
            text.push('\n');
        }
        let code = p.wait_exit(super::WAIT).await.code().expect("exit code");
        (code, text)
    }

    /// `heartbeat serve` on `addr` with `--state-dir dir`, JSON logs at debug
    /// level (for "state saved"), a short drain, and `extra` flags.
    pub fn serve_with_state(addr: &str, dir: &str, extra: &[&str]) -> Self {
        let mut args = vec![
            "serve",
            "--listen",
            addr,
            "--log-format",
            "json",
            "--state-dir",
            dir,
            "--drain",
            "100ms",
        ];
        args.extend_from_slice(extra);
        Self::spawn_env(&args, &[("RUST_LOG", "heartbeat=debug")])
    }

    /// `heartbeat serve` on 127.0.0.1:0 with `--metrics-listen` on
    /// 127.0.0.1:0, JSON logs and `extra` flags; returns it with its gRPC and
    /// metrics addresses.
    pub async fn serve_with_metrics(extra: &[&str]) -> (Self, String, String) {
        let mut args = vec![
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--metrics-listen",
            "127.0.0.1:0",
            "--log-format",
            "json",
        ];
        args.extend_from_slice(extra);
        let mut p = Self::spawn(&args);
        let grpc = p.logged_addr("listening").await;
        let metrics = p.logged_addr("metrics listening").await;
        (p, grpc, metrics)
    }

    /// Waits for a JSON log line matching `pred`; returns it.
    pub async fn wait_log(
        &mut self,
        what: &str,
        pred: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        loop {
            let line = within(&format!("a log line for {what}"), self.logs.recv())
                .await
                .unwrap_or_else(|| panic!("process exited before logging {what}"));
            let v: serde_json::Value =
                serde_json::from_str(&line).unwrap_or_else(|e| panic!("{line:?} is not JSON: {e}"));
            if pred(&v) {
                return v;
            }
        }
    }

    /// The address logged in a line with `message`.
    pub async fn logged_addr(&mut self, message: &str) -> String {
        let v = self.wait_log(message, |v| v["message"] == message).await;
        v["addr"].as_str().expect("addr field").to_owned()
    }

    /// The next stdout line.
    pub async fn next_out(&mut self) -> String {
        within("an output line", self.out.recv())
            .await
            .expect("process output open")
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([sig, &self.pid().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill {sig}");
    }

    /// Waits for the process to exit (bounded by `bound`), without blocking
    /// the test's runtime (servers in the test process keep running).
    pub async fn wait_exit(mut self, bound: Duration) -> ExitStatus {
        let pid = self.pid().to_string();
        let mut child = self.child.take().expect("running");
        let (tx, rx) = oneshot::channel();
        std::thread::spawn(move || {
            let _ = tx.send(child.wait());
        });
        match tokio::time::timeout(bound, rx).await {
            Ok(Ok(status)) => status.expect("wait for the process"),
            _ => {
                let _ = Command::new("kill").args(["-KILL", &pid]).status();
                panic!("process still running after {bound:?}");
            }
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
