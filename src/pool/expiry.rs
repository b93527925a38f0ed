//! The waiter-expiry task: fails queued callers whose acquire deadline has passed.
//!
//! Arming a tokio timer per queued `get()` costs a timer-wheel insert and removal on every wait,
//! which dominated the hand-off path under contention. Instead each waiter's deadline sits in its
//! queue entry and this one task sleeps until the earliest of them. With the usual single acquire
//! timeout, deadlines are queued in increasing order, so the task is only woken early when the
//! queue was empty (or a caller passed a shorter `get_timeout`).

use tokio::time::Instant;

use super::manager::Manager;
use super::shared::Shared;
use crate::sync::Arc;

pub(crate) async fn run<M: Manager>(shared: Arc<Shared<M>>) {
    loop {
        let rearmed = shared.expiry.notified();
        // A look before the first wait: a task restarted on another runtime (`home.rs`) takes
        // over callers that queued while the pool had no expiry task.
        let (wakers, earliest) = {
            let mut engine = shared.engine.lock();
            if engine.is_closed() {
                return;
            }
            engine.expire_waiters(Instant::now())
        };
        wakers.into_iter().for_each(std::task::Waker::wake);
        match earliest {
            Some(deadline) => {
                let _ = tokio::time::timeout_at(deadline, rearmed).await;
            }
            None => rearmed.await,
        }
    }
}
