"""Faults on the path to the server: a partition (a loopback proxy that stops forwarding).

Every acquire returns or raises within its timeout, whatever phase the
partition hits; the return path is bounded by ``release_timeout``; nothing
leaks.  On both builds of the core, for threads and asyncio.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict

from fastpool import AsyncPool, ConnectionMetadata, PoolTimeout, Recycle

from .acompat import skip_sync, sleep_async, wait_until_async
from .conftest import check_invariants
from .proxy import Proxy

pytestmark = pytest.mark.db

#: How far past its deadline a caller may return (the goal is 0.1 s; CI machines stall).
SLACK = 0.25


@pytest.fixture
def proxy(dsn: str) -> Iterator[Proxy]:
    params = conninfo_to_dict(dsn)
    with Proxy(int(params.get("port") or 5432), str(params.get("host") or "127.0.0.1")) as p:
        yield p


async def select_one_async(conn: Any, meta: ConnectionMetadata | None = None) -> bool:
    await conn.execute("SELECT 1")
    return True


@pytest.mark.parametrize("phase", ["verified", "verify_after", "before_acquire"])
async def test_partition_bounds_every_acquire_phase(make_pool_async: Any, proxy: Proxy, phase: str) -> None:
    kw: dict[str, Any] = {"max_size": 1, "acquire_timeout": 5}
    if phase == "verified":
        kw["recycle"] = Recycle.VERIFIED
    elif phase == "verify_after":
        kw["verify_after"] = 0.2
    else:
        kw["before_acquire"] = select_one_async
    pool = await make_pool_async(conninfo=proxy.dsn(), **kw)
    async with pool.connection():
        pass
    await sleep_async(0.3)
    proxy.freeze()
    t0 = time.monotonic()
    with pytest.raises(PoolTimeout):
        await pool.acquire(timeout=1)
    overrun = time.monotonic() - t0 - 1
    assert overrun < SLACK, f"returned {overrun:.3f} s past its deadline"
    s = check_invariants(pool)
    assert s["in_use"] == 0
    proxy.thaw()
    async with pool.connection(timeout=10) as conn:  # the pool recovers on its own
        assert await select_one_async(conn)
    check_invariants(pool)


async def test_partition_during_after_connect(make_pool_async: Any, proxy: Proxy) -> None:
    frozen_once: list[bool] = []

    async def freeze_then_query(conn: Any, meta: ConnectionMetadata) -> None:
        if not frozen_once:
            frozen_once.append(True)
            proxy.freeze()  # the partition starts while the hook runs
        await conn.execute("SELECT 1")

    pool = await make_pool_async(
        conninfo=proxy.dsn(), max_size=1, open=False, after_connect=freeze_then_query, acquire_timeout=1
    )
    t0 = time.monotonic()
    with pytest.raises(PoolTimeout):
        await pool.acquire(timeout=1)
    assert time.monotonic() - t0 - 1 < SLACK
    proxy.thaw()
    # the hook was cut off at its own deadline; the pool connects again
    async with pool.connection(timeout=10) as conn:
        assert await select_one_async(conn)
    check_invariants(pool)


async def test_partition_bounds_the_return(make_pool_async: Any, proxy: Proxy) -> None:
    pool = await make_pool_async(conninfo=proxy.dsn(), max_size=1, release_timeout=1)
    t0 = time.monotonic()
    with pytest.raises(psycopg.OperationalError):
        async with pool.connection() as conn:
            await conn.execute("SELECT 1")  # a transaction is open: the block's end commits
            proxy.freeze()
            t0 = time.monotonic()
    assert time.monotonic() - t0 - 1 < SLACK, "the commit is bounded by release_timeout"
    s = check_invariants(pool)
    assert s["in_use"] == 0 and s["idle"] == 0
    proxy.thaw()
    async with pool.connection(timeout=10) as conn:
        assert await select_one_async(conn)


async def test_partition_does_not_hold_up_close(make_pool_async: Any, proxy: Proxy) -> None:
    pool = await make_pool_async(conninfo=proxy.dsn(), max_size=2, min_size=2)
    pc = await pool.acquire()
    proxy.freeze()
    t0 = time.monotonic()
    await pool.close(timeout=0.5)
    assert time.monotonic() - t0 < 0.5 + 1 + SLACK
    t0 = time.monotonic()
    await pc.release()  # back after close: closed, without waiting on the dead path
    assert time.monotonic() - t0 < SLACK
    assert await wait_until_async(lambda: pc.connection.closed)


@skip_sync
async def test_cancelled_acquire_under_partition_returns_at_once(make_pool_async: Any, proxy: Proxy) -> None:
    # psycopg answers a cancelled query by sending a cancel request and waiting for it (5 s on a
    # dead path); the pool never lets a caller's cancellation reach it
    pool = await make_pool_async(
        conninfo=proxy.dsn(), max_size=1, recycle=Recycle.VERIFIED, acquire_timeout=10
    )
    async with pool.connection():
        pass
    proxy.freeze()
    t0 = time.monotonic()
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(pool.acquire(), 0.5)
    assert time.monotonic() - t0 - 0.5 < SLACK
    s = check_invariants(pool)
    assert s["in_use"] == 0


# -- the server down: fail fast, then recover with no user action -------------------------------


async def test_breaker_fails_fast_while_down_and_recovers(build: str, own_cluster: Any) -> None:
    port = str(conninfo_to_dict(own_cluster.dsn)["port"])
    pool = AsyncPool(own_cluster.dsn, min_size=0, max_size=2, fail_fast_after=1.0, acquire_timeout=10)
    try:
        async with pool.connection() as conn:
            await conn.execute("SELECT 1")
        own_cluster.down()
        t0 = time.monotonic()
        with pytest.raises(PoolTimeout):  # queued while connects fail, until the breaker opens
            await pool.acquire()
        assert time.monotonic() - t0 < 1 + 1 + SLACK, "a queued caller is failed when the breaker opens"
        for _ in range(5):
            t0 = time.monotonic()
            with pytest.raises(PoolTimeout) as ei:
                await pool.acquire()
            assert time.monotonic() - t0 < 0.2, "refused at once while the breaker is open"
            msg = str(ei.value)
            assert "127.0.0.1" in msg and port in msg and "fail_fast_after" in msg
            assert isinstance(ei.value.__cause__, psycopg.OperationalError)
            assert str(ei.value.__cause__).split(":")[0] in msg
            await sleep_async(0.1)
        s = pool.stats()
        assert s["breaker_open"] and s["failing_for"] >= 1.0
        own_cluster.up()
        back = time.monotonic()
        served = None
        while time.monotonic() - back < 10:  # callers keep coming, as a web server's would
            try:
                async with pool.connection(timeout=0.5) as conn:
                    await conn.execute("SELECT 1")
                served = time.monotonic() - back
                break
            except PoolTimeout:
                await sleep_async(0.05)
        assert served is not None and served < 2.0, f"served again {served} s after the server's return"
        assert not pool.stats()["breaker_open"]
        check_invariants(pool)
    finally:
        await pool.close()
        if own_cluster.is_down():
            own_cluster.up()


@pytest.mark.parametrize(
    ("extra", "says"),
    [
        ("dbname=fastpool_no_such_db", "does not exist"),
        ("user=fastpool_no_such_role", "does not exist"),
        ("sslmode=bogus", "bogus"),
        ("port=notaport", "notaport"),
    ],
)
async def test_permanent_errors_fail_the_first_acquirer_at_once(
    build: str, dsn: str, extra: str, says: str
) -> None:
    pool = AsyncPool(f"{dsn} {extra}", open=False, acquire_timeout=10)
    try:
        t0 = time.monotonic()
        with pytest.raises(PoolTimeout) as ei:
            await pool.acquire()
        assert time.monotonic() - t0 < 1.0
        assert isinstance(ei.value.__cause__, psycopg.OperationalError)
        assert says in str(ei.value.__cause__) and says in str(ei.value)
    finally:
        await pool.close()
    t0 = time.monotonic()
    with pytest.raises(PoolTimeout) as ei:  # an eager open fails as fast
        await AsyncPool.connect(f"{dsn} {extra}", acquire_timeout=10)
    assert time.monotonic() - t0 < 1.0
    assert says in str(ei.value)
