//! What the pool knows about one connection's session: whether a user may have changed it,
//! whether it can still be trusted at all, and how many commands are waiting for a reply.
//!
//! Two words of atomics, written by the command wrapper on every command and read by the
//! manager when the connection comes back and when it goes out. No I/O, no lock.
//!
//! | state | set by | cleared by | at checkout |
//! |---|---|---|---|
//! | `SESSION` | an [`Effect::Dirty`] command, raw access, [`mark_dirty`](Session::mark_dirty) | a `RESET` whose reply was checked | one round trip: `RESET`, `AUTH`, `SELECT` |
//! | `MULTI` | `MULTI` | `EXEC`, `DISCARD`, the reset | as `SESSION` |
//! | `WATCH` | `WATCH` | `EXEC` or `DISCARD` with `MULTI` set, `UNWATCH`, the reset | as `SESSION` |
//! | `DOOMED` | an [`Effect::Desync`] command, an I/O error, a failed check or reset | never | closed |
//! | in flight > 0 | a command sent and not yet answered | its reply | closed |
//!
//! `MULTI` and `WATCH` are kept apart from `SESSION` so that the optimistic transaction, Redis's
//! most common session command (`WATCH`, `MULTI`, ..., `EXEC`), leaves a connection clean when it
//! completes: its `EXEC` ends the transaction and the watches on the server. The flags are
//! updated as a command is sent, before its reply: an `EXEC` whose reply never comes leaves a
//! command in flight, and the connection is closed anyway.
//!
//! **Orderings.** Every access is `Relaxed`: the state is only read when the connection changes
//! hands (returned to the pool, checked out, or released by the last borrower of a multiplexed
//! view), and each of those goes through a lock or a channel that already orders the writes of
//! the previous holder before the reads of the next. Concurrent borrowers of one connection
//! only ever add to the state.

use super::command::Effect;
use crate::sync::{AtomicUsize, Ordering};

/// A user may have changed state only `RESET` undoes.
const SESSION: usize = 1;
/// The connection must be closed.
const DOOMED: usize = 2;
/// A transaction may be open.
const MULTI: usize = 4;
/// Keys may be watched.
const WATCH: usize = 8;
/// Any of the states a reset clears.
const DIRTY: usize = SESSION | MULTI | WATCH;

/// See the [module docs](self).
#[derive(Debug, Default)]
pub(crate) struct Session {
    flags: AtomicUsize,
    in_flight: AtomicUsize,
}

impl Session {
    /// Records what a command about to be sent does to the session.
    pub(crate) fn note(&self, effect: Effect) {
        match effect {
            Effect::Clean => {}
            Effect::Dirty => self.set(SESSION),
            Effect::Begin => self.set(MULTI),
            Effect::Watch => self.set(WATCH),
            Effect::End => {
                // Without an open transaction the server refuses `EXEC` and `DISCARD`, and the
                // watches stay.
                if self.flags.load(Ordering::Relaxed) & MULTI != 0 {
                    self.flags.fetch_and(!(MULTI | WATCH), Ordering::Relaxed);
                }
            }
            Effect::Unwatch => {
                // Inside a transaction the server queues `UNWATCH`: `MULTI` stays set, and the
                // `EXEC` or `DISCARD` that ends it unwatches too.
                self.flags.fetch_and(!WATCH, Ordering::Relaxed);
            }
            Effect::Desync => self.doom(),
        }
    }

    fn set(&self, flag: usize) {
        // A load first: a connection already marked (the common case after the first session
        // command) costs no write to a shared cache line.
        if self.flags.load(Ordering::Relaxed) & flag == 0 {
            self.flags.fetch_or(flag, Ordering::Relaxed);
        }
    }

    pub(crate) fn mark_dirty(&self) {
        self.set(SESSION);
    }

    pub(crate) fn doom(&self) {
        self.flags.fetch_or(DOOMED, Ordering::Relaxed);
    }

    pub(crate) fn clear_dirty(&self) {
        self.flags.fetch_and(!DIRTY, Ordering::Relaxed);
    }

    pub(crate) fn is_dirty(&self) -> bool {
        self.flags.load(Ordering::Relaxed) & DIRTY != 0
    }

    pub(crate) fn is_doomed(&self) -> bool {
        self.flags.load(Ordering::Relaxed) & DOOMED != 0
    }

    /// A command was sent: until [`end`](Self::end), its reply may still be on its way. A caller
    /// that drops the command's future never calls `end`, so the count stays up for good: the
    /// connection may carry a reply no one reads (or a blocked `BLPOP` that would still pop an
    /// element), and is closed instead of handed on.
    pub(crate) fn begin(&self) {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
    }

    /// The reply (or an error) for a command counted by [`begin`](Self::begin) has arrived.
    pub(crate) fn end(&self) {
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
    }

    pub(crate) fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Whether the connection may go out again after a reset, at most: nothing abandoned in
    /// flight, and nothing that broke the pairing of replies with commands.
    pub(crate) fn is_reusable(&self) -> bool {
        !self.is_doomed() && self.in_flight() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_session_is_clean_and_reusable() {
        let session = Session::default();
        assert!(!session.is_dirty());
        assert!(session.is_reusable());
    }

    #[test]
    fn dirty_is_cleared_by_a_reset_doomed_is_not() {
        let session = Session::default();
        session.note(Effect::Dirty);
        assert!(session.is_dirty() && session.is_reusable());
        session.clear_dirty();
        assert!(!session.is_dirty());
        session.note(Effect::Desync);
        session.clear_dirty();
        assert!(session.is_doomed() && !session.is_reusable());
    }

    #[test]
    fn a_completed_transaction_leaves_the_session_clean() {
        let session = Session::default();
        for effect in [Effect::Watch, Effect::Begin, Effect::Clean, Effect::End] {
            session.note(effect);
        }
        assert!(!session.is_dirty(), "WATCH, MULTI, ..., EXEC");
        session.note(Effect::Watch);
        session.note(Effect::End);
        assert!(session.is_dirty(), "an EXEC without MULTI keeps the watches");
        session.note(Effect::Unwatch);
        assert!(!session.is_dirty());
        session.note(Effect::Dirty);
        session.note(Effect::Begin);
        session.note(Effect::End);
        assert!(session.is_dirty(), "a SELECT stays");
    }

    #[test]
    fn an_unanswered_command_makes_the_connection_unusable() {
        let session = Session::default();
        session.begin();
        session.begin();
        session.end();
        assert!(!session.is_reusable(), "one command still in flight");
        session.end();
        assert!(session.is_reusable());
    }
}
