//! Properties of the limit algorithms and of the limiter's accounting, over arbitrary
//! sequences of call outcomes.

use std::time::Duration;

use millpond::limit::{AdaptiveLimiter, Aimd, Gradient2, LimitAlgorithm, Outcome, Permit, Sample};
use proptest::prelude::*;

fn outcome() -> impl Strategy<Value = Outcome> {
    prop_oneof![Just(Outcome::Success), Just(Outcome::Failure), Just(Outcome::Dropped)]
}

/// A call as an algorithm sees it: outcome, latency in µs, calls in flight at its admission.
fn calls() -> impl Strategy<Value = Vec<(Outcome, u64, usize)>> {
    prop::collection::vec((outcome(), 0..2_000_000u64, 1..600usize), 1..400)
}

/// Feeds `calls` to `algorithm`, the clock moving by each call's latency; checks `each` on
/// every step with the limit before and after.
fn feed(
    algorithm: &mut dyn LimitAlgorithm,
    calls: &[(Outcome, u64, usize)],
    mut each: impl FnMut(&Sample, usize, usize),
) {
    let mut now = tokio::time::Instant::now();
    let mut limit = algorithm.initial();
    for &(outcome, micros, in_flight) in calls {
        let latency = Duration::from_micros(micros);
        now += latency;
        let sample = Sample::new(outcome, latency, in_flight, limit, now);
        let next = algorithm.update(&sample);
        each(&sample, limit, next);
        limit = next;
    }
}

proptest! {
    #[test]
    fn aimd_stays_within_bounds_and_grows_only_on_a_busy_success(
        calls in calls(), min in 1..50usize, span in 0..300usize,
    ) {
        let mut aimd = Aimd::new().min_limit(min).initial_limit(min).max_limit(min + span);
        feed(&mut aimd, &calls, |sample, before, after| {
            assert!((min..=min + span).contains(&after), "{after} outside [{min}, {}]", min + span);
            if after > before {
                assert_eq!(sample.outcome, Outcome::Success);
                assert!(!sample.app_limited(), "grew on an idle sample: {sample:?}");
                assert_eq!(after, before + 1, "additive increase is one at a time");
            }
            if sample.outcome == Outcome::Failure {
                assert_eq!(after, before, "a failure says nothing about load");
            }
        });
    }

    #[test]
    fn gradient2_stays_within_bounds_and_never_grows_on_loss_or_failure(
        calls in calls(), min in 1..50usize, span in 0..300usize,
    ) {
        let mut gradient = Gradient2::new().min_limit(min).initial_limit(min).max_limit(min + span);
        feed(&mut gradient, &calls, |sample, before, after| {
            assert!((min..=min + span).contains(&after), "{after} outside [{min}, {}]", min + span);
            if sample.outcome != Outcome::Success {
                assert!(after <= before, "{:?} raised {before} to {after}", sample.outcome);
            }
        });
    }

    #[test]
    fn the_limiter_never_admits_past_its_limit_and_accounts_for_every_call(
        ops in prop::collection::vec((any::<bool>(), outcome(), 0..8usize), 1..300),
    ) {
        let limiter = AdaptiveLimiter::builder(Aimd::new().min_limit(1).initial_limit(4).max_limit(8))
            .build()
            .unwrap();
        let mut held: Vec<Permit> = Vec::new();
        for (admit, outcome, index) in ops {
            if admit {
                if let Some(permit) = limiter.try_acquire() {
                    let status = limiter.status();
                    assert!(status.in_flight <= status.limit, "{status:?}");
                    held.push(permit);
                }
            } else if !held.is_empty() {
                let permit = held.swap_remove(index % held.len());
                if index % 4 == 0 { drop(permit) } else { permit.record(outcome) }
            }
        }
        held.clear();
        let status = limiter.status();
        assert_eq!(status.in_flight, 0);
        let ended = status.succeeded + status.failed + status.dropped + status.ignored;
        assert_eq!(status.admitted, ended, "{status:?}");
    }
}
