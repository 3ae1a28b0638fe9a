"""The psycopg part of the pure-Python core's borrow path (compiled twin: ``_core_psycopg.pxi``).

What the fast path knows of psycopg connections, kept apart from the generic
core: :class:`ClientState` (a connection's client-side settings when it joined
the pool), the socket probe, the IDLE/unchanged test of a returned connection
and the server-role test (``target_session_attrs``).
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "ROLE_ANY",
    "ROLE_PRIMARY",
    "ROLE_READ_ONLY",
    "ROLE_READ_WRITE",
    "ROLE_STANDBY",
    "ClientState",
    "psycopg_ready",
    "psycopg_returnable",
    "role_ok",
]

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
    status: bytes | None = pgconn.parameter_status(b"in_hot_standby")
    if status is None:
        return True
    hot = status == b"on"
    if role == ROLE_PRIMARY:
        return not hot
    if role == ROLE_STANDBY:
        return hot
    ro = hot or pgconn.parameter_status(b"default_transaction_read_only") == b"on"
    return ro == (role == ROLE_READ_ONLY)


class ClientState:
    """A psycopg connection's client-side settings when it joined the pool.

    Also keeps the connection's ``pgconn`` and socket, which do not change
    for its life, so the borrow path need not look them up.
    """

    __slots__ = (
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

    def same(self, conn: Any) -> bool:
        """True if nothing changed (the common case: no allocation)."""
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


def psycopg_ready(e: Any, readable: Any) -> bool:
    """A psycopg connection may be handed out: OK status, nothing to read on its socket.

    Every hand-out probes, however recently the connection came back: a backend
    terminated while the connection was borrowed has left its FATAL message (or EOF)
    on the socket.
    """
    st = e.data
    if type(st) is not ClientState:
        return False
    return bool(st.pgconn.status == 0 and not readable(st.fd))


def psycopg_returnable(e: Any, now: float, epoch: int) -> bool:
    """A returned psycopg connection may go straight back: unexpired, IDLE, settings unchanged,
    and its server still in the role the pool wants."""
    st = e.data
    if type(st) is not ClientState:
        return False
    pg = st.pgconn
    return bool(  # libpq reports a bad connection's transaction status as UNKNOWN, never IDLE (0)
        pg.transaction_status == 0
        and now < e.expires_at
        and st.epoch == epoch
        and st.same(e.conn)
        and (st.role == ROLE_ANY or role_ok(pg, st.role))
    )
