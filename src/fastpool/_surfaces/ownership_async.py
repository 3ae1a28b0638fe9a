"""Ownership for the asyncio pools: explicit per-owner checkout of pooled connections.

See :mod:`fastpool.ownership` for the model (owners, allowances, the callers
chain, modes) and the revocation procedure.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from types import TracebackType
from typing import Any, ClassVar, TypeVar

from .._acompat import AsyncHandOff, maybe_await
from .._aio import AwaitableContext
from .._pool.base_async import AsyncBasePool
from .._settings import check_duration
from ..errors import OwnershipError
from .owners import (
    DEFAULT,
    Checkout,
    HandleBase,
    Mode,
    Status,
    check_identity,
    identity,
    log_level,
    push_chain,
)
from .ownership_base import OwnershipBase

__all__ = ["AsyncOwnerHandle", "AsyncOwnership"]

logger = logging.getLogger("fastpool")

C = TypeVar("C")
F = TypeVar("F", bound=Callable[..., Any])


class AsyncOwnership(OwnershipBase[C]):
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

    # -- lookup (under the lock) -----------------------------------------------------------------

    # -- registration (under the lock) -----------------------------------------------------------

    # -- revocation ----------------------------------------------------------------------------

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

    # -- option checks -------------------------------------------------------------------------


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
