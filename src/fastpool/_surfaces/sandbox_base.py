"""What the asyncio and threaded sandboxes share: their SQL, options and state checks (no I/O)."""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import IsolationLevel
from psycopg.pq import TransactionStatus

from ..errors import SandboxError
from .owners import Checkout

__all__ = [
    "CHECKIN_SQL",
    "RELEASE",
    "ROLLBACK_TO",
    "SAVEPOINT",
    "Boxed",
    "begin_check",
    "boxed",
    "checkin_action",
    "end_action",
    "isolation_level",
]

_IDLE = TransactionStatus.IDLE
_INTRANS = TransactionStatus.INTRANS
_INERROR = TransactionStatus.INERROR
CHECKIN_SQL = b"ROLLBACK; SELECT pg_advisory_unlock_all()"  # one round trip, simple protocol
SAVEPOINT = b"SAVEPOINT fastpool_borrow"
RELEASE = b"RELEASE SAVEPOINT fastpool_borrow"
ROLLBACK_TO = b"ROLLBACK TO SAVEPOINT fastpool_borrow; RELEASE SAVEPOINT fastpool_borrow"
COMMITTED = (
    "sandbox transaction was already committed/rolled back: the code under test ran a raw COMMIT "
    "or ROLLBACK, so its changes escaped the sandbox.  Use unboxed_run() for work that must commit"
)


def isolation_level(value: Any) -> IsolationLevel | None:
    if value is None or isinstance(value, IsolationLevel):
        return value
    if isinstance(value, str):
        try:
            return IsolationLevel[value.strip().upper().replace(" ", "_")]
        except KeyError:
            pass
    raise ValueError(f"isolation must be None, a psycopg.IsolationLevel or one of "
                     f"{[m.name.lower() for m in IsolationLevel]}, got {value!r}")  # fmt: skip


class Boxed:
    """Per-checkout sandbox options."""

    __slots__ = ("boxed", "isolation")

    def __init__(self, boxed: bool, isolation: IsolationLevel | None) -> None:
        self.boxed = boxed
        self.isolation = isolation


def begin_check(conn: Any) -> None:
    status = conn.info.transaction_status
    if status != _IDLE:
        raise SandboxError(f"cannot start sandbox transaction: a transaction is already running "
                           f"on the connection (status {status.name})")  # fmt: skip


def checkin_action(conn: Any) -> bool:
    """True when the sandbox transaction must be rolled back; raise if it is gone."""
    status = conn.info.transaction_status
    if status == _IDLE:
        raise SandboxError(COMMITTED)
    if status not in (_INTRANS, _INERROR):
        raise psycopg.OperationalError(f"sandbox connection in state {status.name}")
    return True


def end_action(conn: Any, failed: bool) -> bytes:
    """The statement ending a borrow's savepoint."""
    status = conn.info.transaction_status
    if status == _IDLE:
        raise SandboxError(COMMITTED)
    return ROLLBACK_TO if failed or status == _INERROR else RELEASE


def boxed(rec: Checkout) -> bool:
    return rec.data is None or bool(rec.data.boxed)
