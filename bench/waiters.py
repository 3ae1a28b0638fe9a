"""Waiting at scale: ``python -m bench.waiters [--dsn DSN] [-n 1000 10000 50000] [--timeout 0.5]``.

N asyncio tasks each ask for a connection with ``timeout=0.5`` from a pool of
4 connections that are all held, so every one of them times out.  For each
pool and N the table gives how late the last timeout arrives (measured from
the moment the first task was created plus the timeout), the time per waiter
of the whole run, and, in a second pass, the memory each queued waiter holds
(tracemalloc) and how long cancelling all N queued waiters takes.

The floor is N plain ``asyncio.wait_for(future, timeout)`` in the same process:
asyncio's own cost of N tasks with a timeout each.  Every pool is measured in
the same run, one after the other, on one event loop per measurement; the rows
are ratios to the floor of that run, so the figures compare like with like on
a noisy machine.  Peers: psycopg_pool's ``AsyncConnectionPool`` when installed.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import sys
import time
import tracemalloc
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

from fastpool._bench.shapes import resolve_dsn

Borrow = Callable[[float], AbstractAsyncContextManager[Any]]
Opened = tuple[Borrow, Callable[[], Awaitable[None]], type[BaseException]]


async def _fastpool(dsn: str) -> Opened:
    import fastpool

    pool = fastpool.AsyncPool(dsn, min_size=4, max_size=4, name="bench-waiters")
    await pool.open()
    return pool.connection, pool.close, fastpool.PoolTimeout


async def _psycopg_pool(dsn: str) -> Opened:
    from psycopg_pool import AsyncConnectionPool, PoolTimeout

    pool = AsyncConnectionPool(dsn, min_size=4, max_size=4, open=False)
    await pool.open(wait=True)
    return pool.connection, pool.close, PoolTimeout


POOLS: dict[str, Callable[[str], Awaitable[Opened]]] = {
    "fastpool": _fastpool,
    "psycopg_pool": _psycopg_pool,
}


async def _hold_all(borrow: Borrow) -> tuple[list[Any], Callable[[], Awaitable[None]]]:
    """Borrow the pool's 4 connections and keep them until the returned function is awaited."""
    cms = [borrow(5.0) for _ in range(4)]
    for cm in cms:
        await cm.__aenter__()

    async def give_back() -> None:
        for cm in cms:
            await cm.__aexit__(None, None, None)

    return cms, give_back


async def _late_pool(opened: Opened, n: int, timeout: float) -> tuple[float, float]:
    """(how late the last timeout came, seconds of the whole run) for ``n`` waiters on a full pool."""
    borrow, _, timeout_error = opened
    _, give_back = await _hold_all(borrow)
    last = 0.0
    wrong = 0

    async def waiter() -> None:
        nonlocal last, wrong
        try:
            async with borrow(timeout):
                wrong += 1
        except timeout_error:
            last = max(last, time.monotonic())

    gc.collect()
    start = time.monotonic()
    await asyncio.gather(*[asyncio.ensure_future(waiter()) for _ in range(n)])
    end = time.monotonic()
    await give_back()
    if wrong:
        raise SystemExit(f"{wrong} of {n} waiters got a connection: the pool was not full")
    return last - (start + timeout), end - start


async def _late_floor(n: int, timeout: float) -> tuple[float, float]:
    """The same for N tasks each in ``asyncio.wait_for`` on a future nobody sets."""
    loop = asyncio.get_running_loop()
    last = 0.0

    async def waiter() -> None:
        nonlocal last
        try:
            await asyncio.wait_for(loop.create_future(), timeout)
        except asyncio.TimeoutError:
            last = max(last, time.monotonic())

    gc.collect()
    start = time.monotonic()
    await asyncio.gather(*[asyncio.ensure_future(waiter()) for _ in range(n)])
    end = time.monotonic()
    return last - (start + timeout), end - start


async def _queued_cost(opened: Opened | None, n: int) -> tuple[float, float]:
    """(bytes per queued waiter, seconds to cancel them all) with ``n`` waiters queued."""
    loop = asyncio.get_running_loop()
    give_back = None
    if opened is not None:
        borrow = opened[0]
        _, give_back = await _hold_all(borrow)

        async def waiter() -> None:
            async with borrow(600.0):
                pass

    else:

        async def waiter() -> None:
            await asyncio.wait_for(loop.create_future(), 600.0)

    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    tasks = [asyncio.ensure_future(waiter()) for _ in range(n)]
    await asyncio.sleep(0.05)  # every task reaches its wait
    while any(not t.done() and t.get_stack(limit=1) == [] for t in tasks[-10:]):
        await asyncio.sleep(0.01)
    per = (tracemalloc.get_traced_memory()[0] - base) / n
    tracemalloc.stop()
    start = time.monotonic()
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    cancel = time.monotonic() - start
    if give_back is not None:
        await give_back()
    return per, cancel


def _run(coro_fn: Callable[[], Awaitable[Any]]) -> Any:
    return asyncio.run(coro_fn())  # type: ignore[arg-type]


def measure(dsn: str, sizes: list[int], timeout: float, pools: list[str], memory: bool) -> None:
    """Print the tables (see the module docstring)."""
    print(f"{'waiters':>8} {'pool':<14} {'last timeout late':>18} {'per waiter':>11} {'vs floor':>9}")
    for n in sizes:
        floor_late, floor_run = _run(lambda n=n: _late_floor(n, timeout))
        floor_row = f"{floor_late * 1000:>15,.0f} ms {floor_run / n * 1e6:>8.1f} us {'1.00x':>9}"
        print(f"{n:>8,} {'wait_for floor':<14} {floor_row}")
        for name in pools:

            async def one(name: str = name, n: int = n) -> tuple[float, float]:
                opened = await POOLS[name](dsn)
                try:
                    return await _late_pool(opened, n, timeout)
                finally:
                    await opened[1]()

            try:
                late, run = _run(one)
            except ImportError as exc:
                print(f"{n:>8,} {name:<14} not installed ({exc})")
                continue
            ratio = late / floor_late if floor_late > 0 else float("inf")
            print(f"{n:>8,} {name:<14} {late * 1000:>15,.0f} ms {run / n * 1e6:>8.1f} us {ratio:>8.2f}x")
        sys.stdout.flush()
    if not memory:
        return
    print(f"\n{'waiters':>8} {'pool':<14} {'bytes per waiter':>17} {'cancel all':>11}")
    for n in sizes:
        per, cancel = _run(lambda n=n: _queued_cost(None, n))
        print(f"{n:>8,} {'wait_for floor':<14} {per:>17,.0f} {cancel * 1000:>8,.0f} ms")
        for name in pools:

            async def mem(name: str = name, n: int = n) -> tuple[float, float]:
                opened = await POOLS[name](dsn)
                try:
                    return await _queued_cost(opened, n)
                finally:
                    await opened[1]()

            try:
                per, cancel = _run(mem)
            except ImportError:
                continue
            print(f"{n:>8,} {name:<14} {per:>17,.0f} {cancel * 1000:>8,.0f} ms")
        sys.stdout.flush()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("--dsn", default=resolve_dsn())
    p.add_argument("-n", type=int, nargs="+", default=[1000, 10000, 50000], help="numbers of waiters")
    p.add_argument("--timeout", type=float, default=0.5)
    p.add_argument("--pools", nargs="+", default=list(POOLS), choices=list(POOLS))
    p.add_argument("--no-memory", action="store_true", help="skip the memory and cancellation pass")
    args = p.parse_args(argv)
    measure(args.dsn, args.n, args.timeout, args.pools, not args.no_memory)
    return 0


if __name__ == "__main__":
    sys.exit(main())
