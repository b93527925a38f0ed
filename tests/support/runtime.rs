//! Runtimes for tests of pools that outlive the runtime they were built on.

use std::future::Future;
use std::time::Duration;

use tokio::runtime::{Builder, Runtime};

/// A current-thread runtime on the paused clock.
pub fn runtime() -> Runtime {
    Builder::new_current_thread().enable_time().start_paused(true).build().unwrap()
}

/// Runs `call` on `runtime`, failing the test if it has not finished after a minute of the
/// runtime's (paused) clock: only a hang costs that long, and on the paused clock it costs no
/// real time.
pub fn no_hang<T>(runtime: &Runtime, what: &str, call: impl Future<Output = T>) -> T {
    runtime.block_on(async {
        tokio::time::timeout(Duration::from_secs(60), call)
            .await
            .unwrap_or_else(|_| panic!("{what} hung on a pool whose runtime is gone"))
    })
}
