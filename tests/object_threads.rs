//! The object pool across threads: bounds, thread exit, trimming other threads' caches, and
//! values whose own `Drop` uses a pool.
#![allow(clippy::disallowed_types)]

use std::cell::RefCell;
use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};

use millpond::object::{ObjectPool, OwnedObject};

/// A value with a unique number that counts its live instances.
struct Tracked {
    id: usize,
    alive: Arc<AtomicUsize>,
}

impl Drop for Tracked {
    fn drop(&mut self) {
        self.alive.fetch_sub(1, Ordering::Relaxed);
    }
}

fn tracked_pool(max_idle: usize, alive: &Arc<AtomicUsize>) -> ObjectPool<Tracked> {
    let next = AtomicUsize::new(0);
    let alive = Arc::clone(alive);
    ObjectPool::builder(move || {
        alive.fetch_add(1, Ordering::Relaxed);
        Tracked { id: next.fetch_add(1, Ordering::Relaxed), alive: Arc::clone(&alive) }
    })
    .max_idle(max_idle)
    .thread_cache(4)
    .build()
    .unwrap()
}

#[test]
fn bounds_hold_and_nothing_is_shared_or_leaked_under_many_threads() {
    let alive = Arc::new(AtomicUsize::new(0));
    let pool = tracked_pool(12, &alive);
    let held_ids = Mutex::new(HashSet::new());
    std::thread::scope(|scope| {
        let threads: Vec<_> = (0..8u64)
            .map(|seed| {
                let (pool, held_ids) = (&pool, &held_ids);
                scope.spawn(move || {
                    let mut rng = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
                    for _ in 0..2_000 {
                        rng =
                            rng.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                        let batch: Vec<_> = (0..(rng >> 61) as usize).map(|_| pool.get()).collect();
                        for value in &batch {
                            assert!(held_ids.lock().unwrap().insert(value.id), "handed out twice");
                        }
                        assert!(pool.status().idle <= 12, "max_idle broken");
                        for value in &batch {
                            held_ids.lock().unwrap().remove(&value.id);
                        }
                    }
                })
            })
            .collect();
        // An explicit join waits for the thread's thread-local destructors too, which hand its
        // cache back; the scope's implicit join only waits for the closure.
        threads.into_iter().for_each(|thread| thread.join().unwrap());
    });
    // Every thread has exited and handed its cache back.
    let status = pool.status();
    assert!(status.idle <= 12, "{status:?}");
    assert_eq!(status.in_use, 0, "{status:?}");
    assert_eq!(status.live, status.idle, "{status:?}");
    assert_eq!(status.created - status.discarded, status.live as u64, "{status:?}");
    assert_eq!(alive.load(Ordering::Relaxed), status.live, "no value leaked");
    drop(pool);
    assert_eq!(alive.load(Ordering::Relaxed), 0);
}

#[test]
fn an_exiting_thread_gives_its_cached_values_back() {
    let alive = Arc::new(AtomicUsize::new(0));
    let pool = tracked_pool(16, &alive);
    std::thread::scope(|scope| {
        let thread = scope.spawn(|| {
            let held: Vec<_> = (0..5).map(|_| pool.get()).collect();
            drop(held); // they stay in this thread's cache
        });
        // Joined explicitly: that waits for the thread-local destructors that hand the cache back.
        thread.join().unwrap();
    });
    assert_eq!(pool.status().idle, 5);
    let held: Vec<_> = (0..5).map(|_| pool.get()).collect();
    assert_eq!(pool.status().created, 5, "all five reused on another thread");
    drop(held);
}

#[test]
fn trim_reaches_another_threads_cache_on_its_next_use() {
    let alive = Arc::new(AtomicUsize::new(0));
    let pool = tracked_pool(16, &alive);
    let (go, wait) = mpsc::channel::<()>();
    let (done, finished) = mpsc::channel::<()>();
    std::thread::scope(|scope| {
        let pool = &pool;
        scope.spawn(move || {
            let held: Vec<_> = (0..3).map(|_| pool.get()).collect();
            drop(held);
            done.send(()).unwrap();
            wait.recv().unwrap();
            drop(pool.get()); // the first use after the trim hands the cache back
            done.send(()).unwrap();
            wait.recv().unwrap();
        });
        finished.recv().unwrap();
        pool.trim(0);
        assert_eq!(pool.status().idle, 3, "still in the other thread's cache");
        go.send(()).unwrap();
        finished.recv().unwrap();
        let status = pool.status();
        assert_eq!((status.idle, status.discarded, status.created), (1, 3, 4), "{status:?}");
        go.send(()).unwrap();
    });
}

thread_local! {
    static PARKED: RefCell<Option<OwnedObject<Vec<u8>>>> = const { RefCell::new(None) };
}

#[test]
fn a_value_dropped_during_thread_teardown_still_comes_back() {
    let pool = Arc::new(ObjectPool::builder(Vec::<u8>::new).build().unwrap());
    let worker = Arc::clone(&pool);
    std::thread::spawn(move || {
        // Dropped by a thread-local destructor, possibly after the pool's own thread-local
        // state is gone: the value then goes straight to the shared store.
        PARKED.with(|parked| *parked.borrow_mut() = Some(worker.get_owned()));
    })
    .join()
    .unwrap();
    let status = pool.status();
    assert_eq!((status.idle, status.live), (1, 1), "{status:?}");
}

#[test]
fn values_whose_drop_uses_a_pool_are_released_without_panicking() {
    struct UsesPool(Arc<ObjectPool<Vec<u8>>>);
    impl Drop for UsesPool {
        fn drop(&mut self) {
            self.0.get().push(1);
        }
    }
    let inner = Arc::new(ObjectPool::builder(Vec::<u8>::new).build().unwrap());
    let handle = Arc::clone(&inner);
    let outer = ObjectPool::builder(move || UsesPool(Arc::clone(&handle))).build().unwrap();
    let held: Vec<_> = (0..3).map(|_| outer.get()).collect();
    drop(held);
    // Trimming drops the cached values while this thread's cache registry is in use.
    outer.trim(0);
    assert_eq!(outer.status().discarded, 3);
    let status = inner.status();
    assert_eq!((status.in_use, status.live), (0, status.idle), "{status:?}");
    assert!(status.created >= 1);
    drop(outer);
}

#[test]
fn a_thread_that_takes_an_exited_threads_place_starts_from_a_clean_cache() {
    let alive = Arc::new(AtomicUsize::new(0));
    let pool = tracked_pool(16, &alive);
    for round in 1..=3 {
        // Thread-local slots are reused by later threads: each one here most likely takes the
        // slot the one before left, detached, and must count and hand back its own values.
        std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    let held: Vec<_> = (0..5).map(|_| pool.get()).collect();
                    drop(held);
                    assert_eq!(pool.status().idle, 5, "round {round}");
                })
                .join()
                .unwrap();
        });
        let status = pool.status();
        assert_eq!((status.idle, status.created), (5, 5), "round {round}: {status:?}");
    }
}
