"""Primary/standby failover with a multi-host conninfo, against a real primary and streaming standby.

The suite starts both servers itself (``initdb``, ``pg_basebackup -R``), kills
the primary (``-m immediate``) and promotes the standby.  A ``read-write`` pool
serves writes again soon after the promotion, with no failure after its first
success; a pool that wants a standby (or a read-only server) closes what the
promotion turned into a primary, at hand-out and at return, and its callers get
a clear error within their timeout.  On both builds of the core, for threads and
asyncio.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import psycopg
import pytest

from fastpool import AsyncPool, PoolTimeout, Recycle

from .acompat import gather_async, off_loop_async, sleep_async, spawn_async, wait_until_async
from .conftest import check_invariants

pytestmark = pytest.mark.db

#: How far past its deadline a caller may return (the goal is 0.1 s; CI machines stall).
SLACK = 0.5
#: The longest a read-write pool may take to serve writes again after the promotion.
RECOVERY = 3.0


def multi_host(*clusters: Any, target: str) -> str:
    """A conninfo naming every cluster, in order, with ``target_session_attrs``."""
    hosts = ",".join("127.0.0.1" for _ in clusters)
    ports = ",".join(str(c.port) for c in clusters)
    return f"host={hosts} port={ports} dbname=test user=postgres target_session_attrs={target}"


class Log:
    """What each borrow saw: (started, ended, error or None, in recovery, acquire failed, timeout)."""

    def __init__(self) -> None:
        self.rows: list[tuple[float, float, BaseException | None, bool | None, bool, float]] = []
        self.lock = threading.Lock()

    def add(self, *row: Any) -> None:
        with self.lock:
            self.rows.append(row)  # type: ignore[arg-type]


async def writer_async(pool: Any, log: Log, stop: Any, timeout: float) -> None:
    """Insert a row per borrow until ``stop()``; log every borrow."""
    while not stop():
        t0 = time.monotonic()
        acquired = False
        try:
            async with pool.connection(timeout=timeout) as conn:
                acquired = True
                cur = await conn.execute("INSERT INTO t (v) VALUES ('x') RETURNING pg_is_in_recovery()")
                row = await cur.fetchone()
            log.add(t0, time.monotonic(), None, row[0], False, timeout)
        except Exception as exc:
            log.add(t0, time.monotonic(), exc, None, not acquired, timeout)
            await sleep_async(0.01)


@pytest.mark.parametrize("callers", [4, 16])
async def test_read_write_pool_follows_the_promotion(build: str, replicated: Any, callers: int) -> None:
    primary, standby = replicated
    with psycopg.connect(primary.dsn, autocommit=True) as c:
        c.execute("CREATE TABLE t (id serial PRIMARY KEY, v text)")
    conninfo = multi_host(primary, standby, target="read-write")
    pool = AsyncPool(conninfo, min_size=2, max_size=4, recycle=Recycle.VERIFIED, open=False)
    await pool.open(wait=True)
    log = Log()
    done = False
    timeouts = [0.5 + (i % 4) * 0.5 for i in range(callers)]  # 0.5 to 2 s
    workers = [spawn_async(writer_async, pool, log, lambda: done, t) for t in timeouts]
    try:
        await sleep_async(0.5)
        killed = time.monotonic()
        await off_loop_async(primary.down)
        await sleep_async(0.5)  # callers meet the outage, and the standby refuses writes
        promoting = time.monotonic()
        await off_loop_async(standby.promote)
        promoted = time.monotonic()
        assert await wait_until_async(
            lambda: any(r[2] is None and r[0] >= promoted for r in log.rows), timeout=RECOVERY + 5
        )
        await sleep_async(1.5)  # and keep going for a while
    finally:
        done = True
        await gather_async(*workers)
    s = check_invariants(pool)
    await pool.close()
    assert s["in_use"] == 0
    rows = log.rows
    before = [r for r in rows if r[1] < killed]
    assert before and all(r[2] is None for r in before)
    first_ok = min(r[1] for r in rows if r[2] is None and r[0] >= promoted)
    recovery = first_ok - promoted
    assert recovery < RECOVERY, f"writes served again {recovery:.2f} s after the promotion"
    after = [r for r in rows if r[0] >= first_ok]
    failed_after = [r[2] for r in after if r[2] is not None]
    assert not failed_after, f"{len(failed_after)} failed after the first success: {failed_after[0]!r}"
    read_only = [r[2] for r in rows if r[2] is not None and "read-only transaction" in str(r[2])]
    assert not read_only, f"a write ran on a read-only server: {read_only[0]!r}"
    assert not any(r[3] for r in rows), "a borrow ran on a standby"
    overrun = max((r[1] - r[0] - r[5] for r in rows if r[4]), default=0.0)
    assert overrun < SLACK, f"an acquire returned {overrun:.3f} s past its timeout"
    assert all(isinstance(r[2], PoolTimeout) for r in rows if r[4])
    print(
        f"\nfailover ({callers} callers): promotion took {promoted - promoting:.2f} s; writes again "
        f"{recovery:.2f} s after it ({first_ok - killed:.2f} s after the primary died); "
        f"{len(after)} borrows after, 0 failed; worst acquire overrun {max(overrun, 0.0) * 1000:.0f} ms"
    )


@pytest.mark.parametrize("target", ["standby", "read-only"])
async def test_standby_pool_drops_a_promoted_server(build: str, replicated: Any, target: str) -> None:
    primary, standby = replicated
    conninfo = multi_host(primary, standby, target=target)
    pool = AsyncPool(conninfo, min_size=2, max_size=2, recycle=Recycle.VERIFIED, open=False)
    await pool.open(wait=True)
    try:
        async with pool.connection() as conn:
            cur = await conn.execute("SELECT pg_is_in_recovery(), inet_server_port()")
            assert await cur.fetchone() == (True, standby.port)
        await off_loop_async(primary.down)
        await off_loop_async(standby.promote)
        # the idle connections still say "standby" until their next round trip: the
        # hand-out's check is that round trip, and closes them
        for _ in range(3):
            t0 = time.monotonic()
            with pytest.raises(PoolTimeout) as info:
                async with pool.connection(timeout=1.0):
                    pytest.fail("a promoted server was handed out")
            took = time.monotonic() - t0
            assert took < 1.0 + SLACK, f"returned {took - 1.0:.3f} s past its timeout"
            text = str(info.value)
            assert "not in hot standby" in text or "not read-only" in text, text
        s = check_invariants(pool)
        assert s["idle"] == 0 and s["in_use"] == 0
    finally:
        await pool.close()


@pytest.mark.parametrize("recycle", [Recycle.FAST, Recycle.VERIFIED], ids=lambda r: r.name)
async def test_a_connection_promoted_while_borrowed_is_not_handed_to_a_waiter(
    build: str, replicated: Any, recycle: Recycle
) -> None:
    primary, standby = replicated
    pool = AsyncPool(
        multi_host(primary, standby, target="standby"), min_size=1, max_size=1, recycle=recycle, open=False
    )
    await pool.open(wait=True)
    handed: list[Any] = []

    async def waiter() -> None:
        try:
            async with pool.connection(timeout=2.0) as conn:
                cur = await conn.execute("SELECT pg_is_in_recovery()")
                handed.append((await cur.fetchone())[0])
        except PoolTimeout as exc:
            handed.append(exc)

    try:
        async with pool.connection() as conn:
            w = spawn_async(waiter)
            assert await wait_until_async(lambda: pool.stats()["waiting"] == 1)
            await off_loop_async(primary.down)
            await off_loop_async(standby.promote)
            cur = await conn.execute("SELECT pg_is_in_recovery()")  # the server reports the change
            assert await cur.fetchone() == (False,)
        await gather_async(w)
        assert len(handed) == 1 and isinstance(handed[0], PoolTimeout), handed
        s = check_invariants(pool)
        assert s["in_use"] == 0 and s["idle"] == 0
    finally:
        await pool.close()


async def test_read_write_pool_drops_a_server_turned_read_only(build: str, own_cluster: Any) -> None:
    conninfo = f"{own_cluster.dsn} target_session_attrs=read-write"
    pool = AsyncPool(conninfo, min_size=2, max_size=2, recycle=Recycle.VERIFIED, open=False)
    await pool.open(wait=True)
    try:
        async with pool.connection() as conn:
            await conn.execute("SELECT 1")
        with psycopg.connect(own_cluster.dsn, autocommit=True) as admin:
            admin.execute("ALTER SYSTEM SET default_transaction_read_only = on")
            admin.execute("SELECT pg_reload_conf()")
        try:
            await sleep_async(0.2)  # every backend has the signal
            with pytest.raises(PoolTimeout) as info:
                async with pool.connection(timeout=1.0):
                    pytest.fail("a read-only server was handed out")
            assert "read-only" in str(info.value), str(info.value)
            assert pool.stats()["idle"] == 0
        finally:
            with psycopg.connect(own_cluster.dsn, autocommit=True) as admin:
                admin.execute("ALTER SYSTEM RESET default_transaction_read_only")
                admin.execute("SELECT pg_reload_conf()")
        async with pool.connection(timeout=5.0) as conn:  # writable again: new connections
            await conn.execute("CREATE TEMP TABLE x (i int)")
        check_invariants(pool)
    finally:
        await pool.close()
