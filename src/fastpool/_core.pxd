# What only C can do, for the compiled pool core (``_core_pool.py`` cimports it).
#
# The clock and the socket probe are inline C, read without a Python call; Lock is a mutex
# taken in C; AsyncBorrow is an awaitable whose result comes back through the ``am_send``
# slot, with no StopIteration.  Their pure-Python build is ``_core_pure.py``.

from cpython.pythread cimport PyThread_type_lock

cdef extern from *:
    """
    #ifdef _WIN32
    #include <winsock2.h>
    static int fastpool_readable(long long fd) {
        WSAPOLLFD p; int r; p.fd = (SOCKET)fd; p.events = POLLRDNORM; p.revents = 0;
        r = WSAPoll(&p, 1, 0);
        return (r > 0 && (p.revents & POLLNVAL)) ? -2 : r;
    }
    static double fastpool_monotonic(void) { return -1.0; }
    #else
    #include <poll.h>
    #include <time.h>
    static int fastpool_readable(long long fd) {
        struct pollfd p; int r; p.fd = (int)fd; p.events = POLLIN; p.revents = 0;
        r = poll(&p, 1, 0);
        return (r > 0 && (p.revents & POLLNVAL)) ? -2 : r;
    }
    static double fastpool_monotonic(void) {
        struct timespec ts;
        if (clock_gettime(CLOCK_MONOTONIC, &ts) != 0) return -1.0;
        return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
    }
    #endif
    """
    int fastpool_readable(long long fd) nogil
    double fastpool_monotonic() nogil


cdef extern from *:
    """
    /* read an attribute through its descriptor, found once in the class (a __slots__ member):
       no lookup through the type's dict and MRO per read */
    static PyObject *fastpool_slot_get(PyObject *descr, PyObject *obj) {
        descrgetfunc get = Py_TYPE(descr)->tp_descr_get;
        if (get == NULL) { Py_INCREF(descr); return descr; }
        return get(descr, obj, (PyObject *)Py_TYPE(obj));
    }
    /* write an attribute through its descriptor (a __slots__ member) */
    static int fastpool_slot_set(PyObject *descr, PyObject *obj, PyObject *value) {
        descrsetfunc set = Py_TYPE(descr)->tp_descr_set;
        if (set == NULL) {
            PyErr_SetString(PyExc_AttributeError, "not a data descriptor");
            return -1;
        }
        return set(descr, obj, value);
    }
    /* one step of a coroutine (send None): what it waits on, or `done` when it returned
       (no StopIteration is made); NULL with the exception set when it raised */
    static PyObject *fastpool_step(PyObject *coro, PyObject *done) {
        PyObject *result = NULL;
        PySendResult r = PyIter_Send(coro, Py_None, &result);
        if (r == PYGEN_ERROR) return NULL;
        if (r == PYGEN_RETURN) { Py_XDECREF(result); Py_INCREF(done); return done; }
        return result;
    }
    """
    object fastpool_slot_get(object descr, object obj)
    int fastpool_slot_set(object descr, object obj, object value) except -1
    object fastpool_step(object coro, object done)


cdef double clock_fallback() except? -1.0


cdef inline double now() except? -1.0:
    """``time.monotonic()`` (CLOCK_MONOTONIC on POSIX, the same clock), without a Python call."""
    cdef double t = fastpool_monotonic()
    if t < 0:
        return clock_fallback()
    return t


cdef inline object slot_get(object descr, object obj):
    """``descr.__get__(obj)``: an attribute read through its descriptor (a class's __slots__ member)."""
    return fastpool_slot_get(descr, obj)


cdef inline int slot_set(object descr, object obj, object value) except -1:
    """``descr.__set__(obj, value)``: an attribute write through its descriptor (a __slots__ member)."""
    return fastpool_slot_set(descr, obj, value)


cdef inline object step(object coro, object done):
    """Send None into ``coro``: what it waits on next, or ``done`` if it returned (its value is
    dropped); its exception propagates."""
    return fastpool_step(coro, done)


cdef inline int fd_readable(long long fd) noexcept nogil:
    """1 when ``fd`` has something to read (or EOF, or an error), 0 when not, < 0 when invalid."""
    return fastpool_readable(fd)


cdef class Lock:
    cdef PyThread_type_lock _lock
    cdef bint _locked
    cpdef bint acquire(self, bint blocking=*, double timeout=*) except -1
    cpdef release(self)
    cdef bint _wait(self, long long microseconds) except -1


cdef class PathBase:
    cdef object _aenter(self, AsyncBorrow b)
    cdef object _aexit(self, AsyncBorrow b, bint ok)


cdef class AsyncBorrow:
    cdef readonly PathBase _fp
    cdef public object _timeout
    cdef public object _entry
    cdef public object _result
