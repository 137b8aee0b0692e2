//! criterion benches of the liveness core and the health fan-out: the
//! per-ping path, deadline pop and re-arm, a 100k-member expiry sweep, the
//! WatchMembers event path, and one status flip reaching 10k health Watch
//! subscribers.
//!
//! `cargo bench --bench core` (numbers in BENCHMARKS.md).

use std::hint::black_box;
use std::time::Duration;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use heartbeat::health::HealthMap;
use heartbeat::liveness::{
    CoreConfig, DeadlineQueue, JoinRequest, Labels, MemberId, Registry, Status,
};
use tokio::time::Instant;

fn req(i: usize) -> JoinRequest {
    JoinRequest {
        service: format!("svc{}", i % 10),
        instance: format!("m{i:06}"),
        interval: None,
        timeout: None,
        labels: Labels::new(),
        status: Status::Serving,
        endpoint: None,
    }
}

fn registry(n: usize, t0: Instant) -> (Registry, Vec<MemberId>) {
    let mut r = Registry::new(CoreConfig {
        history: 0,
        ..CoreConfig::default()
    });
    let ids = (0..n).map(|i| r.join(req(i), t0).id).collect();
    r.take_outbox();
    (r, ids)
}

fn ping(c: &mut Criterion) {
    let t0 = Instant::now();
    let (mut r, ids) = registry(10_000, t0);
    let mut i = 0usize;
    let mut now = t0;
    c.bench_function("ping (10k members, no state change)", |b| {
        b.iter(|| {
            i = (i + 1) % ids.len();
            now += Duration::from_nanos(100);
            black_box(r.ping(ids[i], Status::Serving, now)).unwrap();
        })
    });
}

fn deadlines(c: &mut Criterion) {
    let t0 = Instant::now();
    c.bench_function("deadline queue: pop + re-arm (10k entries)", |b| {
        let mut q = DeadlineQueue::new();
        for s in 0..10_000u32 {
            q.schedule(s, t0 + Duration::from_millis(u64::from(s)));
        }
        let mut now = t0;
        b.iter(|| {
            now += Duration::from_millis(1);
            if let Some((when, slot)) = q.pop_due(now) {
                q.schedule(slot, when + Duration::from_secs(10));
            }
        })
    });
}

fn expiry_sweep(c: &mut Criterion) {
    let t0 = Instant::now();
    c.bench_function("expiry sweep: 100k members go SUSPECT then DEAD", |b| {
        b.iter_batched(
            || registry(100_000, t0).0,
            |mut r| {
                r.poll(t0 + Duration::from_secs(10));
                black_box(r.take_outbox());
            },
            BatchSize::LargeInput,
        )
    });
}

fn watch_members_path(c: &mut Criterion) {
    let t0 = Instant::now();
    let (mut r, ids) = registry(10_000, t0);
    let (tx, _rx) = tokio::sync::broadcast::channel(1024);
    let mut i = 0usize;
    // Each member's own status, so that every ping really changes it.
    let mut serving = vec![true; ids.len()];
    c.bench_function("status change: event + broadcast to WatchMembers", |b| {
        b.iter(|| {
            i = (i + 1) % ids.len();
            serving[i] = !serving[i];
            let s = if serving[i] {
                Status::Serving
            } else {
                Status::NotServing
            };
            r.ping(ids[i], s, t0).unwrap();
            assert_eq!(r.outbox().events.len(), 1, "a real change");
            for e in r.outbox().events.drain(..) {
                let _ = tx.send(e);
            }
            r.outbox().health.clear();
            r.outbox().transitions.clear();
        })
    });
}

fn health_fan_out(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let map = HealthMap::new();
    map.set("svc", Some(Status::Serving));
    let mut watches: Vec<_> = (0..10_000).map(|_| map.watch("svc")).collect();
    rt.block_on(async {
        for w in &mut watches {
            w.next().await;
        }
    });
    let mut flip = false;
    c.bench_function("health flip reaching 10k Watch subscribers", |b| {
        b.iter(|| {
            flip = !flip;
            map.set(
                "svc",
                Some(if flip {
                    Status::NotServing
                } else {
                    Status::Serving
                }),
            );
            rt.block_on(async {
                for w in &mut watches {
                    black_box(w.next().await);
                }
            });
        })
    });
}

criterion_group!(
    benches,
    ping,
    deadlines,
    expiry_sweep,
    watch_members_path,
    health_fan_out
);
criterion_main!(benches);
