//! Containing panics from user code (hooks, tasks), so that a panic costs one resource or one
//! task, not a pool's bookkeeping or its background work.

use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::task::{Context, Poll};

/// A user's hook for panics in the work a pool runs (worker pools, the blocking pool): called
/// with the panic's message, itself contained with [`contain`].
pub(crate) type PanicHook = Box<dyn Fn(&str) + Send + Sync>;

/// Polls a future, turning a panic inside it into `Err(())`.
pub(crate) struct CatchUnwind<F>(pub(crate) F);

impl<F: Future + Unpin> Future for CatchUnwind<F> {
    type Output = Result<F::Output, ()>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let inner = &mut self.0;
        match catch_unwind(AssertUnwindSafe(|| Pin::new(&mut *inner).poll(cx))) {
            Ok(Poll::Ready(output)) => Poll::Ready(Ok(output)),
            Ok(Poll::Pending) => Poll::Pending,
            Err(_) => Poll::Ready(Err(())),
        }
    }
}

/// Calls a synchronous hook, logging and swallowing a panic; `None` when it panicked.
pub(crate) fn contain<T>(hook: &'static str, call: impl FnOnce() -> T) -> Option<T> {
    match catch_unwind(AssertUnwindSafe(call)) {
        Ok(value) => Some(value),
        Err(_) => {
            tracing::error!(hook, "millpond: a hook panicked; the pool carries on");
            None
        }
    }
}

/// Runs an async hook to completion, building its future under `catch_unwind` too (a hook may
/// panic before it returns its future); `None` when it panicked.
pub(crate) async fn contain_async<F: Future>(
    hook: &'static str,
    make: impl FnOnce() -> F,
) -> Option<F::Output> {
    let future = contain(hook, make)?;
    match CatchUnwind(Box::pin(future)).await {
        Ok(output) => Some(output),
        Err(()) => {
            tracing::error!(hook, "millpond: a hook panicked; the pool carries on");
            None
        }
    }
}

/// The message of a panic payload, for reports: the `&str` or `String` it was raised with.
pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(message) = payload.downcast_ref::<&str>() {
        (*message).to_owned()
    } else if let Some(message) = payload.downcast_ref::<String>() {
        message.clone()
    } else {
        "a panic with a non-string payload".to_owned()
    }
}
