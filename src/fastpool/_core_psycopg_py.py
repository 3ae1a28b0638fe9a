"""The psycopg part of the pure-Python core's borrow path (compiled twin: ``_core_psycopg.pxi``).

What the fast path knows of psycopg connections, kept apart from the generic
core: :class:`ClientState` (a connection's client-side settings when it joined
the pool), the socket probe and the IDLE/unchanged test of a returned
connection.
"""

from __future__ import annotations

from typing import Any

__all__ = ["ClientState", "psycopg_ready", "psycopg_returnable"]


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
        "row_factory",
    )

    def __init__(self, conn: Any, epoch: int) -> None:
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
    """A returned psycopg connection may go straight back: unexpired, IDLE, settings unchanged."""
    st = e.data
    if type(st) is not ClientState:
        return False
    pg = st.pgconn
    return bool(  # libpq reports a bad connection's transaction status as UNKNOWN, never IDLE (0)
        pg.transaction_status == 0 and now < e.expires_at and st.epoch == epoch and st.same(e.conn)
    )
