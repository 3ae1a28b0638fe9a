"""How ``python -m fastpool bench`` shows what it measured: progress, tables and a chart.

Every ratio reads the same way in every table: the row's time per operation
divided by the baseline's (fastpool's compiled build), so lower is better and
2.00x means twice the baseline's time.  A throughput table gives the same
ratio (the baseline's operations per second divided by the row's).  Rounds are
interleaved, so each round gives one ratio per row against the baseline's run
of that same round; a row shows the median of those ratios and their spread
(lowest and highest).  A row whose spread includes 1.00x is a tie: over this
run it was neither faster nor slower than the baseline.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, TextIO

BASELINE = "fastpool (compiled)"
FALLBACK_BASELINE = "fastpool (pure Python)"


class Progress:
    """One live line on a terminal (rewritten in place), one line per round in a file or a pipe."""

    def __init__(self, out: TextIO, rounds: int) -> None:
        self.out, self.rounds, self.done_rounds = out, rounds, 0
        self.live = bool(getattr(out, "isatty", lambda: False)())
        self.t0 = time.perf_counter()

    def step(self) -> None:
        """Report that one more round has finished."""
        self.done_rounds += 1
        line = f"  round {self.done_rounds}/{self.rounds} ({time.perf_counter() - self.t0:.1f} s)"
        if self.live:
            self.out.write("\r" + line)
        else:
            self.out.write(line + "\n")
        self.out.flush()

    def done(self) -> None:
        """Clear the live line (a file keeps its lines)."""
        if self.live:
            self.out.write("\r" + " " * 40 + "\r")
            self.out.flush()


@dataclass
class Row:
    """One implementation's result in one table."""

    name: str
    value: float  # the median: seconds per operation, or operations per second
    ratio: float  # median over the rounds of (row's time per operation / baseline's)
    low: float  # the lowest of those per-round ratios
    high: float  # the highest
    extra: tuple[str, ...] = ()  # more columns, already formatted (fairness, p99 wait)

    def is_tie(self, baseline: str) -> bool:
        """Whether the row's spread includes 1.00x (the baseline row itself is not a tie)."""
        return self.name != baseline and self.low <= 1.0 <= self.high


@dataclass
class Table:
    """One shape's results, against one baseline."""

    title: str
    baseline: str
    rows: list[Row]
    unit: str  # "per borrow", "per query" or "ops/s"
    extra_headers: tuple[str, ...] = field(default=())

    def sorted_rows(self) -> list[Row]:
        """The rows from the fastest (lowest ratio) to the slowest."""
        return sorted(self.rows, key=lambda r: r.ratio)


def baseline_of(names: Iterable[str]) -> str:
    """The compiled build's row, else the pure-Python build's, else the first row.

    A table of one kind of pool names its fastpool rows by it ("fastpool (compiled) asyncpg"):
    the first row that starts with the build's name is the baseline there.
    """
    names = list(names)
    for candidate in (BASELINE, FALLBACK_BASELINE):
        if candidate in names:
            return candidate
        for name in names:
            if name.startswith(candidate):
                return name
    return names[0]


def spread(ratios: Sequence[float]) -> tuple[float, float, float]:
    """The median, lowest and highest of per-round ratios."""
    return statistics.median(ratios), min(ratios), max(ratios)


def _value(table: Table, row: Row) -> str:
    if table.unit == "ops/s":
        return f"{row.value:,.0f}/s"
    return f"{row.value * 1e6:.2f} us"


def write_table(table: Table, out: TextIO) -> None:
    """Print a table: each row's median, its time ratio to the baseline and the ratio's spread."""
    rows = table.sorted_rows()
    width = max(len("implementation"), *(len(r.name) for r in rows))
    values = [_value(table, r) for r in rows]
    vwidth = max(len(table.unit), *(len(v) for v in values))
    heads = [f"{'implementation':<{width}}", f"{table.unit:>{vwidth}}", "time ratio", f"{'spread':<16}"]
    heads += list(table.extra_headers)
    out.write(f"\n{table.title}\n")
    out.write(f"  (time ratio: time per operation / {table.baseline}'s, lower is better)\n")
    out.write("  " + "   ".join(heads).rstrip() + "\n")
    for row, value in zip(rows, values, strict=True):
        if row.name == table.baseline:
            ratio, span = "1.00x", "baseline"
        else:
            ratio = f"{row.ratio:.2f}x"
            span = f"{row.low:.2f}-{row.high:.2f}x" + (" tie" if row.is_tie(table.baseline) else "")
        cells = [f"{row.name:<{width}}", f"{value:>{vwidth}}", f"{ratio:>10}", f"{span:<16}"]
        cells += [f"{x:>{len(h)}}" for x, h in zip(row.extra, table.extra_headers, strict=True)]
        out.write("  " + "   ".join(cells).rstrip() + "\n")


def plot(tables: Sequence[Table], path: str) -> None:
    """Write a chart of every table's ratios with their spread to ``path`` (PNG, SVG or PDF).

    matplotlib (in the ``bench`` extra) is imported here only.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise SystemExit("--plot needs matplotlib: python -m pip install 'fastpool[bench]'") from None
    tables = [t for t in tables if len(t.rows) > 1]
    if not tables:
        raise SystemExit("--plot: nothing to plot (no table has more than one row)")
    cols = 2 if len(tables) > 3 else 1  # two columns: a chart that fits a screen, not a strip
    rows = [tables[i : i + cols] for i in range(0, len(tables), cols)]
    heights = [0.7 + 0.3 * max(len(t.rows) for t in row) for row in rows]
    fig, axes = plt.subplots(len(rows), cols, figsize=(8 * cols, sum(heights) + 1.0), squeeze=False,
                             gridspec_kw={"height_ratios": heights})  # fmt: skip
    for r, row in enumerate(rows):
        for c in range(cols):
            if c < len(row):
                _plot_table(axes[r, c], row[c])
            else:
                axes[r, c].axis("off")
    fig.supxlabel(
        "time per operation vs the table's fastpool (compiled) row (log scale, lower is better); "
        "bar: the median over the rounds, whiskers: min-max;\n"
        "green: faster, orange: slower, grey: a tie (the spread includes 1.00x)",
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


_TICKS = (0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0)
_FINE_TICKS = (0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.1, 1.2, 1.3, 1.5, 1.7, 2.0, 2.5, 3.0)


def _plot_table(ax: Any, table: Table) -> None:
    """One table as bars that start at 1.00x: left is faster than the baseline, right is slower."""
    rows = table.sorted_rows()[::-1]  # the fastest at the top
    ys = list(range(len(rows)))
    colors = [
        "#2b6cb0"  # blue: the baseline
        if r.name == table.baseline
        else "#a0aec0"  # grey: a tie
        if r.is_tie(table.baseline)
        else "#38a169"  # green: faster than the baseline
        if r.ratio < 1.0
        else "#dd6b20"  # orange: slower
        for r in rows
    ]
    widths = [r.ratio - 1.0 for r in rows]
    errs = [[r.ratio - r.low for r in rows], [r.high - r.ratio for r in rows]]
    ax.barh(ys, widths, left=1.0, color=colors, height=0.6)
    ax.errorbar([r.ratio for r in rows], ys, xerr=errs, fmt="none", ecolor="#2d3748", capsize=3, lw=0.8)
    ax.axvline(1.0, color="#2d3748", linewidth=0.8)
    ax.set_xscale("log")
    low = min(*(r.low for r in rows), 1.0) / 1.25
    high = max(*(r.high for r in rows), 1.0) * 1.6
    ax.set_xlim(low, high)
    ticks = [t for t in _TICKS if low <= t <= high]
    if len(ticks) < 3:  # a narrow range: finer ticks, fewer of them where the range is wider
        fine = _FINE_TICKS if high / low < 2.5 else (0.3, 0.5, 0.7, 1.0, 1.5, 2.0, 3.0)
        ticks = [t for t in fine if low <= t <= high]
    ax.set_xticks(ticks, [f"{t:g}x" for t in ticks], fontsize=8)
    ax.minorticks_off()
    ax.set_yticks(ys, [r.name for r in rows], fontsize=8)
    ax.set_title(table.title, fontsize=9, loc="left")
    for y, r in zip(ys, rows, strict=True):
        label = "baseline" if r.name == table.baseline else f"{r.ratio:.2f}x"
        ax.text(max(r.high, 1.0) * 1.05, y, label, va="center", fontsize=7)
