"""``python -m fastpool``: a short demo of the pool against a PostgreSQL database.

Concurrent worker threads borrow connections from one ``fastpool.Pool`` and
run a query each time; progress is shown while they run, then the pool's
stats.  The database is ``--dsn``, else ``$FASTPOOL_DSN``, else
``$FASTPOOL_TEST_DSN``, else libpq's own environment (``PGHOST``...) when set,
else ``host=127.0.0.1 dbname=test user=postgres``.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from typing import Any

import psycopg

from . import IMPLEMENTATION, Pool, __version__
from ._bench_shapes import resolve_dsn
from .errors import PoolTimeout


def _where(dsn: str) -> str:
    try:
        params = psycopg.conninfo.conninfo_to_dict(dsn)
    except psycopg.Error:
        return "the given DSN"
    host = params.get("host", "(libpq default host)")
    return f"host={host} port={params.get('port', 5432)} dbname={params.get('dbname', '(default)')}"


def demo(dsn: str, workers: int, max_size: int, seconds: float, out: Any = sys.stdout) -> int:
    """Run the demo; return the process exit code."""
    print(f"fastpool {__version__} demo (core: {IMPLEMENTATION}) against {_where(dsn)}", file=out)
    try:
        pool = Pool(dsn, min_size=min(2, max_size), max_size=max_size, acquire_timeout=5.0, name="demo")
    except (PoolTimeout, psycopg.Error) as exc:
        print(
            f"\nfastpool demo needs a reachable PostgreSQL server and could not connect:\n  {exc}\n"
            "Give one with --dsn 'host=... dbname=... user=...' or FASTPOOL_DSN, or start a local\n"
            "server (host=127.0.0.1 dbname=test user=postgres is tried by default).",
            file=out,
        )
        return 2
    counts = [0] * workers
    pids: set[int] = set()
    stop = threading.Event()
    errors: list[BaseException] = []

    def work(i: int) -> None:
        try:
            while not stop.is_set():
                with pool.connection() as conn:
                    row = conn.execute("SELECT pg_backend_pid()").fetchone()
                    pids.add(row[0])  # type: ignore[index]
                counts[i] += 1
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    with pool:
        threads = [threading.Thread(target=work, args=(i,), daemon=True) for i in range(workers)]
        t0 = time.monotonic()
        for t in threads:
            t.start()
        print(f"{workers} threads borrowing from a pool of max_size={max_size} for {seconds:g} s", file=out)
        while (elapsed := time.monotonic() - t0) < seconds:
            time.sleep(min(0.5, max(0.0, seconds - elapsed)))
            s = pool.stats()
            print(
                f"  {time.monotonic() - t0:5.1f} s  queries={sum(counts):7d}  size={s['size']}"
                f"  in_use={s['in_use']}  waiting={s['waiting']}",
                file=out,
            )
        stop.set()
        for t in threads:
            t.join(10)
        total = time.monotonic() - t0
        s = pool.stats()
    if errors:
        print(f"errors: {errors[:3]}", file=out)
        return 1
    print(f"\n{sum(counts)} borrows with a query in {total:.2f} s ({sum(counts) / total:,.0f}/s)", file=out)
    print(f"per thread: min {min(counts)}, max {max(counts)}; distinct backends used: {len(pids)}", file=out)
    print("pool stats:", file=out)
    for key in ("max_size", "size", "connects", "hits", "waits", "handoffs", "timeouts", "discarded"):
        print(f"  {key:<10} {s[key]}", file=out)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m fastpool`` and of the ``fastpool`` script."""
    p = argparse.ArgumentParser(prog="python -m fastpool", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command")
    d = sub.add_parser("demo", help="run the demo (the default command)")
    b = sub.add_parser("bench", help="compare fastpool with the pools installed here (ratios)")
    b.add_argument("--dsn", default=None, help="libpq connection string (never logged)")
    b.add_argument("--quick", action="store_true", help="a short run (a smoke test, not a measurement)")
    for parser in (p, d):
        parser.add_argument("--dsn", default=None, help="libpq connection string (never logged)")
        parser.add_argument("--workers", type=int, default=8, help="borrowing threads (default 8)")
        parser.add_argument("--max-size", type=int, default=4, help="pool max_size (default 4)")
        parser.add_argument("--seconds", type=float, default=2.0, help="how long to run (default 2)")
    args = p.parse_args(argv)
    dsn = resolve_dsn(args.dsn)
    if args.command == "bench":
        from ._bench import run_bench

        reachable: str | None = dsn
        try:
            psycopg.connect(dsn, connect_timeout=3).close()
        except psycopg.Error as exc:
            print(
                f"no database at {_where(dsn)} ({str(exc).strip().splitlines()[0]}): database shapes skipped"
            )
            reachable = None
        return run_bench(reachable, args.quick)
    if args.workers < 1 or args.max_size < 1 or args.seconds <= 0:
        p.error("--workers and --max-size must be >= 1 and --seconds > 0")
    return demo(dsn, args.workers, args.max_size, args.seconds)


if __name__ == "__main__":
    sys.exit(main())
