"""The pytest plugin, run in a child pytest, on both builds."""

from __future__ import annotations

import textwrap
from typing import Any

import pytest

pytestmark = pytest.mark.db

pytest_plugins = ["pytester"]

CONFTEST = """
import pytest, pytest_asyncio, fastpool

DSN = {dsn!r}

@pytest.fixture(scope="session")
def fastpool_pool():
    with fastpool.Pool(DSN, max_size=4) as pool:
        yield pool

@pytest_asyncio.fixture
async def fastpool_async_pool():
    async with fastpool.AsyncPool(DSN, max_size=4) as pool:
        yield pool

@pytest.fixture(scope="session", autouse=True)
def table():
    import psycopg
    with psycopg.connect(DSN, autocommit=True) as c:
        c.execute("CREATE TABLE IF NOT EXISTS {table} (v text)")
    yield
"""

TESTS = """
import asyncio, threading, pytest, pytest_asyncio, fastpool
from fastpool import AsyncSandbox, Sandbox

pytestmark = pytest.mark.asyncio

def rows(conn):
    return [r[0] for r in conn.execute("SELECT v FROM {table}")]

def test_sync_a(fastpool_sandbox, fastpool_pool):
    sb = Sandbox.for_pool(fastpool_pool)
    with sb.connection() as conn:  # found through the callers chain / allowance
        conn.execute("INSERT INTO {table} VALUES ('a')")
        assert rows(conn) == ["a"]

def test_sync_b_sees_nothing_of_a(fastpool_sandbox):
    with fastpool_sandbox.connection() as conn:
        assert rows(conn) == []

def test_shared_any_thread(fastpool_sandbox_shared, fastpool_pool):
    sb = Sandbox.for_pool(fastpool_pool)
    out = []
    def worker():
        with sb.connection() as conn:
            out.append(conn.info.backend_pid)
    t = threading.Thread(target=worker); t.start(); t.join()
    with fastpool_sandbox_shared.connection() as conn:
        assert out == [conn.info.backend_pid]

@pytest_asyncio.fixture
async def seeded(fastpool_async_sandbox):
    # an async fixture runs in a task that ends after its yield: the owner is a handle
    async with fastpool_async_sandbox.connection() as conn:
        await conn.execute("INSERT INTO {table} VALUES ('seed')")
        return conn.info.backend_pid

async def test_async_fixture_and_test_share_the_sandbox(seeded, fastpool_async_pool):
    sb = AsyncSandbox.for_pool(fastpool_async_pool)
    async with sb.connection() as conn:
        assert conn.info.backend_pid == seeded
        cur = await conn.execute("SELECT v FROM {table}")
        assert [r[0] for r in await cur.fetchall()] == ["seed"]
    child = await asyncio.create_task(_pid(sb))
    assert child == seeded

async def _pid(sb):
    async with sb.connection() as conn:
        return conn.info.backend_pid

async def test_async_shared_fallback(fastpool_async_sandbox_shared, fastpool_async_pool):
    sb = AsyncSandbox.for_pool(fastpool_async_pool)
    async with fastpool_async_sandbox_shared.connection() as conn:
        mine = conn.info.backend_pid
    assert await asyncio.get_running_loop().create_task(_pid(sb)) == mine

async def test_async_nothing_left(fastpool_async_sandbox):
    async with fastpool_async_sandbox.connection() as conn:
        cur = await conn.execute("SELECT count(*) FROM {table}")
        assert (await cur.fetchone()) == (0,)

def test_without_a_sandbox_manual_mode_refuses(fastpool_pool):
    sb = Sandbox.for_pool(fastpool_pool)
    with pytest.raises(fastpool.OwnershipError):
        with sb.connection():
            pass
"""


def test_plugin_fixtures_in_a_child_pytest(
    pytester: Any, dsn: str, build: str, admin: Any, monkeypatch: Any
) -> None:
    table = f"plugin_{build}"
    admin.execute(f"DROP TABLE IF EXISTS {table}")
    if build == "python":
        monkeypatch.setenv("FASTPOOL_NO_EXTENSIONS", "1")
    else:
        monkeypatch.delenv("FASTPOOL_NO_EXTENSIONS", raising=False)
    pytester.makeconftest(textwrap.dedent(CONFTEST.format(dsn=dsn, table=table)))
    pytester.makepyfile(test_app=TESTS.format(table=table))
    pytester.makeini("[pytest]\nasyncio_default_fixture_loop_scope = function\n")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-q", timeout=120)
    result.assert_outcomes(passed=7)
    assert admin.execute(f"SELECT count(*) FROM {table}").fetchone() == (0,)
    admin.execute(f"DROP TABLE {table}")


def test_missing_pool_fixture_says_what_to_define(pytester: Any) -> None:
    pytester.makepyfile(test_x="def test_x(fastpool_sandbox):\n    pass\n")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-q", timeout=60)
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*needs a `fastpool_pool` fixture*"])
