"""The pools over a plain in-process resource, on both builds of the core."""

from __future__ import annotations

import asyncio
import gc
import random
import threading
import time
import warnings
from typing import Any

import pytest

import fastpool
from fastpool import AsyncResourcePool, ConnectionMetadata, PoolClosed, PoolTimeout, TooManyRequests

from .acompat import (
    gather_async,
    run_all_async,
    skip_sync,
    sleep_async,
    spawn_async,
    wait_until_async,
)
from .conftest import check_invariants
from .resources_async import AsyncRes, Ctx, Interrupted


async def test_implementation_follows_the_build(build: str, make_async: Any) -> None:
    pool = await make_async(max_size=1)
    assert (
        type(pool._core).__module__
        == {"c": "fastpool._core_pool", "python": "fastpool._core_pool_pure"}[build]
    )


async def test_borrow_three_ways(make_async: Any) -> None:
    pool = await make_async(max_size=2)
    async with pool.connection() as r:
        assert isinstance(r, AsyncRes) and not r.closed
    async with pool.connection() as r2:
        assert r2 is r, "LIFO: the hot resource is reused"
    async with pool.acquire() as r3:
        assert r3 is r
    pc = await pool.acquire()
    assert pc.connection is r
    await pc.release()
    s = check_invariants(pool)
    assert s["in_use"] == 0 and s["size"] == 1 and s["idle"] == 1 and s["connects"] == 1


async def test_needs_health_check_false_means_no_check(make_async: Any, ctx: Ctx) -> None:
    pool = await make_async(max_size=2, verify_after=3600)
    for _ in range(50):
        async with pool.connection():
            pass
    assert ctx.checks == 0


async def test_failed_health_check_replaces_the_resource(make_async: Any, ctx: Ctx) -> None:
    pool = await make_async(max_size=2)
    async with pool.connection() as r:
        pass
    ctx.needs, ctx.check_fails = True, True
    async with pool.connection() as r2:
        assert r2 is not r
    assert await wait_until_async(lambda: r.closed)
    assert ctx.closed == [r], "the old resource is closed and a new one used"
    # the fresh one was not checked (it is new); both failing: the create error reaches the caller
    ctx.create_errors.append(ValueError("cannot create"))
    with pytest.raises(ValueError, match="cannot create"):
        async with pool.connection(timeout=2):
            pass
    assert await wait_until_async(lambda: r2.closed)
    s = check_invariants(pool)
    assert s["size"] == 0
    ctx.needs = ctx.check_fails = False
    async with pool.connection() as r3:
        assert not r3.closed
    check_invariants(pool)


async def test_needs_health_check_raising_counts_as_unhealthy(make_async: Any, ctx: Ctx) -> None:
    pool = await make_async(max_size=2)
    async with pool.connection() as r:
        pass
    ctx.needs_raises = True
    async with pool.connection() as r2:
        assert r2 is not r
    assert await wait_until_async(lambda: r.closed)


async def test_slow_failing_health_check_is_bounded_by_the_deadline(make_async: Any, ctx: Ctx) -> None:
    # a slow failing check, then failing connects: PoolTimeout at the deadline
    pool = await make_async(max_size=1, min_size=1)
    async with pool.connection() as r:
        pass
    ctx.needs, ctx.check_fails, ctx.check_sleep = True, True, 0.3
    ctx.create_errors.extend([ConnectionRefusedError("refused")] * 10_000)
    t0 = time.monotonic()
    with pytest.raises(PoolTimeout, match="connecting") as ei:
        async with pool.connection(timeout=0.5):
            pass
    elapsed = time.monotonic() - t0
    assert 0.5 <= elapsed < 3.0
    assert isinstance(ei.value.__cause__, ConnectionRefusedError)
    assert await wait_until_async(lambda: r.closed)
    check_invariants(pool)


async def test_interrupted_check_leaks_nothing(make_async: Any, ctx: Ctx) -> None:
    # pool.check() interrupted mid-check: the connection is discarded, never kept nor leaked
    pool = await make_async(max_size=2, min_size=2)
    ctx.check_fails = Interrupted()
    with pytest.raises(Interrupted):
        await pool.check()
    s = check_invariants(pool)
    assert s["in_use"] == 0, "no slot leaked"
    assert await wait_until_async(lambda: len(ctx.closed) >= 1)
    ctx.check_fails = False
    assert await wait_until_async(lambda: pool.stats()["idle"] == 2)
    await pool.check()
    held = [await pool.acquire(timeout=2) for _ in range(2)]
    for h in held:
        await h.release()


@pytest.mark.parametrize(
    ("timeout", "exc"),
    [
        (float("nan"), ValueError),
        (-1, ValueError),
        (float("inf"), ValueError),
        (True, TypeError),
        ("1", TypeError),
    ],
)
async def test_acquire_timeout_is_checked(make_async: Any, timeout: Any, exc: type) -> None:
    # the same error on both kinds of pool, naming the argument (the slow path: nothing idle)
    pool = await make_async(max_size=1)
    held = await pool.acquire()
    with pytest.raises(exc, match="timeout"):
        await pool.acquire(timeout=timeout)
    with pytest.raises(exc, match="timeout"):
        async with pool.connection(timeout=timeout):
            pass
    await held.release()
    s = check_invariants(pool)
    assert s["waiting"] == 0 and s["in_use"] == 0


async def test_waiters_are_served_fifo(make_async: Any) -> None:
    # 200 waiters queued in a known order are served in that order, each by a direct hand-off.
    # With max_size=1 the order of service is observable exactly.
    pool = await make_async(max_size=1, min_size=1)
    held = await pool.acquire()
    order: list[int] = []

    async def waiter(i: int) -> None:
        async with pool.connection():
            order.append(i)

    workers = []
    for i in range(200):
        workers.append(spawn_async(waiter, i))
        assert await wait_until_async(lambda i=i: pool.stats()["waiting"] == i + 1)
    handoffs_before = pool.stats()["handoffs"]
    await held.release()
    await gather_async(*workers)
    assert order == list(range(200))
    s = check_invariants(pool)
    assert s["handoffs"] - handoffs_before == 200, "each waiter woken once, by a hand-off"
    assert s["size"] == 1


async def test_racing_workers_keep_every_invariant(make_async: Any) -> None:
    # 64 workers x 200 borrows on max_size 4: never handed out twice, never above max_size
    pool = await make_async(max_size=4)
    base = pool.stats()["requests"]
    in_use: set[int] = set()
    guard = threading.Lock()
    peak = [0]

    async def worker(seed: int) -> None:
        rnd = random.Random(seed)
        for _ in range(200):
            async with pool.connection() as r:
                with guard:
                    assert r.id not in in_use, "handed out twice"
                    in_use.add(r.id)
                    peak[0] = max(peak[0], pool.stats()["size"])
                if rnd.random() < 0.3:
                    await sleep_async(0)
                with guard:
                    in_use.discard(r.id)

    await run_all_async(worker, 64)
    assert peak[0] <= 4
    s = check_invariants(pool)
    assert s["in_use"] == 0 and s["waiting"] == 0 and s["size"] <= 4
    assert s["requests"] - base == 64 * 200
    # every permit is available again: max_size borrows at once succeed
    held = [await pool.acquire(timeout=2) for _ in range(4)]
    assert len({h.connection.id for h in held}) == 4
    for h in held:
        await h.release()


async def test_timeout_names_phase_and_total(make_async: Any) -> None:
    pool = await make_async(max_size=1)
    held = await pool.acquire()
    t0 = time.monotonic()
    with pytest.raises(PoolTimeout) as ei:
        await pool.acquire(timeout=0.2)
    assert time.monotonic() - t0 >= 0.2
    msg = str(ei.value)
    assert "0.2 s" in msg and "waiting for a connection (max_size=1, in use=1)" in msg
    await held.release()
    s = check_invariants(pool)
    assert s["timeouts"] == 1 and s["waiting"] == 0 and s["idle"] == 1


async def test_deadlines_keep_their_time(make_async: Any) -> None:
    # a queued waiter with a long deadline does not delay a later one's shorter deadline
    pool = await make_async(max_size=1)
    held = await pool.acquire()
    long_waiter = spawn_async(pool.acquire, 30)
    assert await wait_until_async(lambda: pool.stats()["waiting"] == 1)
    await held.release()  # served at once
    (got,) = await gather_async(long_waiter)
    t0 = time.monotonic()
    with pytest.raises(PoolTimeout):
        await pool.acquire(timeout=0.2)  # the queue is empty again
    assert time.monotonic() - t0 < 2.0
    slow = spawn_async(pool.acquire, 5)
    assert await wait_until_async(lambda: pool.stats()["waiting"] == 1)
    t0 = time.monotonic()
    with pytest.raises(PoolTimeout):
        await pool.acquire(timeout=0.2)  # shorter than the waiter queued before it
    assert time.monotonic() - t0 < 2.0
    await got.release()
    (pc,) = await gather_async(slow)
    await pc.release()
    s = check_invariants(pool)
    assert s["waiting"] == 0 and s["in_use"] == 0


async def test_huge_timeout_is_accepted(make_async: Any) -> None:
    # longer than a single lock wait (threading.TIMEOUT_MAX) or timer allows
    pool = await make_async(max_size=1, acquire_timeout=1e12)
    held = await pool.acquire()

    async def give_back() -> None:
        await sleep_async(0.1)
        await held.release()

    releaser = spawn_async(give_back)
    async with pool.connection():
        pass
    await gather_async(releaser)


async def test_timed_out_caller_abandons_only_its_wait(make_async: Any, ctx: Ctx) -> None:
    # the connect finishes after the caller gave up: it serves the next one
    ctx.create_sleep = 0.3
    pool = await make_async(max_size=1, open=False)
    with pytest.raises(PoolTimeout, match="connecting"):
        await pool.acquire(timeout=0.05)
    assert await wait_until_async(lambda: pool.stats()["idle"] == 1)
    t0 = time.monotonic()
    async with pool.connection(timeout=1) as r:
        assert r.id == 1
    assert time.monotonic() - t0 < 0.25
    assert len(ctx.created) == 1


async def test_exception_inside_with_returns_the_resource(make_async: Any) -> None:
    pool = await make_async(max_size=1)
    with pytest.raises(ZeroDivisionError):
        async with pool.connection():
            1 / 0  # noqa: B018
    s = check_invariants(pool)
    assert s["in_use"] == 0 and s["idle"] == 1


async def test_max_waiting(make_async: Any) -> None:
    pool = await make_async(max_size=1, max_waiting=2)
    held = await pool.acquire()
    results: list[Any] = []

    async def wait() -> None:
        async with pool.connection(timeout=5):
            results.append("ok")

    workers = [spawn_async(wait) for _ in range(2)]
    assert await wait_until_async(lambda: pool.stats()["waiting"] == 2)
    with pytest.raises(TooManyRequests, match="max_waiting"):
        await pool.acquire(timeout=5)
    await held.release()
    await gather_async(*workers)
    assert results == ["ok", "ok"]
    assert pool.stats()["too_many_requests"] == 1


async def test_close_wakes_waiters_and_closes_returns(make_async: Any, ctx: Ctx) -> None:
    pool = await make_async(max_size=1)
    held = await pool.acquire()

    async def wait() -> float:
        t0 = time.monotonic()
        with pytest.raises(PoolClosed):
            await pool.acquire(timeout=5)
        return time.monotonic() - t0

    waiter = spawn_async(wait)
    assert await wait_until_async(lambda: pool.stats()["waiting"] == 1)
    closer = spawn_async(pool.close, 2)
    (waited,) = await gather_async(waiter)
    assert waited < 1.5
    r = held.connection
    await held.release()
    await gather_async(closer)
    assert await wait_until_async(lambda: r.closed), "a connection returned after close is closed"
    with pytest.raises(PoolClosed):
        await pool.acquire()
    await pool.close()  # no-op
    assert await wait_until_async(lambda: all(x.closed for x in ctx.created))


async def test_pooled_connection_api(make_async: Any, ctx: Ctx) -> None:
    pool = await make_async(max_size=2)
    pc = await pool.acquire()
    assert pc.meta.age >= 0 and pc.meta.idle_for == 0
    await pc.release()
    with pytest.raises(fastpool.WrongPoolError):
        await pc.release()
    pc = await pool.acquire()
    r = pc.connection
    pc.close()
    assert await wait_until_async(lambda: r.closed)
    assert pool.stats()["size"] == 0
    pc = await pool.acquire()
    r = pc.detach()
    assert not r.closed and pool.stats()["size"] == 0
    await r.close()
    tp = pool.try_acquire()
    assert tp is None
    async with pool.connection():
        pass
    tp = pool.try_acquire()
    assert tp is not None
    await tp.release()
    async with await pool.acquire() as r2:  # a pooled connection is a context manager too
        assert isinstance(r2, AsyncRes)
    assert pool.stats()["in_use"] == 0


async def test_getconn_putconn_and_wrong_pool(make_async: Any) -> None:
    a, b = await make_async(max_size=1), await make_async(max_size=1)
    r = await a.getconn()
    with pytest.raises(fastpool.WrongPoolError):
        await b.putconn(r)
    await a.putconn(r)
    with pytest.raises(fastpool.WrongPoolError):
        await a.putconn(r)
    check_invariants(a)


async def test_unreleased_pooled_connection_is_reclaimed(make_async: Any) -> None:
    pool = await make_async(max_size=1)
    pc = await pool.acquire()
    r = pc.connection
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        del pc
        gc.collect()
    assert any(issubclass(x.category, ResourceWarning) for x in w)
    assert await wait_until_async(lambda: r.closed)
    assert await wait_until_async(lambda: pool.stats()["size"] == 0)
    async with pool.connection(timeout=2) as r2:
        assert r2 is not r


async def test_hooks(make_async: Any) -> None:
    calls: dict[str, list[Any]] = {"after_connect": [], "before_acquire": [], "after_release": []}
    verdict = {"before": True, "after": True}

    async def after_connect(r: AsyncRes, meta: ConnectionMetadata) -> None:
        calls["after_connect"].append((r.id, meta))

    async def before_acquire(r: AsyncRes, meta: ConnectionMetadata) -> bool:
        calls["before_acquire"].append((r.id, meta))
        return verdict["before"]

    async def after_release(r: AsyncRes, meta: ConnectionMetadata) -> bool:
        calls["after_release"].append((r.id, meta))
        return verdict["after"]

    pool = await make_async(
        max_size=2,
        open=False,
        after_connect=after_connect,
        before_acquire=before_acquire,
        after_release=after_release,
    )
    async with pool.connection() as r1:
        pass
    assert calls["after_connect"] == [(r1.id, ConnectionMetadata(0.0, 0.0))]
    assert calls["before_acquire"] == [], "never called for a new connection"
    assert calls["after_release"][0][1].idle_for == 0.0
    await sleep_async(0.2)
    async with pool.connection() as again:
        assert again is r1
    meta = calls["before_acquire"][-1][1]
    assert meta.idle_for >= 0.2 and meta.age >= meta.idle_for
    verdict["before"] = False
    async with pool.connection() as r2:
        assert r2 is not r1
    assert await wait_until_async(lambda: r1.closed)
    verdict["before"] = True
    verdict["after"] = False
    async with pool.connection() as r3:
        pass
    assert await wait_until_async(lambda: r3.closed), "after_release returning False closes"
    s = check_invariants(pool)
    assert s["before_acquire_rejections"] == 1 and s["after_release_rejections"] == 1


@skip_sync
async def test_plain_and_async_hooks_mix(make_async: Any) -> None:
    calls: list[str] = []

    async def after_connect(r: AsyncRes, meta: ConnectionMetadata) -> None:
        calls.append("connect")

    def before_acquire(r: AsyncRes, meta: ConnectionMetadata) -> bool:  # a plain callable works too
        calls.append("before")
        return True

    def after_release(r: AsyncRes, meta: ConnectionMetadata) -> bool:
        calls.append("release")
        return True

    pool = await make_async(
        max_size=1, after_connect=after_connect, before_acquire=before_acquire, after_release=after_release
    )
    calls.clear()
    async with pool.connection():
        pass
    async with pool.connection():
        pass
    assert calls == ["before", "release", "before", "release"]


async def test_after_connect_transient_errors_retry_and_others_fail_fast(make_async: Any, ctx: Ctx) -> None:
    fails = [ConnectionResetError("transient"), ConnectionResetError("transient")]

    async def after_connect(r: AsyncRes, meta: ConnectionMetadata) -> None:
        if fails:
            raise fails.pop(0)

    pool = await make_async(max_size=1, open=False, after_connect=after_connect)
    async with pool.connection(timeout=5) as r:
        assert r.id == 3
    assert await wait_until_async(lambda: [x.id for x in ctx.closed] == [1, 2])

    async def bad(r: AsyncRes, meta: ConnectionMetadata) -> None:
        raise ValueError("a bug in after_connect")

    pool2 = await make_async(max_size=1, open=False, after_connect=bad)
    t0 = time.monotonic()
    with pytest.raises(ValueError, match="a bug"):
        await pool2.acquire(timeout=10)
    assert time.monotonic() - t0 < 5, "a deterministic error is not retried until the deadline"


async def test_eager_open_and_lazy(make_async: Any, ctx: Ctx) -> None:
    calls = []

    async def after_connect(r: AsyncRes, meta: ConnectionMetadata) -> None:
        calls.append(r.id)

    pool = await make_async(max_size=5, min_size=3, after_connect=after_connect)
    assert len(calls) == 3 and pool.stats()["idle"] == 3
    ctx.create_errors.extend([ValueError("nope")] * 3)
    with pytest.raises(ValueError, match="nope"):
        await make_async(max_size=2)
    ctx.create_errors.clear()
    ctx.create_errors.extend([ConnectionRefusedError("refused")] * 10_000)
    t0 = time.monotonic()
    with pytest.raises(PoolTimeout, match="could not open 1 connection") as ei:
        await make_async(max_size=2, acquire_timeout=0.5)
    assert time.monotonic() - t0 < 3
    assert isinstance(ei.value.__cause__, ConnectionRefusedError)
    lazy = await make_async(max_size=2, open=False)
    with pytest.raises(PoolTimeout):
        await lazy.acquire(timeout=0.3)


async def test_min_size_is_kept_and_idle_timeout_never_reaps_below_it(make_async: Any, ctx: Ctx) -> None:
    # reaper period 0.5 s
    pool = await make_async(max_size=5, min_size=2, idle_timeout=1.0)
    held = [await pool.acquire() for _ in range(5)]
    for h in held:
        await h.release()
    assert pool.stats()["size"] == 5
    assert await wait_until_async(lambda: pool.stats()["size"] == 2, timeout=4)
    assert await wait_until_async(lambda: len(ctx.live()) == 2)
    survivors = {r.id for r in ctx.live()}
    await sleep_async(1.6)
    assert {r.id for r in ctx.live()} == survivors
    # discarding below min_size triggers a top-up
    pc = await pool.acquire()
    pc.close()
    assert await wait_until_async(lambda: pool.stats()["idle"] == 2)


async def test_max_lifetime_replaces_idle_and_closes_on_return(make_async: Any) -> None:
    pool = await make_async(max_size=2, max_lifetime=0.6, idle_timeout=None)
    async with pool.connection() as r1:
        pass
    await sleep_async(0.7)
    async with pool.connection() as r2:
        assert r2 is not r1
    assert await wait_until_async(lambda: r1.closed)
    pc = await pool.acquire()
    await sleep_async(0.7)
    assert not pc.connection.closed  # a checked-out connection keeps working
    r = pc.connection
    await pc.release()
    assert await wait_until_async(lambda: r.closed)


@pytest.mark.parametrize(
    ("kw", "match", "exc"),
    [
        ({"max_size": 0}, "max_size", ValueError),
        ({"min_size": -1}, "min_size", ValueError),
        ({"min_size": 3, "max_size": 2}, "min_size", ValueError),
        ({"acquire_timeout": 0}, "acquire_timeout", ValueError),
        ({"acquire_timeout": float("inf")}, "acquire_timeout", ValueError),
        ({"max_lifetime": -1}, "max_lifetime", ValueError),
        ({"idle_timeout": "10"}, "idle_timeout", TypeError),
        ({"verify_after": -0.1}, "verify_after", ValueError),
        ({"queue_mode": "random"}, "queue_mode", ValueError),
        ({"max_waiting": -1}, "max_waiting", ValueError),
        ({"num_workers": 0}, "num_workers", ValueError),
        ({"after_connect": 42}, "after_connect", TypeError),
        ({"before_acquire": "x"}, "before_acquire", TypeError),
        ({"after_release": 1.5}, "after_release", TypeError),
        ({"max_size": 2.5}, "max_size", TypeError),
    ],
)
async def test_invalid_options_name_the_option(
    build: str, ctx: Ctx, kw: dict[str, Any], match: str, exc: type
) -> None:
    with pytest.raises(exc, match=match):
        AsyncResourcePool(AsyncRes, ctx, **kw)
    assert ctx.created == [], "nothing is opened before the options are checked"


async def test_fifo_queue_mode_rotates(make_async: Any) -> None:
    pool = await make_async(max_size=3, min_size=3, queue_mode="fifo")
    seen = []
    for _ in range(6):
        async with pool.connection() as r:
            seen.append(r.id)
    assert seen[:3] != [seen[0]] * 3 and sorted(set(seen)) == [1, 2, 3]


# -- asyncio only: loops and cancellation ------------------------------------------------------


@skip_sync
async def test_created_outside_a_loop_and_wrong_loop(build: str, ctx: Ctx) -> None:
    box: dict[str, Any] = {}

    def other_thread() -> None:
        pool = AsyncResourcePool(AsyncRes, ctx, max_size=1)  # no loop running here

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


@skip_sync
async def test_cancelled_waiter_passes_the_connection_on(make_async: Any) -> None:
    pool = await make_async(max_size=1)
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


@skip_sync
async def test_health_check_cancelled_discards_the_resource(make_async: Any, ctx: Ctx) -> None:
    # many cancellations mid-check: nothing leaks
    pool = await make_async(max_size=2, min_size=2)
    ctx.needs = True
    ctx.check_sleep = 1.0
    for _ in range(100):
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(pool.acquire(timeout=5), 0.01)
    s = check_invariants(pool)
    assert s["in_use"] == 0
    assert await wait_until_async(lambda: len(ctx.live()) <= 2)
    ctx.needs = False
    held = [await pool.acquire(timeout=5) for _ in range(2)]
    for h in held:
        await h.release()


@skip_sync
async def test_cancellation_storm_on_a_plain_resource(make_async: Any, ctx: Ctx) -> None:
    ctx.create_sleep = 0.002
    pool = await make_async(max_size=4, max_lifetime=0.2, idle_timeout=None, open=False)
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
                pc = await asyncio.wait_for(pool.acquire(timeout=5), rnd.random() * 0.001)
            except asyncio.TimeoutError:
                pass
            else:
                await pc.release()
    await asyncio.gather(*normal)
    await asyncio.sleep(0.05)
    gc.collect()
    s = check_invariants(pool)
    assert s["size"] <= 4
    assert s["cancelled_waits"] > 100 and s["connects"] > 4
    held = [await pool.acquire(timeout=5) for _ in range(4)]
    assert len({h.connection.id for h in held}) == 4
    for h in held:
        await h.release()
    assert await wait_until_async(lambda: len(ctx.live()) <= 4)


@skip_sync
async def test_cancelled_releaser_frees_the_slot(make_async: Any) -> None:
    entered = asyncio.Event()

    async def slow_release(r: AsyncRes, meta: ConnectionMetadata) -> bool:
        if not entered.is_set():
            entered.set()
            await asyncio.sleep(10)  # cancelled long before
        return True

    pool = await make_async(max_size=1, after_release=slow_release, open=False)

    async def borrow() -> None:
        async with pool.connection():
            pass

    t = asyncio.create_task(borrow())
    await entered.wait()
    t.cancel()
    with pytest.raises(asyncio.CancelledError):
        await t
    s = check_invariants(pool)
    assert s["in_use"] == 0 and s["size"] == 0, "the interrupted connection was discarded"
    async with pool.connection(timeout=1):
        pass
