//! Load-balancing strategies: which of N targets (workers, backends) gets the next piece of work.
//!
//! Every strategy is a small type behind one trait, [`Balancer`], so the worker pools of
//! [`crate::exec`] and anything else that spreads work over targets can take any of them, or one of
//! your own. [`Balance`] names the built-in ones for configuration.
//!
//! | strategy | picks | use it when |
//! |---|---|---|
//! | [`RoundRobin`] | each target in turn | tasks cost about the same; the cheapest pick |
//! | [`RandomPick`] | uniformly at random | many independent dispatchers, no shared rotation |
//! | [`WeightedRoundRobin`] | in turn, in proportion to weights, interleaved (nginx's smooth WRR) | targets differ in capacity and you want a steady, predictable mix |
//! | [`WeightedRandom`] | at random, in proportion to weights | as above, without shared state between picks |
//! | [`KeyHash`] | the same target for the same key (rendezvous hashing) | affinity: per-user order, per-shard caches; a change in the number of targets moves only the keys of the target that came or went |
//! | [`LeastLoaded`] | the target with the least work in flight | task costs vary widely ("least connections") |
//! | [`PowerOfTwo`] | the less loaded of two random targets | like least-loaded at constant cost per pick, and without herding onto one target |
//!
//! ```
//! use millpond::balance::{Balancer, LeastLoaded};
//!
//! let loads = [3, 0, 5];
//! assert_eq!(LeastLoaded::new().pick(&loads, None), 1);
//! ```

pub(crate) mod key_hash;
mod least_loaded;
mod random;
mod round_robin;
mod weighted;

use std::fmt;

pub use key_hash::KeyHash;
pub use least_loaded::{LeastLoaded, PowerOfTwo};
pub use random::RandomPick;
pub use round_robin::RoundRobin;
pub use weighted::{WeightedRandom, WeightedRoundRobin};

use crate::BuildError;
use crate::sync::Arc;

/// The current load of each target, as a strategy sees it.
///
/// Implemented for arrays and vectors of counts; pools implement it over their own counters so that a pick
/// reads them in place.
pub trait Loads {
    /// How many targets there are; strategies are only asked to pick when it is at least 1.
    fn count(&self) -> usize;

    /// The work in flight at target `index` (`index < count()`): queued plus running tasks for a
    /// worker, connections in use for a backend.
    fn load(&self, index: usize) -> usize;
}

impl<const N: usize> Loads for [usize; N] {
    fn count(&self) -> usize {
        N
    }

    fn load(&self, index: usize) -> usize {
        self[index]
    }
}

impl Loads for Vec<usize> {
    fn count(&self) -> usize {
        self.len()
    }

    fn load(&self, index: usize) -> usize {
        self[index]
    }
}

/// A load-balancing strategy.
///
/// `pick` returns an index below `loads.count()`, which callers guarantee is at least 1. A
/// strategy that cannot use a `key` ignores it; one that cannot use loads never reads them.
pub trait Balancer: Send + Sync + fmt::Debug {
    /// Picks the target for the next piece of work.
    fn pick(&self, loads: &dyn Loads, key: Option<u64>) -> usize;

    /// Whether `pick` reads loads. Pools skip keeping load counters for strategies that do not,
    /// which saves two atomic updates per task. Defaults to `true`.
    fn reads_loads(&self) -> bool {
        true
    }
}

/// The built-in strategies, by name, for configuration.
///
/// Weighted strategies carry one weight per target; the builder that receives the `Balance`
/// checks that there is one per target and that they are not all zero.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum Balance {
    /// [`RoundRobin`].
    RoundRobin,
    /// [`RandomPick`].
    Random,
    /// [`WeightedRoundRobin`] with these weights.
    WeightedRoundRobin(Vec<u32>),
    /// [`WeightedRandom`] with these weights.
    WeightedRandom(Vec<u32>),
    /// [`KeyHash`]; work without a key goes round-robin.
    KeyHash,
    /// [`LeastLoaded`].
    LeastLoaded,
    /// [`PowerOfTwo`].
    PowerOfTwo,
    /// A strategy of your own.
    Custom(Arc<dyn Balancer>),
}

impl Balance {
    /// Builds the strategy for `targets` targets.
    ///
    /// # Errors
    ///
    /// A [`BuildError`] naming `field` when weights do not match the targets one to one or are
    /// all zero.
    pub(crate) fn build(
        &self,
        targets: usize,
        field: &'static str,
    ) -> Result<Arc<dyn Balancer>, BuildError> {
        Ok(match self {
            Self::RoundRobin => Arc::new(RoundRobin::new()),
            Self::Random => Arc::new(RandomPick::new()),
            Self::WeightedRoundRobin(weights) => {
                Arc::new(WeightedRoundRobin::new(check_weights(weights, targets, field)?))
            }
            Self::WeightedRandom(weights) => {
                Arc::new(WeightedRandom::new(check_weights(weights, targets, field)?))
            }
            Self::KeyHash => Arc::new(KeyHash::new()),
            Self::LeastLoaded => Arc::new(LeastLoaded::new()),
            Self::PowerOfTwo => Arc::new(PowerOfTwo::new()),
            Self::Custom(balancer) => Arc::clone(balancer),
        })
    }
}

fn check_weights<'w>(
    weights: &'w [u32],
    targets: usize,
    field: &'static str,
) -> Result<&'w [u32], BuildError> {
    if weights.len() != targets {
        return Err(BuildError::invalid(
            field,
            weights,
            format!("needs one weight per target: {} weights for {targets} targets", weights.len()),
        ));
    }
    if weights.iter().all(|weight| *weight == 0) {
        return Err(BuildError::invalid(field, weights, "at least one weight must be above 0"));
    }
    Ok(weights)
}

/// A small, seedable, lock-free random source shared by the strategies that draw: one atomic add
/// per draw and a 64-bit mix (wyrand).
#[derive(Debug)]
pub(crate) struct Draw(crate::sync::AtomicU64);

impl Draw {
    pub(crate) fn new(seed: u64) -> Self {
        Self(crate::sync::AtomicU64::new(seed))
    }

    /// A seed that differs per call, for strategies made without one.
    pub(crate) fn fresh() -> Self {
        Self::new(fastrand::u64(..))
    }

    #[inline]
    pub(crate) fn next(&self) -> u64 {
        // Relaxed: the sequence only has to be different per draw, not ordered with anything.
        let state = self.0.fetch_add(0xa076_1d64_78bd_642f, crate::sync::Ordering::Relaxed)
            ^ 0xe703_7ed1_a0b4_28db;
        let wide = u128::from(state) * u128::from(state.wrapping_add(0xa076_1d64_78bd_642f));
        (wide as u64) ^ ((wide >> 64) as u64)
    }

    /// A draw below `bound` (`bound > 0`), without modulo bias worth mentioning at these sizes.
    #[inline]
    pub(crate) fn below(&self, bound: usize) -> usize {
        ((u128::from(self.next()) * bound as u128) >> 64) as usize
    }
}
