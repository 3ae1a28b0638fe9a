"""What the asyncio and threaded sandboxes share: their SQL, options and state checks (no I/O)."""

from __future__ import annotations

from typing import Any

from psycopg import IsolationLevel

from ..errors import SandboxError
from .owners import Checkout

__all__ = [
    "RELEASE",
    "ROLLBACK_TO",
    "SAVEPOINT",
    "Boxed",
    "begin_check",
    "boxed",
    "checkin_check",
    "end_action",
    "isolation_level",
]

SAVEPOINT = "SAVEPOINT fastpool_borrow"
RELEASE = "RELEASE SAVEPOINT fastpool_borrow"
ROLLBACK_TO = "ROLLBACK TO SAVEPOINT fastpool_borrow; RELEASE SAVEPOINT fastpool_borrow"
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


def begin_check(status: str) -> None:
    """A sandbox transaction starts on an idle connection only (``status``: the driver session's)."""
    if status != "idle":
        raise SandboxError(f"cannot start sandbox transaction: a transaction is already running "
                           f"on the connection (status {status.upper()})")  # fmt: skip


def checkin_check(status: str) -> None:
    """At checkin, the sandbox transaction must still be open; raise if it is gone."""
    if status == "idle":
        raise SandboxError(COMMITTED)
    if status not in ("intrans", "inerror"):
        raise ConnectionError(f"sandbox connection in state {status.upper()}")


def end_action(status: str, failed: bool) -> str:
    """The statement ending a borrow's savepoint."""
    if status == "idle":
        raise SandboxError(COMMITTED)
    return ROLLBACK_TO if failed or status == "inerror" else RELEASE


def boxed(rec: Checkout) -> bool:
    return rec.data is None or bool(rec.data.boxed)
