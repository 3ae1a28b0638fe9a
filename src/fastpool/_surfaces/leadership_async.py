"""The leadership guard of the asyncio pools: a PostgreSQL session-level advisory lock.

See :mod:`fastpool.leadership` for how it stays correct and the fencing caveat.
"""

from __future__ import annotations

import logging
import warnings
import weakref
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from types import TracebackType
from typing import TYPE_CHECKING, Any

from .._acompat import AsyncEvent, AsyncRLock, maybe_await
from .advisory import (
    EXISTS_SQL,
    HELD,
    NEW,
    RELEASED,
    LeadershipLost,
    LeadershipNotAcquired,
    LockKey,
    claim,
    fn_sql,
    lock_parts,
    normalize_key,
    unclaim,
)

if TYPE_CHECKING:
    from .._pool.base_async import AsyncBasePool

__all__ = ["AsyncLeadership"]

logger = logging.getLogger("fastpool")


class AsyncLeadership:
    """A guard on a PostgreSQL advisory lock, for an asyncio pool; see :mod:`fastpool.leadership`.

    Use it as an async context manager (entering acquires, and raises
    :class:`LeadershipNotAcquired` if another session leads), or take one
    already acquired from ``pool.try_leadership()``.  ``release()`` is
    idempotent and never raises for lock problems, so leaving the block
    never masks the block's exception; interrupted while unlocking, the
    guard closes its connection (the server drops the lock) and re-raises.
    ``lost`` is set once the lock is known to be gone.
    """

    _after_try_lock: Callable[[], None] | None = None  # test hook: fault injection after the query

    def __init__(
        self,
        pool: AsyncBasePool[Any],
        key: LockKey,
        *,
        dedicated: bool = False,
        heartbeat: float | None = None,
        on_lost: Callable[[AsyncLeadership, BaseException], Any] | None = None,
        timeout: float | None = None,
    ) -> None:
        self.key = normalize_key(key)
        if heartbeat is not None and not heartbeat > 0:
            raise ValueError(f"heartbeat must be more than 0 seconds, got {heartbeat}")
        if on_lost is not None and not callable(on_lost):
            raise TypeError("on_lost must be callable or None")
        self._pool = pool
        self._session = pool._driver.session  # the driver's way with SQL (psycopg's, asyncpg's)
        self._dedicated = bool(dedicated)
        self._heartbeat = heartbeat
        self._on_lost = on_lost
        self._timeout = timeout
        self.backend_pid: int | None = None
        self._entry: Any = None  # the pool entry (pooled) ...
        self._conn: Any = None  # ... or the connection (dedicated)
        self._lent = False
        self._state = NEW
        self._notified = False
        self.lost = AsyncEvent()
        self._guard = AsyncRLock()  # exclusive use of the session (check() may run inside connection())

    def __repr__(self) -> str:
        state = ("new", "held", "released")[self._state]
        return f"<fastpool.{type(self).__name__} {self.key!r} {state} pid={self.backend_pid}>"

    # -- acquire -------------------------------------------------------------------------

    async def acquire(self) -> AsyncLeadership:
        """Take the lock now; raise :class:`LeadershipNotAcquired` if another session holds it."""
        if self._state != NEW:
            raise RuntimeError("a Leadership guard can be acquired once")
        pool = self._pool
        if not claim(pool, self):
            raise LeadershipNotAcquired(self.key)  # same process: no round trip
        try:
            got = await self._try_lock()
        except BaseException:
            unclaim(pool, self)
            raise
        if not got:
            unclaim(pool, self)
            raise LeadershipNotAcquired(self.key)
        self._state = HELD
        pool._on_close(self)
        if self._heartbeat is not None:
            pool._later(self._heartbeat, _heartbeat, weakref.ref(self))
        logger.info("%s: leadership %r acquired (backend pid %s)", pool.name, self.key, self.backend_pid)
        return self

    async def _try_lock(self) -> bool:
        pool = self._pool
        if self._dedicated:
            conn = await pool._open_dedicated()
        else:
            self._entry = await pool._get(self._timeout)
            conn = self._entry.conn
        self._conn = conn
        sent = False
        session = self._session
        try:
            if not session.idle(conn):
                raise ConnectionError("the connection is not idle")
            await session.autocommit(conn)  # never idle in a transaction; restored on return
            sql, params = fn_sql("pg_try_advisory_lock", self.key)
            sent = True
            got = bool(await session.value(conn, sql, params))
            if self._after_try_lock is not None:
                self._after_try_lock()
            self.backend_pid = session.backend_pid(conn)
        except BaseException:
            # the query may have run on the server: the session may hold the lock
            self._drop_connection("the try-lock was interrupted" if sent else "the connection was not usable")
            raise
        if got:
            if self._entry is not None:
                self._entry.locks_held += 1  # the core will never idle it while marked
            return True
        await self._give_back()  # it holds nothing
        return False

    # -- release -------------------------------------------------------------------------

    async def release(self) -> None:
        """Unlock on the same session and give the connection back; idempotent, never raises.

        A false unlock or an error closes the connection instead (the server
        drops the lock) and sets ``lost``; an interruption closes it too,
        then propagates.
        """
        if self._state != HELD:
            return
        self._state = RELEASED
        unclaim(self._pool, self)
        conn = self._conn
        session = self._session
        try:
            async with self._guard:
                if session.gone(conn):
                    self.lost.set()
                    self._drop_connection("its session is gone")
                    return
                if not session.idle(conn):
                    await session.rollback(conn)  # the lock survives a rollback
                await session.autocommit(conn)
                sql, params = fn_sql("pg_advisory_unlock", self.key)
                ok = bool(await session.value(conn, sql, params))
                if self._lent:  # user code may have stacked the key or taken other locks
                    await session.value(conn, "SELECT pg_advisory_unlock_all()")
        except BaseException as exc:
            self.lost.set()
            logger.warning("%s: releasing leadership %r failed (%r); closing its connection",
                           self._pool.name, self.key, exc)  # fmt: skip
            self._drop_connection("the unlock failed or was interrupted")
            if not isinstance(exc, Exception):
                raise
            return
        if not ok:
            self.lost.set()
            logger.warning("%s: leadership %r was not held at release; closing its connection",
                           self._pool.name, self.key)  # fmt: skip
            self._drop_connection("the unlock returned false")
            return
        if self._entry is not None:
            self._entry.locks_held -= 1
        await self._give_back()
        logger.info("%s: leadership %r released", self._pool.name, self.key)

    async def _give_back(self) -> None:
        if self._entry is not None:
            e, self._entry = self._entry, None
            await self._pool._release(e)
        elif self._conn is not None:
            self._pool._close_dedicated(self._conn)
        self._conn = None

    def _drop_connection(self, why: str) -> None:
        """Close the lock's connection (never return it) and free its slot."""
        logger.debug("%s: closing the leadership connection: %s", self._pool.name, why)
        if self._entry is not None:
            e, self._entry = self._entry, None
            e.locks_held = 0
            self._pool._discard(e)
        elif self._conn is not None:
            self._pool._close_dedicated(self._conn)
        self._conn = None

    # -- checks --------------------------------------------------------------------------

    async def check(self) -> None:
        """Verify on the lock's session that the lock is still held; raise :class:`LeadershipLost`.

        One round trip.  On failure the connection is closed and ``lost`` set.
        """
        if self._state != HELD:
            raise LeadershipLost(self.key)
        cause: BaseException | None = None
        async with self._guard:
            try:
                held = bool(await self._session.value(self._conn, EXISTS_SQL, lock_parts(self.key)))
            except Exception as exc:
                held, cause = False, exc
            if held:
                return
            self._state = RELEASED
            unclaim(self._pool, self)
            self.lost.set()
            self._drop_connection("the lock is no longer held")
        err = LeadershipLost(self.key, cause)
        await self._notify_lost(err)
        raise err

    async def is_held(self) -> bool:
        """Like :meth:`check`, returning a bool instead of raising."""
        try:
            await self.check()
        except LeadershipLost:
            return False
        return True

    async def _notify_lost(self, exc: BaseException) -> None:
        if self._notified or self._on_lost is None:
            return
        self._notified = True
        try:
            await maybe_await(self._on_lost(self, exc))
        except Exception:
            logger.exception("%s: error in on_lost", self._pool.name)

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[Any]:
        """Borrow the lock's session exclusively, e.g. for work that must be fenced by it."""
        async with self._guard:
            if self._state != HELD:
                raise LeadershipLost(self.key)
            self._lent = True
            yield self._conn

    # -- pool close, context manager, finalizer ------------------------------------------------

    async def _pool_closing(self) -> None:
        """The pool is closing: a guard may still release within the close timeout."""

    def _pool_forked(self) -> None:
        """In a forked child: the lock is the parent's; this guard holds nothing here (no I/O)."""
        if self._state == HELD:
            self._state = RELEASED
            self._entry = self._conn = None

    async def _pool_closed(self) -> None:
        """The close timeout passed: close the session (releasing the lock) and set ``lost``."""
        if self._state != HELD:
            return
        conn = self._conn
        if conn is not None:
            try:  # a query running on the session would hold the guard: interrupt it
                await conn.cancel_safe(timeout=1.0)
            except Exception:  # pragma: no cover - best effort
                pass
        async with self._guard:
            if self._state != HELD:
                return
            self._state = RELEASED
            self.lost.set()
            unclaim(self._pool, self)
            self._drop_connection("the pool was closed")

    async def __aenter__(self) -> AsyncLeadership:
        return await self.acquire() if self._state == NEW else self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.release()

    def __del__(self) -> None:
        if getattr(self, "_state", NEW) != HELD:
            return
        self._state = RELEASED
        warnings.warn(
            f"leadership {self.key!r} was never released; its connection is closed",
            ResourceWarning,
            stacklevel=1,
        )
        pool = self._pool
        pool._soon(self.lost.set)
        if self._entry is not None:
            pool._orphaned(self._entry)  # closed in the background: the server drops the lock
        elif self._conn is not None:
            pool._soon(pool._close_dedicated, self._conn)


async def _heartbeat(ref: weakref.ReferenceType[AsyncLeadership]) -> None:
    """Check the lock every ``heartbeat`` seconds while the guard lives and holds it."""
    lead = ref()
    if lead is None or lead._state != HELD:
        return
    if not lead._guard.locked():  # else the session is busy: its user will notice
        try:
            await lead.check()
        except LeadershipLost:
            return
    lead._pool._later(lead._heartbeat or 1.0, _heartbeat, ref)


AsyncLeadership.__module__ = "fastpool"
