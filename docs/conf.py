"""Sphinx configuration of agrad's documentation site.

Why Sphinx, furo, MyST and myst-nb (rather than MkDocs Material and
mkdocstrings): agrad's public face is a compiled type, and Sphinx's autodoc
documents the imported object itself, C++ docstrings included, with the types
taken from ``python/agrad/_core.pyi`` (``_ext/agrad_stubs.py``); its doctest
builder runs the examples of exactly the docstrings the reference shows, the
compiled ones too; myst-nb executes the pages that show the chapter and the
notebooks of ``examples/`` at every build, so no output on the site is older
than the code; and nitpicky mode makes every broken reference, in the API or
between pages, an error.  MyST lets the pages include the project's existing
Markdown (README sections, docs/*.md, CONTRIBUTING.md, benchmarks/*.md)
rather than copies of it.  furo is a clean theme with search and dark mode.

Build: ``python -m sphinx -W --keep-going -n -b html docs docs/_build/html``
(CONTRIBUTING.md, "The documentation site").
"""

import os
import shutil
import sys

import agrad

# The pages draw computational graphs, which Graphviz's dot program renders;
# without it a page would fail far from the cause (an empty SVG, an XML error).
# Sphinx reports any exception here, its own ConfigError included, as a page
# of versions and traceback: say it in one line and stop.
if shutil.which("dot") is None:
    print(
        "the documentation build needs Graphviz's dot program, which is not on PATH: "
        "apt-get install graphviz, brew install graphviz or conda install graphviz",
        file=sys.stderr,
    )
    sys.stderr.flush()
    os._exit(2)

# The local extension that reads the compiled module's types from its stubs.
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "_ext"))

# The executed pages run `python -m agrad ...` in a shell; make that `python`
# the one building the site (a venv's python need not be first on PATH).
os.environ["PATH"] = os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")
# Figures are written to files and shown, with no window to open.
os.environ.setdefault("MPLBACKEND", "Agg")

project = "agrad"
author = "The agrad authors"
copyright = "The agrad authors"  # noqa: A001 (Sphinx's name for it)
release = version = agrad.__version__

extensions = [
    "myst_nb",
    "sphinx.ext.autodoc",
    "sphinx.ext.doctest",
    "agrad_stubs",
]

exclude_patterns = ["_build", "_ext", "**.ipynb_checkpoints", "README.md"]

# Every reference must resolve: a renamed function or a broken link between
# pages fails the build (with -W).  Third-party classes that appear in type
# annotations have no page here (intersphinx would fetch their inventories
# over the network, which the build does without).
nitpicky = True
nitpick_ignore_regex = [
    ("py:class", r"(numpy|pandas|graphviz|matplotlib|tqdm|joblib|dask|ray|random)\..*"),
    # The standard library's abstract classes: no inventory of Python's docs either.
    ("py:class", r"(collections\.abc|os|types)\..*"),
    ("py:mod", r"random"),
    # numpy.typing.ArrayLike, imported by agrad.viz for type checkers only.
    ("py:class", r"ArrayLike"),
    # Private machinery of agrad.compile, which its public methods mention.
    ("py:class", r"agrad\._core\._.*"),
]

# MyST: anchors for headings down to ### so that [text](page.md#heading) links
# are checked like any other reference.
myst_heading_anchors = 3
myst_enable_extensions = ["colon_fence"]

# myst-nb: execute every notebook and every MyST page with code cells at each
# build, in a temporary directory (their figures and CSVs never land in the
# source tree); a cell that raises fails the build.
nb_execution_mode = "force"
nb_execution_in_temp = True
nb_execution_raise_on_error = True
nb_execution_show_tb = True
nb_execution_timeout = 600
nb_merge_streams = True

# autodoc: members in source order, each module's __all__ respected.
autodoc_member_order = "bysource"
autodoc_typehints = "signature"
# Defaults as written in the source (`rng=random`, not the module's repr and path).
autodoc_preserve_defaults = True
autodoc_class_signature = "mixed"
autodoc_default_options = {"members": True}

# doctest: the examples in the docstrings the API reference shows.  Each
# block starts from a fresh namespace with the package imported.
doctest_global_setup = "import agrad"
doctest_test_doctest_blocks = "default"

# Docstrings quote code ('' is an empty label): keep quotes as typed.
smartquotes = False

html_theme = "furo"
html_title = f"agrad {release}"
# agrad.css: inline graphs at their own size (see the file)
html_static_path = ["_static"]
html_css_files = ["agrad.css"]
