"""Sphinx configuration: the API reference from the docstrings, and the tutorial.

Build with ``python -m sphinx -W --keep-going -b html docs docs/_build/html`` (``tests/test_docs.py``
does the same into a temporary folder). Only Sphinx's own extensions and theme are used, so the
build needs nothing beyond the ``docs`` extra.
"""

from __future__ import annotations

import os
import sys

os.environ.setdefault("MPLBACKEND", "Agg")  # the plotting modules import matplotlib
sys.path.insert(0, os.path.abspath(".."))  # the package, also without ``pip install -e``

project = "pyro-vaes"
author = "The pyro-vaes developers"
copyright = "the pyro-vaes developers"
release = version = "0.1.0"

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
]

exclude_patterns = ["_build"]
html_theme = "alabaster"
html_static_path: list[str] = []

# the reference: members as the modules' ``__all__`` lists them, in source order, with bases
autodoc_default_options = {
    "members": True,
    "member-order": "bysource",
    "show-inheritance": True,
}
autodoc_typehints = "signature"
autodoc_preserve_defaults = True
add_module_names = False
# Only the project's own docstrings: a member without one (an override of torch's ``expand``,
# ``forward``) is left out rather than shown with the base class's text, which is written for
# another toolchain (Google style, torch's own cross-references) and does not parse as reST.
autodoc_inherit_docstrings = False


def _references(app, what, name, obj, options, lines: list[str]) -> None:
    """Render a docstring's numbered ``References:`` block (Pyro's habit) as a rubric with one
    paragraph per reference, instead of one run-on definition-list entry."""
    start = next((i for i, line in enumerate(lines) if line.strip() == "References:"), None)
    if start is None:
        return
    indent = len(lines[start]) - len(lines[start].lstrip())
    out = [" " * indent + ".. rubric:: References", ""]
    end = start + 1
    while end < len(lines) and (
        not lines[end].strip() or lines[end].startswith(" " * (indent + 1))
    ):
        text = lines[end].strip()
        if text.startswith("[") and out[-1] != "":
            out.append("")  # a new reference, a new paragraph
        if text:
            out.append(" " * indent + text)
        end += 1
    lines[start:end] = [*out, ""]


def setup(app) -> None:
    app.connect("autodoc-process-docstring", _references)
