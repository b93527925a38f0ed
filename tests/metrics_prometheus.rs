//! The `metrics` feature seen through `metrics-exporter-prometheus`, installed as the process's
//! recorder the way an application installs it: the scrape text names every figure, with the
//! pool's name, and the pool publishes on its own with `Builder::publish_metrics(true)`; a
//! cluster's publish adds its `millpond_cluster_*` figures and its backends' pools.
#![cfg(feature = "metrics")]

mod support;

use std::time::Duration;

use metrics_exporter_prometheus::PrometheusBuilder;
use millpond::cluster::{Backend, Cluster};
use millpond::pool::Pool;
use support::TestManager;

/// The lines of `text` that start with `name` and carry the label `pool="orders-db"`.
fn lines<'a>(text: &'a str, name: &str) -> Vec<&'a str> {
    text.lines()
        .filter(|line| line.starts_with(name) && !line.starts_with('#'))
        .filter(|line| line.contains(r#"db_client_connection_pool_name="orders-db""#))
        .collect()
}

// One test in this file: the recorder is global to the process.
#[tokio::test(start_paused = true)]
async fn the_scrape_text_names_every_figure_and_the_maintenance_task_publishes_it() {
    let handle = PrometheusBuilder::new().install_recorder().unwrap();
    let (manager, _probe) = TestManager::new();
    let pool = Pool::builder(manager)
        .name("orders-db")
        .max_size(1)
        .maintenance_interval(Duration::from_secs(1))
        .publish_metrics(true)
        .build()
        .unwrap();
    let held = pool.get().await.unwrap();
    assert!(pool.get_timeout(Duration::from_millis(100)).await.is_err());
    drop(held);

    // No explicit publish: the maintenance task's next tick sends the figures.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let text = handle.render();
    println!("{text}");

    let idle = lines(&text, "db_client_connection_count{");
    assert!(
        idle.iter()
            .any(|line| line.contains(r#"db_client_connection_state="idle""#)
                && line.ends_with(" 1")),
        "{text}"
    );
    assert!(
        idle.iter()
            .any(|line| line.contains(r#"db_client_connection_state="used""#)
                && line.ends_with(" 0")),
        "{text}"
    );
    for (name, value) in [
        ("db_client_connection_idle_max{", " 1"),
        ("db_client_connection_idle_min{", " 0"),
        ("db_client_connection_max{", " 1"),
        ("db_client_connection_pending_requests{", " 0"),
        ("db_client_connection_timeouts{", " 1"),
    ] {
        let found = lines(&text, name);
        assert_eq!(found.len(), 1, "{name} in {text}");
        assert!(found[0].ends_with(value), "{name}: {found:?}");
    }
    for name in [
        "db_client_connection_create_time",
        "db_client_connection_wait_time",
        "db_client_connection_use_time",
    ] {
        let count = lines(&text, &format!("{name}_count{{"));
        assert_eq!(count.len(), 1, "{name} in {text}");
        assert!(count[0].ends_with(" 1"), "{name}: {count:?}");
    }

    // A cluster: its own figures with its name, per backend with the backend's, and the
    // backend's pool under the backend's name.
    let (manager, _probe) = TestManager::new();
    let cluster = Cluster::builder()
        .name("orders")
        .backend(Backend::primary("db-1", Pool::builder(manager)))
        .build()
        .unwrap();
    drop(cluster.get().await.unwrap());
    cluster.publish_metrics();
    let text = handle.render();
    let cluster_lines = |name: &str| -> Vec<String> {
        text.lines()
            .filter(|line| {
                line.starts_with(name) && line.contains(r#"millpond_cluster_name="orders""#)
            })
            .map(str::to_owned)
            .collect()
    };
    for (name, value) in [
        ("millpond_cluster_in_rotation{", " 1"),
        ("millpond_cluster_failovers{", " 0"),
        ("millpond_cluster_backend_in_rotation{", " 1"),
        ("millpond_cluster_backend_in_use{", " 0"),
        ("millpond_cluster_backend_checkouts{", " 1"),
        ("millpond_cluster_backend_ejections{", " 0"),
        ("millpond_cluster_backend_readmissions{", " 0"),
    ] {
        let found = cluster_lines(name);
        assert_eq!(found.len(), 1, "{name} in {text}");
        assert!(found[0].ends_with(value), "{name}: {found:?}");
    }
    let backend = cluster_lines("millpond_cluster_backend_checkouts{");
    assert!(backend[0].contains(r#"millpond_cluster_backend="db-1""#), "{backend:?}");
    assert!(backend[0].contains(r#"millpond_cluster_backend_role="primary""#), "{backend:?}");
    assert!(
        text.lines().any(|line| line.starts_with("db_client_connection_count{")
            && line.contains(r#"db_client_connection_pool_name="db-1""#)),
        "the backend's pool publishes under the backend's name: {text}"
    );
}
