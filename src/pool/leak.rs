//! Leak detection: remembers where each resource was checked out, and warns about those held
//! longer than the configured threshold.
//!
//! It only exists when `leak_threshold` is set, so pools without it pay nothing. The maintenance
//! task scans the checkouts on every tick; a leaked resource is reported once, with the call site
//! of the `get()` that took it, and again when (if ever) it comes back.

use std::collections::HashMap;
use std::panic::Location;
use std::time::Duration;

use tokio::time::Instant;

use crate::sync::{AtomicU64, Mutex, Ordering};

struct Checkout {
    since: Instant,
    location: &'static Location<'static>,
    reported: bool,
}

pub(crate) struct LeakTracker {
    threshold: Duration,
    next_id: AtomicU64,
    checkouts: Mutex<HashMap<u64, Checkout>>,
}

impl LeakTracker {
    pub(crate) fn new(threshold: Duration) -> Self {
        Self { threshold, next_id: AtomicU64::new(0), checkouts: Mutex::new(HashMap::new()) }
    }

    pub(crate) fn register(&self, since: Instant, location: &'static Location<'static>) -> u64 {
        // Only uniqueness matters; no other memory is published through this counter.
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.checkouts.lock().insert(id, Checkout { since, location, reported: false });
        id
    }

    pub(crate) fn unregister(&self, id: u64, now: Instant) {
        let checkout = self.checkouts.lock().remove(&id);
        if let Some(checkout) = checkout.filter(|checkout| checkout.reported) {
            tracing::info!(
                acquired_at = %checkout.location,
                held = ?now.saturating_duration_since(checkout.since),
                "millpond: a resource reported as leaked was returned",
            );
        }
    }

    /// Warns once about each checkout held past the threshold; returns how many it reported.
    pub(crate) fn scan(&self, now: Instant) -> usize {
        let mut reported = 0;
        for checkout in self.checkouts.lock().values_mut() {
            let held = now.saturating_duration_since(checkout.since);
            if !checkout.reported && held >= self.threshold {
                checkout.reported = true;
                reported += 1;
                tracing::warn!(
                    acquired_at = %checkout.location,
                    held = ?held,
                    threshold = ?self.threshold,
                    "millpond: a pooled resource has been held longer than the leak threshold",
                );
            }
        }
        reported
    }
}
