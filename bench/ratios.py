"""Turn benchmark results into a table of ratios against fastpool (compiled core).

Used by ``bench/conftest.py`` at the end of a ``pytest bench/`` run, and as a
script on a saved run: ``python -m bench.ratios results.json`` (from
``pytest bench/ --benchmark-json results.json``) prints a Markdown table of ratios.
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict
from collections.abc import Iterable

BASELINE = "fastpool (compiled)"


def table(rows: Iterable[tuple[str, str, float]]) -> str:
    """Render (group, name, median seconds) rows as a Markdown table per group."""
    groups: dict[str, list[tuple[str, float]]] = defaultdict(list)
    for group, name, median in rows:
        groups[group].append((name, median))
    out = []
    for group, items in sorted(groups.items()):
        base = next((m for n, m in items if n == BASELINE), None)
        out.append(f"\n{group}\n")
        out.append("| implementation | median | vs fastpool (compiled) |")
        out.append("|---|---:|---:|")
        for name, median in sorted(items, key=lambda x: x[1]):
            ratio = f"{median / base:.2f}x" if base else "n/a"
            out.append(f"| {name} | {_fmt(median)} | {ratio} |")
    return "\n".join(out)


def _fmt(seconds: float) -> str:
    if seconds < 1e-3:
        return f"{seconds * 1e6:.2f} us"
    return f"{seconds * 1e3:.2f} ms"


def name_of(fullname: str, param: str | None) -> str:
    """The implementation label of a benchmark: its parameter id."""
    return param or fullname.rsplit("::", 1)[-1]


def main(argv: list[str]) -> int:
    """Print the ratio table of a ``--benchmark-json`` file."""
    with open(argv[1]) as f:
        data = json.load(f)
    rows = [
        (
            b["group"] or "",
            name_of(b["fullname"], b.get("param")),
            b["stats"]["median"] / b.get("extra_info", {}).get("ops", 1),
        )
        for b in data["benchmarks"]
    ]
    machine = data.get("machine_info", {})
    impl = machine.get("python_implementation", "")
    print(f"{data.get('datetime', '')} {impl} {machine.get('python_version', '')}")
    print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
