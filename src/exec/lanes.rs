//! The lanes of the per-worker scheduler, and how their number changes ([`WorkerPool::resize`]).
//!
//! # Lanes that never move
//!
//! A submit finds its lane by index on every call, so the lanes must not move while a resize
//! adds some: they live in the lanes the pool was built with plus segments of 1, 2, 4, ...
//! lanes that a grow adds and nothing frees before the pool, each published once through a
//! `OnceLock`. A lane that a shrink retires stays where it is (closed), and a later grow opens
//! it again. A lookup among the built lanes is an index into one slice, as before resizes
//! existed; the lanes a grow added cost a leading-zeros count and a `OnceLock` read more.
//!
//! # The route word
//!
//! Which lanes are in use is one atomic word, [`Route`]: the number of lanes `count`, an
//! `epoch` bumped by every resize, and, while the keys a resize moved are still draining from
//! their old lanes, the old count and a `draining` flag. An unkeyed submit reads it once (an
//! `Acquire` load of a word only a resize writes, so it stays in every core's cache) and picks
//! a lane below `count`. A submit that finds its lane closed (retired by a shrink after it read
//! the word) reads the word again: the shrink published the new count before it closed the
//! lane, so the second read routes around it.
//!
//! # Keyed order across a resize
//!
//! A key's lane is its rendezvous owner among `count` lanes ([`KeyHash::target`]), so a resize
//! from `n` to `m` lanes moves only the keys whose owner changes (about `|m - n| / max(m, n)`
//! of them). Jobs of one key must still run in submission order: a job of a moved key must not
//! start on its new lane while an older job of the key is queued or running on the old one.
//!
//! Every lane counts its keyed jobs claimed and not yet done, in two counters chosen by the
//! parity of the epoch the job was routed under (`Slot::keyed`). A resize to epoch `e + 1` sets
//! `draining`; the drain ends when every lane's counter for the parity of `e` is zero, that is
//! when every keyed job routed under the old epoch has finished. Until then, a keyed submit
//! whose key has different owners under the old and the new count waits; one whose owner did
//! not change goes on at once, to the lane that holds its older jobs in order anyway.
//!
//! The race is a submit that read the old word and commits after the resize. A keyed submit
//! therefore raises its lane's counter for the epoch it read, and then reads the word again;
//! a resize writes the word and then reads the counters. Each side puts a `SeqCst` fence
//! between its write and its read (the store-buffering pattern), so at least one sees the
//! other: either the resize counts the submit's job (and so does every later drain check,
//! which takes the plan's lock after it), and the drain waits for the job to finish, or the
//! submit sees the new epoch, gives its room and its count back and routes again under the new
//! word. So when the drain ends, no job routed under the old epoch is queued or running, and
//! no submit can still commit one: every job of a moved key that starts on its new lane starts
//! after every older job of the key finished. The drain's end is published by a `Release`
//! store of the word after `Acquire` reads of the counters, which the workers lowered with
//! `AcqRel` after the jobs ran, so a submit that reads the end sees those jobs finished.
//!
//! A counter is reused two epochs later, so a resize asked for while a drain is running is
//! kept in `Plan::pending` and applied when the drain ends: the epoch never moves past one
//! that still has jobs counted.
//!
//! The drain ends in whoever brings the last counter to zero after the resize: a worker that
//! finished a keyed job, or a submit that gave its count back, checks every lane under the
//! plan's lock when its decrement reached zero while the word says `draining`. The decrement
//! and that read are fenced against the resize's write and scan in the same way, so a
//! decrement the resize's scan missed sees the flag. Resizes are rare; the checks cost a scan
//! of the lanes once per lane per resize.
//!
//! # Workers of retired and reopened lanes
//!
//! A shrink closes the lanes it retires: their workers run what is queued there (jobs whose
//! submit claimed room before the close included) and leave when the lane is closed and
//! drained, as at shutdown. A grow that reopens a lane whose worker has not left yet must not
//! start a second worker on it (two workers on one lane would break its keyed order), and one
//! whose worker left must start one: the worker leaves, and the grow reopens, under the plan's
//! lock ([`LaneSet::leave`]), and `Plan::staffed` says which lanes have a worker.
//!
//! [`WorkerPool::resize`]: super::WorkerPool::resize
//! [`KeyHash::target`]: crate::balance::KeyHash::target

use super::job::Job;
use super::lane::{Lane, Signal};
use crate::balance::KeyHash;
use crate::sync::{AtomicU64, AtomicUsize, CachePadded, Mutex, OnceLock, Ordering, fence};

/// Segments of grown lanes: segment `s` holds `2^s` lanes, enough for `MAX_WORKERS`.
const SEGMENTS: usize = 22;

/// One lane and the counters kept beside it.
pub(crate) struct Slot {
    pub(crate) lane: Lane<Job>,
    /// Jobs committed here and not done, for the strategies that read loads.
    pub(crate) load: CachePadded<AtomicUsize>,
    /// Keyed jobs routed here and not done, by the parity of the epoch they were routed under.
    keyed: CachePadded<[AtomicUsize; 2]>,
}

impl Slot {
    fn new(capacity: usize) -> Self {
        Self {
            lane: Lane::per_worker(capacity.max(1)),
            load: CachePadded(AtomicUsize::new(0)),
            keyed: CachePadded([AtomicUsize::new(0), AtomicUsize::new(0)]),
        }
    }
}

/// The word that says which lanes are in use; see the module docs.
///
/// | bits    | field    |
/// |---------|----------|
/// | 0..21   | count    |
/// | 21..42  | old count (while draining) |
/// | 42..63  | epoch (wraps) |
/// | 63      | draining |
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Route {
    pub(crate) count: usize,
    old: usize,
    epoch: u64,
    draining: bool,
}

const FIELD_BITS: u32 = 21;
const FIELD: u64 = (1 << FIELD_BITS) - 1;
const DRAINING: u64 = 1 << 63;

impl Route {
    fn unpack(word: u64) -> Self {
        let field = |shift: u32| usize::try_from((word >> shift) & FIELD).unwrap_or(usize::MAX);
        Self {
            count: field(0),
            old: field(FIELD_BITS),
            epoch: (word >> (2 * FIELD_BITS)) & FIELD,
            draining: word & DRAINING != 0,
        }
    }

    fn pack(self) -> u64 {
        let field = |count: usize| u64::try_from(count).unwrap_or(FIELD) & FIELD;
        field(self.count)
            | field(self.old) << FIELD_BITS
            | (self.epoch & FIELD) << (2 * FIELD_BITS)
            | if self.draining { DRAINING } else { 0 }
    }

    /// The keyed counter that jobs routed under this word count in.
    pub(crate) fn parity(self) -> u8 {
        u8::from(self.epoch & 1 == 1)
    }

    /// Whether `key` must wait for the drain: its owner differs under the old and new count.
    pub(crate) fn moves(self, key: u64) -> bool {
        self.draining && KeyHash::target(key, self.old) != KeyHash::target(key, self.count)
    }
}

/// What only a resize, a drain's end, a worker leaving and a shutdown change, under one lock.
struct Plan {
    /// Per lane that exists: whether a worker serves it.
    staffed: Vec<bool>,
    /// A resize asked for during a drain, applied when it ends.
    pending: Option<usize>,
    /// The pool is shut down: lanes are never reopened.
    closed: bool,
}

/// Starts a worker on a lane: set by the pool, called outside the plan's lock.
type Staffer = Box<dyn Fn(usize) + Send + Sync>;

pub(crate) struct LaneSet {
    built: Box<[Slot]>,
    grown: [OnceLock<Box<[Slot]>>; SEGMENTS],
    /// Lanes that exist (built plus grown), for what must visit retired lanes too.
    allocated: AtomicUsize,
    route: AtomicU64,
    /// The pool's queue capacity, split between the lanes in use.
    capacity: usize,
    plan: Mutex<Plan>,
    /// Keyed submits waiting for a drain to end.
    drained: Signal,
    staffer: OnceLock<Staffer>,
}

/// Which grown segment holds grown lane `extra`, and where in it.
fn segment_of(extra: usize) -> (usize, usize) {
    let position = extra + 1;
    let segment = (usize::BITS - 1 - position.leading_zeros()) as usize;
    (segment, position - (1 << segment))
}

/// Lane `index`'s share of `capacity` split between `count` lanes (at least 1).
fn share(capacity: usize, count: usize, index: usize) -> usize {
    (capacity / count + usize::from(index < capacity % count)).max(1)
}

impl LaneSet {
    /// `count` lanes splitting `capacity`, every one with a worker to come.
    pub(crate) fn new(count: usize, capacity: usize) -> Self {
        let built = (0..count).map(|index| Slot::new(share(capacity, count, index))).collect();
        let route = Route { count, old: count, epoch: 0, draining: false };
        Self {
            built,
            grown: std::array::from_fn(|_| OnceLock::new()),
            allocated: AtomicUsize::new(count),
            route: AtomicU64::new(route.pack()),
            capacity,
            plan: Mutex::new(Plan { staffed: vec![true; count], pending: None, closed: false }),
            drained: Signal::default(),
            staffer: OnceLock::new(),
        }
    }

    /// Sets how a resize starts a worker on a lane.
    pub(crate) fn on_staff(&self, staffer: impl Fn(usize) + Send + Sync + 'static) {
        let _ = self.staffer.set(Box::new(staffer));
    }

    #[inline]
    pub(crate) fn get(&self, index: usize) -> &Slot {
        if let Some(slot) = self.built.get(index) {
            return slot;
        }
        let (segment, offset) = segment_of(index - self.built.len());
        // A lane is routed to, or visited, only after the resize that made it published it.
        &self.grown[segment].get().expect("a grown lane is used only once it exists")[offset]
    }

    /// The route word; `Acquire` pairs with the resize that made the lanes below its count.
    #[inline]
    pub(crate) fn route(&self) -> Route {
        Route::unpack(self.route.load(Ordering::Acquire))
    }

    /// Lanes that exist, in use or retired.
    pub(crate) fn allocated(&self) -> usize {
        self.allocated.load(Ordering::Acquire)
    }

    /// Counts a keyed job claimed on `lane` under `seen`, then checks that the route did not
    /// change meanwhile (see the module docs). On `false` the caller gives the room back and
    /// routes again; the count is already given back.
    pub(crate) fn count_keyed(&self, lane: usize, seen: Route) -> bool {
        let parity = seen.parity();
        self.get(lane).keyed[usize::from(parity)].fetch_add(1, Ordering::AcqRel);
        // Pairs with the fence in `apply`: either its scan counts this job, or this sees its
        // new epoch.
        fence(Ordering::SeqCst);
        if Route::unpack(self.route.load(Ordering::Acquire)).epoch == seen.epoch {
            return true;
        }
        self.keyed_done(lane, parity);
        false
    }

    /// A keyed job counted in `parity` on `lane` is done (or was never committed).
    pub(crate) fn keyed_done(&self, lane: usize, parity: u8) {
        let before = self.get(lane).keyed[usize::from(parity)].fetch_sub(1, Ordering::AcqRel);
        // Pairs with the fence in `apply`: either its scan sees this decrement, or this sees
        // the drain it started and checks it.
        fence(Ordering::SeqCst);
        if before == 1 && Route::unpack(self.route.load(Ordering::Acquire)).draining {
            self.check_drain();
        }
    }

    /// Whether a keyed submit that saw `seen` (draining, its key moving) must still wait.
    pub(crate) fn still_moving(&self, seen: Route) -> bool {
        let now = self.route();
        now.epoch == seen.epoch && now.draining && !self.plan_closed()
    }

    fn plan_closed(&self) -> bool {
        self.get(0).lane.is_closed()
    }

    /// Waits-for-drain signal for keyed submits whose key moves.
    pub(crate) fn drained(&self) -> &Signal {
        &self.drained
    }

    /// Ends the drain if no keyed job of the old epoch is left, then applies a pending resize.
    fn check_drain(&self) {
        let mut plan = self.plan.lock();
        let route = self.route();
        if !route.draining || !self.old_epoch_done(route) {
            return;
        }
        self.route
            .store(Route { draining: false, old: route.count, ..route }.pack(), Ordering::Release);
        self.drained.notify_all();
        let staff = match plan.pending.take() {
            Some(count) => self.apply(&mut plan, count),
            None => Vec::new(),
        };
        drop(plan);
        self.staff(staff);
    }

    /// Whether every lane's counter of the epoch before `route`'s is zero.
    fn old_epoch_done(&self, route: Route) -> bool {
        let old = usize::from(1 - route.parity());
        (0..self.allocated()).all(|lane| self.get(lane).keyed[old].load(Ordering::Acquire) == 0)
    }

    fn staff(&self, lanes: Vec<usize>) {
        if let Some(staffer) = self.staffer.get() {
            lanes.into_iter().for_each(staffer);
        }
    }

    /// Uses `count` lanes from now on (see the module docs); starts the workers it needs.
    pub(crate) fn resize(&self, count: usize) {
        let mut plan = self.plan.lock();
        let staff = self.apply(&mut plan, count);
        drop(plan);
        self.staff(staff);
    }

    /// The resize itself, under the plan's lock: returns the lanes that need a worker started.
    fn apply(&self, plan: &mut Plan, count: usize) -> Vec<usize> {
        let route = self.route();
        if plan.closed {
            return Vec::new();
        }
        if route.draining {
            plan.pending = Some(count);
            return Vec::new();
        }
        if count == route.count {
            return Vec::new();
        }
        self.make_lanes(plan, count);
        for index in 0..count {
            self.get(index).lane.set_capacity(share(self.capacity, count, index));
        }
        let mut staff = Vec::new();
        for index in route.count..count {
            // A lane retired earlier: its worker, if it has not left, carries on.
            self.get(index).lane.reopen();
            if !plan.staffed[index] {
                plan.staffed[index] = true;
                staff.push(index);
            }
        }
        let next = Route { count, old: route.count, epoch: route.epoch + 1, draining: true };
        // Published before the lanes it retires close, so that a submit refused by a closed lane
        // reads a route without it.
        self.route.store(next.pack(), Ordering::Release);
        for index in count..route.count {
            self.get(index).lane.close();
        }
        // Pairs with the fences of `count_keyed` and `keyed_done`.
        fence(Ordering::SeqCst);
        if self.old_epoch_done(next) {
            self.route.store(Route { draining: false, ..next }.pack(), Ordering::Release);
            self.drained.notify_all();
        }
        staff
    }

    /// Makes sure lanes `0..count` exist, each new one with its share of the capacity.
    fn make_lanes(&self, plan: &mut Plan, count: usize) {
        let mut allocated = self.allocated();
        while allocated < count {
            let (segment, _) = segment_of(allocated - self.built.len());
            let size = 1 << segment;
            let first = allocated;
            let made = self.grown[segment].get_or_init(|| {
                (0..size)
                    .map(|offset| Slot::new(share(self.capacity, count, first + offset)))
                    .collect()
            });
            for slot in made.iter() {
                // Made retired: a grow opens the ones it uses.
                slot.lane.close();
            }
            allocated += size;
            plan.staffed.resize(allocated, false);
            self.allocated.store(allocated, Ordering::Release);
        }
    }

    /// The worker of `lane` found it closed and drained: it leaves unless a grow reopened the
    /// lane meanwhile (then it stays and carries on).
    pub(crate) fn leave(&self, lane: usize) -> bool {
        let mut plan = self.plan.lock();
        if !self.get(lane).lane.finished() {
            return false;
        }
        plan.staffed[lane] = false;
        true
    }

    /// A worker of `lane` ended without a replacement (its runtime went).
    pub(crate) fn unstaff(&self, lane: usize) {
        self.plan.lock().staffed[lane] = false;
    }

    /// Lanes left without a worker that need one (in use, or retired with jobs left): marked
    /// staffed, for the caller to start.
    pub(crate) fn unstaffed(&self) -> Vec<usize> {
        let mut plan = self.plan.lock();
        let count = self.route().count;
        let mut staff = Vec::new();
        for lane in 0..plan.staffed.len() {
            if !plan.staffed[lane] && (lane < count || !self.get(lane).lane.finished()) {
                plan.staffed[lane] = true;
                staff.push(lane);
            }
        }
        staff
    }

    /// Stops intake on every lane for good: no lane is reopened after this.
    pub(crate) fn close(&self) {
        let mut plan = self.plan.lock();
        plan.closed = true;
        plan.pending = None;
        (0..self.allocated()).for_each(|lane| self.get(lane).lane.close());
        drop(plan);
        self.drained.notify_all();
    }

    /// The keyed counters of every lane, for the models and tests of the drain.
    #[cfg(test)]
    pub(crate) fn keyed_counts(&self) -> Vec<[usize; 2]> {
        (0..self.allocated())
            .map(|lane| {
                let keyed = &self.get(lane).keyed;
                [keyed[0].load(Ordering::SeqCst), keyed[1].load(Ordering::SeqCst)]
            })
            .collect()
    }
}

#[cfg(all(test, not(millpond_loom)))]
mod tests {
    use super::*;

    #[test]
    fn segments_cover_every_grown_lane_once() {
        let mut expected = (0, 0);
        for extra in 0..1000 {
            assert_eq!(segment_of(extra), expected, "grown lane {extra}");
            expected.1 += 1;
            if expected.1 == 1 << expected.0 {
                expected = (expected.0 + 1, 0);
            }
        }
        assert!(segment_of(super::super::worker_count::MAX_WORKERS).0 < SEGMENTS);
    }

    #[test]
    fn the_route_word_round_trips() {
        let route = Route { count: (1 << 21) - 1, old: 3, epoch: 5, draining: true };
        assert_eq!(Route::unpack(route.pack()), route);
        assert_eq!(route.parity(), 1);
    }
}
