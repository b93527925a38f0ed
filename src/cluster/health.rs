//! What a cluster knows about one backend's health, and the manager wrapper that tells it.
//!
//! Every creation of a backend's pool goes through [`Watch`], which reports its outcome to the
//! backend's [`Health`]: a failure counts toward the backend's breaker (the same state machine as
//! the pool's own), and a creation the pool gave up on (its create timeout, which the pool's
//! creation task reports through [`CreateWatcher`]) counts as a timeout: a second in a row takes
//! the backend out, one alone does not (a slow backend is not a dead one). An
//! open breaker takes the backend out of rotation; the next successful creation, which only a
//! probe will attempt, brings it back. A failure counts only if no success came after its attempt
//! started (see [`Health`]).

use std::fmt;
use std::future::Future;
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use crate::breaker::Breaker;
use crate::pool::create::CreateWatcher;
use crate::pool::{CloseReason, Manager};
use crate::report::chain;
use crate::sync::{Arc, AtomicU64, Mutex, Ordering};

/// The last failure a backend reported, kept to give callers the real cause.
pub(crate) type Cause = Arc<dyn std::error::Error + Send + Sync>;

/// An error known only by its message (a manager error the pool still owns).
#[derive(Debug)]
pub(crate) struct Reported(pub(crate) String);

impl fmt::Display for Reported {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Reported {}

/// The `down` bit of [`Health::word`]; the bits above it count successes.
const DOWN: u64 = 1;

/// When an attempt on a backend started, as the count of successes seen by then: a failure is
/// news only if no success came after the attempt started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Epoch(u64);

/// A backend's health: its breaker, and a lock-free word that mirrors it for the picks.
///
/// Every transition (a failure counted, a success) runs under `state`'s lock and rewrites `word`
/// before the lock is released, so the word changes in the same order as the breaker: a success
/// can never be undone by a failure whose breaker step it already followed. Readers (every pick)
/// load `word` only.
///
/// A failure of an attempt that started before the latest success is stale: the backend has
/// answered since, so it does not count toward the breaker (a slow connect that fails after a
/// fast one succeeded must not take a working backend out of rotation until the next probe).
#[derive(Debug)]
pub(crate) struct Health {
    /// `DOWN` while the backend is out of rotation, plus the successes so far shifted left by
    /// one. Written only under `state`'s lock.
    word: AtomicU64,
    state: Mutex<State>,
    /// Woken when the backend goes down, or a creation on it timed out, so callers waiting on
    /// its pool move to another: a backend that may only be slow stays in rotation, but nobody
    /// should keep waiting on it.
    pub(crate) went_down: Notify,
    pub(crate) ejections: AtomicU64,
    pub(crate) readmissions: AtomicU64,
}

#[derive(Debug)]
struct State {
    breaker: Breaker,
    last_error: Option<Cause>,
    /// Timeouts in a row with no success between.
    timeouts: u32,
}

/// How an attempt on a backend failed, which decides how much it counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Failure {
    /// The backend answered with an error (a refused connection, a bad password): counts toward
    /// `failures_to_eject`.
    Error,
    /// The attempt timed out. A slow backend is not a dead one: one timeout alone never takes a
    /// backend out; a second in a row, with no success between, does (as does one during a
    /// probe).
    Timeout,
    /// The backend's pool says it is down (its own breaker is open): out at once.
    Down,
}

/// What a transition did to the rotation, reported outside the lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Change {
    None,
    WentDown,
    /// A timeout that left the backend in rotation: its waiting callers move all the same.
    TimedOut,
    CameBack,
}

impl Health {
    pub(crate) fn new(failures_to_eject: u32, cooldown: Duration) -> Self {
        Self {
            word: AtomicU64::new(0),
            state: Mutex::new(State {
                breaker: Breaker::new(Some(failures_to_eject), cooldown),
                last_error: None,
                timeouts: 0,
            }),
            went_down: Notify::new(),
            ejections: AtomicU64::new(0),
            readmissions: AtomicU64::new(0),
        }
    }

    pub(crate) fn is_down(&self) -> bool {
        // Acquire pairs with the Release store of the transition that set or cleared the bit.
        self.word.load(Ordering::Acquire) & DOWN != 0
    }

    /// Taken when an attempt starts, to be passed to [`failed`](Self::failed) if it fails.
    pub(crate) fn epoch(&self) -> Epoch {
        Epoch(self.word.load(Ordering::Acquire) >> 1)
    }

    /// Whether the breaker itself is open, for the models that check the word against it.
    #[cfg(test)]
    pub(crate) fn breaker_is_tripped(&self) -> bool {
        self.state.lock().breaker.is_tripped()
    }

    pub(crate) fn last_error(&self) -> Option<Cause> {
        self.state.lock().last_error.clone()
    }

    /// Records the failure of an attempt that started at `since`, counted as its kind says
    /// ([`Failure`]). A stale failure (a success came after `since`) is kept as the last error
    /// but leaves the breaker alone.
    pub(crate) fn failed(&self, cause: Cause, kind: Failure, since: Epoch) {
        let message = cause.to_string();
        let change = {
            let mut state = self.state.lock();
            state.last_error = Some(cause);
            // Relaxed: the word is written only under this lock, which orders it for us.
            let word = self.word.load(Ordering::Relaxed);
            let stale = word >> 1 != since.0;
            let now = Instant::now();
            let opened = !stale
                && match kind {
                    Failure::Error => state.breaker.on_failure(now),
                    Failure::Timeout => {
                        state.timeouts += 1;
                        let trips = state.timeouts >= 2 || state.breaker.is_tripped();
                        if trips {
                            state.breaker.trip(now);
                        }
                        trips
                    }
                    Failure::Down => {
                        state.breaker.trip(now);
                        true
                    }
                };
            if opened && word & DOWN == 0 {
                self.word.store(word | DOWN, Ordering::Release);
                Change::WentDown
            } else if kind == Failure::Timeout && !stale {
                Change::TimedOut
            } else {
                Change::None
            }
        };
        match change {
            Change::WentDown => {
                self.ejections.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(error = %message, "millpond: a backend is out of rotation");
                self.went_down.notify_waiters();
            }
            Change::TimedOut => self.went_down.notify_waiters(),
            Change::None | Change::CameBack => {}
        }
    }

    /// Records a success: a backend that was out comes back, and failures of attempts started
    /// before it become stale.
    pub(crate) fn succeeded(&self) {
        let change = {
            let mut state = self.state.lock();
            state.breaker.on_success();
            state.timeouts = 0;
            let word = self.word.load(Ordering::Relaxed);
            // The count cannot wrap: it would take 2^63 successes.
            self.word.store(((word >> 1) + 1) << 1, Ordering::Release);
            if word & DOWN != 0 { Change::CameBack } else { Change::None }
        };
        if change == Change::CameBack {
            self.readmissions.fetch_add(1, Ordering::Relaxed);
            tracing::info!("millpond: a backend is back in rotation");
        }
    }
}

/// A backend's manager, reporting each creation's outcome to the backend's health.
pub(crate) struct Watch<M> {
    pub(crate) inner: M,
    pub(crate) health: Arc<Health>,
}

/// The pool's word on its creations: a timeout (the pool gave the attempt up) counts as one
/// (see [`Failure::Timeout`]). A creation dropped for any other reason (its runtime shut down, the pool closed)
/// says nothing about the backend and is not reported.
impl CreateWatcher for Health {
    fn attempt(&self) -> u64 {
        self.epoch().0
    }

    fn timed_out(&self, attempt: u64, after: Duration) {
        let cause = Arc::new(Reported(format!("creating a connection timed out after {after:?}")));
        self.failed(cause, Failure::Timeout, Epoch(attempt));
    }
}

impl<M: Manager> Manager for Watch<M> {
    type Resource = M::Resource;
    type Error = M::Error;

    async fn create(&self) -> Result<M::Resource, M::Error> {
        let since = self.health.epoch();
        let created = self.inner.create().await;
        match &created {
            Ok(_) => self.health.succeeded(),
            Err(err) => {
                self.health.failed(Arc::new(Reported(chain(err))), Failure::Error, since);
            }
        }
        created
    }

    fn check(
        &self,
        resource: &mut M::Resource,
    ) -> impl Future<Output = Result<(), M::Error>> + Send {
        self.inner.check(resource)
    }

    fn needs_check(&self, resource: &M::Resource) -> bool {
        self.inner.needs_check(resource)
    }

    fn is_reusable(&self, resource: &mut M::Resource) -> bool {
        self.inner.is_reusable(resource)
    }

    fn on_close(&self, resource: M::Resource, reason: CloseReason) {
        self.inner.on_close(resource, reason);
    }

    fn take_traffic(&self, resource: &M::Resource) -> Option<crate::pool::Traffic> {
        self.inner.take_traffic(resource)
    }
}

#[cfg(all(test, not(millpond_loom)))]
mod tests {
    use super::*;

    fn refused() -> Cause {
        Arc::new(Reported("connection refused".to_owned()))
    }

    /// The interleaving that used to leave a working backend out: an attempt starts, a later one
    /// succeeds, then the first one's failure arrives.
    #[test]
    fn a_failure_older_than_a_success_does_not_take_the_backend_out() {
        let health = Health::new(1, Duration::from_secs(1));
        let slow = health.epoch();
        // The faster attempt, started after the slow one, succeeds first.
        health.succeeded();
        health.failed(refused(), Failure::Error, slow);
        assert!(!health.is_down());
        health.failed(refused(), Failure::Down, slow);
        assert!(!health.is_down(), "a stale timeout is stale too");
        assert_eq!(health.ejections.load(Ordering::Relaxed), 0);
        assert!(health.last_error().is_some(), "the error is still reported");

        // An attempt started after the success counts.
        assert!(!health.breaker_is_tripped());
        health.failed(refused(), Failure::Error, health.epoch());
        assert!(health.is_down() && health.breaker_is_tripped());
        assert_eq!(health.ejections.load(Ordering::Relaxed), 1);
        health.succeeded();
        assert!(!health.is_down());
        assert_eq!(health.readmissions.load(Ordering::Relaxed), 1);
    }
}
