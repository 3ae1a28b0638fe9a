"""``fastpool.asyncpg``: asyncpg's pool API on fastpool, against the real server, on both builds.

asyncpg's own pool tests run against it too (``../shared/conformance``); here
are the behaviours they do not reach, and fastpool's guarantees under the API:
the floor, FIFO, bounded phases, no dead hand-out, the reset off the
releaser's path and skipped only when provably idle, cancellation.
"""

from __future__ import annotations

import asyncio
import gc
import io
import logging
import random
import time
from typing import Any

import pytest

import fastpool

from .conftest import backends, check_invariants
from .test_asyncpg_pool import terminate_own

asyncpg = pytest.importorskip("asyncpg")
fa = pytest.importorskip("fastpool.asyncpg")

pytestmark = pytest.mark.db


def queries_of(proxy: Any) -> int:
    """How many queries the connection behind ``proxy`` has sent (asyncpg's own count)."""
    return int(proxy._c._protocol.queries_count)


async def settled(pool: Any) -> None:
    """Wait until the resets under way are done (every connection is back)."""
    deadline = time.monotonic() + 5
    while pool.stats()["in_use"] and time.monotonic() < deadline:
        await asyncio.sleep(0.005)


# -- the API, as asyncpg's ------------------------------------------------------------------------


async def test_awaitable_and_context_manager(make_dropin: Any, dsn: str, app_name: str) -> None:
    pool = await make_dropin(min_size=2, max_size=3)
    assert isinstance(pool, fa.Pool)
    assert (pool.get_min_size(), pool.get_max_size(), pool.get_init_size()) == (2, 3, 2)
    assert pool.get_size() == 2 and pool.get_idle_size() == 2
    assert await pool is pool  # awaiting again is harmless
    settings = {"application_name": app_name}
    async with fa.create_pool(dsn, min_size=0, max_size=1, server_settings=settings) as p2:
        assert p2.get_size() == 0  # init_size = min_size = 0: nothing opened up front
        assert await p2.fetchval("SELECT 7") == 7
    assert p2.is_closing()


async def test_both_spellings_of_acquire_and_release(make_dropin: Any) -> None:
    pool = await make_dropin(max_size=1)
    async with pool.acquire() as con:
        assert isinstance(con, asyncpg.Connection) and isinstance(con, fa.PoolConnectionProxy)
        assert await con.fetchval("SELECT 1") == 1
    con = await pool.acquire(timeout=5)
    assert pool.get_idle_size() == 0
    await pool.release(con)
    await pool.release(con)  # twice: nothing happens
    assert pool.get_idle_size() == 1
    ctx = pool.acquire()
    async with ctx:
        with pytest.raises(asyncpg.InterfaceError, match="already acquired"):
            await ctx.__aenter__()
    check_invariants(pool)


async def test_release_refuses_what_it_did_not_lend(make_dropin: Any) -> None:
    p1 = await make_dropin(max_size=1)
    p2 = await make_dropin(max_size=1)
    con = await p1.acquire()
    with pytest.raises(asyncpg.InterfaceError, match="is not a member of this pool"):
        await p2.release(con)
    with pytest.raises(asyncpg.InterfaceError, match="is not a member of this pool"):
        await p1.release(con._con)
    await p1.release(con)


async def test_a_released_proxy_and_what_it_made_refuse_every_call(make_dropin: Any) -> None:
    pool = await make_dropin(max_size=1)
    async with pool.acquire() as con:
        assert repr(con._c) in repr(con)
        ps = await con.prepare("SELECT 1")
        tr = con.transaction()
        async with con.transaction():
            cur = await con.cursor("SELECT 1")
    assert "[released]" in repr(con)
    with pytest.raises(asyncpg.InterfaceError, match=r"cannot call Connection\.fetchval.*released"):
        await con.fetchval("SELECT 1")
    with pytest.raises(asyncpg.InterfaceError, match="released back to the pool"):
        await ps.fetchval()
    with pytest.raises(asyncpg.InterfaceError, match="released back to the pool"):
        await cur.fetchrow()
    with pytest.raises(asyncpg.InterfaceError, match="released back to the pool"):
        await tr.start()
    with pytest.raises(AttributeError, match="released"):
        _ = con._protocol


async def test_the_proxy_keeps_the_connection_classes_methods(make_dropin: Any) -> None:
    class MyConnection(asyncpg.Connection):  # type: ignore[misc]
        async def answer(self) -> int:
            return 42

        async def fetchval(self, query: str, *args: Any, **kw: Any) -> Any:
            return (await super().fetchval(query, *args, **kw)) + 1

    pool = await make_dropin(max_size=1, connection_class=MyConnection, statement_cache_size=3)
    async with pool.acquire() as con:
        assert isinstance(con, MyConnection)
        assert await con.answer() == 42 and await con.fetchval("SELECT 1") == 2
        assert con._con._config.statement_cache_size == 3
        assert con.execute.__name__ == "execute" and "SQL" in (con.execute.__doc__ or "")


async def test_query_shortcuts(make_dropin: Any, table: str) -> None:
    pool = await make_dropin(max_size=2)
    assert await pool.execute(f"INSERT INTO {table} (v) VALUES ($1)", "a") == "INSERT 0 1"
    await pool.executemany(f"INSERT INTO {table} (v) VALUES ($1)", [("b",), ("c",)])
    assert [r["v"] for r in await pool.fetch(f"SELECT v FROM {table} ORDER BY id")] == ["a", "b", "c"]
    assert (await pool.fetchrow(f"SELECT v FROM {table} WHERE v = $1", "b"))["v"] == "b"
    assert await pool.fetchval(f"SELECT count(*) FROM {table}") == 3
    rows = await pool.fetchmany("SELECT $1::int AS x", [(1,), (2,)])
    assert [r["x"] for r in rows] == [1, 2]
    await pool.copy_records_to_table(table, records=[(10, "d")], columns=["id", "v"])
    await pool.copy_to_table(table, source=io.BytesIO(b"11\te\n"), columns=["id", "v"])
    out = io.BytesIO()
    await pool.copy_from_query(f"SELECT v FROM {table} ORDER BY id", output=out)
    await pool.copy_from_table(table, output=out, columns=["v"])
    assert out.getvalue().count(b"e\n") == 2
    await settled(pool)
    assert pool.get_idle_size() == pool.get_size()


async def test_options_are_checked_naming_the_option(make_dropin: Any) -> None:
    with pytest.raises(ValueError, match=r"Pool: .*max_size"):
        await make_dropin(max_size=0)
    with pytest.raises(ValueError, match="init_size"):
        await make_dropin(min_size=2, max_size=4, init_size=1)
    with pytest.raises(ValueError, match="max_queries"):
        await make_dropin(max_queries=0)
    with pytest.raises(TypeError, match=r"connection_class must be a subclass of asyncpg\.Connection"):
        await make_dropin(connection_class=dict)
    with pytest.raises(TypeError, match="setup must be callable"):
        await make_dropin(setup=3)
    with pytest.raises(TypeError, match="unknown fastpool_options 'min_size'"):
        await make_dropin(fastpool_options={"min_size": 1})
    with pytest.raises(ValueError, match="leak_timeout"):
        await make_dropin(fastpool_options={"leak_timeout": -1})


async def test_unused_or_closing_pools_say_so(make_dropin: Any) -> None:
    pool = await make_dropin(open=False)
    with pytest.raises(asyncpg.InterfaceError, match="not initialized"):
        await pool.acquire()
    first = asyncio.ensure_future(pool._open_once())
    await asyncio.sleep(0)
    with pytest.raises(asyncpg.InterfaceError, match="being initialized in another task"):
        await pool
    with pytest.raises(asyncpg.InterfaceError, match="not yet ready"):
        await pool.fetchval("SELECT 1")
    await first
    await pool.close()
    await pool.close()
    with pytest.raises(asyncpg.InterfaceError, match="closed"):
        await pool.acquire()
    pool.terminate()


# -- the hooks ------------------------------------------------------------------------------------


async def test_the_hooks_run_where_asyncpg_runs_them(make_dropin: Any, dsn: str) -> None:
    made: list[Any] = []
    calls = {"connect": 0, "setup": 0, "reset": 0}

    async def connect(*args: Any, **kwargs: Any) -> Any:
        calls["connect"] += 1
        assert kwargs["connection_class"] is asyncpg.Connection and "loop" in kwargs
        return await asyncpg.connect(*args, **kwargs)

    async def init(con: Any) -> None:
        assert not isinstance(con, fa.PoolConnectionProxy)
        made.append(con)

    async def setup(proxy: Any) -> None:
        assert proxy._c in made
        calls["setup"] += 1

    async def reset(con: Any) -> None:
        calls["reset"] += 1

    pool = await make_dropin(min_size=2, max_size=5, connect=connect, init=init, setup=setup, reset=reset)

    async def user() -> None:
        async with pool.acquire():
            await asyncio.sleep(0.01)

    await asyncio.gather(*(user() for _ in range(10)))
    await pool.close()
    assert calls["connect"] == len(made) >= 2 and (calls["setup"], calls["reset"]) == (10, 10)


async def test_a_bad_connect_callback_fails_the_pool_creation(make_dropin: Any) -> None:
    async def bad_connect(*args: Any, **kwargs: Any) -> int:
        return 1

    with pytest.raises(asyncpg.InterfaceError, match=r"expected pool connect callback .* got 'int'"):
        await make_dropin(connect=bad_connect)


@pytest.mark.parametrize("hook", ["setup", "init"])
async def test_a_hook_that_raises_closes_its_connection(make_dropin: Any, hook: str) -> None:
    seen: list[Any] = []

    class Boom(Exception):
        pass

    async def fail_once(con: Any) -> None:
        seen.append(con)
        if len(seen) == 1:
            raise Boom

    pool = await make_dropin(min_size=0, max_size=1, **{hook: fail_once})
    with pytest.raises(Boom):
        await pool.acquire(timeout=5)
    assert seen[0].is_closed()
    async with pool.acquire(timeout=5) as con:
        assert await con.fetchval("SELECT 1") == 1
    await settled(pool)
    assert check_invariants(pool)["in_use"] == 0


async def test_setup_is_bounded_by_the_acquire_timeout(make_dropin: Any) -> None:
    async def slow(con: Any) -> None:
        await con.execute("SELECT pg_sleep(5)")

    pool = await make_dropin(max_size=1, setup=slow)
    t0 = time.monotonic()
    with pytest.raises(asyncio.TimeoutError) as info:
        await pool.acquire(timeout=0.3)
    assert isinstance(info.value, fa.AcquireTimeout) and time.monotonic() - t0 < 0.3 + 0.25
    assert check_invariants(pool)["in_use"] == 0


# -- releasing: the reset, off the releaser's path ------------------------------------------------


async def test_a_borrow_that_sent_nothing_is_not_reset(make_dropin: Any) -> None:
    pool = await make_dropin(max_size=1)
    for _ in range(3):
        async with pool.acquire() as con:
            raw = con._c
            before = raw._protocol.queries_count
    assert raw._protocol.queries_count == before, "a reset was sent for a borrower that did nothing"
    async with pool.acquire() as con:
        await con.fetchval("SELECT 1")
        sent = queries_of(con)
    await asyncio.sleep(0.05)
    assert raw._protocol.queries_count == sent + 1, "asyncpg's reset query after a query"


@pytest.mark.parametrize(
    "change",
    [
        "SELECT set_config('application_name', 'changed', false)",
        "SELECT pg_advisory_lock(4242)",
        "COPY (SELECT set_config('application_name', 'changed', false)) TO STDOUT",
        "unwrapped",
        "LISTEN somewhere",
        "a transaction left open",
    ],
)
async def test_whatever_the_borrower_changed_the_next_one_does_not_see(
    make_dropin: Any, admin: Any, app_name: str, change: str
) -> None:
    pool = await make_dropin(min_size=1, max_size=1)
    handled: list[Any] = []
    asyncio.get_running_loop().set_exception_handler(lambda _loop, ctx: handled.append(ctx))
    async with pool.acquire() as con:
        if change.startswith("COPY"):
            await con.copy_from_query(change[6:-11], output=io.BytesIO())
        elif change == "unwrapped":
            await con._con.execute("SET application_name = 'changed'")
        elif change.startswith("a transaction"):
            await con.execute("BEGIN; SET LOCAL application_name = 'changed'; SELECT pg_advisory_lock(4242)")
        else:
            await con.execute(change)
    async with pool.acquire() as con:
        assert await con.fetchval("SELECT current_setting('application_name')") == app_name
        assert await con.fetchval("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' "
                                  "AND pid = pg_backend_pid()") == 0  # fmt: skip
        assert await con.fetchval("SELECT count(*) FROM pg_listening_channels()") == 0
        assert not con._c._protocol.is_in_transaction()
    asyncio.get_running_loop().set_exception_handler(None)
    expect = ["Resetting connection with an active transaction"] if change.startswith("a tr") else []
    assert [c["message"].split(" <")[0] for c in handled] == expect  # asyncpg's own warning


async def test_release_returns_before_the_reset_round_trip(make_dropin: Any) -> None:
    done = asyncio.Event()

    class SlowReset(asyncpg.Connection):  # type: ignore[misc]
        async def reset(self, *, timeout: float | None = None) -> None:
            await asyncio.sleep(0.2)
            await super().reset(timeout=timeout)
            done.set()

    pool = await make_dropin(max_size=1, connection_class=SlowReset)
    con = await pool.acquire()
    await con.execute("SET application_name = 'x'")
    await pool.release(con)
    assert not done.is_set() and pool.get_idle_size() == 0, "the releaser waited for the reset"
    async with pool.acquire(timeout=5):  # handed out once the reset is done, not before
        assert done.is_set()


async def test_a_reset_that_fails_or_hangs_closes_the_connection(
    make_dropin: Any, caplog: pytest.LogCaptureFixture
) -> None:
    async def hang(con: Any) -> None:
        await con.execute("SELECT pg_sleep(10)")

    pool = await make_dropin(min_size=1, max_size=1, reset=hang)
    con = await pool.acquire()
    pid = con.get_server_pid()
    t0 = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="fastpool.asyncpg"):
        await pool.release(con, timeout=0.3)
        async with pool.acquire(timeout=5) as con2:  # a new connection, once the reset gave up
            assert con2.get_server_pid() != pid
            waited = time.monotonic() - t0
    assert 0.3 <= waited < 0.3 + 0.5
    assert "resetting a released connection failed" in caplog.text


async def test_max_queries_replaces_the_connection(make_dropin: Any) -> None:
    pool = await make_dropin(max_size=1, max_queries=3)
    pids = []
    for _ in range(4):
        async with pool.acquire() as con:
            pids.append(con.get_server_pid())
            await con.fetchval("SELECT 1")
    assert len(set(pids)) == 2


async def test_a_borrower_closing_its_connection_frees_the_slot(make_dropin: Any) -> None:
    pool = await make_dropin(min_size=1, max_size=1)
    async with pool.acquire() as con:
        await con.close()
        assert pool.get_size() == 0 or check_invariants(pool)["in_use"] == 0
    con = await pool.acquire(timeout=5)
    con.terminate()
    await pool.release(con)  # harmless: the close released it
    async with pool.acquire(timeout=5) as con:
        assert await con.fetchval("SELECT 1") == 1


async def test_the_caches_are_dropped_pool_wide(make_dropin: Any) -> None:
    pool = await make_dropin(min_size=2, max_size=2)
    a, b = await pool.acquire(), await pool.acquire()
    for c in (a, b):
        await c.fetchval("SELECT $1::int", 1)
        assert len(c._c._stmt_cache) == 1
    a._c._drop_global_statement_cache()  # what asyncpg does after a schema change
    assert len(b._c._stmt_cache) == 0
    await pool.release(a)
    await pool.release(b)


async def test_expire_connections_replaces_every_connection(make_dropin: Any) -> None:
    pool = await make_dropin(min_size=2, max_size=2)
    lent = await pool.acquire()
    async with pool.acquire() as other:
        old = {lent.get_server_pid(), other.get_server_pid()}
    await pool.expire_connections()
    await pool.release(lent)  # an expired borrowed one is closed when it comes back
    async with pool.acquire(timeout=5) as a, pool.acquire(timeout=5) as b:
        assert not {a.get_server_pid(), b.get_server_pid()} & old


async def test_idle_connections_above_the_floor_are_closed(make_dropin: Any) -> None:
    pool = await make_dropin(min_size=1, max_size=3, max_inactive_connection_lifetime=0.2)
    held = [await pool.acquire() for _ in range(3)]
    for con in held:
        await pool.release(con)
    assert pool.get_size() == 3
    await asyncio.sleep(0.3)
    pool._reap()  # (the reaper's tick, now)
    await asyncio.sleep(0.05)
    assert pool.get_size() == 1, "closed down to min_size, which is kept"


@pytest.mark.parametrize("where", ["acquire", "release", "query"])
async def test_a_cancelled_borrower_gives_its_connection_back(make_dropin: Any, where: str) -> None:
    class SlowReset(asyncpg.Connection):  # type: ignore[misc]
        async def reset(self, *, timeout: float | None = None) -> None:
            await asyncio.sleep(0.1)
            await super().reset(timeout=timeout)

    pool = await make_dropin(min_size=1, max_size=1, connection_class=SlowReset)
    held = await pool.acquire() if where == "acquire" else None  # the borrower waits in acquire

    async def borrower() -> None:
        async with pool.acquire(timeout=100) as con:
            if where == "query":
                await con.execute("SELECT pg_sleep(10)")
            elif where == "release":
                await con.execute("SELECT 1")
        await asyncio.sleep(10)  # cancelled here, while its connection is being reset

    task = asyncio.ensure_future(borrower())
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    if held is not None:
        await pool.release(held)
    await settled(pool)
    s = check_invariants(pool)
    assert (s["in_use"], s["idle"]) == (0, 1) or (s["in_use"], s["size"]) == (0, 0)
    async with pool.acquire(timeout=5) as con:  # and it works: no operation in progress
        assert await con.fetchval("SELECT 1") == 1


# -- closing ----------------------------------------------------------------------------------------


async def test_close_waits_for_the_borrowers_and_terminate_does_not(make_dropin: Any) -> None:
    pool = await make_dropin(max_size=1)
    released = False

    async def borrower() -> None:
        nonlocal released
        async with pool.acquire() as con:
            await asyncio.sleep(0.2)
            await con.execute("SELECT 1")
        released = True

    task = asyncio.ensure_future(borrower())
    await asyncio.sleep(0.05)
    await pool.close()
    assert released and pool.is_closing()
    await task

    pool2 = await make_dropin(max_size=1)
    con = await pool2.acquire()
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(pool2.close(), 0.1)  # a timed-out close terminates
    assert con._c is None  # terminated under its borrower: released
    pool2.terminate()


# -- fastpool's guarantees --------------------------------------------------------------------------


async def test_min_size_is_a_floor_kept_in_the_background(
    make_dropin: Any, admin: Any, app_name: str
) -> None:
    pool = await make_dropin(min_size=3, max_size=5)
    first = backends(admin, app_name)
    assert len(first) == 3
    await terminate_own(admin, app_name, first)
    deadline = time.monotonic() + 5
    while len(backends(admin, app_name) - first) < 3 and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
        pool._reap()  # (the reaper's tick, now)
    assert len(backends(admin, app_name) - first) == 3
    async with pool.acquire(timeout=1) as con:  # and none of the dead is handed out
        assert con.get_server_pid() not in first


async def test_waiters_are_served_first_come_first_served(make_dropin: Any) -> None:
    pool = await make_dropin(max_size=1)
    order: list[int] = []
    held = await pool.acquire()

    async def waiter(i: int) -> None:
        async with pool.acquire(timeout=10):
            order.append(i)

    tasks = []
    for i in range(20):
        tasks.append(asyncio.ensure_future(waiter(i)))
        await asyncio.sleep(0.001)
    await pool.release(held)
    await asyncio.gather(*tasks)
    assert order == list(range(20))


async def test_an_acquire_timeout_is_an_asyncio_timeout_on_time(make_dropin: Any) -> None:
    pool = await make_dropin(max_size=1)
    held = await pool.acquire()
    t0 = time.monotonic()
    with pytest.raises(asyncio.TimeoutError):
        await pool.acquire(timeout=0.2)
    assert time.monotonic() - t0 < 0.2 + 0.25
    await pool.release(held)


async def test_a_cancellation_storm_leaves_nothing_behind(
    make_dropin: Any, admin: Any, app_name: str
) -> None:
    loop = asyncio.get_running_loop()
    handled: list[Any] = []
    loop.set_exception_handler(lambda _loop, ctx: handled.append(ctx))

    async def setup(con: Any) -> None:
        await con.execute("SELECT pg_sleep(0.0002)")

    pool = await make_dropin(min_size=2, max_size=4, setup=setup)
    rnd = random.Random(11)
    lent: set[int] = set()

    async def victim() -> None:
        async with pool.acquire(timeout=5) as con:
            assert id(con._c) not in lent, "handed out twice"
            lent.add(id(con._c))
            try:
                await con.execute("SELECT pg_sleep(0.0005)")
            finally:
                lent.discard(id(con._c))

    cancelled = 0
    while cancelled < 2000:
        tasks = [asyncio.ensure_future(victim()) for _ in range(rnd.randint(1, 8))]
        for _ in range(rnd.randint(0, 6)):
            await asyncio.sleep(0)
        for t in tasks:
            cancelled += t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    await asyncio.sleep(0.3)
    s = check_invariants(pool)
    assert s["in_use"] == 0 and s["size"] <= 4
    cons = [await pool.acquire(timeout=5) for _ in range(4)]
    for c in cons:
        assert await c.fetchval("SELECT 1") == 1  # no "another operation is in progress"
        await pool.release(c)
    await pool.close()
    gc.collect()
    await asyncio.sleep(0.05)
    loop.set_exception_handler(None)
    assert handled == [], handled[:1]
    deadline = time.monotonic() + 5
    while backends(admin, app_name) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert not backends(admin, app_name), "a connection outlived its pool"


async def test_fastpool_options_and_stats(make_dropin: Any) -> None:
    options = {"max_waiting": 1, "name": "dropin", "leak_timeout": 60}
    pool = await make_dropin(max_size=2, fastpool_options=options)
    assert pool.name == "dropin"
    held = [await pool.acquire(), await pool.acquire()]
    queued = asyncio.ensure_future(pool.acquire(timeout=5))
    await asyncio.sleep(0.01)
    with pytest.raises(fastpool.TooManyRequests):
        await pool.acquire(timeout=5)
    for h in held:
        await pool.release(h)
    await pool.release(await queued)
    s = pool.stats()
    assert s["too_many_requests"] == 1 and s["in_use"] == 0


@pytest.mark.parametrize("form", ["url", "keywords", "password kwarg"])
async def test_no_password_in_errors_or_logs(make_dropin: Any, form: str, caplog: Any) -> None:
    caplog.set_level(logging.DEBUG, logger="fastpool")
    secret = "hunter2-dropin"
    kw: dict[str, Any] = {"min_size": 1, "fastpool_options": {"fail_fast_after": 0.3, "acquire_timeout": 1}}
    kw["dsn"] = {
        "url": f"postgresql://postgres:{secret}@127.0.0.1:1/test",
        "keywords": f"host=127.0.0.1 port=1 user=postgres password={secret} dbname=test",
        "password kwarg": "postgresql://postgres@127.0.0.1:1/test",
    }[form]
    if form == "password kwarg":
        kw["password"] = secret
    with pytest.raises(OSError) as info:  # asyncpg's connect error, as asyncpg's pool raises it
        await make_dropin(**kw)
    pool = await make_dropin(open=False, **kw)
    texts = [repr(pool), str(pool.stats()), caplog.text]
    exc: BaseException | None = info.value
    seen: set[int] = set()
    while exc is not None:
        assert id(exc) not in seen, "the error's chain loops"
        seen.add(id(exc))
        texts.append(f"{exc!r} {exc}")
        exc = exc.__cause__ or exc.__context__
    assert not [t for t in texts if secret in t]
