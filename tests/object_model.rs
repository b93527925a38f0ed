//! A property test: random sequences of get, try_get, return, grow, take, trim and round trips
//! on other threads, checked after every step against a model that is a few counters, with
//! every value numbered so that none is ever handed out twice.
#![allow(clippy::disallowed_types)]

use std::collections::HashSet;

use millpond::object::{Object, ObjectPool};
use proptest::prelude::*;

const MAX_IDLE: usize = 5;
const MAX_TOTAL: usize = 8;
/// Values that grow past this are refused by `is_reusable`.
const TOO_BIG: usize = 4;

#[derive(Debug, Clone)]
enum Op {
    Get,
    TryGet,
    Return(usize),
    /// Makes a held value too big to be reused.
    Grow(usize),
    Take(usize),
    Trim(usize),
    /// Another thread checks out this many values, returns them, and exits.
    OtherThread(usize),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        5 => Just(Op::Get),
        3 => Just(Op::TryGet),
        6 => any::<usize>().prop_map(Op::Return),
        1 => any::<usize>().prop_map(Op::Grow),
        1 => any::<usize>().prop_map(Op::Take),
        1 => (0..MAX_IDLE + 1).prop_map(Op::Trim),
        1 => (0usize..6).prop_map(Op::OtherThread),
    ]
}

/// What the pool should hold. With every other thread gone, each idle value is reachable from
/// this thread, so the counts are exact.
#[derive(Debug, Default)]
struct Model {
    idle: usize,
    /// Tracked values alive (idle or held).
    live: usize,
    created: u64,
    discarded: u64,
}

/// A numbered value; `size` stands for a buffer's capacity.
#[derive(Debug)]
struct Value {
    id: u64,
    size: usize,
}

fn check_against_model(ops: Vec<Op>) -> Result<(), TestCaseError> {
    let next = std::sync::atomic::AtomicU64::new(0);
    let pool = ObjectPool::builder(move || Value {
        id: next.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
        size: 0,
    })
    .is_reusable(|value| value.size < TOO_BIG)
    .max_idle(MAX_IDLE)
    .max_total(MAX_TOTAL)
    .thread_cache(2)
    .build()
    .unwrap();
    let mut model = Model::default();
    // Held values, and whether the pool tracks each.
    let mut held: Vec<(Object<'_, Value>, bool)> = Vec::new();

    for op in ops {
        match op {
            Op::Get | Op::TryGet => {
                let got = if matches!(op, Op::Get) { Some(pool.get()) } else { pool.try_get() };
                let tracked = if model.idle > 0 {
                    model.idle -= 1;
                    true
                } else if model.live < MAX_TOTAL {
                    model.live += 1;
                    model.created += 1;
                    true
                } else {
                    false
                };
                match (got, tracked) {
                    (Some(value), tracked) => {
                        let ids: HashSet<u64> = held.iter().map(|(held, _)| held.id).collect();
                        prop_assert!(
                            !ids.contains(&value.id),
                            "value {} handed out twice",
                            value.id
                        );
                        held.push((value, tracked));
                    }
                    (None, tracked) => prop_assert!(!tracked, "try_get refused below max_total"),
                }
            }
            Op::Return(index) | Op::Grow(index) | Op::Take(index) if !held.is_empty() => {
                let (mut value, tracked) = held.swap_remove(index % held.len());
                match op {
                    Op::Grow(_) => {
                        value.size = TOO_BIG;
                        held.push((value, tracked));
                    }
                    Op::Take(_) => {
                        let _ = Object::take(value);
                        if tracked {
                            model.live -= 1;
                        }
                    }
                    _ => {
                        let reusable = value.size < TOO_BIG;
                        drop(value);
                        if !tracked {
                        } else if reusable && model.idle < MAX_IDLE {
                            model.idle += 1;
                        } else {
                            model.live -= 1;
                            model.discarded += 1;
                        }
                    }
                }
            }
            Op::Return(_) | Op::Grow(_) | Op::Take(_) => {}
            Op::Trim(keep) => {
                pool.trim(keep);
                let excess = model.idle.saturating_sub(keep);
                model.idle -= excess;
                model.live -= excess;
                model.discarded += excess as u64;
            }
            Op::OtherThread(count) => {
                let before = pool.status();
                std::thread::scope(|scope| {
                    let thread = scope.spawn(|| {
                        let values: Vec<_> = (0..count).filter_map(|_| pool.try_get()).collect();
                        drop(values);
                    });
                    thread.join().unwrap();
                });
                // Another thread's cache can turn away returns this thread would have kept, so
                // the model adopts the result after checking what must hold.
                let after = pool.status();
                prop_assert!(after.created - before.created <= count as u64);
                prop_assert!(after.idle <= MAX_IDLE);
                model.idle = after.idle;
                model.live = after.live;
                model.created = after.created;
                model.discarded = after.discarded;
            }
        }
        let status = pool.status();
        let tracked_held = held.iter().filter(|(_, tracked)| *tracked).count();
        prop_assert_eq!(status.idle, model.idle, "idle after {:?}: {:?}", op, model);
        prop_assert_eq!(status.live, model.live, "live after {:?}", op);
        prop_assert_eq!(status.live, model.idle + tracked_held, "live = idle + held");
        prop_assert_eq!(status.created, model.created, "created after {:?}", op);
        prop_assert_eq!(status.discarded, model.discarded, "discarded after {:?}", op);
        prop_assert!(status.live <= MAX_TOTAL && status.idle <= MAX_IDLE);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn the_pool_matches_the_model(ops in prop::collection::vec(op(), 1..80)) {
        check_against_model(ops)?;
    }
}
