"""The asyncio pools, on both twins: behaviour, cancellation safety, the real server."""

from __future__ import annotations

import asyncio
import gc
import itertools
import logging
import random
import threading
import time
import warnings
from collections.abc import AsyncIterator
from typing import Any

import psycopg
import pytest
import pytest_asyncio

import fastpool
from fastpool import AsyncPool, AsyncResourcePool, ConnectionMetadata, PoolClosed, PoolTimeout

from .conftest import backends, check_invariants

STORM_KEYS = ("cancelled_waits", "discarded", "connects", "handoffs", "timeouts")


class ARes:
    """An async resource whose health check and create can be made slow or failing."""

    serial = itertools.count(1)
    check_sleep = 0.0
    check_fails = False
    needs = False
    create_sleep = 0.0

    def __init__(self) -> None:
        self.id = next(ARes.serial)
        self.closed = False

    @classmethod
    async def create(cls, ctx: Any) -> ARes:
        if ctx["create_sleep"]:
            await asyncio.sleep(ctx["create_sleep"])
        r = cls()
        ctx["created"].append(r)
        return r

    def needs_health_check(self, ctx: Any, meta: ConnectionMetadata) -> bool:
        return bool(ctx["needs"])

    async def health_check(self, ctx: Any) -> None:
        if ctx["check_sleep"]:
            await asyncio.sleep(ctx["check_sleep"])
        if ctx["check_fails"]:
            raise ConnectionError("unhealthy")

    async def close(self) -> None:
        assert not self.closed
        self.closed = True


@pytest.fixture
def actx() -> dict[str, Any]:
    return {"created": [], "needs": False, "check_sleep": 0.0, "check_fails": False, "create_sleep": 0.0}


@pytest_asyncio.fixture
async def apools(twin: str) -> AsyncIterator[list[Any]]:
    pools: list[Any] = []
    yield pools
    for p in pools:
        await p.close(timeout=1.0)


def live(actx: dict[str, Any]) -> list[ARes]:
    return [r for r in actx["created"] if not r.closed]


@pytest.mark.asyncio
async def test_borrow_three_ways(apools: list[Any], actx: dict[str, Any]) -> None:
    pool: AsyncResourcePool[ARes] = AsyncResourcePool(ARes, actx, max_size=2)
    apools.append(pool)
    async with pool.connection() as r:
        assert isinstance(r, ARes)
    async with pool.acquire() as r2:
        assert r2 is r
    pc = await pool.acquire()
    assert pc.connection is r
    await pc.release()
    s = check_invariants(pool)
    assert s["in_use"] == 0 and s["idle"] == 1 and s["connects"] == 1


@pytest.mark.asyncio
async def test_created_outside_a_loop_and_wrong_loop(twin: str, actx: dict[str, Any]) -> None:
    box: dict[str, Any] = {}

    def other_thread() -> None:
        pool = AsyncResourcePool(ARes, actx, max_size=1)  # no loop running here

        async def use() -> None:
            async with pool.connection():
                pass

        asyncio.run(use())
        box["pool"] = pool

    t = threading.Thread(target=other_thread)
    t.start()
    t.join()
    pool = box["pool"]
    with pytest.raises(RuntimeError, match="another event loop"):
        async with pool.connection(timeout=0.1):
            pass


@pytest.mark.asyncio
async def test_timeout_names_the_phase(apools: list[Any], actx: dict[str, Any]) -> None:
    pool = AsyncResourcePool(ARes, actx, max_size=1)
    apools.append(pool)
    held = await pool.acquire()
    with pytest.raises(PoolTimeout, match=r"waiting for a connection \(max_size=1, in use=1\)"):
        await pool.acquire(timeout=0.1)
    await held.release()
    s = check_invariants(pool)
    assert s["waiting"] == 0 and s["idle"] == 1 and s["timeouts"] == 1


@pytest.mark.asyncio
async def test_deadlines_keep_their_time(apools: list[Any], actx: dict[str, Any]) -> None:
    """Queued waiters share one deadline timer; a shorter deadline after a longer one still fires."""
    pool = AsyncResourcePool(ARes, actx, max_size=1)
    apools.append(pool)
    held = await pool.acquire()
    long_waiter = asyncio.ensure_future(pool.acquire(timeout=30))  # arms the shared timer at +30 s
    await asyncio.sleep(0.01)
    await held.release()  # served at once: its deadline entry is gone, the timer still set far away
    got = await long_waiter
    t0 = time.monotonic()
    with pytest.raises(PoolTimeout):
        await pool.acquire(timeout=0.2)  # queue empty again: must not wait for the old timer
    assert time.monotonic() - t0 < 2.0
    slow = asyncio.ensure_future(pool.acquire(timeout=5))
    await asyncio.sleep(0.01)
    t0 = time.monotonic()
    with pytest.raises(PoolTimeout):
        await pool.acquire(timeout=0.2)  # shorter than the waiter before it: its own timer
    assert time.monotonic() - t0 < 2.0
    await got.release()
    await (await slow).release()
    s = check_invariants(pool)
    assert s["waiting"] == 0 and s["in_use"] == 0


@pytest.mark.asyncio
async def test_waiters_served_fifo(apools: list[Any], actx: dict[str, Any]) -> None:
    pool = AsyncResourcePool(ARes, actx, max_size=1)
    apools.append(pool)
    held = await pool.acquire()
    order: list[int] = []

    async def waiter(i: int) -> None:
        async with pool.connection():
            order.append(i)

    tasks = []
    for i in range(200):
        tasks.append(asyncio.create_task(waiter(i)))
        await asyncio.sleep(0)
    await held.release()
    await asyncio.gather(*tasks)
    assert order == list(range(200))


@pytest.mark.asyncio
async def test_cancelled_waiter_passes_the_connection_on(apools: list[Any], actx: dict[str, Any]) -> None:
    pool = AsyncResourcePool(ARes, actx, max_size=1)
    apools.append(pool)
    held = await pool.acquire()
    first = asyncio.ensure_future(pool.acquire(timeout=5))  # an awaitable, like asyncpg's
    second = asyncio.ensure_future(pool.acquire(timeout=5))
    await asyncio.sleep(0.01)
    # hand the connection to `first` and cancel it in the same instant
    await held.release()
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    pc = await asyncio.wait_for(second, 1)
    await pc.release()
    check_invariants(pool)


@pytest.mark.asyncio
async def test_health_check_cancelled_discards_the_resource(apools: list[Any], actx: dict[str, Any]) -> None:
    # T003-04 on a plain async resource: many repetitions, nothing leaks
    pool = AsyncResourcePool(ARes, actx, max_size=2, min_size=2)
    apools.append(pool)
    await pool.open()
    actx["needs"] = True
    actx["check_sleep"] = 1.0
    for _ in range(100):
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(pool.acquire(timeout=5), 0.01)
    s = check_invariants(pool)
    assert s["in_use"] == 0
    assert len(live(actx)) <= 2
    actx["needs"] = False
    held = [await pool.acquire(timeout=5) for _ in range(2)]
    for h in held:
        await h.release()


@pytest.mark.asyncio
async def test_cancellation_storm_on_a_plain_resource(apools: list[Any], actx: dict[str, Any]) -> None:
    actx["create_sleep"] = 0.002
    pool = AsyncResourcePool(ARes, actx, max_size=4, max_lifetime=0.2, idle_timeout=None)
    apools.append(pool)
    in_use: set[int] = set()
    rnd = random.Random(7)

    async def borrower() -> None:
        for _ in range(20):
            async with pool.connection() as r:
                assert r.id not in in_use, "handed out twice"
                in_use.add(r.id)
                await asyncio.sleep(0)
                in_use.discard(r.id)

    async def victim() -> None:
        async with pool.connection() as r:
            in_use.add(r.id)
            try:
                await asyncio.sleep(rnd.random() * 0.002)
            finally:
                in_use.discard(r.id)

    normal = [asyncio.create_task(borrower()) for _ in range(16)]
    for _ in range(2000):
        t = asyncio.create_task(victim())
        if rnd.random() < 0.5:
            await asyncio.sleep(0)
        if rnd.random() < 0.7:
            t.cancel()
        if rnd.random() < 0.3:
            try:
                await asyncio.wait_for(pool.acquire(timeout=5), rnd.random() * 0.001)
            except TimeoutError:
                pass
            else:  # pragma: no cover - acquired before the deadline: give it back
                pass
    await asyncio.gather(*normal)
    await asyncio.sleep(0.05)
    gc.collect()
    s = check_invariants(pool)
    assert s["size"] <= 4
    print(
        "storm stats:",
        {k: s[k] for k in ("cancelled_waits", "discarded", "connects", "handoffs", "timeouts")},
    )
    assert s["cancelled_waits"] > 100 and s["connects"] > 4
    held = [await pool.acquire(timeout=5) for _ in range(4)]
    assert len({h.connection.id for h in held}) == 4
    for h in held:
        await h.release()
    assert len(live(actx)) <= 4


@pytest.mark.asyncio
async def test_cancelled_releaser_frees_the_slot(apools: list[Any], actx: dict[str, Any]) -> None:
    entered = asyncio.Event()

    async def slow_release(r: ARes, meta: ConnectionMetadata) -> bool:
        if not entered.is_set():
            entered.set()
            await asyncio.sleep(10)  # cancelled long before
        return True

    pool = AsyncResourcePool(ARes, actx, max_size=1, after_release=slow_release)
    apools.append(pool)

    async def borrow() -> None:
        async with pool.connection():
            pass

    t = asyncio.create_task(borrow())
    await entered.wait()
    t.cancel()
    with pytest.raises(asyncio.CancelledError):
        await t
    s = check_invariants(pool)
    assert s["in_use"] == 0 and s["size"] == 0, "the interrupted connection was discarded (R1)"
    async with pool.connection(timeout=1):
        pass


@pytest.mark.asyncio
async def test_close_wakes_waiters(apools: list[Any], actx: dict[str, Any]) -> None:
    pool = AsyncResourcePool(ARes, actx, max_size=1)
    held = await pool.acquire()
    waiter = asyncio.ensure_future(pool.acquire(timeout=5))
    await asyncio.sleep(0.01)
    closer = asyncio.create_task(pool.close(timeout=1))
    with pytest.raises(PoolClosed):
        await asyncio.wait_for(waiter, 0.5)
    r = held.connection
    await held.release()
    await closer
    await asyncio.sleep(0.01)
    assert r.closed
    with pytest.raises(PoolClosed):
        await pool.acquire()


@pytest.mark.asyncio
async def test_unreleased_connection_is_reclaimed(apools: list[Any], actx: dict[str, Any]) -> None:
    pool = AsyncResourcePool(ARes, actx, max_size=1)
    apools.append(pool)
    pc = await pool.acquire()
    r = pc.connection
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        del pc
        gc.collect()
    assert any(issubclass(x.category, ResourceWarning) for x in w)
    async with pool.connection(timeout=2) as r2:
        assert r2 is not r
    assert r.closed


@pytest.mark.asyncio
async def test_async_hooks(apools: list[Any], actx: dict[str, Any]) -> None:
    calls: list[str] = []

    async def after_connect(r: ARes, meta: ConnectionMetadata) -> None:
        calls.append("connect")

    async def before_acquire(r: ARes, meta: ConnectionMetadata) -> bool:
        calls.append("before")
        return True

    def after_release(r: ARes, meta: ConnectionMetadata) -> bool:  # a plain callable works too
        calls.append("release")
        return True

    pool = AsyncResourcePool(
        ARes,
        actx,
        max_size=1,
        after_connect=after_connect,
        before_acquire=before_acquire,
        after_release=after_release,
    )
    apools.append(pool)
    async with pool.connection():
        pass
    async with pool.connection():
        pass
    assert calls == ["connect", "release", "before", "release"]


# -- psycopg on the real server ---------------------------------------------------------------


async def pid(conn: Any) -> int:
    cur = await conn.execute("SELECT pg_backend_pid()")
    row = await cur.fetchone()
    return int(row[0])


@pytest.mark.db
@pytest.mark.asyncio
async def test_pg_borrow_commit_rollback(apool: Any, admin: Any) -> None:
    admin.execute("CREATE TABLE IF NOT EXISTS fastpool_async (id int, tag text)")
    tag = f"t{time.monotonic_ns()}"
    pool = apool(max_size=2)
    await pool.open()
    async with pool.connection() as conn:
        await conn.execute("INSERT INTO fastpool_async VALUES (1, %s)", (tag,))
    with pytest.raises(ZeroDivisionError):
        async with pool.connection() as conn:
            await conn.execute("INSERT INTO fastpool_async VALUES (2, %s)", (tag,))
            1 / 0  # noqa: B018
    async with pool.acquire() as conn:
        await conn.execute("INSERT INTO fastpool_async VALUES (3, %s)", (tag,))  # rolled back on release
    rows = admin.execute("SELECT id FROM fastpool_async WHERE tag = %s", (tag,)).fetchall()
    assert rows == [(1,)]
    admin.execute("DELETE FROM fastpool_async WHERE tag = %s", (tag,))


@pytest.mark.db
@pytest.mark.asyncio
async def test_pg_eager_open_failure_names_the_host(twin: str) -> None:
    with pytest.raises(PoolTimeout, match=r"127\.0\.0\.1:1") as ei:
        await AsyncPool.connect("host=127.0.0.1 port=1 dbname=x user=x password=s3cret", acquire_timeout=0.5)
    assert "s3cret" not in str(ei.value)


@pytest.mark.db
@pytest.mark.asyncio
async def test_pg_terminated_backend_and_state_restore(apool: Any, admin: Any) -> None:
    pool = apool(max_size=1)
    async with pool.connection() as conn:
        await conn.set_autocommit(True)
        p1 = await pid(conn)
    admin.execute("SELECT pg_terminate_backend(%s)", (p1,))
    await asyncio.sleep(0.1)
    async with pool.connection() as conn:
        assert await pid(conn) != p1, "the probe caught the terminated backend"
        assert conn.autocommit is False


@pytest.mark.db
@pytest.mark.asyncio
async def test_pg_wait_for_storm_then_full_capacity(apool: Any, admin: Any, app_name: str) -> None:
    # T004-11
    pool = apool(max_size=4)

    async def busy() -> None:
        for _ in range(30):
            async with pool.connection() as conn:
                await conn.execute("SELECT 1")

    load = [asyncio.create_task(busy()) for _ in range(8)]
    for _ in range(2000):
        try:
            pc = await asyncio.wait_for(pool.acquire(), 0.001)
        except TimeoutError:
            continue
        await pc.release()
    await asyncio.gather(*load)
    held = await asyncio.gather(*(pool.acquire(timeout=5) for _ in range(4)))
    assert len({id(h.connection) for h in held}) == 4
    for h in held:
        await h.release()
    assert len(backends(admin, app_name)) <= 4
    check_invariants(pool)


@pytest.mark.db
@pytest.mark.asyncio
async def test_pg_health_check_with_pg_sleep_cancelled(apool: Any, admin: Any, app_name: str) -> None:
    # T003-04 with the real driver: a check running pg_sleep(1) is cancelled mid-query
    async def slow_check(conn: Any, meta: ConnectionMetadata) -> bool:
        await conn.execute("SELECT pg_sleep(1)")
        return True

    pool = apool(max_size=2, before_acquire=slow_check)
    for _ in range(10):
        async with pool.connection():  # a new connection (no check), idle afterwards
            pass
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(pool.acquire(), 0.05)  # the idle one is checked: too slow
        s = check_invariants(pool)
        assert s["in_use"] == 0 and s["size"] <= 2
    assert pool.stats()["discarded"] >= 10
    await asyncio.sleep(1.2)  # the server ends each interrupted pg_sleep's backend
    assert len(backends(admin, app_name)) <= 2


@pytest.mark.db
@pytest.mark.asyncio
async def test_pg_cancellation_storm(apool: Any, admin: Any, app_name: str) -> None:
    # thousands of cancellations at random points, including while connecting and checking
    pool = apool(max_size=4, max_lifetime=0.3, idle_timeout=None, verify_after=0.0)
    rnd = random.Random(11)
    in_use: set[int] = set()

    async def borrower() -> None:
        for _ in range(25):
            async with pool.connection() as conn:
                assert id(conn) not in in_use
                in_use.add(id(conn))
                await conn.execute("SELECT 1")
                in_use.discard(id(conn))

    async def victim() -> None:
        async with pool.connection() as conn:
            if rnd.random() < 0.3:
                await conn.execute("SELECT pg_sleep(0.01)")

    normal = [asyncio.create_task(borrower()) for _ in range(6)]
    for i in range(1500):
        t = asyncio.create_task(victim())
        for _ in range(rnd.randint(0, 3)):
            await asyncio.sleep(0)
        t.cancel()
        if i % 5 == 0:
            try:
                await asyncio.wait_for(pool.acquire(), rnd.random() * 0.002)
            except TimeoutError:
                pass
    await asyncio.gather(*normal)
    await asyncio.sleep(0.1)
    s = check_invariants(pool)
    assert s["size"] <= 4
    print(
        "storm stats:",
        {k: s[k] for k in ("cancelled_waits", "discarded", "connects", "handoffs", "timeouts")},
    )
    assert s["cancelled_waits"] > 100, "the storm cancelled queued waiters"
    assert s["discarded"] > 10, "and borrowers mid-query (R1: discarded)"
    assert s["connects"] > 4, "and connections were being opened meanwhile"
    held = await asyncio.gather(*(pool.acquire(timeout=10) for _ in range(4)))
    for h in held:
        cur = await h.connection.execute("SELECT 1")
        assert await cur.fetchone() == (1,)
        await h.release()
    await asyncio.sleep(0.2)
    assert len(backends(admin, app_name)) <= 4


@pytest.mark.db
@pytest.mark.asyncio
async def test_pg_close_with_waiters(apool: Any, caplog: Any) -> None:
    caplog.set_level(logging.WARNING, logger="fastpool")
    pool = apool(max_size=1)
    held = await pool.acquire()
    w = asyncio.ensure_future(pool.acquire(timeout=5))
    await asyncio.sleep(0.01)
    closer = asyncio.create_task(pool.close(timeout=1))
    with pytest.raises(PoolClosed):
        await w
    conn = held.connection
    await held.release()
    await closer
    await asyncio.sleep(0.05)
    assert conn.closed


def test_async_pool_is_a_psycopg_async_connection_pool(twin: str) -> None:
    assert issubclass(fastpool.PoolTimeout, psycopg.OperationalError)
    pool = AsyncPool("host=127.0.0.1 dbname=test user=postgres", max_size=2)
    assert "size=" in repr(pool) or "closed" in repr(pool)


@pytest.mark.db
@pytest.mark.asyncio
async def test_pool_options_async(twin: str, dsn: str, app_name: str, admin: Any) -> None:
    opts = fastpool.PoolOptions(max_connections=3, min_connections=2, acquire_timeout=5)
    pool = await opts.aconnect(dsn, kwargs={"application_name": app_name})
    try:
        assert len(backends(admin, app_name)) == 2
        async with pool.connection() as conn:
            cur = await conn.execute("SELECT 1")
            assert await cur.fetchone() == (1,)
    finally:
        await pool.close()
    lazy = opts.aconnect_lazy(dsn, kwargs={"application_name": app_name})
    assert lazy.stats()["size"] == 0
    async with lazy.connection() as conn:
        await conn.execute("SELECT 1")
    await lazy.close()


@pytest.mark.asyncio
async def test_256_tasks_race(apools: list[Any], actx: dict[str, Any]) -> None:
    # T004-01 (tasks): 256 tasks x 40 borrows on max_size 4
    pool = AsyncResourcePool(ARes, actx, max_size=4)
    apools.append(pool)
    in_use: set[int] = set()
    peak = [0]

    async def worker() -> None:
        for _ in range(40):
            async with pool.connection() as r:
                assert r.id not in in_use, "handed out twice"
                in_use.add(r.id)
                peak[0] = max(peak[0], pool.stats()["size"])
                await asyncio.sleep(0)
                in_use.discard(r.id)

    await asyncio.gather(*(worker() for _ in range(256)))
    s = check_invariants(pool)
    assert peak[0] <= 4 and s["in_use"] == 0 and s["waiting"] == 0
    assert s["requests"] == 256 * 40


@pytest.mark.parametrize(
    ("sync_cls", "async_cls"),
    [
        (fastpool.Pool, fastpool.AsyncPool),
        (fastpool.ResourcePool, fastpool.AsyncResourcePool),
        (fastpool.ConnectionPool, fastpool.AsyncConnectionPool),
        (fastpool.Ownership, fastpool.AsyncOwnership),
        (fastpool.Sandbox, fastpool.AsyncSandbox),
        (fastpool.OwnerHandle, fastpool.AsyncOwnerHandle),
    ],
)
def test_sync_and_async_surfaces_do_not_drift(sync_cls: type, async_cls: type) -> None:
    """The two shells are written apart (one awaits); their public surfaces must stay the same."""
    import inspect

    sync_names = {n for n in dir(sync_cls) if not n.startswith("_")}
    async_names = {n for n in dir(async_cls) if not n.startswith("_")}
    missing = {n for n in sync_names if n not in async_names}
    assert not missing, f"{async_cls.__name__} lacks {sorted(missing)}"
    extra = {n for n in async_names if n not in sync_names}
    assert not extra, f"{sync_cls.__name__} lacks {sorted(extra)}"
    sp = inspect.signature(sync_cls.__init__).parameters
    ap = inspect.signature(async_cls.__init__).parameters
    assert [n for n in sp if n != "connection_class"] == [n for n in ap if n != "connection_class"]
    for name in sp:
        if name not in ("self", "connection_class", "reconnect_failed", "configure", "check", "reset"):
            assert sp[name].default == ap[name].default, name


@pytest.mark.db
@pytest.mark.asyncio
async def test_fast_borrow_path_shapes(apool: Any) -> None:
    """The compiled borrow's edges, on both twins: re-entry, a tracer, many borrows in a row."""
    import sys

    pool = apool(max_size=2, min_size=2)
    await pool.open()
    cm = pool.connection()
    async with cm as c1:
        with pytest.raises(RuntimeError, match="already in use"):
            await cm.__aenter__()
        assert await pid(c1)
    with pytest.raises(RuntimeError, match="not entered"):
        await cm.__aexit__(None, None, None)
    seen: list[int] = []
    for _ in range(50):  # the fast path: nothing awaited, the same two connections
        async with pool.connection() as conn:
            seen.append(id(conn))
    assert len(set(seen)) <= 2
    calls: list[str] = []

    def tracer(frame: Any, event: str, arg: Any) -> Any:
        calls.append(event)
        return tracer

    sys.settrace(tracer)  # under a tracer, await takes the iterator path instead of am_send
    try:
        async with pool.connection() as conn:
            traced = await pid(conn)
    finally:
        sys.settrace(None)
    assert traced and calls
    s = check_invariants(pool)
    assert s["in_use"] == 0 and s["idle"] == 2
