//! Resizing a per-worker pool: new lanes take work, retired lanes drain and their workers
//! leave, jobs of one key keep their order across every resize (a moved key's jobs wait for the
//! older ones on its old lane), nothing is lost or run twice, and shutdown after a resize still
//! runs everything. Waits use gates and the paused clock, never a sleep that hopes.
#![allow(clippy::disallowed_types)]

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use millpond::balance::{Balance, KeyHash};
use millpond::exec::{Scheduler, SubmitError, WorkerPool};
use tokio::sync::{Barrier, mpsc, watch};

fn per_worker(workers: usize, balance: Balance, stealing: bool) -> WorkerPool {
    WorkerPool::builder()
        .workers(workers)
        .queue_capacity(256)
        .scheduler(Scheduler::per_worker(balance).stealing(stealing))
        .build()
        .unwrap()
}

/// A gate jobs wait at until it opens.
#[derive(Clone)]
struct Gate(watch::Receiver<bool>);

impl Gate {
    fn new() -> (watch::Sender<bool>, Self) {
        let (open, gate) = watch::channel(false);
        (open, Self(gate))
    }

    async fn pass(mut self) {
        let _ = self.0.wait_for(|open| *open).await;
    }
}

/// Lets the paused clock's runtime run every task until all are idle.
async fn settle() {
    tokio::time::sleep(Duration::from_millis(1)).await;
}

/// What the jobs of each key saw: the sequence numbers in the order they started, and whether
/// two ever overlapped.
#[derive(Default)]
struct Log {
    started: Mutex<HashMap<u64, Vec<u64>>>,
    running: Mutex<HashMap<u64, bool>>,
    overlaps: AtomicUsize,
    runs: AtomicUsize,
}

impl Log {
    /// A job of `key` numbered `seq` that yields `yields` times while it runs.
    fn job(
        self: &Arc<Self>,
        key: u64,
        seq: u64,
        yields: usize,
    ) -> impl Future<Output = ()> + 'static {
        let log = Arc::clone(self);
        async move {
            log.started.lock().unwrap().entry(key).or_default().push(seq);
            if log.running.lock().unwrap().insert(key, true) == Some(true) {
                log.overlaps.fetch_add(1, Ordering::SeqCst);
            }
            for _ in 0..yields {
                tokio::task::yield_now().await;
            }
            log.running.lock().unwrap().insert(key, false);
            log.runs.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// Every key ran `0..per_key` exactly once each, in order, never two at once.
    fn assert_in_order(&self, keys: impl Iterator<Item = u64>, per_key: u64) {
        let started = self.started.lock().unwrap();
        for key in keys {
            let seen = started.get(&key).map_or(&[][..], Vec::as_slice);
            let expected: Vec<u64> = (0..per_key).collect();
            assert_eq!(seen, expected, "key {key} ran out of order, twice, or lost a job");
        }
        assert_eq!(self.overlaps.load(Ordering::SeqCst), 0, "two jobs of one key overlapped");
    }
}

/// Submitters each own some keys and submit `per_key` numbered jobs for each, in turn, while
/// the test resizes the pool at the progress points it waits for.
async fn keyed_load_across_resizes(balance: Balance, stealing: bool, sizes: &[usize]) {
    const SUBMITTERS: u64 = 4;
    const KEYS_EACH: u64 = 8;
    const PER_KEY: u64 = 60;
    let pool = Arc::new(per_worker(2, balance, stealing));
    let log = Arc::new(Log::default());
    let (progress, mut progressed) = mpsc::unbounded_channel();
    let unkeyed = Arc::new(AtomicUsize::new(0));
    let mut submitters = Vec::new();
    for submitter in 0..SUBMITTERS {
        let (pool, log, progress, unkeyed) =
            (Arc::clone(&pool), Arc::clone(&log), progress.clone(), Arc::clone(&unkeyed));
        submitters.push(tokio::spawn(async move {
            for seq in 0..PER_KEY {
                for key in (0..KEYS_EACH).map(|k| submitter * KEYS_EACH + k) {
                    let job = log.job(key, seq, (key % 3) as usize);
                    let _detached =
                        pool.submit_keyed(key, job).await.map_err(|_| "refused").unwrap();
                }
                // Unkeyed work beside it, some of it refused and given back.
                let counted = Arc::clone(&unkeyed);
                let task = async move {
                    counted.fetch_add(1, Ordering::SeqCst);
                };
                match pool.try_submit(task) {
                    Ok(_) => {}
                    Err(SubmitError::Full(task)) => {
                        let _detached = pool.submit(task).await.map_err(|_| "refused").unwrap();
                    }
                    Err(_) => panic!("an open pool refused an unkeyed task"),
                }
                let _ = progress.send(());
            }
        }));
    }
    drop(progress);
    let total = SUBMITTERS * PER_KEY;
    let step = total / (sizes.len() as u64 + 1);
    let mut seen = 0;
    for (at, &size) in sizes.iter().enumerate() {
        while seen < step * (1 + at as u64) {
            progressed.recv().await.unwrap();
            seen += 1;
        }
        pool.resize(size).unwrap();
    }
    for submitter in submitters {
        submitter.await.unwrap();
    }
    pool.shutdown().await;
    log.assert_in_order(0..SUBMITTERS * KEYS_EACH, PER_KEY);
    assert_eq!(log.runs.load(Ordering::SeqCst) as u64, SUBMITTERS * KEYS_EACH * PER_KEY);
    assert_eq!(
        unkeyed.load(Ordering::SeqCst) as u64,
        total,
        "an unkeyed job was lost or ran twice"
    );
    let stats = pool.stats();
    assert_eq!((stats.workers, stats.queued), (0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyed_order_holds_while_the_pool_grows_and_shrinks_under_load() {
    keyed_load_across_resizes(Balance::RoundRobin, false, &[8, 3, 5, 1, 4]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyed_order_holds_across_resizes_with_stealing_and_loads() {
    keyed_load_across_resizes(Balance::PowerOfTwo, true, &[6, 2, 7]).await;
    keyed_load_across_resizes(Balance::LeastLoaded, true, &[1, 9, 3]).await;
}

#[tokio::test(start_paused = true)]
async fn a_grow_starts_workers_that_take_new_work() {
    let pool = per_worker(2, Balance::RoundRobin, false);
    pool.resize(6).unwrap();
    assert_eq!(pool.stats().workers, 6);
    assert_eq!(pool.stats().queued_per_worker.len(), 6);
    // Six tasks that can only finish together: round-robin gives each lane one, so all six
    // lanes have a worker running.
    let barrier = Arc::new(Barrier::new(6));
    let mut handles = Vec::new();
    for _ in 0..6 {
        let barrier = Arc::clone(&barrier);
        handles.push(pool.submit(async move { barrier.wait().await }).await.unwrap());
    }
    for handle in handles {
        handle.await.unwrap();
    }
    pool.shutdown().await;
    assert_eq!(pool.stats().workers, 0);
}

#[tokio::test(start_paused = true)]
async fn a_shrink_runs_what_retired_lanes_hold_and_their_workers_leave() {
    let pool = per_worker(4, Balance::RoundRobin, false);
    let (open, gate) = Gate::new();
    let ran = Arc::new(AtomicUsize::new(0));
    let mut handles = Vec::new();
    // Every lane gets a blocked job and three queued behind it.
    for _ in 0..16 {
        let (gate, ran) = (gate.clone(), Arc::clone(&ran));
        handles.push(
            pool.submit(async move {
                gate.pass().await;
                ran.fetch_add(1, Ordering::SeqCst);
            })
            .await
            .unwrap(),
        );
    }
    settle().await;
    assert_eq!(pool.stats().queued, 12);
    pool.resize(1).unwrap();
    assert!(pool.stats().queued_per_worker.is_empty(), "one lane in use");
    assert_eq!(pool.stats().queued, 12, "the retired lanes keep their jobs");
    // New work goes only to the remaining lane.
    let after = pool.submit(async { 7 }).await.unwrap();
    open.send(true).unwrap();
    for handle in handles {
        handle.await.unwrap();
    }
    assert_eq!(after.await.unwrap(), 7);
    settle().await;
    assert_eq!(ran.load(Ordering::SeqCst), 16);
    let stats = pool.stats();
    assert_eq!((stats.workers, stats.queued, stats.busy), (1, 0, 0));
    pool.shutdown().await;
    assert_eq!(pool.stats().workers, 0);
}

/// A key whose owner among 2 lanes is lane 1 (so it moves when 1 lane becomes 2), and one whose
/// owner stays lane 0.
fn moving_and_staying_keys() -> (u64, u64) {
    let moving = (0..).find(|key| KeyHash::target(*key, 2) == 1).unwrap();
    let staying = (0..).find(|key| KeyHash::target(*key, 2) == 0).unwrap();
    (moving, staying)
}

#[tokio::test(start_paused = true)]
async fn a_moved_key_waits_for_its_older_jobs_on_the_old_lane() {
    let pool = Arc::new(per_worker(1, Balance::KeyHash, false));
    let (moving, staying) = moving_and_staying_keys();
    let (open, gate) = Gate::new();
    let order = Arc::new(Mutex::new(Vec::new()));
    let first = {
        let order = Arc::clone(&order);
        pool.submit_keyed(moving, async move {
            gate.pass().await;
            order.lock().unwrap().push("older");
        })
        .await
        .unwrap()
    };
    settle().await;
    pool.resize(2).unwrap();
    assert_eq!(pool.stats().workers, 2);

    // The moved key waits; `try_` gives the task back rather than wait.
    match pool.try_submit_keyed(moving, async {}) {
        Err(SubmitError::Full(_)) => {}
        other => panic!("a moving key was not held back: ok = {}", other.is_ok()),
    }
    let started = Arc::new(AtomicBool::new(false));
    let newer = {
        let (pool, order, started) = (Arc::clone(&pool), Arc::clone(&order), Arc::clone(&started));
        tokio::spawn(async move {
            let job = async move {
                started.store(true, Ordering::SeqCst);
                order.lock().unwrap().push("newer");
            };
            pool.submit_keyed(moving, job).await.map_err(|_| "refused").unwrap().await.unwrap();
        })
    };
    // A key that stays on its lane is not held back.
    assert!(pool.try_submit_keyed(staying, async {}).is_ok());
    settle().await;
    assert!(!started.load(Ordering::SeqCst), "the newer job started before the older finished");

    open.send(true).unwrap();
    first.await.unwrap();
    newer.await.unwrap();
    assert_eq!(*order.lock().unwrap(), ["older", "newer"]);
    pool.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_resize_during_a_drain_waits_for_it() {
    let pool = per_worker(1, Balance::KeyHash, false);
    let (moving, _) = moving_and_staying_keys();
    let (open, gate) = Gate::new();
    let blocked = pool.submit_keyed(moving, gate.pass()).await.unwrap();
    settle().await;
    pool.resize(2).unwrap();
    pool.resize(4).unwrap();
    settle().await;
    assert_eq!(pool.stats().workers, 2, "the second resize waits for the first one's drain");
    open.send(true).unwrap();
    blocked.await.unwrap();
    settle().await;
    assert_eq!(pool.stats().workers, 4);
    pool.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn shutdown_after_resizes_runs_every_queued_job_and_every_worker_exits() {
    let pool = Arc::new(per_worker(3, Balance::RoundRobin, true));
    let (open, gate) = Gate::new();
    let ran = Arc::new(AtomicUsize::new(0));
    let returned = Arc::new(AtomicUsize::new(0));
    let mut submits = Vec::new();
    for round in 0..3 {
        for key in 0..8u64 {
            let (pool, gate, ran, returned) =
                (Arc::clone(&pool), gate.clone(), Arc::clone(&ran), Arc::clone(&returned));
            // Each submit in a task of its own: a moved key's submit waits for its drain.
            submits.push(tokio::spawn(async move {
                let job = async move {
                    gate.pass().await;
                    ran.fetch_add(1, Ordering::SeqCst);
                };
                let submitted = if key % 2 == 0 {
                    pool.submit_keyed(key, job).await
                } else {
                    pool.submit(job).await
                };
                match submitted {
                    Ok(handle) => handle.await.unwrap(),
                    // Still waiting for a drain when the pool shut down: the task comes back.
                    Err(SubmitError::Closed(task)) => {
                        returned.fetch_add(1, Ordering::SeqCst);
                        task.await;
                    }
                    Err(_) => panic!("an unexpected refusal"),
                }
            }));
        }
        settle().await;
        pool.resize([5, 1, 2][round]).unwrap();
    }
    settle().await;
    let shutdown = {
        let pool = Arc::clone(&pool);
        tokio::spawn(async move { pool.shutdown().await })
    };
    settle().await;
    assert!(pool.is_shut_down());
    assert!(!shutdown.is_finished(), "jobs are still queued");
    open.send(true).unwrap();
    shutdown.await.unwrap();
    for submit in submits {
        submit.await.unwrap();
    }
    assert_eq!(ran.load(Ordering::SeqCst), 24, "every job ran once, in the pool or given back");
    assert!(returned.load(Ordering::SeqCst) < 24);
    assert_eq!(pool.stats().workers, 0);
}

#[tokio::test(start_paused = true)]
async fn a_lane_retired_and_reopened_keeps_one_worker() {
    let pool = per_worker(2, Balance::KeyHash, false);
    let (moving, _) = moving_and_staying_keys();
    let log = Arc::new(Log::default());

    // Reopened while its worker still runs a job there: the worker stays, none is added.
    let (open, gate) = Gate::new();
    let blockers = [
        pool.submit(gate.clone().pass()).await.unwrap(),
        pool.submit(gate.clone().pass()).await.unwrap(),
    ];
    settle().await;
    pool.resize(1).unwrap();
    pool.resize(2).unwrap();
    assert_eq!(pool.stats().workers, 2);
    for seq in 0..5 {
        let _detached = pool.submit_keyed(moving, log.job(moving, seq, 2)).await.unwrap();
    }
    open.send(true).unwrap();
    for blocker in blockers {
        blocker.await.unwrap();
    }
    settle().await;

    // Reopened after its worker left: a new worker starts on it.
    pool.resize(1).unwrap();
    settle().await;
    assert_eq!(pool.stats().workers, 1);
    pool.resize(2).unwrap();
    assert_eq!(pool.stats().workers, 2);
    for seq in 5..10 {
        let _detached = pool.submit_keyed(moving, log.job(moving, seq, 2)).await.unwrap();
    }
    settle().await;
    log.assert_in_order([moving].into_iter(), 10);
    pool.shutdown().await;
    assert_eq!(pool.stats().workers, 0);
}

#[tokio::test]
async fn resizes_out_of_range_or_of_weighted_pools_are_refused_naming_the_field() {
    let pool = per_worker(2, Balance::RoundRobin, false);
    assert_eq!(pool.resize(0).unwrap_err().field(), Some("max_workers"));
    assert_eq!(pool.resize(1 << 21).unwrap_err().field(), Some("max_workers"));
    pool.shutdown().await;
    let weighted = per_worker(2, Balance::WeightedRoundRobin(vec![1, 2]), false);
    let refused = weighted.resize(3).unwrap_err();
    assert_eq!(refused.field(), Some("max_workers"));
    assert!(refused.to_string().contains("weight"), "{refused}");
    weighted.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_resize_after_shutdown_starts_nothing() {
    let pool = per_worker(2, Balance::RoundRobin, false);
    pool.shutdown().await;
    pool.resize(4).unwrap();
    settle().await;
    assert_eq!(pool.stats().workers, 0);
}
