# The C types of fastpool.asyncpg's borrow path: Cython reads this beside asyncpg_lend.py.
#
# Declarations only: the code is asyncpg_lend.py's, the same code the pure-Python build runs.

cimport cython
from fastpool._core cimport AsyncBorrow, now, slot_get, slot_set, step
from fastpool._core_pool cimport AsyncFastPath, Entry
from fastpool._drivers.asyncpg_gates cimport AsyncpgGates

cdef AsyncBorrow _DONE

@cython.locals(b=AsyncBorrow)
cdef AsyncBorrow _finished(object value)


@cython.final
@cython.freelist(16)
cdef class AcquireContext:
    cdef DropinPath _path
    cdef object _timeout
    cdef public object _proxy  # (set by the slow path, a coroutine)
    cdef bint _done


@cython.final
cdef class DropinPath:
    cdef public bint ready
    cdef object _pool
    cdef AsyncFastPath _fast
    cdef AsyncpgGates _gates
    cdef readonly object _proxy_cls
    cdef object _new
    cdef object _entry_cls
    cdef object _p_c
    cdef object _p_pool
    cdef object _p_entry
    cdef object _p_timeout
    cdef object _p_queries
    cdef object _p_touched
    cdef object _p_in_use
    cdef object _conn_cls
    cdef object _coro_type
    cdef object _c_proxy
    cdef object _c_holder
    cdef object _c_protocol
    cdef object _c_ctr
    cdef object _c_listeners
    cdef object _c_log_listeners
    cdef object _q
    cdef object _setup
    cdef object _reset_hook
    cdef long long _max_queries
    cdef readonly object _iface_error

    @cython.locals(ctx=AcquireContext)
    cpdef AcquireContext acquire(self, object timeout)
    cpdef object take(self, object timeout)
    cpdef object lend(self, Entry e, object timeout, bint in_use)
    @cython.locals(queries=cython.longlong)
    cpdef object give_back(self, object p, object timeout)
