"""Which build of the core is loaded, and the switches that pick it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import fastpool
from fastpool import _core_build

from .conftest import compiled_expected, load_build


def _implementation_in_subprocess(**env: str) -> str:
    full = {k: v for k, v in os.environ.items() if not k.startswith("FASTPOOL_")}
    full.update(env)
    out = subprocess.run(
        [sys.executable, "-c", "import fastpool; print(fastpool.IMPLEMENTATION)"],
        env=full,
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout.strip()


def test_compiled_core_loaded_when_expected() -> None:
    if compiled_expected():
        assert fastpool.IMPLEMENTATION == "c", "the compiled core should have loaded"
        assert _core_build.core.__name__ == "fastpool._core_pool"
        assert _core_build.core.__file__.endswith((".so", ".pyd"))
    else:
        assert fastpool.IMPLEMENTATION in ("c", "python")


def test_no_extensions_env_forces_the_pure_build() -> None:
    assert _implementation_in_subprocess(FASTPOOL_NO_EXTENSIONS="1") == "python"
    # asked for the pure build, nothing compiled is required
    both = {"FASTPOOL_NO_EXTENSIONS": "1", "FASTPOOL_REQUIRE_EXTENSIONS": "1"}
    assert _implementation_in_subprocess(**both) == "python"


def test_no_extensions_env_refuses_the_compiled_build_even_when_asked_by_name() -> None:
    """``FASTPOOL_NO_EXTENSIONS=1 python -m pytest`` runs everything on the pure build: the compiled
    core and the drivers' compiled gates are not loaded even by name (those tests skip)."""
    code = (
        "from fastpool import _core_build as b\n"
        "for name in ('fastpool._core_pool', 'fastpool._drivers.psycopg_gates',\n"
        "             'fastpool._drivers.asyncpg_gates'):\n"
        "    try:\n"
        "        b.load_module(name, 'c')\n"
        "    except ImportError as exc:\n"
        "        print('refused', 'FASTPOOL_NO_EXTENSIONS' in str(exc))\n"
        "print(b.load('python').__name__)\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("FASTPOOL_")}
    env["FASTPOOL_NO_EXTENSIONS"] = "1"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split("\n")[:4] == ["refused True"] * 3 + ["fastpool._core_pool_pure"]


def test_the_drivers_gates_follow_the_core_build() -> None:
    """A pool's driver gates are of its core's build (a compiled gate subclasses the compiled core's)."""
    for build in ("c", "python"):
        try:
            core = _core_build.load(build)  # type: ignore[arg-type]
        except ImportError:
            continue
        for name, cls in (("psycopg_gates", "PsycopgGates"), ("asyncpg_gates", "AsyncpgGates")):
            gates = _core_build.load_module(f"fastpool._drivers.{name}", build)  # type: ignore[arg-type]
            assert issubclass(getattr(gates, cls), core.Gates)
            assert _core_build.build_of(gates) == build


@pytest.mark.c_extension
def test_default_is_compiled_when_built() -> None:
    load_build("c")  # skips only when not built and not required
    assert _implementation_in_subprocess() == "c"


def test_unknown_build_name() -> None:
    with pytest.raises(ValueError, match="unknown build"):
        _core_build.load("rust")  # type: ignore[arg-type]


def _bench_cli(dsn: str) -> str:
    """Run ``python -m fastpool bench --quick --dsn DSN``; return what it printed."""
    cmd = [sys.executable, "-m", "fastpool", "bench", "--quick", "--dsn", dsn]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)
    assert r.returncode == 0, f"exit {r.returncode}:\n{r.stderr[-4000:]}"
    return r.stdout


@pytest.mark.db
@pytest.mark.usefixtures("many_sessions")
def test_bench_cli_quick_runs(dsn: str) -> None:
    """``python -m fastpool bench --quick`` prints a table of ratios (a smoke test, no timing asserted)."""
    out = _bench_cli(dsn)
    assert (
        "time per operation / fastpool (" in out  # the compiled build's row, or the pure one's
        and "borrow+return, psycopg, no query, 1 thread" in out
    )
    assert "async borrow+return" in out


def test_bench_cli_without_a_database() -> None:
    """No database named: the database shapes are skipped, the run succeeds."""
    env = {k: v for k, v in os.environ.items() if k != "FASTPOOL_DSN" and not k.startswith("PG")}
    env["FASTPOOL_TEST_DSN"] = "host=127.0.0.1 port=1 password=s3cret"
    cmd = [sys.executable, "-m", "fastpool", "bench", "--quick"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env, check=False)
    assert r.returncode == 0, r.stderr
    assert "plain resource" in r.stdout and "skipped: every database shape" in r.stdout
    assert "s3cret" not in r.stdout + r.stderr


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "fastpool", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)


@pytest.mark.parametrize("where", ["after", "before"])
def test_bench_cli_fails_when_the_named_database_is_unreachable(where: str) -> None:
    dsn = ["--dsn", "host=127.0.0.1 port=1 password=s3cret"]
    r = _cli(*(["bench", "--quick", *dsn] if where == "after" else [*dsn, "bench", "--quick"]))
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert "cannot reach the database given at host=127.0.0.1 port=1" in r.stderr
    assert "s3cret" not in r.stdout + r.stderr


@pytest.mark.db
def test_cli_dsn_before_the_command_and_demo_options_only_under_demo(dsn: str) -> None:
    r = _cli("--dsn", dsn, "demo", "--seconds", "0.3", "--workers", "2")
    assert r.returncode == 0, r.stderr
    assert "compiled build" in r.stdout or "pure Python" in r.stdout
    assert "2 threads borrowing" in r.stdout and "for 0.3 s" in r.stdout
    assert r.stdout.count("fastpool 0.") == 1  # one version header
    for args in (("--seconds", "1", "demo"), ("--workers=2",)):
        r = _cli(*args)
        assert r.returncode == 2 and "is an option of the demo: python -m fastpool demo --" in r.stderr
    r = _cli("bench", "--seconds", "1")
    assert r.returncode == 2 and "unrecognized arguments: --seconds" in r.stderr


def test_cli_help_says_what_each_command_does() -> None:
    top = _cli("--help").stdout
    assert "usage: python -m fastpool" in top and "``" not in top
    assert "demo" in top and "bench" in top and "--workers" not in top
    bench = _cli("bench", "--help").stdout
    assert "FASTPOOL_DSN" in bench and "minutes" in bench and "--plot FILE" in bench and "examples:" in bench
    demo = _cli("demo", "--help").stdout
    assert "--workers" in demo and "examples:" in demo


def test_console_script_names_itself() -> None:
    script = Path(sys.executable).parent / "fastpool"
    if not script.exists():
        pytest.skip("the fastpool console script is not installed in this environment")
    r = subprocess.run([str(script), "--help"], capture_output=True, text=True, timeout=60, check=False)
    assert r.returncode == 0 and r.stdout.startswith("usage: fastpool "), r.stdout[:200]


def test_cli_malformed_dsn_is_a_message_not_a_traceback() -> None:
    r = _cli("demo", "--dsn", "host=127.0.0.1 port=notaport password=s3cret", "--seconds", "0.2")
    assert r.returncode == 2
    assert "Traceback" not in r.stdout + r.stderr and "notaport" in r.stdout
    assert "s3cret" not in r.stdout + r.stderr
