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

from psycopg import IsolationLevel

from .._acompat import maybe_await
from .._aio import AwaitableContext
from .._pool.base_async import AsyncBasePool
from ..errors import SandboxError
from .owners import DEFAULT, Mode, Status, check_identity
from .ownership_async import AsyncOwnerHandle, AsyncOwnership
from .sandbox_base import (
    ROLLBACK_TO,
    SAVEPOINT,
    Boxed,
    begin_check,
    boxed,
    checkin_check,
    end_action,
    isolation_level,
)

if TYPE_CHECKING:
    from typing_extensions import Self

__all__ = ["AsyncSandbox"]


class AsyncSandbox(AsyncOwnership[Any]):
    """Transactional test isolation over an asyncio :class:`fastpool.AsyncPool`.

    An ownership in MANUAL mode whose checkout runs ``BEGIN`` and whose
    checkin runs ``ROLLBACK`` plus ``pg_advisory_unlock_all()``; every borrow
    through ``connection()`` is a savepoint (released on success, rolled back
    to on an exception).  See :mod:`fastpool.sandbox`.
    """

    _instances: ClassVar[weakref.WeakKeyDictionary[Any, Any]] = weakref.WeakKeyDictionary()

    def __init__(
        self,
        pool: AsyncBasePool[Any],
        *,
        mode: Mode = Mode.MANUAL,
        isolation: IsolationLevel | str | None = None,
        ownership_timeout: float | None = 120.0,
        ownership_log: int | str | None = None,
        label: str | None = None,
    ) -> None:
        super().__init__(pool, mode=mode, ownership_timeout=ownership_timeout,
                         ownership_log=ownership_log, label=label)  # fmt: skip
        self._session = pool._driver.session  # the driver's way with SQL (psycopg's, asyncpg's)
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

    async def unboxed_run(self, fn: Callable[[Any], Any]) -> Any:
        """Run ``fn(conn)`` on a separate pool connection, outside every sandbox; it commits.

        Unlike Ecto's, this does not check the caller's sandbox in first (that
        would silently roll it back); it needs one spare connection in the
        pool.  ``fn`` may be a plain or a coroutine function.
        """
        async with self._pool.connection() as conn:
            return await maybe_await(fn(conn))

    @asynccontextmanager
    async def connection(self, *, caller: Any = None, timeout: float | None = None) -> AsyncIterator[Any]:
        """Borrow the sandbox connection; the block is a savepoint (rolled back on an exception)."""
        session = self._session
        async with self._borrow(caller, timeout) as rec:
            conn = rec.conn
            if not boxed(rec):
                yield conn
                return
            await session.run(conn, SAVEPOINT)
            try:
                yield conn
            except BaseException:
                if not session.gone(conn):
                    try:
                        await session.run(conn, end_action(session.status(conn), True))
                    except Exception:
                        pass  # the block's exception says more
                raise
            try:
                await session.run(conn, end_action(session.status(conn), False))
            except SandboxError:
                raise
            except Exception:  # (asyncpg cannot tell a failed transaction apart: roll it back)
                await session.run(conn, ROLLBACK_TO)

    async def _checkout(self, caller: Any, ownership_timeout: Any, data: Any) -> Status:
        if data is None:
            data = Boxed(True, self._isolation)
        return await super()._checkout(caller, ownership_timeout, data)

    async def _post(self, conn: Any, data: Any) -> None:
        if data is None:
            data = Boxed(True, self._isolation)
        if data.boxed:
            session = self._session
            begin_check(session.status(conn))
            await session.begin_sandbox(conn, data.isolation.name if data.isolation is not None else None)

    async def _pre(self, reason: Any, conn: Any, data: Any) -> None:
        if reason != "checkin" or not (data is None or data.boxed):
            return  # disconnect/stop: no SQL, the connection is closed
        checkin_check(self._session.status(conn))
        await self._session.end_sandbox(conn)


AsyncSandbox.__module__ = "fastpool"
