"""Ownership with threads: the callers chain through tasks, to_thread and plain threads, reused threads."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from fastpool import Mode, OwnershipError, Status
from fastpool.ownership import Ownership

pytestmark = pytest.mark.db


def pid_of(own: Any, **kw: Any) -> int:
    with own.connection(**kw) as conn:
        return int(conn.info.backend_pid)


def in_thread(fn: Any, *args: Any) -> Any:
    """Run ``fn`` in a new plain thread (no context carried over); return or raise its result."""
    out: list[Any] = []

    def run() -> None:
        try:
            out.append((True, fn(*args)))
        except BaseException as exc:
            out.append((False, exc))

    t = threading.Thread(target=run, name="plain-worker")
    t.start()
    t.join(30)
    ok, value = out[0]
    if not ok:
        raise value
    return value


def test_callers_chain_tasks_to_thread_and_plain_threads(make_pool: Any) -> None:
    # with a threaded pool used from asyncio tasks (owners are tasks)
    own = Ownership(make_pool(max_size=3), mode=Mode.MANUAL)

    async def main() -> None:
        assert own.checkout() is Status.OK
        mine = pid_of(own)
        child = asyncio.create_task(_child(own))
        assert await child == mine  # created after the checkout: finds the owner via the chain
        assert await asyncio.to_thread(pid_of, own) == mine
        with pytest.raises(OwnershipError):
            await asyncio.to_thread(in_thread, pid_of, own)  # a plain Thread carries no context
        assert await asyncio.to_thread(in_thread, own.propagate(pid_of), own) == mine
        assert own.checkin() is Status.OK

    asyncio.run(main())


async def _child(own: Any) -> int:
    return pid_of(own)


def test_early_child_does_not_see_a_later_checkout_but_lookup_is_dynamic(make_pool: Any) -> None:
    own = Ownership(make_pool(max_size=3), mode=Mode.MANUAL)

    async def main() -> None:
        assert own.checkout() is Status.OK  # writes the chain; children created later see it
        mine = pid_of(own)
        own.checkin()
        late = asyncio.create_task(_child(own))
        with pytest.raises(OwnershipError):
            await late  # the owner checked in: nothing to find
        assert own.checkout() is Status.OK  # a new checkout by the same ancestor is found
        assert await asyncio.create_task(_child(own)) != 0
        assert mine
        own.checkin()

    asyncio.run(main())


def test_allow_scope_in_a_thread_pool(make_pool: Any) -> None:
    own = Ownership(make_pool(max_size=3), mode=Mode.MANUAL)
    owner = own.start_owner(allow_current=False)
    mine = pid_of(own, caller=owner)

    def request() -> int:
        with own.allow_scope(owner) as st:
            assert st is Status.OK
            return pid_of(own)

    with ThreadPoolExecutor(max_workers=1) as ex:
        assert ex.submit(request).result() == mine
        with pytest.raises(OwnershipError):
            ex.submit(pid_of, own).result()  # the same reused thread, after its scope
    owner.stop()
