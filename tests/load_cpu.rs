//! The CPU sampler: smoothing, a breaker held open past a threshold and released after the
//! cooling time, low-priority work refused by a worker pool, all driven by a scripted source on
//! tokio's paused clock; and one test that burns real CPU and watches the process's usage rise.
#![allow(clippy::disallowed_types)]

use std::io;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use millpond::breaker::{BreakerState, CircuitBreaker};
use millpond::exec::{Priority, SubmitError, WorkerPool};
use millpond::load::{CpuReading, CpuSampler, CpuSource, ProcessCpu};

const TICK: Duration = Duration::from_millis(100);

/// A source whose usage the test sets: each read adds `share` of one tick's available time.
#[derive(Clone, Default)]
struct Scripted {
    state: Arc<Mutex<(f64, CpuReading)>>,
}

impl Scripted {
    fn set(&self, share: f64) {
        self.state.lock().unwrap().0 = share;
    }
}

impl CpuSource for Scripted {
    fn read(&mut self) -> io::Result<CpuReading> {
        let mut state = self.state.lock().unwrap();
        let share = state.0;
        let reading = &mut state.1;
        let available = reading.available.unwrap_or_default() + TICK;
        reading.used += TICK.mul_f64(share);
        reading.available = Some(available);
        Ok(*reading)
    }
}

/// Lets the sampler take `ticks` readings.
async fn run_for(ticks: u32) {
    for _ in 0..ticks {
        tokio::time::sleep(TICK).await;
    }
    tokio::task::yield_now().await;
}

#[tokio::test(start_paused = true)]
async fn the_usage_is_smoothed_and_a_breaker_is_held_open_past_the_threshold() {
    let source = Scripted::default();
    let cpu = CpuSampler::builder()
        .interval(TICK)
        .smoothing(0.5)
        .cooling(Duration::from_millis(300))
        .source(source.clone())
        .build()
        .unwrap();
    let breaker = Arc::new(CircuitBreaker::builder().build().unwrap());
    cpu.hold_open_above(breaker.clone(), 0.9);

    source.set(0.2);
    run_for(3).await;
    assert!((cpu.usage() - 0.2).abs() < 1e-9, "{}", cpu.usage());
    source.set(1.0);
    run_for(1).await;
    assert!((cpu.usage() - 0.6).abs() < 1e-9, "half of one reading enters: {}", cpu.usage());
    assert_eq!(breaker.state(), BreakerState::Closed, "0.6 is below 0.9");
    run_for(3).await;
    assert!(cpu.is_above(0.9));
    assert_eq!(breaker.state(), BreakerState::HeldOpen);

    // Below the threshold again, it stays held for the cooling time, then is released.
    source.set(0.0);
    run_for(2).await;
    assert!(!cpu.is_above(0.9));
    assert_eq!(breaker.state(), BreakerState::HeldOpen, "still cooling");
    run_for(4).await;
    assert_eq!(breaker.state(), BreakerState::Closed);
}

#[tokio::test(start_paused = true)]
async fn a_worker_pool_refuses_low_priority_work_while_the_cpu_is_busy() {
    let source = Scripted::default();
    let cpu =
        CpuSampler::builder().interval(TICK).smoothing(1.0).source(source.clone()).build().unwrap();
    let pool = WorkerPool::builder().workers(2).overload_cpu(cpu.clone(), 0.9).build().unwrap();
    source.set(0.95);
    run_for(2).await;
    let refused = pool.submit_with(Priority::Low, async {}).await;
    assert!(matches!(refused, Err(SubmitError::Overloaded(_))));
    pool.submit_with(Priority::High, async {}).await.unwrap().await.unwrap();
    source.set(0.3);
    run_for(2).await;
    pool.submit_with(Priority::Low, async {}).await.unwrap().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn bad_settings_are_refused_naming_the_field() {
    let field = |result: Result<CpuSampler, millpond::BuildError>| result.unwrap_err().field();
    assert_eq!(field(CpuSampler::builder().interval(Duration::ZERO).build()), Some("interval"));
    assert_eq!(field(CpuSampler::builder().smoothing(0.0).build()), Some("smoothing"));
    assert_eq!(field(CpuSampler::builder().smoothing(f64::NAN).build()), Some("smoothing"));
    let cpu = CpuSampler::builder().source(Scripted::default()).build().unwrap();
    let pool = WorkerPool::builder().overload_cpu(cpu, 1.5).build();
    assert_eq!(pool.unwrap_err().field(), Some("overload_cpu"));
}

/// Real CPU: two threads spin, and this process's usage (out of the machine's CPUs) climbs.
#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn burning_cpu_shows_in_the_process_usage() {
    let cpus = std::thread::available_parallelism().map_or(1, usize::from);
    let cpu = CpuSampler::builder()
        .interval(Duration::from_millis(100))
        .smoothing(1.0)
        .source(ProcessCpu)
        .build()
        .unwrap();
    let idle = {
        while cpu.samples() < 2 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        cpu.usage()
    };
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let burners: Vec<_> = (0..cpus)
        .map(|_| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut spins = 0u64;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    spins = std::hint::black_box(spins.wrapping_add(1));
                }
            })
        })
        .collect();
    // Each reading covers one interval; wait for three taken while the threads burn.
    let start = cpu.samples();
    let mut busiest: f64 = 0.0;
    while cpu.samples() < start + 4 {
        tokio::time::sleep(Duration::from_millis(20)).await;
        busiest = busiest.max(cpu.usage());
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for burner in burners {
        burner.join().unwrap();
    }
    // One thread per CPU spinning is the whole machine, but other processes may share the
    // cores (a build beside the tests gives each spinning thread a third of a core or less):
    // ask for a fifth of the machine above what the process used idle.
    assert!(busiest > idle + 0.2, "idle {idle:.2}, burning {busiest:.2}");
}
