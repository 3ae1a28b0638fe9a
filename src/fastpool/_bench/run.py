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
from collections.abc import Callable, Mapping
from functools import partial
from typing import Any, TextIO, TypeVar

from .. import _core_build
from .._surfaces.pool import Pool
from .report import Progress, Row, Table, baseline_of, plot, spread, write_table
from .shapes import (
    ASYNC,
    ASYNCPG,
    PLAIN,
    SELECT1,
    SYNC,
    HandoffFloor,
    Impl,
    Unavailable,
    async_pg,
    asyncpg_impl,
    builds,
    plain,
    sync_pg,
)

T = TypeVar("T")
Shape = dict[str, Callable[[int], None]]  # implementation -> run(n borrows)


def _loop_of(impl: Impl) -> Callable[[int], None]:
    op = impl.op

    def run(n: int) -> None:
        for _ in range(n):
            op()

    return run


def _build(make: Callable[[str], Impl], names: list[str], closers: list[Callable[[], Any]],
           skipped: list[str]) -> dict[str, Impl]:  # fmt: skip
    out: dict[str, Impl] = {}
    for name in names:
        try:
            impl = make(name)
        except Unavailable as exc:
            skipped.append(f"{name} ({exc})")
            continue
        closers.insert(0, impl.close)
        out[name] = impl
    return out


def shapes(dsn: str | None, skipped: list[str]) -> dict[str, Callable[[list[Callable[[], Any]]], Shape]]:
    """Every shape that can run here, as a builder each: given a list, it opens the shape's pools
    and adds to the list what closes them.  ``run_bench`` builds one shape at a time, so that the
    server holds only one table's connections at once."""
    out: dict[str, Callable[[list[Callable[[], Any]]], Shape]] = {}

    def plain_shape(closers: list[Callable[[], Any]]) -> Shape:
        return {n: _loop_of(i) for n, i in _build(plain, PLAIN, closers, skipped).items()}

    out["borrow+return, plain resource, 1 thread"] = plain_shape
    if dsn is None:
        skipped.append("every database shape (no reachable database)")
        return out

    def pg_shape(closers: list[Callable[[], Any]]) -> Shape:
        return {n: _loop_of(i) for n, i in _build(partial(sync_pg, dsn=dsn), SYNC, closers, skipped).items()}

    out["borrow+return, psycopg, no query, 1 thread"] = pg_shape
    out["async borrow+return, psycopg, no query, 1 task"] = partial(_async_shape, dsn, skipped=skipped)
    out["asyncpg: borrow+return, no query, 1 task"] = partial(_asyncpg_shape, dsn, skipped=skipped)
    out["asyncpg: SELECT 1 per borrow, 1 task"] = partial(
        _asyncpg_shape, dsn, skipped=skipped, query="SELECT 1"
    )
    return out


def _asyncpg_shape(
    dsn: str, closers: list[Callable[[], Any]], skipped: list[str], query: str | None = None
) -> Shape:
    """The pools of asyncpg connections, borrowing (and querying, with ``query``) from one task."""
    loop = asyncio.new_event_loop()
    closers.append(loop.close)
    impls = _build(lambda n: asyncpg_impl(n, dsn, loop, query=query), ASYNCPG, closers, skipped)

    def runner(op: Callable[[], Any]) -> Callable[[int], None]:
        async def many(n: int) -> None:
            for _ in range(n):
                await op()

        return lambda n: loop.run_until_complete(many(n))

    return {name: runner(impl.op) for name, impl in impls.items()}


def _async_shape(dsn: str, closers: list[Callable[[], Any]], skipped: list[str]) -> Shape:
    loop = asyncio.new_event_loop()
    closers.append(loop.close)
    impls = _build(lambda n: async_pg(n, dsn, loop), ASYNC, closers, skipped)

    def runner(cm: Callable[[], Any]) -> Callable[[int], None]:
        # the block users write, inline: no call of the harness's own per borrow to blur the ratios
        async def many(n: int) -> None:
            for _ in range(n):
                async with cm():
                    pass

        return lambda n: loop.run_until_complete(many(n))

    return {name: runner(impl.cm) for name, impl in impls.items() if impl.cm is not None}


def _rotated(impls: Mapping[str, T], r: int) -> list[tuple[str, T]]:
    """The implementations in their order rotated by ``r``: no one always runs first (after a
    pause) or right after the same neighbour, which would bias the interleaved rounds."""
    items = list(impls.items())
    k = r % len(items) if items else 0
    return items[k:] + items[:k]


def measure(shape: Shape, rounds: int, batch: int, out: TextIO) -> dict[str, list[float]]:
    """Interleave ``rounds`` rounds of ``batch`` borrows per implementation; seconds per borrow, per round."""
    times: dict[str, list[float]] = {name: [] for name in shape}
    for run in shape.values():  # warm up every lazy path
        run(min(batch, 200))
    progress = Progress(out, rounds)
    for r in range(rounds):
        for name, run in _rotated(shape, r):  # each round starts with another implementation
            t0 = time.perf_counter()
            run(batch)
            times[name].append((time.perf_counter() - t0) / batch)
        progress.step()
    progress.done()
    return times


def time_table(title: str, times: dict[str, list[float]], unit: str = "per borrow") -> Table:
    """A table of seconds per operation: median per row, and its cost ratio to the baseline."""
    base = baseline_of(times)
    rows = [
        Row(name, statistics.median(v), *spread([x / b for x, b in zip(v, times[base], strict=True)]))
        for name, v in times.items()
    ]
    return Table(title, base, rows, unit=unit)


# -- SELECT 1 end to end ---------------------------------------------------------------------------


def _select1_shape(dsn: str, closers: list[Callable[[], Any]], skipped: list[str]) -> Shape:
    """``SELECT 1`` per borrow, autocommit everywhere (one round trip), beside a dedicated connection."""
    impls = _build(partial(sync_pg, dsn=dsn, query="SELECT 1", autocommit=True), SELECT1, closers, skipped)
    return {name: _loop_of(impl) for name, impl in impls.items()}


# -- contended: many workers on 4 connections --------------------------------------------------------


def _quantile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


Round = tuple[int, list[int], list[float]]  # total ops, ops per worker, every acquire wait


def _threads_round(cm: Callable[[], Any], workers: int, seconds: float, query: bool) -> Round:
    counts = [0] * workers
    waits: list[list[float]] = [[] for _ in range(workers)]
    stop = threading.Event()
    barrier = threading.Barrier(workers + 1)

    def worker(i: int) -> None:
        pc = time.perf_counter
        w = waits[i]
        n = 0
        barrier.wait()
        while not stop.is_set():
            t0 = pc()
            with cm() as conn:
                w.append(pc() - t0)
                if query:
                    conn.execute("SELECT 1")
            n += 1
        counts[i] = n

    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(workers)]
    for t in threads:
        t.start()
    barrier.wait()
    time.sleep(seconds)
    stop.set()
    for t in threads:
        t.join()
    return sum(counts), counts, [x for w in waits for x in w]


def _tasks_round(
    loop: asyncio.AbstractEventLoop, cm: Callable[[], Any], workers: int, seconds: float, query: bool
) -> Round:
    counts = [0] * workers
    waits: list[float] = []

    async def worker(i: int, stop: asyncio.Event) -> None:
        pc = time.perf_counter
        n = 0
        while not stop.is_set():
            t0 = pc()
            async with cm() as conn:
                waits.append(pc() - t0)
                if query:
                    await conn.execute("SELECT 1")
                else:
                    await asyncio.sleep(0)  # hold it across a switch, as any awaited work does
            n += 1
        counts[i] = n

    async def main() -> None:
        stop = asyncio.Event()
        tasks = [asyncio.ensure_future(worker(i, stop)) for i in range(workers)]
        await asyncio.sleep(seconds)
        stop.set()
        await asyncio.gather(*tasks)

    loop.run_until_complete(main())
    return sum(counts), counts, waits


def contended(
    title: str, impls: Mapping[str, Callable[[float], Round]], rounds: int, seconds: float, out: TextIO
) -> Table:
    """Interleaved timed rounds; per implementation: median ops/s, worst fairness, median p99 wait."""
    res: dict[str, list[tuple[float, float, float]]] = {name: [] for name in impls}
    progress = Progress(out, rounds)
    for r in range(rounds):
        for name, run in _rotated(impls, r):
            total, counts, waits = run(seconds)
            most = max(counts, default=0)
            fair = min(counts) / most if most else 0.0
            res[name].append((total / seconds, fair, _quantile(waits, 0.99)))
        progress.step()
    progress.done()
    base = baseline_of(res)
    rows = []
    for name, vals in res.items():
        # the time ratio of a round: the baseline's ops/s over the row's (lower is better)
        per_round = [b[0] / v[0] if v[0] else float("inf") for v, b in zip(vals, res[base], strict=True)]
        fair = min(v[1] for v in vals)
        p99 = statistics.median(v[2] for v in vals)
        extra = (f"{fair:.2f}", f"{p99 * 1e6:,.0f} us")
        rows.append(Row(name, statistics.median(v[0] for v in vals), *spread(per_round), extra=extra))
    table = Table(title, base, rows, unit="ops/s", extra_headers=("min/max per worker", "p99 wait"))
    write_table(table, out)
    return table


def _contended_sections(dsn: str, quick: bool, closers: list[Callable[[], Any]], tables: list[Table],
                        out: TextIO) -> None:  # fmt: skip
    rounds, seconds = (2, 0.2) if quick else (3, 1.0)
    names = ["fastpool (compiled)", "fastpool (pure Python)", "psycopg_pool"]
    sync_pools = {
        n: i.pool for n, i in _build(partial(sync_pg, dsn=dsn, autocommit=True), names, closers, []).items()
    }
    loop = asyncio.new_event_loop()
    anames = ["fastpool (compiled)", "fastpool (pure Python)", "psycopg_pool async"]
    async_pools = {
        n: i.pool
        for n, i in _build(lambda n: async_pg(n, dsn, loop, autocommit=True), anames, closers, []).items()
    }
    closers.append(loop.close)
    apg = _build(lambda n: asyncpg_impl(n, dsn, loop), ASYNCPG, closers, [])
    apg_impls = {
        name: partial(lambda s, cm: _tasks_round(loop, cm, 64, s, True), cm=impl.cm)
        for name, impl in apg.items()
    }
    title = "asyncpg: contended, SELECT 1, 64 tasks on 4 connections"
    out.write(f"\n{title}: {len(apg_impls)} implementations, {_rounds(rounds)} of {seconds:g} s\n")
    tables.append(contended(title, apg_impls, rounds, seconds, out))
    for query, label in ((False, "no query"), (True, "SELECT 1")):
        pools = sync_pools if query else {**sync_pools, "floor: FIFO hand-off": HandoffFloor()}
        impls = {
            name: partial(lambda s, p, q: _threads_round(p.connection, 16, s, q), p=p, q=query)
            for name, p in pools.items()
        }
        title = f"contended, {label}, 16 threads on 4 connections"
        out.write(f"\n{title}: {len(impls)} implementations, {_rounds(rounds)} of {seconds:g} s\n")
        tables.append(contended(title, impls, rounds, seconds, out))
        aimpls = {
            name: partial(lambda s, p, q: _tasks_round(loop, p.connection, 64, s, q), p=p, q=query)
            for name, p in async_pools.items()
        }
        title = f"contended, {label}, 64 tasks on 4 connections"
        out.write(f"\n{title}: {len(aimpls)} implementations, {_rounds(rounds)} of {seconds:g} s\n")
        tables.append(contended(title, aimpls, rounds, seconds, out))


# -- memory ------------------------------------------------------------------------------------------


def memory_per_connection(dsn: str, n: int, out: TextIO) -> None:
    """Python memory (tracemalloc) a pool adds per idle connection, beyond psycopg's own."""
    import gc
    import tracemalloc

    import psycopg

    def traced(make: Callable[[], Any], close: Callable[[Any], None]) -> int:
        gc.collect()
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
        obj = make()
        gc.collect()
        used = tracemalloc.get_traced_memory()[0] - before
        tracemalloc.stop()
        close(obj)
        return used

    def close_all(conns: list[Any]) -> None:
        for c in conns:
            c.close()

    for build in builds():  # loaded before tracing: a module's first import is not per connection
        _core_build.load(build)  # type: ignore[arg-type]
    raw = traced(lambda: [psycopg.connect(dsn) for _ in range(n)], close_all)

    def pool_of(build: str) -> Any:
        saved = _core_build.core
        _core_build.core = _core_build.load(build)  # type: ignore[arg-type]
        try:
            p = Pool(dsn, min_size=n, max_size=n)
        finally:
            _core_build.core = saved
        p.wait()
        return p

    rows = {
        f"fastpool ({_BUILD_NAMES[t]})": traced(partial(pool_of, t), lambda p: p.close()) for t in builds()
    }
    try:
        import psycopg_pool

        def pp() -> Any:
            p = psycopg_pool.ConnectionPool(dsn, min_size=n, max_size=n, open=True)
            p.wait()
            return p

        rows["psycopg_pool"] = traced(pp, lambda p: p.close())
    except ImportError:
        pass
    out.write(f"\nmemory, {n} idle connections (tracemalloc; psycopg's own: {raw / n / 1024:.1f} KiB each)\n")
    out.write(f"  {'implementation':<28} {'added per connection':>22}\n")
    for name, used in rows.items():
        out.write(f"  {name:<28} {(used - raw) / n / 1024:>18.1f} KiB\n")


def _close_all(closers: list[Callable[[], Any]]) -> None:
    """Close what a section opened (best effort), and forget it."""
    for close in closers:
        try:
            close()
        except Exception:  # pragma: no cover - best effort
            pass
    closers.clear()


def run_bench(dsn: str | None, quick: bool, out: TextIO = sys.stdout, plot_to: str | None = None) -> int:
    """Run every shape that can run here and print the tables (and chart them into ``plot_to``)."""
    rounds, batch = (5, 200) if quick else (25, 2000)
    closers: list[Callable[[], Any]] = []
    skipped: list[str] = []
    tables: list[Table] = []
    builds_here = builds()
    out.write(f"builds here: {', '.join(_BUILD_NAMES[b] for b in builds_here)}\n")
    if "c" not in builds_here:
        out.write("note: the compiled build is missing here; ratios are against the pure-Python build\n")
    out.write("every ratio: the row's time per operation / the baseline's (lower is better); a row whose\n"
              "spread over the rounds includes 1.00x is marked as a tie\n")  # fmt: skip
    try:
        for title, build in shapes(dsn, skipped).items():
            shape = build(closers)
            out.write(f"\n{title}: {len(shape)} implementations, {_rounds(rounds)} of {batch}\n")
            tables.append(time_table(title, measure(shape, rounds, batch, out)))
            write_table(tables[-1], out)
            _close_all(closers)
        if dsn is not None:
            title = "SELECT 1 per borrow, 1 thread (autocommit)"
            shape = _select1_shape(dsn, closers, skipped)
            q_rounds, q_batch = (3, 50) if quick else (9, 300)
            out.write(f"\n{title}: {len(shape)} implementations, {_rounds(q_rounds)} of {q_batch}\n")
            tables.append(time_table(title, measure(shape, q_rounds, q_batch, out), unit="per query"))
            write_table(tables[-1], out)
            _close_all(closers)
            _contended_sections(dsn, quick, closers, tables, out)
    finally:
        _close_all(closers)
    if dsn is not None:  # after every other pool is closed: it opens connections of its own
        memory_per_connection(dsn, 10 if quick else 40, out)
    if skipped:
        out.write("\nskipped: " + "; ".join(skipped) + "\n")
    out.write("\nmedians of interleaved rounds: read the ratios and their spread; absolute times drift.\n")
    if plot_to:
        plot(tables, plot_to)
        out.write(f"chart written to {plot_to}\n")
    return 0


def _rounds(n: int) -> str:
    return "1 round" if n == 1 else f"{n} rounds"


_BUILD_NAMES = {"c": "compiled", "python": "pure Python"}
