//! The limiter's state machine: the limit, the calls in flight, and the queue of callers
//! waiting for room.
//!
//! Like the pool's engine it never awaits, spawns or calls user code other than the limit
//! algorithm (a plain function of a sample), and hands back the wakers to call once its lock
//! is released. Everything lives under one lock, so admission and a change of limit cannot
//! interleave: in-flight calls exceed the limit only because the limit fell below calls that
//! were already running, never because one was admitted past it (the check-then-act race of
//! separately counted partitions). The loom models in `loom_models.rs` check exactly that.
//!
//! **Hand-off.** A caller that finds no room waits in the queue with a [`Cell`]. A release that
//! leaves room, or a limit that rises, moves the next waiter out of the queue, counts its call
//! in flight and leaves the grant in its cell, so a newcomer can never take the room a waiter
//! was promised. A waiter that leaves (cancelled or timed out) either finds its cell served, and
//! then owns a call it releases at once, or removes itself from the queue; both happen under
//! the lock, so room is never lost or counted twice.

use std::task::Waker;
use std::time::Duration;

use tokio::time::Instant;

use super::algorithm::{LimitAlgorithm, Outcome, Sample};
use super::codel::Codel;
use crate::sync::{Arc, Mutex};
use crate::wait_list::{WaitList, WaiterKey};

/// A call counted in flight.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Grant {
    /// The loss epoch it was admitted in (see `Engine::epoch`).
    epoch: u64,
    /// Calls in flight once it was admitted, itself included.
    in_flight: usize,
    pub(crate) admitted: Instant,
}

/// What the limiter decided for a waiting caller.
#[derive(Debug)]
pub(crate) enum Verdict {
    Granted(Grant),
    /// Turned away: it waited past twice CoDel's target while the queue stood.
    Shed {
        waited: Duration,
    },
}

#[derive(Debug, Default)]
struct CellState {
    waker: Option<Waker>,
    verdict: Option<Verdict>,
}

/// Where the engine leaves its verdict for a waiting caller. Lock order: engine, then cell.
#[derive(Debug, Default)]
pub(crate) struct Cell {
    state: Mutex<CellState>,
}

impl Cell {
    /// The caller's side: the verdict, or `None` after storing `waker` to be woken with it.
    pub(crate) fn poll(&self, waker: &Waker) -> Option<Verdict> {
        let mut state = self.state.lock();
        let verdict = state.verdict.take();
        if verdict.is_none() && !state.waker.as_ref().is_some_and(|known| known.will_wake(waker)) {
            state.waker = Some(waker.clone());
        }
        verdict
    }

    fn serve(&self, verdict: Verdict, wakes: &mut Vec<Waker>) {
        let mut state = self.state.lock();
        state.verdict = Some(verdict);
        wakes.extend(state.waker.take());
    }
}

#[derive(Debug)]
struct Waiter {
    cell: Arc<Cell>,
    queued_at: Instant,
}

/// How the queue picks the next waiter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Order {
    Fifo,
    /// First in, first out until CoDel sees a standing queue; then newest first, and stale
    /// waiters turned away.
    Adaptive {
        target: Duration,
        interval: Duration,
    },
}

/// Running totals, for `LimiterStatus`.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Counts {
    pub(crate) admitted: u64,
    pub(crate) queue_full: u64,
    pub(crate) timed_out: u64,
    pub(crate) shed: u64,
    pub(crate) succeeded: u64,
    pub(crate) failed: u64,
    pub(crate) dropped: u64,
    pub(crate) ignored: u64,
}

/// What `Engine::leave` found for a waiter that stopped waiting.
#[derive(Debug)]
pub(crate) enum Left {
    /// It was still queued and is not any more.
    Removed,
    /// It had been served just before; the caller now decides what to do with the verdict.
    Served(Verdict),
}

#[derive(Debug)]
pub(crate) struct Engine {
    algorithm: Box<dyn LimitAlgorithm>,
    limit: usize,
    in_flight: usize,
    queue: WaitList<Waiter>,
    max_queue: usize,
    codel: Option<Codel>,
    /// Bumped each time a loss lowers the limit. A loss from a call admitted in an earlier
    /// epoch is not passed to the algorithm: the cut it would ask for has been made.
    epoch: u64,
    counts: Counts,
}

impl Engine {
    pub(crate) fn new(algorithm: Box<dyn LimitAlgorithm>, max_queue: usize, order: Order) -> Self {
        let limit = algorithm.initial().max(1);
        let codel = match order {
            Order::Fifo => None,
            Order::Adaptive { target, interval } => Some(Codel::new(target, interval)),
        };
        Self {
            algorithm,
            limit,
            in_flight: 0,
            queue: WaitList::default(),
            max_queue,
            codel,
            epoch: 0,
            counts: Counts::default(),
        }
    }

    pub(crate) fn limit(&self) -> usize {
        self.limit
    }

    pub(crate) fn in_flight(&self) -> usize {
        self.in_flight
    }

    pub(crate) fn queued(&self) -> usize {
        self.queue.len()
    }

    pub(crate) fn counts(&self) -> Counts {
        self.counts
    }

    /// Whether the queue stands (CoDel), so that it serves newest first.
    pub(crate) fn overloaded(&self) -> bool {
        self.codel.as_ref().is_some_and(Codel::standing)
    }

    /// Admits a call now if there is room and nobody is waiting for it.
    pub(crate) fn try_admit(&mut self, now: Instant) -> Option<Grant> {
        if self.in_flight >= self.limit || self.queue.len() > 0 {
            return None;
        }
        if let Some(codel) = &mut self.codel {
            codel.record(Duration::ZERO, now);
        }
        Some(self.count_in(now))
    }

    /// Queues a caller that `try_admit` turned down; `None` when the queue is full. While the
    /// queue stands, a full queue turns its oldest waiter away instead (into `wakes`): it is
    /// the one least likely to still be wanted, and newest-first would serve the newcomer
    /// before it anyway.
    pub(crate) fn enqueue(
        &mut self,
        cell: Arc<Cell>,
        now: Instant,
        wakes: &mut Vec<Waker>,
    ) -> Option<WaiterKey> {
        if self.queue.len() >= self.max_queue {
            let oldest = if self.overloaded() { self.queue.pop_front() } else { None };
            let Some(oldest) = oldest else {
                self.counts.queue_full += 1;
                return None;
            };
            self.counts.shed += 1;
            let waited = now.saturating_duration_since(oldest.queued_at);
            oldest.cell.serve(Verdict::Shed { waited }, wakes);
        }
        Some(self.queue.push_back(Waiter { cell, queued_at: now }))
    }

    /// A waiter stops waiting (its caller was cancelled or its deadline passed).
    pub(crate) fn leave(&mut self, key: WaiterKey, cell: &Cell, timed_out: bool) -> Left {
        // A verdict is only ever left under the engine lock, which we hold: no race with `serve`.
        if let Some(verdict) = cell.state.lock().verdict.take() {
            return Left::Served(verdict);
        }
        let removed = self.queue.remove(key);
        debug_assert!(removed.is_some_and(|waiter| std::ptr::eq(&*waiter.cell, cell)));
        if timed_out {
            self.counts.timed_out += 1;
        }
        Left::Removed
    }

    /// Ends a call: feeds its outcome to the algorithm (`None`: ignored, no sample), frees its
    /// room, and serves waiters while there is room. Returns the wakers to call after unlocking.
    pub(crate) fn release(
        &mut self,
        grant: &Grant,
        outcome: Option<Outcome>,
        now: Instant,
    ) -> Vec<Waker> {
        self.in_flight -= 1;
        match outcome {
            None => self.counts.ignored += 1,
            Some(outcome) => {
                match outcome {
                    Outcome::Success => self.counts.succeeded += 1,
                    Outcome::Failure => self.counts.failed += 1,
                    Outcome::Dropped => self.counts.dropped += 1,
                }
                let stale_loss = outcome == Outcome::Dropped && grant.epoch != self.epoch;
                if !stale_loss {
                    let sample = Sample {
                        outcome,
                        latency: now.saturating_duration_since(grant.admitted),
                        in_flight: grant.in_flight,
                        limit: self.limit,
                        now,
                    };
                    let limit = self.algorithm.update(&sample).max(1);
                    if outcome == Outcome::Dropped && limit < self.limit {
                        self.epoch += 1;
                    }
                    self.limit = limit;
                }
            }
        }
        let mut wakes = Vec::new();
        self.serve(now, &mut wakes);
        wakes
    }

    /// Moves waiters out of the queue while there is room for them, and turns away stale ones
    /// while the queue stands.
    fn serve(&mut self, now: Instant, wakes: &mut Vec<Waker>) {
        loop {
            let standing = self.overloaded();
            if standing {
                self.shed_stale(now, wakes);
            }
            if self.in_flight >= self.limit {
                return;
            }
            let waiter = if standing { self.queue.pop_back() } else { self.queue.pop_front() };
            let Some(waiter) = waiter else { return };
            let waited = now.saturating_duration_since(waiter.queued_at);
            if let Some(codel) = &mut self.codel {
                if !standing {
                    codel.record(waited, now);
                } else if self.queue.len() == 0 {
                    // Newest first, the caller served has barely waited while older callers
                    // may still wait behind it: its wait says nothing about the queue, and
                    // judging by it would flip the queue back to FIFO at the next interval.
                    // What ends a standing queue is draining it.
                    codel.record(Duration::ZERO, now);
                }
            }
            let grant = self.count_in(now);
            waiter.cell.serve(Verdict::Granted(grant), wakes);
        }
    }

    /// Turns away waiters at the front who have waited past CoDel's stale mark. The front is
    /// the oldest, so the sweep stops at the first fresh one.
    fn shed_stale(&mut self, now: Instant, wakes: &mut Vec<Waker>) {
        let Some(codel) = &self.codel else { return };
        while let Some(front) = self.queue.front() {
            let Some(waiter) = self.queue.get(front) else { return };
            let waited = now.saturating_duration_since(waiter.queued_at);
            if !codel.stale(waited) {
                return;
            }
            if let Some(waiter) = self.queue.remove(front) {
                self.counts.shed += 1;
                waiter.cell.serve(Verdict::Shed { waited }, wakes);
            }
        }
    }

    fn count_in(&mut self, now: Instant) -> Grant {
        if cfg!(any(debug_assertions, millpond_loom)) {
            assert!(self.in_flight < self.limit, "admitted past the limit");
        }
        self.in_flight += 1;
        self.counts.admitted += 1;
        Grant { epoch: self.epoch, in_flight: self.in_flight, admitted: now }
    }
}

#[cfg(all(test, not(millpond_loom)))]
mod tests {
    use super::*;
    use crate::limit::Aimd;

    fn engine(limit: usize, max_queue: usize, order: Order) -> Engine {
        let aimd = Aimd::new().min_limit(1).initial_limit(limit).max_limit(limit.max(2));
        Engine::new(Box::new(aimd), max_queue, order)
    }

    fn waiter(engine: &mut Engine, now: Instant) -> (WaiterKey, Arc<Cell>) {
        let cell = Arc::new(Cell::default());
        let key = engine.enqueue(cell.clone(), now, &mut Vec::new()).expect("room in the queue");
        (key, cell)
    }

    fn granted(cell: &Cell) -> Option<Grant> {
        match cell.state.lock().verdict.take() {
            Some(Verdict::Granted(grant)) => Some(grant),
            _ => None,
        }
    }

    #[test]
    fn a_newcomer_never_takes_room_promised_to_a_waiter() {
        let now = Instant::now();
        let mut engine = engine(1, 8, Order::Fifo);
        let first = engine.try_admit(now).unwrap();
        assert!(engine.try_admit(now).is_none());
        let (_, cell) = waiter(&mut engine, now);
        engine.release(&first, None, now);
        assert!(engine.try_admit(now).is_none(), "the room went to the waiter");
        assert!(granted(&cell).is_some());
        assert_eq!(engine.in_flight(), 1);
    }

    #[test]
    fn one_burst_of_losses_cuts_the_limit_once() {
        let now = Instant::now();
        let mut engine = engine(10, 0, Order::Fifo);
        let grants: Vec<_> = (0..10).map(|_| engine.try_admit(now).unwrap()).collect();
        for grant in &grants {
            engine.release(grant, Some(Outcome::Dropped), now);
        }
        assert_eq!(engine.limit(), 9, "ten timeouts of one round cut once");
        let grant = engine.try_admit(now).unwrap();
        engine.release(&grant, Some(Outcome::Dropped), now);
        assert_eq!(engine.limit(), 8, "a loss in the next round cuts again");
    }

    #[test]
    fn a_standing_queue_serves_newest_first_and_turns_stale_waiters_away() {
        const MS: Duration = Duration::from_millis(1);
        let start = Instant::now();
        let order = Order::Adaptive { target: 5 * MS, interval: 100 * MS };
        let mut engine = engine(1, 8, order);
        let mut held = engine.try_admit(start).unwrap();
        // Two whole intervals in which every caller waited 20 ms: the queue stands.
        let mut now = start;
        for _ in 0..5 {
            let (_, cell) = waiter(&mut engine, now);
            now += 20 * MS;
            engine.release(&held, None, now);
            held = granted(&cell).unwrap();
            now += 40 * MS;
        }
        assert!(engine.overloaded());
        let (_, old) = waiter(&mut engine, now);
        now += 30 * MS;
        let (_, new) = waiter(&mut engine, now);
        engine.release(&held, None, now + MS);
        assert!(granted(&new).is_some(), "the newest waiter is served first");
        let shed = old.state.lock().verdict.take();
        assert!(
            matches!(shed, Some(Verdict::Shed { .. })),
            "the stale one is turned away: {shed:?}"
        );
        assert_eq!(engine.queued(), 0);
    }

    /// Newest first, the caller served has barely waited; the queue still stands while older
    /// callers wait behind it, and judging it by the served caller would flip it back to FIFO
    /// at the next interval. It stands until it drains.
    #[test]
    fn a_standing_queue_stands_until_it_drains_however_little_the_newest_waited() {
        const MS: Duration = Duration::from_millis(1);
        let start = Instant::now();
        let order = Order::Adaptive { target: 5 * MS, interval: 100 * MS };
        let mut engine = engine(1, 64, order);
        let mut held = engine.try_admit(start).unwrap();
        let mut now = start;
        let mut cells = Vec::new();
        // Every 4 ms two callers come and one call ends: the queue grows, never drains, and the
        // caller served newest first has waited 1 ms. Stale callers (10 ms) are turned away.
        for _ in 0..100 {
            cells.push(waiter(&mut engine, now).1);
            now += 3 * MS;
            cells.push(waiter(&mut engine, now).1);
            now += MS;
            engine.release(&held, None, now);
            held = cells.iter().find_map(|cell| granted(cell)).unwrap();
            if now > start + 250 * MS {
                assert!(engine.overloaded(), "still standing at {:?}", now - start);
            }
        }
        // The callers stop coming: the queue drains, and an interval later it is FIFO again.
        while engine.queued() > 0 {
            now += MS;
            engine.release(&held, None, now);
            held = cells.iter().find_map(|cell| granted(cell)).unwrap();
        }
        now += 150 * MS;
        engine.release(&held, None, now);
        let admitted = engine.try_admit(now).unwrap();
        engine.release(&admitted, None, now + 50 * MS);
        assert!(engine.try_admit(now + 101 * MS).is_some());
        assert!(!engine.overloaded(), "drained: first in, first out again");
    }

    #[test]
    fn a_waiter_that_leaves_after_being_served_owns_the_call() {
        let now = Instant::now();
        let mut engine = engine(1, 8, Order::Fifo);
        let first = engine.try_admit(now).unwrap();
        let (key, cell) = waiter(&mut engine, now);
        engine.release(&first, None, now);
        match engine.leave(key, &cell, false) {
            Left::Served(Verdict::Granted(grant)) => {
                engine.release(&grant, None, now);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(engine.in_flight(), 0);
        let held = engine.try_admit(now).unwrap();
        let (key, cell) = waiter(&mut engine, now);
        assert!(matches!(engine.leave(key, &cell, true), Left::Removed));
        assert_eq!((engine.queued(), engine.counts().timed_out), (0, 1));
        engine.release(&held, None, now);
        assert_eq!(engine.in_flight(), 0);
    }
}
