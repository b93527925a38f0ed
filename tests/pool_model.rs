//! A property test: random sequences of get, return, break, take, try_get, retain, resize and
//! close, checked after every step against a model that is just a few counters.

mod support;

use std::time::Duration;

use millpond::pool::{Error, Pool, Pooled};
use proptest::prelude::*;
use support::TestManager;

#[derive(Debug, Clone)]
enum Op {
    Get,
    TryGet,
    Return(usize),
    Break(usize),
    Take(usize),
    RetainEven,
    Resize(usize),
    Close,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => Just(Op::Get),
        2 => Just(Op::TryGet),
        5 => any::<usize>().prop_map(Op::Return),
        1 => any::<usize>().prop_map(Op::Break),
        1 => any::<usize>().prop_map(Op::Take),
        1 => Just(Op::RetainEven),
        1 => (1usize..6).prop_map(Op::Resize),
        1 => Just(Op::Close),
    ]
}

/// What the pool should hold: counts only.
#[derive(Debug)]
struct Model {
    max_size: usize,
    idle: usize,
    closed: bool,
}

async fn check_against_model(ops: Vec<Op>) -> Result<(), TestCaseError> {
    let (manager, probe) = TestManager::new();
    let pool = Pool::builder(manager).max_size(3).build().unwrap();
    let mut model = Model { max_size: 3, idle: 0, closed: false };
    let mut held: Vec<Pooled<TestManager>> = Vec::new();

    for op in ops {
        let size = held.len() + model.idle;
        match op {
            Op::Get => {
                let got = pool.get_timeout(Duration::from_millis(5)).await;
                if model.closed {
                    prop_assert!(matches!(got, Err(Error::Closed)), "{got:?}");
                } else if model.idle > 0 || size < model.max_size {
                    prop_assert!(got.is_ok(), "{op:?} {model:?} {got:?}");
                    model.idle = model.idle.saturating_sub(1);
                    held.push(got.unwrap());
                } else {
                    prop_assert!(got.as_ref().is_err_and(Error::is_timeout), "{got:?}");
                }
            }
            Op::TryGet => {
                let got = pool.try_get();
                if model.closed {
                    prop_assert!(matches!(got, Err(Error::Closed)), "{got:?}");
                } else if model.idle > 0 {
                    model.idle -= 1;
                    held.push(got.unwrap());
                } else {
                    prop_assert!(matches!(got, Err(Error::Exhausted)), "{got:?}");
                }
            }
            Op::Return(index) | Op::Break(index) | Op::Take(index) if !held.is_empty() => {
                let mut conn = held.swap_remove(index % held.len());
                match op {
                    Op::Take(_) => drop(conn.take()),
                    Op::Break(_) => {
                        conn.broken = true;
                        drop(conn);
                    }
                    _ => {
                        drop(conn);
                        if !model.closed && size <= model.max_size {
                            model.idle += 1;
                        }
                    }
                }
            }
            Op::Return(_) | Op::Break(_) | Op::Take(_) => {}
            Op::RetainEven => {
                let evicted = pool.retain(|conn, _| conn.id % 2 == 0);
                prop_assert!(evicted <= model.idle);
                model.idle -= evicted;
            }
            Op::Resize(max_size) => {
                pool.resize(max_size).unwrap();
                model.max_size = max_size;
                let excess = (held.len() + model.idle).saturating_sub(max_size);
                model.idle -= excess.min(model.idle);
            }
            Op::Close => {
                pool.close();
                model.closed = true;
                model.idle = 0;
            }
        }
        let status = pool.status();
        prop_assert_eq!(status.in_use, held.len(), "{:?} {:?}", status, model);
        prop_assert_eq!(status.idle, model.idle, "{:?} {:?}", status, model);
        prop_assert_eq!(status.size, held.len() + model.idle, "{:?}", status);
        prop_assert_eq!((status.waiters, status.creating), (0, 0), "{:?}", status);
        prop_assert!(status.size <= model.max_size.max(held.len()), "{:?}", status);
        prop_assert_eq!(probe.alive(), status.size, "live resources vs {:?}", status);
    }
    drop(held);
    pool.close();
    prop_assert_eq!(probe.alive(), 0);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn the_pool_behaves_like_its_model(ops in proptest::collection::vec(op(), 1..60)) {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build()
            .unwrap();
        runtime.block_on(check_against_model(ops))?;
    }
}
