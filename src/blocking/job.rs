//! A queued job: the user's closure and the sender of its handle behind one box, runnable or
//! cancellable without knowing its types.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::Instant;

use super::error::TaskError;
use super::handle::Sender;
use crate::unwind::panic_message;

/// What the queue carries: a job, or (`None`) a wake-up that tells idle threads to look at the
/// pool's state (see `queue.rs`). A job is one box, so a message is two words.
pub(crate) type Message = Option<Envelope>;

/// A queued job.
pub(crate) type Envelope = Box<dyn Job>;

/// A type-erased job. One box per job: the closure and its handle's sender live in it together.
pub(crate) trait Job: Send + 'static {
    /// When it was queued (for the queue-wait histogram); `None` for a job run by its submitter.
    fn queued_at(&self) -> Option<Instant>;

    /// Runs the closure, catching a panic, then calls `finished` with the panic message (if it
    /// panicked), and only then hands the value or the panic to the handle: whoever sees the
    /// handle resolve also sees the job in the pool's figures and its panic reported.
    fn run(self: Box<Self>, finished: &mut dyn FnMut(Option<&str>));

    /// Drops the closure unrun and tells the handle why.
    fn cancel(self: Box<Self>, why: TaskError);
}

/// A closure and the sender of its handle; `sender` is `None` for `execute`, which has no
/// handle.
pub(crate) struct Task<F, T> {
    pub(crate) closure: F,
    pub(crate) sender: Option<Sender<T>>,
    pub(crate) queued_at: Option<Instant>,
}

impl<F, T> Job for Task<F, T>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    fn queued_at(&self) -> Option<Instant> {
        self.queued_at
    }

    fn run(self: Box<Self>, finished: &mut dyn FnMut(Option<&str>)) {
        let Task { closure, sender, .. } = *self;
        // The closure is consumed by the call: nothing it could leave half-updated is seen again.
        let result = match catch_unwind(AssertUnwindSafe(closure)) {
            Ok(value) => {
                finished(None);
                Ok(value)
            }
            Err(payload) => {
                let message = panic_message(&*payload);
                // Dropping a panic's payload runs user code too; it must not unwind the thread.
                let _ = catch_unwind(AssertUnwindSafe(move || drop(payload)));
                finished(Some(&message));
                Err(TaskError::Panicked(message))
            }
        };
        if let Some(sender) = sender {
            // A dropped handle does not want the value.
            let _ = sender.send(result);
        }
    }

    fn cancel(self: Box<Self>, why: TaskError) {
        let Task { closure, sender, .. } = *self;
        // A closure's captures may panic as they drop; the handle still hears why.
        let _ = catch_unwind(AssertUnwindSafe(move || drop(closure)));
        if let Some(sender) = sender {
            let _ = sender.send(Err(why));
        }
    }
}
