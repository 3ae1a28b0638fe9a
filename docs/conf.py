"""Sphinx configuration of fastpool's documentation site.

Build it with ``python -m pip install -e '.[docs]'`` then
``python -m sphinx -W --keep-going -b html docs docs/_build/html``.  The guides
are Markdown (MyST), so that the test-suite runs their examples the same way as
the README's; the API reference is generated from the docstrings of the
installed package.
"""

from __future__ import annotations

import fastpool

project = "fastpool"
author = "fastpool developers"
copyright = "2026, fastpool developers"
release = fastpool.__version__
version = ".".join(release.split(".")[:2])

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.viewcode",
]
source_suffix = {".md": "markdown", ".rst": "restructuredtext"}
exclude_patterns = ["_build"]
root_doc = "index"

# Markdown: ``{ref}``/``{doc}`` roles, anchors for headings (so ``page.md#a-heading`` links
# are checked), definition lists and field lists for the API pages.
myst_enable_extensions = ["colon_fence", "deflist", "fieldlist"]
myst_heading_anchors = 3

# The API reference: signatures with their annotations, in the order of the source, members
# documented on the class they are defined on.
autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_typehints_format = "short"
autodoc_preserve_defaults = True
autodoc_default_options = {"members": True, "show-inheritance": True}
autodoc_inherit_docstrings = True
autodoc_mock_imports: list[str] = []
napoleon_google_docstring = False
napoleon_numpy_docstring = False

html_theme = "furo"
html_title = f"fastpool {release}"
html_static_path = ["_static"]
html_theme_options = {
    "source_repository": "https://github.com/fastpool/fastpool/",
    "source_branch": "main",
    "source_directory": "docs/",
}
