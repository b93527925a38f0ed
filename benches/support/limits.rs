//! What the two limit benches share: a limit that never moves, and a percentile.

use std::time::Duration;

use millpond::limit::{LimitAlgorithm, Sample};

/// A limit that never moves: the static contenders.
#[derive(Debug)]
pub struct Fixed(pub usize);

impl LimitAlgorithm for Fixed {
    fn initial(&self) -> usize {
        self.0
    }

    fn update(&mut self, _: &Sample) -> usize {
        self.0
    }
}

/// The `p` quantile of `latencies` (sorted in place); zero for none.
pub fn percentile(latencies: &mut [Duration], p: f64) -> Duration {
    if latencies.is_empty() {
        return Duration::ZERO;
    }
    latencies.sort_unstable();
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss, clippy::cast_precision_loss)]
    let index = ((latencies.len() - 1) as f64 * p).round() as usize;
    latencies[index]
}
