#!/usr/bin/env python
"""Generate fastpool's threaded (sync) modules from their asyncio sources.

Every ``*_async.py`` under ``src/fastpool`` and ``tests`` is a hand-written
source; its threaded module is the same name without ``_async`` and is
generated:

    python tools/async_to_sync.py            # write every generated module
    python tools/async_to_sync.py --check    # exit 1 if any differs or is missing

The transformation works on a concrete syntax tree (libcst), so comments and
layout survive; the result is then put through ``ruff`` (unused imports,
import order, formatting) with the project's configuration.  What it does:

* ``async def``/``async with``/``async for`` lose ``async``; ``await x`` becomes
  ``x``; ``maybe_await(x)`` becomes ``x``; ``AwaitableContext(fn, *args)``
  becomes ``fn(*args)``;
* identifiers are renamed by one explicit table, :data:`NAMES` (as in
  psycopg's generator); an identifier that looks asyncio-only
  (``Async...``, ``..._async``, ``a...`` pairs) and is not in the table, nor in
  :data:`KEEP`, is an error, so that no name is renamed, or left, by accident;
* ``if True:  # ASYNC`` keeps only its ``else:`` branch (or nothing; an
  ``elif cond:`` becomes ``if cond:``) and ``if False:  # ASYNC`` keeps only its
  body: the ways to write code for one kind of pool;
* functions decorated ``@skip_sync`` are dropped; ``@pytest.mark.asyncio`` is
  dropped; the imports of :data:`DROP_IMPORTS` are dropped, and then every
  import the generated code does not use;
* docstrings: identifiers are renamed by :data:`NAMES`; inside code spans
  (````...````) ``async``/``await`` go as in code; prose that differs between
  the two kinds of pool is rewritten by the explicit phrase table
  :data:`DOC_PHRASES`, whose phrases match across line breaks.  Every phrase
  must be used somewhere, and ``tests/test_generated.py`` checks that the
  threaded classes' docstrings say nothing of awaiting, coroutines or loops.

The output is independent of the Python version that runs the tool (libcst
parses by itself); it depends on the ruff version, which the project pins.
"""

from __future__ import annotations

import argparse
import difflib
import re
import subprocess
import sys
import textwrap
from collections.abc import Sequence
from pathlib import Path

import libcst as cst

ROOT = Path(__file__).resolve().parent.parent
SOURCE_DIRS = ("src/fastpool", "tests")
SUFFIX = "_async"

#: The ruff version whose formatting the generated files follow (pinned in pyproject.toml).
RUFF_VERSION = "0.17.6"
#: The project's line length (pyproject.toml): rewritten docstring lines stay within it.
LINE_LENGTH = 110

#: Every identifier the threaded code spells differently (and the modules' names).
NAMES = {
    "AbstractAsyncContextManager": "AbstractContextManager",
    "AsyncBasePool": "BasePool",
    "AsyncClientCursor": "ClientCursor",
    "AsyncConnT": "ConnT",
    "AsyncConnection": "Connection",
    "AsyncConnectionPool": "ConnectionPool",
    "AsyncConnector": "Connector",
    "AsyncConninfo": "Conninfo",
    "AsyncEvent": "Event",
    "AsyncFastPath": "FastPath",
    "AsyncHandOff": "HandOff",
    "AsyncIterator": "Iterator",
    "AsyncKwargs": "Kwargs",
    "AsyncLeadership": "Leadership",
    "AsyncNullConnectionPool": "NullConnectionPool",
    "AsyncOwnerHandle": "OwnerHandle",
    "AsyncOwnership": "Ownership",
    "AsyncPool": "Pool",
    "AsyncPoolConnT": "PoolConnT",
    "AsyncPooledConnection": "PooledConnection",
    "AsyncPsycopgDriver": "PsycopgDriver",
    "AsyncPsycopgSession": "PsycopgSession",
    "AsyncRLock": "RLock",
    "AsyncRes": "Res",
    "AsyncResource": "Resource",
    "AsyncResourceDriver": "ResourceDriver",
    "AsyncResourcePool": "ResourcePool",
    "AsyncReturner": "Returner",
    "AsyncRunner": "Runner",
    "AsyncSandbox": "Sandbox",
    "AsyncTransaction": "Transaction",
    "AsyncWaiting": "Waiting",
    "NoLock": "Lock",
    "StopAsyncIteration": "StopIteration",
    "_AsyncCheckedBorrow": "_CheckedBorrow",
    "_AsyncConnectionClass": "_ConnectionClass",
    "__aenter__": "__enter__",
    "__aexit__": "__exit__",
    "__aiter__": "__iter__",
    "__anext__": "__next__",
    "_one_async": "_one",
    "_params_async": "_params",
    "aclose": "close",
    "anext": "next",
    "asynccontextmanager": "contextmanager",
    "base_async": "base",
    "checkout_async": "checkout",
    "connecting_async": "connecting",
    "count_locks_async": "count_locks",
    "gather_async": "gather",
    "in_worker_async": "in_worker",
    "leadership_async": "leadership",
    "make_async": "make",
    "make_pool_async": "make_pool",
    "off_loop_async": "off_loop",
    "one_async": "one",
    "ownership_async": "ownership",
    "phase_async": "phase",
    "pid_of_async": "pid_of",
    "pool_async": "pool",
    "psycopg_async": "psycopg",
    "psycopg_pool_async": "psycopg_pool",
    "pytest_asyncio": "pytest",
    "resources_async": "resources",
    "returning_async": "returning",
    "run_all_async": "run_all",
    "run_autocommit_async": "run_autocommit",
    "sandbox_async": "sandbox",
    "select_one_async": "select_one",
    "sleep_async": "sleep",
    "spawn_async": "spawn",
    "wait_until_async": "wait_until",
    "wake_async": "wake",
    "writer_async": "writer",
}
#: Names that look asyncio-only but are the same in the threaded code.
KEEP = frozenset({"is_async", "test_async", "AsyncFastPool", "create_async_engine", "AsyncpgDriver"})
#: Imports dropped from the sync output (``import X`` or ``from X import``).
DROP_IMPORTS = frozenset({"pytest_asyncio", "_aio"})
#: ``Wrapper(fn, *args)`` becomes ``fn(*args)`` and ``Wrapper[T]`` becomes ``T``.
UNWRAP_CALLS = frozenset({"AwaitableContext"})
#: Prose that differs between the two kinds of pool, asyncio's words first (matched across line
#: breaks, after the renames).  Every entry must be used: a stale one is an error.
DOC_PHRASES = (
    ("an ``with``", "a ``with``"),
    ("objects, or of asyncpg connections.", "objects (asyncpg has no threaded API: see ``AsyncPool``)."),
    (
        '``"asyncpg"``: the pool hands out ``asyncpg.Connection`` objects, ``kwargs`` go to '
        "``asyncpg.connect``, and ``conninfo`` may be a ``postgresql://`` URL or a libpq "
        "``key=value`` string (translated); the threaded pool refuses it;",
        '``"asyncpg"``, which the threaded pool refuses (``AsyncPool`` takes it);',
    ),
    ("of the asyncio pools", "of the threaded pools"),
    ("the asyncio pools", "the threaded pools"),
    ("an asyncio pool", "a threaded pool"),
    ("the asyncio pool", "the threaded pool"),
    ("An asyncio pool", "A threaded pool"),
    ("psycopg_pool's asyncio surface", "psycopg_pool's threaded surface"),
    ("(plain or coroutine functions)", "(plain functions)"),
    ("plain or coroutine functions", "plain functions"),
    ("may be a plain or a coroutine function", "is a plain function"),
    ("(a coroutine, as in psycopg_pool)", "(as in psycopg_pool)"),
    ("As an async context manager", "As a context manager"),
    ("as an async context manager", "as a context manager"),
    ("over an asyncio :class:", "over a :class:"),
    ("(or functions, plain or coroutine, returning them:", "(or functions returning them:"),
    (
        "Creating an asyncio pool does no I/O and needs no running loop: it starts on the loop of "
        "its first use, or at :meth:`open`.",
        "Creating a threaded pool starts it, and with ``open=True`` (the default) opens "
        "``max(1, min_size)`` connections before returning.",
    ),
    (
        "Creating the pool does no I/O and needs no running loop: ``pool.open()`` (or ``with "
        "Pool(...) as pool``, or :meth:`connect`) opens ``max(1, min_size)`` connections and fails "
        "clearly if it cannot; or just use it, and it starts on the loop of its first use "
        "(``open=False``, or :meth:`connect_lazy`).",
        "Creating the pool (or :meth:`connect`) opens ``max(1, min_size)`` connections before "
        "returning and fails clearly if it cannot; with ``open=False`` (or :meth:`connect_lazy`) "
        "they are opened in the background and the first borrow waits for one.",
    ),
)

_LOOKS_ASYNC = re.compile(r"^_*(Async[A-Z]\w*|a(enter|exit|iter|next|close)\w*|\w+_async|\w*Async\w*)$")
_WORD = re.compile(r"\b\w+\b")
_CODE_SPAN = re.compile(r"``(.+?)``", re.S)
_CODE_KEYWORDS = re.compile(r"\b(?:await|async)\s+(?=\S)")


class UnknownName(Exception):
    """An asyncio-looking identifier that NAMES does not map (nor KEEP keep)."""


def sync_name(name: str) -> str:
    """The threaded code's spelling of an identifier (from :data:`NAMES`)."""
    if name in NAMES:
        return NAMES[name]
    if name not in KEEP and _LOOKS_ASYNC.match(name) and not name.startswith("test_"):
        raise UnknownName(name)
    return name


def _sync_word(name: str) -> str:
    """A word of a docstring: renamed when it is in NAMES, left otherwise."""
    return NAMES.get(name, name)


def _phrase_pattern(phrase: str) -> re.Pattern[str]:
    return re.compile(r"\s+".join(re.escape(w) for w in phrase.split()))


# the longest first: a phrase that contains another is rewritten as a whole
_PHRASES = [(_phrase_pattern(a), a, b) for a, b in sorted(DOC_PHRASES, key=lambda p: -len(p[0]))]
used_phrases: set[str] = set()


def _rewrite(text: str, pattern: re.Pattern[str], new: str, width: int) -> tuple[str, int]:
    """Replace each match of ``pattern`` by ``new``; the lines it spans are wrapped again at
    ``width`` (a one-line span stays one line while it fits in ``LINE_LENGTH``)."""
    n = 0
    pos = 0
    while (m := pattern.search(text, pos)) is not None:
        n += 1
        start = text.rfind("\n", 0, m.start()) + 1
        end = text.find("\n", m.end())
        end = len(text) if end < 0 else end
        lines = text[start:end].split("\n")
        first = lines[0][: len(lines[0]) - len(lines[0].lstrip())]
        rest = lines[1][: len(lines[1]) - len(lines[1].lstrip())] if len(lines) > 1 else first
        words = (text[start : m.start()] + new + text[m.end() : end]).split()
        one = first + " ".join(words)
        if len(lines) == 1 and len(one) <= LINE_LENGTH:
            block = one
        else:
            block = textwrap.fill(" ".join(words), width=width, initial_indent=first, subsequent_indent=rest,
                                  break_long_words=False, break_on_hyphens=False)  # fmt: skip
        text = text[:start] + block + text[end:]
        pos = start + len(block)
    return text, n


def sync_doc(text: str) -> str:
    """A docstring's threaded wording (see the module docstring)."""
    width = min(LINE_LENGTH, max(len(line) for line in text.split("\n")))
    text = _WORD.sub(lambda m: _sync_word(m.group(0)), text)
    text = _CODE_SPAN.sub(lambda m: "``" + _CODE_KEYWORDS.sub("", m.group(1)) + "``", text)
    for pattern, key, new in _PHRASES:
        text, n = _rewrite(text, pattern, new, width)
        if n:
            used_phrases.add(key)
    return text


def _dotted(node: cst.BaseExpression) -> str:
    if isinstance(node, cst.Name):
        return node.value
    if isinstance(node, cst.Attribute):
        return f"{_dotted(node.value)}.{node.attr.value}"
    if isinstance(node, cst.Call):
        return _dotted(node.func)
    return ""


_ATOMIC = (cst.Name, cst.Attribute, cst.Call, cst.Subscript, cst.SimpleString, cst.Integer, cst.Float)


def _marked_async(node: cst.If) -> bool | None:
    """True for ``if True:  # ASYNC``, False for ``if False:  # ASYNC``, None for any other ``if``."""
    comment = getattr(node.body, "header", None)
    c = getattr(comment, "comment", None)
    if (
        isinstance(node.test, cst.Name)
        and node.test.value in ("True", "False")
        and c is not None
        and c.value.lstrip("# ").startswith("ASYNC")
    ):
        return node.test.value == "True"
    return None


class AsyncToSync(cst.CSTTransformer):
    """The transformation described in the module docstring."""

    # -- dropping and unwrapping ----------------------------------------------------------------

    def leave_If(
        self, original_node: cst.If, updated_node: cst.If
    ) -> cst.BaseStatement | cst.FlattenSentinel[cst.BaseStatement] | cst.RemovalSentinel:
        marked = _marked_async(original_node)
        if marked is None:
            return updated_node
        if marked is False:  # `if False:  # ASYNC`: the body is the threaded code
            if updated_node.orelse is not None:
                raise SyntaxError("`if False:  # ASYNC` takes no `else:` (write `if True:  # ASYNC` instead)")
            return self._flatten(updated_node, updated_node.body)
        orelse = updated_node.orelse
        if orelse is None:
            return cst.RemoveFromParent()
        if isinstance(orelse, cst.If):  # `elif cond:` (as ruff writes `else: if cond:`): `if cond:`
            return orelse.with_changes(leading_lines=updated_node.leading_lines)
        return self._flatten(updated_node, orelse.body)

    @staticmethod
    def _flatten(node: cst.If, body: cst.BaseSuite) -> cst.FlattenSentinel[cst.BaseStatement]:
        if not isinstance(body, cst.IndentedBlock):
            raise SyntaxError("an ASYNC block's kept branch must be an indented block")
        stmts = list(body.body)
        if stmts:  # keep the blank lines and comments that preceded the `if`
            stmts[0] = stmts[0].with_changes(leading_lines=[*node.leading_lines, *stmts[0].leading_lines])
        return cst.FlattenSentinel(stmts)

    def leave_Await(self, original_node: cst.Await, updated_node: cst.Await) -> cst.BaseExpression:
        expr = updated_node.expression
        if updated_node.lpar and not isinstance(expr, _ATOMIC):
            return expr.with_changes(lpar=updated_node.lpar, rpar=updated_node.rpar)
        return expr

    def leave_Call(self, original_node: cst.Call, updated_node: cst.Call) -> cst.BaseExpression:
        if isinstance(updated_node.func, cst.Name) and updated_node.func.value in UNWRAP_CALLS:
            fn, *args = updated_node.args
            if args:
                args[-1] = args[-1].with_changes(comma=cst.MaybeSentinel.DEFAULT)
            return cst.Call(func=fn.value, args=args)
        if isinstance(updated_node.func, cst.Name) and updated_node.func.value == "maybe_await":
            if len(updated_node.args) != 1:
                raise SyntaxError("maybe_await() takes one argument")
            value = updated_node.args[0].value
            if isinstance(value, _ATOMIC):
                return value
            return value.with_changes(lpar=[cst.LeftParen()], rpar=[cst.RightParen()])
        return updated_node

    # -- async statements -------------------------------------------------------------------------

    def leave_FunctionDef(
        self, original_node: cst.FunctionDef, updated_node: cst.FunctionDef
    ) -> cst.FunctionDef | cst.RemovalSentinel:
        decorators = []
        for d in updated_node.decorators:
            name = _dotted(d.decorator)
            if name == "skip_sync":
                return cst.RemoveFromParent()
            if name == "pytest.mark.asyncio":
                continue
            decorators.append(d)
        return updated_node.with_changes(
            asynchronous=None, decorators=decorators, body=self._doc(updated_node.body)
        )

    def leave_ClassDef(self, original_node: cst.ClassDef, updated_node: cst.ClassDef) -> cst.ClassDef:
        return updated_node.with_changes(body=self._doc(updated_node.body))

    def leave_Module(self, original_node: cst.Module, updated_node: cst.Module) -> cst.Module:
        body = list(updated_node.body)
        if body:
            body[0] = self._doc_stmt(body[0])
        return updated_node.with_changes(body=body)

    def leave_With(self, original_node: cst.With, updated_node: cst.With) -> cst.With:
        return updated_node.with_changes(asynchronous=None)

    def leave_For(self, original_node: cst.For, updated_node: cst.For) -> cst.For:
        return updated_node.with_changes(asynchronous=None)

    def leave_CompFor(self, original_node: cst.CompFor, updated_node: cst.CompFor) -> cst.CompFor:
        return updated_node.with_changes(asynchronous=None)

    # -- names ------------------------------------------------------------------------------------

    def leave_Name(self, original_node: cst.Name, updated_node: cst.Name) -> cst.Name:
        new = sync_name(updated_node.value)
        return updated_node if new == updated_node.value else updated_node.with_changes(value=new)

    def leave_SimpleString(
        self, original_node: cst.SimpleString, updated_node: cst.SimpleString
    ) -> cst.SimpleString:
        # names in strings, as in __all__: "AsyncPool" -> "Pool"
        value = updated_node.value
        q = value[-1]
        body = value[value.index(q) + 1 : -1] if value[0] in "'\"" else None
        if body is not None and body.isidentifier() and sync_name(body) != body:
            return updated_node.with_changes(value=f"{q}{sync_name(body)}{q}")
        return updated_node

    def leave_Subscript(
        self, original_node: cst.Subscript, updated_node: cst.Subscript
    ) -> cst.BaseExpression:
        if _dotted(original_node.value) in UNWRAP_CALLS and len(updated_node.slice) == 1:
            index = updated_node.slice[0].slice
            assert isinstance(index, cst.Index)
            return index.value
        # AsyncGenerator[Y, S] -> Generator[Y, S, None]
        if _dotted(original_node.value).endswith("AsyncGenerator") and len(updated_node.slice) == 2:
            elems = list(updated_node.slice)
            elems[-1] = elems[-1].with_changes(comma=cst.Comma(whitespace_after=cst.SimpleWhitespace(" ")))
            elems.append(cst.SubscriptElement(cst.Index(cst.Name("None"))))
            return updated_node.with_changes(slice=elems)
        return updated_node

    def leave_Import(
        self, original_node: cst.Import, updated_node: cst.Import
    ) -> cst.Import | cst.RemovalSentinel:
        names = [a for a in original_node.names if _dotted(a.name) not in DROP_IMPORTS]
        if not names:
            return cst.RemoveFromParent()
        if len(names) == len(original_node.names):
            return updated_node
        kept = [a for a in updated_node.names if _dotted(a.name) not in {_sync_word(d) for d in DROP_IMPORTS}]
        return updated_node.with_changes(names=kept or names)

    def leave_ImportFrom(
        self, original_node: cst.ImportFrom, updated_node: cst.ImportFrom
    ) -> cst.ImportFrom | cst.RemovalSentinel:
        if original_node.module is not None and _dotted(original_node.module) in DROP_IMPORTS:
            return cst.RemoveFromParent()
        return updated_node

    # -- docstrings -------------------------------------------------------------------------------

    def _doc(self, body: cst.BaseSuite) -> cst.BaseSuite:
        if isinstance(body, cst.IndentedBlock) and body.body:
            stmts = list(body.body)
            stmts[0] = self._doc_stmt(stmts[0])
            return body.with_changes(body=stmts)
        return body

    @staticmethod
    def _doc_stmt(stmt: cst.BaseStatement) -> cst.BaseStatement:
        if not (isinstance(stmt, cst.SimpleStatementLine) and len(stmt.body) == 1):
            return stmt
        expr = stmt.body[0]
        if not (isinstance(expr, cst.Expr) and isinstance(expr.value, cst.SimpleString)):
            return stmt
        s = expr.value
        new = sync_doc(s.value)
        if new == s.value:
            return stmt
        return stmt.with_changes(body=[expr.with_changes(value=s.with_changes(value=new))])


def header(src: Path) -> str:
    """The first lines of a generated file."""
    return (
        f"# Generated from {src.name} by tools/async_to_sync.py: do not edit this file.\n"
        "# Change the async source, then run `python tools/async_to_sync.py`.\n"
    )


HEADER_MARK = "by tools/async_to_sync.py: do not edit this file."


def _ruff(args: Sequence[str], code: str, path: Path) -> str:
    cmd = [sys.executable, "-m", "ruff", *args, "--stdin-filename", str(path), "-"]
    proc = subprocess.run(cmd, input=code, capture_output=True, text=True, cwd=ROOT, check=False)
    if proc.returncode not in (0, 1) or (proc.returncode == 1 and not proc.stdout):
        raise RuntimeError(f"ruff {' '.join(args)} failed on {path}:\n{proc.stderr}{proc.stdout}")
    return proc.stdout


def generate(src: Path) -> str:
    """The sync module generated from the async source ``src``."""
    module = cst.parse_module(src.read_text())
    code = header(src) + module.visit(AsyncToSync()).code
    out = generated_of(src)
    code = _ruff(["check", "--fix", "--quiet", "--select", "F401,I,RUF022", "--exit-zero"], code, out)
    return _ruff(["format", "--quiet"], code, out)


def generated_of(src: Path) -> Path:
    """The generated (threaded) module of an async source."""
    return src.with_name(src.name[: -len(SUFFIX + ".py")] + ".py")


def sources() -> list[Path]:
    """Every async source of the project."""
    out: list[Path] = []
    for d in SOURCE_DIRS:
        out.extend(sorted((ROOT / d).rglob(f"*{SUFFIX}.py")))
    return out


def generated_files() -> list[Path]:
    """Every file that carries the generated header."""
    out = []
    for d in SOURCE_DIRS:
        for p in sorted((ROOT / d).rglob("*.py")):
            with p.open() as f:
                if HEADER_MARK in f.readline():
                    out.append(p)
    return out


def _ruff_version_note() -> str | None:
    proc = subprocess.run(
        [sys.executable, "-m", "ruff", "--version"], capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        return "ruff is not installed here: pip install -e '.[dev]' (or the test extra)"
    have = proc.stdout.split()[-1] if proc.stdout.split() else "?"
    if have != RUFF_VERSION:
        return f"ruff {have} is installed; the generated files follow ruff {RUFF_VERSION}"
    return None


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 on any difference")
    parser.add_argument("files", nargs="*", type=Path, help="async sources (default: all)")
    opt = parser.parse_args(argv)
    used_phrases.clear()
    note = _ruff_version_note()
    if note is not None:
        print(f"async_to_sync: {note}", file=sys.stderr)
        if note.startswith("ruff is not installed"):
            return 2
    srcs = [p.resolve() for p in opt.files] or sources()
    bad = 0
    for src in srcs:
        if not src.name.endswith(SUFFIX + ".py"):
            print(f"async_to_sync: {src} is not an async source (*{SUFFIX}.py)", file=sys.stderr)
            return 2
        out = generated_of(src)
        try:
            code = generate(src)
        except UnknownName as exc:
            print(
                f"async_to_sync: {src.name}: {exc} looks asyncio-only: add it to NAMES or KEEP",
                file=sys.stderr,
            )
            return 2
        rel = out.relative_to(ROOT)
        if opt.check:
            if not out.exists():
                print(f"{rel}: missing (generate it from {src.name})", file=sys.stderr)
                bad += 1
            elif out.read_text() != code:
                diff = difflib.unified_diff(
                    out.read_text().splitlines(), code.splitlines(), str(rel), "generated", lineterm="", n=1
                )
                print("\n".join(list(diff)[:40]), file=sys.stderr)
                print(f"{rel}: differs from what {src.name} generates", file=sys.stderr)
                bad += 1
        elif not out.exists() or out.read_text() != code:
            out.write_text(code)
            print(f"wrote {rel}")
    if not opt.files:
        stale = [a for a, _ in DOC_PHRASES if a not in used_phrases]
        if stale:
            print(f"async_to_sync: DOC_PHRASES entries no docstring uses: {stale}", file=sys.stderr)
            bad += 1
        expected = {generated_of(s) for s in srcs}
        for g in generated_files():
            if g not in expected:
                print(f"{g.relative_to(ROOT)}: generated, but its async source is gone", file=sys.stderr)
                bad += 1
    if bad:
        print(f"async_to_sync: {bad} generated file(s) out of date; run python tools/async_to_sync.py",
              file=sys.stderr)  # fmt: skip
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
