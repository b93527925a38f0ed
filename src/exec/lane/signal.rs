//! Parking for one condition of a lane ("room", "a job"): event-listener's [`Event`] behind a
//! count of the tasks listening, so that the common case, a change nobody waits for, costs a
//! fence and one load instead of the event's lock.
//!
//! # No lost wake-up
//!
//! A waiter listens (joins the event's list, then raises `waiting`), then re-checks its
//! condition, and parks only if it still does not hold. A notifier first makes the condition
//! true, then reads `waiting`. Each side puts a `SeqCst` fence between its write and its read
//! (the store-buffering pattern), so at least one of them sees the other's write: either the
//! waiter's re-check sees the condition, or the notifier sees the waiter and notifies it; the
//! waiter joined the list before it raised the count, so the notification finds it.
//!
//! A listener dropped after it was notified, before it used the notification (a cancelled
//! submit, an idle worker that times out), passes it on to the next listener: that is the
//! event's own rule, and what keeps every wait here cancellation safe.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use crate::sync::{AtomicUsize, Event, EventListener, Ordering, fence};

#[derive(Debug)]
pub(crate) struct Signal {
    /// Listeners alive: raised after a listener joined the event's list, lowered when it goes.
    waiting: AtomicUsize,
    event: Event,
}

impl Default for Signal {
    fn default() -> Self {
        Self { waiting: AtomicUsize::new(0), event: Event::new() }
    }
}

impl Signal {
    /// Starts listening. The caller re-checks its condition after this, and awaits the
    /// listener only if the condition still does not hold.
    pub(crate) fn listen(&self) -> Listener<'_> {
        let inner = self.event.listen();
        self.waiting.fetch_add(1, Ordering::SeqCst);
        // Pairs with the fence in `notify`: the caller's re-check comes after this.
        fence(Ordering::SeqCst);
        Listener { signal: self, inner }
    }

    /// Notifies one more listener, if any is not notified yet; the caller made the condition
    /// true first. Returns whether one was notified.
    pub(crate) fn notify_one(&self) -> bool {
        self.notify(1) > 0
    }

    /// Notifies every listener.
    pub(crate) fn notify_all(&self) {
        self.notify(usize::MAX);
    }

    fn notify(&self, count: usize) -> usize {
        // Pairs with the fence in `listen`: the caller's change to the condition comes first.
        fence(Ordering::SeqCst);
        if self.waiting.load(Ordering::Relaxed) == 0 {
            return 0;
        }
        self.event.notify_additional_relaxed(count)
    }

    /// Tasks listening (parked, or about to park), for stats.
    pub(crate) fn waiting(&self) -> usize {
        self.waiting.load(Ordering::Relaxed)
    }
}

/// One task's place on a [`Signal`]; ready once notified.
#[derive(Debug)]
pub(crate) struct Listener<'a> {
    signal: &'a Signal,
    inner: EventListener,
}

impl Future for Listener<'_> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        Pin::new(&mut self.inner).poll(cx)
    }
}

impl Drop for Listener<'_> {
    fn drop(&mut self) {
        // The event listener itself leaves the list after this, passing on a notification it
        // did not use.
        self.signal.waiting.fetch_sub(1, Ordering::Release);
    }
}
