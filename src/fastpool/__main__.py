"""The command line, ``python -m fastpool`` or ``fastpool``: the demo, and the benchmark.

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
    print(f"fastpool {__version__} demo ({_BUILDS[IMPLEMENTATION]} build) against {_where(dsn)}", file=out)
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
_DEMO_OPTIONS = ("--workers", "--max-size", "--seconds")
_BUILDS = {"c": "compiled", "python": "pure Python: the compiled build is not installed here"}

_DESCRIPTION = """\
fastpool: a fast, correct connection pool for PostgreSQL (psycopg 3 and asyncpg).

commands:
  demo    (the default) 8 threads share a pool of 4 connections for 2 seconds,
          then the pool's stats are shown
  bench   fastpool beside the pools installed here (psycopg_pool, SQLAlchemy,
          asyncpg...), as ratios; 2 to 4 minutes, less than 1 with --quick

Run '%(prog)s COMMAND --help' for a command's options and examples."""

_DATABASE = """\
the database:
  --dsn, else $FASTPOOL_DSN, else $FASTPOOL_TEST_DSN, else libpq's PG* environment
  (PGHOST, PGPORT, PGUSER...), else host=127.0.0.1 dbname=test user=postgres.
  The password is never printed."""

_DEMO_HELP = f"""\
Eight threads (--workers) borrow connections from one fastpool.Pool of
max_size=4 (--max-size) and run a query each time, for 2 seconds (--seconds).
Progress is printed twice a second; then the totals, how evenly the threads
were served, and the pool's stats.

{_DATABASE}

examples:
  %(prog)s
  %(prog)s --workers 32 --seconds 10 --dsn 'host=db.internal dbname=app user=app'"""

_BENCH_HELP = f"""\
Measures fastpool, compiled and pure Python, beside the pools installed here
(psycopg_pool sync and async, SQLAlchemy's QueuePool, asyncpg's Pool, psqlpy)
and floors (the least any pool of that kind can cost): borrow + return with no
query, SELECT 1 per borrow beside a dedicated connection, 16 threads and 64
tasks sharing 4 connections, and the memory each pool adds per idle
connection. Implementations run in interleaved rounds. Each table gives every
row's time relative to fastpool (compiled), lower is better, with its spread
over the rounds; a spread that includes 1.00x is shown as a tie. Peers that
are not installed are named and skipped; without a database, only the
plain-resource shape runs.

It takes 2 to 4 minutes (--quick: well under a minute, a smoke test rather than
a measurement), and opens at most about 30 connections at once.

{_DATABASE}

examples:
  %(prog)s
  %(prog)s --quick --plot bench.png
  FASTPOOL_DSN='host=db.internal dbname=app user=app' %(prog)s"""


def _prog() -> str:
    """How the user called us: ``python -m fastpool``, or the ``fastpool`` console script."""
    name = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else ""
    return "python -m fastpool" if name in ("", "__main__.py", "-c", "-m") else name


def _parser() -> argparse.ArgumentParser:
    raw = argparse.RawDescriptionHelpFormatter
    p = argparse.ArgumentParser(prog=_prog(), description=_DESCRIPTION, formatter_class=raw)
    p.add_argument("--version", action="version", version=f"fastpool {__version__}")
    # SUPPRESS: a --dsn given before the command is not overwritten by the command's default
    dsn_help = "libpq connection string or postgresql:// URL (never printed)"
    p.add_argument("--dsn", default=argparse.SUPPRESS, help=dsn_help)
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    d = sub.add_parser("demo", help="the default: threads sharing a pool, then its stats",
                       description=_DEMO_HELP, formatter_class=raw)  # fmt: skip
    d.add_argument("--dsn", default=argparse.SUPPRESS, help=dsn_help)
    d.add_argument(
        "--workers",
        type=int,
        default=_DEMO_DEFAULTS["workers"],
        help="borrowing threads (default: %(default)s)",
    )
    d.add_argument(
        "--max-size",
        type=int,
        default=_DEMO_DEFAULTS["max_size"],
        help="the pool's max_size (default: %(default)s)",
    )
    d.add_argument(
        "--seconds",
        type=float,
        default=_DEMO_DEFAULTS["seconds"],
        help="how long to run (default: %(default)g)",
    )
    b = sub.add_parser("bench", help="fastpool beside the pools installed here, as ratios",
                       description=_BENCH_HELP, formatter_class=raw)  # fmt: skip
    b.add_argument("--dsn", default=argparse.SUPPRESS, help=dsn_help)
    b.add_argument("--quick", action="store_true", help="a short run: a smoke test, not a measurement")
    b.add_argument("--plot", metavar="FILE", help="also chart the ratios into FILE (.png, .svg or .pdf)")
    return p


def _bench(dsn: str, named: str | None, quick: bool, plot_to: str | None) -> int:
    print(f"fastpool {__version__} bench, the {_BUILDS[IMPLEMENTATION]} build by default")
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
    return run_bench(reachable, quick, plot_to=plot_to)


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m fastpool`` and of the ``fastpool`` console script.

    ``--dsn`` may come before or after the command (``--dsn X bench`` or ``bench --dsn X``).
    """
    p = _parser()
    given = sys.argv[1:] if argv is None else argv
    first = next((i for i, a in enumerate(given) if a in ("demo", "bench")), len(given))
    misplaced = [a.split("=")[0] for a in given[:first] if a.split("=")[0] in _DEMO_OPTIONS]
    if misplaced:  # `--seconds 1 demo` or `--seconds 1`: say where the option goes
        p.error(f"{misplaced[0]} is an option of the demo: {p.prog} demo {misplaced[0]} ...")
    args = vars(p.parse_args(given))
    named = args.get("dsn")
    if named is None and os.environ.get("FASTPOOL_DSN"):
        named = os.environ["FASTPOOL_DSN"]
    dsn = resolve_dsn(args.get("dsn"))
    if args.get("command") == "bench":
        return _bench(dsn, named, bool(args.get("quick")), args.get("plot"))
    opts = {k: args.get(k, v) for k, v in _DEMO_DEFAULTS.items()}
    if opts["workers"] < 1 or opts["max_size"] < 1 or opts["seconds"] <= 0:
        p.error("demo: --workers and --max-size must be at least 1, and --seconds more than 0")
    return demo(dsn, int(opts["workers"]), int(opts["max_size"]), float(opts["seconds"]))


if __name__ == "__main__":
    sys.exit(main())
