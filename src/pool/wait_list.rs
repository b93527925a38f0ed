//! A FIFO queue of waiters with O(1) removal from the middle.
//!
//! A waiter joins at the back and is served from the front. A waiter that gives up (its `get()` was
//! cancelled or timed out) removes itself wherever it stands, in O(1), so a storm of cancellations
//! cannot turn into quadratic work under the pool lock. Served waiters are *unlinked* but keep their
//! entry until their owner collects the value handed to them: that entry is the hand-off cell.
//!
//! Entries live in one `Vec` threaded into a doubly linked list by index; freed entries form a free
//! list, so a steady state of waiters allocates nothing. A key is only reused after its owner removed
//! it, and every owner removes its key exactly once, so a stale key can never name a newer waiter.

const NIL: usize = usize::MAX;

/// Names one entry of a [`WaitList`]; valid until passed to [`WaitList::remove`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct WaiterKey(usize);

#[derive(Debug)]
struct Entry<T> {
    value: Option<T>,
    prev: usize,
    /// The next queued entry while linked; the next free entry while free.
    next: usize,
    linked: bool,
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
    /// How many entries are queued (served entries awaiting collection are not counted).
    pub(crate) fn len(&self) -> usize {
        self.queued
    }

    /// Queues `value` at the back.
    pub(crate) fn push_back(&mut self, value: T) -> WaiterKey {
        let entry = Entry { value: Some(value), prev: self.tail, next: NIL, linked: true };
        let index = if self.free == NIL {
            self.entries.push(entry);
            self.entries.len() - 1
        } else {
            let index = self.free;
            self.free = self.entries[index].next;
            self.entries[index] = entry;
            index
        };
        if self.tail == NIL {
            self.head = index;
        } else {
            self.entries[self.tail].next = index;
        }
        self.tail = index;
        self.queued += 1;
        WaiterKey(index)
    }

    /// Unlinks the oldest queued entry and returns its key; its value stays until `remove`.
    pub(crate) fn pop_front(&mut self) -> Option<WaiterKey> {
        if self.head == NIL {
            return None;
        }
        let index = self.head;
        self.unlink(index);
        Some(WaiterKey(index))
    }

    /// The oldest queued entry.
    pub(crate) fn front(&self) -> Option<WaiterKey> {
        (self.head != NIL).then_some(WaiterKey(self.head))
    }

    /// The queued entry after `key` (which must still be queued).
    pub(crate) fn next(&self, key: WaiterKey) -> Option<WaiterKey> {
        let next = self.entries[key.0].next;
        (next != NIL).then_some(WaiterKey(next))
    }

    /// The value at `key`, if the entry is occupied (a freed key may since name another value).
    pub(crate) fn get(&self, key: WaiterKey) -> Option<&T> {
        self.entries.get(key.0).and_then(|entry| entry.value.as_ref())
    }

    /// Whether the entry is still queued (not yet served).
    pub(crate) fn is_queued(&self, key: WaiterKey) -> bool {
        self.entries[key.0].linked
    }

    pub(crate) fn get_mut(&mut self, key: WaiterKey) -> &mut T {
        self.entries[key.0].value.as_mut().expect("a live waiter key names an occupied entry")
    }

    /// Frees the entry, unlinking it if it is still queued, and returns its value.
    pub(crate) fn remove(&mut self, key: WaiterKey) -> T {
        let index = key.0;
        if self.entries[index].linked {
            self.unlink(index);
        }
        let value =
            self.entries[index].value.take().expect("a live waiter key names an occupied entry");
        self.entries[index].next = self.free;
        self.free = index;
        value
    }

    fn unlink(&mut self, index: usize) {
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
        entry.linked = false;
        entry.prev = NIL;
        entry.next = NIL;
        self.queued -= 1;
    }
}

#[cfg(all(test, not(millpond_loom)))]
mod tests {
    use super::*;

    fn drain(list: &mut WaitList<u32>) -> Vec<u32> {
        let mut out = Vec::new();
        while let Some(key) = list.pop_front() {
            out.push(list.remove(key));
        }
        out
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
    fn removal_from_the_middle_keeps_the_order_of_the_rest() {
        let mut list = WaitList::default();
        let keys: Vec<_> = (0..5).map(|value| list.push_back(value)).collect();
        assert_eq!(list.remove(keys[2]), 2);
        assert_eq!(list.remove(keys[0]), 0);
        assert_eq!(list.remove(keys[4]), 4);
        assert_eq!(list.len(), 2);
        assert_eq!(drain(&mut list), vec![1, 3]);
    }

    #[test]
    fn served_entries_keep_their_value_until_removed() {
        let mut list = WaitList::default();
        let key = list.push_back(7);
        assert_eq!(list.pop_front(), Some(key));
        assert!(!list.is_queued(key));
        assert_eq!(list.len(), 0);
        *list.get_mut(key) += 1;
        assert_eq!(list.remove(key), 8);
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
        assert_eq!(list.get(keys[1]), None, "a removed entry reads as empty");
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
