//! The map's Watch semantics (every transition once, in order; lagging
//! watchers skip ahead), List's cap, and member names served from a table.

use super::*;
use std::time::Duration;
use tokio::time::timeout;

const S: Health = Some(Status::Serving);
const N: Health = Some(Status::NotServing);

async fn next(w: &mut Watch) -> Option<Health> {
    timeout(Duration::from_secs(5), w.next())
        .await
        .expect("watch answers")
}

#[tokio::test]
async fn watch_sends_every_transition_once_in_order() {
    let m = HealthMap::new();
    let mut w = m.watch("a");
    assert_eq!(next(&mut w).await, Some(None), "unknown at first");
    for s in [S, S, N, N, S, None, None, N] {
        m.set("a", s);
    }
    for want in [S, N, S, None, N] {
        assert_eq!(next(&mut w).await, Some(want));
    }
    m.close_watches();
    assert_eq!(next(&mut w).await, None);
}

#[tokio::test]
async fn lagging_watcher_skips_to_current_without_duplicates() {
    let m = HealthMap::new();
    m.set("a", S);
    let mut w = m.watch("a");
    assert_eq!(next(&mut w).await, Some(S));
    for i in 0..(WATCH_BUFFER * 3) {
        m.set("a", if i % 2 == 0 { N } else { S });
    }
    m.set("a", N);
    let mut seen = vec![];
    m.close_watches();
    while let Some(s) = next(&mut w).await {
        seen.push(s);
    }
    assert_eq!(seen.last(), Some(&N));
    assert!(
        seen.windows(2).all(|p| p[0] != p[1]),
        "no duplicates: {seen:?}"
    );
}

#[test]
fn unknown_watched_names_are_forgotten_when_the_watch_ends() {
    let m = HealthMap::new();
    let w = m.watch("ghost");
    assert_eq!(m.entries(), 1);
    assert_eq!(m.list(100).unwrap(), vec![]);
    drop(w);
    assert_eq!(m.entries(), 0);
    m.set("a", S);
    m.set("a", None);
    assert_eq!(m.entries(), 0);
}

/// A member table behind its own lock, as the server's registry is.
#[derive(Clone, Default)]
struct Table(Arc<Mutex<std::collections::BTreeMap<String, Status>>>);

impl MemberTable for std::collections::BTreeMap<String, Status> {
    fn health(&self, name: &str) -> Health {
        self.get(name).copied()
    }
    fn listed(&self) -> usize {
        self.len()
    }
    fn each(&self, f: &mut dyn FnMut(&str, Status)) {
        for (n, s) in self {
            f(n, *s);
        }
    }
}

impl MemberHealth for Table {
    fn read(&self, f: &mut dyn FnMut(&dyn MemberTable)) {
        f(&*self.0.lock().unwrap());
    }
}

impl Table {
    /// Changes a member the way the server does: the table and the
    /// map's copy under the table's lock.
    fn set(&self, m: &HealthMap, name: &str, status: Health) {
        let mut t = self.0.lock().unwrap();
        match status {
            Some(s) => t.insert(name.to_owned(), s),
            None => t.remove(name),
        };
        m.set(name, status);
    }
}

#[tokio::test]
async fn member_names_are_read_from_the_table_and_kept_only_while_watched() {
    let m = HealthMap::new();
    let table = Table::default();
    m.serve_members_from(table.clone());
    m.set("db", S);
    table.set(&m, "db/a", S);
    table.set(&m, "db/b", N);
    assert_eq!(m.entries(), 1, "only the service name has an entry");
    assert_eq!((m.get("db/a"), m.get("db/b"), m.get("db/c")), (S, N, None));
    let listed = m.list(100).unwrap();
    assert_eq!(
        listed,
        vec![
            ("db".to_owned(), Status::Serving),
            ("db/a".to_owned(), Status::Serving),
            ("db/b".to_owned(), Status::NotServing),
        ]
    );
    assert_eq!(m.list(2), Err(3));

    let mut w = m.watch("db/a");
    let mut unknown = m.watch("db/c");
    assert_eq!(m.entries(), 3);
    assert_eq!(
        m.list(100).unwrap().len(),
        3,
        "a watched name is listed once"
    );
    assert_eq!(next(&mut w).await, Some(S));
    assert_eq!(next(&mut unknown).await, Some(None));
    for s in [N, N, S, None] {
        table.set(&m, "db/a", s);
    }
    table.set(&m, "db/c", S);
    for want in [N, S, None] {
        assert_eq!(next(&mut w).await, Some(want));
    }
    assert_eq!(next(&mut unknown).await, Some(S));
    drop((w, unknown));
    assert_eq!(
        m.entries(),
        1,
        "member names leave the map with their watchers"
    );
    assert_eq!(m.get("db/c"), S);
}

#[test]
fn list_is_sorted_and_capped() {
    let m = HealthMap::new();
    for i in (0..100).rev() {
        m.set(format!("s{i:03}"), S);
    }
    let l = m.list(100).unwrap();
    assert_eq!(l.len(), 100);
    assert_eq!(l[0].0, "s000");
    m.set("s100", N);
    assert_eq!(m.list(100), Err(101));
    m.set("s100", None);
    assert_eq!(m.list(100).map(|l| l.len()), Ok(100));
}
