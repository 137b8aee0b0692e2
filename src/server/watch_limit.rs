//! Limits on open watch streams (WatchMembers and xDS), in total and per
//! connection: each
//! costs a little memory however well it is bounded, so an anonymous client
//! must not be able to open them without end. Past a limit the call gets
//! RESOURCE_EXHAUSTED naming it.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tonic::Status as GrpcStatus;

use crate::edge::PerConnection;
use crate::metrics::ServerMetrics;

/// The server-wide count.
#[derive(Debug, Default)]
pub(crate) struct WatchCount(AtomicUsize);

/// One open watch stream's place; freed when dropped.
#[derive(Debug)]
pub(crate) struct WatchSlot {
    total: Arc<WatchCount>,
    conn: Option<Arc<PerConnection>>,
    metrics: ServerMetrics,
}

/// Takes a place for a new watch stream on `conn`, within `max_total` and
/// `max_per_connection`.
pub(crate) fn acquire(
    total: &Arc<WatchCount>,
    conn: Option<Arc<PerConnection>>,
    max_total: usize,
    max_per_connection: usize,
    metrics: &ServerMetrics,
) -> Result<WatchSlot, GrpcStatus> {
    if let Some(c) = &conn
        && c.watches.fetch_add(1, Ordering::AcqRel) >= max_per_connection
    {
        c.watches.fetch_sub(1, Ordering::AcqRel);
        metrics.rejected(crate::metrics::Rejection::WatchLimit);
        return Err(GrpcStatus::resource_exhausted(format!(
            "{max_per_connection} watch streams (WatchMembers and xDS) are already open on this connection (--max-watches-per-connection)"
        )));
    }
    if total.0.fetch_add(1, Ordering::AcqRel) >= max_total {
        total.0.fetch_sub(1, Ordering::AcqRel);
        if let Some(c) = &conn {
            c.watches.fetch_sub(1, Ordering::AcqRel);
        }
        metrics.rejected(crate::metrics::Rejection::WatchLimit);
        return Err(GrpcStatus::resource_exhausted(format!(
            "{max_total} watch streams (WatchMembers and xDS) are already open on this server (--max-watches)"
        )));
    }
    metrics.watch_opened();
    Ok(WatchSlot {
        total: total.clone(),
        conn,
        metrics: metrics.clone(),
    })
}

impl Drop for WatchSlot {
    fn drop(&mut self) {
        self.total.0.fetch_sub(1, Ordering::AcqRel);
        if let Some(c) = &self.conn {
            c.watches.fetch_sub(1, Ordering::AcqRel);
        }
        self.metrics.watch_closed();
    }
}
