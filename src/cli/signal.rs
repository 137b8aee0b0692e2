//! SIGINT and SIGTERM in one place: the future completes on the first.

use tracing::{info, warn};

pub(crate) async fn shutdown() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match (
            signal(SignalKind::interrupt()),
            signal(SignalKind::terminate()),
        ) {
            (Ok(mut int), Ok(mut term)) => {
                tokio::select! {
                    _ = int.recv() => info!(signal = "SIGINT", "signal received"),
                    _ = term.recv() => info!(signal = "SIGTERM", "signal received"),
                }
                return;
            }
            (Err(e), _) | (_, Err(e)) => warn!(error = %e, "cannot install signal handlers"),
        }
    }
    let _ = tokio::signal::ctrl_c().await;
    info!(signal = "SIGINT", "signal received");
}
