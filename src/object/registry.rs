//! Finds the calling thread's [`LocalCache`] for a pool.
//!
//! A pool cannot own a `thread_local!` of its own (statics are not generic, and a pool is made at
//! run time), so each thread keeps one registry of caches, keyed by a pool id that is never
//! reused. The common case, one or a few pools per thread, finds its entry in the first slots.
//!
//! When the thread exits, the registry hands every cache back to its pool's shelf, so idle
//! values do not die with the thread. Caches of pools that were dropped are pruned whenever the
//! thread attaches to a new pool.

use std::any::Any;
use std::cell::RefCell;

use super::store::{LocalCache, Store};
use crate::sync::{Arc, Weak};

thread_local! {
    static CACHES: RefCell<Registry> = const { RefCell::new(Registry { entries: Vec::new() }) };
}

struct Registry {
    entries: Vec<Entry>,
}

struct Entry {
    pool: u64,
    /// The pool's store, type-erased so that dead pools can be recognised without knowing `T`.
    store: Weak<dyn Any + Send + Sync>,
    /// A `LocalCache<T>` for the pool's `T`.
    cache: Box<dyn Any>,
    /// Hands the cache back to the store, with the `T` this entry was made for.
    detach: fn(Entry),
}

fn detach<T: Send + 'static>(entry: Entry) {
    let store = entry.store.upgrade().and_then(|store| store.downcast::<Store<T>>().ok());
    let cache = entry.cache.downcast::<LocalCache<T>>().ok();
    if let (Some(store), Some(cache)) = (store, cache) {
        cache.detach(&store);
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        for entry in self.entries.drain(..) {
            (entry.detach)(entry);
        }
    }
}

impl Registry {
    fn find<T: Send + 'static>(
        &mut self,
        pool: u64,
        store: &Arc<Store<T>>,
    ) -> Option<&mut LocalCache<T>> {
        let index = match self.entries.iter().position(|entry| entry.pool == pool) {
            Some(index) => index,
            None => self.attach(pool, store),
        };
        self.entries[index].cache.downcast_mut::<LocalCache<T>>()
    }

    #[cold]
    fn attach<T: Send + 'static>(&mut self, pool: u64, store: &Arc<Store<T>>) -> usize {
        // Values of dropped pools are dropped here; a value whose `Drop` uses a pool finds the
        // registry borrowed and takes that pool's uncached path.
        self.entries.retain(|entry| entry.store.strong_count() > 0);
        let erased: Arc<dyn Any + Send + Sync> = Arc::clone(store) as _;
        self.entries.push(Entry {
            pool,
            store: Arc::downgrade(&erased),
            cache: Box::new(LocalCache::attach(store)),
            detach: detach::<T>,
        });
        self.entries.len() - 1
    }
}

/// Runs `f` on this thread's cache for the pool, attaching one on first use. Gives `arg` back
/// when the thread has no usable cache: during thread-local teardown, or when re-entered from
/// inside another cache operation (a value's `Drop` that uses a pool).
#[inline]
pub(crate) fn with_cache<T: Send + 'static, A, R>(
    pool: u64,
    store: &Arc<Store<T>>,
    arg: A,
    f: impl FnOnce(&mut LocalCache<T>, A) -> R,
) -> Result<R, A> {
    let mut arg = Some(arg);
    let result = CACHES.try_with(|caches| {
        let mut caches = caches.try_borrow_mut().ok()?;
        let cache = caches.find(pool, store)?;
        arg.take().map(|arg| f(cache, arg))
    });
    match (result, arg) {
        (Ok(Some(result)), _) => Ok(result),
        (_, Some(arg)) => Err(arg),
        // `arg` is only taken right before `f` runs, which returns `Some`.
        (_, None) => unreachable!("the argument was consumed without a result"),
    }
}

/// Hands this thread's cache for the pool back to its store, if it has one.
pub(crate) fn detach_current(pool: u64) {
    let entry = CACHES
        .try_with(|caches| {
            let mut caches = caches.try_borrow_mut().ok()?;
            let index = caches.entries.iter().position(|entry| entry.pool == pool)?;
            Some(caches.entries.swap_remove(index))
        })
        .ok()
        .flatten();
    // Outside the borrow: detaching may drop values, whose `Drop` may use a pool.
    if let Some(entry) = entry {
        (entry.detach)(entry);
    }
}
