//! How members and events look on a terminal and as JSON lines: short enum
//! names (ALIVE, JOINED, …), durations as humantime, times as RFC 3339.

use std::time::{Duration, SystemTime};

use heartbeat::pb::heartbeat::v1::{EventType, Member, MemberEvent, MemberState, MemberStatus};
use serde_json::{Value, json};

fn short(name: &str, prefix: &str) -> String {
    name.strip_prefix(prefix).unwrap_or(name).to_owned()
}

fn state(m: &Member) -> String {
    MemberState::try_from(m.state).map_or(m.state.to_string(), |s| {
        short(s.as_str_name(), "MEMBER_STATE_")
    })
}

fn status(m: &Member) -> String {
    match MemberStatus::try_from(m.status) {
        Ok(MemberStatus::Unspecified) => "SERVING".into(),
        Ok(s) => short(s.as_str_name(), "MEMBER_STATUS_"),
        Err(_) => m.status.to_string(),
    }
}

fn event_type(e: &MemberEvent) -> String {
    EventType::try_from(e.r#type).map_or(e.r#type.to_string(), |t| {
        short(t.as_str_name(), "EVENT_TYPE_")
    })
}

fn system_time(t: &Option<prost_types::Timestamp>) -> Option<SystemTime> {
    let t = t.as_ref()?;
    SystemTime::try_from(*t).ok()
}

fn rfc3339(t: &Option<prost_types::Timestamp>) -> Value {
    system_time(t).map_or(Value::Null, |t| {
        json!(humantime::format_rfc3339_millis(t).to_string())
    })
}

fn duration(d: &Option<prost_types::Duration>) -> String {
    d.as_ref()
        .and_then(|d| Duration::try_from(*d).ok())
        .map_or_else(|| "-".into(), |d| humantime::format_duration(d).to_string())
}

/// Time since `last_seen`, rounded to milliseconds.
fn ago(m: &Member, now: SystemTime) -> Option<Duration> {
    let seen = system_time(&m.last_seen)?;
    let d = now.duration_since(seen).unwrap_or_default();
    Some(Duration::from_millis(d.as_millis() as u64))
}

fn labels(m: &Member) -> String {
    let mut l: Vec<String> = m.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
    l.sort();
    l.join(",")
}

/// One member as a JSON object.
pub(crate) fn member_json(m: &Member, now: SystemTime) -> Value {
    json!({
        "service": m.service,
        "instance": m.instance,
        "state": state(m),
        "status": status(m),
        "session": m.session,
        "interval": duration(&m.interval),
        "timeout": duration(&m.timeout),
        "joined_at": rfc3339(&m.joined_at),
        "last_seen": rfc3339(&m.last_seen),
        "last_seen_ago_ms": ago(m, now).map(|d| d.as_millis() as u64),
        "labels": m.labels,
    })
}

/// The member table, with a header line.
pub(crate) fn member_table(members: &[Member], now: SystemTime) -> String {
    let mut rows = vec![[
        "SERVICE".to_owned(),
        "INSTANCE".into(),
        "STATE".into(),
        "STATUS".into(),
        "LAST SEEN".into(),
        "SESSION".into(),
        "LABELS".into(),
    ]];
    for m in members {
        let seen = ago(m, now).map_or("-".into(), |d| {
            format!("{} ago", humantime::format_duration(d))
        });
        rows.push([
            m.service.clone(),
            m.instance.clone(),
            state(m),
            status(m),
            seen,
            m.session.to_string(),
            labels(m),
        ]);
    }
    let widths: Vec<usize> = (0..7)
        .map(|c| rows.iter().map(|r| r[c].len()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for r in rows {
        let line: Vec<String> = r
            .iter()
            .zip(&widths)
            .map(|(v, w)| format!("{v:<w$}"))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out
}

/// One event as a JSON object.
pub(crate) fn event_json(e: &MemberEvent) -> Value {
    let mut v = json!({ "revision": e.revision, "type": event_type(e) });
    if let Some(m) = &e.member {
        let now = SystemTime::now();
        if let (Value::Object(o), Value::Object(member)) = (&mut v, member_json(m, now)) {
            o.extend(member);
        }
    }
    v
}

/// One event as a line of text.
pub(crate) fn event_line(e: &MemberEvent) -> String {
    match &e.member {
        Some(m) => format!(
            "{} {} {}/{} {} {} session={}",
            e.revision,
            event_type(e),
            m.service,
            m.instance,
            state(m),
            status(m),
            m.session
        ),
        None => format!("{} {}", e.revision, event_type(e)),
    }
}
