//! loom models of the blocking pool's thread accounting (`threads.rs`): the race its module docs
//! rule out, an idle thread whose keep-alive ran out retiring at the moment a job arrives.
//!
//! Each model starts with one live thread counted idle (with `core` 0, so it may retire) and an
//! empty queue. One loom thread is a submit (reserve a place, then ask whether to start a
//! thread); the other is the idle thread timing out (leave `idle`, then try to retire). Whatever
//! the interleaving, some thread must be left to run the job, and `live` must never pass `max`.
//! The channel under the queue is not involved: the race is in the counters.
//!
//! Run with `RUSTFLAGS="--cfg millpond_loom" cargo test --release --lib loom_models`.

use loom::thread;

use super::queue::{Admit, Queue};
use super::threads::Threads;
use crate::sync::Arc;

/// A pool with one live thread, counted idle, and nothing queued.
fn one_idle_thread(max: usize) -> (Arc<Threads>, Arc<Queue>) {
    let threads = Arc::new(Threads::new(0, max));
    let queue = Arc::new(Queue::new(8));
    // The way a thread comes to live: a submit's reservation asks for it.
    assert_eq!(queue.reserve(), Admit::Reserved);
    assert!(threads.claim_start(&queue));
    // It took that job (giving back the place) and went idle.
    queue.release();
    threads.enter_idle();
    (threads, queue)
}

/// Runs the submit against the retiring thread; returns (thread started, idle one retired).
fn submit_against_retire(threads: &Arc<Threads>, queue: &Arc<Queue>) -> (bool, bool) {
    let retiring = {
        let (threads, queue) = (Arc::clone(threads), Arc::clone(queue));
        thread::spawn(move || {
            threads.leave_idle();
            threads.retire(&queue)
        })
    };
    assert_eq!(queue.reserve(), Admit::Reserved);
    let started = threads.claim_start(queue);
    let retired = retiring.join().unwrap();
    (started, retired)
}

/// At the bound (`max` 1) the submit cannot start a thread, so the retiring one must stay.
#[test]
fn at_the_bound_a_thread_timing_out_as_a_job_arrives_stays_for_it() {
    loom::model(|| {
        let (threads, queue) = one_idle_thread(1);
        let (started, retired) = submit_against_retire(&threads, &queue);
        assert!(started || !retired, "the job has no thread: started {started}, retired {retired}");
        assert_eq!(threads.live(), 1, "exactly one thread for the job, never above max");
    });
}

/// Below the bound either side may act, but not neither: a job never waits with no thread.
#[test]
fn below_the_bound_a_job_arriving_as_a_thread_retires_gets_a_thread() {
    loom::model(|| {
        let (threads, queue) = one_idle_thread(2);
        let (started, retired) = submit_against_retire(&threads, &queue);
        assert!(started || !retired, "the job has no thread: started {started}, retired {retired}");
        assert!((1..=2).contains(&threads.live()), "live {}", threads.live());
    });
}
