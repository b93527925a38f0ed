//! Leak detection: a resource held past the threshold is reported once, naming the call site of
//! the `get()` that took it.
#![allow(clippy::disallowed_types)]

mod support;

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use millpond::pool::Pool;
use support::TestManager;

/// Collects everything the subscriber writes.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

#[tokio::test(start_paused = true)]
async fn a_resource_held_past_the_threshold_is_reported_with_its_call_site() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber =
        tracing_subscriber::fmt().with_writer(move || writer.clone()).with_ansi(false).finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let (manager, _probe) = TestManager::new();
    let pool = Pool::builder(manager)
        .max_size(2)
        .leak_threshold(Some(Duration::from_secs(5)))
        .build()
        .unwrap();
    let line = line!() + 1;
    let leaked = pool.get().await.unwrap();
    let returned_in_time = pool.get().await.unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    drop(returned_in_time);

    tokio::time::sleep(Duration::from_secs(4)).await;
    let text = captured.text();
    assert_eq!(text.matches("held longer than the leak threshold").count(), 1, "{text}");
    assert!(text.contains(&format!("pool_leaks.rs:{line}")), "names the call site: {text}");

    tokio::time::sleep(Duration::from_secs(10)).await;
    let text = captured.text();
    assert_eq!(text.matches("held longer than the leak threshold").count(), 1, "reported once");

    drop(leaked);
    assert!(captured.text().contains("reported as leaked was returned"));
}
