//! A queued task, type-erased.

use std::future::Future;
use std::pin::Pin;

use tokio::time::Instant;

use super::lane::Stealable;

/// A task as the queues hold it.
pub(crate) struct Job {
    pub(crate) future: Pin<Box<dyn Future<Output = ()> + Send>>,
    /// When it was queued, for the queue-wait histogram.
    pub(crate) queued_at: Instant,
    /// Keyed jobs run on their key's worker, in order, and are never stolen.
    pub(crate) keyed: bool,
}

impl Job {
    pub(crate) fn new(future: impl Future<Output = ()> + Send + 'static, keyed: bool) -> Self {
        Self { future: Box::pin(future), queued_at: Instant::now(), keyed }
    }
}

impl Stealable for Job {
    fn stealable(&self) -> bool {
        !self.keyed
    }
}
