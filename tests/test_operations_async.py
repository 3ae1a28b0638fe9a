"""Operating the pool: leak detection, histograms, max_uses, pause/resume, drain(spread), load shedding."""

from __future__ import annotations

import logging
import time
from typing import Any

import pytest

from fastpool import PoolTimeout, TooManyRequests

from .acompat import gather_async, sleep_async, spawn_async, wait_until_async
from .conftest import check_invariants


async def leaky_acquirer(pool: Any) -> Any:
    """Stands for the application code that forgets to give a connection back."""
    return await pool.getconn()


async def test_leak_timeout_warns_with_the_acquirers_stack(
    make_async: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="fastpool")
    pool = await make_async(max_size=2, leak_timeout=0.1)
    conn = await leaky_acquirer(pool)
    async with pool.connection():  # held briefly: never reported
        pass
    assert await wait_until_async(lambda: pool.stats()["leaks"] == 1, timeout=3)
    assert await wait_until_async(lambda: any("held for" in r.getMessage() for r in caplog.records))
    warning = next(r for r in caplog.records if "held for" in r.getMessage())
    text = warning.getMessage()
    assert "leak_timeout 0.1 s" in text
    assert "leaky_acquirer" in text and "test_operations" in text, text  # the acquirer's own frames
    assert "_shell" not in text  # fastpool's frames are left out
    await sleep_async(0.1)
    assert pool.stats()["leaks"] == 1, "reported once"
    await pool.putconn(conn)
    assert await wait_until_async(lambda: any("given back after" in r.getMessage() for r in caplog.records))
    back = next(r for r in caplog.records if "given back after" in r.getMessage())
    held = float(back.getMessage().split("after ")[1].split(" s")[0])
    assert held >= 0.1
    s = check_invariants(pool)
    assert s["leaks"] == 1 and s["in_use"] == 0


async def test_leak_timeout_covers_connection_blocks(
    make_async: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="fastpool")
    pool = await make_async(max_size=1, leak_timeout=0.05)
    async with pool.connection():
        assert await wait_until_async(lambda: pool.stats()["leaks"] == 1, timeout=3)
    assert any("test_leak_timeout_covers_connection_blocks" in r.getMessage() for r in caplog.records)
    pc = await pool.acquire()  # acquire() and a later re-borrow of the same connection are tracked afresh
    assert await wait_until_async(lambda: pool.stats()["leaks"] == 2, timeout=3)
    await pc.release()


async def test_leak_tracking_is_off_by_default(make_async: Any) -> None:
    pool = await make_async(max_size=1)
    conn = await pool.getconn()
    assert (pool._leaks is None and pool._reap_interval is None) or pool._reap_interval >= 0.5
    await pool.putconn(conn)
    assert pool.stats()["leaks"] == 0


async def test_the_eager_open_is_not_counted_as_a_request(make_async: Any) -> None:
    """A pool opened and never used reports no request and no wait or use; its connects count."""
    pool = await make_async(min_size=2, max_size=4)
    s = check_invariants(pool)
    assert s["requests"] == s["hits"] == s["waits"] == s["returns"] == 0
    assert s["wait_time"]["count"] == s["use_time"]["count"] == 0 and s["wait_ms"] == 0
    assert s["connects"] == s["connect_time"]["count"] == 2
    async with pool.connection():
        pass
    s = pool.stats()
    assert s["requests"] == 1 and s["wait_time"]["count"] == s["use_time"]["count"] == 1


async def test_histograms_of_wait_use_and_connect_times(make_async: Any) -> None:
    pool = await make_async(max_size=1)
    async with pool.connection():
        await sleep_async(0.03)  # one use of about 30 ms

    async def wait_then_use() -> None:
        async with pool.connection():
            pass

    async with pool.connection():
        waiter = spawn_async(wait_then_use)
        assert await wait_until_async(lambda: pool.stats()["waiting"] == 1)
        await sleep_async(0.03)  # the waiter waits about 30 ms
    await gather_async(waiter)
    s = check_invariants(pool)
    bounds = s["use_time"]["bounds"]
    assert bounds == s["wait_time"]["bounds"] == s["connect_time"]["bounds"]
    assert list(bounds) == sorted(bounds) and len(s["use_time"]["counts"]) == len(bounds) + 1

    def bucket_of(seconds: float) -> int:
        return next((i for i, b in enumerate(bounds) if seconds <= b), len(bounds))

    use = s["use_time"]
    assert use["count"] == s["returns"] >= 3
    assert use["counts"][bucket_of(0.03)] + use["counts"][bucket_of(0.03) + 1] >= 1  # the 30 ms use
    assert 0.06 <= use["sum"] < 1.0
    wait = s["wait_time"]
    assert wait["count"] == s["requests"] >= 3  # all but the waiter waited 0 s (hit or new connection)
    assert sum(wait["counts"][bucket_of(0.02) :]) == 1  # the waiter, about 30 ms
    assert 0.02 <= wait["sum"] < 1.0
    conn = s["connect_time"]
    assert conn["count"] == s["connects"] == 1 and conn["sum"] >= 0.0


async def test_max_uses_retires_connections_with_jitter(make_async: Any, ctx: Any) -> None:
    pool = await make_async(max_size=1, max_uses=10)
    for _ in range(30):
        async with pool.connection():
            pass
    s = check_invariants(pool)
    # each connection serves 9 or 10 borrows (10, less up to 10 %): 30 borrows need 3 or 4
    assert 3 <= s["connects"] <= 4, s["connects"]
    assert await wait_until_async(lambda: len(ctx.closed) == s["connects"] - 1)


async def test_max_uses_is_checked(make_async: Any) -> None:
    with pytest.raises(ValueError, match="max_uses"):
        await make_async(max_uses=-1)
    with pytest.raises(TypeError, match="max_uses"):
        await make_async(max_uses=1.5)


async def test_pause_queues_callers_until_resume(make_async: Any) -> None:
    pool = await make_async(max_size=2)
    async with pool.connection() as first:
        pass
    pool.pause()
    assert pool.paused and pool.stats()["paused"]
    with pytest.raises(PoolTimeout):  # a caller waits within its timeout, then times out
        async with pool.connection(timeout=0.05):
            pass

    got: list[Any] = []

    async def caller() -> None:
        async with pool.connection(timeout=5) as r:
            got.append(r)

    t = spawn_async(caller)
    assert await wait_until_async(lambda: pool.stats()["waiting"] == 1)
    await sleep_async(0.05)
    s = check_invariants(pool)
    assert got == [] and s["idle"] == 1 and s["size"] == 1, "nothing handed out, no connect started"
    pool.resume()
    await gather_async(t)
    assert got == [first] and not pool.paused
    check_invariants(pool)


async def test_drain_with_spread_replaces_every_connection(make_async: Any, ctx: Any) -> None:
    pool = await make_async(min_size=4, max_size=4)
    assert await wait_until_async(lambda: pool.stats()["idle"] == 4)
    originals = list(ctx.created)
    started = time.monotonic()
    pool.drain(spread=0.4)
    await sleep_async(0.05)
    assert len(ctx.closed) < 4, "not all at once"
    assert await wait_until_async(lambda: all(r.closed for r in originals), timeout=3)
    assert time.monotonic() - started < 1.5
    assert await wait_until_async(lambda: pool.stats()["idle"] == 4)  # min_size refilled
    assert not any(r.closed for r in ctx.created if r not in originals)
    check_invariants(pool)
    with pytest.raises(ValueError, match="spread"):
        pool.drain(spread=-1)


async def test_queue_target_sheds_a_slow_queue(make_async: Any) -> None:
    pool = await make_async(max_size=1, queue_target=0.01, queue_interval=0.05)
    stop = False

    async def hog() -> None:  # keeps the only connection busy: every caller waits about 50 ms
        while not stop:
            try:
                async with pool.connection(timeout=10):
                    await sleep_async(0.05)
            except TooManyRequests:
                pass

    outcomes: list[tuple[str, float]] = []

    async def caller() -> None:
        t0 = time.monotonic()
        try:
            async with pool.connection(timeout=5):
                await sleep_async(0.05)
            outcomes.append(("served", time.monotonic() - t0))
        except TooManyRequests:
            outcomes.append(("shed", time.monotonic() - t0))

    h = spawn_async(hog)
    callers = []
    for _ in range(12):
        callers.append(spawn_async(caller))
        await sleep_async(0.02)
    await gather_async(*callers)
    stop = True
    await gather_async(h)
    shed = [d for kind, d in outcomes if kind == "shed"]
    assert shed, outcomes
    assert max(shed) < 2 * 0.01 + 0.1, "a shed caller is refused after twice queue_target, not its timeout"
    s = check_invariants(pool)
    assert s["shed"] >= len(shed) and s["timeouts"] == 0  # (the hog is shed at times too)


async def test_without_queue_target_nobody_is_shed(make_async: Any) -> None:
    pool = await make_async(max_size=1)

    async def caller() -> None:
        async with pool.connection(timeout=5):
            await sleep_async(0.02)

    await gather_async(*(spawn_async(caller) for _ in range(8)))
    assert pool.stats()["shed"] == 0


async def test_stats_is_typed(make_async: Any) -> None:
    import fastpool

    pool = await make_async(max_size=1)
    s: fastpool.PoolStats = pool.stats()
    assert set(fastpool.PoolStats.__annotations__) <= set(s), set(fastpool.PoolStats.__annotations__) - set(s)
