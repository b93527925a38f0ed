//! [`Cluster`]: a pool over several backends that routes each call to a healthy one.

use std::future::Future;
use std::pin::pin;
use std::task::Poll;
use std::time::Duration;

use super::builder::{ClusterBuilder, Role};
use super::error::Error;
use super::guard::ClusterConn;
use super::health::{Cause, Failure, Health, Watch};
use super::outlier::{Changes, Outliers};
use super::status::{BackendStatus, ClusterStatus};
use crate::balance::{Balance, Balancer, Loads};
use crate::build_error::BuildError;
use crate::home::{Home, Rehome};
use crate::pool::{self, Manager, Pool};
use crate::sync::{Arc, AtomicU64, AtomicUsize, Ordering, Weak};
use tokio::time::Instant;

/// A pool over several backends (a primary and replicas, or equal peers), each with its own
/// pool and its own health; start from [`Cluster::builder`].
///
/// Each call goes to a backend in rotation, chosen by the configured [`Balance`]. A backend
/// whose creations fail (its breaker opens) or time out leaves the rotation at once, and calls
/// already waiting on it move to another; a probe brings it back when it recovers, and the
/// strategy gives it its share again.
///
/// # Examples
///
/// ```
/// use millpond::cluster::{Backend, Cluster};
/// use millpond::pool::{Manager, Pool};
/// # struct Db(&'static str);
/// # impl Manager for Db {
/// #     type Resource = &'static str;
/// #     type Error = std::io::Error;
/// #     async fn create(&self) -> Result<&'static str, std::io::Error> { Ok(self.0) }
/// # }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let cluster = Cluster::builder()
///     .backend(Backend::primary("a", Pool::builder(Db("a")).max_size(8)))
///     .backend(Backend::replica("b", Pool::builder(Db("b")).max_size(8)))
///     .build()?;
/// let write = cluster.get_primary().await?;
/// assert_eq!(*write, "a");
/// let read = cluster.get_replica().await?;
/// assert_eq!(*read, "b");
/// # Ok(())
/// # }
/// ```
pub struct Cluster<M: Manager> {
    pub(crate) shared: Arc<Shared<M>>,
}

impl<M: Manager> std::fmt::Debug for Cluster<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut backends = f.debug_map();
        for member in &self.shared.members {
            let state = if member.health.is_down() { "out" } else { "in rotation" };
            backends.entry(&member.name, &format_args!("{:?}, {state}", member.role));
        }
        backends.finish()
    }
}

impl<M: Manager> Clone for Cluster<M> {
    fn clone(&self) -> Self {
        Self { shared: Arc::clone(&self.shared) }
    }
}

pub(crate) struct Shared<M: Manager> {
    /// The cluster's name in its published metrics.
    pub(crate) name: String,
    pub(crate) members: Vec<Member<M>>,
    pub(crate) any: Route,
    pub(crate) primaries: Route,
    pub(crate) replicas: Route,
    pub(crate) reads_fall_back_to_primary: bool,
    pub(crate) probe_interval: Duration,
    pub(crate) failovers: AtomicU64,
    /// Each key's limit for `get_keyed` (`ClusterBuilder::rate_limit_per_key`).
    pub(crate) per_key: Option<crate::rate::KeyedBuckets>,
    /// Outlier ejection from the calls' reports (`ClusterBuilder::outlier_detection`).
    pub(crate) outliers: Option<crate::sync::Mutex<Outliers>>,
    /// The runtime the health probe runs on; the probe starts again on a caller's runtime when
    /// it shuts down (`home.rs`).
    pub(crate) home: Arc<Home>,
    /// What the last metrics publish sent, so the next one sends only what changed since.
    #[cfg(feature = "metrics")]
    pub(crate) published: crate::sync::Mutex<super::publish::Published>,
}

/// One backend as the cluster runs it.
pub(crate) struct Member<M: Manager> {
    pub(crate) name: String,
    pub(crate) role: Role,
    pub(crate) pool: Pool<Watch<M>>,
    pub(crate) health: Arc<Health>,
    /// Out of rotation for how its calls went (outlier ejection); read by every pick.
    pub(crate) ejected: crate::sync::AtomicBool,
    /// Connections handed out and not yet returned: what the load-reading strategies read.
    pub(crate) in_use: AtomicUsize,
    pub(crate) served: AtomicU64,
}

/// The backends one kind of call may use, and the strategy that picks among them.
pub(crate) struct Route {
    label: &'static str,
    /// Indices into the cluster's members.
    members: Vec<usize>,
    balancer: Arc<dyn Balancer>,
    /// A bit per position in `members` weighted 0 beside weighted ones: such a backend takes
    /// this route's calls, keyed ones included, only when no weighted one is usable.
    fallback: u64,
}

impl Route {
    pub(crate) fn new(
        label: &'static str,
        members: Vec<usize>,
        balance: &Balance,
    ) -> Result<Self, BuildError> {
        // Weighted strategies get the weights of this route's own backends (the builder checked
        // that there is one per backend). Weights rank a route's backends against each other
        // only: a route whose backends are all weighted 0 (the primary kept off general reads,
        // for `get_primary`) spreads evenly over them.
        let own = |weights: &[u32]| -> Option<Vec<u32>> {
            let own: Vec<u32> =
                members.iter().map(|&index| weights.get(index).copied().unwrap_or(0)).collect();
            own.iter().any(|weight| *weight > 0).then_some(own)
        };
        // A backend weighted 0 among weighted ones is this route's fallback, one bit a position
        // (a route has at most `MAX_BACKENDS`, 64, backends).
        let zero_weights = |own: &[u32]| -> u64 {
            own.iter()
                .enumerate()
                .filter(|(_, weight)| **weight == 0)
                .fold(0, |mask, (position, _)| mask | 1 << position)
        };
        let (fallback, balance) = match balance {
            Balance::WeightedRoundRobin(weights) => match own(weights) {
                Some(own) => (zero_weights(&own), Balance::WeightedRoundRobin(own)),
                None => (0, Balance::RoundRobin),
            },
            Balance::WeightedRandom(weights) => match own(weights) {
                Some(own) => (zero_weights(&own), Balance::WeightedRandom(own)),
                None => (0, Balance::RoundRobin),
            },
            other => (0, other.clone()),
        };
        // A route with no backend never picks; any strategy will do.
        let targets = members.len().max(1);
        let balance = if members.is_empty() { Balance::RoundRobin } else { balance };
        let balancer = balance.build(targets, "balance")?;
        Ok(Self { label, members, balancer, fallback })
    }
}

/// The backends one call has tried: a bit per backend (a cluster has at most 64).
#[derive(Clone, Copy, Default)]
struct Tried(u64);

impl Tried {
    fn has(self, index: usize) -> bool {
        self.0 & (1 << index) != 0
    }

    fn add(&mut self, index: usize) {
        self.0 |= 1 << index;
    }
}

/// The loads of a route's backends as its strategy sees them: connections in use, and "full"
/// for a backend out of rotation or already tried by this call.
struct RouteLoads<'a, M: Manager> {
    shared: &'a Shared<M>,
    route: &'a Route,
    tried: Tried,
}

impl<M: Manager> RouteLoads<'_, M> {
    fn usable(&self, position: usize) -> bool {
        let index = self.route.members[position];
        let member = &self.shared.members[index];
        !self.tried.has(index)
            && !member.health.is_down()
            && !member.ejected.load(Ordering::Relaxed)
    }
}

impl<M: Manager> Loads for RouteLoads<'_, M> {
    fn count(&self) -> usize {
        self.route.members.len()
    }

    fn load(&self, position: usize) -> usize {
        if self.usable(position) {
            self.shared.members[self.route.members[position]].in_use.load(Ordering::Relaxed)
        } else {
            usize::MAX
        }
    }
}

impl<M: Manager> Shared<M> {
    /// Starts the health probe, and has it start again wherever the cluster moves when its
    /// runtime shuts down.
    pub(crate) fn launch_probe(self: &Arc<Self>) {
        let cluster = Arc::downgrade(self);
        self.home.on_move(move || {
            if let Some(shared) = cluster.upgrade() {
                shared.home.spawn(probe(Arc::downgrade(&shared)));
            }
        });
        self.home.spawn(probe(Arc::downgrade(self)));
    }

    /// Moves the probe to the caller's runtime if its own has shut down. One load when it has
    /// not.
    #[inline]
    fn stay_alive(&self) {
        if self.home.is_gone() {
            self.rehome();
        }
    }

    #[cold]
    fn rehome(&self) {
        if self.home.rehome() == Rehome::Moved {
            tracing::debug!(
                "millpond: the cluster's runtime shut down; its health probe moved to the \
                 caller's runtime"
            );
        }
    }

    /// A call on `backend` ended: `latency` for a success, `None` for a failure.
    pub(crate) fn report(&self, backend: usize, latency: Option<Duration>) {
        let Some(outliers) = &self.outliers else { return };
        let changes =
            outliers.lock().report(backend, latency, Instant::now(), &|i| self.is_down(i));
        self.apply(&changes);
    }

    /// Calls on `backend` its manager counted during one checkout.
    pub(crate) fn report_counts(&self, backend: usize, counts: super::outlier::Counts) {
        let Some(outliers) = &self.outliers else { return };
        let down = |i| self.is_down(i);
        let changes = outliers.lock().report_counts(backend, counts, Instant::now(), &down);
        self.apply(&changes);
    }

    /// Ends ejections whose time is up and compares the backends at the end of an interval.
    fn tick_outliers(&self) {
        let Some(outliers) = &self.outliers else { return };
        let changes = outliers.lock().tick(Instant::now(), &|i| self.is_down(i));
        self.apply(&changes);
    }

    fn is_down(&self, backend: usize) -> bool {
        self.members[backend].health.is_down()
    }

    fn apply(&self, changes: &Changes) {
        for &index in &changes.ejected {
            let member = &self.members[index];
            member.ejected.store(true, Ordering::Relaxed);
            tracing::warn!(backend = %member.name, "millpond: a backend is ejected as an outlier");
            // Callers waiting on its pool move on, as when it goes down.
            member.health.went_down.notify_waiters();
        }
        for &index in &changes.returned {
            let member = &self.members[index];
            member.ejected.store(false, Ordering::Relaxed);
            tracing::info!(backend = %member.name, "millpond: an ejected backend is back");
        }
    }

    /// The backend for the next call on `route`, skipping those out of rotation or `tried`.
    fn pick(&self, route: &Route, key: Option<u64>, tried: Tried) -> Option<usize> {
        let loads = RouteLoads { shared: self, route, tried };
        let mut usable = (0..route.members.len()).filter(|&p| loads.usable(p));
        if let Some(key) = key {
            // Rendezvous over the usable backends, the weighted ones first: a key moves only when
            // its own backend leaves.
            let score = |p: &usize| crate::balance::key_hash::score(key, route.members[*p] as u64);
            let weighted = usable.clone().filter(|&p| route.fallback & (1 << p) == 0);
            return weighted
                .max_by_key(score)
                .or_else(|| usable.max_by_key(score))
                .map(|p| route.members[p]);
        }
        usable.next()?;
        // The strategy may land on a backend out of rotation; each pick moves a rotating
        // strategy on, so a few tries find a usable one. A fixed pick falls to the least loaded.
        for _ in 0..2 * route.members.len() {
            let position = route.balancer.pick(&loads, None);
            if loads.usable(position) {
                return Some(route.members[position]);
            }
        }
        // The least loaded, weighted backends first: a backend weighted 0 is only the fallback,
        // even when a random strategy kept missing the one weighted backend left.
        let least = |weighted: bool| {
            (0..route.members.len())
                .filter(|&p| loads.usable(p) && (route.fallback & (1 << p) == 0) == weighted)
                .min_by_key(|&p| loads.load(p))
        };
        least(true).or_else(|| least(false)).map(|p| route.members[p])
    }

    /// Takes a connection from a backend of `route`, moving to the next when one fails.
    async fn acquire(
        self: &Arc<Self>,
        route: &Route,
        key: Option<u64>,
    ) -> Result<ClusterConn<M>, Error<M::Error>> {
        self.stay_alive();
        let mut tried = Tried::default();
        let mut last: Option<(String, Cause)> = None;
        while let Some(index) = self.pick(route, key, tried) {
            let member = &self.members[index];
            tried.add(index);
            let mut went_down = pin!(member.health.went_down.notified());
            went_down.as_mut().enable();
            if member.health.is_down() {
                continue;
            }
            // A failure of this get counts only if no creation succeeded while it ran.
            let since = member.health.epoch();
            // The pool's get, abandoned (cancel safe) if the backend leaves the rotation meanwhile.
            let mut get = pin!(member.pool.get());
            let attempt = std::future::poll_fn(|cx| {
                if let Poll::Ready(got) = get.as_mut().poll(cx) {
                    return Poll::Ready(Some(got));
                }
                went_down.as_mut().poll(cx).map(|()| None)
            })
            .await;
            match attempt {
                Some(Ok(pooled)) => return Ok(ClusterConn::new(pooled, Arc::clone(self), index)),
                Some(Err(error)) if is_backend_failure(&error) => {
                    // A creation that timed out was reported by the pool's creation task
                    // already (`CreateWatcher`); counting the get that waited on it too would
                    // make one timeout two.
                    let kind = match &error {
                        pool::Error::Timeout { phase: pool::TimeoutPhase::Create, .. } => None,
                        pool::Error::Timeout { .. } => Some(Failure::Timeout),
                        _ => Some(Failure::Down),
                    };
                    // The pool's own error, kept whole: it leads callers to the manager's error
                    // ("connection refused") with its type.
                    let cause: Cause = Arc::new(error);
                    if let Some(kind) = kind {
                        member.health.failed(Arc::clone(&cause), kind, since);
                    }
                    last = Some((member.name.clone(), cause));
                }
                // The backend is at its adaptive limit: busy, not down. Another may have room;
                // if none has, the caller hears this backend's refusal.
                Some(Err(error @ pool::Error::Limited(_))) => {
                    let cause: Cause = Arc::new(error);
                    last = Some((member.name.clone(), cause));
                }
                Some(Err(error)) => {
                    return Err(Error::Pool { backend: member.name.clone(), error });
                }
                None => {
                    last = member.health.last_error().map(|cause| (member.name.clone(), cause));
                }
            }
            self.failovers.fetch_add(1, Ordering::Relaxed);
        }
        if last.is_none() {
            // Nothing was tried: every backend of the route is out; say why the last one left.
            last = route.members.iter().rev().find_map(|&index| {
                let member = &self.members[index];
                member.health.last_error().map(|cause| (member.name.clone(), cause))
            });
        }
        Err(Error::Unavailable { route: route.label, last })
    }
}

/// Whether a pool's error says its backend is unreachable (so another should be tried), rather
/// than busy or closed.
fn is_backend_failure<E>(error: &pool::Error<E>) -> bool {
    match error {
        pool::Error::Unavailable(_) => true,
        pool::Error::Timeout { phase, .. } => *phase != pool::TimeoutPhase::Wait,
        _ => false,
    }
}

impl<M: Manager> Cluster<M> {
    /// Starts configuring a cluster.
    pub fn builder() -> ClusterBuilder<M> {
        ClusterBuilder::default()
    }

    /// A connection from any backend in rotation.
    ///
    /// # Errors
    ///
    /// [`Error::Unavailable`] with the last real cause when no backend could serve the call;
    /// [`Error::Pool`] when a healthy backend's pool failed it (its acquire timeout, or closed).
    ///
    /// # Cancel safety
    ///
    /// Cancel safe, as [`Pool::get`].
    pub async fn get(&self) -> Result<ClusterConn<M>, Error<M::Error>> {
        self.shared.acquire(&self.shared.any, None).await
    }

    /// A connection from the backend that owns `key` (a user or tenant id), among those in
    /// rotation. Rendezvous hashing: a key moves only when its backend leaves the rotation, and
    /// comes back with it. With [`ClusterBuilder::rate_limit_per_key`](super::ClusterBuilder::rate_limit_per_key),
    /// a key over its limit is refused before any backend is asked.
    ///
    /// # Errors
    ///
    /// As [`get`](Self::get), and [`Error::RateLimited`] for a key over its limit.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe, as [`get`](Self::get).
    pub async fn get_keyed(&self, key: u64) -> Result<ClusterConn<M>, Error<M::Error>> {
        if let Some(buckets) = &self.shared.per_key {
            buckets.try_take(key).map_err(|retry_in| Error::RateLimited { retry_in })?;
        }
        self.shared.acquire(&self.shared.any, Some(key)).await
    }

    /// A connection from a primary, for writes. With every primary out of rotation this fails at
    /// once, with the cause.
    ///
    /// # Errors
    ///
    /// As [`get`](Self::get).
    ///
    /// # Cancel safety
    ///
    /// Cancel safe, as [`get`](Self::get).
    pub async fn get_primary(&self) -> Result<ClusterConn<M>, Error<M::Error>> {
        self.shared.acquire(&self.shared.primaries, None).await
    }

    /// A connection from a replica, for reads; from a primary when no replica is in rotation and
    /// the cluster allows it ([`reads_fall_back_to_primary`](ClusterBuilder::reads_fall_back_to_primary)).
    ///
    /// # Errors
    ///
    /// As [`get`](Self::get).
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: each of its (at most two) checkouts is, as [`get`](Self::get).
    pub async fn get_replica(&self) -> Result<ClusterConn<M>, Error<M::Error>> {
        let shared = &self.shared;
        match shared.acquire(&shared.replicas, None).await {
            Err(Error::Unavailable { .. }) if shared.reads_fall_back_to_primary => {
                shared.acquire(&shared.primaries, None).await
            }
            other => other,
        }
    }

    /// Every backend's health and pool status, and the totals.
    pub fn status(&self) -> ClusterStatus {
        let backends: Vec<BackendStatus> = self
            .shared
            .members
            .iter()
            .enumerate()
            .map(|(index, member)| BackendStatus {
                name: member.name.clone(),
                role: member.role,
                in_rotation: !member.health.is_down() && !member.ejected.load(Ordering::Relaxed),
                outlier_ejected: member.ejected.load(Ordering::Relaxed),
                outlier_ejections: self
                    .shared
                    .outliers
                    .as_ref()
                    .map_or(0, |outliers| outliers.lock().ejections(index)),
                in_use: member.in_use.load(Ordering::Relaxed),
                served: member.served.load(Ordering::Relaxed),
                ejections: member.health.ejections.load(Ordering::Relaxed),
                readmissions: member.health.readmissions.load(Ordering::Relaxed),
                last_error: member.health.last_error().map(|cause| cause.to_string()),
                pool: member.pool.status(),
            })
            .collect();
        ClusterStatus {
            in_rotation: backends.iter().filter(|backend| backend.in_rotation).count(),
            in_use: backends.iter().map(|backend| backend.in_use).sum(),
            served: backends.iter().map(|backend| backend.served).sum(),
            failovers: self.shared.failovers.load(Ordering::Relaxed),
            backends,
        }
    }

    /// Each backend's pool metrics, by name.
    pub fn metrics(&self) -> Vec<(String, pool::Metrics)> {
        self.shared
            .members
            .iter()
            .map(|member| (member.name.clone(), member.pool.metrics()))
            .collect()
    }

    /// The cluster's name, set with [`ClusterBuilder::name`] (`"millpond"` by default).
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// Sends the cluster's figures to the installed [`metrics`] recorder (the `metrics`
    /// feature), each with the attribute `millpond.cluster.name` set to [`name`](Self::name),
    /// and then each backend pool's figures, as
    /// [`Pool::publish_metrics`](crate::pool::Pool::publish_metrics) does (a backend's pool is
    /// named after the backend unless its builder named it).
    ///
    /// OpenTelemetry has no names for clusters; these follow the database-client style. The
    /// per-backend figures also carry `millpond.cluster.backend` (the backend's name) and
    /// `millpond.cluster.backend.role` (`primary` or `replica`):
    ///
    /// | name | kind | from [`status`](Self::status) |
    /// |---|---|---|
    /// | `millpond.cluster.in_rotation` | gauge | [`ClusterStatus::in_rotation`] |
    /// | `millpond.cluster.failovers` | counter | [`ClusterStatus::failovers`] |
    /// | `millpond.cluster.backend.in_rotation` | gauge, 1 or 0, per backend | [`BackendStatus::in_rotation`] |
    /// | `millpond.cluster.backend.in_use` | gauge, per backend | [`BackendStatus::in_use`] |
    /// | `millpond.cluster.backend.checkouts` | counter, per backend | [`BackendStatus::served`] |
    /// | `millpond.cluster.backend.ejections` | counter, per backend | [`BackendStatus::ejections`] |
    /// | `millpond.cluster.backend.readmissions` | counter, per backend | [`BackendStatus::readmissions`] |
    ///
    /// As for pools, nothing is recorded per call: a publish sets the gauges and sends the
    /// counters only what changed since the previous publish. Figures reach the recorder only
    /// when this runs.
    ///
    /// # Examples
    ///
    /// ```
    /// # use millpond::cluster::{Backend, Cluster};
    /// # use millpond::pool::{Manager, Pool};
    /// # struct Conns;
    /// # impl Manager for Conns {
    /// #     type Resource = ();
    /// #     type Error = std::io::Error;
    /// #     async fn create(&self) -> Result<(), std::io::Error> { Ok(()) }
    /// # }
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let cluster = Cluster::builder()
    ///     .name("orders")
    ///     .backend(Backend::primary("db-1", Pool::builder(Conns)))
    ///     .build()?;
    /// drop(cluster.get().await?);
    /// cluster.publish_metrics();
    /// # Ok(())
    /// # }
    /// ```
    #[cfg(feature = "metrics")]
    pub fn publish_metrics(&self) {
        super::publish::publish(&self.shared, &self.status());
    }
}

/// The health probe: every interval, tries each backend out of rotation once; a connection
/// handed out (an idle one that passes its check, or a new one) brings it back. Ends with the
/// cluster.
pub(crate) async fn probe<M: Manager>(cluster: Weak<Shared<M>>) {
    loop {
        let interval = match cluster.upgrade() {
            Some(shared) => shared.probe_interval,
            None => return,
        };
        tokio::time::sleep(interval).await;
        let Some(shared) = cluster.upgrade() else { return };
        shared.tick_outliers();
        for member in shared.members.iter().filter(|member| member.health.is_down()) {
            if let Ok(conn) = member.pool.get_timeout(interval).await {
                drop(conn);
                member.health.succeeded();
            }
        }
    }
}
