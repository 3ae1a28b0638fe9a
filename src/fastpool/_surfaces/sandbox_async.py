"""The sandbox of the asyncio pools: each owner in its own transaction, rolled back at checkin.

See :mod:`fastpool.sandbox` for the model and the caveats of running a test
inside one transaction.
"""

from __future__ import annotations

import secrets
import weakref
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, ClassVar

import psycopg
from psycopg import IsolationLevel

from .._acompat import maybe_await
from .._aio import AwaitableContext
from .._pool.base_async import AsyncBasePool
from .owners import DEFAULT, Mode, Status, check_identity
from .ownership_async import AsyncOwnerHandle, AsyncOwnership
from .sandbox_base import (
    CHECKIN_SQL,
    SAVEPOINT,
    Boxed,
    begin_check,
    boxed,
    checkin_action,
    end_action,
    isolation_level,
)

if TYPE_CHECKING:
    from typing_extensions import Self

__all__ = ["AsyncSandbox"]


class AsyncSandbox(AsyncOwnership[psycopg.AsyncConnection[Any]]):
    """Transactional test isolation over an asyncio :class:`fastpool.AsyncPool`.

    An ownership in MANUAL mode whose checkout runs ``BEGIN`` and whose
    checkin runs ``ROLLBACK`` plus ``pg_advisory_unlock_all()``; every borrow
    through ``connection()`` is a savepoint (released on success, rolled back
    to on an exception).  See :mod:`fastpool.sandbox`.
    """

    _instances: ClassVar[weakref.WeakKeyDictionary[Any, Any]] = weakref.WeakKeyDictionary()

    def __init__(
        self,
        pool: AsyncBasePool[psycopg.AsyncConnection[Any]],
        *,
        mode: Mode = Mode.MANUAL,
        isolation: IsolationLevel | str | None = None,
        ownership_timeout: float | None = 120.0,
        ownership_log: int | str | None = None,
        label: str | None = None,
    ) -> None:
        super().__init__(pool, mode=mode, ownership_timeout=ownership_timeout,
                         ownership_log=ownership_log, label=label)  # fmt: skip
        self._isolation = isolation_level(isolation)
        self._tokens: dict[str, weakref.ReferenceType[Any]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls._instances = weakref.WeakKeyDictionary()

    @classmethod
    def for_pool(cls, pool: Any, **options: Any) -> Self:
        """The pool's one sandbox (made with ``options`` the first time): tests and app share it."""
        sb = cls._instances.get(pool)
        if sb is None:
            sb = cls._instances[pool] = cls(pool, **options)
        return sb

    # -- tokens for the HTTP middleware ----------------------------------------------------------

    def token(self, owner: Any) -> str:
        """A random token that lets an HTTP request join ``owner``'s sandbox (see the middleware)."""
        check_identity("owner", owner)
        for tok, ref in self._tokens.items():
            if ref() is owner:
                return tok
        tok = secrets.token_urlsafe(32)
        self._tokens = {t: r for t, r in self._tokens.items() if r() is not None}
        self._tokens[tok] = weakref.ref(owner)
        return tok

    def owner_for_token(self, token: str | None) -> Any:
        """The owner a token names, or None (unknown, forged, or its owner is gone)."""
        if not token:
            return None
        ref = self._tokens.get(token)
        return ref() if ref is not None else None

    # -- checkout and borrowing ---------------------------------------------------------------------

    async def checkout(
        self, *, caller: Any = None, ownership_timeout: float | None = DEFAULT, sandbox: bool = True,
        isolation: IsolationLevel | str | None = None,
    ) -> Status:  # fmt: skip
        """Check out and ``BEGIN`` (``sandbox=False``: a plain ownership checkout, no transaction)."""
        data = Boxed(sandbox, isolation_level(isolation) or self._isolation)
        return await self._checkout(caller, ownership_timeout, data)

    def start_owner(
        self, *, allow_current: bool = True, shared: bool = False, ownership_timeout: float | None = DEFAULT,
        isolation: IsolationLevel | str | None = None, name: str | None = None,
    ) -> AwaitableContext[AsyncOwnerHandle]:  # fmt: skip
        """Start an owner handle in its own sandbox transaction; stopping it rolls the transaction back."""
        data = Boxed(True, isolation_level(isolation) or self._isolation)
        return AwaitableContext(self._start_owner, allow_current, shared, ownership_timeout, name, data)

    async def unboxed_run(self, fn: Callable[[psycopg.AsyncConnection[Any]], Any]) -> Any:
        """Run ``fn(conn)`` on a separate pool connection, outside every sandbox; it commits.

        Unlike Ecto's, this does not check the caller's sandbox in first (that
        would silently roll it back); it needs one spare connection in the
        pool.  ``fn`` may be a plain or a coroutine function.
        """
        async with self._pool.connection() as conn:
            return await maybe_await(fn(conn))

    @asynccontextmanager
    async def connection(
        self, *, caller: Any = None, timeout: float | None = None
    ) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        """Borrow the sandbox connection; the block is a savepoint (rolled back on an exception)."""
        async with self._borrow(caller, timeout) as rec:
            conn = rec.conn
            if not boxed(rec):
                yield conn
                return
            await conn.execute(SAVEPOINT, prepare=False)
            try:
                yield conn
            except BaseException:
                if not conn.closed:
                    try:
                        await conn.execute(end_action(conn, True), prepare=False)
                    except psycopg.Error:
                        pass  # the block's exception says more
                raise
            await conn.execute(end_action(conn, False), prepare=False)

    async def _checkout(self, caller: Any, ownership_timeout: Any, data: Any) -> Status:
        if data is None:
            data = Boxed(True, self._isolation)
        return await super()._checkout(caller, ownership_timeout, data)

    async def _post(self, conn: Any, data: Any) -> None:
        if data is None:
            data = Boxed(True, self._isolation)
        if data.boxed:
            begin_check(conn)
            if data.isolation is not None:
                await conn.set_isolation_level(data.isolation)  # the pool's reset restores it at return
            await psycopg.AsyncTransaction(conn).__aenter__()  # psycopg now forbids commit()/rollback()

    async def _pre(self, reason: Any, conn: Any, data: Any) -> None:
        if reason != "checkin" or not (data is None or data.boxed):
            return  # disconnect/stop: no SQL, the connection is closed
        try:
            checkin_action(conn)
            await conn.execute(CHECKIN_SQL, prepare=False)
        finally:
            conn._num_transactions = 0  # the transaction entered in _post is over


AsyncSandbox.__module__ = "fastpool"
