//! The `metrics` feature: a publish sends every figure under its OpenTelemetry name with the pool's
//! name, gauges equal `status()`, and the counter and histograms receive each event once.
//! Worker pools publish their stats the same way. A recorder local to each test catches what a
//! publish sends.
#![cfg(feature = "metrics")]
// Test code, outside the library's loom facade.
#![allow(clippy::disallowed_types)]

mod support;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use metrics::{
    Counter, CounterFn, Gauge, GaugeFn, Histogram, HistogramFn, Key, KeyName, Metadata, Recorder,
    SharedString, Unit,
};
use millpond::cluster::{Backend, Cluster};
use millpond::exec::WorkerPool;
use millpond::pool::{Pool, TimeoutPhase};
use support::TestManager;

const POOL: &str = "db.client.connection.pool.name";
const STATE: &str = "db.client.connection.state";

/// Everything a recorder was sent, by `name{label=value,...}` with the labels sorted.
#[derive(Default)]
struct Sent {
    counters: BTreeMap<String, u64>,
    gauges: BTreeMap<String, f64>,
    histograms: BTreeMap<String, Vec<f64>>,
}

#[derive(Clone, Default)]
struct Recording(Arc<Mutex<Sent>>);

struct Handle {
    key: String,
    sent: Arc<Mutex<Sent>>,
}

fn render(key: &Key) -> String {
    let mut labels: Vec<String> =
        key.labels().map(|label| format!("{}={}", label.key(), label.value())).collect();
    labels.sort();
    format!("{}{{{}}}", key.name(), labels.join(","))
}

/// The key under which `Recording` files `name` with the pool name `pool` and maybe a state.
fn key(name: &str, pool: &str, state: Option<&str>) -> String {
    let mut labels = vec![format!("{POOL}={pool}")];
    if let Some(state) = state {
        labels.push(format!("{STATE}={state}"));
    }
    labels.sort();
    format!("{name}{{{}}}", labels.join(","))
}

impl Recording {
    fn handle(&self, key: &Key) -> Arc<Handle> {
        Arc::new(Handle { key: render(key), sent: Arc::clone(&self.0) })
    }

    fn publish(&self, pool: &Pool<TestManager>) {
        metrics::with_local_recorder(self, || pool.publish_metrics());
    }

    fn counter(&self, key: &str) -> Option<u64> {
        self.0.lock().unwrap().counters.get(key).copied()
    }

    fn gauge(&self, key: &str) -> Option<f64> {
        self.0.lock().unwrap().gauges.get(key).copied()
    }

    fn histogram(&self, key: &str) -> Vec<f64> {
        self.0.lock().unwrap().histograms.get(key).cloned().unwrap_or_default()
    }

    fn names(&self) -> Vec<String> {
        let sent = self.0.lock().unwrap();
        let keys = sent.counters.keys().chain(sent.gauges.keys()).chain(sent.histograms.keys());
        keys.cloned().collect()
    }
}

impl Recorder for Recording {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}

    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        let handle = self.handle(key);
        self.0.lock().unwrap().counters.entry(handle.key.clone()).or_default();
        Counter::from_arc(handle)
    }

    fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::from_arc(self.handle(key))
    }

    fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
        let handle = self.handle(key);
        self.0.lock().unwrap().histograms.entry(handle.key.clone()).or_default();
        Histogram::from_arc(handle)
    }
}

impl CounterFn for Handle {
    fn increment(&self, value: u64) {
        *self.sent.lock().unwrap().counters.entry(self.key.clone()).or_default() += value;
    }

    fn absolute(&self, value: u64) {
        self.sent.lock().unwrap().counters.insert(self.key.clone(), value);
    }
}

impl GaugeFn for Handle {
    fn increment(&self, value: f64) {
        *self.sent.lock().unwrap().gauges.entry(self.key.clone()).or_default() += value;
    }

    fn decrement(&self, value: f64) {
        *self.sent.lock().unwrap().gauges.entry(self.key.clone()).or_default() -= value;
    }

    fn set(&self, value: f64) {
        self.sent.lock().unwrap().gauges.insert(self.key.clone(), value);
    }
}

impl HistogramFn for Handle {
    fn record(&self, value: f64) {
        self.sent.lock().unwrap().histograms.entry(self.key.clone()).or_default().push(value);
    }
}

/// One checkout that waited `wait` for a held resource, and two that did not.
async fn checkouts_with_one_wait(pool: &Pool<TestManager>, wait: Duration) {
    drop(pool.get().await.unwrap());
    let held = pool.get().await.unwrap();
    let waiter = tokio::spawn({
        let pool = pool.clone();
        async move { drop(pool.get().await.unwrap()) }
    });
    tokio::time::sleep(wait).await;
    drop(held);
    waiter.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn every_figure_is_published_under_its_open_telemetry_name_with_the_pool_name() {
    let (manager, _probe) = TestManager::new();
    let pool = Pool::builder(manager).name("orders-db").max_size(1).build().unwrap();
    checkouts_with_one_wait(&pool, Duration::from_secs(2)).await;
    let recording = Recording::default();
    recording.publish(&pool);

    let mut expected: Vec<String> = [
        "db.client.connection.idle.max",
        "db.client.connection.idle.min",
        "db.client.connection.max",
        "db.client.connection.pending_requests",
        "db.client.connection.timeouts",
        "db.client.connection.create_time",
        "db.client.connection.wait_time",
        "db.client.connection.use_time",
    ]
    .iter()
    .map(|name| key(name, "orders-db", None))
    .collect();
    expected.push(key("db.client.connection.count", "orders-db", Some("idle")));
    expected.push(key("db.client.connection.count", "orders-db", Some("used")));
    expected.sort();
    let mut names = recording.names();
    names.sort();
    assert_eq!(names, expected);

    // The first checkout waited for the pool's first creation, the waiter 2 s on the paused
    // clock for a return; the value sent for it is its bucket's middle.
    let waits = recording.histogram(&key("db.client.connection.wait_time", "orders-db", None));
    assert_eq!(waits.len() as u64, pool.metrics().wait_time.count());
    assert_eq!(waits.len(), 2);
    assert!(waits.iter().any(|wait| (1.5..=2.5).contains(wait)), "{waits:?}");
}

#[tokio::test]
async fn an_unnamed_pool_is_published_as_millpond_and_an_empty_name_is_refused() {
    let (manager, _probe) = TestManager::new();
    let pool = Pool::builder(manager).build().unwrap();
    assert_eq!(pool.name(), "millpond");
    let recording = Recording::default();
    recording.publish(&pool);
    assert_eq!(recording.gauge(&key("db.client.connection.max", "millpond", None)), Some(10.0));

    let (manager, _probe) = TestManager::new();
    let err = Pool::builder(manager).name("").build().unwrap_err();
    assert_eq!(err.field(), Some("name"));
}

#[tokio::test(start_paused = true)]
async fn gauges_equal_status_and_the_configured_limits() {
    let (manager, _probe) = TestManager::new();
    let pool = Pool::builder(manager)
        .name("orders-db")
        .max_size(4)
        .max_idle(3)
        .min_idle(1)
        .acquire_timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let first = pool.get().await.unwrap();
    let second = pool.get().await.unwrap();
    let third = pool.get().await.unwrap();
    drop(third);
    let status = pool.status();
    let recording = Recording::default();
    recording.publish(&pool);

    let gauge = |name: &str, state| recording.gauge(&key(name, "orders-db", state));
    assert_eq!(gauge("db.client.connection.count", Some("idle")), Some(status.idle as f64));
    assert_eq!(gauge("db.client.connection.count", Some("used")), Some(status.in_use as f64));
    assert_eq!(status.in_use, 2, "{status:?}");
    assert_eq!(gauge("db.client.connection.max", None), Some(4.0));
    assert_eq!(gauge("db.client.connection.idle.max", None), Some(3.0));
    assert_eq!(gauge("db.client.connection.idle.min", None), Some(1.0));
    assert_eq!(gauge("db.client.connection.pending_requests", None), Some(0.0));

    // A queued caller shows as a pending request; a resize moves `max` and `idle.max`.
    pool.resize(2).unwrap();
    let waiter = tokio::spawn({
        let pool = pool.clone();
        async move { drop(pool.get().await) }
    });
    tokio::task::yield_now().await;
    assert_eq!(pool.status().waiters, 1);
    recording.publish(&pool);
    assert_eq!(gauge("db.client.connection.pending_requests", None), Some(1.0));
    assert_eq!(gauge("db.client.connection.max", None), Some(2.0));
    assert_eq!(gauge("db.client.connection.idle.max", None), Some(2.0));
    drop((first, second));
    waiter.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn the_timeouts_counter_counts_a_real_timeout() {
    let (manager, _probe) = TestManager::new();
    let pool = Pool::builder(manager).name("orders-db").max_size(1).build().unwrap();
    let held = pool.get().await.unwrap();
    let err = pool.get_timeout(Duration::from_millis(250)).await.unwrap_err();
    assert_eq!(err.timeout_phase(), Some(TimeoutPhase::Wait));
    let recording = Recording::default();
    recording.publish(&pool);
    let timeouts = key("db.client.connection.timeouts", "orders-db", None);
    assert_eq!(recording.counter(&timeouts), Some(1));

    let _ = pool.get_timeout(Duration::from_millis(250)).await.unwrap_err();
    recording.publish(&pool);
    assert_eq!(recording.counter(&timeouts), Some(2), "only the new timeout is added");
    drop(held);
}

#[tokio::test(start_paused = true)]
async fn histogram_counts_match_the_checkouts_and_a_quiet_publish_adds_nothing() {
    let (manager, probe) = TestManager::new();
    let pool = Pool::builder(manager).name("orders-db").max_size(1).build().unwrap();
    for _ in 0..5 {
        drop(pool.get().await.unwrap());
    }
    checkouts_with_one_wait(&pool, Duration::from_millis(40)).await;
    let metrics = pool.metrics();
    assert_eq!(metrics.hold_time.count(), 8);

    let recording = Recording::default();
    recording.publish(&pool);
    let histogram = |name: &str| recording.histogram(&key(name, "orders-db", None));
    assert_eq!(histogram("db.client.connection.use_time").len(), 8, "one value per checkout");
    // The first checkout waited for the first creation, the other for a return.
    assert_eq!(metrics.gets_waited, 2);
    assert_eq!(histogram("db.client.connection.wait_time").len(), 2);
    assert_eq!(histogram("db.client.connection.create_time").len(), probe.created());
    assert_eq!(probe.created(), 1);

    recording.publish(&pool);
    assert_eq!(histogram("db.client.connection.use_time").len(), 8, "nothing new, nothing sent");
    assert_eq!(histogram("db.client.connection.wait_time").len(), 2);
    assert_eq!(histogram("db.client.connection.create_time").len(), 1);
    let timeouts = key("db.client.connection.timeouts", "orders-db", None);
    assert_eq!(recording.counter(&timeouts), Some(0));

    drop(pool.get().await.unwrap());
    recording.publish(&pool);
    assert_eq!(histogram("db.client.connection.use_time").len(), 9, "just the new checkout");
}

/// The key under which `Recording` files a worker pool's figure `name`.
fn worker_key(name: &str, pool: &str) -> String {
    format!("millpond.worker_pool.{name}{{millpond.worker_pool.name={pool}}}")
}

#[tokio::test(start_paused = true)]
async fn a_worker_pool_publishes_its_stats_and_a_quiet_publish_adds_nothing() {
    let workers =
        WorkerPool::builder().workers(1).rate_limit(10.0, 2).name("thumbnails").build().unwrap();
    assert_eq!(workers.name(), "thumbnails");
    let first = workers.try_submit(async { 1 }).unwrap();
    let second = workers.try_submit(async { 2 }).unwrap();
    assert!(workers.try_submit(async { 3 }).unwrap_err().is_rate_limited());
    assert_eq!(first.await.unwrap() + second.await.unwrap(), 3);
    let stats = workers.stats();

    let recording = Recording::default();
    metrics::with_local_recorder(&recording, || workers.publish_metrics());
    let key = |name| worker_key(name, "thumbnails");
    assert_eq!(recording.gauge(&key("workers")), Some(stats.workers as f64));
    assert_eq!(recording.gauge(&key("busy")), Some(stats.busy as f64));
    assert_eq!(recording.gauge(&key("idle")), Some(stats.idle as f64));
    assert_eq!(recording.gauge(&key("queued")), Some(0.0));
    assert_eq!(recording.counter(&key("completed")), Some(2));
    assert_eq!(recording.counter(&key("rejected")), Some(1));
    assert_eq!(recording.counter(&key("panicked")), Some(0));
    assert_eq!(recording.counter(&key("shed")), Some(0));
    let waits = recording.histogram(&key("queue_wait"));
    assert_eq!(waits.len() as u64, stats.queue_wait.count());
    assert_eq!(waits.len(), 2, "one value per task started");

    metrics::with_local_recorder(&recording, || workers.publish_metrics());
    assert_eq!(recording.counter(&key("completed")), Some(2), "nothing new, nothing sent");
    assert_eq!(recording.counter(&key("rejected")), Some(1));
    assert_eq!(recording.histogram(&key("queue_wait")).len(), 2);
}

/// The key under which `Recording` files a cluster's figure `name`, of the whole cluster or of
/// one backend (`Some((backend, role))`).
fn cluster_key(name: &str, cluster: &str, backend: Option<(&str, &str)>) -> String {
    let mut labels = vec![format!("millpond.cluster.name={cluster}")];
    if let Some((backend, role)) = backend {
        labels.push(format!("millpond.cluster.backend={backend}"));
        labels.push(format!("millpond.cluster.backend.role={role}"));
    }
    labels.sort();
    format!("millpond.cluster.{name}{{{}}}", labels.join(","))
}

#[tokio::test(start_paused = true)]
async fn a_cluster_publishes_its_backends_and_their_pools_and_a_quiet_publish_adds_nothing() {
    let (primary, _) = TestManager::new();
    let (replica, replica_probe) = TestManager::new();
    replica_probe.set_create(support::Behavior::Fail);
    let pool = |manager| Pool::builder(manager).max_size(2).disable_breaker();
    let cluster = Cluster::builder()
        .name("orders")
        .backend(Backend::primary("db-1", pool(primary)))
        .backend(Backend::replica("db-2", pool(replica)))
        .probe_interval(Duration::from_secs(60))
        .build()
        .unwrap();
    assert_eq!(cluster.name(), "orders");
    // Round-robin sends the second call to the failing replica: it fails over to the primary.
    let held = [cluster.get().await.unwrap(), cluster.get().await.unwrap()];
    let status = cluster.status();
    assert_eq!((status.in_rotation, status.failovers), (1, 1), "{status:?}");

    let recording = Recording::default();
    metrics::with_local_recorder(&recording, || cluster.publish_metrics());
    let whole = |name| cluster_key(name, "orders", None);
    let primary = |name| cluster_key(name, "orders", Some(("db-1", "primary")));
    let replica = |name| cluster_key(name, "orders", Some(("db-2", "replica")));
    assert_eq!(recording.gauge(&whole("in_rotation")), Some(1.0));
    assert_eq!(recording.counter(&whole("failovers")), Some(1));
    assert_eq!(recording.gauge(&primary("backend.in_rotation")), Some(1.0));
    assert_eq!(recording.gauge(&replica("backend.in_rotation")), Some(0.0));
    assert_eq!(recording.gauge(&primary("backend.in_use")), Some(2.0));
    assert_eq!(recording.counter(&primary("backend.checkouts")), Some(2));
    assert_eq!(recording.counter(&replica("backend.checkouts")), Some(0));
    assert_eq!(recording.counter(&replica("backend.ejections")), Some(1));
    assert_eq!(recording.counter(&replica("backend.readmissions")), Some(0));
    // Each backend's pool publishes under the backend's name.
    assert_eq!(
        recording.gauge(&key("db.client.connection.count", "db-1", Some("used"))),
        Some(2.0)
    );
    assert_eq!(
        recording.gauge(&key("db.client.connection.count", "db-2", Some("used"))),
        Some(0.0)
    );
    let names = recording.names();
    for name in [
        "millpond.cluster.in_rotation",
        "millpond.cluster.failovers",
        "millpond.cluster.backend.in_rotation",
        "millpond.cluster.backend.in_use",
        "millpond.cluster.backend.checkouts",
        "millpond.cluster.backend.ejections",
        "millpond.cluster.backend.readmissions",
    ] {
        let labelled = format!("{name}{{");
        assert!(names.iter().any(|key| key.starts_with(&labelled)), "{name} missing: {names:?}");
    }

    metrics::with_local_recorder(&recording, || cluster.publish_metrics());
    assert_eq!(recording.counter(&whole("failovers")), Some(1), "nothing new, nothing sent");
    assert_eq!(recording.counter(&primary("backend.checkouts")), Some(2));
    assert_eq!(recording.counter(&replica("backend.ejections")), Some(1));
    drop(held);
}

#[tokio::test(start_paused = true)]
async fn an_unnamed_cluster_is_published_as_millpond_and_an_empty_name_is_refused() {
    let (manager, _) = TestManager::new();
    let cluster = Cluster::builder()
        .backend(Backend::primary("db-1", Pool::builder(manager)))
        .build()
        .unwrap();
    assert_eq!(cluster.name(), "millpond");
    let (manager, _) = TestManager::new();
    let err = Cluster::builder()
        .name("")
        .backend(Backend::primary("db-1", Pool::builder(manager)))
        .build()
        .unwrap_err();
    assert_eq!(err.field(), Some("name"));
}
