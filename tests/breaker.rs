//! The public circuit breaker on tokio's paused clock: each rule opens it, it refuses while open,
//! one probe decides, and a property test holds its invariants over random call sequences.

use std::time::Duration;

use millpond::breaker::{BreakerError, BreakerState, CircuitBreaker};
use proptest::prelude::*;

async fn ok() -> Result<(), &'static str> {
    Ok(())
}

async fn fail() -> Result<(), &'static str> {
    Err("downstream refused")
}

#[tokio::test(start_paused = true)]
async fn the_failure_rate_opens_it_then_one_probe_closes_it() {
    let breaker = CircuitBreaker::builder()
        .failure_rate(0.5)
        .minimum_calls(4)
        .open_for(Duration::from_secs(5))
        .build()
        .unwrap();
    breaker.call(fail()).await.unwrap_err();
    breaker.call(fail()).await.unwrap_err();
    breaker.call(ok()).await.unwrap();
    assert_eq!(breaker.state(), BreakerState::Closed, "3 calls are below the minimum");
    breaker.call(ok()).await.unwrap();
    assert!(matches!(breaker.state(), BreakerState::Open { .. }), "2 of 4 failed");

    let refused: Result<(), BreakerError<&str>> =
        breaker.call(async { panic!("an open breaker must not call") }).await;
    let Err(BreakerError::Open { retry_in }) = refused else { panic!("refused: {refused:?}") };
    assert_eq!(retry_in, Duration::from_secs(5));

    tokio::time::advance(Duration::from_secs(5)).await;
    let probe = breaker.try_acquire().expect("the probe goes through");
    assert!(breaker.try_acquire().is_err(), "one probe at a time");
    assert_eq!(breaker.state(), BreakerState::HalfOpen);
    probe.succeeded();
    assert_eq!(breaker.state(), BreakerState::Closed);
    breaker.call(ok()).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn slow_calls_open_it_even_when_they_succeed() {
    let breaker = CircuitBreaker::builder()
        .no_failure_rate()
        .slow_calls(Duration::from_millis(100), 0.5)
        .minimum_calls(2)
        .build()
        .unwrap();
    let slow = || async {
        tokio::time::sleep(Duration::from_millis(150)).await;
        Ok::<_, &str>(())
    };
    breaker.call(slow()).await.unwrap();
    breaker.call(ok()).await.unwrap();
    assert!(matches!(breaker.state(), BreakerState::Open { .. }));
}

#[tokio::test(start_paused = true)]
async fn a_run_of_failures_opens_it_and_a_failed_probe_reopens_it() {
    let breaker = CircuitBreaker::builder()
        .no_failure_rate()
        .consecutive_failures(3)
        .open_for(Duration::from_secs(1))
        .build()
        .unwrap();
    for _ in 0..2 {
        breaker.call(fail()).await.unwrap_err();
    }
    breaker.call(ok()).await.unwrap();
    for _ in 0..2 {
        breaker.call(fail()).await.unwrap_err();
    }
    assert_eq!(breaker.state(), BreakerState::Closed, "the success broke the run");
    breaker.call(fail()).await.unwrap_err();
    assert!(matches!(breaker.state(), BreakerState::Open { .. }));

    tokio::time::advance(Duration::from_secs(1)).await;
    breaker.call(fail()).await.unwrap_err();
    assert!(
        matches!(breaker.state(), BreakerState::Open { retry_in } if retry_in == Duration::from_secs(1))
    );

    // A probe whose caller gave up passes the turn to the next caller.
    tokio::time::advance(Duration::from_secs(1)).await;
    drop(breaker.try_acquire().unwrap());
    breaker.call(ok()).await.unwrap();
    assert_eq!(breaker.state(), BreakerState::Closed);
}

#[tokio::test(start_paused = true)]
async fn an_abandoned_probe_passes_its_turn() {
    let open_for = Duration::from_secs(1);
    let breaker = CircuitBreaker::builder()
        .no_failure_rate()
        .consecutive_failures(1)
        .open_for(open_for)
        .build()
        .unwrap();
    breaker.call(fail()).await.unwrap_err();
    tokio::time::advance(open_for).await;

    // The probe's caller gives up: a permit dropped without a verdict, and a `call` cancelled
    // while it runs.
    drop(breaker.try_acquire().expect("the probe"));
    assert_eq!(breaker.state(), BreakerState::HalfOpen, "the drop decided nothing");
    let hung = breaker.call(std::future::pending::<Result<(), &str>>());
    assert!(tokio::time::timeout(Duration::from_millis(10), hung).await.is_err());
    assert_eq!(breaker.state(), BreakerState::HalfOpen);

    // The next caller is the probe: one at a time, and its failure opens the breaker again.
    let probe = breaker.try_acquire().expect("the turn passed to the next caller");
    assert!(breaker.try_acquire().is_err(), "only one probe is out");
    probe.failed();
    assert_eq!(breaker.state(), BreakerState::Open { retry_in: open_for });
}

#[tokio::test(start_paused = true)]
async fn a_probe_that_never_ends_counts_as_failed_after_the_probe_timeout() {
    let (open_for, probe_timeout) = (Duration::from_secs(1), Duration::from_secs(10));
    let breaker = CircuitBreaker::builder()
        .no_failure_rate()
        .consecutive_failures(1)
        .open_for(open_for)
        .probe_timeout(probe_timeout)
        .build()
        .unwrap();
    breaker.call(fail()).await.unwrap_err();
    tokio::time::advance(open_for).await;
    // The probe's call hangs and its permit is never dropped.
    let hung = breaker.try_acquire().expect("the probe");
    tokio::time::advance(probe_timeout - Duration::from_millis(1)).await;
    assert_eq!(breaker.try_acquire().unwrap_err(), Duration::ZERO, "still waiting on the probe");
    tokio::time::advance(Duration::from_millis(1)).await;
    // Given up on: the breaker opens again for its cool-down, then probes anew.
    assert_eq!(breaker.state(), BreakerState::Open { retry_in: open_for });
    tokio::time::advance(open_for).await;
    let probe = breaker.try_acquire().expect("a new probe");
    // The hung call ends at last; its verdict no longer counts.
    hung.failed();
    assert_eq!(breaker.state(), BreakerState::HalfOpen);
    probe.succeeded();
    assert_eq!(breaker.state(), BreakerState::Closed);
}

#[tokio::test(start_paused = true)]
async fn any_signal_can_trip_it_or_hold_it_open() {
    let open_for = Duration::from_secs(2);
    let breaker = CircuitBreaker::builder().open_for(open_for).build().unwrap();
    breaker.trip();
    assert_eq!(breaker.state(), BreakerState::Open { retry_in: open_for });
    assert!(matches!(breaker.call(ok()).await, Err(BreakerError::Open { .. })));
    tokio::time::advance(open_for).await;
    breaker.call(ok()).await.expect("the probe closes it");
    assert_eq!(breaker.state(), BreakerState::Closed);

    let running = breaker.try_acquire().unwrap();
    breaker.hold_open();
    assert_eq!(breaker.state(), BreakerState::HeldOpen);
    assert_eq!(breaker.try_acquire().unwrap_err(), Duration::MAX);
    tokio::time::advance(Duration::from_secs(3600)).await;
    assert!(matches!(
        breaker.call(ok()).await,
        Err(BreakerError::Open { retry_in: Duration::MAX })
    ));
    running.succeeded();
    breaker.release();
    assert_eq!(breaker.state(), BreakerState::Closed);
    breaker.call(ok()).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_timeout_inside_call_counts_as_a_failure_one_outside_does_not() {
    let breaker =
        CircuitBreaker::builder().no_failure_rate().consecutive_failures(1).build().unwrap();
    let hang = || std::future::pending::<Result<(), &'static str>>();
    let limit = Duration::from_millis(100);

    // Around `call`: the call is dropped unfinished, which counts as neither outcome.
    assert!(tokio::time::timeout(limit, breaker.call(hang())).await.is_err());
    assert_eq!(breaker.state(), BreakerState::Closed, "an outer timeout never trips it");

    // Inside `call`: the elapsed timeout is the call's own error.
    let timed = breaker
        .call(async { tokio::time::timeout(limit, hang()).await.unwrap_or(Err("timed out")) })
        .await;
    assert!(matches!(timed, Err(BreakerError::Failed("timed out"))), "{timed:?}");
    assert!(matches!(breaker.state(), BreakerState::Open { .. }), "one failure in a row opens it");
}

#[test]
fn bad_rules_are_rejected_naming_the_field() {
    let err = CircuitBreaker::builder().probe_timeout(Duration::ZERO).build().unwrap_err();
    assert_eq!(err.field(), Some("probe_timeout"));
    let field =
        |builder: millpond::breaker::CircuitBreakerBuilder| builder.build().unwrap_err().field();
    assert_eq!(field(CircuitBreaker::builder().failure_rate(0.0)), Some("failure_rate"));
    assert_eq!(field(CircuitBreaker::builder().failure_rate(1.5)), Some("failure_rate"));
    assert_eq!(
        field(CircuitBreaker::builder().slow_calls(Duration::ZERO, 0.5)),
        Some("slow_calls")
    );
    assert_eq!(
        field(CircuitBreaker::builder().slow_calls(Duration::from_secs(1), 2.0)),
        Some("slow_calls")
    );
    assert_eq!(
        field(CircuitBreaker::builder().consecutive_failures(0)),
        Some("consecutive_failures")
    );
    assert_eq!(field(CircuitBreaker::builder().no_failure_rate()), Some("failure_rate"));
    assert_eq!(field(CircuitBreaker::builder().minimum_calls(0)), Some("minimum_calls"));
    assert_eq!(field(CircuitBreaker::builder().window(Duration::ZERO)), Some("window"));
    assert_eq!(field(CircuitBreaker::builder().open_for(Duration::ZERO)), Some("open_for"));
}

#[derive(Debug, Clone)]
enum Step {
    Advance(u64),
    Start,
    Succeed(usize),
    Fail(usize),
    Abandon(usize),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        (1..3_000_u64).prop_map(Step::Advance),
        Just(Step::Start),
        (0..8_usize).prop_map(Step::Succeed),
        (0..8_usize).prop_map(Step::Fail),
        (0..8_usize).prop_map(Step::Abandon),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Whatever the calls do: at most one probe is ever out, an open breaker refuses until its
    /// time is up, and it never opens on fewer outcomes than `minimum_calls`.
    #[test]
    fn the_breaker_keeps_its_invariants(steps in proptest::collection::vec(step(), 1..120)) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap();
        runtime.block_on(async {
            let breaker = CircuitBreaker::builder()
                .failure_rate(0.5)
                .minimum_calls(3)
                .window(Duration::from_secs(10))
                .open_for(Duration::from_secs(2))
                .build()
                .unwrap();
            let mut out = Vec::new();
            let mut outcomes = 0;
            for step in steps {
                match step {
                    Step::Advance(ms) => tokio::time::advance(Duration::from_millis(ms)).await,
                    Step::Start => {
                        let state = breaker.state();
                        match breaker.try_acquire() {
                            Ok(permit) => {
                                let was_open = matches!(state, BreakerState::Open { .. });
                                prop_assert!(!was_open, "an open breaker let a call through");
                                out.push(permit);
                            }
                            Err(retry_in) => {
                                prop_assert!(state != BreakerState::Closed, "a closed breaker refused");
                                prop_assert!(retry_in <= Duration::from_secs(2));
                            }
                        }
                    }
                    Step::Succeed(i) | Step::Fail(i) | Step::Abandon(i) if i >= out.len() => {}
                    Step::Succeed(i) => { out.swap_remove(i).succeeded(); outcomes += 1; }
                    Step::Fail(i) => { out.swap_remove(i).failed(); outcomes += 1; }
                    Step::Abandon(i) => drop(out.swap_remove(i)),
                }
                if outcomes < 3 {
                    prop_assert_eq!(breaker.state(), BreakerState::Closed);
                }
                // Whoever holds the probe of a half-open breaker holds it alone.
                if breaker.state() == BreakerState::HalfOpen {
                    if let Ok(probe) = breaker.try_acquire() {
                        prop_assert!(breaker.try_acquire().is_err(), "two probes out at once");
                        drop(probe);
                    }
                }
            }
            Ok(())
        })?;
    }
}
