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
use tracing::{debug, error, info, warn};

use super::state::Shared;
use crate::liveness::{MemberView, Restored, Status};
use crate::validate;

/// Least time between two writes.
pub const DEBOUNCE: Duration = Duration::from_millis(500);
/// How soon a failed write is tried again, even if nothing changed.
pub const RETRY: Duration = Duration::from_secs(1);
/// Largest session a state file may hold. Sessions start from the clock in
/// microseconds (about 2^51 today) and count up by one per Join, so a
/// larger one was never handed out: it would leave the next session no room
/// to increase, so the file is refused like a corrupt one.
pub const MAX_SAVED_SESSION: u64 = 1 << 62;
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
    #[serde(default, skip_serializing_if = "Option::is_none")]
    endpoint: Option<String>,
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
            endpoint: m.endpoint.as_deref().map(str::to_owned),
        }
    }
}

fn restored(s: Saved) -> Result<Restored, String> {
    if s.session == 0 || s.session > MAX_SAVED_SESSION {
        return Err(format!(
            "{}/{}: session {} is outside 1..={MAX_SAVED_SESSION}",
            s.service, s.instance, s.session
        ));
    }
    validate::service("service", &s.service).map_err(|e| e.to_string())?;
    validate::instance("instance", &s.instance).map_err(|e| e.to_string())?;
    let labels =
        validate::labels("labels", s.labels.into_iter().collect()).map_err(|e| e.to_string())?;
    let endpoint = match s.endpoint {
        Some(e) => validate::endpoint("endpoint", &e).map_err(|e| e.to_string())?,
        None => None,
    };
    Ok(Restored {
        endpoint,
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
/// fsync of the directory. A directory that was removed is created again;
/// a write that fails (a full disk) removes its temporary file and leaves
/// the last good snapshot in place.
pub(crate) fn save(dir: &Path, members: &[MemberView]) -> std::io::Result<()> {
    if !dir.is_dir() {
        fs::create_dir_all(dir)?;
        warn!(dir = %dir.display(), "the state dir was missing; created it again");
    }
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
    let written = fs::File::create(&tmp)
        .and_then(|mut f| f.write_all(&bytes).and_then(|()| f.sync_all()))
        .and_then(|()| fs::rename(&tmp, dir.join(FILE)));
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    fs::File::open(dir)?.sync_all()
}

/// Saves the table whenever it changed, at most once per [`DEBOUNCE`], and
/// once more when the server stops. A failed save is reported (a metric,
/// and one ERROR line per run of failures) and tried again after [`RETRY`]
/// until it succeeds.
pub(crate) async fn writer(shared: Arc<Shared>, dir: PathBuf, dirty: Arc<Notify>) {
    let mut failures = 0u64;
    loop {
        let stopping = tokio::select! {
            _ = dirty.notified() => false,
            _ = tokio::time::sleep(RETRY), if failures > 0 => false,
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
        let result = tokio::task::spawn_blocking(move || save(&dir2, &members))
            .await
            .unwrap_or_else(|e| Err(std::io::Error::other(e)));
        match result {
            Ok(()) => {
                shared.metrics.state_saved(true);
                if failures > 0 {
                    info!(members = count, failures, "state saved again");
                } else {
                    debug!(members = count, "state saved");
                }
                failures = 0;
            }
            Err(e) => {
                shared.metrics.state_saved(false);
                if failures == 0 {
                    error!(
                        dir = %dir.display(),
                        error = %e,
                        "cannot save the state; the last good snapshot stays in place, retrying"
                    );
                } else {
                    debug!(error = %e, failures, "state still cannot be saved");
                }
                failures += 1;
            }
        }
        if stopping || shared.drain.is_cancelled() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn saved(extra: &str) -> Saved {
        let text = format!(
            r#"{{"service":"web","instance":"a","session":7,"interval_ms":1000,"timeout_ms":3000,"serving":true{extra}}}"#
        );
        serde_json::from_str(&text).unwrap()
    }

    #[test]
    fn the_endpoint_is_saved_and_restored_and_checked() {
        assert_eq!(restored(saved("")).unwrap().endpoint, None, "older files");
        let r = restored(saved(r#","endpoint":"10.0.0.7:8080""#)).unwrap();
        assert_eq!(r.endpoint.as_deref(), Some("10.0.0.7:8080"));
        let e = restored(saved(r#","endpoint":"nope""#)).unwrap_err();
        assert!(e.contains("endpoint"), "{e}");
    }
}
