//! [`ClusterBuilder`] and [`Backend`]: the backends of a cluster, their roles, and how calls are
//! spread and moved between them.

use std::time::Duration;

use tokio::runtime::Handle;

use super::api::{Cluster, Member, Route, Shared};
use super::health::{Health, Watch};
use crate::balance::Balance;
use crate::build_error::BuildError;
use crate::home::Home;
use crate::pool::{self, Manager};
use crate::sync::{Arc, AtomicU64};

/// The most backends a cluster takes (a call keeps the backends it tried in one word).
pub const MAX_BACKENDS: usize = 64;

// A route keeps the backends it tried, and its fallbacks, in one `u64` bit set.
const _: () = assert!(MAX_BACKENDS <= 64);

/// What a backend is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// Takes writes: [`Cluster::get_primary`] goes here.
    Primary,
    /// Serves reads: [`Cluster::get_replica`] goes here. Equal backends (shards of a read-only
    /// set, identical services) are all replicas.
    Replica,
}

impl Role {
    /// The role as the `millpond.cluster.backend.role` metric attribute writes it.
    #[cfg_attr(not(feature = "metrics"), allow(dead_code))]
    pub(crate) fn label(self) -> &'static str {
        match self {
            Self::Primary => "primary",
            Self::Replica => "replica",
        }
    }
}

/// One backend of a cluster: a name for logs and status, a role, and its pool's configuration.
#[must_use = "a backend does nothing until added to a cluster"]
pub struct Backend<M: Manager> {
    pub(crate) name: String,
    pub(crate) role: Role,
    pub(crate) pool: pool::Builder<M>,
}

impl<M: Manager> Backend<M> {
    /// A primary, whose connections come from a pool built by `pool`.
    pub fn primary(name: impl Into<String>, pool: pool::Builder<M>) -> Self {
        Self { name: name.into(), role: Role::Primary, pool }
    }

    /// A replica, whose connections come from a pool built by `pool`.
    pub fn replica(name: impl Into<String>, pool: pool::Builder<M>) -> Self {
        Self { name: name.into(), role: Role::Replica, pool }
    }
}

/// Configures and builds a [`Cluster`]; start from [`Cluster::builder`].
///
/// | setting | default |
/// |---|---|
/// | [`balance`](Self::balance) | [`Balance::RoundRobin`] |
/// | [`failures_to_eject`](Self::failures_to_eject) | 1 |
/// | [`probe_interval`](Self::probe_interval) | 1 s |
/// | [`reads_fall_back_to_primary`](Self::reads_fall_back_to_primary) | on |
#[must_use = "a builder does nothing until `build()` is called"]
pub struct ClusterBuilder<M: Manager> {
    name: String,
    backends: Vec<Backend<M>>,
    balance: Balance,
    failures_to_eject: u32,
    probe_interval: Duration,
    reads_fall_back_to_primary: bool,
    rate_per_key: Option<(f64, u32)>,
    outliers: Option<super::OutlierDetection>,
    /// Pool settings from a configuration file, by backend name, applied at `build()`.
    #[cfg(feature = "serde")]
    configured: std::collections::BTreeMap<String, crate::config::PoolConfig>,
    /// A configuration file's setting that [`apply`](Self::apply) could not take, returned by
    /// `build()`.
    #[cfg(feature = "serde")]
    rejected: Option<BuildError>,
}

impl<M: Manager> Default for ClusterBuilder<M> {
    fn default() -> Self {
        Self {
            name: String::from("millpond"),
            backends: Vec::new(),
            balance: Balance::RoundRobin,
            failures_to_eject: 1,
            probe_interval: Duration::from_secs(1),
            reads_fall_back_to_primary: true,
            rate_per_key: None,
            outliers: None,
            #[cfg(feature = "serde")]
            configured: std::collections::BTreeMap::new(),
            #[cfg(feature = "serde")]
            rejected: None,
        }
    }
}

impl<M: Manager> ClusterBuilder<M> {
    /// The cluster's name (default `"millpond"`; must not be empty): the `millpond.cluster.name`
    /// attribute of its published metrics, and what [`Cluster::name`] returns. A backend's pool
    /// left with the default pool name takes the backend's name, so each backend's
    /// `db.client.connection.*` figures carry a name of their own.
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
    /// assert_eq!(cluster.name(), "orders");
    /// # Ok(())
    /// # }
    /// ```
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Limits how often each key may check out through
    /// [`Cluster::get_keyed`](super::Cluster::get_keyed), across all backends: `per_second` on
    /// average with bursts of up to `burst` (per user, per tenant, per source address). A key
    /// over its limit gets [`Error::RateLimited`](super::Error::RateLimited) at once. Off by
    /// default.
    pub fn rate_limit_per_key(mut self, per_second: f64, burst: u32) -> Self {
        self.rate_per_key = Some((per_second, burst));
        self
    }

    /// Ejects backends for how their calls go, as reported through
    /// [`ClusterConn::report_success`](super::ClusterConn::report_success) and
    /// [`report_failure`](super::ClusterConn::report_failure): a run of failures, a success
    /// rate far below the others', a latency far above theirs. See [`OutlierDetection`] for the
    /// rules and their defaults (Envoy's). Off by default: without it only failed connection
    /// attempts take a backend out.
    ///
    /// [`OutlierDetection`]: super::OutlierDetection
    pub fn outlier_detection(mut self, detection: super::OutlierDetection) -> Self {
        self.outliers = Some(detection);
        self
    }

    /// Adds a backend.
    pub fn backend(mut self, backend: Backend<M>) -> Self {
        self.backends.push(backend);
        self
    }

    /// How calls are spread over the backends in rotation. Weights, for the weighted strategies,
    /// are one per backend in the order they were added. [`Balance::LeastLoaded`] and
    /// [`Balance::PowerOfTwo`] count connections in use. Keyed calls
    /// ([`Cluster::get_keyed`]) always go by key.
    ///
    /// Weights compare the backends one kind of call may use: a backend weighted 0 gets no
    /// [`get`](Cluster::get) or [`get_keyed`](Cluster::get_keyed) while another backend weighted
    /// above 0 is in rotation (it is the fallback when they are all out), and a role whose
    /// backends are all weighted 0 spreads its calls evenly. `WeightedRoundRobin(vec![0, 1, 1])` over a primary and two replicas keeps
    /// general reads off the primary; [`get_primary`](Cluster::get_primary) still goes to it.
    pub fn balance(mut self, balance: Balance) -> Self {
        self.balance = balance;
        self
    }

    /// Consecutive failed creations that take a backend out of rotation (1 by default: at once).
    /// A creation that hits its create timeout takes it out at once whatever this says.
    pub fn failures_to_eject(mut self, failures: u32) -> Self {
        self.failures_to_eject = failures;
        self
    }

    /// How often a backend out of rotation is probed, and how long it stays out at least.
    pub fn probe_interval(mut self, interval: Duration) -> Self {
        self.probe_interval = interval;
        self
    }

    /// Whether [`Cluster::get_replica`] may use a primary when no replica is in rotation.
    pub fn reads_fall_back_to_primary(mut self, enabled: bool) -> Self {
        self.reads_fall_back_to_primary = enabled;
        self
    }

    /// Sets every cluster setting that `config` holds, and leaves the others as they are; setters
    /// called after it override it. Its `backends` sections are applied at
    /// [`build`](Self::build) over the pool builder of the backend of that name (whenever the
    /// backend is added), and a section whose name no backend has makes `build` fail naming
    /// `backends`.
    ///
    /// `build` checks the values as it does those of the setters, and names a backend's field by
    /// its path (`backends.replica1.max_size`).
    ///
    /// # Examples
    ///
    /// ```
    /// # use millpond::pool::{Manager, Pool};
    /// use millpond::cluster::{Backend, Cluster};
    /// use millpond::config::ClusterConfig;
    /// # #[derive(Clone)]
    /// # struct Conns;
    /// # impl Manager for Conns {
    /// #     type Resource = ();
    /// #     type Error = std::io::Error;
    /// #     async fn create(&self) -> Result<(), std::io::Error> { Ok(()) }
    /// # }
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let config: ClusterConfig = toml::from_str("[backends.replica1]\nmax_size = 0")?;
    /// let err = Cluster::builder()
    ///     .apply(&config)
    ///     .backend(Backend::primary("main", Pool::builder(Conns)))
    ///     .backend(Backend::replica("replica1", Pool::builder(Conns)))
    ///     .build()
    ///     .unwrap_err();
    /// assert_eq!(err.path().as_deref(), Some("backends.replica1.max_size"));
    /// # Ok(())
    /// # }
    /// ```
    #[cfg(feature = "serde")]
    pub fn apply(mut self, config: &crate::config::ClusterConfig) -> Self {
        let crate::config::ClusterConfig {
            name,
            balance,
            weights,
            failures_to_eject,
            probe_interval,
            reads_fall_back_to_primary,
            rate_limit_per_second,
            rate_limit_burst,
            outlier_detection,
            backends,
        } = config;
        match crate::config::configured_balance(&self.balance, *balance, weights.as_ref()) {
            Ok(balance) => self.balance = balance,
            Err(rejected) => {
                self.rejected.get_or_insert(rejected);
            }
        }
        if let Some(name) = name {
            self.name.clone_from(name);
        }
        if let Some(failures) = *failures_to_eject {
            self.failures_to_eject = failures;
        }
        if let Some(interval) = *probe_interval {
            self.probe_interval = interval;
        }
        if let Some(enabled) = *reads_fall_back_to_primary {
            self.reads_fall_back_to_primary = enabled;
        }
        if rate_limit_per_second.is_some() || rate_limit_burst.is_some() {
            // A half-given pair takes its other half from the code, or 0, which `build()`
            // refuses naming the field.
            let (per_second, burst) = self.rate_per_key.unwrap_or((0.0, 0));
            self.rate_per_key = Some((
                rate_limit_per_second.unwrap_or(per_second),
                rate_limit_burst.unwrap_or(burst),
            ));
        }
        if let Some(outliers) = outlier_detection {
            let current = self.outliers.take().unwrap_or_default();
            self.outliers = Some(current.apply(outliers));
        }
        for (name, pool) in backends {
            self.configured.insert(name.clone(), pool.clone());
        }
        self
    }

    /// Checks the configuration, builds every backend's pool and starts the health probe.
    ///
    /// The probe runs on the tokio runtime current at this call, as the backends' pools do. If
    /// that runtime shuts down while the cluster lives on (a `static` cluster shared by
    /// `#[tokio::test]`s), the next call through the cluster starts the probe again on its own
    /// runtime, and the pools move as [`pool::Builder::build`] says. A creation dropped by the
    /// shutdown does not count against its backend; only the pool's create timeout does.
    ///
    /// # Errors
    ///
    /// A [`BuildError`] naming the field: `backends` when there are none, more than
    /// [`MAX_BACKENDS`], or two share a name,
    /// `balance` when weights are not one per backend or are all zero,
    /// `failures_to_eject` or `probe_interval` when zero; a backend pool's own error, said of
    /// that backend, with the [`path`](BuildError::path) `backends.<name>.<field>`; or no tokio
    /// runtime. With the `serde` feature, also `backends` when a configuration given to `apply`
    /// names a backend the cluster does not have, and `weights` when it gives
    /// weights to a strategy that takes none.
    #[cfg_attr(not(feature = "serde"), allow(unused_mut))]
    pub fn build(mut self) -> Result<Cluster<M>, BuildError> {
        #[cfg(feature = "serde")]
        self.apply_configured_backends()?;
        if self.name.is_empty() {
            return Err(BuildError::invalid("name", &self.name, "must not be empty"));
        }
        if self.backends.is_empty() {
            return Err(BuildError::invalid("backends", 0, "a cluster needs at least one backend"));
        }
        if self.backends.len() > MAX_BACKENDS {
            return Err(BuildError::invalid(
                "backends",
                self.backends.len(),
                format!("a cluster has at most {MAX_BACKENDS} backends"),
            ));
        }
        for (index, backend) in self.backends.iter().enumerate() {
            if self.backends[..index].iter().any(|other| other.name == backend.name) {
                return Err(BuildError::invalid(
                    "backends",
                    &backend.name,
                    "two backends have this name",
                ));
            }
        }
        if self.failures_to_eject == 0 {
            return Err(BuildError::invalid("failures_to_eject", 0, "must be at least 1"));
        }
        if self.probe_interval.is_zero() {
            return Err(BuildError::invalid(
                "probe_interval",
                self.probe_interval,
                "must be above 0",
            ));
        }
        if let Balance::WeightedRoundRobin(weights) | Balance::WeightedRandom(weights) =
            &self.balance
        {
            if weights.len() != self.backends.len() {
                return Err(BuildError::invalid(
                    "balance",
                    weights,
                    format!(
                        "needs one weight per backend: {} weights for {} backends",
                        weights.len(),
                        self.backends.len()
                    ),
                ));
            }
            if weights.iter().all(|weight| *weight == 0) {
                return Err(BuildError::invalid(
                    "balance",
                    weights,
                    "at least one weight must be above 0",
                ));
            }
        }
        if let Some(detection) = &self.outliers {
            detection.validate()?;
        }
        let per_key = match self.rate_per_key {
            Some((per_second, burst)) => Some(crate::rate::KeyedBuckets::new(
                crate::rate::Shape::new(per_second, burst, "rate_limit_per_key")?,
            )),
            None => None,
        };
        let runtime = Handle::try_current().map_err(|_| BuildError::no_runtime())?;
        let roles: Vec<Role> = self.backends.iter().map(|backend| backend.role).collect();
        let all: Vec<usize> = (0..roles.len()).collect();
        let of_role = |role| all.iter().copied().filter(|&i| roles[i] == role).collect::<Vec<_>>();
        let any = Route::new("any", all.clone(), &self.balance)?;
        let primaries = Route::new("primary", of_role(Role::Primary), &self.balance)?;
        let replicas = Route::new("replica", of_role(Role::Replica), &self.balance)?;

        let members_count = self.backends.len();
        let mut members = Vec::with_capacity(self.backends.len());
        for backend in self.backends {
            let health = Arc::new(Health::new(self.failures_to_eject, self.probe_interval));
            let watched = Arc::clone(&health);
            let pool = backend
                .pool
                .default_name(&backend.name)
                .map_manager(|inner| Watch { inner, health: Arc::clone(&watched) })
                .watch_creations(watched)
                .build()
                .map_err(|err| {
                    err.nested_in(backend.name.clone())
                        .nested_in("backends")
                        .within(format!("backend `{}`", backend.name))
                })?;
            members.push(Member {
                name: backend.name,
                role: backend.role,
                pool,
                health,
                ejected: crate::sync::AtomicBool::new(false),
                in_use: crate::sync::AtomicUsize::new(0),
                served: AtomicU64::new(0),
            });
        }
        let shared = Arc::new(Shared {
            name: self.name,
            members,
            any,
            primaries,
            replicas,
            reads_fall_back_to_primary: self.reads_fall_back_to_primary,
            probe_interval: self.probe_interval,
            failovers: AtomicU64::new(0),
            per_key,
            outliers: self.outliers.map(|detection| {
                crate::sync::Mutex::new(super::outlier::Outliers::new(
                    detection,
                    members_count,
                    tokio::time::Instant::now(),
                ))
            }),
            home: Home::new(runtime),
            #[cfg(feature = "metrics")]
            published: crate::sync::Mutex::new(super::publish::Published::default()),
        });
        shared.launch_probe();
        Ok(Cluster { shared })
    }
}

#[cfg(feature = "serde")]
impl<M: Manager> ClusterBuilder<M> {
    /// Applies the configured pool settings to the backends they name.
    fn apply_configured_backends(&mut self) -> Result<(), BuildError> {
        if let Some(rejected) = self.rejected.take() {
            return Err(rejected);
        }
        let configured = std::mem::take(&mut self.configured);
        for name in configured.keys() {
            if !self.backends.iter().any(|backend| &backend.name == name) {
                return Err(BuildError::invalid(
                    "backends",
                    name,
                    "configured, but no backend of the cluster has this name",
                ));
            }
        }
        let backends = std::mem::take(&mut self.backends);
        self.backends = backends
            .into_iter()
            .map(|mut backend| {
                if let Some(config) = configured.get(&backend.name) {
                    backend.pool = backend.pool.apply(config);
                }
                backend
            })
            .collect();
        Ok(())
    }
}
