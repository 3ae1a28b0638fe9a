"""What both kinds of ownership do the same way, written once: the owners' bookkeeping.

:class:`OwnershipBase` holds what needs no I/O and no waiting, under the
ownership's lock: who owns which checkout, who may use it, the watch on the
owners' tasks and threads, revocation's bookkeeping, and the checks of the
options.  ``AsyncOwnership`` (written by hand) and ``Ownership`` (generated
from it) add the checkouts, borrows and checkins themselves.
"""

from __future__ import annotations

import contextvars
import functools
import logging
import threading
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from time import monotonic
from typing import Any, Generic, TypeVar

from .._settings import check_duration
from ..errors import OwnershipError, OwnershipRevoked, PoolClosed, PoolTimeout
from .owners import (
    DEFAULT,
    WHY,
    Checkout,
    Mode,
    Sentinel,
    Status,
    callers,
    check_identity,
    describe,
    identity,
    is_task,
    push_chain,
    thread_watch,
    unusable,
)

__all__ = ["OwnershipBase"]

logger = logging.getLogger("fastpool")

C = TypeVar("C")
F = TypeVar("F", bound=Callable[..., Any])


class OwnershipBase(Generic[C]):
    """The I/O-free part of :class:`fastpool.AsyncOwnership` and :class:`fastpool.Ownership`."""

    _pool: Any
    _mode: Mode
    _lock: Any
    _log: Any
    _label: str
    _ownership_timeout: float | None
    _checkouts: dict[Any, tuple[bool, Checkout]]
    _shared: Checkout | None
    _watching_threads: bool

    def _settle_logged(self, rec: Checkout, reason: str, borrowed: bool) -> Any:
        """Give a revoked checkout's connection back, logging a failure (each kind its own)."""
        raise NotImplementedError

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
            rec, _ = self._find(None if ident is None else check_identity("ident", ident))
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
        token = push_chain(me)
        try:
            yield st
        finally:
            if token is not None:
                try:
                    callers.reset(token)
                except ValueError:  # pragma: no cover - exited in another context
                    pass
            if st is Status.OK:
                with self._lock:
                    hit = self._checkouts.get(weakref.ref(me))
                if hit is not None and not hit[0]:
                    self._unallow(me, hit[1])

    def _exit(self, rec: Checkout) -> bool:
        """End a borrow; True when the connection was revoked meanwhile (it is then closed)."""
        with self._lock:
            rec.depth -= 1
            if rec.depth:
                return False
            rec.holder = None
            if rec.revoked is None:
                if not unusable(rec.conn):
                    while rec.waiters:  # direct hand-off: first come, first served, no barging
                        hand, who = rec.waiters.popleft()
                        rec.holder, rec.depth = who, 1
                        if hand.give(True):
                            break
                        rec.holder, rec.depth = None, 0
                    return False
                self._detach(rec, "broken")
                broken = True
            else:
                broken = False
        e = self._take_entry(rec)
        if e is not None:
            self._pool._discard(e)
        return not broken

    def _find(self, caller: Any) -> tuple[Checkout | None, Any]:
        """The checkout the caller uses: its own, else its callers chain's (manual), else the shared one."""
        head = identity() if caller is None else caller
        get = self._checkouts.get
        hit = get(weakref.ref(head))
        if hit is not None:
            return hit[1], head
        kind = self._mode.kind
        if kind == "manual":
            for ref in callers.get():
                if ref() is not None and (hit := get(ref)) is not None:
                    return hit[1], head
        elif kind == "shared" and self._shared is not None:
            return self._shared, head
        return None, head

    def _missing(self, head: Any) -> OwnershipError:
        return OwnershipError(
            f"cannot find the ownership of {describe(head)} using mode {self._mode!r} on {self._label}.\n\n"
            "When using ownership, you must manage connections in one of the four ways:\n\n"
            "  * by explicitly checking out a connection: checkout()\n"
            "  * by explicitly allowing a spawned task or thread: allow(owner, target) or "
            "allow_scope(owner)\n"
            "  * by running the pool in shared mode: set_mode(Mode.shared(owner))\n"
            "  * by passing caller=owner, or running the code in a child task, asyncio.to_thread or "
            "propagate(fn), so that it finds its ancestor's connection\n\n"
            "Note that the mode reverts to MANUAL when its shared owner ends, checks in or times out."
        )

    def _revoked_error(self, rec: Checkout, who: Any) -> OwnershipRevoked:
        return OwnershipRevoked(f"{rec.revoked}; {describe(who)} was still using the connection")

    def _busy_error(self, rec: Checkout, timeout: float) -> PoolTimeout:
        return PoolTimeout(f"couldn't borrow the connection of {rec.name} after {timeout:.3g} s: "
                           f"{describe(rec.holder)} is using it")  # fmt: skip

    def _existing(self, ident: Any) -> Status | None:
        hit = self._checkouts.get(weakref.ref(ident))
        if hit is None:
            return None
        return Status.ALREADY_OWNER if hit[0] else Status.ALREADY_ALLOWED

    def _register(self, ident: Any, entry: Any, data: Any, timeout: float | None) -> Checkout:
        key = weakref.ref(ident, self._gone)
        rec = Checkout(key, describe(ident), entry, data)
        self._checkouts[key] = (True, rec)
        self._watch(ident)
        if timeout is not None:
            rec.deadline = monotonic() + timeout
            self._pool._later(timeout, self._deadline_passed, weakref.ref(rec))
        return rec

    def _add_allowed(self, rec: Checkout, target: Any) -> None:
        key = weakref.ref(target, self._gone)
        self._checkouts[key] = (False, rec)
        rec.allowed[key] = describe(target)
        self._watch(target)

    def _watch(self, ident: Any) -> None:
        """Arrange to hear of ``ident``'s end; handles report through ``_gone``."""
        if is_task(ident):
            ident.add_done_callback(self._task_done)
        elif isinstance(ident, threading.Thread):
            if ident is threading.current_thread():
                sentinel = getattr(thread_watch, "sentinel", None)
                if sentinel is None:
                    sentinel = thread_watch.sentinel = Sentinel()
                weakref.finalize(sentinel, self._thread_ended, weakref.ref(ident))
            if not self._watching_threads:  # ended threads we could not watch: a periodic sweep
                self._watching_threads = True
                self._pool._later(1.0, self._sweep)

    def _task_done(self, task: Any) -> None:
        self._ended(weakref.ref(task))

    def _thread_ended(self, ref: weakref.ReferenceType[Any]) -> None:
        self._pool._soon(self._ended, ref)  # runs while CPython frees the thread: no lock here

    def _gone(self, ref: weakref.ReferenceType[Any]) -> None:
        self._pool._soon(self._ended, ref)  # a garbage-collected identity: no lock here

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

    def _sweep(self) -> None:
        """Revoke what ended threads held; again in a second while thread identities remain."""
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
        if left and not self._pool.closed:
            self._pool._later(1.0, self._sweep)

    def _unallow(self, ident: Any, rec: Checkout) -> None:
        key = weakref.ref(ident)
        with self._lock:
            hit = self._checkouts.get(key)
            if hit is not None and not hit[0] and hit[1] is rec:
                del self._checkouts[key]
                rec.allowed.pop(key, None)

    def _allow_now(self, owner_or_allowed: Any, target: Any, unallow_existing: bool) -> tuple[Status, Any]:
        """The bookkeeping of ``allow``; returns the status and a checkout to revoke, if any."""
        check_identity("owner_or_allowed", owner_or_allowed)
        check_identity("target", target)
        to_revoke = None
        with self._lock:
            hit = self._checkouts.get(weakref.ref(target))
            if hit is not None:
                if not unallow_existing:
                    return (Status.ALREADY_OWNER if hit[0] else Status.ALREADY_ALLOWED), None
                is_owner, old = hit
                if is_owner:  # unlike DBConnection: the target's own checkout is checked in
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
                       describe(target), describe(owner_or_allowed), rec.name)  # fmt: skip
        return Status.OK, to_revoke

    def _mode_now(self, mode: Mode) -> tuple[Status, list[Checkout]]:
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

    def _owners(self) -> list[Checkout]:
        return [rec for is_owner, rec in self._checkouts.values() if is_owner]

    def _checkin_now(self, caller: Any) -> tuple[Status, Checkout | None, bool | None]:
        ident = identity() if caller is None else check_identity("caller", caller)
        with self._lock:
            hit = self._checkouts.get(weakref.ref(ident))
            if hit is None:
                return Status.NOT_FOUND, None, None
            if not hit[0]:
                return Status.NOT_OWNER, None, None
            rec = hit[1]
            return Status.OK, rec, self._detach(rec, "checkin")

    def _detach(self, rec: Checkout, reason: str) -> bool | None:
        """Revocation, step 1 (under the lock): None if already revoked, else whether it is borrowed.

        Everything is detached at once: the owner, every allowance, the
        shared mode (which reverts to MANUAL, not to the previous mode); the
        queued borrowers are woken to fail.
        """
        if rec.revoked is not None:
            return None
        rec.revoked = WHY[reason].format(owner=rec.name, mode=self._mode, t=self._ownership_timeout or 0)
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
            self._mode = Mode.MANUAL
        if self._log is not None:
            logger.log(self._log, "%s: %s lost connection (%s)", self._label, ", ".join(names), rec.revoked)
        while rec.waiters:
            hand, _ = rec.waiters.popleft()
            hand.give(False)
        return rec.holder is not None

    def _revoke_later(self, rec: Checkout, reason: str) -> None:
        """Detach now; settle (I/O) in the background (owner death, timeout)."""
        with self._lock:
            borrowed = self._detach(rec, reason)
        if borrowed is not None:
            self._pool._soon(self._settle_logged, rec, reason, borrowed)

    def _take_entry(self, rec: Checkout) -> Any:
        with self._lock:
            e, rec.entry = rec.entry, None
        return e

    def _deadline_passed(self, ref: weakref.ReferenceType[Checkout]) -> None:
        rec = ref()
        if rec is None or rec.revoked is not None or rec.deadline is None or monotonic() < rec.deadline:
            return
        logger.warning("%s: owner %s timed out because it owned the connection for longer than "
                       "%g s (ownership_timeout); closing the connection",
                       self._label, rec.name, self._ownership_timeout or 0)  # fmt: skip
        self._revoke_later(rec, "timeout")

    def _pool_forked(self) -> None:
        """In a forked child: every checkout is the parent's; forget them all (no I/O)."""
        with self._lock:
            for _, rec in self._checkouts.values():
                rec.revoked = rec.revoked or "the process forked: the connection belongs to the parent"
                rec.entry = None
            self._checkouts.clear()
            self._shared = None

    def _timeout_for(self, ownership_timeout: Any) -> float | None:
        if ownership_timeout is DEFAULT:
            return self._ownership_timeout
        return check_duration("ownership_timeout", ownership_timeout, allow_none=True)

    def _borrow_timeout(self, timeout: float | None) -> float:
        if timeout is None:
            return float(self._pool._acquire_timeout)
        return check_duration("timeout", timeout, allow_none=False, allow_zero=True)  # type: ignore[return-value]

    def _disconnect_reason(self, rec: Checkout, reason: str) -> tuple[str, BaseException]:
        if reason == "stop":
            return ("stop", PoolClosed(f"{self._pool.name} was closed"))
        return ("disconnect", OwnershipRevoked(rec.revoked or ""))
