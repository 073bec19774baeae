"""Sphinx configuration for the multiprocess documentation.

Build (warnings are errors, as in tests/test_docs.py):

    pip install -e ".[docs]"
    sphinx-build -W docs docs/_build

The hand-written guides are reStructuredText; the design notes written in
Markdown next to the code (pool.md, performance.md, conformance.md,
architecture.md) are included as they are through myst-parser.  The API
reference is autodoc over the installed package's docstrings.
"""
import importlib
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
# document the checkout even when another copy is installed
sys.path.insert(0, os.path.dirname(HERE))

project = "multiprocess"
author = "the multiprocess authors"
copyright = "the multiprocess authors, BSD-3-Clause"
def _checkout_version():
    # multiprocess.__version__ of the checkout, read without importing it
    # (the native core may not be built here).
    import ast
    with open(os.path.join(os.path.dirname(HERE), "multiprocess",
                           "__init__.py")) as f:
        for node in ast.parse(f.read()).body:
            if (isinstance(node, ast.Assign)
                    and getattr(node.targets[0], "id", None) == "__version__"):
                return node.value.value
    raise LookupError("no __version__ in multiprocess/__init__.py")


release = _checkout_version()
version = ".".join(release.split(".")[:2])

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.intersphinx",
    "sphinx.ext.viewcode",
    "myst_parser",
]
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store"]

# Markdown pages: headings get anchors so guides can link to sections
myst_heading_anchors = 3

autodoc_member_order = "bysource"
autodoc_typehints = "none"
autodoc_default_options = {"members": True, "show-inheritance": True}

intersphinx_mapping = {}   # offline builds: no inventories are fetched

html_theme = "alabaster"
html_title = "multiprocess %s" % release

# One API page per public module (docs/api/<module>.rst).  A module that is
# still being written (its file does not exist yet) leaves its page out of
# the build instead of failing it; any other import error stays an autodoc
# warning, which -W turns into a failure.
_missing = []
for _page in sorted(os.listdir(os.path.join(HERE, "api"))):
    _name, _ext = os.path.splitext(_page)
    if _ext != ".rst" or _name == "index" or not _name.startswith("multiprocess"):
        continue
    try:
        importlib.import_module(_name)
    except ModuleNotFoundError as exc:
        if exc.name != _name:
            raise
        _missing.append(_name)
        exclude_patterns.append("api/%s.rst" % _name)
if _missing:
    print("docs: not yet importable, left out of the API reference: "
          + ", ".join(_missing))
