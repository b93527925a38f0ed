//! What a cluster knows about one backend's health, and the manager wrapper that tells it.
//!
//! Every creation of a backend's pool goes through [`Watch`], which reports its outcome to the
//! backend's [`Health`]: a failure counts toward the backend's breaker (the same state machine as
//! the pool's own), and a creation the pool gave up on (its create timeout) opens it at once. An
//! open breaker takes the backend out of rotation; the next successful creation, which only a
//! probe will attempt, brings it back.

use std::fmt;
use std::future::Future;
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use crate::breaker::Breaker;
use crate::pool::{CloseReason, Manager};
use crate::sync::{Arc, AtomicU64, AtomicUsize, Mutex, Ordering};

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

/// An error and its sources on one line, as a log reads them.
pub(crate) fn chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut line = err.to_string();
    let mut next = err.source();
    while let Some(source) = next {
        let text = source.to_string();
        if !line.contains(&text) {
            line.push_str(": ");
            line.push_str(&text);
        }
        next = source.source();
    }
    line
}

#[derive(Debug)]
pub(crate) struct Health {
    /// 1 while the backend is out of rotation: the lock-free mirror of the breaker's state, read
    /// on every pick.
    down: AtomicUsize,
    breaker: Mutex<Breaker>,
    last_error: Mutex<Option<Cause>>,
    /// Woken when the backend goes down, so callers waiting on its pool move to another.
    pub(crate) went_down: Notify,
    pub(crate) ejections: AtomicU64,
    pub(crate) readmissions: AtomicU64,
}

impl Health {
    pub(crate) fn new(failures_to_eject: u32, cooldown: Duration) -> Self {
        Self {
            down: AtomicUsize::new(0),
            breaker: Mutex::new(Breaker::new(Some(failures_to_eject), cooldown)),
            last_error: Mutex::new(None),
            went_down: Notify::new(),
            ejections: AtomicU64::new(0),
            readmissions: AtomicU64::new(0),
        }
    }

    pub(crate) fn is_down(&self) -> bool {
        self.down.load(Ordering::Acquire) == 1
    }

    pub(crate) fn last_error(&self) -> Option<Cause> {
        self.last_error.lock().clone()
    }

    /// Records a failure; `fatal` ones (a timeout) open the breaker whatever the count.
    pub(crate) fn failed(&self, cause: Cause, fatal: bool) {
        let opened = {
            let mut breaker = self.breaker.lock();
            if fatal {
                breaker.trip(Instant::now());
                true
            } else {
                breaker.on_failure(Instant::now())
            }
        };
        let message = cause.to_string();
        *self.last_error.lock() = Some(cause);
        if opened && self.down.fetch_or(1, Ordering::AcqRel) == 0 {
            self.ejections.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(error = %message, "millpond: a backend is out of rotation");
            self.went_down.notify_waiters();
        }
    }

    /// Records a success: a backend that was out comes back.
    pub(crate) fn succeeded(&self) {
        self.breaker.lock().on_success();
        if self.is_down() {
            self.down.store(0, Ordering::Release);
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

/// Reports a creation the pool dropped before it finished: its create timeout passed.
struct Abandoned<'a> {
    health: &'a Health,
    finished: bool,
}

impl Drop for Abandoned<'_> {
    fn drop(&mut self) {
        if !self.finished {
            let cause = Arc::new(Reported("creating a connection timed out".to_owned()));
            self.health.failed(cause, true);
        }
    }
}

impl<M: Manager> Manager for Watch<M> {
    type Resource = M::Resource;
    type Error = M::Error;

    async fn create(&self) -> Result<M::Resource, M::Error> {
        let mut abandoned = Abandoned { health: &self.health, finished: false };
        let created = self.inner.create().await;
        abandoned.finished = true;
        match &created {
            Ok(_) => self.health.succeeded(),
            Err(err) => self.health.failed(Arc::new(Reported(chain(err))), false),
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
}
