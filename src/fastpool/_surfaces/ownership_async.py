"""Ownership for the asyncio pools: explicit per-owner checkout of pooled connections.

See :mod:`fastpool.ownership` for the model (owners, allowances, the callers
chain, modes) and the revocation procedure.
"""

from __future__ import annotations

import contextvars
import functools
import logging
import threading
import weakref
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from time import monotonic
from types import TracebackType
from typing import Any, ClassVar, Generic, TypeVar

from .._acompat import AsyncHandOff, maybe_await
from .._aio import AwaitableContext
from .._pool.base_async import AsyncBasePool
from .._settings import check_duration
from ..errors import OwnershipError, OwnershipRevoked, PoolClosed, PoolTimeout
from .owners import (
    DEFAULT,
    WHY,
    Checkout,
    HandleBase,
    Mode,
    Sentinel,
    Status,
    callers,
    check_identity,
    describe,
    identity,
    is_task,
    log_level,
    push_chain,
    thread_watch,
    unusable,
)

__all__ = ["AsyncOwnerHandle", "AsyncOwnership"]

logger = logging.getLogger("fastpool")

C = TypeVar("C")
F = TypeVar("F", bound=Callable[..., Any])


class AsyncOwnership(Generic[C]):
    """Explicit checkout/checkin of connections of an asyncio pool, per owner.

    ``checkout()`` pins a connection to the current identity;
    ``connection()`` borrows it (exclusively, re-entrantly for the same
    identity); ``checkin()`` gives it back through the pool's reset.  See
    :mod:`fastpool.ownership` for modes, allowances and the callers chain.
    ``post_checkout``/``pre_checkin`` may be plain or coroutine functions.
    """

    _pool_class: ClassVar[Any] = AsyncBasePool  # the pool family this class works with

    def __init__(
        self,
        pool: AsyncBasePool[C],
        *,
        mode: Mode = Mode.AUTO,
        ownership_timeout: float | None = 120.0,
        ownership_log: int | str | None = None,
        post_checkout: Callable[[C], Any] | None = None,
        pre_checkin: Callable[[Any, C], Any] | None = None,
        label: str | None = None,
    ) -> None:
        if not isinstance(pool, self._pool_class):
            raise TypeError(f"pool: {type(self).__name__} needs a {self._pool_class.__name__}, got "
                            f"{type(pool).__name__} (the Async classes go with asyncio pools)")  # fmt: skip
        if not isinstance(mode, Mode):
            raise TypeError(f"mode must be Mode.AUTO, Mode.MANUAL or Mode.shared(owner), got {mode!r}")
        if mode.kind == "shared":
            raise ValueError("mode: start in AUTO or MANUAL; set_mode(Mode.shared(owner)) after its checkout")
        for name, fn in (("post_checkout", post_checkout), ("pre_checkin", pre_checkin)):
            if fn is not None and not callable(fn):
                raise TypeError(f"{name} must be callable or None")
        pool._require_sessions(type(self).__name__, "an owner keeps one server session across transactions")
        self._pool: AsyncBasePool[C] = pool
        self._mode = mode
        self._ownership_timeout = check_duration("ownership_timeout", ownership_timeout, allow_none=True)
        self._log = log_level(ownership_log)
        self._post_checkout = post_checkout
        self._pre_checkin = pre_checkin
        self._label = label or pool.name
        self._lock = threading.Lock()
        self._checkouts: dict[Any, tuple[bool, Checkout]] = {}  # identity ref -> (is owner, checkout)
        self._shared: Checkout | None = None
        self._watching_threads = False
        pool._on_close(self)

    # -- introspection -------------------------------------------------------------------------

    @property
    def pool(self) -> AsyncBasePool[C]:
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

    # -- checkout / checkin --------------------------------------------------------------------

    async def checkout(self, *, caller: Any = None, ownership_timeout: float | None = DEFAULT) -> Status:
        """Check a connection out for ``caller`` (default: the current identity), now.

        Returns ``ALREADY_OWNER``/``ALREADY_ALLOWED`` if it already has one.
        Raises what the pool raises (``PoolTimeout``, ``PoolClosed``) and what
        ``post_checkout`` raises (the connection is then closed).
        """
        return await self._checkout(caller, ownership_timeout, None)

    async def _checkout(self, caller: Any, ownership_timeout: Any, data: Any) -> Status:
        ident = identity() if caller is None else check_identity("caller", caller)
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
        if st is not None:  # raced with another checkout for the same identity
            await pool._release(e)
            return st
        push_chain(ident)
        if self._log is not None:
            logger.log(self._log, "%s: %s checked out a connection in mode %r",
                       self._label, rec.name, self._mode)  # fmt: skip
        return Status.OK

    async def checkin(self, *, caller: Any = None) -> Status:
        """Give the caller's connection back: ``OK``, ``NOT_OWNER`` (only allowed) or ``NOT_FOUND``.

        Every allowance of the owner ends.  ``pre_checkin`` runs first; if it
        raises, the connection is closed and the exception propagates.
        """
        st, rec, borrowed = self._checkin_now(caller)
        if rec is not None and borrowed is not None:
            await self._settle(rec, "checkin", borrowed)
        return st

    def allow(self, owner_or_allowed: Any, target: Any, *, unallow_existing: bool = False) -> Status:
        """Let ``target`` use the connection that ``owner_or_allowed`` owns or is allowed on.

        ``ALREADY_OWNER``/``ALREADY_ALLOWED`` if ``target`` already has one
        (unless ``unallow_existing``: it is moved, and a connection it owned is
        checked in); ``NOT_FOUND`` if ``owner_or_allowed`` has none.
        """
        st, old = self._allow_now(owner_or_allowed, target, unallow_existing)
        if old is not None:
            if True:  # ASYNC
                self._pool._soon(self._settle_logged, old, "checkin", old.holder is not None)
            else:
                self._settle(old, "checkin", old.holder is not None)
        return st

    async def set_mode(self, mode: Mode) -> Status:
        """Change the mode.  AUTO/MANUAL check in every connection; see ``Mode.shared``."""
        st, recs = self._mode_now(mode)
        for rec in recs:
            await self._settle(rec, "mode", rec.holder is not None)
        return st

    def start_owner(
        self, *, allow_current: bool = True, shared: bool = False, ownership_timeout: float | None = DEFAULT,
        name: str | None = None,
    ) -> AwaitableContext[AsyncOwnerHandle]:  # fmt: skip
        """Check a connection out for a new owner handle (:class:`AsyncOwnerHandle`) and return it.

        ``await own.start_owner()`` gives the handle; ``async with
        own.start_owner() as owner`` also stops it at the end.  The handle
        enters the callers chain; ``allow_current`` also allows the current
        identity; ``shared`` switches to ``Mode.shared(handle)``.
        """
        return AwaitableContext(self._start_owner, allow_current, shared, ownership_timeout, name, None)

    async def _start_owner(
        self, allow_current: bool, shared: bool, timeout: Any, name: str | None, data: Any
    ) -> AsyncOwnerHandle:
        handle = AsyncOwnerHandle(self, name)
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
        return handle

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

    # -- borrowing -------------------------------------------------------------------------------

    @asynccontextmanager
    async def connection(self, *, caller: Any = None, timeout: float | None = None) -> AsyncIterator[C]:
        """Borrow the caller's connection exclusively for the block.

        The same identity nesting blocks gets the same connection; another
        borrower of the same owner waits (first come, first served) up to
        ``timeout`` (default: the pool's ``acquire_timeout``), then gets
        ``PoolTimeout``.  No reset runs between borrows: the connection stays
        as the owner left it.
        """
        async with self._borrow(caller, timeout) as rec:
            yield rec.conn

    @asynccontextmanager
    async def _borrow(self, caller: Any, timeout: float | None) -> AsyncIterator[Checkout]:
        if caller is not None:
            check_identity("caller", caller)
        while True:
            with self._lock:
                rec, head = self._find(caller)
                auto = rec is None and self._mode.kind == "auto"
            if rec is not None:
                break
            if not auto:
                raise self._missing(head)
            await self._checkout(head, DEFAULT, None)
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

    async def _enter(self, rec: Checkout, me: Any, timeout: float | None) -> None:
        t = self._borrow_timeout(timeout)
        with self._lock:
            if rec.revoked is not None:
                raise self._revoked_error(rec, me)
            if rec.holder is me:
                rec.depth += 1
                return
            if rec.holder is None and not rec.waiters:
                rec.holder, rec.depth = me, 1
                return
            hand: AsyncHandOff[bool] = AsyncHandOff()
            rec.waiters.append((hand, me))
        try:
            got = await hand.wait(t)
        except BaseException:
            if not hand.withdraw():  # handed over as we were interrupted: pass it on
                self._exit(rec)
            raise
        if got:
            return
        if got is None:
            raise self._busy_error(rec, t)
        raise self._revoked_error(rec, me)

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

    # -- lookup (under the lock) -----------------------------------------------------------------

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

    # -- registration (under the lock) -----------------------------------------------------------

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

    # -- revocation ----------------------------------------------------------------------------

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

    async def _settle(self, rec: Checkout, reason: str, borrowed: bool) -> None:
        """Revocation, steps 2 and 3, after ``_detach``: interrupt a borrower, check in or close.

        With no borrower, ``pre_checkin("checkin")`` runs and the connection
        goes back through the pool's reset.  With a borrower (or on a timeout
        or pool close), a running query is cancelled, ``pre_checkin(("disconnect",
        error))`` runs and the connection is closed (by the borrower's exit).
        """
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
            if not borrowed or rec.holder is None:  # else the borrower closes it on exit
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
            await pool._release(e)

    async def _settle_logged(self, rec: Checkout, reason: str, borrowed: bool) -> None:
        try:
            await self._settle(rec, reason, borrowed)
        except Exception as exc:
            logger.warning("%s: checking in the connection of %s failed, closed it: %s",
                           self._label, rec.name, exc)  # fmt: skip

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

    async def _post(self, conn: Any, data: Any) -> None:
        if self._post_checkout is not None:
            await maybe_await(self._post_checkout(conn))

    async def _pre(self, reason: Any, conn: Any, data: Any) -> None:
        if self._pre_checkin is not None:
            await maybe_await(self._pre_checkin(reason, conn))

    async def _pool_closing(self) -> None:
        """The pool is closing: every owner loses its connection."""
        with self._lock:
            recs = [(r, b) for r in self._owners() if (b := self._detach(r, "stop")) is not None]
        for rec, borrowed in recs:
            await self._settle(rec, "stop", borrowed)

    async def _pool_closed(self) -> None:
        """Nothing is left to do once the pool waited for its connections."""

    def _pool_forked(self) -> None:
        """In a forked child: every checkout is the parent's; forget them all (no I/O)."""
        with self._lock:
            for _, rec in self._checkouts.values():
                rec.revoked = rec.revoked or "the process forked: the connection belongs to the parent"
                rec.entry = None
            self._checkouts.clear()
            self._shared = None

    # -- option checks -------------------------------------------------------------------------

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


class AsyncOwnerHandle(HandleBase):
    """An explicit owner identity (``start_owner``): it owns until ``stop()`` or collection.

    Use it where no task or thread lives as long as the ownership must, e.g. a
    pytest fixture.  It enters the callers chain of the context that started
    it; as an async context manager it stops at the end of the block.
    """

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
        """An opaque token naming this owner, for the ``fastpool.sandbox`` middleware (Sandbox only)."""
        return self._own.token(self)  # type: ignore[no-any-return]

    async def __aenter__(self) -> AsyncOwnerHandle:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()


for _cls in (AsyncOwnership, AsyncOwnerHandle):
    _cls.__module__ = "fastpool"
