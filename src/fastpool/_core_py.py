"""Pure-Python twin of the compiled pool core (``fastpool._core``).

The core is the pool's bookkeeping and nothing else: the idle queue, the
size/permit count, the FIFO waiter queue with direct hand-off, the expiry gate,
the health-check gate and the counters.  It never blocks, never reads the
clock (every operation is given ``now``) and never does I/O: its operations
return decisions ("here is an entry", "start N connects", "this waiter was
served") and the pool shells carry them out.  Callers serialise all calls with
one lock.

Invariants (asserted by the test-suite after every operation):

* ``idle + in_use + connecting <= max_size``;
* a live waiter in the queue implies no idle entry;
* an entry is in exactly one place: idle, in use, or closed.

This module and ``_core.pyx`` must stay identical in behaviour; the
differential tests run random operation sequences against both.
"""

from __future__ import annotations

import math
import select
import threading
from asyncio import get_running_loop as _get_running_loop
from bisect import bisect_left as _bisect_left
from collections import deque
from time import monotonic as _monotonic
from typing import Any

from ._core_psycopg_py import (
    ROLE_ANY,
    ROLE_PRIMARY,
    ROLE_READ_ONLY,
    ROLE_READ_WRITE,
    ROLE_STANDBY,
    ClientState,
    psycopg_ready,
    psycopg_returnable,
    role_ok,
)

__all__ = [
    "ENQUEUE_CLOSED",
    "ENQUEUE_FULL",
    "ENTRY_CLOSED",
    "ENTRY_IDLE",
    "ENTRY_IN_USE",
    "GET_ADMIT",
    "GET_PLAIN",
    "GET_PROBE",
    "HIST_BOUNDS",
    "N_BUCKETS",
    "PUT_PLAIN",
    "PUT_PSYCOPG",
    "PUT_SLOW",
    "ROLE_ANY",
    "ROLE_PRIMARY",
    "ROLE_READ_ONLY",
    "ROLE_READ_WRITE",
    "ROLE_STANDBY",
    "WAITER_CANCELLED",
    "WAITER_FAILED",
    "WAITER_SERVED",
    "WAITER_WAITING",
    "AsyncBorrow",
    "AsyncFastPath",
    "Borrow",
    "ClientState",
    "Entry",
    "FastPath",
    "Lock",
    "NoLock",
    "PoolCore",
    "Waiter",
    "readable",
    "role_ok",
]


def readable(fd: int) -> bool:
    """Say whether ``fd`` has data (or EOF, or an error) to read, without waiting.

    One ``poll()`` with a zero timeout: the pools' I/O-free probe of an idle
    connection.  Raises ``OSError`` for an invalid descriptor.
    """
    if hasattr(select, "poll"):
        p = select.poll()
        p.register(fd, select.POLLIN)
        events = p.poll(0)
        if events and events[0][1] & select.POLLNVAL:
            raise OSError(9, "Bad file descriptor")
        return bool(events)
    r, _, _ = select.select((fd,), (), (), 0)  # pragma: no cover - platforms without poll
    return bool(r)


INF = float("inf")
_MASK64 = 0xFFFFFFFFFFFFFFFF
_JITTER = 0.05
_NO_LIMIT = 1 << 62

#: Upper bounds (seconds, inclusive) of the histograms' buckets; a last bucket takes the rest.
HIST_BOUNDS = (0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
N_BUCKETS = len(HIST_BOUNDS) + 1


def _bucket(v: float) -> int:
    """The histogram bucket of ``v`` seconds: the first bound it does not exceed."""
    return _bisect_left(HIST_BOUNDS, v)


def _spread_point(serial: int) -> float:
    """A fixed point in [0, 1) for an entry (drain spreading): the same in both twins, no draw."""
    return ((serial * 0x9E3779B97F4A7C15) & _MASK64) / 18446744073709551616.0


ENTRY_IDLE = 0
ENTRY_IN_USE = 1
ENTRY_CLOSED = 2

WAITER_WAITING = 0
WAITER_SERVED = 1
WAITER_CANCELLED = 2
WAITER_FAILED = 3

ENQUEUE_FULL = -1
ENQUEUE_CLOSED = -2


class Entry:
    """One pooled connection and its bookkeeping (created once per connection)."""

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
    """A caller queued for a connection; ``handle`` belongs to the shell."""

    __slots__ = ("entry", "error", "handle", "state")

    def __init__(self, handle: Any = None) -> None:
        self.handle = handle
        self.entry: Entry | None = None
        self.error: BaseException | None = None
        self.state = WAITER_WAITING


class PoolCore:
    """Non-blocking pool bookkeeping; see the module docstring."""

    __slots__ = (
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
        "n_too_many",
        "n_waits",
        "paused",
        "sum_connect",
        "sum_wait",
        "usage",
    )

    def __init__(
        self,
        max_size: int,
        min_size: int = 0,
        max_lifetime: float | None = None,
        idle_timeout: float | None = None,
        verify_after: float | None = None,
        lifo: bool = True,
        max_waiting: int = 0,
        seed: int = 0,
        keep_idle: bool = True,
        max_uses: int = 0,
    ) -> None:
        _check_sizes(max_size, min_size)
        if max_uses < 0:
            raise ValueError("max_uses cannot be negative")
        if max_waiting < 0:
            raise ValueError("max_waiting cannot be negative")
        self.max_size = max_size
        self.min_size = min_size
        self._max_lifetime = INF if max_lifetime is None else float(max_lifetime)
        self._idle_timeout = INF if idle_timeout is None else float(idle_timeout)
        self._verify_after = INF if verify_after is None else float(verify_after)
        self._lifo = bool(lifo)
        self.max_waiting = max_waiting
        self._cap = min(max_size, 16)  # the idle ring's slots, grown by use up to max_size
        self._ring: list[Entry | None] = [None] * self._cap
        self._head = 0
        self._n_idle = 0
        self._in_use = 0
        self._connecting = 0
        self._waiters: deque[Waiter] = deque()
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
        self.n_too_many = 0
        self.n_connects = 0
        self.n_connect_failures = 0
        self.n_expired = 0
        self.n_discarded = 0
        self.n_returns = 0
        self.usage = 0.0  # seconds connections spent handed out, summed at their return
        self.sum_wait = 0.0
        self.sum_connect = 0.0
        self._h_use = [0] * N_BUCKETS  # fixed buckets (HIST_BOUNDS): use, wait, connect times
        self._h_wait = [0] * N_BUCKETS
        self._h_connect = [0] * N_BUCKETS
        self._max_uses = max_uses
        self._drain_spread = 0.0
        self.paused = False  # no hand-out (new callers queue) until resume()
        self.keep_idle = bool(keep_idle)  # False: a connection nobody waits for is closed, never idled
        if not self.keep_idle and min_size:
            raise ValueError("min_size must be 0 when idle connections are not kept")

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
        """Number of connects the shell was told to start and has not finished."""
        return self._connecting

    @property
    def waiting(self) -> int:
        """Number of live waiters."""
        return self._n_waiting

    # -- internals ------------------------------------------------------------

    def _next_random(self) -> float:
        # splitmix64, identical in both twins; returns a double in [0, 1)
        self._rng = (self._rng + 0x9E3779B97F4A7C15) & _MASK64
        z = self._rng
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
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
        cap = self._cap
        if self._lifo:
            i = (self._head + self._n_idle - 1) % cap
        else:
            i = self._head
            self._head = (self._head + 1) % cap
        e = self._ring[i]
        self._ring[i] = None
        self._n_idle -= 1
        assert e is not None
        return e

    def _idle_list(self) -> list[Entry]:
        """Remove and return every idle entry, oldest push first."""
        cap = self._cap
        out: list[Entry] = []
        for k in range(self._n_idle):
            i = (self._head + k) % cap
            e = self._ring[i]
            assert e is not None
            out.append(e)
            self._ring[i] = None
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
        return self._reserve()

    def cancel_wait(self, waiter: Waiter) -> Entry | None:
        """Withdraw ``waiter``; return the entry if it had been served meanwhile.

        The returned entry is in use and belongs to the caller, who must use,
        release or discard it.
        """
        st = waiter.state
        if st == WAITER_SERVED:
            e = waiter.entry
            waiter.entry = None
            waiter.state = WAITER_CANCELLED
            return e
        if st == WAITER_WAITING:
            waiter.state = WAITER_CANCELLED
            self._n_waiting -= 1
            self._dead_waiters += 1
            self.n_cancelled += 1
            if self._dead_waiters > 32 and self._dead_waiters > self._n_waiting:
                self._waiters = deque(w for w in self._waiters if w.state == WAITER_WAITING)
                self._dead_waiters = 0
        return None

    def release(self, e: Entry, now: float) -> Waiter | None:
        """Return an in-use entry; hand it to the oldest waiter or idle it.

        An entry that holds a lock, is past its lifetime, or comes back to a
        closed pool goes to ``doomed`` instead.
        """
        if e.state != ENTRY_IN_USE or e.owner is not self:
            raise RuntimeError("entry is not in use in this pool")
        self._in_use -= 1
        self.n_returns += 1
        used = now - e.lent_at
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
            e.use_limit = max(1, self._max_uses - int(self._next_random() * (self._max_uses // 10 + 1)))
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
        """Pop the oldest live waiter and mark it failed (the shell sets its error)."""
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
        n = min(n, self.max_size - self._n_idle - self._in_use)
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
        cap = self._cap
        out: list[Entry] = []
        for k in range(self._n_idle):
            e = self._ring[(self._head + k) % cap]
            assert e is not None
            out.append(e)
        return out

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
        entries = self._idle_list()
        n = 0
        for e in entries:
            if spread > 0.0 and not self._drain_due(e, now):
                self._push_idle(e)
                continue
            self.n_discarded += 1
            self._doom(e)
            n += 1
        return n

    def _drain_due(self, e: Entry, now: float) -> bool:
        """For an entry older than the last drain: is its turn due?  (Else its expiry is moved there.)"""
        spread = self._drain_spread
        if spread <= 0.0:
            return True
        at = self._drained_at + spread * _spread_point(e.serial)
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

    def histograms(self) -> dict[str, tuple[list[int], float]]:
        """Per-bucket counts (over ``HIST_BOUNDS`` then the rest) and the sum, in seconds, of the
        waits (hits included, as 0 s), the uses (borrow to return) and the connects."""
        wait = list(self._h_wait)
        wait[0] += self.n_hits
        return {
            "wait": (wait, self.sum_wait),
            "use": (list(self._h_use), self.usage),
            "connect": (list(self._h_connect), self.sum_connect),
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
        return out

    def take_doomed(self) -> list[Entry]:
        """Return and clear the list of entries the shell must close."""
        d = self.doomed
        if not d:
            return []
        out = list(d)
        d.clear()
        return out

    def resize(self, max_size: int, min_size: int) -> None:
        """Change the size bounds; idle entries beyond the new maximum go to ``doomed``."""
        _check_sizes(max_size, min_size)
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
            "too_many_requests": self.n_too_many,
            "connects": self.n_connects,
            "connect_failures": self.n_connect_failures,
            "expired": self.n_expired,
            "discarded": self.n_discarded,
            "returns": self.n_returns,
            "usage_ms": int(self.usage * 1000.0),
        }


def _check_sizes(max_size: int, min_size: int) -> None:
    if max_size < 1:
        raise ValueError("max_size must be at least 1")
    if min_size < 0:
        raise ValueError("min_size cannot be negative")
    if min_size > max_size:
        raise ValueError("min_size cannot be greater than max_size")


# -- the borrow path of the threaded pools -----------------------------------------------------

GET_ADMIT = 0  # every hand-out from idle goes through the pool's _admit (hooks, VERIFIED, probes)
GET_PLAIN = 1  # only when the core's gate says a check is due
GET_PROBE = 2  # psycopg: the socket probe inline, _admit only when it finds something
PUT_SLOW = 0  # the pool's _release_block (commit/rollback, reset, hooks)
PUT_PLAIN = 1  # nothing to reset: straight back to the core unless expired
PUT_PSYCOPG = 2  # psycopg FAST: straight back when IDLE and the client settings are unchanged


def _ready(e: Entry, now: float, mode: int, tba: bool) -> bool:
    """True when ``e`` may be handed out with no admission: the gates its pool's options call for."""
    if mode == GET_ADMIT or (e.check_due and tba):
        return False
    if mode == GET_PLAIN:
        return True
    return psycopg_ready(e, readable)


def _returnable(e: Entry, now: float, mode: int, epoch: int) -> bool:
    """True when ``e`` may go straight back: unexpired and, for psycopg, IDLE and unchanged."""
    if mode == PUT_PLAIN:
        return now < e.expires_at
    if mode != PUT_PSYCOPG:
        return False
    return psycopg_returnable(e, now, epoch)


Lock = threading.Lock  # the threaded pools' mutex (the compiled twin has its own, taken in C)


class NoLock:
    """A lock that does nothing: the asyncio pools' core calls never interleave (the loop runs one)."""

    __slots__ = ()

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


def _check_timeout(timeout: Any) -> None:
    """A per-call ``timeout`` must be None or finite seconds >= 0 (the same errors as the shells')."""
    if type(timeout) is not float and type(timeout) is not int:
        raise TypeError(f"timeout must be a number of seconds, got {type(timeout).__name__}")
    if math.isnan(timeout) or math.isinf(timeout):
        raise ValueError(f"timeout must be finite, got {timeout}")
    if timeout < 0:
        raise ValueError(f"timeout must be >= 0, got {timeout}")


class _Lending:
    """What ``getconn``/``putconn`` keep, shared by both fast paths: the entries lent, by connection."""

    lent: dict[int, Entry]
    unlent: Any
    _pool: Any

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


class FastPath(_Lending):
    """A threaded pool's per-borrow path: ``connection()``, ``get``, ``release`` and ``release_block``.

    It does the common case itself (lock, core pop/push, the gates the pool's
    options call for) and hands anything else to the pool's Python methods
    (``_admit``, ``_get_slow``, ``_release_block``, ``_close_doomed``).
    """

    __slots__ = (
        "_core",
        "_get_mode",
        "_lock",
        "_pool",
        "_tba",
        "epoch",
        "lent",
        "on_lend",
        "on_use",
        "on_wait",
        "put_mode",
        "unlent",
    )

    def __init__(
        self, pool_ref: Any, core: PoolCore, lock: Any, driver: Any, get_mode: int, put_mode: int, tba: bool
    ) -> None:
        self._pool = pool_ref  # a weak reference: the pool owns its fast path, not the reverse
        self._core = core
        self._lock = lock
        self._get_mode = get_mode
        self.put_mode = put_mode
        self._tba = tba
        self.epoch = getattr(driver, "epoch", 0)  # the driver's clear_prepared() epoch, pushed by the pool
        self.unlent: Any = None  # not None: conn._pool is the pool while lent, this when back
        self.lent: dict[int, Entry] = {}  # id(conn) -> Entry: what getconn() lent, putconn() takes back
        self.on_wait: Any = None  # None, or called with the seconds each hand-out took (metrics)
        self.on_use: Any = None  # None, or called with the seconds each connection was held (metrics)
        self.on_lend: Any = None  # None, or called with each entry handed out from idle (leak_timeout)

    def connection(self, timeout: float | None = None) -> Borrow:
        """The context manager of ``pool.connection()``."""
        return Borrow(self, timeout)

    def get(self, timeout: float | None) -> Entry:
        """Return an in-use entry (the pool's ``_get``)."""
        if timeout is not None:
            _check_timeout(timeout)
        now = _monotonic()
        lock = self._lock
        lock.acquire()
        try:
            e = self._core.acquire(now)
        finally:
            lock.release()
        if e is not None:
            if self._core.doomed:
                self._pool()._close_doomed()
            if _ready(e, now, self._get_mode, self._tba) or self._pool()._admit(e, now, timeout):
                if self.on_lend is not None:
                    self.on_lend(e)
                if self.on_wait is not None:
                    self.on_wait(_monotonic() - now)
                return e
        return self._pool()._get_slow(now, timeout)  # type: ignore[no-any-return]

    def ready(self, e: Entry, now: float) -> bool:
        """True when ``e`` may be handed out with no admission (the pool's ``_admit``)."""
        return _ready(e, now, self._get_mode, self._tba)

    def release(self, e: Entry, now: float) -> None:
        """Put ``e`` back in the core (idle, or straight to the oldest waiter); no reset."""
        used = now - e.lent_at
        lock = self._lock
        lock.acquire()
        try:
            w = self._core.release(e, now)
        finally:
            lock.release()
        if w is not None:
            w.handle.release()
        if self._core.doomed:
            self._pool()._close_doomed()
        if self.on_use is not None:
            self.on_use(used)

    def release_block(self, e: Entry, ok: bool) -> None:
        """Give back an entry borrowed by ``connection()`` (``ok``: the block raised nothing)."""
        now = _monotonic()
        if e.owner is self._core and _returnable(e, now, self.put_mode, self.epoch):
            self.release(e, now)
        else:
            self._pool()._release_block(e, ok)

    def put(self, e: Entry) -> None:
        """Give back a checked-out entry as it is (nothing committed): the pool's ``_release``."""
        now = _monotonic()
        if e.owner is self._core and _returnable(e, now, self.put_mode, self.epoch):
            self.release(e, now)
        else:
            self._pool()._release(e)

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

    __slots__ = ("_entry", "_fp", "_timeout")

    def __init__(self, fp: FastPath, timeout: float | None) -> None:
        self._fp = fp
        self._timeout = timeout
        self._entry: Entry | None = None

    def __enter__(self) -> Any:
        if self._entry is not None:
            raise RuntimeError("this connection() context is already in use")
        fp = self._fp
        self._entry = e = fp.get(self._timeout)
        if fp.unlent is not None:
            e.conn._pool = fp._pool()
        return e.conn

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        e = self._entry
        if e is None:
            raise RuntimeError("this connection() context was not entered")
        self._entry = None
        if self._fp.unlent is not None:
            e.conn._pool = self._fp.unlent
        self._fp.release_block(e, exc_type is None)


# -- the borrow path of the asyncio pools --------------------------------------------------------


def _wake(w: Waiter) -> None:
    fut = w.handle
    if not fut.done():
        fut.set_result(None)


class AsyncFastPath(_Lending):
    """An asyncio pool's per-borrow path: ``connection()``, ``get``, ``release`` and ``release_block``.

    ``get`` returns an entry when one can be handed out without awaiting
    anything, else an awaitable of the pool's that gives one;
    ``release_block`` returns None when the entry is back, else the pool's
    awaitable return path.  ``lock`` is accepted for the same signature as
    :class:`FastPath` and not used: the loop serialises every call.
    """

    __slots__ = (
        "_core",
        "_get_mode",
        "_pool",
        "_tba",
        "epoch",
        "lent",
        "loop",
        "on_lend",
        "on_use",
        "on_wait",
        "put_mode",
        "unlent",
    )

    def __init__(
        self, pool_ref: Any, core: PoolCore, lock: Any, driver: Any, get_mode: int, put_mode: int, tba: bool
    ) -> None:
        self._pool = pool_ref  # a weak reference
        self._core = core
        self._get_mode = get_mode
        self.put_mode = put_mode
        self._tba = tba
        self.epoch = getattr(driver, "epoch", 0)  # the driver's clear_prepared() epoch, pushed by the pool
        self.unlent: Any = None  # not None: conn._pool is the pool while lent, this when back
        self.lent: dict[int, Entry] = {}  # id(conn) -> Entry: what getconn() lent, putconn() takes back
        self.on_wait: Any = None  # None, or called with the seconds each hand-out took (metrics)
        self.on_use: Any = None  # None, or called with the seconds each connection was held (metrics)
        self.on_lend: Any = None  # None, or called with each entry handed out from idle (leak_timeout)
        self.loop: Any = None  # the loop the pool is bound to, set by the pool

    def connection(self, timeout: float | None = None) -> AsyncBorrow:
        """The async context manager of ``pool.connection()``."""
        return AsyncBorrow(self, timeout)

    def get(self, timeout: float | None) -> Any:
        """An in-use entry now, or an awaitable of the pool's giving one."""
        if timeout is not None:
            _check_timeout(timeout)
        if self.loop is None or _get_running_loop() is not self.loop:
            return self._pool()._get(timeout)  # first use binds; another loop raises
        now = _monotonic()
        e = self._core.acquire(now)
        if e is None:
            return self._pool()._get_slow(now, timeout)
        if self._core.doomed:
            self._pool()._close_doomed()
        if _ready(e, now, self._get_mode, self._tba):
            if self.on_lend is not None:
                self.on_lend(e)
            if self.on_wait is not None:
                self.on_wait(0.0)
            return e
        return self._pool()._admit_or_slow(e, now, timeout)

    def ready(self, e: Entry, now: float) -> bool:
        """True when ``e`` may be handed out with no admission (the pool's ``_admit``)."""
        return _ready(e, now, self._get_mode, self._tba)

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
        now = _monotonic()
        if e.owner is self._core and _returnable(e, now, self.put_mode, self.epoch):
            self.release(e, now)
            return None
        return self._pool()._release_block(e, ok)

    def put(self, e: Entry) -> Any:
        """Give back a checked-out entry as it is (nothing committed): None when done, else an
        awaitable (the pool's ``_release``)."""
        now = _monotonic()
        if e.owner is self._core and _returnable(e, now, self.put_mode, self.epoch):
            self.release(e, now)
            return None
        return self._pool()._release(e)

    async def getconn(self, timeout: float | None = None) -> Any:
        """``await pool.getconn()``: a connection to give back with ``putconn``."""
        r = self.get(timeout)
        if type(r) is not Entry:
            r = await r
        return self.lend(r)

    async def putconn(self, conn: Any) -> None:
        """``await pool.putconn()``: give back what ``getconn`` lent (``WrongPoolError`` otherwise)."""
        e = self.take_back(conn)
        if e is None:
            await self._pool()._not_lent(conn)
            return
        r = self.put(e)
        if r is not None:
            await r


class AsyncBorrow:
    """The async context manager returned by ``pool.connection()``."""

    __slots__ = ("_entry", "_fp", "_timeout")

    def __init__(self, fp: AsyncFastPath, timeout: float | None = None) -> None:
        self._fp = fp
        self._timeout = timeout
        self._entry: Entry | None = None

    async def __aenter__(self) -> Any:
        if self._entry is not None:
            raise RuntimeError("this connection() context is already in use")
        fp = self._fp
        r = fp.get(self._timeout)
        if type(r) is not Entry:
            r = await r
        self._entry = r
        if fp.unlent is not None:
            r.conn._pool = fp._pool()
        return r.conn

    async def __aexit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        e = self._entry
        if e is None:
            raise RuntimeError("this connection() context was not entered")
        self._entry = None
        if self._fp.unlent is not None:
            e.conn._pool = self._fp.unlent
        r = self._fp.release_block(e, exc_type is None)
        if r is not None:
            await r
