"""Leadership through PostgreSQL session-level advisory locks (seed 000, SPEC §1).

``with pool.leadership("scheduler") as lead:`` takes ``pg_try_advisory_lock``
on one connection of the pool, in autocommit (so the session never sits idle
in a transaction), and keeps that connection out of the pool until the guard
is released, which unlocks on that same connection.  A connection that still
holds the lock is never handed to anyone else: if the unlock returns false,
fails, or is interrupted, the connection is closed instead (the server then
drops the lock), and the pool's core refuses to idle a connection marked as
holding a lock whatever happens.

Keys: an int64, a pair of int32 (PostgreSQL's separate two-key lock space), or
a string hashed by :func:`advisory_key`, which SQL can reproduce and which
does not depend on ``PYTHONHASHSEED``.

Fencing caveat: loss of the lock is noticed at the next ``check()`` (or
heartbeat) at the earliest; meanwhile another node may already lead.  Work
done through ``lead.connection()`` fails as soon as the session is gone; work
on other connections is not fenced.  Use ``lead.connection()`` for the work,
or a fencing token (bump an epoch row in the same transaction as the work).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import threading
import warnings
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import TracebackType
from typing import TYPE_CHECKING, Any

import psycopg

from .errors import Error

if TYPE_CHECKING:
    from ._pool import BasePool

__all__ = [
    "AsyncLeadership",
    "Leadership",
    "LeadershipLost",
    "LeadershipNotAcquired",
    "LockKey",
    "advisory_key",
]

logger = logging.getLogger("fastpool")

LockKey = int | str | tuple[int, int]
_INT64 = (-(1 << 63), (1 << 63) - 1)
_INT32 = (-(1 << 31), (1 << 31) - 1)

_EXISTS_SQL = (
    "SELECT EXISTS(SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()"
    " AND granted AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
    " AND classid = %s AND objid = %s AND objsubid = %s)"
)


class LeadershipNotAcquired(Error):
    """Another session (or another guard of this process) holds the lock."""

    __module__ = "fastpool"

    def __init__(self, key: int | tuple[int, int]) -> None:
        super().__init__(f"leadership not acquired: advisory lock {key!r} is held by another session")
        self.key = key


class LeadershipLost(Error):
    """The lock is no longer held (the session ended, or the lock was released behind our back)."""

    __module__ = "fastpool"

    def __init__(self, key: int | tuple[int, int], cause: BaseException | None = None) -> None:
        super().__init__(f"leadership lost: advisory lock {key!r} is no longer held")
        self.key = key
        self.__cause__ = cause


def advisory_key(name: str) -> int:
    """Return the stable int64 lock key of ``name``: the first 8 bytes of its SHA-256, signed.

    Equal to the SQL ``('x' || substr(encode(sha256(convert_to(name, 'UTF8')), 'hex'), 1, 16))
    ::bit(64)::bigint``, in every process (never Python's ``hash()``).
    """
    if not isinstance(name, str):
        raise TypeError(f"key: advisory_key() takes a str, got {type(name).__name__}")
    if not name:
        raise ValueError("key: an empty name is not a lock key")
    return int.from_bytes(hashlib.sha256(name.encode("utf-8")).digest()[:8], "big", signed=True)


def normalize_key(key: Any) -> int | tuple[int, int]:
    """Check ``key`` and turn a name into its int64; raise ``ValueError``/``TypeError`` naming it."""
    if isinstance(key, bool):
        raise TypeError("key: a bool is not a lock key")
    if isinstance(key, int):
        if not _INT64[0] <= key <= _INT64[1]:
            raise ValueError(f"key: {key} does not fit in a bigint (int64)")
        return key
    if isinstance(key, str):
        return advisory_key(key)
    if isinstance(key, tuple) and len(key) == 2 and all(type(k) is int for k in key):
        if not all(_INT32[0] <= k <= _INT32[1] for k in key):
            raise ValueError(f"key: {key} is not a pair of int32")
        return (key[0], key[1])
    raise TypeError(f"key: expected an int, a str or a pair of ints, got {type(key).__name__}")


def lock_parts(key: int | tuple[int, int]) -> tuple[int, int, int]:
    """The (classid, objid, objsubid) under which ``pg_locks`` shows ``key``."""
    if isinstance(key, tuple):
        return key[0] & 0xFFFFFFFF, key[1] & 0xFFFFFFFF, 2
    return (key >> 32) & 0xFFFFFFFF, key & 0xFFFFFFFF, 1


def _fn_sql(fn: str, key: int | tuple[int, int]) -> tuple[str, tuple[int, ...]]:
    if isinstance(key, tuple):
        return f"SELECT {fn}(%s::int4, %s::int4)", key
    return f"SELECT {fn}(%s::int8)", (key,)


def _one(conn: Any, sql: str, params: tuple[Any, ...] = ()) -> Any:
    row = conn.execute(sql, params, prepare=False).fetchone()
    return row[0] if row else None


class _GuardBase:
    """What the sync and async guards share: key, options, state, dropping the session."""

    _after_try_lock: Callable[[], None] | None = None  # test hook: fault injection after the query

    def __init__(
        self,
        pool: Any,
        key: LockKey,
        dedicated: bool,
        heartbeat: float | None,
        on_lost: Callable[..., Any] | None,
        timeout: float | None,
    ) -> None:
        self.key = normalize_key(key)
        if heartbeat is not None and not heartbeat > 0:
            raise ValueError(f"heartbeat must be > 0 seconds, got {heartbeat}")
        if on_lost is not None and not callable(on_lost):
            raise TypeError("on_lost must be callable or None")
        self._pool = pool
        self._dedicated = bool(dedicated)
        self._heartbeat = heartbeat
        self._on_lost = on_lost
        self._timeout = timeout
        self.backend_pid: int | None = None
        self._entry: Any = None  # the pool entry (pooled) ...
        self._conn: Any = None  # ... or the connection (dedicated)
        self._lent = False
        self._state = 0  # 0 new, 1 held, 2 released
        self._notified = False

    def _drop_connection(self, why: str) -> None:
        """Close the lock's connection (never return it) and free its slot."""
        logger.debug("%s: closing the leadership connection: %s", self._pool._name, why)
        if self._entry is not None:
            e, self._entry = self._entry, None
            e.locks_held = 0
            self._pool._discard(e)
        elif self._conn is not None:
            self._pool._close_dedicated(self._conn)
        self._conn = None

    def __repr__(self) -> str:
        state = ("new", "held", "released")[self._state]
        return f"<fastpool.{type(self).__name__} {self.key!r} {state} pid={self.backend_pid}>"


class Leadership(_GuardBase):
    """A guard on a PostgreSQL advisory lock; see the module docstring.

    Use it as a context manager (``__enter__`` acquires and raises
    :class:`LeadershipNotAcquired` if another session leads), or take one
    already acquired from ``pool.try_leadership()``.  ``release()`` is
    idempotent and never raises for lock problems, so ``__exit__`` never masks
    the body's exception.
    """

    def __init__(
        self,
        pool: BasePool[Any],
        key: LockKey,
        *,
        dedicated: bool = False,
        heartbeat: float | None = None,
        on_lost: Callable[[Leadership, BaseException], None] | None = None,
        timeout: float | None = None,
    ) -> None:
        super().__init__(pool, key, dedicated, heartbeat, on_lost, timeout)
        self.lost = threading.Event()
        self._guard = threading.RLock()  # exclusive use of the session

    def acquire(self) -> Leadership:
        """Take the lock now; raise :class:`LeadershipNotAcquired` if another session holds it."""
        if self._state:
            raise RuntimeError("a Leadership guard can be acquired once")
        pool = self._pool
        if not pool._leaders_claim(self):
            raise LeadershipNotAcquired(self.key)  # same process: no round trip
        try:
            got = self._try_lock()
        except BaseException:
            pool._leaders_drop(self)
            raise
        if not got:
            pool._leaders_drop(self)
            raise LeadershipNotAcquired(self.key)
        self._state = 1
        if self._heartbeat is not None:
            pool._maint.later(self._heartbeat, _heartbeat_job(weakref.ref(self)))
        logger.info("%s: leadership %r acquired (backend pid %s)", pool._name, self.key, self.backend_pid)
        return self

    def _try_lock(self) -> bool:
        pool = self._pool
        if self._dedicated:
            conn = pool._open_dedicated()
        else:
            self._entry = pool._get(self._timeout)
            conn = self._entry.conn
        self._conn = conn
        sent = False
        try:
            if conn.pgconn.transaction_status != psycopg.pq.TransactionStatus.IDLE:
                raise psycopg.OperationalError("the connection is not idle")
            conn.autocommit = True  # never idle in transaction (flaw 5); restored on return
            sql, params = _fn_sql("pg_try_advisory_lock", self.key)
            sent = True
            got = bool(_one(conn, sql, params))
            if self._after_try_lock is not None:
                self._after_try_lock()
            self.backend_pid = conn.info.backend_pid
        except BaseException:
            # the query may have run on the server: the session may hold the lock (R1)
            self._drop_connection("the try-lock was interrupted" if sent else "the connection was not usable")
            raise
        if got:
            if self._entry is not None:
                self._entry.locks_held += 1  # the core will never idle it while marked
            return True
        self._give_back()  # it holds nothing
        return False

    # -- release ---------------------------------------------------------------------

    def release(self) -> None:
        """Unlock on the same session and give the connection back; idempotent, never raises.

        A false unlock, an error or an interruption closes the connection
        instead (the server drops the lock) and sets ``lost``.
        """
        with self._guard:
            if self._state != 1:
                return
            self._state = 2
            self._pool._leaders_drop(self)
            conn = self._conn
            try:
                if conn.closed or conn.broken:
                    self.lost.set()
                    self._drop_connection("its session is gone")
                    return
                if conn.pgconn.transaction_status != psycopg.pq.TransactionStatus.IDLE:
                    conn.rollback()  # the lock survives a rollback
                conn.autocommit = True
                sql, params = _fn_sql("pg_advisory_unlock", self.key)
                ok = bool(_one(conn, sql, params))
                if self._lent:  # user code may have stacked the key or taken other locks
                    _one(conn, "SELECT pg_advisory_unlock_all()")
            except BaseException as exc:
                self.lost.set()
                logger.warning("%s: releasing leadership %r failed (%s); closing its connection",
                               self._pool._name, self.key, exc)  # fmt: skip
                self._drop_connection("the unlock failed")
                if not isinstance(exc, Exception):
                    raise
                return
            if not ok:
                self.lost.set()
                logger.warning("%s: leadership %r was not held at release; closing its connection",
                               self._pool._name, self.key)  # fmt: skip
                self._drop_connection("the unlock returned false")
                return
            if self._entry is not None:
                self._entry.locks_held -= 1
            self._give_back()
            logger.info("%s: leadership %r released", self._pool._name, self.key)

    def _give_back(self) -> None:
        if self._entry is not None:
            e, self._entry = self._entry, None
            self._pool._put(e)
        elif self._conn is not None:
            self._pool._close_dedicated(self._conn)
        self._conn = None

    def check(self) -> None:
        """Verify on the lock's session that the lock is still held; raise :class:`LeadershipLost`.

        One round trip.  On failure the connection is closed and ``lost`` set.
        """
        with self._guard:
            if self._state != 1:
                raise LeadershipLost(self.key)
            cause: BaseException | None = None
            try:
                held = bool(_one(self._conn, _EXISTS_SQL, lock_parts(self.key)))
            except Exception as exc:
                held, cause = False, exc
            if held:
                return
            self._state = 2
            self._pool._leaders_drop(self)
            self.lost.set()
            self._drop_connection("the lock is no longer held")
        err = LeadershipLost(self.key, cause)
        self._notify_lost(err)
        raise err

    def is_held(self) -> bool:
        """Like :meth:`check`, returning a bool instead of raising."""
        try:
            self.check()
        except LeadershipLost:
            return False
        return True

    def _notify_lost(self, exc: BaseException) -> None:
        if self._notified or self._on_lost is None:
            return
        self._notified = True
        try:
            self._on_lost(self, exc)
        except Exception:
            logger.exception("%s: error in on_lost", self._pool._name)

    @contextmanager
    def connection(self) -> Iterator[Any]:
        """Borrow the lock's session exclusively, e.g. for work that must be fenced by it."""
        with self._guard:
            if self._state != 1:
                raise LeadershipLost(self.key)
            self._lent = True
            yield self._conn

    def _force_lost(self) -> None:
        """Pool close after its timeout: close the session (releasing the lock) and set ``lost``."""
        if self._state != 1:
            return
        conn = self._conn
        if conn is not None:
            try:
                conn.cancel_safe(timeout=1.0)
            except Exception:  # pragma: no cover - best effort
                pass
        with self._guard:
            if self._state != 1:
                return
            self._state = 2
            self.lost.set()
            self._pool._leaders_drop(self)
            if self._entry is not None:
                self._entry.locks_held = 0
            self._drop_connection("the pool was closed")

    # -- context manager and finalizer -----------------------------------------------------------

    def __enter__(self) -> Leadership:
        return self.acquire() if self._state == 0 else self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()

    def __del__(self) -> None:
        if getattr(self, "_state", 0) != 1:
            return
        self._state = 2
        self.lost.set()
        warnings.warn(
            f"leadership {self.key!r} was never released; its connection is closed",
            ResourceWarning,
            stacklevel=1,
        )
        pool = self._pool
        if self._entry is not None:
            pool._orphaned(self._entry)  # a worker closes it (R4): the server drops the lock
        elif self._conn is not None:
            pool._maint.submit(_close_job(pool, self._conn))


def _close_job(pool: Any, conn: Any) -> Callable[[], None]:
    """A job closing a dedicated connection on a pool worker."""
    return lambda: pool._close_dedicated(conn)


def _heartbeat_job(ref: weakref.ReferenceType[Leadership]) -> Callable[[], None]:
    def job() -> None:
        lead = ref()
        if lead is None or lead._state != 1:
            return
        if not lead._guard.acquire(timeout=0.05):  # the session is busy: its user will notice
            lead._pool._maint.later(lead._heartbeat or 1.0, job)
            return
        try:
            lead.check()
        except LeadershipLost:
            return
        finally:
            lead._guard.release()
        lead._pool._maint.later(lead._heartbeat or 1.0, job)

    return job


async def _aone(conn: Any, sql: str, params: tuple[Any, ...] = ()) -> Any:
    cur = await conn.execute(sql, params, prepare=False)
    row = await cur.fetchone()
    return row[0] if row else None


class AsyncLeadership(_GuardBase):
    """:class:`Leadership` on an :class:`~fastpool.AsyncPool`: ``async with``, awaited I/O.

    Cancelled while unlocking, the guard closes its connection hard (the
    server drops the lock) and re-raises; nothing is shielded.  ``lost`` is an
    ``asyncio.Event``; the heartbeat is a task on the pool's loop.
    """

    def __init__(
        self,
        pool: Any,
        key: LockKey,
        *,
        dedicated: bool = False,
        heartbeat: float | None = None,
        on_lost: Callable[[AsyncLeadership, BaseException], Any] | None = None,
        timeout: float | None = None,
    ) -> None:
        super().__init__(pool, key, dedicated, heartbeat, on_lost, timeout)
        self.lost = asyncio.Event()
        self._guard = asyncio.Lock()
        self._beat: asyncio.Task[None] | None = None

    async def acquire(self) -> AsyncLeadership:
        """Take the lock now; raise :class:`LeadershipNotAcquired` if another session holds it."""
        if self._state:
            raise RuntimeError("a Leadership guard can be acquired once")
        pool = self._pool
        if not pool._leaders_claim(self):
            raise LeadershipNotAcquired(self.key)
        try:
            got = await self._try_lock()
        except BaseException:
            pool._leaders_drop(self)
            raise
        if not got:
            pool._leaders_drop(self)
            raise LeadershipNotAcquired(self.key)
        self._state = 1
        if self._heartbeat is not None:
            self._beat = pool._spawn(self._heartbeat_loop())
        logger.info("%s: leadership %r acquired (backend pid %s)", pool._name, self.key, self.backend_pid)
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
        try:
            if conn.pgconn.transaction_status != psycopg.pq.TransactionStatus.IDLE:
                raise psycopg.OperationalError("the connection is not idle")
            await conn.set_autocommit(True)
            sql, params = _fn_sql("pg_try_advisory_lock", self.key)
            sent = True
            got = bool(await _aone(conn, sql, params))
            if self._after_try_lock is not None:
                self._after_try_lock()
            self.backend_pid = conn.info.backend_pid
        except BaseException:
            self._drop_connection("the try-lock was interrupted" if sent else "the connection was not usable")
            raise
        if got:
            if self._entry is not None:
                self._entry.locks_held += 1
            return True
        await self._give_back()
        return False

    async def release(self) -> None:
        """Unlock on the same session and give the connection back; idempotent.

        A false unlock or an error closes the connection and sets ``lost``;
        cancellation closes it too, then propagates.
        """
        if self._state != 1:
            return
        self._state = 2
        self._pool._leaders_drop(self)
        if self._beat is not None:
            self._beat.cancel()
        conn = self._conn
        try:
            async with self._guard:
                if conn.closed or conn.broken:
                    self.lost.set()
                    self._drop_connection("its session is gone")
                    return
                if conn.pgconn.transaction_status != psycopg.pq.TransactionStatus.IDLE:
                    await conn.rollback()
                await conn.set_autocommit(True)
                sql, params = _fn_sql("pg_advisory_unlock", self.key)
                ok = bool(await _aone(conn, sql, params))
                if self._lent:
                    await _aone(conn, "SELECT pg_advisory_unlock_all()")
        except BaseException as exc:
            self.lost.set()
            logger.warning("%s: releasing leadership %r failed (%r); closing its connection",
                           self._pool._name, self.key, exc)  # fmt: skip
            self._drop_connection("the unlock failed or was cancelled")
            if not isinstance(exc, Exception):
                raise
            return
        if not ok:
            self.lost.set()
            logger.warning("%s: leadership %r was not held at release; closing its connection",
                           self._pool._name, self.key)  # fmt: skip
            self._drop_connection("the unlock returned false")
            return
        if self._entry is not None:
            self._entry.locks_held -= 1
        await self._give_back()

    async def _give_back(self) -> None:
        if self._entry is not None:
            e, self._entry = self._entry, None
            await self._pool._put(e)
        elif self._conn is not None:
            self._pool._close_dedicated(self._conn)
        self._conn = None

    async def check(self) -> None:
        """Verify on the lock's session that the lock is still held; raise :class:`LeadershipLost`."""
        if self._state != 1:
            raise LeadershipLost(self.key)
        cause: BaseException | None = None
        async with self._guard:
            try:
                held = bool(await _aone(self._conn, _EXISTS_SQL, lock_parts(self.key)))
            except Exception as exc:
                held, cause = False, exc
            if held:
                return
            self._state = 2
            self._pool._leaders_drop(self)
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
            result = self._on_lost(self, exc)
            if hasattr(result, "__await__"):
                await result
        except Exception:
            logger.exception("%s: error in on_lost", self._pool._name)

    async def _heartbeat_loop(self) -> None:
        assert self._heartbeat is not None
        while self._state == 1:
            await asyncio.sleep(self._heartbeat)
            if self._state != 1 or self._guard.locked():
                continue
            try:
                await self.check()
            except LeadershipLost:
                return

    def connection(self) -> Any:
        """Borrow the lock's session exclusively (``async with lead.connection() as conn``)."""
        return _LeaderSession(self)

    def _force_lost(self) -> None:
        if self._state != 1:
            return
        self._state = 2
        self.lost.set()
        if self._beat is not None:
            self._beat.cancel()
        self._pool._leaders_drop(self)
        self._drop_connection("the pool was closed")

    async def __aenter__(self) -> AsyncLeadership:
        return await self.acquire() if self._state == 0 else self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.release()

    def __del__(self) -> None:
        if getattr(self, "_state", 0) != 1:
            return
        self._state = 2
        warnings.warn(
            f"leadership {self.key!r} was never released; its connection is closed",
            ResourceWarning,
            stacklevel=1,
        )
        if self._entry is not None:
            self._pool._orphaned(self._entry)


class _LeaderSession:
    __slots__ = ("_lead",)

    def __init__(self, lead: AsyncLeadership) -> None:
        self._lead = lead

    async def __aenter__(self) -> Any:
        lead = self._lead
        await lead._guard.acquire()
        if lead._state != 1:
            lead._guard.release()
            raise LeadershipLost(lead.key)
        lead._lent = True
        return lead._conn

    async def __aexit__(self, *exc: object) -> None:
        self._lead._guard.release()


for _cls in (Leadership, AsyncLeadership):
    _cls.__module__ = "fastpool"
