# The C types of the asyncpg driver's gates: Cython reads this beside asyncpg_gates.py.
#
# Declarations only: the code is asyncpg_gates.py's, the same code the pure-Python build runs.

cimport cython
from fastpool._core cimport fd_readable, slot_get
from fastpool._core_pool cimport Entry, Gates

cdef int ROLE_ANY, ROLE_READ_WRITE, ROLE_PRIMARY, ROLE_READ_ONLY, ROLE_STANDBY

cdef object _reported(object settings, str name)
cpdef bint role_ok(settings, int role) except -1


@cython.final
cdef class AsyncpgState:
    cdef public object conn
    cdef public long long epoch
    cdef public long long fd
    cdef public int role
    cdef public object proto
    cdef public object section
    cdef public object settings
    cdef public dict listeners
    cdef public dict listeners0
    cdef public set log_listeners
    cdef public set log_listeners0
    cdef public set termination_listeners
    cdef public set termination_listeners0
    cdef public set query_loggers
    cdef public set query_loggers0

    @cython.locals(listeners=dict, log=set, term=set, loggers=set)
    cpdef bint same(self) except -1


cdef class AsyncpgGates(Gates):  # (not final: Cython refuses a final class's override of a base's cpdef)
    cdef public long long epoch
    cdef object _aborted
    cdef object _protocol
    cdef object _top_xact
    cdef object _acquired
    cdef object _connected
    cdef object _cancelling
    cdef object _in_tx
    cdef object _queries

    @cython.locals(c=object, proto=object)
    cpdef bint open(self, AsyncpgState st) except -1
    @cython.locals(st=AsyncpgState)
    cpdef bint ready(self, Entry e) except -1
    @cython.locals(st=AsyncpgState, proto=object)
    cpdef bint returnable(self, Entry e, double now) except -1
    cpdef bint idle(self, AsyncpgState st) except -1
    cdef inline bint _quiet(self, AsyncpgState st) except -1
    @cython.locals(st=AsyncpgState, proto=object)
    cpdef bint pristine(self, Entry e, long long queries) except -1
