//! How members and events look on a terminal and as JSON lines: one
//! spelling of states everywhere (ALIVE, JOINED, …, as the server's logs
//! and SPEC write them), ages as kubectl writes them (`3.2s`, `4m12s`),
//! times as RFC 3339 in UTC.

use std::time::{Duration, SystemTime};

use heartbeat::liveness::{State, Status};
use heartbeat::pb::heartbeat::v1::{EventType, Member, MemberEvent, MemberState, MemberStatus};
use serde_json::{Value, json};

fn short(name: &str, prefix: &str) -> String {
    name.strip_prefix(prefix).unwrap_or(name).to_owned()
}

/// The state's one spelling (the domain's [`State::name`]), or the raw
/// number for a value this build does not know.
fn state(m: &Member) -> String {
    MemberState::try_from(m.state)
        .ok()
        .and_then(|s| State::try_from(s).ok())
        .map_or(m.state.to_string(), |s| s.name().to_owned())
}

fn status(m: &Member) -> String {
    MemberStatus::try_from(m.status)
        .map_or(m.status.to_string(), |s| Status::from(s).name().to_owned())
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

/// A duration the way kubectl prints ages: two units at most, and a
/// tenth of a second under ten seconds (`250ms`, `3.2s`, `27s`, `4m12s`,
/// `2h5m`, `3d4h`).
pub(crate) fn human(d: Duration) -> String {
    let ms = d.as_millis() as u64;
    let s = d.as_secs();
    match s {
        0 => format!("{ms}ms"),
        1..=9 => format!("{}.{}s", s, (ms % 1000) / 100),
        10..=59 => format!("{s}s"),
        60..=3599 => format!("{}m{}s", s / 60, s % 60),
        3600..=86_399 => format!("{}h{}m", s / 3600, (s % 3600) / 60),
        _ => format!("{}d{}h", s / 86_400, (s % 86_400) / 3600),
    }
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
        "replica": m.replica,
        "endpoint": m.endpoint,
    })
}

/// The member table, with a header line; a REPLICA column when the
/// server is a cluster replica (members carry the replica holding them),
/// an ENDPOINT column when a member advertised one (SPEC §8).
pub(crate) fn member_table(members: &[Member], now: SystemTime) -> String {
    let cluster = members.iter().any(|m| !m.replica.is_empty());
    let endpoints = members.iter().any(|m| !m.endpoint.is_empty());
    let mut header: Vec<String> = [
        "SERVICE",
        "INSTANCE",
        "STATE",
        "STATUS",
        "LAST SEEN",
        "SESSION",
    ]
    .map(String::from)
    .to_vec();
    if cluster {
        header.push("REPLICA".into());
    }
    if endpoints {
        header.push("ENDPOINT".into());
    }
    header.push("LABELS".into());
    let mut rows = vec![header];
    for m in members {
        let seen = ago(m, now).map_or("-".into(), |d| format!("{} ago", human(d)));
        let mut row = vec![
            m.service.clone(),
            m.instance.clone(),
            state(m),
            status(m),
            seen,
            m.session.to_string(),
        ];
        if cluster {
            row.push(if m.replica.is_empty() {
                "-".into()
            } else {
                m.replica.clone()
            });
        }
        if endpoints {
            let e = &m.endpoint;
            row.push(if e.is_empty() { "-".into() } else { e.clone() });
        }
        row.push(labels(m));
        rows.push(row);
    }
    let widths: Vec<usize> = (0..rows[0].len())
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

/// One event as a JSON object; `time` is when it arrived.
pub(crate) fn event_json(e: &MemberEvent, now: SystemTime) -> Value {
    let time = humantime::format_rfc3339_millis(now).to_string();
    let mut v = json!({ "time": time, "revision": e.revision, "type": event_type(e) });
    if let Some(m) = &e.member
        && let (Value::Object(o), Value::Object(member)) = (&mut v, member_json(m, now))
    {
        o.extend(member);
    }
    v
}

/// One event as a line of text, stamped with when it arrived.
pub(crate) fn event_line(e: &MemberEvent, now: SystemTime) -> String {
    let time = humantime::format_rfc3339_millis(now);
    match &e.member {
        Some(m) => format!(
            "{time} {} {} {}/{} {} {} session={}",
            e.revision,
            event_type(e),
            m.service,
            m.instance,
            state(m),
            status(m),
            m.session
        ),
        None => format!("{time} {} {}", e.revision, event_type(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_read_like_kubectl() {
        let ms = Duration::from_millis;
        assert_eq!(human(ms(250)), "250ms");
        assert_eq!(human(ms(3_240)), "3.2s");
        assert_eq!(human(ms(27_974)), "27s");
        assert_eq!(human(ms(252_000)), "4m12s");
        assert_eq!(human(ms(7_500_000)), "2h5m");
        assert_eq!(human(ms(273_600_000)), "3d4h");
    }
}
