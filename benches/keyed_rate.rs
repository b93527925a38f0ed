//! Our per-key token buckets (`src/rate.rs`, `KeyedBuckets`: one mutex over a `HashMap` of
//! GCRA theoretical arrival times, swept of full buckets as it doubles) beside governor's keyed
//! limiter (`DefaultKeyedRateLimiter`: a `DashMap` of the same GCRA state, one atomic per key),
//! the same with std's clock in place of its `quanta` one, and 16 of ours sharded by key: the
//! cost of one check, the memory per key, what becomes of it when keys go idle, and how many
//! requests each admits.
//!
//! All run the same quota, 100 a second with a burst of 10, on `u64` keys hashed by std's
//! default hasher, and read the real clock on every check, as they do in use (a row of clock
//! reads alone shows what that costs each). Checks draw keys from a population of 100, 10,000
//! or 1,000,000, uniformly or skewed (nine checks in ten go to the hottest 1% of the keys);
//! every key of the population is checked once before timing. Two-thread figures are each
//! thread's time per check while both check the same limiter.
//!
//! `cargo bench --bench keyed_rate` prints the memory, idle and precision tables after
//! criterion's timings; `docs/benchmarks.md` has the figures.
// The bench's counting allocator and threads are outside the library's loom facade.
#![allow(dead_code, clippy::disallowed_types)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::num::NonZeroU32;
use std::sync::Barrier;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use criterion::Criterion;
use governor::clock::{Clock, DefaultClock, MonotonicClock};
use governor::middleware::NoOpMiddleware;
use governor::state::keyed::DashMapStateStore;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

// `src/rate.rs` and what it takes from the crate, compiled into the bench from their sources
// (the keyed buckets are crate-private).
#[allow(unused_imports)]
#[path = "../src/build_error.rs"]
mod build_error;
#[allow(unused_imports)]
#[path = "../src/rate.rs"]
mod ours;
#[allow(unused_imports)]
#[path = "../src/sync.rs"]
mod sync;
#[allow(unused_imports)]
#[path = "../src/time.rs"]
mod time;

use ours::{KeyedBuckets, Shape};

/// The system allocator, counting the bytes live, to weigh each limiter's map.
struct Counting;

static ALLOCATED: AtomicUsize = AtomicUsize::new(0);
static FREED: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is passed to the system allocator unchanged; the counts are only a side
// note.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATED.fetch_add(layout.size(), Ordering::Relaxed);
        // SAFETY: the caller's contract, passed on.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        FREED.fetch_add(layout.size(), Ordering::Relaxed);
        // SAFETY: the caller's contract, passed on.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Bytes allocated and not yet freed, by every thread.
fn live_bytes() -> usize {
    ALLOCATED.load(Ordering::Relaxed) - FREED.load(Ordering::Relaxed)
}

const PER_SECOND: u32 = 100;
const BURST: u32 = 10;

/// One keyed limiter under test.
trait Keyed: Sync {
    fn check(&self, key: u64) -> bool;
}

impl Keyed for KeyedBuckets {
    fn check(&self, key: u64) -> bool {
        self.try_take(key).is_ok()
    }
}

impl Keyed for DefaultKeyedRateLimiter<u64> {
    fn check(&self, key: u64) -> bool {
        self.check_key(&key).is_ok()
    }
}

/// Ours split in shards by key, each a whole `KeyedBuckets` that sweeps itself: what a sharded
/// map would give our code, without writing one.
struct Sharded(Box<[sync::CachePadded<KeyedBuckets>]>);

/// Shards of [`Sharded`] (a power of two).
const SHARDS: usize = 16;

impl Sharded {
    fn new(per_second: f64, burst: u32) -> Self {
        Self((0..SHARDS).map(|_| sync::CachePadded(ours_with(per_second, burst))).collect())
    }
}

impl Keyed for Sharded {
    fn check(&self, key: u64) -> bool {
        // The top bits of a Fibonacci hash: consecutive keys land on different shards, and the
        // shard's map hashes the whole key again.
        let shard =
            (key.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> (64 - SHARDS.trailing_zeros())) as usize;
        self.0[shard].check(key)
    }
}

/// Governor's keyed limiter reading std's clock, as it would read tokio's (std's outside a
/// paused runtime) if it replaced ours: what its map costs without its faster clock.
type GovernorStdClock =
    RateLimiter<u64, DashMapStateStore<u64>, MonotonicClock, NoOpMiddleware<std::time::Instant>>;

impl Keyed for GovernorStdClock {
    fn check(&self, key: u64) -> bool {
        self.check_key(&key).is_ok()
    }
}

fn ours_with(per_second: f64, burst: u32) -> KeyedBuckets {
    KeyedBuckets::new(Shape::new(per_second, burst, "rate").expect("a valid shape"))
}

fn ours() -> KeyedBuckets {
    ours_with(f64::from(PER_SECOND), BURST)
}

fn governor_with(quota: Quota) -> DefaultKeyedRateLimiter<u64> {
    RateLimiter::keyed(quota)
}

fn nonzero(n: u32) -> NonZeroU32 {
    NonZeroU32::new(n).expect("not zero")
}

fn governor() -> DefaultKeyedRateLimiter<u64> {
    governor_with(Quota::per_second(nonzero(PER_SECOND)).allow_burst(nonzero(BURST)))
}

fn governor_std_clock() -> GovernorStdClock {
    let quota = Quota::per_second(nonzero(PER_SECOND)).allow_burst(nonzero(BURST));
    RateLimiter::dashmap_with_clock(quota, MonotonicClock)
}

/// Keys drawn per sequence (a power of two, to wrap with a mask).
const DRAWS: usize = 1 << 20;

/// `DRAWS` keys from `0..population`: uniform, or nine in ten from the hottest 1%.
fn keys(population: u64, skewed: bool, seed: u64) -> Vec<u64> {
    let mut rng = fastrand::Rng::with_seed(seed);
    let hot = (population / 100).max(1);
    (0..DRAWS)
        .map(
            |_| {
                if skewed && rng.u8(0..10) != 0 { rng.u64(0..hot) } else { rng.u64(0..population) }
            },
        )
        .collect()
}

/// Each thread's time for `iters` checks, `threads` threads at once on one limiter.
fn run(limiter: &dyn Keyed, keys: &[u64], iters: u64, threads: usize, offset: usize) -> Duration {
    let mask = keys.len() - 1;
    let check = |start: usize| {
        let began = Instant::now();
        for i in 0..iters as usize {
            black_box(limiter.check(keys[(start + i) & mask]));
        }
        began.elapsed()
    };
    if threads == 1 {
        return check(offset);
    }
    let barrier = Barrier::new(threads);
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let (barrier, check) = (&barrier, &check);
                scope.spawn(move || {
                    barrier.wait();
                    check(offset + t * (keys.len() / threads))
                })
            })
            .collect();
        let times = handles.into_iter().map(|h| h.join().expect("no panic"));
        times.max().unwrap_or_default()
    })
}

/// What reading each one's clock costs alone: ours reads tokio's `Instant` (std's outside a
/// paused test runtime), governor its default clock (`quanta`).
fn clock_cost(c: &mut Criterion) {
    let mut group = c.benchmark_group("keyed_rate/clock");
    group.warm_up_time(Duration::from_millis(500));
    group.measurement_time(Duration::from_secs(1));
    let origin = tokio::time::Instant::now();
    group.bench_function("millpond (tokio Instant::elapsed)", |b| {
        b.iter(|| black_box(origin.elapsed()));
    });
    let std_origin = Instant::now();
    group.bench_function("std Instant::elapsed", |b| b.iter(|| black_box(std_origin.elapsed())));
    let clock = DefaultClock::default();
    group.bench_function("governor (DefaultClock::now)", |b| b.iter(|| black_box(clock.now())));
    group.finish();
}

fn check_cost(c: &mut Criterion) {
    for threads in [1, 2] {
        for skewed in [false, true] {
            let shape = if skewed { "skewed" } else { "uniform" };
            let mut group = c.benchmark_group(format!("keyed_rate/{threads}t/{shape}"));
            group.warm_up_time(Duration::from_millis(500));
            group.measurement_time(Duration::from_secs(1));
            group.sample_size(20);
            for population in [100u64, 10_000, 1_000_000] {
                let keys = keys(population, skewed, population);
                let contenders: [(&str, Box<dyn Keyed>); 4] = [
                    ("millpond", Box::new(ours())),
                    ("millpond-sharded", Box::new(Sharded::new(f64::from(PER_SECOND), BURST))),
                    ("governor", Box::new(governor())),
                    ("governor-std-clock", Box::new(governor_std_clock())),
                ];
                for (name, limiter) in contenders {
                    (0..population).for_each(|key| {
                        limiter.check(key);
                    });
                    let mut offset = 0;
                    group.bench_function(format!("{name}/{population}"), |b| {
                        b.iter_custom(|iters| {
                            offset = (offset + iters as usize) & (DRAWS - 1);
                            run(&*limiter, &keys, iters, threads, offset)
                        });
                    });
                }
            }
            group.finish();
        }
    }
}

/// Live bytes taken by `make` and then one check of each key in `keys`.
fn weigh<L: Keyed>(make: impl FnOnce() -> L, keys: std::ops::Range<u64>) -> (L, usize) {
    let before = live_bytes();
    let limiter = make();
    keys.for_each(|key| {
        black_box(limiter.check(key));
    });
    (limiter, live_bytes() - before + std::mem::size_of::<L>())
}

fn memory() {
    println!("\nMemory per key: live bytes after N distinct keys are checked once, over N");
    println!("(one token an hour, burst 10, so that no bucket is full again and swept)");
    println!("| keys | millpond | millpond-sharded | governor |");
    println!("|---:|---:|---:|---:|");
    let hourly = 1.0 / 3600.0;
    let slow = Quota::with_period(Duration::from_secs(3600)).expect("not zero");
    for n in [10_000u64, 100_000, 1_000_000] {
        let per_key = |bytes: usize| bytes as f64 / n as f64;
        let (_, ours) = weigh(|| ours_with(hourly, BURST), 0..n);
        let (_, sharded) = weigh(|| Sharded::new(hourly, BURST), 0..n);
        let (_, gov) = weigh(|| governor_with(slow.allow_burst(nonzero(BURST))), 0..n);
        println!(
            "| {n} | {:.1} B | {:.1} B | {:.1} B |",
            per_key(ours),
            per_key(sharded),
            per_key(gov)
        );
    }

    println!(
        "\nWhen keys go idle: live bytes, 1,000,000 distinct keys checked once each at 100/s,"
    );
    println!("burst 10 (each bucket is full again 10 ms after its check)");
    println!("| step | millpond | millpond-sharded | governor (`len()`) |");
    println!("|---|---:|---:|---:|");
    let n = 1_000_000;
    let idle = Duration::from_millis(200);
    // Ours: the checks, a pause, then as many new keys again.
    let ours_steps = |make: &dyn Fn() -> Box<dyn Keyed>| {
        let base = live_bytes();
        let limiter = make();
        (0..n).for_each(|key| {
            black_box(limiter.check(key));
        });
        let first = live_bytes() - base;
        std::thread::sleep(idle);
        let idle = live_bytes() - base;
        (n..2 * n).for_each(|key| {
            black_box(limiter.check(key));
        });
        [first, idle, live_bytes() - base]
    };
    let ours = ours_steps(&|| Box::new(ours()));
    let sharded = ours_steps(&|| Box::new(Sharded::new(f64::from(PER_SECOND), BURST)));
    let base = live_bytes();
    let gov = governor();
    (0..n).for_each(|key| {
        black_box(gov.check(key));
    });
    let gov_first = (live_bytes() - base, gov.len());
    std::thread::sleep(idle);
    let gov_idle = (live_bytes() - base, gov.len());
    let took = Instant::now();
    gov.retain_recent();
    let retain_took = took.elapsed();
    let gov_retained = (live_bytes() - base, gov.len());
    gov.shrink_to_fit();
    let gov_shrunk = (live_bytes() - base, gov.len());
    let rows = [
        ("1,000,000 keys checked", Some(ours[0]), Some(sharded[0]), Some(gov_first)),
        ("200 ms idle, nothing called", Some(ours[1]), Some(sharded[1]), Some(gov_idle)),
        ("governor: `retain_recent()`", None, None, Some(gov_retained)),
        ("governor: then `shrink_to_fit()`", None, None, Some(gov_shrunk)),
        ("ours: 1,000,000 more new keys", Some(ours[2]), Some(sharded[2]), None),
    ];
    let cell = |bytes: Option<usize>| bytes.map(|b| b.to_string()).unwrap_or_default();
    for (step, ours, sharded, gov) in rows {
        let gov = gov.map(|(bytes, len)| format!("{bytes} ({len})")).unwrap_or_default();
        println!("| {step} | {} | {} | {gov} |", cell(ours), cell(sharded));
    }
    println!("(governor's `retain_recent()` took {retain_took:.1?})");
}

/// Requests one key's bucket admits while `threads` threads ask as fast as they can for
/// `window`, starting from a full bucket.
fn admitted(limiter: &dyn Keyed, threads: usize, window: Duration) -> usize {
    let counted = AtomicUsize::new(0);
    let barrier = Barrier::new(threads);
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| {
                barrier.wait();
                let began = Instant::now();
                let mut mine = 0;
                while began.elapsed() < window {
                    mine += usize::from(limiter.check(7));
                }
                counted.fetch_add(mine, Ordering::Relaxed);
            });
        }
    });
    counted.into_inner()
}

fn precision() {
    let window = Duration::from_secs(1);
    println!("\nAdmitted for one key hammered for 1 s from a full bucket (quota: burst 10 + 100)");
    println!("| threads | millpond (3 runs) | millpond-sharded | governor |");
    println!("|---:|---|---|---|");
    let sharded = || Sharded::new(f64::from(PER_SECOND), BURST);
    for threads in [1, 2] {
        let ours: Vec<_> = (0..3).map(|_| admitted(&ours(), threads, window)).collect();
        let shard: Vec<_> = (0..3).map(|_| admitted(&sharded(), threads, window)).collect();
        let gov: Vec<_> = (0..3).map(|_| admitted(&governor(), threads, window)).collect();
        println!("| {threads} | {ours:?} | {shard:?} | {gov:?} |");
    }
}

fn main() {
    let mut criterion = Criterion::default().configure_from_args();
    clock_cost(&mut criterion);
    check_cost(&mut criterion);
    criterion.final_summary();
    let skip_tables = ["--list", "--test", "--profile-time"];
    if std::env::args().all(|arg| !skip_tables.contains(&arg.as_str())) {
        memory();
        precision();
    }
}
