//! The adaptive limiter from the outside: admission, the wait queue and its deadlines,
//! cancellation, outcomes, and an algorithm finding a simulated backend's capacity. Timing runs
//! on tokio's paused clock.

use std::future::Future;
use std::pin::pin;
use std::task::Context;
use std::time::Duration;

use futures::task::noop_waker;
use millpond::limit::{AdaptiveLimiter, Aimd, Gradient2, Outcome, Rejected};

const MS: Duration = Duration::from_millis(1);

fn aimd(limit: usize) -> Aimd {
    Aimd::new().min_limit(1).initial_limit(limit).max_limit(limit)
}

/// Polls `future` once, expecting it to wait.
fn pending<F: Future>(future: std::pin::Pin<&mut F>) {
    let waker = noop_waker();
    assert!(future.poll(&mut Context::from_waker(&waker)).is_pending());
}

#[tokio::test(start_paused = true)]
async fn admits_up_to_the_limit_and_queues_the_rest_in_order() {
    let limiter = AdaptiveLimiter::builder(aimd(2)).fifo().build().unwrap();
    let first = limiter.acquire().await.unwrap();
    let _second = limiter.acquire().await.unwrap();
    assert!(limiter.try_acquire().is_none());
    let mut third = pin!(limiter.acquire());
    let mut fourth = pin!(limiter.acquire());
    pending(third.as_mut());
    pending(fourth.as_mut());
    assert_eq!(limiter.status().queued, 2);
    drop(first);
    assert!(limiter.try_acquire().is_none(), "the freed room is promised to a waiter");
    let third = third.await.unwrap();
    pending(fourth.as_mut());
    drop(third);
    drop(fourth.await.unwrap());
}

#[tokio::test(start_paused = true)]
async fn a_full_queue_refuses_at_once_and_a_wait_ends_at_its_deadline() {
    let limiter = AdaptiveLimiter::builder(aimd(1))
        .max_queue(1)
        .queue_timeout(50 * MS)
        .fifo()
        .build()
        .unwrap();
    let _held = limiter.acquire().await.unwrap();
    let mut waiting = pin!(limiter.acquire());
    pending(waiting.as_mut());
    assert_eq!(limiter.acquire().await.unwrap_err(), Rejected::QueueFull { limit: 1 });
    let started = tokio::time::Instant::now();
    let err = waiting.await.unwrap_err();
    assert_eq!(err, Rejected::TimedOut { waited: 50 * MS });
    assert_eq!(started.elapsed(), 50 * MS);
    let status = limiter.status();
    assert_eq!((status.queued, status.rejected_queue_full, status.rejected_timed_out), (0, 1, 1));
}

#[tokio::test(start_paused = true)]
async fn no_queue_means_refusal_at_the_limit() {
    let limiter = AdaptiveLimiter::builder(aimd(1)).max_queue(0).build().unwrap();
    let _held = limiter.acquire().await.unwrap();
    assert!(matches!(limiter.acquire().await, Err(Rejected::QueueFull { .. })));
}

#[tokio::test(start_paused = true)]
async fn a_cancelled_waiter_passes_its_room_on_and_loses_nothing() {
    let limiter = AdaptiveLimiter::builder(aimd(1)).fifo().build().unwrap();
    let held = limiter.acquire().await.unwrap();
    let mut cancelled = Box::pin(limiter.acquire());
    pending(cancelled.as_mut());
    let mut next = pin!(limiter.acquire());
    pending(next.as_mut());
    // The room goes to the first waiter, which is dropped before it sees it.
    drop(held);
    drop(cancelled);
    let permit = next.await.expect("the room passed on");
    assert_eq!(limiter.status().in_flight, 1);
    drop(permit);
    let status = limiter.status();
    assert_eq!((status.in_flight, status.queued), (0, 0));
    assert_eq!(status.ignored, 3, "all three ended without an outcome");
}

#[tokio::test(start_paused = true)]
async fn a_waiter_cancelled_before_service_leaves_the_queue() {
    let limiter = AdaptiveLimiter::builder(aimd(1)).fifo().build().unwrap();
    let held = limiter.acquire().await.unwrap();
    let mut cancelled = Box::pin(limiter.acquire());
    pending(cancelled.as_mut());
    drop(cancelled);
    assert_eq!(limiter.status().queued, 0);
    drop(held);
    assert!(limiter.try_acquire().is_some());
}

#[tokio::test(start_paused = true)]
async fn outcomes_move_the_limit_and_a_dropped_run_is_a_loss() {
    let limiter =
        AdaptiveLimiter::builder(Aimd::new().min_limit(1).initial_limit(10)).build().unwrap();
    // A success while the limit is in use grows it by one.
    let permits: Vec<_> = (0..10).map(|_| limiter.try_acquire().unwrap()).collect();
    permits.into_iter().for_each(|permit| permit.success());
    assert!(limiter.status().limit > 10);
    let before = limiter.status().limit;
    // A call whose caller gives up counts as dropped.
    let slow = limiter.run(tokio::time::sleep(Duration::from_secs(10)));
    assert!(tokio::time::timeout(MS, slow).await.is_err());
    let status = limiter.status();
    assert_eq!((status.dropped, status.in_flight), (1, 0));
    assert_eq!(status.limit, before * 9 / 10);
    // A classified failure changes nothing; a permit dropped without an outcome neither.
    let failed: Result<(), &str> =
        limiter.run_classified(async { Err("not found") }, |_| Outcome::Failure).await.unwrap();
    assert!(failed.is_err());
    drop(limiter.try_acquire());
    let status = limiter.status();
    assert_eq!((status.limit, status.failed, status.ignored), (before * 9 / 10, 1, 1));
}

#[tokio::test(start_paused = true)]
async fn a_standing_queue_turns_stale_waiters_away_and_serves_the_newest() {
    let limiter = AdaptiveLimiter::builder(aimd(1)).max_queue(1_000).build().unwrap();
    // One call at a time, each taking 20 ms, offered faster than that: the queue stands.
    let mut handles = Vec::new();
    for _ in 0..40 {
        let limiter = limiter.clone();
        handles.push(tokio::spawn(async move { limiter.run(tokio::time::sleep(20 * MS)).await }));
        tokio::time::sleep(5 * MS).await;
    }
    let mut shed = 0;
    for handle in handles {
        if let Err(Rejected::Shed { waited }) = handle.await.unwrap() {
            assert!(waited > 10 * MS);
            shed += 1;
        }
    }
    let status = limiter.status();
    assert!(shed > 0, "{status:?}");
    assert_eq!(status.rejected_shed, shed);
    assert_eq!((status.in_flight, status.queued), (0, 0));
}

#[test]
fn invalid_settings_name_their_field() {
    let field = |result: Result<AdaptiveLimiter, millpond::BuildError>| {
        result.unwrap_err().field().expect("a field")
    };
    assert_eq!(field(AdaptiveLimiter::builder(Aimd::new().min_limit(0)).build()), "min_limit");
    assert_eq!(field(AdaptiveLimiter::builder(Aimd::new().max_limit(10)).build()), "max_limit");
    assert_eq!(field(AdaptiveLimiter::builder(Aimd::new().backoff(1.0)).build()), "backoff");
    assert_eq!(
        field(AdaptiveLimiter::builder(Gradient2::new().initial_limit(500)).build()),
        "initial_limit"
    );
    assert_eq!(
        field(AdaptiveLimiter::builder(Gradient2::new().tolerance(0.5)).build()),
        "tolerance"
    );
    assert_eq!(
        field(AdaptiveLimiter::builder(Gradient2::new().smoothing(f64::NAN)).build()),
        "smoothing"
    );
    assert_eq!(
        field(AdaptiveLimiter::builder(Aimd::new()).queue_timeout(Duration::ZERO).build()),
        "queue_timeout"
    );
    assert_eq!(
        field(AdaptiveLimiter::builder(Aimd::new()).adaptive_lifo(Duration::ZERO, MS).build()),
        "target"
    );
}

/// A backend that serves `capacity` calls at once in `base` each; past that, calls share it and
/// each takes `base × in_flight / capacity`.
#[derive(Clone)]
struct Backend {
    in_flight: std::rc::Rc<std::cell::Cell<usize>>,
    capacity: std::rc::Rc<std::cell::Cell<usize>>,
    base: Duration,
}

impl Backend {
    async fn call(&self) {
        let now = self.in_flight.get() + 1;
        self.in_flight.set(now);
        let load = now.max(self.capacity.get()) as u32;
        tokio::time::sleep(self.base * load / self.capacity.get() as u32).await;
        self.in_flight.set(self.in_flight.get() - 1);
    }
}

/// Offers `clients` closed-loop callers for `secs` seconds; returns the median limit over the
/// last second (the median, so that a no-load probe, which pins the limit at its floor for a
/// moment at a jittered time, does not decide the answer).
async fn drive(limiter: &AdaptiveLimiter, backend: &Backend, clients: usize, secs: u64) -> usize {
    let local = tokio::task::LocalSet::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    let samples = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
    {
        let (limiter, samples) = (limiter.clone(), samples.clone());
        local.spawn_local(async move {
            tokio::time::sleep_until(deadline - Duration::from_secs(1)).await;
            while tokio::time::Instant::now() < deadline {
                samples.borrow_mut().push(limiter.status().limit);
                tokio::time::sleep(10 * MS).await;
            }
        });
    }
    for _ in 0..clients {
        let (limiter, backend) = (limiter.clone(), backend.clone());
        local.spawn_local(async move {
            while tokio::time::Instant::now() < deadline {
                if limiter.run(backend.call()).await.is_err() {
                    tokio::time::sleep(MS).await;
                }
            }
        });
    }
    local.await;
    let mut samples = samples.take();
    samples.sort_unstable();
    samples[samples.len() / 2]
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn gradient2_settles_near_capacity_and_follows_it_down_and_up() {
    let backend = Backend {
        in_flight: Default::default(),
        capacity: std::rc::Rc::new(std::cell::Cell::new(100)),
        base: 10 * MS,
    };
    let limiter = AdaptiveLimiter::builder(Gradient2::new().max_limit(1_000))
        .max_queue(1_000)
        .build()
        .unwrap();
    // 300 callers: three times what the backend serves without queueing. Tolerance 1.5 puts
    // the limit where latency is 1.5 times the no-load latency: 150 here.
    let limit = drive(&limiter, &backend, 300, 10).await;
    assert!((80..=200).contains(&limit), "capacity 100: limit {limit}");
    backend.capacity.set(50);
    let limit = drive(&limiter, &backend, 300, 10).await;
    assert!((40..=100).contains(&limit), "capacity 50: limit {limit}");
    backend.capacity.set(100);
    let limit = drive(&limiter, &backend, 300, 10).await;
    assert!((80..=200).contains(&limit), "capacity back at 100: limit {limit}");
}

#[tokio::test(start_paused = true)]
async fn a_refused_call_takes_the_fallback_with_the_reason() {
    let limiter = AdaptiveLimiter::builder(aimd(1)).max_queue(0).build().unwrap();
    let held = limiter.acquire().await.unwrap();
    let answer = limiter
        .run_or_else(async { "fresh" }, |rejected| async move {
            assert_eq!(rejected, Rejected::QueueFull { limit: 1 });
            "cached"
        })
        .await;
    assert_eq!(answer, "cached");
    drop(held);
    assert_eq!(limiter.run_or_else(async { "fresh" }, |_| async { "cached" }).await, "fresh");
    assert_eq!(limiter.status().succeeded, 1);
}
