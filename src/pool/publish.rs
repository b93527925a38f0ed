//! Publishing a pool's figures through the `metrics` facade (the `metrics` feature).
//!
//! Nothing here runs on a checkout. A publish reads what the pool keeps anyway ([`Status`] and
//! [`Metrics`]) and sends it under the OpenTelemetry database-client names: gauges are set to the
//! current figures, and the counter and the histograms receive what changed since the previous
//! publish. The previous publish's [`Metrics`] is kept beside the pool for that, behind a lock
//! held for the whole publish, so two publishes running at once never send a change twice.
//!
//! The pool's histograms keep counts per bucket (25% precision), not the values themselves, so a
//! bucket's new counts are sent as that many copies of one value standing for the bucket
//! (`DurationHistogram::bucket_deltas`).
//!
//! [`Status`]: super::Status
//! [`Metrics`]: super::Metrics

use metrics::{
    Label, Unit, counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram,
};

use super::manager::Manager;
use super::metrics::DurationHistogram;
use super::shared::Shared;

/// The attribute naming the pool on every figure.
const POOL_NAME: &str = "db.client.connection.pool.name";
/// The attribute telling idle connections from used ones on `db.client.connection.count`.
const STATE: &str = "db.client.connection.state";

const COUNT: &str = "db.client.connection.count";
const IDLE_MAX: &str = "db.client.connection.idle.max";
const IDLE_MIN: &str = "db.client.connection.idle.min";
const MAX: &str = "db.client.connection.max";
const PENDING: &str = "db.client.connection.pending_requests";
const TIMEOUTS: &str = "db.client.connection.timeouts";
const CREATE_TIME: &str = "db.client.connection.create_time";
const WAIT_TIME: &str = "db.client.connection.wait_time";
const USE_TIME: &str = "db.client.connection.use_time";

/// Sends the pool's figures to the current `metrics` recorder.
pub(crate) fn publish<M: Manager>(shared: &Shared<M>) {
    let mut last = shared.published.lock();
    let status = shared.status();
    let (min_idle, max_idle) = shared.engine.lock().idle_limits();
    let now = shared.metrics();
    let pool = vec![Label::new(POOL_NAME, shared.config.name.clone())];
    describe();

    let with_state = |state: &'static str| {
        let mut labels = pool.clone();
        labels.push(Label::new(STATE, state));
        labels
    };
    gauge!(COUNT, with_state("idle")).set(status.idle as f64);
    gauge!(COUNT, with_state("used")).set(status.in_use as f64);
    gauge!(IDLE_MAX, pool.clone()).set(max_idle as f64);
    gauge!(IDLE_MIN, pool.clone()).set(min_idle as f64);
    gauge!(MAX, pool.clone()).set(status.max_size as f64);
    gauge!(PENDING, pool.clone()).set(status.waiters as f64);

    counter!(TIMEOUTS, pool.clone())
        .increment(now.gets_timed_out.saturating_sub(last.gets_timed_out));

    let histograms = [
        (CREATE_TIME, &now.create_time, &last.create_time),
        (WAIT_TIME, &now.wait_time, &last.wait_time),
        (USE_TIME, &now.hold_time, &last.hold_time),
    ];
    for (name, now, before) in histograms {
        record_new(name, &pool, now, before);
    }
    *last = now;
}

/// Records into the histogram `name` what `now` gained since `before`.
fn record_new(
    name: &'static str,
    pool: &[Label],
    now: &DurationHistogram,
    before: &DurationHistogram,
) {
    if now.count() <= before.count() {
        return;
    }
    let histogram = histogram!(name, pool.iter());
    for (value, gained) in now.bucket_deltas(before) {
        histogram.record_many(value.as_secs_f64(), usize::try_from(gained).unwrap_or(usize::MAX));
    }
}

/// Gives the recorder each figure's unit and meaning (the OpenTelemetry descriptions).
fn describe() {
    describe_gauge!(
        COUNT,
        Unit::Count,
        "The number of connections in the state the state attribute names"
    );
    describe_gauge!(IDLE_MAX, Unit::Count, "The maximum number of idle open connections allowed");
    describe_gauge!(IDLE_MIN, Unit::Count, "The minimum number of idle open connections allowed");
    describe_gauge!(MAX, Unit::Count, "The maximum number of open connections allowed");
    describe_gauge!(
        PENDING,
        Unit::Count,
        "The number of current pending requests for an open connection"
    );
    describe_counter!(
        TIMEOUTS,
        Unit::Count,
        "The number of connection timeouts that have occurred trying to obtain a connection from the pool"
    );
    describe_histogram!(CREATE_TIME, Unit::Seconds, "The time it took to create a new connection");
    describe_histogram!(
        WAIT_TIME,
        Unit::Seconds,
        "The time it took to obtain an open connection from the pool"
    );
    describe_histogram!(
        USE_TIME,
        Unit::Seconds,
        "The time between borrowing a connection and returning it to the pool"
    );
}
