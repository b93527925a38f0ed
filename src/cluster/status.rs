//! What [`Cluster::status`](super::Cluster::status) reports.

use super::builder::Role;
use crate::pool;

/// One backend's state.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct BackendStatus {
    /// The backend's name.
    pub name: String,
    /// Its role.
    pub role: Role,
    /// Whether calls go to it now: its connections can be made and it is not ejected as an
    /// outlier.
    pub in_rotation: bool,
    /// Whether outlier ejection has it out now, for how its calls went
    /// ([`OutlierDetection`](super::OutlierDetection)).
    pub outlier_ejected: bool,
    /// Times outlier ejection took it out.
    pub outlier_ejections: u32,
    /// Its connections handed out by the cluster and not yet returned.
    pub in_use: usize,
    /// Connections it has handed out in all.
    pub served: u64,
    /// Times it left the rotation.
    pub ejections: u64,
    /// Times a probe brought it back.
    pub readmissions: u64,
    /// The last failure it reported, if any.
    pub last_error: Option<String>,
    /// Its pool's status.
    pub pool: pool::Status,
}

/// Every backend's state, and the totals.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ClusterStatus {
    /// Each backend, in the order they were added.
    pub backends: Vec<BackendStatus>,
    /// Backends in rotation.
    pub in_rotation: usize,
    /// Connections handed out and not yet returned, over all backends.
    pub in_use: usize,
    /// Connections handed out in all.
    pub served: u64,
    /// Calls moved from one backend to another after a failure.
    pub failovers: u64,
}
