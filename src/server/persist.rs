//! `--state-dir`: the member table on disk, so a restart (even `kill -9`)
//! does not expire the whole fleet.
//!
//! Only what a restart needs is saved: identity, labels, session, agreed
//! timing and status of every ALIVE or SUSPECT member (`last_seen` is not
//! saved, so pings never cause writes). Writes are debounced: at most one per
//! [`DEBOUNCE`], each a whole snapshot written to a temporary file, fsynced,
//! and renamed over the old one (atomic on POSIX). On start every saved member
//! comes back SUSPECT with one grace of exactly one timeout (see
//! `Registry::restore`). A file that cannot be read or fails validation is
//! reported, kept aside as `members.json.corrupt-<ms>`, and the server starts
//! empty: never a crash loop.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use tokio::sync::Notify;
use tracing::{debug, error, warn};

use super::state::Shared;
use crate::liveness::{MemberView, Restored, Status};
use crate::validate;

/// Least time between two writes.
pub const DEBOUNCE: Duration = Duration::from_millis(500);
const FILE: &str = "members.json";
const VERSION: u32 = 1;

#[derive(Debug, Serialize, Deserialize)]
struct StateFile {
    version: u32,
    members: Vec<Saved>,
}

#[derive(Debug, Serialize, Deserialize)]
struct Saved {
    service: String,
    instance: String,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    session: u64,
    interval_ms: u64,
    timeout_ms: u64,
    serving: bool,
}

impl From<&MemberView> for Saved {
    fn from(m: &MemberView) -> Self {
        Saved {
            service: m.service().to_owned(),
            instance: m.instance().to_owned(),
            labels: (*m.labels).clone(),
            session: m.session,
            interval_ms: m.interval.as_millis() as u64,
            timeout_ms: m.timeout.as_millis() as u64,
            serving: m.status == Status::Serving,
        }
    }
}

fn restored(s: Saved) -> Result<Restored, String> {
    validate::service("service", &s.service).map_err(|e| e.to_string())?;
    validate::instance("instance", &s.instance).map_err(|e| e.to_string())?;
    let labels =
        validate::labels("labels", s.labels.into_iter().collect()).map_err(|e| e.to_string())?;
    Ok(Restored {
        service: s.service,
        instance: s.instance,
        labels,
        session: s.session,
        interval: Duration::from_millis(s.interval_ms),
        timeout: Duration::from_millis(s.timeout_ms),
        status: if s.serving {
            Status::Serving
        } else {
            Status::NotServing
        },
    })
}

/// Reads the saved members of `dir`. A missing file is an empty table; an
/// unreadable or invalid one is moved aside (the error says where) and the
/// table starts empty.
pub(crate) fn load(dir: &Path) -> Vec<Restored> {
    let path = dir.join(FILE);
    let text = match fs::read(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Vec::new(),
        Err(e) => {
            error!(path = %path.display(), error = %e, "cannot read the state file; starting empty");
            return Vec::new();
        }
    };
    let parsed = serde_json::from_slice::<StateFile>(&text)
        .map_err(|e| e.to_string())
        .and_then(|f| match f.version {
            VERSION => f
                .members
                .into_iter()
                .map(restored)
                .collect::<Result<Vec<_>, _>>(),
            v => Err(format!("unknown version {v}")),
        });
    match parsed {
        Ok(members) => members,
        Err(e) => {
            let ms = SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis());
            let aside = dir.join(format!("{FILE}.corrupt-{ms}"));
            let moved = fs::rename(&path, &aside);
            error!(
                path = %path.display(),
                error = %e,
                kept_as = %aside.display(),
                moved = moved.is_ok(),
                "the state file is corrupt; starting empty"
            );
            Vec::new()
        }
    }
}

/// Writes `members` to `dir` atomically: temporary file, fsync, rename,
/// fsync of the directory.
pub(crate) fn save(dir: &Path, members: &[MemberView]) -> std::io::Result<()> {
    let file = StateFile {
        version: VERSION,
        members: members
            .iter()
            .filter(|m| m.state.is_live())
            .map(Saved::from)
            .collect(),
    };
    let bytes = serde_json::to_vec(&file).map_err(std::io::Error::other)?;
    let tmp: PathBuf = dir.join(format!("{FILE}.tmp"));
    let mut f = fs::File::create(&tmp)?;
    f.write_all(&bytes)?;
    f.sync_all()?;
    fs::rename(&tmp, dir.join(FILE))?;
    fs::File::open(dir)?.sync_all()
}

/// Saves the table whenever it changed, at most once per [`DEBOUNCE`], and
/// once more when the server stops.
pub(crate) async fn writer(shared: Arc<Shared>, dir: PathBuf, dirty: Arc<Notify>) {
    loop {
        let stopping = tokio::select! {
            _ = dirty.notified() => false,
            _ = shared.drain.cancelled() => true,
        };
        if !stopping {
            tokio::select! {
                _ = tokio::time::sleep(DEBOUNCE) => {}
                _ = shared.drain.cancelled() => {}
            }
        }
        let members = shared.with(|i| i.core.members(None));
        let dir2 = dir.clone();
        let count = members.iter().filter(|m| m.state.is_live()).count();
        match tokio::task::spawn_blocking(move || save(&dir2, &members)).await {
            Ok(Ok(())) => debug!(members = count, "state saved"),
            Ok(Err(e)) => warn!(dir = %dir.display(), error = %e, "cannot save the state"),
            Err(e) => warn!(error = %e, "state writer failed"),
        }
        if stopping || shared.drain.is_cancelled() {
            return;
        }
    }
}
