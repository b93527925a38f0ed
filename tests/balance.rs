//! Every balancing strategy's distribution on a fixed seed.

use millpond::balance::{
    Balancer, KeyHash, LeastLoaded, PowerOfTwo, RandomPick, RoundRobin, WeightedRandom,
    WeightedRoundRobin,
};

fn counts(balancer: &dyn Balancer, targets: usize, picks: usize) -> Vec<usize> {
    let loads = vec![0usize; targets];
    let mut counts = vec![0; targets];
    for _ in 0..picks {
        counts[balancer.pick(&loads, None)] += 1;
    }
    counts
}

#[test]
fn round_robin_is_exactly_even() {
    assert_eq!(counts(&RoundRobin::new(), 4, 4000), [1000; 4]);
}

#[test]
fn random_is_even_within_a_few_percent() {
    for count in counts(&RandomPick::with_seed(11), 4, 40_000) {
        assert!((9_500..=10_500).contains(&count), "{count}");
    }
    // The same seed gives the same picks.
    assert_eq!(
        counts(&RandomPick::with_seed(3), 5, 100),
        counts(&RandomPick::with_seed(3), 5, 100)
    );
}

#[test]
fn smooth_weighted_round_robin_is_exact_and_interleaved() {
    let wrr = WeightedRoundRobin::new(&[5, 1, 1]);
    assert_eq!(counts(&wrr, 3, 7_000), [5_000, 1_000, 1_000]);
    let loads = [0usize; 3];
    let cycle: Vec<usize> = (0..7).map(|_| wrr.pick(&loads, None)).collect();
    assert_eq!(cycle, [0, 0, 1, 0, 2, 0, 0], "interleaved, not five in a row");
    let with_zero = WeightedRoundRobin::new(&[2, 0, 1]);
    assert_eq!(counts(&with_zero, 3, 3_000), [2_000, 0, 1_000]);
}

#[test]
fn weighted_random_follows_the_weights() {
    let counts = counts(&WeightedRandom::with_seed(&[3, 1, 0], 5), 3, 40_000);
    assert!((29_000..=31_000).contains(&counts[0]), "{counts:?}");
    assert!((9_000..=11_000).contains(&counts[1]), "{counts:?}");
    assert_eq!(counts[2], 0);
}

#[test]
fn key_hash_is_stable_spreads_keys_and_moves_few_on_resize() {
    let hash = KeyHash::new();
    let loads = [0usize; 8];
    let mut spread = [0usize; 8];
    for key in 0..8_000u64 {
        let target = hash.pick(&loads, Some(key));
        assert_eq!(target, hash.pick(&loads, Some(key)));
        spread[target] += 1;
    }
    for count in spread {
        assert!((850..=1_150).contains(&count), "{spread:?}");
    }
    // Growing from 8 to 9 targets moves only keys to the new target, about 1/9 of them.
    let mut moved = 0;
    for key in 0..9_000u64 {
        let before = KeyHash::target(key, 8);
        let after = KeyHash::target(key, 9);
        if before != after {
            assert_eq!(after, 8, "key {key} moved between old targets");
            moved += 1;
        }
    }
    assert!((800..=1_200).contains(&moved), "{moved} of 9000 keys moved");
    // Without a key it goes round-robin.
    assert_eq!(counts(&hash, 4, 400), [100; 4]);
}

#[test]
fn least_loaded_picks_the_minimum_and_rotates_ties() {
    let least = LeastLoaded::new();
    assert_eq!(least.pick(&[5, 3, 9, 3], None) % 2, 1, "one of the two 3s");
    assert_eq!(counts(&least, 3, 300), [100; 3], "equal loads rotate");
}

/// Dispatches `picks` tasks of one unit each, finishing them in FIFO order after a backlog,
/// and returns the largest load any target reached.
fn peak_load(balancer: &dyn Balancer, targets: usize, picks: usize) -> usize {
    let mut loads = vec![0usize; targets];
    let mut in_flight = std::collections::VecDeque::new();
    let mut peak = 0;
    for step in 0..picks {
        let target = balancer.pick(&loads, None);
        loads[target] += 1;
        peak = peak.max(loads[target]);
        in_flight.push_back(target);
        // Target 0 is slow: its tasks finish at a third of the rate.
        if in_flight.len() > targets * 2 {
            let done = in_flight.pop_front().unwrap();
            if done != 0 || step % 3 == 0 {
                loads[done] -= 1;
            } else {
                in_flight.push_back(done);
            }
        }
    }
    peak
}

#[test]
fn load_aware_strategies_keep_a_slow_target_shorter_than_round_robin() {
    let round_robin = peak_load(&RoundRobin::new(), 4, 10_000);
    let least = peak_load(&LeastLoaded::new(), 4, 10_000);
    let two = peak_load(&PowerOfTwo::with_seed(9), 4, 10_000);
    assert!(least < round_robin, "least-loaded {least} vs round-robin {round_robin}");
    assert!(two < round_robin, "power of two {two} vs round-robin {round_robin}");
}

#[test]
fn power_of_two_never_picks_the_more_loaded_of_two() {
    let p2c = PowerOfTwo::with_seed(1);
    for _ in 0..100 {
        assert_eq!(p2c.pick(&[9, 2], None), 1);
    }
    // Among one idle and three busy targets, the idle one wins whenever it is drawn: half the time.
    let loads = [0usize, 5, 5, 5];
    let idle = (0..10_000).filter(|_| p2c.pick(&loads, None) == 0).count();
    assert!((4_700..=5_300).contains(&idle), "{idle}");
}
