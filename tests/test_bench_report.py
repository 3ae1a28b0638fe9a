"""How ``python -m fastpool bench`` reports: one ratio direction, spread and ties, progress, chart."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import pytest

from fastpool._bench.report import Progress, Row, Table, baseline_of, plot, write_table
from fastpool._bench.run import time_table


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_is_a_live_line_on_a_terminal_and_lines_in_a_file() -> None:
    tty, log = _Tty(), io.StringIO()
    for out in (tty, log):
        p = Progress(out, 3)
        for _ in range(3):
            p.step()
        p.done()
    assert "\n" not in tty.getvalue() and tty.getvalue().count("\r") == 5  # 3 rounds, then cleared
    assert log.getvalue().splitlines() == [line for line in log.getvalue().splitlines() if "round" in line]
    assert len(log.getvalue().splitlines()) == 3 and "\r" not in log.getvalue()


def test_every_ratio_is_a_time_ratio_with_its_spread_and_ties_are_marked() -> None:
    times = {
        "fastpool (compiled)": [1.0, 1.0, 1.0],
        "slower": [3.0, 2.0, 4.0],  # 2.00-4.00x
        "noisy": [0.8, 1.3, 1.0],  # its spread includes 1.00x: a tie
        "faster": [0.5, 0.4, 0.6],
    }
    table = time_table("shape", times)
    assert table.baseline == "fastpool (compiled)"
    rows = {r.name: r for r in table.rows}
    assert (rows["slower"].ratio, rows["slower"].low, rows["slower"].high) == (3.0, 2.0, 4.0)
    assert rows["noisy"].is_tie(table.baseline) and not rows["slower"].is_tie(table.baseline)
    out = io.StringIO()
    write_table(table, out)
    text = out.getvalue()
    assert "lower is better" in text
    lines = [line for line in text.splitlines() if line.startswith("  ") and "x" in line]
    assert [line.split()[0] for line in lines[-4:]] == ["faster", "fastpool", "noisy", "slower"]
    assert "1.00x   baseline" in text and "0.80-1.30x tie" in text and "2.00-4.00x" in text
    # the columns line up, however long a name is
    starts = {line.index("x   ") for line in lines[-4:]}
    assert len(starts) == 1


def test_a_throughput_table_reads_the_same_way() -> None:
    # twice the baseline's ops/s is half its time per operation: 0.50x
    row = Row("twice as fast", 200.0, 0.5, 0.4, 0.6)
    table = Table("t", "fastpool (compiled)", [Row("fastpool (compiled)", 100.0, 1, 1, 1), row], unit="ops/s")
    out = io.StringIO()
    write_table(table, out)
    assert "0.50x" in out.getvalue() and "200/s" in out.getvalue()


def test_the_baseline_is_the_compiled_build_else_the_pure_one() -> None:
    assert baseline_of(["psycopg_pool", "fastpool (compiled) asyncpg", "fastpool (pure Python) asyncpg"]) == (
        "fastpool (compiled) asyncpg"
    )
    assert baseline_of(["psycopg_pool", "fastpool (pure Python)"]) == "fastpool (pure Python)"


def test_plot_writes_a_chart(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    table = time_table("shape", {"fastpool (compiled)": [1.0, 1.1], "peer": [3.0, 3.5]})
    path = tmp_path / "chart.png"
    plot([table], str(path))
    assert path.read_bytes().startswith(b"\x89PNG") and path.stat().st_size > 5000


@pytest.mark.db
@pytest.mark.usefixtures("many_sessions")
def test_bench_quick_plot_from_the_command_line(dsn: str, tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    path = tmp_path / "out.png"
    cmd = [sys.executable, "-m", "fastpool", "bench", "--quick", "--dsn", dsn, "--plot", str(path)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)
    assert r.returncode == 0, r.stderr[-3000:]
    assert f"chart written to {path}" in r.stdout and path.read_bytes().startswith(b"\x89PNG")
    assert "\r" not in r.stdout  # not a terminal: one line per round
