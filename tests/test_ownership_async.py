"""Ownership over the psycopg pools against the real server, on both builds of the core.

Owners and borrowers are tasks here and threads in the generated tests.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import threading
import time
from typing import Any

import psycopg
import pytest

from fastpool import AsyncOwnership, Mode, OwnershipError, OwnershipRevoked, PoolTimeout, Status

from .acompat import gather_async, run_all_async, skip_sync, sleep_async, spawn_async, wait_until_async
from .conftest import backends, check_invariants

pytestmark = pytest.mark.db


async def pid_of_async(own: Any, **kw: Any) -> int:
    async with own.connection(**kw) as conn:
        return int(conn.info.backend_pid)


async def in_worker_async(fn: Any, *args: Any) -> Any:
    """Run ``fn(*args)`` in a new worker and return (or raise) its result."""
    (result,) = await gather_async(spawn_async(fn, *args))
    return result


def name_of(ident: Any) -> str:
    return str(ident.get_name() if hasattr(ident, "get_name") else ident.name)


async def test_manual_without_checkout_names_identity_and_mode(make_pool_async: Any) -> None:
    own = AsyncOwnership(await make_pool_async(max_size=2), mode=Mode.MANUAL, label="appdb")
    with pytest.raises(OwnershipError) as ei:
        async with own.connection():
            pass
    msg = str(ei.value)
    assert name_of(own.identity()) in msg and "MANUAL" in msg and "appdb" in msg
    assert "checkout()" in msg and "allow(" in msg and "shared" in msg  # the remedies are listed
    assert not isinstance(ei.value, OwnershipRevoked)


async def test_checkout_checkin_statuses(make_pool_async: Any) -> None:
    pool = await make_pool_async(max_size=3)
    own = AsyncOwnership(pool, mode=Mode.MANUAL)
    me = own.identity()
    assert await own.checkout() is Status.OK
    assert await own.checkout() is Status.ALREADY_OWNER
    assert pool.stats()["in_use"] == 1
    stranger = threading.Thread(target=lambda: None, name="stranger")
    helper = threading.Thread(target=lambda: None, name="helper")
    assert own.allow(me, helper) is Status.OK
    assert await own.checkout(caller=helper) is Status.ALREADY_ALLOWED
    assert await own.checkin(caller=helper) is Status.NOT_OWNER
    assert await own.checkin(caller=stranger) is Status.NOT_FOUND
    assert await pid_of_async(own, caller=helper) == await pid_of_async(own)
    assert await own.checkin() is Status.OK
    with pytest.raises(OwnershipError):
        await pid_of_async(own, caller=helper)  # the allowance went with the owner
    assert await own.checkin() is Status.NOT_FOUND
    s = check_invariants(pool)
    assert s["in_use"] == 0 and s["idle"] >= 1


async def test_set_mode_revokes_every_owner(make_pool_async: Any, admin: Any) -> None:
    pool = await make_pool_async(max_size=4)
    own = AsyncOwnership(pool, mode=Mode.MANUAL)
    admin.execute("CREATE TABLE IF NOT EXISTS own_t8 (v text)")
    ready: list[str] = []
    done = threading.Event()

    async def owner(tag: str) -> None:
        await own.checkout()
        async with own.connection() as conn:
            await conn.execute("INSERT INTO own_t8 VALUES (%s)", (tag,))  # uncommitted
        ready.append(tag)
        assert await wait_until_async(done.is_set, 10)
        with pytest.raises(OwnershipError):
            await pid_of_async(own)

    workers = [spawn_async(owner, t) for t in ("a", "b")]
    assert await wait_until_async(lambda: len(ready) == 2, 10)
    assert own.stats()["owners"] == 2
    assert await own.set_mode(Mode.MANUAL) is Status.OK  # same mode: no-op
    assert own.stats()["owners"] == 2
    assert await own.set_mode(Mode.AUTO) is Status.OK
    assert own.stats()["owners"] == 0
    assert await own.set_mode(Mode.MANUAL) is Status.OK
    done.set()
    await gather_async(*workers)
    assert admin.execute("SELECT count(*) FROM own_t8").fetchone()[0] == 0  # both rolled back
    s = check_invariants(pool)
    assert s["in_use"] == 0


async def test_shared_mode(make_pool_async: Any) -> None:
    pool = await make_pool_async(max_size=4)
    own = AsyncOwnership(pool, mode=Mode.MANUAL)
    me = own.identity()
    assert await own.set_mode(Mode.shared(me)) is Status.NOT_FOUND
    other_pid: list[int] = []
    release_other = threading.Event()

    async def other_owner() -> None:
        await own.checkout()
        other_pid.append(await pid_of_async(own))
        assert await wait_until_async(release_other.is_set, 10)
        other_pid.append(await pid_of_async(own))  # revoked by the switch: now it shares the owner's

    other = spawn_async(other_owner)
    assert await wait_until_async(lambda: len(other_pid) == 1, 10)
    await own.checkout()
    helper = threading.Thread(target=lambda: None)
    own.allow(me, helper)
    assert await own.set_mode(Mode.shared(helper)) is Status.NOT_OWNER
    assert await own.set_mode(Mode.shared(me)) is Status.OK
    assert await own.set_mode(Mode.shared(me)) is Status.OK
    release_other.set()
    await gather_async(other)
    mine = await pid_of_async(own)
    assert other_pid == [other_pid[0], mine] and other_pid[0] != mine
    assert await in_worker_async(pid_of_async, own) == mine  # a stranger shares the owner's connection
    # a second live owner cannot take over shared mode
    second = await own.start_owner(allow_current=False)
    assert await own.set_mode(Mode.shared(second)) is Status.ALREADY_SHARED
    await second.stop()
    # the shared owner ends: the mode becomes MANUAL
    assert await own.checkin() is Status.OK
    assert own.mode == Mode.MANUAL
    with pytest.raises(OwnershipError):
        await in_worker_async(pid_of_async, own)
    await own.checkout()
    assert await own.set_mode(Mode.shared(me)) is Status.OK
    assert await in_worker_async(pid_of_async, own) == await pid_of_async(own)
    await own.checkin()
    check_invariants(pool)


async def test_shared_owner_handle_as_a_context(make_pool_async: Any) -> None:
    pool = await make_pool_async(max_size=3)
    own = AsyncOwnership(pool, mode=Mode.MANUAL)
    async with own.start_owner(shared=True) as owner:
        mine = await pid_of_async(own, caller=owner)
        assert await in_worker_async(pid_of_async, own) == mine
        assert own.mode == Mode.shared(owner)
    assert own.mode == Mode.MANUAL
    with pytest.raises(OwnershipError):
        await in_worker_async(pid_of_async, own)
    h = await own.start_owner()
    assert await own.set_mode(Mode.AUTO) is Status.OK
    assert not h.active
    assert await h.stop() is Status.NOT_FOUND
    check_invariants(pool)


async def test_ownership_timeout_closes_and_warns(
    make_pool_async: Any, admin: Any, app_name: str, caplog: Any
) -> None:
    caplog.set_level(logging.WARNING, logger="fastpool")
    pool = await make_pool_async(max_size=2)
    own = AsyncOwnership(pool, mode=Mode.MANUAL, ownership_timeout=0.5)
    await own.checkout()
    pid = await pid_of_async(own)
    await sleep_async(0.8)
    assert await wait_until_async(lambda: pid not in backends(admin, app_name), 5)
    with pytest.raises(OwnershipError):
        await pid_of_async(own)
    assert any("timed out" in r.getMessage() for r in caplog.records)
    assert await wait_until_async(lambda: check_invariants(pool)["in_use"] == 0)


async def test_unallow_existing_moves_a_worker(make_pool_async: Any) -> None:
    own = AsyncOwnership(await make_pool_async(max_size=3), mode=Mode.MANUAL)
    a = await own.start_owner(allow_current=False, name="A")
    b = await own.start_owner(allow_current=False, name="B")
    worker = threading.Thread(target=lambda: None, name="worker")
    assert own.allow(a, worker) is Status.OK
    assert own.allow(b, worker) is Status.ALREADY_ALLOWED
    assert own.allow(b, worker, unallow_existing=True) is Status.OK
    b_pid = await pid_of_async(own, caller=b)
    await a.stop()
    assert await pid_of_async(own, caller=worker) == b_pid
    # a target that owns a connection is checked in first
    c = await own.start_owner(allow_current=False, name="C")
    assert own.allow(b, c, unallow_existing=True) is Status.OK
    assert await pid_of_async(own, caller=c) == b_pid
    await b.stop()
    with pytest.raises(OwnershipError):
        await pid_of_async(own, caller=worker)


async def test_hooks_post_checkout_and_pre_checkin(make_pool_async: Any) -> None:
    pool = await make_pool_async(max_size=2)

    async def bad_post(conn: Any) -> None:
        raise RuntimeError("post_checkout says no")

    own = AsyncOwnership(pool, mode=Mode.MANUAL, post_checkout=bad_post)
    before = pool.stats()["size"]
    with pytest.raises(RuntimeError, match="post_checkout says no"):
        await own.checkout()
    assert await wait_until_async(lambda: pool.stats()["in_use"] == 0)
    assert pool.stats()["size"] <= max(before, 1)
    reasons: list[Any] = []

    async def pre(reason: Any, conn: Any) -> None:
        reasons.append(reason)
        raise RuntimeError("pre_checkin says no")

    own2 = AsyncOwnership(pool, mode=Mode.MANUAL, pre_checkin=pre)
    await own2.checkout()
    pid = await pid_of_async(own2)
    discarded = pool.stats()["discarded"]
    with pytest.raises(RuntimeError, match="pre_checkin says no"):
        await own2.checkin()
    assert reasons == ["checkin"]
    async with pool.connection() as conn:  # the connection was discarded, not returned
        assert conn.info.backend_pid != pid
    assert pool.stats()["discarded"] > discarded
    check_invariants(pool)


async def test_exclusive_borrow_and_nesting(make_pool_async: Any) -> None:
    own = AsyncOwnership(await make_pool_async(max_size=2), mode=Mode.MANUAL)
    me = own.identity()
    await own.checkout()

    async def helper() -> Any:
        try:
            async with own.connection(caller=me, timeout=0.3):
                return "got it"
        except PoolTimeout as exc:
            return exc

    async with own.connection() as c1:
        async with own.connection() as c2:
            assert c1 is c2  # nesting in the same identity: same object, no deadlock
        assert isinstance(await in_worker_async(helper), PoolTimeout)
    assert await in_worker_async(helper) == "got it"
    await own.checkin()


async def test_owner_worker_ends_idle_connection_checked_in(make_pool_async: Any) -> None:
    pool = await make_pool_async(max_size=2)
    own = AsyncOwnership(pool, mode=Mode.MANUAL)
    helper = threading.Thread(target=lambda: None)
    holder: dict[str, Any] = {}

    async def owner() -> None:
        await own.checkout()
        holder["pid"] = await pid_of_async(own)
        own.allow(own.identity(), helper)

    await in_worker_async(owner)
    assert await wait_until_async(lambda: own.stats()["owners"] == 0, 5), "the owner's end is noticed"
    with pytest.raises(OwnershipError):
        await pid_of_async(own, caller=helper)
    assert await wait_until_async(lambda: pool.stats()["in_use"] == 0)
    async with pool.connection() as conn:
        assert conn.info.backend_pid == holder["pid"]  # checked in, not closed


async def test_owner_stops_while_borrower_queries(make_pool_async: Any, admin: Any, app_name: str) -> None:
    # the query is cancelled, the borrower gets OwnershipRevoked, the backend goes
    pool = await make_pool_async(max_size=2)
    own = AsyncOwnership(pool, mode=Mode.MANUAL)
    handle = await own.start_owner(allow_current=False)
    pid = await pid_of_async(own, caller=handle)
    entered = threading.Event()

    async def borrower() -> BaseException | None:
        try:
            with own.allow_scope(handle):
                async with own.connection() as conn:
                    entered.set()
                    await conn.execute("SELECT pg_sleep(10)")
        except BaseException as exc:
            return exc
        return None

    b = spawn_async(borrower)
    assert await wait_until_async(entered.is_set, 10)
    await sleep_async(0.2)
    t0 = time.monotonic()
    await handle.stop()
    (err,) = await gather_async(b, timeout=5)
    assert time.monotonic() - t0 < 1.5
    assert isinstance(err, OwnershipRevoked)
    assert "checked in" in str(err)
    assert isinstance(err.__cause__, psycopg.errors.QueryCanceled)
    assert await wait_until_async(lambda: pid not in backends(admin, app_name), 5)
    s = check_invariants(pool)
    assert s["in_use"] == 0


async def test_handle_collected_is_revoked(make_pool_async: Any) -> None:
    pool = await make_pool_async(max_size=2)
    own = AsyncOwnership(pool, mode=Mode.MANUAL)
    h = await own.start_owner(allow_current=False)
    assert pool.stats()["in_use"] == 1
    del h
    gc.collect()
    assert await wait_until_async(lambda: pool.stats()["in_use"] == 0, 5)
    assert own.stats()["owners"] == 0


async def test_auto_mode_workers_get_their_own(make_pool_async: Any) -> None:
    pool = await make_pool_async(max_size=3)
    own = AsyncOwnership(pool)  # AUTO

    async def twice() -> tuple[int, int]:
        return await pid_of_async(own), await pid_of_async(own)

    a1, a2 = await twice()
    assert a1 == a2  # the same identity: the same backend across borrows
    b1, b2 = await in_worker_async(twice)
    assert b1 == b2 and b1 != a1  # another worker: its own, not its parent's
    assert await wait_until_async(lambda: own.stats()["owners"] == 1)  # the worker's ended with it
    await own.checkin()
    assert await wait_until_async(lambda: pool.stats()["in_use"] == 0)


async def test_bad_arguments(make_pool_async: Any) -> None:
    pool = await make_pool_async(max_size=1)
    with pytest.raises(TypeError, match="mode"):
        AsyncOwnership(pool, mode="manual")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="ownership_timeout"):
        AsyncOwnership(pool, ownership_timeout=-1)
    with pytest.raises(ValueError, match="ownership_log"):
        AsyncOwnership(pool, ownership_log="loud")
    with pytest.raises(TypeError, match="pool"):
        AsyncOwnership(object())  # type: ignore[arg-type]
    own = AsyncOwnership(pool)
    with pytest.raises(TypeError, match="target"):
        own.allow(own.identity(), 42)
    with pytest.raises(TypeError, match="caller"):
        await own.checkout(caller="me")


async def test_pool_close_revokes_owners(make_pool_async: Any) -> None:
    pool = await make_pool_async(max_size=2)
    own = AsyncOwnership(pool, mode=Mode.MANUAL)
    await own.checkout()
    await pool.close(timeout=1)
    with pytest.raises(OwnershipError):
        await pid_of_async(own)
    assert pool.stats()["in_use"] == 0


async def test_many_workers_race_on_one_owner(make_pool_async: Any) -> None:
    pool = await make_pool_async(max_size=2)
    own = AsyncOwnership(pool, mode=Mode.MANUAL)
    owner = await own.start_owner(allow_current=False)
    inside = [0]
    worst = [0]
    lock = threading.Lock()

    async def worker(i: int) -> None:
        for _ in range(30):
            with own.allow_scope(owner):
                async with own.connection(timeout=20) as conn:
                    with lock:
                        inside[0] += 1
                        worst[0] = max(worst[0], inside[0])
                    await conn.execute("SELECT 1")
                    with lock:
                        inside[0] -= 1

    await run_all_async(worker, 16)
    assert worst[0] == 1  # never two borrowers at once
    await owner.stop()
    s = check_invariants(pool)
    assert s["in_use"] == 0


async def test_ownership_log_records_changes(make_pool_async: Any, caplog: Any) -> None:
    caplog.set_level(logging.INFO, logger="fastpool")
    own = AsyncOwnership(await make_pool_async(max_size=2), mode=Mode.MANUAL, ownership_log="info")
    owner = await own.start_owner(name="logged")
    await owner.stop()
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "owner 'logged' checked out a connection in mode Mode.MANUAL" in text
    assert "was allowed by owner 'logged'" in text
    assert "lost connection" in text and "checked in" in text


async def test_backend_killed_under_an_owner(make_pool_async: Any, admin: Any) -> None:
    pool = await make_pool_async(max_size=2)
    own = AsyncOwnership(pool, mode=Mode.MANUAL)
    await own.checkout()
    pid = await pid_of_async(own)
    admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
    with pytest.raises(psycopg.OperationalError):
        async with own.connection() as conn:
            await conn.execute("SELECT 1")
    with pytest.raises(OwnershipError):
        await pid_of_async(own)  # the dead connection was revoked, not handed out again
    assert own.stats()["owners"] == 0
    assert await own.checkout() is Status.OK
    assert await pid_of_async(own) != pid
    await own.checkin()
    s = check_invariants(pool)
    assert s["in_use"] == 0


# -- asyncio only: child tasks, owner tasks, cancellation -------------------------------------


@skip_sync
async def test_allow_shares_uncommitted_work_with_child_tasks(make_pool_async: Any) -> None:
    own = AsyncOwnership(await make_pool_async(max_size=4), mode=Mode.MANUAL)
    me = asyncio.current_task()
    assert await own.checkout() is Status.OK
    async with own.connection() as conn:
        await conn.execute("CREATE TEMP TABLE t4 (v int)")
        await conn.execute("INSERT INTO t4 VALUES (4)")  # an open transaction
        txid = (await (await conn.execute("SELECT txid_current()")).fetchone())[0]  # type: ignore[index]
        pid = conn.info.backend_pid

    async def allowed() -> tuple[Any, ...]:
        async with own.connection() as c:
            cur = await c.execute("SELECT (SELECT v FROM t4), txid_current(), pg_backend_pid()")
            row = await cur.fetchone()
        assert row is not None
        return tuple(row)

    started = asyncio.Event()

    async def waiting_child() -> tuple[Any, ...]:
        await started.wait()
        return await allowed()

    stranger_task = asyncio.create_task(waiting_child())
    assert own.allow(stranger_task, stranger_task) is Status.NOT_FOUND  # the parent has no checkout
    assert own.allow(me, stranger_task) is Status.OK
    started.set()
    assert await stranger_task == (4, txid, pid)
    ev = asyncio.Event()

    async def middle() -> tuple[Any, ...]:
        await ev.wait()
        inner_ev = asyncio.Event()

        async def leaf() -> tuple[Any, ...]:
            await inner_ev.wait()
            return await allowed()

        leaf_task = asyncio.create_task(leaf())
        assert own.allow(asyncio.current_task(), leaf_task) is Status.OK  # transitive
        inner_ev.set()
        return await leaf_task

    mid = asyncio.create_task(middle())
    assert own.allow(me, mid) is Status.OK
    ev.set()
    assert await mid == (4, txid, pid)
    await own.checkin()


@skip_sync
async def test_owner_task_ends_while_allowed_task_sleeps(
    make_pool_async: Any, admin: Any, app_name: str
) -> None:
    pool = await make_pool_async(max_size=2)
    own = AsyncOwnership(pool, mode=Mode.MANUAL)
    entered = asyncio.Event()
    finish = asyncio.Event()

    async def owner() -> None:
        await own.checkout()
        await finish.wait()

    owner_task = asyncio.create_task(owner())
    await asyncio.sleep(0.05)
    pid = await pid_of_async(own, caller=owner_task)

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
    assert await wait_until_async(lambda: pid not in backends(admin, app_name), 5)
    s = check_invariants(pool)
    assert s["in_use"] == 0 and s["size"] <= 2


@skip_sync
async def test_borrowers_are_served_fifo_and_cancellation_passes_on(make_pool_async: Any) -> None:
    own = AsyncOwnership(await make_pool_async(max_size=2), mode=Mode.MANUAL)
    await own.checkout()
    me = asyncio.current_task()
    order: list[int] = []

    async def borrower(i: int) -> None:
        async with own.connection(caller=me, timeout=10):
            order.append(i)
            await asyncio.sleep(0)

    async with own.connection():
        tasks = [asyncio.create_task(borrower(i)) for i in range(20)]
        await asyncio.sleep(0.05)
        tasks[3].cancel()
        tasks[7].cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    assert order == [i for i in range(20) if i not in (3, 7)]
    assert own.stats()["borrowed"] == 0
    await own.checkin()


@skip_sync
async def test_storm_of_cancellations(make_pool_async: Any) -> None:
    pool = await make_pool_async(max_size=3)

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
    # a cancel that left the connection mid-query revokes it: later borrowers get OwnershipError
    ok = (asyncio.CancelledError, OwnershipError)
    bad = [r for r in res if isinstance(r, BaseException) and not isinstance(r, ok)]
    assert not bad, bad[:3]
    assert sum(r is None for r in res) > 100
    assert inside[1] == 1
    await owner.stop()
    assert await wait_until_async(lambda: pool.stats()["in_use"] == 0)
    check_invariants(pool)
