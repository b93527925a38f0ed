//! A queued task, type-erased.

use std::future::Future;
use std::pin::Pin;

use tokio::time::Instant;

use super::admission::Priority;
use super::handle::Shed;
use super::lane::Stealable;
use crate::sync::Arc;

/// A task as the queues hold it.
pub(crate) struct Job {
    pub(crate) future: Pin<Box<dyn Future<Output = ()> + Send>>,
    /// When it was queued, for the queue-wait histogram.
    pub(crate) queued_at: Instant,
    /// Keyed jobs run on their key's worker, in order, and are never stolen.
    pub(crate) keyed: bool,
    pub(crate) priority: Priority,
    /// Tells the handle, if there is one, that the job was shed; kept only by pools that shed.
    pub(crate) shed: Option<Arc<dyn Shed>>,
}

impl Job {
    pub(crate) fn new(future: impl Future<Output = ()> + Send + 'static, keyed: bool) -> Self {
        Self {
            future: Box::pin(future),
            queued_at: Instant::now(),
            keyed,
            priority: Priority::High,
            shed: None,
        }
    }
}

impl Stealable for Job {
    fn stealable(&self) -> bool {
        !self.keyed
    }
}
