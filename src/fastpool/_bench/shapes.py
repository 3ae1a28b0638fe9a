"""The benchmark shapes: every implementation of every shape, built one way for every runner.

``python -m fastpool bench``, the pytest-benchmark suite in ``bench/`` and
``python -m bench.instructions`` all build their implementations here, so a
shape means the same thing wherever its numbers come from:

* ``plain(name)``: borrow + return of a plain in-process resource (no database);
* ``sync_pg(name, dsn)``: borrow + return of a psycopg connection, optionally
  running ``query`` inside (every pool with ``autocommit`` when asked);
* ``async_pg(name, dsn, loop)``: the same on asyncio (``op`` is a coroutine function);
* ``asyncpg_impl(name, dsn, loop)``: the pools of asyncpg connections (and psqlpy's);
* the floors: a ``deque`` under a lock, and minimal FIFO hand-off pools for
  threads and for asyncio, the least any pool of that kind can cost.

Every pool has 4 connections.  A peer that is not installed (or a compiled core
that is not built) raises :class:`Unavailable`, whose message says why.
"""

from __future__ import annotations

import asyncio
import importlib
import os
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict

from .. import _core_build
from .._compat.psycopg_pool import ConnectionPool
from .._compat.psycopg_pool_async import AsyncConnectionPool
from .._pool.base import ResourcePool
from .._surfaces.pool import Pool
from .._surfaces.pool_async import AsyncPool
from ..resource import BaseResource

__all__ = [
    "ASYNC",
    "ASYNCPG",
    "LOCAL_DSN",
    "PLAIN",
    "SELECT1",
    "SYNC",
    "AsyncHandoffFloor",
    "HandoffFloor",
    "Impl",
    "Unavailable",
    "async_pg",
    "asyncpg_impl",
    "builds",
    "plain",
    "resolve_dsn",
    "sync_pg",
]

LOCAL_DSN = "host=127.0.0.1 dbname=test user=postgres"
SIZE = 4

PLAIN = ["fastpool (compiled)", "fastpool (pure Python)", "floor: deque+Lock"]
SYNC = [
    "fastpool (compiled)",
    "fastpool (pure Python)",
    "fastpool (compiled) getconn/putconn",
    "fastpool (pure Python) getconn/putconn",
    "fastpool (compiled) ConnectionPool",
    "fastpool (compiled) ConnectionPool getconn/putconn",
    "psycopg_pool",
    "psycopg_pool getconn/putconn",
    "sqlalchemy QueuePool",
    "sqlalchemy FastPool",
    "floor: deque+Lock",
]
ASYNC = [
    "fastpool (compiled)",
    "fastpool (pure Python)",
    "fastpool (compiled) AsyncConnectionPool",
    "psycopg_pool async",
    "asyncpg",
    "floor: asyncio hand-off",
]
SELECT1 = ["dedicated connection", "fastpool (compiled)", "fastpool (pure Python)", "psycopg_pool"]
#: the pools of asyncpg connections: fastpool on asyncpg, its asyncpg.Pool drop-in and asyncpg's own
#: pool (each with its default reset, and a no-op reset), psqlpy's (a Rust driver with a deadpool pool)
ASYNCPG = [
    "fastpool (compiled) asyncpg",
    "fastpool (pure Python) asyncpg",
    "fastpool (compiled) asyncpg drop-in",
    "fastpool (compiled) asyncpg drop-in reset=noop",
    "asyncpg.Pool",
    "asyncpg.Pool reset=noop",
    "psqlpy",
]


def resolve_dsn(explicit: str | None = None) -> str:
    """The database to use: ``explicit``, else ``$FASTPOOL_DSN``, else ``$FASTPOOL_TEST_DSN``,
    else libpq's own ``PG*`` environment (the empty DSN), else the local server."""
    if explicit is not None:
        return explicit
    for var in ("FASTPOOL_DSN", "FASTPOOL_TEST_DSN"):
        if os.environ.get(var):
            return os.environ[var]
    if any(k in os.environ for k in ("PGHOST", "PGDATABASE", "PGSERVICE", "PGPORT", "PGUSER")):
        return ""
    return LOCAL_DSN


class Unavailable(Exception):
    """This implementation cannot run here; the message says why."""


@dataclass
class Impl:
    """One built implementation: ``op()`` borrows and returns once (awaited for asyncio ones)."""

    name: str
    op: Callable[[], Any]
    close: Callable[[], Any] = lambda: None
    pool: Any = None  # the pool itself, for shapes that drive it their own way
    #: the borrow as a context manager factory (``async with cm():`` for asyncio ones), when there
    #: is one: runners write the block inline, as users do, with no call of their own per borrow
    cm: Callable[[], Any] | None = None


def builds() -> list[str]:
    """The core builds that can run here, the compiled one first."""
    out = ["python"]
    try:
        _core_build.load("c")
        out.insert(0, "c")
    except ImportError:
        pass
    return out


def _build_of(name: str) -> str:
    build = "c" if name.startswith("fastpool (compiled)") else "python"
    if build not in builds():
        raise Unavailable("the compiled core is not built here")
    return build


def _with_build(build: str, make: Callable[[], Any]) -> Any:
    saved = _core_build.core
    _core_build.core = _core_build.load(build)  # type: ignore[arg-type]
    try:
        return make()
    finally:
        _core_build.core = saved


def _import(module: str) -> Any:
    try:
        return importlib.import_module(module)
    except ImportError:
        raise Unavailable(f"{module.split('.', maxsplit=1)[0]} is not installed") from None


# -- floors ----------------------------------------------------------------------------------


def floor_lock() -> Impl:
    """A ``deque`` of 4 objects under a ``threading.Lock``: pop, then append."""
    dq: deque[object] = deque(object() for _ in range(SIZE))
    lock = threading.Lock()

    def op() -> None:
        with lock:
            c = dq.pop()
        with lock:
            dq.append(c)

    return Impl("floor: deque+Lock", op)


class HandoffFloor:
    """The least a FIFO pool of threads can do under a lock: pop/append, or hand over to the oldest waiter."""

    def __init__(self, n: int = SIZE) -> None:
        self.idle: deque[object] = deque(object() for _ in range(n))
        self.waiters: deque[list[Any]] = deque()
        self.lock = threading.Lock()

    def connection(self) -> _HandoffBorrow:
        """A borrow of one object, as a context manager."""
        return _HandoffBorrow(self)


class _HandoffBorrow:
    __slots__ = ("conn", "pool")

    def __init__(self, pool: HandoffFloor) -> None:
        self.pool = pool
        self.conn: Any = None

    def __enter__(self) -> Any:
        p = self.pool
        with p.lock:
            if p.idle:
                self.conn = p.idle.pop()
                return self.conn
            w: list[Any] = [threading.Lock(), None]
            w[0].acquire()
            p.waiters.append(w)
        w[0].acquire()
        self.conn = w[1]
        return self.conn

    def __exit__(self, *exc: object) -> None:
        p = self.pool
        with p.lock:
            if p.waiters:
                w = p.waiters.popleft()
                w[1] = self.conn
                w[0].release()
            else:
                p.idle.append(self.conn)


class AsyncHandoffFloor:
    """A minimal FIFO hand-off pool on asyncio: the floor any asyncio pool can reach."""

    def __init__(self, n: int = SIZE) -> None:
        self.idle: deque[object] = deque(object() for _ in range(n))
        self.waiters: deque[asyncio.Future[object]] = deque()

    def connection(self) -> _AsyncHandoffBorrow:
        """A borrow of one object, as an async context manager."""
        return _AsyncHandoffBorrow(self)


class _AsyncHandoffBorrow:
    __slots__ = ("conn", "pool")

    def __init__(self, pool: AsyncHandoffFloor) -> None:
        self.pool = pool
        self.conn: Any = None

    async def __aenter__(self) -> Any:
        p = self.pool
        if p.idle and not p.waiters:
            self.conn = p.idle.pop()
        else:
            fut = asyncio.get_running_loop().create_future()
            p.waiters.append(fut)
            self.conn = await fut
        return self.conn

    async def __aexit__(self, *exc: object) -> None:
        p = self.pool
        while p.waiters:
            w = p.waiters.popleft()
            if not w.done():
                w.set_result(self.conn)
                return
        p.idle.append(self.conn)


def floor_async() -> Impl:
    """The asyncio hand-off floor as an implementation."""
    floor = AsyncHandoffFloor()
    cm = floor.connection

    async def op() -> None:
        async with cm():
            pass

    return Impl("floor: asyncio hand-off", op, pool=floor, cm=cm)


# -- plain resource ------------------------------------------------------------------------------


class _Thing(BaseResource[None]):
    @classmethod
    def create(cls, ctx: None) -> _Thing:
        return cls()


def plain(name: str) -> Impl:
    """Borrow + return of a plain resource (no database)."""
    if name.startswith("floor"):
        return floor_lock()
    pool = _with_build(_build_of(name), lambda: ResourcePool(_Thing, None, min_size=SIZE, max_size=SIZE))

    def op() -> None:
        with pool.connection():
            pass

    return Impl(name, op, pool.close, pool, pool.connection)


# -- psycopg, threads -------------------------------------------------------------------------------


def _kwargs(autocommit: bool) -> dict[str, Any]:
    return {"autocommit": True} if autocommit else {}


def sync_pg(name: str, dsn: str, *, query: str | None = None, autocommit: bool = False) -> Impl:
    """Borrow + return of a psycopg connection (running ``query`` inside, if given)."""
    if name.startswith("floor"):
        return floor_lock()
    if name == "dedicated connection":
        conn = psycopg.connect(dsn, **_kwargs(autocommit))
        sql = query or "SELECT 1"

        def ded() -> None:
            conn.execute(sql).fetchone()
            if not autocommit:
                conn.commit()

        return Impl(name, ded, conn.close, conn)
    getconn = name.endswith("getconn/putconn")
    if name.startswith("fastpool") and "ConnectionPool" in name:  # the drop-in surface
        pool: Any = _with_build(
            _build_of(name),
            lambda: ConnectionPool(dsn, min_size=SIZE, max_size=SIZE, kwargs=_kwargs(autocommit), open=False),
        )
        pool.open(wait=True)
    elif name.startswith("fastpool"):
        leak = 60.0 if name.endswith("leak_timeout") else None  # its cost when on
        pool = _with_build(
            _build_of(name),
            lambda: Pool(dsn, min_size=SIZE, max_size=SIZE, kwargs=_kwargs(autocommit), leak_timeout=leak),
        )
    elif name.startswith("psycopg_pool"):
        psycopg_pool = _import("psycopg_pool")
        pool = psycopg_pool.ConnectionPool(
            dsn, min_size=SIZE, max_size=SIZE, kwargs=_kwargs(autocommit), open=True
        )
        pool.wait()
    elif name.startswith("sqlalchemy"):
        # SQLAlchemy's own pool, or fastpool's pool class for SQLAlchemy (same arguments)
        sa_class = _import("sqlalchemy.pool").QueuePool
        if name.endswith("FastPool"):
            sa_class = _import("fastpool.sqlalchemy").FastPool
        qp = sa_class(lambda: psycopg.connect(dsn, **_kwargs(autocommit)), pool_size=SIZE, max_overflow=0)
        warm = [qp.connect() for _ in range(SIZE)]
        for c in warm:
            c.close()

        def sa() -> None:
            c = qp.connect()
            if query is not None:
                c.cursor().execute(query)
            c.close()

        return Impl(name, sa, qp.dispose, qp)
    else:
        raise ValueError(f"unknown implementation {name!r}")
    if getconn:

        def op() -> None:
            conn = pool.getconn()
            try:
                if query is not None:
                    conn.execute(query).fetchone()
            finally:
                pool.putconn(conn)

    elif query is None:

        def op() -> None:
            with pool.connection():
                pass

    else:

        def op() -> None:
            with pool.connection() as conn:
                conn.execute(query).fetchone()

    return Impl(name, op, pool.close, pool)


# -- psycopg, asyncio ------------------------------------------------------------------------------


def asyncpg_impl(name: str, dsn: str, loop: asyncio.AbstractEventLoop, *, query: str | None = None) -> Impl:
    """The pools of asyncpg connections (and psqlpy's), built like ``async_pg``'s on ``loop``:
    fastpool's ``AsyncPool(driver="asyncpg")`` on either build, ``fastpool.asyncpg`` (the drop-in)
    and ``asyncpg.Pool``, each with its default reset and with a no-op ``reset=``, and psqlpy's
    pool."""
    from .._drivers.asyncpg_driver import translate_conninfo

    url, kwargs = translate_conninfo(dsn)
    pool: Any
    cm: Any
    close: Callable[[], Any]
    if "drop-in" in name:
        _import("asyncpg")
        from ..asyncpg import create_pool as dropin_pool

        reset = _no_reset if name.endswith("reset=noop") else None

        async def make_dropin() -> Any:
            return await dropin_pool(url, min_size=SIZE, max_size=SIZE, reset=reset, **kwargs)

        pool = _with_build(_build_of(name), lambda: loop.run_until_complete(make_dropin()))
        cm = pool.acquire
        close = lambda: loop.run_until_complete(pool.close())  # noqa: E731
    elif name.startswith("fastpool"):
        _import("asyncpg")
        pool = _with_build(
            _build_of(name), lambda: AsyncPool(dsn, driver="asyncpg", min_size=SIZE, max_size=SIZE)
        )
        loop.run_until_complete(pool.open())
        cm = pool.connection
        close = lambda: loop.run_until_complete(pool.close())  # noqa: E731
    elif name.startswith("asyncpg.Pool"):
        asyncpg = _import("asyncpg")
        extra = {"reset": _no_reset} if name.endswith("reset=noop") else {}

        async def make() -> Any:  # created inside the loop it will run on
            return await asyncpg.create_pool(url, min_size=SIZE, max_size=SIZE, **kwargs, **extra)

        try:
            pool = loop.run_until_complete(make())
        except Exception as exc:  # e.g. an authentication method asyncpg lacks
            raise Unavailable(f"asyncpg could not connect ({type(exc).__name__})") from exc
        cm = pool.acquire
        close = lambda: loop.run_until_complete(pool.close())  # noqa: E731
    elif name == "psqlpy":
        psqlpy = _import("psqlpy")
        p = conninfo_to_dict(dsn)
        pool = psqlpy.ConnectionPool(
            host=p.get("host"), port=int(str(p.get("port") or 5432)), username=p.get("user"),
            password=p.get("password"), db_name=p.get("dbname"), max_db_pool_size=SIZE,
        )  # fmt: skip
        cm = pool.acquire
        close = pool.close
    else:
        raise ValueError(f"unknown implementation {name!r}")
    if query is None:

        async def op() -> None:
            async with cm():
                pass

    elif name == "psqlpy":

        async def op() -> None:
            async with cm() as conn:
                await conn.fetch_val(query)

    else:

        async def op() -> None:
            async with cm() as conn:
                await conn.fetchval(query)

    return Impl(name, op, close, pool, cm)


async def _no_reset(conn: Any) -> None:
    """asyncpg.Pool's ``reset=``: nothing (the peer row without its reset round trip)."""


def async_pg(
    name: str,
    dsn: str,
    loop: asyncio.AbstractEventLoop,
    *,
    query: str | None = None,
    autocommit: bool = False,
) -> Impl:
    """``await op()`` borrows and returns once on ``loop`` (running ``query`` inside, if given)."""
    if name.startswith("floor"):
        return floor_async()
    if name.startswith("fastpool") and "ConnectionPool" in name:  # the drop-in surface
        pool: Any = _with_build(
            _build_of(name),
            lambda: AsyncConnectionPool(
                dsn, min_size=SIZE, max_size=SIZE, kwargs=_kwargs(autocommit), open=False
            ),
        )
        loop.run_until_complete(pool.open(wait=True))
        cm = pool.connection
    elif name.startswith("fastpool"):
        pool = _with_build(
            _build_of(name),
            lambda: AsyncPool(
                dsn,
                min_size=SIZE,
                max_size=SIZE,
                kwargs=_kwargs(autocommit),
                leak_timeout=60.0 if name.endswith("leak_timeout") else None,
            ),
        )
        loop.run_until_complete(pool.open())
        cm = pool.connection
    elif name.startswith("psycopg_pool"):
        psycopg_pool = _import("psycopg_pool")
        pool = psycopg_pool.AsyncConnectionPool(
            dsn, min_size=SIZE, max_size=SIZE, kwargs=_kwargs(autocommit), open=False
        )
        loop.run_until_complete(pool.open(wait=True))
        cm = pool.connection
    elif name == "asyncpg":
        return asyncpg_impl("asyncpg.Pool", dsn, loop, query=query)
    else:
        raise ValueError(f"unknown implementation {name!r}")
    if query is None:

        async def op() -> None:
            async with cm():
                pass

    else:

        async def op() -> None:
            async with cm() as conn:
                await (await conn.execute(query)).fetchone()

    return Impl(name, op, lambda: loop.run_until_complete(pool.close()), pool, cm)
