//! loom models of the engine's slot accounting and waiter hand-off.
//!
//! Each model drives [`Engine`] exactly as the pool does: one lock around every engine call, the
//! same `poll_acquire` a `get()` future runs, wakers woken after the lock is released. loom then
//! explores every interleaving of the threads (bounded by `LOOM_MAX_PREEMPTIONS`).
//!
//! Run with `RUSTFLAGS="--cfg millpond_loom" cargo test --release --lib loom_models`.

use std::future::poll_fn;
use std::task::Poll;
use std::time::Duration;

use loom::future::block_on;
use loom::thread;
use tokio::time::Instant;

use super::config::Config;
use super::engine::{Engine, Entry, Handoff, Step};
use super::error::Error;
use super::guard::Metadata;
use super::wait_list::WaiterKey;
use crate::sync::{Arc, Mutex};

type Shared = Arc<Mutex<Engine<u32, std::io::Error>>>;

fn engine(max_size: usize) -> Shared {
    let config = Config { max_size, ..Config::default() };
    Arc::new(Mutex::new(Engine::new(&config)))
}

fn entry(id: u32) -> Entry<u32> {
    Entry { resource: id, meta: Metadata::new(Instant::now(), None) }
}

/// Carries out a hand-off as the pool does: wake outside the lock; a closed resource is dropped.
fn finish(handoff: Handoff<u32>) {
    match handoff {
        Handoff::Waiter(waker) => waker.into_iter().for_each(std::task::Waker::wake),
        Handoff::Kept | Handoff::Close(..) => {}
    }
}

/// Runs the creations a poll planned, the way creation tasks would, asserting the bound.
fn create(shared: &Shared, count: usize, max_size: usize) {
    for id in 0..count {
        let handoff = {
            let mut engine = shared.lock();
            assert!(engine.status().size <= max_size);
            engine.created(entry(100 + id as u32), Duration::ZERO)
        };
        finish(handoff);
    }
}

/// Puts one resource in the pool and checks it out, as a caller holding it.
fn check_out_one(shared: &Shared) -> Entry<u32> {
    let mut key = None;
    let waker = futures_noop_waker();
    let mut engine = shared.lock();
    let (poll, creations) = engine.poll_acquire(&mut key, &waker, Instant::now(), far(), None);
    assert!(poll.is_pending());
    assert_eq!(creations.creations, 1);
    let handoff = engine.created(entry(1), Duration::ZERO);
    assert!(matches!(handoff, Handoff::Waiter(_)));
    let key = key.expect("queued");
    match engine.poll_waiter(key, &waker, Instant::now()) {
        Poll::Ready(Ok(entry)) => entry,
        _ => panic!("the creation was handed to the only waiter"),
    }
}

/// A deadline no model reaches.
fn far() -> Instant {
    Instant::now() + Duration::from_secs(3600)
}

fn futures_noop_waker() -> std::task::Waker {
    std::task::Waker::noop().clone()
}

/// One `get()`: polls until served, planning and running creations like the pool does.
fn get(shared: &Shared, max_size: usize) -> Result<Entry<u32>, Error<std::io::Error>> {
    let mut key: Option<WaiterKey> = None;
    block_on(poll_fn(|cx| {
        let (poll, creations) = shared.lock().poll_acquire(&mut key, cx.waker(), Instant::now());
        create(shared, creations.creations, max_size);
        poll.map(|step| match step {
            Ok(Step::Fresh(entry) | Step::Handed(entry)) => Ok(entry),
            Ok(Step::Expired(_)) => unreachable!("no lifetimes in these models"),
            Err(err) => Err(err),
        })
    }))
}

#[test]
fn release_wakes_a_waiter_queued_concurrently() {
    loom::model(|| {
        let shared = engine(1);
        let held = check_out_one(&shared);
        let releaser = {
            let shared = shared.clone();
            thread::spawn(move || {
                let handoff = shared.lock().release(held, Duration::ZERO);
                finish(handoff);
            })
        };
        let got = get(&shared, 1).expect("served by the released resource");
        releaser.join().unwrap();
        assert_eq!(got.resource, 1);
        let status = shared.lock().status();
        assert_eq!((status.size, status.idle, status.in_use, status.waiters), (1, 0, 1, 0));
    });
}

#[test]
fn get_cancelled_after_one_poll_leaks_nothing() {
    loom::model(|| {
        let shared = engine(1);
        let held = check_out_one(&shared);
        let releaser = {
            let shared = shared.clone();
            thread::spawn(move || {
                let handoff = shared.lock().release(held, Duration::ZERO);
                finish(handoff);
            })
        };
        // Poll once, then drop the `get()` as a cancelled future does.
        let waker = futures_noop_waker();
        let mut key = None;
        let (poll, creations) =
            shared.lock().poll_acquire(&mut key, &waker, Instant::now(), far(), None);
        assert_eq!(creations.creations, 0, "the pool is full: nothing to create");
        if poll.is_pending() {
            let key = key.expect("queued");
            let handoff = shared.lock().cancel_waiter(key);
            finish(handoff);
        } else if let Poll::Ready(Ok(Step::Fresh(entry))) = poll {
            let handoff = shared.lock().release(entry, Duration::ZERO);
            finish(handoff);
        }
        releaser.join().unwrap();
        let status = shared.lock().status();
        assert_eq!((status.size, status.idle, status.in_use, status.waiters), (1, 1, 0, 0));
    });
}

#[test]
fn creations_in_flight_never_exceed_max_size() {
    loom::model(|| {
        let shared = engine(1);
        let callers: Vec<_> = (0..2)
            .map(|_| {
                let shared = shared.clone();
                thread::spawn(move || {
                    let entry = get(&shared, 1).expect("both callers are served in turn");
                    let handoff = shared.lock().release(entry, Duration::ZERO);
                    finish(handoff);
                })
            })
            .collect();
        for caller in callers {
            caller.join().unwrap();
        }
        let status = shared.lock().status();
        assert_eq!((status.size, status.idle, status.creating, status.waiters), (1, 1, 0, 0));
    });
}

#[test]
fn close_fails_waiters_and_frees_every_slot() {
    loom::model(|| {
        let shared = engine(1);
        let held = check_out_one(&shared);
        let waiter = {
            let shared = shared.clone();
            thread::spawn(move || get(&shared, 1).map(|entry| entry.resource))
        };
        let (idle, wakers) = shared.lock().close(None);
        assert!(idle.is_empty());
        wakers.into_iter().for_each(std::task::Waker::wake);
        let outcome = waiter.join().unwrap();
        assert!(matches!(outcome, Err(Error::Closed)), "{outcome:?}");
        let handoff = shared.lock().release(held, Duration::ZERO);
        assert!(matches!(handoff, Handoff::Close(..)));
        assert_eq!(shared.lock().status().size, 0);
    });
}
