#!/usr/bin/env python
"""Generate fastpool's threaded (sync) modules from their asyncio sources.

Every ``*_async.py`` under ``src/fastpool`` and ``tests`` is a hand-written
source; its sync twin is the same name without ``_async`` and is generated:

    python tools/async_to_sync.py            # write every sync twin
    python tools/async_to_sync.py --check    # exit 1 if any twin differs or is missing

The transformation works on a concrete syntax tree (libcst), so comments and
layout survive; the result is then put through ``ruff`` (unused imports,
import order, formatting) with the project's configuration.  What it does:

* ``async def``/``async with``/``async for`` lose ``async``; ``await x`` becomes
  ``x``; ``maybe_await(x)`` becomes ``x``;
* names are mapped: ``AsyncFoo`` -> ``Foo``, ``foo_async`` -> ``foo``, plus the
  explicit pairs in ``NAMES`` (``__aenter__`` -> ``__enter__``...);
* ``if True:  # ASYNC`` keeps only its ``else:`` branch (or nothing; an
  ``elif cond:`` becomes ``if cond:``): the one way to write asyncio-only code;
* functions decorated ``@skip_sync`` are dropped; ``@pytest.mark.asyncio`` is
  dropped; ``pytest_asyncio.fixture`` becomes ``pytest.fixture``;
* docstrings get the same name mapping and lose "async"/"await" wording.

The output is independent of the Python version that runs the tool (libcst
parses by itself); it depends on the ruff version, which the project pins.
"""

from __future__ import annotations

import argparse
import difflib
import re
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import libcst as cst

ROOT = Path(__file__).resolve().parent.parent
SOURCE_DIRS = ("src/fastpool", "tests")
SUFFIX = "_async"

#: The ruff version whose formatting the generated files follow (pinned in pyproject.toml).
RUFF_VERSION = "0.17.6"

#: Explicit name pairs, on top of the AsyncFoo -> Foo and foo_async -> foo rules.
NAMES = {
    "__aenter__": "__enter__",
    "__aexit__": "__exit__",
    "__aiter__": "__iter__",
    "__anext__": "__next__",
    "asynccontextmanager": "contextmanager",
    "AbstractAsyncContextManager": "AbstractContextManager",
    "StopAsyncIteration": "StopIteration",
    "aclose": "close",
    "pytest_asyncio": "pytest",
    "NoLock": "Lock",
    "anext": "next",
}
#: Names the rules must leave alone.
KEEP = frozenset({"is_async", "test_async"})
#: Imports dropped from the sync output (``import X`` or ``from X import``).
DROP_IMPORTS = frozenset({"pytest_asyncio", "_aio"})
#: ``Wrapper(fn, *args)`` becomes ``fn(*args)`` and ``Wrapper[T]`` becomes ``T``.
UNWRAP_CALLS = frozenset({"AwaitableContext"})
#: Phrases rewritten in docstrings (after the name mapping).
DOC_PHRASES = (
    (re.compile(r"``async with``"), "``with``"),
    (re.compile(r"``async for``"), "``for``"),
    (re.compile(r"\basync with\b"), "with"),
    (re.compile(r"\basync for\b"), "for"),
    (re.compile(r"\bawait "), ""),
    (re.compile(r"\b[Aa]n (?=(``)?with\b)"), lambda m: "A " if m.group(0)[0] == "A" else "a "),
    (re.compile(r"\b([Aa])n asyncio\b"), r"\1 threaded"),
    (re.compile(r"\basyncio (?=pools?\b|shell\b|driver\b|form\b|surface\b|one\b)"), "threaded "),
    (re.compile(r"\bmay be a plain or a coroutine function\b"), "is a plain function"),
    (re.compile(r"\bcoroutine (functions?)\b"), r"\1"),
)

_ASYNC_NAME = re.compile(r"^(_*)Async([A-Z]\w*)$")
_WORD = re.compile(r"\b\w+\b")


def sync_name(name: str) -> str:
    """The sync twin of an identifier (itself when no rule applies)."""
    if name in KEEP:
        return name
    if name in NAMES:
        return NAMES[name]
    m = _ASYNC_NAME.match(name)
    if m:
        return m.group(1) + m.group(2)
    if name.endswith(SUFFIX) and len(name) > len(SUFFIX) and not name.startswith("test_"):
        return name[: -len(SUFFIX)]
    return name


def sync_doc(text: str) -> str:
    """A docstring's sync wording."""
    text = _WORD.sub(lambda m: sync_name(m.group(0)), text)
    for pattern, repl in DOC_PHRASES:
        text = pattern.sub(repl, text)  # type: ignore[arg-type]
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


def _marked_async(node: cst.If) -> bool:
    """True for ``if True:  # ASYNC``."""
    comment = getattr(node.body, "header", None)
    c = getattr(comment, "comment", None)
    return (
        isinstance(node.test, cst.Name)
        and node.test.value == "True"
        and c is not None
        and c.value.lstrip("# ").startswith("ASYNC")
    )


class AsyncToSync(cst.CSTTransformer):
    """The transformation described in the module docstring."""

    # -- dropping and unwrapping ----------------------------------------------------------------

    def leave_If(
        self, original_node: cst.If, updated_node: cst.If
    ) -> cst.BaseStatement | cst.FlattenSentinel[cst.BaseStatement] | cst.RemovalSentinel:
        if not _marked_async(original_node):
            return updated_node
        orelse = updated_node.orelse
        if orelse is None:
            return cst.RemoveFromParent()
        if isinstance(orelse, cst.If):  # `elif cond:` (as ruff writes `else: if cond:`): `if cond:`
            return orelse.with_changes(leading_lines=updated_node.leading_lines)
        body = orelse.body
        if not isinstance(body, cst.IndentedBlock):
            raise SyntaxError("the `else:` of an ASYNC block must be an indented block")
        stmts = list(body.body)
        if stmts:  # keep the blank lines and comments that preceded the `if`
            stmts[0] = stmts[0].with_changes(
                leading_lines=[*updated_node.leading_lines, *stmts[0].leading_lines]
            )
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
        kept = [a for a in updated_node.names if _dotted(a.name) not in {sync_name(d) for d in DROP_IMPORTS}]
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
    out = twin_of(src)
    code = _ruff(["check", "--fix", "--quiet", "--select", "F401,I,RUF022", "--exit-zero"], code, out)
    return _ruff(["format", "--quiet"], code, out)


def twin_of(src: Path) -> Path:
    """The generated file of an async source."""
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
        out = twin_of(src)
        code = generate(src)
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
        expected = {twin_of(s) for s in srcs}
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
