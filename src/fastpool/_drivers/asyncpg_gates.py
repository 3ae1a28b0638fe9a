"""The asyncpg driver's gates on the borrow path: written once, compiled with
``asyncpg_gates.pxd`` or run as it is, in the same build as the core it serves.

What the borrow path knows of an asyncpg connection without any I/O:

* :class:`AsyncpgState`: what a connection had when it joined the pool (its
  listeners, log and termination listeners, query loggers), its protocol and
  its socket;
* :func:`role_ok`: the server role the connection's server last reported
  (``target_session_attrs``);
* :class:`AsyncpgGates`: the hand-out gate (open, no cancellation pending,
  nothing to read on the socket) and the return gate (open, unexpired, no
  transaction, no operation or cancellation in progress, nothing the client
  tracks changed, server still in the wanted role).

The compiled build (``fastpool._drivers.asyncpg_gates``) cimports the core's
``Entry`` and ``Gates`` and the socket probe; the pure one (loaded as
``fastpool._drivers.asyncpg_gates_pure``) subclasses the pure core's.  It
imports nothing of asyncpg: it reads the connection's attributes.
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
    from .._core_pure import fd_readable, slot_get

__all__ = [
    "ROLE_ANY",
    "ROLE_PRIMARY",
    "ROLE_READ_ONLY",
    "ROLE_READ_WRITE",
    "ROLE_STANDBY",
    "AsyncpgGates",
    "AsyncpgState",
    "role_ok",
]

# the target_session_attrs the return path checks (what the server last reported, no I/O)
ROLE_ANY = 0
ROLE_READ_WRITE = 1
ROLE_PRIMARY = 2
ROLE_READ_ONLY = 3
ROLE_STANDBY = 4


def _reported(settings: Any, name: str) -> Any:
    """A server parameter as asyncpg's ``ConnectionSettings`` keeps it, or None if not reported."""
    try:
        return getattr(settings, name)
    except AttributeError:
        return None


def role_ok(settings: Any, role: int) -> bool:
    """True when the server whose parameters are ``settings`` matches ``role``, or cannot tell.

    Reads what the server reported last (``in_hot_standby``, ``default_transaction_read_only``:
    PostgreSQL 14+); before 14 they are not reported and any server passes.
    """
    if role == ROLE_ANY:
        return True
    hot = _reported(settings, "in_hot_standby")
    if hot is None:
        return True
    if role == ROLE_PRIMARY:
        return bool(hot != "on")
    if role == ROLE_STANDBY:
        return bool(hot == "on")
    ro = hot == "on" or _reported(settings, "default_transaction_read_only") == "on"
    return bool(ro == (role == ROLE_READ_ONLY))


class AsyncpgState:
    """An asyncpg connection's client-side state when it joined the pool.

    Keeps what does not change for the connection's life (its protocol, the
    guard of its operations, its socket, and the containers asyncpg keeps its
    listeners in, which it never replaces), so that the borrow path need not
    look them up, and a copy of what those containers held.
    """

    if not cython.compiled:  # compiled, the .pxd declares the attributes
        __slots__ = (
            "conn",
            "epoch",
            "fd",
            "listeners",
            "listeners0",
            "log_listeners",
            "log_listeners0",
            "proto",
            "query_loggers",
            "query_loggers0",
            "role",
            "section",
            "settings",
            "termination_listeners",
            "termination_listeners0",
        )

    def __init__(self, conn: Any, fd: int, role: int = ROLE_ANY, epoch: int = 0) -> None:
        self.conn = conn
        self.fd = fd
        self.role = role  # ROLE_*: the server role every return checks
        self.epoch = epoch  # the driver's clear_prepared() epoch when the statement cache was last dropped
        self.proto = conn._protocol
        self.section = conn._stmt_exclusive_section  # held while an operation with arguments runs
        self.settings = conn._protocol.get_settings()
        self.listeners = conn._listeners
        self.log_listeners = conn._log_listeners
        self.termination_listeners = conn._termination_listeners
        self.query_loggers = conn._query_loggers
        self.listeners0 = {ch: set(cbs) for ch, cbs in conn._listeners.items()}
        self.log_listeners0 = set(conn._log_listeners)
        self.termination_listeners0 = set(conn._termination_listeners)
        self.query_loggers0 = set(conn._query_loggers)

    def same(self) -> bool:
        """True if nothing the client tracks changed since the snapshot (no allocation, and no
        comparison at all while everything is empty, as it nearly always is)."""
        return bool(
            ((not self.listeners and not self.listeners0) or self.listeners == self.listeners0)
            and (
                (not self.log_listeners and not self.log_listeners0)
                or self.log_listeners == self.log_listeners0
            )
            and (
                (not self.termination_listeners and not self.termination_listeners0)
                or self.termination_listeners == self.termination_listeners0
            )
            and (
                (not self.query_loggers and not self.query_loggers0)
                or self.query_loggers == self.query_loggers0
            )
        )


class AsyncpgGates(Gates):
    """The asyncpg driver's gates (``GET_GATE``, ``PUT_GATE``); ``epoch`` is its
    ``clear_prepared()`` epoch, which the driver bumps.

    ``access`` holds what the gates read asyncpg's objects with, found once in
    asyncpg's classes by the driver: the descriptors of ``Connection._aborted``,
    ``._protocol`` and ``._top_xact`` and of ``_Atomic._acquired``, the
    protocol's ``is_connected``, ``_is_cancelling`` and ``is_in_transaction``,
    called unbound, and the descriptor of its ``queries_count``.
    """

    if not cython.compiled:  # compiled, the .pxd declares the attributes
        __slots__ = (
            "_aborted",
            "_acquired",
            "_cancelling",
            "_connected",
            "_in_tx",
            "_protocol",
            "_queries",
            "_top_xact",
            "epoch",
        )

    def __init__(self, epoch: int, access: tuple[Any, ...]) -> None:
        self.epoch = epoch
        self._aborted, self._protocol, self._top_xact, self._acquired = (
            access[0],
            access[1],
            access[2],
            access[3],
        )
        self._connected, self._cancelling, self._in_tx = access[4], access[5], access[6]
        self._queries = access[7]

    def open(self, st: AsyncpgState) -> bool:
        """Not terminated, still on the protocol it joined with, and connected."""
        c = st.conn
        proto = st.proto
        return bool(
            not slot_get(self._aborted, c) and slot_get(self._protocol, c) is proto and self._connected(proto)
        )

    def ready(self, e: Entry) -> bool:
        """Open and nothing to read on the socket: it may be handed out.

        Every hand-out probes the socket: a backend terminated while the connection
        was idle or borrowed has left its FATAL message (or EOF) there, which the
        event loop may not have read yet.
        """
        data = e.data
        if type(data) is not AsyncpgState:
            return False
        st = data
        return bool(self.open(st) and fd_readable(st.fd) == 0)

    def returnable(self, e: Entry, now: float) -> bool:
        """A returned connection may go straight back: unexpired, quiet (see :meth:`_quiet`),
        nothing the client tracks changed, and its server still in the wanted role."""
        data = e.data
        if type(data) is not AsyncpgState:
            return False
        st = data
        return bool(
            now < e.expires_at
            and st.epoch == self.epoch
            and self._quiet(st)
            and st.same()
            and (st.role == ROLE_ANY or role_ok(st.settings, st.role))
        )

    def idle(self, st: AsyncpgState) -> bool:
        """What ``reset_now`` asks: usable as it is (open, no operation or cancellation in
        progress) — without the socket probe or the state checks."""
        proto = st.proto
        return bool(
            self.open(st) and not self._cancelling(proto) and not slot_get(self._acquired, st.section)
        )

    def _quiet(self, st: AsyncpgState) -> bool:
        """Open, no operation or cancellation in progress, and in no transaction (neither the
        server's nor asyncpg's own)."""
        proto = st.proto
        return bool(
            self.open(st)
            and not self._cancelling(proto)
            and not slot_get(self._acquired, st.section)
            and not self._in_tx(proto)
            and slot_get(self._top_xact, st.conn) is None
        )

    def pristine(self, e: Entry, queries: int) -> bool:
        """A connection back from a borrow of ``fastpool.asyncpg.Pool`` has nothing for
        asyncpg's reset to undo: quiet (see :meth:`_quiet`), no listener, its server still in
        the wanted role, and no query sent since it was lent (``queries``: the protocol's
        ``queries_count`` then; it counts every query when it is sent, whatever becomes of it)."""
        data = e.data
        if type(data) is not AsyncpgState:
            return False
        st = data
        return bool(
            slot_get(self._queries, st.proto) == queries
            and self._quiet(st)
            and not st.listeners
            and not st.log_listeners
            and (st.role == ROLE_ANY or role_ok(st.settings, st.role))
        )


if cython.compiled:  # what C types keep off the module's attributes
    globals().update(
        ROLE_ANY=ROLE_ANY,
        ROLE_READ_WRITE=ROLE_READ_WRITE,
        ROLE_PRIMARY=ROLE_PRIMARY,
        ROLE_READ_ONLY=ROLE_READ_ONLY,
        ROLE_STANDBY=ROLE_STANDBY,
    )
