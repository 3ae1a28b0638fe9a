# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""What only C can do for the pool core (extension ``fastpool._core``).

The pool's bookkeeping and borrow path are written once, in ``_core_pool.py``,
which runs as it is (the pure-Python core) and is compiled with the types of
``_core_pool.pxd`` (the accelerated core).  This module keeps the parts that
need C itself: the clock and the socket probe (inline, in ``_core.pxd``), the
mutex the borrow path takes without a Python call, and the asyncio borrow
whose result comes back through the ``am_send`` slot.  ``_core_pure.py`` is
their pure-Python build; ``tests/test_core_c_parts.py`` holds the two to the
same behaviour.
"""

cimport cython
from cpython.exc cimport PyErr_CheckSignals
from cpython.object cimport PyObject
from cpython.pythread cimport (
    NOWAIT_LOCK,
    PY_LOCK_ACQUIRED,
    PY_LOCK_INTR,
    PyLockStatus,
    PyThread_acquire_lock,
    PyThread_allocate_lock,
    PyThread_free_lock,
    PyThread_release_lock,
)
from cpython.ref cimport Py_INCREF
from libc.errno cimport errno

cdef extern from "pythread.h":
    PyLockStatus PyThread_acquire_lock_timed(PyThread_type_lock, long long microseconds, int intr_flag) nogil

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

import os as _os
from time import monotonic as _py_monotonic

__all__ = ["AsyncBorrow", "Lock", "PathBase", "monotonic", "readable"]


cdef double clock_fallback() except? -1.0:
    return _py_monotonic()


def monotonic():
    """The pool's clock: ``time.monotonic()`` (the compiled build reads it in C)."""
    return now()


def readable(long long fd):
    """Say whether ``fd`` has data (or EOF, or an error) to read, without waiting.

    One ``poll()`` with a zero timeout: the pools' I/O-free probe of an idle
    connection.  Raises ``OSError`` for an invalid descriptor.
    """
    cdef int r = fd_readable(fd)
    if r == -2:
        raise OSError(9, "Bad file descriptor")
    if r < 0:
        raise OSError(errno, _os.strerror(errno))
    return r > 0


@cython.final
cdef class Lock:
    """A mutex like ``threading.Lock`` whose acquire/release the borrow path calls in C.

    ``threading.Lock.acquire`` parses its arguments by keyword on every call;
    this one is taken without a Python call when uncontended, and waits with
    the GIL released (signal handlers run, as with ``threading.Lock``).
    """

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

    cpdef bint acquire(self, bint blocking=True, double timeout=-1) except -1:
        """Acquire; ``blocking``/``timeout`` as for ``threading.Lock.acquire``."""
        if PyThread_acquire_lock(self._lock, NOWAIT_LOCK):
            self._locked = True
            return True
        if not blocking:
            return False
        return self._wait(-1 if timeout < 0 else <long long>(timeout * 1e6))

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

    cpdef release(self):
        """Release; ``RuntimeError`` if it is not held."""
        if not self._locked:
            raise RuntimeError("release unlocked lock")
        self._locked = False
        PyThread_release_lock(self._lock)

    def locked(self):
        """True while held."""
        return self._locked

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()


cdef class PathBase:
    """Base of the asyncio borrow path: what :class:`AsyncBorrow` calls to enter and exit."""

    cdef object _aenter(self, AsyncBorrow b):
        raise NotImplementedError

    cdef object _aexit(self, AsyncBorrow b, bint ok):
        raise NotImplementedError


@cython.final
@cython.freelist(16)
cdef class AsyncBorrow:
    """The async context manager returned by ``pool.connection()``, and a finished awaitable.

    When nothing needs awaiting, ``__aenter__``/``__aexit__`` return the
    borrow itself, already finished with its result: no coroutine is created.
    (Compiled, ``await`` takes the result through ``am_send``, raising no
    StopIteration.)
    """

    def __aenter__(self):
        if self._fp is None:
            raise TypeError("this awaitable is not a connection() context")
        return self._fp._aenter(self)

    def __aexit__(self, exc_type, exc, tb):
        if self._fp is None:
            raise TypeError("this awaitable is not a connection() context")
        return self._fp._aexit(self, exc_type is None)

    def __await__(self):
        return self

    def __next__(self):
        r = self._result
        self._result = None
        raise StopIteration(r)


cdef PySendResult _borrow_send(PyObject* self, PyObject* arg, PyObject** presult) noexcept:
    cdef AsyncBorrow b = <AsyncBorrow><object>self
    cdef object r = b._result
    b._result = None
    Py_INCREF(r)
    presult[0] = <PyObject*>r
    return PYGEN_RETURN


fastpool_install_send(AsyncBorrow, _borrow_send)
