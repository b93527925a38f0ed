//! Finds the calling thread's [`LocalCache`] for a pool.
//!
//! Each pool owns its threads' caches in a `thread_local::ThreadLocal`: a per-pool table indexed
//! by a small thread id, so a lookup is a thread-local read and two loads, with no search. The
//! pool owning the table is what makes dropping the pool drop every value it keeps, whichever
//! thread cached it and whatever that thread is doing; a thread that still has one of its values
//! checked out cannot outlive the pool, since the guard holds the pool.
//!
//! `ThreadLocal` keeps a slot when its thread exits and hands it to the next thread that gets
//! the same id. So that idle values do not sit in the slot of a thread that is gone, each
//! thread also keeps a list of the pools it has a cache in ([`Exits`]), and on exit hands every
//! cache back to its pool's shelf, leaving the slot empty for its next owner.
//!
//! An exiting thread reaches a pool through a weak handle, which it must upgrade to hand its
//! cache back. Were the pool's last handle dropped on another thread meanwhile, the exiting
//! thread's upgrade would be the last, and every value the pool keeps would be dropped inside
//! that thread's thread-local teardown, where a `Drop` that touches a thread-local panics and the
//! process aborts. So each pool has an exit gate: an exiting thread upgrades and hands its cache
//! back only under the gate's lock and while it is open, and the pool's drop closes it first
//! ([`Caches::close_exits`]). The pool's own handle is then the last, and its values are dropped
//! by the thread that drops the pool.
//!
//! The algorithm lives in `store.rs`, which the loom models check; this file only finds the
//! cache, which loom could not see into.

use std::cell::{Cell, RefCell};

use thread_local::ThreadLocal;

use super::store::{LocalCache, Store};
use crate::sync::{Arc, Mutex, Weak};

/// One pool's store and the caches of the threads that use it.
pub(crate) struct Caches<T: Send> {
    pub(crate) store: Arc<Store<T>>,
    local: ThreadLocal<RefCell<LocalCache<T>>>,
    /// Open while exiting threads may hand their caches back (see the module docs).
    exits_open: Arc<Gate>,
}

/// Whether exiting threads may still reach a pool; its lock is held across their visit.
type Gate = Mutex<bool>;

/// Where this thread is in its life, as far as the caches go.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// No cache attached on this thread yet.
    Fresh,
    /// [`EXITS`] lists this thread's caches and will hand them back at exit.
    Attached,
    /// [`EXITS`] has run: the thread is tearing down its thread-locals.
    Exiting,
}

thread_local! {
    /// A thread-local without a destructor, so it can be read at any point of the thread's
    /// teardown.
    static STAGE: Cell<Stage> = const { Cell::new(Stage::Fresh) };
    static EXITS: RefCell<Exits> = const { RefCell::new(Exits(Vec::new())) };
}

/// The pools this thread has a cache in, each handed back when the thread exits, with each
/// pool's exit gate.
struct Exits(Vec<(Arc<Gate>, Weak<dyn ThreadExit>)>);

trait ThreadExit {
    /// Hands this thread's cache back to the pool's shelf.
    fn thread_exits(&self);
}

impl Drop for Exits {
    fn drop(&mut self) {
        STAGE.with(|stage| stage.set(Stage::Exiting));
        for (gate, pool) in self.0.drain(..) {
            let open = gate.lock();
            // Upgraded only while the gate is open (the pool's drop has not begun, so its own
            // handle is alive), and dropped before the gate opens again: the pool's drop waits
            // for it, so this thread never holds the last handle.
            if !*open {
                continue;
            }
            if let Some(pool) = pool.upgrade() {
                #[cfg(all(test, not(millpond_loom)))]
                tests::after_upgrade();
                pool.thread_exits();
            }
        }
    }
}

impl<T: Send> ThreadExit for Caches<T> {
    fn thread_exits(&self) {
        // `get`, which never allocates a thread id, rather than `get_or`: `None` if
        // `thread_local` already released this thread's id, and the slot then waits, values
        // and all, for the next thread that gets it (or for the pool's drop).
        if let Some(Ok(mut cache)) = self.local.get().map(RefCell::try_borrow_mut) {
            cache.detach(&self.store);
        }
    }
}

impl<T: Send + 'static> Caches<T> {
    pub(crate) fn new(store: Store<T>) -> Self {
        Self {
            store: Arc::new(store),
            local: ThreadLocal::new(),
            exits_open: Arc::new(Mutex::new(true)),
        }
    }

    /// Stops exiting threads from reaching this pool, waiting for those already handing their
    /// cache back. The pool's drop calls it before it lets go of its handle, so that handle is
    /// the last and the values are dropped on the pool's own thread, never inside another
    /// thread's thread-local teardown. No user code runs under the gate (a hand-back only moves
    /// values to the shelf), so the wait is short.
    pub(crate) fn close_exits(&self) {
        *self.exits_open.lock() = false;
    }

    /// Runs `f` on this thread's cache, attaching one on first use. Gives `arg` back when the
    /// thread has no usable cache: during thread-local teardown, or when re-entered from inside
    /// another operation on the same cache (a value's `Drop` that uses its own pool).
    #[inline]
    pub(crate) fn with_cache<A, R>(
        self: &Arc<Self>,
        arg: A,
        f: impl FnOnce(&mut LocalCache<T>, A) -> R,
    ) -> Result<R, A> {
        let Some(cell) = self.local.get().or_else(|| self.attach()) else {
            return Err(arg);
        };
        let Ok(mut cache) = cell.try_borrow_mut() else {
            return Err(arg);
        };
        if cache.is_detached() {
            // The slot of a thread that exited, now this thread's.
            if !self.adopt(&mut cache) {
                return Err(arg);
            }
        }
        Ok(f(&mut cache, arg))
    }

    /// A cache for this thread, or `None` while the thread tears down its thread-locals.
    #[cold]
    fn attach(self: &Arc<Self>) -> Option<&RefCell<LocalCache<T>>> {
        if STAGE.with(Cell::get) == Stage::Exiting {
            return None;
        }
        // The cache first, then its listing in `EXITS`: making the cache gives this thread its
        // `thread_local` id if it had none, so `EXITS` is first used after that id exists, and
        // is torn down before it (thread-locals go in reverse order of first use). At exit
        // `EXITS` then still finds the thread's caches.
        //
        // `get_or` panics when it has to make an id after `thread_local`'s own teardown: only
        // possible for a thread whose first use of any pool comes from a thread-local's
        // destructor. Caught, that thread goes without a cache.
        let cell = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            self.local.get_or(|| RefCell::new(LocalCache::attach(&self.store)))
        }))
        .ok()?;
        if self.list_for_exit() {
            return Some(cell);
        }
        // Too late to be handed back at exit: leave the cache detached, for a later thread.
        if let Ok(mut cache) = cell.try_borrow_mut() {
            cache.detach(&self.store);
        }
        None
    }

    /// Takes over the detached cache a thread that exited left in this thread's slot.
    #[cold]
    fn adopt(self: &Arc<Self>, cache: &mut LocalCache<T>) -> bool {
        if STAGE.with(Cell::get) == Stage::Exiting || !self.list_for_exit() {
            return false;
        }
        *cache = LocalCache::attach(&self.store);
        true
    }

    /// Lists this pool for the thread's exit; `false` once the thread is tearing down.
    fn list_for_exit(self: &Arc<Self>) -> bool {
        let this: Weak<dyn ThreadExit> = Arc::downgrade(self) as Weak<Self>;
        let gate = Arc::clone(&self.exits_open);
        let listed = EXITS.try_with(|exits| {
            let Ok(mut exits) = exits.try_borrow_mut() else { return false };
            // Pools dropped since, whose caches went with them.
            exits.0.retain(|(_, pool)| pool.strong_count() > 0);
            exits.0.push((gate, this));
            true
        });
        if listed == Ok(true) {
            STAGE.with(|stage| stage.set(Stage::Attached));
        }
        listed == Ok(true)
    }
}

#[cfg(all(test, not(millpond_loom)))]
mod tests {
    use std::sync::mpsc;
    use std::thread::ThreadId;
    use std::time::Duration;

    use crate::object::ObjectPool;
    use crate::sync::{Arc, AtomicUsize, Ordering, process};

    type Hook = Box<dyn FnOnce() + Send>;

    /// Runs in the named thread's exit, between the upgrade of a pool's handle and the hand-back.
    static AFTER_UPGRADE: process::Mutex<Option<(ThreadId, Hook)>> = process::Mutex::new(None);

    pub(super) fn after_upgrade() {
        // The thread's id as it noted it before its teardown: `thread::current` may be gone.
        let hook = AFTER_UPGRADE.lock().take_if(|(thread, _)| Some(*thread) == exiting_thread());
        if let Some((_, hook)) = hook {
            hook();
        }
    }

    thread_local! {
        static ME: std::cell::Cell<Option<ThreadId>> = const { std::cell::Cell::new(None) };
    }

    fn exiting_thread() -> Option<ThreadId> {
        ME.with(std::cell::Cell::get)
    }

    struct Counted(Arc<AtomicUsize>);

    impl Drop for Counted {
        fn drop(&mut self) {
            self.0.fetch_sub(1, Ordering::SeqCst);
        }
    }

    /// A thread exits while the pool's last handle is dropped elsewhere, its upgrade of the
    /// pool's handle taken: the values are still dropped by the pool's drop, on its own thread,
    /// not later in the exiting thread's teardown.
    #[test]
    fn a_pool_dropped_while_a_thread_exits_drops_its_values_itself() {
        let alive = Arc::new(AtomicUsize::new(0));
        let made = Arc::clone(&alive);
        let pool = Arc::new(ObjectPool::with_create(move || {
            made.fetch_add(1, Ordering::SeqCst);
            Counted(Arc::clone(&made))
        }));
        let (upgraded_tx, upgraded_rx) = mpsc::channel::<()>();
        let (dropped_tx, dropped_rx) = mpsc::channel::<()>();
        let user = Arc::clone(&pool);
        let thread = std::thread::spawn(move || {
            ME.with(|me| me.set(Some(std::thread::current().id())));
            *AFTER_UPGRADE.lock() = Some((
                std::thread::current().id(),
                Box::new(move || {
                    let _ = upgraded_tx.send(());
                    // With the gate, the pool's drop waits for this thread, so this wait runs
                    // out; without it, the drop returns and says so.
                    let _ = dropped_rx.recv_timeout(Duration::from_secs(1));
                }),
            ));
            drop(user.get());
            drop(user);
        });
        upgraded_rx.recv().unwrap();
        drop(pool);
        let left = alive.load(Ordering::SeqCst);
        let _ = dropped_tx.send(());
        thread.join().unwrap();
        assert_eq!(left, 0, "the values outlived the pool's drop, left to the exiting thread");
    }
}
