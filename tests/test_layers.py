"""The layers point down only, and the surfaces use only the pools' declared interface.

Every module of ``src/fastpool`` is parsed (imports under ``TYPE_CHECKING``
count too) and given its layer by its place in the tree: the leaf modules,
the core (``_core*``), the drivers (``_drivers/``), the pools (``_pool/``),
fastpool's surfaces (``_surfaces/``), other libraries' surfaces
(``_compat/``), then the public modules and the main job.  A module that
imports a module of a higher layer fails the first test; a surface module
that uses a private name of the pool bases that ``_pool/interface.py`` does
not declare fails the second.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from fastpool._pool import base, base_async, common
from fastpool._pool.interface import INTERFACE

SRC = Path(__file__).resolve().parent.parent / "src" / "fastpool"

LEAVES = {"_settings", "_types", "_meta", "_acompat", "_aio", "errors", "recycle", "resource"}
ORDER = ["leaf", "core", "drivers", "pool", "surfaces", "compat", "top"]


def layer(module: str) -> str:
    """The layer of ``fastpool.<module>`` (a dotted name below the package)."""
    head = module.split(".", maxsplit=1)[0]
    if head in LEAVES:
        return "leaf"
    if head.startswith("_core"):
        return "core"
    return {"_drivers": "drivers", "_pool": "pool", "_surfaces": "surfaces", "_compat": "compat"}.get(
        head, "top"
    )


def modules() -> dict[str, Path]:
    """Every module below ``fastpool``, by its dotted name below the package."""
    out = {}
    for path in sorted(SRC.rglob("*.py")):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        if parts:
            out[".".join(parts)] = path
    return out


def imports_of(name: str, path: Path) -> set[str]:
    """The fastpool modules ``name`` imports (dotted below the package), relative or absolute."""
    package = name.split(".")[:-1] if path.name != "__init__.py" else name.split(".")
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base_parts = package[: len(package) - (node.level - 1)] if node.level > 1 else package
                target = [*base_parts, *(node.module.split(".") if node.module else [])]
            elif node.module and node.module.split(".")[0] == "fastpool":
                target = node.module.split(".")[1:]
            else:
                continue
            if node.module is None or not target:  # `from . import x` / `from .. import x`: x is a module
                out.update(".".join([*target, a.name]) for a in node.names)
            else:
                out.add(".".join(target))
        elif isinstance(node, ast.Import):
            out.update(".".join(a.name.split(".")[1:]) for a in node.names if a.name.startswith("fastpool."))
    return {m for m in out if m}


def test_every_module_has_a_layer_and_the_map_names_it() -> None:
    contributing = (SRC.parent.parent / "CONTRIBUTING.md").read_text()
    missing = [m for m in modules() if Path(*m.split(".")).name not in contributing]
    assert not missing, f"CONTRIBUTING.md's module map does not name: {missing}"


@pytest.mark.parametrize("name", sorted(modules()))
def test_layers_point_down_only(name: str) -> None:
    mine = ORDER.index(layer(name))
    bad = [m for m in imports_of(name, modules()[name]) if ORDER.index(layer(m)) > mine]
    if layer(name) == "leaf":  # the leaves import only leaves
        bad += [m for m in imports_of(name, modules()[name]) if layer(m) != "leaf"]
    assert not bad, f"fastpool.{name} ({layer(name)}) imports a higher layer: {sorted(set(bad))}"


def _pool_privates() -> set[str]:
    """The private names the pool bases define (methods, class attributes, instance attributes)."""
    names: set[str] = set()
    for cls in (common.PoolCommon, base_async.AsyncBasePool, base.BasePool):
        names.update(n for n in vars(cls) if n.startswith("_") and not n.startswith("__"))
    for mod in (common, base_async, base):
        for node in ast.walk(ast.parse(Path(mod.__file__).read_text())):  # type: ignore[arg-type]
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.ctx, ast.Store)
                and isinstance(node.value, ast.Name)
                and node.value.id == "self"
                and node.attr.startswith("_")
            ):
                names.add(node.attr)
    return names


POOL_BASES = {"PoolCommon", "AsyncBasePool", "BasePool"}
SURFACES = sorted(
    m
    for m in modules()
    if layer(m) in ("surfaces", "compat") or m in ("metrics", "sqlalchemy", "django.base")
)


def _pool_classes(tree: ast.Module) -> list[ast.ClassDef]:
    """The classes of a module that subclass a pool base (directly, or through one of them)."""
    names = set(POOL_BASES)
    out = []
    for node in tree.body:
        if isinstance(node, ast.ClassDef):
            bases = {ast.unparse(b).split("[")[0] for b in node.bases}
            if bases & names:
                names.add(node.name)
                out.append(node)
    return out


def _private_uses(node: ast.AST, holders: tuple[str, ...]) -> set[str]:
    return {
        f"{ast.unparse(n.value)}.{n.attr}"
        for n in ast.walk(node)
        if isinstance(n, ast.Attribute)
        and n.attr.startswith("_")
        and not n.attr.startswith("__")
        and (ast.unparse(n.value) in holders or ast.unparse(n.value).endswith("._pool"))
    }


@pytest.mark.parametrize("name", SURFACES)
def test_surfaces_use_only_the_declared_pool_interface(name: str) -> None:
    """``pool._x`` and ``self._pool._x`` anywhere, and ``self._x`` in a class that subclasses a
    pool base, must be declared in ``PoolInterface`` when ``_x`` is a private of the pool bases."""
    tree = ast.parse(modules()[name].read_text())
    privates = _pool_privates()
    uses = _private_uses(tree, ("pool", "self._pool", "self._fp", "p"))
    for cls in _pool_classes(tree):
        uses |= _private_uses(cls, ("self", "super()"))
    bad = {u for u in uses if u.rsplit(".", 1)[1] in privates - INTERFACE}
    assert not bad, f"fastpool.{name} uses the pools' undeclared privates: {sorted(bad)}"
