//! Synchronous pools of reusable values: allocation-free reuse of buffers, encoders and other
//! values that are expensive to make or to grow.
//!
//! [`ObjectPool::get`] hands out an idle value (or makes one) and the guard gives it back when
//! dropped, after an optional reset hook cleared it. Nothing here is async: a checkout never
//! waits, so it is as usable from a tight loop as from a request handler.
//!
//! ```
//! use millpond::object::ObjectPool;
//!
//! let buffers = ObjectPool::builder(|| Vec::<u8>::with_capacity(4096))
//!     .reset(|buffer| buffer.clear())
//!     .max_idle(256)
//!     .build()?;
//! let mut buffer = buffers.get(); // reuses an idle buffer or makes one; never blocks
//! buffer.extend_from_slice(b"...");
//! # Ok::<(), millpond::BuildError>(())
//! ```
//!
//! # How it is fast
//!
//! Each thread keeps a few idle values of its own (8 by default), reached through a thread-local
//! with no lock and no atomic read-modify-write, so the common get-use-drop cycle on one thread
//! touches only that thread's memory. Behind the thread caches, a bounded shared store moves
//! values between threads in batches: a thread that runs dry takes half a cache's worth in one
//! locked step, a thread that only returns spills half of its cache back.
//!
//! # Bounds
//!
//! * `max_idle` bounds every idle value, those in thread caches included: each cache holds room
//!   reserved inside `max_idle` (see the engine notes in `store.rs`).
//! * `max_total` bounds the values the pool tracks; [`ObjectPool::try_get`] respects it.
//! * A thread that exits gives its cached values back to the shared store; none are lost.
//! * Dropping the pool drops every value it keeps, whichever thread cached it and whatever that
//!   thread is doing: the threads' caches belong to the pool.
//! * [`ObjectPool::trim`] and [`ObjectPool::release_unused`] give memory back.
//!
//! # Comparison with similar crates
//!
//! | | millpond | object-pool | lockfree-object-pool | opool | sharded-slab `Pool` |
//! |---|---|---|---|---|---|
//! | reset hook | yes | by hand | yes | yes | `Clear` trait |
//! | bounded idle values | yes, thread caches included | yes | no | yes | no |
//! | bound on live values | `max_total` with `try_get` | no | no | no | no |
//! | drops values that grew too large | `is_reusable` | no | no | no | no |
//! | gives memory back | `trim`, `release_unused` | no | no | no | no |
//! | per-thread fast path | yes | no (one lock) | no (shared atomics) | no | yes |
//!
//! Timings beside those crates are in `docs/benchmarks.md`.
//!
//! # When not to use it
//!
//! * For async resources that take time to make or can fail (connections): use [`crate::pool`].
//! * For values that are cheap to make and small: the allocator is already a pool.

mod api;
mod builder;
mod guard;
mod registry;
mod status;
mod store;

#[cfg(all(test, millpond_loom))]
mod loom_models;

pub use api::ObjectPool;
pub use builder::{DEFAULT_MAX_IDLE, DEFAULT_THREAD_CACHE, ObjectPoolBuilder};
pub use guard::{Object, OwnedObject};
pub use status::Status;
