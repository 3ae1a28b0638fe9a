"""The psycopg 3 driver: how the pools open, check, reset and close connections.

Return-time reset (every recycling method): a broken or closed connection, or
one left ACTIVE or UNKNOWN (a query or COPY still running, R1), is discarded;
one left in a transaction (INTRANS or INERROR) is rolled back.  An IDLE
connection gets no round trip at all: a gratuitous ROLLBACK would also clear
psycopg's prepared-statement cache.

Acquire-time check: ``needs_check`` is I/O-free (connection status plus a
zero-timeout readability probe of the socket, which catches a backend that was
terminated while idle); ``check`` is an empty query in autocommit.
"""

from __future__ import annotations

import logging
from typing import Any

import psycopg
from psycopg import pq
from psycopg.conninfo import conninfo_to_dict

from . import _impl
from .resource import Driver

__all__ = ["PsycopgDriver"]

logger = logging.getLogger("fastpool")

_OK = pq.ConnStatus.OK
_IDLE = pq.TransactionStatus.IDLE
_INTRANS = pq.TransactionStatus.INTRANS
_INERROR = pq.TransactionStatus.INERROR

# Server answers that mean "try again shortly" although they come with FATAL.
_TRANSIENT_FATAL = (
    "the database system is starting up",
    "the database system is shutting down",
    "the database system is in recovery mode",
    "the database system is not yet accepting connections",
    "the database system is not accepting connections",
    "too many clients already",
    "remaining connection slots are reserved",
    "sorry, too many clients",
)
_TRANSIENT_SQLSTATES = frozenset({"57P03", "53300", "08000", "08001", "08006"})


class PsycopgDriver(Driver):
    """Opens ``psycopg.Connection`` objects for the pools (internal)."""

    has_needs_check = True
    has_reset = True
    has_finish = True

    def __init__(
        self,
        conninfo: str = "",
        kwargs: dict[str, Any] | None = None,
        connection_class: type[psycopg.Connection[Any]] = psycopg.Connection,
        default_connect_timeout: float | None = None,
    ) -> None:
        if not isinstance(conninfo, str):
            raise TypeError("conninfo must be a str")
        kwargs = dict(kwargs or {})
        try:
            params = conninfo_to_dict(conninfo, **kwargs)
        except psycopg.ProgrammingError as exc:
            raise ValueError(f"conninfo: {self._scrub(str(exc), conninfo, kwargs)}") from None
        self._secrets = [s for s in (str(params.get("password") or ""),) if s]
        if default_connect_timeout is not None and "connect_timeout" not in params:
            kwargs["connect_timeout"] = max(2, int(default_connect_timeout + 0.999))
        self.conninfo = conninfo
        self.kwargs = kwargs
        self.connection_class = connection_class
        self.autocommit = bool(kwargs.get("autocommit", False))
        host = str(params.get("host") or params.get("hostaddr") or "")
        port = str(params.get("port") or "5432")
        self._target = f"{host or 'local socket'}:{port}" if host else f"local socket (port {port})"

    @staticmethod
    def _scrub(text: str, conninfo: str, kwargs: dict[str, Any]) -> str:
        pw = kwargs.get("password")
        if pw:
            text = text.replace(str(pw), "***")
        # best effort on an unparsable conninfo: hide anything after "password="
        low = conninfo.lower()
        i = low.find("password")
        if i >= 0:
            text = text.replace(conninfo[i:], "***")
        return text

    # -- Driver ------------------------------------------------------------------

    def connect(self) -> Any:
        return self.connection_class.connect(self.conninfo, **self.kwargs)

    def close(self, conn: Any) -> None:
        try:
            conn.close()
        except Exception as exc:  # pragma: no cover - close is best effort
            logger.debug("error closing a connection: %s", self.redact(str(exc)))

    def needs_check(self, entry: Any, now: float) -> bool:
        pgconn = entry.conn.pgconn
        if pgconn.status != _OK:
            return True
        try:
            return bool(_impl.core.readable(pgconn.socket))
        except (OSError, ValueError, psycopg.OperationalError):
            return True

    def idle_dead(self, entry: Any) -> bool:
        # An idle connection has nothing to read unless the server spoke first:
        # a FATAL before EOF (terminated backend, restart) or a stray NOTIFY /
        # NOTICE, which would leak to the next borrower anyway.
        return self.needs_check(entry, 0.0)

    def check(self, conn: Any) -> None:
        if conn.closed:
            raise psycopg.OperationalError("connection is closed")
        if conn.autocommit:
            conn.execute("")
        else:
            conn.autocommit = True
            try:
                conn.execute("")
            finally:
                conn.autocommit = False

    def reset(self, conn: Any) -> bool:
        pgconn = conn.pgconn
        if pgconn.status != _OK:
            return False
        ts = pgconn.transaction_status
        if ts == _IDLE:
            pass
        elif ts in (_INTRANS, _INERROR):
            conn.rollback()
        else:  # ACTIVE or UNKNOWN: state unknown, R1
            return False
        if conn.autocommit != self.autocommit:
            conn.autocommit = self.autocommit
        return True

    def finish(self, conn: Any, ok: bool) -> None:
        pgconn = conn.pgconn
        if pgconn.status != _OK:
            return
        ts = pgconn.transaction_status
        if ts == _INTRANS and ok:
            conn.commit()
        elif ts in (_INTRANS, _INERROR):
            conn.rollback()

    def retryable(self, exc: BaseException) -> bool:
        if isinstance(exc, OSError):
            return True
        if not isinstance(exc, psycopg.OperationalError):
            return False
        if getattr(exc, "sqlstate", None) in _TRANSIENT_SQLSTATES:
            return True
        msg = str(exc)
        if "FATAL:" not in msg:  # refused, reset, timed out, no route: try again
            return True
        return any(s in msg for s in _TRANSIENT_FATAL)

    def hook_retryable(self, exc: BaseException) -> bool:
        return isinstance(exc, (psycopg.OperationalError, OSError))

    def describe(self) -> str:
        return self._target

    def redact(self, text: str) -> str:
        for s in self._secrets:
            text = text.replace(s, "***")
        return text
