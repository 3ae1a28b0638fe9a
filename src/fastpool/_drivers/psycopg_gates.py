"""The psycopg driver's gates on the borrow path: written once, compiled with
``psycopg_gates.pxd`` or run as it is, in the same build as the core it serves.

What the borrow path knows of a psycopg connection without any I/O:

* :class:`ClientState`: a connection's client-side settings when it joined the
  pool (read straight from its ``__dict__``), its ``pgconn`` and socket;
* :func:`role_ok`: the server role the connection's server last reported
  (``target_session_attrs``);
* :class:`PsycopgGates`: the hand-out gate (OK status, nothing to read on the
  socket) and the return gate (IDLE, unexpired, settings unchanged, prepared
  statements of the current epoch, server still in the wanted role).

The compiled build (``fastpool._drivers.psycopg_gates``) cimports the core's
``Entry`` and ``Gates`` and the socket probe; the pure one (loaded as
``fastpool._drivers.psycopg_gates_pure``) subclasses the pure core's.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .. import _core_nocython as cython
    from .._core_pool import Entry, Gates
else:
    try:
        import cython
    except ImportError:  # a pure-Python install: no Cython, and this module runs as it is
        from .. import _core_nocython as cython
    if not cython.compiled:  # run as Python: the pure build's core (compiled, the .pxd cimports it)
        from .._core_build import load as _load_core

        _core = _load_core("python")
        Entry = _core.Entry
        Gates = _core.Gates
if not cython.compiled:
    from .._core_pure import fd_readable

__all__ = [
    "ROLE_ANY",
    "ROLE_PRIMARY",
    "ROLE_READ_ONLY",
    "ROLE_READ_WRITE",
    "ROLE_STANDBY",
    "ClientState",
    "PsycopgGates",
    "role_ok",
]

_MISSING = object()

# the target_session_attrs the return path checks (what the server last reported, no I/O)
ROLE_ANY = 0
ROLE_READ_WRITE = 1
ROLE_PRIMARY = 2
ROLE_READ_ONLY = 3
ROLE_STANDBY = 4


def role_ok(pgconn: Any, role: int) -> bool:
    """True when the server of ``pgconn`` matches ``role`` (a ``ROLE_*``), or cannot tell.

    Reads what the server reported last (``in_hot_standby``, ``default_transaction_read_only``:
    PostgreSQL 14+); before 14 they are not reported and any server passes.
    """
    if role == ROLE_ANY:
        return True
    hot = pgconn.parameter_status(b"in_hot_standby")
    if hot is None:
        return True
    if role == ROLE_PRIMARY:
        return bool(hot != b"on")
    if role == ROLE_STANDBY:
        return bool(hot == b"on")
    ro = hot == b"on" or pgconn.parameter_status(b"default_transaction_read_only") == b"on"
    return bool(ro == (role == ROLE_READ_ONLY))


class ClientState:
    """A psycopg connection's client-side settings when it joined the pool.

    Also keeps the connection's ``pgconn`` and socket, which do not change
    for its life, so the borrow path need not look them up.
    """

    if not cython.compiled:  # compiled, the .pxd declares the attributes
        __slots__ = (
            "_d",
            "_pd",
            "_pt",
            "autocommit",
            "cursor_factory",
            "deferrable",
            "epoch",
            "fd",
            "isolation_level",
            "notice_handlers",
            "notify_handlers",
            "pgconn",
            "prepare_threshold",
            "read_only",
            "role",
            "row_factory",
        )

    def __init__(self, conn: Any, epoch: int, role: int = ROLE_ANY) -> None:
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
        self.role = role  # ROLE_*: the server role every return checks
        self.pgconn = conn.pgconn
        self.fd = conn.pgconn.socket
        # conn.__dict__ and conn._prepared.__dict__, read directly (skipping the types' attribute
        # lookup), and what the latter held for prepare_threshold at the snapshot
        d = getattr(conn, "__dict__", None)
        pd = getattr(conn._prepared, "__dict__", None)
        self._d: dict[str, Any] | None = None
        self._pd: dict[str, Any] | None = None
        self._pt: Any = None
        if type(d) is dict and type(pd) is dict:
            self._d = d
            self._pd = pd
            self._pt = pd.get("prepare_threshold", _MISSING)

    def same(self, conn: Any) -> bool:
        """True if nothing changed (the common case: no allocation)."""
        d = self._d
        pd = self._pd
        if d is None or pd is None or pd.get("prepare_threshold", _MISSING) is not self._pt:
            return self._same_slow(conn)
        v = d.get("_autocommit", _MISSING)
        if v is _MISSING:  # not the layout the snapshot read: ask the connection itself
            return self._same_slow(conn)
        # (a key gone from __dict__ reads as _MISSING, which equals nothing: not the same; and
        # `is` first, which spares the compiled build a rich comparison in the common case)
        iso = d.get("_isolation_level", _MISSING)
        ro = d.get("_read_only", _MISSING)
        dfr = d.get("_deferrable", _MISSING)
        return bool(
            (v is self.autocommit or v == self.autocommit)
            and d.get("row_factory", _MISSING) is self.row_factory
            and (iso is self.isolation_level or iso == self.isolation_level)
            and (ro is self.read_only or ro == self.read_only)
            and (dfr is self.deferrable or dfr == self.deferrable)
            and d.get("cursor_factory", _MISSING) is self.cursor_factory
            and d.get("_notice_handlers", _MISSING) == self.notice_handlers
            and d.get("_notify_handlers", _MISSING) == self.notify_handlers
        )

    def _same_slow(self, conn: Any) -> bool:
        return bool(
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


class PsycopgGates(Gates):
    """The psycopg driver's gates (``GET_GATE``, ``PUT_GATE``); ``epoch`` is its
    ``clear_prepared()`` epoch, which the driver bumps."""

    if not cython.compiled:  # compiled, the .pxd declares the attributes
        __slots__ = ("epoch",)

    def __init__(self, epoch: int = 0) -> None:
        self.epoch = epoch

    def ready(self, e: Entry) -> bool:
        """OK status and nothing to read on the socket: the connection may be handed out.

        Every hand-out probes, however recently the connection came back: a backend
        terminated while the connection was borrowed has left its FATAL message (or EOF)
        on the socket.
        """
        data = e.data
        if type(data) is not ClientState:
            return False
        st = data
        return bool(st.pgconn.status == 0 and fd_readable(st.fd) == 0)

    def returnable(self, e: Entry, now: float) -> bool:
        """A returned connection may go straight back: unexpired, IDLE, settings unchanged,
        prepared statements of the current epoch, and its server still in the wanted role."""
        data = e.data
        if type(data) is not ClientState:
            return False
        st = data
        pg = st.pgconn
        return bool(  # libpq reports a bad connection's transaction status as UNKNOWN, never IDLE (0)
            pg.transaction_status == 0
            and now < e.expires_at
            and st.epoch == self.epoch
            and st.same(e.conn)
            and (st.role == ROLE_ANY or role_ok(pg, st.role))
        )


if cython.compiled:  # what C types keep off the module's attributes
    globals().update(
        ROLE_ANY=ROLE_ANY,
        ROLE_READ_WRITE=ROLE_READ_WRITE,
        ROLE_PRIMARY=ROLE_PRIMARY,
        ROLE_READ_ONLY=ROLE_READ_ONLY,
        ROLE_STANDBY=ROLE_STANDBY,
    )
