//! What each task of a load saw through a server outage: how often it was served, how often it
//! failed, and when it was first served after the server came back.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

/// One task's record.
#[derive(Default)]
pub struct Record {
    ok: AtomicU64,
    failed: AtomicU64,
    /// Milliseconds since the test's start of this task's first success after the server came
    /// back, or 0.
    back_at_ms: AtomicU64,
}

impl Record {
    /// Counts a served attempt; the first after `back_up` was raised marks when the task was
    /// served again.
    pub fn served(&self, back_up: &AtomicBool, started: Instant) {
        self.ok.fetch_add(1, Ordering::SeqCst);
        if back_up.load(Ordering::SeqCst) && self.back_at_ms.load(Ordering::SeqCst) == 0 {
            let at = started.elapsed().as_millis() as u64;
            self.back_at_ms.store(at.max(1), Ordering::SeqCst);
        }
    }

    /// Counts a failed attempt, and backs off as a caller's retry loop would: without it the
    /// failures would only count how fast the loop spins.
    pub async fn failed(&self) {
        self.failed.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    pub fn was_served(&self) -> bool {
        self.ok.load(Ordering::SeqCst) > 0
    }

    pub fn is_back(&self) -> bool {
        self.back_at_ms.load(Ordering::SeqCst) > 0
    }

    /// When this task was first served after the server came back, since the test's start.
    pub fn back_at(&self) -> Duration {
        Duration::from_millis(self.back_at_ms.load(Ordering::SeqCst))
    }

    pub fn served_count(&self) -> u64 {
        self.ok.load(Ordering::SeqCst)
    }

    pub fn failed_count(&self) -> u64 {
        self.failed.load(Ordering::SeqCst)
    }
}
