//! loom models of a backend's health: the lock-free down flag against the breaker it mirrors.
//!
//! Run with `RUSTFLAGS="--cfg millpond_loom" cargo test --release --lib loom_models`.

use std::time::Duration;

use loom::thread;

use super::health::{Cause, Failure, Health, Reported};
use crate::sync::{Arc, Ordering};

fn health() -> Arc<Health> {
    Arc::new(Health::new(1, Duration::from_secs(1)))
}

fn refused() -> Cause {
    Arc::new(Reported("connection refused".to_owned()))
}

/// A failure whose attempt starts at any point against a success: whatever the interleaving,
/// the flag the picks read ends equal to the breaker's state, and a backend out of rotation was
/// counted as an ejection. (Setting the flag after the breaker's lock was released let a success
/// slip in between and leave the backend out with its breaker closed.)
#[test]
fn the_down_flag_always_ends_as_the_breaker_says() {
    loom::model(|| {
        let health = health();
        let failing = {
            let health = Arc::clone(&health);
            thread::spawn(move || {
                let since = health.epoch();
                health.failed(refused(), Failure::Error, since);
            })
        };
        health.succeeded();
        failing.join().unwrap();
        assert_eq!(health.is_down(), health.breaker_is_tripped());
        let ejections = health.ejections.load(Ordering::Relaxed);
        let readmissions = health.readmissions.load(Ordering::Relaxed);
        assert_eq!(ejections - readmissions, u64::from(health.is_down()));
    });
}

/// An attempt that started before a concurrent success fails: the backend stays in rotation in
/// every interleaving (the failure either comes first and the success heals it, or comes after
/// and is stale).
#[test]
fn a_failure_older_than_a_concurrent_success_never_leaves_the_backend_out() {
    loom::model(|| {
        let health = health();
        let since = health.epoch();
        let failing = {
            let health = Arc::clone(&health);
            thread::spawn(move || health.failed(refused(), Failure::Down, since))
        };
        health.succeeded();
        failing.join().unwrap();
        assert!(!health.is_down());
        assert!(!health.breaker_is_tripped());
    });
}

/// Two failures at once: the backend goes out once (one ejection, one wake-up of its waiters).
#[test]
fn concurrent_failures_eject_once() {
    loom::model(|| {
        let health = health();
        let threads: Vec<_> = (0..2)
            .map(|_| {
                let health = Arc::clone(&health);
                thread::spawn(move || {
                    let since = health.epoch();
                    health.failed(refused(), Failure::Error, since);
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        assert!(health.is_down());
        assert_eq!(health.ejections.load(Ordering::Relaxed), 1);
    });
}
