"""The API reference (``docs/api/``) documents every public name, from its docstring."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

API = Path(__file__).resolve().parent.parent / "docs" / "api"
PUBLIC_MODULES = [
    "fastpool",
    "fastpool.asyncpg",
    "fastpool.metrics",
    "fastpool.sqlalchemy",
    "fastpool.sandbox",
]
#: names that are not API objects of their own (the version string)
NOT_DOCUMENTED = {"fastpool.__version__"}
_DIRECTIVE = re.compile(r"^\.\. (?:auto(?:class|function|exception|data|module)|data)::\s+(\S+)", re.M)


def documented() -> set[str]:
    return {m for page in API.glob("*.md") for m in _DIRECTIVE.findall(page.read_text(encoding="utf-8"))}


def _resolve(dotted: str) -> object:
    module, _, name = dotted.rpartition(".")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError):
        return importlib.import_module(dotted)


@pytest.mark.parametrize("module", PUBLIC_MODULES)
def test_every_public_name_is_in_the_api_reference(module: str) -> None:
    mod = importlib.import_module(module)
    names = {f"{module}.{n}" for n in mod.__all__} - NOT_DOCUMENTED
    have = documented()
    objects = {id(_resolve(d)) for d in have}
    # a name re-exported elsewhere (fastpool.sandbox.Sandbox is fastpool.Sandbox) is documented once;
    # a module documented with automodule documents its __all__
    missing = {n for n in names if n not in have and id(_resolve(n)) not in objects and module not in have}
    assert not missing, f"not in docs/api/: {sorted(missing)}"


def test_every_public_name_has_a_docstring() -> None:
    for module in PUBLIC_MODULES:
        mod = importlib.import_module(module)
        for name in mod.__all__:
            obj = getattr(mod, name)
            if callable(obj) or isinstance(obj, type):
                assert (obj.__doc__ or "").strip(), f"{module}.{name} has no docstring"
