# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
# cython: initializedcheck=False
"""Compiled pool core (extension ``fastpool._core``).

Twin of ``fastpool._core_py``: same names, same behaviour, checked by the
differential tests.  Read the docstring of ``_core_py`` for the contract;
this file only differs in how it is written (typed C attributes, no
per-operation allocation on the hot path).
"""

cimport cython
from cpython.dict cimport PyDict_GetItemWithError
from cpython.object cimport PyObject
from cpython.ref cimport Py_INCREF
from cpython.exc cimport PyErr_CheckSignals
from cpython.pythread cimport (
    NOWAIT_LOCK,
    PY_LOCK_ACQUIRED,
    PY_LOCK_INTR,
    PyLockStatus,
    PyThread_acquire_lock,
    PyThread_allocate_lock,
    PyThread_free_lock,
    PyThread_release_lock,
    PyThread_type_lock,
)

cdef extern from "pythread.h":
    PyLockStatus PyThread_acquire_lock_timed(PyThread_type_lock, long long microseconds, int intr_flag) nogil
from collections import deque

__all__ = [
    "ENQUEUE_CLOSED",
    "ENQUEUE_FULL",
    "ENTRY_CLOSED",
    "ENTRY_IDLE",
    "ENTRY_IN_USE",
    "WAITER_CANCELLED",
    "WAITER_FAILED",
    "WAITER_SERVED",
    "WAITER_WAITING",
    "GET_ADMIT",
    "HIST_BOUNDS",
    "N_BUCKETS",
    "GET_PLAIN",
    "GET_PROBE",
    "PUT_PLAIN",
    "PUT_PSYCOPG",
    "PUT_SLOW",
    "ROLE_ANY",
    "ROLE_PRIMARY",
    "ROLE_READ_ONLY",
    "ROLE_READ_WRITE",
    "ROLE_STANDBY",
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

cdef extern from *:
    """
    #ifdef _WIN32
    #include <winsock2.h>
    static int fastpool_readable(long long fd) {
        WSAPOLLFD p; int r; p.fd = (SOCKET)fd; p.events = POLLRDNORM; p.revents = 0;
        r = WSAPoll(&p, 1, 0);
        return (r > 0 && (p.revents & POLLNVAL)) ? -2 : r;
    }
    #else
    #include <poll.h>
    static int fastpool_readable(long long fd) {
        struct pollfd p; int r; p.fd = (int)fd; p.events = POLLIN; p.revents = 0;
        r = poll(&p, 1, 0);
        return (r > 0 && (p.revents & POLLNVAL)) ? -2 : r;
    }
    #endif
    """
    int fastpool_readable(long long fd) nogil

cdef extern from *:
    """
    static int fastpool_install_send(PyObject *type, sendfunc f) {
        /* await on an AsyncBorrow: return the result through am_send, no StopIteration */
        PyTypeObject *t = (PyTypeObject *)type;
        if (t->tp_as_async == NULL) {
            PyErr_SetString(PyExc_RuntimeError, "fastpool: AsyncBorrow has no async slots");
            return -1;
        }
        t->tp_as_async->am_send = f;
        PyType_Modified(t);
        return 0;
    }
    """
    ctypedef enum PySendResult:
        PYGEN_RETURN
        PYGEN_ERROR
        PYGEN_NEXT
    ctypedef PySendResult (*sendfunc)(PyObject*, PyObject*, PyObject**) noexcept
    int fastpool_install_send(object t, sendfunc f) except -1

cdef extern from *:
    """
    #ifndef _WIN32
    #include <time.h>
    static double fastpool_monotonic(void) {
        struct timespec ts;
        if (clock_gettime(CLOCK_MONOTONIC, &ts) != 0) return -1.0;
        return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
    }
    #else
    static double fastpool_monotonic(void) { return -1.0; }
    #endif
    """
    double fastpool_monotonic() nogil

from libc.errno cimport errno
import os as _os


def readable(long long fd):
    """Say whether ``fd`` has data (or EOF, or an error) to read, without waiting.

    One ``poll()`` with a zero timeout: the pools' I/O-free probe of an idle
    connection.  Raises ``OSError`` for an invalid descriptor.
    """
    cdef int r = fastpool_readable(fd)
    if r == -2:
        raise OSError(9, "Bad file descriptor")
    if r < 0:
        raise OSError(errno, _os.strerror(errno))
    return r > 0


cdef double INF = float("inf")
cdef double _JITTER = 0.05
cdef long long _NO_LIMIT = 1LL << 62

#: Upper bounds (seconds, inclusive) of the histograms' buckets; a last bucket takes the rest.
HIST_BOUNDS = (0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
DEF _N_BOUNDS = 15
N_BUCKETS = _N_BOUNDS + 1
cdef double _BOUNDS[_N_BOUNDS]
for _i, _b in enumerate(HIST_BOUNDS):
    _BOUNDS[_i] = _b


cdef inline int _bucket(double v) noexcept:
    """The histogram bucket of ``v`` seconds: the first bound it does not exceed."""
    cdef int i = 0
    while i < _N_BOUNDS and v > _BOUNDS[i]:
        i += 1
    return i


cdef inline double _spread_point(long long serial) noexcept:
    """A fixed point in [0, 1) for an entry (drain spreading): the same in both twins, no draw."""
    cdef unsigned long long z = (<unsigned long long>serial) * 0x9E3779B97F4A7C15ULL
    return <double>z / 18446744073709551616.0

cdef enum:
    _ENTRY_IDLE = 0
    _ENTRY_IN_USE = 1
    _ENTRY_CLOSED = 2
    _W_WAITING = 0
    _W_SERVED = 1
    _W_CANCELLED = 2
    _W_FAILED = 3

ENTRY_IDLE = _ENTRY_IDLE
ENTRY_IN_USE = _ENTRY_IN_USE
ENTRY_CLOSED = _ENTRY_CLOSED
WAITER_WAITING = _W_WAITING
WAITER_SERVED = _W_SERVED
WAITER_CANCELLED = _W_CANCELLED
WAITER_FAILED = _W_FAILED
ENQUEUE_FULL = -1
ENQUEUE_CLOSED = -2


@cython.final
cdef class Entry:
    """One pooled connection and its bookkeeping (created once per connection)."""

    cdef public object conn
    cdef public double created_at
    cdef public double last_used
    cdef public double lent_at  # when it was last handed out (for the usage total)
    cdef public double expires_at
    cdef public long long serial
    cdef public object owner
    cdef public int state
    cdef public int locks_held
    cdef public bint flagged
    cdef public bint fresh
    cdef public bint check_due
    cdef public object data
    cdef public long long uses  # borrows so far
    cdef public long long use_limit  # retired when uses reaches it (max_uses, with jitter)
    def __init__(self, conn, double created_at, double expires_at, long long serial, owner):
        self.conn = conn
        self.created_at = created_at
        self.last_used = created_at
        self.lent_at = created_at
        self.expires_at = expires_at
        self.serial = serial
        self.owner = owner
        self.state = _ENTRY_IN_USE
        self.locks_held = 0
        self.flagged = False
        self.fresh = True
        self.check_due = False
        self.data = None  # the driver's per-connection state
        self.uses = 0
        self.use_limit = _NO_LIMIT

    def __repr__(self):
        return f"<Entry #{self.serial} state={self.state}>"


@cython.final
@cython.freelist(16)
cdef class Waiter:
    """A caller queued for a connection; ``handle`` belongs to the shell."""

    cdef public object handle
    cdef public object entry
    cdef public object error
    cdef public int state

    def __init__(self, handle=None):
        self.handle = handle
        self.entry = None
        self.error = None
        self.state = _W_WAITING


cdef inline _check_sizes(Py_ssize_t max_size, Py_ssize_t min_size):
    if max_size < 1:
        raise ValueError("max_size must be at least 1")
    if min_size < 0:
        raise ValueError("min_size cannot be negative")
    if min_size > max_size:
        raise ValueError("min_size cannot be greater than max_size")


@cython.final
cdef class PoolCore:
    """Non-blocking pool bookkeeping; see ``fastpool._core_py``."""

    cdef readonly Py_ssize_t max_size
    cdef readonly Py_ssize_t min_size
    cdef readonly Py_ssize_t max_waiting
    cdef double _max_lifetime
    cdef double _idle_timeout
    cdef double _verify_after
    cdef bint _lifo
    cdef list _ring  # the idle entries: a ring of _cap slots, grown by use up to max_size
    cdef Py_ssize_t _cap
    cdef Py_ssize_t _head
    cdef Py_ssize_t _n_idle
    cdef Py_ssize_t _in_use
    cdef Py_ssize_t _connecting
    cdef object _waiters
    cdef Py_ssize_t _n_waiting
    cdef Py_ssize_t _dead_waiters
    cdef double _drained_at
    cdef double _drain_spread
    cdef long long _max_uses
    cdef long long _h_use[_N_BOUNDS + 1]
    cdef long long _h_wait[_N_BOUNDS + 1]
    cdef long long _h_connect[_N_BOUNDS + 1]
    cdef readonly double sum_wait
    cdef readonly double sum_connect
    cdef readonly bint paused
    cdef readonly bint closed
    cdef readonly list doomed
    cdef unsigned long long _rng
    cdef long long _serial
    cdef readonly long long n_hits
    cdef readonly long long n_handoffs
    cdef readonly long long n_waits
    cdef readonly long long n_cancelled
    cdef readonly long long n_too_many
    cdef readonly long long n_connects
    cdef readonly long long n_connect_failures
    cdef readonly long long n_expired
    cdef readonly long long n_discarded
    cdef readonly long long n_returns
    cdef readonly double usage  # seconds connections spent handed out, summed at their return
    cdef readonly bint keep_idle  # False: a connection nobody waits for is closed, never idled

    def __init__(self, Py_ssize_t max_size, Py_ssize_t min_size=0, max_lifetime=None,
                 idle_timeout=None, verify_after=None, lifo=True, Py_ssize_t max_waiting=0,
                 seed=0, keep_idle=True, long long max_uses=0):
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
        self._cap = min(max_size, 16)
        self._ring = [None] * self._cap
        self._head = 0
        self._n_idle = 0
        self._in_use = 0
        self._connecting = 0
        self._waiters = deque()
        self._n_waiting = 0
        self._dead_waiters = 0
        self._drained_at = -INF
        self.closed = False
        self.doomed = []
        self._rng = <unsigned long long>(seed & 0xFFFFFFFFFFFFFFFF)
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
        self.usage = 0.0
        self.sum_wait = 0.0
        self.sum_connect = 0.0
        cdef int i
        for i in range(_N_BOUNDS + 1):
            self._h_use[i] = 0
            self._h_wait[i] = 0
            self._h_connect[i] = 0
        self._max_uses = max_uses
        self._drain_spread = 0.0
        self.paused = False
        self.keep_idle = bool(keep_idle)
        if not self.keep_idle and min_size:
            raise ValueError("min_size must be 0 when idle connections are not kept")

    # -- gauges ---------------------------------------------------------------

    @property
    def size(self):
        """Idle + in use + connecting."""
        return self._n_idle + self._in_use + self._connecting

    @property
    def idle(self):
        """Number of idle entries."""
        return self._n_idle

    @property
    def in_use(self):
        """Number of entries handed out (including pinned ones)."""
        return self._in_use

    @property
    def connecting(self):
        """Number of connects the shell was told to start and has not finished."""
        return self._connecting

    @property
    def waiting(self):
        """Number of live waiters."""
        return self._n_waiting

    # -- internals ------------------------------------------------------------

    cdef inline double _next_random(self):
        cdef unsigned long long z
        self._rng = self._rng + 0x9E3779B97F4A7C15ULL
        z = self._rng
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL
        z = z ^ (z >> 31)
        return <double>(z >> 11) * (1.0 / 9007199254740992.0)

    cdef inline void _push_idle(self, Entry e):
        if self._n_idle == self._cap:
            self._grow()
        self._ring[(self._head + self._n_idle) % self._cap] = e
        self._n_idle += 1
        e.state = _ENTRY_IDLE

    cdef void _grow(self):
        cdef Py_ssize_t k
        cdef Py_ssize_t cap = self._cap * 2 if self._cap else 16
        cdef list ring = [self._ring[(self._head + k) % self._cap] for k in range(self._n_idle)]
        ring.extend([None] * (cap - self._n_idle))
        self._ring = ring
        self._cap = cap
        self._head = 0

    cdef inline Entry _pop_idle(self):
        cdef Py_ssize_t i
        cdef Entry e
        if self._lifo:
            i = (self._head + self._n_idle - 1) % self._cap
        else:
            i = self._head
            self._head = (self._head + 1) % self._cap
        e = <Entry>self._ring[i]
        self._ring[i] = None
        self._n_idle -= 1
        return e

    cdef list _idle_list(self):
        cdef Py_ssize_t k, i
        cdef list out = []
        for k in range(self._n_idle):
            i = (self._head + k) % self._cap
            out.append(self._ring[i])
            self._ring[i] = None
        self._head = 0
        self._n_idle = 0
        return out

    cdef Py_ssize_t _reserve(self):
        cdef Py_ssize_t used, free, need, floor
        if self.closed:
            return 0
        used = self._n_idle + self._in_use + self._connecting
        free = self.max_size - used
        need = 0 if self.paused else self._n_waiting - self._connecting
        floor = self.min_size - used
        if floor > need:
            need = floor
        if need > free:
            need = free
        if need <= 0:
            return 0
        self._connecting += need
        return need

    cdef Waiter _pop_live_waiter(self):
        cdef Waiter w
        waiters = self._waiters
        while waiters:
            w = <Waiter>waiters.popleft()
            if w.state == _W_WAITING:
                self._n_waiting -= 1
                return w
            self._dead_waiters -= 1
        return None

    cdef Waiter _serve(self, Entry e, double now):
        cdef Waiter w = None if self.paused else self._pop_live_waiter()
        if w is not None:
            w.state = _W_SERVED
            w.entry = e
            e.state = _ENTRY_IN_USE
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

    cdef inline void _doom(self, Entry e):
        e.state = _ENTRY_CLOSED
        self.doomed.append(e)

    # -- operations -------------------------------------------------------------

    cpdef Entry acquire(self, double now):
        """Pop a usable idle entry, or return None (then the caller must wait).

        Expired entries met on the way are moved to ``doomed``.  Never barges
        past a queued waiter.
        """
        cdef Entry e
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
            e.state = _ENTRY_IN_USE
            e.fresh = False
            e.check_due = e.flagged or now - e.last_used >= self._verify_after
            e.lent_at = now
            self._in_use += 1
            self.n_hits += 1
            return e
        return None

    cpdef Py_ssize_t enqueue(self, Waiter waiter, double now):
        """Queue ``waiter``; return how many connects to start (>= 0).

        Returns ``ENQUEUE_CLOSED`` if the pool is closed and ``ENQUEUE_FULL``
        if ``max_waiting`` waiters are already queued.
        """
        if self.closed:
            waiter.state = _W_FAILED
            return -2
        if self.max_waiting and self._n_waiting >= self.max_waiting:
            waiter.state = _W_FAILED
            self.n_too_many += 1
            return -1
        waiter.state = _W_WAITING
        waiter.entry = None
        self._waiters.append(waiter)
        self._n_waiting += 1
        self.n_waits += 1
        return self._reserve()

    cpdef Entry cancel_wait(self, Waiter waiter):
        """Withdraw ``waiter``; return the entry if it had been served meanwhile."""
        cdef int st = waiter.state
        cdef Entry e
        if st == _W_SERVED:
            e = <Entry>waiter.entry
            waiter.entry = None
            waiter.state = _W_CANCELLED
            return e
        if st == _W_WAITING:
            waiter.state = _W_CANCELLED
            self._n_waiting -= 1
            self._dead_waiters += 1
            self.n_cancelled += 1
            if self._dead_waiters > 32 and self._dead_waiters > self._n_waiting:
                self._waiters = deque([w for w in self._waiters if (<Waiter>w).state == _W_WAITING])
                self._dead_waiters = 0
        return None

    cpdef Waiter release(self, Entry e, double now):
        """Return an in-use entry; hand it to the oldest waiter or idle it."""
        cdef double used
        if e.state != _ENTRY_IN_USE or e.owner is not self:
            raise RuntimeError("entry is not in use in this pool")
        used = now - e.lent_at
        self._in_use -= 1
        self.n_returns += 1
        self.usage += used
        self._h_use[_bucket(used)] += 1
        e.uses += 1
        if (self.closed or e.locks_held > 0 or now >= e.expires_at or e.uses >= e.use_limit
                or (e.created_at <= self._drained_at and self._drain_due(e, now))):
            self.n_discarded += 1
            self._doom(e)
            return None
        e.last_used = now
        e.fresh = False
        return self._serve(e, now)

    cpdef Py_ssize_t discard(self, Entry e) except -1:
        """Drop an in-use entry (the caller closes it); return connects to start."""
        if e.state != _ENTRY_IN_USE or e.owner is not self:
            raise RuntimeError("entry is not in use in this pool")
        self._in_use -= 1
        self.n_discarded += 1
        e.state = _ENTRY_CLOSED
        return self._reserve()

    cpdef Waiter connect_done(self, conn, double now, data=None):
        """Register a new connection opened for a reserved connect.

        ``data`` becomes the new entry's ``data`` (the driver's own state).
        Returns the waiter it was handed to, or None if it went idle (or to
        ``doomed``, when the pool closed meanwhile).
        """
        cdef double lifetime
        cdef Entry e
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
            e.use_limit = self._max_uses - <long long>(self._next_random() * (self._max_uses // 10 + 1))
            if e.use_limit < 1:
                e.use_limit = 1
        if self.closed:
            self._doom(e)
            return None
        return self._serve(e, now)

    cpdef Py_ssize_t connect_failed(self) except -1:
        """Give back a reserved connect that failed; return connects to start."""
        if self._connecting <= 0:
            raise RuntimeError("no connect in progress")
        self._connecting -= 1
        self.n_connect_failures += 1
        return self._reserve()

    cpdef Waiter fail_waiter(self):
        """Pop the oldest live waiter and mark it failed (the shell sets its error)."""
        cdef Waiter w = self._pop_live_waiter()
        if w is not None:
            w.state = _W_FAILED
        return w

    cpdef Py_ssize_t plan_connects(self):
        """Reserve the connects needed for live waiters and ``min_size``."""
        return self._reserve()

    cpdef Py_ssize_t add_connects(self, Py_ssize_t n):
        """Reserve up to ``n`` connects beyond what waiters and ``min_size`` ask for (none in flight).

        Returns how many were reserved: none while a connect is already in progress, the
        pool is closed, or it is full.
        """
        cdef Py_ssize_t free
        if self.closed or self._connecting:
            return 0
        free = self.max_size - self._n_idle - self._in_use
        if n > free:
            n = free
        if n <= 0:
            return 0
        self._connecting += n
        return n

    cpdef Py_ssize_t reap(self, double now):
        """Move expired idle entries to ``doomed``; return how many were moved."""
        cdef list entries = self._idle_list()
        cdef Py_ssize_t n = 0
        cdef Py_ssize_t size = len(entries) + self._in_use + self._connecting
        cdef Entry e
        for obj in entries:
            e = <Entry>obj
            if now >= e.expires_at or (now - e.last_used > self._idle_timeout and size > self.min_size):
                self._doom(e)
                self.n_expired += 1
                size -= 1
                n += 1
            else:
                self._push_idle(e)
        return n

    cpdef list idle_entries(self):
        """Return the idle entries, oldest push first (a snapshot; nothing changes)."""
        cdef Py_ssize_t k
        cdef list out = []
        for k in range(self._n_idle):
            out.append(self._ring[(self._head + k) % self._cap])
        return out

    cpdef Py_ssize_t evict(self, list entries) except -1:
        """Move those of ``entries`` that are still idle to ``doomed``; return how many."""
        cdef Py_ssize_t n = 0
        cdef Entry e
        for obj in entries:
            e = <Entry?>obj
            if e.state == _ENTRY_IDLE and e.owner is self:
                e.state = -1
                n += 1
        if n:
            for obj in self._idle_list():
                e = <Entry>obj
                if e.state == -1:
                    self.n_discarded += 1
                    self._doom(e)
                else:
                    self._push_idle(e)
        return n

    cpdef Py_ssize_t drain(self, double now, double spread=0.0) except -1:
        """Doom every idle entry, and every entry in use when it comes back; return how many idled.

        With ``spread`` (seconds), each entry instead retires at its own point of
        ``[now, now + spread)``.  Entries created after this call are not affected.
        """
        cdef list entries
        cdef Py_ssize_t n = 0
        self._drained_at = now
        self._drain_spread = spread
        entries = self._idle_list()
        for e in entries:
            if spread > 0.0 and not self._drain_due(<Entry>e, now):
                self._push_idle(<Entry>e)
                continue
            self.n_discarded += 1
            self._doom(<Entry>e)
            n += 1
        return n

    cdef bint _drain_due(self, Entry e, double now):
        """For an entry older than the last drain: is its turn due?  (Else its expiry is moved there.)"""
        cdef double at
        if self._drain_spread <= 0.0:
            return True
        at = self._drained_at + self._drain_spread * _spread_point(e.serial)
        if at < e.expires_at:
            e.expires_at = at
        return now >= at

    # -- pausing, and the histograms ---------------------------------------------------

    cpdef pause(self):
        """Hand out nothing until :meth:`resume`: callers queue; returns go idle."""
        self.paused = True

    cpdef list resume(self, double now):
        """Hand idle entries to the queued waiters again; return the waiters served."""
        cdef list served = []
        cdef Entry e
        cdef Waiter w
        self.paused = False
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

    cpdef observe_wait(self, double seconds):
        """Count a caller's wait for a connection (the hits, which waited 0 s, are counted apart)."""
        self.sum_wait += seconds
        self._h_wait[_bucket(seconds)] += 1

    cpdef observe_connect(self, double seconds):
        """Count how long a new connection took to open."""
        self.sum_connect += seconds
        self._h_connect[_bucket(seconds)] += 1

    def histograms(self):
        """Per-bucket counts (over ``HIST_BOUNDS`` then the rest) and the sum, in seconds, of the
        waits (hits included, as 0 s), the uses (borrow to return) and the connects."""
        wait = [self._h_wait[i] for i in range(_N_BOUNDS + 1)]
        wait[0] += self.n_hits
        return {
            "wait": (wait, self.sum_wait),
            "use": ([self._h_use[i] for i in range(_N_BOUNDS + 1)], self.usage),
            "connect": ([self._h_connect[i] for i in range(_N_BOUNDS + 1)], self.sum_connect),
        }

    cpdef flag(self, Entry e):
        """Mark ``e`` as needing a health check at its next hand-out."""
        e.flagged = True

    cpdef list close(self):
        """Close the core: idle entries go to ``doomed``; return the live waiters (failed)."""
        cdef list out = []
        self.closed = True
        for e in self._idle_list():
            self._doom(<Entry>e)
        while True:
            w = self.fail_waiter()
            if w is None:
                break
            out.append(w)
        self._dead_waiters = 0
        return out

    cpdef list take_doomed(self):
        """Return and clear the list of entries the shell must close."""
        cdef list d = self.doomed
        if not d:
            return []
        out = list(d)
        del d[:]
        return out

    cpdef resize(self, Py_ssize_t max_size, Py_ssize_t min_size):
        """Change the size bounds; idle entries beyond the new maximum go to ``doomed``."""
        _check_sizes(max_size, min_size)
        cdef list entries = self._idle_list()
        self.max_size = max_size
        self.min_size = min_size
        self._cap = min(max_size, 16)
        self._ring = [None] * self._cap
        cdef Py_ssize_t excess = len(entries) + self._in_use + self._connecting - max_size
        for e in entries:
            if excess > 0:
                self._doom(<Entry>e)
                excess -= 1
            else:
                self._push_idle(<Entry>e)

    def stats(self):
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


# -- the borrow path of the threaded pools -----------------------------------------------------

from time import monotonic as _py_monotonic

GET_ADMIT = 0
GET_PLAIN = 1
GET_PROBE = 2
PUT_SLOW = 0
PUT_PLAIN = 1
PUT_PSYCOPG = 2


cdef inline double _now() except? -1.0:
    """``time.monotonic()`` (CLOCK_MONOTONIC on POSIX, the same clock), without a Python call."""
    cdef double t = fastpool_monotonic()
    if t < 0:
        return _py_monotonic()
    return t


@cython.final
cdef class Lock:
    """A mutex like ``threading.Lock`` whose acquire/release the borrow path calls in C.

    ``threading.Lock.acquire`` parses its arguments by keyword on every call;
    this one is taken without a Python call when uncontended, and waits with
    the GIL released (signal handlers run, as with ``threading.Lock``).
    """

    cdef PyThread_type_lock _lock
    cdef bint _locked

    def __cinit__(self):
        self._lock = PyThread_allocate_lock()
        if self._lock == NULL:
            raise MemoryError("fastpool: cannot allocate a lock")
        self._locked = False

    def __dealloc__(self):
        if self._lock != NULL:
            if self._locked:
                PyThread_release_lock(self._lock)
            PyThread_free_lock(self._lock)

    cdef inline bint take(self) except -1:
        """Acquire, blocking as long as it takes."""
        if PyThread_acquire_lock(self._lock, NOWAIT_LOCK):
            self._locked = True
            return True
        return self._wait(-1)

    cdef bint _wait(self, long long microseconds) except -1:
        cdef PyLockStatus r
        while True:
            with nogil:
                r = PyThread_acquire_lock_timed(self._lock, microseconds, 1)
            if r == PY_LOCK_INTR:
                PyErr_CheckSignals()  # a handler may raise (KeyboardInterrupt)
                continue  # a timed wait restarts in full: waits here are short
            if r == PY_LOCK_ACQUIRED:
                self._locked = True
                return True
            return False

    cdef inline void give(self) noexcept:
        self._locked = False
        PyThread_release_lock(self._lock)

    def acquire(self, bint blocking=True, double timeout=-1):
        """Acquire; ``blocking``/``timeout`` as for ``threading.Lock.acquire``."""
        if PyThread_acquire_lock(self._lock, NOWAIT_LOCK):
            self._locked = True
            return True
        if not blocking:
            return False
        return self._wait(-1 if timeout < 0 else <long long>(timeout * 1e6))

    def release(self):
        """Release; ``RuntimeError`` if it is not held."""
        if not self._locked:
            raise RuntimeError("release unlocked lock")
        self.give()

    def locked(self):
        """True while held."""
        return self._locked

    def __enter__(self):
        self.take()
        return True

    def __exit__(self, *exc):
        self.release()


@cython.final
cdef class NoLock:
    """A lock that does nothing: the asyncio pools' core calls never interleave (the loop runs one)."""

    def acquire(self, blocking=True, timeout=-1):
        """Return True at once."""
        return True

    def release(self):
        """Do nothing."""

    def locked(self):
        """Always False."""
        return False

    def __enter__(self):
        return True

    def __exit__(self, *exc):
        return None


include "_core_psycopg.pxi"


cdef inline bint _ready(Entry e, double now, int mode, bint tba) except -1:
    """True when ``e`` may be handed out with no admission: the gates its pool's options call for."""
    if mode == GET_ADMIT or (e.check_due and tba):
        return False
    if mode == GET_PLAIN:
        return True
    return _psycopg_ready(e, now)


cdef inline bint _returnable(Entry e, double now, int mode, long long epoch) except -1:
    """True when ``e`` may go straight back: unexpired and, for psycopg, IDLE and unchanged."""
    if mode == PUT_PLAIN:
        return now < e.expires_at
    if mode != PUT_PSYCOPG:
        return False
    return _psycopg_returnable(e, now, epoch)


cdef int _check_timeout(object timeout) except -1:
    """A per-call ``timeout`` must be None or finite seconds >= 0 (the same errors as the shells')."""
    cdef double t
    if type(timeout) is float or type(timeout) is int:
        t = timeout
    else:
        raise TypeError(f"timeout must be a number of seconds, got {type(timeout).__name__}")
    if t != t or t == INF or t == -INF:
        raise ValueError(f"timeout must be finite, got {timeout}")
    if t < 0:
        raise ValueError(f"timeout must be >= 0, got {timeout}")
    return 0


@cython.final
cdef inline object _lend(dict lent, object unlent, object pool_ref, Entry e):
    """Both fast paths' ``lend``: remember ``e`` by its connection; point ``conn._pool`` at the pool."""
    conn = e.conn
    lent[id(conn)] = e
    if unlent is not None:
        conn._pool = pool_ref()
    return conn


cdef inline object _take_back(dict lent, object unlent, object conn):
    """Both fast paths' ``take_back``: the entry lent for ``conn`` (forgotten now), or None."""
    e = lent.pop(id(conn), None)
    if e is None:
        return None
    if (<Entry>e).conn is not conn:  # an id reused by another object: not ours
        lent[id(conn)] = e
        return None
    if unlent is not None:
        conn._pool = unlent
    return e


cdef class FastPath:
    """A threaded pool's per-borrow path: ``connection()``, ``get``, ``release`` and ``release_block``.

    It does the common case itself (lock, core pop/push, the gates the pool's
    options call for) and hands anything else to the pool's Python methods
    (``_admit``, ``_get_slow``, ``_release_block``, ``_close_doomed``).
    """

    cdef object _pool  # a weak reference: the pool owns its fast path, not the reverse
    cdef PoolCore _core
    cdef Lock _lock  # the pool's lock, taken in C
    cdef int _get_mode
    cdef public int put_mode  # PUT_*: the pool switches to PUT_SLOW when it closes
    cdef bint _tba
    cdef public long long epoch  # the driver's clear_prepared() epoch, pushed here by the pool
    cdef public object unlent  # not None: conn._pool is the pool while lent, this when back
    cdef public dict lent  # id(conn) -> Entry: what getconn() lent and putconn() takes back
    cdef public object on_wait  # None, or called with the seconds each hand-out took (metrics)
    cdef public object on_use  # None, or called with the seconds each connection was held (metrics)
    cdef public object on_lend  # None, or called with each entry handed out from idle (leak_timeout)

    def __init__(self, pool_ref, PoolCore core, Lock lock, driver, int get_mode, int put_mode, bint tba):
        self._pool = pool_ref
        self._core = core
        self._lock = lock
        self._get_mode = get_mode
        self.put_mode = put_mode
        self._tba = tba
        self.epoch = getattr(driver, "epoch", 0)
        self.unlent = None
        self.lent = {}
        self.on_wait = None
        self.on_use = None
        self.on_lend = None

    def connection(self, timeout=None):
        """The context manager of ``pool.connection()``."""
        cdef Borrow b = Borrow.__new__(Borrow)
        b._fp = self
        b._timeout = timeout
        return b

    cpdef Entry get(self, timeout):
        """Return an in-use entry (the pool's ``_get``)."""
        cdef double now
        cdef Entry e
        if timeout is not None:
            _check_timeout(timeout)
        now = _now()
        self._lock.take()
        try:
            e = self._core.acquire(now)
        finally:
            self._lock.give()
        if e is not None:
            if self._core.doomed:
                self._pool()._close_doomed()
            if _ready(e, now, self._get_mode, self._tba) or self._pool()._admit(e, now, timeout):
                if self.on_lend is not None:
                    self.on_lend(e)
                if self.on_wait is not None:
                    self.on_wait(_now() - now)
                return e
        return self._pool()._get_slow(now, timeout)

    cpdef bint ready(self, Entry e, double now) except -1:
        """True when ``e`` may be handed out with no admission (the pool's ``_admit``)."""
        return _ready(e, now, self._get_mode, self._tba)

    cpdef release(self, Entry e, double now):
        """Put ``e`` back in the core (idle, or straight to the oldest waiter); no reset."""
        self._release(e, now)

    cpdef release_block(self, Entry e, bint ok):
        """Give back an entry borrowed by ``connection()`` (``ok``: the block raised nothing)."""
        cdef double now = _now()
        if e.owner is self._core and _returnable(e, now, self.put_mode, self.epoch):
            self._release(e, now)
        else:
            self._pool()._release_block(e, ok)

    cpdef put(self, Entry e):
        """Give back a checked-out entry as it is (nothing committed): the pool's ``_release``."""
        cdef double now = _now()
        if e.owner is self._core and _returnable(e, now, self.put_mode, self.epoch):
            self._release(e, now)
        else:
            self._pool()._release(e)

    cpdef object lend(self, Entry e):
        """Record ``e`` as lent by ``getconn`` (the pool's own checked paths use it too); its conn."""
        return _lend(self.lent, self.unlent, self._pool, e)

    cpdef object take_back(self, conn):
        """The entry ``getconn`` lent for ``conn`` (forgotten now), or None."""
        return _take_back(self.lent, self.unlent, conn)

    def getconn(self, timeout=None):
        """``pool.getconn()``: a connection to give back with ``putconn``."""
        return self.lend(self.get(timeout))

    def putconn(self, conn):
        """``pool.putconn()``: give back what ``getconn`` lent (``WrongPoolError`` otherwise)."""
        e = self.take_back(conn)
        if e is None:
            self._pool()._not_lent(conn)
        self.put(<Entry>e)

    cdef _release(self, Entry e, double now):
        cdef Waiter w
        cdef double used = now - e.lent_at
        self._lock.take()
        try:
            w = self._core.release(e, now)
        finally:
            self._lock.give()
        if w is not None:
            w.handle.release()
        if self._core.doomed:
            self._pool()._close_doomed()
        if self.on_use is not None:
            self.on_use(used)


@cython.final
@cython.freelist(16)
cdef class Borrow:
    """The context manager returned by ``pool.connection()``."""

    cdef FastPath _fp
    cdef object _timeout
    cdef Entry _entry

    def __init__(self, FastPath fp, timeout=None):
        self._fp = fp
        self._timeout = timeout

    def __enter__(self):
        if self._entry is not None:
            raise RuntimeError("this connection() context is already in use")
        self._entry = self._fp.get(self._timeout)
        if self._fp.unlent is not None:
            self._entry.conn._pool = self._fp._pool()
        return self._entry.conn

    def __exit__(self, exc_type, exc, tb):
        cdef Entry e = self._entry
        if e is None:
            raise RuntimeError("this connection() context was not entered")
        self._entry = None
        if self._fp.unlent is not None:
            e.conn._pool = self._fp.unlent
        self._fp.release_block(e, exc_type is None)



# -- the borrow path of the asyncio pools ------------------------------------------------------

from asyncio import get_running_loop as _get_running_loop


cdef inline void _wake(Waiter w) except *:
    fut = w.handle
    if not fut.done():
        fut.set_result(None)


@cython.final
cdef class AsyncFastPath:
    """An asyncio pool's per-borrow path: ``connection()``, ``get``, ``release`` and ``release_block``.

    ``get`` returns an entry when one can be handed out without awaiting
    anything, else an awaitable of the pool's that gives one;
    ``release_block`` returns None when the entry is back, else the pool's
    awaitable return path.  ``lock`` is accepted for the same signature as
    :class:`FastPath` and not used: the loop serialises every call.
    """

    cdef object _pool  # a weak reference
    cdef PoolCore _core
    cdef int _get_mode
    cdef public int put_mode  # PUT_*: the pool switches to PUT_SLOW when it closes
    cdef bint _tba
    cdef public long long epoch  # the driver's clear_prepared() epoch, pushed here by the pool
    cdef public object unlent  # not None: conn._pool is the pool while lent, this when back
    cdef public dict lent  # id(conn) -> Entry: what getconn() lent and putconn() takes back
    cdef public object loop  # the loop the pool is bound to, set by the pool
    cdef public object on_wait  # None, or called with the seconds each hand-out took (metrics)
    cdef public object on_use  # None, or called with the seconds each connection was held (metrics)
    cdef public object on_lend  # None, or called with each entry handed out from idle (leak_timeout)

    def __init__(self, pool_ref, PoolCore core, lock, driver, int get_mode, int put_mode, bint tba):
        self._pool = pool_ref
        self._core = core
        self._get_mode = get_mode
        self.put_mode = put_mode
        self._tba = tba
        self.epoch = getattr(driver, "epoch", 0)
        self.loop = None
        self.unlent = None
        self.lent = {}
        self.on_wait = None
        self.on_use = None
        self.on_lend = None

    def connection(self, timeout=None):
        """The async context manager of ``pool.connection()``."""
        cdef AsyncBorrow b = AsyncBorrow.__new__(AsyncBorrow)
        b._fp = self
        b._timeout = timeout
        return b

    cpdef object get(self, timeout):
        """An in-use entry now, or an awaitable of the pool's giving one."""
        cdef double now
        cdef Entry e
        if timeout is not None:
            _check_timeout(timeout)
        if self.loop is None or _get_running_loop() is not self.loop:
            return self._pool()._get(timeout)  # first use binds; another loop raises
        now = _now()
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

    cpdef bint ready(self, Entry e, double now) except -1:
        """True when ``e`` may be handed out with no admission (the pool's ``_admit``)."""
        return _ready(e, now, self._get_mode, self._tba)

    cpdef release(self, Entry e, double now):
        """Put ``e`` back in the core (idle, or straight to the oldest waiter); no reset."""
        cdef double used = now - e.lent_at
        cdef Waiter w = self._core.release(e, now)
        if w is not None:
            _wake(w)
        if self._core.doomed:
            self._pool()._close_doomed()
        if self.on_use is not None:
            self.on_use(used)

    cpdef object release_block(self, Entry e, bint ok):
        """Give back an entry borrowed by ``connection()``: None when done, else an awaitable."""
        cdef double now = _now()
        if e.owner is self._core and _returnable(e, now, self.put_mode, self.epoch):
            self.release(e, now)
            return None
        return self._pool()._release_block(e, ok)

    cpdef object put(self, Entry e):
        """Give back a checked-out entry as it is (nothing committed): None when done, else an
        awaitable (the pool's ``_release``)."""
        cdef double now = _now()
        if e.owner is self._core and _returnable(e, now, self.put_mode, self.epoch):
            self.release(e, now)
            return None
        return self._pool()._release(e)

    cpdef object lend(self, Entry e):
        """Record ``e`` as lent by ``getconn`` (the pool's own checked paths use it too); its conn."""
        return _lend(self.lent, self.unlent, self._pool, e)

    cpdef object take_back(self, conn):
        """The entry ``getconn`` lent for ``conn`` (forgotten now), or None."""
        return _take_back(self.lent, self.unlent, conn)

    def getconn(self, timeout=None):
        """``await pool.getconn()``: a connection to give back with ``putconn``."""
        r = self.get(timeout)
        if type(r) is Entry:
            return _done(self.lend(<Entry>r))
        return self._getconn_slow(r)

    async def _getconn_slow(self, aw):
        return self.lend(await aw)

    def putconn(self, conn):
        """``await pool.putconn()``: give back what ``getconn`` lent (``WrongPoolError`` otherwise)."""
        e = self.take_back(conn)
        if e is None:
            return self._pool()._not_lent(conn)
        r = self.put(<Entry>e)
        return _done(None) if r is None else r


@cython.final
@cython.freelist(16)
cdef class AsyncBorrow:
    """The async context manager returned by ``pool.connection()``.

    When nothing needs awaiting, ``__aenter__``/``__aexit__`` return the
    borrow itself as an already-finished awaitable: no coroutine is created.
    """

    cdef AsyncFastPath _fp
    cdef object _timeout
    cdef Entry _entry
    cdef object _result

    def __init__(self, AsyncFastPath fp, timeout=None):
        self._fp = fp
        self._timeout = timeout

    def __aenter__(self):
        if self._entry is not None:
            raise RuntimeError("this connection() context is already in use")
        r = self._fp.get(self._timeout)
        if type(r) is Entry:
            self._entry = <Entry>r
            self._result = (<Entry>r).conn
            if self._fp.unlent is not None:
                self._result._pool = self._fp._pool()
            return self
        return self._enter_slow(r)

    async def _enter_slow(self, aw):
        e = await aw
        self._entry = e
        if self._fp.unlent is not None:
            e.conn._pool = self._fp._pool()
        return e.conn

    def __aexit__(self, exc_type, exc, tb):
        cdef Entry e = self._entry
        if e is None:
            raise RuntimeError("this connection() context was not entered")
        self._entry = None
        if self._fp.unlent is not None:
            e.conn._pool = self._fp.unlent
        r = self._fp.release_block(e, exc_type is None)
        if r is None:
            self._result = None
            return self
        return r

    def __await__(self):
        return self

    def __next__(self):
        r = self._result
        self._result = None
        raise StopIteration(r)


cdef inline AsyncBorrow _done(value):
    """An awaitable already finished with ``value`` (no coroutine is made)."""
    cdef AsyncBorrow b = AsyncBorrow.__new__(AsyncBorrow)
    b._result = value
    return b


cdef PySendResult _borrow_send(PyObject* self, PyObject* arg, PyObject** presult) noexcept:
    cdef AsyncBorrow b = <AsyncBorrow><object>self
    cdef object r = b._result
    b._result = None
    Py_INCREF(r)
    presult[0] = <PyObject*>r
    return PYGEN_RETURN


fastpool_install_send(AsyncBorrow, _borrow_send)
