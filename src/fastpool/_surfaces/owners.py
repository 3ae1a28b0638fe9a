"""What the asyncio and threaded ownership classes share: identities, modes, records (no I/O)."""

from __future__ import annotations

import asyncio
import contextvars
import enum
import logging
import threading
import weakref
from collections import deque
from collections.abc import Callable
from contextvars import ContextVar
from typing import Any, ClassVar, TypeVar

from psycopg import pq

__all__ = [
    "DEFAULT",
    "WHY",
    "Checkout",
    "HandleBase",
    "Mode",
    "Sentinel",
    "Status",
    "callers",
    "check_identity",
    "describe",
    "identity",
    "log_level",
    "push_chain",
    "thread_watch",
    "unusable",
]

logger = logging.getLogger("fastpool")

C = TypeVar("C")
F = TypeVar("F", bound=Callable[..., Any])

#: The callers chain: weak references to the identities that checked out, started an owner or
#: opened an allow scope in this context, nearest first.  Child tasks and to_thread copy it.
callers: ContextVar[tuple[weakref.ReferenceType[Any], ...]] = ContextVar("fastpool_callers", default=())


class Status(enum.Enum):
    """What ``checkout``, ``checkin``, ``allow`` and ``set_mode`` return (DBConnection's replies)."""

    OK = "ok"
    ALREADY_OWNER = "already_owner"
    ALREADY_ALLOWED = "already_allowed"
    NOT_OWNER = "not_owner"
    NOT_FOUND = "not_found"
    ALREADY_SHARED = "already_shared"


class Mode:
    """An ownership mode: ``Mode.AUTO``, ``Mode.MANUAL`` or ``Mode.shared(owner)``."""

    __slots__ = ("_owner", "kind")

    AUTO: ClassVar[Mode]
    MANUAL: ClassVar[Mode]

    def __init__(self, kind: str, owner: Any = None) -> None:
        self.kind = kind
        self._owner = weakref.ref(owner) if owner is not None else None

    @classmethod
    def shared(cls, owner: Any) -> Mode:
        """Shared mode: every identity without a connection of its own uses ``owner``'s."""
        return cls("shared", check_identity("owner", owner))

    @property
    def owner(self) -> Any:
        """The shared owner (None for AUTO and MANUAL, or once the owner is gone)."""
        return self._owner() if self._owner is not None else None

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Mode):
            return NotImplemented
        return self.kind == other.kind and self.owner is other.owner

    def __hash__(self) -> int:
        return hash((self.kind, id(self.owner)))

    def __repr__(self) -> str:
        if self.kind == "shared":
            return f"Mode.shared({describe(self.owner)})"
        return f"Mode.{self.kind.upper()}"


Mode.AUTO = Mode("auto")
Mode.MANUAL = Mode("manual")


def identity() -> Any:
    """The current owner identity: the running asyncio task, else the current thread."""
    try:
        task = asyncio.current_task()
    except RuntimeError:
        task = None
    return task if task is not None else threading.current_thread()


def is_task(value: Any) -> bool:
    """An asyncio task, of whatever class (a loop's own task factory, Python 3.10's pure Task):
    an ``asyncio.Task``, the running loop's current task, or a future that wraps a coroutine."""
    if isinstance(value, asyncio.Task):
        return True
    try:
        if value is asyncio.current_task():
            return True
    except RuntimeError:
        pass
    return asyncio.isfuture(value) and callable(getattr(value, "get_coro", None))


def check_identity(name: str, value: Any) -> Any:
    if isinstance(value, (threading.Thread, HandleBase)) or is_task(value):
        return value
    raise TypeError(f"{name}: expected an asyncio.Task, a threading.Thread or an OwnerHandle, "
                    f"got {type(value).__name__}")  # fmt: skip


def describe(ident: Any) -> str:
    if is_task(ident):
        return f"task {ident.get_name()!r}"
    if isinstance(ident, threading.Thread):
        return f"thread {ident.name!r}"
    if isinstance(ident, HandleBase):
        return f"owner {ident.name!r}"
    return "a finished owner"


def push_chain(ident: Any) -> contextvars.Token[tuple[weakref.ReferenceType[Any], ...]] | None:
    chain = callers.get()
    if chain and chain[0]() is ident:
        return None
    return callers.set((weakref.ref(ident), *chain))


def log_level(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, str):
        level = logging.getLevelName(value.upper())
        if isinstance(level, int):
            return level
    elif isinstance(value, int) and not isinstance(value, bool):
        return value
    raise ValueError(f"ownership_log must be a logging level or None, got {value!r}")


DEFAULT: Any = object()  # "the ownership's own setting"
_PQ_OK = pq.ConnStatus.OK
_PQ_UNKNOWN = (pq.TransactionStatus.ACTIVE, pq.TransactionStatus.UNKNOWN)
thread_watch = threading.local()


class Sentinel:
    """Lives in a thread's ``threading.local``: CPython frees it when the thread ends."""

    __slots__ = ("__weakref__",)


class Checkout:
    """One owner's pinned connection, its allowances and its exclusive-borrow state."""

    __slots__ = (
        "__weakref__",
        "allowed",
        "conn",
        "data",
        "deadline",
        "depth",
        "entry",
        "holder",
        "name",
        "owner",
        "revoked",
        "timer",
        "waiters",
    )

    def __init__(self, owner: weakref.ReferenceType[Any], name: str, entry: Any, data: Any) -> None:
        self.owner = owner  # the key in the registry (a weak reference with a death callback)
        self.name = name
        self.entry: Any = entry  # the pool entry, until it goes back or is closed
        self.conn = entry.conn
        self.data = data
        self.allowed: dict[weakref.ReferenceType[Any], str] = {}
        self.holder: Any = None  # the identity inside connection()
        self.depth = 0
        self.revoked: str | None = None  # why the owner lost it
        self.waiters: deque[tuple[Any, Any]] = deque()  # (hand-off, identity) of queued borrowers
        self.timer: Any = None
        self.deadline: float | None = None


WHY = {
    "checkin": "{owner} checked in the connection",
    "exit": "owner {owner} exited",
    "mode": "the ownership mode changed to {mode}, which checked in the connection of {owner}",
    "timeout": "owner {owner} timed out because it owned the connection for longer than {t:g} s "
    "(ownership_timeout)",
    "stop": "the pool was closed, which checked in the connection of {owner}",
    "broken": "the connection of {owner} broke (it was closed, or left in the middle of a query)",
}


def unusable(conn: Any) -> bool:
    """True when a borrow left the pinned connection in an unknown state."""
    pg = getattr(conn, "pgconn", None)
    if pg is None:
        return bool(getattr(conn, "closed", False))
    return bool(conn.closed) or pg.status != _PQ_OK or pg.transaction_status in _PQ_UNKNOWN


class HandleBase:
    """What the sync and async owner handles share."""

    __slots__ = ("__weakref__", "_own", "_stopped", "name")
    _count: ClassVar[int] = 0

    def __init__(self, own: Any, name: str | None) -> None:
        HandleBase._count += 1
        self._own = own
        self.name = name or f"owner-{HandleBase._count}"
        self._stopped = False

    @property
    def ownership(self) -> Any:
        """The Ownership (or Sandbox) this handle owns a connection of."""
        return self._own

    @property
    def active(self) -> bool:
        """True while the handle owns its connection."""
        own = self._own
        with own._lock:
            hit = own._checkouts.get(weakref.ref(self))
        return hit is not None and hit[0]

    def __repr__(self) -> str:
        return f"<fastpool.{type(self).__name__} {self.name!r} {'active' if self.active else 'stopped'}>"
