//! A queued task, type-erased.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use tokio::time::Instant;

use super::admission::Priority;
use super::handle::Shed;
use super::lane::Stealable;
use crate::sync::Arc;

/// A job's future, which can name the task awaiting its handle.
pub(crate) trait Work: Future<Output = ()> + Send {
    /// The waker of the task awaiting this job's handle, if it has one and is waiting: woken
    /// when the pool's runtime went with nowhere to move, so the handle moves it (`home.rs`).
    fn handle_waker(&self) -> Option<Waker>;
}

pin_project_lite::pin_project! {
    /// A job without a handle (`execute`).
    pub(crate) struct Detached<F> {
        #[pin]
        future: F,
    }
}

impl<F: Future<Output = ()> + Send> Future for Detached<F> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        self.project().future.poll(cx)
    }
}

impl<F: Future<Output = ()> + Send> Work for Detached<F> {
    fn handle_waker(&self) -> Option<Waker> {
        None
    }
}

/// A task as the queues hold it.
pub(crate) struct Job {
    pub(crate) future: Pin<Box<dyn Work>>,
    /// When it was queued, for the queue-wait histogram.
    pub(crate) queued_at: Instant,
    /// Keyed jobs run on their key's worker, in order, and are never stolen.
    pub(crate) keyed: bool,
    pub(crate) priority: Priority,
    /// Tells the handle, if there is one, that the job was shed; kept only by pools that shed.
    pub(crate) shed: Option<Arc<dyn Shed>>,
    /// The lane it was committed to, whose room it holds until it starts (a stolen job runs on
    /// another worker's).
    pub(crate) lane: usize,
    /// The keyed counter of its lane it is counted in until done, if any (`lanes.rs`).
    pub(crate) counted: Option<u8>,
}

impl Job {
    /// A job without a handle.
    pub(crate) fn new(future: impl Future<Output = ()> + Send + 'static, keyed: bool) -> Self {
        Self::of(Detached { future }, keyed)
    }

    /// A job whose future is its own [`Work`] (a tracked task, with a handle).
    pub(crate) fn of(future: impl Work + 'static, keyed: bool) -> Self {
        Self {
            future: Box::pin(future),
            queued_at: Instant::now(),
            keyed,
            priority: Priority::High,
            shed: None,
            lane: 0,
            counted: None,
        }
    }
}

impl Stealable for Job {
    fn stealable(&self) -> bool {
        !self.keyed
    }
}
