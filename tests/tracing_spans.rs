//! The `tracing` spans: a checkout, a creation, a check and a submit each open their span with the
//! pool's name, end it with the right `outcome`, and stay below INFO, so a subscriber at the usual
//! production level sees none of them. A subscriber local to each test (on the test's own thread,
//! where its current-thread runtime runs every task) captures the spans.
// Test code, outside the library's loom facade.
#![allow(clippy::disallowed_types)]

mod support;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use millpond::exec::WorkerPool;
use millpond::pool::Pool;
use support::{Behavior, TestManager};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::subscriber::Interest;
use tracing::{Event, Level, Metadata, Subscriber};

/// One span as the subscriber saw it: its name, level and the last value of each field.
#[derive(Debug, Clone)]
struct Captured {
    name: &'static str,
    level: Level,
    fields: BTreeMap<&'static str, String>,
}

impl Captured {
    fn field(&self, name: &str) -> Option<&str> {
        self.fields.get(name).map(String::as_str)
    }
}

/// A subscriber that keeps every span it is offered at or below `max`.
#[derive(Clone)]
struct Capture {
    max: Level,
    spans: Arc<Mutex<Vec<Captured>>>,
}

struct Fields<'a>(&'a mut BTreeMap<&'static str, String>);

impl Visit for Fields<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name(), value.to_owned());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0.insert(field.name(), format!("{value:?}"));
    }
}

impl Subscriber for Capture {
    fn register_callsite(&self, _: &'static Metadata<'static>) -> Interest {
        // Each test has its own subscriber: ask every time rather than cache one test's answer.
        Interest::sometimes()
    }

    fn max_level_hint(&self) -> Option<tracing::level_filters::LevelFilter> {
        Some(self.max.into())
    }

    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        // More verbose levels compare greater.
        *metadata.level() <= self.max
    }

    fn new_span(&self, attributes: &Attributes<'_>) -> Id {
        let metadata = attributes.metadata();
        let mut fields = BTreeMap::new();
        attributes.record(&mut Fields(&mut fields));
        let mut spans = self.spans.lock().unwrap();
        spans.push(Captured { name: metadata.name(), level: *metadata.level(), fields });
        Id::from_u64(spans.len() as u64)
    }

    fn record(&self, span: &Id, values: &Record<'_>) {
        let mut spans = self.spans.lock().unwrap();
        let index = usize::try_from(span.into_u64() - 1).unwrap();
        values.record(&mut Fields(&mut spans[index].fields));
    }

    fn record_follows_from(&self, _: &Id, _: &Id) {}

    fn event(&self, _: &Event<'_>) {}

    fn enter(&self, _: &Id) {}

    fn exit(&self, _: &Id) {}
}

impl Capture {
    /// Installs a capturing subscriber at `max` on this thread until the guard drops.
    fn install(max: Level) -> (Self, tracing::subscriber::DefaultGuard) {
        let capture = Self { max, spans: Arc::default() };
        let guard = tracing::subscriber::set_default(capture.clone());
        (capture, guard)
    }

    fn spans(&self) -> Vec<Captured> {
        self.spans.lock().unwrap().clone()
    }

    /// The spans called `name`, in the order they opened.
    fn named(&self, name: &str) -> Vec<Captured> {
        self.spans().into_iter().filter(|span| span.name == name).collect()
    }
}

fn outcomes(spans: &[Captured]) -> Vec<&str> {
    spans.iter().map(|span| span.field("outcome").unwrap_or("(none)")).collect()
}

fn assert_quiet_levels(capture: &Capture) {
    for span in capture.spans() {
        assert!(span.level >= Level::DEBUG, "{} is at {}, above DEBUG", span.name, span.level);
    }
}

#[tokio::test(start_paused = true)]
async fn a_get_opens_a_span_with_the_pool_name_and_its_outcome() {
    let (capture, _guard) = Capture::install(Level::TRACE);
    let (manager, _probe) = TestManager::new();
    let pool = Pool::builder(manager).name("orders-db").max_size(1).build().unwrap();

    let conn = pool.get().await.unwrap();
    assert!(pool.try_get().is_err(), "the only resource is out");
    drop(conn);
    pool.close();
    assert!(pool.get().await.is_err());

    let gets = capture.named("pool.get");
    assert_eq!(outcomes(&gets), ["ok", "exhausted", "closed"]);
    for get in &gets {
        assert_eq!(get.field("pool"), Some("orders-db"));
    }
    assert_eq!(gets[0].field("wait"), Some("true"));
    assert_eq!(gets[1].field("wait"), Some("false"), "try_get does not wait");
    let creates = capture.named("pool.create");
    assert_eq!(outcomes(&creates), ["ok"]);
    assert_eq!(creates[0].field("pool"), Some("orders-db"));
    assert_quiet_levels(&capture);
}

#[tokio::test(start_paused = true)]
async fn a_failing_create_ends_its_span_failed_with_the_error() {
    let (capture, _guard) = Capture::install(Level::TRACE);
    let (manager, probe) = TestManager::new();
    probe.set_create(Behavior::Fail);
    let pool = Pool::builder(manager)
        .name("orders-db")
        .backoff(Duration::from_millis(10), Duration::from_millis(10))
        .disable_breaker()
        .build()
        .unwrap();

    let err = pool.get_timeout(Duration::from_millis(25)).await.unwrap_err();
    assert!(err.is_timeout(), "{err}");

    let creates = capture.named("pool.create");
    assert!(!creates.is_empty());
    for create in &creates {
        assert_eq!(create.field("pool"), Some("orders-db"));
        assert_eq!(create.field("outcome"), Some("failed"));
        assert_eq!(create.field("error"), Some("connection refused"));
    }
    assert_eq!(outcomes(&capture.named("pool.get")), ["timeout"]);
    assert_quiet_levels(&capture);
}

/// A pool of one named `orders-db` whose idle resource sat past the check window, with checks
/// set to fail: the next `get()` checks it, and the check fails.
async fn pool_whose_next_check_fails() -> (Pool<TestManager>, Arc<support::Probe>) {
    let (manager, probe) = TestManager::new();
    let pool = Pool::builder(manager)
        .name("orders-db")
        .max_size(1)
        .check_window(Duration::from_secs(1))
        .build()
        .unwrap();
    drop(pool.get().await.unwrap());
    probe.set_check(Behavior::Fail);
    tokio::time::advance(Duration::from_secs(2)).await;
    (pool, probe)
}

#[tokio::test(start_paused = true)]
async fn a_failed_check_ends_its_span_failed_and_the_get_carries_on() {
    let (capture, _guard) = Capture::install(Level::TRACE);
    let (pool, _probe) = pool_whose_next_check_fails().await;

    let conn = pool.get().await.unwrap();
    assert_eq!(conn.id, 1, "the resource that failed its check was replaced");

    let checks = capture.named("pool.check");
    assert_eq!(outcomes(&checks), ["failed"]);
    assert_eq!(checks[0].field("pool"), Some("orders-db"));
    assert_eq!(checks[0].field("error"), Some("check failed"));
    assert_eq!(outcomes(&capture.named("pool.get")), ["ok", "ok"]);
    assert_eq!(outcomes(&capture.named("pool.create")), ["ok", "ok"]);
    assert_quiet_levels(&capture);
}

#[tokio::test(start_paused = true)]
async fn a_dropped_get_ends_its_span_cancelled() {
    let (capture, _guard) = Capture::install(Level::TRACE);
    let (manager, _probe) = TestManager::new();
    let pool = Pool::builder(manager).name("orders-db").max_size(1).build().unwrap();
    let held = pool.get().await.unwrap();

    let queued = pool.get_timeout(Duration::from_secs(5));
    let gave_up = tokio::time::timeout(Duration::from_millis(10), queued).await;
    assert!(gave_up.is_err(), "the pool was full");
    drop(held);

    assert_eq!(outcomes(&capture.named("pool.get")), ["ok", "cancelled"]);
}

#[tokio::test(start_paused = true)]
async fn a_submit_opens_a_span_with_the_worker_pool_name_and_its_outcome() {
    let (capture, _guard) = Capture::install(Level::TRACE);
    let workers = WorkerPool::builder().workers(1).name("thumbnails").build().unwrap();

    workers.submit(async { 7 }).await.unwrap().await.unwrap();
    workers.shutdown().await;
    assert!(workers.try_submit(async { 8 }).unwrap_err().is_closed());

    let submits = capture.named("worker_pool.submit");
    assert_eq!(outcomes(&submits), ["ok", "closed"]);
    for submit in &submits {
        assert_eq!(submit.field("pool"), Some("thumbnails"));
    }
    assert_quiet_levels(&capture);
}

#[tokio::test(start_paused = true)]
async fn a_subscriber_at_info_sees_none_of_these_spans() {
    let (capture, _guard) = Capture::install(Level::INFO);
    let (pool, probe) = pool_whose_next_check_fails().await;
    drop(pool.get().await.unwrap());
    probe.set_create(Behavior::Fail);
    pool.close();
    assert!(pool.try_get().is_err());
    let workers = WorkerPool::builder().workers(1).name("thumbnails").build().unwrap();
    workers.submit(async {}).await.unwrap().await.unwrap();

    assert!(probe.check_calls() > 0 && probe.create_calls() > 1, "the spans' code paths ran");
    let spans = capture.spans();
    assert!(spans.is_empty(), "{spans:?}");
}
