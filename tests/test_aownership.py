"""AsyncOwnership and AsyncSandbox over the asyncio pool, real server (SPEC §2.7, T001), both twins."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import psycopg
import pytest

from fastpool import (
    AsyncOwnership,
    AsyncSandbox,
    Mode,
    OwnershipError,
    OwnershipRevoked,
    PoolTimeout,
    Status,
)

from .conftest import backends, check_invariants, wait_until

pytestmark = [pytest.mark.db, pytest.mark.asyncio]


async def pid_of(own: Any, **kw: Any) -> int:
    async with own.connection(**kw) as conn:
        return int(conn.info.backend_pid)


async def test_auto_mode_tasks(apool: Any) -> None:
    # T001-03
    pool = apool(max_size=4)
    own = AsyncOwnership(pool)

    async def twice() -> tuple[int, int]:
        return await pid_of(own), await pid_of(own)

    a1, a2 = await twice()
    assert a1 == a2  # the same task: the same backend across borrows
    b1, b2 = await asyncio.create_task(twice())
    assert b1 == b2 and b1 != a1  # another (child) task: its own, not its parent's
    assert await wait_until_async(lambda: own.stats()["owners"] == 1)  # the child's ended with it
    await own.checkin()
    assert await wait_until_async(lambda: pool.stats()["in_use"] == 0)


async def wait_until_async(pred: Any, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.01)
    return True


async def test_allow_shares_uncommitted_work(apool: Any) -> None:
    # T001-04
    own = AsyncOwnership(apool(max_size=4), mode=Mode.MANUAL)
    me = asyncio.current_task()
    assert await own.checkout() is Status.OK
    async with own.connection() as conn:
        await conn.execute("CREATE TEMP TABLE t4 (v int)")
        await conn.execute("INSERT INTO t4 VALUES (4)")  # an open transaction
        txid = (await (await conn.execute("SELECT txid_current()")).fetchone())[0]  # type: ignore[index]
        pid = conn.info.backend_pid

    async def allowed(parent: Any) -> tuple[Any, ...]:
        async with own.connection() as c:
            cur = await c.execute("SELECT (SELECT v FROM t4), txid_current(), pg_backend_pid()")
            row = await cur.fetchone()
        assert row is not None
        return tuple(row)

    started = asyncio.Event()

    async def waiting_child() -> tuple[Any, ...]:
        await started.wait()
        return await allowed(None)

    stranger_task = asyncio.create_task(waiting_child())
    assert own.allow(stranger_task, stranger_task) is Status.NOT_FOUND  # the parent has no checkout
    assert own.allow(me, stranger_task) is Status.OK
    started.set()
    assert await stranger_task == (4, txid, pid)

    async def grandchild_via(parent: asyncio.Task[Any]) -> tuple[Any, ...]:
        return await allowed(None)

    ev = asyncio.Event()

    async def middle() -> tuple[Any, ...]:
        await ev.wait()
        inner_ev = asyncio.Event()

        async def leaf() -> tuple[Any, ...]:
            await inner_ev.wait()
            return await allowed(None)

        leaf_task = asyncio.create_task(leaf())
        assert own.allow(asyncio.current_task(), leaf_task) is Status.OK  # transitive
        inner_ev.set()
        return await leaf_task

    mid = asyncio.create_task(middle())
    assert own.allow(me, mid) is Status.OK
    ev.set()
    assert await mid == (4, txid, pid)
    await own.checkin()


async def test_owner_task_ends_idle_checks_in(apool: Any, admin: Any) -> None:
    # T001-06
    admin.execute("CREATE TABLE IF NOT EXISTS sb_t6 (v int)")
    pool = apool(max_size=2)
    sb = AsyncSandbox(pool)
    ready, finish = asyncio.Event(), asyncio.Event()
    info: dict[str, Any] = {}

    async def owner() -> None:
        await sb.checkout()
        async with sb.connection() as conn:
            await conn.execute("INSERT INTO sb_t6 VALUES (6)")
            info["pid"] = conn.info.backend_pid
        ready.set()
        await finish.wait()

    owner_task = asyncio.create_task(owner())
    await ready.wait()

    async def helper() -> int:
        await finish.wait()
        await asyncio.sleep(0.05)
        return await pid_of(sb)

    helper_task = asyncio.create_task(helper())
    assert sb.allow(owner_task, helper_task) is Status.OK
    finish.set()
    await owner_task
    with pytest.raises(OwnershipError):
        await helper_task
    assert await wait_until_async(lambda: pool.stats()["in_use"] == 0)
    async with pool.connection() as conn:
        assert conn.info.backend_pid == info["pid"]  # back in the pool, not closed
        cur = await conn.execute("SELECT count(*) FROM sb_t6")
        assert (await cur.fetchone()) == (0,)  # the sandbox was rolled back


async def test_owner_ends_while_allowed_task_sleeps(apool: Any, admin: Any, app_name: str) -> None:
    # T001-07
    pool = apool(max_size=2)
    own = AsyncOwnership(pool, mode=Mode.MANUAL)
    entered = asyncio.Event()
    finish = asyncio.Event()

    async def owner() -> None:
        await own.checkout()
        await finish.wait()

    owner_task = asyncio.create_task(owner())
    await asyncio.sleep(0.05)
    pid = await pid_of(own, caller=owner_task)

    async def borrower() -> None:
        async with own.connection() as conn:
            entered.set()
            await conn.execute("SELECT pg_sleep(10)")

    b = asyncio.create_task(borrower())
    assert own.allow(owner_task, b) is Status.OK
    await entered.wait()
    await asyncio.sleep(0.2)
    t0 = time.monotonic()
    finish.set()
    with pytest.raises(OwnershipRevoked) as ei:
        await asyncio.wait_for(b, 5)
    assert time.monotonic() - t0 < 1.0
    assert "exited" in str(ei.value)
    assert isinstance(ei.value.__cause__, psycopg.errors.QueryCanceled)
    assert wait_until(lambda: pid not in backends(admin, app_name), 5)
    s = check_invariants(pool)
    assert s["in_use"] == 0 and s["size"] <= 2


async def test_exclusive_borrow_timeout_and_nesting(apool: Any) -> None:
    # T001-13
    own = AsyncOwnership(apool(max_size=2), mode=Mode.MANUAL)
    await own.checkout()
    me = asyncio.current_task()
    got: list[Any] = []

    async def other() -> None:
        try:
            async with own.connection(caller=me, timeout=0.3):
                got.append("in")
        except PoolTimeout as exc:
            got.append(exc)

    async with own.connection() as c1:
        async with own.connection() as c2:
            assert c1 is c2
        await asyncio.create_task(other())
    assert isinstance(got[0], PoolTimeout)
    await asyncio.create_task(other())
    assert got[1] == "in"
    await own.checkin()


async def test_borrowers_are_served_fifo_and_cancellation_passes_on(apool: Any) -> None:
    own = AsyncOwnership(apool(max_size=2), mode=Mode.MANUAL)
    await own.checkout()
    me = asyncio.current_task()
    order: list[int] = []
    gate = asyncio.Event()

    async def borrower(i: int) -> None:
        async with own.connection(caller=me, timeout=10):
            order.append(i)
            await asyncio.sleep(0)

    async with own.connection():
        tasks = [asyncio.create_task(borrower(i)) for i in range(20)]
        await asyncio.sleep(0.05)
        tasks[3].cancel()
        tasks[7].cancel()
        gate.set()
    await asyncio.gather(*tasks, return_exceptions=True)
    assert order == [i for i in range(20) if i not in (3, 7)]
    assert own.stats()["borrowed"] == 0
    await own.checkin()


async def test_async_ownership_timeout(apool: Any, admin: Any, app_name: str, caplog: Any) -> None:
    caplog.set_level("WARNING", logger="fastpool")
    pool = apool(max_size=2)
    own = AsyncOwnership(pool, mode=Mode.MANUAL, ownership_timeout=0.3)
    await own.checkout()
    pid = await pid_of(own)
    await asyncio.sleep(0.6)
    assert wait_until(lambda: pid not in backends(admin, app_name), 5)
    with pytest.raises(OwnershipError):
        await pid_of(own)
    assert any("timed out" in r.getMessage() for r in caplog.records)


async def test_async_shared_mode_and_set_mode(apool: Any) -> None:
    pool = apool(max_size=3)
    own = AsyncOwnership(pool, mode=Mode.MANUAL)
    async with own.start_owner(shared=True) as owner:
        mine = await pid_of(own, caller=owner)
        assert await asyncio.create_task(pid_of(own)) == mine
        assert own.mode == Mode.shared(owner)
    assert own.mode == Mode.MANUAL
    with pytest.raises(OwnershipError):
        await asyncio.create_task(pid_of(own))
    h = await own.start_owner()
    assert await own.set_mode(Mode.AUTO) is Status.OK
    assert not h.active
    assert await h.stop() is Status.NOT_FOUND
    check_invariants(pool)


async def test_storm_of_cancellations(apool: Any) -> None:
    pool = apool(max_size=3)

    async def autocommit(conn: Any) -> None:  # an async post_checkout hook
        await conn.set_autocommit(True)

    own = AsyncOwnership(pool, mode=Mode.MANUAL, post_checkout=autocommit)
    owner = await own.start_owner(allow_current=False)
    inside = [0, 0]

    async def worker(i: int) -> None:
        with own.allow_scope(owner):
            async with own.connection(timeout=10) as conn:
                inside[0] += 1
                inside[1] = max(inside)
                try:
                    await conn.execute("SELECT pg_sleep(0.001)")
                finally:
                    inside[0] -= 1

    tasks = [asyncio.create_task(worker(i)) for i in range(200)]
    for k in range(0, 200, 7):
        await asyncio.sleep(0.001)
        tasks[k].cancel()
    res = await asyncio.gather(*tasks, return_exceptions=True)
    # a cancel that left the connection mid-query revokes it (R1): later borrowers get OwnershipError
    ok = (asyncio.CancelledError, OwnershipError)
    bad = [r for r in res if isinstance(r, BaseException) and not isinstance(r, ok)]
    assert not bad, bad[:3]
    assert sum(r is None for r in res) > 100
    assert inside[1] == 1
    # a cancel mid-query leaves the transaction state unknown: the owner's connection is either
    # still usable or revoked, never shared in a broken state
    await owner.stop()
    assert await wait_until_async(lambda: pool.stats()["in_use"] == 0)
    check_invariants(pool)
