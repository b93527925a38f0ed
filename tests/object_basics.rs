//! The object pool on one thread: reuse, hooks, bounds, detaching, trimming, configuration.
#![allow(clippy::disallowed_types)]

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use millpond::object::{Object, ObjectPool, OwnedObject};

fn buffers() -> ObjectPool<Vec<u8>> {
    ObjectPool::builder(|| Vec::with_capacity(64)).reset(Vec::clear).build().unwrap()
}

#[test]
fn a_returned_value_is_reused_not_remade() {
    let pool = buffers();
    let mut first = pool.get();
    first.push(1);
    let address = first.as_ptr();
    drop(first);
    let second = pool.get();
    assert_eq!(second.as_ptr(), address, "the same buffer came back");
    let status = pool.status();
    assert_eq!((status.created, status.reused, status.in_use), (1, 1, 1));
}

#[test]
fn reset_runs_before_the_next_user_sees_the_value() {
    let pool = buffers();
    pool.get().extend_from_slice(b"secret");
    assert!(pool.get().is_empty());
}

#[test]
fn is_reusable_drops_values_that_grew_too_large() {
    let pool = ObjectPool::builder(|| Vec::<u8>::with_capacity(16))
        .reset(Vec::clear)
        .is_reusable(|buffer| buffer.capacity() <= 1024)
        .build()
        .unwrap();
    let mut big = pool.get();
    big.resize(64 * 1024, 0);
    drop(big);
    let mut small = pool.get();
    small.push(1);
    drop(small);
    let status = pool.status();
    assert_eq!((status.created, status.discarded, status.idle, status.live), (2, 1, 1, 1));
    assert!(pool.get().capacity() <= 1024);
}

#[test]
fn min_idle_values_are_made_at_build() {
    let made = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&made);
    let pool = ObjectPool::builder(move || counter.fetch_add(1, Ordering::Relaxed))
        .min_idle(5)
        .build()
        .unwrap();
    assert_eq!(made.load(Ordering::Relaxed), 5);
    assert_eq!(pool.status().idle, 5);
    let _held: Vec<_> = (0..5).map(|_| pool.get()).collect();
    assert_eq!(made.load(Ordering::Relaxed), 5, "all five were reused");
}

#[test]
fn max_idle_bounds_what_is_kept() {
    let pool = ObjectPool::builder(Vec::<u8>::new).max_idle(4).build().unwrap();
    let held: Vec<_> = (0..10).map(|_| pool.get()).collect();
    drop(held);
    let status = pool.status();
    assert_eq!((status.idle, status.live, status.discarded), (4, 4, 6));
}

#[test]
fn try_get_respects_max_total_and_get_goes_past_it_without_keeping() {
    let pool = ObjectPool::builder(String::new).max_total(2).build().unwrap();
    let first = pool.try_get().unwrap();
    let second = pool.try_get().unwrap();
    assert!(pool.try_get().is_none());

    let extra = pool.get();
    assert_eq!(pool.status().live, 2, "a value past max_total is not tracked");
    drop(extra);
    assert_eq!(pool.status().idle, 0, "nor kept");

    drop(first);
    assert!(pool.try_get().is_some());
    drop(second);
    let status = pool.status();
    assert_eq!((status.live, status.idle, status.created), (2, 2, 2));
}

#[test]
fn take_detaches_a_value_for_good() {
    let pool = buffers();
    let mut buffer = pool.get();
    buffer.push(9);
    let owned: Vec<u8> = Object::take(buffer);
    assert_eq!(owned, [9]);
    let status = pool.status();
    assert_eq!((status.live, status.idle, status.discarded), (0, 0, 0));
}

#[test]
fn owned_guards_outlive_the_borrow_and_cross_threads() {
    let pool = Arc::new(buffers());
    let mut guard: OwnedObject<Vec<u8>> = pool.get_owned();
    guard.push(1);
    std::thread::spawn(move || drop(guard)).join().unwrap();
    // The other thread exited: its cache went back to the shared store.
    let status = pool.status();
    assert_eq!((status.idle, status.created), (1, 1));
    assert!(pool.get_owned().is_empty());
    assert_eq!(pool.status().reused, 1);
    let taken = OwnedObject::take(pool.try_get_owned().unwrap());
    assert!(taken.is_empty());
}

#[test]
fn trim_keeps_the_target() {
    let pool = ObjectPool::builder(|| vec![0u8; 128]).build().unwrap();
    let burst: Vec<_> = (0..20).map(|_| pool.get()).collect();
    drop(burst);
    assert_eq!(pool.status().idle, 20);
    pool.trim(10);
    assert_eq!(pool.status().idle, 10);
    pool.trim(0);
    let status = pool.status();
    assert_eq!((status.idle, status.live, status.created, status.discarded), (0, 0, 20, 20));
}

#[test]
fn release_unused_drops_what_a_period_did_not_need() {
    // Without thread caches every value sits in the shared store, so each period is exact.
    let pool = ObjectPool::builder(|| vec![0u8; 128]).min_idle(2).thread_cache(0).build().unwrap();
    let burst: Vec<_> = (0..20).map(|_| pool.get()).collect();
    drop(burst);
    pool.release_unused(); // the burst used everything: nothing goes, a period starts
    assert_eq!(pool.status().idle, 20);

    let used: Vec<_> = (0..5).map(|_| pool.get()).collect();
    drop(used);
    pool.release_unused();
    assert_eq!(pool.status().idle, 5, "the five used in the period stay");

    pool.release_unused();
    assert_eq!(pool.status().idle, 2, "an idle period leaves min_idle");
    assert_eq!(pool.status().live, 2);
}

#[test]
fn a_panicking_reset_drops_the_value_and_the_pool_goes_on() {
    let pool = ObjectPool::builder(Vec::<u8>::new)
        .reset(|buffer| assert!(buffer.len() < 3, "cannot reset"))
        .build()
        .unwrap();
    let mut buffer = pool.get();
    buffer.extend_from_slice(&[1, 2, 3]);
    drop(buffer); // the panic is contained
    let status = pool.status();
    assert_eq!((status.live, status.idle, status.discarded), (0, 0, 1));
    drop(pool.get());
    assert_eq!(pool.status().idle, 1);
}

#[test]
fn a_panicking_create_leaves_no_phantom_value() {
    let fail = Arc::new(AtomicUsize::new(1));
    let flag = Arc::clone(&fail);
    let pool = ObjectPool::builder(move || {
        assert_eq!(flag.load(Ordering::Relaxed), 0, "create failed");
        7u32
    })
    .max_total(1)
    .build()
    .unwrap();
    assert!(catch_unwind(AssertUnwindSafe(|| pool.try_get().map(|_| ()))).is_err());
    assert_eq!(pool.status().live, 0);
    fail.store(0, Ordering::Relaxed);
    assert_eq!(*pool.try_get().expect("the slot was given back"), 7);
}

#[test]
fn dropping_the_pool_drops_every_value_once() {
    struct Counted(Arc<AtomicUsize>);
    impl Drop for Counted {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }
    let drops = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&drops);
    let pool = ObjectPool::builder(move || Counted(Arc::clone(&counter)))
        .min_idle(3)
        .max_idle(5)
        .build()
        .unwrap();
    let held: Vec<_> = (0..8).map(|_| pool.get()).collect();
    drop(held);
    assert_eq!(drops.load(Ordering::Relaxed), 3, "three past max_idle");
    drop(pool);
    assert_eq!(drops.load(Ordering::Relaxed), 8);
}

#[test]
fn invalid_configurations_name_their_field() {
    let cases = [
        (ObjectPool::builder(|| 0u8).max_idle(0).build().unwrap_err(), "max_idle"),
        (ObjectPool::builder(|| 0u8).max_total(0).build().unwrap_err(), "max_total"),
        (ObjectPool::builder(|| 0u8).max_idle(4).min_idle(5).build().unwrap_err(), "min_idle"),
        (ObjectPool::builder(|| 0u8).max_total(2).max_idle(3).build().unwrap_err(), "max_idle"),
        (ObjectPool::builder(|| 0u8).max_total(2).min_idle(3).build().unwrap_err(), "min_idle"),
        (ObjectPool::builder(|| 0u8).thread_cache(1 << 20).build().unwrap_err(), "thread_cache"),
    ];
    for (error, field) in cases {
        assert_eq!(error.field(), Some(field), "{error}");
        assert!(error.to_string().contains(field), "{error}");
    }
    // max_total alone lowers the default max_idle instead of failing.
    let pool = ObjectPool::builder(|| 0u8).max_total(2).build().unwrap();
    drop((pool.get(), pool.get()));
    assert_eq!(pool.status().idle, 2);
}
