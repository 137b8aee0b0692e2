//! Every network input is checked here before it reaches the core (SPEC §2
//! "Validation"). Each failure names the field and the rule it broke, so the
//! status a client receives tells it exactly what to fix.

use std::collections::HashMap;
use std::time::Duration;

use crate::liveness::{JoinRequest, Labels, Status};
use crate::pb::heartbeat::v1 as pb;

/// Longest service or instance name.
pub const MAX_NAME_LEN: usize = 128;
/// Most labels a member may carry.
pub const MAX_LABELS: usize = 32;
/// Longest label key.
pub const MAX_LABEL_KEY_LEN: usize = 63;
/// Longest label value, in bytes.
pub const MAX_LABEL_VALUE_LEN: usize = 256;

/// A rejected input: which field, and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {problem}")]
pub struct Invalid {
    /// The field, as a path into the request (`join.service`).
    pub field: String,
    /// What is wrong.
    pub problem: String,
}

fn invalid(field: impl Into<String>, problem: impl Into<String>) -> Invalid {
    Invalid {
        field: field.into(),
        problem: problem.into(),
    }
}

fn check_chars(
    field: &str,
    value: &str,
    allowed: fn(char) -> bool,
    set: &str,
) -> Result<(), Invalid> {
    let len = value.chars().count();
    if len == 0 || len > MAX_NAME_LEN {
        return Err(invalid(
            field,
            format!("must be 1-{MAX_NAME_LEN} characters, got {len}"),
        ));
    }
    match value.chars().find(|&c| !allowed(c)) {
        Some(c) => Err(invalid(
            field,
            format!("character {c:?} is not allowed (use {set})"),
        )),
        None => Ok(()),
    }
}

/// A service name: 1–128 of `[A-Za-z0-9._-]`, not the health service's name
/// and not in the reserved `heartbeat.` namespace.
pub fn service(field: &str, value: &str) -> Result<(), Invalid> {
    check_chars(
        field,
        value,
        |c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'),
        "[A-Za-z0-9._-]",
    )?;
    if value == "grpc.health.v1.Health" {
        return Err(invalid(field, "\"grpc.health.v1.Health\" is reserved"));
    }
    if value.starts_with("heartbeat.") {
        return Err(invalid(
            field,
            "names starting with \"heartbeat.\" are reserved",
        ));
    }
    Ok(())
}

/// An instance name: 1–128 of `[A-Za-z0-9._:-]`.
pub fn instance(field: &str, value: &str) -> Result<(), Invalid> {
    check_chars(
        field,
        value,
        |c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '-'),
        "[A-Za-z0-9._:-]",
    )
}

/// Labels: at most 32; keys 1–63 of `[A-Za-z0-9._/-]`; values ≤ 256 bytes.
pub fn labels(field: &str, labels: HashMap<String, String>) -> Result<Labels, Invalid> {
    if labels.len() > MAX_LABELS {
        return Err(invalid(
            field,
            format!("at most {MAX_LABELS} labels, got {}", labels.len()),
        ));
    }
    for (key, value) in &labels {
        let at = format!("{field}[{key:?}]");
        let len = key.chars().count();
        if len == 0 || len > MAX_LABEL_KEY_LEN {
            return Err(invalid(
                at,
                format!("key must be 1-{MAX_LABEL_KEY_LEN} characters, got {len}"),
            ));
        }
        let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '/' | '-');
        if let Some(c) = key.chars().find(|&c| !allowed(c)) {
            return Err(invalid(
                at,
                format!("key character {c:?} is not allowed (use [A-Za-z0-9._/-])"),
            ));
        }
        if value.len() > MAX_LABEL_VALUE_LEN {
            return Err(invalid(
                at,
                format!(
                    "value must be at most {MAX_LABEL_VALUE_LEN} bytes, got {}",
                    value.len()
                ),
            ));
        }
    }
    Ok(labels.into_iter().collect())
}

/// A requested duration: unset stays `None`; negative or malformed is refused.
pub fn duration(
    field: &str,
    value: Option<prost_types::Duration>,
) -> Result<Option<Duration>, Invalid> {
    let Some(d) = value else { return Ok(None) };
    if d.seconds < 0 || d.nanos < 0 {
        return Err(invalid(field, "must not be negative"));
    }
    if d.nanos > 999_999_999 {
        return Err(invalid(field, "nanos must be at most 999999999"));
    }
    Ok(Some(Duration::new(d.seconds as u64, d.nanos as u32)))
}

/// `Ping.status` or `Join.status`: unset means SERVING.
pub fn member_status(field: &str, value: i32) -> Result<Status, Invalid> {
    pb::MemberStatus::try_from(value)
        .map(Status::from)
        .map_err(|_| invalid(field, format!("{value} is not a MemberStatus")))
}

/// `Join.endpoint` (SPEC §2): empty means none; otherwise `host:port` with
/// an IPv4 address, a bracketed IPv6 address or a DNS name (at most 253
/// characters, labels of 1–63 letters, digits and inner hyphens) and a port
/// of 1–65535.
pub fn endpoint(field: &str, value: &str) -> Result<Option<String>, Invalid> {
    if value.is_empty() {
        return Ok(None);
    }
    let bad = |why: &str| Err(invalid(field, format!("{value:?}: {why}")));
    let Some((host, port)) = value.rsplit_once(':') else {
        return bad("not host:port");
    };
    if port.is_empty() || port.len() > 5 || !port.bytes().all(|b| b.is_ascii_digit()) {
        return bad("the port is not a number");
    }
    if !matches!(port.parse::<u32>(), Ok(1..=65_535)) {
        return bad("the port is not in 1-65535");
    }
    if let Some(v6) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        if v6.parse::<std::net::Ipv6Addr>().is_err() {
            return bad("not an IPv6 address in brackets");
        }
    } else if host.contains(':') {
        return bad("an IPv6 address must be in brackets");
    } else if host.parse::<std::net::Ipv4Addr>().is_err() && !is_dns_name(host) {
        return bad("the host is not an IPv4 address or a DNS name");
    }
    Ok(Some(value.to_owned()))
}

fn is_dns_name(host: &str) -> bool {
    let name = host.strip_suffix('.').unwrap_or(host);
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            (1..=63).contains(&label.len())
                && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
        // A name of digits and dots only is a malformed IPv4 address.
        && !name.bytes().all(|b| b.is_ascii_digit() || b == b'.')
}

/// A service filter of ListMembers / WatchMembers: empty means all.
pub fn service_filter(field: &str, value: &str) -> Result<Option<String>, Invalid> {
    if value.is_empty() {
        return Ok(None);
    }
    service(field, value)?;
    Ok(Some(value.to_owned()))
}

/// A whole Join.
pub fn join(join: pb::Join) -> Result<JoinRequest, Invalid> {
    service("join.service", &join.service)?;
    instance("join.instance", &join.instance)?;
    let endpoint = endpoint("join.endpoint", &join.endpoint)?;
    Ok(JoinRequest {
        endpoint,
        interval: duration("join.interval", join.interval)?,
        timeout: duration("join.timeout", join.timeout)?,
        labels: labels("join.labels", join.labels)?,
        status: member_status("join.status", join.status)?,
        service: join.service,
        instance: join.instance,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_table() {
        let long = format!("{}.example", "a".repeat(250));
        let label64 = format!("{}.example:80", "a".repeat(64));
        for ok in [
            "10.0.0.7:8080",
            "[::1]:443",
            "[2001:db8::1]:1",
            "web-1.default.svc.cluster.local:65535",
            "localhost:80",
            "host.:80",
        ] {
            assert_eq!(endpoint("e", ok), Ok(Some(ok.to_owned())), "{ok}");
        }
        assert_eq!(endpoint("e", ""), Ok(None));
        for bad in [
            "host",
            ":80",
            "host:",
            "host:0",
            "host:65536",
            "host:8o",
            "::1:80",
            "[::1]",
            "[zz]:80",
            "a b:80",
            "-a:80",
            "a-:80",
            "a..b:80",
            "300.1.1.1:80",
            "10.0.0:80",
            &format!("{long}:80"),
            &label64,
        ] {
            let e = endpoint("join.endpoint", bad).unwrap_err();
            assert_eq!(e.field, "join.endpoint", "{bad}");
        }
    }

    #[test]
    fn names() {
        assert!(service("s", "orders.api_v2-x").is_ok());
        assert!(service("s", &"a".repeat(128)).is_ok());
        let e = service("join.service", &"a".repeat(129)).unwrap_err();
        assert_eq!(
            e.to_string(),
            "join.service: must be 1-128 characters, got 129"
        );
        assert!(service("s", "").is_err());
        assert!(service("s", "a/b").is_err());
        assert!(service("s", "a:b").is_err());
        assert!(service("s", "grpc.health.v1.Health").is_err());
        assert!(service("s", "heartbeat.v1.Heartbeat").is_err());
        assert!(service("s", "heartbeat").is_ok());
        assert!(service("s", "é").is_err());
        assert!(instance("i", "10.0.0.1:8080").is_ok());
        assert!(instance("i", "pod/1").is_err());
        assert!(instance("i", "a b").is_err());
    }

    #[test]
    fn label_rules() {
        let ok: HashMap<_, _> = [("app.kubernetes.io/name".to_owned(), "x".repeat(256))].into();
        assert!(labels("l", ok).is_ok());
        let too_many: HashMap<_, _> = (0..33).map(|i| (format!("k{i}"), String::new())).collect();
        assert!(labels("l", too_many).unwrap_err().problem.contains("33"));
        let bad_key: HashMap<_, _> = [("a b".to_owned(), String::new())].into();
        assert_eq!(labels("l", bad_key).unwrap_err().field, "l[\"a b\"]");
        let long_key: HashMap<_, _> = [("k".repeat(64), String::new())].into();
        assert!(labels("l", long_key).is_err());
        let empty_key: HashMap<_, _> = [(String::new(), String::new())].into();
        assert!(labels("l", empty_key).is_err());
        let long_value: HashMap<_, _> = [("k".to_owned(), "é".repeat(129))].into();
        assert!(labels("l", long_value).unwrap_err().problem.contains("258"));
    }

    #[test]
    fn durations_and_status() {
        let d = |seconds, nanos| Some(prost_types::Duration { seconds, nanos });
        assert_eq!(duration("d", None), Ok(None));
        assert_eq!(duration("d", d(1, 5)), Ok(Some(Duration::new(1, 5))));
        assert!(duration("d", d(-1, 0)).is_err());
        assert!(duration("d", d(0, -1)).is_err());
        assert!(duration("d", d(0, 1_000_000_000)).is_err());
        assert_eq!(member_status("s", 0), Ok(Status::Serving));
        assert_eq!(member_status("s", 1), Ok(Status::Serving));
        assert_eq!(member_status("s", 2), Ok(Status::NotServing));
        assert!(member_status("s", 3).is_err());
    }
}
