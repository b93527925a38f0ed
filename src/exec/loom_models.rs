//! loom models of the worker pool's cores:
//!
//! * the queues: submit vs shutdown, steal vs shutdown, the load counters of least-loaded
//!   dispatch;
//! * one lane: a waiting submit and a waiting pop hand off to each other, a cancelled submit
//!   passes its wake-up on, `kill` leaves nobody parked;
//! * a per-worker resize (`lanes.rs`): a keyed submit racing the resize is drained or routed
//!   again, so a moved key's job never starts before the older one on its old lane;
//! * the worker count (`worker_count.rs`): an idle worker retiring against a submit, a grow
//!   against a resize, two resizes;
//! * a task's handle: abort against the task's waker registration, abort against completion;
//! * the queue-wait tail of overload protection (`admission.rs`): counts racing across windows.
//!
//! Each thread drives the same calls the pool makes: a submitter reserves room and commits a
//! job, a worker waits on `next_job` and runs what it gets, a shutdown closes the queues. loom
//! explores every interleaving (bounded by `LOOM_MAX_PREEMPTIONS`) and fails a model that
//! deadlocks, which is how "no hang" (no lost wake-up) is checked.
//!
//! Run with `RUSTFLAGS="--cfg millpond_loom" cargo test --release --lib loom_models`.
//!
//! The queue models run under a lower preemption bound than `LOOM_MAX_PREEMPTIONS`: each
//! thread takes a dozen locks and fences, and the number of interleavings grows exponentially
//! with the bound (on the 2-core machine: the cancelled-submit model 10 s at 3 preemptions and
//! over a minute at 4; the steal model 5 s at 3, 38 s at 4; the load-counter model 5 s at 2 and
//! over a minute at 3; the kill model 4 s at 3, 46 s at 4). Races in protocols like these show
//! up within two or three preemptions (a model below fails within its bound when the re-check
//! after listening is taken out of the lane's take); the bounds below are the largest that keep
//! CI fast.

use std::future::{Future, poll_fn};
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use loom::future::block_on;
use loom::thread;

use super::admission::WaitTail;
use super::error::TaskError;
use super::handle::tracked;
use super::inner::retire_if_idle;
use super::job::Job;
use super::lane::{Lane, NoRoom, Stash, Stealable, TryPop, Turn};
use super::queues::{Next, Queues, Reserved, Wait};
use super::worker_count::WorkerCount;
use crate::balance::{Balancer, LeastLoaded, RoundRobin};
use crate::sync::{Arc, AtomicUsize, Mutex, Ordering};

/// A job that counts its runs.
fn job(runs: &Arc<AtomicUsize>, keyed: bool) -> Job {
    let runs = Arc::clone(runs);
    Job::new(
        async move {
            runs.fetch_add(1, Ordering::AcqRel);
        },
        keyed,
    )
}

/// A worker as `worker::run` drives one: jobs it stole earlier, else its lane's without
/// waiting, else wait. Runs jobs until its lane is closed and drained; returns how many it ran.
fn work(queues: &Queues, lane: usize) -> usize {
    let mut turn = Turn::default();
    let mut stash = Stash::new();
    let mut ran = 0;
    loop {
        let job = match queues.try_next(lane, &mut turn, &mut stash) {
            TryPop::Job(job) => job,
            TryPop::Closed => return ran,
            TryPop::Empty => match block_on(queues.next_job(lane, &mut turn, &mut stash)) {
                Next::Job(job) => job,
                Next::Closed => return ran,
                Next::Interrupted => continue,
            },
        };
        let (committed_to, counted) = (job.lane, job.counted);
        block_on(job.future);
        queues.done(committed_to, counted);
        ran += 1;
    }
}

/// Runs a model with at most `bound` preemptions (or `LOOM_MAX_PREEMPTIONS`, if lower).
fn model_bounded(bound: usize, model: impl Fn() + Sync + Send + 'static) {
    let mut builder = loom::model::Builder::new();
    builder.preemption_bound = Some(builder.preemption_bound.map_or(bound, |env| env.min(bound)));
    builder.check(model);
}

fn per_worker(workers: usize, balancer: Arc<dyn Balancer>, stealing: bool) -> Arc<Queues> {
    let tracks_loads = balancer.reads_loads();
    Arc::new(Queues::per_worker(workers, workers * 2, balancer, tracks_loads, stealing, false))
}

/// A submit races a shutdown on the shared queue: a job that got room is run, one that did not
/// is refused, and the worker always ends.
#[test]
fn submit_vs_shutdown_loses_no_task() {
    model_bounded(4, || {
        let queues = Arc::new(Queues::shared(1));
        let runs = Arc::new(AtomicUsize::new(0));
        let submitter = {
            let (queues, runs) = (Arc::clone(&queues), Arc::clone(&runs));
            thread::spawn(move || match queues.try_reserve(None) {
                Ok(lane) => {
                    queues.commit(lane, job(&runs, false));
                    true
                }
                Err(_) => false,
            })
        };
        let worker = {
            let queues = Arc::clone(&queues);
            thread::spawn(move || work(&queues, 0))
        };
        queues.close();
        let accepted = submitter.join().unwrap();
        let ran = worker.join().unwrap();
        assert_eq!(ran, usize::from(accepted));
        assert_eq!(runs.load(Ordering::Acquire), ran);
    });
}

/// A thief races a shutdown for a job queued at a worker that is not running: the job runs
/// exactly once (stolen, or by its own worker draining after the close) and the thief ends.
#[test]
fn steal_vs_shutdown_runs_each_job_once() {
    model_bounded(3, || {
        let queues = per_worker(2, Arc::new(RoundRobin::new()), true);
        let runs = Arc::new(AtomicUsize::new(0));
        let lane = queues.try_reserve(None).unwrap();
        assert_eq!(lane.lane, 0);
        let thief = {
            let queues = Arc::clone(&queues);
            thread::spawn(move || work(&queues, 1))
        };
        let submitter = {
            let (queues, runs) = (Arc::clone(&queues), Arc::clone(&runs));
            thread::spawn(move || queues.commit(lane, job(&runs, false)))
        };
        submitter.join().unwrap();
        queues.close();
        let stolen = thief.join().unwrap();
        let drained = work(&queues, 0);
        assert_eq!(stolen + drained, 1);
        assert_eq!(runs.load(Ordering::Acquire), 1);
    });
}

/// Two least-loaded dispatches race two workers that run and steal: when all is done every
/// load counter is back at zero (a counter left above zero would keep work off its worker).
#[test]
fn least_loaded_counters_never_drift() {
    model_bounded(2, || {
        let queues = per_worker(2, Arc::new(LeastLoaded::new()), true);
        let runs = Arc::new(AtomicUsize::new(0));
        let workers: Vec<_> = (0..2)
            .map(|lane| {
                let queues = Arc::clone(&queues);
                thread::spawn(move || work(&queues, lane))
            })
            .collect();
        for _ in 0..2 {
            let lane = queues.try_reserve(None).unwrap();
            queues.commit(lane, job(&runs, false));
        }
        queues.close();
        let ran: usize = workers.into_iter().map(|worker| worker.join().unwrap()).sum();
        assert_eq!(ran, 2);
        assert_eq!(runs.load(Ordering::Acquire), 2);
        assert_eq!(queues.loads(), [0, 0]);
    });
}

/// A keyed job is never stolen: with its own worker not running, an idle thief leaves it, and
/// the owner runs it after the close.
#[test]
fn keyed_jobs_are_never_stolen() {
    loom::model(|| {
        let queues = per_worker(2, Arc::new(RoundRobin::new()), true);
        let runs = Arc::new(AtomicUsize::new(0));
        let key = (0..).find(|key| crate::balance::KeyHash::target(*key, 2) == 0).unwrap();
        let lane = queues.try_reserve(Some(key)).unwrap();
        let thief = {
            let queues = Arc::clone(&queues);
            thread::spawn(move || work(&queues, 1))
        };
        queues.commit(lane, job(&runs, true));
        queues.close();
        assert_eq!(thief.join().unwrap(), 0);
        assert_eq!(work(&queues, 0), 1);
    });
}

/// A keyed submit races a resize that moves its key from lane 0 to lane 1, with lane 0's
/// worker running: the submitter's first job lands on lane 0 (routed before the resize) or on
/// lane 1 (after it), and a second job of the key that gets room on lane 1 finds the first one
/// already run whenever the first went to lane 0. When all is done the keyed counters are back
/// at zero. (Without the fence between a keyed submit's count and its second read of the
/// route, this model fails at once: the second job overtakes the first.)
#[test]
fn a_moved_key_never_overtakes_its_older_job() {
    model_bounded(3, || {
        let queues = per_worker(1, Arc::new(RoundRobin::new()), false);
        let key = (0..).find(|key| crate::balance::KeyHash::target(*key, 2) == 1).unwrap();
        let first_ran = Arc::new(AtomicUsize::new(0));
        let second_ran = Arc::new(AtomicUsize::new(0));
        let submitter = {
            let (queues, first_ran, second_ran) =
                (Arc::clone(&queues), Arc::clone(&first_ran), Arc::clone(&second_ran));
            thread::spawn(move || {
                // The submitter may read the route of a drain that has just ended: then the
                // pool would wait for it.
                let Ok(first) = queues.try_reserve(Some(key)) else {
                    return false;
                };
                queues.commit(first, job(&first_ran, true));
                match queues.try_reserve(Some(key)) {
                    Ok(second) => {
                        if second.lane != first.lane {
                            assert_eq!(
                                first_ran.load(Ordering::Acquire),
                                1,
                                "a moved key's job overtook its older one"
                            );
                        }
                        queues.commit(second, job(&second_ran, true));
                    }
                    // Still draining, or the resize lowered lane 0's share: the pool would
                    // wait here.
                    Err(Wait::Moving(_) | Wait::Room(_)) => {}
                    Err(other) => panic!("an open pool refused a keyed job: {other:?}"),
                }
                true
            })
        };
        let worker = {
            let queues = Arc::clone(&queues);
            thread::spawn(move || work(&queues, 0))
        };
        queues.resize(2);
        let submitted = submitter.join().unwrap();
        queues.close();
        worker.join().unwrap();
        work(&queues, 1);
        assert_eq!(first_ran.load(Ordering::Acquire), usize::from(submitted));
        assert!(queues.keyed_counts().iter().all(|counts| *counts == [0, 0]));
        assert_eq!(queues.active_lanes(), 2);
    });
}

/// A thief takes a batch from a lane whose worker is running while the pool shuts down: every
/// job runs exactly once, and the owner does not stop before the jobs in the thief's stash have
/// started (their room stays claimed in its lane until then).
#[test]
fn a_stolen_batch_runs_once_and_holds_its_lane_open_until_started() {
    model_bounded(3, || {
        let queues =
            Arc::new(Queues::per_worker(2, 6, Arc::new(RoundRobin::new()), false, true, false));
        let runs = Arc::new(AtomicUsize::new(0));
        for _ in 0..3 {
            // Round-robin would alternate lanes: aim each job at lane 0 directly.
            queues.lane(0).try_reserve().unwrap();
            queues.commit(Reserved::unkeyed(0), job(&runs, false));
        }
        let thief = {
            let queues = Arc::clone(&queues);
            thread::spawn(move || work(&queues, 1))
        };
        let owner = {
            let queues = Arc::clone(&queues);
            thread::spawn(move || work(&queues, 0))
        };
        queues.close();
        let ran = thief.join().unwrap() + owner.join().unwrap();
        assert_eq!(ran, 3);
        assert_eq!(runs.load(Ordering::Acquire), 3);
        assert_eq!(queues.lane(0).occupied(), 0);
    });
}

/// An elastic worker as `worker::run` drives one, over the shared queue: take a job without
/// waiting, else wait for one; an idle wait can end at any moment (the idle timeout), and then
/// the worker retires if the count lets it and the queue has nothing for it. Here every wait
/// times out after its first poll, the worst case for the hand-off. Returns how many jobs it
/// ran.
fn elastic_worker(queues: &Queues, count: &WorkerCount) -> usize {
    let mut turn = Turn::default();
    let mut stash = Stash::new();
    let mut ran = 0;
    loop {
        let job = match queues.try_next(0, &mut turn, &mut stash) {
            TryPop::Job(job) => job,
            TryPop::Closed => return ran,
            TryPop::Empty => {
                // The wait ends (and withdraws from the lane) before the worker decides.
                let next = {
                    let mut next = std::pin::pin!(queues.next_job(0, &mut turn, &mut stash));
                    next.as_mut().poll(&mut Context::from_waker(Waker::noop()))
                };
                match next {
                    Poll::Ready(Next::Job(job)) => job,
                    Poll::Ready(Next::Closed) => return ran,
                    Poll::Ready(Next::Interrupted) | Poll::Pending => {
                        if retire_if_idle(queues.lane(0), count) {
                            return ran;
                        }
                        continue;
                    }
                }
            }
        };
        block_on(job.future);
        ran += 1;
        if count.retire_surplus() {
            return ran;
        }
    }
}

/// An idle elastic worker times out and retires while a task is submitted: whatever the order,
/// the task runs, on that worker (it saw the task and stayed) or on one the submit started (it
/// saw the worker gone). The pool never holds more workers than its maximum.
#[test]
fn a_retiring_worker_never_strands_a_submitted_task() {
    model_bounded(5, || {
        let queues = Arc::new(Queues::shared(2));
        // An elastic pool of at most one worker, which is running.
        let count = Arc::new(WorkerCount::new(0, 1, true));
        assert!(count.grow());
        let runs = Arc::new(AtomicUsize::new(0));
        let worker = {
            let (queues, count) = (Arc::clone(&queues), Arc::clone(&count));
            thread::spawn(move || elastic_worker(&queues, &count))
        };
        // `Inner::commit`, the grown worker run on a thread of its own.
        let lane = queues.try_reserve(None).unwrap();
        let grown = (!queues.commit(lane, job(&runs, false)) && count.grow()).then(|| {
            let (queues, count) = (Arc::clone(&queues), Arc::clone(&count));
            thread::spawn(move || elastic_worker(&queues, &count))
        });
        assert!(count.live() <= 1, "grew past the maximum");
        let ran = worker.join().unwrap() + grown.map_or(0, |grown| grown.join().unwrap());
        assert_eq!(ran, 1, "the task was stranded with no worker");
        assert_eq!(runs.load(Ordering::Acquire), 1);
        assert_eq!(count.live(), 0, "every worker retired once idle");
    });
}

/// A grow races a resize that lowers the maximum: a worker is never counted in above the new
/// maximum unless the resize saw it and interrupts the workers, so the surplus retires.
#[test]
fn a_grow_never_slips_past_a_lowering_resize() {
    loom::model(|| {
        let count = Arc::new(WorkerCount::new(1, 3, true));
        assert!(count.grow());
        let grower = {
            let count = Arc::clone(&count);
            thread::spawn(move || count.grow())
        };
        let resized = count.resize(2);
        let grew = grower.join().unwrap();
        assert_eq!(count.live(), 2 + usize::from(grew));
        if count.live() > 2 {
            assert!(resized.interrupt, "a third worker slipped in unseen");
        }
    });
}

/// Two resizes race: whichever lands last, the minimum is not above the maximum, and neither
/// resize's lowering of the minimum is lost.
#[test]
fn concurrent_resizes_keep_min_at_most_max() {
    loom::model(|| {
        let count = Arc::new(WorkerCount::new(2, 3, true));
        let widen = {
            let count = Arc::clone(&count);
            thread::spawn(move || count.resize(4))
        };
        let narrowed = count.resize(1);
        let widened = widen.join().unwrap();
        let (min, max) = count.bounds();
        assert!(min <= max, "min {min} above max {max}");
        assert_eq!(min, 1, "the lowered minimum was lost");
        assert_eq!(narrowed.start + widened.start, 0, "the minimum never rises");
    });
}

/// Two busy workers finish their tasks after a resize to one: exactly one retires, so the
/// pool keeps a worker for the tasks still queued (each looked "over size" on its own, and a
/// look followed by a separate retirement let both go).
#[test]
fn surplus_workers_retire_down_to_the_maximum_and_no_further() {
    loom::model(|| {
        let count = Arc::new(WorkerCount::new(0, 2, true));
        assert!(count.grow() && count.grow());
        assert!(count.resize(1).interrupt);
        let other = {
            let count = Arc::clone(&count);
            thread::spawn(move || count.retire_surplus())
        };
        let retired = usize::from(count.retire_surplus()) + usize::from(other.join().unwrap());
        assert_eq!(retired, 1);
        assert_eq!(count.live(), 1);
    });
}

/// Abort races the task's first poll: the task stops whatever the order. The abort sets its
/// flag, then wakes the waker it finds; the task registers its waker, then looks at the flag
/// again. Without that second look an abort between the task's first look and its registration
/// would find no waker, and the task would sleep forever (loom reports the deadlock).
#[test]
fn abort_never_loses_the_wake_up_of_a_running_task() {
    loom::model(|| {
        let (task, handle) = tracked(std::future::pending::<u32>(), 0);
        let aborter = thread::spawn(move || {
            handle.abort();
            handle
        });
        // The worker: returns only once the abort reached the task.
        block_on(task);
        let handle = aborter.join().unwrap();
        assert!(matches!(block_on(handle), Err(TaskError::Aborted)));
    });
}

/// A task finishes on a worker while its handle is awaited and aborted from other threads:
/// the handle resolves (to the output, or `Aborted` if the abort came first) and never hangs.
#[test]
fn a_handle_resolves_whether_the_task_finishes_or_is_aborted() {
    model_bounded(4, || {
        let (task, handle) = tracked(async { 7_u32 }, 0);
        let handle = Arc::new(Mutex::new(handle));
        let worker = thread::spawn(move || block_on(task));
        let aborter = {
            let handle = Arc::clone(&handle);
            thread::spawn(move || handle.lock().abort())
        };
        let outcome = block_on(poll_fn(|cx| Pin::new(&mut *handle.lock()).poll(cx)));
        worker.join().unwrap();
        aborter.join().unwrap();
        assert!(matches!(outcome, Ok(7) | Err(TaskError::Aborted)), "{outcome:?}");
    });
}

/// A lane item that counts the drops a dead lane makes of it.
#[derive(Debug)]
struct Item {
    id: u32,
    /// Set while only the lane holds it: a drop then means the lane dropped it.
    dropped_by_lane: Option<Arc<AtomicUsize>>,
}

impl Item {
    fn new(id: u32, dropped: &Arc<AtomicUsize>) -> Self {
        Self { id, dropped_by_lane: Some(Arc::clone(dropped)) }
    }

    /// Taken off the lane: its drop is ours from now on.
    fn taken(mut self) -> u32 {
        self.dropped_by_lane = None;
        self.id
    }
}

impl Drop for Item {
    fn drop(&mut self) {
        if let Some(dropped) = &self.dropped_by_lane {
            dropped.fetch_add(1, Ordering::AcqRel);
        }
    }
}

impl Stealable for Item {
    fn stealable(&self) -> bool {
        true
    }
}

/// A submit that waits for room, as `Reserve` polls it.
fn reserve(lane: &Lane<Item>) -> Result<(), NoRoom> {
    block_on(lane.reserve())
}

/// A worker's wait for the next item, as `NextJob` polls it; `None` once closed and drained.
fn pop(lane: &Lane<Item>) -> Option<u32> {
    let mut turn = Turn::default();
    let mut listener = None;
    block_on(poll_fn(|cx| lane.poll_pop(cx, &mut turn, &mut listener))).map(Item::taken)
}

/// A submitter waits for room in a full lane while a worker waits for items: the pop that
/// frees the room wakes the submitter, and the commit that follows wakes the worker.
#[test]
fn a_waiting_submit_and_a_waiting_pop_hand_off_to_each_other() {
    model_bounded(5, || {
        let dropped = Arc::new(AtomicUsize::new(0));
        let lane = Arc::new(Lane::shared(1));
        lane.try_reserve().unwrap();
        lane.commit(Item::new(0, &dropped));
        let submitter = {
            let (lane, dropped) = (Arc::clone(&lane), Arc::clone(&dropped));
            thread::spawn(move || {
                reserve(&lane).unwrap();
                lane.commit(Item::new(1, &dropped));
            })
        };
        assert_eq!(pop(&lane), Some(0));
        assert_eq!(pop(&lane), Some(1), "the second item is the submitter's");
        submitter.join().unwrap();
        assert_eq!(dropped.load(Ordering::Acquire), 0);
    });
}

/// Two submitters wait for room; one gives up after its first poll (a cancelled `submit`),
/// possibly after the pop already woke it: the wake-up passes to the other, which gets the room.
#[test]
fn a_cancelled_submit_passes_its_wake_up_on() {
    model_bounded(3, || {
        let dropped = Arc::new(AtomicUsize::new(0));
        let lane = Arc::new(Lane::shared(1));
        lane.try_reserve().unwrap();
        lane.commit(Item::new(0, &dropped));
        let quitter = {
            let (lane, dropped) = (Arc::clone(&lane), Arc::clone(&dropped));
            thread::spawn(move || {
                let mut cx = Context::from_waker(Waker::noop());
                let mut reserve = std::pin::pin!(lane.reserve());
                if let Poll::Ready(claimed) = reserve.as_mut().poll(&mut cx) {
                    claimed.unwrap();
                    lane.commit(Item::new(1, &dropped));
                }
                // Otherwise dropped here: the submit is cancelled.
            })
        };
        let waiter = {
            let (lane, dropped) = (Arc::clone(&lane), Arc::clone(&dropped));
            thread::spawn(move || {
                reserve(&lane).unwrap();
                lane.commit(Item::new(2, &dropped));
            })
        };
        assert_eq!(pop(&lane), Some(0));
        quitter.join().unwrap();
        // The quitter's item, if it got room first, then the waiter's.
        let mut next = pop(&lane);
        if next == Some(1) {
            next = pop(&lane);
        }
        assert_eq!(next, Some(2));
        waiter.join().unwrap();
    });
}

/// `kill` races a waiting submitter and a waiting worker: both wake and end (nobody stays
/// parked), and every item is accounted for exactly once: popped, handed back by `kill`, or
/// dropped by the dead lane when its submitter commits it.
#[test]
fn kill_leaves_no_waiter_parked_and_loses_no_item() {
    model_bounded(3, || {
        let dropped = Arc::new(AtomicUsize::new(0));
        let lane = Arc::new(Lane::shared(1));
        lane.try_reserve().unwrap();
        lane.commit(Item::new(0, &dropped));
        let submitter = {
            let (lane, dropped) = (Arc::clone(&lane), Arc::clone(&dropped));
            thread::spawn(move || match reserve(&lane) {
                Ok(()) => {
                    lane.commit(Item::new(1, &dropped));
                    true
                }
                Err(why) => {
                    assert_eq!(why, NoRoom::Closed);
                    false
                }
            })
        };
        let worker = {
            let lane = Arc::clone(&lane);
            thread::spawn(move || std::iter::from_fn(|| pop(&lane)).count())
        };
        let killed = lane.kill().into_iter().map(Item::taken).count();
        let submitted = 1 + usize::from(submitter.join().unwrap());
        let popped = worker.join().unwrap();
        assert_eq!(popped + killed + dropped.load(Ordering::Acquire), submitted);
        assert!(matches!(lane.try_pop(&mut Turn::default()), TryPop::Closed));
    });
}

/// Threads count task starts in three consecutive windows, the later two concurrently: seen
/// from the last window, both of its own and the one before are counted, whatever the order
/// the two threads reach the words in (a thread that read the clock first can arrive last).
#[test]
fn the_wait_tail_loses_no_count_across_windows() {
    loom::model(|| {
        let tail = Arc::new(WaitTail::default());
        tail.record(tail.at(0), false);
        let first = {
            let tail = Arc::clone(&tail);
            thread::spawn(move || tail.record(tail.at(1), true))
        };
        let second = {
            let tail = Arc::clone(&tail);
            thread::spawn(move || tail.record(tail.at(2), false))
        };
        first.join().unwrap();
        second.join().unwrap();
        assert_eq!(tail.recent(tail.at(2)), (2, 1));
    });
}

/// Two threads count in a window while a third opens the next one: none of the three counts
/// is lost (one counted into the next window is still seen from it).
#[test]
fn the_wait_tail_loses_no_count_at_a_window_edge() {
    loom::model(|| {
        let tail = Arc::new(WaitTail::default());
        let threads: Vec<_> = [(0, true), (0, false), (1, true)]
            .into_iter()
            .map(|(window, over)| {
                let tail = Arc::clone(&tail);
                thread::spawn(move || tail.record(tail.at(window), over))
            })
            .collect();
        threads.into_iter().for_each(|thread| thread.join().unwrap());
        assert_eq!(tail.recent(tail.at(1)), (3, 2));
    });
}
