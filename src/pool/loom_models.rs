//! loom models of the engine's slot accounting and waiter hand-off, and of the handle count that
//! closes the pool.
//!
//! Each model drives [`Engine`] exactly as the pool does: one lock around every engine call, the
//! same `poll_acquire` a `get()` future runs, wakers woken after the lock is released. loom then
//! explores every interleaving of the threads (bounded by `LOOM_MAX_PREEMPTIONS`).
//!
//! Run with `RUSTFLAGS="--cfg millpond_loom" cargo test --release --lib loom_models`.

use std::future::poll_fn;
use std::task::{Poll, Waker};
use std::time::Duration;

use loom::future::block_on;
use loom::thread;
use tokio::time::Instant;

use super::cache::{IdleCache, LocalIdle, Put};
use super::config::Config;
use super::engine::{self, Engine, Entry, Handoff, Step, Wake};
use super::error::Error;
use super::guard::Metadata;
use super::ticket::Ticket;
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
            assert!(engine.status(0).size <= max_size);
            engine.created(entry(100 + id as u32), Duration::ZERO, Instant::now())
        };
        finish(handoff);
    }
}

/// A deadline no model reaches.
fn far() -> Instant {
    Instant::now() + Duration::from_secs(3600)
}

/// What one look at the pool gives a caller in these models.
type Looked = Result<Step<u32>, Error<std::io::Error>>;

/// A caller's place in the queue and its hand-off cell, as a `get()` future keeps them.
type Place = Option<engine::Place<u32, std::io::Error>>;

/// One poll of a `get()`, exactly as `acquire.rs` does it: the ticket alone once queued, the
/// engine (under the lock) for the first look.
fn poll_get(
    shared: &Shared,
    place: &mut Place,
    waker: &Waker,
    cache: Option<&dyn LocalIdle<u32>>,
) -> (Poll<Looked>, Wake) {
    if let Some((_, ticket)) = place {
        let poll = ticket.poll(waker);
        if poll.is_ready() {
            *place = None;
        }
        return (poll, Wake::default());
    }
    shared.lock().poll_acquire(
        place,
        || Arc::new(Ticket::new(waker)),
        Instant::now(),
        far(),
        None,
        cache,
    )
}

/// Gives up a place, as dropping a `get()` future does.
fn cancel(shared: &Shared, place: Place) {
    if let Some((key, ticket)) = place {
        let handoff = shared.lock().cancel_waiter(key, &ticket, Instant::now());
        finish(handoff);
    }
}

/// Puts one resource in the pool and checks it out, as a caller holding it.
fn check_out_one(shared: &Shared) -> Entry<u32> {
    let mut place = None;
    let waker = Waker::noop();
    let (poll, wake) = poll_get(shared, &mut place, waker, None);
    assert!(poll.is_pending());
    assert_eq!(wake.creations, 1);
    let handoff = shared.lock().created(entry(1), Duration::ZERO, Instant::now());
    assert!(matches!(handoff, Handoff::Waiter(_)));
    match poll_get(shared, &mut place, waker, None).0 {
        Poll::Ready(Ok(Step::Handed(entry, ..))) => entry,
        _ => panic!("the creation was handed to the only waiter"),
    }
}

/// One `get()`: polls until served, planning and running creations like the pool does.
fn get(shared: &Shared, max_size: usize) -> Result<Entry<u32>, Error<std::io::Error>> {
    let mut place: Place = None;
    block_on(poll_fn(|cx| {
        let (poll, wake) = poll_get(shared, &mut place, cx.waker(), None);
        create(shared, wake.creations, max_size);
        poll.map(|step| match step {
            Ok(Step::Fresh(entry) | Step::Handed(entry, ..)) => Ok(entry),
            Ok(Step::Expired(_)) => unreachable!("no lifetimes in these models"),
            Err(err) => Err(err),
        })
    }))
}

fn release(shared: &Shared, entry: Entry<u32>) {
    let handoff = shared.lock().put_back(entry, Instant::now());
    finish(handoff);
}

#[test]
fn release_wakes_a_waiter_queued_concurrently() {
    loom::model(|| {
        let shared = engine(1);
        let held = check_out_one(&shared);
        let releaser = {
            let shared = shared.clone();
            thread::spawn(move || release(&shared, held))
        };
        let got = get(&shared, 1).expect("served by the released resource");
        releaser.join().unwrap();
        assert_eq!(got.resource, 1);
        let status = shared.lock().status(0);
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
            thread::spawn(move || release(&shared, held))
        };
        // Poll once, then drop the `get()` as a cancelled future does.
        let mut place = None;
        let (poll, wake) = poll_get(&shared, &mut place, Waker::noop(), None);
        assert_eq!(wake.creations, 0, "the pool is full: nothing to create");
        match poll {
            Poll::Pending => cancel(&shared, place),
            Poll::Ready(Ok(Step::Fresh(entry))) => release(&shared, entry),
            Poll::Ready(_) => panic!("unexpected outcome"),
        }
        releaser.join().unwrap();
        let status = shared.lock().status(0);
        assert_eq!((status.size, status.idle, status.in_use, status.waiters), (1, 1, 0, 0));
    });
}

#[test]
fn a_grant_to_a_caller_that_gives_up_reaches_the_next_caller() {
    loom::model(|| {
        let shared = engine(1);
        let held = check_out_one(&shared);
        // The first caller queues, then gives up while the resource comes back and a second
        // caller queues behind it: whatever the order, the second caller is served.
        let mut first = None;
        let (poll, _) = poll_get(&shared, &mut first, Waker::noop(), None);
        assert!(poll.is_pending());
        let second = {
            let shared = shared.clone();
            thread::spawn(move || get(&shared, 1).map(|entry| entry.resource))
        };
        let releaser = {
            let shared = shared.clone();
            thread::spawn(move || release(&shared, held))
        };
        cancel(&shared, first);
        releaser.join().unwrap();
        assert_eq!(second.join().unwrap().expect("served"), 1);
        let status = shared.lock().status(0);
        assert_eq!((status.size, status.in_use, status.waiters), (1, 1, 0));
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
                    release(&shared, entry);
                })
            })
            .collect();
        for caller in callers {
            caller.join().unwrap();
        }
        let status = shared.lock().status(0);
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
        let handoff = shared.lock().put_back(held, Instant::now());
        assert!(matches!(handoff, Handoff::Close(..)));
        assert_eq!(shared.lock().status(0).size, 0);
    });
}

type Cache = Arc<IdleCache<Entry<u32>, ()>>;

/// One shard, so every thread of the model contends on it.
fn cache() -> Cache {
    let cache = IdleCache::new(1, true);
    cache.install_handles(|| ());
    Arc::new(cache)
}

/// A return as `Pooled::drop` does it: into the thread cache, or to the engine if declined.
fn give_back(shared: &Shared, cache: &Cache, entry: Entry<u32>) {
    if let Put::Declined(entry) = cache.put(entry, Instant::now(), None, |_, _| true) {
        let handoff = {
            let mut engine = shared.lock();
            let handoff = engine.put_back(entry, Instant::now());
            engine.relax_demand(Some(&**cache as &dyn LocalIdle<u32>));
            handoff
        };
        finish(handoff);
    }
}

/// A `get()` as `acquire` does it: the thread cache first, then the engine (which spills the
/// cache before queueing).
fn get_cached(shared: &Shared, cache: &Cache) -> Entry<u32> {
    if let (Some(entry), _) = cache.take(Instant::now()) {
        return entry;
    }
    let mut place: Place = None;
    let local: &dyn LocalIdle<u32> = &**cache;
    block_on(poll_fn(|cx| {
        let (poll, _) = poll_get(shared, &mut place, cx.waker(), Some(local));
        poll.map(|step| match step {
            Ok(Step::Fresh(entry) | Step::Handed(entry, ..)) => entry,
            Ok(Step::Expired(_)) | Err(_) => unreachable!("no lifetimes, no close in this model"),
        })
    }))
}

#[test]
fn a_return_racing_a_queueing_caller_is_never_stranded_in_the_cache() {
    loom::model(|| {
        let shared = engine(1);
        let cache = cache();
        let held = check_out_one(&shared);
        let returner = {
            let (shared, cache) = (shared.clone(), cache.clone());
            thread::spawn(move || give_back(&shared, &cache, held))
        };
        // Without the demand flag this caller could queue while the resource sits cached, and
        // the model would report a deadlock.
        let got = get_cached(&shared, &cache);
        returner.join().unwrap();
        assert_eq!(got.resource, 1);
        let status = shared.lock().status(0);
        assert_eq!((status.size, status.in_use, status.waiters), (1, 1, 0));
    });
}

#[test]
fn close_racing_a_return_leaves_nothing_in_the_cache() {
    loom::model(|| {
        let shared = engine(1);
        let cache = cache();
        let held = check_out_one(&shared);
        let returner = {
            let (shared, cache) = (shared.clone(), cache.clone());
            thread::spawn(move || give_back(&shared, &cache, held))
        };
        let local: &dyn LocalIdle<u32> = &*cache;
        let (idle, _wakers) = shared.lock().close(Some(local));
        returner.join().unwrap();
        let mut stranded = 0;
        local.spill(&mut |_| stranded += 1);
        assert_eq!(stranded, 0, "a return after close must not be cached");
        // The resource was closed exactly once: by `close` (it was cached first) or on return.
        assert_eq!(shared.lock().status(0).size, 0);
        assert!(idle.len() <= 1);
    });
}

/// A manager the handle-count model never asks for a resource.
struct Unused;

impl super::manager::Manager for Unused {
    type Resource = u32;
    type Error = std::io::Error;

    async fn create(&self) -> Result<u32, std::io::Error> {
        Ok(0)
    }
}

/// Two threads clone and drop `Pool` handles (`Pool::clone` is `add_handle`, its drop is
/// `remove_handle`), one cloning from the handle it holds while the other drops its own: the
/// pool is closed once the last handle is gone, never while one is still held.
#[test]
fn the_last_pool_handle_closes_the_pool_and_no_other_does() {
    // The pool needs a runtime handle to exist; nothing in this model spawns on it.
    let tokio = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let runtime = tokio.handle().clone();
    loom::model(move || {
        let config = Config { max_size: 1, ..Config::default() };
        let shared = Arc::new(super::shared::Shared::new(Unused, config, runtime.clone()));
        let is_closed = {
            let shared = Arc::clone(&shared);
            move || shared.engine.lock().is_closed()
        };
        // A second handle, moved to another thread as a cloned `Pool` would be.
        shared.add_handle();
        let other = {
            let (shared, is_closed) = (Arc::clone(&shared), is_closed.clone());
            thread::spawn(move || {
                shared.add_handle();
                assert!(!is_closed(), "closed while this thread held two handles");
                shared.remove_handle();
                assert!(!is_closed(), "closed while this thread held a handle");
                shared.remove_handle();
            })
        };
        assert!(!is_closed(), "closed while the first handle was held");
        shared.remove_handle();
        other.join().unwrap();
        assert!(is_closed(), "every handle is gone but the pool is open");
    });
}
