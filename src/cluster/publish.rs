//! Publishing a cluster's figures through the `metrics` facade (the `metrics` feature).
//!
//! The scheme of a pool's (`pool/publish.rs`): nothing runs per call; a publish reads
//! [`ClusterStatus`], sets the gauges, and sends the counters what changed since the previous
//! publish, kept beside the cluster behind a lock held for the whole publish. OpenTelemetry has no
//! names for clusters, so these follow the database-client style under `millpond.cluster.*`. Each
//! backend's pool publishes its own `db.client.connection.*` figures in the same publish.

use metrics::{Label, Unit, counter, describe_counter, describe_gauge, gauge};

use super::api::Shared;
use super::status::ClusterStatus;
use crate::pool::Manager;

/// The attribute naming the cluster on every figure.
const CLUSTER_NAME: &str = "millpond.cluster.name";
/// The attribute naming the backend on the per-backend figures.
const BACKEND: &str = "millpond.cluster.backend";
/// The attribute giving the backend's role (`primary`, `replica`).
const ROLE: &str = "millpond.cluster.backend.role";

const BACKENDS_IN_ROTATION: &str = "millpond.cluster.in_rotation";
const FAILOVERS: &str = "millpond.cluster.failovers";
const IN_ROTATION: &str = "millpond.cluster.backend.in_rotation";
const IN_USE: &str = "millpond.cluster.backend.in_use";
const CHECKOUTS: &str = "millpond.cluster.backend.checkouts";
const EJECTIONS: &str = "millpond.cluster.backend.ejections";
const READMISSIONS: &str = "millpond.cluster.backend.readmissions";

/// What the previous publish sent: the cluster's failovers, and per backend (in the order they
/// were added) its checkouts, ejections and readmissions.
#[derive(Default)]
pub(crate) struct Published {
    failovers: u64,
    backends: Vec<[u64; 3]>,
}

/// Sends the cluster's figures, and each backend pool's, to the current `metrics` recorder.
pub(crate) fn publish<M: Manager>(shared: &Shared<M>, status: &ClusterStatus) {
    let mut last = shared.published.lock();
    let cluster = vec![Label::new(CLUSTER_NAME, shared.name.clone())];
    describe();

    gauge!(BACKENDS_IN_ROTATION, cluster.clone()).set(status.in_rotation as f64);
    counter!(FAILOVERS, cluster.clone()).increment(status.failovers.saturating_sub(last.failovers));
    last.failovers = status.failovers;

    last.backends.resize(status.backends.len(), [0; 3]);
    for (backend, before) in status.backends.iter().zip(&mut last.backends) {
        let mut labels = cluster.clone();
        labels.push(Label::new(BACKEND, backend.name.clone()));
        labels.push(Label::new(ROLE, backend.role.label()));
        gauge!(IN_ROTATION, labels.clone()).set(if backend.in_rotation { 1.0 } else { 0.0 });
        gauge!(IN_USE, labels.clone()).set(backend.in_use as f64);
        let now = [backend.served, backend.ejections, backend.readmissions];
        for ((name, now), before) in
            [CHECKOUTS, EJECTIONS, READMISSIONS].iter().zip(now).zip(before)
        {
            counter!(*name, labels.clone()).increment(now.saturating_sub(*before));
            *before = now;
        }
    }
    drop(last);
    for member in &shared.members {
        member.pool.publish_metrics();
    }
}

/// Gives the recorder each figure's unit and meaning.
fn describe() {
    describe_gauge!(BACKENDS_IN_ROTATION, Unit::Count, "Backends calls may go to now");
    describe_counter!(
        FAILOVERS,
        Unit::Count,
        "Calls moved from one backend to another after a failure"
    );
    describe_gauge!(IN_ROTATION, Unit::Count, "1 while the backend is in rotation, 0 while out");
    describe_gauge!(IN_USE, Unit::Count, "The backend's connections handed out, not yet returned");
    describe_counter!(CHECKOUTS, Unit::Count, "Connections the backend handed out");
    describe_counter!(EJECTIONS, Unit::Count, "Times the backend left the rotation");
    describe_counter!(READMISSIONS, Unit::Count, "Times a probe brought the backend back");
}
