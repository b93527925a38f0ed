//! Publishing a worker pool's figures through the `metrics` facade (the `metrics` feature).
//!
//! The same scheme as a pool's (`pool/publish.rs`): nothing runs per task; a publish reads
//! [`Stats`](super::Stats), sets the gauges, and sends the counters and the queue-wait histogram
//! what changed since the previous publish, kept here behind a lock held for the whole publish.
//! OpenTelemetry has no names for worker pools, so these follow the database-client style under
//! `millpond.worker_pool.*`.

use metrics::{
    Label, Unit, counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram,
};

use super::api::WorkerPool;
use crate::histogram::DurationHistogram;

/// The attribute naming the worker pool on every figure.
const POOL_NAME: &str = "millpond.worker_pool.name";

const WORKERS: &str = "millpond.worker_pool.workers";
const BUSY: &str = "millpond.worker_pool.busy";
const IDLE: &str = "millpond.worker_pool.idle";
const QUEUED: &str = "millpond.worker_pool.queued";
const COMPLETED: &str = "millpond.worker_pool.completed";
const PANICKED: &str = "millpond.worker_pool.panicked";
const REJECTED: &str = "millpond.worker_pool.rejected";
const SHED: &str = "millpond.worker_pool.shed";
const QUEUE_WAIT: &str = "millpond.worker_pool.queue_wait";
const RUN_TIME: &str = "millpond.worker_pool.run_time";

/// What the previous publish sent.
#[derive(Default)]
pub(crate) struct Published {
    completed: u64,
    panicked: u64,
    rejected: u64,
    shed: u64,
    queue_wait: DurationHistogram,
    run_time: DurationHistogram,
}

/// Sends `pool`'s figures to the current `metrics` recorder.
pub(crate) fn publish(pool: &WorkerPool, name: &str, published: &crate::sync::Mutex<Published>) {
    let mut last = published.lock();
    let stats = pool.stats();
    let labels = vec![Label::new(POOL_NAME, name.to_owned())];
    describe();

    gauge!(WORKERS, labels.clone()).set(stats.workers as f64);
    gauge!(BUSY, labels.clone()).set(stats.busy as f64);
    gauge!(IDLE, labels.clone()).set(stats.idle as f64);
    gauge!(QUEUED, labels.clone()).set(stats.queued as f64);
    counter!(COMPLETED, labels.clone()).increment(stats.completed.saturating_sub(last.completed));
    counter!(PANICKED, labels.clone()).increment(stats.panicked.saturating_sub(last.panicked));
    counter!(REJECTED, labels.clone()).increment(stats.rejected.saturating_sub(last.rejected));
    counter!(SHED, labels.clone()).increment(stats.shed.saturating_sub(last.shed));
    send(histogram!(QUEUE_WAIT, labels.clone()), &stats.queue_wait, &last.queue_wait);
    send(histogram!(RUN_TIME, labels), &stats.run_time, &last.run_time);
    *last = Published {
        completed: stats.completed,
        panicked: stats.panicked,
        rejected: stats.rejected,
        shed: stats.shed,
        queue_wait: stats.queue_wait,
        run_time: stats.run_time,
    };
}

/// Sends what `now` gained since `before`.
fn send(histogram: metrics::Histogram, now: &DurationHistogram, before: &DurationHistogram) {
    if now.count() > before.count() {
        for (value, gained) in now.bucket_deltas(before) {
            histogram
                .record_many(value.as_secs_f64(), usize::try_from(gained).unwrap_or(usize::MAX));
        }
    }
}

/// Gives the recorder each figure's unit and meaning.
fn describe() {
    describe_gauge!(WORKERS, Unit::Count, "Workers alive");
    describe_gauge!(BUSY, Unit::Count, "Workers running a task");
    describe_gauge!(IDLE, Unit::Count, "Workers waiting for a task");
    describe_gauge!(QUEUED, Unit::Count, "Tasks queued, not yet started");
    describe_counter!(COMPLETED, Unit::Count, "Tasks that ran to the end, panicked ones included");
    describe_counter!(PANICKED, Unit::Count, "Tasks that panicked");
    describe_counter!(REJECTED, Unit::Count, "Submits refused");
    describe_counter!(SHED, Unit::Count, "Tasks dropped before they started");
    describe_histogram!(
        QUEUE_WAIT,
        Unit::Seconds,
        "How long tasks waited in the queue before a worker started them"
    );
    describe_histogram!(RUN_TIME, Unit::Seconds, "How long tasks ran, from start to end");
}
