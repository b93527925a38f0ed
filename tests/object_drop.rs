//! Dropping an object pool drops every value it keeps, wherever it is cached: values in the
//! cache of another thread that is still running (parked, touching no pool) are dropped with
//! the pool's last handle, not when that thread next uses a pool or exits.
#![allow(clippy::disallowed_types)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, mpsc};

use millpond::object::ObjectPool;

/// A value that counts its live instances.
struct Counted(Arc<AtomicUsize>);

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

fn counted_pool(alive: &Arc<AtomicUsize>) -> Arc<ObjectPool<Counted>> {
    let alive = Arc::clone(alive);
    Arc::new(ObjectPool::with_create(move || {
        alive.fetch_add(1, Ordering::SeqCst);
        Counted(Arc::clone(&alive))
    }))
}

/// Starts a thread that checks out `count` values of `pool` at once and returns them (so they
/// stay in its cache), lets go of its pool handle, says so, then parks until told to finish.
/// Returns the sender that lets it finish, and its join handle.
fn park_with_cached_values(
    pool: Arc<ObjectPool<Counted>>,
    count: usize,
) -> (mpsc::Sender<()>, std::thread::JoinHandle<()>) {
    let (ready_tx, ready_rx) = mpsc::channel();
    let (finish_tx, finish_rx) = mpsc::channel::<()>();
    let thread = std::thread::spawn(move || {
        let held: Vec<_> = (0..count).map(|_| pool.get()).collect();
        drop(held);
        drop(pool);
        ready_tx.send(()).unwrap();
        let _ = finish_rx.recv();
    });
    ready_rx.recv().unwrap();
    (finish_tx, thread)
}

#[test]
fn values_cached_by_a_parked_thread_are_dropped_with_the_pool() {
    let alive = Arc::new(AtomicUsize::new(0));
    let pool = counted_pool(&alive);
    let (finish, parked) = park_with_cached_values(Arc::clone(&pool), 3);
    assert_eq!(pool.status().idle, 3, "the values sit in the parked thread's cache");
    assert_eq!(alive.load(Ordering::SeqCst), 3);
    drop(pool);
    assert_eq!(alive.load(Ordering::SeqCst), 0, "dropped with the pool, the thread still parked");
    finish.send(()).unwrap();
    parked.join().unwrap();
}

#[test]
fn a_value_checked_out_when_the_pool_drops_is_dropped_on_its_return() {
    let alive = Arc::new(AtomicUsize::new(0));
    let pool = counted_pool(&alive);
    let (finish, parked) = park_with_cached_values(Arc::clone(&pool), 2);
    let (give_back_tx, give_back_rx) = mpsc::channel::<()>();
    let (out_tx, out_rx) = mpsc::channel();
    let holder = {
        let pool = Arc::clone(&pool);
        std::thread::spawn(move || {
            let value = pool.get_owned();
            drop(pool);
            out_tx.send(()).unwrap();
            give_back_rx.recv().unwrap();
            drop(value);
        })
    };
    out_rx.recv().unwrap();
    assert_eq!(alive.load(Ordering::SeqCst), 3, "two cached by the parked thread, one out");
    // The pool's last handle is now the checked-out value's guard.
    drop(pool);
    assert_eq!(alive.load(Ordering::SeqCst), 3, "the guard keeps the pool alive");
    give_back_tx.send(()).unwrap();
    holder.join().unwrap();
    assert_eq!(alive.load(Ordering::SeqCst), 0, "the returned value and the cached ones dropped");
    finish.send(()).unwrap();
    parked.join().unwrap();
}
