//! Deadline arithmetic that cannot panic: a user may configure `Duration::MAX` for "never".

use std::time::Duration;

use tokio::time::Instant;

/// About a century: far enough to mean "never", near enough for `Instant` arithmetic.
const NEVER: Duration = Duration::from_secs(100 * 365 * 24 * 60 * 60);

/// `start + duration`, saturating at about a century from `start`.
pub(crate) fn after(start: Instant, duration: Duration) -> Instant {
    start.checked_add(duration).unwrap_or_else(|| start + NEVER)
}

/// `duration` in whole nanoseconds, saturating at `u64::MAX` (about 584 years).
pub(crate) fn nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

/// Whether `duration` has passed since `start` at `now`.
pub(crate) fn elapsed(start: Instant, duration: Duration, now: Instant) -> bool {
    now.saturating_duration_since(start) >= duration
}

#[cfg(all(test, not(millpond_loom)))]
mod tests {
    use super::*;

    #[test]
    fn huge_durations_saturate_instead_of_panicking() {
        let now = Instant::now();
        assert!(after(now, Duration::MAX) > now + Duration::from_secs(365 * 24 * 3600));
        assert!(!elapsed(now, Duration::MAX, now + Duration::from_secs(1)));
        assert!(elapsed(now, Duration::from_secs(1), now + Duration::from_secs(1)));
    }
}
