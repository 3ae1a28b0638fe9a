"""The psycopg pools against the real PostgreSQL server, on both builds of the core."""

from __future__ import annotations

import asyncio
import logging
import random
import socket
import sys
import threading
import time
from typing import Any

import psycopg
import pytest

import fastpool
from fastpool import ConnectionMetadata, PoolClosed, PoolTimeout, Recycle

from .acompat import gather_async, run_all_async, skip_sync, sleep_async, spawn_async, wait_until_async
from .conftest import backends, check_invariants

pytestmark = pytest.mark.db


async def pid_of_async(conn: Any) -> int:
    """The backend pid of ``conn`` (one round trip)."""
    row = await (await conn.execute("SELECT pg_backend_pid()")).fetchone()
    return int(row[0])


async def one_async(conn: Any, sql: str, params: Any = None) -> Any:
    """The first row of ``sql``."""
    return await (await conn.execute(sql, params)).fetchone()


def terminate(admin: psycopg.Connection[Any], pid: int) -> None:
    """Terminate one of our backends and wait until it is gone."""
    admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
    deadline = time.monotonic() + 5
    while admin.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", (pid,)).fetchone():
        assert time.monotonic() < deadline, "the backend did not end"
        time.sleep(0.01)


async def test_plain_borrow_and_stats(make_pool_async: Any, admin: Any, app_name: str) -> None:
    pool = await make_pool_async(max_size=2)
    assert isinstance(pool, fastpool.AsyncPool)
    async with pool.connection() as conn:
        assert await one_async(conn, "SELECT 1") == (1,)
    assert len(backends(admin, app_name)) == 1
    assert "password" not in repr(pool) and pool.name in repr(pool)
    check_invariants(pool)


async def test_racing_workers_real_connections(make_pool_async: Any, admin: Any, app_name: str) -> None:
    # 64 workers on max_size 4; no connection is held by two borrowers
    pool = await make_pool_async(max_size=4)
    in_use: set[int] = set()
    guard = threading.Lock()
    pids: dict[int, int] = {}

    async def worker(seed: int) -> None:
        rnd = random.Random(seed)
        for _ in range(40):
            async with pool.connection() as conn:
                key = id(conn)
                with guard:
                    assert key not in in_use, "connection handed out twice"
                    in_use.add(key)
                if key not in pids:
                    pids[key] = await pid_of_async(conn)
                elif rnd.random() < 0.2:
                    await conn.execute("SELECT 1")
                with guard:
                    in_use.discard(key)

    await run_all_async(worker, 64)
    s = check_invariants(pool)
    assert s["size"] <= 4 and s["in_use"] == 0 and s["waiting"] == 0
    assert len(backends(admin, app_name)) <= 4
    held = [await pool.acquire(timeout=5) for _ in range(4)]
    assert len({await pid_of_async(h.connection) for h in held}) == 4
    for h in held:
        await h.release()


async def test_deadline_when_exhausted(make_pool_async: Any) -> None:
    pool = await make_pool_async(max_size=1)
    async with pool.connection():
        t0 = time.monotonic()
        with pytest.raises(PoolTimeout, match=r"waiting for a connection \(max_size=1, in use=1\)"):
            await pool.acquire(timeout=0.3)
        assert time.monotonic() - t0 >= 0.3
    assert isinstance(PoolTimeout("x"), psycopg.OperationalError)


async def test_deadline_with_a_server_that_never_answers(build: str) -> None:
    # a listener that accepts and never answers; the acquire deadline wins
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(64)
    port = srv.getsockname()[1]
    try:
        pool = fastpool.AsyncPool(
            f"host=127.0.0.1 port={port} dbname=x user=x", open=False, acquire_timeout=5
        )
        try:
            t0 = time.monotonic()
            with pytest.raises(PoolTimeout, match=f"connecting to 127.0.0.1:{port}"):
                await pool.acquire(timeout=0.5)
            assert time.monotonic() - t0 < 1.5, "bounded by the acquire deadline, not connect_timeout"
            check_invariants(pool)
        finally:
            await pool.close(timeout=0)
    finally:
        srv.close()


async def test_terminated_idle_backend_is_never_handed_out(make_pool_async: Any, admin: Any) -> None:
    # with and without test_before_acquire
    for tba in (True, False):
        pool = await make_pool_async(max_size=2, test_before_acquire=tba)
        async with pool.connection() as conn:
            pid = await pid_of_async(conn)
        terminate(admin, pid)
        async with pool.connection() as conn:
            new = await pid_of_async(conn)  # no error reaches the user
        assert new != pid
        check_invariants(pool)


@pytest.mark.parametrize("method", [Recycle.FAST, Recycle.VERIFIED, Recycle.CLEAN], ids=repr)
async def test_backend_killed_while_borrowed_is_never_handed_out(
    make_pool_async: Any, admin: Any, method: Recycle
) -> None:
    # killed while checked out, returned IDLE: neither the next borrower nor a queued waiter gets it
    pool = await make_pool_async(max_size=1, recycle=method)
    dead_hand_outs = 0

    async def borrow_and_query() -> None:
        nonlocal dead_hand_outs
        async with pool.connection(timeout=5) as conn:
            try:
                await conn.execute("SELECT 1")
            except psycopg.OperationalError:
                dead_hand_outs += 1

    for i in range(34):  # about 100 over the three methods
        pc = await pool.acquire()
        waiter = None
        if i % 2:  # a queued waiter: the connection would be handed straight to it
            waiter = spawn_async(borrow_and_query)
            assert await wait_until_async(lambda: pool.stats()["waiting"] == 1)
        terminate(admin, pc.connection.info.backend_pid)  # no query: the connection stays IDLE
        await pc.release()
        if waiter is not None:
            await gather_async(waiter)
        await borrow_and_query()
    assert dead_hand_outs == 0
    s = check_invariants(pool)
    assert s["in_use"] == 0 and s["size"] <= 1


async def test_terminated_backend_and_client_settings_restored(make_pool_async: Any, admin: Any) -> None:
    pool = await make_pool_async(max_size=1)
    async with pool.connection() as conn:
        await conn.set_autocommit(True)
        p1 = await pid_of_async(conn)
    async with pool.connection() as conn:
        assert conn.autocommit is False, "the client setting is put back at return"
        assert await pid_of_async(conn) == p1
    terminate(admin, p1)
    await sleep_async(0.05)
    async with pool.connection() as conn:
        assert await pid_of_async(conn) != p1, "the probe caught the terminated backend"
        assert conn.autocommit is False


async def test_verify_after_gates_the_round_trip(make_pool_async: Any) -> None:
    pool = await make_pool_async(max_size=1, verify_after=0.2)
    async with pool.connection():
        pass
    async with pool.connection():
        pass
    assert pool.stats()["health_checks"] == 0, "a hot pool does no I/O per borrow"
    await sleep_async(0.25)
    async with pool.connection() as conn:
        assert conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
    assert pool.stats()["health_checks"] == 1


async def test_hooks_on_real_connections(make_pool_async: Any, admin: Any, app_name: str) -> None:
    counts = {"before": 0}
    reject: dict[str, int | None] = {"pid": None}

    async def before_acquire(conn: Any, meta: ConnectionMetadata) -> bool:
        counts["before"] += 1
        return await pid_of_async(conn) != reject["pid"]

    pool = await make_pool_async(max_size=2, open=False, before_acquire=before_acquire)
    async with pool.connection() as conn:
        pid = await pid_of_async(conn)
    assert counts["before"] == 0, "before_acquire is not called for new connections"
    reject["pid"] = pid
    async with pool.connection() as conn:
        assert await pid_of_async(conn) != pid
    assert await wait_until_async(lambda: pid not in backends(admin, app_name))

    async def after_release(conn: Any, meta: ConnectionMetadata) -> bool:
        assert meta.idle_for == 0.0
        raise RuntimeError("after_release exploded")

    pool2 = await make_pool_async(max_size=1, after_release=after_release)
    async with pool2.connection() as conn:
        pid2 = await pid_of_async(conn)
    assert await wait_until_async(lambda: pid2 not in backends(admin, app_name))
    check_invariants(pool2)


async def test_after_connect_runs_once_per_connection(make_pool_async: Any) -> None:
    calls = []

    async def count(conn: Any, meta: ConnectionMetadata) -> None:
        calls.append(await one_async(conn, "SELECT 1"))

    pool = await make_pool_async(min_size=3, max_size=4, after_connect=count)
    assert len(calls) == 3 and pool.stats()["connects"] == 3
    fails = [psycopg.OperationalError("transient"), psycopg.OperationalError("transient")]

    async def flaky(conn: Any, meta: ConnectionMetadata) -> None:
        if fails:
            raise fails.pop(0)
        await conn.execute("SET application_name = 'flaky-ok'")

    pool2 = await make_pool_async(max_size=1, open=False, after_connect=flaky)
    async with pool2.connection(timeout=5) as conn:
        assert await one_async(conn, "SHOW application_name") == ("flaky-ok",)

    async def bug(conn: Any, meta: ConnectionMetadata) -> None:
        raise ValueError("bug in after_connect")

    pool3 = await make_pool_async(max_size=1, open=False, after_connect=bug)
    t0 = time.monotonic()
    with pytest.raises(ValueError, match="bug in after_connect"):
        await pool3.acquire(timeout=10)
    assert time.monotonic() - t0 < 5


async def test_max_lifetime(make_pool_async: Any, admin: Any, app_name: str) -> None:
    pool = await make_pool_async(max_size=2, max_lifetime=1.0, idle_timeout=None)
    async with pool.connection() as conn:
        pid1 = await pid_of_async(conn)
    await sleep_async(1.1)
    async with pool.connection() as conn:
        assert await pid_of_async(conn) != pid1, "an expired idle connection is replaced at acquire"
    pc = await pool.acquire()
    pid3 = await pid_of_async(pc.connection)
    await sleep_async(1.1)
    assert await pid_of_async(pc.connection) == pid3  # a checked-out connection keeps working
    await pc.release()
    assert await wait_until_async(lambda: pid3 not in backends(admin, app_name)), "closed on return"


async def test_idle_timeout_keeps_min_size(make_pool_async: Any, admin: Any, app_name: str) -> None:
    pool = await make_pool_async(min_size=2, max_size=5, idle_timeout=1.0)
    held = [await pool.acquire() for _ in range(5)]
    for h in held:
        await h.release()
    assert await wait_until_async(lambda: pool.stats()["size"] == 2, timeout=4)
    assert await wait_until_async(lambda: len(backends(admin, app_name)) == 2)
    survivors = backends(admin, app_name)
    await sleep_async(1.6)  # three reaper periods
    assert backends(admin, app_name) == survivors


async def test_top_up_after_every_backend_is_terminated(
    make_pool_async: Any, admin: Any, app_name: str
) -> None:
    # the reaper's probe finds dead idle connections and the floor is restored
    pool = await make_pool_async(min_size=2, max_size=4, idle_timeout=1.0)
    old = backends(admin, app_name)
    assert len(old) == 2
    for pid in old:
        terminate(admin, pid)
    assert await wait_until_async(lambda: len(backends(admin, app_name) - old) == 2, timeout=3)
    s = check_invariants(pool)
    assert s["size"] == 2


async def test_unreachable_eager_open_names_host_never_password(build: str, caplog: Any) -> None:
    caplog.set_level(logging.DEBUG, logger="fastpool")
    dsn = "host=127.0.0.1 port=1 dbname=test user=postgres password=s3cret"
    t0 = time.monotonic()
    with pytest.raises(PoolTimeout) as ei:
        await fastpool.AsyncPool.connect(dsn, acquire_timeout=1.0)
    assert time.monotonic() - t0 < 3
    msg = str(ei.value)
    assert "127.0.0.1:1" in msg and "refused" in msg.lower()
    lazy = fastpool.AsyncPool(dsn, open=False, acquire_timeout=1.0)
    try:
        with pytest.raises(PoolTimeout) as ei2:
            await lazy.acquire(timeout=0.5)
        for text in (msg, str(ei2.value), repr(lazy), caplog.text, str(ei.value.__cause__)):
            assert "s3cret" not in text
    finally:
        await lazy.close()
    assert "127.0.0.1:1" in caplog.text


async def test_bad_database_fails_fast_with_the_server_error(build: str) -> None:
    t0 = time.monotonic()
    with pytest.raises(psycopg.OperationalError, match="does not exist"):
        await fastpool.AsyncPool.connect(
            "host=127.0.0.1 dbname=fastpool_no_such_db user=postgres", acquire_timeout=10
        )
    assert time.monotonic() - t0 < 5


async def test_close(make_pool_async: Any, admin: Any, app_name: str) -> None:
    pool = await make_pool_async(max_size=1)
    pc = await pool.acquire()
    pid = await pid_of_async(pc.connection)

    async def waiter() -> float:
        with pytest.raises(PoolClosed):
            await pool.acquire(timeout=10)
        return time.monotonic()

    w = spawn_async(waiter)
    assert await wait_until_async(lambda: pool.stats()["waiting"] == 1)
    t0 = time.monotonic()
    closer = spawn_async(pool.close, 3)
    (woken,) = await gather_async(w)
    assert woken - t0 < 0.5
    await pc.release()
    await gather_async(closer)
    assert await wait_until_async(lambda: pid not in backends(admin, app_name))
    with pytest.raises(PoolClosed):
        await pool.acquire()
    await pool.close()
    assert backends(admin, app_name) == set()


async def test_open_transaction_is_rolled_back_on_return(make_pool_async: Any, table: str) -> None:
    pool = await make_pool_async(max_size=1)
    async with pool.acquire() as conn:
        await conn.execute(f"INSERT INTO {table} VALUES (1)")
        assert conn.info.transaction_status == psycopg.pq.TransactionStatus.INTRANS
    async with pool.connection() as conn:
        assert conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
        assert await one_async(conn, f"SELECT count(*) FROM {table}") == (0,)


async def test_connection_commits_on_success_and_rolls_back_on_error(
    make_pool_async: Any, table: str
) -> None:
    pool = await make_pool_async(max_size=1)
    async with pool.connection() as conn:
        await conn.execute(f"INSERT INTO {table} VALUES (1)")
    with pytest.raises(ZeroDivisionError):
        async with pool.connection() as conn:
            await conn.execute(f"INSERT INTO {table} VALUES (2)")
            1 / 0  # noqa: B018
    async with pool.connection() as conn:
        assert await one_async(conn, f"SELECT array_agg(id) FROM {table}") == ([1],)
    with pytest.raises(psycopg.errors.DivisionByZero):
        async with pool.connection() as conn:
            await conn.execute("SELECT 1/0")  # INERROR at exit: rolled back, connection kept
    async with pool.connection() as conn:
        assert await one_async(conn, "SELECT 2") == (2,)
    assert pool.stats()["discarded"] == 0


async def test_active_connection_is_discarded(make_pool_async: Any, admin: Any, app_name: str) -> None:
    # an unfinished stream leaves the connection mid-protocol: it is closed, never reused
    pool = await make_pool_async(max_size=1)
    pc = await pool.acquire()
    conn = pc.connection
    pid = await pid_of_async(conn)
    rows = conn.cursor().stream("SELECT generate_series(1, 100000)")
    assert await anext(rows) == (1,)  # read one row and stop
    assert conn.pgconn.transaction_status == psycopg.pq.TransactionStatus.ACTIVE
    await pc.release()
    assert await wait_until_async(lambda: pid not in backends(admin, app_name))
    async with pool.connection() as conn2:
        assert await pid_of_async(conn2) != pid
    check_invariants(pool)


async def test_backend_killed_while_borrowed(make_pool_async: Any, admin: Any) -> None:
    pool = await make_pool_async(max_size=1)
    with pytest.raises(psycopg.OperationalError):
        async with pool.connection() as conn:
            terminate(admin, await pid_of_async(conn))
            await conn.execute("SELECT 1")
    async with pool.connection() as conn:
        assert await one_async(conn, "SELECT 1") == (1,)
    s = check_invariants(pool)
    assert s["discarded"] >= 1 and s["size"] == 1


async def test_pool_options_connect(build: str, dsn: str, app_name: str, admin: Any) -> None:
    opts = fastpool.PoolOptions(max_connections=3, min_connections=2, acquire_timeout=5)
    # A lazy pool may fill min_connections in the background: it gets a name of its own.
    lazy_kwargs = {"application_name": app_name + "-lazy"}
    if True:  # ASYNC
        pool = await opts.aconnect(dsn, kwargs={"application_name": app_name})
        lazy = opts.aconnect_lazy(dsn, kwargs=lazy_kwargs)
    else:
        pool = opts.connect(dsn, kwargs={"application_name": app_name})
        lazy = opts.connect_lazy(dsn, kwargs=lazy_kwargs)
    try:
        assert len(backends(admin, app_name)) == 2
        async with pool.connection() as conn:
            assert await one_async(conn, "SELECT 1") == (1,)
        async with lazy.connection() as conn:
            assert await one_async(conn, "SELECT 1") == (1,)
    finally:
        await pool.close()
        await lazy.close()
    lazy2 = fastpool.AsyncPool.connect_lazy(dsn, max_size=2, kwargs={"application_name": app_name})
    try:
        assert lazy2.stats()["size"] == 0
        async with lazy2.connection() as conn:
            assert await one_async(conn, "SELECT 1") == (1,)
    finally:
        await lazy2.close()


async def test_transaction_helper(make_pool_async: Any, table: str) -> None:
    pool = await make_pool_async(max_size=1)
    async with pool.transaction() as conn:
        await conn.execute(f"INSERT INTO {table} VALUES (7)")
    async with pool.connection() as conn:
        assert await (await conn.execute(f"SELECT id FROM {table}")).fetchall() == [(7,)]


async def test_fast_borrow_path_shapes(make_pool_async: Any) -> None:
    """The compiled borrow's edges, on both builds: re-entry, a tracer, many borrows in a row."""
    pool = await make_pool_async(max_size=2, min_size=2)
    cm = pool.connection()
    async with cm as c1:
        with pytest.raises(RuntimeError, match="already in use"):
            await cm.__aenter__()
        assert await pid_of_async(c1)
    with pytest.raises(RuntimeError, match="not entered"):
        await cm.__aexit__(None, None, None)
    seen: list[int] = []
    for _ in range(50):  # the fast path: nothing waited for, the same two connections
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
            traced = await pid_of_async(conn)
    finally:
        sys.settrace(None)
    assert traced and calls
    s = check_invariants(pool)
    assert s["in_use"] == 0 and s["idle"] == 2


async def test_server_restart(build: str, own_cluster: Any) -> None:
    # after a restart no borrower is handed a dead connection, and the size recovers
    pool = fastpool.AsyncPool(own_cluster.dsn, min_size=2, max_size=4, acquire_timeout=15, idle_timeout=1.0)
    try:
        await pool.open()
        held = [await pool.acquire() for _ in range(4)]
        old = {await pid_of_async(h.connection) for h in held}
        for h in held:
            await h.release()
        own_cluster.restart()
        for _ in range(20):
            async with pool.connection() as conn:
                assert await one_async(conn, "SELECT 1") == (1,)
                assert await pid_of_async(conn) not in old
        assert await wait_until_async(lambda: pool.stats()["idle"] >= 2, timeout=5)
        s = check_invariants(pool)
        assert s["discarded"] >= 1
    finally:
        await pool.close()


# -- asyncio only: cancellation ---------------------------------------------------------------


@skip_sync
async def test_wait_for_storm_then_full_capacity(make_pool_async: Any, admin: Any, app_name: str) -> None:
    pool = await make_pool_async(max_size=4, open=False)

    async def busy() -> None:
        for _ in range(30):
            async with pool.connection() as conn:
                await conn.execute("SELECT 1")

    load = [asyncio.create_task(busy()) for _ in range(8)]
    for _ in range(2000):
        try:
            pc = await asyncio.wait_for(pool.acquire(), 0.001)
        except asyncio.TimeoutError:
            continue
        await pc.release()
    await asyncio.gather(*load)
    held = await asyncio.gather(*(pool.acquire(timeout=5) for _ in range(4)))
    assert len({id(h.connection) for h in held}) == 4
    for h in held:
        await h.release()
    assert len(backends(admin, app_name)) <= 4
    check_invariants(pool)


@skip_sync
async def test_health_check_with_pg_sleep_cancelled(make_pool_async: Any, admin: Any, app_name: str) -> None:
    # a check running pg_sleep(1) is cancelled mid-query: the connection is discarded
    async def slow_check(conn: Any, meta: ConnectionMetadata) -> bool:
        await conn.execute("SELECT pg_sleep(1)")
        return True

    pool = await make_pool_async(max_size=2, before_acquire=slow_check, open=False)
    for _ in range(10):
        async with pool.connection():  # a new connection (no check), idle afterwards
            pass
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(pool.acquire(), 0.05)  # the idle one is checked: too slow
        s = check_invariants(pool)
        assert s["in_use"] == 0 and s["size"] <= 2
    assert pool.stats()["discarded"] >= 10
    await asyncio.sleep(1.2)  # the server ends each interrupted pg_sleep's backend
    assert len(backends(admin, app_name)) <= 2


@skip_sync
async def test_cancellation_storm(make_pool_async: Any, admin: Any, app_name: str) -> None:
    # thousands of cancellations at random points, including while connecting and checking
    pool = await make_pool_async(
        max_size=4, max_lifetime=0.3, idle_timeout=None, verify_after=0.0, open=False
    )
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
                pc = await asyncio.wait_for(pool.acquire(), rnd.random() * 0.002)
            except asyncio.TimeoutError:
                pass
            else:
                await pc.release()
    await asyncio.gather(*normal)
    await asyncio.sleep(0.1)
    s = check_invariants(pool)
    assert s["size"] <= 4
    assert s["cancelled_waits"] > 100, "the storm cancelled queued waiters"
    assert s["discarded"] > 10, "and borrowers mid-query (discarded)"
    assert s["connects"] > 4, "and connections were being opened meanwhile"
    held = await asyncio.gather(*(pool.acquire(timeout=10) for _ in range(4)))
    for h in held:
        assert await one_async(h.connection, "SELECT 1") == (1,)
        await h.release()
    await asyncio.sleep(0.2)
    assert len(backends(admin, app_name)) <= 4
