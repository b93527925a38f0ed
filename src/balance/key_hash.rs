//! The same target for the same key.

use super::{Balancer, Loads, RoundRobin};

/// Sends every piece of work with the same key to the same target, by rendezvous (highest
/// random weight) hashing: each target scores the key, the highest score wins.
///
/// When the number of targets changes from `n` to `n + 1`, only the keys the new target wins
/// move (about `1/(n+1)` of them), and removing a target moves only its own keys. Work without a
/// key goes round-robin. A pick is linear in the number of targets.
///
/// ```
/// use millpond::balance::{Balancer, KeyHash};
///
/// let hash = KeyHash::new();
/// let loads = [0usize; 8];
/// let user = 42;
/// assert_eq!(hash.pick(&loads, Some(user)), hash.pick(&loads, Some(user)));
/// ```
#[derive(Debug, Default)]
pub struct KeyHash {
    unkeyed: RoundRobin,
}

impl KeyHash {
    /// A key hash with round-robin for unkeyed work.
    pub fn new() -> Self {
        Self::default()
    }

    /// The target `key` maps to among `targets` targets (`targets > 0`).
    pub fn target(key: u64, targets: usize) -> usize {
        (0..targets).max_by_key(|target| score(key, *target as u64)).unwrap_or(0)
    }
}

/// A well-mixed 64-bit score of (key, target): splitmix64's finaliser over both. The target with
/// the highest score owns the key, so dropping a target from a set moves only its own keys.
pub(crate) fn score(key: u64, target: u64) -> u64 {
    let mut z = key ^ target.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl Balancer for KeyHash {
    fn reads_loads(&self) -> bool {
        false
    }

    fn pick(&self, loads: &dyn Loads, key: Option<u64>) -> usize {
        match key {
            Some(key) => Self::target(key, loads.count()),
            None => self.unkeyed.pick(loads, None),
        }
    }
}
