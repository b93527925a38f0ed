//! Our duration histogram (`src/histogram.rs`, 25% buckets) beside `hdrhistogram` at 2 and 3
//! significant figures: the cost of one record, the memory of one instance, and the worst
//! relative error of a reported quantile.
//!
//! Every contender records the same durations, converted to microseconds as the pools record
//! them, drawn log-uniformly from 1 µs to 10 s (the range of pool waits, holds and creations).
//! hdrhistogram is bounded at one hour of microseconds, as the pools' values never exceed that
//! in practice (ours covers every `u64` at no extra cost).
//!
//! `cargo bench --bench histogram` prints the memory and precision table after criterion's
//! timings; `docs/benchmarks.md` has the figures.
// The bench's counting allocator is outside the library's loom facade.
#![allow(dead_code, clippy::disallowed_types)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use criterion::{Criterion, Throughput};
use hdrhistogram::Histogram;

/// Our histogram, compiled into the bench from its source (its `record` is crate-private).
#[allow(unused_imports)]
#[path = "../src/histogram.rs"]
mod ours;

use ours::DurationHistogram;

/// The system allocator, counting the bytes allocated, to weigh one instance of each histogram.
struct Counting;

static ALLOCATED: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is passed to the system allocator unchanged; the count is only a side note.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATED.fetch_add(layout.size(), Ordering::Relaxed);
        // SAFETY: the caller's contract, passed on.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller's contract, passed on.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// The bytes one value made by `make` takes: its own size and what it allocated.
fn weigh<T>(make: impl FnOnce() -> T) -> usize {
    let before = ALLOCATED.load(Ordering::Relaxed);
    let value = black_box(make());
    let allocated = ALLOCATED.load(Ordering::Relaxed) - before;
    drop(value);
    std::mem::size_of::<T>() + allocated
}

/// One hour, in microseconds: hdrhistogram's upper bound here.
const HIGHEST: u64 = 3_600_000_000;
/// Durations recorded per batch.
const BATCH: usize = 4096;

/// `n` durations, log-uniform between 1 µs and 10 s, from a fixed seed.
fn durations(n: usize, seed: u64) -> Vec<Duration> {
    let mut rng = fastrand::Rng::with_seed(seed);
    let (low, high) = (0f64, (10_000_000f64).ln());
    (0..n)
        .map(|_| {
            let micros = (low + rng.f64() * (high - low)).exp();
            Duration::from_nanos((micros * 1_000.0) as u64)
        })
        .collect()
}

fn micros(value: Duration) -> u64 {
    value.as_secs().saturating_mul(1_000_000).saturating_add(u64::from(value.subsec_micros()))
}

fn hdr(sigfig: u8) -> Histogram<u64> {
    Histogram::new_with_bounds(1, HIGHEST, sigfig).expect("valid bounds")
}

fn record_cost(c: &mut Criterion) {
    let values = durations(BATCH, 7);
    let mut group = c.benchmark_group("histogram/record");
    group.throughput(Throughput::Elements(BATCH as u64));
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(3));

    let mut histogram = DurationHistogram::default();
    group.bench_function("millpond (25%)", |b| {
        b.iter(|| {
            for value in &values {
                histogram.record(black_box(*value));
            }
        });
    });
    black_box(histogram.count());

    for sigfig in [2, 3] {
        let mut histogram = hdr(sigfig);
        group.bench_function(format!("hdrhistogram ({sigfig} sig. fig.)"), |b| {
            b.iter(|| {
                for value in &values {
                    histogram.saturating_record(micros(black_box(*value)));
                }
            });
        });
        black_box(histogram.len());
    }
    group.finish();
}

/// The worst relative error of a reported quantile against the exact one, over several
/// samples and the quantiles dashboards show.
fn worst_error(report: impl Fn(&[Duration], f64) -> u64) -> f64 {
    let mut worst = 0f64;
    for seed in 0..20 {
        let mut values = durations(100_000, 1000 + seed);
        let reported: Vec<(f64, u64)> =
            [0.5, 0.9, 0.99, 0.999].iter().map(|&q| (q, report(&values, q))).collect();
        values.sort_unstable();
        for (q, reported) in reported {
            let rank = ((q * values.len() as f64).ceil() as usize).clamp(1, values.len());
            let exact = micros(values[rank - 1]).max(1) as f64;
            worst = worst.max((reported as f64 - exact).abs() / exact);
        }
    }
    worst
}

fn memory_and_precision() {
    println!("\nMemory of one instance, and worst relative error of p50/p90/p99/p99.9");
    println!("(100,000 log-uniform values in 1 µs..10 s, 20 samples)");
    println!("| histogram | bytes | worst quantile error |");
    println!("|---|---:|---:|");
    let ours_bytes = weigh(DurationHistogram::default);
    let ours_error = worst_error(|values, q| {
        let mut histogram = DurationHistogram::default();
        values.iter().for_each(|value| histogram.record(*value));
        micros(histogram.quantile(q))
    });
    println!("| millpond (25%) | {ours_bytes} | {:.2}% |", ours_error * 100.0);
    for sigfig in [2, 3] {
        let bytes = weigh(|| hdr(sigfig));
        let error = worst_error(|values, q| {
            let mut histogram = hdr(sigfig);
            values.iter().for_each(|value| histogram.saturating_record(micros(*value)));
            histogram.value_at_quantile(q)
        });
        println!("| hdrhistogram ({sigfig} sig. fig.) | {bytes} | {:.2}% |", error * 100.0);
    }
}

fn main() {
    let mut criterion = Criterion::default().configure_from_args();
    record_cost(&mut criterion);
    criterion.final_summary();
    let skip_tables = ["--list", "--test", "--profile-time"];
    if std::env::args().all(|arg| !skip_tables.contains(&arg.as_str())) {
        memory_and_precision();
    }
}
