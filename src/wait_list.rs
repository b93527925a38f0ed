//! A queue of waiters with O(1) removal from the middle.
//!
//! A waiter joins at the back and is served from the front (the pool), or from either end (an
//! adaptive limiter serves the newest first while it is overloaded). A waiter that gives up (its `get()` was
//! cancelled or timed out) removes itself wherever it stands, in O(1), so a storm of cancellations
//! cannot turn into quadratic work under the pool lock. A served waiter leaves the queue at once;
//! what it was handed travels in its ticket (`ticket.rs`), not here.
//!
//! Entries live in one `Vec` threaded into a doubly linked list by index; freed entries form a free
//! list, so a steady state of waiters allocates nothing. Every occupied entry is queued. Because a
//! served waiter's key is freed at once and may be reused, a key alone does not prove identity:
//! whoever holds a key after it could have been served compares the value too (the engine compares
//! tickets).

const NIL: usize = usize::MAX;

/// Names one entry of a [`WaitList`]: a queued value, or a freed (possibly reused) entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct WaiterKey(usize);

#[derive(Debug)]
struct Entry<T> {
    /// `Some` while queued.
    value: Option<T>,
    prev: usize,
    /// The next queued entry while occupied; the next free entry while free.
    next: usize,
}

#[derive(Debug)]
pub(crate) struct WaitList<T> {
    entries: Vec<Entry<T>>,
    head: usize,
    tail: usize,
    free: usize,
    queued: usize,
}

impl<T> Default for WaitList<T> {
    fn default() -> Self {
        Self { entries: Vec::new(), head: NIL, tail: NIL, free: NIL, queued: 0 }
    }
}

impl<T> WaitList<T> {
    /// How many values are queued.
    pub(crate) fn len(&self) -> usize {
        self.queued
    }

    /// Queues `value` at the back.
    pub(crate) fn push_back(&mut self, value: T) -> WaiterKey {
        let entry = Entry { value: Some(value), prev: self.tail, next: NIL };
        let index = self.occupy(entry);
        if self.tail == NIL {
            self.head = index;
        } else {
            self.entries[self.tail].next = index;
        }
        self.tail = index;
        self.queued += 1;
        WaiterKey(index)
    }

    /// Queues `value` just ahead of the queued entry `key`.
    pub(crate) fn insert_before(&mut self, key: WaiterKey, value: T) -> WaiterKey {
        let next = key.0;
        let prev = self.entries[next].prev;
        let entry = Entry { value: Some(value), prev, next };
        let index = self.occupy(entry);
        self.entries[next].prev = index;
        if prev == NIL {
            self.head = index;
        } else {
            self.entries[prev].next = index;
        }
        self.queued += 1;
        WaiterKey(index)
    }

    /// Stores `entry` in a free entry, or a new one; returns its index.
    fn occupy(&mut self, entry: Entry<T>) -> usize {
        if self.free == NIL {
            self.entries.push(entry);
            return self.entries.len() - 1;
        }
        let index = self.free;
        self.free = self.entries[index].next;
        self.entries[index] = entry;
        index
    }

    /// Takes the oldest queued value out.
    pub(crate) fn pop_front(&mut self) -> Option<T> {
        let head = self.front()?;
        self.remove(head)
    }

    /// The oldest queued entry.
    pub(crate) fn front(&self) -> Option<WaiterKey> {
        (self.head != NIL).then_some(WaiterKey(self.head))
    }

    /// Takes the newest queued value out.
    pub(crate) fn pop_back(&mut self) -> Option<T> {
        let tail = self.back()?;
        self.remove(tail)
    }

    /// The newest queued entry.
    pub(crate) fn back(&self) -> Option<WaiterKey> {
        (self.tail != NIL).then_some(WaiterKey(self.tail))
    }

    /// The queued entry after `key` (which must be queued).
    pub(crate) fn next(&self, key: WaiterKey) -> Option<WaiterKey> {
        let next = self.entries.get(key.0).map_or(NIL, |entry| entry.next);
        (next != NIL).then_some(WaiterKey(next))
    }

    /// The value queued at `key`, if the entry is occupied.
    pub(crate) fn get(&self, key: WaiterKey) -> Option<&T> {
        self.entries.get(key.0).and_then(|entry| entry.value.as_ref())
    }

    /// Takes the value at `key` out of the queue, wherever it stands; `None` for a free entry.
    pub(crate) fn remove(&mut self, key: WaiterKey) -> Option<T> {
        let index = key.0;
        let value = self.entries.get_mut(index)?.value.take()?;
        let (prev, next) = (self.entries[index].prev, self.entries[index].next);
        if prev == NIL {
            self.head = next;
        } else {
            self.entries[prev].next = next;
        }
        if next == NIL {
            self.tail = prev;
        } else {
            self.entries[next].prev = prev;
        }
        let entry = &mut self.entries[index];
        entry.prev = NIL;
        entry.next = self.free;
        self.free = index;
        self.queued -= 1;
        Some(value)
    }
}

#[cfg(all(test, not(millpond_loom)))]
mod tests {
    use super::*;

    fn drain(list: &mut WaitList<u32>) -> Vec<u32> {
        std::iter::from_fn(|| list.pop_front()).collect()
    }

    #[test]
    fn serves_in_arrival_order() {
        let mut list = WaitList::default();
        for value in 0..5 {
            list.push_back(value);
        }
        assert_eq!(drain(&mut list), vec![0, 1, 2, 3, 4]);
        assert_eq!(list.len(), 0);
    }

    #[test]
    fn serves_newest_first_from_the_back() {
        let mut list = WaitList::default();
        for value in 0..4 {
            list.push_back(value);
        }
        assert_eq!(list.pop_back(), Some(3));
        assert_eq!(list.pop_back(), Some(2));
        list.push_back(9);
        assert_eq!(list.pop_back(), Some(9));
        assert_eq!(drain(&mut list), vec![0, 1]);
        assert_eq!(list.pop_back(), None);
    }

    #[test]
    fn removal_from_the_middle_keeps_the_order_of_the_rest() {
        let mut list = WaitList::default();
        let keys: Vec<_> = (0..5).map(|value| list.push_back(value)).collect();
        assert_eq!(list.remove(keys[2]), Some(2));
        assert_eq!(list.remove(keys[0]), Some(0));
        assert_eq!(list.remove(keys[4]), Some(4));
        assert_eq!(list.len(), 2);
        assert_eq!(drain(&mut list), vec![1, 3]);
    }

    #[test]
    fn a_freed_key_reads_as_empty_until_reused() {
        let mut list = WaitList::default();
        let key = list.push_back(7);
        assert_eq!(list.pop_front(), Some(7));
        assert_eq!(list.get(key), None);
        assert_eq!(list.remove(key), None, "removing twice is harmless");
        let reused = list.push_back(8);
        assert_eq!(reused, key, "the entry is reused: identity needs the value too");
        assert_eq!(list.get(key), Some(&8));
    }

    #[test]
    fn insertion_before_an_entry_keeps_the_links_whole() {
        let mut list = WaitList::default();
        let keys: Vec<_> = (0..3).map(|value| list.push_back(value)).collect();
        list.insert_before(keys[0], 10);
        list.insert_before(keys[2], 11);
        list.pop_front();
        let freed_reused = list.insert_before(keys[1], 12);
        assert_eq!(list.len(), 5);
        assert_eq!(list.get(freed_reused), Some(&12));
        assert_eq!(drain(&mut list), vec![0, 12, 1, 11, 2]);
        list.push_back(5);
        assert_eq!(drain(&mut list), vec![5], "head and tail are right after draining");
    }

    #[test]
    fn walking_the_queue_visits_queued_entries_in_order() {
        let mut list = WaitList::default();
        let keys: Vec<_> = (0..4).map(|value| list.push_back(value)).collect();
        list.remove(keys[1]);
        let mut queued = Vec::new();
        let mut cursor = list.front();
        while let Some(key) = cursor {
            queued.push(key);
            cursor = list.next(key);
        }
        assert_eq!(queued, vec![keys[0], keys[2], keys[3]]);
    }

    #[test]
    fn freed_entries_are_reused_without_growing() {
        let mut list = WaitList::default();
        for round in 0..100 {
            let a = list.push_back(round);
            let b = list.push_back(round + 1);
            list.remove(a);
            list.remove(b);
        }
        assert_eq!(list.entries.len(), 2);
    }
}
