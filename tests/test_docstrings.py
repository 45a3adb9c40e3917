"""Every public function and class has a docstring with an example.

The examples themselves are run by the documentation build
(``sphinx-build -b doctest``, the docs step of ``.ci/run``); this test only
makes sure none is missing, so a new public name cannot skip the rule.
"""

import importlib
import inspect

import pytest

import agrad

MODULES = [
    "agrad",
    "agrad.pure",
    "agrad.linreg",
    "agrad.datasets",
    "agrad.studies",
    "agrad.compiled",
    "agrad.higher",
    "agrad.sweep",
    "agrad.nn",
    "agrad.optim",
    "agrad.viz",
]


def public_names():
    """(module name, name, object) for each public name of each public
    module: its ``__all__``, or what it defines when it has none."""
    for module_name in MODULES:
        module = importlib.import_module(module_name)
        names = getattr(module, "__all__", None)
        if names is None:  # agrad.compiled
            names = [
                n
                for n, v in vars(module).items()
                if not n.startswith("_") and getattr(v, "__module__", None) == module_name
            ]
        for name in names:
            obj = getattr(module, name)
            if not inspect.ismodule(obj):
                yield module_name, name, obj


def public_callables():
    """(qualified name, object) for each public function and class."""
    found = {
        # public, though not in __all__ (they would shadow builtins on `import *`)
        "agrad.sum": agrad.sum,
        "agrad.compile": agrad.compile,
    }
    for module_name, name, obj in public_names():
        if callable(obj):
            found[f"{module_name}.{name}"] = obj
    return sorted(found.items())


def test_the_list_is_not_empty():
    names = [name for name, _ in public_callables()]
    assert {"agrad.Value", "agrad.pure.Value", "agrad.linreg.train", "agrad.nn.MLP"} <= set(names)


@pytest.mark.parametrize(
    ("name", "obj"), public_callables(), ids=lambda x: x if isinstance(x, str) else ""
)
def test_docstring_has_an_example(name, obj):
    doc = inspect.getdoc(obj) or ""
    assert doc.strip(), f"{name} has no docstring"
    assert ">>> " in doc, f"{name}'s docstring has no example (>>> ...)"
