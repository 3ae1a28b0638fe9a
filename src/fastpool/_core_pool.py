"""The pool core, written once: compiled by Cython with ``_core_pool.pxd``, or run as it is.

The core is the pool's bookkeeping and its per-borrow path, and knows no
driver and does no I/O.

* :class:`PoolCore` holds the idle queue, the size/permit count, the FIFO
  waiter queue with direct hand-off and the waiters' deadlines, the expiry
  gate, the health-check gate and the counters.  It never blocks and never
  reads the clock (every operation is given ``now``): its operations return
  decisions ("here is an entry", "start N connects", "this waiter was
  served", "these waiters timed out") and the pools carry them out.  Callers
  serialise all calls with one lock.
* The borrow paths (:class:`FastPath` for threads, :class:`AsyncFastPath` for
  asyncio) do a borrow and a return in the common case: they read the clock,
  take the lock, pop or push in the core and run the driver's I/O-free gates
  (:class:`Gates`); anything else goes back to the pool through the methods
  ``_core_host.PoolHost`` declares.

Invariants (asserted by the test-suite after every operation):

* ``idle + in_use + connecting <= max_size``;
* a live waiter in the queue implies no idle entry;
* an entry is in exactly one place: idle, in use, or closed.

This one source is the core of both builds.  Compiled (the accelerated
build, ``fastpool._core_pool``), Cython takes its C types from the augmenting
``_core_pool.pxd`` and the clock, probe, lock and asyncio borrow from
``_core.pyx``; run as Python (the pure build, loaded as
``fastpool._core_pool_pure``), it takes them from ``_core_pure.py``.  The
differential tests run the two builds in lockstep.

Written for both: ``__slots__`` only when run as Python (they list the
attributes the ``.pxd`` declares; a test holds the two together), list
comprehensions rather than generator expressions inside methods compiled as C
functions, and 64-bit arithmetic masked so that Python's integers wrap as C's
unsigned ones do.  Names cimported from ``_core`` and C-typed constants are not
module attributes once compiled: the end of the module exports them.
"""

from __future__ import annotations

from asyncio import get_running_loop as _get_running_loop
from collections import deque
from heapq import heapify, heappop, heappush
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from . import _core_nocython as cython
else:
    try:
        import cython
    except ImportError:  # a pure-Python install: no Cython, and this module runs as it is
        from . import _core_nocython as cython

if cython.compiled:  # the rest of _core comes in by cimport (_core_pool.pxd)
    from ._core import readable
else:  # the pure-Python build of what _core.pyx does in C
    from ._core_pure import AsyncBorrow, Lock, PathBase, readable
    from ._core_pure import now as _now

__all__ = [
    "ENQUEUE_CLOSED",
    "ENQUEUE_FULL",
    "ENTRY_CLOSED",
    "ENTRY_IDLE",
    "ENTRY_IN_USE",
    "GET_ADMIT",
    "GET_GATE",
    "GET_PLAIN",
    "HIST_BOUNDS",
    "N_BUCKETS",
    "PUT_GATE",
    "PUT_PLAIN",
    "PUT_SLOW",
    "WAITER_CANCELLED",
    "WAITER_FAILED",
    "WAITER_SERVED",
    "WAITER_TIMED_OUT",
    "WAITER_WAITING",
    "AsyncBorrow",
    "AsyncFastPath",
    "Borrow",
    "DeadlineQueue",
    "Entry",
    "FastPath",
    "Gates",
    "Lock",
    "NoLock",
    "PoolCore",
    "Waiter",
    "readable",
]

INF = float("inf")
_JITTER = 0.05
_NO_LIMIT = 1 << 62
# 64-bit constants of splitmix64 (the seeded draws) and of the drain spread; the mask makes
# Python's integers wrap as C's unsigned ones do (compiled, it changes nothing)
_MASK64 = 0xFFFFFFFFFFFFFFFF
_GOLDEN = 0x9E3779B97F4A7C15
_MIX1 = 0xBF58476D1CE4E5B9
_MIX2 = 0x94D049BB133111EB

#: Upper bounds (seconds, inclusive) of the histograms' buckets; a last bucket takes the rest.
HIST_BOUNDS = (0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_N_BOUNDS = len(HIST_BOUNDS)  # (the .pxd sizes the C arrays with the same count)
N_BUCKETS = _N_BOUNDS + 1
_BOUNDS = list(HIST_BOUNDS)  # compiled: a C array of doubles
_NO_COUNTS = (0,) * N_BUCKETS


def _bucket(v: float) -> int:
    """The histogram bucket of ``v`` seconds: the first bound it does not exceed."""
    i = 0
    while i < _N_BOUNDS and v > _BOUNDS[i]:
        i += 1
    return i


def _spread_point(serial: int) -> float:
    """A fixed point in [0, 1) for an entry (drain spreading): the same in both builds, no draw."""
    z = serial
    z = (z * _GOLDEN) & _MASK64
    return z / 18446744073709551616.0


ENTRY_IDLE = 0
ENTRY_IN_USE = 1
ENTRY_CLOSED = 2

WAITER_WAITING = 0
WAITER_SERVED = 1
WAITER_CANCELLED = 2
WAITER_FAILED = 3
WAITER_TIMED_OUT = 4

ENQUEUE_FULL = -1
ENQUEUE_CLOSED = -2


class Entry:
    """One pooled connection and its bookkeeping (created once per connection)."""

    if not cython.compiled:  # compiled, the .pxd declares the attributes
        __slots__ = (
            "check_due",
            "conn",
            "created_at",
            "data",
            "expires_at",
            "flagged",
            "fresh",
            "last_used",
            "lent_at",
            "locks_held",
            "owner",
            "serial",
            "state",
            "use_limit",
            "uses",
        )

    def __init__(self, conn: Any, created_at: float, expires_at: float, serial: int, owner: object) -> None:
        self.conn = conn
        self.created_at = created_at
        self.last_used = created_at
        self.lent_at = created_at  # when it was last handed out (for the usage total)
        self.expires_at = expires_at
        self.serial = serial
        self.owner = owner
        self.state = ENTRY_IN_USE
        self.locks_held = 0
        self.flagged = False
        self.fresh = True
        self.check_due = False
        self.data: Any = None  # the driver's per-connection state
        self.uses = 0  # borrows so far
        self.use_limit = _NO_LIMIT  # retired when uses reaches it (max_uses, with jitter)

    def __repr__(self) -> str:
        return f"<Entry #{self.serial} state={self.state}>"


class Waiter:
    """A caller queued for a connection until ``deadline``; ``handle`` belongs to the pool."""

    if not cython.compiled:  # compiled, the .pxd declares the attributes
        __slots__ = ("deadline", "entry", "error", "handle", "state")

    def __init__(self, handle: Any = None, deadline: float = INF) -> None:
        self.handle = handle
        self.deadline = deadline  # when expire() times it out (INF: never; the caller times itself out)
        self.entry: Entry | None = None
        self.error: BaseException | None = None
        self.state = WAITER_WAITING


class DeadlineQueue:
    """Waiters in deadline order, for one timer to time them all out (the core's, per pool).

    Waiters come in deadline order whenever every caller uses the same
    timeout: they are kept in a deque, O(1) each.  One that comes earlier than
    the last goes to a heap.  Waiters served or withdrawn before their deadline
    stay until they reach the front (or until they outnumber the live ones,
    when both are rebuilt): the cost per waiter does not grow with their number.
    """

    if not cython.compiled:  # compiled, the .pxd declares the attributes
        __slots__ = ("_in_order", "_last", "_late", "_seq")

    def __init__(self) -> None:
        self._in_order: deque[Waiter] = deque()
        self._late: list[tuple[float, int, Waiter]] = []  # (deadline, arrival, waiter): a heap
        self._last = -INF  # the deadline at the back of _in_order
        self._seq = 0

    def add(self, w: Waiter, live: int) -> None:
        """File ``w`` by its deadline; ``live`` is how many waiters still wait."""
        dq = self._in_order
        if len(dq) > 2 * live + 32:  # served and withdrawn ones linger until their turn
            kept = [x for x in dq if x.state == WAITER_WAITING]
            self._last = kept[len(kept) - 1].deadline if kept else -INF
            self._in_order = deque(kept)
            self._late = [t for t in self._late if t[2].state == WAITER_WAITING]
            heapify(self._late)
            dq = self._in_order
        if not dq or w.deadline >= self._last:
            dq.append(w)
            self._last = w.deadline
        else:
            self._seq += 1
            heappush(self._late, (w.deadline, self._seq, w))

    def earliest(self) -> float:
        """The earliest deadline of a waiter still waiting (INF: none)."""
        dq = self._in_order
        while dq and dq[0].state != WAITER_WAITING:
            dq.popleft()
        late = self._late
        while late and late[0][2].state != WAITER_WAITING:
            heappop(late)
        at = dq[0].deadline if dq else INF
        if late and late[0][0] < at:
            at = late[0][0]
        return at

    def due(self, now: float) -> list[Waiter]:
        """Remove and return the waiters still waiting whose deadline is ``now`` or past, in order."""
        out: list[Waiter] = []
        dq = self._in_order
        while dq and dq[0].deadline <= now:
            w = dq.popleft()
            if w.state == WAITER_WAITING:
                out.append(w)
        late = self._late
        while late and late[0][0] <= now:
            w = heappop(late)[2]
            if w.state == WAITER_WAITING:
                out.append(w)
        return out

    def clear(self) -> None:
        """Forget every waiter (the pool closed)."""
        self._in_order.clear()
        self._late.clear()


class PoolCore:
    """Non-blocking pool bookkeeping; see the module docstring."""

    if not cython.compiled:  # compiled, the .pxd declares the attributes
        __slots__ = (
            "_by_deadline",
            "_cap",
            "_connecting",
            "_dead_waiters",
            "_drain_spread",
            "_drained_at",
            "_h_connect",
            "_h_use",
            "_h_wait",
            "_head",
            "_idle_timeout",
            "_in_use",
            "_lifo",
            "_max_lifetime",
            "_max_uses",
            "_n_idle",
            "_n_waiting",
            "_ring",
            "_rng",
            "_serial",
            "_verify_after",
            "_waiters",
            "closed",
            "doomed",
            "keep_idle",
            "max_size",
            "max_waiting",
            "min_size",
            "n_cancelled",
            "n_connect_failures",
            "n_connects",
            "n_discarded",
            "n_expired",
            "n_handoffs",
            "n_hits",
            "n_returns",
            "n_timeouts",
            "n_too_many",
            "n_waits",
            "paused",
            "sum_connect",
            "sum_wait",
            "usage",
        )

    def __init__(self, config: Any, seed: int = 0) -> None:
        # config: a validated PoolConfig (fastpool._settings), read once here
        max_size: int = config.max_size
        max_lifetime: float | None = config.max_lifetime
        idle_timeout: float | None = config.idle_timeout
        self.max_size = max_size
        self.min_size: int = config.min_size
        self._max_lifetime = INF if max_lifetime is None else float(max_lifetime)
        self._idle_timeout = INF if idle_timeout is None else float(idle_timeout)
        self._verify_after = float(config.verify_after)
        self._lifo = bool(config.lifo)
        self.max_waiting: int = config.max_waiting
        self._cap = min(max_size, 16)  # the idle ring's slots, grown by use up to max_size
        self._ring: list[Entry | None] = [None] * self._cap
        self._head = 0
        self._n_idle = 0
        self._in_use = 0
        self._connecting = 0
        self._waiters: deque[Waiter] = deque()  # FIFO: who is served next
        self._by_deadline = DeadlineQueue()  # the same waiters, by deadline
        self._n_waiting = 0
        self._dead_waiters = 0
        self._drained_at = -INF
        self.closed = False
        self.doomed: list[Entry] = []
        self._rng = seed & _MASK64
        self._serial = 0
        self.n_hits = 0
        self.n_handoffs = 0
        self.n_waits = 0
        self.n_cancelled = 0
        self.n_timeouts = 0
        self.n_too_many = 0
        self.n_connects = 0
        self.n_connect_failures = 0
        self.n_expired = 0
        self.n_discarded = 0
        self.n_returns = 0
        self.usage = 0.0  # seconds connections spent handed out, summed at their return
        self.sum_wait = 0.0
        self.sum_connect = 0.0
        self._h_use = list(_NO_COUNTS)  # fixed buckets (HIST_BOUNDS): use, wait, connect times
        self._h_wait = list(_NO_COUNTS)
        self._h_connect = list(_NO_COUNTS)
        self._max_uses: int = config.max_uses
        self._drain_spread = 0.0
        self.paused = False  # no hand-out (new callers queue) until resume()
        self.keep_idle = bool(config.keep_idle)  # False: a connection nobody waits for is closed, never idled

    # -- gauges ---------------------------------------------------------------

    @property
    def size(self) -> int:
        """Idle + in use + connecting."""
        return self._n_idle + self._in_use + self._connecting

    @property
    def idle(self) -> int:
        """Number of idle entries."""
        return self._n_idle

    @property
    def in_use(self) -> int:
        """Number of entries handed out (including pinned ones)."""
        return self._in_use

    @property
    def connecting(self) -> int:
        """Number of connects the pool was told to start and has not finished."""
        return self._connecting

    @property
    def waiting(self) -> int:
        """Number of live waiters."""
        return self._n_waiting

    # -- internals ------------------------------------------------------------

    def _next_random(self) -> float:
        # splitmix64, seeded per pool; returns a double in [0, 1)
        self._rng = (self._rng + _GOLDEN) & _MASK64
        z = self._rng
        z = ((z ^ (z >> 30)) * _MIX1) & _MASK64
        z = ((z ^ (z >> 27)) * _MIX2) & _MASK64
        z = z ^ (z >> 31)
        return (z >> 11) * (1.0 / 9007199254740992.0)

    def _push_idle(self, e: Entry) -> None:
        if self._n_idle == self._cap:
            self._grow()
        self._ring[(self._head + self._n_idle) % self._cap] = e
        self._n_idle += 1
        e.state = ENTRY_IDLE

    def _grow(self) -> None:
        cap = self._cap * 2 if self._cap else 16
        ring = [self._ring[(self._head + k) % self._cap] for k in range(self._n_idle)]
        ring.extend([None] * (cap - self._n_idle))
        self._ring = ring
        self._cap = cap
        self._head = 0

    def _pop_idle(self) -> Entry:
        if self._lifo:
            i = (self._head + self._n_idle - 1) % self._cap
        else:
            i = self._head
            self._head = (self._head + 1) % self._cap
        e = self._ring[i]
        self._ring[i] = None
        self._n_idle -= 1
        return e  # type: ignore[return-value]  # (an idle slot always holds an entry)

    def _idle_list(self) -> list[Entry]:
        """Remove and return every idle entry, oldest push first."""
        out = self.idle_entries()
        for k in range(self._n_idle):
            self._ring[(self._head + k) % self._cap] = None
        self._head = 0
        self._n_idle = 0
        return out

    def _reserve(self) -> int:
        if self.closed:
            return 0
        used = self._n_idle + self._in_use + self._connecting
        free = self.max_size - used
        need = 0 if self.paused else self._n_waiting - self._connecting
        floor = self.min_size - used
        need = max(need, floor)
        need = min(need, free)
        if need <= 0:
            return 0
        self._connecting += need
        return need

    def _pop_live_waiter(self) -> Waiter | None:
        """Dequeue the oldest waiter still waiting (skipping withdrawn ones), or None."""
        waiters = self._waiters
        while waiters:
            w = waiters.popleft()
            if w.state == WAITER_WAITING:
                self._n_waiting -= 1
                return w
            self._dead_waiters -= 1
        return None

    def _serve(self, e: Entry, now: float) -> Waiter | None:
        """Hand ``e`` (not counted anywhere) to the oldest live waiter, or idle it."""
        w = None if self.paused else self._pop_live_waiter()
        if w is not None:
            w.state = WAITER_SERVED
            w.entry = e
            e.state = ENTRY_IN_USE
            e.check_due = e.flagged
            e.lent_at = now
            self._in_use += 1
            self.n_handoffs += 1
            return w
        if not self.keep_idle or self._n_idle + self._in_use + self._connecting >= self.max_size:
            # only after a shrinking resize: the excess is closed as it comes back
            self.n_discarded += 1
            self._doom(e)
            return None
        self._push_idle(e)
        return None

    def _doom(self, e: Entry) -> None:
        e.state = ENTRY_CLOSED
        self.doomed.append(e)

    # -- operations -------------------------------------------------------------

    def acquire(self, now: float) -> Entry | None:
        """Pop a usable idle entry, or return None (then the caller must wait).

        Expired entries met on the way are moved to ``doomed``.  Never barges
        past a queued waiter.
        """
        if self._n_waiting or self.closed or self.paused:
            return None
        while self._n_idle:
            e = self._pop_idle()
            if now >= e.expires_at or (
                now - e.last_used > self._idle_timeout
                and self._n_idle + self._in_use + self._connecting >= self.min_size
            ):
                self.n_expired += 1
                self._doom(e)
                continue
            e.state = ENTRY_IN_USE
            e.fresh = False
            e.check_due = e.flagged or now - e.last_used >= self._verify_after
            e.lent_at = now
            self._in_use += 1
            self.n_hits += 1
            return e
        return None

    def enqueue(self, waiter: Waiter, now: float) -> int:
        """Queue ``waiter``; return how many connects to start (>= 0).

        Returns ``ENQUEUE_CLOSED`` if the pool is closed and ``ENQUEUE_FULL``
        if ``max_waiting`` waiters are already queued.
        """
        if self.closed:
            waiter.state = WAITER_FAILED
            return ENQUEUE_CLOSED
        if self.max_waiting and self._n_waiting >= self.max_waiting:
            waiter.state = WAITER_FAILED
            self.n_too_many += 1
            return ENQUEUE_FULL
        waiter.state = WAITER_WAITING
        waiter.entry = None
        self._waiters.append(waiter)
        self._n_waiting += 1
        self.n_waits += 1
        if waiter.deadline != INF:
            self._by_deadline.add(waiter, self._n_waiting)
        return self._reserve()

    def next_deadline(self) -> float:
        """The earliest deadline of a waiter still waiting (INF: none)."""
        return self._by_deadline.earliest()

    def expire(self, now: float) -> list[Waiter]:
        """Time out every waiter whose deadline is ``now`` or past; return them (``WAITER_TIMED_OUT``).

        Each leaves the queue: the pool wakes it, and it raises its timeout.
        """
        out = self._by_deadline.due(now)
        for w in out:
            self._time_out(w)
        return out

    def _time_out(self, w: Waiter) -> None:
        w.state = WAITER_TIMED_OUT
        self._n_waiting -= 1
        self._dead_waiters += 1
        self.n_timeouts += 1

    def cancel_wait(self, waiter: Waiter, timed_out: bool = False) -> Entry | None:
        """Withdraw ``waiter``; return the entry if it had been served meanwhile.

        The returned entry is in use and belongs to the caller, who must use,
        release or discard it.  ``timed_out``: the caller gave up at its deadline
        (counted as a timeout, not as a cancelled wait).
        """
        st = waiter.state
        if st == WAITER_SERVED:
            e = waiter.entry
            waiter.entry = None
            waiter.state = WAITER_CANCELLED
            return e
        if st == WAITER_WAITING:
            if timed_out:
                self._time_out(waiter)
            else:
                waiter.state = WAITER_CANCELLED
                self._n_waiting -= 1
                self._dead_waiters += 1
                self.n_cancelled += 1
        if self._dead_waiters > 32 and self._dead_waiters > self._n_waiting:
            self._waiters = deque([w for w in self._waiters if w.state == WAITER_WAITING])
            self._dead_waiters = 0
        return None

    def release(self, e: Entry, now: float) -> Waiter | None:
        """Return an in-use entry; hand it to the oldest waiter or idle it.

        An entry that holds a lock, is past its lifetime, or comes back to a
        closed pool goes to ``doomed`` instead.
        """
        if e.state != ENTRY_IN_USE or e.owner is not self:
            raise RuntimeError("entry is not in use in this pool")
        used = now - e.lent_at
        self._in_use -= 1
        self.n_returns += 1
        self.usage += used
        self._h_use[_bucket(used)] += 1
        e.uses += 1
        if (
            self.closed
            or e.locks_held > 0
            or now >= e.expires_at
            or e.uses >= e.use_limit
            or (e.created_at <= self._drained_at and self._drain_due(e, now))
        ):
            self.n_discarded += 1
            self._doom(e)
            return None
        e.last_used = now
        e.fresh = False
        return self._serve(e, now)

    def discard(self, e: Entry) -> int:
        """Drop an in-use entry (the caller closes it); return connects to start."""
        if e.state != ENTRY_IN_USE or e.owner is not self:
            raise RuntimeError("entry is not in use in this pool")
        self._in_use -= 1
        self.n_discarded += 1
        e.state = ENTRY_CLOSED
        return self._reserve()

    def connect_done(self, conn: Any, now: float, data: Any = None) -> Waiter | None:
        """Register a new connection opened for a reserved connect.

        ``data`` becomes the new entry's ``data`` (the driver's own state).
        Returns the waiter it was handed to, or None if it went idle (or to
        ``doomed``, when the pool closed meanwhile).
        """
        if self._connecting <= 0:
            raise RuntimeError("no connect in progress")
        self._connecting -= 1
        self.n_connects += 1
        self._serial += 1
        lifetime = self._max_lifetime
        if lifetime != INF:
            lifetime = lifetime * (1.0 - _JITTER * self._next_random())
        e = Entry(conn, now, now + lifetime, self._serial, self)
        e.data = data
        if self._max_uses:  # retire after max_uses borrows, less up to 10 % so they do not retire at once
            cut = self._next_random() * (self._max_uses // 10 + 1)
            e.use_limit = self._max_uses - int(cut)
            e.use_limit = max(e.use_limit, 1)
        if self.closed:
            self._doom(e)
            return None
        return self._serve(e, now)

    def connect_failed(self) -> int:
        """Give back a reserved connect that failed; return connects to start."""
        if self._connecting <= 0:
            raise RuntimeError("no connect in progress")
        self._connecting -= 1
        self.n_connect_failures += 1
        return self._reserve()

    def fail_waiter(self) -> Waiter | None:
        """Pop the oldest live waiter and mark it failed (the pool sets its error)."""
        w = self._pop_live_waiter()
        if w is not None:
            w.state = WAITER_FAILED
        return w

    def plan_connects(self) -> int:
        """Reserve the connects needed for live waiters and ``min_size``."""
        return self._reserve()

    def add_connects(self, n: int) -> int:
        """Reserve up to ``n`` connects beyond what waiters and ``min_size`` ask for (none in flight).

        Returns how many were reserved: none while a connect is already in progress, the
        pool is closed, or it is full.
        """
        if self.closed or self._connecting:
            return 0
        free = self.max_size - self._n_idle - self._in_use
        n = min(n, free)
        if n <= 0:
            return 0
        self._connecting += n
        return n

    def reap(self, now: float) -> int:
        """Move expired idle entries to ``doomed``; return how many were moved.

        ``max_lifetime`` reaps any idle entry; ``idle_timeout`` never reaps
        below ``min_size``.
        """
        entries = self._idle_list()
        n = 0
        size = len(entries) + self._in_use + self._connecting
        for e in entries:  # oldest push first
            if now >= e.expires_at or (now - e.last_used > self._idle_timeout and size > self.min_size):
                self._doom(e)
                self.n_expired += 1
                size -= 1
                n += 1
            else:
                self._push_idle(e)
        return n

    def idle_entries(self) -> list[Entry]:
        """Return the idle entries, oldest push first (a snapshot; nothing changes)."""
        return [self._ring[(self._head + k) % self._cap] for k in range(self._n_idle)]  # type: ignore[misc]

    def evict(self, entries: list[Entry]) -> int:
        """Move those of ``entries`` that are still idle to ``doomed``; return how many."""
        n = 0
        for e in entries:
            if e.state == ENTRY_IDLE and e.owner is self:
                e.state = -1  # marked for removal below
                n += 1
        if n:
            for e in self._idle_list():
                if e.state == -1:
                    self.n_discarded += 1
                    self._doom(e)
                else:
                    self._push_idle(e)
        return n

    def drain(self, now: float, spread: float = 0.0) -> int:
        """Doom every idle entry, and every entry in use when it comes back; return how many idled.

        With ``spread`` (seconds), each entry instead retires at its own point of
        ``[now, now + spread)`` (idle ones through ``reap``/``acquire``, borrowed
        ones at their return).  Entries created after this call are not affected.
        """
        self._drained_at = now
        self._drain_spread = spread
        n = 0
        for e in self._idle_list():
            if spread > 0.0 and not self._drain_due(e, now):
                self._push_idle(e)
                continue
            self.n_discarded += 1
            self._doom(e)
            n += 1
        return n

    def _drain_due(self, e: Entry, now: float) -> bool:
        """For an entry older than the last drain: is its turn due?  (Else its expiry is moved there.)"""
        if self._drain_spread <= 0.0:
            return True
        at = self._drained_at + self._drain_spread * _spread_point(e.serial)
        e.expires_at = min(e.expires_at, at)
        return now >= at

    # -- pausing, and the histograms ---------------------------------------------------

    def pause(self) -> None:
        """Hand out nothing until :meth:`resume`: callers queue; returns go idle."""
        self.paused = True

    def resume(self, now: float) -> list[Waiter]:
        """Hand idle entries to the queued waiters again; return the waiters served.

        Call ``plan_connects()`` afterwards for the waiters still queued.
        """
        self.paused = False
        served: list[Waiter] = []
        while self._n_waiting and self._n_idle:
            e = self._pop_idle()
            if now >= e.expires_at:
                self.n_expired += 1
                self._doom(e)
                continue
            w = self._serve(e, now)
            if w is not None:
                served.append(w)
        return served

    def observe_wait(self, seconds: float) -> None:
        """Count a caller's wait for a connection (the hits, which waited 0 s, are counted apart)."""
        self.sum_wait += seconds
        self._h_wait[_bucket(seconds)] += 1

    def observe_connect(self, seconds: float) -> None:
        """Count how long a new connection took to open."""
        self.sum_connect += seconds
        self._h_connect[_bucket(seconds)] += 1

    def forget_borrows(self) -> None:
        """Forget the borrows counted so far (the eager open's: a pool never used shows none)."""
        self.n_hits = self.n_waits = self.n_handoffs = self.n_returns = 0
        self.usage = self.sum_wait = 0.0
        for i in range(N_BUCKETS):
            self._h_use[i] = self._h_wait[i] = 0

    def histograms(self) -> dict[str, tuple[list[int], float]]:
        """Per-bucket counts (over ``HIST_BOUNDS`` then the rest) and the sum, in seconds, of the
        waits (hits included, as 0 s), the uses (borrow to return) and the connects."""
        wait = [self._h_wait[i] for i in range(N_BUCKETS)]
        wait[0] += self.n_hits
        return {
            "wait": (wait, self.sum_wait),
            "use": ([self._h_use[i] for i in range(N_BUCKETS)], self.usage),
            "connect": ([self._h_connect[i] for i in range(N_BUCKETS)], self.sum_connect),
        }

    def flag(self, e: Entry) -> None:
        """Mark ``e`` as needing a health check at its next hand-out."""
        e.flagged = True

    def close(self) -> list[Waiter]:
        """Close the core: idle entries go to ``doomed``; return the live waiters (failed)."""
        self.closed = True
        for e in self._idle_list():
            self._doom(e)
        out: list[Waiter] = []
        while True:
            w = self.fail_waiter()
            if w is None:
                break
            out.append(w)
        self._dead_waiters = 0
        self._by_deadline.clear()
        return out

    def take_doomed(self) -> list[Entry]:
        """Return and clear the list of entries the pool must close."""
        d = self.doomed
        if not d:
            return []
        out = list(d)
        d.clear()
        return out

    def resize(self, max_size: int, min_size: int) -> None:
        """Change the size bounds (checked by the caller); idle entries beyond the new maximum go to
        ``doomed``."""
        entries = self._idle_list()
        self.max_size = max_size
        self.min_size = min_size
        self._cap = min(max_size, 16)
        self._ring = [None] * self._cap
        excess = len(entries) + self._in_use + self._connecting - max_size
        for e in entries:
            if excess > 0:
                self._doom(e)
                excess -= 1
            else:
                self._push_idle(e)

    def stats(self) -> dict[str, int]:
        """Return gauges and counters as a new dict."""
        return {
            "max_size": self.max_size,
            "min_size": self.min_size,
            "size": self._n_idle + self._in_use + self._connecting,
            "idle": self._n_idle,
            "in_use": self._in_use,
            "connecting": self._connecting,
            "waiting": self._n_waiting,
            "hits": self.n_hits,
            "handoffs": self.n_handoffs,
            "waits": self.n_waits,
            "cancelled_waits": self.n_cancelled,
            "timed_out_waits": self.n_timeouts,
            "too_many_requests": self.n_too_many,
            "connects": self.n_connects,
            "connect_failures": self.n_connect_failures,
            "expired": self.n_expired,
            "discarded": self.n_discarded,
            "returns": self.n_returns,
            "usage_ms": int(self.usage * 1000.0),
        }


# -- the driver's gates --------------------------------------------------------------------------


class Gates:
    """A driver's I/O-free gates on the borrow path; this base is the generic pair.

    A driver whose connections can be tested without I/O subclasses it, in a
    module of its own written for both builds like this one (a compiled
    subclass's methods are called from C).  The borrow path asks ``ready``
    before handing out an entry popped from idle (``GET_GATE``), and
    ``returnable`` when an entry comes back (``PUT_GATE``); False sends the
    entry down the pool's own path (health check, reset, hooks), never to the
    next caller.
    """

    if not cython.compiled:  # compiled, the .pxd declares the attributes
        __slots__ = ()

    def ready(self, e: Entry) -> bool:
        """May ``e.conn`` be handed out with no check?  (Base: yes.)"""
        return True

    def returnable(self, e: Entry, now: float) -> bool:
        """May ``e`` go straight back to idle, with nothing to reset?  (Base: when unexpired.)"""
        return now < e.expires_at


# -- the borrow paths ---------------------------------------------------------------------------

GET_ADMIT = 0  # every hand-out from idle goes through the pool's _admit (hooks, VERIFIED, checks)
GET_PLAIN = 1  # only when the core's gate says a check is due
GET_GATE = 2  # the driver's ready() gate inline; _admit only when it says no
PUT_SLOW = 0  # the pool's _release_block (commit/rollback, reset, hooks)
PUT_PLAIN = 1  # nothing to reset: straight back to the core unless expired
PUT_GATE = 2  # straight back when the driver's returnable() gate says nothing is to be reset


def _ready(gates: Gates, e: Entry, mode: int, tba: bool) -> bool:
    """True when ``e`` may be handed out with no admission: the gates its pool's options call for."""
    if mode == GET_ADMIT or (e.check_due and tba):
        return False
    if mode == GET_PLAIN:
        return True
    return gates.ready(e)


def _returnable(gates: Gates, e: Entry, now: float, mode: int) -> bool:
    """True when ``e`` may go straight back with nothing to reset."""
    if mode == PUT_PLAIN:
        return now < e.expires_at
    if mode != PUT_GATE:
        return False
    return gates.returnable(e, now)


class NoLock:
    """A lock that does nothing: the asyncio pools' core calls never interleave (the loop runs one)."""

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        """Return True at once."""
        return True

    def release(self) -> None:
        """Do nothing."""

    def locked(self) -> bool:
        """Always False."""
        return False

    def __enter__(self) -> bool:
        return True

    def __exit__(self, *exc: object) -> None:
        return None


def _check_timeout(timeout: Any, pool_ref: Any) -> None:
    """A per-call ``timeout`` must be None or finite seconds >= 0 (the same errors as the pools',
    naming the pool's class)."""
    if type(timeout) is not float and type(timeout) is not int:
        raise TypeError(
            f"{_owner(pool_ref)}: timeout must be a number of seconds, got {type(timeout).__name__}"
        )
    t = timeout
    if not -INF < t < INF:  # (nan too)
        raise ValueError(f"{_owner(pool_ref)}: timeout must be finite, got {timeout}")
    if t < 0:
        raise ValueError(f"{_owner(pool_ref)}: timeout must be at least 0 seconds, got {timeout}")


def _owner(pool_ref: Any) -> str:
    """The class the user called, for an error message (only on the error path)."""
    pool = pool_ref() if pool_ref is not None else None
    return "pool" if pool is None else type(pool).__name__


class _Path(PathBase):
    """What both borrow paths keep: the pool, its core, the gates, the hooks, and what is lent."""

    if not cython.compiled:  # compiled, the .pxd declares the attributes
        __slots__ = (
            "_core",
            "_gates",
            "_get_mode",
            "_pool",
            "_tba",
            "lent",
            "on_lend",
            "on_use",
            "on_wait",
            "put_mode",
            "unlent",
        )

    def __init__(
        self, pool_ref: Any, core: PoolCore, gates: Gates, get_mode: int, put_mode: int, tba: bool
    ) -> None:
        self._pool = pool_ref  # a weak reference: the pool owns its fast path, not the reverse
        self._core = core
        self._gates = gates  # the driver's (GET_GATE, PUT_GATE)
        self._get_mode = get_mode
        self.put_mode = put_mode  # PUT_*: the pool switches to PUT_SLOW when it closes
        self._tba = tba
        self.unlent: Any = None  # not None: conn._pool is the pool while lent, this when back
        self.lent: dict[int, Entry] = {}  # id(conn) -> Entry: what getconn() lent, putconn() takes back
        self.on_wait: Any = None  # None, or called with the seconds each hand-out took (metrics)
        self.on_use: Any = None  # None, or called with the seconds each connection was held (metrics)
        self.on_lend: Any = None  # None, or called with each entry handed out from idle (leak_timeout)

    def ready(self, e: Entry) -> bool:
        """True when ``e`` may be handed out with no admission (the pool's ``_admit``)."""
        return _ready(self._gates, e, self._get_mode, self._tba)

    def _back_at(self, e: Entry) -> float:
        """The time to put ``e`` straight back into the core at, or -1.0 when it must take the
        pool's own return path (reset, hooks, checks)."""
        now = _now()
        if e.owner is self._core and _returnable(self._gates, e, now, self.put_mode):
            return now
        return -1.0

    def lend(self, e: Entry) -> Any:
        """Record ``e`` as lent by ``getconn`` (the pool's own checked paths use it too); its conn."""
        conn = e.conn
        self.lent[id(conn)] = e
        if self.unlent is not None:
            conn._pool = self._pool()
        return conn

    def take_back(self, conn: Any) -> Entry | None:
        """The entry ``getconn`` lent for ``conn`` (forgotten now), or None."""
        e = self.lent.pop(id(conn), None)
        if e is None:
            return None
        if e.conn is not conn:  # an id reused by another object: not ours
            self.lent[id(conn)] = e
            return None
        if self.unlent is not None:
            conn._pool = self.unlent
        return e


class FastPath(_Path):
    """A threaded pool's per-borrow path: ``connection()``, ``get``, ``release`` and ``release_block``.

    It does the common case itself (lock, core pop/push, the gates the pool's
    options call for) and hands anything else to the pool's Python methods
    (``_admit``, ``_get_slow``, ``_release_block``, ``_close_doomed``).
    """

    if not cython.compiled:  # compiled, the .pxd declares the attributes
        __slots__ = ("_lock",)

    def __init__(
        self, pool_ref: Any, core: PoolCore, lock: Any, gates: Gates, get_mode: int, put_mode: int, tba: bool
    ) -> None:
        _Path.__init__(self, pool_ref, core, gates, get_mode, put_mode, tba)
        self._lock = lock  # the pool's lock (compiled: taken in C)

    def connection(self, timeout: float | None = None) -> Borrow:
        """The context manager of ``pool.connection()``."""
        b = Borrow.__new__(Borrow)
        b._fp = self
        b._timeout = timeout
        b._entry = None
        return b

    def get(self, timeout: float | None) -> Entry:
        """Return an in-use entry (the pool's ``_get``)."""
        if timeout is not None:
            _check_timeout(timeout, self._pool)
        now = _now()
        self._lock.acquire()
        try:
            e = self._core.acquire(now)
        finally:
            self._lock.release()
        if e is not None:
            if self._core.doomed:
                self._pool()._close_doomed()
            if _ready(self._gates, e, self._get_mode, self._tba) or self._pool()._admit(e, now, timeout):
                if self.on_lend is not None:
                    self.on_lend(e)
                if self.on_wait is not None:
                    self.on_wait(_now() - now)
                return e
        return self._pool()._get_slow(now, timeout)  # type: ignore[no-any-return]

    def release(self, e: Entry, now: float) -> None:
        """Put ``e`` back in the core (idle, or straight to the oldest waiter); no reset."""
        used = now - e.lent_at
        self._lock.acquire()
        try:
            w = self._core.release(e, now)
        finally:
            self._lock.release()
        if w is not None:
            w.handle.release()
        if self._core.doomed:
            self._pool()._close_doomed()
        if self.on_use is not None:
            self.on_use(used)

    def release_block(self, e: Entry, ok: bool) -> None:
        """Give back an entry borrowed by ``connection()`` (``ok``: the block raised nothing)."""
        now = self._back_at(e)
        if now < 0.0:
            self._pool()._release_block(e, ok)
        else:
            self.release(e, now)

    def put(self, e: Entry) -> None:
        """Give back a checked-out entry as it is (nothing committed): the pool's ``_release``."""
        now = self._back_at(e)
        if now < 0.0:
            self._pool()._release(e)
        else:
            self.release(e, now)

    def getconn(self, timeout: float | None = None) -> Any:
        """``pool.getconn()``: a connection to give back with ``putconn``."""
        return self.lend(self.get(timeout))

    def putconn(self, conn: Any) -> None:
        """``pool.putconn()``: give back what ``getconn`` lent (``WrongPoolError`` otherwise)."""
        e = self.take_back(conn)
        if e is None:
            self._pool()._not_lent(conn)
            return
        self.put(e)


class Borrow:
    """The context manager returned by ``pool.connection()``."""

    if not cython.compiled:  # compiled, the .pxd declares the attributes
        __slots__ = ("_entry", "_fp", "_timeout")

    def __init__(self, fp: FastPath, timeout: float | None = None) -> None:
        self._fp = fp
        self._timeout = timeout
        self._entry: Entry | None = None

    def __enter__(self) -> Any:
        if self._entry is not None:
            raise RuntimeError("this connection() context is already in use")
        self._entry = self._fp.get(self._timeout)
        if self._fp.unlent is not None:
            self._entry.conn._pool = self._fp._pool()
        return self._entry.conn

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        e = self._entry
        if e is None:
            raise RuntimeError("this connection() context was not entered")
        self._entry = None
        if self._fp.unlent is not None:
            e.conn._pool = self._fp.unlent
        self._fp.release_block(e, exc_type is None)


def _wake(w: Waiter) -> None:
    fut = w.handle
    if not fut.done():
        fut.set_result(None)


def _done(value: Any) -> AsyncBorrow:
    """An awaitable already finished with ``value`` (no coroutine is made)."""
    b = AsyncBorrow.__new__(AsyncBorrow)
    b._result = value
    return b


class AsyncFastPath(_Path):
    """An asyncio pool's per-borrow path: ``connection()``, ``get``, ``release`` and ``release_block``.

    ``get`` returns an entry when one can be handed out without awaiting
    anything, else an awaitable of the pool's that gives one;
    ``release_block`` returns None when the entry is back, else the pool's
    awaitable return path.  ``lock`` is accepted for the same signature as
    :class:`FastPath` and not used: the loop serialises every call.
    """

    if not cython.compiled:  # compiled, the .pxd declares the attributes
        __slots__ = ("loop",)

    def __init__(
        self, pool_ref: Any, core: PoolCore, lock: Any, gates: Gates, get_mode: int, put_mode: int, tba: bool
    ) -> None:
        _Path.__init__(self, pool_ref, core, gates, get_mode, put_mode, tba)
        self.loop: Any = None  # the loop the pool is bound to, set by the pool

    def connection(self, timeout: float | None = None) -> AsyncBorrow:
        """The async context manager of ``pool.connection()``."""
        b = AsyncBorrow.__new__(AsyncBorrow)
        b._fp = self
        b._timeout = timeout
        b._entry = None
        b._result = None
        return b

    def _aenter(self, b: AsyncBorrow) -> Any:
        if b._entry is not None:
            raise RuntimeError("this connection() context is already in use")
        r = self.get(b._timeout)
        if type(r) is not Entry:
            return self._enter_slow(b, r)
        e = r
        b._entry = e
        b._result = e.conn
        if self.unlent is not None:
            e.conn._pool = self._pool()
        return b

    async def _enter_slow(self, b: AsyncBorrow, aw: Any) -> Any:
        e = await aw
        b._entry = e
        if self.unlent is not None:
            e.conn._pool = self._pool()
        return e.conn

    def _aexit(self, b: AsyncBorrow, ok: bool) -> Any:
        if b._entry is None:
            raise RuntimeError("this connection() context was not entered")
        e = b._entry
        b._entry = None
        if self.unlent is not None:
            e.conn._pool = self.unlent
        r = self.release_block(e, ok)
        if r is not None:
            return r
        b._result = None
        return b

    def get(self, timeout: float | None) -> Any:
        """An in-use entry now, or an awaitable of the pool's giving one."""
        if timeout is not None:
            _check_timeout(timeout, self._pool)
        if self.loop is None or _get_running_loop() is not self.loop:
            return self._pool()._get(timeout)  # first use binds; another loop raises
        now = _now()
        e = self._core.acquire(now)
        if e is None:
            return self._pool()._get_slow(now, timeout)
        if self._core.doomed:
            self._pool()._close_doomed()
        if _ready(self._gates, e, self._get_mode, self._tba):
            if self.on_lend is not None:
                self.on_lend(e)
            if self.on_wait is not None:
                self.on_wait(0.0)
            return e
        return self._pool()._admit_or_slow(e, now, timeout)

    def release(self, e: Entry, now: float) -> None:
        """Put ``e`` back in the core (idle, or straight to the oldest waiter); no reset."""
        used = now - e.lent_at
        w = self._core.release(e, now)
        if w is not None:
            _wake(w)
        if self._core.doomed:
            self._pool()._close_doomed()
        if self.on_use is not None:
            self.on_use(used)

    def release_block(self, e: Entry, ok: bool) -> Any:
        """Give back an entry borrowed by ``connection()``: None when done, else an awaitable."""
        now = self._back_at(e)
        if now < 0.0:
            return self._pool()._release_block(e, ok)
        self.release(e, now)
        return None

    def put(self, e: Entry) -> Any:
        """Give back a checked-out entry as it is (nothing committed): None when done, else an
        awaitable (the pool's ``_release``)."""
        now = self._back_at(e)
        if now < 0.0:
            return self._pool()._release(e)
        self.release(e, now)
        return None

    def getconn(self, timeout: float | None = None) -> Any:
        """``await pool.getconn()``: a connection to give back with ``putconn``."""
        r = self.get(timeout)
        if type(r) is Entry:
            return _done(self.lend(r))
        return self._getconn_slow(r)

    async def _getconn_slow(self, aw: Any) -> Any:
        return self.lend(await aw)

    def putconn(self, conn: Any) -> Any:
        """``await pool.putconn()``: give back what ``getconn`` lent (``WrongPoolError`` otherwise)."""
        e = self.take_back(conn)
        if e is None:
            return self._pool()._not_lent(conn)
        r = self.put(e)
        return _done(None) if r is None else r


if cython.compiled:  # what cimport and C types keep off the module's attributes
    globals().update(
        AsyncBorrow=AsyncBorrow,
        Lock=Lock,
        ENTRY_IDLE=ENTRY_IDLE,
        ENTRY_IN_USE=ENTRY_IN_USE,
        ENTRY_CLOSED=ENTRY_CLOSED,
        WAITER_WAITING=WAITER_WAITING,
        WAITER_SERVED=WAITER_SERVED,
        WAITER_CANCELLED=WAITER_CANCELLED,
        WAITER_FAILED=WAITER_FAILED,
        WAITER_TIMED_OUT=WAITER_TIMED_OUT,
        ENQUEUE_FULL=ENQUEUE_FULL,
        ENQUEUE_CLOSED=ENQUEUE_CLOSED,
        GET_ADMIT=GET_ADMIT,
        GET_PLAIN=GET_PLAIN,
        GET_GATE=GET_GATE,
        PUT_SLOW=PUT_SLOW,
        PUT_PLAIN=PUT_PLAIN,
        PUT_GATE=PUT_GATE,
        INF=INF,
    )
