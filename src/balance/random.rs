//! A uniformly random target.

use super::{Balancer, Draw, Loads};

/// Picks a target uniformly at random. No rotation is shared between picks, so it suits many
/// independent dispatchers; over few picks it is less even than [`RoundRobin`](super::RoundRobin).
///
/// ```
/// use millpond::balance::{Balancer, RandomPick};
///
/// let random = RandomPick::with_seed(7);
/// let loads = [0usize; 4];
/// assert!(random.pick(&loads, None) < 4);
/// ```
#[derive(Debug)]
pub struct RandomPick {
    draw: Draw,
}

impl Default for RandomPick {
    fn default() -> Self {
        Self::new()
    }
}

impl RandomPick {
    /// Random picks from a fresh seed.
    pub fn new() -> Self {
        Self { draw: Draw::fresh() }
    }

    /// Random picks from `seed`: the same seed gives the same sequence of picks.
    pub fn with_seed(seed: u64) -> Self {
        Self { draw: Draw::new(seed) }
    }
}

impl Balancer for RandomPick {
    fn reads_loads(&self) -> bool {
        false
    }

    #[inline]
    fn pick(&self, loads: &dyn Loads, _key: Option<u64>) -> usize {
        self.draw.below(loads.count())
    }
}
