//! Every command that dials a server speaks TLS and sends a token with the
//! same flags as `beat` (`--tls-ca`, `--tls-cert`, `--tls-key`,
//! `--tls-server-name`, `--token-file`), against `heartbeat serve` with mTLS
//! and an authorisation file whose reads need an identity; and a connection
//! failure names its cause and the address instead of "transport error".

mod common;

use common::pki::{Pki, pki, self_signed};
use common::process::Proc;
use common::*;
use heartbeat::authz::sha256_hex;

const TOKEN: &str = "cli-token-7";

struct Files {
    dir: std::path::PathBuf,
}

impl Files {
    fn new(name: &str) -> Self {
        let dir = temp_dir(name);
        std::fs::create_dir_all(&dir).unwrap();
        Self { dir }
    }

    fn put(&self, name: &str, text: &str) -> String {
        let path = self.dir.join(name);
        std::fs::write(&path, text).unwrap();
        path.to_str().unwrap().to_owned()
    }
}

/// `heartbeat serve` with `cert`/`key`, mTLS against the PKI's CA, and
/// reads for identities only; returns it with its address.
async fn serve_tls(files: &Files, pki: &Pki, cert: &(String, String)) -> (Proc, String) {
    let authz = format!(
        r#"{{"read":"authenticated","rules":[
            {{"dns":"orders-agent","services":["orders"]}},
            {{"token_sha256":"{}","services":["batch-*"]}}]}}"#,
        sha256_hex(TOKEN)
    );
    let args = [
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--log-format",
        "json",
        "--tls-cert",
        &files.put("server.pem", &cert.0),
        "--tls-key",
        &files.put("server.key", &cert.1),
        "--tls-client-ca",
        &files.put("ca.pem", &pki.ca),
        "--authz-file",
        &files.put("authz.json", &authz),
    ];
    let mut p = Proc::spawn(&args);
    let addr = p.logged_addr("listening").await;
    (p, addr)
}

#[tokio::test]
async fn check_members_watch_and_bench_speak_tls_with_a_token() {
    let pki = pki();
    let files = Files::new("cli-tls");
    let (_server, addr) = serve_tls(&files, &pki, &pki.server).await;
    let ca = files.put("ca.pem", &pki.ca);
    let token = files.put("token", &format!("{TOKEN}\n"));
    let cert = files.put("orders.pem", &pki.orders.0);
    let key = files.put("orders.key", &pki.orders.1);

    // A member over mTLS, as the agent always could.
    let mut agent = Proc::spawn(&[
        "beat",
        "--server",
        &addr,
        "--service",
        "orders",
        "--instance",
        "o-1",
        "--tls-ca",
        &ca,
        "--tls-cert",
        &cert,
        "--tls-key",
        &key,
        "--log-format",
        "json",
    ]);
    agent.wait_log("ONLINE", |v| v["state"] == "ONLINE").await;

    // check: with the token, SERVING; without an identity, reads are refused.
    let tls = ["--tls-ca", ca.as_str(), "--token-file", token.as_str()];
    let mut args = vec!["check", "--server", &addr, "orders"];
    args.extend(tls);
    let (code, out) = Proc::run(&args).await;
    assert_eq!((code, out.trim()), (0, "status: SERVING"), "{out}");
    let (code, out) = Proc::run(&["check", "--server", &addr, "--tls-ca", &ca, "orders"]).await;
    assert_eq!(code, 3, "{out}");
    assert!(out.contains("Unauthenticated"), "{out}");
    // The client certificate is an identity too.
    let (code, out) = Proc::run(&[
        "check",
        "--server",
        &addr,
        "--tls-ca",
        &ca,
        "--tls-cert",
        &cert,
        "--tls-key",
        &key,
    ])
    .await;
    assert_eq!(code, 0, "{out}");

    // members
    let mut args = vec!["members", "--server", &addr, "--json"];
    args.extend(tls);
    let (code, out) = Proc::run(&args).await;
    assert_eq!(code, 0, "{out}");
    let row: serde_json::Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
    assert_eq!(
        (row["service"].as_str(), row["state"].as_str()),
        (Some("orders"), Some("ALIVE"))
    );

    // watch: the snapshot arrives over TLS.
    let mut args = vec!["watch", "--server", &addr, "--service", "orders"];
    args.extend(tls);
    let mut w = Proc::spawn(&args);
    let line = w.next_out().await;
    assert!(line.contains("SNAPSHOT orders/o-1 ALIVE"), "{line}");
    w.signal("-TERM");
    assert_eq!(w.wait_exit(WAIT).await.code(), Some(0));

    // bench: members join with the token (the rule allows batch-*).
    let mut args = vec![
        "bench",
        "--server",
        &addr,
        "--service",
        "batch-bench",
        "--members",
        "4",
        "--connections",
        "2",
        "--duration",
        "1s",
        "--interval",
        "200ms",
        "--json",
        "--quiet",
    ];
    args.extend(tls);
    let (code, out) = Proc::run(&args).await;
    assert_eq!(code, 0, "{out}");
    let report: serde_json::Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
    assert_eq!(report["joined"], 4, "{out}");
}

#[tokio::test]
async fn connection_failures_name_their_cause() {
    let pki = pki();
    let files = Files::new("cli-tls-errors");
    let ca = files.put("ca.pem", &pki.ca);

    // Refused: nothing listens.
    let free = free_addr();
    let (code, out) = Proc::run(&["members", "--server", &free]).await;
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains(&free) && out.to_lowercase().contains("refused"),
        "{out}"
    );

    // Timed out: TCP accepted, TLS never answered.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_addr = silent.local_addr().unwrap().to_string();
    let (code, out) = Proc::run(&[
        "check",
        "--server",
        &silent_addr,
        "--tls-ca",
        &ca,
        "--connect-timeout",
        "300ms",
    ])
    .await;
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains(&silent_addr) && out.contains("timeout after 300ms"),
        "{out}"
    );

    // A self-signed server certificate (which `grpcurl -insecure` accepts):
    // unknown issuer, for check and for the agent alike.
    let own = self_signed();
    let (server, addr) = serve_tls(&files, &pki, &own).await;
    let (code, out) = Proc::run(&["check", "--server", &addr, "--tls-ca", &ca]).await;
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains(&addr) && out.contains("UnknownIssuer"),
        "{out}"
    );
    let mut agent = Proc::spawn(&[
        "beat",
        "--server",
        &addr,
        "--service",
        "orders",
        "--instance",
        "o-1",
        "--tls-ca",
        &ca,
        "--max-retries",
        "1",
        "--log-format",
        "json",
    ]);
    let line = agent.wait_log("OFFLINE", |v| v["state"] == "OFFLINE").await;
    let error = line["error"].as_str().unwrap_or_default();
    assert!(
        error.contains(&addr) && error.contains("UnknownIssuer"),
        "{line}"
    );
    drop(agent);
    server.signal("-TERM");
    server.wait_exit(WAIT).await;

    // A certificate for localhost dialled as 127.0.0.1: the name does not
    // match, until --tls-server-name says which name to expect.
    let (_server, addr) = serve_tls(&files, &pki, &pki.server_dns_only).await;
    let token = files.put("token", TOKEN);
    let (code, out) = Proc::run(&["check", "--server", &addr, "--tls-ca", &ca]).await;
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains(&addr) && out.contains("not valid for name"),
        "{out}"
    );
    let (code, out) = Proc::run(&[
        "check",
        "--server",
        &addr,
        "--tls-ca",
        &ca,
        "--tls-server-name",
        "localhost",
        "--token-file",
        &token,
    ])
    .await;
    assert_eq!(code, 0, "{out}");

    // Plaintext against the TLS port: the hint says what is likely wrong.
    let (code, out) = Proc::run(&["check", "--server", &addr]).await;
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("is it a TLS port? pass --tls-ca"), "{out}");
    let (code, out) = Proc::run(&["members", "--server", &addr]).await;
    assert_eq!(code, 3, "{out}");
    assert!(out.contains("is it a TLS port? pass --tls-ca"), "{out}");

    // Bad files fail at start, naming the flag.
    let not_pem = files.put("not.pem", "hello");
    let (code, out) = Proc::run(&["check", "--server", &addr, "--tls-ca", &not_pem]).await;
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("--tls-ca"), "{out}");
}
