"""Measure the fault model's figures: ``python -m bench.faults [--dsn DSN] [-n N]``.

* dead hand-outs: a backend killed while its connection is checked out, the
  connection returned, then borrowed (or handed to a queued waiter) and used;
* the worst overrun of an acquire past its timeout while a loopback proxy
  freezes the path to the server, for each phase (VERIFIED check, the
  ``verify_after`` check, ``before_acquire``), threads and asyncio;
* with a throwaway cluster stopped: how long a refused acquire takes once the
  breaker is open, and how long after the server's return callers are served.

Run from the repository root (it uses the test-suite's proxy and cluster helpers).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict
from tests.conftest import _Throwaway
from tests.proxy import Proxy

import fastpool
from fastpool._bench.shapes import resolve_dsn


def _terminate(admin: Any, pid: int) -> None:
    admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
    while admin.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", (pid,)).fetchone():
        time.sleep(0.005)


def dead_hand_outs(dsn: str, n: int) -> tuple[int, int]:
    """(dead, total) over ``n`` kills, threads then asyncio, half of them with a queued waiter."""
    admin = psycopg.connect(dsn, autocommit=True)
    dead = 0
    pool = fastpool.Pool(dsn, max_size=1)
    for i in range(n):
        pc = pool.acquire()
        _terminate(admin, pc.connection.info.backend_pid)
        pc.release()
        with pool.connection() as conn:
            try:
                conn.execute("SELECT 1")
            except psycopg.OperationalError:
                dead += 1
        del i
    pool.close()

    async def run() -> int:
        d = 0
        apool = await fastpool.AsyncPool.connect(dsn, max_size=1)

        async def borrow() -> int:
            async with apool.connection(timeout=5) as conn:
                try:
                    await conn.execute("SELECT 1")
                    return 0
                except psycopg.OperationalError:
                    return 1

        for i in range(n):
            pc = await apool.acquire()
            waiter = asyncio.ensure_future(borrow()) if i % 2 else None
            await asyncio.sleep(0.005)
            _terminate(admin, pc.connection.info.backend_pid)
            await pc.release()
            if waiter is not None:
                d += await waiter
            d += await borrow()
        await apool.close()
        return d

    dead += asyncio.run(run())
    admin.close()
    return dead, 2 * n


def partition_overruns(dsn: str, rounds: int) -> dict[str, float]:
    """The worst seconds past a 1 s acquire timeout, per phase and kind, under a frozen path."""
    params = conninfo_to_dict(dsn)
    phases: dict[str, dict[str, Any]] = {
        "VERIFIED check": {"recycle": fastpool.Recycle.VERIFIED},
        "verify_after check": {"verify_after": 0.1},
        "before_acquire hook": {"before_acquire": None},
    }
    out: dict[str, float] = {}
    for phase, kw in phases.items():
        for kind in ("threads", "asyncio"):
            worst = 0.0
            for _ in range(rounds):
                with Proxy(int(params.get("port") or 5432), str(params.get("host") or "127.0.0.1")) as proxy:
                    worst = max(worst, _one_partition(proxy, kind, dict(kw)))
            out[f"{phase}, {kind}"] = worst
    return out


def _one_partition(proxy: Proxy, kind: str, kw: dict[str, Any]) -> float:
    if "before_acquire" in kw:
        if kind == "threads":
            kw["before_acquire"] = lambda conn, meta: bool(conn.execute("SELECT 1"))
        else:

            async def hook(conn: Any, meta: Any) -> bool:
                await conn.execute("SELECT 1")
                return True

            kw["before_acquire"] = hook
    if kind == "threads":
        pool = fastpool.Pool(proxy.dsn(), max_size=1, acquire_timeout=5, **kw)
        with pool.connection():
            pass
        time.sleep(0.2)
        proxy.freeze()
        t0 = time.monotonic()
        try:
            pool.acquire(timeout=1)
        except fastpool.PoolTimeout:
            pass
        over = time.monotonic() - t0 - 1
        proxy.thaw()
        pool.close(timeout=0)
        return over

    async def run() -> float:
        apool = await fastpool.AsyncPool.connect(proxy.dsn(), max_size=1, acquire_timeout=5, **kw)
        async with apool.connection():
            pass
        await asyncio.sleep(0.2)
        proxy.freeze()
        t0 = time.monotonic()
        try:
            await apool.acquire(timeout=1)
        except fastpool.PoolTimeout:
            pass
        over = time.monotonic() - t0 - 1
        proxy.thaw()
        await apool.close(timeout=0)
        return over

    return asyncio.run(run())


def breaker(rounds: int) -> tuple[float, float]:
    """(median seconds to refuse with the breaker open, worst seconds to serve after the server's return)."""
    cluster = _Throwaway()
    try:
        refusals: list[float] = []
        recoveries: list[float] = []
        for _ in range(rounds):
            pool = fastpool.Pool(cluster.dsn, max_size=2, fail_fast_after=1.0, acquire_timeout=10)
            cluster.down()
            try:
                pool.acquire()
            except fastpool.PoolTimeout:
                pass
            for _ in range(5):
                t0 = time.monotonic()
                try:
                    pool.acquire()
                except fastpool.PoolTimeout:
                    refusals.append(time.monotonic() - t0)
                time.sleep(0.05)
            cluster.up()
            back = time.monotonic()
            while True:
                try:
                    with pool.connection(timeout=0.5) as conn:
                        conn.execute("SELECT 1")
                    recoveries.append(time.monotonic() - back)
                    break
                except fastpool.PoolTimeout:
                    time.sleep(0.05)
            pool.close()
        return statistics.median(refusals), max(recoveries)
    finally:
        cluster.stop()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--dsn", default=resolve_dsn())
    p.add_argument("-n", type=int, default=50, help="kills per kind of pool (default 50)")
    p.add_argument("--rounds", type=int, default=3, help="partitions per phase and kind, breaker rounds")
    args = p.parse_args()
    dead, total = dead_hand_outs(args.dsn, args.n)
    print(f"dead hand-outs after a kill while checked out: {dead} of {total}")
    for name, over in partition_overruns(args.dsn, args.rounds).items():
        print(f"worst overrun past a 1 s acquire timeout under a partition, {name}: {over * 1000:.1f} ms")
    refuse, recover = breaker(args.rounds)
    print(f"breaker open: a refused acquire takes {refuse * 1000:.2f} ms (median)")
    print(f"served again at most {recover:.2f} s after the server's return")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
