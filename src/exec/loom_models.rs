//! loom models of the worker pool's queues: submit vs shutdown, steal vs shutdown, and the load
//! counters of least-loaded dispatch.
//!
//! Each thread drives the same calls the pool makes: a submitter reserves room and commits a
//! job, a worker waits on `next_job` and runs what it gets, a shutdown closes the queues. loom
//! explores every interleaving (bounded by `LOOM_MAX_PREEMPTIONS`) and fails a model that
//! deadlocks, which is how "no hang" is checked.
//!
//! Run with `RUSTFLAGS="--cfg millpond_loom" cargo test --release --lib loom_models`.
//!
//! The models with three busy threads run under a lower preemption bound than
//! `LOOM_MAX_PREEMPTIONS`: each thread takes a dozen locks, and the number of interleavings
//! grows exponentially with the bound (the steal model takes 2 s at 4 preemptions, 35 s at 6;
//! the load-counter model 22 s at 3 and over 5 minutes at 4). Races in protocols like these
//! show up within two or three preemptions; the bounds below are the largest that keep CI fast.

use loom::future::block_on;
use loom::thread;

use super::job::Job;
use super::queues::{Next, Queues};
use crate::balance::{Balancer, LeastLoaded, RoundRobin};
use crate::sync::{Arc, AtomicUsize, Ordering};

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

/// A worker: runs jobs until its queue is closed and drained. Returns how many it ran.
fn work(queues: &Queues, lane: usize) -> usize {
    let mut ran = 0;
    loop {
        match block_on(queues.next_job(lane)) {
            Next::Job(job) => {
                block_on(job.future);
                queues.done(lane);
                ran += 1;
            }
            Next::Closed => return ran,
            Next::Interrupted => {}
        }
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
    Arc::new(Queues::per_worker(workers, workers * 2, balancer, tracks_loads, stealing))
}

/// A submit races a shutdown on the shared queue: a job that got room is run, one that did not
/// is refused, and the worker always ends.
#[test]
fn submit_vs_shutdown_loses_no_task() {
    loom::model(|| {
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
    model_bounded(4, || {
        let queues = per_worker(2, Arc::new(RoundRobin::new()), true);
        let runs = Arc::new(AtomicUsize::new(0));
        let lane = queues.try_reserve(None).unwrap();
        assert_eq!(lane, 0);
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
    model_bounded(3, || {
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
