"""Count CPU instructions per borrow+return with callgrind: repeatable on noisy machines.

``python -m bench.instructions [--dsn DSN] [impl ...]`` runs each implementation
under ``valgrind --tool=callgrind`` twice (N and 6N borrows) and reports the
difference divided by 5N: the instructions one borrow+return costs, start-up
excluded.  Implementations: fastpool-c, fastpool-python, psycopg_pool,
psycopg_pool-getconn, sqlalchemy, floor, and the asyncio ones async-fastpool-c,
async-fastpool-python, async-psycopg_pool, and 64 tasks on 4 connections
tasks64-fastpool-c, tasks64-fastpool-python, tasks64-psycopg_pool (all but
floor need a server).
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import threading
from collections import deque
from collections.abc import Callable
from typing import Any

DEFAULT_DSN = "host=127.0.0.1 dbname=test user=postgres"
IMPLS = ["floor", "fastpool-c", "fastpool-python", "psycopg_pool", "psycopg_pool-getconn", "sqlalchemy"]
ASYNC_IMPLS = ["async-fastpool-c", "async-fastpool-python", "async-psycopg_pool"]
TASKS_IMPLS = ["tasks64-fastpool-c", "tasks64-fastpool-python", "tasks64-psycopg_pool"]


def make(impl: str, dsn: str) -> Callable[[], None]:
    """Build the pool for ``impl`` (4 connections) and return one borrow+return."""
    if impl == "floor":
        dq: deque[object] = deque(object() for _ in range(4))
        lock = threading.Lock()

        def floor() -> None:
            with lock:
                c = dq.pop()
            with lock:
                dq.append(c)

        return floor
    if impl.startswith("fastpool"):
        import fastpool
        from fastpool import _core_select

        _core_select.core = _core_select.load("c" if impl == "fastpool-c" else "python")  # type: ignore[attr-defined]
        pool = fastpool.Pool(dsn, min_size=4, max_size=4)

        def fp() -> None:
            with pool.connection():
                pass

        return fp
    if impl.startswith("psycopg_pool"):
        import psycopg_pool

        ppool = psycopg_pool.ConnectionPool(dsn, min_size=4, max_size=4, open=True)
        ppool.wait()
        if impl.endswith("getconn"):
            return lambda: ppool.putconn(ppool.getconn())

        def pp() -> None:
            with ppool.connection():
                pass

        return pp
    if impl == "sqlalchemy":
        import psycopg
        from sqlalchemy.pool import QueuePool

        qp = QueuePool(lambda: psycopg.connect(dsn), pool_size=4, max_overflow=0)
        return lambda: qp.connect().close()
    raise SystemExit(f"unknown implementation {impl!r}")


def make_async(impl: str, dsn: str) -> Callable[[], None]:
    """Build an asyncio pool on a private loop; return one borrow+return run on that loop."""
    import asyncio

    loop = asyncio.new_event_loop()
    if impl.startswith("async-fastpool"):
        import fastpool
        from fastpool import _core_select

        _core_select.core = _core_select.load("c" if impl == "async-fastpool-c" else "python")  # type: ignore[attr-defined]
        pool: Any = fastpool.AsyncPool(dsn, min_size=4, max_size=4)
        loop.run_until_complete(pool.open())
    else:
        import psycopg_pool

        pool = psycopg_pool.AsyncConnectionPool(dsn, min_size=4, max_size=4, open=False)
        loop.run_until_complete(pool.open(wait=True))

    async def many(n: int) -> None:
        for _ in range(n):
            async with pool.connection():
                pass

    # one call runs a batch: the loop's own cost per run_until_complete is amortised
    return lambda: loop.run_until_complete(many(100))


def tasks64(impl: str, n: int, dsn: str) -> None:
    """``n`` borrows shared by 64 tasks on 4 connections, each holding across one loop switch."""
    import asyncio

    async def main() -> None:
        if impl.startswith("tasks64-fastpool"):
            import fastpool
            from fastpool import _core_select

            _core_select.core = _core_select.load("c" if impl == "tasks64-fastpool-c" else "python")  # type: ignore[attr-defined]
            pool: Any = fastpool.AsyncPool(dsn, min_size=4, max_size=4)
            await pool.open()
        else:
            import psycopg_pool

            pool = psycopg_pool.AsyncConnectionPool(dsn, min_size=4, max_size=4, open=False)
            await pool.open(wait=True)

        async def worker(k: int) -> None:
            for _ in range(k):
                async with pool.connection():
                    await asyncio.sleep(0)

        await asyncio.gather(*(worker(20) for _ in range(64)))  # warm every lazy path
        await asyncio.gather(*(worker(n // 64 + (i < n % 64)) for i in range(64)))
        os._exit(0)

    asyncio.run(main())


def child(impl: str, n: int, dsn: str) -> None:
    """Run ``n`` borrows of ``impl`` (what runs under valgrind)."""
    if impl.startswith("tasks64-"):
        tasks64(impl, n, dsn)
    if impl.startswith("async-"):
        batch = make_async(impl, dsn)
        for _ in range(2):
            batch()
        for _ in range(n // 100):
            batch()
        os._exit(0)
    run = make(impl, dsn)
    for _ in range(200):  # warm every lazy path before counting
        run()
    for _ in range(n):
        run()
    os._exit(0)  # skip interpreter teardown: it is not part of a borrow


def count(impl: str, n: int, dsn: str) -> int:
    with tempfile.TemporaryDirectory() as d:
        out = os.path.join(d, "cg.out")
        cmd = [
            "valgrind", "--tool=callgrind", f"--callgrind-out-file={out}",
            sys.executable, "-m", "bench.instructions", "--child", impl, str(n), "--dsn", dsn,
        ]  # fmt: skip
        res = subprocess.run(cmd, capture_output=True, text=True, check=False)
        m = re.search(r"Collected\s*:\s*(\d+)", res.stderr)
        if not m:
            raise SystemExit(f"callgrind failed for {impl}:\n{res.stderr[-2000:]}")
        return int(m.group(1))


def _family(impl: str) -> str:
    head = impl.split("-", maxsplit=1)[0]
    return head if head in ("async", "tasks64") else "sync"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("impls", nargs="*", default=IMPLS)
    p.add_argument("--dsn", default=os.environ.get("FASTPOOL_TEST_DSN", DEFAULT_DSN))
    p.add_argument("-n", type=int, default=2000)
    p.add_argument("--child", nargs=2, metavar=("IMPL", "N"))
    args = p.parse_args()
    if args.child:
        child(args.child[0], int(args.child[1]), args.dsn)
        return 0
    results = {}
    for impl in args.impls:
        a = count(impl, args.n, args.dsn)
        b = count(impl, 6 * args.n, args.dsn)
        results[impl] = (b - a) / (5 * args.n)
        print(f"{impl:<22} {results[impl]:>10,.0f} instructions per borrow+return", flush=True)
    for base_name in ("fastpool-c", "async-fastpool-c", "tasks64-fastpool-c"):
        base = results.get(base_name)
        if not base:
            continue
        print(f"\nratio to {base_name}:")
        for impl, v in results.items():
            if _family(impl) == _family(base_name):
                print(f"  {impl:<22} {v / base:5.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
