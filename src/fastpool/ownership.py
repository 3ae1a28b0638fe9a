"""Ownership: explicit per-owner checkout of pooled connections (seed 001, SPEC §2).

An owner (an asyncio task, a thread, or an explicit :class:`OwnerHandle`)
checks a connection out of the pool and keeps it *pinned* until it checks it
in, ends, or times out.  Other identities reach that connection when the
owner allows them, when they descend from the owner (the *callers chain*, a
context variable that ``asyncio.create_task``, ``asyncio.to_thread`` and
:meth:`Ownership.propagate` carry over), or when the pool is in shared mode.
Every borrow through ``connection()`` is exclusive.  This is
DBConnection.Ownership translated to Python, and the basis of
:class:`fastpool.Sandbox`.

Modes (DBConnection's): ``Mode.AUTO`` checks a connection out implicitly at
an identity's first ``connection()``; ``Mode.MANUAL`` requires an explicit
``checkout()`` (or an allowance, or an ancestor's checkout);
``Mode.shared(owner)`` lets every identity use ``owner``'s connection.
"""

from __future__ import annotations

import asyncio
import contextvars
import enum
import functools
import logging
import threading
import weakref
from collections import deque
from collections.abc import AsyncIterator, Callable, Generator, Iterator
from contextlib import asynccontextmanager, contextmanager
from contextvars import ContextVar
from time import monotonic
from types import TracebackType
from typing import Any, ClassVar, Generic, TypeVar

from psycopg import pq

from ._apool import AsyncBasePool
from ._pool import BasePool
from ._validate import check_duration
from .errors import OwnershipError, OwnershipRevoked, PoolClosed, PoolTimeout

__all__ = [
    "AsyncOwnerHandle",
    "AsyncOwnership",
    "Mode",
    "OwnerHandle",
    "Ownership",
    "Status",
    "identity",
]

logger = logging.getLogger("fastpool")

C = TypeVar("C")
F = TypeVar("F", bound=Callable[..., Any])

#: The callers chain: weak references to the identities that checked out, started an owner or
#: opened an allow scope in this context, nearest first.  Child tasks and to_thread copy it.
_callers: ContextVar[tuple[weakref.ReferenceType[Any], ...]] = ContextVar("fastpool_callers", default=())


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
        return cls("shared", _check_identity("owner", owner))

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
            return f"Mode.shared({_describe(self.owner)})"
        return f"Mode.{self.kind.upper()}"


Mode.AUTO = Mode("auto")
Mode.MANUAL = Mode("manual")


def identity() -> Any:
    """The current owner identity: the running asyncio task, else the current thread (R3)."""
    try:
        task = asyncio.current_task()
    except RuntimeError:
        task = None
    return task if task is not None else threading.current_thread()


def _check_identity(name: str, value: Any) -> Any:
    if isinstance(value, (asyncio.Task, threading.Thread, _HandleBase)):
        return value
    raise TypeError(f"{name}: expected an asyncio.Task, a threading.Thread or an OwnerHandle, "
                    f"got {type(value).__name__}")  # fmt: skip


def _describe(ident: Any) -> str:
    if isinstance(ident, asyncio.Task):
        return f"task {ident.get_name()!r}"
    if isinstance(ident, threading.Thread):
        return f"thread {ident.name!r}"
    if isinstance(ident, _HandleBase):
        return f"owner {ident.name!r}"
    return "a finished owner"


def _push_chain(ident: Any) -> contextvars.Token[tuple[weakref.ReferenceType[Any], ...]] | None:
    chain = _callers.get()
    if chain and chain[0]() is ident:
        return None
    return _callers.set((weakref.ref(ident), *chain))


def _log_level(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, str):
        level = logging.getLevelName(value.upper())
        if isinstance(level, int):
            return level
    elif isinstance(value, int) and not isinstance(value, bool):
        return value
    raise ValueError(f"ownership_log must be a logging level or None, got {value!r}")


_DEFAULT: Any = object()
_PQ_OK = pq.ConnStatus.OK
_PQ_UNKNOWN = (pq.TransactionStatus.ACTIVE, pq.TransactionStatus.UNKNOWN)
_thread_watch = threading.local()


class _Sentinel:
    """Lives in a thread's ``threading.local``: CPython frees it when the thread ends."""

    __slots__ = ("__weakref__",)


class _Checkout:
    """One owner's pinned connection, its allowances and its exclusive-borrow state."""

    __slots__ = (
        "__weakref__",
        "allowed",
        "cond",
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
        self.cond: threading.Condition | None = None  # threaded borrowers waiting
        self.waiters: deque[tuple[asyncio.Future[bool | None], Any]] = deque()  # async borrowers
        self.timer: Any = None
        self.deadline: float | None = None


_WHY = {
    "checkin": "{owner} checked in the connection",
    "exit": "owner {owner} exited",
    "mode": "the ownership mode changed to {mode}, which checked in the connection of {owner}",
    "timeout": "owner {owner} timed out because it owned the connection for longer than {t:g} s "
    "(ownership_timeout)",
    "stop": "the pool was closed, which checked in the connection of {owner}",
    "broken": "the connection of {owner} broke (it was closed, or left in the middle of a query)",
}


def _unusable(conn: Any) -> bool:
    """True when a borrow left the pinned connection in an unknown state (R1)."""
    pg = getattr(conn, "pgconn", None)
    if pg is None:
        return bool(getattr(conn, "closed", False))
    return bool(conn.closed) or pg.status != _PQ_OK or pg.transaction_status in _PQ_UNKNOWN


class _OwnershipBase(Generic[C]):
    """Registry, lookup and revocation bookkeeping shared by the sync and async classes."""

    _pool_class: ClassVar[Any] = None  # the pool family this class works with
    _other: ClassVar[str] = ""  # the class to use for the other family

    def __init__(
        self,
        pool: Any,
        *,
        mode: Mode = Mode.AUTO,
        ownership_timeout: float | None = 120.0,
        ownership_log: int | str | None = None,
        post_checkout: Callable[[C], Any] | None = None,
        pre_checkin: Callable[[Any, C], Any] | None = None,
        label: str | None = None,
    ) -> None:
        if not isinstance(pool, self._pool_class):
            raise TypeError(f"pool: {type(self).__name__} needs a {self._pool_class.__name__} "
                            f"(use {self._other} for the other kind), got {type(pool).__name__}")  # fmt: skip
        if not isinstance(mode, Mode):
            raise TypeError(f"mode must be Mode.AUTO, Mode.MANUAL or Mode.shared(owner), got {mode!r}")
        if mode.kind == "shared":
            raise ValueError("mode: start in AUTO or MANUAL; set_mode(Mode.shared(owner)) after its checkout")
        for name, fn in (("post_checkout", post_checkout), ("pre_checkin", pre_checkin)):
            if fn is not None and not callable(fn):
                raise TypeError(f"{name} must be callable or None")
        self._pool = pool
        self._mode = mode
        self._ownership_timeout = check_duration("ownership_timeout", ownership_timeout, allow_none=True)
        self._log = _log_level(ownership_log)
        self._post_checkout = post_checkout
        self._pre_checkin = pre_checkin
        self._label = label or pool.name
        self._lock = threading.Lock()
        self._checkouts: dict[Any, tuple[bool, _Checkout]] = {}  # identity ref -> (is owner, checkout)
        self._shared: _Checkout | None = None
        self._watching_threads = False
        pool._ownerships.add(self)

    # -- introspection -------------------------------------------------------------------------

    @property
    def pool(self) -> Any:
        """The pool the connections come from."""
        return self._pool

    @property
    def mode(self) -> Mode:
        """The current mode."""
        return self._mode

    @staticmethod
    def identity() -> Any:
        """The current identity: the running asyncio task, else the current thread."""
        return identity()

    @staticmethod
    def propagate(fn: F) -> F:
        """Wrap ``fn`` to run in a copy of the current context (plain threads, executors).

        ``threading.Thread`` and ``loop.run_in_executor`` do not carry context
        variables over, so the callers chain would be lost; ``asyncio.to_thread``
        and ``asyncio.create_task`` need no wrapping.
        """
        ctx = contextvars.copy_context()

        @functools.wraps(fn)
        def run(*args: Any, **kwargs: Any) -> Any:
            return ctx.run(fn, *args, **kwargs)

        return run  # type: ignore[return-value]

    def owner_of(self, ident: Any = None) -> Any:
        """The owner whose connection ``ident`` (default: the current identity) would use, or None."""
        with self._lock:
            rec, _ = self._find(None if ident is None else _check_identity("ident", ident))
        return rec.owner() if rec is not None else None

    def stats(self) -> dict[str, int]:
        """``owners``, ``allowed`` and ``borrowed`` counts."""
        with self._lock:
            recs = {id(r): r for _, r in self._checkouts.values()}.values()
            return {
                "owners": len(recs),
                "allowed": sum(len(r.allowed) for r in recs),
                "borrowed": sum(1 for r in recs if r.holder is not None),
            }

    def __repr__(self) -> str:
        return f"<fastpool.{type(self).__name__} {self._label!r} {self._mode!r}>"

    @contextmanager
    def allow_scope(self, owner: Any) -> Iterator[Status]:
        """Allow the current identity on ``owner``'s connection for the block, and no longer.

        For servers that reuse threads or tasks between requests: a leftover
        allowance would silently point at a stale owner.  Yields the status of
        the allowance (``NOT_FOUND`` when ``owner`` has no connection, and the
        block then runs without access).
        """
        me = identity()
        st, _ = self._allow_now(owner, me, False)
        token = _push_chain(me)
        try:
            yield st
        finally:
            if token is not None:
                try:
                    _callers.reset(token)
                except ValueError:  # pragma: no cover - exited in another context
                    pass
            if st is Status.OK:
                with self._lock:
                    hit = self._checkouts.get(weakref.ref(me))
                if hit is not None and not hit[0]:
                    self._unallow(me, hit[1])

    # -- lookup (under the lock) -----------------------------------------------------------------

    def _find(self, caller: Any) -> tuple[_Checkout | None, Any]:
        """SPEC §2.3.1: explicit caller or current identity; manual also searches the chain."""
        head = identity() if caller is None else caller
        get = self._checkouts.get
        hit = get(weakref.ref(head))
        if hit is not None:
            return hit[1], head
        kind = self._mode.kind
        if kind == "manual":
            for ref in _callers.get():
                if ref() is not None and (hit := get(ref)) is not None:
                    return hit[1], head
        elif kind == "shared" and self._shared is not None:
            return self._shared, head
        return None, head

    def _missing(self, head: Any) -> OwnershipError:
        return OwnershipError(
            f"cannot find the ownership of {_describe(head)} using mode {self._mode!r} on {self._label}.\n\n"
            "When using ownership, you must manage connections in one of the four ways:\n\n"
            "  * by explicitly checking out a connection: checkout()\n"
            "  * by explicitly allowing a spawned task or thread: allow(owner, target) or "
            "allow_scope(owner)\n"
            "  * by running the pool in shared mode: set_mode(Mode.shared(owner))\n"
            "  * by passing caller=owner, or running the code in a child task, asyncio.to_thread or "
            "propagate(fn), so that it finds its ancestor's connection\n\n"
            "Note that the mode reverts to MANUAL when its shared owner ends, checks in or times out."
        )

    def _revoked_error(self, rec: _Checkout, who: Any) -> OwnershipRevoked:
        return OwnershipRevoked(f"{rec.revoked}; {_describe(who)} was still using the connection")

    # -- registration (under the lock) -----------------------------------------------------------

    def _existing(self, ident: Any) -> Status | None:
        hit = self._checkouts.get(weakref.ref(ident))
        if hit is None:
            return None
        return Status.ALREADY_OWNER if hit[0] else Status.ALREADY_ALLOWED

    def _register(self, ident: Any, entry: Any, data: Any, timeout: float | None) -> _Checkout:
        key = weakref.ref(ident, self._gone)
        rec = _Checkout(key, _describe(ident), entry, data)
        self._checkouts[key] = (True, rec)
        self._watch(ident)
        if timeout is not None:
            rec.deadline = monotonic() + timeout
            rec.timer = self._start_timer(rec, timeout)
        return rec

    def _add_allowed(self, rec: _Checkout, target: Any) -> None:
        key = weakref.ref(target, self._gone)
        self._checkouts[key] = (False, rec)
        rec.allowed[key] = _describe(target)
        self._watch(target)

    def _watch(self, ident: Any) -> None:
        """Arrange to hear of ``ident``'s end (SPEC §2.3.3); handles report through ``_gone``."""
        if isinstance(ident, asyncio.Task):
            ident.add_done_callback(self._task_done)
        elif isinstance(ident, threading.Thread):
            if ident is threading.current_thread():
                sentinel = getattr(_thread_watch, "sentinel", None)
                if sentinel is None:
                    sentinel = _thread_watch.sentinel = _Sentinel()
                weakref.finalize(sentinel, self._thread_ended, weakref.ref(ident))
            if not self._watching_threads:  # ended threads we could not watch: a periodic sweep
                self._watching_threads = True
                self._start_sweep()

    def _task_done(self, task: Any) -> None:
        self._ended(weakref.ref(task))

    def _thread_ended(self, ref: weakref.ReferenceType[Any]) -> None:
        self._soon(lambda: self._ended(ref))  # runs while CPython frees the thread: no lock here (R4)

    def _gone(self, ref: weakref.ReferenceType[Any]) -> None:
        self._soon(lambda: self._ended(ref))  # a garbage-collected identity: no lock here (R4)

    def _ended(self, ref: weakref.ReferenceType[Any]) -> None:
        """An identity ended: an allowed one just leaves; an owner's checkout is revoked."""
        with self._lock:
            hit = self._checkouts.get(ref)
            if hit is None:
                return
            is_owner, rec = hit
            if not is_owner:
                del self._checkouts[ref]
                name = rec.allowed.pop(ref, "?")
                if self._log is not None:
                    logger.log(self._log, "%s: %s ended and lost access to %s's connection",
                               self._label, name, rec.name)  # fmt: skip
                return
        self._revoke_later(rec, "exit")

    def _sweep_threads(self) -> bool:
        """Revoke what ended threads held; True while thread identities remain."""
        ended = []
        with self._lock:
            for key in self._checkouts:
                t = key()
                if isinstance(t, threading.Thread) and not t.is_alive() and t.ident is not None:
                    ended.append(key)
            left = any(isinstance(k(), threading.Thread) for k in self._checkouts)
            if not left:
                self._watching_threads = False
        for key in ended:
            self._ended(key)
        return left

    def _detach(self, rec: _Checkout, reason: str) -> bool | None:
        """Step 1 of the revocation procedure (under the lock): None if already revoked, else borrowed."""
        if rec.revoked is not None:
            return None
        rec.revoked = _WHY[reason].format(owner=rec.name, mode=self._mode, t=self._ownership_timeout or 0)
        names = [rec.name]
        if self._checkouts.get(rec.owner, (None, None))[1] is rec:
            del self._checkouts[rec.owner]
        for key, name in rec.allowed.items():
            if self._checkouts.get(key, (None, None))[1] is rec:
                del self._checkouts[key]
            names.append(name)
        rec.allowed.clear()
        if self._shared is rec:
            self._shared = None
            self._mode = Mode.MANUAL  # not the previous mode (SPEC §2.4.6)
        if rec.timer is not None:
            self._cancel_timer(rec.timer)
            rec.timer = None
        if self._log is not None:
            logger.log(self._log, "%s: %s lost connection (%s)", self._label, ", ".join(names), rec.revoked)
        self._wake_all(rec)
        return rec.holder is not None

    def _take_entry(self, rec: _Checkout) -> Any:
        with self._lock:
            e, rec.entry = rec.entry, None
        return e

    def _unallow(self, ident: Any, rec: _Checkout) -> None:
        key = weakref.ref(ident)
        with self._lock:
            hit = self._checkouts.get(key)
            if hit is not None and not hit[0] and hit[1] is rec:
                del self._checkouts[key]
                rec.allowed.pop(key, None)

    def _allow_now(self, owner_or_allowed: Any, target: Any, unallow_existing: bool) -> tuple[Status, Any]:
        """The bookkeeping of ``allow``; returns the status and a checkout to revoke, if any."""
        _check_identity("owner_or_allowed", owner_or_allowed)
        _check_identity("target", target)
        to_revoke = None
        with self._lock:
            hit = self._checkouts.get(weakref.ref(target))
            if hit is not None:
                if not unallow_existing:
                    return (Status.ALREADY_OWNER if hit[0] else Status.ALREADY_ALLOWED), None
                is_owner, old = hit
                if is_owner:  # a deviation from DBConnection: check the target's own checkout in
                    if self._detach(old, "checkin") is not None:
                        to_revoke = old
                else:
                    key = weakref.ref(target)
                    del self._checkouts[key]
                    old.allowed.pop(key, None)
            parent = self._checkouts.get(weakref.ref(owner_or_allowed))
            if parent is None:
                return Status.NOT_FOUND, to_revoke
            rec = parent[1]
            self._add_allowed(rec, target)
        if self._log is not None:
            logger.log(self._log, "%s: %s was allowed by %s on %s's connection", self._label,
                       _describe(target), _describe(owner_or_allowed), rec.name)  # fmt: skip
        return Status.OK, to_revoke

    def _mode_now(self, mode: Mode) -> tuple[Status, list[_Checkout]]:
        """The bookkeeping of ``set_mode``; returns the status and the checkouts to revoke."""
        if not isinstance(mode, Mode):
            raise TypeError(f"mode must be Mode.AUTO, Mode.MANUAL or Mode.shared(owner), got {mode!r}")
        with self._lock:
            current = self._mode
            if mode.kind != "shared":
                if mode.kind == current.kind:
                    return Status.OK, []
                recs = self._owners()
                self._shared = None
                self._mode = mode
                out = [r for r in recs if self._detach(r, "mode") is not None]
                return Status.OK, out
            owner = mode.owner
            if current.kind == "shared" and self._shared is not None:
                return (Status.OK if current.owner is owner else Status.ALREADY_SHARED), []
            hit = self._checkouts.get(weakref.ref(owner)) if owner is not None else None
            if hit is None:
                return Status.NOT_FOUND, []
            if not hit[0]:
                return Status.NOT_OWNER, []
            self._mode = mode
            self._shared = hit[1]
            out = [r for r in self._owners() if r is not hit[1] and self._detach(r, "mode") is not None]
            return Status.OK, out

    def _owners(self) -> list[_Checkout]:
        return [rec for is_owner, rec in self._checkouts.values() if is_owner]

    def _checkin_now(self, caller: Any) -> tuple[Status, _Checkout | None, bool | None]:
        ident = identity() if caller is None else _check_identity("caller", caller)
        with self._lock:
            hit = self._checkouts.get(weakref.ref(ident))
            if hit is None:
                return Status.NOT_FOUND, None, None
            if not hit[0]:
                return Status.NOT_OWNER, None, None
            rec = hit[1]
            return Status.OK, rec, self._detach(rec, "checkin")

    # -- hooks for the subclasses -------------------------------------------------------------

    def _soon(self, job: Callable[[], Any]) -> None:
        raise NotImplementedError

    def _revoke_later(self, rec: _Checkout, reason: str) -> None:
        """Detach now; settle (I/O) on a worker or the loop (owner death, timeout)."""
        with self._lock:
            borrowed = self._detach(rec, reason)
        if borrowed is not None:
            self._soon(lambda: self._settle_logged(rec, reason, borrowed))

    def _settle_logged(self, rec: _Checkout, reason: str, borrowed: bool) -> Any:
        raise NotImplementedError

    def _start_timer(self, rec: _Checkout, timeout: float) -> Any:
        raise NotImplementedError

    def _cancel_timer(self, timer: Any) -> None:
        raise NotImplementedError

    def _start_sweep(self) -> None:
        raise NotImplementedError

    def _wake_all(self, rec: _Checkout) -> None:
        raise NotImplementedError

    def _timed_out(self, rec: _Checkout) -> None:
        if rec.revoked is None:
            logger.warning("%s: owner %s timed out because it owned the connection for longer than "
                           "%g s (ownership_timeout); closing the connection",
                           self._label, rec.name, self._ownership_timeout or 0)  # fmt: skip
            self._revoke_later(rec, "timeout")

    def _timeout_for(self, ownership_timeout: Any) -> float | None:
        if ownership_timeout is _DEFAULT:
            return self._ownership_timeout
        return check_duration("ownership_timeout", ownership_timeout, allow_none=True)

    def _borrow_timeout(self, timeout: float | None) -> float:
        if timeout is None:
            t = self._pool._acquire_timeout
            return float("inf") if t is None else float(t)
        return check_duration("timeout", timeout, allow_none=False, allow_zero=True)  # type: ignore[return-value]

    def _busy_error(self, rec: _Checkout, timeout: float) -> PoolTimeout:
        return PoolTimeout(f"couldn't borrow the connection of {rec.name} after {timeout:.3g} s: "
                           f"{_describe(rec.holder)} is using it")  # fmt: skip

    def _disconnect_reason(self, rec: _Checkout, reason: str) -> tuple[str, BaseException]:
        if reason == "stop":
            return ("stop", PoolClosed(f"{self._pool.name} was closed"))
        return ("disconnect", OwnershipRevoked(rec.revoked or ""))


class _HandleBase:
    """What the sync and async owner handles share."""

    __slots__ = ("__weakref__", "_own", "_stopped", "name")
    _count: ClassVar[int] = 0

    def __init__(self, own: Any, name: str | None) -> None:
        _HandleBase._count += 1
        self._own = own
        self.name = name or f"owner-{_HandleBase._count}"
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


class OwnerHandle(_HandleBase):
    """An explicit owner identity (``Ownership.start_owner``): it owns until ``stop()`` or collection.

    Use it where no task or thread lives as long as the ownership must, e.g. a
    pytest fixture.  It enters the callers chain of the context that started it.
    """

    __slots__ = ()

    def stop(self) -> Status:
        """Check the connection in (for a Sandbox: roll back); idempotent."""
        if self._stopped:
            return Status.NOT_FOUND
        self._stopped = True
        return self._own.checkin(caller=self)  # type: ignore[no-any-return]

    def connection(self, timeout: float | None = None) -> Any:
        """Borrow this owner's connection (``ownership.connection(caller=handle)``)."""
        return self._own.connection(caller=self, timeout=timeout)

    def token(self) -> str:
        """An opaque token naming this owner, for ``fastpool.sandbox`` middleware (Sandbox only)."""
        return self._own.token(self)  # type: ignore[no-any-return]

    def __enter__(self) -> OwnerHandle:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


class AsyncOwnerHandle(_HandleBase):
    """The asyncio form of :class:`OwnerHandle`: ``await handle.stop()``, ``async with``."""

    __slots__ = ()

    async def stop(self) -> Status:
        """Check the connection in (for a Sandbox: roll back); idempotent."""
        if self._stopped:
            return Status.NOT_FOUND
        self._stopped = True
        return await self._own.checkin(caller=self)  # type: ignore[no-any-return]

    def connection(self, timeout: float | None = None) -> Any:
        """Borrow this owner's connection (``ownership.connection(caller=handle)``)."""
        return self._own.connection(caller=self, timeout=timeout)

    def token(self) -> str:
        """An opaque token naming this owner, for ``fastpool.sandbox`` middleware (Sandbox only)."""
        return self._own.token(self)  # type: ignore[no-any-return]

    async def __aenter__(self) -> AsyncOwnerHandle:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()


# ---------------------------------------------------------------------------------------------
# threads
# ---------------------------------------------------------------------------------------------


class Ownership(_OwnershipBase[C]):
    """Explicit checkout/checkin of connections of a threaded pool, per owner (SPEC §2).

    ``checkout()`` pins a connection to the current identity; ``connection()``
    borrows it (exclusively, re-entrantly for the same identity);
    ``checkin()`` gives it back through the pool's reset.  See the module
    docstring for modes, allowances and the callers chain.
    """

    _pool_class = BasePool
    _other = "AsyncOwnership"

    # -- checkout / checkin ----------------------------------------------------------------

    def checkout(self, *, caller: Any = None, ownership_timeout: float | None = _DEFAULT) -> Status:
        """Check a connection out for ``caller`` (default: the current identity), now.

        Returns ``ALREADY_OWNER``/``ALREADY_ALLOWED`` if it already has one.
        Raises what the pool raises (``PoolTimeout``, ``PoolClosed``) and what
        ``post_checkout`` raises (the connection is then closed).
        """
        return self._checkout(caller, ownership_timeout, None)

    def _checkout(self, caller: Any, ownership_timeout: Any, data: Any) -> Status:
        ident = identity() if caller is None else _check_identity("caller", caller)
        timeout = self._timeout_for(ownership_timeout)
        with self._lock:
            if (st := self._existing(ident)) is not None:
                return st
        pool = self._pool
        e = pool._get(None)
        try:
            self._post(e.conn, data)
        except BaseException:
            pool._discard(e)
            raise
        with self._lock:
            st = self._existing(ident)
            if st is None:
                rec = self._register(ident, e, data, timeout)
        if st is not None:  # raced with another checkout for the same identity
            pool._put(e)
            return st
        _push_chain(ident)
        if self._log is not None:
            logger.log(self._log, "%s: %s checked out a connection in mode %r",
                       self._label, rec.name, self._mode)  # fmt: skip
        return Status.OK

    def checkin(self, *, caller: Any = None) -> Status:
        """Give the caller's connection back: ``OK``, ``NOT_OWNER`` (only allowed) or ``NOT_FOUND``.

        Every allowance of the owner ends.  ``pre_checkin`` runs first; if it
        raises, the connection is closed and the exception propagates.
        """
        st, rec, borrowed = self._checkin_now(caller)
        if rec is not None and borrowed is not None:
            self._settle(rec, "checkin", borrowed)
        return st

    def allow(self, owner_or_allowed: Any, target: Any, *, unallow_existing: bool = False) -> Status:
        """Let ``target`` use the connection that ``owner_or_allowed`` owns or is allowed on.

        ``ALREADY_OWNER``/``ALREADY_ALLOWED`` if ``target`` already has one
        (unless ``unallow_existing``: it is moved, and a connection it owned is
        checked in); ``NOT_FOUND`` if ``owner_or_allowed`` has none.
        """
        st, old = self._allow_now(owner_or_allowed, target, unallow_existing)
        if old is not None:
            self._settle(old, "checkin", old.holder is not None)
        return st

    def set_mode(self, mode: Mode) -> Status:
        """Change the mode.  AUTO/MANUAL check in every connection; see ``Mode.shared``."""
        st, recs = self._mode_now(mode)
        for rec in recs:
            self._settle(rec, "mode", rec.holder is not None)
        return st

    def start_owner(
        self, *, allow_current: bool = True, shared: bool = False, ownership_timeout: float | None = _DEFAULT,
        name: str | None = None,
    ) -> OwnerHandle:  # fmt: skip
        """Check a connection out for a new :class:`OwnerHandle` and return it (a context manager).

        The handle enters the callers chain; ``allow_current`` also allows the
        current identity; ``shared`` switches to ``Mode.shared(handle)``.
        """
        handle = OwnerHandle(self, name)
        self._start(handle, allow_current, shared, ownership_timeout, None)
        return handle

    def _start(self, handle: Any, allow_current: bool, shared: bool, timeout: Any, data: Any) -> None:
        self._checkout(handle, timeout, data)
        try:
            if allow_current:
                self.allow(handle, identity())
            if shared and self.set_mode(Mode.shared(handle)) is not Status.OK:
                raise OwnershipError(f"{self._label}: another owner already shares its connection")
        except BaseException:
            handle._stopped = True
            self.checkin(caller=handle)
            raise

    # -- borrowing -------------------------------------------------------------------------------

    @contextmanager
    def connection(self, *, caller: Any = None, timeout: float | None = None) -> Iterator[C]:
        """Borrow the caller's connection exclusively for the block.

        The same identity nesting blocks gets the same connection; another
        borrower of the same owner waits up to ``timeout`` (default: the pool's
        ``acquire_timeout``), then gets ``PoolTimeout``.  No reset runs between
        borrows: the connection stays as the owner left it.
        """
        with self._borrow(caller, timeout) as rec:
            yield rec.conn

    @contextmanager
    def _borrow(self, caller: Any, timeout: float | None) -> Iterator[_Checkout]:
        if caller is not None:
            _check_identity("caller", caller)
        while True:
            with self._lock:
                rec, head = self._find(caller)
                auto = rec is None and self._mode.kind == "auto"
            if rec is not None:
                break
            if not auto:
                raise self._missing(head)
            self._checkout(head, _DEFAULT, None)
        me = identity()
        self._enter(rec, me, timeout)
        try:
            yield rec
        except BaseException as exc:
            if self._exit(rec):
                raise self._revoked_error(rec, me) from exc
            raise
        if self._exit(rec):
            raise self._revoked_error(rec, me)

    def _enter(self, rec: _Checkout, me: Any, timeout: float | None) -> None:
        with self._lock:
            if rec.revoked is not None:
                raise self._revoked_error(rec, me)
            if rec.holder is me:
                rec.depth += 1
                return
            if rec.holder is not None:
                t = self._borrow_timeout(timeout)
                deadline = monotonic() + t
                if rec.cond is None:
                    rec.cond = threading.Condition(self._lock)
                while rec.holder is not None and rec.revoked is None:
                    remaining = deadline - monotonic()
                    if remaining <= 0:
                        raise self._busy_error(rec, t)
                    rec.cond.wait(min(remaining, threading.TIMEOUT_MAX))
                if rec.revoked is not None:
                    raise self._revoked_error(rec, me)
            rec.holder = me
            rec.depth = 1

    def _exit(self, rec: _Checkout) -> bool:
        """End a borrow; True when the connection was revoked meanwhile (it is then closed)."""
        with self._lock:
            rec.depth -= 1
            if rec.depth:
                return False
            rec.holder = None
            if rec.revoked is None:
                if not _unusable(rec.conn):
                    if rec.cond is not None:
                        rec.cond.notify()
                    return False
                self._detach(rec, "broken")
                broken = True
            else:
                broken = False
        e = self._take_entry(rec)
        if e is not None:
            self._pool._discard(e)
        return not broken

    # -- revocation ----------------------------------------------------------------------------

    def _settle(self, rec: _Checkout, reason: str, borrowed: bool) -> None:
        """Steps 2 and 3 of the revocation procedure (SPEC §2.4.5), after ``_detach``."""
        pool = self._pool
        if borrowed or reason in ("timeout", "stop"):
            conn = rec.conn
            if borrowed:
                try:
                    conn.cancel_safe(timeout=1.0)
                except Exception as exc:  # pragma: no cover - best effort
                    logger.debug("%s: cancelling a revoked borrower failed: %s", self._label, exc)
            try:
                self._pre(self._disconnect_reason(rec, reason), conn, rec.data)
            except Exception as exc:
                logger.debug("%s: pre_checkin raised on disconnect: %s", self._label, exc)
            if not borrowed or rec.holder is None:  # else the borrower closes it on exit
                e = self._take_entry(rec)
                if e is not None:
                    pool._discard(e)
            return
        try:
            self._pre("checkin", rec.conn, rec.data)
        except BaseException:
            e = self._take_entry(rec)
            if e is not None:
                pool._discard(e)
            raise
        e = self._take_entry(rec)
        if e is not None:
            pool._put(e)

    def _post(self, conn: Any, data: Any) -> None:
        if self._post_checkout is not None:
            self._post_checkout(conn)

    def _pre(self, reason: Any, conn: Any, data: Any) -> None:
        if self._pre_checkin is not None:
            self._pre_checkin(reason, conn)

    def _stop_all(self) -> None:
        with self._lock:
            recs = [(r, b) for r in self._owners() if (b := self._detach(r, "stop")) is not None]
        for rec, borrowed in recs:
            self._settle(rec, "stop", borrowed)

    def _settle_logged(self, rec: _Checkout, reason: str, borrowed: bool) -> None:
        try:
            self._settle(rec, reason, borrowed)
        except Exception as exc:
            logger.warning("%s: checking in the connection of %s failed, closed it: %s",
                           self._label, rec.name, exc)  # fmt: skip

    def _soon(self, job: Callable[[], Any]) -> None:
        self._pool._maint.submit(job)  # a SimpleQueue put: safe from finalizers (R4)

    def _start_timer(self, rec: _Checkout, timeout: float) -> Any:
        ref = weakref.ref(rec)

        def fire() -> None:
            r = ref()
            if r is not None and r.deadline is not None and monotonic() >= r.deadline:
                self._timed_out(r)

        self._pool._maint.later(timeout, fire)
        return True

    def _cancel_timer(self, timer: Any) -> None:
        pass  # the timer job finds the checkout revoked

    def _start_sweep(self) -> None:
        def sweep() -> None:
            if self._sweep_threads() and not self._pool._closed:
                self._pool._maint.later(1.0, sweep)

        self._pool._maint.later(1.0, sweep)

    def _wake_all(self, rec: _Checkout) -> None:
        if rec.cond is not None:
            rec.cond.notify_all()


# ---------------------------------------------------------------------------------------------
# asyncio
# ---------------------------------------------------------------------------------------------


async def _maybe_await(value: Any) -> Any:
    if asyncio.iscoroutine(value) or isinstance(value, asyncio.Future):
        return await value
    return value


class _StartOwner(Generic[C]):
    """``await own.start_owner()`` or ``async with own.start_owner() as owner``."""

    __slots__ = ("_args", "_handle", "_own")

    def __init__(self, own: AsyncOwnership[C], args: tuple[Any, ...]) -> None:
        self._own = own
        self._args = args
        self._handle: AsyncOwnerHandle | None = None

    async def _start(self) -> AsyncOwnerHandle:
        allow_current, shared, timeout, name, data = self._args
        handle = AsyncOwnerHandle(self._own, name)
        await self._own._start(handle, allow_current, shared, timeout, data)
        self._handle = handle
        return handle

    def __await__(self) -> Generator[Any, None, AsyncOwnerHandle]:
        return self._start().__await__()

    async def __aenter__(self) -> AsyncOwnerHandle:
        return await self._start()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._handle is not None:
            await self._handle.stop()


class AsyncOwnership(_OwnershipBase[C]):
    """The asyncio form of :class:`Ownership`, over an ``AsyncPool``/``AsyncResourcePool``.

    ``checkout``, ``checkin`` and ``set_mode`` are coroutines (they may run
    SQL); ``allow`` and ``allow_scope`` are plain (bookkeeping only: a
    connection that ``unallow_existing`` takes from an owning target is checked
    in by a task).  ``post_checkout``/``pre_checkin`` may be coroutine functions.
    """

    _pool_class = AsyncBasePool
    _other = "Ownership"

    async def checkout(self, *, caller: Any = None, ownership_timeout: float | None = _DEFAULT) -> Status:
        """Check a connection out for ``caller`` (default: the current task), now; see ``Ownership``."""
        return await self._checkout(caller, ownership_timeout, None)

    async def _checkout(self, caller: Any, ownership_timeout: Any, data: Any) -> Status:
        ident = identity() if caller is None else _check_identity("caller", caller)
        timeout = self._timeout_for(ownership_timeout)
        with self._lock:
            if (st := self._existing(ident)) is not None:
                return st
        pool = self._pool
        e = await pool._get(None)
        try:
            await self._post(e.conn, data)
        except BaseException:
            pool._discard(e)
            raise
        with self._lock:
            st = self._existing(ident)
            if st is None:
                rec = self._register(ident, e, data, timeout)
        if st is not None:
            await pool._put(e)
            return st
        _push_chain(ident)
        if self._log is not None:
            logger.log(self._log, "%s: %s checked out a connection in mode %r",
                       self._label, rec.name, self._mode)  # fmt: skip
        return Status.OK

    async def checkin(self, *, caller: Any = None) -> Status:
        """Give the caller's connection back; see ``Ownership.checkin``."""
        st, rec, borrowed = self._checkin_now(caller)
        if rec is not None and borrowed is not None:
            await self._settle(rec, "checkin", borrowed)
        return st

    def allow(self, owner_or_allowed: Any, target: Any, *, unallow_existing: bool = False) -> Status:
        """Let ``target`` use ``owner_or_allowed``'s connection; see ``Ownership.allow``."""
        st, old = self._allow_now(owner_or_allowed, target, unallow_existing)
        if old is not None:
            self._soon(lambda: self._settle_logged(old, "checkin", old.holder is not None))
        return st

    async def set_mode(self, mode: Mode) -> Status:
        """Change the mode; see ``Ownership.set_mode``."""
        st, recs = self._mode_now(mode)
        for rec in recs:
            await self._settle(rec, "mode", rec.holder is not None)
        return st

    def start_owner(
        self, *, allow_current: bool = True, shared: bool = False, ownership_timeout: float | None = _DEFAULT,
        name: str | None = None,
    ) -> _StartOwner[C]:  # fmt: skip
        """``await`` it (or ``async with`` it) for a new :class:`AsyncOwnerHandle`; see ``Ownership``."""
        return _StartOwner(self, (allow_current, shared, ownership_timeout, name, None))

    async def _start(self, handle: Any, allow_current: bool, shared: bool, timeout: Any, data: Any) -> None:
        await self._checkout(handle, timeout, data)
        try:
            if allow_current:
                self.allow(handle, identity())
            if shared and await self.set_mode(Mode.shared(handle)) is not Status.OK:
                raise OwnershipError(f"{self._label}: another owner already shares its connection")
        except BaseException:
            handle._stopped = True
            await self.checkin(caller=handle)
            raise

    def connection(self, *, caller: Any = None, timeout: float | None = None) -> Any:
        """``async with own.connection() as conn``: borrow exclusively; see ``Ownership.connection``."""
        return self._connection(caller, timeout)

    @asynccontextmanager
    async def _connection(self, caller: Any, timeout: float | None) -> AsyncIterator[C]:
        async with self._borrow(caller, timeout) as rec:
            yield rec.conn

    @asynccontextmanager
    async def _borrow(self, caller: Any, timeout: float | None) -> AsyncIterator[_Checkout]:
        if caller is not None:
            _check_identity("caller", caller)
        while True:
            with self._lock:
                rec, head = self._find(caller)
                auto = rec is None and self._mode.kind == "auto"
            if rec is not None:
                break
            if not auto:
                raise self._missing(head)
            await self._checkout(head, _DEFAULT, None)
        me = identity()
        await self._enter(rec, me, timeout)
        try:
            yield rec
        except BaseException as exc:
            if self._exit(rec):
                raise self._revoked_error(rec, me) from exc
            raise
        if self._exit(rec):
            raise self._revoked_error(rec, me)

    async def _enter(self, rec: _Checkout, me: Any, timeout: float | None) -> None:
        if rec.revoked is not None:
            raise self._revoked_error(rec, me)
        if rec.holder is me:
            rec.depth += 1
            return
        if rec.holder is None and not rec.waiters:
            rec.holder, rec.depth = me, 1
            return
        t = self._borrow_timeout(timeout)
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[bool | None] = loop.create_future()
        rec.waiters.append((fut, me))
        timer = loop.call_later(t, _expire, fut) if t != float("inf") else None
        try:
            got = await fut
        except BaseException:
            if fut.done() and not fut.cancelled() and fut.result():
                self._exit(rec)  # handed over as we were cancelled: pass it on
            raise
        finally:
            if timer is not None:
                timer.cancel()
        if got:
            return
        if got is None:
            raise self._busy_error(rec, t)
        raise self._revoked_error(rec, me)

    def _exit(self, rec: _Checkout) -> bool:
        rec.depth -= 1
        if rec.depth:
            return False
        rec.holder = None
        broken = False
        if rec.revoked is None:
            if not _unusable(rec.conn):
                while rec.waiters:
                    fut, who = rec.waiters.popleft()
                    if not fut.done():
                        rec.holder, rec.depth = who, 1  # direct hand-off: FIFO, no barging
                        fut.set_result(True)
                        break
                return False
            with self._lock:
                self._detach(rec, "broken")
            broken = True
        e = self._take_entry(rec)
        if e is not None:
            self._pool._discard(e)
        return not broken

    async def _settle(self, rec: _Checkout, reason: str, borrowed: bool) -> None:
        """Steps 2 and 3 of the revocation procedure (SPEC §2.4.5), after ``_detach``."""
        pool = self._pool
        if borrowed or reason in ("timeout", "stop"):
            conn = rec.conn
            if borrowed:
                try:
                    await conn.cancel_safe(timeout=1.0)
                except Exception as exc:  # pragma: no cover - best effort
                    logger.debug("%s: cancelling a revoked borrower failed: %s", self._label, exc)
            try:
                await self._pre(self._disconnect_reason(rec, reason), conn, rec.data)
            except Exception as exc:
                logger.debug("%s: pre_checkin raised on disconnect: %s", self._label, exc)
            if not borrowed or rec.holder is None:
                e = self._take_entry(rec)
                if e is not None:
                    pool._discard(e)
            return
        try:
            await self._pre("checkin", rec.conn, rec.data)
        except BaseException:
            e = self._take_entry(rec)
            if e is not None:
                pool._discard(e)
            raise
        e = self._take_entry(rec)
        if e is not None:
            await pool._put(e)

    async def _post(self, conn: Any, data: Any) -> None:
        if self._post_checkout is not None:
            await _maybe_await(self._post_checkout(conn))

    async def _pre(self, reason: Any, conn: Any, data: Any) -> None:
        if self._pre_checkin is not None:
            await _maybe_await(self._pre_checkin(reason, conn))

    async def _stop_all(self) -> None:
        with self._lock:
            recs = [(r, b) for r in self._owners() if (b := self._detach(r, "stop")) is not None]
        for rec, borrowed in recs:
            await self._settle(rec, "stop", borrowed)

    async def _settle_logged(self, rec: _Checkout, reason: str, borrowed: bool) -> None:
        try:
            await self._settle(rec, reason, borrowed)
        except Exception as exc:
            logger.warning("%s: checking in the connection of %s failed, closed it: %s",
                           self._label, rec.name, exc)  # fmt: skip

    def _soon(self, job: Callable[[], Any]) -> None:
        """Run ``job`` (maybe returning a coroutine) on the pool's loop; callable from any thread."""
        loop = self._pool._loop
        if loop is None or loop.is_closed():
            return

        def run() -> None:
            res = job()
            if asyncio.iscoroutine(res):
                self._pool._spawn(res)

        try:
            loop.call_soon_threadsafe(run)
        except RuntimeError:  # pragma: no cover - loop closing
            pass

    def _start_timer(self, rec: _Checkout, timeout: float) -> Any:
        return asyncio.get_running_loop().call_later(timeout, self._timed_out, rec)

    def _cancel_timer(self, timer: Any) -> None:
        timer.cancel()

    def _start_sweep(self) -> None:
        loop = self._pool._loop

        def sweep() -> None:
            if self._sweep_threads() and not self._pool._closed:
                loop.call_later(1.0, sweep)

        if loop is not None:
            loop.call_later(1.0, sweep)

    def _wake_all(self, rec: _Checkout) -> None:
        while rec.waiters:
            fut, _ = rec.waiters.popleft()
            if not fut.done():
                fut.set_result(False)


def _expire(fut: asyncio.Future[bool | None]) -> None:
    if not fut.done():
        fut.set_result(None)
