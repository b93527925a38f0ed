//! Real servers for the integration tests: a throwaway PostgreSQL or Redis per test.

#![allow(dead_code, reason = "each test binary uses a different part of the harness")]

pub mod outage;
#[cfg(feature = "postgres")]
pub mod postgres;
#[cfg(feature = "redis")]
pub mod redis;

use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

/// Whether the environment variable `var` asks for the servers' tests to fail rather than skip.
fn required(var: &str) -> bool {
    std::env::var(var).is_ok_and(|value| value == "1")
}

/// A loopback port nobody listens on at the moment of asking.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port").port()
}

/// An empty folder of this process's own for one server, named `<prefix>-<pid>-<n>`.
fn fresh_dir(prefix: &str) -> PathBuf {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let dir = std::env::temp_dir().join(format!(
        "{prefix}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create the server folder");
    dir
}

/// Gives a test's pool time to settle between phases without guessing: polls `ready` every
/// 20 ms until it holds, or panics with `what` after `limit`.
pub async fn wait_until<F, Fut>(what: &str, limit: Duration, mut ready: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + limit;
    while !ready().await {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
