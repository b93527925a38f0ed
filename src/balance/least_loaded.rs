//! The least loaded target: scanned, or the better of two random ones.

use super::{Balancer, Draw, Loads};
use crate::sync::{AtomicUsize, Ordering};

/// Picks the target with the least work in flight: the "least connections" of load balancers.
/// Ties go to the next target after the previous pick, so equal loads still rotate.
///
/// A pick reads every target's load, so it is linear in the number of targets; for many
/// targets, [`PowerOfTwo`] gets most of the benefit at constant cost.
///
/// ```
/// use millpond::balance::{Balancer, LeastLoaded};
///
/// let least = LeastLoaded::new();
/// assert_eq!(least.pick(&[4, 2, 9], None), 1);
/// ```
#[derive(Debug, Default)]
pub struct LeastLoaded {
    start: AtomicUsize,
}

impl LeastLoaded {
    /// A least-loaded strategy.
    pub fn new() -> Self {
        Self::default()
    }
}

impl Balancer for LeastLoaded {
    fn pick(&self, loads: &dyn Loads, _key: Option<u64>) -> usize {
        let count = loads.count();
        // Relaxed: the start only breaks ties fairly.
        let start = self.start.fetch_add(1, Ordering::Relaxed) % count;
        let mut best = start;
        let mut best_load = loads.load(start);
        for step in 1..count {
            if best_load == 0 {
                break;
            }
            let index = (start + step) % count;
            let load = loads.load(index);
            if load < best_load {
                best = index;
                best_load = load;
            }
        }
        best
    }
}

/// The power of two choices: draws two different targets at random and picks the less loaded.
/// Nearly as even as [`LeastLoaded`] at constant cost per pick, and concurrent dispatchers do not
/// all pile onto the one least-loaded target.
///
/// ```
/// use millpond::balance::{Balancer, PowerOfTwo};
///
/// let p2c = PowerOfTwo::with_seed(1);
/// // With two targets the two draws are both targets: the less loaded one wins.
/// assert_eq!(p2c.pick(&[7, 3], None), 1);
/// ```
#[derive(Debug)]
pub struct PowerOfTwo {
    draw: Draw,
}

impl Default for PowerOfTwo {
    fn default() -> Self {
        Self::new()
    }
}

impl PowerOfTwo {
    /// Two choices from a fresh seed.
    pub fn new() -> Self {
        Self { draw: Draw::fresh() }
    }

    /// Two choices from `seed`.
    pub fn with_seed(seed: u64) -> Self {
        Self { draw: Draw::new(seed) }
    }
}

impl Balancer for PowerOfTwo {
    fn pick(&self, loads: &dyn Loads, _key: Option<u64>) -> usize {
        let count = loads.count();
        if count == 1 {
            return 0;
        }
        let first = self.draw.below(count);
        // A second draw among the others, so the two are always different targets.
        let second = (first + 1 + self.draw.below(count - 1)) % count;
        if loads.load(second) < loads.load(first) { second } else { first }
    }
}
