# The C types of the psycopg driver's gates: Cython reads this beside psycopg_gates.py.
#
# Declarations only: the code is psycopg_gates.py's, the same code the pure-Python build runs.

cimport cython
from fastpool._core cimport fd_readable
from fastpool._core_pool cimport Entry, Gates

cdef object _MISSING
cdef int ROLE_ANY, ROLE_READ_WRITE, ROLE_PRIMARY, ROLE_READ_ONLY, ROLE_STANDBY

cpdef bint role_ok(pgconn, int role) except -1


@cython.final
cdef class ClientState:
    cdef public object autocommit
    cdef public object isolation_level
    cdef public object read_only
    cdef public object deferrable
    cdef public object row_factory
    cdef public object cursor_factory
    cdef public object prepare_threshold
    cdef public object notice_handlers
    cdef public object notify_handlers
    cdef public long long epoch
    cdef public int role
    cdef public object pgconn
    cdef public long long fd
    cdef dict _d
    cdef dict _pd
    cdef object _pt

    @cython.locals(d=dict, pd=dict)
    cpdef bint same(self, conn) except -1
    cdef bint _same_slow(self, conn) except -1


cdef class PsycopgGates(Gates):  # (not final: Cython refuses a final class's override of a base's cpdef)
    cdef public long long epoch

    @cython.locals(st=ClientState)
    cpdef bint ready(self, Entry e) except -1
    @cython.locals(st=ClientState)
    cpdef bint returnable(self, Entry e, double now) except -1
