//! `build()` rejects every invalid configuration with an error that names the field.

mod support;

use std::time::Duration;

use millpond::pool::{Builder, Pool};
use support::TestManager;

fn builder() -> Builder<TestManager> {
    Pool::builder(TestManager::new().0)
}

fn rejected(builder: Builder<TestManager>, field: &str) {
    let err = builder.build().expect_err("configuration should be rejected");
    assert_eq!(err.field(), Some(field), "{err}");
    assert!(err.to_string().contains(field), "{err}");
}

#[tokio::test]
async fn invalid_sizes_are_rejected_by_name() {
    rejected(builder().max_size(0), "max_size");
    rejected(builder().max_size(4).max_idle(0), "max_idle");
    rejected(builder().max_size(4).max_idle(5), "max_idle");
    rejected(builder().max_size(4).min_idle(5), "min_idle");
    rejected(builder().max_size(4).max_idle(2).min_idle(3), "min_idle");
    rejected(builder().max_concurrent_creates(0), "max_concurrent_creates");
}

#[tokio::test]
async fn zero_durations_are_rejected_by_name() {
    rejected(builder().acquire_timeout(Duration::ZERO), "acquire_timeout");
    rejected(builder().create_timeout(Duration::ZERO), "create_timeout");
    rejected(builder().check_timeout(Duration::ZERO), "check_timeout");
    rejected(builder().idle_timeout(Some(Duration::ZERO)), "idle_timeout");
    rejected(builder().max_lifetime(Some(Duration::ZERO)), "max_lifetime");
    rejected(builder().keepalive(Some(Duration::ZERO)), "keepalive");
    rejected(builder().leak_threshold(Some(Duration::ZERO)), "leak_threshold");
    rejected(builder().maintenance_interval(Duration::ZERO), "maintenance_interval");
    rejected(builder().breaker(3, Duration::ZERO), "breaker_cooldown");
    rejected(builder().backoff(Duration::ZERO, Duration::from_secs(1)), "backoff_initial");
}

#[tokio::test]
async fn inconsistent_policies_are_rejected_by_name() {
    rejected(builder().backoff(Duration::from_secs(2), Duration::from_secs(1)), "backoff_max");
    rejected(builder().lifetime_jitter(0.9), "lifetime_jitter");
    rejected(builder().lifetime_jitter(f64::NAN), "lifetime_jitter");
    rejected(builder().lifetime_jitter(-0.1), "lifetime_jitter");
    rejected(builder().breaker(0, Duration::from_secs(1)), "breaker_threshold");
}

#[tokio::test]
async fn valid_edge_values_are_accepted() {
    let pool = builder()
        .max_size(1)
        .min_idle(1)
        .max_idle(1)
        .check_window(Duration::ZERO)
        .idle_timeout(None)
        .max_lifetime(None)
        .lifetime_jitter(0.0)
        .disable_breaker()
        .build()
        .unwrap();
    assert_eq!(pool.status().max_size, 1);
}

#[test]
fn building_outside_a_runtime_is_an_error_not_a_panic() {
    let err = builder().build().unwrap_err();
    assert!(err.is_no_runtime());
    assert_eq!(err.field(), None);
    assert!(err.to_string().contains("tokio runtime"), "{err}");
}
