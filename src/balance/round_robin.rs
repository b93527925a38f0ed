//! Each target in turn.

use super::{Balancer, Loads};
use crate::sync::{AtomicUsize, Ordering};

/// Picks each target in turn: the cheapest strategy, and the fairest when pieces of work cost
/// about the same.
///
/// ```
/// use millpond::balance::{Balancer, RoundRobin};
///
/// let rr = RoundRobin::new();
/// let loads = [0usize; 3];
/// let picks: Vec<_> = (0..4).map(|_| rr.pick(&loads, None)).collect();
/// assert_eq!(picks, [0, 1, 2, 0]);
/// ```
#[derive(Debug, Default)]
pub struct RoundRobin {
    next: AtomicUsize,
}

impl RoundRobin {
    /// A rotation starting at target 0.
    pub fn new() -> Self {
        Self::default()
    }
}

impl Balancer for RoundRobin {
    fn reads_loads(&self) -> bool {
        false
    }

    #[inline]
    fn pick(&self, loads: &dyn Loads, _key: Option<u64>) -> usize {
        // Relaxed: the counter only spreads picks; nothing is published through it.
        self.next.fetch_add(1, Ordering::Relaxed) % loads.count()
    }
}
