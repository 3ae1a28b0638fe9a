# The C types of the pool core: Cython reads this beside _core_pool.py when it compiles it.
#
# Nothing here but declarations: the code is _core_pool.py's, the same code the pure-Python
# build runs.  What only C can do comes from _core.pxd/_core.pyx.

cimport cython
from fastpool._core cimport AsyncBorrow, Lock, PathBase
from fastpool._core cimport now as _now

cdef double INF
cdef double _JITTER
cdef long long _NO_LIMIT
cdef unsigned long long _MASK64, _GOLDEN, _MIX1, _MIX2
cdef Py_ssize_t _N_BOUNDS
cdef double _BOUNDS[15]  # len(HIST_BOUNDS): the import fails if they differ

cdef int ENTRY_IDLE, ENTRY_IN_USE, ENTRY_CLOSED
cdef int WAITER_WAITING, WAITER_SERVED, WAITER_CANCELLED, WAITER_FAILED, WAITER_TIMED_OUT
cdef int ENQUEUE_FULL, ENQUEUE_CLOSED
cdef int GET_ADMIT, GET_PLAIN, GET_GATE, PUT_SLOW, PUT_PLAIN, PUT_GATE

@cython.locals(i=Py_ssize_t)
cdef inline Py_ssize_t _bucket(double v) noexcept

@cython.locals(z=cython.ulonglong)
cdef inline double _spread_point(long long serial) noexcept


@cython.final
cdef class Entry:
    cdef public object conn
    cdef public double created_at
    cdef public double last_used
    cdef public double lent_at
    cdef public double expires_at
    cdef public long long serial
    cdef public object owner
    cdef public int state
    cdef public int locks_held
    cdef public bint flagged
    cdef public bint fresh
    cdef public bint check_due
    cdef public object data
    cdef public long long uses
    cdef public long long use_limit


@cython.final
@cython.freelist(16)
cdef class Waiter:
    cdef public object handle
    cdef public double deadline
    cdef public object entry
    cdef public object error
    cdef public int state


@cython.final
cdef class DeadlineQueue:
    cdef object _in_order
    cdef list _late
    cdef double _last
    cdef long long _seq

    @cython.locals(dq=object, kept=list)
    cpdef add(self, Waiter w, Py_ssize_t live)
    @cython.locals(dq=object, late=list, at=double)
    cpdef double earliest(self) except? -1.0
    @cython.locals(out=list, dq=object, late=list, w=Waiter)
    cpdef list due(self, double now)
    cpdef clear(self)


@cython.final
cdef class PoolCore:
    cdef readonly Py_ssize_t max_size
    cdef readonly Py_ssize_t min_size
    cdef readonly Py_ssize_t max_waiting
    cdef double _max_lifetime
    cdef double _idle_timeout
    cdef double _verify_after
    cdef bint _lifo
    cdef list _ring
    cdef Py_ssize_t _cap
    cdef Py_ssize_t _head
    cdef Py_ssize_t _n_idle
    cdef Py_ssize_t _in_use
    cdef Py_ssize_t _connecting
    cdef object _waiters
    cdef DeadlineQueue _by_deadline
    cdef Py_ssize_t _n_waiting
    cdef Py_ssize_t _dead_waiters
    cdef double _drained_at
    cdef double _drain_spread
    cdef long long _max_uses
    cdef long long _h_use[16]
    cdef long long _h_wait[16]
    cdef long long _h_connect[16]
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
    cdef readonly long long n_timeouts
    cdef readonly long long n_too_many
    cdef readonly long long n_connects
    cdef readonly long long n_connect_failures
    cdef readonly long long n_expired
    cdef readonly long long n_discarded
    cdef readonly long long n_returns
    cdef readonly double usage
    cdef readonly bint keep_idle

    @cython.locals(z=cython.ulonglong)
    cdef inline double _next_random(self)
    cdef inline void _push_idle(self, Entry e)
    @cython.locals(cap=Py_ssize_t, k=Py_ssize_t, ring=list)
    cdef void _grow(self)
    @cython.locals(i=Py_ssize_t, e=Entry)
    cdef inline Entry _pop_idle(self)
    @cython.locals(k=Py_ssize_t, out=list)
    cdef list _idle_list(self)
    @cython.locals(used=Py_ssize_t, free=Py_ssize_t, need=Py_ssize_t, floor=Py_ssize_t)
    cdef Py_ssize_t _reserve(self)
    @cython.locals(w=Waiter)
    cdef Waiter _pop_live_waiter(self)
    @cython.locals(w=Waiter)
    cdef Waiter _serve(self, Entry e, double now)
    cdef inline void _doom(self, Entry e)
    @cython.locals(at=double)
    cdef bint _drain_due(self, Entry e, double now)

    @cython.locals(e=Entry)
    cpdef Entry acquire(self, double now)
    cpdef Py_ssize_t enqueue(self, Waiter waiter, double now)
    cpdef double next_deadline(self) except? -1.0
    @cython.locals(out=list, w=Waiter)
    cpdef list expire(self, double now)
    cdef inline void _time_out(self, Waiter w) noexcept
    @cython.locals(st=int, e=Entry)
    cpdef Entry cancel_wait(self, Waiter waiter, bint timed_out=*)
    @cython.locals(used=double)
    cpdef Waiter release(self, Entry e, double now)
    cpdef Py_ssize_t discard(self, Entry e) except -1
    @cython.locals(lifetime=double, cut=double, e=Entry)
    cpdef Waiter connect_done(self, conn, double now, data=*)
    cpdef Py_ssize_t connect_failed(self) except -1
    @cython.locals(w=Waiter)
    cpdef Waiter fail_waiter(self)
    cpdef Py_ssize_t plan_connects(self)
    @cython.locals(free=Py_ssize_t)
    cpdef Py_ssize_t add_connects(self, Py_ssize_t n)
    @cython.locals(entries=list, n=Py_ssize_t, size=Py_ssize_t, e=Entry)
    cpdef Py_ssize_t reap(self, double now)
    @cython.locals(k=Py_ssize_t)
    cpdef list idle_entries(self)
    @cython.locals(n=Py_ssize_t, e=Entry)
    cpdef Py_ssize_t evict(self, list entries) except -1
    @cython.locals(n=Py_ssize_t, e=Entry)
    cpdef Py_ssize_t drain(self, double now, double spread=*) except -1
    cpdef pause(self)
    @cython.locals(served=list, e=Entry, w=Waiter)
    cpdef list resume(self, double now)
    cpdef observe_wait(self, double seconds)
    cpdef observe_connect(self, double seconds)
    cpdef flag(self, Entry e)
    @cython.locals(out=list, e=Entry, w=Waiter)
    cpdef list close(self)
    @cython.locals(d=list, out=list)
    cpdef list take_doomed(self)
    @cython.locals(entries=list, excess=Py_ssize_t, e=Entry)
    cpdef resize(self, Py_ssize_t max_size, Py_ssize_t min_size)


cdef class Gates:
    cpdef bint ready(self, Entry e) except -1
    cpdef bint returnable(self, Entry e, double now) except -1


cdef inline bint _ready(Gates gates, Entry e, int mode, bint tba) except -1
cdef inline bint _returnable(Gates gates, Entry e, double now, int mode) except -1

@cython.locals(t=double)
cdef int _check_timeout(object timeout, object pool_ref) except -1


cdef class _Path(PathBase):
    cdef object _pool
    cdef PoolCore _core
    cdef Gates _gates
    cdef int _get_mode
    cdef public int put_mode
    cdef bint _tba
    cdef public object unlent
    cdef public dict lent
    cdef public object on_wait
    cdef public object on_use
    cdef public object on_lend

    cpdef bint ready(self, Entry e) except -1
    @cython.locals(now=double)
    cdef inline double _back_at(self, Entry e) except? -2.0
    cpdef object lend(self, Entry e)
    @cython.locals(e=Entry)
    cpdef object take_back(self, conn)


@cython.final
cdef class FastPath(_Path):
    cdef Lock _lock

    @cython.locals(b=Borrow)
    cpdef Borrow connection(self, timeout=*)
    @cython.locals(now=double, e=Entry)
    cpdef Entry get(self, timeout)
    @cython.locals(used=double, w=Waiter)
    cpdef release(self, Entry e, double now)
    @cython.locals(now=double)
    cpdef release_block(self, Entry e, bint ok)
    @cython.locals(now=double)
    cpdef put(self, Entry e)


@cython.final
@cython.freelist(16)
cdef class Borrow:
    cdef FastPath _fp
    cdef object _timeout
    cdef Entry _entry


cdef inline void _wake(Waiter w) except *
@cython.locals(b=AsyncBorrow)
cdef inline AsyncBorrow _done(value)


cdef class AsyncFastPath(_Path):  # (not final: Cython refuses a final class's override of _aenter)
    cdef public object loop

    @cython.locals(b=AsyncBorrow)
    cpdef AsyncBorrow connection(self, timeout=*)
    @cython.locals(e=Entry)
    cdef object _aenter(self, AsyncBorrow b)
    @cython.locals(e=Entry)
    cdef object _aexit(self, AsyncBorrow b, bint ok)
    @cython.locals(now=double, e=Entry)
    cpdef object get(self, timeout)
    @cython.locals(used=double, w=Waiter)
    cpdef release(self, Entry e, double now)
    @cython.locals(now=double)
    cpdef object release_block(self, Entry e, bint ok)
    @cython.locals(now=double)
    cpdef object put(self, Entry e)
