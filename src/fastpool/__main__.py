"""``python -m fastpool``: a short demo of the pool against a PostgreSQL database.

Concurrent worker threads borrow connections from one ``fastpool.Pool`` and
run a query each time; progress is shown while they run, then the pool's
stats.  The database is ``--dsn``, else ``$FASTPOOL_DSN``, else
``$FASTPOOL_TEST_DSN``, else libpq's own environment (``PGHOST``...) when set,
else ``host=127.0.0.1 dbname=test user=postgres``.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from typing import Any

import psycopg

from . import IMPLEMENTATION, Pool, __version__
from ._bench.shapes import resolve_dsn
from .errors import PoolTimeout


def _where(dsn: str) -> str:
    """Where libpq will try to connect for ``dsn``, its ``PG*`` environment included (no password)."""
    try:
        params = psycopg.conninfo.conninfo_to_dict(dsn)
    except psycopg.Error:
        return "the given DSN (it could not be parsed)"
    host = params.get("host") or os.environ.get("PGHOST") or ""
    port = params.get("port") or os.environ.get("PGPORT") or "5432"
    dbname = params.get("dbname") or os.environ.get("PGDATABASE") or "(the user's name)"
    where = f"host={host}" if host else "the local socket"
    return f"{where} port={port} dbname={dbname}"


def demo(dsn: str, workers: int, max_size: int, seconds: float, out: Any = sys.stdout) -> int:
    """Run the demo; return the process exit code."""
    print(f"fastpool {__version__} demo (core: {IMPLEMENTATION}) against {_where(dsn)}", file=out)
    try:
        pool = Pool(dsn, min_size=min(2, max_size), max_size=max_size, acquire_timeout=5.0, name="demo")
    except (PoolTimeout, psycopg.Error, ValueError, TypeError) as exc:
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


_DEMO_DEFAULTS = {"workers": 8, "max_size": 4, "seconds": 2.0}


def _add_options(parser: argparse.ArgumentParser, demo: bool) -> None:
    # SUPPRESS: an option given before the subcommand is not overwritten by the subcommand's default
    parser.add_argument("--dsn", default=argparse.SUPPRESS, help="libpq connection string (never logged)")
    if demo:
        parser.add_argument("--workers", type=int, default=argparse.SUPPRESS, help="borrowing threads (8)")
        parser.add_argument("--max-size", type=int, default=argparse.SUPPRESS, help="pool max_size (4)")
        parser.add_argument("--seconds", type=float, default=argparse.SUPPRESS, help="how long to run (2)")


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m fastpool`` and of the ``fastpool`` script.

    Options may come before or after the subcommand (``--dsn X bench`` or ``bench --dsn X``).
    """
    p = argparse.ArgumentParser(prog="python -m fastpool", description=__doc__.split("\n\n")[0])
    _add_options(p, demo=True)
    sub = p.add_subparsers(dest="command")
    d = sub.add_parser("demo", help="run the demo (the default command)")
    b = sub.add_parser("bench", help="compare fastpool with the pools installed here (ratios)")
    _add_options(d, demo=True)
    _add_options(b, demo=False)
    b.add_argument("--quick", action="store_true", help="a short run (a smoke test, not a measurement)")
    args = vars(p.parse_args(argv))
    named = args.get("dsn")
    if named is None and os.environ.get("FASTPOOL_DSN"):
        named = os.environ["FASTPOOL_DSN"]
    dsn = resolve_dsn(args.get("dsn"))
    print(f"fastpool {__version__}, core: {IMPLEMENTATION} ({_CORES[IMPLEMENTATION]})")
    if args.get("command") == "bench":
        extra = [f"--{k.replace('_', '-')}" for k in _DEMO_DEFAULTS if k in args]
        if extra:
            p.error(f"{', '.join(extra)}: options of the demo, not of bench")
        from ._bench.run import run_bench

        reachable: str | None = dsn
        try:
            psycopg.connect(dsn, connect_timeout=3).close()
        except (psycopg.Error, ValueError) as exc:
            why = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            if named is not None:  # the user asked for this database: a failure, not a skip
                print(f"cannot reach the database given at {_where(dsn)}: {why}", file=sys.stderr)
                return 2
            print(f"no database at {_where(dsn)} ({why}): database shapes skipped")
            reachable = None
        return run_bench(reachable, bool(args.get("quick")))
    opts = {k: args.get(k, v) for k, v in _DEMO_DEFAULTS.items()}
    if opts["workers"] < 1 or opts["max_size"] < 1 or opts["seconds"] <= 0:
        p.error("--workers and --max-size must be >= 1 and --seconds > 0")
    return demo(dsn, int(opts["workers"]), int(opts["max_size"]), float(opts["seconds"]))


_CORES = {"c": "compiled", "python": "pure Python: no compiled core in this install"}


if __name__ == "__main__":
    sys.exit(main())
