//! A mirror of one key prefix: a snapshot read at one revision, then every
//! change after it in revision order, through a frozen or dead member and
//! across compaction. This is what every replica's read model will be fed
//! by (CLUSTER.md §2.2), so it promises exactly this:
//!
//! - the first item is a [`Mirrored::Snapshot`] of every key at revision R
//!   (all pages read at R, so the snapshot is one consistent cut);
//! - then each change with a revision above R, once, in revision order;
//! - when the watch cannot resume (its revision was compacted, or etcd
//!   cancelled it), a fresh snapshot, which the consumer takes as replacing
//!   everything it had.
//!
//! The watch asks for progress every `deadline`: no answer within another
//! `deadline` means the member is gone or frozen, and the watch moves to the
//! next endpoint, resuming right after the last revision delivered.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;

use super::Etcd;
use super::pb::etcdserverpb::{
    RangeRequest, WatchCreateRequest, WatchProgressRequest, WatchRequest, watch_request,
};
use super::pb::mvccpb::{KeyValue, event::EventType};

/// One item of the mirror's feed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mirrored {
    /// Every key under the prefix at `revision`: replaces all earlier state.
    Snapshot {
        /// The revision the snapshot was read at.
        revision: i64,
        /// The keys, in key order.
        kvs: Vec<KeyValue>,
    },
    /// A key was created or changed at `kv.mod_revision`.
    Put(KeyValue),
    /// `key` was deleted at `revision`.
    Delete {
        /// The key.
        key: Vec<u8>,
        /// The revision of the deletion.
        revision: i64,
    },
    /// Nothing under the prefix changed up to `revision` (etcd's progress).
    Progress(i64),
}

/// The end of the range of keys starting with `prefix` (etcd's
/// `clientv3.GetPrefixRangeEnd`).
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

/// Keys per page of the snapshot read.
const PAGE: i64 = 1000;

/// Starts mirroring `prefix`; the feed ends when the receiver is dropped.
pub fn mirror(etcd: Arc<Etcd>, prefix: Vec<u8>) -> mpsc::Receiver<Mirrored> {
    let (tx, rx) = mpsc::channel(1024);
    tokio::spawn(async move {
        loop {
            let Some(revision) = snapshot(&etcd, &prefix, &tx).await else {
                return;
            };
            match follow(&etcd, &prefix, revision, &tx).await {
                Follow::Closed => return,
                Follow::Resync => continue,
            }
        }
    });
    rx
}

/// The prefix as it was at `revision`, then every change after it, for one
/// reader catching up from the past (a WatchMembers resume older than a
/// replica's own history). Like [`mirror`], except that the feed ends,
/// instead of starting over, when etcd compacted past `revision` or cannot
/// be read: the reader then takes a snapshot of the present.
pub fn history(etcd: Arc<Etcd>, prefix: Vec<u8>, revision: i64) -> mpsc::Receiver<Mirrored> {
    let (tx, rx) = mpsc::channel(256);
    tokio::spawn(async move {
        let Ok((_, kvs)) = read_all(&etcd, &prefix, revision).await else {
            return;
        };
        if tx.send(Mirrored::Snapshot { revision, kvs }).await.is_err() {
            return;
        }
        let _ = follow(&etcd, &prefix, revision, &tx).await;
    });
    rx
}

/// Reads every key under `prefix` at one revision and sends the snapshot;
/// retries (moving through the endpoints) until it succeeds. `None` when
/// the receiver is gone.
async fn snapshot(etcd: &Etcd, prefix: &[u8], tx: &mpsc::Sender<Mirrored>) -> Option<i64> {
    loop {
        match read_all(etcd, prefix, 0).await {
            Ok((revision, kvs)) => {
                tx.send(Mirrored::Snapshot { revision, kvs }).await.ok()?;
                return Some(revision);
            }
            Err(e) => {
                tracing::debug!(error = %e, "mirror snapshot failed; retrying");
                if tx.is_closed() {
                    return None;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Every key under `prefix` at `at` (0: now), all pages at one revision.
async fn read_all(
    etcd: &Etcd,
    prefix: &[u8],
    at: i64,
) -> Result<(i64, Vec<KeyValue>), super::EtcdError> {
    let end = prefix_end(prefix);
    let (mut revision, mut kvs, mut from) = (at, Vec::new(), prefix.to_vec());
    loop {
        let page = etcd
            .range(RangeRequest {
                key: from.clone(),
                range_end: end.clone(),
                limit: PAGE,
                revision,
                ..Default::default()
            })
            .await?;
        if revision == 0 {
            revision = page.header.map_or(0, |h| h.revision);
        }
        let more = page.more;
        if let Some(last) = page.kvs.last() {
            from = last.key.clone();
            from.push(0);
        }
        kvs.extend(page.kvs);
        if !more {
            return Ok((revision, kvs));
        }
    }
}

enum Follow {
    /// The receiver is gone.
    Closed,
    /// The watch cannot resume: take a fresh snapshot.
    Resync,
}

/// Watches from `after + 1`, re-watching on the next endpoint when a member
/// stops answering, until the receiver is gone or a resync is needed.
async fn follow(etcd: &Etcd, prefix: &[u8], mut after: i64, tx: &mpsc::Sender<Mirrored>) -> Follow {
    let deadline = etcd.deadline();
    loop {
        let (i, mut client) = etcd.watch_client();
        let (requests, rx) = mpsc::channel(4);
        let create = WatchRequest {
            request_union: Some(watch_request::RequestUnion::CreateRequest(
                WatchCreateRequest {
                    key: prefix.to_vec(),
                    range_end: prefix_end(prefix),
                    start_revision: after + 1,
                    progress_notify: true,
                    ..Default::default()
                },
            )),
        };
        let _ = requests.try_send(create);
        let opened = tokio::time::timeout(deadline, client.watch(ReceiverStream::new(rx))).await;
        let Ok(Ok(stream)) = opened else {
            etcd.rotate(i);
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let mut stream = stream.into_inner();
        let mut heard = Instant::now();
        let mut asked = false;
        loop {
            // Ask for progress after `deadline` of silence; give the answer
            // another `deadline`.
            let wake = heard + deadline * if asked { 2 } else { 1 };
            let message = tokio::time::timeout_at(wake, stream.message()).await;
            let response = match message {
                Ok(Ok(Some(r))) => r,
                Err(_) if !asked => {
                    asked = true;
                    let progress = WatchRequest {
                        request_union: Some(watch_request::RequestUnion::ProgressRequest(
                            WatchProgressRequest {},
                        )),
                    };
                    let _ = requests.try_send(progress);
                    continue;
                }
                // Silent past the progress deadline, or broken: elsewhere.
                _ => {
                    etcd.rotate(i);
                    break;
                }
            };
            heard = Instant::now();
            asked = false;
            if response.compact_revision != 0 || response.canceled {
                tracing::info!(
                    compacted = response.compact_revision,
                    reason = response.cancel_reason,
                    "mirror watch cannot resume; taking a fresh snapshot"
                );
                return Follow::Resync;
            }
            let quiet = response.events.is_empty() && !response.created;
            for event in response.events {
                let Some(kv) = event.kv else { continue };
                if kv.mod_revision <= after {
                    continue; // already delivered (a resumed watch overlaps)
                }
                after = kv.mod_revision;
                let item = if event.r#type == EventType::Delete as i32 {
                    Mirrored::Delete {
                        key: kv.key,
                        revision: kv.mod_revision,
                    }
                } else {
                    Mirrored::Put(kv)
                };
                if tx.send(item).await.is_err() {
                    return Follow::Closed;
                }
            }
            // Only a response without events is progress (nothing changed
            // up to its revision); the one confirming the watch carries the
            // store's revision while a catching-up watch's events follow.
            let revision = response.header.map_or(0, |h| h.revision);
            if quiet && revision > after {
                after = revision;
                if tx.send(Mirrored::Progress(revision)).await.is_err() {
                    return Follow::Closed;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_ends() {
        assert_eq!(prefix_end(b"/hb/"), b"/hb0".to_vec());
        assert_eq!(prefix_end(b"a\xff"), b"b".to_vec());
        assert_eq!(prefix_end(b"\xff\xff"), vec![0]);
    }
}
