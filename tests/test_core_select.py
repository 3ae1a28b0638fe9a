"""Which core is loaded, and the switch that picks it."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

import fastpool
from fastpool import _core_select

from .conftest import compiled_expected, load_twin


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
        assert _core_select.core.__name__ == "fastpool._core"
        assert _core_select.core.__file__.endswith((".so", ".pyd"))
    else:
        assert fastpool.IMPLEMENTATION in ("c", "python")


def test_no_extensions_env_forces_the_pure_twin() -> None:
    assert _implementation_in_subprocess(FASTPOOL_NO_EXTENSIONS="1") == "python"


@pytest.mark.c_extension
def test_default_is_compiled_when_built() -> None:
    load_twin("c")  # skips only when not built and not required
    assert _implementation_in_subprocess() == "c"


def test_unknown_twin_name() -> None:
    with pytest.raises(ValueError, match="unknown core"):
        _core_select.load("rust")  # type: ignore[arg-type]


def _bench_cli(dsn: str) -> str:
    """Run ``python -m fastpool bench --quick --dsn DSN``; return what it printed."""
    cmd = [sys.executable, "-m", "fastpool", "bench", "--quick", "--dsn", dsn]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=True).stdout


def test_bench_cli_quick_runs(dsn: str) -> None:
    """``python -m fastpool bench --quick`` prints a table of ratios (a smoke test, no timing asserted)."""
    out = _bench_cli(dsn)
    assert "vs fastpool[" in out and "borrow+return, psycopg, no query, 1 thread" in out
    assert "async borrow+return" in out


def test_bench_cli_without_a_database() -> None:
    out = _bench_cli("host=127.0.0.1 port=1 password=s3cret")
    assert "plain resource" in out and "skipped: every database shape" in out
    assert "s3cret" not in out
