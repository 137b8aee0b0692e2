//! Arbitrary bytes as the server receives them on a Beat stream: decode,
//! validate, and feed whatever validation accepts into the liveness core.
//! Nothing may panic; everything accepted must obey SPEC §2's rules.

#![no_main]

use std::time::Duration;

use heartbeat::liveness::{CoreConfig, Registry, Status};
use heartbeat::pb::heartbeat::v1::{BeatRequest, beat_request::Kind};
use heartbeat::validate;
use libfuzzer_sys::fuzz_target;
use prost::Message;
use tokio::time::Instant;

fuzz_target!(|data: &[u8]| {
    let Ok(req) = BeatRequest::decode(data) else { return };
    match req.kind {
        Some(Kind::Join(join)) => {
            let Ok(j) = validate::join(join) else { return };
            assert!((1..=128).contains(&j.service.chars().count()));
            assert!((1..=128).contains(&j.instance.chars().count()));
            assert!(!j.service.contains('/') && !j.instance.contains('/'));
            assert!(j.labels.len() <= 32);
            let t0 = Instant::now();
            let mut r = Registry::new(CoreConfig::default());
            let joined = r.join(j.clone(), t0);
            // Whatever was asked, the agreed values are within SPEC §3's bounds.
            assert!(joined.interval >= Duration::from_millis(100) && joined.interval <= Duration::from_secs(60));
            assert!(joined.timeout >= 2 * joined.interval && joined.timeout <= 20 * joined.interval);
            assert!(joined.timeout <= Duration::from_secs(600));
            let name = format!("{}/{}", j.service, j.instance);
            assert_eq!(r.health(&name), Some(Status::Serving));
            r.ping(joined.id, Status::NotServing, t0 + joined.interval).unwrap();
            r.poll(t0 + joined.interval + joined.timeout);
            assert_eq!(r.health(&j.service), Some(Status::NotServing));
        }
        Some(Kind::Ping(ping)) => {
            let _ = validate::member_status("ping.status", ping.status);
        }
        Some(Kind::Leave(_)) | None => {}
    }
});
