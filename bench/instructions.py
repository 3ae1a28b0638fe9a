"""Count CPU instructions per borrow+return with callgrind: repeatable on noisy machines.

``python -m bench.instructions [--dsn DSN] [impl ...]`` runs each implementation
under ``valgrind --tool=callgrind`` twice (N and 6N borrows) and reports the
difference divided by 5N: the instructions one borrow+return costs, start-up
excluded.  Implementations: fastpool-c, fastpool-python, fastpool-getconn-c,
fastpool-leak-c and async-fastpool-leak-c (with ``leak_timeout`` on),
dropin-c and dropin-getconn-c (the psycopg_pool-compatible ``ConnectionPool``),
psycopg_pool, psycopg_pool-getconn, sqlalchemy (QueuePool), sqlalchemy-fastpool
(``fastpool.sqlalchemy.FastPool``), floor, and the asyncio ones
async-fastpool-c, async-fastpool-python, async-dropin-c, async-psycopg_pool (and
their ``-getconn`` variants: getconn/putconn instead of ``connection()``),
the asyncpg ones async-asyncpg-c, async-asyncpg-python (fastpool's ``AsyncPool(driver="asyncpg")``)
and async-asyncpg-pool (``asyncpg.Pool`` with a no-op ``reset=``),
and 64 tasks on 4 connections
tasks64-fastpool-c, tasks64-fastpool-python, tasks64-psycopg_pool (all but
floor need a server).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Callable

from fastpool._bench.shapes import async_pg, asyncpg_impl, resolve_dsn, sync_pg

IMPLS = [
    "floor",
    "fastpool-c",
    "fastpool-python",
    "fastpool-getconn-c",
    "fastpool-leak-c",
    "dropin-c",
    "dropin-getconn-c",
    "psycopg_pool",
    "psycopg_pool-getconn",
    "sqlalchemy",
    "sqlalchemy-fastpool",
]
ASYNC_IMPLS = [
    "async-asyncpg-c",
    "async-asyncpg-python",
    "async-asyncpg-pool",
    "async-asyncpg-dropin-c",
    "async-asyncpg-dropin-noop-c",
    "async-fastpool-c",
    "async-fastpool-python",
    "async-fastpool-getconn-c",
    "async-fastpool-leak-c",
    "async-dropin-c",
    "async-dropin-getconn-c",
    "async-psycopg_pool",
    "async-psycopg_pool-getconn",
]
TASKS_IMPLS = ["tasks64-fastpool-c", "tasks64-fastpool-python", "tasks64-psycopg_pool"]
#: command-line names -> the shapes' implementation names
SHAPE_NAMES = {
    "floor": "floor: deque+Lock",
    "fastpool-c": "fastpool (compiled)",
    "fastpool-python": "fastpool (pure Python)",
    "fastpool-getconn-c": "fastpool (compiled) getconn/putconn",
    "fastpool-leak-c": "fastpool (compiled) leak_timeout",
    "dropin-c": "fastpool (compiled) ConnectionPool",
    "dropin-getconn-c": "fastpool (compiled) ConnectionPool getconn/putconn",
    "psycopg_pool": "psycopg_pool",
    "psycopg_pool-getconn": "psycopg_pool getconn/putconn",
    "sqlalchemy": "sqlalchemy QueuePool",
    "sqlalchemy-fastpool": "sqlalchemy FastPool",
    "async-asyncpg-c": "fastpool (compiled) asyncpg",
    "async-asyncpg-python": "fastpool (pure Python) asyncpg",
    "async-asyncpg-pool": "asyncpg.Pool reset=noop",
    "async-asyncpg-dropin-c": "fastpool (compiled) asyncpg drop-in",
    "async-asyncpg-dropin-noop-c": "fastpool (compiled) asyncpg drop-in reset=noop",
    "async-fastpool-c": "fastpool (compiled)",
    "async-fastpool-python": "fastpool (pure Python)",
    "async-fastpool-getconn-c": "fastpool (compiled)",
    "async-fastpool-leak-c": "fastpool (compiled) leak_timeout",
    "async-dropin-c": "fastpool (compiled) AsyncConnectionPool",
    "async-dropin-getconn-c": "fastpool (compiled) AsyncConnectionPool",
    "async-psycopg_pool": "psycopg_pool async",
    "async-psycopg_pool-getconn": "psycopg_pool async",
    "tasks64-fastpool-c": "fastpool (compiled)",
    "tasks64-fastpool-python": "fastpool (pure Python)",
    "tasks64-psycopg_pool": "psycopg_pool async",
}


def make(impl: str, dsn: str) -> Callable[[], None]:
    """Build the pool for ``impl`` (4 connections) and return one borrow+return."""
    return sync_pg(SHAPE_NAMES[impl], dsn).op


def make_async(impl: str, dsn: str) -> Callable[[], None]:
    """Build an asyncio pool on a private loop; return one batch of 100 borrow+return run on that loop."""
    loop = asyncio.new_event_loop()
    name = SHAPE_NAMES[impl]
    shape = asyncpg_impl(name, dsn, loop) if "asyncpg" in impl else async_pg(name, dsn, loop)
    cm = shape.cm
    assert cm is not None

    if impl.endswith("-getconn") or "-getconn-" in impl:
        getconn, putconn = shape.pool.getconn, shape.pool.putconn

        async def many(n: int) -> None:
            for _ in range(n):  # getconn/putconn, inline
                conn = await getconn()
                await putconn(conn)

    else:

        async def many(n: int) -> None:
            for _ in range(n):  # the block users write, inline
                async with cm():
                    pass

    def batch() -> None:
        # one call runs a batch: the loop's own cost per run_until_complete is amortised; the
        # closure keeps the shape, so its pool lives (the fast path holds it only weakly)
        assert shape is not None
        loop.run_until_complete(many(100))

    return batch


def tasks64(impl: str, n: int, dsn: str) -> None:
    """``n`` borrows shared by 64 tasks on 4 connections, each holding across one loop switch."""
    loop = asyncio.new_event_loop()
    cm = async_pg(SHAPE_NAMES[impl], dsn, loop).cm
    assert cm is not None

    async def worker(k: int) -> None:
        for _ in range(k):
            async with cm():
                await asyncio.sleep(0)

    async def main() -> None:
        await asyncio.gather(*(worker(20) for _ in range(64)))  # warm every lazy path
        await asyncio.gather(*(worker(n // 64 + (i < n % 64)) for i in range(64)))
        os._exit(0)

    loop.run_until_complete(main())


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
        env = {**os.environ, "PYTHONHASHSEED": os.environ.get("PYTHONHASHSEED", "0")}  # one dict layout
        res = subprocess.run(cmd, capture_output=True, text=True, check=False, env=env)
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
    p.add_argument("--dsn", default=resolve_dsn())
    p.add_argument("-n", type=int, default=2000)
    p.add_argument("--child", nargs=2, metavar=("IMPL", "N"))
    args = p.parse_args()
    unknown = [i for i in args.impls if i not in IMPLS + ASYNC_IMPLS + TASKS_IMPLS]
    if unknown:
        p.error(f"unknown: {', '.join(unknown)}; choose from {', '.join(IMPLS + ASYNC_IMPLS + TASKS_IMPLS)}")
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
