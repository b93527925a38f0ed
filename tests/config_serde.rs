//! Settings read from TOML and from the environment (through the `config` crate) reach the pools
//! they build; a bad value is a `BuildError` naming its path, a bad type or an unknown key a
//! deserialization error naming the key.
#![cfg(feature = "serde")]
#![allow(clippy::disallowed_types)]

mod support;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use millpond::cluster::Backend;
use millpond::config::{ClusterConfig, PoolConfig, WorkerPoolConfig};
use millpond::pool::{Pool, TimeoutPhase};
use serde::Deserialize;
use support::TestManager;
use tokio::time::Instant;

/// A service's configuration with the three sections, as an application would nest them.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct AppConfig {
    pool: PoolConfig,
    workers: WorkerPoolConfig,
    cluster: ClusterConfig,
}

const FILE: &str = r#"
[pool]
max_size = 3
min_idle = 2
acquire_timeout = "250ms"
idle_timeout = "off"

[workers]
workers = 2
scheduler = "per_worker"
balance = "least_loaded"
stealing = true
queue_capacity = 8

[cluster]
balance = "round_robin"
probe_interval = "1m 30s"

[cluster.backends.replica1]
max_size = 5
"#;

/// Reads `FILE` with `env` on top, as `examples/config.rs` does, without touching the process
/// environment.
fn from_file_and_env(file: &str, env: &[(&str, &str)]) -> Result<AppConfig, config::ConfigError> {
    let env: HashMap<String, String> =
        env.iter().map(|(key, value)| ((*key).to_owned(), (*value).to_owned())).collect();
    config::Config::builder()
        .add_source(config::File::from_str(file, config::FileFormat::Toml))
        .add_source(
            config::Environment::with_prefix("APP")
                .separator("__")
                .try_parsing(true)
                .source(Some(env)),
        )
        .build()?
        .try_deserialize()
}

fn two_backends(config: &ClusterConfig) -> millpond::cluster::ClusterBuilder<TestManager> {
    let (primary, _) = TestManager::new();
    let (replica, _) = TestManager::new();
    config
        .builder()
        .backend(Backend::primary("main", Pool::builder(primary)))
        .backend(Backend::replica("replica1", Pool::builder(replica)))
}

#[tokio::test(start_paused = true)]
async fn a_toml_file_configures_a_pool_a_worker_pool_and_a_cluster() {
    let app: AppConfig = toml::from_str(FILE).unwrap();

    let (manager, _probe) = TestManager::new();
    let pool = app.pool.builder(manager).build().unwrap();
    assert_eq!(pool.status().max_size, 3);
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert_eq!(pool.status().idle, 2, "min_idle reached the pool");

    // acquire_timeout: with every resource out, a get() gives up after exactly 250 ms.
    let held = [pool.get().await.unwrap(), pool.get().await.unwrap(), pool.get().await.unwrap()];
    let started = Instant::now();
    let err = pool.get().await.unwrap_err();
    assert_eq!(err.timeout_phase(), Some(TimeoutPhase::Wait));
    assert_eq!(started.elapsed(), Duration::from_millis(250));
    drop(held);

    let workers = app.workers.builder().build().unwrap();
    let stats = workers.stats();
    assert_eq!(stats.workers, 2);
    assert_eq!(stats.queued_per_worker.len(), 2, "per-worker queues");

    let cluster = two_backends(&app.cluster).build().unwrap();
    let status = cluster.status();
    let replica = status.backends.iter().find(|backend| backend.name == "replica1").unwrap();
    assert_eq!(replica.pool.max_size, 5, "the backend's section reached its pool");
    let main = status.backends.iter().find(|backend| backend.name == "main").unwrap();
    assert_eq!(main.pool.max_size, 10, "a backend without a section keeps its builder");
}

#[tokio::test(start_paused = true)]
async fn check_settings_from_a_file_decide_whether_get_checks() {
    let checked = |toml: &str| {
        let config: PoolConfig = toml::from_str(toml).unwrap();
        async move {
            let (manager, probe) = TestManager::new();
            let pool = config.builder(manager).build().unwrap();
            drop(pool.get().await.unwrap());
            tokio::time::sleep(Duration::from_secs(1)).await;
            drop(pool.get().await.unwrap());
            probe.check_calls()
        }
    };
    // The default checks a resource idle past the 500 ms window; the file can turn that off,
    // or widen the window past the idle spell.
    assert_eq!(checked("").await, 1);
    assert_eq!(checked("check_on_get = false").await, 0);
    assert_eq!(checked("check_window = \"2s\"").await, 0);
}

#[tokio::test(start_paused = true)]
async fn environment_variables_override_the_file_with_double_underscore_keys() {
    let app = from_file_and_env(
        FILE,
        &[
            ("APP__POOL__MAX_SIZE", "32"),
            ("APP__POOL__ACQUIRE_TIMEOUT", "1s"),
            ("APP__POOL__BREAKER_THRESHOLD", "off"),
            ("APP__POOL__CHECK_ON_GET", "false"),
            ("APP__WORKERS__WORKERS", "3"),
            ("APP__CLUSTER__BACKENDS__REPLICA1__MAX_SIZE", "7"),
            ("OTHER__POOL__MAX_SIZE", "1"),
        ],
    )
    .unwrap();
    assert_eq!(app.pool.max_size, Some(32));
    assert_eq!(app.pool.min_idle, Some(2), "the file's value stays where no variable is set");
    assert_eq!(app.pool.acquire_timeout, Some(Duration::from_secs(1)));
    assert_eq!(app.pool.breaker_threshold, Some(None));
    assert_eq!(app.pool.check_on_get, Some(false));
    assert_eq!(app.pool.idle_timeout, Some(None));

    let (manager, _probe) = TestManager::new();
    let pool = app.pool.builder(manager).build().unwrap();
    assert_eq!(pool.status().max_size, 32);
    assert_eq!(app.workers.builder().build().unwrap().stats().workers, 3);
    let cluster = two_backends(&app.cluster).build().unwrap();
    let replica = &cluster.status().backends[1];
    assert_eq!((replica.name.as_str(), replica.pool.max_size), ("replica1", 7));
}

#[tokio::test(start_paused = true)]
async fn an_invalid_value_is_a_build_error_naming_its_path() {
    let pool_error = |toml: &str| {
        let config: PoolConfig = toml::from_str(toml).unwrap();
        let (manager, _probe) = TestManager::new();
        config.builder(manager).build().unwrap_err().nested_in("pool")
    };
    for (toml, path) in [
        ("max_size = 0", "pool.max_size"),
        ("max_idle = 4\nmin_idle = 5", "pool.min_idle"),
        ("acquire_timeout = \"0s\"", "pool.acquire_timeout"),
        ("idle_timeout = \"0ms\"", "pool.idle_timeout"),
        ("breaker_threshold = 0", "pool.breaker_threshold"),
        ("backoff_initial = \"2s\"\nbackoff_max = \"1s\"", "pool.backoff_max"),
        ("lifetime_jitter = 0.9", "pool.lifetime_jitter"),
        ("breaker_failure_rate = 1.5", "pool.breaker_failure_rate"),
        ("breaker_slow_rate = 0.5", "pool.breaker_slow_creations"),
        ("rate_limit_burst = 5", "pool.rate_limit_per_key"),
    ] {
        let err = pool_error(toml);
        assert_eq!(err.path().as_deref(), Some(path), "{toml}: {err}");
        assert!(err.to_string().contains(&format!("invalid `{path}`")), "{err}");
    }

    let workers: WorkerPoolConfig = toml::from_str("queue_capacity = 0").unwrap();
    let err = workers.builder().build().unwrap_err();
    assert_eq!(err.path().as_deref(), Some("queue_capacity"));
    let workers: WorkerPoolConfig = toml::from_str("stealing = true").unwrap();
    let err = workers.builder().build().unwrap_err();
    assert_eq!(err.path().as_deref(), Some("stealing"), "the shared queue does not steal");

    let cluster: ClusterConfig =
        toml::from_str("[backends.replica1]\nmax_size = 4\nmax_idle = 6").unwrap();
    let err = two_backends(&cluster).build().unwrap_err();
    assert_eq!(err.field(), Some("max_idle"));
    assert_eq!(err.path().as_deref(), Some("backends.replica1.max_idle"));
    assert!(err.to_string().contains("invalid `backends.replica1.max_idle` (6)"), "{err}");

    let cluster: ClusterConfig = toml::from_str("[backends.replica2]\nmax_size = 4").unwrap();
    let err = two_backends(&cluster).build().unwrap_err();
    assert_eq!(err.path().as_deref(), Some("backends"));
    assert!(err.to_string().contains("\"replica2\""), "{err}");

    let cluster: ClusterConfig = toml::from_str("probe_interval = \"0s\"").unwrap();
    let err = two_backends(&cluster).build().unwrap_err();
    assert_eq!(err.path().as_deref(), Some("probe_interval"));

    let cluster: ClusterConfig = toml::from_str("rate_limit_per_second = -1.0").unwrap();
    let err = two_backends(&cluster).build().unwrap_err();
    assert_eq!(err.path().as_deref(), Some("rate_limit_per_key"), "{err}");
}

/// The overload sections: an adaptive limit on a pool and on a worker pool, a CPU threshold on
/// the worker pool, outlier detection on a cluster. Each reaches what it configures.
#[tokio::test(start_paused = true)]
async fn overload_sections_reach_what_they_configure() {
    let app: AppConfig = toml::from_str(
        r#"
        [pool]
        max_size = 4
        [pool.adaptive_limit]
        initial_limit = 1
        min_limit = 1
        max_limit = 1
        max_queue = 0

        [workers]
        workers = 2
        overload_cpu = 0.9
        [workers.adaptive_limit]
        algorithm = "aimd"
        initial_limit = 1
        min_limit = 1
        max_limit = 1

        [cluster.outlier_detection]
        consecutive_failures = 1
        success_rate_stdev = "off"
        max_ejected_percent = 50
        "#,
    )
    .unwrap();

    // One checkout at a time, and no waiting for the limit: the second is refused at once.
    let (manager, _probe) = TestManager::new();
    let pool = app.pool.builder(manager).build().unwrap();
    let held = pool.get().await.unwrap();
    assert!(matches!(pool.get().await, Err(millpond::pool::Error::Limited(_))));
    drop(held);
    drop(pool.get().await.unwrap());

    // One task at a time: the second starts only once the first is done.
    let workers = app.workers.builder().build().unwrap();
    let started = Arc::new(AtomicUsize::new(0));
    let (release, gate) = tokio::sync::oneshot::channel::<()>();
    let counted = Arc::clone(&started);
    let first = workers
        .submit(async move {
            counted.fetch_add(1, Ordering::SeqCst);
            gate.await.unwrap();
        })
        .await
        .unwrap();
    let counted = Arc::clone(&started);
    let second = workers
        .submit(async move {
            counted.fetch_add(1, Ordering::SeqCst);
        })
        .await
        .unwrap();
    // On the paused clock this sleep ends only once every task is parked.
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert_eq!(started.load(Ordering::SeqCst), 1, "the limit of 1 holds the second task");
    release.send(()).unwrap();
    first.await.unwrap();
    second.await.unwrap();
    assert_eq!(started.load(Ordering::SeqCst), 2);

    // One failure in a row ejects (Envoy's default would take five).
    let cluster = two_backends(&app.cluster).build().unwrap();
    let conn = cluster.get().await.unwrap();
    let name = conn.backend().to_owned();
    conn.report_failure();
    drop(conn);
    let status = cluster.status();
    let backend = status.backends.iter().find(|backend| backend.name == name).unwrap();
    assert!(backend.outlier_ejected, "{status:?}");
}

/// A bad value in an overload section is refused at `build()`, naming its whole path.
#[tokio::test(start_paused = true)]
async fn a_bad_overload_setting_is_a_build_error_naming_its_path() {
    let pool: PoolConfig = toml::from_str(
        "[adaptive_limit]
min_limit = 9
max_limit = 3",
    )
    .unwrap();
    let (manager, _probe) = TestManager::new();
    let err = pool.builder(manager).build().unwrap_err();
    assert_eq!(err.path().as_deref(), Some("adaptive_limit.max_limit"), "{err}");

    let workers: WorkerPoolConfig = toml::from_str(
        "[adaptive_limit]
algorithm = \"aimd\"\ntolerance = 1.1",
    )
    .unwrap();
    let err = workers.builder().build().unwrap_err();
    assert_eq!(err.path().as_deref(), Some("adaptive_limit.tolerance"), "{err}");
    let workers: WorkerPoolConfig = toml::from_str("overload_cpu = 1.5").unwrap();
    let err = workers.builder().build().unwrap_err();
    assert_eq!(err.path().as_deref(), Some("overload_cpu"), "{err}");

    let cluster: ClusterConfig = toml::from_str(
        "[backends.replica1.adaptive_limit]
queue_timeout = \"0s\"",
    )
    .unwrap();
    let err = two_backends(&cluster).build().unwrap_err();
    assert_eq!(err.path().as_deref(), Some("backends.replica1.adaptive_limit.queue_timeout"));
    let cluster: ClusterConfig = toml::from_str(
        "[outlier_detection]
latency_factor = 0.5",
    )
    .unwrap();
    let err = two_backends(&cluster).build().unwrap_err();
    assert_eq!(err.path().as_deref(), Some("outlier_detection.latency_factor"), "{err}");
}

#[test]
fn a_bad_type_fails_to_deserialize_naming_the_key() {
    let err = toml::from_str::<AppConfig>("[pool]\nacquire_timeout = \"soon\"").unwrap_err();
    let message = err.to_string();
    assert!(message.contains("acquire_timeout"), "{message}");
    assert!(message.contains("a duration such as \"5s\""), "{message}");

    let err = from_file_and_env("", &[("APP__POOL__CREATE_TIMEOUT", "soon")]).unwrap_err();
    let message = err.to_string();
    assert!(message.contains("pool.create_timeout"), "{message}");

    let err = toml::from_str::<AppConfig>("[pool]\nmax_size = -1").unwrap_err();
    assert!(err.to_string().contains("max_size"), "{err}");
    let err = toml::from_str::<AppConfig>("[workers]\nscheduler = \"fastest\"").unwrap_err();
    assert!(err.to_string().contains("per_worker"), "{err}");
}

#[test]
fn an_unknown_key_is_refused() {
    let err = toml::from_str::<PoolConfig>("max_sise = 3").unwrap_err();
    assert!(err.to_string().contains("unknown field `max_sise`"), "{err}");

    let err = from_file_and_env("", &[("APP__WORKERS__WORKER", "3")]).unwrap_err();
    assert!(err.to_string().contains("unknown field `worker`"), "{err}");

    let err =
        toml::from_str::<ClusterConfig>("[backends.a]\nmax_size = 1\nmax_szie = 2").unwrap_err();
    assert!(err.to_string().contains("unknown field `max_szie`"), "{err}");

    let err = toml::from_str::<WorkerPoolConfig>("rate_limit = { per_second = 1.0 }").unwrap_err();
    assert!(err.to_string().contains("missing field `burst`"), "{err}");
}
