"""Every fenced Python block of the README and the docs runs as written, against the test database.

Each block is written to a file and run by a fresh interpreter, the way a reader would paste it:
it must exit with 0 and log no warning.  The examples use the default test database
(``host=127.0.0.1 dbname=test user=postgres``, or its URL form); when the tests run elsewhere
(``FASTPOOL_TEST_DSN``, a throwaway cluster), that text is replaced by the test database's.

Two comments, on the line before a block, change how it runs:

* ``<!-- fragment: why -->``: not run (a piece of a larger program, such as a settings file); the
  reason is required, and there are few;
* ``<!-- run: pytest -->``: the block is a test module (fixtures and tests), run by pytest.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict

from fastpool._bench.shapes import LOCAL_DSN

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted(p for p in (ROOT / "docs").rglob("*.md") if "_build" not in p.parts)]
_FENCE = re.compile(r"^```(?:python|py)\s*$")
_MARK = re.compile(r"^<!--\s*(fragment|run):\s*(.*?)\s*-->\s*$")
#: at most this many blocks may be fragments (not run), over every page
MAX_FRAGMENTS = 4


@dataclass
class Block:
    page: Path
    line: int
    code: str
    mark: str  # "", "fragment" or "pytest"
    why: str

    @property
    def id(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"


def blocks() -> list[Block]:
    """Every fenced ``python`` block of every page, with the mark on the line before it."""
    out = []
    for page in PAGES:
        lines = page.read_text(encoding="utf-8").splitlines()
        i = 0
        while i < len(lines):
            if _FENCE.match(lines[i]):
                end = next(j for j in range(i + 1, len(lines)) if lines[j].startswith("```"))
                prev = next((lines[k] for k in range(i - 1, -1, -1) if lines[k].strip()), "")
                m = _MARK.match(prev.strip())
                mark, why = ("", "") if m is None else (m.group(1), m.group(2))
                if mark == "run":
                    mark, why = why, ""
                out.append(Block(page, i + 1, "\n".join(lines[i + 1 : end]) + "\n", mark, why))
                i = end
            i += 1
    return out


BLOCKS = blocks()


def test_the_docs_have_examples_and_few_fragments() -> None:
    assert len(BLOCKS) >= 15, [b.id for b in BLOCKS]
    fragments = [b for b in BLOCKS if b.mark == "fragment"]
    assert all(b.why for b in fragments), "a fragment must say why it is not run"
    assert len(fragments) <= MAX_FRAGMENTS, [b.id for b in fragments]
    assert {b.mark for b in BLOCKS} <= {"", "fragment", "pytest"}


#: what follows ``scheme://`` in the examples' URLs (``postgresql://``, ``postgresql+psycopg://``...)
LOCAL_URL_TAIL = "postgres@127.0.0.1/test"


def _url_tail(dsn: str) -> str:
    p = conninfo_to_dict(dsn)
    host, port = p.get("host", "127.0.0.1"), p.get("port", "5432")
    password = f":{p['password']}" if p.get("password") else ""
    return f"{p.get('user', 'postgres')}{password}@{host}:{port}/{p.get('dbname', 'test')}"


@pytest.fixture(scope="module")
def docs_database(dsn: str) -> str:
    """The tables the docs' examples use, created once (``CREATE TABLE IF NOT EXISTS``)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS users (id serial PRIMARY KEY, name text NOT NULL)")
    return dsn


@pytest.mark.db
@pytest.mark.parametrize("block", [b for b in BLOCKS if b.mark != "fragment"], ids=lambda b: b.id)
def test_example_runs_as_written(block: Block, docs_database: str, tmp_path: Path) -> None:
    code = block.code
    if docs_database != LOCAL_DSN:
        code = code.replace(LOCAL_DSN, docs_database).replace(LOCAL_URL_TAIL, _url_tail(docs_database))
    env = {k: v for k, v in os.environ.items() if not k.startswith("FASTPOOL_")}
    env["PYTHONWARNINGS"] = "error::ResourceWarning,error::RuntimeWarning"
    if block.mark == "pytest":
        (tmp_path / "test_example.py").write_text(code)
        cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_example.py"]
    else:
        (tmp_path / "example.py").write_text(code)
        cmd = [sys.executable, "example.py"]
    r = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120, check=False)
    shown = f"{block.id}: exit {r.returncode}\n--- stdout\n{r.stdout[-3000:]}\n--- stderr\n{r.stderr[-3000:]}"
    assert r.returncode == 0, shown
    assert "WARNING" not in r.stderr and "Warning:" not in r.stderr, shown
