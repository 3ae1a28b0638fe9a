"""``python -m fastpool bench``: fastpool beside the pools installed here, as ratios.

Every shape is run for each implementation in interleaved rounds (so that a
slow moment of the machine hits every implementation alike); the median per
borrow is reported with its ratio to fastpool's compiled core.  Peers that
are not installed are skipped and named; without a reachable database only
the shapes that need none run.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from functools import partial
from typing import Any, TextIO

from . import _impl
from ._pool import Pool, ResourcePool
from .resource import BaseResource

Shape = dict[str, Callable[[int], None]]  # implementation -> run(n borrows)


class _Thing(BaseResource[None]):
    @classmethod
    def create(cls, ctx: None) -> _Thing:
        return cls()


def _floor() -> Callable[[int], None]:
    dq: deque[object] = deque(object() for _ in range(4))
    lock = threading.Lock()

    def run(n: int) -> None:
        for _ in range(n):
            with lock:
                c = dq.pop()
            with lock:
                dq.append(c)

    return run


def _with_twin(twin: str, make: Callable[[], Any]) -> Any:
    saved = _impl.core
    _impl.core = _impl.load(twin)  # type: ignore[arg-type]
    try:
        return make()
    finally:
        _impl.core = saved


def _loop_cm(pool: Any) -> Callable[[int], None]:
    def run(n: int) -> None:
        for _ in range(n):
            with pool.connection():
                pass

    return run


def _close_on(loop: asyncio.AbstractEventLoop, pool: Any) -> None:
    loop.run_until_complete(pool.close())


def _twins() -> list[str]:
    out = ["python"]
    try:
        _impl.load("c")
        out.insert(0, "c")
    except ImportError:
        pass
    return out


def shapes(dsn: str | None, closers: list[Callable[[], Any]], skipped: list[str]) -> dict[str, Shape]:
    """Build every shape that can run here; ``closers`` collects what to close afterwards."""
    out: dict[str, Shape] = {}
    res: Shape = {"floor: deque+Lock": _floor()}
    for twin in _twins():
        rp = _with_twin(twin, lambda: ResourcePool(_Thing, None, min_size=4, max_size=4))
        closers.append(rp.close)
        res[f"fastpool[{twin}]"] = _loop_cm(rp)
    out["borrow+return, plain resource, 1 thread"] = res
    if dsn is None:
        skipped.append("every database shape (no reachable database)")
        return out
    pg: Shape = {"floor: deque+Lock": _floor()}
    for twin in _twins():
        p = _with_twin(twin, lambda: Pool(dsn, min_size=4, max_size=4))
        closers.append(p.close)
        pg[f"fastpool[{twin}]"] = _loop_cm(p)
    try:
        import psycopg_pool

        pp = psycopg_pool.ConnectionPool(dsn, min_size=4, max_size=4, open=True)
        pp.wait()
        closers.append(pp.close)
        pg["psycopg_pool"] = _loop_cm(pp)
    except ImportError:
        skipped.append("psycopg_pool (not installed)")
    try:
        import psycopg
        from sqlalchemy.pool import QueuePool

        def creator() -> Any:
            return psycopg.connect(dsn)

        qp = QueuePool(creator, pool_size=4, max_overflow=0)
        closers.append(qp.dispose)

        def sa(n: int) -> None:
            for _ in range(n):
                qp.connect().close()

        pg["sqlalchemy QueuePool"] = sa
    except ImportError:
        skipped.append("SQLAlchemy (not installed)")
    out["borrow+return, psycopg, no query, 1 thread"] = pg
    out["async borrow+return, psycopg, no query, 1 task"] = _async_shape(dsn, closers, skipped)
    return out


def _async_shape(dsn: str, closers: list[Callable[[], Any]], skipped: list[str]) -> Shape:
    from ._apool import AsyncPool

    loop = asyncio.new_event_loop()
    closers.append(loop.close)
    shape: Shape = {}

    def runner(borrow: Callable[[], Any]) -> Callable[[int], None]:
        async def many(n: int) -> None:
            for _ in range(n):
                await borrow()

        return lambda n: loop.run_until_complete(many(n))

    for twin in _twins():
        pool = _with_twin(twin, lambda: AsyncPool(dsn, min_size=4, max_size=4))
        loop.run_until_complete(pool.open())
        closers.insert(0, partial(_close_on, loop, pool))

        async def fp(pool: Any = pool) -> None:
            async with pool.connection():
                pass

        shape[f"fastpool[{twin}]"] = runner(fp)
    try:
        import psycopg_pool

        app = psycopg_pool.AsyncConnectionPool(dsn, min_size=4, max_size=4, open=False)
        loop.run_until_complete(app.open(wait=True))
        closers.insert(0, lambda: loop.run_until_complete(app.close()))

        async def ppa() -> None:
            async with app.connection():
                pass

        shape["psycopg_pool async"] = runner(ppa)
    except ImportError:
        skipped.append("psycopg_pool async (not installed)")
    try:
        import asyncpg
        from psycopg.conninfo import conninfo_to_dict

        p = conninfo_to_dict(dsn)

        async def make() -> Any:
            return await asyncpg.create_pool(
                host=p.get("host"),
                port=int(str(p.get("port") or 5432)),
                user=p.get("user"),
                database=p.get("dbname"),
                password=p.get("password"),
                min_size=4,
                max_size=4,
            )

        apool = loop.run_until_complete(make())
        closers.insert(0, lambda: loop.run_until_complete(apool.close()))

        async def apg() -> None:
            async with apool.acquire():
                pass

        shape["asyncpg (default reset)"] = runner(apg)
    except ImportError:
        skipped.append("asyncpg (not installed)")
    except Exception as exc:  # pragma: no cover - e.g. an auth method asyncpg lacks
        skipped.append(f"asyncpg ({type(exc).__name__})")
    return shape


def measure(shape: Shape, rounds: int, batch: int, out: TextIO) -> dict[str, float]:
    """Interleave ``rounds`` rounds of ``batch`` borrows per implementation; median seconds per borrow."""
    times: dict[str, list[float]] = {name: [] for name in shape}
    for run in shape.values():  # warm up every lazy path
        run(min(batch, 200))
    for r in range(rounds):
        for name, run in shape.items():
            t0 = time.perf_counter()
            run(batch)
            times[name].append((time.perf_counter() - t0) / batch)
        out.write(f"\r  round {r + 1}/{rounds}")
        out.flush()
    out.write("\r" + " " * 30 + "\r")
    return {name: statistics.median(v) for name, v in times.items()}


def report(title: str, medians: dict[str, float], out: TextIO) -> None:
    """Print one shape's table: median per borrow and ratio to fastpool[c] (or the first fastpool)."""
    base_name = (
        "fastpool[c]" if "fastpool[c]" in medians else next(n for n in medians if n.startswith("fastpool"))
    )
    base = medians[base_name]
    out.write(f"\n{title}\n")
    out.write(f"  {'implementation':<28} {'per borrow':>12} {'vs ' + base_name:>18}\n")
    for name, m in sorted(medians.items(), key=lambda kv: kv[1]):
        out.write(f"  {name:<28} {m * 1e6:>9.2f} us {m / base:>17.2f}x\n")


def run_bench(dsn: str | None, quick: bool, out: TextIO = sys.stdout) -> int:
    """Run every shape that can run here and print the tables; return the exit code."""
    rounds, batch = (5, 200) if quick else (25, 2000)
    closers: list[Callable[[], Any]] = []
    skipped: list[str] = []
    twins = _twins()
    out.write(f"fastpool bench: core twins {', '.join(twins)} (in use by default: {_impl.IMPLEMENTATION})\n")
    if "c" not in twins:
        out.write("note: the compiled core is not built here; ratios are against the pure twin\n")
    try:
        all_shapes = shapes(dsn, closers, skipped)
        for title, shape in all_shapes.items():
            out.write(f"\n{title}: {len(shape)} implementations, {rounds} rounds of {batch}\n")
            report(title, measure(shape, rounds, batch, out), out)
    finally:
        for close in closers:
            try:
                close()
            except Exception:  # pragma: no cover - best effort
                pass
    if skipped:
        out.write("\nskipped: " + "; ".join(skipped) + "\n")
    out.write("\nmedian of interleaved rounds; ratios are what to read, absolute times drift.\n")
    return 0
