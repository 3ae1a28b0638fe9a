"""``fastpool.sqlalchemy.FastPool``/``AsyncFastPool`` under real SQLAlchemy engines, against the real server.

Core connections, ORM sessions and the async engine from 16 threads / 64
tasks, with a sampler counting the server sessions: never more than
``pool_size + max_overflow``; extra ones closed on return; ``pool_timeout``,
``pool_recycle``, ``pool_pre_ping`` and ``engine.dispose()`` as SQLAlchemy
defines them.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from .acompat import wait_until
from .conftest import backends, sqlalchemy_url, unavailable
from .test_pool_pg import terminate

pytestmark = pytest.mark.db

try:
    import sqlalchemy as sa
    from sqlalchemy import orm
    from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine

    from fastpool.sqlalchemy import AsyncFastPool, FastPool
except ImportError as exc:  # pragma: no cover - the test extra installs SQLAlchemy[asyncio]
    _missing = f"SQLAlchemy (with greenlet) is not installed: {exc}"
else:
    _missing = ""

POOL_SIZE, MAX_OVERFLOW = 3, 2


@pytest.fixture
def url(dsn: str) -> Any:
    if _missing:
        unavailable(_missing)
    return sqlalchemy_url(dsn, "postgresql+psycopg")


@pytest.fixture
def table(admin: Any) -> Iterator[str]:
    name = f"fastpool_sa_{uuid.uuid4().hex[:8]}"
    admin.execute(f"CREATE TABLE {name} (id serial PRIMARY KEY, who text NOT NULL)")
    try:
        yield name
    finally:
        admin.execute(f"DROP TABLE IF EXISTS {name}")


class Sampler:
    """Count the server sessions of ``app`` every few milliseconds; keep the peak."""

    def __init__(self, dsn: str, app: str) -> None:
        self.peak = 0
        self._stop = threading.Event()
        self._conn = psycopg.connect(dsn, autocommit=True)
        self._app = app
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, len(backends(self._conn, self._app)))
            time.sleep(0.003)

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        self._conn.close()
        return self.peak


def assert_all_closed(admin: Any, app: str) -> None:
    """Every server session of ``app`` ends (a backend exits shortly after its client says goodbye)."""
    deadline = time.monotonic() + 3
    while backends(admin, app):
        assert time.monotonic() < deadline, f"sessions left open: {backends(admin, app)}"
        time.sleep(0.01)


def _model(table: str) -> Any:
    class Base(orm.DeclarativeBase):
        pass

    class Row(Base):
        __tablename__ = table
        id: orm.Mapped[int] = orm.mapped_column(primary_key=True)
        who: orm.Mapped[str]

    return Row


def test_sync_engine_core_and_orm_from_16_threads(dsn: str, url: Any, table: str, admin: Any) -> None:
    app = f"fastpool-sa-{uuid.uuid4().hex[:8]}"
    engine = sa.create_engine(
        url,
        poolclass=FastPool,
        pool_size=POOL_SIZE,
        max_overflow=MAX_OVERFLOW,
        pool_timeout=20,
        connect_args={"application_name": app},
    )
    assert isinstance(engine.pool, FastPool)
    row_cls = _model(table)
    errors: list[BaseException] = []
    sampler = Sampler(dsn, app)

    def worker(n: int) -> None:
        try:
            for i in range(15):
                with engine.begin() as conn:  # Core
                    conn.execute(sa.text(f"INSERT INTO {table} (who) VALUES (:w)"), {"w": f"core-{n}-{i}"})
                    conn.execute(sa.text("SELECT pg_sleep(0.001)"))
                with orm.Session(engine) as session, session.begin():  # ORM
                    session.add(row_cls(who=f"orm-{n}-{i}"))
                with orm.Session(engine) as session:  # a rolled-back ORM transaction
                    session.add(row_cls(who="rolled-back"))
                    session.flush()
                    session.rollback()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    peak = sampler.stop()
    try:
        assert errors == []
        assert 1 <= peak <= POOL_SIZE + MAX_OVERFLOW, peak
        with orm.Session(engine) as session:
            who = session.scalars(sa.select(row_cls.who)).all()
        assert sum(w.startswith("core-") for w in who) == 16 * 15
        assert sum(w.startswith("orm-") for w in who) == 16 * 15
        assert "rolled-back" not in who
        pool = engine.pool
        assert pool.checkedout() == 0
        assert pool.checkedin() <= POOL_SIZE  # the overflow was closed as it came back
        assert wait_until(lambda: len(backends(admin, app)) == pool.checkedin()), backends(admin, app)
    finally:
        engine.dispose()
    assert_all_closed(admin, app)  # dispose() closed every session


def test_sync_overflow_timeout_and_dispose(url: Any, admin: Any) -> None:
    app = f"fastpool-sa-{uuid.uuid4().hex[:8]}"
    engine = sa.create_engine(
        url,
        poolclass=FastPool,
        pool_size=1,
        max_overflow=1,
        pool_timeout=0.3,
        connect_args={"application_name": app},
    )
    try:
        a, b = engine.connect(), engine.connect()  # pool_size + max_overflow
        assert engine.pool.checkedout() == 2 and engine.pool.overflow() == 1
        started = time.monotonic()
        with pytest.raises(sa.exc.TimeoutError, match="limit of size 1 overflow 1 reached"):
            engine.connect()
        assert 0.3 <= time.monotonic() - started < 0.3 + 0.1
        # A caller waiting when a connection comes back gets it (the overflow is not closed).
        got: list[Any] = []
        waiter = threading.Thread(target=lambda: got.append(engine.connect()))
        engine.pool._timeout = 5.0
        waiter.start()
        time.sleep(0.05)
        b.close()
        waiter.join()
        assert len(got) == 1 and engine.pool.checkedout() == 2
        got[0].close()
        a.close()
        assert engine.pool.checkedin() == 1  # pool_size stays; the overflow was closed on return
        # (its backend exits a moment after the client's goodbye: seen still listed under load)
        assert wait_until(lambda: len(backends(admin, app)) == 1), backends(admin, app)
        held = engine.connect()
        held.execute(sa.text("SELECT 1"))
        engine.dispose()  # idle ones now, the checked-out one when it comes back
        held.close()
        assert_all_closed(admin, app)
        with engine.connect() as conn:  # the engine goes on with a fresh pool
            assert conn.execute(sa.text("SELECT 1")).scalar() == 1
    finally:
        engine.dispose()


def test_sync_recycle_and_pre_ping(url: Any, admin: Any) -> None:
    app = f"fastpool-sa-{uuid.uuid4().hex[:8]}"
    engine = sa.create_engine(
        url,
        poolclass=FastPool,
        pool_size=1,
        max_overflow=0,
        pool_pre_ping=True,
        pool_recycle=1,
        connect_args={"application_name": app},
    )
    pid = "SELECT pg_backend_pid()"
    try:
        with engine.connect() as conn:
            first = conn.execute(sa.text(pid)).scalar()
        terminate(admin, first)  # killed while idle: pre_ping finds it, SQLAlchemy reconnects
        with engine.connect() as conn:
            second = conn.execute(sa.text(pid)).scalar()
        assert second != first
        time.sleep(1.1)  # older than pool_recycle: replaced at checkout
        with engine.connect() as conn:
            third = conn.execute(sa.text(pid)).scalar()
        assert third not in (first, second)
        deadline = time.monotonic() + 5  # the replaced one is closed in the background
        while backends(admin, app) != {third} and time.monotonic() < deadline:
            time.sleep(0.02)
        assert backends(admin, app) == {third}
    finally:
        engine.dispose()


def test_sync_connect_error_is_sqlalchemys(url: Any) -> None:
    engine = sa.create_engine(url.set(database="fastpool_no_such_db"), poolclass=FastPool, pool_timeout=5)
    started = time.monotonic()
    with pytest.raises(sa.exc.OperationalError, match="fastpool_no_such_db"):
        engine.connect()
    assert time.monotonic() - started < 5  # not retried until the timeout
    assert engine.pool.checkedout() == 0 and engine.pool.checkedin() == 0


def test_pool_arguments_are_checked(url: Any) -> None:
    with pytest.raises(ValueError, match="pool_size"):
        sa.create_engine(url, poolclass=FastPool, pool_size=-1)
    with pytest.raises(ValueError, match="max_overflow"):
        sa.create_engine(url, poolclass=FastPool, max_overflow=-2)
    with pytest.raises(ValueError, match="pool_timeout"):
        sa.create_engine(url, poolclass=FastPool, pool_timeout=0)
    with pytest.raises(sa.exc.ArgumentError):  # the sync pool cannot serve an asyncio engine
        create_async_engine(url, poolclass=FastPool)


def test_async_engine_core_and_orm_from_64_tasks(dsn: str, url: Any, table: str, admin: Any) -> None:
    app = f"fastpool-sa-{uuid.uuid4().hex[:8]}"
    row_cls = _model(table)

    async def main() -> tuple[int, list[str], str]:
        engine = create_async_engine(
            url,
            poolclass=AsyncFastPool,
            pool_size=POOL_SIZE,
            max_overflow=MAX_OVERFLOW,
            pool_timeout=20,
            connect_args={"application_name": app},
        )
        assert isinstance(engine.pool, AsyncFastPool)
        sampler = Sampler(dsn, app)

        async def worker(n: int) -> None:
            for i in range(5):
                async with engine.begin() as conn:
                    await conn.execute(
                        sa.text(f"INSERT INTO {table} (who) VALUES (:w)"), {"w": f"core-{n}-{i}"}
                    )
                    await conn.execute(sa.text("SELECT pg_sleep(0.001)"))
                async with AsyncSession(engine) as session, session.begin():
                    session.add(row_cls(who=f"orm-{n}-{i}"))
                async with AsyncSession(engine) as session:
                    session.add(row_cls(who="rolled-back"))
                    await session.flush()
                    await session.rollback()

        await asyncio.gather(*(worker(n) for n in range(64)))
        peak = await asyncio.to_thread(sampler.stop)
        async with AsyncSession(engine) as session:
            who = list((await session.scalars(sa.select(row_cls.who))).all())
        pool = engine.pool
        assert pool.checkedout() == 0 and pool.checkedin() <= POOL_SIZE
        # pool_timeout on the event loop
        held = [await engine.connect().start() for _ in range(POOL_SIZE + MAX_OVERFLOW)]
        engine.pool._timeout = 0.3
        started = time.monotonic()
        with pytest.raises(sa.exc.TimeoutError):
            await engine.connect().start()
        waited = time.monotonic() - started
        assert 0.3 <= waited < 0.4, waited
        for c in held:
            await c.close()
        status = pool.status()
        await engine.dispose()
        return peak, who, status

    peak, who, status = asyncio.run(main())
    assert 1 <= peak <= POOL_SIZE + MAX_OVERFLOW, peak
    assert sum(w.startswith("core-") for w in who) == 64 * 5
    assert sum(w.startswith("orm-") for w in who) == 64 * 5
    assert "rolled-back" not in who
    assert f"Connections in pool: {POOL_SIZE}" in status
    assert_all_closed(admin, app)  # dispose() closed every session
