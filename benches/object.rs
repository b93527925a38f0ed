//! Object pool checkout throughput beside other pool crates and the allocator.
//!
//! Every contender does the same work per operation: check out a 4 KiB `Vec<u8>`, write one
//! byte, give it back cleared (by the pool's reset hook where it has one, by hand otherwise).
//! With N threads each thread runs the loop `iters` times; the reported time is the wall time
//! divided by all operations (N × iters), so lower is better and perfect scaling on 2 cores
//! halves the 1-thread figure.
//!
//! Run: `cargo bench --bench object`.

use std::hint::black_box;
use std::sync::Barrier;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};

const SIZE: usize = 4096;
const THREADS: [usize; 3] = [1, 2, 8];

fn buffer() -> Vec<u8> {
    Vec::with_capacity(SIZE)
}

/// Runs `op` `iters` times on each of `threads` threads started together; returns wall time per
/// thread-iteration set, so criterion's per-iteration figure is wall time / all operations.
fn run_threads(threads: usize, iters: u64, op: impl Fn() + Sync) -> Duration {
    let barrier = Barrier::new(threads + 1);
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    barrier.wait();
                    for _ in 0..iters {
                        op();
                    }
                })
            })
            .collect();
        barrier.wait();
        let start = Instant::now();
        for worker in workers {
            worker.join().expect("benchmark thread panicked");
        }
        start.elapsed() / threads as u32
    })
}

struct VecAllocator;

impl opool::PoolAllocator<Vec<u8>> for VecAllocator {
    fn allocate(&self) -> Vec<u8> {
        buffer()
    }

    fn reset(&self, buffer: &mut Vec<u8>) {
        buffer.clear();
    }
}

// Each contender is written out in full rather than passed to a shared helper as a closure:
// routing the loop through such a helper changed millpond's code layout and cost it about 1 ns
// per operation (9.8 → 10.9 ns), which would measure the harness, not the pool.
fn object_pools(c: &mut Criterion) {
    let mut group = c.benchmark_group("object");
    group.throughput(Throughput::Elements(1));
    for threads in THREADS {
        let millpond = millpond::object::ObjectPool::builder(buffer)
            .reset(Vec::clear)
            .build()
            .expect("valid configuration");
        group.bench_function(BenchmarkId::new("millpond", threads), |b| {
            b.iter_custom(|iters| {
                run_threads(threads, iters, || {
                    let mut buffer = millpond.get();
                    buffer.push(1);
                    black_box(&mut *buffer);
                })
            });
        });

        let object_pool = object_pool::Pool::new(threads, buffer);
        group.bench_function(BenchmarkId::new("object-pool", threads), |b| {
            b.iter_custom(|iters| {
                run_threads(threads, iters, || {
                    let mut buffer = object_pool.pull(buffer);
                    buffer.push(1);
                    black_box(&mut *buffer);
                    buffer.clear();
                })
            });
        });

        let linear = lockfree_object_pool::LinearObjectPool::new(buffer, Vec::clear);
        group.bench_function(BenchmarkId::new("lockfree-linear", threads), |b| {
            b.iter_custom(|iters| {
                run_threads(threads, iters, || {
                    let mut buffer = linear.pull();
                    buffer.push(1);
                    black_box(&mut *buffer);
                })
            });
        });

        let spin = lockfree_object_pool::SpinLockObjectPool::new(buffer, Vec::clear);
        group.bench_function(BenchmarkId::new("lockfree-spinlock", threads), |b| {
            b.iter_custom(|iters| {
                run_threads(threads, iters, || {
                    let mut buffer = spin.pull();
                    buffer.push(1);
                    black_box(&mut *buffer);
                })
            });
        });

        let opool = opool::Pool::new(64, VecAllocator);
        group.bench_function(BenchmarkId::new("opool", threads), |b| {
            b.iter_custom(|iters| {
                run_threads(threads, iters, || {
                    let mut buffer = opool.get();
                    buffer.push(1);
                    black_box(&mut *buffer);
                })
            });
        });

        let slab: sharded_slab::Pool<Vec<u8>> = sharded_slab::Pool::new();
        group.bench_function(BenchmarkId::new("sharded-slab", threads), |b| {
            b.iter_custom(|iters| {
                run_threads(threads, iters, || {
                    // sharded-slab's pool hands out a key; `clear` returns the slot, and
                    // `Vec`'s `Clear` keeps the capacity, as a reset hook would.
                    let key = slab
                        .create_with(|buffer| {
                            buffer.reserve(SIZE);
                            buffer.push(1);
                            black_box(&mut *buffer);
                        })
                        .expect("the slab has room");
                    slab.clear(key);
                })
            });
        });

        group.bench_function(BenchmarkId::new("malloc", threads), |b| {
            b.iter_custom(|iters| {
                run_threads(threads, iters, || {
                    let mut buffer = buffer();
                    buffer.push(1);
                    black_box(&mut buffer);
                })
            });
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = object_pools
}
criterion_main!(benches);
