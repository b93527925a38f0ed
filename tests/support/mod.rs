//! A scriptable test manager: its create and check succeed, fail, hang or panic on demand, and it
//! counts every resource alive, so tests can prove that nothing leaks.
#![allow(dead_code, clippy::disallowed_types)]

pub mod errors;
pub mod runtime;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use millpond::pool::{CloseReason, Manager, Pool};
use tokio::sync::Notify;

/// What a hook does when called.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behavior {
    Succeed,
    Fail,
    Hang,
    Panic,
    /// Succeeds after this long (on the tokio clock).
    Delay(Duration),
    /// Fails after this long (on the tokio clock).
    FailAfter(Duration),
}

#[derive(Debug)]
pub struct TestError(pub &'static str);

impl std::fmt::Display for TestError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

impl std::error::Error for TestError {}

/// Shared counters and switches, kept by the test after the manager moves into the pool.
#[derive(Debug)]
pub struct Probe {
    pub create: Mutex<Behavior>,
    pub check: Mutex<Behavior>,
    pub reusable: AtomicBool,
    /// `create()` calls started.
    pub create_calls: AtomicUsize,
    /// `check()` calls started.
    pub check_calls: AtomicUsize,
    /// Resources created successfully.
    pub created: AtomicUsize,
    /// Resources alive right now (created and not yet dropped, wherever they are).
    pub alive: AtomicUsize,
    /// Reasons passed to `on_close`, in order.
    pub closed: Mutex<Vec<CloseReason>>,
    /// Signalled whenever a `create()` call starts.
    pub create_started: Notify,
    /// `create()` calls running right now, and the most ever seen at once.
    pub creates_in_flight: AtomicUsize,
    pub max_creates_in_flight: AtomicUsize,
    /// When each `create()` call started (tokio clock).
    pub create_times: Mutex<Vec<tokio::time::Instant>>,
}

impl Probe {
    pub fn alive(&self) -> usize {
        self.alive.load(Ordering::SeqCst)
    }

    pub fn created(&self) -> usize {
        self.created.load(Ordering::SeqCst)
    }

    pub fn create_calls(&self) -> usize {
        self.create_calls.load(Ordering::SeqCst)
    }

    pub fn check_calls(&self) -> usize {
        self.check_calls.load(Ordering::SeqCst)
    }

    pub fn set_create(&self, behavior: Behavior) {
        *self.create.lock().unwrap() = behavior;
    }

    pub fn set_check(&self, behavior: Behavior) {
        *self.check.lock().unwrap() = behavior;
    }

    pub fn closed_reasons(&self) -> Vec<CloseReason> {
        self.closed.lock().unwrap().clone()
    }

    pub fn max_creates_in_flight(&self) -> usize {
        self.max_creates_in_flight.load(Ordering::SeqCst)
    }

    pub fn create_times(&self) -> Vec<tokio::time::Instant> {
        self.create_times.lock().unwrap().clone()
    }

    pub fn closed_count(&self, reason: CloseReason) -> usize {
        self.closed.lock().unwrap().iter().filter(|r| **r == reason).count()
    }
}

/// A pooled test resource; dropping it decrements `Probe::alive`.
#[derive(Debug)]
pub struct Conn {
    pub id: usize,
    pub broken: bool,
    probe: Arc<Probe>,
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.probe.alive.fetch_sub(1, Ordering::SeqCst);
    }
}

pub struct TestManager {
    pub probe: Arc<Probe>,
}

impl TestManager {
    pub fn new() -> (Self, Arc<Probe>) {
        let probe = Arc::new(Probe {
            create: Mutex::new(Behavior::Succeed),
            check: Mutex::new(Behavior::Succeed),
            reusable: AtomicBool::new(true),
            create_calls: AtomicUsize::new(0),
            check_calls: AtomicUsize::new(0),
            created: AtomicUsize::new(0),
            alive: AtomicUsize::new(0),
            closed: Mutex::new(Vec::new()),
            create_started: Notify::new(),
            creates_in_flight: AtomicUsize::new(0),
            max_creates_in_flight: AtomicUsize::new(0),
            create_times: Mutex::new(Vec::new()),
        });
        (Self { probe: Arc::clone(&probe) }, probe)
    }
}

async fn act(behavior: Behavior, what: &'static str) -> Result<(), TestError> {
    match behavior {
        Behavior::Succeed => Ok(()),
        Behavior::Fail => Err(TestError(what)),
        Behavior::Hang => std::future::pending().await,
        Behavior::Panic => panic!("{what} panicked on purpose"),
        Behavior::Delay(delay) => {
            tokio::time::sleep(delay).await;
            Ok(())
        }
        Behavior::FailAfter(delay) => {
            tokio::time::sleep(delay).await;
            Err(TestError(what))
        }
    }
}

/// Counts a `create()` call as finished however it ends (also when cancelled or panicking).
struct InFlight<'a>(&'a AtomicUsize);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Manager for TestManager {
    type Resource = Conn;
    type Error = TestError;

    async fn create(&self) -> Result<Conn, TestError> {
        self.probe.create_calls.fetch_add(1, Ordering::SeqCst);
        self.probe.create_times.lock().unwrap().push(tokio::time::Instant::now());
        let in_flight = self.probe.creates_in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.probe.max_creates_in_flight.fetch_max(in_flight, Ordering::SeqCst);
        let _in_flight = InFlight(&self.probe.creates_in_flight);
        self.probe.create_started.notify_waiters();
        let behavior = *self.probe.create.lock().unwrap();
        act(behavior, "connection refused").await?;
        let id = self.probe.created.fetch_add(1, Ordering::SeqCst);
        self.probe.alive.fetch_add(1, Ordering::SeqCst);
        Ok(Conn { id, broken: false, probe: Arc::clone(&self.probe) })
    }

    async fn check(&self, conn: &mut Conn) -> Result<(), TestError> {
        let _ = conn;
        self.probe.check_calls.fetch_add(1, Ordering::SeqCst);
        let behavior = *self.probe.check.lock().unwrap();
        act(behavior, "check failed").await
    }

    fn is_reusable(&self, conn: &mut Conn) -> bool {
        !conn.broken && self.probe.reusable.load(Ordering::SeqCst)
    }

    fn on_close(&self, conn: Conn, reason: CloseReason) {
        self.probe.closed.lock().unwrap().push(reason);
        drop(conn);
    }
}

/// Spawns a `get()` on its own task (so it can queue while the test goes on); resolves to the id
/// of the resource it got.
pub fn spawn_get(
    pool: &Pool<TestManager>,
) -> tokio::task::JoinHandle<Result<usize, millpond::pool::Error<TestError>>> {
    let pool = pool.clone();
    tokio::spawn(async move { pool.get().await.map(|conn| conn.id) })
}

/// Yields to the runtime until `condition` holds; on a paused clock this also lets virtual time
/// advance to the next timer. Panics after `limit` of virtual time, naming what was awaited.
pub async fn eventually(what: &str, limit: Duration, mut condition: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + limit;
    while !condition() {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// Asserts the pool's accounting matches the resources that exist: every live resource is in
/// the pool (idle or in use) and nothing is queued or being created.
pub fn assert_settled(pool: &Pool<TestManager>, probe: &Probe) {
    let status = pool.status();
    assert_eq!(status.waiters, 0, "{status:?}");
    assert_eq!(status.creating, 0, "{status:?}");
    assert_eq!(status.size, status.idle + status.in_use, "{status:?}");
    assert_eq!(status.size, probe.alive(), "pool size vs live resources: {status:?}");
    assert!(status.size <= status.max_size, "{status:?}");
}
