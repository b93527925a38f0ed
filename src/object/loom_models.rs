//! loom models of the hand-off between thread caches and the shared store.
//!
//! Each thread of a model owns a [`LocalCache`] exactly as a real thread owns the one in its
//! registry, and calls the same `take` / `put` / `detach` the pool calls. Values are numbered;
//! at the end every number is in exactly one place (the shelf, a cache, or the discarded list),
//! which is "no value lost or duplicated", and the engine's own debug assertions check the
//! `max_idle` bound at every locked step.
//!
//! Run with `RUSTFLAGS="--cfg millpond_loom" cargo test --release --lib loom_models`.

use loom::thread;

use super::store::{Limits, LocalCache, Put, Store};
use crate::sync::{Arc, Mutex};

type Ledger = Arc<Mutex<Vec<u32>>>;

/// A numbered value that records its number in the ledger when dropped, wherever that happens
/// (a refused return, a trim, the end of the model).
#[derive(Debug)]
struct Token {
    id: u32,
    dropped: Ledger,
}

impl Drop for Token {
    fn drop(&mut self) {
        self.dropped.lock().push(self.id);
    }
}

fn token(id: u32, dropped: &Ledger) -> Token {
    Token { id, dropped: Arc::clone(dropped) }
}

fn store(max_idle: usize, thread_cache: usize, initial: Vec<Token>) -> Arc<Store<Token>> {
    Arc::new(Store::new(Limits { max_idle, thread_cache, max_total: None }, initial))
}

/// Returns a value the way a guard's drop does: a refused value is dropped.
fn put(cache: &mut LocalCache<Token>, store: &Store<Token>, value: Token) {
    if let Put::Full(value) = cache.put(store, value) {
        drop(value);
    }
}

/// Checks, once every cache detached, that the bound held and that each of `expected` was
/// dropped exactly once after the shelf is emptied: no value leaked, none was duplicated.
fn assert_conserved(store: &Store<Token>, dropped: &Ledger, expected: &[u32]) {
    let (shelf_len, reserved) = store.shelf_state();
    assert_eq!(reserved, 0, "detached caches keep no reservation");
    assert!(shelf_len <= store.limits().max_idle);
    drop(store.trim(0));
    let mut seen = dropped.lock().clone();
    seen.sort_unstable();
    assert_eq!(seen, expected, "every value dropped exactly once");
}

/// Two threads take and return three values each through caches of two, so that a cache spills
/// to the shelf and returns go past the bound, then exit. Nothing is lost, nothing is handed out
/// twice, and exactly `max_idle` values stay.
#[test]
fn caches_and_shelf_conserve_values() {
    loom::model(|| {
        let dropped: Ledger = Arc::new(Mutex::new(Vec::new()));
        let store = store(3, 2, (1..=3).map(|id| token(id, &dropped)).collect());
        let threads: Vec<_> = [10, 20]
            .into_iter()
            .map(|fresh| {
                let store = Arc::clone(&store);
                let dropped = Arc::clone(&dropped);
                thread::spawn(move || {
                    let mut cache = LocalCache::attach(&store);
                    let values: Vec<Token> = (fresh..fresh + 3)
                        .map(|id| cache.take(&store).unwrap_or_else(|| token(id, &dropped)))
                        .collect();
                    let ids: Vec<u32> = values.iter().map(|value| value.id).collect();
                    for value in values {
                        put(&mut cache, &store, value);
                    }
                    cache.detach(&store);
                    ids
                })
            })
            .collect();
        let mut expected = vec![1, 2, 3];
        for handle in threads {
            expected.extend(handle.join().unwrap().into_iter().filter(|id| *id >= 10));
        }
        // A value made by one thread may have been reused by the other: count it once.
        expected.sort_unstable();
        expected.dedup();
        // Six values came back to a pool that keeps three: exiting threads lose none of theirs.
        assert_eq!(store.shelf_state().0, 3);
        assert_conserved(&store, &dropped, &expected);
    });
}

/// A trim races with a thread that caches values. The thread hands its values back when it sees
/// the trim; the trim's target holds once it has, and no value is lost or kept twice.
#[test]
fn trim_reaches_a_busy_thread_cache() {
    loom::model(|| {
        let dropped: Ledger = Arc::new(Mutex::new(Vec::new()));
        let initial = (1..=3).map(|id| token(id, &dropped)).collect();
        let store = store(3, 2, initial);
        let worker = {
            let store = Arc::clone(&store);
            let dropped = Arc::clone(&dropped);
            thread::spawn(move || {
                let mut cache = LocalCache::attach(&store);
                let value = cache.take(&store).unwrap_or_else(|| token(10, &dropped));
                let id = value.id;
                put(&mut cache, &store, value);
                // The next use of the cache follows any trim it missed.
                cache.follow_epoch(&store);
                let cached = cache.len();
                cache.detach(&store);
                (id, cached)
            })
        };
        drop(store.trim(1));
        let (id, cached) = worker.join().unwrap();
        let (shelf_len, _) = store.shelf_state();
        // If the worker saw the trim, it handed its values back under the target. If the trim
        // came after the worker's last look, the values still in its cache then (`cached`) were
        // out of the trim's reach and reached the shelf when the worker exited.
        assert!(shelf_len <= 1 + cached, "{shelf_len} on the shelf, {cached} cached");
        let mut expected = vec![1, 2, 3];
        expected.extend((id >= 10).then_some(id));
        assert_conserved(&store, &dropped, &expected);
    });
}

/// Two creations race for the last slot of `max_total`: exactly one is admitted.
#[test]
fn max_total_admits_exactly_one() {
    loom::model(|| {
        let store = Arc::new(Store::<Token>::new(
            Limits { max_idle: 1, thread_cache: 1, max_total: Some(1) },
            Vec::new(),
        ));
        let racers: Vec<_> = (0..2)
            .map(|_| {
                let store = Arc::clone(&store);
                thread::spawn(move || store.admit(true))
            })
            .collect();
        let admitted = racers
            .into_iter()
            .map(|racer| racer.join().unwrap())
            .filter(|admitted| *admitted)
            .count();
        assert_eq!(admitted, 1);
        assert_eq!(store.counts().live, 1);
    });
}
