"""psycopg_pool's documented asyncio usage, run unchanged against fastpool.AsyncConnectionPool."""

from __future__ import annotations

import asyncio
from types import ModuleType
from typing import Any

import pytest

import fastpool
from fastpool import _core_select

from .conftest import backends, check_invariants, load_twin, wait_until

pytestmark = [pytest.mark.db, pytest.mark.asyncio]


@pytest.fixture(params=["fastpool-core=c", "fastpool-core=python", "psycopg_pool"])
def poolmod(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """The module the examples import ``AsyncConnectionPool`` (and errors) from."""
    if request.param == "psycopg_pool":
        return pytest.importorskip("psycopg_pool")
    monkeypatch.setattr(_core_select, "core", load_twin(request.param.rsplit("=", 1)[1]))
    return fastpool


@pytest.fixture
def conninfo(dsn: str, app_name: str) -> str:
    return f"{dsn} application_name={app_name}"


async def test_basic_usage(poolmod: ModuleType, conninfo: str) -> None:
    AsyncConnectionPool = poolmod.AsyncConnectionPool
    async with AsyncConnectionPool(conninfo, open=False) as pool, pool.connection() as conn:
        await conn.execute("SELECT 1")
        async with conn.cursor() as cur:
            await cur.execute("SELECT 2")
            assert await cur.fetchone() == (2,)


async def test_open_wait_getconn_putconn_stats(
    poolmod: ModuleType, conninfo: str, admin: Any, app_name: str
) -> None:
    AsyncConnectionPool = poolmod.AsyncConnectionPool
    pool = AsyncConnectionPool(conninfo, min_size=2, open=False)
    with pytest.raises(poolmod.PoolClosed):
        await pool.getconn(timeout=0.1)
    await pool.open(wait=True, timeout=10)
    conn = await pool.getconn()
    try:
        await conn.execute("SELECT 1")
    finally:
        await pool.putconn(conn)
    stats = pool.get_stats()
    assert stats["pool_size"] == 2 and stats["requests_num"] >= 1
    await pool.check()
    await pool.resize(3)
    assert await asyncio.to_thread(wait_until, lambda: len(backends(admin, app_name)) == 3)
    await pool.close()
    assert await asyncio.to_thread(wait_until, lambda: backends(admin, app_name) == set())


async def test_async_callbacks(poolmod: ModuleType, conninfo: str) -> None:
    AsyncConnectionPool = poolmod.AsyncConnectionPool

    async def configure(conn: Any) -> None:
        await conn.set_autocommit(True)

    async with (
        AsyncConnectionPool(
            conninfo, min_size=1, configure=configure, check=AsyncConnectionPool.check_connection, open=False
        ) as pool,
        pool.connection() as conn,
    ):
        assert conn.autocommit is True


async def test_timeouts(poolmod: ModuleType, conninfo: str) -> None:
    AsyncConnectionPool = poolmod.AsyncConnectionPool
    async with AsyncConnectionPool(conninfo, min_size=1, max_size=1, timeout=0.2, open=False) as pool:
        held = await pool.getconn()
        with pytest.raises(poolmod.PoolTimeout):
            await pool.getconn()
        await pool.putconn(held)
        if poolmod is fastpool:
            check_invariants(pool)
