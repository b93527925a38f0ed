//! Pools over several backends: a primary and replicas, or equal peers, with balancing,
//! failover and failback.
//!
//! A [`Cluster`] keeps one [`Pool`](crate::pool::Pool) per backend and routes each call to a
//! backend in rotation with a strategy from [`balance`](crate::balance): round-robin, weighted,
//! least connections in use, power of two choices, or by key for affinity
//! ([`Cluster::get_keyed`]).
//!
//! - **Failover.** A backend whose creations fail (after
//!   [`failures_to_eject`](ClusterBuilder::failures_to_eject), 1 by default) or hit their create
//!   timeout leaves the rotation at once, and calls waiting on its pool move to another backend
//!   instead of waiting out their timeout. Callers see only the errors of work already running
//!   on it.
//! - **Failback.** A probe tries each backend out of rotation every
//!   [`probe_interval`](ClusterBuilder::probe_interval); the first connection it gets brings the
//!   backend back, and the strategy gives it its share of new calls at once.
//! - **Roles.** [`Cluster::get_primary`] for writes fails at once with the real cause when no
//!   primary is in rotation; [`Cluster::get_replica`] for reads may fall back to the primary.
//! - **Status.** [`Cluster::status`] reports each backend's rotation, load, ejections and pool
//!   status; [`Cluster::metrics`] each pool's metrics. With the `metrics` feature,
//!   `Cluster::publish_metrics` sends both through the `metrics` facade, as
//!   `millpond.cluster.*` and each backend pool's `db.client.connection.*`.

mod api;
mod builder;
mod error;
mod guard;
mod health;
mod outlier;
#[cfg(feature = "metrics")]
mod publish;
mod status;

#[cfg(all(test, millpond_loom))]
mod loom_models;

pub use api::Cluster;
pub use builder::{Backend, ClusterBuilder, MAX_BACKENDS, Role};
pub use error::Error;
pub use guard::ClusterConn;
pub use outlier::OutlierDetection;
pub use status::{BackendStatus, ClusterStatus};
