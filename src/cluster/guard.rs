//! [`ClusterConn`]: a connection from a cluster, counted against its backend while it is out.

use std::ops::{Deref, DerefMut};

use super::api::Shared;
use super::health::Watch;
use super::outlier::Counts;
use crate::pool::{Manager, Pooled};
use crate::sync::{Arc, Ordering};

/// A connection a [`Cluster`](super::Cluster) handed out: derefs to the resource, and goes back
/// to its backend's pool when dropped.
pub struct ClusterConn<M: Manager> {
    pooled: Pooled<Watch<M>>,
    cluster: Arc<Shared<M>>,
    backend: usize,
}

impl<M: Manager> ClusterConn<M> {
    pub(crate) fn new(pooled: Pooled<Watch<M>>, cluster: Arc<Shared<M>>, backend: usize) -> Self {
        let member = &cluster.members[backend];
        member.in_use.fetch_add(1, Ordering::Relaxed);
        member.served.fetch_add(1, Ordering::Relaxed);
        Self { pooled, cluster, backend }
    }

    /// The name of the backend this connection belongs to.
    pub fn backend(&self) -> &str {
        &self.cluster.members[self.backend].name
    }
}

impl<M: Manager> std::fmt::Debug for ClusterConn<M>
where
    M::Resource: std::fmt::Debug,
{
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterConn")
            .field("backend", &self.backend())
            .field("resource", &**self)
            .finish()
    }
}

impl<M: Manager> Deref for ClusterConn<M> {
    type Target = M::Resource;

    fn deref(&self) -> &M::Resource {
        &self.pooled
    }
}

impl<M: Manager> DerefMut for ClusterConn<M> {
    fn deref_mut(&mut self) -> &mut M::Resource {
        &mut self.pooled
    }
}

impl<M: Manager> ClusterConn<M> {
    /// Tells the cluster a call on this connection succeeded, in `latency`: a sample for
    /// outlier ejection ([`ClusterBuilder::outlier_detection`](super::ClusterBuilder::outlier_detection)).
    /// A cluster without it ignores the report.
    pub fn report_success(&self, latency: std::time::Duration) {
        self.cluster.report(self.backend, Some(latency));
    }

    /// Tells the cluster a call on this connection failed for a reason of the backend's (an
    /// error, a timeout): counts toward ejecting it as an outlier. Leave out failures that are
    /// the caller's (a constraint violation, a missing row).
    pub fn report_failure(&self) {
        self.cluster.report(self.backend, None);
    }
}

impl<M: Manager> Drop for ClusterConn<M> {
    fn drop(&mut self) {
        // What the manager counted on this connection since it last came back (`take_traffic`):
        // a late answer of the previous checkout is counted now rather than lost.
        if self.cluster.outliers.is_some() {
            let member = &self.cluster.members[self.backend];
            if let Some(traffic) = member.pool.manager().take_traffic(&self.pooled) {
                let failures = traffic.failures.min(traffic.calls);
                if traffic.calls > 0 {
                    self.cluster.report_counts(
                        self.backend,
                        Counts {
                            successes: traffic.calls - failures,
                            failures,
                            timed: traffic.timed,
                            time: traffic.time,
                        },
                    );
                }
            }
        }
        self.cluster.members[self.backend].in_use.fetch_sub(1, Ordering::Relaxed);
    }
}
