"""fastpool's features on asyncpg connections, against the real server and the real libraries.

Leadership on advisory locks, ownership and the test sandbox (with a real
Starlette app served over HTTP by uvicorn, its requests joined to each test's
sandbox by ``asgi_middleware``), SQLAlchemy's ``postgresql+asyncpg`` dialect on
``AsyncFastPool``, and ``fastpool.metrics``.
"""

from __future__ import annotations

import asyncio
import socket
import time
from typing import Any

import pytest

import fastpool
from fastpool import AsyncOwnership, AsyncSandbox, LeadershipNotAcquired, SandboxError, Status

from .conftest import backends, check_invariants, count_rows, sqlalchemy_url

asyncpg = pytest.importorskip("asyncpg")

pytestmark = pytest.mark.db


async def test_leadership_on_asyncpg(make_apg: Any, admin: Any) -> None:
    pool = await make_apg(max_size=3)
    other = await make_apg(max_size=1)
    async with pool.leadership("apg-leader") as lead:
        assert lead.backend_pid is not None
        assert await other.try_leadership("apg-leader") is None  # another session: refused
        await lead.check()
        async with lead.connection() as conn:
            assert conn.get_server_pid() == lead.backend_pid
    async with other.leadership("apg-leader", dedicated=True) as lead2:
        assert await lead2.is_held()
        with pytest.raises(LeadershipNotAcquired):
            await pool.leadership("apg-leader").acquire()
    rows = admin.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'").fetchone()
    assert rows == (0,), "every lock released"
    check_invariants(pool)


async def test_ownership_on_asyncpg(make_apg: Any) -> None:
    pool = await make_apg(max_size=2)
    own = AsyncOwnership(pool)
    assert await own.checkout() is Status.OK
    async with own.connection() as conn:
        first = conn.get_server_pid()
        await conn.execute("SET application_name = 'owned'")
    async with own.connection() as conn:
        assert conn.get_server_pid() == first, "the owner keeps its session"
    assert await own.checkin() is Status.OK
    assert check_invariants(pool)["in_use"] == 0


async def test_sandbox_on_asyncpg(make_apg: Any, admin: Any, table: str) -> None:
    pool = await make_apg(max_size=2)
    sb = AsyncSandbox(pool, ownership_timeout=None)
    assert await sb.checkout() is Status.OK
    async with sb.connection() as conn:
        await conn.execute(f"INSERT INTO {table} (v) VALUES ('a')")
    with pytest.raises(ZeroDivisionError):
        async with sb.connection() as conn:  # a savepoint: rolled back to on the exception
            await conn.execute(f"INSERT INTO {table} (v) VALUES ('b')")
            raise ZeroDivisionError
    async with sb.connection() as conn:
        async with conn.transaction():  # nests as a savepoint in the sandbox transaction
            await conn.execute(f"INSERT INTO {table} (v) VALUES ('c')")
        assert [r[0] for r in await conn.fetch(f"SELECT v FROM {table} ORDER BY id")] == ["a", "c"]
        assert count_rows(admin, table) == 0, "nothing visible outside the sandbox"
    assert await sb.checkin() is Status.OK
    assert count_rows(admin, table) == 0, "rolled back at checkin"
    assert await sb.checkout() is Status.OK
    with pytest.raises(SandboxError, match="already committed"):
        async with sb.connection() as conn:
            await conn.execute("COMMIT")  # the code under test escapes the sandbox: said at once
    with pytest.raises(SandboxError, match="already committed"):
        await sb.checkin()  # (and the connection is discarded)
    await asyncio.sleep(0.05)
    assert check_invariants(pool)["in_use"] == 0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_a_starlette_app_served_over_http_joins_each_tests_sandbox(
    build: str, dsn: str, admin: Any, table: str, app_name: str
) -> None:
    """Two "tests" at once against one real Starlette app on asyncpg: each sees only its rows."""
    httpx = pytest.importorskip("httpx")
    uvicorn = pytest.importorskip("uvicorn")
    pytest.importorskip("starlette")
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, PlainTextResponse
    from starlette.routing import Route

    from fastpool.sandbox import asgi_middleware

    kwargs = {"server_settings": {"application_name": app_name}}
    pool = fastpool.AsyncPool(dsn, driver="asyncpg", max_size=4, kwargs=kwargs)
    sb = AsyncSandbox(pool)
    db: Any = sb  # the app's database: the pool in production, the sandbox under test

    async def items(request: Request) -> Any:
        try:
            async with db.connection() as conn:
                if request.method == "POST":
                    await conn.execute(f"INSERT INTO {table} (v) VALUES ($1)", request.path_params["v"])
                rows = await conn.fetch(f"SELECT v FROM {table} ORDER BY id")
        except fastpool.OwnershipError as exc:
            return PlainTextResponse(str(exc), status_code=403)
        return JSONResponse([r["v"] for r in rows])

    app = Starlette(routes=[Route("/items", items), Route("/items/{v}", items, methods=["POST"])])
    port = _free_port()
    config = uvicorn.Config(
        asgi_middleware(app, sb), host="127.0.0.1", port=port, log_level="warning", lifespan="off"
    )
    server = uvicorn.Server(config)
    serving = asyncio.create_task(server.serve())
    try:
        while not server.started:
            await asyncio.sleep(0.01)
        url = f"http://127.0.0.1:{port}"

        async def one_test(tag: str, client: Any) -> tuple[list[str], list[str]]:
            async with sb.start_owner(name=tag) as owner:
                headers = {"X-Fastpool-Sandbox": owner.token()}
                for i in range(3):
                    r = await client.post(f"{url}/items/{tag}-{i}", headers=headers)
                    assert r.status_code == 200, r.text
                    await asyncio.sleep(0)  # interleave the two tests' requests
                async with sb.connection() as conn:  # the test sees what the app wrote
                    mine = [r["v"] for r in await conn.fetch(f"SELECT v FROM {table} ORDER BY id")]
                seen = (await client.get(f"{url}/items", headers=headers)).json()
            return seen, mine

        async with httpx.AsyncClient(timeout=20) as client:
            left, right = await asyncio.gather(one_test("left", client), one_test("right", client))
            assert left == ([f"left-{i}" for i in range(3)],) * 2
            assert right == ([f"right-{i}" for i in range(3)],) * 2
            r = await client.get(f"{url}/items")  # no token: no sandbox to join
            assert r.status_code == 403
        assert count_rows(admin, table) == 0, "every test's writes rolled back"
    finally:
        server.should_exit = True
        await serving
        await pool.close()
    deadline = time.monotonic() + 5
    while backends(admin, app_name) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert not backends(admin, app_name)


async def test_sqlalchemy_asyncpg_dialect_on_async_fast_pool(build: str, dsn: str, table: str) -> None:
    sa = pytest.importorskip("sqlalchemy")
    from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine
    from sqlalchemy.orm import DeclarativeBase, mapped_column

    from fastpool.sqlalchemy import AsyncFastPool

    class Base(DeclarativeBase):
        pass

    class Item(Base):
        __tablename__ = table
        id = mapped_column(sa.Integer, primary_key=True)
        v = mapped_column(sa.Text, nullable=True)

    engine = create_async_engine(
        sqlalchemy_url(dsn, "postgresql+asyncpg"),  # the test's database, which holds its table
        poolclass=AsyncFastPool,
        pool_size=4,
        max_overflow=0,
        pool_pre_ping=True,
    )
    sessions = async_sessionmaker(engine, class_=AsyncSession, expire_on_commit=False)
    try:

        async def worker(i: int) -> None:
            async with engine.connect() as conn:  # Core
                assert (await conn.execute(sa.text("SELECT CAST(:x AS int)"), {"x": i})).scalar() == i
            async with sessions() as session, session.begin():  # the ORM
                session.add(Item(v=f"w{i}"))

        await asyncio.gather(*(worker(i) for i in range(64)))
        pool = engine.pool
        assert pool.checkedout() == 0 and pool.size() == 4
        assert pool.checkedin() <= 4
        async with sessions() as session:
            n = (await session.execute(sa.select(sa.func.count()).select_from(Item))).scalar()
        assert n == 64
        # pre-ping on a terminated backend: the next checkout gets a fresh connection
        async with engine.connect() as conn:
            pid = (await conn.execute(sa.text("SELECT pg_backend_pid()"))).scalar()
        async with engine.connect() as other:
            await other.execute(sa.text("SELECT pg_terminate_backend(:p)"), {"p": pid})
        async with engine.connect() as conn:
            assert (await conn.execute(sa.text("SELECT pg_backend_pid()"))).scalar() != pid
    finally:
        await engine.dispose()


async def test_metrics_on_asyncpg(make_apg: Any) -> None:
    prometheus_client = pytest.importorskip("prometheus_client")
    from fastpool.metrics import PrometheusCollector

    pool = await make_apg(max_size=2, name="apg-metrics")
    for _ in range(5):
        async with pool.connection() as conn:
            await conn.fetchval("SELECT 1")
    registry = prometheus_client.CollectorRegistry()
    registry.register(PrometheusCollector(pool))
    text = prometheus_client.generate_latest(registry).decode()
    assert 'pool_name="apg-metrics"' in text and "db_client_connection" in text
