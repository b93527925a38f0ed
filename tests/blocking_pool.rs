//! The blocking pool's promises, one test each: threads on demand and bounded, keep-alive,
//! the bounded queue and its rejection policies, contained panics, shutdown, and configuration
//! errors that name their field.
#![allow(clippy::disallowed_types)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use millpond::blocking::{BlockingPool, RejectionPolicy, SubmitError, TaskError};

/// Long enough for any condition a test waits on, on a loaded machine.
const PATIENCE: Duration = Duration::from_secs(20);

/// Polls `condition` until it holds, failing the test with `what` after `PATIENCE`.
fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        thread::sleep(Duration::from_millis(1));
    }
}

/// A gate jobs wait at until the test opens it (or drops it).
struct Gate {
    open: Arc<(Mutex<bool>, std::sync::Condvar)>,
}

impl Gate {
    fn new() -> Self {
        Self { open: Arc::new((Mutex::new(false), std::sync::Condvar::new())) }
    }

    /// A closure that blocks until the gate opens.
    fn waiter(&self) -> impl Fn() + Send + 'static {
        let open = Arc::clone(&self.open);
        move || {
            let (lock, condvar) = &*open;
            let mut guard = lock.lock().unwrap();
            while !*guard {
                guard = condvar.wait(guard).unwrap();
            }
        }
    }

    fn open(&self) {
        let (lock, condvar) = &*self.open;
        *lock.lock().unwrap() = true;
        condvar.notify_all();
    }
}

impl Drop for Gate {
    fn drop(&mut self) {
        self.open();
    }
}

/// A pool of `threads` fixed threads and a queue of `capacity`, with every thread held at a
/// gate (and the queue empty) when it returns.
fn held_pool(threads: usize, capacity: usize, policy: RejectionPolicy) -> (BlockingPool, Gate) {
    let pool = BlockingPool::builder()
        .threads(threads)
        .queue_capacity(capacity)
        .rejection_policy(policy)
        .build()
        .unwrap();
    let gate = Gate::new();
    for _ in 0..threads {
        pool.execute(gate.waiter()).unwrap();
    }
    wait_until("every thread is held", || pool.stats().running == threads);
    (pool, gate)
}

#[test]
fn bad_config_names_the_field() {
    let cases = [
        (BlockingPool::builder().max_threads(0).build(), "max_threads"),
        (BlockingPool::builder().max_threads(2).core_threads(3).build(), "core_threads"),
        (BlockingPool::builder().queue_capacity(0).build(), "queue_capacity"),
        (BlockingPool::builder().queue_capacity(usize::MAX).build(), "queue_capacity"),
        (BlockingPool::builder().thread_name("a\0b").build(), "thread_name"),
    ];
    for (result, field) in cases {
        let err = result.unwrap_err();
        assert_eq!(err.field(), Some(field), "{err}");
        assert!(err.to_string().contains(field), "{err}");
    }
    assert!(BlockingPool::builder().core_threads(0).max_threads(1).build().is_ok());
}

#[test]
fn threads_start_as_work_needs_them() {
    let pool = BlockingPool::builder().core_threads(2).max_threads(4).build().unwrap();
    assert_eq!(pool.stats().threads, 0, "no thread before the first job");
    pool.spawn(|| ()).unwrap().join().unwrap();
    assert!(pool.stats().threads >= 1);
    assert!(pool.stats().threads <= 2, "one job needs at most the core");
}

#[test]
fn reject_policy_gives_the_closure_back() {
    let (pool, _gate) = held_pool(1, 1, RejectionPolicy::Reject);
    pool.execute(|| ()).unwrap();
    match pool.spawn(|| 42) {
        Err(SubmitError::Full(job)) => assert_eq!(job(), 42),
        other => panic!("expected Full, got {other:?}"),
    }
    assert_eq!(pool.stats().rejected, 1);
    assert_eq!(pool.stats().queued, 1);
}

#[test]
fn caller_runs_policy_runs_the_job_on_the_submitting_thread() {
    let (pool, _gate) = held_pool(1, 1, RejectionPolicy::CallerRuns);
    pool.execute(|| ()).unwrap();
    let handle = pool.spawn(|| thread::current().id()).unwrap();
    let mut handle = handle;
    assert_eq!(
        handle.wait_timeout(Duration::ZERO),
        Some(Ok(thread::current().id())),
        "ran before the submit returned, on the caller's thread"
    );
    let stats = pool.stats();
    assert_eq!((stats.rejected, stats.ran_on_caller, stats.queued), (1, 1, 1));
}

#[test]
fn drop_oldest_policy_evicts_the_oldest_queued_job() {
    let (pool, gate) = held_pool(1, 2, RejectionPolicy::DropOldest);
    let oldest = pool.spawn(|| "a").unwrap();
    let second = pool.spawn(|| "b").unwrap();
    let newest = pool.spawn(|| "c").unwrap();
    assert_eq!(oldest.join(), Err(TaskError::Evicted));
    assert_eq!(pool.stats().queued, 2, "the queue never grew");
    gate.open();
    assert_eq!(second.join(), Ok("b"));
    assert_eq!(newest.join(), Ok("c"));
    assert_eq!(pool.stats().evicted, 1);
}

#[test]
fn keep_alive_retires_threads_above_the_core() {
    let pool = BlockingPool::builder()
        .core_threads(1)
        .max_threads(4)
        .keep_alive(Duration::from_millis(20))
        .build()
        .unwrap();
    let gate = Gate::new();
    for _ in 0..4 {
        pool.execute(gate.waiter()).unwrap();
    }
    wait_until("four threads run at once", || pool.stats().running == 4);
    assert_eq!(pool.stats().threads, 4);
    gate.open();
    wait_until("the threads above the core retire", || pool.stats().threads == 1);
    // The core thread stays through several keep-alives, and still works.
    thread::sleep(Duration::from_millis(100));
    assert_eq!(pool.stats().threads, 1);
    assert_eq!(pool.spawn(|| 7).unwrap().join(), Ok(7));
}

#[test]
fn max_threads_is_never_exceeded() {
    let pool = BlockingPool::builder()
        .core_threads(1)
        .max_threads(3)
        .queue_capacity(1000)
        .build()
        .unwrap();
    let now = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let handles: Vec<_> = (0..300)
        .map(|_| {
            let (now, peak) = (Arc::clone(&now), Arc::clone(&peak));
            pool.spawn(move || {
                let running = now.fetch_add(1, Ordering::SeqCst) + 1;
                peak.fetch_max(running, Ordering::SeqCst);
                thread::sleep(Duration::from_micros(200));
                now.fetch_sub(1, Ordering::SeqCst);
            })
            .unwrap()
        })
        .collect();
    for handle in handles {
        handle.join().unwrap();
        assert!(pool.stats().threads <= 3);
    }
    assert!(peak.load(Ordering::SeqCst) <= 3, "peak {}", peak.load(Ordering::SeqCst));

    // And it does reach the maximum when the work needs it.
    let gate = Gate::new();
    for _ in 0..3 {
        pool.execute(gate.waiter()).unwrap();
    }
    wait_until("three jobs run at once", || pool.stats().running == 3);
}

#[test]
fn a_flood_never_grows_the_queue_past_its_bound() {
    let (pool, gate) = held_pool(2, 16, RejectionPolicy::Reject);
    let ran = Arc::new(AtomicUsize::new(0));
    let (mut accepted, mut refused) = (0, 0);
    for _ in 0..10_000 {
        let ran = Arc::clone(&ran);
        match pool.execute(move || {
            ran.fetch_add(1, Ordering::Relaxed);
        }) {
            Ok(()) => accepted += 1,
            Err(err) if err.is_full() => refused += 1,
            Err(err) => panic!("{err}"),
        }
        assert!(pool.stats().queued <= 16);
    }
    assert_eq!(accepted, 16);
    assert_eq!(refused, 10_000 - 16);
    assert_eq!(pool.stats().rejected, refused as u64);
    gate.open();
    pool.shutdown();
    assert_eq!(ran.load(Ordering::Relaxed), 16);
}

#[test]
fn panics_are_contained_and_reported() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let hook_seen = Arc::clone(&seen);
    let pool = BlockingPool::builder()
        .threads(1)
        .panic_hook(move |message| hook_seen.lock().unwrap().push(message.to_owned()))
        .build()
        .unwrap();
    let handle = pool.spawn(|| -> u32 { panic!("boom") }).unwrap();
    assert_eq!(handle.join(), Err(TaskError::Panicked("boom".to_owned())));
    pool.execute(|| panic!("quiet {}", 2)).unwrap();
    assert_eq!(pool.spawn(|| 5).unwrap().join(), Ok(5), "the thread carries on");
    let stats = pool.stats();
    assert_eq!((stats.panicked, stats.completed, stats.threads), (2, 3, 1));
    assert_eq!(*seen.lock().unwrap(), ["boom", "quiet 2"]);
}

#[test]
fn a_panicking_panic_hook_is_contained() {
    let pool = BlockingPool::builder()
        .threads(1)
        .panic_hook(|_| panic!("the hook itself"))
        .build()
        .unwrap();
    assert!(pool.spawn(|| panic!("job")).unwrap().join().unwrap_err().is_panic());
    assert_eq!(pool.spawn(|| 1).unwrap().join(), Ok(1));
    assert_eq!(pool.stats().threads, 1);
}

#[test]
fn shutdown_runs_the_queued_jobs_and_joins_the_threads() {
    let (pool, gate) = held_pool(2, 100, RejectionPolicy::Reject);
    let ran = Arc::new(AtomicUsize::new(0));
    for _ in 0..50 {
        let ran = Arc::clone(&ran);
        pool.execute(move || {
            ran.fetch_add(1, Ordering::SeqCst);
        })
        .unwrap();
    }
    let opener = thread::spawn(move || {
        thread::sleep(Duration::from_millis(20));
        gate.open();
    });
    pool.shutdown();
    assert_eq!(ran.load(Ordering::SeqCst), 50, "every queued job ran");
    let stats = pool.stats();
    assert_eq!((stats.threads, stats.queued, stats.completed), (0, 0, 52));
    assert!(pool.is_shutdown());
    assert!(pool.execute(|| ()).unwrap_err().is_shutdown());
    opener.join().unwrap();
}

#[test]
fn shutdown_timeout_returns_at_its_deadline_and_cancels_the_queue() {
    let (pool, gate) = held_pool(1, 4, RejectionPolicy::Reject);
    let queued = pool.spawn(|| "never").unwrap();
    assert!(!pool.shutdown_timeout(Duration::from_millis(20)));
    assert_eq!(queued.join(), Err(TaskError::Cancelled));
    assert_eq!(pool.stats().cancelled, 1);
    gate.open();
    wait_until("the held thread exits once its job ends", || pool.stats().threads == 0);
}

#[test]
fn shutdown_timeout_is_true_when_the_work_finishes_in_time() {
    let pool = BlockingPool::builder().threads(2).build().unwrap();
    let handle = pool.spawn(|| 3).unwrap();
    assert!(pool.shutdown_timeout(PATIENCE));
    assert_eq!(handle.join(), Ok(3));
    assert_eq!(pool.stats().threads, 0);
}

#[test]
fn shutdown_from_a_job_of_the_pool_does_not_deadlock() {
    let pool = Arc::new(BlockingPool::builder().threads(1).build().unwrap());
    let inner = Arc::clone(&pool);
    let handle = pool.spawn(move || inner.shutdown()).unwrap();
    assert_eq!(handle.join(), Ok(()));
    assert!(pool.is_shutdown());
    pool.shutdown();
    assert_eq!(pool.stats().threads, 0);
}

#[test]
fn dropping_the_pool_does_not_wait_and_its_threads_exit() {
    /// Sends on its channel when dropped: at its thread's exit, as a thread-local.
    struct ExitSignal(mpsc::Sender<()>);
    impl Drop for ExitSignal {
        fn drop(&mut self) {
            let _ = self.0.send(());
        }
    }
    thread_local! {
        static EXIT: std::cell::RefCell<Option<ExitSignal>> = const { std::cell::RefCell::new(None) };
    }

    let pool = BlockingPool::builder().threads(2).build().unwrap();
    let gate = Gate::new();
    let (exited, exits) = mpsc::channel();
    let mut handles = Vec::new();
    for _ in 0..2 {
        let exited = exited.clone();
        let wait = gate.waiter();
        handles.push(
            pool.spawn(move || {
                EXIT.with(|exit| *exit.borrow_mut() = Some(ExitSignal(exited)));
                wait();
                "ran"
            })
            .unwrap(),
        );
    }
    let queued = pool.spawn(|| "queued").unwrap();
    drop(pool); // returns although both threads are held
    gate.open();
    for handle in handles {
        assert_eq!(handle.join(), Ok("ran"));
    }
    assert_eq!(queued.join(), Ok("queued"), "the queue still runs after a drop");
    for _ in 0..2 {
        exits.recv_timeout(PATIENCE).expect("a pool thread exits after the drop");
    }
}

#[test]
fn handles_are_awaitable_without_tokio_and_waitable_with_a_timeout() {
    let pool = BlockingPool::builder().threads(1).build().unwrap();
    let gate = Gate::new();
    let wait = gate.waiter();
    let mut handle = pool
        .spawn(move || {
            wait();
            9
        })
        .unwrap();
    assert_eq!(handle.wait_timeout(Duration::from_millis(5)), None);
    gate.open();
    assert_eq!(handle.wait_timeout(PATIENCE), Some(Ok(9)));
    let handle = pool.spawn(|| 10).unwrap();
    assert_eq!(futures::executor::block_on(handle), Ok(10));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handles_are_awaitable_from_tokio() {
    let pool = BlockingPool::builder().max_threads(2).build().unwrap();
    let handles: Vec<_> = (0..20u32).map(|n| pool.spawn(move || n * 2).unwrap()).collect();
    let doubled = futures::future::try_join_all(handles).await.unwrap();
    assert_eq!(doubled.iter().sum::<u32>(), 380);
}

#[test]
fn stats_count_jobs_and_record_queue_wait_and_run_time() {
    let pool = BlockingPool::builder().threads(1).build().unwrap();
    for _ in 0..10 {
        pool.execute(|| thread::sleep(Duration::from_millis(1))).unwrap();
    }
    pool.shutdown();
    let stats = pool.stats();
    assert_eq!(stats.completed, 10);
    assert_eq!(stats.queue_wait.count(), 10);
    assert_eq!(stats.run_time.count(), 10);
    assert!(stats.run_time.max() >= Duration::from_millis(1));
    assert_eq!((stats.running, stats.queued, stats.rejected), (0, 0, 0));
}

/// Tiny jobs are timed by sample, but the histograms still count every job.
#[test]
fn sampled_histograms_count_every_job() {
    let pool = BlockingPool::builder().threads(2).queue_capacity(10_000).build().unwrap();
    for _ in 0..5_000 {
        pool.execute(|| ()).unwrap();
    }
    pool.shutdown();
    let stats = pool.stats();
    assert_eq!(stats.completed, 5_000);
    assert_eq!(stats.queue_wait.count(), 5_000);
    assert_eq!(stats.run_time.count(), 5_000);
}

/// Threads that retire the moment they idle (keep-alive 0, no core) race every submit; the
/// pool must still never leave a job with no thread to run it.
#[test]
fn retiring_threads_never_strand_a_job() {
    let pool = BlockingPool::builder()
        .core_threads(0)
        .max_threads(2)
        .keep_alive(Duration::ZERO)
        .queue_capacity(64)
        .build()
        .unwrap();
    for round in 0..2_000 {
        let mut handle = pool.spawn(move || round).unwrap();
        assert_eq!(handle.wait_timeout(PATIENCE), Some(Ok(round)), "job {round} stranded");
        if round % 100 == 0 {
            wait_until("every thread retires", || pool.stats().threads == 0);
        }
    }
}

#[test]
fn the_pool_and_its_handles_cross_threads() {
    fn send_sync<T: Send + Sync>() {}
    fn send<T: Send>() {}
    send_sync::<BlockingPool>();
    send::<millpond::blocking::BlockingHandle<String>>();
    send::<SubmitError<Box<dyn FnOnce() + Send>>>();
}
