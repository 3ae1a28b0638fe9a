# The psycopg part of the compiled borrow path (included by _core.pyx; pure twin: _core_psycopg_py.py).
#
# What the fast path knows of psycopg connections, kept apart from the generic core:
# ClientState (a connection's client-side settings when it joined the pool, read straight
# from its __dict__), the socket probe, the IDLE/unchanged test of a returned connection and
# the server-role test (target_session_attrs).

cdef object _MISSING = object()

# the target_session_attrs the return path checks (what the server last reported, no I/O)
ROLE_ANY = 0
ROLE_READ_WRITE = 1
ROLE_PRIMARY = 2
ROLE_READ_ONLY = 3
ROLE_STANDBY = 4


cpdef bint role_ok(pgconn, int role) except -1:
    """True when the server of ``pgconn`` matches ``role`` (a ``ROLE_*``), or cannot tell.

    Reads what the server reported last (``in_hot_standby``, ``default_transaction_read_only``:
    PostgreSQL 14+); before 14 they are not reported and any server passes.
    """
    if role == 0:
        return True
    hot = pgconn.parameter_status(b"in_hot_standby")
    if hot is None:
        return True
    if role == 2:
        return hot != b"on"
    if role == 4:
        return hot == b"on"
    ro = hot == b"on" or pgconn.parameter_status(b"default_transaction_read_only") == b"on"
    return ro == (role == 3)


cdef inline object _dget(dict d, str key):
    cdef PyObject* p = PyDict_GetItemWithError(d, key)  # str keys: no error to suppress
    if p == NULL:
        return _MISSING
    return <object>p


cdef inline bint _eq(object a, object b) except -1:
    return a is b or a == b


@cython.final
cdef class ClientState:
    """A psycopg connection's client-side settings when it joined the pool.

    Also keeps the connection's ``pgconn`` and socket, which do not change
    for its life, so the borrow path need not look them up.
    """

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
    cdef public int role  # ROLE_*: the server role every return checks
    cdef public object pgconn
    cdef public long long fd
    cdef dict _d  # conn.__dict__: read directly, skipping the type's attribute lookup
    cdef dict _pd  # conn._prepared.__dict__
    cdef object _pt  # what _pd held for prepare_threshold at the snapshot (or _MISSING)

    def __init__(self, conn, epoch, int role=0):
        self.autocommit = conn._autocommit
        self.isolation_level = conn._isolation_level
        self.read_only = conn._read_only
        self.deferrable = conn._deferrable
        self.row_factory = conn.row_factory
        self.cursor_factory = conn.cursor_factory
        self.prepare_threshold = conn._prepared.prepare_threshold
        self.notice_handlers = list(conn._notice_handlers)
        self.notify_handlers = list(conn._notify_handlers)
        self.epoch = epoch
        self.role = role
        self.pgconn = conn.pgconn
        self.fd = conn.pgconn.socket
        d = getattr(conn, "__dict__", None)
        pd = getattr(conn._prepared, "__dict__", None)
        if type(d) is dict and type(pd) is dict:
            self._d = d
            self._pd = pd
            self._pt = _dget(pd, "prepare_threshold")

    cpdef bint same(self, conn) except -1:
        """True if nothing changed (the common case: no allocation)."""
        cdef dict d = self._d
        if d is None or _dget(self._pd, "prepare_threshold") is not self._pt:
            return self._same_slow(conn)
        v = _dget(d, "_autocommit")
        if v is _MISSING:
            return self._same_slow(conn)
        return (
            _eq(v, self.autocommit)
            and _dget(d, "row_factory") is self.row_factory
            and _eq(_dget(d, "_isolation_level"), self.isolation_level)
            and _eq(_dget(d, "_read_only"), self.read_only)
            and _eq(_dget(d, "_deferrable"), self.deferrable)
            and _dget(d, "cursor_factory") is self.cursor_factory
            and _dget(d, "_notice_handlers") == self.notice_handlers
            and _dget(d, "_notify_handlers") == self.notify_handlers
        )

    cdef bint _same_slow(self, conn) except -1:
        return (
            conn._autocommit == self.autocommit
            and conn.row_factory is self.row_factory
            and conn._isolation_level == self.isolation_level
            and conn._read_only == self.read_only
            and conn._deferrable == self.deferrable
            and conn.cursor_factory is self.cursor_factory
            and conn._prepared.prepare_threshold == self.prepare_threshold
            and conn._notice_handlers == self.notice_handlers
            and conn._notify_handlers == self.notify_handlers
        )


cdef inline bint _psycopg_ready(Entry e, double now) except -1:
    """A psycopg connection may be handed out: OK status, nothing to read on its socket."""
    cdef ClientState st
    if type(e.data) is not ClientState:
        return False
    # every hand-out probes, however recently the connection came back: a backend terminated
    # while the connection was borrowed has left its FATAL message (or EOF) on the socket
    st = <ClientState>e.data
    return st.pgconn.status == 0 and fastpool_readable(st.fd) == 0


cdef inline bint _psycopg_returnable(Entry e, double now, long long epoch) except -1:
    """A returned psycopg connection may go straight back: unexpired, IDLE, settings unchanged,
    and its server still in the role the pool wants."""
    cdef ClientState st
    if type(e.data) is not ClientState:
        return False
    st = <ClientState>e.data
    pg = st.pgconn
    return (  # libpq reports a bad connection's transaction status as UNKNOWN, never IDLE (0)
        pg.transaction_status == 0
        and now < e.expires_at
        and st.epoch == epoch
        and st.same(e.conn)
        and (st.role == 0 or role_ok(pg, st.role))
    )
