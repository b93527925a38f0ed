//! Targets in proportion to their weights: smoothly interleaved, or at random.

use super::{Balancer, Draw, Loads};
use crate::sync::Mutex;

/// nginx's smooth weighted round-robin: over every `Σ weights` picks each target is picked
/// exactly `weight` times, and the picks are interleaved (weights 5, 1, 1 give
/// `a a b a c a a`, not `a a a a a b c`). A target with weight 0 is never picked.
///
/// Each pick takes a short lock and is linear in the number of targets.
///
/// ```
/// use millpond::balance::{Balancer, WeightedRoundRobin};
///
/// let wrr = WeightedRoundRobin::new(&[5, 1, 1]);
/// let loads = [0usize; 3];
/// let picks: Vec<_> = (0..7).map(|_| wrr.pick(&loads, None)).collect();
/// assert_eq!(picks, [0, 0, 1, 0, 2, 0, 0]);
/// ```
#[derive(Debug)]
pub struct WeightedRoundRobin {
    weights: Vec<i64>,
    total: i64,
    current: Mutex<Vec<i64>>,
}

impl WeightedRoundRobin {
    /// A rotation over targets with these weights (one per target, not all zero).
    pub fn new(weights: &[u32]) -> Self {
        let weights: Vec<i64> = weights.iter().map(|weight| i64::from(*weight)).collect();
        let total = weights.iter().sum();
        Self { current: Mutex::new(vec![0; weights.len()]), weights, total }
    }
}

impl Balancer for WeightedRoundRobin {
    fn reads_loads(&self) -> bool {
        false
    }

    fn pick(&self, loads: &dyn Loads, _key: Option<u64>) -> usize {
        let count = loads.count().min(self.weights.len());
        let mut current = self.current.lock();
        let mut best = 0;
        for index in 0..count {
            current[index] += self.weights[index];
            if current[index] > current[best] {
                best = index;
            }
        }
        current[best] -= self.total;
        best
    }
}

/// Picks at random in proportion to the weights. Cheaper to share than
/// [`WeightedRoundRobin`] (no lock: one draw and a binary search), less even over few picks.
///
/// ```
/// use millpond::balance::{Balancer, WeightedRandom};
///
/// let weighted = WeightedRandom::with_seed(&[0, 1], 3);
/// let loads = [0usize; 2];
/// assert_eq!(weighted.pick(&loads, None), 1); // weight 0 is never picked
/// ```
#[derive(Debug)]
pub struct WeightedRandom {
    /// Running sums of the weights: target `i` owns draws in `cumulative[i-1]..cumulative[i]`.
    cumulative: Vec<u64>,
    draw: Draw,
}

impl WeightedRandom {
    /// Weighted random picks from a fresh seed.
    pub fn new(weights: &[u32]) -> Self {
        Self::with_draw(weights, Draw::fresh())
    }

    /// Weighted random picks from `seed`.
    pub fn with_seed(weights: &[u32], seed: u64) -> Self {
        Self::with_draw(weights, Draw::new(seed))
    }

    fn with_draw(weights: &[u32], draw: Draw) -> Self {
        let cumulative = weights
            .iter()
            .scan(0u64, |sum, weight| {
                *sum += u64::from(*weight);
                Some(*sum)
            })
            .collect();
        Self { cumulative, draw }
    }
}

impl Balancer for WeightedRandom {
    fn reads_loads(&self) -> bool {
        false
    }

    fn pick(&self, loads: &dyn Loads, _key: Option<u64>) -> usize {
        let total = self.cumulative.last().copied().unwrap_or(0);
        if total == 0 {
            return 0;
        }
        let point = ((u128::from(self.draw.next()) * u128::from(total)) >> 64) as u64;
        // The first target whose running sum passes the point: zero weights are skipped.
        let index = self.cumulative.partition_point(|sum| *sum <= point);
        index.min(loads.count() - 1)
    }
}
