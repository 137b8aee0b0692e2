//! Logging setup: `tracing` to stderr, filtered by `RUST_LOG` (default
//! `info`), as text or as one JSON object per line.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

use super::LogFormat;

pub(crate) fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .init(),
    }
}
