//! The local short-circuit: keys the server refused lately, and until when.
//!
//! A refusal from the server says "`n` admissions of this key fit again in `retry_after`". Until
//! then the server would refuse that key again for `n` or more: GCRA writes nothing on a
//! refusal, and admissions elsewhere only push the key's theoretical arrival time further on. So
//! a request of at least `n` before the deadline can be refused here, with no round trip, and
//! the answer is the one the server would give. (A smaller request may fit sooner: it goes to
//! the server.)
//!
//! The deadline is taken from the local clock at the moment the request was *sent*, which is no
//! later than the server's reading of its own clock, so a local refusal never outlasts the
//! server's. Clock rates may differ a little between the two machines; over a retry-after of
//! seconds that is microseconds.
//!
//! # Memory
//!
//! At most `capacity` keys are kept. When the map is full, a new refusal takes the place of the
//! entry with the earliest deadline among a few sampled ones (an expired one if the sample has
//! one): O(1), and it only ever forgets, which costs a round trip, never a wrong answer. Expired
//! entries are also dropped when their key is looked up, and by a full sweep once per
//! `capacity` insertions, so the sweep costs O(1) per insertion amortised and never runs on
//! every call (the cliff a fixed-size sweep has once the map is full of live keys).

use std::collections::HashMap;
use std::time::Duration;

use tokio::time::Instant;

/// Entries looked at to pick one to replace when the map is full.
const SAMPLE: usize = 8;

#[derive(Debug, Clone, Copy)]
struct Refusal {
    /// The server refused `n` admissions, and would until `until`.
    until: Instant,
    n: u32,
}

/// Keys refused lately, at most `capacity` of them.
#[derive(Debug)]
pub(super) struct Refusals {
    map: HashMap<Box<[u8]>, Refusal>,
    capacity: usize,
    inserts_since_sweep: usize,
}

impl Refusals {
    pub(super) fn new(capacity: usize) -> Self {
        Self { map: HashMap::new(), capacity, inserts_since_sweep: 0 }
    }

    /// How long `key` stays refused for a request of `n` at `now`, if it is known to be.
    pub(super) fn refused(&mut self, key: &[u8], n: u32, now: Instant) -> Option<Duration> {
        let refusal = *self.map.get(key)?;
        if refusal.until <= now {
            self.map.remove(key);
            return None;
        }
        (n >= refusal.n).then(|| refusal.until - now)
    }

    /// Remembers that the server refused `n` admissions of `key` until `until`.
    pub(super) fn remember(&mut self, key: &[u8], n: u32, until: Instant, now: Instant) {
        if self.capacity == 0 || until <= now {
            return;
        }
        if let Some(refusal) = self.map.get_mut(key) {
            // The newest answer is the truest; a smaller `n` covers more requests.
            *refusal = Refusal { until, n };
            return;
        }
        self.inserts_since_sweep += 1;
        if self.inserts_since_sweep >= self.capacity {
            self.map.retain(|_, refusal| refusal.until > now);
            self.inserts_since_sweep = 0;
        }
        if self.map.len() >= self.capacity {
            let oldest = self
                .map
                .iter()
                .take(SAMPLE)
                .min_by_key(|(_, refusal)| refusal.until)
                .map(|(key, _)| key.clone());
            if let Some(oldest) = oldest {
                self.map.remove(&oldest);
            }
        }
        self.map.insert(key.into(), Refusal { until, n });
    }

    /// Forgets `key`: the server has just admitted it.
    pub(super) fn forget(&mut self, key: &[u8]) {
        if !self.map.is_empty() {
            self.map.remove(key);
        }
    }

    pub(super) fn len(&self) -> usize {
        self.map.len()
    }
}

#[cfg(all(test, not(millpond_loom)))]
mod tests {
    use super::*;

    fn at(start: Instant, ms: u64) -> Instant {
        start + Duration::from_millis(ms)
    }

    #[test]
    fn a_key_is_refused_until_its_deadline_for_as_many_or_more() {
        let t0 = Instant::now();
        let mut refusals = Refusals::new(4);
        refusals.remember(b"user", 2, at(t0, 100), t0);
        assert_eq!(refusals.refused(b"user", 2, at(t0, 40)), Some(Duration::from_millis(60)));
        assert_eq!(refusals.refused(b"user", 3, at(t0, 40)), Some(Duration::from_millis(60)));
        assert_eq!(refusals.refused(b"user", 1, at(t0, 40)), None, "a smaller request may fit");
        assert_eq!(refusals.refused(b"other", 2, at(t0, 40)), None);
        assert_eq!(refusals.refused(b"user", 2, at(t0, 100)), None, "the deadline passed");
        assert_eq!(refusals.len(), 0, "an expired entry goes when looked up");
    }

    #[test]
    fn an_admission_forgets_the_key() {
        let t0 = Instant::now();
        let mut refusals = Refusals::new(4);
        refusals.remember(b"user", 1, at(t0, 100), t0);
        refusals.forget(b"user");
        assert_eq!(refusals.refused(b"user", 1, t0), None);
    }

    #[test]
    fn the_map_never_holds_more_than_its_capacity() {
        let t0 = Instant::now();
        let mut refusals = Refusals::new(16);
        for key in 0..10_000_u32 {
            refusals.remember(&key.to_le_bytes(), 1, at(t0, 1_000 + u64::from(key)), t0);
            assert!(refusals.len() <= 16);
        }
        // The newest is always kept.
        assert!(refusals.refused(&9_999_u32.to_le_bytes(), 1, t0).is_some());
    }

    #[test]
    fn expired_entries_are_swept_and_a_zero_capacity_keeps_nothing() {
        let t0 = Instant::now();
        let mut refusals = Refusals::new(8);
        for key in 0..8_u32 {
            refusals.remember(&key.to_le_bytes(), 1, at(t0, 10), t0);
        }
        for key in 8..16_u32 {
            refusals.remember(&key.to_le_bytes(), 1, at(t0, 1_000), at(t0, 20));
        }
        for key in 8..16_u32 {
            assert!(refusals.refused(&key.to_le_bytes(), 1, at(t0, 20)).is_some(), "{key}");
        }
        let mut none = Refusals::new(0);
        none.remember(b"user", 1, at(t0, 10), t0);
        assert_eq!(none.len(), 0);
    }
}
