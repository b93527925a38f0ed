//! loom models of the wire watcher's shared state: the connection task publishing what the
//! server answered, against a checkout reading it and waiting for the answer.
//!
//! The watcher runs exactly as under tokio-postgres, fed bytes by a loom thread standing in for
//! the connection task. loom explores every interleaving (bounded by `LOOM_MAX_PREEMPTIONS`) and
//! fails a model that deadlocks, which is how "no lost wake-up" is checked.
//!
//! Run with `RUSTFLAGS="--cfg millpond_loom" cargo test --release --lib --features postgres
//! loom_models`.

use loom::future::block_on;
use loom::thread;

use super::test_util::{startup, typed};
use super::{TransactionStatus, Watched, Wire};
use crate::sync::Arc;

/// A watched connection past its startup, with one simple query sent and unanswered.
fn query_in_flight() -> (Arc<Wire>, Watched<()>) {
    let wire = Arc::new(Wire::default());
    let mut watched = Watched::new((), Arc::clone(&wire));
    watched.saw_outgoing(&startup());
    watched.saw_incoming(&typed(b'Z', b"I"));
    watched.saw_outgoing(&typed(b'Q', b"BEGIN; SET search_path TO tenant\0"));
    assert!(wire.is_busy());
    (wire, watched)
}

/// The server's answer to that query: it left a transaction open and the session changed.
fn answer() -> Vec<u8> {
    let mut answer = typed(b'C', b"BEGIN\0");
    answer.extend(typed(b'C', b"SET\0"));
    answer.extend(typed(b'Z', b"T"));
    answer
}

/// A checkout waiting for the answer (`settle`, without its timer) is woken by it, whenever it
/// starts waiting: it registers before it looks, and the watcher wakes after it publishes.
#[test]
fn a_checkout_waiting_for_the_answer_is_woken_by_it() {
    loom::model(|| {
        let (wire, mut watched) = query_in_flight();
        let connection = thread::spawn(move || watched.saw_incoming(&answer()));
        block_on(wire.settled());
        assert!(!wire.is_busy());
        connection.join().unwrap();
    });
}

/// A checkout that sees the request answered also sees what the answer carried: the
/// transaction status and the session mark. (Publishing the count before them fails this
/// model.)
#[test]
fn a_checkout_that_sees_the_answer_sees_its_status_and_session_mark() {
    loom::model(|| {
        let (wire, mut watched) = query_in_flight();
        let connection = thread::spawn(move || watched.saw_incoming(&answer()));
        if !wire.is_busy() {
            assert_eq!(wire.status(), TransactionStatus::InTransaction);
            assert!(wire.is_dirty());
        }
        connection.join().unwrap();
    });
}

/// A `DISCARD ALL` answered while `prepare_cached` looks at the mark is reported to exactly one
/// look: the cache is emptied once, and never skipped.
#[test]
fn statements_lost_is_reported_exactly_once() {
    loom::model(|| {
        let (wire, mut watched) = query_in_flight();
        let connection = thread::spawn(move || {
            let mut answer = typed(b'C', b"DISCARD ALL\0");
            answer.extend(typed(b'Z', b"I"));
            watched.saw_incoming(&answer);
        });
        let first = wire.take_statements_lost();
        connection.join().unwrap();
        let second = wire.take_statements_lost();
        assert!(first ^ second, "seen {first} then {second}");
    });
}
