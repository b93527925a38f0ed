//! loom models of the limiter's admission and hand-off: in-flight calls never pass the limit
//! at admission, however admissions, releases, limit cuts and cancelled waiters interleave, and
//! no room is lost or counted twice.
//!
//! The models drive the public [`AdaptiveLimiter`] with no queue timeout, so that waiting needs
//! no timer; the engine asserts the bound at every admission under `millpond_loom`.
//!
//! Run with `RUSTFLAGS="--cfg millpond_loom" cargo test --release --lib loom_models`.

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use loom::future::block_on;
use loom::thread;

use super::{AdaptiveLimiter, Aimd};

fn limiter(limit: usize) -> AdaptiveLimiter {
    let aimd = Aimd::new().min_limit(1).initial_limit(limit).max_limit(limit);
    AdaptiveLimiter::builder(aimd).queue_timeout(Duration::MAX).fifo().build().unwrap()
}

fn assert_idle(limiter: &AdaptiveLimiter) {
    let status = limiter.status();
    assert_eq!((status.in_flight, status.queued), (0, 0), "{status:?}");
}

#[test]
fn a_release_and_a_newcomer_never_both_take_the_room() {
    loom::model(|| {
        let limiter = limiter(1);
        let held = limiter.try_acquire().unwrap();
        let waiter = {
            let limiter = limiter.clone();
            thread::spawn(move || block_on(limiter.acquire()).unwrap().success())
        };
        let newcomer = {
            let limiter = limiter.clone();
            thread::spawn(move || limiter.try_acquire().map(super::Permit::success))
        };
        held.success();
        waiter.join().unwrap();
        newcomer.join().unwrap();
        assert_idle(&limiter);
    });
}

#[test]
fn a_waiter_cancelled_while_served_passes_the_room_on() {
    loom::model(|| {
        let limiter = limiter(1);
        let held = limiter.try_acquire().unwrap();
        // Queued behind `held`, then given up, possibly just as `held` hands it the room.
        let cancelled = {
            let limiter = limiter.clone();
            thread::spawn(move || {
                let mut waiting = pin!(limiter.acquire());
                let mut cx = Context::from_waker(Waker::noop());
                if let Poll::Ready(permit) = waiting.as_mut().poll(&mut cx) {
                    drop(permit);
                }
            })
        };
        let releaser = thread::spawn(move || held.success());
        cancelled.join().unwrap();
        releaser.join().unwrap();
        // Whatever happened, the room is free again for the next caller.
        let permit = block_on(limiter.acquire()).unwrap();
        permit.success();
        assert_idle(&limiter);
    });
}

#[test]
fn a_limit_cut_while_a_waiter_queues_never_admits_past_the_new_limit() {
    loom::model(|| {
        let limiter = limiter(2);
        let first = limiter.try_acquire().unwrap();
        let second = limiter.try_acquire().unwrap();
        let waiter = {
            let limiter = limiter.clone();
            thread::spawn(move || block_on(limiter.acquire()).unwrap().success())
        };
        // A loss cuts the limit to 1 while two are in flight; the waiter must wait for both.
        let cutter = thread::spawn(move || first.dropped());
        second.success();
        cutter.join().unwrap();
        waiter.join().unwrap();
        assert_idle(&limiter);
    });
}
