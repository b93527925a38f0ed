//! Watching the PostgreSQL wire protocol as it passes, to know when a connection is safe to reuse.
//!
//! tokio-postgres does not say whether a connection still has a query in flight (a caller
//! dropped the future mid-way), sits inside a transaction (a caller sent `BEGIN` and left), or
//! carries session state a caller set (`SET`, `LISTEN`, a temporary table). The server does say:
//! every request cycle ends with a `ReadyForQuery` message carrying the transaction status, every
//! statement ends with a `CommandComplete` naming what it was, and a change to a reported setting
//! comes as a `ParameterStatus`. [`Watched`] wraps the byte stream under tokio-postgres, splits
//! both directions into messages by their length prefix (it never buffers or alters a byte), and
//! keeps five facts in a [`Wire`] the pool reads on checkout:
//!
//! - the request cycles in flight: the startup message, each simple `Query` and each `Sync`
//!   get exactly one `ReadyForQuery`, even after an error, so a FIFO of sent cycles popped at
//!   each `ReadyForQuery` is exact;
//! - which of those may do a caller's work, and which are tokio-postgres's own housekeeping that
//!   the next user can safely queue behind. Housekeeping is told apart by what it *is*, never by
//!   a prefix a user could also send: a cycle of nothing but `Close` messages (a dropped
//!   statement or portal), and a simple query whose whole text is `ROLLBACK` (a dropped
//!   transaction; the statement ends the previous user's transaction, as the pool would, and
//!   can wait on nothing). Everything else is work, a `Parse` or `Bind` included: both can wait
//!   on a lock;
//! - the transaction status of the last `ReadyForQuery`;
//! - whether the session was changed: a `CommandComplete` for a statement that leaves state in
//!   the session (see [`session_effect`]), or a `ParameterStatus` after the startup. The pool's
//!   own reset is awaited by the manager while it holds the connection alone, so it clears the
//!   mark once the reset's answer has arrived (everything before it in the FIFO has too);
//! - whether the session was used at all since that reset: any request cycle after the startup.
//!   [`SessionReset::DiscardAll`](super::SessionReset::DiscardAll) resets only such a session, so
//!   a connection nobody used (a fresh one, or one a `try_get` took and gave back) costs nothing.
//!
//! pgx makes the same checks (busy, transaction status) before reusing a connection, and HikariCP
//! keeps the same kind of dirty bits (for the JDBC setters it sees). Here they cost a few byte
//! comparisons per message.

use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;

use crate::sync::{Arc, AtomicU64, Notify, Ordering};

/// Where a connection stands with respect to transactions, as of its last completed request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TransactionStatus {
    /// Not inside a transaction block.
    Idle,
    /// Inside a transaction block that can still commit.
    InTransaction,
    /// Inside a transaction block that failed; only a rollback gets out of it.
    Failed,
}

impl TransactionStatus {
    fn from_byte(byte: u8) -> Self {
        match byte {
            b'I' => Self::Idle,
            b'T' => Self::InTransaction,
            // `E`, and anything a future server might add, is treated as needing a rollback.
            _ => Self::Failed,
        }
    }

    fn to_word(self) -> u64 {
        match self {
            Self::Idle => 0,
            Self::InTransaction => 1,
            Self::Failed => 2,
        }
    }

    fn from_word(word: u64) -> Self {
        match word {
            0 => Self::Idle,
            1 => Self::InTransaction,
            _ => Self::Failed,
        }
    }
}

/// The session holds state a user set, as the protocol showed or the user said.
pub(crate) const DIRTY: u64 = 1;
/// The server dropped every prepared statement: a user ran `DISCARD ALL` or `DEALLOCATE ALL`.
pub(crate) const STATEMENTS_LOST: u64 = 2;
/// A request cycle was sent after the startup: the session was used.
pub(crate) const USED: u64 = 4;
/// Statements may have been prepared with SQL `PREPARE` (seen, or not ruled out): the reset must
/// deallocate them, which costs a server-side loop the other resets do without.
pub(crate) const SQL_PREPARED: u64 = 8;

/// What the watcher has seen on one connection; shared between the stream (written by the
/// connection task) and the pooled connection (read when it is checked out).
///
/// The connection task is the only writer of the counts and the status; it publishes the session
/// marks, then the status, then the counts, each with `Release`, and readers load the counts
/// first with `Acquire`. So a reader that sees a request answered also sees the status and the
/// session marks its answer carried (`wire/loom_models.rs` checks this).
#[derive(Debug, Default)]
pub(crate) struct Wire {
    /// Request cycles sent and not yet answered.
    in_flight: AtomicU64,
    /// Of those, the ones that may do a caller's work (see the module docs).
    work_in_flight: AtomicU64,
    status: AtomicU64,
    /// [`DIRTY`], [`STATEMENTS_LOST`], [`USED`] and [`SQL_PREPARED`].
    session: AtomicU64,
    /// Woken when the last unit of work in flight is answered.
    settled: Notify,
    /// Request cycles that did a caller's work and were answered since the last
    /// [`take_traffic`](Self::take_traffic) (high 32 bits), and those of them the server failed
    /// for a reason of its own (low 32 bits; see [`server_at_fault`]): what a cluster's outlier
    /// ejection reads. One word, so that a take never splits a failure from its call; a tally,
    /// so `Relaxed`.
    traffic: AtomicU64,
    /// Of those cycles, the ones the server did not fail (high 24 bits), and their total time
    /// from the request sent to its `ReadyForQuery` in microseconds (low 40 bits, about 12 days):
    /// the latency outlier ejection compares. One word, so a take never splits a time from its
    /// count; it saturates rather than wraps (see [`Wire::add_time`]).
    timing: AtomicU64,
}

/// One answered cycle in [`Wire::traffic`]; a failed one adds 1 below it.
const CALL: u64 = 1 << 32;

/// Bits of [`Wire::timing`] that hold the total time in microseconds.
const TIME_BITS: u32 = 40;
const TIME_MASK: u64 = (1 << TIME_BITS) - 1;
/// One timed cycle in [`Wire::timing`].
const TIMED: u64 = 1 << TIME_BITS;
/// The most timed cycles the word holds.
const TIMED_MAX: u64 = (1 << (64 - TIME_BITS)) - 1;

/// The time one answered request cycle took, and how many were timed: what
/// [`Wire::take_traffic`] hands over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Tally {
    pub(crate) calls: u64,
    pub(crate) failures: u64,
    /// Calls the server did not fail whose time is in `time`.
    pub(crate) timed: u64,
    pub(crate) time: Duration,
}

impl Wire {
    /// Work cycles answered since the last take, and those the server failed for a reason of
    /// its own; counts from zero again. Counts that arrive after a caller gave the connection
    /// back (the server's `ReadyForQuery` read a moment late) go to the next take, not nowhere.
    ///
    /// The timed cycles and their time come from a second word, so they always match each
    /// other; a cycle answered between the two swaps has its time in this take and its call in
    /// the next (the watcher adds the time first), and every total stays exact over takes.
    pub(crate) fn take_traffic(&self) -> Tally {
        let word = self.traffic.swap(0, Ordering::Relaxed);
        let timing = self.timing.swap(0, Ordering::Relaxed);
        Tally {
            calls: word >> 32,
            failures: word & (CALL - 1),
            timed: timing >> TIME_BITS,
            time: Duration::from_micros(timing & TIME_MASK),
        }
    }

    /// Adds one successful cycle that took `elapsed`. A take comes with every return of the
    /// connection, so the word fills only on a connection held for days; then cycles go
    /// untimed (still counted as calls) until the next take, rather than wrapping into nonsense.
    fn add_time(&self, elapsed: Duration) {
        let micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        // Only the connection task adds, but a take may swap in between: hence the loop. A
        // refused update (the word is full) leaves the cycle untimed, which is all it can mean.
        let mut word = self.timing.load(Ordering::Relaxed);
        loop {
            let total = (word & TIME_MASK).checked_add(micros).filter(|&t| t <= TIME_MASK);
            let Some(total) = total.filter(|_| word >> TIME_BITS < TIMED_MAX) else { return };
            let new = (word & !TIME_MASK) + TIMED + total;
            match self.timing.compare_exchange_weak(word, new, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return,
                Err(now) => word = now,
            }
        }
    }

    /// Whether a request doing the caller's work is still waiting for its `ReadyForQuery`.
    pub(crate) fn is_busy(&self) -> bool {
        self.work_in_flight.load(Ordering::Acquire) > 0
    }

    /// Whether any request, housekeeping included, is still waiting for its answer.
    #[cfg(all(test, not(millpond_loom)))]
    pub(crate) fn has_requests_in_flight(&self) -> bool {
        self.in_flight.load(Ordering::Acquire) > 0
    }

    /// The transaction status the last `ReadyForQuery` reported.
    pub(crate) fn status(&self) -> TransactionStatus {
        TransactionStatus::from_word(self.status.load(Ordering::Acquire))
    }

    /// Whether the session holds state a user set since the last reset.
    pub(crate) fn is_dirty(&self) -> bool {
        self.session.load(Ordering::Acquire) & DIRTY != 0
    }

    /// Marks the session as holding state a user set, of any kind.
    pub(crate) fn mark_dirty(&self) {
        self.session.fetch_or(DIRTY | SQL_PREPARED, Ordering::Release);
    }

    /// Whether statements may have been prepared with SQL `PREPARE` since the last reset.
    pub(crate) fn may_hold_sql_prepared(&self) -> bool {
        self.session.load(Ordering::Acquire) & SQL_PREPARED != 0
    }

    /// Whether a request cycle was sent since the last reset (or since the startup).
    pub(crate) fn is_used(&self) -> bool {
        self.session.load(Ordering::Acquire) & USED != 0
    }

    /// Forgets the session's state and its use after a reset whose answer has arrived, on a
    /// connection no one else can send on.
    pub(crate) fn clear_dirty(&self) {
        self.session.fetch_and(!(DIRTY | USED | SQL_PREPARED), Ordering::Release);
    }

    /// Forgets the use of the pool's own ping, sent on a session no one used since its reset:
    /// its answer has arrived, and no one else can send on the connection.
    pub(crate) fn clear_used(&self) {
        self.session.fetch_and(!USED, Ordering::Release);
    }

    /// Whether the server dropped every prepared statement since the last call.
    pub(crate) fn take_statements_lost(&self) -> bool {
        // Checked on every `prepare_cached`: a plain load keeps the common case a read.
        self.session.load(Ordering::Acquire) & STATEMENTS_LOST != 0
            && self.session.fetch_and(!STATEMENTS_LOST, Ordering::AcqRel) & STATEMENTS_LOST != 0
    }

    /// Waits up to `grace` for the work in flight to be answered; whether it was.
    ///
    /// tokio-postgres hands rows to the caller as they arrive, so a caller can finish (and return
    /// the connection) a moment before the server's closing `ReadyForQuery` is read. A short
    /// grace tells that apart from a query abandoned mid-way.
    pub(crate) async fn settle(&self, grace: Duration) -> bool {
        tokio::time::timeout(grace, self.settled()).await.is_ok()
    }

    /// Waits until no work is in flight.
    async fn settled(&self) {
        loop {
            // Registered before the check, so an answer published between the two still wakes
            // this waiter.
            let notified = self.settled.notified();
            if !self.is_busy() {
                return;
            }
            notified.await;
        }
    }

    /// Publishes what the watcher saw; `work_before` is the count it published last (the
    /// watcher is the only writer, so it keeps its own copy rather than reading the atomic back;
    /// a read-back would also hide the race with a checkout's read from loom, which judges each
    /// store against the last access only). Returns the count published now.
    fn publish(
        &self,
        work_before: u64,
        pending: &VecDeque<Cycle>,
        status: Option<u8>,
        session: u64,
    ) -> u64 {
        if session != 0 {
            self.session.fetch_or(session, Ordering::Release);
        }
        if let Some(status) = status {
            self.status.store(TransactionStatus::from_byte(status).to_word(), Ordering::Release);
        }
        let work = pending.iter().filter(|cycle| cycle.is_work).count() as u64;
        self.in_flight.store(pending.len() as u64, Ordering::Release);
        self.work_in_flight.store(work, Ordering::Release);
        if work == 0 && work_before > 0 {
            self.settled.notify_waiters();
        }
        work
    }
}

/// What a statement's `CommandComplete` tag (`tag`: its first bytes, NUL included when it fits)
/// says about the session: [`DIRTY`] for a statement that leaves state in it, [`STATEMENTS_LOST`]
/// for one that drops every prepared statement, 0 otherwise.
///
/// The tag names the statement, not its object, so the rules are conservative: every `CREATE`
/// counts (a temporary table, view, sequence or function looks like a permanent one), `SET` counts
/// even as `SET LOCAL` or inside a transaction later rolled back, and `DO` counts (an anonymous
/// block can set anything). What no tag shows: `CREATE TABLE ... AS` and `SELECT ... INTO`
/// (tagged `SELECT`, like any query), settings changed through `set_config()` that the server does
/// not report, session advisory locks, and `currval`/`lastval`. The user marks those with
/// `PgConnection::mark_dirty`.
fn session_effect(tag: &[u8]) -> u64 {
    if tag.starts_with(b"CREATE ") {
        return DIRTY;
    }
    let Some(end) = tag.iter().position(|&byte| byte == 0) else {
        // Longer than the bytes kept: none of the tags below.
        return 0;
    };
    match &tag[..end] {
        // An anonymous block can prepare statements too.
        b"PREPARE" | b"DO" => DIRTY | SQL_PREPARED,
        b"SET" | b"RESET" | b"LISTEN" | b"DECLARE CURSOR" => DIRTY,
        b"DISCARD ALL" | b"DEALLOCATE ALL" => STATEMENTS_LOST,
        _ => 0,
    }
}

/// How many bytes of a `CommandComplete` tag the watcher keeps: the longest tag it matches
/// (`DECLARE CURSOR`, `DEALLOCATE ALL`) with its NUL.
const TAG_BYTES: usize = 16;

/// How much of an `ErrorResponse` is kept to find its SQLSTATE: the code follows the two
/// severity fields, well within this.
const ERROR_BYTES: usize = 48;

/// Whether an `ErrorResponse`'s fields (the start of its body) carry a SQLSTATE of a class that
/// says the server failed the request for a reason of its own, not the caller's: connection
/// exceptions (08), transaction rollbacks such as serialization failures and deadlocks (40),
/// insufficient resources (53), objects in the wrong state such as a lock not available (55),
/// operator intervention such as a statement timeout or a shutdown (57), system errors (58)
/// and internal errors (XX). A syntax error or a constraint violation is the caller's.
pub(crate) fn server_at_fault(fields: &[u8]) -> bool {
    let mut rest = fields;
    while let Some((&kind, tail)) = rest.split_first() {
        let Some(end) = tail.iter().position(|&byte| byte == 0) else { return false };
        if kind == b'C' {
            let class = tail.get(..2).unwrap_or_default();
            return matches!(class, b"08" | b"40" | b"53" | b"55" | b"57" | b"58" | b"XX");
        }
        if kind == 0 {
            return false;
        }
        rest = &tail[end + 1..];
    }
    false
}

/// `SSLRequest` and `GSSENCRequest`: untyped messages the server answers with a single byte.
const SSL_REQUEST_CODE: u32 = 80_877_103;
const GSSENC_REQUEST_CODE: u32 = 80_877_104;

/// The simple query tokio-postgres sends for a transaction dropped without commit or rollback,
/// as it is on the wire: the whole message body.
const ROLLBACK_QUERY: &[u8] = b"ROLLBACK\0";

/// Splits one direction of the protocol into messages.
///
/// A typed message is a type byte and a big-endian `i32` length that counts itself; the first
/// messages a client sends are untyped (length, then a code). The splitter reports each header
/// and each run of body bytes.
#[derive(Debug)]
struct Splitter {
    header: [u8; 8],
    header_filled: usize,
    /// Whether the next message is untyped (a client's startup phase).
    untyped: bool,
    /// The current typed message's type.
    kind: u8,
    /// Body bytes of the current message seen so far, and still to pass.
    body_seen: usize,
    body_left: usize,
}

/// What a splitter found in a run of bytes.
enum Frame<'a> {
    /// A typed message's header.
    Typed(u8),
    /// An untyped message's header, with its code.
    Untyped(u32),
    /// Body bytes of the current message, `offset` bytes into its body.
    Body { kind: u8, offset: usize, bytes: &'a [u8] },
}

impl Splitter {
    fn new(untyped: bool) -> Self {
        Self { header: [0; 8], header_filled: 0, untyped, kind: 0, body_seen: 0, body_left: 0 }
    }

    fn header_len(&self) -> usize {
        if self.untyped { 8 } else { 5 }
    }

    /// Feeds bytes that passed, reporting what they contained.
    fn feed<'a>(&mut self, mut bytes: &'a [u8], mut on: impl FnMut(&mut Self, Frame<'a>)) {
        while !bytes.is_empty() {
            if self.body_left > 0 {
                let (body, rest) = bytes.split_at(self.body_left.min(bytes.len()));
                let frame = Frame::Body { kind: self.kind, offset: self.body_seen, bytes: body };
                self.body_seen += body.len();
                self.body_left -= body.len();
                bytes = rest;
                on(self, frame);
                continue;
            }
            let want = self.header_len() - self.header_filled;
            let take = want.min(bytes.len());
            self.header[self.header_filled..self.header_filled + take]
                .copy_from_slice(&bytes[..take]);
            self.header_filled += take;
            bytes = &bytes[take..];
            if self.header_filled < self.header_len() {
                continue;
            }
            self.header_filled = 0;
            self.body_seen = 0;
            if self.untyped {
                let len = be_u32(&self.header[0..4]) as usize;
                self.body_left = len.saturating_sub(8);
                self.kind = 0;
                on(self, Frame::Untyped(be_u32(&self.header[4..8])));
            } else {
                self.kind = self.header[0];
                let len = be_u32(&self.header[1..5]) as usize;
                self.body_left = len.saturating_sub(4);
                on(self, Frame::Typed(self.kind));
            }
        }
    }
}

fn be_u32(bytes: &[u8]) -> u32 {
    u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]])
}

/// A request cycle sent and awaiting its `ReadyForQuery`.
#[derive(Debug, Clone, Copy)]
struct Cycle {
    /// Whether it may do a caller's work (see the module docs).
    is_work: bool,
    sent: Instant,
}

/// The stream under a pooled connection's session: it reports the protocol passing through it
/// (requests sent, `ReadyForQuery` received, the transaction status) to the connection.
///
/// Used under tokio-postgres twice over when TLS is on: around the socket, where it sees the
/// plaintext `SSLRequest` and then stops at the server's `S`, and around the TLS stream, where
/// it sees the session itself.
#[derive(Debug)]
pub(crate) struct Watched<S> {
    inner: S,
    wire: Arc<Wire>,
    outgoing: Splitter,
    incoming: Splitter,
    /// The request cycles awaiting a `ReadyForQuery`, oldest first: whether each is work.
    pending: VecDeque<Cycle>,
    /// The count of work in flight last published to the wire.
    work_published: u64,
    /// Whether the cycle being sent (up to its `Sync`) has a message other than `Close`.
    cycle_has_work: bool,
    /// Whether the simple query being sent may still be a bare `ROLLBACK`.
    maybe_rollback: bool,
    /// The first bytes of the `CommandComplete` being received.
    tag: [u8; TAG_BYTES],
    /// The first bytes of the `ErrorResponse` being received.
    error: [u8; ERROR_BYTES],
    /// The cycle being answered had an error of the server's.
    cycle_failed: bool,
    /// The session's startup has been answered: a `ParameterStatus` now means a change.
    started: bool,
    /// The client asked for encryption; the server's next byte is a bare `S` or `N`.
    encryption_reply_next: bool,
    /// Encryption took over below this layer: the bytes are no longer the protocol.
    stopped: bool,
}

impl<S> Watched<S> {
    pub(crate) fn new(inner: S, wire: Arc<Wire>) -> Self {
        Self {
            inner,
            wire,
            outgoing: Splitter::new(true),
            incoming: Splitter::new(false),
            pending: VecDeque::new(),
            work_published: 0,
            cycle_has_work: false,
            maybe_rollback: false,
            tag: [0; TAG_BYTES],
            error: [0; ERROR_BYTES],
            cycle_failed: false,
            started: false,
            encryption_reply_next: false,
            stopped: false,
        }
    }

    /// The stream and its wire, for the TLS layer to take over.
    pub(crate) fn into_parts(self) -> (S, Arc<Wire>) {
        (self.inner, self.wire)
    }

    /// The stream underneath.
    pub(crate) fn get_ref(&self) -> &S {
        &self.inner
    }

    fn saw_outgoing(&mut self, bytes: &[u8]) {
        if self.stopped || bytes.is_empty() {
            return;
        }
        let pending = &mut self.pending;
        // One clock read per write: the cycles it carries left together.
        let sent = Instant::now();
        let cycle = |is_work| Cycle { is_work, sent };
        let cycle_has_work = &mut self.cycle_has_work;
        let maybe_rollback = &mut self.maybe_rollback;
        let mut asked_for_encryption = false;
        // Any request cycle but the startup (the only untyped one) is a use.
        let mut used = 0;
        self.outgoing.feed(bytes, |splitter, frame| match frame {
            Frame::Untyped(SSL_REQUEST_CODE | GSSENC_REQUEST_CODE) => asked_for_encryption = true,
            Frame::Untyped(_) => {
                // The startup message: the server ends the startup with a ReadyForQuery.
                splitter.untyped = false;
                pending.push_back(cycle(false));
            }
            // A simple query (or a function call) is a cycle of its own, and work unless its
            // whole text turns out to be `ROLLBACK`.
            Frame::Typed(b'Q') => {
                pending.push_back(cycle(true));
                used = USED;
                *maybe_rollback = splitter.body_left == ROLLBACK_QUERY.len();
            }
            Frame::Typed(b'F') => {
                pending.push_back(cycle(true));
                used = USED;
            }
            Frame::Body { kind: b'Q', offset, bytes } if *maybe_rollback => {
                let end = offset + bytes.len();
                if ROLLBACK_QUERY.get(offset..end) != Some(bytes) {
                    *maybe_rollback = false;
                } else if end == ROLLBACK_QUERY.len() {
                    *maybe_rollback = false;
                    if let Some(last) = pending.back_mut() {
                        last.is_work = false;
                    }
                }
            }
            // Parse, Bind, Describe, Execute: anything in a cycle but `Close` may wait on the
            // server. Flush, password and copy messages belong to a cycle already counted.
            Frame::Typed(b'P' | b'B' | b'D' | b'E') => *cycle_has_work = true,
            Frame::Typed(b'S') => {
                pending.push_back(cycle(std::mem::take(cycle_has_work)));
                used = USED;
            }
            Frame::Typed(_) | Frame::Body { .. } => {}
        });
        if asked_for_encryption {
            self.encryption_reply_next = true;
        }
        self.work_published = self.wire.publish(self.work_published, &self.pending, None, used);
    }

    fn saw_incoming(&mut self, mut bytes: &[u8]) {
        if self.stopped || bytes.is_empty() {
            return;
        }
        if self.encryption_reply_next {
            self.encryption_reply_next = false;
            if bytes[0] != b'N' {
                // `S` (or `G`): encryption starts under this layer; a layer above takes over.
                self.stopped = true;
                return;
            }
            bytes = &bytes[1..];
        }
        let pending = &mut self.pending;
        // One clock read per read: the answers it carries arrived together.
        let answered = Instant::now();
        let tag = &mut self.tag;
        let error = &mut self.error;
        let cycle_failed = &mut self.cycle_failed;
        let started = &mut self.started;
        let wire = &self.wire;
        let mut status = None;
        let mut session = 0;
        self.incoming.feed(bytes, |splitter, frame| match frame {
            Frame::Typed(b'Z') => {
                if let Some(Cycle { is_work: true, sent }) = pending.pop_front() {
                    if !*cycle_failed {
                        wire.add_time(answered.saturating_duration_since(sent));
                    }
                    wire.traffic.fetch_add(CALL + u64::from(*cycle_failed), Ordering::Relaxed);
                }
                *cycle_failed = false;
                *started = true;
            }
            Frame::Typed(b'E') => *error = [0; ERROR_BYTES],
            Frame::Body { kind: b'E', offset, bytes } => {
                if offset < ERROR_BYTES {
                    let kept = bytes.len().min(ERROR_BYTES - offset);
                    error[offset..offset + kept].copy_from_slice(&bytes[..kept]);
                }
                if splitter.body_left == 0 && server_at_fault(&error[..]) {
                    *cycle_failed = true;
                }
            }
            Frame::Body { kind: b'Z', offset: 0, bytes } => status = Some(bytes[0]),
            // The startup reports every setting; after it, a report is a change.
            Frame::Typed(b'S') if *started => session |= DIRTY,
            // No NUL in the buffer but the tag's own, so a short tag is told from a long one.
            Frame::Typed(b'C') => *tag = [0xff; TAG_BYTES],
            Frame::Body { kind: b'C', offset, bytes } => {
                if offset < TAG_BYTES {
                    let kept = bytes.len().min(TAG_BYTES - offset);
                    tag[offset..offset + kept].copy_from_slice(&bytes[..kept]);
                }
                if splitter.body_left == 0 {
                    session |= session_effect(&tag[..]);
                }
            }
            Frame::Typed(_) | Frame::Untyped(_) | Frame::Body { .. } => {}
        });
        self.work_published =
            self.wire.publish(self.work_published, &self.pending, status, session);
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let poll = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = poll {
            let this = &mut *self;
            this.saw_incoming(&buf.filled()[before..]);
        }
        poll
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(written)) = poll {
            self.saw_outgoing(&buf[..written]);
        }
        poll
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(all(test, millpond_loom))]
mod loom_models;

#[cfg(test)]
mod test_util;

// The unit tests build wires outside any loom model, which loom's atomics refuse.
#[cfg(all(test, not(millpond_loom)))]
mod tests {
    use super::test_util::{startup, typed, untyped};
    use super::*;

    #[test]
    fn only_server_side_sqlstate_classes_count_as_the_servers_failure() {
        let fields = |code: &str| format!("SERROR\0VERROR\0C{code}\0Msomething\0\0").into_bytes();
        for code in ["57014", "53300", "08006", "40001", "40P01", "55P03", "58000", "XX000"] {
            assert!(server_at_fault(&fields(code)), "{code}");
        }
        for code in ["42601", "23505", "22012", "42P01", "P0001"] {
            assert!(!server_at_fault(&fields(code)), "{code}");
        }
        assert!(!server_at_fault(b"SERROR\0"), "no code");
        assert!(!server_at_fault(b"SERR"), "cut short");
    }

    /// Feeds `bytes` in every split into two runs, and checks the wire after each.
    fn each_split(outgoing: &[u8], incoming: &[u8], check: impl Fn(&Wire)) {
        for cut_out in 0..=outgoing.len() {
            for cut_in in [0, 1, incoming.len() / 2, incoming.len()] {
                let wire = Arc::new(Wire::default());
                let mut watched = Watched::new((), Arc::clone(&wire));
                watched.saw_outgoing(&outgoing[..cut_out]);
                watched.saw_outgoing(&outgoing[cut_out..]);
                watched.saw_incoming(&incoming[..cut_in]);
                watched.saw_incoming(&incoming[cut_in..]);
                check(&wire);
            }
        }
    }

    /// A watched connection past its startup.
    fn started() -> (Arc<Wire>, Watched<()>) {
        let wire = Arc::new(Wire::default());
        let mut watched = Watched::new((), Arc::clone(&wire));
        watched.saw_outgoing(&startup());
        watched.saw_incoming(&typed(b'Z', b"I"));
        (wire, watched)
    }

    /// Work cycles are timed from the request to its `ReadyForQuery`; a cycle the server failed
    /// and housekeeping are counted as before but not timed.
    #[tokio::test(start_paused = true)]
    async fn successful_work_cycles_are_timed_from_request_to_answer() {
        let (wire, mut watched) = started();
        assert_eq!(wire.take_traffic(), Tally::default(), "the startup is not work");

        watched.saw_outgoing(&typed(b'Q', b"SELECT pg_sleep(0.03)\0"));
        tokio::time::advance(Duration::from_millis(30)).await;
        watched.saw_incoming(&[typed(b'C', b"SELECT 1\0"), typed(b'Z', b"I")].concat());

        // Two pipelined cycles answered 5 ms and 7 ms after they left together.
        let sync = [typed(b'P', b"\0SELECT 1\0\0\0"), typed(b'S', b"")].concat();
        watched.saw_outgoing(&[sync.clone(), sync].concat());
        tokio::time::advance(Duration::from_millis(5)).await;
        watched.saw_incoming(&typed(b'Z', b"I"));
        tokio::time::advance(Duration::from_millis(2)).await;
        watched.saw_incoming(&typed(b'Z', b"I"));

        let tally = wire.take_traffic();
        assert_eq!((tally.calls, tally.failures, tally.timed), (3, 0, 3));
        assert_eq!(tally.time, Duration::from_millis(42));

        // A cycle the server cancelled counts as a failure and adds no time; a dropped
        // statement's `Close` is housekeeping.
        watched.saw_outgoing(&typed(b'Q', b"SELECT pg_sleep(10)\0"));
        tokio::time::advance(Duration::from_millis(100)).await;
        let cancelled = b"SERROR\0VERROR\0C57014\0Mcanceling statement\0\0";
        watched.saw_incoming(&[typed(b'E', cancelled), typed(b'Z', b"I")].concat());
        watched.saw_outgoing(&[typed(b'C', b"Ss1\0"), typed(b'S', b"")].concat());
        tokio::time::advance(Duration::from_millis(100)).await;
        watched.saw_incoming(&typed(b'Z', b"I"));
        let tally = wire.take_traffic();
        assert_eq!((tally.calls, tally.failures, tally.timed), (1, 1, 0));
        assert_eq!(tally.time, Duration::ZERO);
    }

    /// The timing word saturates instead of wrapping: a full word leaves further cycles untimed
    /// until the next take, and what it holds stays the exact total of the cycles it counts.
    #[test]
    fn a_full_timing_word_leaves_cycles_untimed_instead_of_wrapping() {
        let wire = Wire::default();
        let hours = Duration::from_secs(3600);
        let mut added = 0;
        for _ in 0..1000 {
            wire.add_time(hours);
            added += 1;
            if wire.timing.load(Ordering::Relaxed) >> TIME_BITS < added {
                break;
            }
        }
        let tally = wire.take_traffic();
        assert!(tally.timed > 0 && tally.timed < added, "the word filled: {tally:?}");
        assert_eq!(tally.time, hours * u32::try_from(tally.timed).unwrap());
        wire.add_time(Duration::from_micros(1));
        assert_eq!(wire.take_traffic().time, Duration::from_micros(1), "room again after a take");
    }

    #[test]
    fn a_completed_startup_and_query_leave_the_connection_idle() {
        let mut outgoing = startup();
        outgoing.extend(typed(b'Q', b"SELECT 1\0"));
        let mut incoming = typed(b'R', &[0, 0, 0, 0]);
        incoming.extend(typed(b'Z', b"I"));
        incoming.extend(typed(b'T', &[0; 12]));
        incoming.extend(typed(b'C', b"SELECT 1\0"));
        incoming.extend(typed(b'Z', b"I"));
        each_split(&outgoing, &incoming, |wire| {
            assert!(!wire.is_busy());
            assert_eq!(wire.status(), TransactionStatus::Idle);
        });
    }

    #[test]
    fn an_unanswered_sync_is_busy() {
        let mut outgoing = startup();
        outgoing.extend(typed(b'B', &[0; 10]));
        outgoing.extend(typed(b'E', &[0; 5]));
        outgoing.extend(typed(b'S', b""));
        let incoming = typed(b'Z', b"I");
        each_split(&outgoing, &incoming, |wire| assert!(wire.is_busy()));
    }

    #[test]
    fn housekeeping_in_flight_is_not_busy() {
        let mut outgoing = startup();
        outgoing.extend(typed(b'C', b"Ss1\0"));
        outgoing.extend(typed(b'S', b""));
        outgoing.extend(typed(b'Q', b"ROLLBACK\0"));
        let incoming = typed(b'Z', b"T");
        each_split(&outgoing, &incoming, |wire| {
            assert!(!wire.is_busy());
            assert!(wire.has_requests_in_flight());
        });
    }

    #[test]
    fn a_simple_query_in_flight_is_busy_whatever_its_length() {
        for query in [
            &b"SELECT pg_sleep(60)\0"[..],
            b"BEGIN\0",
            b"ROLL\0",
            b"ROLLBACK; SELECT pg_sleep(3)\0",
            b"ROLLBACK TO sp_1\0",
            b"ROLLBACX\0",
            b"rollback\0",
        ] {
            let mut outgoing = startup();
            outgoing.extend(typed(b'Q', query));
            let incoming = typed(b'Z', b"I");
            each_split(&outgoing, &incoming, |wire| assert!(wire.is_busy()));
        }
    }

    #[test]
    fn a_prepare_or_bind_in_flight_is_busy() {
        for kind in [b'P', b'B', b'D'] {
            let mut outgoing = startup();
            outgoing.extend(typed(kind, &[0; 6]));
            outgoing.extend(typed(b'S', b""));
            let incoming = typed(b'Z', b"I");
            each_split(&outgoing, &incoming, |wire| assert!(wire.is_busy()));
        }
    }

    /// The session marks after a startup and one simple query answered with `answer`.
    fn session_after(answer: &[u8]) -> Vec<(bool, bool)> {
        let mut outgoing = startup();
        outgoing.extend(typed(b'Q', b"...\0"));
        let mut incoming = typed(b'S', b"TimeZone\0UTC\0");
        incoming.extend(typed(b'Z', b"I"));
        incoming.extend_from_slice(answer);
        incoming.extend(typed(b'Z', b"I"));
        let marks = std::cell::RefCell::new(Vec::new());
        each_split(&outgoing, &incoming, |wire| {
            assert!(!wire.is_busy());
            let lost = wire.take_statements_lost();
            marks.borrow_mut().push((wire.is_dirty(), lost));
        });
        marks.into_inner()
    }

    #[test]
    fn statements_that_leave_session_state_mark_it_dirty() {
        for tag in [
            &b"SET\0"[..],
            b"RESET\0",
            b"LISTEN\0",
            b"PREPARE\0",
            b"DECLARE CURSOR\0",
            b"CREATE TABLE\0",
            b"CREATE MATERIALIZED VIEW\0",
            b"DO\0",
        ] {
            let marks = session_after(&typed(b'C', tag));
            assert!(marks.iter().all(|&mark| mark == (true, false)), "{tag:?}: {marks:?}");
        }
    }

    #[test]
    fn only_a_prepare_or_an_anonymous_block_calls_for_deallocating_sql_statements() {
        for tag in [&b"PREPARE\0"[..], b"DO\0"] {
            assert_eq!(session_effect(tag), DIRTY | SQL_PREPARED, "{tag:?}");
        }
        for tag in [&b"SET\0"[..], b"LISTEN\0", b"DECLARE CURSOR\0", b"CREATE TABLE\0"] {
            assert_eq!(session_effect(tag), DIRTY, "{tag:?}");
        }
        let wire = Wire::default();
        wire.mark_dirty();
        assert!(wire.may_hold_sql_prepared(), "a session marked by hand may hold anything");
        wire.clear_dirty();
        assert!(!wire.is_dirty() && !wire.may_hold_sql_prepared());
    }

    #[test]
    fn a_reported_setting_that_changes_after_the_startup_marks_the_session_dirty() {
        let mut answer = typed(b'S', b"TimeZone\0UTC+5\0");
        answer.extend(typed(b'T', &[0; 6]));
        answer.extend(typed(b'C', b"SELECT 1\0"));
        let marks = session_after(&answer);
        assert!(marks.iter().all(|&mark| mark == (true, false)), "{marks:?}");
    }

    #[test]
    fn queries_and_the_startup_leave_the_session_clean() {
        for tag in [
            &b"SELECT 1\0"[..],
            b"INSERT 0 1\0",
            b"SHOW\0",
            b"SETTINGS\0",
            b"DISCARD TEMP\0",
            b"BEGIN\0",
            b"ROLLBACK\0",
            b"ALTER TABLE\0",
        ] {
            let marks = session_after(&typed(b'C', tag));
            assert!(marks.iter().all(|&mark| mark == (false, false)), "{tag:?}: {marks:?}");
        }
    }

    #[test]
    fn discard_all_and_deallocate_all_lose_the_prepared_statements() {
        for tag in [&b"DISCARD ALL\0"[..], b"DEALLOCATE ALL\0"] {
            let marks = session_after(&typed(b'C', tag));
            assert!(marks.iter().all(|&mark| mark == (false, true)), "{tag:?}: {marks:?}");
        }
    }

    #[test]
    fn a_user_mark_and_a_reset_set_and_clear_the_session() {
        let wire = Wire::default();
        assert!(!wire.is_dirty());
        wire.mark_dirty();
        assert!(wire.is_dirty());
        wire.clear_dirty();
        assert!(!wire.is_dirty());
    }

    #[test]
    fn every_request_cycle_after_the_startup_marks_the_session_used() {
        let startup_only = startup();
        let answer = typed(b'Z', b"I");
        each_split(&startup_only, &answer, |wire| assert!(!wire.is_used(), "the startup"));
        for cycle in [
            typed(b'Q', b"SELECT 1\0"),
            typed(b'Q', b"ROLLBACK\0"),
            [typed(b'C', b"Ss1\0"), typed(b'S', b"")].concat(),
            [typed(b'P', &[0; 6]), typed(b'S', b"")].concat(),
            typed(b'F', &[0; 6]),
        ] {
            let mut outgoing = startup();
            outgoing.extend(cycle);
            let incoming = [answer.clone(), answer.clone()].concat();
            each_split(&outgoing, &incoming, |wire| assert!(wire.is_used()));
        }
    }

    #[test]
    fn a_reset_clears_the_use_and_the_ping_clears_only_the_use() {
        let wire = Arc::new(Wire::default());
        let mut watched = Watched::new((), Arc::clone(&wire));
        watched.saw_outgoing(&startup());
        watched.saw_incoming(&typed(b'Z', b"I"));
        watched.saw_outgoing(&typed(b'Q', b"SET x = 1\0"));
        watched.saw_incoming(&[typed(b'C', b"SET\0"), typed(b'Z', b"I")].concat());
        assert!(wire.is_used() && wire.is_dirty());
        wire.clear_used();
        assert!(!wire.is_used() && wire.is_dirty());
        watched.saw_outgoing(&typed(b'Q', b"RESET ALL\0"));
        watched.saw_incoming(&[typed(b'C', b"RESET\0"), typed(b'Z', b"I")].concat());
        wire.clear_dirty();
        assert!(!wire.is_used() && !wire.is_dirty());
    }

    #[test]
    fn the_last_status_is_kept() {
        let mut outgoing = startup();
        outgoing.extend(typed(b'Q', b"BEGIN\0"));
        outgoing.extend(typed(b'Q', b"SELECT x\0"));
        let mut incoming = typed(b'Z', b"I");
        incoming.extend(typed(b'C', b"BEGIN\0"));
        incoming.extend(typed(b'Z', b"T"));
        incoming.extend(typed(b'E', b"Sfail\0\0"));
        incoming.extend(typed(b'Z', b"E"));
        each_split(&outgoing, &incoming, |wire| {
            assert!(!wire.is_busy());
            assert_eq!(wire.status(), TransactionStatus::Failed);
        });
    }

    #[test]
    fn a_refused_encryption_request_is_followed_by_a_plain_session() {
        let mut outgoing = untyped(SSL_REQUEST_CODE, b"");
        outgoing.extend(startup());
        outgoing.extend(typed(b'Q', b"BEGIN\0"));
        let mut incoming = b"N".to_vec();
        incoming.extend(typed(b'Z', b"I"));
        incoming.extend(typed(b'Z', b"T"));
        each_split(&outgoing, &incoming, |wire| {
            assert!(!wire.is_busy());
            assert_eq!(wire.status(), TransactionStatus::InTransaction);
        });
    }

    #[test]
    fn an_accepted_encryption_request_stops_the_watch_below_tls() {
        let wire = Arc::new(Wire::default());
        let mut watched = Watched::new((), Arc::clone(&wire));
        watched.saw_outgoing(&untyped(SSL_REQUEST_CODE, b""));
        watched.saw_incoming(b"S\x16\x03\x01");
        watched.saw_outgoing(&[0x16, 0x03, 0x01, 0x00, 0x10]);
        assert!(!wire.is_busy(), "ciphertext must not count as requests");
    }
}
